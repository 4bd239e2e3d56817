/* Dates: IMAP INTERNALDATE both ways, and lenient RFC 5322 Date parsing. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/date.h"
#include "tests/unit/unit_main.h"

/* 2024-03-01 14:30:00 UTC; most cases below are this moment in some form. */
#define T1430Z ((time_t)1709303400)
#define HOUR ((time_t)3600)

static void check_internal(const char *s, time_t want)
{
        time_t got = 12345;
        ck_assert_msg(imap_date_parse_internal(s, &got), "\"%s\" not parsed", s);
        ck_assert_msg(got == want, "\"%s\": got %lld, want %lld", s, (long long)got,
                      (long long)want);
}

static void check_internal_bad(const char *s)
{
        time_t got = 12345;
        ck_assert_msg(!imap_date_parse_internal(s, &got), "\"%s\" was accepted", s);
}

static void check_5322(const char *s, time_t want)
{
        time_t got = 12345;
        ck_assert_msg(imap_date_parse_rfc5322(s, strlen(s), &got), "\"%s\" not parsed", s);
        ck_assert_msg(got == want, "\"%s\": got %lld, want %lld (off by %lld s)", s, (long long)got,
                      (long long)want, (long long)(got - want));
}

static void check_5322_bad(const char *s)
{
        time_t got = 12345;
        ck_assert_msg(!imap_date_parse_rfc5322(s, strlen(s), &got), "\"%s\" was accepted", s);
}

START_TEST(test_internal_parse)
{
        check_internal("01-Mar-2024 15:30:00 +0100", T1430Z);
        check_internal("01-Mar-2024 14:30:00 +0000", T1430Z);
        check_internal("01-Mar-2024 09:30:00 -0500", T1430Z);
        check_internal("01-Mar-2024 20:00:00 +0530", T1430Z);
        /* The example of RFC 3501. */
        check_internal("17-Jul-1996 02:44:25 -0700", 837596665);
        check_internal("29-Feb-2024 00:00:00 +0000", 1709164800);
}
END_TEST

START_TEST(test_internal_day_forms)
{
        check_internal(" 1-Mar-2024 14:30:00 +0000", T1430Z);
        check_internal("1-Mar-2024 14:30:00 +0000", T1430Z);
        check_internal("01-mar-2024 14:30:00 +0000", T1430Z);
        check_internal("01-MAR-2024 14:30:00 +0000", T1430Z);
}
END_TEST

START_TEST(test_internal_bad)
{
        check_internal_bad("");
        check_internal_bad("01-Foo-2024 14:30:00 +0000");
        check_internal_bad("32-Mar-2024 14:30:00 +0000");
        check_internal_bad("29-Feb-2023 14:30:00 +0000");
        check_internal_bad("31-Apr-2024 14:30:00 +0000");
        check_internal_bad("00-Mar-2024 14:30:00 +0000");
        check_internal_bad("01-Mar-2024 24:00:00 +0000");
        check_internal_bad("01-Mar-2024 14:60:00 +0000");
        check_internal_bad("01-Mar-2024 14:30:00");
        check_internal_bad("01-Mar-2024 14:30 +0000");
        check_internal_bad("01-Mar-24 14:30:00 +0000");
        check_internal_bad("01-Mar-2024 14:30:00 0000");
        check_internal_bad("01-Mar-2024 14:30:00 +2400");
        check_internal_bad("01-Mar-2024 14:30:00 +0160");
        check_internal_bad("01-Mar-2024 14:30:00 +000");
        check_internal_bad("01-Mar-2024 14:30:00 +0000 ");
        check_internal_bad("01-Mar-2024 14:30:00 +0000x");
        check_internal_bad("01 Mar 2024 14:30:00 +0000");
        check_internal_bad("01-Mar");
        check_internal_bad("01-Ma");
        check_internal_bad("  1-Mar-2024 14:30:00 +0000");
        check_internal_bad("123-Mar-2024 14:30:00 +0000");
}
END_TEST

START_TEST(test_internal_format)
{
        char buf[27];
        imap_date_format_internal(0, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Jan-1970 00:00:00 +0000");
        imap_date_format_internal(T1430Z, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Mar-2024 14:30:00 +0000");
        imap_date_format_internal(837596665, buf, sizeof buf);
        ck_assert_str_eq(buf, "17-Jul-1996 09:44:25 +0000");
        imap_date_format_internal(-2208988800, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Jan-1900 00:00:00 +0000");
        imap_date_format_internal(253402300799, buf, sizeof buf);
        ck_assert_str_eq(buf, "31-Dec-9999 23:59:59 +0000");
}
END_TEST

START_TEST(test_internal_format_small_buffer)
{
        char buf[12];
        memset(buf, 'x', sizeof buf);
        imap_date_format_internal(T1430Z, buf, 10);
        ck_assert_str_eq(buf, "01-Mar-20");
        ck_assert_int_eq(buf[10], 'x');
}
END_TEST

START_TEST(test_internal_format_out_of_range)
{
        /* No 4-digit year to write: a fixed, valid stand-in. */
        char buf[27];
        imap_date_format_internal(253402300800, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Jan-1970 00:00:00 +0000");
        imap_date_format_internal((time_t)1 << 62, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Jan-1970 00:00:00 +0000");
}
END_TEST

START_TEST(test_internal_round_trip)
{
        for (time_t t = -2208988800; t < 253402300799; t += 7777777 + t % 13) {
                char buf[27];
                time_t back;
                imap_date_format_internal(t, buf, sizeof buf);
                ck_assert_msg(imap_date_parse_internal(buf, &back), "\"%s\"", buf);
                ck_assert_msg(back == t, "%lld -> \"%s\" -> %lld", (long long)t, buf,
                              (long long)back);
        }
}
END_TEST

START_TEST(test_no_tz_or_locale_dependence)
{
        /* Process settings must not leak into names. */
        setenv("TZ", "America/New_York", 1);
        tzset();
        setlocale(LC_ALL, "de_DE.UTF-8"); /* may not exist; harmless */
        check_internal("01-Mar-2024 15:30:00 +0100", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00", T1430Z);
        check_5322("Fri, 01 Mar 2024 15:30:00 +0100", T1430Z);
        char buf[27];
        imap_date_format_internal(T1430Z, buf, sizeof buf);
        ck_assert_str_eq(buf, "01-Mar-2024 14:30:00 +0000");
        setenv("TZ", "Asia/Kolkata", 1);
        tzset();
        check_5322("1 Mar 2024 14:30:00 GMT", T1430Z);
}
END_TEST

START_TEST(test_5322_standard)
{
        check_5322("Fri, 01 Mar 2024 15:30:00 +0100", T1430Z);
        check_5322("Fri, 1 Mar 2024 15:30:00 +0100", T1430Z);
        check_5322("Fri, 01 Mar 2024 09:30:00 -0500", T1430Z);
        check_5322("Fri, 01 Mar 2024 20:00:00 +0530", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 -0000", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 +0000", T1430Z);
}
END_TEST

START_TEST(test_5322_optional_parts)
{
        check_5322("01 Mar 2024 15:30:00 +0100", T1430Z);        /* no day name */
        check_5322("Fri, 01 Mar 2024 15:30 +0100", T1430Z);      /* no seconds */
        check_5322("Fri, 01 Mar 2024 14:30:00", T1430Z);         /* no zone */
        check_5322("01 Mar 2024", T1430Z - 14 * HOUR - 30 * 60); /* no time */
}
END_TEST

START_TEST(test_5322_comments_and_space)
{
        check_5322("Fri, 1 Mar 2024 15:30:00 +0100 (CET)", T1430Z);
        check_5322("Fri, 1 Mar 2024 15:30:00 +0100 (Central (nested) European Time)", T1430Z);
        check_5322("(sent) Fri, 1 Mar 2024 15:30:00 +0100", T1430Z);
        check_5322("Fri, 1 Mar 2024 15:30:00 +0100 (a \\) escaped paren)", T1430Z);
        check_5322("  Fri ,  01   Mar   2024   15:30:00   +0100  ", T1430Z);
        check_5322("Fri,\t01\tMar\t2024\t15:30:00\t+0100", T1430Z);
        check_5322("Fri, 01 Mar 2024\r\n 15:30:00 +0100", T1430Z);
        check_5322("Fri, 01 Mar 2024 15:30:00 +0100 (Mitteleurop\xc3\xa4ische Zeit)", T1430Z);
        check_5322("Fri, 01 Mar 2024 15:30:00 +0100 (unclosed comment", T1430Z);
}
END_TEST

START_TEST(test_5322_names_spelled_out)
{
        check_5322("Friday, 01 March 2024 14:30:00 GMT", T1430Z);
        check_5322("fri, 01 mar 2024 14:30:00 gmt", T1430Z);
        check_5322("FRI, 01 MAR 2024 14:30:00 UT", T1430Z);
        check_5322("Sun, 1 Sept 2024 00:00:00 +0000", 1725148800);
        check_5322("Sun, 1 Sep 2024 00:00:00 +0000", 1725148800);
        check_5322("Sun, 1 September 2024 00:00:00 +0000", 1725148800);
}
END_TEST

START_TEST(test_5322_obsolete_zones)
{
        check_5322("Fri, 01 Mar 2024 14:30:00 GMT", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 UT", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 UTC", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 Z", T1430Z);
        check_5322("Fri, 01 Mar 2024 09:30:00 EST", T1430Z);
        check_5322("Fri, 01 Mar 2024 10:30:00 EDT", T1430Z);
        check_5322("Fri, 01 Mar 2024 08:30:00 CST", T1430Z);
        check_5322("Fri, 01 Mar 2024 09:30:00 CDT", T1430Z);
        check_5322("Fri, 01 Mar 2024 07:30:00 MST", T1430Z);
        check_5322("Fri, 01 Mar 2024 08:30:00 MDT", T1430Z);
        check_5322("Fri, 01 Mar 2024 06:30:00 PST", T1430Z);
        check_5322("Fri, 01 Mar 2024 07:30:00 PDT", T1430Z);
        /* Military letters and unknown names mean +0000 (RFC 5322 §4.3). */
        check_5322("Fri, 01 Mar 2024 14:30:00 A", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 XYZT", T1430Z);
        /* A numeric zone wins over a name next to it. */
        check_5322("Fri, 01 Mar 2024 15:30:00 CET +0100", T1430Z);
        check_5322("Fri, 01 Mar 2024 15:30:00 GMT+0100", T1430Z);
}
END_TEST

START_TEST(test_5322_two_digit_years)
{
        check_5322("Fri, 01 Mar 24 09:30:00 EST", T1430Z);
        check_5322("Fri, 01 Jan 99 00:00:00 +0000", 915148800);
        check_5322("Fri, 01 Jan 49 00:00:00 +0000", 2493072000);
        check_5322("Sun, 01 Jan 50 00:00:00 +0000", -631152000);
        check_5322("01 Jan 03 00:00:00 +0000", 1041379200);
        /* Three digits: 1900 + n (RFC 5322 §4.3). */
        check_5322("01 Jan 103 00:00:00 +0000", 1041379200);
}
END_TEST

START_TEST(test_5322_other_layouts)
{
        check_5322("Fri Mar  1 14:30:00 2024", T1430Z); /* asctime */
        check_5322("Fri Mar 1 15:30:00 2024 +0100", T1430Z);
        check_5322("Fri, 01-Mar-2024 15:30:00 +0100", T1430Z);
        check_5322("2024-03-01T14:30:00Z", T1430Z); /* ISO 8601 */
        check_5322("2024-03-01 15:30:00 +01:00", T1430Z);
        check_5322("2024-03-01T09:30:00-05:00", T1430Z);
        check_5322("Fri, 01 Mar 2024 02:30:00 PM +0000", T1430Z);
        check_5322("Fri, 01 Mar 2024 12:00:00 AM +0000", T1430Z - 14 * HOUR - 30 * 60);
        check_5322("Fri, 01 Mar 2024 15:30:00.123 +0100", T1430Z);
        check_5322("Fri, 01 Mar 2024 15:30:00 +01", T1430Z);
}
END_TEST

START_TEST(test_5322_zone_crosses_day)
{
        check_5322("Fri, 01 Mar 2024 00:30:00 +0100", 1709249400);
        check_5322("Thu, 29 Feb 2024 23:30:00 -0100", T1430Z - 14 * HOUR);
}
END_TEST

START_TEST(test_5322_leap_second)
{
        check_5322("Sat, 31 Dec 2016 23:59:60 +0000", 1483228800);
}
END_TEST

START_TEST(test_5322_length_respected)
{
        time_t got;
        const char *s = "Fri, 01 Mar 2024 14:30:00 +0100";
        /* Without the zone only the first 25 bytes are seen: UTC. */
        ck_assert(imap_date_parse_rfc5322(s, 25, &got));
        ck_assert_int_eq(got, T1430Z);
        ck_assert(!imap_date_parse_rfc5322(s, 10, &got));
        /* Every prefix is safe to parse. */
        for (size_t n = 0; n <= strlen(s); n++)
                (void)imap_date_parse_rfc5322(s, n, &got);
}
END_TEST

START_TEST(test_5322_garbage)
{
        check_5322_bad("");
        check_5322_bad("   ");
        check_5322_bad("garbage");
        check_5322_bad("hello world 12");
        check_5322_bad("1709303400");
        check_5322_bad("12:34");
        check_5322_bad("(Fri, 01 Mar 2024 14:30:00 +0100)");
        check_5322_bad("Fri, 01 Foo 2024 14:30:00 +0100");
        check_5322_bad("Mar 2024 14:30:00");
        check_5322_bad("01 Mar 14:30:00");
        check_5322_bad("01.03.2024 14:30:00");
        check_5322_bad("\xff\xfe\x00");
}
END_TEST

START_TEST(test_5322_impossible_fields)
{
        check_5322_bad("32 Mar 2024 14:30:00 +0000");
        check_5322_bad("00 Mar 2024 14:30:00 +0000");
        check_5322_bad("29 Feb 2023 14:30:00 +0000");
        check_5322_bad("31 Apr 2024 14:30:00 +0000");
        check_5322_bad("01 Mar 2024 24:00:00 +0000");
        check_5322_bad("01 Mar 2024 14:61:00 +0000");
        check_5322_bad("01 Mar 2024 14:30:61 +0000");
        check_5322_bad("01 Mar 1899 14:30:00 +0000");
        check_5322_bad("01 Mar 2024 14:3:00 +0000");
        check_5322_bad("01 Mar 2024 114:30:00 +0000");
        check_5322_bad("2024-13-01T00:00:00Z");
        check_5322_bad("2024-00-01T00:00:00Z");
}
END_TEST

START_TEST(test_5322_bad_zone_is_ignored)
{
        /* An impossible offset is no offset: the date itself is still good. */
        check_5322("Fri, 01 Mar 2024 14:30:00 +9999", T1430Z);
        check_5322("Fri, 01 Mar 2024 14:30:00 +123456", T1430Z);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("date");
        TCase *tc = tcase_create("date");
        tcase_add_test(tc, test_internal_parse);
        tcase_add_test(tc, test_internal_day_forms);
        tcase_add_test(tc, test_internal_bad);
        tcase_add_test(tc, test_internal_format);
        tcase_add_test(tc, test_internal_format_small_buffer);
        tcase_add_test(tc, test_internal_format_out_of_range);
        tcase_add_test(tc, test_internal_round_trip);
        tcase_add_test(tc, test_no_tz_or_locale_dependence);
        tcase_add_test(tc, test_5322_standard);
        tcase_add_test(tc, test_5322_optional_parts);
        tcase_add_test(tc, test_5322_comments_and_space);
        tcase_add_test(tc, test_5322_names_spelled_out);
        tcase_add_test(tc, test_5322_obsolete_zones);
        tcase_add_test(tc, test_5322_two_digit_years);
        tcase_add_test(tc, test_5322_other_layouts);
        tcase_add_test(tc, test_5322_zone_crosses_day);
        tcase_add_test(tc, test_5322_leap_second);
        tcase_add_test(tc, test_5322_length_respected);
        tcase_add_test(tc, test_5322_garbage);
        tcase_add_test(tc, test_5322_impossible_fields);
        tcase_add_test(tc, test_5322_bad_zone_is_ignored);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
