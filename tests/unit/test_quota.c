/* GETQUOTAROOT (imap/ops_quota.c) against the scripted fake server: one root,
 * several roots (the tightest storage wins), MESSAGE next to STORAGE,
 * unknown resources skipped, a root without resources, a server without
 * QUOTA (BAD), a malformed answer. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "imap/ops_quota.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define LOGIN_OK                                                                                   \
        {                                                                                          \
                "LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 QUOTA] ok\r\n", 0                         \
        }

static int ask(const char *answer, struct imap_quota *q)
{
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"A2 GETQUOTAROOT \"INBOX\"\r", 0, answer, 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        int r = imap_quota_get(s, "INBOX", q);
        imap_session_free(s);
        fake_stop(&f);
        return r;
}

START_TEST(test_one_root)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("* QUOTAROOT INBOX \"User quota\"\r\n"
                             "* QUOTA \"User quota\" (STORAGE 10 512)\r\n$T OK done\r\n",
                             &q),
                         0);
        ck_assert(q.storage);
        ck_assert_uint_eq(q.storage_used, 10);
        ck_assert_uint_eq(q.storage_limit, 512);
        ck_assert(!q.messages);
}
END_TEST

START_TEST(test_tightest_root_and_messages)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("* QUOTAROOT INBOX a b\r\n"
                             "* QUOTA a (X-UNKNOWN 1 2 STORAGE 100 1000 MESSAGE 3 50)\r\n"
                             "* QUOTA b (STORAGE 900 950)\r\n$T OK done\r\n",
                             &q),
                         0);
        ck_assert(q.storage);
        ck_assert_uint_eq(q.storage_used, 900);
        ck_assert_uint_eq(q.storage_limit, 950);
        /* MESSAGE of the other root is kept: it is the only one. */
        ck_assert(q.messages);
        ck_assert_uint_eq(q.messages_used, 3);
        ck_assert_uint_eq(q.messages_limit, 50);
}
END_TEST

/* A server's STORAGE figure is in KiB: one so big that its bytes don't fit
 * 64 bits is held at a bound that statfs can still turn into bytes and
 * blocks (rounded up) without wrapping round to a tiny disk. */
START_TEST(test_huge_storage)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("* QUOTAROOT INBOX a\r\n"
                             "* QUOTA a (STORAGE 18014398509481984 18446744073709551615)\r\n"
                             "$T OK done\r\n",
                             &q),
                         0);
        ck_assert(q.storage);
        ck_assert_uint_eq(q.storage_limit, IMAP_QUOTA_STORAGE_MAX);
        ck_assert_uint_eq(q.storage_used, IMAP_QUOTA_STORAGE_MAX);
        uint64_t bytes = q.storage_limit * 1024;
        ck_assert_uint_eq(bytes / 1024, q.storage_limit);
        ck_assert_uint_gt(bytes + 4095, bytes);
}
END_TEST

START_TEST(test_no_resources)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("* QUOTAROOT INBOX\r\n$T OK done\r\n", &q), 0);
        ck_assert(!q.storage);
        ck_assert(!q.messages);
}
END_TEST

START_TEST(test_no_quota_extension)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("$T BAD Unknown command\r\n", &q), -ENOTSUP);
}
END_TEST

/* Not announced: not asked (no round trip, no BAD in the server's log). */
START_TEST(test_not_announced_not_asked)
{
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 NOOP\r", 0, "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        struct imap_quota q;
        ck_assert_int_eq(imap_quota_get(s, "INBOX", &q), -ENOTSUP);
        /* The next command the server sees is this NOOP, not a GETQUOTAROOT. */
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "NOOP");
        ck_assert_int_eq(imap_session_cmd(s, &cmd, NULL, NULL, &res), 0);
        imap_cmd_free(&cmd);
        ck_assert_int_eq(res.status, IMAP_ST_OK);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_msg(!f.failed, "%s", f.why);
}
END_TEST

START_TEST(test_malformed_skipped)
{
        struct imap_quota q;
        ck_assert_int_eq(ask("* QUOTA r (STORAGE 10)\r\n* QUOTA r (STORAGE x 5)\r\n"
                             "$T OK done\r\n",
                             &q),
                         0);
        ck_assert(!q.storage);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        Suite *s = suite_create("quota");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_one_root);
        tcase_add_test(tc, test_tightest_root_and_messages);
        tcase_add_test(tc, test_huge_storage);
        tcase_add_test(tc, test_no_resources);
        tcase_add_test(tc, test_no_quota_extension);
        tcase_add_test(tc, test_malformed_skipped);
        tcase_add_test(tc, test_not_announced_not_asked);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
