/* libFuzzer target: finding a header field (imap/header.c). The input is
 * "NAME\0HEADER": the field name (at most 64 bytes) and a header block that
 * is read from a heap copy of exactly its length. The value found must come
 * from inside the block, without leading WSP or a final line end. */
#include "imap/header.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *nul = memchr(data, 0, size < 65 ? size : 65);
        if (!nul || nul == data)
                return 0; /* no name: imapfs always asks for one */
        size_t nlen = (size_t)(nul - data);
        const char *name = (const char *)data;
        size_t hlen = size - nlen - 1;
        char *hdr = fuzz_dup_exact(nul + 1, hlen);

        char *v = imap_header_field(hdr, hlen, name);
        if (v) {
                size_t vlen = strlen(v);
                FUZZ_CHECK(vlen <= hlen, "value longer than the header block");
                /* strlen stops at a NUL inside the value: check the ends only
                 * when the block has none. */
                if (vlen && !memchr(hdr, 0, hlen)) {
                        FUZZ_CHECK(v[0] != ' ' && v[0] != '\t', "value starts with WSP");
                        FUZZ_CHECK(v[vlen - 1] != '\n' && v[vlen - 1] != '\r',
                                   "value ends with a line end");
                }
                free(v);
        }
        /* The fields imapfs asks for, on the same block. */
        static const char *const names[] = {"Subject", "Date", "Message-ID", "From"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                free(imap_header_field(hdr, hlen, names[i]));
        free(hdr);
        return 0;
}
