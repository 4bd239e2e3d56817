/* RFC 2047 header decoding: encodings, charsets, adjacency, broken words,
 * folding, raw 8-bit text, and the promise of valid UTF-8 out. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/rfc2047.h"
#include "tests/unit/unit_main.h"

#define FFFD "\xef\xbf\xbd"

static void check_n(const char *in, size_t len, const char *want)
{
        char *got = imap_rfc2047_decode(in, len);
        ck_assert_msg(got != NULL, "decode(\"%s\") returned NULL", in);
        ck_assert_msg(strcmp(got, want) == 0, "decode(\"%s\"): got \"%s\", want \"%s\"", in, got,
                      want);
        free(got);
}

static void check(const char *in, const char *want)
{
        check_n(in, strlen(in), want);
}

/* The input is kept as it is: a broken word must not lose text. */
static void check_raw(const char *in)
{
        check(in, in);
}

/* Strict UTF-8 check, written independently of the decoder's own. */
static bool valid_utf8(const char *str)
{
        const unsigned char *s = (const unsigned char *)str;
        while (*s) {
                uint32_t c;
                int n;
                if (s[0] < 0x80) {
                        s++;
                        continue;
                } else if ((s[0] & 0xe0) == 0xc0) {
                        c = s[0] & 0x1f, n = 1;
                } else if ((s[0] & 0xf0) == 0xe0) {
                        c = s[0] & 0x0f, n = 2;
                } else if ((s[0] & 0xf8) == 0xf0) {
                        c = s[0] & 0x07, n = 3;
                } else {
                        return false;
                }
                for (int i = 1; i <= n; i++) {
                        if ((s[i] & 0xc0) != 0x80)
                                return false;
                        c = (c << 6) | (s[i] & 0x3f);
                }
                static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
                if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                        return false;
                s += n + 1;
        }
        return true;
}

START_TEST(test_plain_text)
{
        check("Hello world", "Hello world");
        check("", "");
        check("  spaces   kept  ", "  spaces   kept  ");
        check("Price = 5 ?", "Price = 5 ?");
        check("Grüße 😀", "Grüße 😀");
        check_n("abc=?UTF-8?Q?x?=", 3, "abc");
}
END_TEST

START_TEST(test_q_encoding)
{
        check("=?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=", "Grüße aus München");
        check("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "Grüße");
        check("=?UTF-8?Q?\?=", "");
}
END_TEST

START_TEST(test_q_lowercase)
{
        check("=?iso-8859-1?q?caf=e9?=", "café");
        check("=?utf-8?q?caf=c3=a9?=", "café");
}
END_TEST

START_TEST(test_q_underscore)
{
        check("=?UTF-8?Q?a_b__c?=", "a b  c");
        check("=?UTF-8?Q?snake=5Fcase?=", "snake_case");
        check("=?UTF-8?Q?=20lead_?=", " lead ");
}
END_TEST

START_TEST(test_b_encoding)
{
        check("=?UTF-8?B?w6TDtsO8?=", "äöü");
        check("=?utf-8?b?w6TDtsO8?=", "äöü");
        check("=?UTF-8?B?8J+YgCBFbW9qaQ==?=", "😀 Emoji");
        /* Missing padding is common and unambiguous. */
        check("=?UTF-8?B?8J+YgCBFbW9qaQ?=", "😀 Emoji");
        check("=?UTF-8?B?\?=", "");
}
END_TEST

START_TEST(test_charset_names)
{
        check("=?Utf-8?Q?=C3=A4?=", "ä");
        check("=?uTF-8?Q?=C3=A4?=", "ä");
        /* RFC 2231 language suffix. */
        check("=?UTF-8*de?Q?Gr=C3=BC=C3=9Fe?=", "Grüße");
        check("=?ISO-8859-1*en-US?q?caf=E9?=", "café");
        check("=?utf8?Q?=C3=A4?=", "ä");
}
END_TEST

START_TEST(test_iso_8859_15)
{
        /* 0xA4 is € in Latin-9 but ¤ in Latin-1: the label must matter. */
        check("=?ISO-8859-15?Q?Preis_100_=A4?=", "Preis 100 €");
        check("=?iso-8859-15?q?=A6a=A8?=", "Šaš");
        check("=?ISO-8859-1?Q?=A4?=", "¤");
}
END_TEST

START_TEST(test_windows_1252)
{
        check("=?windows-1252?Q?=93quoted=94_=80_=96_test?=", "“quoted” € – test");
        check("=?CP1252?Q?=85?=", "…");
        /* Mail labelled Latin-1 is often really windows-1252. */
        check("=?iso-8859-1?q?=80_=93x=94?=", "€ “x”");
}
END_TEST

START_TEST(test_koi8_r)
{
        check("=?koi8-r?B?8NLJ18XULCDNydI=?=", "Привет, мир");
        check("=?KOI8-R?Q?=F0=D2=C9=D7=C5=D4?=", "Привет");
}
END_TEST

START_TEST(test_shift_jis)
{
        check("=?shift_jis?B?k/qWe4zqgsyDgYFbg4s=?=", "日本語のメール");
        check("=?Shift_JIS?Q?=93=FA=96=7B?=", "日本");
}
END_TEST

START_TEST(test_iso_2022_jp)
{
        check("=?iso-2022-jp?B?GyRCJDMkcyRLJEEkT0AkMyYbKEI=?=", "こんにちは世界");
        check("Re: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "Re: こんにちは");
}
END_TEST

START_TEST(test_gb2312)
{
        check("=?gb2312?B?1tDOxNPKvP4=?=", "中文邮件");
        /* 喆 is not in GB2312, but senders label GBK text as GB2312. */
        check("=?GB2312?B?zfWGtA==?=", "王喆");
        check("=?GBK?B?zfWGtA==?=", "王喆");
}
END_TEST

START_TEST(test_utf8_words)
{
        check("=?UTF-8?B?8J+Tpw==?= Mail", "📧 Mail");
        check("=?UTF-8?Q?=E2=82=AC?=", "€");
}
END_TEST

START_TEST(test_adjacent_words_drop_space)
{
        check("=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab");
        check("=?UTF-8?Q?a?=   \t =?UTF-8?Q?b?=", "ab");
        check("=?UTF-8?Q?a?==?UTF-8?Q?b?=", "ab");
        check("=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab");
        /* Different charsets: still adjacent words. */
        check("=?ISO-8859-1?Q?=E4?= =?UTF-8?Q?=C3=B6?= =?KOI8-R?Q?=F0?=", "äöП");
        /* The space that belongs to the text is encoded inside the word. */
        check("=?UTF-8?Q?Hello_?= =?UTF-8?Q?world?=", "Hello world");
}
END_TEST

START_TEST(test_word_next_to_text_keeps_space)
{
        check("Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from Bob", "Re: Grüße from Bob");
        check("=?UTF-8?Q?a?= b =?UTF-8?Q?c?=", "a b c");
        check("Fwd:  =?UTF-8?Q?x?=  end", "Fwd:  x  end");
        /* Not separated by space at all: decoded anyway, as clients do. */
        check("Re:=?UTF-8?Q?=C3=A4?=x", "Re:äx");
}
END_TEST

START_TEST(test_broken_words_kept_raw)
{
        check_raw("=?UTF-8?B?w6T*?=");  /* bad base64 character */
        check_raw("=?UTF-8?B?w6TDt?="); /* 5 characters: 6 bits left */
        check_raw("=?UTF-8?B?w6Q=x?="); /* data after padding */
        check_raw("=?UTF-8?Q?abc");     /* missing ?= */
        check_raw("=?UTF-8?Q?abc?");
        check_raw("=?UTF-8?X?abc?="); /* unknown encoding */
        check_raw("=?UTF-8?QQ?abc?=");
        check_raw("=?UTF-8?Q?a=ZZ?="); /* bad Q escape */
        check_raw("=?UTF-8?Q?a=4?=");
        check_raw("=?UTF-8?Q?a b?=");         /* space inside a word */
        check_raw("=??Q?abc?=");              /* empty charset */
        check_raw("=?UTF-8//TRANSLIT?Q?a?="); /* not a charset name */
        check_raw("=?UTF-8?Q");
        check_raw("=?");
        check_raw("=?=");
        check_raw("?=");
}
END_TEST

START_TEST(test_broken_word_between_good_ones)
{
        /* A raw word is text, so the spaces around it stay. */
        check("=?UTF-8?B?*?= =?UTF-8?Q?ok?=", "=?UTF-8?B?*?= ok");
        check("=?UTF-8?Q?a?= =?UTF-8?B?*?= =?UTF-8?Q?b?=", "a =?UTF-8?B?*?= b");
}
END_TEST

START_TEST(test_unknown_charset_kept_raw)
{
        check_raw("=?x-no-such-charset?Q?abc?=");
        check("=?x-no-such-charset?Q?abc?= =?UTF-8?Q?=C3=A4?=", "=?x-no-such-charset?Q?abc?= ä");
        check("=?UTF-8?Q?=C3=A4?= =?bogus?B?YQ==?=", "ä =?bogus?B?YQ==?=");
}
END_TEST

START_TEST(test_folded_headers)
{
        check("Long\r\n subject\r\n\tcontinues", "Long subject\tcontinues");
        check("LF\n only", "LF only");
        check("trailing\r\n", "trailing");
        check("=?UTF-8?Q?Gr=C3=BC?=\r\n =?UTF-8?Q?=C3=9Fe?=\r\n from\r\n Bob", "Grüße from Bob");
}
END_TEST

START_TEST(test_raw_8bit_is_windows_1252)
{
        check("Gr\xfc\xdf"
              "e",
              "Grüße");
        check("\x80 \x93x\x94", "€ “x”");
        check("\x81", "\xc2\x81");             /* unassigned: the C1 control */
        check("\xe4 und \xc3\xa4", "ä und ä"); /* Latin-1 next to UTF-8 */
        check("\xc3", "Ã");                    /* a truncated UTF-8 lead byte */
        check("\xed\xa0\x80", "í\xc2\xa0€");   /* an encoded surrogate is invalid */
}
END_TEST

START_TEST(test_invalid_after_decoding_is_fffd)
{
        check("=?UTF-8?Q?a=FFb?=", "a" FFFD "b");
        check("=?UTF-8?B?7aCA?=", FFFD FFFD FFFD);   /* surrogate */
        check("=?UTF-8?Q?=C0=AF?=", FFFD FFFD);      /* overlong '/' */
        check("=?UTF-8?Q?a=E6=97?=", "a" FFFD FFFD); /* truncated */
        check("=?shift_jis?B?gqD/?=", "あ" FFFD);    /* 0xFF is not Shift_JIS */
        char *got = imap_rfc2047_decode("=?EUC-JP?Q?=A4=A2=A4?=", 22);
        ck_assert_ptr_nonnull(got);
        ck_assert(strncmp(got, "あ", strlen("あ")) == 0);
        ck_assert(strstr(got, FFFD) != NULL);
        ck_assert(valid_utf8(got));
        free(got);
}
END_TEST

START_TEST(test_split_multibyte_char)
{
        check("=?UTF-8?Q?=C3?= =?UTF-8?Q?=A4?=", "ä");
        check("=?UTF-8?B?4oI=?= =?UTF-8?B?rHVybw==?=", "€uro");
        check("=?utf-8?Q?=E2?=\r\n =?UTF-8?Q?=82=AC?=", "€");
        check("=?shift_jis?B?kw==?= =?shift_jis?B?+pZ7?=", "日本");
        /* The escape sequences of ISO-2022-JP hold across words. */
        check("=?ISO-2022-JP?B?GyRCJDM=?= =?ISO-2022-JP?B?JHMkSyRBJE8bKEI=?=", "こんにちは");
        /* Text in between: the halves are not joined. */
        check("=?UTF-8?Q?=C3?= x =?UTF-8?Q?=A4?=", FFFD " x " FFFD);
}
END_TEST

START_TEST(test_nul_dropped)
{
        check_n("a\0b", 3, "ab");
        check("=?UTF-8?Q?a=00b?=", "ab");
        check("=?UTF-16BE?B?AGEAAABi?=", "ab");
}
END_TEST

START_TEST(test_many_words)
{
        /* Long headers: linear work and no stack use per word. */
        size_t words = 5000;
        const char *w = "=?UTF-8?B?w6Q=?= ";
        char *in = malloc(words * strlen(w) + 1);
        ck_assert_ptr_nonnull(in);
        in[0] = '\0';
        for (size_t i = 0; i < words; i++)
                memcpy(in + i * strlen(w), w, strlen(w) + 1);
        char *got = imap_rfc2047_decode(in, strlen(in));
        ck_assert_ptr_nonnull(got);
        /* Adjacent words: all spaces dropped, but the trailing one is text. */
        ck_assert_uint_eq(strlen(got), words * 2 + 1);
        ck_assert(valid_utf8(got));
        free(got);
        free(in);
}
END_TEST

START_TEST(test_every_prefix_of_a_word)
{
        const char *word = "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkT0AkMyYbKEI=?= tail";
        for (size_t n = 0; n <= strlen(word); n++) {
                char *got = imap_rfc2047_decode(word, n);
                ck_assert_ptr_nonnull(got);
                ck_assert(valid_utf8(got));
                free(got);
        }
}
END_TEST

START_TEST(test_random_bytes_give_valid_utf8)
{
        /* Fixed seed: a failure here is reproducible. */
        uint32_t x = 2463534242u;
        static const char *const pieces[] = {
            "=?",  "?=", "?Q?", "?B?",   "UTF-8",  "shift_jis", "ISO-2022-JP", "=C3",
            "=A4", "_",  " ",   "\r\n ", "\x1b$B", "w6Q=",      "\xff",        "\xc3"};
        for (int round = 0; round < 2000; round++) {
                char in[256];
                size_t n = 0;
                while (n < 200) {
                        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                        if (x % 3 == 0) {
                                in[n++] = (char)(x >> 8);
                        } else {
                                const char *p = pieces[(x >> 8) % 16];
                                memcpy(in + n, p, strlen(p));
                                n += strlen(p);
                        }
                }
                char *got = imap_rfc2047_decode(in, n);
                ck_assert_ptr_nonnull(got);
                ck_assert_msg(valid_utf8(got), "round %d", round);
                free(got);
        }
}
END_TEST

START_TEST(test_sanitize)
{
        char *got = imap_utf8_sanitize("ok ä 😀", strlen("ok ä 😀"));
        ck_assert_str_eq(got, "ok ä 😀");
        free(got);
        got = imap_utf8_sanitize("Gr\xfc\xdf"
                                 "e \x80",
                                 7);
        ck_assert_str_eq(got, "Grüße €");
        free(got);
        got = imap_utf8_sanitize("", 0);
        ck_assert_str_eq(got, "");
        free(got);
        got = imap_utf8_sanitize("a\0b\xf4\x90\x80\x80", 7);
        ck_assert_str_eq(got, "abô\xc2\x90€€");
        ck_assert(valid_utf8(got));
        free(got);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("rfc2047");
        TCase *tc = tcase_create("rfc2047");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_plain_text);
        tcase_add_test(tc, test_q_encoding);
        tcase_add_test(tc, test_q_lowercase);
        tcase_add_test(tc, test_q_underscore);
        tcase_add_test(tc, test_b_encoding);
        tcase_add_test(tc, test_charset_names);
        tcase_add_test(tc, test_iso_8859_15);
        tcase_add_test(tc, test_windows_1252);
        tcase_add_test(tc, test_koi8_r);
        tcase_add_test(tc, test_shift_jis);
        tcase_add_test(tc, test_iso_2022_jp);
        tcase_add_test(tc, test_gb2312);
        tcase_add_test(tc, test_utf8_words);
        tcase_add_test(tc, test_adjacent_words_drop_space);
        tcase_add_test(tc, test_word_next_to_text_keeps_space);
        tcase_add_test(tc, test_broken_words_kept_raw);
        tcase_add_test(tc, test_broken_word_between_good_ones);
        tcase_add_test(tc, test_unknown_charset_kept_raw);
        tcase_add_test(tc, test_folded_headers);
        tcase_add_test(tc, test_raw_8bit_is_windows_1252);
        tcase_add_test(tc, test_invalid_after_decoding_is_fffd);
        tcase_add_test(tc, test_split_multibyte_char);
        tcase_add_test(tc, test_nul_dropped);
        tcase_add_test(tc, test_many_words);
        tcase_add_test(tc, test_every_prefix_of_a_word);
        tcase_add_test(tc, test_random_bytes_give_valid_utf8);
        tcase_add_test(tc, test_sanitize);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
