/* Message file names and mailbox component escaping. */
#include <errno.h>
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

/* escape(in) == want and back; raw: in is a server spelling, not decoded. */
static void check_escape_as(const char *in, bool raw, const char *want)
{
        char *esc = names_escape_component(in, raw);
        ck_assert_ptr_nonnull(esc);
        ck_assert_msg(strcmp(esc, want) == 0, "escape(\"%s\") = \"%s\", want \"%s\"", in, esc,
                      want);
        char *back = NULL;
        bool back_raw = !raw;
        int r = names_unescape_component(esc, &back, &back_raw);
        ck_assert_msg(r == 0, "unescape(\"%s\") = %d", esc, r);
        ck_assert_str_eq(back, in);
        ck_assert_msg(back_raw == raw || !strpbrk(want, "%"), "unescape(\"%s\"): raw %d", esc,
                      back_raw);
        free(back);
        free(esc);
}

static void check_escape(const char *in, const char *want)
{
        check_escape_as(in, false, want);
}

static void check_unescape_bad(const char *in)
{
        char *got = NULL;
        bool raw;
        int r = names_unescape_component(in, &got, &raw);
        ck_assert_msg(r == -EINVAL && got == NULL, "unescape(\"%s\") = %d \"%s\", want EINVAL", in,
                      r, got ? got : "");
}

/* The full mapping of one raw component: shown as want, and typing want
 * gives the component back. */
static void check_server(const char *comp, const char *want)
{
        char *dir = names_dir_from_server(comp);
        ck_assert_ptr_nonnull(dir);
        ck_assert_msg(strcmp(dir, want) == 0, "dir(\"%s\") = \"%s\", want \"%s\"", comp, dir, want);
        char *back = NULL;
        int r = names_server_from_dir(dir, 0, &back);
        ck_assert_msg(r == 0, "server(\"%s\") = %d", dir, r);
        ck_assert_str_eq(back, comp);
        free(back);
        free(dir);
}

/* A typed name: accepted as server name want (NULL: refused with EINVAL). */
static void check_typed(const char *typed, char delim, const char *want)
{
        char *got = NULL;
        int r = names_server_from_dir(typed, delim, &got);
        if (!want) {
                ck_assert_msg(r == -EINVAL, "typed \"%s\": %d \"%s\", want EINVAL", typed, r,
                              got ? got : "");
                return;
        }
        ck_assert_msg(r == 0, "typed \"%s\": %d", typed, r);
        ck_assert_str_eq(got, want);
        char *dir = names_dir_from_server(got);
        ck_assert_str_eq(dir, typed); /* listed exactly as typed */
        free(dir);
        free(got);
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
        check_escape(".parts.", ".parts.");
        check_escape(".Search", ".Search");
        check_escape("&-", "&-");
        check_escape("&", "&");
        check_escape("2E", "2E");
}
END_TEST

START_TEST(test_escape_bare_percent_unchanged)
{
        /* #17: a '%' that isn't followed by two hex digits stands for itself. */
        check_escape("%", "%");
        check_escape("100%", "100%");
        check_escape("p%q", "p%q");
        check_escape("50% off", "50% off");
        check_escape("%%", "%%");
        check_escape("%2", "%2");
        check_escape("a%2", "a%2");
        check_escape("%zz", "%zz");
        check_escape("%2G", "%2G");
        check_escape("%g0", "%g0");
        check_escape("%ü1", "%ü1");
        check_escape("%%%", "%%%");
}
END_TEST

START_TEST(test_escape_percent_hex_and_slash)
{
        check_escape("%41", "%2541");
        check_escape("%25", "%2525");
        check_escape("%2F", "%252F");
        check_escape("%2e", "%252e");
        check_escape("%aF", "%25aF");
        check_escape("%00", "%2500");
        check_escape("%%41", "%%2541");
        check_escape("%4%41", "%4%2541");
        check_escape("/", "%2F");
        check_escape("a/b", "a%2Fb");
        check_escape("a/b%c", "a%2Fb%c");
        check_escape("//", "%2F%2F");
        check_escape("%/", "%%2F");
        check_escape("%4/", "%4%2F");
}
END_TEST

START_TEST(test_escape_dots_reserved_and_empty)
{
        check_escape(".", "%2E");
        check_escape("..", "%2E%2E");
        check_escape(".parts", "%2Eparts");
        check_escape(".search", "%2Esearch");
        check_escape("", "%00");
        check_escape("%2E", "%252E");
        check_escape("%2Eparts", "%252Eparts");
}
END_TEST

START_TEST(test_escape_raw_spelling)
{
        /* A name that isn't modified UTF-7 is shown as the server spells
         * it; '&', controls and 8-bit bytes are escaped so that it can't
         * collide with a decoded name, and typing it sends it back as is. */
        check_escape_as("a&b", true, "a%26b");
        check_escape_as("&AOQ", true, "%26AOQ");
        check_escape_as("\xc3\xbc", true, "%C3%BC");
        check_escape_as("tab\there", true, "tab%09here");
        check_escape_as("del\x7f", true, "del%7F");
        check_escape_as("&%41/%", true, "%26%2541%2F%");
        check_server("a&b", "a%26b");
        check_server("&AOQ", "%26AOQ");
        check_server("Entw\xc3\xbc"
                     "rfe",
                     "Entw%C3%BCrfe");
        check_server("&AOQ-&AOQ-", "%26AOQ-%26AOQ-"); /* two runs in a row: not canonical */
        check_server("&AGE-", "%26AGE-");             /* 'a' in base64: not canonical */
}
END_TEST

START_TEST(test_server_names)
{
        check_server("INBOX", "INBOX");
        check_server("Entw&APw-rfe", "Entwürfe");
        check_server("R&-D", "R&D");
        check_server("&-", "&");
        check_server("p%q", "p%q");
        check_server("100%", "100%");
        check_server("%41", "%2541");
        check_server("", "%00");
        check_server(".", "%2E");
        check_server("..", "%2E%2E");
        check_server(".parts", "%2Eparts");
        check_server(".search", "%2Esearch");
        check_server("a/b", "a%2Fb");
        check_server("&ZeVnLIqe-", "日本語");
        check_server("&ZeVnLIqe-%20", "日本語%2520");
}
END_TEST

START_TEST(test_typed_names)
{
        check_typed("p%q", '/', "p%q");
        check_typed("50% off", '/', "50% off");
        check_typed("100%", '/', "100%");
        check_typed("Entwürfe", '/', "Entw&APw-rfe");
        check_typed("R&D", '/', "R&-D");
        check_typed("%2541", '/', "%41");
        check_typed("%2Eparts", '/', ".parts");
        check_typed("%2E", '/', ".");
        check_typed("%00", '/', "");
        check_typed("a%2Fb", '.', "a/b");
        check_typed("a%26b", '/', "a&b");
        check_typed("%C3%BC", '/', "\xc3\xbc");
        /* refused: another spelling of a shown name, or reserved */
        check_typed("%41", '/', NULL);
        check_typed("%25", '/', NULL);
        check_typed("%2f", '/', NULL);
        check_typed(".parts", '/', NULL);
        check_typed(".search", '/', NULL);
        check_typed(".", '/', NULL);
        check_typed("a%2Eb", '/', NULL);
        check_typed("%26-", '/', NULL);    /* "&-" is valid: shown as "&" */
        check_typed("%26AOQ-", '/', NULL); /* "&AOQ-" is valid: shown as "ä" */
        check_typed("ü%26", '/', NULL);    /* a raw spelling escapes its 8-bit bytes */
        check_typed("\xfc", '/', NULL);    /* not UTF-8 */
        check_typed("a%00b", '/', NULL);
        check_typed("a%2Fb", '/', NULL); /* the delimiter inside one component */
        check_typed("x.y", '.', NULL);
        check_typed("x%2Ey", '.', NULL);
}
END_TEST

START_TEST(test_unescape_malformed)
{
        check_unescape_bad("%41");
        check_unescape_bad("%%41");
        check_unescape_bad("%2f"); /* only the spelling the encoder writes */
        check_unescape_bad("%2e");
        check_unescape_bad("a%2Eb"); /* a dot needs no escape here */
        check_unescape_bad("%2E%2E%2E");
        check_unescape_bad("%2E.");
        check_unescape_bad("%25");
        check_unescape_bad("x%25");
        check_unescape_bad("%2e%2e");
        check_unescape_bad(".parts");
        check_unescape_bad(".search");
        check_unescape_bad("..");
        check_unescape_bad("");
        check_unescape_bad("%00%00");
        check_unescape_bad("a%00");
        check_unescape_bad("%2Ehidden");
}
END_TEST

/* ---- property test: every direction is exact ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state >> 32);
}

/* A random string from pieces chosen to hit the escapes: '%', hex digits,
 * '/', '.', the delimiter, '&', '-', non-ASCII, controls and whole reserved
 * names. */
static void random_name(char *out, size_t cap, bool bytes)
{
        static const char *const pieces[] = {
            "%",  "%",      "2",       "5",    "F",   "E",   "e",    "f",    "0",   "4",
            "1",  "a",      "A",       "z",    "/",   ".",   ".",    "&",    "-",   "ü",
            "日", "🎉",      "\t",      "\x7f", "%2F", "%25", "%2E",  "%00",  "%41", "&AOQ-",
            "&-", ".parts", ".search", "+",    ",",   " ",   "\xc3", "\xff", "\x01"};
        size_t n = sizeof pieces / sizeof pieces[0];
        size_t npieces = rng() % 7, o = 0;
        if (rng() % 16 == 0) {
                const char *whole[] = {"", ".", "..", ".parts", ".search"};
                snprintf(out, cap, "%s", whole[rng() % 5]);
                return;
        }
        for (size_t i = 0; i < npieces; i++) {
                /* UTF-8 names (bytes = false) skip the stray bytes. */
                const char *p = pieces[rng() % (bytes ? n : n - 3)];
                size_t l = strlen(p);
                if (o + l >= cap)
                        break;
                memcpy(out + o, p, l);
                o += l;
        }
        out[o] = '\0';
}

START_TEST(test_property_round_trips)
{
        char s[64];
        unsigned accepted = 0;
        for (int i = 0; i < 200000; i++) {
                bool bytes = i % 2;
                random_name(s, sizeof s, bytes);
                char delim = "/.+,"[rng() % 4];
                /* 1. escape/unescape of a decoded name */
                char *esc = names_escape_component(s, false);
                char *back = NULL;
                bool raw;
                ck_assert_int_eq(names_unescape_component(esc, &back, &raw), 0);
                ck_assert_str_eq(back, s);
                ck_assert(esc[0] && !strchr(esc, '/') && strcmp(esc, ".") && strcmp(esc, "..") &&
                          strcmp(esc, ".parts") && strcmp(esc, ".search"));
                free(back);
                free(esc);
                /* 2. a server component (no delimiter inside) → directory →
                 *    the same component */
                if (!strchr(s, delim)) {
                        char *dir = names_dir_from_server(s);
                        ck_assert(dir[0] && !strchr(dir, '/') && strcmp(dir, ".") &&
                                  strcmp(dir, "..") && strcmp(dir, ".parts") &&
                                  strcmp(dir, ".search"));
                        char *comp = NULL;
                        int r = names_server_from_dir(dir, delim, &comp);
                        ck_assert_msg(r == 0 && strcmp(comp, s) == 0,
                                      "server \"%s\" shown \"%s\" gives %d \"%s\"", s, dir, r,
                                      comp ? comp : "");
                        free(comp);
                        free(dir);
                }
                /* 3. the same text typed as a directory name: if accepted,
                 *    the folder it makes is listed exactly as typed */
                char *comp = NULL;
                if (names_server_from_dir(s, delim, &comp) == 0) {
                        char *dir = names_dir_from_server(comp);
                        ck_assert_msg(strcmp(dir, s) == 0, "typed \"%s\" → \"%s\" → \"%s\"", s,
                                      comp, dir);
                        /* ('+' and ',' are also base64 digits of modified UTF-7) */
                        ck_assert(!strchr(comp, delim) || !strchr("/.", delim));
                        free(dir);
                        accepted++;
                }
                free(comp);
        }
        ck_assert_uint_gt(accepted, 50000); /* the test really typed names */
}
END_TEST

START_TEST(test_too_long)
{
        char s[300];
        memset(s, 'a', sizeof s - 1);
        s[sizeof s - 1] = '\0';
        ck_assert(names_too_long(s));
        s[256] = '\0';
        ck_assert(names_too_long(s));
        s[255] = '\0';
        ck_assert(!names_too_long(s));
        ck_assert(!names_too_long(""));
        /* bytes, not characters: 128 × 'ü' is 256 bytes */
        char u[260] = "";
        for (int i = 0; i < 127; i++)
                strcat(u, "ü");
        ck_assert(!names_too_long(u));
        strcat(u, "ü");
        ck_assert(names_too_long(u));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("names");
        TCase *tc = tcase_create("names");
        tcase_set_timeout(tc, 120); /* the property test: 200,000 names, slow under ASan */
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
        tcase_add_test(tc, test_escape_bare_percent_unchanged);
        tcase_add_test(tc, test_escape_percent_hex_and_slash);
        tcase_add_test(tc, test_escape_dots_reserved_and_empty);
        tcase_add_test(tc, test_escape_raw_spelling);
        tcase_add_test(tc, test_server_names);
        tcase_add_test(tc, test_typed_names);
        tcase_add_test(tc, test_unescape_malformed);
        tcase_add_test(tc, test_property_round_trips);
        tcase_add_test(tc, test_too_long);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
