/* libFuzzer target: modified UTF-7 (imap/utf7.c). Whatever decodes must
 * encode back to the same bytes (utf7.h: only the canonical form is
 * accepted); whatever encodes must decode back; every strictly valid UTF-8
 * string without NUL must encode. */
#include "imap/utf7.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *in = fuzz_dup_exact(data, size);

        char *dec = imap_utf7_decode(in, size);
        if (dec) {
                size_t dlen = strlen(dec);
                FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)dec, dlen, false),
                           "decode gave invalid UTF-8");
                char *back = imap_utf7_encode(dec, dlen);
                FUZZ_CHECK(back != NULL, "decoded name does not encode");
                FUZZ_CHECK(strlen(back) == size && memcmp(back, data, size) == 0,
                           "encode(decode(x)) != x: %zu bytes in, back %s", size, back);
                free(back);
                free(dec);
        }

        char *enc = imap_utf7_encode(in, size);
        bool valid = fuzz_utf8_valid(data, size, false);
        FUZZ_CHECK(!valid || enc != NULL, "valid UTF-8 did not encode");
        if (enc) {
                FUZZ_CHECK(valid, "invalid UTF-8 was encoded");
                size_t elen = strlen(enc);
                for (size_t i = 0; i < elen; i++)
                        FUZZ_CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e, "encoded byte 0x%02x",
                                   (unsigned char)enc[i]);
                char *e2 = fuzz_dup_exact(enc, elen);
                char *back = imap_utf7_decode(e2, elen);
                FUZZ_CHECK(back != NULL, "encoded name does not decode: %s", enc);
                FUZZ_CHECK(strlen(back) == size && memcmp(back, data, size) == 0,
                           "decode(encode(x)) != x");
                free(back);
                free(e2);
                free(enc);
        }
        free(in);
        return 0;
}
