/* Modified UTF-7 mailbox names (RFC 3501 §5.1.3), both ways. Expected
 * encodings were cross-checked with glibc's independent UTF-7-IMAP iconv. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/utf7.h"
#include "tests/unit/unit_main.h"

static void check_decode(const char *utf7, const char *utf8)
{
        char *got = imap_utf7_decode(utf7, strlen(utf7));
        ck_assert_msg(got != NULL, "decode(\"%s\") failed", utf7);
        ck_assert_str_eq(got, utf8);
        free(got);
}

static void check_encode(const char *utf8, const char *utf7)
{
        char *got = imap_utf7_encode(utf8, strlen(utf8));
        ck_assert_msg(got != NULL, "encode(\"%s\") failed", utf8);
        ck_assert_str_eq(got, utf7);
        free(got);
}

/* Both directions, which is how mailbox names are used: LIST decodes, every
 * command naming the mailbox encodes again and must give the same bytes. */
static void check_both(const char *utf8, const char *utf7)
{
        check_encode(utf8, utf7);
        check_decode(utf7, utf8);
}

static void check_decode_invalid(const char *utf7, size_t len)
{
        char *got = imap_utf7_decode(utf7, len);
        ck_assert_msg(got == NULL, "decode(\"%s\") gave \"%s\", want NULL", utf7, got ? got : "");
}

static void check_encode_invalid(const char *utf8, size_t len)
{
        char *got = imap_utf7_encode(utf8, len);
        ck_assert_msg(got == NULL, "encode of invalid UTF-8 gave \"%s\"", got ? got : "");
}

static size_t put_utf8(char *out, uint32_t c)
{
        if (c < 0x80) {
                out[0] = (char)c;
                return 1;
        }
        if (c < 0x800) {
                out[0] = (char)(0xc0 | (c >> 6));
                out[1] = (char)(0x80 | (c & 0x3f));
                return 2;
        }
        if (c < 0x10000) {
                out[0] = (char)(0xe0 | (c >> 12));
                out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
                out[2] = (char)(0x80 | (c & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (c >> 18));
        out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[3] = (char)(0x80 | (c & 0x3f));
        return 4;
}

START_TEST(test_ascii_unchanged)
{
        check_both("INBOX", "INBOX");
        check_both("Sent Items", "Sent Items");
        check_both("Archive/2024", "Archive/2024");
        check_both("", "");
        /* Every printable character except '&' stands for itself. */
        char all[96];
        size_t n = 0;
        for (int c = 0x20; c <= 0x7e; c++)
                if (c != '&')
                        all[n++] = (char)c;
        all[n] = '\0';
        check_both(all, all);
}
END_TEST

START_TEST(test_ampersand)
{
        check_both("&", "&-");
        check_both("&&", "&-&-");
        check_both("Tom & Jerry", "Tom &- Jerry");
        check_both("R&D", "R&-D");
        check_both("a&", "a&-");
}
END_TEST

START_TEST(test_german)
{
        check_both("Entwürfe", "Entw&APw-rfe");
        check_both("Gelöschte Elemente", "Gel&APY-schte Elemente");
        check_both("äöü", "&AOQA9gD8-");
        check_both("Ärger&Ünterschied", "&AMQ-rger&-&ANw-nterschied");
}
END_TEST

START_TEST(test_cjk_and_cyrillic)
{
        /* The example of RFC 3501 §5.1.3. */
        check_both("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        check_both("下書き", "&Tgtm+DBN-");
        check_both("送信済みアイテム", "&kAFP4W4IMH8wojCkMMYw4A-");
        check_both("中文", "&Ti1lhw-");
        check_both("Корзина", "&BBoEPgRABDcEOAQ9BDA-");
}
END_TEST

START_TEST(test_non_bmp)
{
        /* U+1F4E7 and U+1F600 travel as UTF-16 surrogate pairs. */
        check_both("📧 Mail", "&2D3c5w- Mail");
        check_both("a😀b", "a&2D3eAA-b");
        /* BMP and non-BMP in one run: the pair straddles base64 groups. */
        check_both("ü€😀", "&APwgrNg93gA-");
        check_both("😀😀", "&2D3eANg93gA-");
}
END_TEST

START_TEST(test_controls_are_base64)
{
        /* Not printable, so not allowed to stand for itself. */
        check_both("tab\there", "tab&AAk-here");
        check_both("\x7f", "&AH8-");
}
END_TEST

START_TEST(test_round_trip_every_code_point)
{
        /* Each code point alone or between other characters, rotating so that
         * every alignment of the UTF-16 units in the base64 bit stream is
         * exercised without making the test slow. */
        static const char *const around[][2] = {{"", ""}, {"x", ""}, {"", "y"}, {"\xc3\xa4", "z"}};
        for (uint32_t c = 1; c <= 0x10ffff; c += c < 0x10000 ? 1 : 97) {
                if (c >= 0xd800 && c <= 0xdfff)
                        continue;
                const char *const *a = around[c % 4];
                char in[16];
                size_t n = strlen(a[0]);
                memcpy(in, a[0], n);
                n += put_utf8(in + n, c);
                strcpy(in + n, a[1]);
                char *enc = imap_utf7_encode(in, strlen(in));
                ck_assert_msg(enc != NULL, "encode U+%04X", (unsigned)c);
                char *dec = imap_utf7_decode(enc, strlen(enc));
                ck_assert_msg(dec != NULL, "decode of U+%04X (%s)", (unsigned)c, enc);
                ck_assert_msg(strcmp(dec, in) == 0, "U+%04X round trip", (unsigned)c);
                free(dec);
                free(enc);
        }
}
END_TEST

START_TEST(test_long_runs)
{
        /* Long base64 runs make the UTF-8 output longer than the input. */
        char in[3 * 200 + 1] = "";
        for (int i = 0; i < 200; i++)
                strcat(in, "語");
        char *enc = imap_utf7_encode(in, strlen(in));
        ck_assert_ptr_nonnull(enc);
        char *dec = imap_utf7_decode(enc, strlen(enc));
        ck_assert_ptr_nonnull(dec);
        ck_assert_str_eq(dec, in);
        free(dec);
        free(enc);
}
END_TEST

START_TEST(test_decoder_accepts_only_canonical)
{
        /* Whatever the decoder accepts, the encoder gives back byte for byte:
         * the server knows a mailbox only by its encoded name. */
        static const char alphabet[] = "&-&-AAAOQDgd8+,w2Dd3ab/ \x7f";
        uint32_t x = 88172645u;
        int accepted = 0;
        for (int round = 0; round < 200000; round++) {
                char in[12];
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                size_t n = 1 + x % (sizeof in - 1);
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                        in[i] = alphabet[x % (sizeof alphabet - 1)];
                }
                char *dec = imap_utf7_decode(in, n);
                if (!dec)
                        continue;
                accepted++;
                char *enc = imap_utf7_encode(dec, strlen(dec));
                ck_assert_ptr_nonnull(enc);
                ck_assert_msg(strlen(enc) == n && memcmp(enc, in, n) == 0,
                              "\"%.*s\" decodes but encodes back as \"%s\"", (int)n, in, enc);
                free(enc);
                free(dec);
        }
        ck_assert_int_gt(accepted, 1000);
}
END_TEST

START_TEST(test_length_is_respected)
{
        char *got = imap_utf7_decode("INBOX&junk", 5);
        ck_assert_str_eq(got, "INBOX");
        free(got);
        got = imap_utf7_encode("Entwürfe\xff", strlen("Entwürfe"));
        ck_assert_str_eq(got, "Entw&APw-rfe");
        free(got);
}
END_TEST

START_TEST(test_decode_bad_base64)
{
        check_decode_invalid("&AP*-", 5);
        check_decode_invalid("&AP/-", 5);  /* '/' is standard base64, not modified */
        check_decode_invalid("&APw=-", 6); /* no padding in modified base64 */
        check_decode_invalid("&AP w-", 6);
        check_decode_invalid("&A-", 3);    /* 6 bits: not even one UTF-16 unit */
        check_decode_invalid("&APwA-", 6); /* a superfluous character */
}
END_TEST

START_TEST(test_decode_encoded_ascii)
{
        check_decode_invalid("&AGE-", 5);    /* "a" */
        check_decode_invalid("&ACY-", 5);    /* "&" must be "&-" */
        check_decode_invalid("&ACA-", 5);    /* " " */
        check_decode_invalid("&APwAYQ-", 8); /* "üa": the 'a' inside the run */
        check_decode_invalid("&AAA-", 5);    /* U+0000 can't be in a C string */
}
END_TEST

START_TEST(test_decode_unpaired_surrogates)
{
        check_decode_invalid("&2D0-", 5);       /* lone high surrogate */
        check_decode_invalid("&3gA-", 5);       /* lone low surrogate */
        check_decode_invalid("&2D0A5A-", 8);    /* high then BMP char */
        check_decode_invalid("&2D3YPQ-", 8);    /* high then high */
        check_decode_invalid("&3gDYPQ-", 8);    /* low then high */
        check_decode_invalid("&2D0-&3gA-", 10); /* a pair split across runs */
}
END_TEST

START_TEST(test_decode_8bit_and_controls)
{
        check_decode_invalid("Entw\xc3\xbcrfe", 9);
        check_decode_invalid("\xff", 1);
        check_decode_invalid("a\tb", 3);
        check_decode_invalid("a\0b", 3);
        check_decode_invalid("&AP\xc3\xbc-", 7);
}
END_TEST

START_TEST(test_decode_missing_dash)
{
        check_decode_invalid("&APw", 4);
        check_decode_invalid("Entw&APwrfe", 11);
        check_decode_invalid("&", 1);
        check_decode_invalid("a&", 2);
}
END_TEST

START_TEST(test_decode_nonzero_padding)
{
        /* "&APw-" is ü; the last character carries two padding bits. */
        check_decode("&APw-", "ü");
        check_decode_invalid("&APx-", 5);
        check_decode_invalid("&APz-", 5);
        check_decode_invalid("&AOQA9h-", 8); /* "äö" with 4 padding bits 0001 */
}
END_TEST

START_TEST(test_decode_non_canonical_runs)
{
        /* The encoder writes one run; two would not survive a round trip. */
        check_decode_invalid("&AOQ-&APY-", 10);
        check_decode("&AOQ-&-", "ä&");
        check_decode("&AOQ-a&APY-", "äaö");
}
END_TEST

START_TEST(test_encode_invalid_utf8)
{
        check_encode_invalid("\xff", 1);
        check_encode_invalid("a\x80", 2);            /* lone continuation byte */
        check_encode_invalid("\xc0\xaf", 2);         /* overlong '/' */
        check_encode_invalid("\xe0\x80\xaf", 3);     /* overlong '/' */
        check_encode_invalid("\xed\xa0\x80", 3);     /* UTF-16 surrogate */
        check_encode_invalid("\xf4\x90\x80\x80", 4); /* above U+10FFFF */
        check_encode_invalid("\xe6\x97", 2);         /* truncated */
        check_encode_invalid("Entw\xfcrfe", 8);      /* Latin-1 */
        check_encode_invalid("a\0b", 3);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("utf7");
        TCase *tc = tcase_create("utf7");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_ascii_unchanged);
        tcase_add_test(tc, test_ampersand);
        tcase_add_test(tc, test_german);
        tcase_add_test(tc, test_cjk_and_cyrillic);
        tcase_add_test(tc, test_non_bmp);
        tcase_add_test(tc, test_controls_are_base64);
        tcase_add_test(tc, test_round_trip_every_code_point);
        tcase_add_test(tc, test_long_runs);
        tcase_add_test(tc, test_decoder_accepts_only_canonical);
        tcase_add_test(tc, test_length_is_respected);
        tcase_add_test(tc, test_decode_bad_base64);
        tcase_add_test(tc, test_decode_encoded_ascii);
        tcase_add_test(tc, test_decode_unpaired_surrogates);
        tcase_add_test(tc, test_decode_8bit_and_controls);
        tcase_add_test(tc, test_decode_missing_dash);
        tcase_add_test(tc, test_decode_nonzero_padding);
        tcase_add_test(tc, test_decode_non_canonical_runs);
        tcase_add_test(tc, test_encode_invalid_utf8);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
