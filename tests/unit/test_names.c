/* Message file names and mailbox component escaping. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/names.h"
#include "tests/unit/unit_main.h"

#define DATE "Fri, 01 Mar 2024 10:00:00 +0000"
/* 2023-12-24 18:00:00 UTC, used when there is no usable Date header. */
#define INTERNAL ((time_t)1703440800)

static void check_name(unsigned uid, const char *date, const char *subject, time_t internal,
                       const char *want)
{
        char *got = names_message(uid, date, subject, internal);
        ck_assert_ptr_nonnull(got);
        ck_assert_msg(strcmp(got, want) == 0, "got \"%s\", want \"%s\"", got, want);
        free(got);
}

/* Strict UTF-8 check, independent of the code under test. */
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

/* Everything a file name must be, whatever the input. */
static void check_name_rules(const char *name, unsigned uid)
{
        ck_assert_uint_le(strlen(name), NAME_MAX_BYTES);
        ck_assert_msg(valid_utf8(name), "invalid UTF-8: %s", name);
        ck_assert_msg(strchr(name, '/') == NULL, "slash: %s", name);
        const unsigned char *u = (const unsigned char *)name;
        for (size_t i = 0; u[i]; i++) {
                ck_assert_msg(u[i] >= 0x20 && u[i] != 0x7f, "control byte in %s", name);
                /* C1 controls are U+0080..U+009F: C2 80 .. C2 9F. */
                ck_assert_msg(!(u[i] == 0xc2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f),
                              "C1 control in %s", name);
        }
        char suffix[32];
        snprintf(suffix, sizeof suffix, " [%u].eml", uid);
        size_t len = strlen(name), slen = strlen(suffix);
        ck_assert(len > slen);
        ck_assert_str_eq(name + len - slen, suffix);
        ck_assert_msg(name[len - slen - 1] != ' ', "space before suffix: %s", name);
}

START_TEST(test_examples)
{
        check_name(4711, DATE, "Quarterly numbers", 0, "2024-03-01 Quarterly numbers [4711].eml");
        check_name(1, DATE, "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=", 0,
                   "2024-03-01 Grüße aus München [1].eml");
        check_name(2, DATE, "Re: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", 0,
                   "2024-03-01 Re: こんにちは [2].eml");
        check_name(3, DATE,
                   "Gr\xfc\xdf"
                   "e",
                   0, "2024-03-01 Grüße [3].eml");
        check_name(4, DATE, "😀 party", 0, "2024-03-01 😀 party [4].eml");
}
END_TEST

START_TEST(test_date_is_utc)
{
        check_name(1, "Fri, 01 Mar 2024 00:30:00 +0100", "x", 0, "2024-02-29 x [1].eml");
        check_name(1, "Thu, 29 Feb 2024 20:00:00 -0500", "x", 0, "2024-03-01 x [1].eml");
        check_name(1, "Sat, 01 Jan 99 00:00:00 GMT", "x", 0, "1999-01-01 x [1].eml");
}
END_TEST

START_TEST(test_no_date)
{
        check_name(7, NULL, "Hi", INTERNAL, "2023-12-24 Hi [7].eml");
        check_name(7, "", "Hi", INTERNAL, "2023-12-24 Hi [7].eml");
        check_name(7, "not a date", "Hi", INTERNAL, "2023-12-24 Hi [7].eml");
        check_name(7, "Fri, 31 Feb 2024 10:00:00 +0000", "Hi", INTERNAL, "2023-12-24 Hi [7].eml");
        check_name(7, NULL, "Hi", 0, "1970-01-01 Hi [7].eml");
}
END_TEST

START_TEST(test_no_subject)
{
        check_name(5, DATE, NULL, 0, "2024-03-01 (no subject) [5].eml");
        check_name(5, DATE, "", 0, "2024-03-01 (no subject) [5].eml");
        check_name(5, DATE, " \t \r\n ", 0, "2024-03-01 (no subject) [5].eml");
        check_name(5, DATE, "=?UTF-8?Q?=20_?=", 0, "2024-03-01 (no subject) [5].eml");
        check_name(5, DATE, "\x01\x02\x1b", 0, "2024-03-01 (no subject) [5].eml");
        check_name(5, NULL, NULL, INTERNAL, "2023-12-24 (no subject) [5].eml");
}
END_TEST

START_TEST(test_whitespace_collapsed)
{
        check_name(1, DATE, "  Re:\tHello \r\n  world  ", 0, "2024-03-01 Re: Hello world [1].eml");
        check_name(1, DATE, "a\r\n\tb", 0, "2024-03-01 a b [1].eml");
        check_name(1, DATE, "a\v\fb", 0, "2024-03-01 a b [1].eml");
        check_name(1, DATE, "=?UTF-8?Q?a=09=09b?=", 0, "2024-03-01 a b [1].eml");
        /* U+2028 LINE SEPARATOR is a line break, too. */
        check_name(1, DATE,
                   "a\xe2\x80\xa8"
                   "b",
                   0, "2024-03-01 a b [1].eml");
}
END_TEST

START_TEST(test_slash)
{
        check_name(1, DATE, "a/b", 0, "2024-03-01 a_b [1].eml");
        check_name(1, DATE, "/etc/passwd", 0, "2024-03-01 _etc_passwd [1].eml");
        check_name(1, DATE, "=?UTF-8?Q?..=2F..?=", 0, "2024-03-01 .._.. [1].eml");
}
END_TEST

START_TEST(test_control_chars)
{
        check_name(1, DATE,
                   "a\x01"
                   "b\x7f c",
                   0, "2024-03-01 ab c [1].eml");
        check_name(1, DATE, "\x1b[31mred", 0, "2024-03-01 [31mred [1].eml");
        /* C1 controls arrive encoded, or as unassigned windows-1252 bytes. */
        check_name(1, DATE, "=?UTF-8?Q?a=C2=85b=C2=9Fc=C2=A0d?=", 0,
                   "2024-03-01 abc\xc2\xa0"
                   "d [1].eml");
        check_name(1, DATE,
                   "a\x81\x8d"
                   "b",
                   0, "2024-03-01 ab [1].eml");
        check_name(1, DATE, "=?UTF-8?Q?a=00b?=", 0, "2024-03-01 ab [1].eml");
}
END_TEST

START_TEST(test_every_byte)
{
        for (int c = 1; c < 256; c++) {
                char subject[8];
                snprintf(subject, sizeof subject, "x%cy", c);
                char *name = names_message(9, DATE, subject, 0);
                ck_assert_ptr_nonnull(name);
                check_name_rules(name, 9);
                free(name);
        }
}
END_TEST

START_TEST(test_long_ascii_subject)
{
        char subject[1001];
        memset(subject, 'a', 1000);
        subject[1000] = '\0';
        char *name = names_message(1, DATE, subject, 0);
        ck_assert_ptr_nonnull(name);
        ck_assert_uint_eq(strlen(name), NAME_MAX_BYTES);
        ck_assert(strncmp(name, "2024-03-01 aaaa", 15) == 0);
        check_name_rules(name, 1);
        free(name);
}
END_TEST

START_TEST(test_long_multibyte_subject)
{
        /* Every alignment of 2-, 3- and 4-byte characters against the cut. */
        static const char *const chars[] = {"ä", "日", "😀"};
        for (size_t k = 0; k < 3; k++) {
                for (int lead = 0; lead < 4; lead++) {
                        char subject[2000] = "";
                        for (int i = 0; i < lead; i++)
                                strcat(subject, "a");
                        while (strlen(subject) < 1500)
                                strcat(subject, chars[k]);
                        char *name = names_message(42, DATE, subject, 0);
                        ck_assert_ptr_nonnull(name);
                        check_name_rules(name, 42);
                        /* As long as possible: one more character would not fit. */
                        ck_assert_uint_gt(strlen(name) + strlen(chars[k]), NAME_MAX_BYTES);
                        /* The kept part is a prefix of the subject. */
                        size_t kept = strlen(name) - strlen("2024-03-01 ") - strlen(" [42].eml");
                        ck_assert(strncmp(name + 11, subject, kept) == 0);
                        free(name);
                }
        }
}
END_TEST

START_TEST(test_long_encoded_subject)
{
        /* Many encoded words, decoded first and only then cut. */
        char subject[6000] = "";
        for (int i = 0; i < 250; i++)
                strcat(subject, "=?UTF-8?B?5pel5pys?= ");
        char *name = names_message(UINT_MAX, DATE, subject, 0);
        ck_assert_ptr_nonnull(name);
        check_name_rules(name, UINT_MAX);
        ck_assert(strstr(name, "日本日本") != NULL);
        free(name);
}
END_TEST

START_TEST(test_cut_at_space_leaves_no_space)
{
        /* Subject budget for UID 1: 255 - 11 - 8 = 236 bytes. Put a space
         * right where the cut would fall. */
        char subject[400];
        memset(subject, 'a', sizeof subject);
        subject[236] = ' ';
        subject[sizeof subject - 1] = '\0';
        char *name = names_message(1, DATE, subject, 0);
        check_name_rules(name, 1);
        ck_assert_uint_eq(strlen(name), NAME_MAX_BYTES);
        free(name);
        subject[235] = ' ';
        subject[236] = 'a';
        name = names_message(1, DATE, subject, 0);
        check_name_rules(name, 1);
        ck_assert_uint_eq(strlen(name), NAME_MAX_BYTES - 1);
        free(name);
}
END_TEST

START_TEST(test_large_uid)
{
        check_name(UINT_MAX, DATE, "x", 0, "2024-03-01 x [4294967295].eml");
        check_name(0, DATE, "x", 0, "2024-03-01 x [0].eml");
}
END_TEST

START_TEST(test_deterministic)
{
        const char *subj = "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \xfc";
        char *a = names_message(3, "Fri, 01 Mar 2024 00:30:00 +0100", subj, INTERNAL);
        setenv("TZ", "Pacific/Kiritimati", 1);
        tzset();
        char *b = names_message(3, "Fri, 01 Mar 2024 00:30:00 +0100", subj, INTERNAL);
        char *c = names_message(3, NULL, subj, INTERNAL);
        setenv("TZ", "Pacific/Pago_Pago", 1);
        tzset();
        char *d = names_message(3, NULL, subj, INTERNAL);
        ck_assert_str_eq(a, b);
        ck_assert_str_eq(a, "2024-02-29 Grüße ü [3].eml");
        ck_assert_str_eq(c, d);
        ck_assert_str_eq(c, "2023-12-24 Grüße ü [3].eml");
        free(a);
        free(b);
        free(c);
        free(d);
}
END_TEST

START_TEST(test_message_uid)
{
        char *s = names_message_uid(4711);
        ck_assert_str_eq(s, "4711.eml");
        free(s);
        s = names_message_uid(0);
        ck_assert_str_eq(s, "0.eml");
        free(s);
        s = names_message_uid(UINT_MAX);
        ck_assert_str_eq(s, "4294967295.eml");
        free(s);
}
END_TEST

static void check_escape(const char *in, const char *want)
{
        char *esc = names_escape_component(in);
        ck_assert_ptr_nonnull(esc);
        ck_assert_msg(strcmp(esc, want) == 0, "escape(\"%s\") = \"%s\", want \"%s\"", in, esc,
                      want);
        char *back = names_unescape_component(esc);
        ck_assert_msg(back != NULL, "unescape(\"%s\") failed", esc);
        ck_assert_str_eq(back, in);
        free(back);
        free(esc);
}

static void check_unescape_bad(const char *in)
{
        char *got = names_unescape_component(in);
        ck_assert_msg(got == NULL, "unescape(\"%s\") = \"%s\", want NULL", in, got ? got : "");
}

START_TEST(test_escape_plain_unchanged)
{
        check_escape("INBOX", "INBOX");
        check_escape("Entwürfe", "Entwürfe");
        check_escape("a b", "a b");
        check_escape("a.b", "a.b");
        check_escape("...", "...");
        check_escape(".hidden", ".hidden");
        check_escape("..x", "..x");
        check_escape("&-", "&-");
        check_escape("2E", "2E");
}
END_TEST

START_TEST(test_escape_percent_and_slash)
{
        check_escape("%", "%25");
        check_escape("100%", "100%25");
        check_escape("/", "%2F");
        check_escape("a/b", "a%2Fb");
        check_escape("a/b%c", "a%2Fb%25c");
        check_escape("%2F", "%252F");
        check_escape("%25", "%2525");
        check_escape("//", "%2F%2F");
}
END_TEST

START_TEST(test_escape_dots_and_empty)
{
        check_escape(".", "%2E");
        check_escape("..", "%2E%2E");
        check_escape("", "%");
        check_escape("%2E", "%252E");
}
END_TEST

START_TEST(test_escape_never_special)
{
        /* The result is always a usable directory name component. */
        static const char *const inputs[] = {"", ".", "..", "/", "%", "a/..", "../", "%%", "/%/"};
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
                char *esc = names_escape_component(inputs[i]);
                ck_assert_ptr_nonnull(esc);
                ck_assert(esc[0] != '\0');
                ck_assert(strcmp(esc, ".") != 0 && strcmp(esc, "..") != 0);
                ck_assert(strchr(esc, '/') == NULL);
                char *back = names_unescape_component(esc);
                ck_assert_str_eq(back, inputs[i]);
                free(back);
                free(esc);
        }
}
END_TEST

START_TEST(test_unescape_malformed)
{
        check_unescape_bad("a%");
        check_unescape_bad("%2");
        check_unescape_bad("%%");
        check_unescape_bad("%2G");
        check_unescape_bad("%41");
        check_unescape_bad("%2f"); /* only the spelling the encoder writes */
        check_unescape_bad("%2e");
        check_unescape_bad("a%2Eb"); /* a dot needs no escape here */
        check_unescape_bad("%2E%2E%2E");
        check_unescape_bad("%2E.");
        check_unescape_bad("x%");
        check_unescape_bad("%25%");
}
END_TEST

START_TEST(test_unescape_plain)
{
        char *s = names_unescape_component("Archive");
        ck_assert_str_eq(s, "Archive");
        free(s);
        s = names_unescape_component("a%2Fb%25c");
        ck_assert_str_eq(s, "a/b%c");
        free(s);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("names");
        TCase *tc = tcase_create("names");
        tcase_add_test(tc, test_examples);
        tcase_add_test(tc, test_date_is_utc);
        tcase_add_test(tc, test_no_date);
        tcase_add_test(tc, test_no_subject);
        tcase_add_test(tc, test_whitespace_collapsed);
        tcase_add_test(tc, test_slash);
        tcase_add_test(tc, test_control_chars);
        tcase_add_test(tc, test_every_byte);
        tcase_add_test(tc, test_long_ascii_subject);
        tcase_add_test(tc, test_long_multibyte_subject);
        tcase_add_test(tc, test_long_encoded_subject);
        tcase_add_test(tc, test_cut_at_space_leaves_no_space);
        tcase_add_test(tc, test_large_uid);
        tcase_add_test(tc, test_deterministic);
        tcase_add_test(tc, test_message_uid);
        tcase_add_test(tc, test_escape_plain_unchanged);
        tcase_add_test(tc, test_escape_percent_and_slash);
        tcase_add_test(tc, test_escape_dots_and_empty);
        tcase_add_test(tc, test_escape_never_special);
        tcase_add_test(tc, test_unescape_malformed);
        tcase_add_test(tc, test_unescape_plain);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
