/* Header text decoding: RFC 2047 encoded words, unfolding, charsets.
 *
 * Everything that leaves this file is valid UTF-8 without NUL, whatever came
 * in: names and logs are built from it without further checks. */
#include "imap/rfc2047.h"

#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/charset.h"
#include "imap/digits.h"

#define CHARSET_MAX IMAP_CHARSET_MAX

/* A growing byte string. Once oom is set, further appends are ignored and the
 * caller reports ENOMEM once at the end. */
struct buf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
        if (b->oom || n == 0)
                return;
        if (n > SIZE_MAX - b->len - 1) {
                b->oom = true;
                return;
        }
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                while (cap < b->len + n + 1)
                        cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
                char *p = realloc(b->p, cap);
                if (!p) {
                        b->oom = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, data, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void buf_add_cp(struct buf *b, uint32_t c)
{
        char u[4];
        size_t n;
        if (c < 0x80) {
                u[0] = (char)c, n = 1;
        } else if (c < 0x800) {
                u[0] = (char)(0xc0 | (c >> 6));
                u[1] = (char)(0x80 | (c & 0x3f));
                n = 2;
        } else if (c < 0x10000) {
                u[0] = (char)(0xe0 | (c >> 12));
                u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
                u[2] = (char)(0x80 | (c & 0x3f));
                n = 3;
        } else {
                u[0] = (char)(0xf0 | (c >> 18));
                u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
                u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
                u[3] = (char)(0x80 | (c & 0x3f));
                n = 4;
        }
        buf_add(b, u, n);
}

/* Hands the string to the caller; an empty result is "" rather than NULL so
 * that NULL keeps meaning ENOMEM. */
static char *buf_finish(struct buf *b)
{
        if (!b->oom && !b->p) {
                b->p = malloc(1);
                b->oom = !b->p;
        }
        if (b->oom) {
                free(b->p);
                return NULL;
        }
        b->p[b->len] = '\0';
        return b->p;
}

/* Length of the strictly valid UTF-8 sequence at s (no overlongs, no
 * surrogates, at most U+10FFFF), or 0 if it is not one. */
static size_t utf8_valid_len(const unsigned char *s, size_t len)
{
        unsigned char b = s[0];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */
        if (b < 0x80)
                return 1;
        if (b >= 0xc2 && b <= 0xdf)
                n = 2;
        else if (b >= 0xe0 && b <= 0xef)
                n = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
        else if (b >= 0xf0 && b <= 0xf4)
                n = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
        else
                return 0;
        if (len < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

/* windows-1252 0x80..0x9f; the five unassigned bytes map to the C1 controls
 * of the same value, as the WHATWG encoding standard does. */
static const uint16_t cp1252_high[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

/* Appends s as UTF-8: valid sequences as they are, every other byte either as
 * windows-1252 (raw header bytes: 8-bit mail is mostly Latin) or as U+FFFD
 * (the output of a charset decoder, where a bad byte means a bad byte). NUL is
 * dropped because the result is a C string. */
static void append_sanitized(struct buf *b, const char *s, size_t len, bool as_cp1252)
{
        if (len == 0)
                return;
        const unsigned char *u = (const unsigned char *)s;
        size_t start = 0, i = 0;
        while (i < len) {
                size_t n = u[i] ? utf8_valid_len(u + i, len - i) : 0;
                if (n) {
                        i += n;
                        continue;
                }
                buf_add(b, s + start, i - start);
                if (u[i] == 0)
                        ;
                else if (!as_cp1252)
                        buf_add_cp(b, 0xfffd);
                else if (u[i] < 0xa0)
                        buf_add_cp(b, cp1252_high[u[i] - 0x80]);
                else
                        buf_add_cp(b, u[i]);
                start = ++i;
        }
        buf_add(b, s + start, i - start);
}

char *imap_utf8_sanitize(const char *s, size_t len)
{
        struct buf b = {0};
        append_sanitized(&b, s, len, true);
        return buf_finish(&b);
}

/* Labels read here beyond the shared ones (imap/charset.c): in a header,
 * US-ASCII text with 8-bit bytes is Latin as raw header bytes are, and UTF8
 * is a common misspelling. */
static const struct {
        const char *label, *charset;
} header_aliases[] = {
    {"US-ASCII", "WINDOWS-1252"},
    {"ASCII", "WINDOWS-1252"},
    {"UTF8", "UTF-8"},
};

/* The charset name without an RFC 2231 "*lang" suffix, normalised into out
 * (imap_charset_normalize). False if it can't be a charset. */
static bool charset_normalize(const char *s, size_t len, char out[CHARSET_MAX])
{
        const char *star = memchr(s, '*', len);
        if (star)
                len = (size_t)(star - s);
        if (!imap_charset_normalize(s, len, out))
                return false;
        for (size_t i = 0; i < sizeof header_aliases / sizeof header_aliases[0]; i++) {
                if (strcmp(out, header_aliases[i].label) == 0) {
                        strcpy(out, header_aliases[i].charset);
                        break;
                }
        }
        return true;
}

static bool decode_q(const char *s, size_t len, struct buf *out)
{
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '_') {
                        c = ' ';
                } else if (c == '=') {
                        if (len - i < 3)
                                return false;
                        int hi = imap_hex_value((unsigned char)s[i + 1]);
                        int lo = imap_hex_value((unsigned char)s[i + 2]);
                        if (hi < 0 || lo < 0)
                                return false;
                        c = (unsigned char)(hi << 4 | lo);
                        i += 2;
                }
                buf_add(out, &c, 1);
        }
        return true;
}

/* Missing padding is tolerated (common and unambiguous); a stray character,
 * data after padding, or a lone final character (6 bits, no byte) is not. */
static bool decode_b(const char *s, size_t len, struct buf *out)
{
        uint32_t bits = 0;
        unsigned nbits = 0;
        size_t ndata = 0, i = 0;
        for (; i < len && s[i] != '='; i++) {
                int v = imap_b64_value((unsigned char)s[i], '/');
                if (v < 0)
                        return false;
                bits = (bits << 6) | (uint32_t)v;
                nbits += 6;
                ndata++;
                if (nbits >= 8) {
                        nbits -= 8;
                        unsigned char c = (unsigned char)(bits >> nbits);
                        bits &= (1u << nbits) - 1;
                        buf_add(out, &c, 1);
                }
        }
        for (; i < len; i++)
                if (s[i] != '=')
                        return false;
        return ndata % 4 != 1;
}

/* One syntactically valid encoded word, decoded to the bytes of its charset. */
struct word {
        char charset[CHARSET_MAX];
        size_t end; /* index just after "?=" */
};

/* Parses "=?charset?enc?text?=" at u[i] and appends its decoded bytes to
 * bytes (which hold garbage if it returns false). */
static bool word_parse(const char *u, size_t n, size_t i, struct word *w, struct buf *bytes)
{
        if (n - i < 2 || u[i] != '=' || u[i + 1] != '?')
                return false;
        size_t cs = i + 2;
        const char *q = memchr(u + cs, '?', n - cs);
        if (!q)
                return false;
        size_t cs_len = (size_t)(q - (u + cs));
        if (!charset_normalize(u + cs, cs_len, w->charset))
                return false;
        size_t e = cs + cs_len + 1;
        if (n - e < 2 || u[e + 1] != '?')
                return false;
        char enc = u[e];
        size_t t = e + 2;
        q = memchr(u + t, '?', n - t);
        if (!q)
                return false;
        size_t t_len = (size_t)(q - (u + t));
        if (t + t_len + 1 >= n || u[t + t_len + 1] != '=')
                return false;
        for (size_t k = t; k < t + t_len; k++)
                if (u[k] == ' ' || u[k] == '\t')
                        return false;
        w->end = t + t_len + 2;
        if (enc == 'Q' || enc == 'q')
                return decode_q(u + t, t_len, bytes);
        if (enc == 'B' || enc == 'b')
                return decode_b(u + t, t_len, bytes);
        return false;
}

/* Adjacent encoded words in one charset, converted together: senders split a
 * multi-byte character (or an ISO-2022 shift state) across words. */
struct group {
        bool active;
        bool utf8; /* no iconv needed */
        char charset[CHARSET_MAX];
        iconv_t cd;
        struct buf bytes;
};

static bool group_open(struct group *g, const char *charset)
{
        g->utf8 = strcmp(charset, "UTF-8") == 0;
        if (!g->utf8) {
                g->cd = iconv_open("UTF-8", charset);
                if (g->cd == (iconv_t)-1)
                        return false;
        }
        strcpy(g->charset, charset);
        g->active = true;
        return true;
}

static void group_flush(struct group *g, struct buf *out)
{
        if (!g->active)
                return;
        if (g->utf8) {
                append_sanitized(out, g->bytes.p, g->bytes.len, false);
        } else {
                /* Undecodable bytes become U+FFFD: the rest of the text stays. */
                char *conv = NULL;
                size_t clen = 0;
                if (g->bytes.len > 0 &&
                    imap_charset_iconv(g->cd, g->bytes.p, g->bytes.len, true, &conv, &clen) < 0)
                        out->oom = true;
                append_sanitized(out, conv, clen, false);
                free(conv);
                iconv_close(g->cd);
        }
        g->bytes.len = 0;
        g->active = false;
}

static bool all_wsp(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t')
                        return false;
        return true;
}

/* Unfolding: a folded line is CRLF + WSP, and the CRLF is not part of the
 * value. Stray CR or LF (bare, or at the end) carry no text either. */
static char *unfold(const char *in, size_t len, size_t *out_len)
{
        char *u = malloc(len + 1);
        if (!u)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len; i++)
                if (in[i] != '\r' && in[i] != '\n')
                        u[o++] = in[i];
        u[o] = '\0';
        *out_len = o;
        return u;
}

char *imap_rfc2047_decode(const char *in, size_t len)
{
        size_t n;
        char *u = unfold(in, len, &n);
        if (!u)
                return NULL;
        struct buf out = {0};
        struct buf wb = {0}; /* the decoded bytes of the word at hand */
        struct group g = {0};
        size_t plain = 0; /* start of the text not yet written */

        for (size_t i = 0; i < n;) {
                struct word w;
                wb.len = 0;
                if (u[i] != '=' || !word_parse(u, n, i, &w, &wb)) {
                        i++;
                        continue;
                }
                bool adjacent = g.active && all_wsp(u + plain, i - plain);
                if (!adjacent || strcmp(w.charset, g.charset) != 0) {
                        /* Open the new charset before touching the group, so
                         * that an unknown one leaves the word as plain text. */
                        struct group next = {0};
                        if (!group_open(&next, w.charset)) {
                                i++;
                                continue;
                        }
                        group_flush(&g, &out);
                        if (!adjacent)
                                append_sanitized(&out, u + plain, i - plain, true);
                        next.bytes = g.bytes; /* emptied by the flush; reuse it */
                        g = next;
                }
                buf_add(&g.bytes, wb.p, wb.len);
                i = plain = w.end;
        }
        group_flush(&g, &out);
        append_sanitized(&out, u + plain, n - plain, true);
        out.oom |= g.bytes.oom || wb.oom;
        free(g.bytes.p);
        free(wb.p);
        free(u);
        return buf_finish(&out);
}
