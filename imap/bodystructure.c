/* BODYSTRUCTURE / BODY values into a tree of parts (see bodystructure.h).
 *
 * The value tree comes from imap_parse(), so every string is already bounded
 * and NUL-terminated; what is left to distrust is the shape: every field is
 * checked for its type before use and anything the grammar can't produce is
 * -EPROTO, never a guess that could send a later FETCH to the wrong part. */
#include "imap/bodystructure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct bs_ctx {
        int err; /* first error; later steps keep going only to free what they built */
};

static bool is_str(const struct imap_value *v)
{
        return v && (v->type == IMAP_STRING || v->type == IMAP_ATOM);
}

static bool is_nil(const struct imap_value *v)
{
        return v && v->type == IMAP_NIL;
}

static bool is_list(const struct imap_value *v)
{
        return v && v->type == IMAP_LIST;
}

static char *dup_str(struct bs_ctx *c, const char *s, bool lower)
{
        size_t n = strlen(s); /* a NUL inside a sent string ends it (see the header) */
        char *d = malloc(n + 1);
        if (!d) {
                c->err = -ENOMEM;
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                d[i] = lower && s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        d[n] = '\0';
        return d;
}

/* nstring: a string (or an atom, which a lax server may send) is copied,
 * NIL gives NULL; anything else is malformed. */
static char *take_nstring(struct bs_ctx *c, const struct imap_value *v, bool lower)
{
        if (is_nil(v))
                return NULL;
        if (!is_str(v)) {
                c->err = -EPROTO;
                return NULL;
        }
        return dup_str(c, v->s, lower);
}

/* A string that has a default when NIL. */
static char *take_string_or(struct bs_ctx *c, const struct imap_value *v, const char *dflt)
{
        if (!v || (!is_nil(v) && !is_str(v))) {
                c->err = -EPROTO;
                return NULL;
        }
        return dup_str(c, is_nil(v) ? dflt : v->s, true);
}

static void params_free(struct imap_mime_param *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(p[i].name);
                free(p[i].value);
        }
        free(p);
}

/* body-fld-param: NIL or ( string string ... ). An empty list is not in the
 * grammar but servers send it: it means none. A NIL value is taken as "". */
static void take_params(struct bs_ctx *c, const struct imap_value *v, struct imap_mime_param **out,
                        size_t *nout)
{
        *out = NULL;
        *nout = 0;
        if (is_nil(v))
                return;
        if (!is_list(v)) {
                c->err = -EPROTO;
                return;
        }
        size_t n = imap_list_count(v);
        if (n % 2) {
                c->err = -EPROTO;
                return;
        }
        if (n == 0)
                return;
        struct imap_mime_param *p = calloc(n / 2, sizeof(*p));
        if (!p) {
                c->err = -ENOMEM;
                return;
        }
        size_t k = 0;
        for (const struct imap_value *e = v->first; e && !c->err; e = e->next->next, k++) {
                const struct imap_value *val = e->next;
                if (!is_str(e) || !(is_str(val) || is_nil(val))) {
                        c->err = -EPROTO;
                        break;
                }
                p[k].name = dup_str(c, e->s, false);
                p[k].value = dup_str(c, is_nil(val) ? "" : val->s, false);
        }
        if (c->err) {
                params_free(p, n / 2);
                return;
        }
        *out = p;
        *nout = n / 2;
}

/* body-fld-dsp: NIL or ( string body-fld-param ). A bare string (seen from
 * old servers) is taken as the type without parameters. */
static void take_disposition(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p)
{
        if (is_nil(v))
                return;
        if (is_str(v)) {
                p->disposition = dup_str(c, v->s, true);
                return;
        }
        if (!is_list(v) || !is_str(v->first)) {
                c->err = -EPROTO;
                return;
        }
        p->disposition = dup_str(c, v->first->s, true);
        if (v->first->next) {
                if (v->first->next->next) {
                        c->err = -EPROTO;
                        return;
                }
                take_params(c, v->first->next, &p->disp_params, &p->ndisp_params);
        }
}

/* body-fld-lang: nstring or ( string *(SP string) ). */
static void take_languages(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p)
{
        if (is_nil(v))
                return;
        const struct imap_value *first = v;
        size_t n = 1;
        if (is_list(v)) {
                first = v->first;
                n = imap_list_count(v);
        } else if (!is_str(v)) {
                c->err = -EPROTO;
                return;
        }
        if (n == 0)
                return;
        p->languages = calloc(n, sizeof(char *));
        if (!p->languages) {
                c->err = -ENOMEM;
                return;
        }
        p->nlanguages = n;
        size_t i = 0;
        for (const struct imap_value *e = first; i < n && !c->err; e = e->next, i++) {
                if (!is_str(e)) {
                        c->err = -EPROTO;
                        return;
                }
                p->languages[i] = dup_str(c, e->s, false);
        }
}

/* Extension fields after the ones both kinds share a prefix of: for a single
 * part md5 first (with_md5), then disposition, language, location, then any
 * number of body-extension values, which only have to be values. Each may be
 * missing from the end on. */
static void take_extensions(struct bs_ctx *c, const struct imap_value *e, struct imap_bodypart *p,
                            bool with_md5)
{
        if (with_md5 && e) {
                p->md5 = take_nstring(c, e, false);
                e = e->next;
        }
        if (e && !c->err) {
                take_disposition(c, e, p);
                e = e->next;
        }
        if (e && !c->err) {
                take_languages(c, e, p);
                e = e->next;
        }
        if (e && !c->err) {
                p->location = take_nstring(c, e, false);
                e = e->next;
        }
}

static char *section_join(struct bs_ctx *c, const char *parent, size_t index)
{
        size_t n = strlen(parent) + 24;
        char *s = malloc(n);
        if (!s) {
                c->err = -ENOMEM;
                return NULL;
        }
        if (*parent)
                snprintf(s, n, "%s.%zu", parent, index);
        else
                snprintf(s, n, "%zu", index);
        return s;
}

static void part_clear(struct imap_bodypart *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->nparts; i++)
                part_clear(&p->parts[i]);
        free(p->parts);
        if (p->message) {
                part_clear(p->message);
                free(p->message);
        }
        free(p->section);
        free(p->type);
        free(p->subtype);
        params_free(p->params, p->nparams);
        free(p->id);
        free(p->description);
        free(p->encoding);
        free(p->env_subject);
        free(p->md5);
        free(p->disposition);
        params_free(p->disp_params, p->ndisp_params);
        for (size_t i = 0; i < p->nlanguages; i++)
                free(p->languages[i]);
        free(p->languages);
        free(p->location);
}

static void parse_body(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p,
                       char *section, struct imap_bodypart *parent, unsigned depth);

static void parse_multipart(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p)
{
        p->multipart = true;
        p->lines = -1;
        size_t n = 0;
        const struct imap_value *e = v->first;
        for (; is_list(e); e = e->next)
                n++;
        p->parts = calloc(n, sizeof(*p->parts));
        if (!p->parts) {
                c->err = -ENOMEM;
                return;
        }
        p->nparts = n;
        size_t i = 0;
        for (const struct imap_value *k = v->first; i < n && !c->err; k = k->next, i++) {
                char *s = section_join(c, p->section, i + 1);
                if (!s)
                        return;
                parse_body(c, k, &p->parts[i], s, p, p->depth + 1);
        }
        if (c->err)
                return;
        /* media-subtype; NIL tolerated as "mixed", the RFC 2046 default. */
        if (!e) {
                c->err = -EPROTO;
                return;
        }
        p->type = dup_str(c, "multipart", false);
        p->subtype = take_string_or(c, e, "mixed");
        p->encoding = dup_str(c, "7bit", false);
        e = e->next;
        if (e && !c->err) {
                take_params(c, e, &p->params, &p->nparams);
                e = e->next;
        }
        if (!c->err)
                take_extensions(c, e, p, false);
}

static bool type_is(const struct imap_bodypart *p, const char *type, const char *subtype)
{
        return strcmp(p->type, type) == 0 && (!subtype || strcmp(p->subtype, subtype) == 0);
}

static void parse_single(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p)
{
        const struct imap_value *f[7];
        const struct imap_value *e = v->first;
        for (size_t i = 0; i < 7; i++, e = e ? e->next : NULL)
                f[i] = e;
        if (!f[6]) {
                c->err = -EPROTO;
                return;
        }
        p->lines = -1;
        p->type = take_string_or(c, f[0], "");
        p->subtype = take_string_or(c, f[1], "");
        if (c->err)
                return;
        /* A Content-Type without both halves (NIL, or "" from Dovecot for one
         * it can't parse) is text/plain: RFC 2045 §5.2, and Python's reading. */
        if (!p->type[0] || !p->subtype[0]) {
                free(p->type);
                free(p->subtype);
                p->type = dup_str(c, "text", false);
                p->subtype = dup_str(c, "plain", false);
                if (c->err)
                        return;
        }
        take_params(c, f[2], &p->params, &p->nparams);
        if (!c->err)
                p->id = take_nstring(c, f[3], false);
        if (!c->err)
                p->description = take_nstring(c, f[4], false);
        if (!c->err)
                p->encoding = take_string_or(c, f[5], "7bit");
        if (c->err)
                return;
        if (f[6]->type == IMAP_NUMBER)
                p->size = f[6]->num;
        else if (!is_nil(f[6])) {
                c->err = -EPROTO;
                return;
        }
        /* message/rfc822 (RFC 3501) and message/global (RFC 9051) carry the
         * inner envelope, body and line count; a server that sends such a
         * part as a basic one (no list next) is taken at its word. */
        if ((type_is(p, "message", "rfc822") || type_is(p, "message", "global")) && is_list(e)) {
                p->has_envelope = true;
                const struct imap_value *env = e;
                if (env->first && env->first->next) {
                        const struct imap_value *subj = env->first->next;
                        p->env_subject = take_nstring(c, subj, false);
                }
                e = e->next;
                if (c->err || !is_list(e)) {
                        c->err = c->err ? c->err : -EPROTO;
                        return;
                }
                p->message = calloc(1, sizeof(*p->message));
                if (!p->message) {
                        c->err = -ENOMEM;
                        return;
                }
                bool inner_multi = is_list(e->first);
                char *s =
                    inner_multi ? dup_str(c, p->section, false) : section_join(c, p->section, 1);
                if (!s)
                        return;
                parse_body(c, e, p->message, s, p, p->depth + 1);
                if (c->err)
                        return;
                e = e->next;
        }
        /* body-fld-lines: required after text and message/rfc822, but
         * missing from some servers, and sent for other types by others. A
         * number here can only be lines: md5, next, is a string or NIL. */
        if (e && e->type == IMAP_NUMBER) {
                p->lines = e->num > INT64_MAX ? INT64_MAX : (int64_t)e->num;
                e = e->next;
        }
        take_extensions(c, e, p, true);
}

/* Takes ownership of section (freed with p even on error). */
static void parse_body(struct bs_ctx *c, const struct imap_value *v, struct imap_bodypart *p,
                       char *section, struct imap_bodypart *parent, unsigned depth)
{
        p->section = section;
        p->parent = parent;
        p->depth = depth;
        p->decoded_size = -1;
        p->lines = -1;
        if (depth >= IMAP_BODY_MAX_DEPTH || !is_list(v) || !v->first) {
                c->err = -EPROTO;
                return;
        }
        if (is_list(v->first))
                parse_multipart(c, v, p);
        else
                parse_single(c, v, p);
}

int imap_bodystructure_parse(const struct imap_value *v, struct imap_bodypart **out)
{
        *out = NULL;
        if (!is_list(v) || !v->first)
                return -EPROTO;
        struct bs_ctx c = {0};
        struct imap_bodypart *root = calloc(1, sizeof(*root));
        if (!root)
                return -ENOMEM;
        char *s = dup_str(&c, is_list(v->first) ? "" : "1", false);
        if (s)
                parse_body(&c, v, root, s, NULL, 0);
        if (c.err) {
                imap_bodystructure_free(root);
                return c.err;
        }
        *out = root;
        return 0;
}

void imap_bodystructure_free(struct imap_bodypart *root)
{
        part_clear(root);
        free(root);
}

struct imap_bodypart *imap_bodypart_next(const struct imap_bodypart *p)
{
        if (!p)
                return NULL;
        if (p->nparts)
                return &p->parts[0];
        if (p->message)
                return p->message;
        for (const struct imap_bodypart *q = p; q->parent; q = q->parent) {
                const struct imap_bodypart *up = q->parent;
                /* A message's inner body has no siblings. */
                if (up->message == q)
                        continue;
                size_t i = (size_t)(q - up->parts);
                if (i + 1 < up->nparts)
                        return &up->parts[i + 1];
        }
        return NULL;
}

struct imap_bodypart *imap_bodystructure_find(struct imap_bodypart *root, const char *section)
{
        if (!section)
                return NULL;
        for (struct imap_bodypart *p = root; p; p = imap_bodypart_next(p))
                if (strcmp(p->section, section) == 0)
                        return p;
        return NULL;
}

int imap_bodystructure_set_decoded_size(struct imap_bodypart *root, const char *section,
                                        uint64_t size)
{
        struct imap_bodypart *p = imap_bodystructure_find(root, section);
        if (!p)
                return -ENOENT;
        p->decoded_size = size > INT64_MAX ? INT64_MAX : (int64_t)size;
        return 0;
}

size_t imap_bodystructure_set_binary_sizes(struct imap_bodypart *root,
                                           const struct imap_value *fetch_list)
{
        static const char prefix[] = "BINARY.SIZE[";
        const size_t plen = sizeof(prefix) - 1;
        size_t n = 0;
        if (!is_list(fetch_list))
                return 0;
        for (const struct imap_value *k = fetch_list->first; k && k->next; k = k->next->next) {
                const struct imap_value *val = k->next;
                if (k->type != IMAP_ATOM || k->len < plen + 1 || strncasecmp(k->s, prefix, plen) ||
                    k->s[k->len - 1] != ']' || val->type != IMAP_NUMBER)
                        continue;
                char sec[256];
                size_t sl = k->len - plen - 1;
                if (sl >= sizeof(sec))
                        continue;
                memcpy(sec, k->s + plen, sl);
                sec[sl] = '\0';
                if (imap_bodystructure_set_decoded_size(root, sec, val->num) == 0)
                        n++;
        }
        return n;
}

bool imap_bodypart_is_leaf(const struct imap_bodypart *p)
{
        return p && !p->multipart;
}

bool imap_bodypart_is_message(const struct imap_bodypart *p)
{
        return p && p->message != NULL;
}

const char *imap_mime_param_get(const struct imap_mime_param *params, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcasecmp(params[i].name, name) == 0)
                        return params[i].value;
        return NULL;
}
