/* Part file names (see mime_name.h). Everything that leaves this file is
 * valid UTF-8 without NUL, '/' or control characters: it becomes a name the
 * kernel hands to any program. */
#include "imap/mime_name.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/mime_decode.h"
#include "imap/digits.h"
#include "imap/rfc2047.h"

#define NO_SUBJECT "(no subject)"
/* Longest extension kept when a long name is cut. */
#define EXT_KEEP_MAX 16

/* Decodes the UTF-8 character at s (valid input: it comes from
 * imap_utf8_sanitize); returns its length, 1 with UINT32_MAX for a stray byte. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
        unsigned char b = s[0];
        size_t n = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
        if (n == 0 || n > len) {
                *cp = UINT32_MAX;
                return 1;
        }
        uint32_t c = n == 1 ? b : b & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80) {
                        *cp = UINT32_MAX;
                        return 1;
                }
                c = (c << 6) | (s[i] & 0x3f);
        }
        *cp = c;
        return n;
}

static bool is_space(uint32_t c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
               c == 0x2028 || c == 0x2029;
}

/* C0, DEL and C1: invisible at best, terminal escapes at worst. */
static bool is_control(uint32_t c)
{
        return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == UINT32_MAX;
}

char *imap_name_sanitize(const char *s, size_t len, size_t max_bytes)
{
        char *valid = imap_utf8_sanitize(s ? s : "", s ? len : 0);
        if (!valid)
                return NULL;
        size_t vlen = strlen(valid);
        char *out = malloc(vlen + 1);
        if (!out) {
                free(valid);
                return NULL;
        }
        const unsigned char *u = (const unsigned char *)valid;
        size_t o = 0;
        bool space = false;
        for (size_t i = 0; i < vlen;) {
                uint32_t c;
                size_t n = utf8_next(u + i, vlen - i, &c);
                const char *bytes = valid + i;
                i += n;
                if (is_space(c)) {
                        space = o > 0;
                        continue;
                }
                if (is_control(c))
                        continue;
                if (c == '/')
                        bytes = "_";
                if (o + space + n > max_bytes)
                        break;
                if (space)
                        out[o++] = ' ';
                memcpy(out + o, bytes, n);
                o += n;
                space = false;
        }
        out[o] = '\0';
        free(valid);
        return out;
}

/* ------------------------------------------------------- RFC 2231 values */

/* Appends s to *buf (len bytes so far), %XX-decoding when pct: a '%' not
 * followed by two hex digits stays as it is. Returns false on ENOMEM. */
static bool append(char **buf, size_t *len, const char *s, bool pct)
{
        size_t n = strlen(s);
        char *nb = realloc(*buf, *len + n + 1);
        if (!nb)
                return false;
        *buf = nb;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;
                if (pct && s[i] == '%' && i + 2 < n &&
                    (hi = imap_hex_value((unsigned char)s[i + 1])) >= 0 &&
                    (lo = imap_hex_value((unsigned char)s[i + 2])) >= 0) {
                        nb[(*len)++] = (char)(hi << 4 | lo);
                        i += 2;
                } else {
                        nb[(*len)++] = s[i];
                }
        }
        nb[*len] = '\0';
        return true;
}

/* How a parameter name relates to `name`: -1 not at all, -2 plain "name",
 * -3 "name*", or the index k of "name*k" / "name*k*" (*ext set for the
 * latter). Indices are decimal without sign, below 1000 (RFC 2231 has no
 * limit; a thousand segments of a filename is already absurd). */
static int param_kind(const char *pname, const char *name, bool *ext)
{
        size_t nl = strlen(name);
        *ext = false;
        if (strncasecmp(pname, name, nl) != 0)
                return -1;
        const char *r = pname + nl;
        if (*r == '\0')
                return -2;
        if (*r != '*')
                return -1;
        r++;
        if (*r == '\0') {
                *ext = true;
                return -3;
        }
        int k = 0;
        size_t digits = 0;
        for (; *r >= '0' && *r <= '9'; r++, digits++) {
                if (digits >= 3)
                        return -1;
                k = k * 10 + (*r - '0');
        }
        if (digits == 0 || (digits > 1 && pname[nl + 1] == '0'))
                return -1;
        if (*r == '*') {
                *ext = true;
                r++;
        }
        return *r == '\0' ? k : -1;
}

/* Splits an extended first segment "charset'lang'value": copies the charset
 * into cs (empty if none) and returns the value. Without two quotes the whole
 * is the value (a sender that forgot them). */
static const char *split_charset(const char *v, char *cs, size_t cap)
{
        cs[0] = '\0';
        const char *q1 = strchr(v, '\'');
        const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        if (!q2)
                return v;
        size_t n = (size_t)(q1 - v);
        if (n < cap) {
                memcpy(cs, v, n);
                cs[n] = '\0';
        }
        return q2 + 1;
}

/* Charset bytes to valid UTF-8: converted when the charset is known and
 * honest, else taken as UTF-8 if valid, else windows-1252. */
static int to_utf8(const char *cs, const char *bytes, size_t len, char **out)
{
        char *conv;
        size_t clen;
        int err = imap_charset_to_utf8(cs[0] ? cs : NULL, bytes, len, &conv, &clen);
        if (err)
                return err;
        *out = imap_utf8_sanitize(conv, clen);
        free(conv);
        return *out ? 0 : -ENOMEM;
}

#define SEG_MAX 1000

int imap_mime_param_decode(const struct imap_mime_param *params, size_t n, const char *name,
                           char **out)
{
        *out = NULL;
        const char *plain = NULL, *extended = NULL;
        const struct imap_mime_param *segs[SEG_MAX] = {0};
        bool seg_ext[SEG_MAX] = {0};
        bool any_seg = false;
        for (size_t i = 0; i < n; i++) {
                bool ext;
                int k = param_kind(params[i].name, name, &ext);
                if (k == -2 && !plain)
                        plain = params[i].value;
                else if (k == -3 && !extended)
                        extended = params[i].value;
                else if (k >= 0 && !segs[k]) {
                        segs[k] = &params[i];
                        seg_ext[k] = ext;
                        any_seg = true;
                }
        }
        char cs[64];
        if (extended) {
                const char *v = split_charset(extended, cs, sizeof cs);
                char *bytes = NULL;
                size_t blen = 0;
                if (!append(&bytes, &blen, v, true)) {
                        free(bytes);
                        return -ENOMEM;
                }
                int err = to_utf8(cs, bytes, blen, out);
                free(bytes);
                return err;
        }
        if (any_seg && segs[0]) {
                char *bytes = NULL;
                size_t blen = 0;
                bool ext_any = false;
                cs[0] = '\0';
                for (int k = 0; k < SEG_MAX && segs[k]; k++) {
                        const char *v = segs[k]->value;
                        if (k == 0 && seg_ext[0])
                                v = split_charset(v, cs, sizeof cs);
                        ext_any |= seg_ext[k];
                        if (!append(&bytes, &blen, v, seg_ext[k])) {
                                free(bytes);
                                return -ENOMEM;
                        }
                }
                int err;
                if (ext_any) {
                        err = to_utf8(cs, bytes, blen, out);
                } else {
                        /* Plain continuations: what a plain value may hold. */
                        *out = imap_rfc2047_decode(bytes, blen);
                        err = *out ? 0 : -ENOMEM;
                }
                free(bytes);
                return err;
        }
        if (plain) {
                *out = imap_rfc2047_decode(plain, strlen(plain));
                return *out ? 0 : -ENOMEM;
        }
        return 0;
}

int imap_mime_filename(const struct imap_bodypart *p, char **out)
{
        *out = NULL;
        char *raw = NULL;
        int err = imap_mime_param_decode(p->disp_params, p->ndisp_params, "filename", &raw);
        if (!err && !raw)
                err = imap_mime_param_decode(p->params, p->nparams, "name", &raw);
        if (err || !raw)
                return err;
        char *clean = imap_name_sanitize(raw, strlen(raw), SIZE_MAX);
        free(raw);
        if (!clean)
                return -ENOMEM;
        if (!clean[0]) {
                free(clean);
                return 0;
        }
        *out = clean;
        return 0;
}

/* ------------------------------------------------------------ extensions */

static const struct {
        const char *type, *subtype, *ext;
} ext_table[] = {
    {"text", "plain", "txt"},
    {"text", "html", "html"},
    {"text", "calendar", "ics"},
    {"text", "csv", "csv"},
    {"text", "xml", "xml"},
    {"text", "css", "css"},
    {"text", "javascript", "js"},
    {"text", "markdown", "md"},
    {"text", "rtf", "rtf"},
    {"text", "richtext", "rtx"},
    {"text", "enriched", "txt"},
    {"text", "vcard", "vcf"},
    {"text", "x-vcard", "vcf"},
    {"text", "directory", "vcf"},
    {"text", "x-patch", "patch"},
    {"text", "x-diff", "diff"},
    {"text", "x-python", "py"},
    {"text", "x-csrc", "c"},
    {"application", "pdf", "pdf"},
    {"application", "zip", "zip"},
    {"application", "x-zip-compressed", "zip"},
    {"application", "gzip", "gz"},
    {"application", "x-gzip", "gz"},
    {"application", "x-tar", "tar"},
    {"application", "x-bzip2", "bz2"},
    {"application", "x-xz", "xz"},
    {"application", "x-7z-compressed", "7z"},
    {"application", "vnd.rar", "rar"},
    {"application", "x-rar-compressed", "rar"},
    {"application", "json", "json"},
    {"application", "xml", "xml"},
    {"application", "javascript", "js"},
    {"application", "rtf", "rtf"},
    {"application", "msword", "doc"},
    {"application", "vnd.ms-excel", "xls"},
    {"application", "vnd.ms-powerpoint", "ppt"},
    {"application", "vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"},
    {"application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
    {"application", "vnd.openxmlformats-officedocument.presentationml.presentation", "pptx"},
    {"application", "vnd.oasis.opendocument.text", "odt"},
    {"application", "vnd.oasis.opendocument.spreadsheet", "ods"},
    {"application", "vnd.oasis.opendocument.presentation", "odp"},
    {"application", "ics", "ics"},
    {"application", "pgp-signature", "asc"},
    {"application", "pgp-encrypted", "asc"},
    {"application", "pgp-keys", "asc"},
    {"application", "pkcs7-signature", "p7s"},
    {"application", "x-pkcs7-signature", "p7s"},
    {"application", "pkcs7-mime", "p7m"},
    {"application", "x-pkcs7-mime", "p7m"},
    {"application", "ms-tnef", "dat"},
    {"application", "vnd.ms-tnef", "dat"},
    {"application", "x-sh", "sh"},
    {"application", "postscript", "ps"},
    {"application", "octet-stream", "bin"},
    {"image", "jpeg", "jpg"},
    {"image", "jpg", "jpg"},
    {"image", "pjpeg", "jpg"},
    {"image", "png", "png"},
    {"image", "gif", "gif"},
    {"image", "bmp", "bmp"},
    {"image", "tiff", "tif"},
    {"image", "svg+xml", "svg"},
    {"image", "webp", "webp"},
    {"image", "heic", "heic"},
    {"image", "x-icon", "ico"},
    {"image", "vnd.microsoft.icon", "ico"},
    {"audio", "mpeg", "mp3"},
    {"audio", "ogg", "ogg"},
    {"audio", "wav", "wav"},
    {"audio", "x-wav", "wav"},
    {"audio", "mp4", "m4a"},
    {"video", "mp4", "mp4"},
    {"video", "mpeg", "mpg"},
    {"video", "quicktime", "mov"},
    {"video", "webm", "webm"},
    {"message", "rfc822", "eml"},
    {"message", "global", "eml"},
    {"message", "delivery-status", "txt"},
    {"message", "global-delivery-status", "txt"},
    {"message", "disposition-notification", "txt"},
    {"message", "feedback-report", "txt"},
    {"message", "rfc822-headers", "txt"},
    {"text", "rfc822-headers", "txt"},
    {"text", NULL, "txt"}, /* any other text */
};

const char *imap_mime_extension(const char *type, const char *subtype)
{
        if (!type || !subtype)
                return "bin";
        for (size_t i = 0; i < sizeof(ext_table) / sizeof(ext_table[0]); i++)
                if (strcmp(type, ext_table[i].type) == 0 &&
                    (!ext_table[i].subtype || strcmp(subtype, ext_table[i].subtype) == 0))
                        return ext_table[i].ext;
        return "bin";
}

/* ------------------------------------------------------ header strings */

static bool needs_quotes(const char *v)
{
        if (!*v)
                return true;
        for (const unsigned char *u = (const unsigned char *)v; *u; u++)
                if (*u <= ' ' || *u == 0x7f || strchr("()<>@,;:\\\"/[]?=", *u))
                        return true;
        return false;
}

/* head, then "; name=value" for each parameter. */
static char *header_string(const char *head, const struct imap_mime_param *ps, size_t n)
{
        size_t cap = strlen(head) + 1;
        for (size_t i = 0; i < n; i++)
                cap += 4 + strlen(ps[i].name) + 2 * strlen(ps[i].value) + 2;
        char *out = malloc(cap);
        if (!out)
                return NULL;
        size_t o = strlen(head);
        memcpy(out, head, o);
        for (size_t i = 0; i < n; i++) {
                out[o++] = ';';
                out[o++] = ' ';
                size_t nl = strlen(ps[i].name);
                memcpy(out + o, ps[i].name, nl);
                o += nl;
                out[o++] = '=';
                bool q = needs_quotes(ps[i].value);
                if (q)
                        out[o++] = '"';
                for (const char *v = ps[i].value; *v; v++) {
                        if (q && (*v == '"' || *v == '\\'))
                                out[o++] = '\\';
                        out[o++] = *v;
                }
                if (q)
                        out[o++] = '"';
        }
        out[o] = '\0';
        return out;
}

char *imap_mime_content_type(const struct imap_bodypart *p)
{
        size_t n = strlen(p->type) + strlen(p->subtype) + 2;
        char *head = malloc(n);
        if (!head)
                return NULL;
        snprintf(head, n, "%s/%s", p->type, p->subtype);
        char *out = header_string(head, p->params, p->nparams);
        free(head);
        return out;
}

char *imap_mime_content_disposition(const struct imap_bodypart *p)
{
        errno = 0;
        if (!p->disposition)
                return NULL;
        return header_string(p->disposition, p->disp_params, p->ndisp_params);
}

/* ------------------------------------------------------------ file names */

/* Joins prefix and name into at most IMAP_NAME_MAX bytes; when name must be
 * cut, its extension (from the last '.', at most EXT_KEEP_MAX bytes, not the
 * whole name) is kept and the cut made before it at a character boundary. */
static char *join_cut(const char *prefix, const char *name)
{
        size_t pl = strlen(prefix), nl = strlen(name);
        char *out = malloc(IMAP_NAME_MAX + 1);
        if (!out)
                return NULL;
        size_t room = pl < IMAP_NAME_MAX ? IMAP_NAME_MAX - pl : 0;
        memcpy(out, prefix, pl < IMAP_NAME_MAX ? pl : IMAP_NAME_MAX);
        size_t o = pl < IMAP_NAME_MAX ? pl : IMAP_NAME_MAX;
        if (nl <= room) {
                memcpy(out + o, name, nl);
                out[o + nl] = '\0';
                return out;
        }
        const char *dot = strrchr(name, '.');
        size_t el = dot && dot != name ? nl - (size_t)(dot - name) : 0;
        if (el > EXT_KEEP_MAX || el >= room)
                el = 0;
        size_t stem = room - el;
        /* back off to a character boundary: never split a UTF-8 sequence */
        while (stem > 0 && ((unsigned char)name[stem] & 0xc0) == 0x80)
                stem--;
        memcpy(out + o, name, stem);
        o += stem;
        memcpy(out + o, name + nl - el, el);
        o += el;
        out[o] = '\0';
        return out;
}

char *imap_mime_part_filename(const struct imap_bodypart *p)
{
        if (!p || p->multipart)
                return NULL;
        size_t sl = strlen(p->section);
        /* Room for the section, a separator and an extension: a section
         * longer (only absurd nesting makes one) can't be named uniquely. */
        if (sl + 1 + EXT_KEEP_MAX > IMAP_NAME_MAX) {
                errno = ENAMETOOLONG;
                return NULL;
        }
        char *prefix = malloc(sl + 2);
        if (!prefix)
                return NULL;
        memcpy(prefix, p->section, sl);
        prefix[sl] = '-';
        prefix[sl + 1] = '\0';
        char *result = NULL;
        if (strcmp(p->type, "message") == 0 &&
            (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0)) {
                char *subj = NULL;
                if (p->env_subject) {
                        char *dec = imap_rfc2047_decode(p->env_subject, strlen(p->env_subject));
                        if (!dec)
                                goto out;
                        subj = imap_name_sanitize(dec, strlen(dec), SIZE_MAX);
                        free(dec);
                        if (!subj)
                                goto out;
                }
                const char *s = subj && subj[0] ? subj : NO_SUBJECT;
                size_t n = strlen(s);
                char *full = malloc(n + 5);
                if (full) {
                        memcpy(full, s, n);
                        memcpy(full + n, ".eml", 5);
                        result = join_cut(prefix, full);
                        free(full);
                }
                free(subj);
                goto out;
        }
        char *fname = NULL;
        if (imap_mime_filename(p, &fname))
                goto out;
        if (fname) {
                result = join_cut(prefix, fname);
                free(fname);
                goto out;
        }
        const char *ext = imap_mime_extension(p->type, p->subtype);
        size_t n = sl + 1 + strlen(ext) + 1;
        result = malloc(n);
        if (result)
                snprintf(result, n, "%s.%s", p->section, ext);
out:
        free(prefix);
        return result;
}

/* -------------------------------------------------------------- the text */

static bool is_attachment(const struct imap_bodypart *p)
{
        return p->disposition && strcmp(p->disposition, "attachment") == 0;
}

static bool is_type(const struct imap_bodypart *p, const char *type, const char *subtype)
{
        return p && strcmp(p->type, type) == 0 && strcmp(p->subtype, subtype) == 0;
}

/* Walks as Python's _find_body: sets *html to the first text/html leaf seen
 * and returns the first text/plain one (which ends the walk). */
static const struct imap_bodypart *text_find(const struct imap_bodypart *p,
                                             const struct imap_bodypart **html)
{
        if (is_attachment(p))
                return NULL;
        if (!p->multipart) {
                if (is_type(p, "text", "plain"))
                        return p;
                if (is_type(p, "text", "html") && !*html)
                        *html = p;
                return NULL;
        }
        if (strcmp(p->subtype, "related") == 0) {
                /* Only its root: the "start" part, else the first. */
                const char *start = imap_mime_param_get(p->params, p->nparams, "start");
                const struct imap_bodypart *root = NULL;
                for (size_t i = 0; start && i < p->nparts && !root; i++)
                        if (p->parts[i].id && strcmp(p->parts[i].id, start) == 0)
                                root = &p->parts[i];
                if (!root)
                        root = &p->parts[0];
                return text_find(root, html);
        }
        for (size_t i = 0; i < p->nparts; i++) {
                const struct imap_bodypart *t = text_find(&p->parts[i], html);
                if (t)
                        return t;
        }
        return NULL;
}

const struct imap_bodypart *imap_mime_text_part(const struct imap_bodypart *root)
{
        if (!root)
                return NULL;
        const struct imap_bodypart *html = NULL;
        const struct imap_bodypart *plain = text_find(root, &html);
        return plain ? plain : html;
}
