/* The server "away" memory (account_away): after a failure that shows the
 * server can't be reached, revalidating what the cache holds answers from it
 * at once for a while instead of waiting a timeout again. A connection that
 * can't be made in time is such a failure, like a command that timed out:
 * once the pool's sessions broke, every operation connects first, and
 * without it a stalled server would cost each ls a timeout again as soon as
 * the first away period ended. Against a scripted server: INBOX is listed,
 * the connection breaks, and the next connection gets no greeting. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "imap/conn.h"
#include "tests/unit/fake_account.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define LISTING                                                                                    \
        "* 1 FETCH (UID 5 RFC822.SIZE 27 INTERNALDATE "                                            \
        "\"01-Jan-2024 10:00:00 +0000\" FLAGS (\\Seen) "                                           \
        "BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n"                      \
        "$T OK done\r\n"

START_TEST(test_connect_timeout_counts_as_away)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"LIST", 0, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n$T OK done\r\n", 0},
            {"SELECT \"INBOX\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {"UID FETCH 1:*", 0, LISTING, 0},
            /* The connection breaks; the next one gets its greeting only
             * after the client's 2 s deadline. */
            {NULL, 0, "$ACCEPT", 0},
            {NULL, 0, GREETING, 2500},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        char dir[] = "/tmp/test_awayXXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        fake_start(&f, script);
        struct account a = {0};
        fake_account_open(&a, f.port, dir, 60000);
        cache_lock(a.cache);
        uint64_t id = cache_mbox_by_raw(a.cache, "INBOX")->node.id;
        cache_unlock(a.cache);
        ck_assert_int_eq(account_refresh_listing(&a, id, 0), 0);
        ck_assert_int_eq(account_away(&a), 0);

        /* The session is gone; the new connection times out. */
        usleep(100 * 1000);
        ck_assert_int_lt(account_refresh_listing(&a, id, 0), 0);
        int away = account_away(&a);
        ck_assert_msg(away < 0, "a connection that timed out: server not away");
        /* what callers that show the cache on failure expect */
        ck_assert(away == -EIO || away == -ETIMEDOUT);

        /* Past the pool's own pause after a timeout (500 ms): an ls's
         * revalidation answers from the cache at once, not after another
         * connection's timeout. */
        usleep(700 * 1000);
        int64_t t0 = imap_now_ms();
        ck_assert_int_lt(account_refresh_listing(&a, id, 1), 0);
        int64_t took = imap_now_ms() - t0;
        ck_assert_msg(took < 500, "revalidation with the server away took %lld ms",
                      (long long)took);

        account_destroy(&a);
        persist_close(&a);
        fake_stop(&f);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN); /* the stalled greeting goes to a closed connection */
        Suite *s = suite_create("away");
        TCase *tc = tcase_create("away");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_connect_timeout_counts_as_away);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
