/* IMAP response framing and parsing. See parse.h for the contract; the
 * grammar follows RFC 3501 §9 but is lenient where real servers are sloppy
 * (extra or trailing spaces, lowercase keywords), and strict where leniency
 * could desynchronise the stream or read out of bounds. */
#include "imap/parse.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Framing                                                                  */

/* Longest literal spec that can end a line: '{' + 20 digits + '+' + '}'.
 * Anything with more digits would overflow uint64 anyway. */
#define FRAME_SPEC_MAX 23
/* How many bytes of an unfinished line are looked at again on the next call,
 * so that a literal spec split across two reads is still seen whole (the
 * spec, the CR and some slack to recognise over-long digit runs). */
#define FRAME_TAIL 32
#define FRAME_MAX_DIGITS 20

void imap_framer_reset(struct imap_framer *f)
{
        f->scanned = 0;
        f->literal_left = 0;
        f->line_bytes = 0;
        f->literal_total = 0;
        f->continued = false;
}

static bool frame_is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* Parses the digits of a literal spec "[0-9]+\+?" in [p, e). */
static int frame_spec_number(const char *p, const char *e, uint64_t *n)
{
        if (e > p && e[-1] == '+')
                e--;
        if (p == e || e - p > FRAME_MAX_DIGITS)
                return -EPROTO;
        uint64_t v = 0;
        for (; p < e; p++) {
                if (!frame_is_digit(*p))
                        return -EPROTO;
                unsigned d = (unsigned)(*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EPROTO;
                v = v * 10 + d;
        }
        *n = v;
        return 0;
}

/* Decides whether the line segment buf[lo..eol) (eol is the LF) ends with a
 * literal spec. lo never lies before the start of the segment, so bytes of a
 * previous literal are never mistaken for part of a spec. Returns 1 and sets
 * *n for a spec, 0 for a plain line end, -EPROTO for a spec-like ending that
 * is malformed ("{12a}", "{}", digits that overflow). */
static int frame_literal_spec(const char *buf, size_t lo, size_t eol, uint64_t *n)
{
        size_t e = eol;
        if (e > lo && buf[e - 1] == '\r')
                e--;
        if (e == lo || buf[e - 1] != '}')
                return 0;
        size_t close = e - 1;
        size_t from = close - lo > FRAME_SPEC_MAX ? close - FRAME_SPEC_MAX : lo;
        size_t open = close;
        while (open > from && buf[open - 1] != '{')
                open--;
        if (open == from) {
                /* No '{' close enough. A run of digits this long can only be
                 * a spec whose number does not fit: refuse it rather than
                 * lose track of where the literal ends. */
                size_t i = close, digits = 0;
                if (i > lo && buf[i - 1] == '+')
                        i--;
                while (i > lo && frame_is_digit(buf[i - 1]) && digits <= FRAME_MAX_DIGITS) {
                        i--;
                        digits++;
                }
                return digits > FRAME_MAX_DIGITS ? -EPROTO : 0;
        }
        int r = frame_spec_number(buf + open, buf + close, n);
        return r < 0 ? r : 1;
}

/* True if the line buf[0..eol) starts a response that ends in free text and
 * so can hold no literal: a continuation "+ ...", or "tag OK|NO|BAD|BYE|PREAUTH
 * ..." with "*" or any tag (RFC 3501 resp-cond-state, resp-cond-bye,
 * resp-cond-auth; they end in resp-text). "* 3 OK" and "* OKAY" are not. */
static bool frame_is_text_line(const char *buf, size_t eol)
{
        static const char *const status[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};
        if (eol > 0 && buf[0] == '+')
                return true;
        size_t i = 0;
        while (i < eol && buf[i] != ' ')
                i++;
        if (i == 0 || i == eol)
                return false;
        while (i < eol && buf[i] == ' ')
                i++;
        size_t w = i;
        while (i < eol && ((buf[i] >= 'A' && buf[i] <= 'Z') || (buf[i] >= 'a' && buf[i] <= 'z')))
                i++;
        /* The keyword ends where the parser's does: at a space, a '[' or the line end. */
        if (i < eol && buf[i] != ' ' && buf[i] != '[' && buf[i] != '\r')
                return false;
        for (size_t k = 0; k < sizeof(status) / sizeof(status[0]); k++)
                if (strlen(status[k]) == i - w && strncasecmp(buf + w, status[k], i - w) == 0)
                        return true;
        return false;
}

ssize_t imap_frame(struct imap_framer *f, const char *buf, size_t len, uint64_t max_literal)
{
        size_t pos = f->scanned;

        if (len < pos)
                return -EINVAL;
        for (;;) {
                if (f->literal_left) {
                        size_t avail = len - pos;
                        if ((uint64_t)avail < f->literal_left) {
                                f->literal_left -= avail;
                                f->scanned = len;
                                return 0;
                        }
                        pos += (size_t)f->literal_left;
                        f->literal_left = 0;
                }
                const char *nl = pos < len ? memchr(buf + pos, '\n', len - pos) : NULL;
                if (!nl) {
                        size_t keep = len - pos > FRAME_TAIL ? len - FRAME_TAIL : pos;
                        f->line_bytes += keep - pos;
                        f->scanned = keep;
                        if (f->line_bytes + (len - keep) > IMAP_MAX_LINE)
                                return -E2BIG;
                        return 0;
                }
                size_t eol = (size_t)(nl - buf);
                f->line_bytes += eol + 1 - pos;
                if (f->line_bytes > IMAP_MAX_LINE)
                        return -E2BIG;
                uint64_t n = 0;
                int r = f->continued || !frame_is_text_line(buf, eol)
                            ? frame_literal_spec(buf, pos, eol, &n)
                            : 0;
                if (r < 0)
                        return r;
                if (r == 0) {
                        imap_framer_reset(f);
                        return (ssize_t)(eol + 1);
                }
                if (n > max_literal || f->literal_total + n > max_literal)
                        return -E2BIG;
                f->literal_total += n;
                f->literal_left = n;
                f->continued = true;
                pos = eol + 1;
        }
}

/* ------------------------------------------------------------------------ */
/* Arena: every node and string of one response lives in a few big chunks, so
 * a response is freed in one walk and parsing costs few mallocs. */

struct arena_chunk {
        struct arena_chunk *next;
        size_t used, cap;
        max_align_t data[];
};

#define ARENA_MIN_CHUNK (16u * 1024)
#define ARENA_MAX_GROW (1u << 20)

static struct arena_chunk *arena_chunk_new(size_t cap)
{
        if (cap > SIZE_MAX - sizeof(struct arena_chunk))
                return NULL;
        struct arena_chunk *ch = malloc(sizeof(*ch) + cap);
        if (!ch)
                return NULL;
        ch->next = NULL;
        ch->used = 0;
        ch->cap = cap;
        return ch;
}

struct pctx {
        const char *p, *end;
        struct arena_chunk *first, *cur;
        /* A '[' before this point has no ']' on its line: remembering it keeps
         * a line full of '[' linear instead of quadratic. */
        const char *nobracket_until;
        bool in_code; /* inside "[CODE ...]": ']' ends atoms and the value run */
};

static void *arena_alloc(struct pctx *c, size_t size, size_t align)
{
        struct arena_chunk *ch = c->cur;
        size_t off = (ch->used + align - 1) & ~(align - 1);
        if (off > ch->cap || ch->cap - off < size) {
                size_t grow = ch->cap < ARENA_MAX_GROW ? ch->cap * 2 : ARENA_MAX_GROW;
                if (grow < ARENA_MIN_CHUNK)
                        grow = ARENA_MIN_CHUNK;
                struct arena_chunk *n = arena_chunk_new(size > grow ? size : grow);
                if (!n)
                        return NULL;
                /* Keep the first chunk first: it holds the response itself. */
                n->next = c->first->next;
                c->first->next = n;
                c->cur = ch = n;
                off = 0;
        }
        ch->used = off + size;
        return (char *)ch->data + off;
}

static char *arena_strndup(struct pctx *c, const char *s, size_t len)
{
        if (len == SIZE_MAX)
                return NULL;
        char *d = arena_alloc(c, len + 1, 1);
        if (!d)
                return NULL;
        if (len)
                memcpy(d, s, len);
        d[len] = '\0';
        return d;
}

static char *arena_upper(struct pctx *c, const char *s, size_t len)
{
        char *d = arena_strndup(c, s, len);
        if (d)
                for (size_t i = 0; i < len; i++)
                        if (d[i] >= 'a' && d[i] <= 'z')
                                d[i] = (char)(d[i] - 'a' + 'A');
        return d;
}

static struct imap_value *value_new(struct pctx *c, enum imap_vtype type)
{
        struct imap_value *v = arena_alloc(c, sizeof(*v), alignof(struct imap_value));
        if (v) {
                memset(v, 0, sizeof(*v));
                v->type = type;
        }
        return v;
}

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */

static bool at_eol(const struct pctx *c)
{
        return c->p == c->end || *c->p == '\r' || *c->p == '\n';
}

static void skip_spaces(struct pctx *c)
{
        while (c->p < c->end && *c->p == ' ')
                c->p++;
}

/* ATOM-CHAR, widened: flags need '\', LIST wildcards '%' and '*', and servers
 * put 8-bit bytes in atoms. ']' is only special inside a response code. */
static bool atom_char(unsigned char u, bool in_code)
{
        if (u <= 0x20 || u == 0x7f)
                return false;
        switch (u) {
        case '(':
        case ')':
        case '{':
        case '"':
                return false;
        case ']':
                return !in_code;
        default:
                return true;
        }
}

/* Where the current line ends (CR, LF or the end of input). A NUL before it
 * is an error: no part of a response outside a literal may contain one. */
static int line_end(const struct pctx *c, const char *from, const char **eol)
{
        const char *q = from;
        while (q < c->end && *q != '\r' && *q != '\n') {
                if (*q == '\0')
                        return -EPROTO;
                q++;
        }
        *eol = q;
        return 0;
}

/* Fetch items carry a section in brackets that may hold spaces, parentheses
 * and quotes ("BODY[HEADER.FIELDS (DATE SUBJECT)]<0>"): the whole thing is
 * one atom. A '[' with no ']' later on its line is an ordinary atom char. */
static const char *atom_section_end(struct pctx *c, const char *open)
{
        if (open < c->nobracket_until)
                return NULL;
        const char *q = open + 1;
        while (q < c->end && *q != ']' && *q != '\r' && *q != '\n' && *q != '\0')
                q++;
        if (q < c->end && *q == ']')
                return q + 1;
        c->nobracket_until = q;
        return NULL;
}

static int parse_atom(struct pctx *c, struct imap_value **out)
{
        const char *start = c->p, *q = c->p;
        while (q < c->end) {
                unsigned char u = (unsigned char)*q;
                if (u == '[') {
                        const char *after = atom_section_end(c, q);
                        q = after ? after : q + 1;
                        continue;
                }
                if (!atom_char(u, c->in_code))
                        break;
                q++;
        }
        size_t len = (size_t)(q - start);
        if (len == 0)
                return -EPROTO; /* a control byte or stray special: never loop on it */
        c->p = q;

        enum imap_vtype type = IMAP_ATOM;
        uint64_t num = 0;
        if (len == 3 && strncasecmp(start, "NIL", 3) == 0) {
                type = IMAP_NIL;
        } else if (len <= FRAME_MAX_DIGITS) {
                /* Digits that overflow uint64 stay an atom. */
                type = IMAP_NUMBER;
                for (size_t i = 0; i < len && type == IMAP_NUMBER; i++) {
                        unsigned d = (unsigned)(start[i] - '0');
                        if (d > 9 || num > (UINT64_MAX - d) / 10)
                                type = IMAP_ATOM;
                        else
                                num = num * 10 + d;
                }
        }
        struct imap_value *v = value_new(c, type);
        if (!v || !(v->s = arena_strndup(c, start, len)))
                return -ENOMEM;
        v->len = len;
        v->num = type == IMAP_NUMBER ? num : 0;
        *out = v;
        return 0;
}

static int parse_quoted(struct pctx *c, struct imap_value **out)
{
        /* First pass: find the closing quote and the unescaped length. */
        const char *q = c->p + 1;
        size_t len = 0;
        for (;;) {
                if (q == c->end)
                        return -EPROTO;
                char ch = *q;
                if (ch == '"')
                        break;
                if (ch == '\\') {
                        if (++q == c->end)
                                return -EPROTO;
                        ch = *q;
                }
                if (ch == '\r' || ch == '\n' || ch == '\0')
                        return -EPROTO;
                len++;
                q++;
        }
        struct imap_value *v = value_new(c, IMAP_STRING);
        char *d = v ? arena_alloc(c, len + 1, 1) : NULL;
        if (!d)
                return -ENOMEM;
        size_t i = 0;
        for (const char *s = c->p + 1; s < q; s++) {
                /* RFC 3501 escapes only '"' and '\'; any other escaped byte
                 * is taken as itself, as most clients do. */
                if (*s == '\\')
                        s++;
                d[i++] = *s;
        }
        d[i] = '\0';
        v->s = d;
        v->len = len;
        c->p = q + 1;
        *out = v;
        return 0;
}

/* "{n}" or "{n+}", CRLF (or LF), then n raw bytes. The caller has checked that
 * c->p points at '{'. */
static int parse_literal(struct pctx *c, struct imap_value **out)
{
        const char *q = c->p + 1;
        uint64_t n = 0;
        int digits = 0;
        while (q < c->end && frame_is_digit(*q)) {
                unsigned d = (unsigned)(*q - '0');
                if (n > (UINT64_MAX - d) / 10)
                        return -EPROTO;
                n = n * 10 + d;
                digits++;
                q++;
        }
        if (!digits)
                return -EPROTO;
        if (q < c->end && *q == '+')
                q++;
        if (q == c->end || *q++ != '}')
                return -EPROTO;
        if (q < c->end && *q == '\r')
                q++;
        if (q == c->end || *q++ != '\n')
                return -EPROTO;
        if (n > (uint64_t)(c->end - q))
                return -EPROTO; /* announced more than the response holds */
        struct imap_value *v = value_new(c, IMAP_STRING);
        if (!v || !(v->s = arena_strndup(c, q, (size_t)n)))
                return -ENOMEM;
        v->len = (size_t)n;
        c->p = q + n;
        *out = v;
        return 0;
}

static int parse_scalar(struct pctx *c, struct imap_value **out)
{
        char ch = *c->p;
        if (ch == '"')
                return parse_quoted(c, out);
        if (ch == '{')
                return parse_literal(c, out);
        if (ch == '~' && c->end - c->p > 1 && c->p[1] == '{') {
                /* literal8 (RFC 3516), as sent for BINARY[...] */
                c->p++;
                return parse_literal(c, out);
        }
        return parse_atom(c, out);
}

/* Parses a run of values up to the end of the line or, in a response code, up
 * to the ']' that closes it (left unconsumed). Nesting is tracked with an
 * explicit stack bounded by IMAP_MAX_DEPTH, so hostile input cannot recurse. */
static int parse_values(struct pctx *c, struct imap_value **head)
{
        struct imap_value **tail[IMAP_MAX_DEPTH + 1];
        unsigned depth = 0;

        *head = NULL;
        tail[0] = head;
        for (;;) {
                skip_spaces(c);
                if (at_eol(c))
                        return depth || c->in_code ? -EPROTO : 0;
                char ch = *c->p;
                if (ch == ')') {
                        if (!depth)
                                return -EPROTO;
                        depth--;
                        c->p++;
                        continue;
                }
                if (ch == ']' && c->in_code)
                        return depth ? -EPROTO : 0;
                struct imap_value *v;
                if (ch == '(') {
                        if (depth == IMAP_MAX_DEPTH)
                                return -EPROTO;
                        if (!(v = value_new(c, IMAP_LIST)))
                                return -ENOMEM;
                        c->p++;
                } else {
                        int r = parse_scalar(c, &v);
                        if (r < 0)
                                return r;
                }
                *tail[depth] = v;
                tail[depth] = &v->next;
                if (v->type == IMAP_LIST) {
                        depth++;
                        tail[depth] = &v->first;
                }
        }
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */

static const struct {
        const char *name;
        enum imap_status status;
} status_names[] = {
    {"OK", IMAP_ST_OK},   {"NO", IMAP_ST_NO},           {"BAD", IMAP_ST_BAD},
    {"BYE", IMAP_ST_BYE}, {"PREAUTH", IMAP_ST_PREAUTH},
};

static enum imap_status status_of(const char *name)
{
        for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
                if (strcmp(name, status_names[i].name) == 0)
                        return status_names[i].status;
        return IMAP_ST_NONE;
}

/* The response keyword: a run of atom chars without brackets. */
static int parse_name(struct pctx *c, struct imap_response *r)
{
        const char *start = c->p;
        while (c->p < c->end && *c->p != '[' && atom_char((unsigned char)*c->p, true))
                c->p++;
        if (c->p == start)
                return -EPROTO;
        r->name = arena_upper(c, start, (size_t)(c->p - start));
        return r->name ? 0 : -ENOMEM;
}

/* "[CODE args]": args are parsed as values when they can be; an unknown code
 * may carry arbitrary text (RFC 3501 resp-text-code), which is then kept raw
 * as one IMAP_STRING. A '[' without ']' on the line, or "[]", is not a code:
 * the caller keeps it as text. Returns 1 if a code was parsed. */
static int parse_code(struct pctx *c, struct imap_response *r)
{
        const char *open = c->p, *eol, *q;
        int err = line_end(c, open, &eol);
        if (err < 0)
                return err;
        const char *close = memchr(open, ']', (size_t)(eol - open));
        if (!close)
                return 0;
        for (q = open + 1; q < close && *q != ' '; q++)
                ;
        if (q == open + 1)
                return 0;
        for (const char *s = open + 1; s < q; s++)
                if (!atom_char((unsigned char)*s, true) || *s == '[')
                        return 0;
        if (!(r->code = arena_upper(c, open + 1, (size_t)(q - open - 1))))
                return -ENOMEM;
        c->p = q;
        if (q == close) {
                c->p = close + 1;
                return 1;
        }
        c->in_code = true;
        err = parse_values(c, &r->code_args);
        c->in_code = false;
        if (err == -ENOMEM)
                return err;
        if (err == 0 && c->p < c->end && *c->p == ']') {
                c->p++;
                return 1;
        }
        /* Not values: keep the raw text (nodes already made stay in the
         * arena unused, which is harmless). */
        while (q < close && *q == ' ')
                q++;
        struct imap_value *v = value_new(c, IMAP_STRING);
        if (!v || !(v->s = arena_strndup(c, q, (size_t)(close - q))))
                return -ENOMEM;
        v->len = (size_t)(close - q);
        r->code_args = v;
        c->p = close + 1;
        return 1;
}

/* resp-text: optional "[CODE args]", then free text to the end of the line. */
static int parse_resp_text(struct pctx *c, struct imap_response *r)
{
        skip_spaces(c);
        if (c->p < c->end && *c->p == '[') {
                int err = parse_code(c, r);
                if (err < 0)
                        return err;
                skip_spaces(c);
        }
        const char *eol;
        int err = line_end(c, c->p, &eol);
        if (err < 0)
                return err;
        if (!(r->text = arena_strndup(c, c->p, (size_t)(eol - c->p))))
                return -ENOMEM;
        c->p = eol;
        return 0;
}

static int parse_untagged(struct pctx *c, struct imap_response *r)
{
        if (c->p < c->end && frame_is_digit(*c->p)) {
                uint64_t n = 0;
                while (c->p < c->end && frame_is_digit(*c->p)) {
                        n = n * 10 + (uint64_t)(*c->p - '0');
                        if (n > UINT32_MAX)
                                return -EPROTO;
                        c->p++;
                }
                if (c->p == c->end || *c->p != ' ')
                        return -EPROTO;
                skip_spaces(c);
                r->has_number = true;
                r->number = (uint32_t)n;
        }
        int err = parse_name(c, r);
        if (err < 0)
                return err;
        if (!r->has_number)
                r->status = status_of(r->name);
        if (r->status != IMAP_ST_NONE)
                return parse_resp_text(c, r);
        return parse_values(c, &r->args);
}

static int parse_response(struct pctx *c, struct imap_response *r)
{
        int err;

        if (c->p == c->end)
                return -EPROTO;
        if (*c->p == '+') {
                r->kind = IMAP_RESP_CONTINUATION;
                c->p++;
                if (!(r->name = arena_strndup(c, "", 0)))
                        return -ENOMEM;
                err = parse_resp_text(c, r);
        } else if (*c->p == '*') {
                r->kind = IMAP_RESP_UNTAGGED;
                c->p++;
                if (c->p == c->end || *c->p != ' ')
                        return -EPROTO;
                skip_spaces(c);
                err = parse_untagged(c, r);
        } else {
                r->kind = IMAP_RESP_TAGGED;
                const char *start = c->p;
                while (c->p < c->end && (unsigned char)*c->p > 0x20 && *c->p != 0x7f)
                        c->p++;
                if (c->p == start || c->p == c->end || *c->p != ' ')
                        return -EPROTO;
                if (!(r->tag = arena_strndup(c, start, (size_t)(c->p - start))))
                        return -ENOMEM;
                skip_spaces(c);
                if ((err = parse_name(c, r)) < 0)
                        return err;
                /* Only a status can complete a command. */
                if ((r->status = status_of(r->name)) == IMAP_ST_NONE)
                        return -EPROTO;
                err = parse_resp_text(c, r);
        }
        if (err < 0)
                return err;
        /* Exactly one line end may follow; anything else means the framing
         * and the grammar disagree (e.g. a literal where none is allowed). */
        if (c->p < c->end && *c->p == '\r')
                c->p++;
        if (c->p < c->end && *c->p == '\n')
                c->p++;
        return c->p == c->end ? 0 : -EPROTO;
}

int imap_parse(const char *buf, size_t len, struct imap_response **out)
{
        *out = NULL;
        if (!buf || len == 0)
                return -EPROTO;
        /* Sized so that the usual response, even one big literal, fits in the
         * first chunk: one malloc, one memcpy of the literal. */
        if (len > SIZE_MAX / 4)
                return -ENOMEM;
        size_t cap = sizeof(struct imap_response) + len + len / 4 + 512;
        struct pctx c = {.p = buf, .end = buf + len};
        c.first = c.cur = arena_chunk_new(cap);
        if (!c.first)
                return -ENOMEM;
        struct imap_response *r = arena_alloc(&c, sizeof(*r), alignof(struct imap_response));
        memset(r, 0, sizeof(*r));
        r->arena = c.first;
        int err = parse_response(&c, r);
        if (err == 0 && !r->text && !(r->text = arena_strndup(&c, "", 0)))
                err = -ENOMEM;
        if (err < 0) {
                imap_response_free(r);
                return err;
        }
        *out = r;
        return 0;
}

void imap_response_free(struct imap_response *r)
{
        if (!r)
                return;
        struct arena_chunk *ch = r->arena;
        while (ch) {
                struct arena_chunk *next = ch->next;
                free(ch);
                ch = next;
        }
}

/* ------------------------------------------------------------------------ */
/* Walking values                                                           */

bool imap_value_is(const struct imap_value *v, const char *atom)
{
        if (!v || !atom || (v->type != IMAP_ATOM && v->type != IMAP_NUMBER && v->type != IMAP_NIL))
                return false;
        size_t n = strlen(atom);
        return v->len == n && strncasecmp(v->s, atom, n) == 0;
}

size_t imap_list_count(const struct imap_value *list)
{
        size_t n = 0;
        if (list && list->type == IMAP_LIST)
                for (const struct imap_value *v = list->first; v; v = v->next)
                        n++;
        return n;
}

size_t imap_values_join(const struct imap_value *first, const char *skip, char *out, size_t cap)
{
        size_t o = 0;
        if (cap == 0)
                return 0;
        out[0] = '\0';
        for (const struct imap_value *v = first; v; v = v->next) {
                if ((v->type != IMAP_ATOM && v->type != IMAP_NUMBER) ||
                    (skip && imap_value_is(v, skip)))
                        continue;
                if (o + (o ? 1 : 0) + v->len >= cap)
                        break;
                if (o)
                        out[o++] = ' ';
                memcpy(out + o, v->s, v->len);
                o += v->len;
                out[o] = '\0';
        }
        return o;
}

char *imap_values_join_alloc(const struct imap_value *first, const char *skip)
{
        size_t need = 1;
        for (const struct imap_value *v = first; v; v = v->next)
                if (v->type == IMAP_ATOM || v->type == IMAP_NUMBER)
                        need += v->len + 1;
        char *out = malloc(need);
        if (out)
                imap_values_join(first, skip, out, need);
        return out;
}

const struct imap_value *imap_fetch_item(const struct imap_value *list, const char *item)
{
        if (!list || list->type != IMAP_LIST || !item)
                return NULL;
        for (const struct imap_value *k = list->first; k && k->next; k = k->next->next)
                if (k->type == IMAP_ATOM && imap_value_is(k, item))
                        return k->next;
        return NULL;
}

const struct imap_value *imap_fetch_item_prefix(const struct imap_value *list, const char *prefix,
                                                const struct imap_value **name_out)
{
        if (name_out)
                *name_out = NULL;
        if (!list || list->type != IMAP_LIST || !prefix)
                return NULL;
        size_t n = strlen(prefix);
        for (const struct imap_value *k = list->first; k && k->next; k = k->next->next) {
                if (k->type == IMAP_ATOM && k->len >= n && strncasecmp(k->s, prefix, n) == 0) {
                        if (name_out)
                                *name_out = k;
                        return k->next;
                }
        }
        return NULL;
}
