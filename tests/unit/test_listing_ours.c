/* A listing refresh that crossed a move of ours on the wire (the server
 * had already moved the message when it answered) must not drop that
 * message: our command's answer moves its node along, so that GNU mv's
 * stat of the name it just renamed to still finds the inode. Seen as rare
 * "mv: cannot stat" failures of test_write's mv of 200 messages under load.
 * Against a scripted server: INBOX holds UID 5; a refresh answers with no
 * message while a move of UID 5 is pending (kept), or while none is
 * (dropped). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/account.h"
#include "cache/own.h"
#include "cache/persist.h"
#include "imap/pool.h"
#include "tests/unit/fake_account.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define BODY "Subject: hi\r\n\r\nsame bytes\r\n"
#define BODY_LEN "27"
#define LISTING                                                                                    \
        "* 1 FETCH (UID 5 RFC822.SIZE " BODY_LEN " INTERNALDATE "                                  \
        "\"01-Jan-2024 10:00:00 +0000\" FLAGS (\\Seen) "                                           \
        "BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n"                      \
        "$T OK done\r\n"

static struct fake f;

static void list_folder(struct account *a, const char *raw)
{
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        ck_assert_ptr_nonnull(m);
        uint64_t mid = m->node.id;
        cache_unlock(a->cache);
        int r = account_refresh_listing(a, mid, 0);
        ck_assert_msg(r == 0, "listing of %s: %d (server script: %s; client sent: %s)", raw, r,
                      f.why, f.log);
}

static bool has_5(struct account *a)
{
        cache_lock(a->cache);
        bool there = cache_msg_by_name(cache_mbox_by_raw(a->cache, "INBOX"), "5.eml") != NULL;
        cache_unlock(a->cache);
        return there;
}

static void refresh_while(bool moving)
{
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"LIST", 0, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n$T OK done\r\n", 0},
            {"SELECT \"INBOX\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {"UID FETCH 1:*", 0, LISTING, 0},
            /* The refresh: the server has moved UID 5 away already. */
            {"SELECT \"INBOX\"", 0,
             "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        char dir[] = "/tmp/test_lsoursXXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        fake_start(&f, script);
        struct account a = {0};
        fake_account_open(&a, f.port, dir, 60000);
        list_folder(&a, "INBOX");
        ck_assert(has_5(&a));
        uint32_t uid = 5;
        if (moving) {
                cache_lock(a.cache);
                ck_assert_int_eq(own_expect(a.own, "INBOX", &uid, 1, "Archive", NULL), 0);
                cache_unlock(a.cache);
        }
        cache_lock(a.cache);
        cache_mbox_by_raw(a.cache, "INBOX")->state = CACHE_LISTING_STALE;
        cache_unlock(a.cache);
        list_folder(&a, "INBOX");
        ck_assert_msg(has_5(&a) == moving, "UID 5 %s after a listing that crossed %s",
                      has_5(&a) ? "kept" : "dropped", moving ? "our move" : "nothing of ours");
        if (moving) {
                cache_lock(a.cache);
                own_done(a.own, "INBOX", &uid, 1, "Archive", NULL);
                cache_unlock(a.cache);
        }
        account_destroy(&a);
        persist_close(&a);
        fake_stop(&f);
        ck_assert_msg(!f.failed, "%s", f.why);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_kept_while_our_move_is_pending)
{
        refresh_while(true);
}
END_TEST

START_TEST(test_dropped_otherwise)
{
        refresh_while(false);
}
END_TEST

static Suite *listing_ours_suite(void)
{
        Suite *s = suite_create("listing_ours");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_kept_while_our_move_is_pending);
        tcase_add_test(tc, test_dropped_otherwise);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(listing_ours_suite());
}
