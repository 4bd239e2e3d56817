/* libFuzzer target: BODYSTRUCTURE parsing (imap/bodystructure.c) and the
 * part names made from it (imap/mime_name.c).
 *
 * The input is a byte stream as a server might send it: each response the
 * framer finds is parsed from a heap copy of exactly its length, and the
 * value of its BODYSTRUCTURE (or BODY) item, if any, goes through
 * imap_bodystructure_parse. A tree that comes out is checked against the
 * contract in bodystructure.h and mime_name.h: every part reachable in one
 * walk and found again by its section, lowercased types, leaf file names that
 * are valid UTF-8 of at most 255 bytes with no '/' or control character, a
 * text part that is a text/plain or text/html leaf.
 *
 * Build and run (see tests/fuzz/run.sh where present):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     tests/fuzz/fuzz_bodystructure.c imap/parse.c imap/bodystructure.c \
 *     imap/mime_name.c imap/mime_decode.c imap/rfc2047.c -o fuzz_bodystructure
 *   ./fuzz_bodystructure tests/fuzz/seeds/bodystructure */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/bodystructure.h"
#include "imap/mime_name.h"
#include "imap/parse.h"

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

static int lowercase(const char *s)
{
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        return 0;
        return 1;
}

/* Valid UTF-8 without C0/DEL/C1 controls and without '/'. */
static int clean_name(const unsigned char *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                unsigned char b = s[i];
                size_t n = b < 0x80                ? 1
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
                if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == '/' || c > 0x10ffff ||
                    (c >= 0xd800 && c <= 0xdfff))
                        return 0;
                i += n;
        }
        return 1;
}

static void check_tree(struct imap_bodypart *root)
{
        size_t count = 0;
        for (struct imap_bodypart *p = root; p; p = imap_bodypart_next(p)) {
                FUZZ_CHECK(++count < 1000000, "walk does not end");
                FUZZ_CHECK(p->section && p->type && p->subtype && p->encoding, "NULL field");
                FUZZ_CHECK(lowercase(p->type) && lowercase(p->subtype) && lowercase(p->encoding),
                           "not lowercased: %s/%s %s", p->type, p->subtype, p->encoding);
                FUZZ_CHECK(p->depth < IMAP_BODY_MAX_DEPTH, "depth %u", p->depth);
                FUZZ_CHECK(p->decoded_size == -1, "decoded size set");
                FUZZ_CHECK(p == root || p->parent, "part without parent");
                FUZZ_CHECK(!p->multipart || p->nparts > 0, "multipart without parts");
                struct imap_bodypart *f = imap_bodystructure_find(root, p->section);
                FUZZ_CHECK(f && strcmp(f->section, p->section) == 0, "section %s not found",
                           p->section);
                char *name = imap_mime_part_filename(p);
                if (imap_bodypart_is_leaf(p) && strlen(p->section) > IMAP_NAME_MAX - 17) {
                        FUZZ_CHECK(name == NULL && errno == ENAMETOOLONG, "long section named");
                } else if (imap_bodypart_is_leaf(p)) {
                        FUZZ_CHECK(name != NULL, "leaf %s without a name", p->section);
                        size_t n = strlen(name);
                        FUZZ_CHECK(n > 0 && n <= IMAP_NAME_MAX, "name of %zu bytes", n);
                        FUZZ_CHECK(clean_name((const unsigned char *)name, n), "unclean name %s",
                                   name);
                        FUZZ_CHECK(strncmp(name, p->section, strlen(p->section)) == 0,
                                   "name %s doesn't start with %s", name, p->section);
                } else {
                        FUZZ_CHECK(name == NULL, "multipart with a name");
                }
                free(name);
                FUZZ_CHECK(imap_bodystructure_set_decoded_size(root, p->section, 7) == 0,
                           "set size");
        }
        const struct imap_bodypart *t = imap_mime_text_part(root);
        if (t)
                FUZZ_CHECK(
                    !t->multipart && strcmp(t->type, "text") == 0 &&
                        (strcmp(t->subtype, "plain") == 0 || strcmp(t->subtype, "html") == 0),
                    "text part %s/%s", t->type, t->subtype);
}

static void parse_one(const char *buf, size_t len)
{
        char *copy = malloc(len ? len : 1);
        if (!copy)
                return;
        memcpy(copy, buf, len);
        struct imap_response *r = NULL;
        if (imap_parse(copy, len, &r) == 0) {
                const struct imap_value *v = imap_fetch_item(r->args, "BODYSTRUCTURE");
                if (!v)
                        v = imap_fetch_item(r->args, "BODY");
                /* Any value at all, also the first argument of any response. */
                for (int pass = 0; pass < 2; pass++, v = r->args) {
                        struct imap_bodypart *b = (struct imap_bodypart *)1;
                        int rc = imap_bodystructure_parse(v, &b);
                        FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -ENOMEM, "returned %d", rc);
                        if (rc) {
                                FUZZ_CHECK(b == NULL, "failure left a tree");
                                continue;
                        }
                        check_tree(b);
                        imap_bodystructure_set_binary_sizes(b, r->args);
                        imap_bodystructure_free(b);
                }
                imap_response_free(r);
        }
        free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *buf = (const char *)data;
        size_t off = 0;
        while (off < size) {
                struct imap_framer f;
                imap_framer_reset(&f);
                ssize_t n = imap_frame(&f, buf + off, size - off, 1u << 20);
                if (n <= 0)
                        break;
                parse_one(buf + off, (size_t)n);
                off += (size_t)n;
        }
        return 0;
}
