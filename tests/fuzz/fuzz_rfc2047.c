/* libFuzzer target: RFC 2047 decoding and UTF-8 sanitising (imap/rfc2047.c).
 * Checks the promises of rfc2047.h: the result is always valid UTF-8, without
 * CR or LF unless an encoded word decoded to them; text with nothing to decode comes back
 * unchanged; sanitising valid UTF-8 changes nothing. */
#include "imap/rfc2047.h"

#include "fuzz_util.h"

static bool plain_text(const uint8_t *s, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if ((s[i] < 0x20 && s[i] != '\t') || s[i] > 0x7e)
                        return false;
                if (s[i] == '=' && i + 1 < len && s[i + 1] == '?')
                        return false;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *in = fuzz_dup_exact(data, size);

        char *out = imap_rfc2047_decode(in, size);
        FUZZ_CHECK(out != NULL, "decode returned NULL");
        size_t olen = strlen(out);
        FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)out, olen, false), "decode gave invalid UTF-8");
        /* Raw CR and LF go; an encoded word may decode to them (rfc2047.h
         * promises only valid UTF-8 there; file names drop controls later). */
        if (!memmem(data, size, "=?", 2))
                FUZZ_CHECK(!memchr(out, '\r', olen) && !memchr(out, '\n', olen),
                           "decode kept a raw CR or LF");
        if (plain_text(data, size))
                FUZZ_CHECK(olen == size && memcmp(out, data, size) == 0,
                           "plain text changed: %zu bytes in, %zu out", size, olen);
        free(out);

        char *san = imap_utf8_sanitize(in, size);
        FUZZ_CHECK(san != NULL, "sanitize returned NULL");
        size_t slen = strlen(san);
        FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)san, slen, false),
                   "sanitize gave invalid UTF-8");
        if (fuzz_utf8_valid(data, size, false))
                FUZZ_CHECK(slen == size && memcmp(san, data, size) == 0,
                           "sanitize changed valid UTF-8");
        free(san);
        free(in);
        return 0;
}
