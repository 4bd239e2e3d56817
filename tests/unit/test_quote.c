/* Unit tests for command building: quoting, literals and their split points,
 * and UID-set formatting. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap/quote.h"
#include "tests/unit/unit_main.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void assert_cmd(const struct imap_cmd *c, const char *want, size_t len)
{
        ck_assert(!c->oom);
        ck_assert_msg(c->len == len && memcmp(c->buf, want, len) == 0, "got [%.*s] want [%.*s]",
                      (int)c->len, c->buf, (int)len, want);
        ck_assert_int_eq(c->buf[c->len], '\0');
}
#define ASSERT_CMD(c, lit) assert_cmd((c), S(lit))

/* Builds "SELECT <s>" and checks the bytes that would go on the wire. */
static void check_string(bool plus, const char *s, size_t len, const char *want, size_t wlen,
                         size_t nsplits)
{
        struct imap_cmd c;
        imap_cmd_init(&c, plus);
        imap_cmd_add(&c, "SELECT ");
        imap_cmd_string(&c, s, len);
        assert_cmd(&c, want, wlen);
        ck_assert_uint_eq(c.nsplits, nsplits);
        imap_cmd_free(&c);
}

/* What a server reading the command would see as line ends: only CRLFs that
 * are not inside a literal. A safe command has none (the session adds the
 * final one). */
static size_t bare_line_ends(const struct imap_cmd *c)
{
        size_t n = 0;
        for (size_t i = 0; i < c->len; i++) {
                if (c->buf[i] == '\r' || c->buf[i] == '\n') {
                        /* A literal spec "{n}\r\n" or "{n+}\r\n": skip it. */
                        size_t j = i;
                        if (c->buf[i] == '\r' && i > 0 && c->buf[i - 1] == '}' && i + 1 < c->len &&
                            c->buf[i + 1] == '\n') {
                                size_t k = i - 1;
                                while (k > 0 && c->buf[k - 1] != '{')
                                        k--;
                                size_t lit = strtoul(c->buf + k, NULL, 10);
                                i = j + 1 + lit;
                                continue;
                        }
                        n++;
                }
        }
        return n;
}

START_TEST(cmd_init_empty)
{
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        ASSERT_CMD(&c, "");
        ck_assert_ptr_nonnull(c.buf);
        ck_assert_uint_eq(c.nsplits, 0);
        ck_assert(!c.literal_plus);
        ck_assert_uint_eq(c.literal_minus_max, 0);
        ck_assert(!c.redact);
        imap_cmd_free(&c);
        ck_assert_ptr_null(c.buf);
        imap_cmd_free(&c); /* twice is harmless */
        imap_cmd_init(&c, true);
        ck_assert(c.literal_plus);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(cmd_add_formats)
{
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "UID FETCH %u (UID %s)", 42u, "FLAGS");
        imap_cmd_add(&c, "%s", "");
        imap_cmd_add(&c, " %zu", (size_t)7);
        ASSERT_CMD(&c, "UID FETCH 42 (UID FLAGS) 7");
        imap_cmd_free(&c);
}
END_TEST

START_TEST(cmd_add_grows)
{
        char big[5000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "A ");
        imap_cmd_add(&c, "%s", big);
        imap_cmd_add(&c, " %s", big);
        ck_assert(!c.oom);
        ck_assert_uint_eq(c.len, 2 + 4999 + 1 + 4999);
        ck_assert_uint_eq(strlen(c.buf), c.len);
        ck_assert(memcmp(c.buf, "A xxx", 5) == 0);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(string_plain_is_quoted)
{
        /* Never a bare atom: "NIL" or "INBOX" as data must stay strings. */
        check_string(false, S("INBOX"), S("SELECT \"INBOX\""), 0);
        check_string(false, S("NIL"), S("SELECT \"NIL\""), 0);
        check_string(false, S("Archive/2024 Q1"), S("SELECT \"Archive/2024 Q1\""), 0);
        check_string(false, S("a{5}"), S("SELECT \"a{5}\""), 0);
        check_string(false, S("(x) [y] %*"), S("SELECT \"(x) [y] %*\""), 0);
}
END_TEST

START_TEST(string_empty)
{
        check_string(false, "", 0, S("SELECT \"\""), 0);
        check_string(false, NULL, 0, S("SELECT \"\""), 0);
}
END_TEST

START_TEST(string_escapes_quote_and_backslash)
{
        check_string(false, S("a\"b"), S("SELECT \"a\\\"b\""), 0);
        check_string(false, S("a\\b"), S("SELECT \"a\\\\b\""), 0);
        check_string(false, S("\"\\\"\\"), S("SELECT \"\\\"\\\\\\\"\\\\\""), 0);
}
END_TEST

START_TEST(string_cr_lf_are_literals)
{
        check_string(false, S("a\rb"), S("SELECT {3}\r\na\rb"), 1);
        check_string(false, S("a\nb"), S("SELECT {3}\r\na\nb"), 1);
        check_string(false, S("\r\n"), S("SELECT {2}\r\n\r\n"), 1);
}
END_TEST

START_TEST(string_nul_is_literal)
{
        check_string(false, S("a\0b"), S("SELECT {3}\r\na\0b"), 1);
        ck_assert(!imap_quotable(S("\0")));
}
END_TEST

START_TEST(string_8bit_is_literal)
{
        check_string(false, S("Entw\xc3\xbcrfe"), S("SELECT {9}\r\nEntw\xc3\xbcrfe"), 1);
        check_string(false, S("\xff"), S("SELECT {1}\r\n\xff"), 1);
        check_string(false, S("\x80"), S("SELECT {1}\r\n\x80"), 1);
}
END_TEST

START_TEST(string_control_bytes_are_literals)
{
        check_string(false, S("a\tb"), S("SELECT {3}\r\na\tb"), 1);
        check_string(false, S("\x7f"), S("SELECT {1}\r\n\x7f"), 1);
        check_string(false, S("\x01"), S("SELECT {1}\r\n\x01"), 1);
}
END_TEST

START_TEST(string_long_is_literal)
{
        char s[1025];
        memset(s, 'a', sizeof(s));
        ck_assert(imap_quotable(s, 1024));
        ck_assert(!imap_quotable(s, 1025));
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_string(&c, s, 1024);
        ck_assert_uint_eq(c.len, 1026);
        ck_assert_int_eq(c.buf[0], '"');
        ck_assert_uint_eq(c.nsplits, 0);
        imap_cmd_free(&c);
        imap_cmd_init(&c, false);
        imap_cmd_string(&c, s, 1025);
        ck_assert(memcmp(c.buf, "{1025}\r\n", 8) == 0);
        ck_assert_uint_eq(c.len, 8 + 1025);
        ck_assert_uint_eq(c.nsplits, 1);
        ck_assert_uint_eq(c.splits[0], 8);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(string_long_escaped_fits)
{
        /* 1024 quotes: quotable, and the escaped form doubles in size. */
        char s[1024];
        memset(s, '"', sizeof(s));
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_string(&c, s, sizeof(s));
        ck_assert(!c.oom);
        ck_assert_uint_eq(c.len, 2 + 2 * 1024);
        for (size_t i = 1; i + 1 < c.len; i += 2)
                ck_assert(c.buf[i] == '\\' && c.buf[i + 1] == '"');
        imap_cmd_free(&c);
}
END_TEST

START_TEST(string_hostile_mailbox_name)
{
        const char evil[] = "a\r\nA2 DELETE INBOX";
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "SELECT ");
        imap_cmd_str(&c, evil);
        ASSERT_CMD(&c, "SELECT {18}\r\na\r\nA2 DELETE INBOX");
        ck_assert_uint_eq(c.nsplits, 1);
        ck_assert_uint_eq(c.splits[0], 13);
        ck_assert_uint_eq(bare_line_ends(&c), 0);
        imap_cmd_free(&c);

        /* Quote-breaking attempts stay inside the quoted string. */
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "SELECT ");
        imap_cmd_str(&c, "x\" DELETE \"INBOX");
        ASSERT_CMD(&c, "SELECT \"x\\\" DELETE \\\"INBOX\"");
        imap_cmd_free(&c);
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "SELECT ");
        imap_cmd_str(&c, "x\\\" DELETE INBOX");
        ASSERT_CMD(&c, "SELECT \"x\\\\\\\" DELETE INBOX\"");
        imap_cmd_free(&c);
}
END_TEST

START_TEST(literal_plus)
{
        check_string(true, S("a\r\nb"), S("SELECT {4+}\r\na\r\nb"), 0);
        /* Quotable strings are still quoted with LITERAL+. */
        check_string(true, S("INBOX"), S("SELECT \"INBOX\""), 0);
}
END_TEST

START_TEST(literal_minus_limit)
{
        struct imap_cmd c;
        imap_cmd_init(&c, true);
        c.literal_minus_max = 4;
        imap_cmd_string(&c, S("\n234"));
        imap_cmd_add(&c, " ");
        imap_cmd_string(&c, S("\n2345"));
        ASSERT_CMD(&c, "{4+}\r\n\n234 {5}\r\n\n2345");
        ck_assert_uint_eq(c.nsplits, 1);
        ck_assert_uint_eq(c.splits[0], 16);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(literal_splits_multiple)
{
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "LOGIN ");
        imap_cmd_str(&c, "j\xc3\xb6rg");
        imap_cmd_add(&c, " ");
        imap_cmd_str(&c, "pa\"ss");
        imap_cmd_add(&c, " ");
        imap_cmd_str(&c, "x\ny");
        imap_cmd_add(&c, "\r\n");
        ASSERT_CMD(&c, "LOGIN {5}\r\nj\xc3\xb6rg \"pa\\\"ss\" {3}\r\nx\ny\r\n");
        ck_assert_uint_eq(c.nsplits, 2);
        ck_assert_uint_eq(c.splits[0], 11);
        ck_assert(memcmp(c.buf + c.splits[0], "j\xc3\xb6rg", 5) == 0);
        ck_assert(memcmp(c.buf + c.splits[1] - 5, "{3}\r\n", 5) == 0);
        ck_assert(memcmp(c.buf + c.splits[1], "x\ny\r\n", 5) == 0);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(quotable_table)
{
        static const struct {
                const char *s;
                size_t len;
                bool ok;
        } t[] = {
            {S("INBOX"), true}, {S(""), true},          {S("a b"), true},  {S("\"\\"), true},
            {S("{"), true},     {S("~"), true},         {S("a\r"), false}, {S("a\n"), false},
            {S("a\0"), false},  {S("\xc3\xa4"), false}, {S("\t"), false},
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
                ck_assert_msg(imap_quotable(t[i].s, t[i].len) == t[i].ok, "case %zu", i);
}
END_TEST

START_TEST(str_null_refuses_command)
{
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "DELETE ");
        imap_cmd_str(&c, NULL);
        ck_assert(c.oom);
        /* Nothing more is appended to a broken command. */
        size_t len = c.len;
        imap_cmd_add(&c, "x");
        imap_cmd_str(&c, "y");
        ck_assert_uint_eq(c.len, len);
        imap_cmd_free(&c);
}
END_TEST

START_TEST(redact_flag_is_callers)
{
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        c.redact = true;
        imap_cmd_add(&c, "LOGIN ");
        imap_cmd_str(&c, "u");
        ck_assert(c.redact);
        ASSERT_CMD(&c, "LOGIN \"u\"");
        imap_cmd_free(&c);
}
END_TEST

/* ----------------------------------------------------------------- uidset */

static void check_uidset(const unsigned *in, size_t n, const char *want)
{
        unsigned *u = malloc((n ? n : 1) * sizeof(*u));
        ck_assert_ptr_nonnull(u);
        if (n)
                memcpy(u, in, n * sizeof(*u));
        char out[256];
        memset(out, '#', sizeof(out));
        size_t len = imap_uidset_format(u, n, out, sizeof(out));
        ck_assert_str_eq(out, want);
        ck_assert_uint_eq(len, strlen(want));
        free(u);
}
#define UIDS(...)                                                                                  \
        ((const unsigned[]){__VA_ARGS__}),                                                         \
            (sizeof((const unsigned[]){__VA_ARGS__}) / sizeof(unsigned))

START_TEST(uidset_empty)
{
        char out[8] = "junk";
        ck_assert_uint_eq(imap_uidset_format(NULL, 0, out, sizeof(out)), 0);
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(imap_uidset_format(NULL, 0, NULL, 0), 0);
}
END_TEST

START_TEST(uidset_single)
{
        check_uidset(UIDS(5), "5");
        check_uidset(UIDS(1), "1");
}
END_TEST

START_TEST(uidset_ranges)
{
        check_uidset(UIDS(1, 2, 3), "1:3");
        check_uidset(UIDS(1, 2, 3, 7, 9, 10, 11, 12), "1:3,7,9:12");
        check_uidset(UIDS(1, 3, 5), "1,3,5");
        check_uidset(UIDS(10, 11), "10:11");
}
END_TEST

START_TEST(uidset_unsorted_input)
{
        unsigned u[] = {12, 3, 9, 1, 11, 2, 7, 10};
        char out[64];
        ck_assert_uint_eq(imap_uidset_format(u, 8, out, sizeof(out)), 10);
        ck_assert_str_eq(out, "1:3,7,9:12");
        /* Sorted in place. */
        for (size_t i = 1; i < 8; i++)
                ck_assert_uint_lt(u[i - 1], u[i]);
}
END_TEST

START_TEST(uidset_duplicates)
{
        check_uidset(UIDS(4, 4, 4), "4");
        check_uidset(UIDS(3, 1, 2, 2, 1, 3, 5), "1:3,5");
        unsigned u[] = {2, 2, 1, 1};
        char out[16];
        imap_uidset_format(u, 4, out, sizeof(out));
        ck_assert_str_eq(out, "1:2");
        ck_assert_uint_eq(u[0], 1);
        ck_assert_uint_eq(u[1], 2);
}
END_TEST

START_TEST(uidset_max_uid)
{
        check_uidset(UIDS(4294967295u), "4294967295");
        check_uidset(UIDS(4294967295u, 4294967294u), "4294967294:4294967295");
        check_uidset(UIDS(4294967295u, 1), "1,4294967295");
        check_uidset(UIDS(4294967295u, 4294967295u, 4294967293u), "4294967293,4294967295");
}
END_TEST

START_TEST(uidset_truncates_like_snprintf)
{
        unsigned u[] = {1, 2, 3, 7, 9, 10, 11, 12};
        char out[16];
        memset(out, '#', sizeof(out));
        ck_assert_uint_eq(imap_uidset_format(u, 8, out, 5), 10);
        ck_assert_str_eq(out, "1:3,");
        ck_assert_int_eq(out[5], '#');
        ck_assert_uint_eq(imap_uidset_format(u, 8, out, 1), 10);
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(imap_uidset_format(u, 8, NULL, 0), 10);
        ck_assert_uint_eq(imap_uidset_format(u, 8, out, 11), 10);
        ck_assert_str_eq(out, "1:3,7,9:12");
        ck_assert_uint_eq(imap_uidset_format(u, 8, out, 10), 10);
        ck_assert_str_eq(out, "1:3,7,9:1");
}
END_TEST

START_TEST(uidset_large)
{
        /* Every other UID of 1..20000, shuffled: 10000 singles. */
        size_t n = 10000;
        unsigned *u = malloc(n * sizeof(*u));
        ck_assert_ptr_nonnull(u);
        for (size_t i = 0; i < n; i++)
                u[i] = (unsigned)(2 * ((i * 7919) % n) + 1);
        size_t need = imap_uidset_format(u, n, NULL, 0);
        char *out = malloc(need + 1);
        ck_assert_ptr_nonnull(out);
        ck_assert_uint_eq(imap_uidset_format(u, n, out, need + 1), need);
        ck_assert_uint_eq(strlen(out), need);
        ck_assert(strncmp(out, "1,3,5,", 6) == 0);
        ck_assert(strcmp(out + need - 6, ",19999") == 0);
        free(out);
        free(u);
}
END_TEST

static Suite *quote_suite(void)
{
        Suite *s = suite_create("quote");
        TCase *tc = tcase_create("cmd");
        tcase_add_test(tc, cmd_init_empty);
        tcase_add_test(tc, cmd_add_formats);
        tcase_add_test(tc, cmd_add_grows);
        tcase_add_test(tc, str_null_refuses_command);
        tcase_add_test(tc, redact_flag_is_callers);
        suite_add_tcase(s, tc);

        tc = tcase_create("string");
        tcase_add_test(tc, string_plain_is_quoted);
        tcase_add_test(tc, string_empty);
        tcase_add_test(tc, string_escapes_quote_and_backslash);
        tcase_add_test(tc, string_cr_lf_are_literals);
        tcase_add_test(tc, string_nul_is_literal);
        tcase_add_test(tc, string_8bit_is_literal);
        tcase_add_test(tc, string_control_bytes_are_literals);
        tcase_add_test(tc, string_long_is_literal);
        tcase_add_test(tc, string_long_escaped_fits);
        tcase_add_test(tc, string_hostile_mailbox_name);
        tcase_add_test(tc, quotable_table);
        suite_add_tcase(s, tc);

        tc = tcase_create("literal");
        tcase_add_test(tc, literal_plus);
        tcase_add_test(tc, literal_minus_limit);
        tcase_add_test(tc, literal_splits_multiple);
        suite_add_tcase(s, tc);

        tc = tcase_create("uidset");
        tcase_add_test(tc, uidset_empty);
        tcase_add_test(tc, uidset_single);
        tcase_add_test(tc, uidset_ranges);
        tcase_add_test(tc, uidset_unsorted_input);
        tcase_add_test(tc, uidset_duplicates);
        tcase_add_test(tc, uidset_max_uid);
        tcase_add_test(tc, uidset_truncates_like_snprintf);
        tcase_add_test(tc, uidset_large);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(quote_suite());
}
