/* libFuzzer target: the response framer and parser (imap/parse.c).
 *
 * The input is a byte stream as a server might send it. It is framed twice,
 * once with everything at hand and once fed in growing prefixes (the way
 * conn.c reads), and both must find the same response ends. Each framed
 * response is parsed from a heap copy of exactly its length (so a read past
 * it is an ASan report) and the value tree is walked and checked against the
 * contract in parse.h. The whole input is also parsed unframed. */
#include "imap/parse.h"

#include "fuzz_util.h"

#include <errno.h>

static void check_values(const struct imap_value *v, int depth)
{
        FUZZ_CHECK(depth <= IMAP_MAX_DEPTH + 1, "nesting %d deeper than IMAP_MAX_DEPTH", depth);
        for (; v; v = v->next) {
                switch (v->type) {
                case IMAP_ATOM:
                case IMAP_STRING:
                case IMAP_NIL:
                        FUZZ_CHECK(v->s != NULL, "value without bytes");
                        FUZZ_CHECK(v->s[v->len] == '\0', "value not NUL-terminated");
                        if (v->type == IMAP_ATOM)
                                FUZZ_CHECK(v->len > 0, "empty atom");
                        break;
                case IMAP_NUMBER: {
                        FUZZ_CHECK(v->s && v->s[v->len] == '\0', "number not NUL-terminated");
                        uint64_t n = 0;
                        for (size_t i = 0; i < v->len; i++) {
                                FUZZ_CHECK(v->s[i] >= '0' && v->s[i] <= '9', "number with %c",
                                           v->s[i]);
                                n = n * 10 + (uint64_t)(v->s[i] - '0');
                        }
                        FUZZ_CHECK(v->len > 0 && n == v->num, "number text and value differ");
                        break;
                }
                case IMAP_LIST:
                        check_values(v->first, depth + 1);
                        (void)imap_list_count(v);
                        (void)imap_fetch_item(v, "UID");
                        (void)imap_fetch_item(v, "FLAGS");
                        const struct imap_value *name = NULL;
                        (void)imap_fetch_item_prefix(v, "BODY[", &name);
                        char out[64];
                        size_t n = imap_values_join(v->first, "\\Recent", out, sizeof(out));
                        FUZZ_CHECK(n < sizeof(out) && out[n] == '\0', "join overflowed");
                        break;
                default:
                        FUZZ_CHECK(0, "unknown value type %d", (int)v->type);
                }
        }
}

static void parse_one(const char *buf, size_t len)
{
        char *copy = fuzz_dup_exact(buf, len);
        struct imap_response *r = NULL;
        int rc = imap_parse(copy, len, &r);
        if (rc == 0) {
                FUZZ_CHECK(r != NULL, "success without a response");
                FUZZ_CHECK(r->name != NULL && r->text != NULL, "name or text NULL");
                if (r->kind == IMAP_RESP_TAGGED)
                        FUZZ_CHECK(r->tag && r->status != IMAP_ST_NONE,
                                   "tagged response without tag or status");
                check_values(r->code_args, 0);
                check_values(r->args, 0);
                char out[16];
                size_t n = imap_values_join(r->args, NULL, out, sizeof(out));
                FUZZ_CHECK(n < sizeof(out), "join overflowed");
                imap_response_free(r);
        } else {
                FUZZ_CHECK(rc == -EPROTO || rc == -ENOMEM, "imap_parse returned %d", rc);
                FUZZ_CHECK(r == NULL, "failure left a response");
        }
        free(copy);
}

/* Frames buf[0..len) in growing prefixes; steps come from the input bytes so
 * that libFuzzer explores the split points too. */
static ssize_t frame_in_steps(const char *buf, size_t len, uint64_t max_literal, uint8_t seed)
{
        struct imap_framer f;
        imap_framer_reset(&f);
        size_t have = 0;
        uint32_t x = seed * 2654435761u + 1;
        for (;;) {
                x = x * 1103515245u + 12345u;
                size_t step = 1 + ((x >> 16) % 41);
                have = len - have < step ? len : have + step;
                ssize_t r = imap_frame(&f, buf, have, max_literal);
                if (r != 0 || have == len)
                        return r;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        /* The first byte picks the literal limit and the read steps. */
        uint64_t max_literal = (data[0] & 1) ? (1u << 20) : 64;
        uint8_t seed = data[0];
        const char *buf = (const char *)data + 1;
        size_t len = size - 1;

        parse_one(buf, len);

        size_t off = 0;
        while (off < len) {
                struct imap_framer f;
                imap_framer_reset(&f);
                ssize_t whole = imap_frame(&f, buf + off, len - off, max_literal);
                ssize_t steps = frame_in_steps(buf + off, len - off, max_literal, seed);
                if (whole > 0)
                        FUZZ_CHECK(steps == whole,
                                   "framing at once found %zd bytes, in steps %zd (offset %zu)",
                                   whole, steps, off);
                else if (whole == 0)
                        FUZZ_CHECK(steps == 0, "framing at once needs more, in steps %zd", steps);
                else
                        FUZZ_CHECK(steps < 0, "framing at once failed (%zd), in steps %zd", whole,
                                   steps);
                if (whole <= 0)
                        break;
                FUZZ_CHECK((size_t)whole <= len - off, "frame longer than the input");
                FUZZ_CHECK(buf[off + (size_t)whole - 1] == '\n', "frame does not end with LF");
                parse_one(buf + off, (size_t)whole);
                off += (size_t)whole;
        }
        return 0;
}
