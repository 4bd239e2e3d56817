/* libFuzzer target: the streaming decoders and charset conversion
 * (imap/mime_decode.c) and the filename decoding and sanitiser
 * (imap/mime_name.c).
 *
 * The first byte picks the encoding and a chunk size; the rest is a payload.
 * Decoding it whole and in chunks (sizes from the input) must give the same
 * bytes, within IMAP_DECODE_MAX_OUT per feed. The payload is also converted
 * from a charset named by the input (never an error), split at NULs into
 * parameter name/value pairs for imap_mime_param_decode (valid UTF-8 without
 * NUL out), and sanitised (valid, clean, within the limit).
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     tests/fuzz/fuzz_mime_decode.c imap/mime_decode.c imap/mime_name.c \
 *     imap/bodystructure.c imap/parse.c imap/rfc2047.c -o fuzz_mime_decode */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime_decode.h"
#include "imap/mime_name.h"

#ifndef FUZZ_CHECK
#define FUZZ_CHECK(cond, ...)                                                                      \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__,    \
                                #cond);                                                            \
                        fprintf(stderr, __VA_ARGS__);                                              \
                        fputc('\n', stderr);                                                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)
#endif

/* Strict UTF-8; no NUL. */
static int utf8_ok(const unsigned char *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                unsigned char b = s[i];
                size_t n = b == 0                  ? 0
                           : b < 0x80              ? 1
                           : b >= 0xf0 && b < 0xf5 ? 4
                           : b >= 0xe0             ? 3
                           : b >= 0xc2             ? 2
                                                   : 0;
                if (n == 0 || n > len - i)
                        return 0;
                uint32_t c = n == 1 ? b : b & (0x7f >> n);
                for (size_t k = 1; k < n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return 0;
                        c = c << 6 | (s[i + k] & 0x3f);
                }
                if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
                    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                        return 0;
                i += n;
        }
        return 1;
}

static const char *const charsets[] = {
    "utf-8",  "iso-8859-1", "windows-1252", "koi8-r", "shift_jis",    "iso-2022-jp",
    "utf-16", "gb2312",     "x-unknown",    "",       "utf-8//IGNORE"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        static const enum imap_cte ctes[] = {IMAP_CTE_BASE64, IMAP_CTE_QP, IMAP_CTE_IDENTITY};
        enum imap_cte cte = ctes[data[0] % 3];
        size_t chunk = 1 + (data[0] >> 2);
        const uint8_t *in = data + 1;
        size_t len = size - 1;

        char *whole;
        size_t whole_len;
        FUZZ_CHECK(imap_decode_all(cte, in, len, &whole, &whole_len) == 0, "decode_all failed");
        char *out = malloc(IMAP_DECODE_MAX_OUT(len) + 2);
        struct imap_decoder d;
        imap_decoder_init(&d, cte);
        size_t o = 0;
        for (size_t i = 0; i < len; i += chunk) {
                size_t n = len - i < chunk ? len - i : chunk;
                uint8_t *piece = malloc(n); /* exact size: over-reads are ASan reports */
                memcpy(piece, in + i, n);
                size_t got = imap_decoder_feed(&d, piece, n, out + o);
                FUZZ_CHECK(got <= IMAP_DECODE_MAX_OUT(n), "feed of %zu gave %zu", n, got);
                o += got;
                free(piece);
        }
        size_t fin = imap_decoder_finish(&d, out + o);
        FUZZ_CHECK(fin <= 2, "finish gave %zu", fin);
        o += fin;
        FUZZ_CHECK(o == whole_len && memcmp(out, whole, o) == 0,
                   "chunks of %zu: %zu bytes, whole: %zu", chunk, o, whole_len);
        free(out);
        free(whole);

        char *conv;
        size_t conv_len;
        const char *cs = charsets[data[0] % (sizeof(charsets) / sizeof(charsets[0]))];
        FUZZ_CHECK(imap_charset_to_utf8(cs, in, len, &conv, &conv_len) == 0, "charset failed");
        FUZZ_CHECK(conv[conv_len] == '\0', "not terminated");
        free(conv);

        /* name\0value\0name\0value... as parameters. */
        char *copy = malloc(len + 2);
        memcpy(copy, in, len);
        copy[len] = copy[len + 1] = '\0';
        struct imap_mime_param params[16];
        size_t np = 0;
        for (char *p = copy; p < copy + len && np < 16;) {
                char *v = p + strlen(p) + 1;
                if (v > copy + len)
                        break;
                params[np].name = p;
                params[np].value = v;
                np++;
                p = v + strlen(v) + 1;
        }
        static const char *const names[] = {"filename", "name"};
        for (size_t k = 0; k < 2; k++) {
                char *val = NULL;
                FUZZ_CHECK(imap_mime_param_decode(params, np, names[k], &val) == 0, "decode");
                if (val) {
                        FUZZ_CHECK(utf8_ok((const unsigned char *)val, strlen(val)),
                                   "decoded value not UTF-8");
                        free(val);
                }
        }
        free(copy);

        size_t max = data[0];
        char *s = imap_name_sanitize((const char *)in, len, max);
        FUZZ_CHECK(s && strlen(s) <= max, "sanitised over %zu", max);
        FUZZ_CHECK(utf8_ok((const unsigned char *)s, strlen(s)), "sanitised not UTF-8");
        FUZZ_CHECK(!strchr(s, '/'), "sanitised has '/'");
        free(s);
        return 0;
}
