/* Unit tests for the .search/ query language (issue #9): every form of the
 * language, the SEARCH keys it becomes byte for byte, the imap: grammar and
 * its round trips, hostile input, relative dates from a fixed "now", sizes,
 * the canonical form and the directory-name escapes. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/query.h"
#include "tests/unit/unit_main.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* 2024-03-31 12:00:00 UTC: a month end after a leap February. */
static const time_t NOW = 1711886400;
/* 2024-02-29 23:59:59 UTC */
static const time_t LEAPDAY = 1709251199;

static const struct imap_query_caps PLAIN = {0};

/* What a server would see as line ends: CRLFs that are not inside a
 * literal. The whole command must have none (the session adds the last). */
static size_t bare_line_ends(const char *buf, size_t len)
{
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
                if (buf[i] != '\r' && buf[i] != '\n')
                        continue;
                if (buf[i] == '\r' && i > 0 && buf[i - 1] == '}' && i + 1 < len &&
                    buf[i + 1] == '\n') {
                        size_t k = i - 1;
                        while (k > 0 && buf[k - 1] != '{')
                                k--;
                        i = i + 1 + strtoul(buf + k, NULL, 10);
                        continue;
                }
                n++;
        }
        return n;
}

/* Parses q (q_len bytes) at now and serialises after "UID SEARCH "; checks
 * the command byte for byte and that it has no bare line end. */
static void check_ser_at(const char *q, size_t q_len, time_t now,
                         const struct imap_query_caps *caps, bool plus, const char *want,
                         size_t wlen)
{
        struct imap_query *qq;
        struct imap_query_err err = {0};
        int r = imap_query_parse(q, q_len, now, &qq, &err);
        ck_assert_msg(r == 0, "parse [%.*s]: %d at %zu: %s", (int)q_len, q, r, err.pos, err.reason);
        struct imap_cmd c;
        imap_cmd_init(&c, plus);
        imap_cmd_add(&c, "UID SEARCH ");
        ck_assert_int_eq(imap_query_to_search(qq, caps, &c), 0);
        ck_assert(!c.oom);
        ck_assert_msg(c.len == wlen && memcmp(c.buf, want, wlen) == 0,
                      "[%.*s]: got [%.*s] want [%.*s]", (int)q_len, q, (int)c.len, c.buf, (int)wlen,
                      want);
        ck_assert_uint_eq(bare_line_ends(c.buf, c.len), 0);
        imap_cmd_free(&c);
        imap_query_free(qq);
}
#define SER(q, want) check_ser_at((q), strlen(q), NOW, &PLAIN, false, S("UID SEARCH " want))
#define SER_CAPS(q, caps, want)                                                                    \
        check_ser_at((q), strlen(q), NOW, (caps), false, S("UID SEARCH " want))
#define SER_AT(q, now, want)                                                                       \
        check_ser_at((q), strlen(q), (now), &PLAIN, false, S("UID SEARCH " want))

/* q must fail with EINVAL at pos, with a reason containing what. */
static void check_bad(const char *q, size_t q_len, size_t pos, const char *what)
{
        struct imap_query *qq = (struct imap_query *)1;
        struct imap_query_err err = {0};
        int r = imap_query_parse(q, q_len, NOW, &qq, &err);
        ck_assert_msg(r == -EINVAL, "[%.*s] parsed (%d)", (int)q_len, q, r);
        ck_assert_ptr_null(qq);
        ck_assert_msg(err.pos == pos && strstr(err.reason, what),
                      "[%.*s]: at %zu \"%s\", want at %zu \"%s\"", (int)q_len, q, err.pos,
                      err.reason, pos, what);
        /* one printable log line, whatever the input held */
        for (const char *p = err.reason; *p; p++)
                ck_assert_msg((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                              "unprintable reason for [%.*s]", (int)q_len, q);
}
#define BAD(q, pos, what) check_bad((q), strlen(q), (pos), (what))

START_TEST(words_and_phrases)
{
        SER("invoice", "TEXT \"invoice\"");
        SER("from:alice invoice", "FROM \"alice\" TEXT \"invoice\"");
        SER("\"quarterly numbers\"", "TEXT \"quarterly numbers\"");
        SER("  spaced\t\tout \r\n words  ", "TEXT \"spaced\" TEXT \"out\" TEXT \"words\"");
        SER("\"say \\\"hi\\\" \\\\ now\"", "TEXT \"say \\\"hi\\\" \\\\ now\"");
        SER("\"C:\\dir\"", "TEXT \"C:\\\\dir\""); /* a lone \ is itself */
        SER("10:30", "TEXT \"10:30\"");           /* not a prefix: digits */
        SER("e-mail", "TEXT \"e-mail\"");
        SER("or and", "TEXT \"or\" TEXT \"and\""); /* operators are upper case */
}
END_TEST

START_TEST(string_prefixes)
{
        SER("from:a to:b cc:c bcc:d subject:e body:f text:g",
            "FROM \"a\" TO \"b\" CC \"c\" BCC \"d\" SUBJECT \"e\" BODY \"f\" TEXT \"g\"");
        SER("FROM:Alice Subject:Re", "FROM \"Alice\" SUBJECT \"Re\"");
        SER("from:\"Alice Smith\" subject:\"a (b)\"", "FROM \"Alice Smith\" SUBJECT \"a (b)\"");
        SER("subject:re:hello", "SUBJECT \"re:hello\"");
        SER("header:List-Id:dev.example.org", "HEADER \"List-Id\" \"dev.example.org\"");
        SER("header:X-Spam-Flag:\"YES please\"", "HEADER \"X-Spam-Flag\" \"YES please\"");
        SER("header:X-Mailer:", "HEADER \"X-Mailer\" \"\""); /* has the field */
        SER("(header:X-Mailer:)", "HEADER \"X-Mailer\" \"\"");
        BAD("header:X-Mailer", 0, "header:NAME:VALUE");
        BAD("header::v", 0, "header:NAME:VALUE");
        BAD("from:", 5, "from: needs a value");
        BAD("from: alice", 5, "from: needs a value");
        BAD("from:\"\"", 5, "from: needs a value");
        BAD("from:\"alice", 5, "unterminated");
        BAD("from:\"a\"b", 8, "space was expected");
        BAD("form:alice", 0, "unknown search word \"form:\"");
        SER("\"form:alice\"", "TEXT \"form:alice\"");
}
END_TEST

START_TEST(flags_and_keywords)
{
        SER("is:unread is:read is:flagged is:unflagged is:answered is:draft is:deleted is:new",
            "UNSEEN SEEN FLAGGED UNFLAGGED ANSWERED DRAFT DELETED NEW");
        SER("is:Unanswered is:UNDELETED is:old is:recent is:starred is:seen is:unseen",
            "UNANSWERED UNDELETED OLD RECENT FLAGGED SEEN UNSEEN");
        SER("keyword:$Label1", "KEYWORD $Label1");
        SER("-keyword:$Junk", "NOT KEYWORD $Junk");
        SER("keyword:$Forwarded -is:unread", "KEYWORD $Forwarded NOT UNSEEN");
        BAD("is:bogus", 0, "unknown is:bogus");
        BAD("keyword:\\Seen", 8, "not a keyword");
        BAD("keyword:a(b", 8, "not a keyword");
        BAD("keyword:a]b", 8, "not a keyword");
        BAD("keyword:a%", 8, "not a keyword");
        BAD("keyword:\"a b\"", 8, "not a keyword");
        BAD("keyword:caf\xc3\xa9", 8, "not a keyword");
}
END_TEST

START_TEST(dates)
{
        SER("before:2024-02-29", "BEFORE 29-Feb-2024");
        SER("after:2023-01-01", "SINCE 1-Jan-2023");
        SER("on:1999-12-31", "ON 31-Dec-1999");
        SER("after:0001-01-01 before:9999-12-31", "SINCE 1-Jan-0001 BEFORE 31-Dec-9999");
        BAD("before:2023-02-29", 7, "no such day");
        BAD("before:2024-13-01", 7, "no such day");
        BAD("before:2024-04-31", 7, "no such day");
        BAD("before:0000-01-01", 7, "no such day");
        BAD("before:2024-1-01", 7, "2024-02-01");
        BAD("before:24-01-01", 7, "2024-02-01");
        BAD("before:2024-01-01x", 7, "2024-02-01");
        BAD("before:2024/01/01", 7, "2024-02-01");
        BAD("on:yesterday", 3, "2024-02-01");
}
END_TEST

START_TEST(relative_dates)
{
        /* now is 2024-03-31 */
        SER("older:30d", "BEFORE 1-Mar-2024");
        SER("newer:2w", "SINCE 17-Mar-2024");
        SER("newer:1m", "SINCE 29-Feb-2024"); /* 31 Feb → last day of Feb */
        SER("older:13m", "BEFORE 28-Feb-2023");
        SER("older:1y", "BEFORE 31-Mar-2023");
        SER("newer:0d", "SINCE 31-Mar-2024");
        SER("older:366d", "BEFORE 31-Mar-2023");
        SER("newer:27m", "SINCE 31-Dec-2021");
        SER_AT("older:1y", LEAPDAY, "BEFORE 28-Feb-2023");
        SER_AT("older:4y", LEAPDAY, "BEFORE 29-Feb-2020");
        SER_AT("newer:1d", LEAPDAY, "SINCE 28-Feb-2024");
        SER_AT("newer:1d", 0, "SINCE 31-Dec-1969");
        BAD("older:30", 6, "an age like");
        BAD("older:d", 6, "an age like");
        BAD("older:30x", 6, "an age like");
        BAD("older:30dd", 6, "an age like");
        BAD("older:-3d", 6, "an age like");
        BAD("older:3000y", 6, "no such day");
        BAD("older:99999999999999999999d", 6, "an age like");
        BAD("older:99999m", 6, "no such day");
}
END_TEST

START_TEST(sizes)
{
        SER("larger:500", "LARGER 500");
        SER("larger:10M smaller:100k", "LARGER 10485760 SMALLER 102400");
        SER("larger:1K smaller:2m larger:2G", "LARGER 1024 SMALLER 2097152 LARGER 2147483648");
        SER("larger:0", "LARGER 0");
        SER("larger:4294967295", "LARGER 4294967295");
        /* IMAP4rev1 sizes are 32-bit: nothing is larger than 2^32-1 and
         * everything is smaller than 5G */
        SER("larger:5G", "LARGER 4294967295");
        SER("smaller:5G", "ALL");
        SER("-smaller:5G OR x", "OR NOT ALL TEXT \"x\"");
        struct imap_query_caps rev2 = {.imap4rev2 = true};
        SER_CAPS("larger:5G smaller:6G", &rev2, "LARGER 5368709120 SMALLER 6442450944");
        SER_CAPS("larger:8589934591G", &rev2, "LARGER 9223372035781033984");
        BAD("larger:8589934592G", 7, "size too large");
        BAD("larger:99999999999999999999", 7, "size too large");
        BAD("larger:184467440737095516200", 7, "size too large");
        BAD("larger:10T", 7, "a size like");
        BAD("larger:k", 7, "a size like");
        BAD("larger:10MB", 7, "a size like");
        BAD("larger:-1", 7, "a size like");
        BAD("larger:1.5M", 7, "a size like");
}
END_TEST

START_TEST(uids)
{
        SER("uid:1000-2000", "UID 1000:2000");
        SER("uid:5", "UID 5");
        SER("uid:1,5,10-*", "UID 1,5,10:*");
        SER("uid:*", "UID *");
        SER("uid:4294967295", "UID 4294967295");
        SER("uid:7:9", "UID 7:9");
        BAD("uid:0", 4, "UIDs like");
        BAD("uid:4294967296", 4, "UIDs like");
        BAD("uid:1-", 4, "UIDs like");
        BAD("uid:-5", 4, "UIDs like");
        BAD("uid:1,,2", 4, "UIDs like");
        BAD("uid:1,", 4, "UIDs like");
        BAD("uid:$", 4, "UIDs like");
        SER("uid:1 2", "UID 1 TEXT \"2\"");
}
END_TEST

START_TEST(operators)
{
        SER("a b", "TEXT \"a\" TEXT \"b\"");
        SER("a AND b", "TEXT \"a\" TEXT \"b\"");
        SER("a OR b", "OR TEXT \"a\" TEXT \"b\"");
        SER("a OR b OR c", "OR TEXT \"a\" OR TEXT \"b\" TEXT \"c\"");
        /* OR binds tighter than side by side */
        SER("x a OR b y", "TEXT \"x\" OR TEXT \"a\" TEXT \"b\" TEXT \"y\"");
        SER("-a", "NOT TEXT \"a\"");
        SER("--a", "TEXT \"a\"");
        SER("---a", "NOT TEXT \"a\"");
        SER("-(a b)", "NOT (TEXT \"a\" TEXT \"b\")");
        SER("(a b) OR (c -d)", "OR (TEXT \"a\" TEXT \"b\") (TEXT \"c\" NOT TEXT \"d\")");
        SER("((a))", "TEXT \"a\"");
        SER("(a b) c", "TEXT \"a\" TEXT \"b\" TEXT \"c\"");
        SER("(a OR b) OR c", "OR TEXT \"a\" OR TEXT \"b\" TEXT \"c\"");
        SER("a OR (b OR c)", "OR TEXT \"a\" OR TEXT \"b\" TEXT \"c\"");
        SER("(from:x)OR(to:y)", "OR FROM \"x\" TO \"y\"");
        SER("a OR(b c)", "OR TEXT \"a\" (TEXT \"b\" TEXT \"c\")");
        SER("a AND(b)", "TEXT \"a\" TEXT \"b\"");
        SER("a ORb", "TEXT \"a\" TEXT \"ORb\"");
        SER("-is:unread OR -(from:a to:b)", "OR NOT UNSEEN NOT (FROM \"a\" TO \"b\")");
        BAD("OR a", 0, "OR needs a term on each side");
        BAD("a OR", 2, "OR needs a term on each side");
        BAD("a OR OR b", 5, "OR needs a term on each side");
        BAD("(a OR) b", 3, "OR needs a term on each side");
        BAD("a AND", 2, "AND needs a term on each side");
        BAD("AND a", 0, "AND needs a term on each side");
        BAD("-", 0, "nothing after -");
        BAD("- a", 0, "nothing after -");
        BAD("(-)", 1, "nothing after -");
        BAD("", 0, "empty query");
        BAD(" \t\r\n", 4, "empty query");
        BAD("()", 1, "empty ( )");
        BAD("(a", 0, "missing )");
        BAD("((a)", 0, "missing )");
        BAD("a)", 1, ") without (");
        BAD("a) OR (b", 1, ") without (");
        BAD(")", 0, ") without (");
}
END_TEST

START_TEST(imap_keys)
{
        SER("imap:SEEN", "SEEN");
        SER("imap:OR SEEN (FLAGGED FROM \"bob\") UID 1:*",
            "OR SEEN (FLAGGED FROM \"bob\") UID 1:*");
        SER("imap:or seen flagged", "OR SEEN FLAGGED");
        SER("imap:NOT NOT SEEN", "SEEN");
        BAD("imap:OR a1 b", 8, "unknown search key \"a1\"");
}
END_TEST

START_TEST(imap_grammar)
{
        SER("imap:ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN",
            "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN");
        SER("imap:UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN",
            "UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN");
        SER("imap:BCC a BODY b CC c FROM d SUBJECT e TEXT f TO g",
            "BCC \"a\" BODY \"b\" CC \"c\" FROM \"d\" SUBJECT \"e\" TEXT \"f\" TO \"g\"");
        SER("imap:BEFORE 1-Feb-2024 ON \"01-feb-2024\" SINCE 29-FEB-2024",
            "BEFORE 1-Feb-2024 ON 1-Feb-2024 SINCE 29-Feb-2024");
        SER("imap:SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000",
            "SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000");
        SER("imap:HEADER List-Id \"\" HEADER \"X-A\" b",
            "HEADER \"List-Id\" \"\" HEADER \"X-A\" \"b\"");
        SER("imap:KEYWORD $Label UNKEYWORD $Junk", "KEYWORD $Label UNKEYWORD $Junk");
        SER("imap:LARGER 100 SMALLER 4294967295", "LARGER 100 SMALLER 4294967295");
        SER("imap:UID 1:5,7,9:* 1:* 3", "UID 1:5,7,9:* 1:* 3");
        /* (SEEN or FLAGGED) or DRAFT: one OR of three */
        SER("imap:OR OR SEEN FLAGGED DRAFT", "OR SEEN OR FLAGGED DRAFT");
        SER("imap:OR (OR SEEN FLAGGED) (DRAFT OLD)", "OR SEEN OR FLAGGED (DRAFT OLD)");
        SER("imap:OR SEEN OR FLAGGED DRAFT", "OR SEEN OR FLAGGED DRAFT");
        SER("imap:NOT (SEEN FLAGGED)", "NOT (SEEN FLAGGED)");
        SER("imap:((SEEN))", "SEEN");
        SER("imap:SEEN\t  FLAGGED  ", "SEEN FLAGGED");
        SER("imap:TEXT a]b", "TEXT \"a]b\"");
        SER("imap:TEXT \"\"", "TEXT \"\"");
        SER("imap:TEXT \"a\\\"b\\\\c\"", "TEXT \"a\\\"b\\\\c\"");
        SER("imap:TEXT {3}\r\nabc", "TEXT \"abc\"");
        SER("imap:TEXT {3+}\r\na\"c FLAGGED", "TEXT \"a\\\"c\" FLAGGED");
        SER("imap:TEXT {4}\r\na\r\nb", "TEXT {4}\r\na\r\nb");
        SER("imap:TEXT {0}\r\n", "TEXT \"\"");
        SER("imap:TEXT caf\xc3\xa9", "CHARSET UTF-8 TEXT {5}\r\ncaf\xc3\xa9");
        /* imap: takes the rest of its group */
        SER("(imap:SEEN FLAGGED) OR from:x", "OR (SEEN FLAGGED) FROM \"x\"");
        SER("from:x imap:SEEN", "FROM \"x\" SEEN");
        BAD("imap:", 0, "imap: needs search keys");
        BAD("imap: SEEN", 0, "imap: needs search keys");
        BAD("imap:SEEN from:x", 10, "unknown search key \"from:x\"");
        BAD("imap:DELETE INBOX", 5, "unknown search key \"DELETE\"");
        BAD("imap:CHARSET UTF-8 TEXT a", 5, "unknown search key \"CHARSET\"");
        BAD("imap:SEEN\r\nDELETE", 9, "a space was expected");
        BAD("imap:TEXT", 9, "TEXT needs an argument");
        BAD("imap:TEXT (a)", 10, "a string was expected");
        BAD("imap:TEXT \"a", 10, "unterminated quoted string");
        BAD("imap:TEXT \"a\r\nb\"", 10, "unterminated quoted string");
        BAD("imap:TEXT \"a\\b\"", 12, "may be escaped");
        BAD("imap:TEXT {5}\r\nabc", 10, "longer than the rest");
        BAD("imap:TEXT {5}abc", 10, "malformed literal");
        BAD("imap:TEXT {5\r\nabcde", 10, "malformed literal");
        BAD("imap:TEXT {}\r\n", 10, "malformed literal");
        BAD("imap:TEXT {99999999999999999999}\r\n", 10, "literal longer than the query");
        BAD("imap:SEEN(FLAGGED)", 9, "a space was expected");
        BAD("imap:HEADER \"a b\" c", 5, "not a header field name");
        BAD("imap:HEADER a", 13, "HEADER needs an argument");
        BAD("imap:KEYWORD \\Seen", 13, "not a keyword");
        BAD("imap:BEFORE 31-Feb-2024", 12, "no such day");
        BAD("imap:BEFORE 2024-02-01", 12, "a date like 1-Feb-2024");
        BAD("imap:BEFORE \"1-Feb-2024", 12, "unterminated quoted date");
        BAD("imap:BEFORE 123-Feb-2024", 12, "a date like");
        BAD("imap:LARGER x", 12, "a number was expected");
        BAD("imap:LARGER 99999999999999999999", 12, "number too large");
        BAD("imap:LARGER 18446744073709551620", 12, "number too large");
        BAD("imap:LARGER 9223372036854775808", 12, "number too large");
        BAD("imap:UID 0", 9, "not a sequence set");
        BAD("imap:UID $", 9, "not a sequence set");
        BAD("imap:1:", 5, "not a sequence set");
        BAD("imap:OR SEEN", 12, "OR needs an argument");
        BAD("imap:NOT", 8, "NOT needs an argument");
        BAD("imap:(SEEN", 10, "missing )");
        BAD("imap:()", 6, "a search key was expected");
        BAD("imap:SEEN) x", 9, ") without (");
        BAD("imap:\"SEEN\"", 5, "a search key was expected");
}
END_TEST

START_TEST(imap_numbers64)
{
        struct imap_query_caps rev2 = {.imap4rev2 = true};
        SER_CAPS("imap:LARGER 9223372036854775807", &rev2, "LARGER 9223372036854775807");
        SER("imap:LARGER 9223372036854775807", "LARGER 4294967295");
}
END_TEST

/* parse("imap:" + keys) → serialise → parse → serialise gives the same
 * bytes, and the same canonical form: the grammar reads what we write. */
static void check_round_trip(const char *query)
{
        struct imap_query_caps caps = {.utf8_enabled = true};
        char *first = NULL, *canon1 = NULL;
        for (int round = 0; round < 2; round++) {
                const char *text = round == 0 ? query : first;
                struct imap_query *q;
                struct imap_query_err err = {0};
                ck_assert_msg(imap_query_parse(text, strlen(text), NOW, &q, &err) == 0,
                              "round %d [%s]: %s at %zu", round, text, err.reason, err.pos);
                struct imap_cmd c;
                imap_cmd_init(&c, false);
                imap_cmd_add(&c, "imap:");
                ck_assert_int_eq(imap_query_to_search(q, &caps, &c), 0);
                char *canon = imap_query_canonical(q);
                ck_assert_ptr_nonnull(canon);
                if (round == 0) {
                        first = strdup(c.buf);
                        canon1 = canon;
                } else {
                        ck_assert_str_eq(c.buf, first);
                        ck_assert_str_eq(canon, canon1);
                        free(canon);
                }
                imap_cmd_free(&c);
                imap_query_free(q);
        }
        free(first);
        free(canon1);
}

START_TEST(round_trips)
{
        static const char *const queries[] = {
            "from:alice invoice",
            "a OR b OR c OR d",
            "(a b) OR (c -d) -keyword:$Junk",
            "header:X-A: header:List-Id:\"x y\" is:unread",
            "before:2024-02-29 after:2023-01-01 on:2024-03-01 older:30d newer:1m",
            "larger:10M smaller:100k uid:1,5,10-*",
            "\"line\r\nbreak\" \"tab\there\" \"quote\\\"s\" {5} %* caf\xc3\xa9",
            "subject:\"]\" from:\"\\\\\"",
            "imap:OR OR SEEN FLAGGED (DRAFT NOT TEXT x) SENTON 1-Jan-2000",
            "imap:HEADER \"X-A\" {3}\r\na\rb 1:* UNKEYWORD $x",
            "-(-(-(a OR -b) c) OR d)",
        };
        for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
                check_round_trip(queries[i]);
}
END_TEST

START_TEST(hostile_strings)
{
        /* CR and LF between words are white space */
        SER("a\r\nDELETE INBOX", "TEXT \"a\" TEXT \"DELETE\" TEXT \"INBOX\"");
        /* inside a phrase they are searched for, as a literal */
        SER("\"a\r\n1 LOGOUT\"", "TEXT {11}\r\na\r\n1 LOGOUT");
        SER("subject:a\"b", "SUBJECT \"a\\\"b\"");
        SER("\"\\\"\"", "TEXT \"\\\"\"");
        SER("{5}", "TEXT \"{5}\"");
        SER("a{5}\r\nb", "TEXT \"a{5}\" TEXT \"b\"");
        SER("x%* *", "TEXT \"x%*\" TEXT \"*\"");
        SER("\"(\" \")\"", "TEXT \"(\" TEXT \")\"");
        BAD("from:)", 5, "from: needs a value");
        BAD("from:\"a\"\"b\"", 8, "space was expected");
}
END_TEST

START_TEST(hostile_bytes)
{
        /* the literal carries the bytes; the split is where the session waits */
        struct imap_query *q;
        ck_assert_int_eq(imap_query_parse(S("\"a\r\nb\""), NOW, &q, NULL), 0);
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "UID SEARCH ");
        ck_assert_int_eq(imap_query_to_search(q, &PLAIN, &c), 0);
        ck_assert_uint_eq(c.nsplits, 1);
        ck_assert_uint_eq(c.splits[0], strlen("UID SEARCH TEXT {4}\r\n"));
        imap_cmd_free(&c);
        /* LITERAL+ */
        imap_cmd_init(&c, true);
        ck_assert_int_eq(imap_query_to_search(q, &PLAIN, &c), 0);
        ck_assert_str_eq(c.buf, "TEXT {4+}\r\na\r\nb");
        ck_assert_uint_eq(c.nsplits, 0);
        imap_cmd_free(&c);
        imap_query_free(q);

        /* 8-bit: CHARSET UTF-8 and a literal; not with UTF8=ACCEPT on */
        SER("caf\xc3\xa9", "CHARSET UTF-8 TEXT {5}\r\ncaf\xc3\xa9");
        SER("from:bob subject:\xe2\x82\xac",
            "CHARSET UTF-8 FROM \"bob\" SUBJECT {3}\r\n\xe2\x82\xac");
        SER("header:X-A:\xc3\xa9", "CHARSET UTF-8 HEADER \"X-A\" {2}\r\n\xc3\xa9");
        struct imap_query_caps utf8 = {.utf8_enabled = true};
        SER_CAPS("caf\xc3\xa9", &utf8, "TEXT {5}\r\ncaf\xc3\xa9");
        /* controls other than CR, LF, TAB go as literals */
        SER("a\x01"
            "b",
            "TEXT {3}\r\na\x01"
            "b");
        SER("\x7f", "TEXT {1}\r\n\x7f");

        /* NUL and bad UTF-8 are refused where they are */
        check_bad(S("abc\0def"), 3, "NUL");
        check_bad(S("\0"), 0, "NUL");
        BAD("ab\xff", 2, "not UTF-8");
        BAD("\xc3", 0, "not UTF-8");
        BAD("a\xc3(", 1, "not UTF-8");
        BAD("\xc0\xaf", 0, "not UTF-8");         /* overlong '/' */
        BAD("\xed\xa0\x80", 0, "not UTF-8");     /* surrogate */
        BAD("\xf4\x90\x80\x80", 0, "not UTF-8"); /* above U+10FFFF */
        BAD("x \xe2\x82", 2, "not UTF-8");
        SER("\xf0\x9f\x93\xa7", "CHARSET UTF-8 TEXT {4}\r\n\xf0\x9f\x93\xa7");
}
END_TEST

START_TEST(hostile_sizes)
{
        /* longest accepted: 4096 words */
        size_t n = IMAP_QUERY_MAX_LEN;
        char *big = malloc(n + 2);
        for (size_t i = 0; i < n; i += 2)
                memcpy(big + i, "a ", 2);
        struct imap_query *q;
        ck_assert_int_eq(imap_query_parse(big, n, NOW, &q, NULL), 0);
        imap_query_free(q);
        big[n] = 'a';
        check_bad(big, n + 1, IMAP_QUERY_MAX_LEN, "longer than");
        /* one huge phrase: a literal of exactly its bytes */
        big[0] = '"';
        memset(big + 1, 'x', n - 2);
        big[n - 1] = '"';
        ck_assert_int_eq(imap_query_parse(big, n, NOW, &q, NULL), 0);
        struct imap_cmd c;
        imap_cmd_init(&c, true);
        ck_assert_int_eq(imap_query_to_search(q, &PLAIN, &c), 0);
        ck_assert_uint_eq(c.len, strlen("TEXT {8190+}\r\n") + n - 2);
        ck_assert(memcmp(c.buf, "TEXT {8190+}\r\n", 14) == 0);
        imap_cmd_free(&c);
        imap_query_free(q);
        free(big);
}
END_TEST

static char *repeat(const char *pre, int times, const char *mid, const char *post)
{
        size_t len = strlen(pre) * times + strlen(mid) + strlen(post) * times + 1;
        char *s = malloc(len);
        s[0] = '\0';
        for (int i = 0; i < times; i++)
                strcat(s, pre);
        strcat(s, mid);
        for (int i = 0; i < times; i++)
                strcat(s, post);
        return s;
}

/* "imap:" + repeat(pre, times, mid, post) */
static char *imap_repeat(const char *pre, int times, const char *mid, const char *post)
{
        char *inner = repeat(pre, times, mid, post);
        char *s = repeat("imap:", 1, inner, "");
        free(inner);
        return s;
}

static int parse_rc(const char *s)
{
        struct imap_query *q = NULL;
        struct imap_query_err err;
        int r = imap_query_parse(s, strlen(s), NOW, &q, &err);
        imap_query_free(q);
        return r;
}

START_TEST(hostile_depth)
{
        char *s = repeat("(", IMAP_QUERY_MAX_DEPTH, "a", ")");
        ck_assert_int_eq(parse_rc(s), 0);
        free(s);
        s = repeat("(", IMAP_QUERY_MAX_DEPTH + 1, "a", ")");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = repeat("(", 4000, "a", ")");
        check_bad(s, strlen(s), IMAP_QUERY_MAX_DEPTH + 1, "nested more than");
        free(s);
        s = repeat("-", 4000, "a", "");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = repeat("-(", 2000, "a", ")");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = imap_repeat("NOT ", 3000, "SEEN", "");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = imap_repeat("(", 3000, "SEEN", ")");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = imap_repeat("OR (", 3000, "SEEN", ") SEEN");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = repeat("(", 4000, "", "");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
        s = repeat(")", 4000, "", "");
        ck_assert_int_eq(parse_rc(s), -EINVAL);
        free(s);
}
END_TEST

/* Long OR chains cost no depth: a OR b OR ... is one node, and so is the
 * right-nested IMAP chain it is written as, so it reads back. */
START_TEST(long_or_chain)
{
        /* 400: the IMAP form must fit IMAP_QUERY_MAX_LEN too */
        char *s = malloc(400 * 8 + 1);
        s[0] = '\0';
        for (int i = 0; i < 400; i++)
                sprintf(s + strlen(s), "%sw%d", i ? " OR " : "", i);
        ck_assert_int_eq(parse_rc(s), 0);
        check_round_trip(s);
        free(s);
}
END_TEST

START_TEST(gmail_raw)
{
        struct imap_query_caps gm = {.x_gm_ext_1 = true};
        SER_CAPS("gmail:has:attachment", &gm, "X-GM-RAW \"has:attachment\"");
        SER_CAPS("from:bob gmail:has:attachment in:anywhere  ", &gm,
                 "FROM \"bob\" X-GM-RAW \"has:attachment in:anywhere\"");
        SER_CAPS("(gmail:a (b) \"c)\") OR d", &gm, "OR X-GM-RAW \"a (b) \\\"c)\\\"\" TEXT \"d\"");
        SER_CAPS("gmail:caf\xc3\xa9", &gm, "CHARSET UTF-8 X-GM-RAW {5}\r\ncaf\xc3\xa9");
        SER_CAPS("imap:X-GM-RAW \"x\"", &gm, "X-GM-RAW \"x\"");
        BAD("gmail:", 0, "gmail: needs a query");
        BAD("(gmail: )", 1, "gmail: needs a query");
        /* without X-GM-EXT-1: ENOTSUP and nothing appended */
        struct imap_query *q;
        ck_assert_int_eq(imap_query_parse(S("from:x OR gmail:y"), NOW, &q, NULL), 0);
        struct imap_cmd c;
        imap_cmd_init(&c, false);
        imap_cmd_add(&c, "UID SEARCH ");
        ck_assert_int_eq(imap_query_to_search(q, &PLAIN, &c), -EOPNOTSUPP);
        ck_assert_str_eq(c.buf, "UID SEARCH ");
        ck_assert_int_eq(imap_query_to_search(q, NULL, &c), -EOPNOTSUPP);
        imap_cmd_free(&c);
        imap_query_free(q);
}
END_TEST

START_TEST(needs_utf8)
{
        struct imap_query *q;
        ck_assert_int_eq(imap_query_parse(S("from:a b (c OR -d)"), NOW, &q, NULL), 0);
        ck_assert(!imap_query_needs_utf8(q));
        imap_query_free(q);
        ck_assert_int_eq(imap_query_parse(S("from:a b (c OR -d\xc3\xa9)"), NOW, &q, NULL), 0);
        ck_assert(imap_query_needs_utf8(q));
        imap_query_free(q);
        ck_assert_int_eq(imap_query_parse(S("header:X:\xc3\xa9"), NOW, &q, NULL), 0);
        ck_assert(imap_query_needs_utf8(q));
        imap_query_free(q);
}
END_TEST

static char *canon_of(const char *s)
{
        struct imap_query *q;
        struct imap_query_err err;
        ck_assert_msg(imap_query_parse(s, strlen(s), NOW, &q, &err) == 0, "%s: %s", s, err.reason);
        char *c = imap_query_canonical(q);
        ck_assert_ptr_nonnull(c);
        imap_query_free(q);
        return c;
}

static void check_same(const char *a, const char *b)
{
        char *ca = canon_of(a), *cb = canon_of(b);
        ck_assert_msg(strcmp(ca, cb) == 0, "[%s] → [%s] but [%s] → [%s]", a, ca, b, cb);
        free(ca);
        free(cb);
}

static void check_differ(const char *a, const char *b)
{
        char *ca = canon_of(a), *cb = canon_of(b);
        ck_assert_msg(strcmp(ca, cb) != 0, "[%s] and [%s] both → [%s]", a, b, ca);
        free(ca);
        free(cb);
}

START_TEST(canonical)
{
        char *c = canon_of("invoice  from:Alice (x OR Y) -(b a)");
        ck_assert_str_eq(c, "FROM \"alice\" NOT (TEXT \"a\" TEXT \"b\") OR TEXT \"x\" TEXT \"y\" "
                            "TEXT \"invoice\"");
        free(c);
        check_same("from:alice  invoice", "invoice from:alice");
        check_same("from:alice invoice", "imap:TEXT invoice FROM alice");
        check_same("from:ALICE", "from:alice");
        check_same("a OR b OR c", "c OR (b OR a)");
        check_same("a a b", "b a");
        check_same("a OR a", "a");
        check_same("--a", "a");
        check_same("((a b) c)", "a (b c)");
        check_same("older:30d", "before:2024-03-01");
        check_same("is:unread", "imap:UNSEEN");
        check_same("header:list-id:X", "imap:HEADER LIST-ID x");
        check_same("\"a\\\"b\"", "imap:TEXT {3}\r\na\"b");
        check_differ("from:alice", "to:alice");
        check_differ("a b", "a OR b");
        check_differ("-a b", "-(a b)");
        check_differ("\"a b\"", "a b");
        check_differ("keyword:$A", "keyword:$a"); /* keywords are kept as typed */
        check_differ("gmail:A", "gmail:a");       /* Gmail's syntax is its own */
        check_differ("caf\xc3\xa9", "caf\xc3\x89");
        check_differ("larger:1", "larger:10");
}
END_TEST

static void check_dirname(const char *dir, const char *query)
{
        char *q;
        ck_assert_int_eq(imap_query_from_dirname(dir, &q), 0);
        ck_assert_str_eq(q, query);
        free(q);
}

START_TEST(dirnames)
{
        check_dirname("from:alice invoice", "from:alice invoice");
        check_dirname("a%2Fb", "a/b");
        check_dirname("a%2fb", "a/b");
        check_dirname("100%", "100%");
        check_dirname("50% off", "50% off");
        check_dirname("p%q%", "p%q%");
        check_dirname("%2541", "%41");
        check_dirname("%41", "A"); /* lenient: any escape decodes */
        check_dirname("%2", "%2");
        check_dirname("%C3%A9", "\xc3\xa9");
        char *q = (char *)1;
        ck_assert_int_eq(imap_query_from_dirname("a%00b", &q), -EINVAL);
        ck_assert_ptr_null(q);

        static const char *const texts[] = {"a/b",  "%41",   "100%", "%",     "%%",     "%/",
                                            "%2/",  "%A/",   ".",    "..",    "...",    "/",
                                            "a%2F", "%252F", "x%25", "%%41/", "a b/c%d"};
        static const char *const dirs[] = {"a%2Fb",     "%2541",    "100%",   "%",       "%%",
                                           "%%2F",      "%2%2F",    "%A%2F",  "%2E",     "%2E%2E",
                                           "...",       "%2F",      "a%252F", "%25252F", "x%2525",
                                           "%%2541%2F", "a b%2Fc%d"};
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                char *d = imap_query_to_dirname(texts[i]);
                ck_assert_ptr_nonnull(d);
                ck_assert_msg(strcmp(d, dirs[i]) == 0, "%s → %s want %s", texts[i], d, dirs[i]);
                ck_assert_ptr_null(strchr(d, '/'));
                check_dirname(d, texts[i]);
                free(d);
        }
        ck_assert_ptr_null(imap_query_to_dirname(""));

        /* every text of the alphabet below up to length 4 round-trips */
        static const char alpha[] = {'%', '/', '2', 'F', 'f', '5', 'x', '.'};
        char t[5];
        for (unsigned code = 0; code < 8 * 8 * 8 * 8; code++) {
                for (unsigned len = 1; len <= 4; len++) {
                        unsigned k = code;
                        for (unsigned i = 0; i < len; i++, k /= 8)
                                t[i] = alpha[k % 8];
                        t[len] = '\0';
                        char *d = imap_query_to_dirname(t);
                        ck_assert_ptr_null(strchr(d, '/'));
                        ck_assert(strcmp(d, ".") != 0 && strcmp(d, "..") != 0);
                        check_dirname(d, t);
                        free(d);
                }
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("query");
        TCase *tc = tcase_create("query");
        tcase_add_test(tc, words_and_phrases);
        tcase_add_test(tc, string_prefixes);
        tcase_add_test(tc, flags_and_keywords);
        tcase_add_test(tc, dates);
        tcase_add_test(tc, relative_dates);
        tcase_add_test(tc, sizes);
        tcase_add_test(tc, uids);
        tcase_add_test(tc, operators);
        tcase_add_test(tc, imap_keys);
        tcase_add_test(tc, imap_grammar);
        tcase_add_test(tc, imap_numbers64);
        tcase_add_test(tc, round_trips);
        tcase_add_test(tc, hostile_strings);
        tcase_add_test(tc, hostile_bytes);
        tcase_add_test(tc, hostile_sizes);
        tcase_add_test(tc, hostile_depth);
        tcase_add_test(tc, long_or_chain);
        tcase_add_test(tc, gmail_raw);
        tcase_add_test(tc, needs_utf8);
        tcase_add_test(tc, canonical);
        tcase_add_test(tc, dirnames);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
