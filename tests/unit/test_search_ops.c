/* Searches with a query's keys (imap/ops_search.c) against a scripted fake
 * server: UID SEARCH with and without ESEARCH, CHARSET and literals, X-GM-RAW
 * only with X-GM-EXT-1, and RFC 7377 MULTISEARCH (which Dovecot lacks). The
 * fake server is the one of test_session.c. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/ops_search.h"
#include "imap/query.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

static struct imap_session *open_with(struct fake *f, const struct step *script,
                                      struct imap_account *a)
{
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(f, script, a, &s), 0);
        return s;
}

static struct imap_query *parse(const char *text)
{
        struct imap_query *q = NULL;
        ck_assert_int_eq(imap_query_parse(text, strlen(text), 0, &q, NULL), 0);
        return q;
}

/* The UIDs a search reported, as "lo-hi lo-hi ..." */
struct got {
        char buf[512];
};

static void on_range(void *ctx, unsigned lo, unsigned hi)
{
        struct got *g = ctx;
        size_t o = strlen(g->buf);
        snprintf(g->buf + o, sizeof(g->buf) - o, "%s%u-%u", o ? " " : "", lo, hi);
}

static void on_multi(void *ctx, const char *mailbox, uint32_t uidvalidity, unsigned lo, unsigned hi)
{
        struct got *g = ctx;
        size_t o = strlen(g->buf);
        snprintf(g->buf + o, sizeof(g->buf) - o, "%s%s/%u:%u-%u", o ? " " : "", mailbox,
                 uidvalidity, lo, hi);
}

START_TEST(test_plain_search_without_esearch)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID SEARCH FROM \"alice\" TEXT \"invoice\"\r", 0,
             "* SEARCH 2 4 9\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("from:alice invoice");
        struct got g = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "2-2 4-4 9-9");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_esearch_with_charset_and_literal)
{
        /* "café" is 5 bytes of UTF-8: a synchronizing literal, after "+". */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH] ok\r\n", 0},
            {"A2 UID SEARCH RETURN (ALL) CHARSET UTF-8 SUBJECT {5}\r", 0, "+ go\r\n", 0},
            {NULL, 7, "* ESEARCH (TAG \"A2\") UID ALL 3:5,8\r\nA2 OK done\r\n", 0},
            {"A3 UID SEARCH RETURN (ALL) UNSEEN\r", 0,
             "* ESEARCH (TAG \"A3\") UID\r\n$T OK nothing\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("subject:café");
        struct got g = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "3-5 8-8");
        ck_assert(memmem(f.log, f.loglen, "café\r\n", 7) != NULL);
        imap_query_free(q);
        q = parse("is:unread");
        struct got g2 = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g2), 0);
        ck_assert_str_eq(g2.buf, "");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_gmail_only_with_x_gm_ext_1)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 NOOP", 0, "$T OK\r\n", 0}, /* the refused search sent nothing */
            {NULL, 0, NULL, 0},
        };
        static const struct step gm[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 X-GM-EXT-1] ok\r\n", 0},
            {"A2 UID SEARCH X-GM-RAW \"has:attachment\"\r", 0, "* SEARCH 7\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_query *q = parse("gmail:has:attachment");
        struct got g = {""};
        struct imap_session *s = open_with(&f, script, &a);
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), -EOPNOTSUPP);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_session_free(s);
        fake_stop(&f);
        s = open_with(&f, gm, &a);
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "7-7");
        imap_session_free(s);
        fake_stop(&f);
        imap_query_free(q);
}
END_TEST

START_TEST(test_multisearch)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH MULTISEARCH] ok\r\n", 0},
            {"A2 ESEARCH IN (personal) RETURN (ALL) FROM \"alice\"\r", 0,
             "* ESEARCH (TAG \"A2\" MAILBOX \"INBOX\" UIDVALIDITY 7) UID ALL 1:3,5\r\n"
             "* ESEARCH (TAG \"A2\" MAILBOX \"Work/a b\" UIDVALIDITY 9) UID ALL 4\r\n"
             "* ESEARCH (TAG \"A2\" MAILBOX \"Empty\" UIDVALIDITY 3) UID\r\n"
             "$T OK done\r\n",
             0},
            {"A3 ESEARCH IN (personal)", 0,
             "* ESEARCH (TAG \"A3\" UIDVALIDITY 7) UID ALL 1\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("from:alice");
        struct got g = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g), 0);
        ck_assert_str_eq(g.buf, "INBOX/7:1-3 INBOX/7:5-5 Work/a b/9:4-4");
        /* An answer that does not say which folder it is about is refused. */
        struct got g2 = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g2), -EPROTO);
        ck_assert_str_eq(g2.buf, "");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_multisearch_needs_the_capability)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH] ok\r\n", 0},
            {"A2 NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("x");
        struct got g = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g), -EOPNOTSUPP);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        Suite *s = suite_create("search_ops");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_plain_search_without_esearch);
        tcase_add_test(tc, test_esearch_with_charset_and_literal);
        tcase_add_test(tc, test_gmail_only_with_x_gm_ext_1);
        tcase_add_test(tc, test_multisearch);
        tcase_add_test(tc, test_multisearch_needs_the_capability);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
