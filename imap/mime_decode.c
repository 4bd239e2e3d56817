/* Streaming base64 / quoted-printable decoders and charset conversion (see
 * mime_decode.h for exactly which bytes come out and why). */
#include "imap/mime_decode.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/charset.h"
#include "imap/digits.h"

enum imap_cte imap_cte_from_name(const char *name)
{
        static const struct {
                const char *name;
                enum imap_cte cte;
        } table[] = {
            {"base64", IMAP_CTE_BASE64},
            {"quoted-printable", IMAP_CTE_QP},
        };
        if (!name)
                return IMAP_CTE_IDENTITY;
        while (*name == ' ' || *name == '\t')
                name++;
        size_t len = strlen(name);
        while (len && (name[len - 1] == ' ' || name[len - 1] == '\t'))
                len--;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (strlen(table[i].name) == len && strncasecmp(name, table[i].name, len) == 0)
                        return table[i].cte;
        return IMAP_CTE_IDENTITY;
}

void imap_decoder_init(struct imap_decoder *d, enum imap_cte cte)
{
        memset(d, 0, sizeof(*d));
        d->cte = cte;
}

static size_t b64_feed(struct imap_decoder *d, const unsigned char *in, size_t len,
                       unsigned char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < len && !d->done; i++) {
                unsigned char c = in[i];
                if (c == '=') {
                        /* Padding only counts after two or three data
                         * characters; a complete pad ends the data. */
                        if (d->quad_pos >= 2 && d->quad_pos + ++d->pads >= 4)
                                d->done = true;
                        continue;
                }
                int iv = imap_b64_value(c, '/');
                if (iv < 0)
                        continue; /* line ends, spaces, stray bytes */
                unsigned v = (unsigned)iv;
                d->pads = 0;
                switch (d->quad_pos) {
                case 0:
                        d->quad_pos = 1;
                        d->leftchar = v;
                        break;
                case 1:
                        d->quad_pos = 2;
                        out[o++] = (unsigned char)((d->leftchar << 2) | (v >> 4));
                        d->leftchar = v & 0x0f;
                        break;
                case 2:
                        d->quad_pos = 3;
                        out[o++] = (unsigned char)((d->leftchar << 4) | (v >> 2));
                        d->leftchar = v & 0x03;
                        break;
                default:
                        d->quad_pos = 0;
                        out[o++] = (unsigned char)((d->leftchar << 6) | v);
                        d->leftchar = 0;
                        break;
                }
        }
        return o;
}

enum { QP_TEXT, QP_EQ, QP_EQ_HEX, QP_SOFT_CR };

static size_t qp_feed(struct imap_decoder *d, const unsigned char *in, size_t len,
                      unsigned char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < len;) {
                unsigned char c = in[i];
                switch (d->qp_state) {
                case QP_TEXT:
                        i++;
                        if (c == '=')
                                d->qp_state = QP_EQ;
                        else
                                out[o++] = c;
                        break;
                case QP_EQ:
                        if (c == '\n') {
                                i++;
                                d->qp_state = QP_TEXT;
                        } else if (c == '\r') {
                                i++;
                                d->qp_state = QP_SOFT_CR;
                        } else if (c == '=') {
                                i++;
                                out[o++] = '=';
                                d->qp_state = QP_TEXT;
                        } else if (imap_hex_value(c) >= 0) {
                                i++;
                                d->qp_hex = c;
                                d->qp_state = QP_EQ_HEX;
                        } else {
                                /* Not an escape: the '=' stays, c is text. */
                                out[o++] = '=';
                                d->qp_state = QP_TEXT;
                        }
                        break;
                case QP_EQ_HEX:
                        d->qp_state = QP_TEXT;
                        if (imap_hex_value(c) >= 0) {
                                i++;
                                out[o++] = (unsigned char)(imap_hex_value(d->qp_hex) << 4 |
                                                           imap_hex_value(c));
                        } else {
                                /* "=X" then a non-hex: both stay, c is read afresh. */
                                out[o++] = '=';
                                out[o++] = d->qp_hex;
                        }
                        break;
                default: /* QP_SOFT_CR: Python skips to the next LF */
                        i++;
                        if (c == '\n')
                                d->qp_state = QP_TEXT;
                        break;
                }
        }
        return o;
}

size_t imap_decoder_feed(struct imap_decoder *d, const void *in, size_t len, void *out)
{
        switch (d->cte) {
        case IMAP_CTE_BASE64:
                return b64_feed(d, in, len, out);
        case IMAP_CTE_QP:
                return qp_feed(d, in, len, out);
        default:
                if (len)
                        memcpy(out, in, len);
                return len;
        }
}

size_t imap_decoder_finish(struct imap_decoder *d, void *out)
{
        size_t o = 0;
        unsigned char *u = out;
        /* A final "=X": Python keeps both (a lone final '=' is dropped). */
        if (d->cte == IMAP_CTE_QP && d->qp_state == QP_EQ_HEX) {
                u[o++] = '=';
                u[o++] = d->qp_hex;
        }
        imap_decoder_init(d, d->cte);
        return o;
}

int imap_decode_all(enum imap_cte cte, const void *in, size_t len, char **out, size_t *out_len)
{
        *out = NULL;
        *out_len = 0;
        if (len > SIZE_MAX - 3)
                return -ENOMEM;
        char *buf = malloc(IMAP_DECODE_MAX_OUT(len) + 1);
        if (!buf)
                return -ENOMEM;
        struct imap_decoder d;
        imap_decoder_init(&d, cte);
        size_t n = imap_decoder_feed(&d, in, len, buf);
        n += imap_decoder_finish(&d, buf + n);
        buf[n] = '\0';
        *out = buf;
        *out_len = n;
        return 0;
}

/* ------------------------------------------------------------ charsets */

/* Charsets whose bytes are taken as they are. */
static const char *const charset_passthrough[] = {"UTF-8",     "UTF8",         "US-ASCII", "ASCII",
                                                  "X-UNKNOWN", "UNKNOWN-8BIT", "DEFAULT"};

/* Upper-cased, alias-resolved name in out (imap_charset_normalize), blanks
 * around it ignored; false if it can't be a charset name. */
static bool charset_normalize(const char *s, char out[IMAP_CHARSET_MAX])
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        return imap_charset_normalize(s, len, out);
}

static int copy_as_is(const void *in, size_t len, char **out, size_t *out_len)
{
        char *buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        if (len)
                memcpy(buf, in, len);
        buf[len] = '\0';
        *out = buf;
        *out_len = len;
        return 0;
}

int imap_charset_to_utf8(const char *charset, const void *in, size_t len, char **out,
                         size_t *out_len)
{
        *out = NULL;
        *out_len = 0;
        char cs[IMAP_CHARSET_MAX];
        if (!charset || !charset_normalize(charset, cs))
                return copy_as_is(in, len, out, out_len);
        for (size_t i = 0; i < sizeof charset_passthrough / sizeof charset_passthrough[0]; i++)
                if (strcmp(cs, charset_passthrough[i]) == 0)
                        return copy_as_is(in, len, out, out_len);
        iconv_t cd = iconv_open("UTF-8", cs);
        if (cd == (iconv_t)-1)
                return copy_as_is(in, len, out, out_len);
        /* Not valid in the charset: the label lies, the bytes stay as sent. */
        int err = imap_charset_iconv(cd, in, len, false, out, out_len);
        iconv_close(cd);
        if (err == -ENOMEM)
                return err;
        return err ? copy_as_is(in, len, out, out_len) : 0;
}

int imap_mime_text_to_utf8(const char *encoding, const char *charset, const void *in, size_t len,
                           char **out, size_t *out_len)
{
        char *dec;
        size_t dlen;
        int err = imap_decode_all(imap_cte_from_name(encoding), in, len, &dec, &dlen);
        if (err) {
                *out = NULL;
                *out_len = 0;
                return err;
        }
        err = imap_charset_to_utf8(charset, dec, dlen, out, out_len);
        free(dec);
        return err;
}
