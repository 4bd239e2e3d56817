/* Shared helpers of the libFuzzer targets: a check that aborts with a message
 * (libFuzzer then saves the input as a crash), and a strict UTF-8 validator
 * that the targets compare the codecs against. */
#ifndef IMAPFS_FUZZ_UTIL_H
#define IMAPFS_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A copy of s[0..len) in a heap block of exactly len bytes (1 for len 0), so
 * that ASan reports a read one byte past the end. */
static inline char *fuzz_dup_exact(const void *s, size_t len)
{
        char *d = malloc(len ? len : 1);
        if (d && len)
                memcpy(d, s, len);
        return d;
}

/* Same, with a terminating NUL (len + 1 bytes). */
static inline char *fuzz_dup_str(const void *s, size_t len)
{
        char *d = malloc(len + 1);
        if (d) {
                if (len)
                        memcpy(d, s, len);
                d[len] = '\0';
        }
        return d;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above
 * U+10FFFF; with allow_nul false, no U+0000 either. */
static inline bool fuzz_utf8_valid(const uint8_t *s, size_t len, bool allow_nul)
{
        size_t i = 0;
        while (i < len) {
                uint8_t c = s[i];
                if (c < 0x80) {
                        if (c == 0 && !allow_nul)
                                return false;
                        i++;
                        continue;
                }
                size_t n;
                uint32_t cp, min;
                if ((c & 0xe0) == 0xc0) {
                        n = 1, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3, cp = c & 0x07, min = 0x10000;
                } else {
                        return false;
                }
                if (len - i <= n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

#endif
