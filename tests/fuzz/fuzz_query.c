/* libFuzzer target: the .search/ query language (imap/query*.c).
 *
 * Any input either fails to parse with a position inside it and a printable
 * reason, or parses; then what it becomes must be one safe command (framed
 * as exactly one line with its literals, however hostile the input), CHARSET
 * must appear exactly when a string is 8-bit, and the keys must read back
 * through the imap: grammar to the same bytes and the same canonical form.
 * Directory names round-trip through the %XX escapes.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *          tests/fuzz/fuzz_query.c imap/query*.c imap/quote.c imap/parse.c */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parse.h"
#include "imap/query.h"

#define CHECK(cond, ...)                                                                           \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__,    \
                                #cond);                                                            \
                        fprintf(stderr, __VA_ARGS__);                                              \
                        fputc('\n', stderr);                                                       \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* 2024-03-31 12:00:00 UTC */
#define NOW ((time_t)1711886400)

/* The keys as a whole command, framed as the server would: one line (with
 * its literals) that ends exactly where we end it. */
static void check_one_command(const struct imap_cmd *c)
{
        size_t len = c->len + 2;
        char *buf = malloc(len);
        CHECK(buf, "oom");
        memcpy(buf, c->buf, c->len);
        memcpy(buf + c->len, "\r\n", 2);
        struct imap_framer f;
        imap_framer_reset(&f);
        ssize_t n = imap_frame(&f, buf, len, UINT64_MAX);
        CHECK(n == (ssize_t)len, "the query split the command: framed %zd of %zu", n, len);
        free(buf);
}

static bool has_8bit(const uint8_t *d, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (d[i] >= 0x80)
                        return true;
        return false;
}

static void check_dirname(const uint8_t *data, size_t size)
{
        char *text = malloc(size + 1);
        CHECK(text, "oom");
        memcpy(text, data, size);
        text[size] = '\0';
        char *d = imap_query_to_dirname(text);
        if (d) {
                CHECK(!strchr(d, '/') && strcmp(d, ".") && strcmp(d, ".."), "bad dirname");
                char *back;
                CHECK(imap_query_from_dirname(d, &back) == 0, "dirname does not read back");
                CHECK(strcmp(back, text) == 0, "dirname reads back different");
                free(back);
                free(d);
        } else {
                CHECK(text[0] == '\0', "no dirname for a non-empty text");
        }
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        check_dirname(data, size);

        struct imap_query *q;
        struct imap_query_err err;
        int r = imap_query_parse((const char *)data, size, NOW, &q, &err);
        if (r < 0) {
                CHECK(r == -EINVAL, "parse: %d", r);
                CHECK(err.pos <= size, "error position %zu past %zu", err.pos, size);
                CHECK(err.reason[0], "no reason");
                for (const char *p = err.reason; *p; p++)
                        CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                              "unprintable reason");
                return 0;
        }

        /* every capability combination makes a safe command */
        for (int caps_bits = 0; caps_bits < 8; caps_bits++) {
                struct imap_query_caps caps = {.x_gm_ext_1 = caps_bits & 1,
                                               .utf8_enabled = caps_bits & 2,
                                               .imap4rev2 = caps_bits & 4};
                struct imap_cmd c;
                imap_cmd_init(&c, caps_bits & 1);
                imap_cmd_add(&c, "A1 UID SEARCH ");
                size_t before = c.len;
                r = imap_query_to_search(q, &caps, &c);
                if (r == -EOPNOTSUPP) {
                        CHECK(!caps.x_gm_ext_1 && c.len == before, "ENOTSUP with X-GM-EXT-1");
                } else {
                        CHECK(r == 0 && !c.oom, "serialise: %d", r);
                        check_one_command(&c);
                        bool charset = strncmp(c.buf + before, "CHARSET UTF-8 ", 14) == 0;
                        CHECK(charset == (!caps.utf8_enabled && imap_query_needs_utf8(q)),
                              "CHARSET wrong");
                        if (imap_query_needs_utf8(q))
                                CHECK(has_8bit(data, size), "8-bit string from 7-bit input");
                }
                imap_cmd_free(&c);
        }

        /* the keys read back to themselves through the imap: grammar */
        struct imap_query_caps all = {.x_gm_ext_1 = true, .utf8_enabled = true, .imap4rev2 = true};
        struct imap_cmd c1;
        imap_cmd_init(&c1, false);
        imap_cmd_add(&c1, "imap:");
        CHECK(imap_query_to_search(q, &all, &c1) == 0, "serialise");
        char *canon1 = imap_query_canonical(q);
        CHECK(canon1, "canonical");
        struct imap_query *q2;
        r = imap_query_parse(c1.buf, c1.len, NOW, &q2, &err);
        if (r < 0) {
                /* only a limit can refuse what we wrote: the IMAP form is
                 * longer, and may nest one level deeper per group */
                CHECK(strstr(err.reason, "longer than") || strstr(err.reason, "nested"),
                      "keys we wrote do not parse: %s at %zu in [%s]", err.reason, err.pos, c1.buf);
        } else {
                struct imap_cmd c2;
                imap_cmd_init(&c2, false);
                imap_cmd_add(&c2, "imap:");
                CHECK(imap_query_to_search(q2, &all, &c2) == 0, "serialise 2");
                CHECK(c1.len == c2.len && memcmp(c1.buf, c2.buf, c1.len) == 0,
                      "round trip differs: [%s] → [%s]", c1.buf, c2.buf);
                char *canon2 = imap_query_canonical(q2);
                CHECK(canon2 && strcmp(canon1, canon2) == 0, "canonical differs: [%s] [%s]", canon1,
                      canon2 ? canon2 : "");
                free(canon2);
                imap_cmd_free(&c2);
                imap_query_free(q2);
        }
        free(canon1);
        imap_cmd_free(&c1);
        imap_query_free(q);
        return 0;
}
