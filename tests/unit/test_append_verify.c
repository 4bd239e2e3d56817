/* An APPEND whose answer was lost is looked up on the server (by its
 * Message-ID, among the UIDs given since it was sent) before anyone is told
 * it worked. The floor of that lookup must be above every message the
 * folder already held: an edited message keeps its Message-ID, so the
 * message it replaces would otherwise be taken for the new one, close()
 * would say "stored" and the edit would be lost (fs_staged_store then sees
 * the old UID and, as for identical bytes, removes nothing).
 *
 * Against a scripted server whose SELECT gives no UIDNEXT (RFC 3501 servers
 * that omit it; a session's own UIDNEXT estimate from EXISTS can be as low):
 * the folder lists UID 5 with Message-ID <m@x>; an APPEND of new bytes with
 * that Message-ID loses its connection after the literal; on the next
 * connection the server, asked for "UID 6:*", answers with UID 5 (as "n:*"
 * does when n is above the highest UID). The APPEND did not arrive: EIO. */
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

#define NEW "Message-ID: <m@x>\r\nSubject: hi\r\n\r\nedited\r\n"

static struct fake f;

static void lost_append(bool dedup)
{
#define HEAD_STEPS                                                                                 \
        {NULL, 0, GREETING, 0}, {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},            \
            {"LIST", 0, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n$T OK done\r\n", 0},              \
            {"SELECT \"INBOX\"", 0,                                                                \
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n$T OK [READ-WRITE] done\r\n", 0},            \
        {                                                                                          \
                "UID FETCH 1:*", 0,                                                                \
                    "* 1 FETCH (UID 5 RFC822.SIZE 40 INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" " \
                    "FLAGS (\\Seen) BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: "          \
                    "hi\r\n\r\n)\r\n$T OK done\r\n",                                               \
                    0                                                                              \
        }
#define TAIL_STEPS                                                                                 \
        {"APPEND", 0, "+ go\r\n", 0}, {NULL, strlen(NEW) + 2, "$ACCEPT", 0},                       \
            {NULL, 0, GREETING, 0}, {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},        \
            {"SELECT \"INBOX\"", 0,                                                                \
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 7] n\r\n"                      \
             "$T OK [READ-WRITE] done\r\n",                                                        \
             0},                                                                                   \
            {"UID SEARCH", 0, "* SEARCH 5\r\n$T OK done\r\n", 0},                                  \
        {                                                                                          \
                NULL, 0, NULL, 0                                                                   \
        }
        /* The folder lists UID 5 (SELECT without UIDNEXT); the APPEND's
         * connection breaks after its literal; on the next one UID 5 is what
         * "UID n:*" with that Message-ID finds. */
        const struct step plain[] = {HEAD_STEPS, TAIL_STEPS};
        /* The replacement first looks for the same bytes: none. */
        const struct step same[] = {
            HEAD_STEPS, {"UID SEARCH LARGER", 0, "* SEARCH\r\n$T OK done\r\n", 0}, TAIL_STEPS};
        const struct step *script = dedup ? same : plain;
        fake_start(&f, script);
        struct account a = {0};
        a.imap = fake_acct(f.port, "pw", true);
        a.opts.connections = 1;
        a.opts.mem_cache = 1 << 20;
        a.opts.revalidate_ms = 1000;
        a.naming = fake_naming(false);
        ck_assert_int_eq(account_init(&a), 0);
        char err[256] = "";
        bool net;
        ck_assert_msg(account_connect(&a, err, sizeof err, &net) == 0, "%s", err);
        cache_lock(a.cache);
        struct cache_mbox *m = cache_mbox_by_raw(a.cache, "INBOX");
        ck_assert_ptr_nonnull(m);
        uint64_t mid = m->node.id;
        cache_unlock(a.cache);
        int r = account_refresh_listing(&a, mid, 0);
        ck_assert_msg(r == 0, "listing: %d (%s; sent: %s)", r, f.why, f.log);
        uint32_t uid = 0;
        r = account_append_ex(&a, mid, NEW, strlen(NEW), "\\Seen", 0, dedup, &uid);
        /* Not "stored as UID 5": that is the message being replaced. */
        ck_assert_msg(r == -EIO, "append after a lost answer: %d, uid %u (%s; sent: %s)", r, uid,
                      f.why, f.log);
        account_destroy(&a);
        fake_stop(&f);
        ck_assert_ptr_nonnull(strstr(f.log, "UID SEARCH UID 6:*"));
}

START_TEST(test_lost_append_not_the_old_message)
{
        lost_append(false);
}
END_TEST

START_TEST(test_lost_append_dedup_not_the_old_message)
{
        lost_append(true);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("append_verify");
        TCase *tc = tcase_create("append_verify");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_lost_append_not_the_old_message);
        tcase_add_test(tc, test_lost_append_dedup_not_the_old_message);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
