/* Issue 15: a SELECT made for a read or a write whose counts disagree with
 * the cached listing (more messages than listed, or UIDNEXT past the
 * listing's) marks that listing stale, so the next `ls` re-lists. GNU
 * Mailutils sends the session that APPENDed no EXISTS; another session's
 * SELECT is then the only sign of the new message. Against a scripted
 * server: INBOX and Label are listed (the session ends in Label), a read of
 * INBOX's message SELECTs INBOX again and gets the script's counts. */
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

static enum cache_listing_state state_of(struct account *a, const char *raw)
{
        cache_lock(a->cache);
        enum cache_listing_state st = cache_mbox_by_raw(a->cache, raw)->state;
        cache_unlock(a->cache);
        return st;
}

/* The read's SELECT of INBOX answers reselect (its EXISTS and UIDNEXT);
 * without UIDNEXT the read sends a NOOP first (account_select_uid). */
static void read_after_own(const char *reselect, enum cache_listing_state want, bool own);

static void read_after(const char *reselect, enum cache_listing_state want)
{
        read_after_own(reselect, want, false);
}

/* own: a change of ours that adds one message to INBOX is on its way (a
 * UID MOVE whose answer has not come): the SELECT's extra message is its
 * echo, no news. */
static void read_after_own(const char *reselect, enum cache_listing_state want, bool own)
{
        bool noop = !strstr(reselect, "UIDNEXT");
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"LIST", 0,
             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" Label\r\n"
             "$T OK done\r\n",
             0},
            {"SELECT \"INBOX\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {"UID FETCH 1:*", 0, LISTING, 0},
            {"SELECT \"Label\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 9] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {"UID FETCH 1:*", 0, LISTING, 0},
            {"SELECT \"INBOX\"", 0, reselect, 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {"BODY.PEEK[]<0.", 0,
             "* 1 FETCH (UID 5 BODY[]<0> {" BODY_LEN "}\r\n" BODY ")\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct step played[sizeof script / sizeof script[0]];
        size_t n = 0;
        for (size_t i = 0; i < sizeof script / sizeof script[0]; i++)
                if (noop || !script[i].expect || strcmp(script[i].expect, "NOOP") != 0)
                        played[n++] = script[i];
        char dir[] = "/tmp/test_sellistXXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        fake_start(&f, played);
        struct account a = {0};
        fake_account_open(&a, f.port, dir, 60000);
        list_folder(&a, "INBOX");
        list_folder(&a, "Label");
        ck_assert_int_eq(state_of(&a, "INBOX"), CACHE_LISTING_VALID);
        if (own) {
                cache_lock(a.cache);
                ck_assert_int_eq(own_expect(a.own, NULL, NULL, 1, "INBOX", NULL), 0);
                cache_unlock(a.cache);
        }

        cache_lock(a.cache);
        struct cache_msg *msg = cache_msg_by_name(cache_mbox_by_raw(a.cache, "INBOX"), "5.eml");
        ck_assert_ptr_nonnull(msg);
        uint64_t id = msg->node.id;
        cache_unlock(a.cache);
        struct account_file *af;
        ck_assert_int_eq(account_file_open(&a, id, &af), 0);
        char out[128];
        size_t got = 0;
        int r = account_file_read(&a, af, 0, 100, out, &got);
        ck_assert_msg(r == 0, "read: %d (server script: %s; client sent: %s)", r, f.why, f.log);
        ck_assert_uint_eq(got, strlen(BODY));
        account_file_close(af);

        ck_assert_int_eq(state_of(&a, "INBOX"), want);
        ck_assert_int_eq(state_of(&a, "Label"), CACHE_LISTING_VALID);
        account_destroy(&a);
        persist_close(&a);
        fake_stop(&f);
        ck_assert_msg(!f.failed, "%s", f.why);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_more_messages)
{
        read_after("* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 7] n\r\n"
                   "$T OK [READ-WRITE] done\r\n",
                   CACHE_LISTING_STALE);
}
END_TEST

/* One message went and one came: the count agrees, UIDNEXT does not. */
START_TEST(test_uidnext_beyond)
{
        read_after("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 7] n\r\n"
                   "$T OK [READ-WRITE] done\r\n",
                   CACHE_LISTING_STALE);
}
END_TEST

/* Mailutils' case: UIDNEXT is not sent with every SELECT, EXISTS shows it. */
START_TEST(test_more_messages_no_uidnext)
{
        read_after("* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n$T OK [READ-WRITE] done\r\n",
                   CACHE_LISTING_STALE);
}
END_TEST

START_TEST(test_own_change_is_no_news)
{
        read_after_own("* 2 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 7] n\r\n"
                       "$T OK [READ-WRITE] done\r\n",
                       CACHE_LISTING_VALID, true);
}
END_TEST

START_TEST(test_same_counts_stay_valid)
{
        read_after("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n"
                   "$T OK [READ-WRITE] done\r\n",
                   CACHE_LISTING_VALID);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("select_listing");
        TCase *tc = tcase_create("select_listing");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_more_messages);
        tcase_add_test(tc, test_uidnext_beyond);
        tcase_add_test(tc, test_more_messages_no_uidnext);
        tcase_add_test(tc, test_same_counts_stay_valid);
        tcase_add_test(tc, test_own_change_is_no_news);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
