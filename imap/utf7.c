/* Modified UTF-7 (RFC 3501 §5.1.3).
 *
 * The decoder accepts only the canonical form the encoder produces, so that
 * decode followed by encode gives back the exact bytes the server sent: the
 * server only knows a mailbox by those bytes. */
#include "imap/utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/digits.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Printable US-ASCII other than '&' must represent itself (never base64). */
static bool is_direct(uint32_t c)
{
        return c >= 0x20 && c <= 0x7e;
}

static size_t utf8_put(char *out, uint32_t c)
{
        if (c < 0x80) {
                out[0] = (char)c;
                return 1;
        }
        if (c < 0x800) {
                out[0] = (char)(0xc0 | (c >> 6));
                out[1] = (char)(0x80 | (c & 0x3f));
                return 2;
        }
        if (c < 0x10000) {
                out[0] = (char)(0xe0 | (c >> 12));
                out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
                out[2] = (char)(0x80 | (c & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (c >> 18));
        out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[3] = (char)(0x80 | (c & 0x3f));
        return 4;
}

/* Reads one strictly valid UTF-8 character (no overlongs, no surrogates, at
 * most U+10FFFF). Returns its length, or 0 if the bytes at in are invalid. */
static size_t utf8_get(const unsigned char *in, size_t len, uint32_t *out)
{
        if (len == 0)
                return 0;
        unsigned char b = in[0];
        size_t n;
        uint32_t c, min;
        if (b < 0x80) {
                *out = b;
                return 1;
        } else if (b >= 0xc2 && b <= 0xdf) {
                n = 2, c = b & 0x1f, min = 0x80;
        } else if (b >= 0xe0 && b <= 0xef) {
                n = 3, c = b & 0x0f, min = 0x800;
        } else if (b >= 0xf0 && b <= 0xf4) {
                n = 4, c = b & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((in[i] & 0xc0) != 0x80)
                        return 0;
                c = (c << 6) | (in[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *out = c;
        return n;
}

/* Decodes the base64 run in[0..len) (between '&' and '-') into out. Returns
 * the number of bytes written, or (size_t)-1 if the run is not canonical. */
static size_t decode_run(const unsigned char *in, size_t len, char *out)
{
        uint32_t bits = 0, high = 0;
        unsigned nbits = 0;
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                int v = imap_b64_value(in[i], ',');
                if (v < 0)
                        return (size_t)-1;
                bits = (bits << 6) | (uint32_t)v;
                nbits += 6;
                if (nbits < 16)
                        continue;
                nbits -= 16;
                uint32_t unit = (bits >> nbits) & 0xffff;
                bits &= (1u << nbits) - 1;
                if (unit >= 0xd800 && unit <= 0xdbff) {
                        if (high)
                                return (size_t)-1;
                        high = unit;
                        continue;
                }
                uint32_t c = unit;
                if (unit >= 0xdc00 && unit <= 0xdfff) {
                        if (!high)
                                return (size_t)-1;
                        c = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
                        high = 0;
                } else if (high) {
                        return (size_t)-1;
                }
                /* NUL can't be carried by a C string; printable ASCII must
                 * have been written directly. */
                if (c == 0 || is_direct(c))
                        return (size_t)-1;
                o += utf8_put(out + o, c);
        }
        /* Six or more bits left means a superfluous character; the padding
         * bits of the last character must be zero. */
        if (high || nbits >= 6 || bits != 0 || o == 0)
                return (size_t)-1;
        return o;
}

char *imap_utf7_decode(const char *in, size_t len)
{
        const unsigned char *s = (const unsigned char *)in;
        /* A base64 run of k chars yields at most 6k/16 UTF-16 units, each at
         * most 3 bytes of UTF-8 (a surrogate pair: 2 units, 4 bytes): a bit
         * more than k, always less than 2k. */
        if (len > (SIZE_MAX - 1) / 2)
                return NULL;
        char *out = malloc(2 * len + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        bool after_run = false;

        for (size_t i = 0; i < len;) {
                if (s[i] != '&') {
                        if (!is_direct(s[i]))
                                goto invalid;
                        out[o++] = (char)s[i++];
                        after_run = false;
                        continue;
                }
                const unsigned char *end = memchr(s + i + 1, '-', len - i - 1);
                if (!end)
                        goto invalid;
                size_t run = (size_t)(end - (s + i + 1));
                if (run == 0) {
                        out[o++] = '&';
                        after_run = false;
                } else {
                        /* Two adjacent runs would be written as one by the
                         * encoder; accepting them breaks round trips. */
                        if (after_run)
                                goto invalid;
                        size_t n = decode_run(s + i + 1, run, out + o);
                        if (n == (size_t)-1)
                                goto invalid;
                        o += n;
                        after_run = true;
                }
                i += run + 2;
        }
        out[o] = '\0';
        return out;
invalid:
        free(out);
        return NULL;
}

static void flush_bits(char *out, size_t *o, uint32_t *bits, unsigned *nbits)
{
        while (*nbits >= 6) {
                *nbits -= 6;
                out[(*o)++] = b64_alphabet[(*bits >> *nbits) & 0x3f];
        }
        *bits &= (1u << *nbits) - 1;
}

char *imap_utf7_encode(const char *in, size_t len)
{
        const unsigned char *s = (const unsigned char *)in;
        /* Worst case per input byte: a lone '&' gives 2 bytes; a run of
         * 1-byte control chars gives 16 bits each = at most 3 base64 chars
         * + "&-"; a 4-byte char gives 32 bits = 6 chars. 5x + 3 covers all. */
        if (len > (SIZE_MAX - 3) / 5)
                return NULL;
        char *out = malloc(len * 5 + 3);
        if (!out)
                return NULL;
        size_t o = 0;
        bool in_run = false;
        uint32_t bits = 0;
        unsigned nbits = 0;

        for (size_t i = 0; i < len;) {
                uint32_t c;
                size_t n = utf8_get(s + i, len - i, &c);
                if (n == 0 || c == 0)
                        goto invalid;
                i += n;
                if (is_direct(c)) {
                        if (in_run) {
                                if (nbits > 0)
                                        out[o++] = b64_alphabet[(bits << (6 - nbits)) & 0x3f];
                                out[o++] = '-';
                                in_run = false;
                                bits = 0, nbits = 0;
                        }
                        out[o++] = (char)c;
                        if (c == '&')
                                out[o++] = '-';
                        continue;
                }
                if (!in_run) {
                        out[o++] = '&';
                        in_run = true;
                }
                if (c >= 0x10000) {
                        uint32_t v = c - 0x10000;
                        bits = (bits << 16) | (0xd800 | (v >> 10));
                        nbits += 16;
                        flush_bits(out, &o, &bits, &nbits);
                        c = 0xdc00 | (v & 0x3ff);
                }
                bits = (bits << 16) | c;
                nbits += 16;
                flush_bits(out, &o, &bits, &nbits);
        }
        if (in_run) {
                if (nbits > 0)
                        out[o++] = b64_alphabet[(bits << (6 - nbits)) & 0x3f];
                out[o++] = '-';
        }
        out[o] = '\0';
        return out;
invalid:
        free(out);
        return NULL;
}
