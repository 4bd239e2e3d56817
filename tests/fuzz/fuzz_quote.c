/* libFuzzer target: command quoting and UID sets (imap/quote.c), checked
 * against the parser. Whatever imap_cmd_string() makes of the input, put
 * into a response and framed and parsed, must give back exactly the input
 * bytes (a string can never end a command early or start another). UID sets
 * parse without reading past their bytes, and a formatted set parses back to
 * the same UIDs. */
#include "imap/parse.h"
#include "imap/quote.h"

#include "fuzz_util.h"

struct span {
        unsigned *uids;
        size_t n, cap;
        bool overflow;
};

static void collect(void *ctx, unsigned lo, unsigned hi)
{
        struct span *s = ctx;
        FUZZ_CHECK(lo <= hi, "range %u:%u not ordered", lo, hi);
        for (uint64_t u = lo; u <= hi; u++) {
                if (s->n == s->cap) {
                        s->overflow = true;
                        return;
                }
                s->uids[s->n++] = (unsigned)u;
        }
}

static void check_string_roundtrip(const uint8_t *data, size_t size, bool literal_plus)
{
        struct imap_cmd c;
        imap_cmd_init(&c, literal_plus);
        imap_cmd_add(&c, "* X ");
        imap_cmd_string(&c, (const char *)data, size);
        imap_cmd_add(&c, "\r\n");
        FUZZ_CHECK(!c.oom, "cmd out of memory");
        char *buf = fuzz_dup_exact(c.buf, c.len);
        struct imap_framer f;
        imap_framer_reset(&f);
        ssize_t n = imap_frame(&f, buf, c.len, UINT64_MAX);
        FUZZ_CHECK(n == (ssize_t)c.len, "a quoted string split the response: framed %zd of %zu", n,
                   c.len);
        struct imap_response *r = NULL;
        FUZZ_CHECK(imap_parse(buf, c.len, &r) == 0, "response with our string does not parse");
        FUZZ_CHECK(r->args && !r->args->next, "not exactly one value");
        FUZZ_CHECK(r->args->type == IMAP_STRING, "not a string (type %d)", (int)r->args->type);
        FUZZ_CHECK(r->args->len == size && memcmp(r->args->s, data, size) == 0,
                   "string came back different");
        imap_response_free(r);
        free(buf);
        imap_cmd_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        check_string_roundtrip(data, size, false);
        check_string_roundtrip(data, size, true);

        char *exact = fuzz_dup_exact(data, size);
        unsigned buf[256];
        struct span s = {buf, 0, 256, false};
        (void)imap_uidset_parse(exact, size, collect, &s);
        free(exact);

        /* UIDs from the input, formatted and parsed back. */
        size_t n = size / 4 < 64 ? size / 4 : 64;
        unsigned in[64], sorted[64];
        for (size_t i = 0; i < n; i++) {
                memcpy(&in[i], data + 4 * i, 4);
                in[i] = in[i] % 1000 + 1; /* small values make runs likely */
                sorted[i] = in[i];
        }
        char out[1024];
        size_t len = imap_uidset_format(sorted, n, out, sizeof(out));
        FUZZ_CHECK(len < sizeof(out), "uid set too long");
        if (n == 0)
                return 0;
        unsigned got[1100];
        struct span g = {got, 0, 1100, false};
        FUZZ_CHECK(imap_uidset_parse(out, len, collect, &g) == 0, "own set does not parse: %s",
                   out);
        FUZZ_CHECK(!g.overflow, "set %s too big", out);
        for (size_t i = 0; i < n; i++) {
                bool found = false;
                for (size_t k = 0; k < g.n && !found; k++)
                        found = got[k] == in[i];
                FUZZ_CHECK(found, "UID %u lost in %s", in[i], out);
        }
        for (size_t k = 1; k < g.n; k++)
                FUZZ_CHECK(got[k - 1] < got[k], "set %s not sorted or has duplicates", out);
        return 0;
}
