/* NOTIFY's LIST responses (RFC 5465 §5.4) and the folder tree: one that
 * names a mailbox the tree has, unchanged, leaves the tree checked (Dovecot
 * sends one for INBOX when live sync stops selecting it, and re-listing the
 * tree then cost a scan a round trip on the pool's connection: test_scan);
 * a new name, a \NonExistent one or a rename (OLDNAME) makes the next lookup
 * list the tree again. Against a scripted server: the LIST comes unsolicited
 * with the second SELECT of INBOX. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "tests/unit/fake_account.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define SELECT_OK "* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] done\r\n"

static struct fake f;

static void list_inbox(struct account *a)
{
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, "INBOX");
        ck_assert_ptr_nonnull(m);
        m->state = CACHE_LISTING_STALE;
        uint64_t mid = m->node.id;
        cache_unlock(a->cache);
        int r = account_refresh_listing(a, mid, 0);
        ck_assert_msg(r == 0, "listing: %d (server script: %s; client sent: %s)", r, f.why, f.log);
}

/* The tree is still checked after an unsolicited `list` (a whole line). */
static bool checked_after(const char *list)
{
        char second[512];
        snprintf(second, sizeof second, "* 0 EXISTS\r\n%s%s", list, SELECT_OK);
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"LIST", 0,
             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" Old\r\n"
             "$T OK done\r\n",
             0},
            {"SELECT \"INBOX\"", 0, "* 0 EXISTS\r\n" SELECT_OK, 0},
            {"SELECT \"INBOX\"", 0, second, 0},
            {NULL, 0, NULL, 0},
        };
        char dir[] = "/tmp/test_notifylistXXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        fake_start(&f, script);
        struct account a = {0};
        fake_account_open(&a, f.port, dir, 60000);
        list_inbox(&a);
        cache_lock(a.cache);
        ck_assert_msg(a.tree_checked_ms != 0, "the tree was not listed at connect");
        cache_unlock(a.cache);
        list_inbox(&a);
        cache_lock(a.cache);
        bool checked = a.tree_checked_ms != 0;
        cache_unlock(a.cache);
        account_destroy(&a);
        persist_close(&a);
        fake_stop(&f);
        ck_assert_msg(!f.failed, "%s", f.why);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
        return checked;
}

START_TEST(test_known_mailbox_is_no_news)
{
        ck_assert(checked_after("* LIST () \"/\" INBOX\r\n"));
        ck_assert(checked_after("* LIST (\\HasNoChildren) \"/\" \"Old\"\r\n"));
}
END_TEST

START_TEST(test_tree_changes_are_news)
{
        ck_assert(!checked_after("* LIST () \"/\" NewBox\r\n"));
        ck_assert(!checked_after("* LIST (\\NonExistent) \"/\" Old\r\n"));
        ck_assert(!checked_after("* LIST () \"/\" INBOX (\"OLDNAME\" (\"Old\"))\r\n"));
}
END_TEST

static Suite *notify_list_suite(void)
{
        Suite *s = suite_create("notify_list");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_known_mailbox_is_no_news);
        tcase_add_test(tc, test_tree_changes_are_news);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(notify_list_suite());
}
