/* A move on a server without MOVE is UID COPY, then STORE \Deleted and UID
 * EXPUNGE of the original. When the COPY was confirmed (COPYUID) and the
 * connection broke before the original was removed, only that removal is
 * left, and finishing it is safe however often it runs. A server that is
 * restarting refuses connections for a while: the removal is tried for
 * longer than the one timeout of the ordinary check of a lost answer, so
 * that mv does not fail with both copies left (the user would then move the
 * original again: a second copy; chaos seed 3, test_4_nothing_duplicated).
 *
 * Against a scripted server: INBOX lists UID 5; the COPY to B is answered
 * with COPYUID; the connection closes at the STORE; the next four
 * connections close before their greeting (600 ms each: together longer
 * than the 2 s timeout); the fifth gets SELECT, the presence check, the
 * STORE and UID EXPUNGE of UID 5. The move returns 0 and the original is
 * expunged. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/account.h"
#include "cache/account_write.h"
#include "imap/pool.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

static struct fake f;

#define CAPS "IMAP4rev1 UIDPLUS"
#define SELECT_INBOX                                                                               \
        {                                                                                          \
                "SELECT \"INBOX\"", 0,                                                             \
                    "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK "         \
                    "[READ-WRITE] done\r\n",                                                       \
                    0                                                                              \
        }
/* A connection that closes before its greeting, after a while. */
#define REFUSED                                                                                    \
        {                                                                                          \
                NULL, 0, "$ACCEPT", 600                                                            \
        }

START_TEST(test_confirmed_copy_is_finished_after_a_restart)
{
        const struct step script[] = {
            FAKE_LOGIN(CAPS),
            {"LIST", 0,
             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" B\r\n"
             "$T OK done\r\n",
             0},
            SELECT_INBOX,
            {"UID FETCH 1:*", 0,
             "* 1 FETCH (UID 5 RFC822.SIZE 40 INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" "
             "FLAGS (\\Seen) BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: "
             "hi\r\n\r\n)\r\n$T OK done\r\n",
             0},
            {"UID COPY 5 \"B\"", 0, "$T OK [COPYUID 9 5 1] copied\r\n", 0},
            /* The restart: the connection breaks before the removal. */
            {"UID FETCH 5 (UID FLAGS)", 0, "$ACCEPT", 0},
            REFUSED,
            REFUSED,
            REFUSED,
            REFUSED,
            /* Back. */
            FAKE_LOGIN(CAPS),
            SELECT_INBOX,
            {"UID FETCH 5 (UID)", 0, "* 1 FETCH (UID 5)\r\n$T OK done\r\n", 0},
            {"UID FETCH 5 (UID FLAGS)", 0, "* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n$T OK done\r\n", 0},
            {"UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0, "$T OK done\r\n", 0},
            {"UID EXPUNGE 5", 0, "* 1 EXPUNGE\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        fake_start(&f, script);
        struct account a = {0};
        a.imap = fake_acct(f.port, "pw", true);
        a.opts.connections = 1;
        a.opts.mem_cache = 1 << 20;
        a.opts.revalidate_ms = 1000;
        a.naming = fake_naming(true);
        ck_assert_int_eq(account_init(&a), 0);
        char err[256] = "";
        bool net;
        ck_assert_msg(account_connect(&a, err, sizeof err, &net) == 0, "%s", err);
        cache_lock(a.cache);
        struct cache_mbox *m = cache_mbox_by_raw(a.cache, "INBOX");
        struct cache_mbox *b = cache_mbox_by_raw(a.cache, "B");
        ck_assert_ptr_nonnull(m);
        ck_assert_ptr_nonnull(b);
        uint64_t mid = m->node.id, bid = b->node.id;
        cache_unlock(a.cache);
        int r = account_refresh_listing(&a, mid, 0);
        ck_assert_msg(r == 0, "listing: %d (%s; sent: %s)", r, f.why, f.log);
        r = account_rename(&a, mid, "5.eml", bid, "5.eml", false);
        ck_assert_msg(r == 0, "mv after the restart: %d (%s; sent: %s)", r, f.why, f.log);
        /* The node went with it, as after a move confirmed at once. */
        cache_lock(a.cache);
        m = cache_mbox_by_raw(a.cache, "INBOX");
        b = cache_mbox_by_raw(a.cache, "B");
        ck_assert_ptr_null(cache_msg_by_uid(m, 5));
        ck_assert_ptr_nonnull(cache_msg_by_uid(b, 1));
        cache_unlock(a.cache);
        account_destroy(&a);
        fake_stop(&f);
        const char *again = strstr(f.log, "UID FETCH 5 (UID)");
        ck_assert_ptr_nonnull(again);
        ck_assert_ptr_nonnull(strstr(again, "UID STORE 5 +FLAGS.SILENT (\\Deleted)"));
        ck_assert_ptr_nonnull(strstr(again, "UID EXPUNGE 5"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("move_finish");
        TCase *tc = tcase_create("move_finish");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_confirmed_copy_is_finished_after_a_restart);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
