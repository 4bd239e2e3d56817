/* Charset labels and iconv conversion to UTF-8 (see charset.h). */
#include "imap/charset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Labels whose real-world meaning is a superset charset: mail software writes
 * the narrow name and uses the wide repertoire (as browsers also assume). */
static const struct {
        const char *label, *charset;
} charset_aliases[] = {
    {"ISO-8859-1", "WINDOWS-1252"}, {"ISO8859-1", "WINDOWS-1252"}, {"ISO_8859-1", "WINDOWS-1252"},
    {"LATIN1", "WINDOWS-1252"},     {"GB2312", "GB18030"},         {"GBK", "GB18030"},
    {"X-GBK", "GB18030"},           {"EUC-CN", "GB18030"},         {"SHIFT_JIS", "WINDOWS-31J"},
    {"SHIFT-JIS", "WINDOWS-31J"},   {"SJIS", "WINDOWS-31J"},       {"X-SJIS", "WINDOWS-31J"},
    {"KS_C_5601-1987", "CP949"},    {"EUC-KR", "CP949"},           {"ISO-8859-8-I", "ISO-8859-8"},
};

bool imap_charset_normalize(const char *s, size_t len, char out[IMAP_CHARSET_MAX])
{
        if (len == 0 || len >= IMAP_CHARSET_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':' ||
                          c == '+';
                if (!ok)
                        return false;
                out[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
        }
        out[len] = '\0';
        for (size_t i = 0; i < sizeof charset_aliases / sizeof charset_aliases[0]; i++) {
                if (strcmp(out, charset_aliases[i].label) == 0) {
                        strcpy(out, charset_aliases[i].charset);
                        break;
                }
        }
        return true;
}

/* Makes room for at least need more bytes (and the NUL) after used. */
static bool grow(char **buf, size_t *cap, size_t used, size_t need)
{
        if (used + need + 1 <= *cap)
                return true;
        if (*cap > SIZE_MAX / 2)
                return false;
        size_t nc = *cap * 2;
        while (nc < used + need + 1)
                nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
                return false;
        *buf = nb;
        *cap = nc;
        return true;
}

int imap_charset_iconv(iconv_t cd, const char *in, size_t len, bool replace, char **out,
                       size_t *out_len)
{
        *out = NULL;
        *out_len = 0;
        size_t cap = len < 64 ? 256 : len * 2 + 16, used = 0;
        if (len > SIZE_MAX / 4)
                return -ENOMEM;
        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        char *ip = (char *)in;
        size_t ileft = len;
        bool flushing = false;
        for (;;) {
                char *op = buf + used;
                size_t oleft = cap - used - 1;
                size_t r = flushing ? iconv(cd, NULL, NULL, &op, &oleft)
                                    : iconv(cd, &ip, &ileft, &op, &oleft);
                int err = errno;
                used = (size_t)(op - buf);
                if (r != (size_t)-1) {
                        if (flushing)
                                break;
                        flushing = true;
                        continue;
                }
                if (err == E2BIG) {
                        if (!grow(&buf, &cap, used, cap - used))
                                goto oom;
                        continue;
                }
                if (!replace) {
                        free(buf); /* EILSEQ, or EINVAL: ends inside a character */
                        return -EILSEQ;
                }
                if (flushing)
                        break;
                if (!grow(&buf, &cap, used, 3))
                        goto oom;
                memcpy(buf + used, "\xef\xbf\xbd", 3); /* U+FFFD */
                used += 3;
                if (err == EILSEQ && ileft > 0) {
                        ip++, ileft--;
                        continue;
                }
                /* EINVAL: the input ends inside a character. */
                flushing = true;
        }
        buf[used] = '\0';
        *out = buf;
        *out_len = used;
        return 0;
oom:
        free(buf);
        return -ENOMEM;
}
