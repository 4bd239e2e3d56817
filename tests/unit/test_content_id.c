/* Issue 10: a message that shows in two folders (a Gmail label and INBOX, or
 * All Mail) is downloaded once. Against a scripted server that offers
 * X-GM-EXT-1 (Dovecot has neither it nor OBJECTID): the listing asks for
 * X-GM-MSGID, the store keys the content by it, and a read of the same
 * message through the second folder sends no FETCH at all. The script has no
 * answer for a second body FETCH: were one sent, the read would run into the
 * session's deadline and fail. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "imap/pool.h"
#include "tests/unit/fake_account.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define BODY "Subject: hi\r\n\r\nsame bytes\r\n"
#define BODY_LEN "27"

static const char *listing(const char *cid_item)
{
        static char buf[512];
        snprintf(buf, sizeof buf,
                 "* 1 FETCH (UID 5 RFC822.SIZE " BODY_LEN " INTERNALDATE "
                 "\"01-Jan-2024 10:00:00 +0000\" FLAGS (\\Seen) %s "
                 "BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n"
                 "$T OK done\r\n",
                 cid_item);
        return buf;
}

static struct fake f;

/* Lists folder raw (its one message, UID 5) and reads the message whole. */
static void read_via(struct account *a, const char *raw, char *out)
{
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        ck_assert_ptr_nonnull(m);
        uint64_t mid = m->node.id;
        cache_unlock(a->cache);
        int r = account_refresh_listing(a, mid, 0);
        ck_assert_msg(r == 0, "listing of %s: %d (server script: %s; client sent: %s)", raw, r,
                      f.why, f.log);
        cache_lock(a->cache);
        struct cache_msg *msg = cache_msg_by_name(m, "5.eml");
        ck_assert_ptr_nonnull(msg);
        uint64_t id = msg->node.id;
        cache_unlock(a->cache);
        struct account_file *af;
        ck_assert_int_eq(account_file_open(a, id, &af), 0);
        size_t got = 0;
        r = account_file_read(a, af, 0, 100, out, &got);
        ck_assert_msg(r == 0, "read via %s: %d (server script: %s; client sent: %s)", raw, r, f.why,
                      f.log);
        ck_assert_uint_eq(got, strlen(BODY));
        out[got] = '\0';
        account_file_close(af);
}

static void one_download(const char *caps, const char *want_item, const char *cid_item)
{
        static char l1[512], l2[512], login[256];
        snprintf(login, sizeof login, "$T OK [CAPABILITY IMAP4rev1 %s] ok\r\n", caps);
        snprintf(l1, sizeof l1, "%s", listing(cid_item));
        snprintf(l2, sizeof l2, "%s", listing(cid_item));
        const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, login, 0},
            {"LIST", 0,
             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" Label\r\n"
             "$T OK done\r\n",
             0},
            {"SELECT \"INBOX\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {want_item, 0, l1, 0},
            {"BODY.PEEK[]<0.", 0,
             "* 1 FETCH (UID 5 BODY[]<0> {" BODY_LEN "}\r\n" BODY ")\r\n$T OK done\r\n", 0},
            {"SELECT \"Label\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 9] v\r\n* OK [UIDNEXT 6] n\r\n$T OK [READ-WRITE] "
             "done\r\n",
             0},
            {want_item, 0, l2, 0},
            {NULL, 0, NULL, 0},
        };
        char dir[] = "/tmp/test_cidXXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        fake_start(&f, script);
        struct account a = {0};
        fake_account_open(&a, f.port, dir, 1000);
        char buf[128];
        read_via(&a, "INBOX", buf);
        ck_assert_str_eq(buf, BODY);
        read_via(&a, "Label", buf);
        ck_assert_str_eq(buf, BODY);
        ck_assert_uint_eq(atomic_load(&a.fetches), 1);
        account_destroy(&a);
        persist_close(&a);
        fake_stop(&f);
        /* one body FETCH in all */
        const char *p = f.log;
        int fetches = 0;
        while ((p = strstr(p, "BODY.PEEK[]<")))
                fetches++, p++;
        ck_assert_int_eq(fetches, 1);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_gmail_msgid)
{
        one_download("X-GM-EXT-1", "UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE FLAGS X-GM-MSGID ",
                     "X-GM-MSGID 1278455344230334865");
}
END_TEST

START_TEST(test_objectid_emailid)
{
        one_download("OBJECTID", "UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE FLAGS EMAILID ",
                     "EMAILID (M6d99ac3275bb4e)");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("content_id");
        TCase *tc = tcase_create("content_id");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_gmail_msgid);
        tcase_add_test(tc, test_objectid_emailid);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
