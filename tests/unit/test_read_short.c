/* A read never ends early with success for a message whose size is known.
 *
 * Dovecot answers a FETCH of a message that another session has expunged
 * (our own mv on another connection, say), before this session has been
 * told of the expunge, with the item as NIL and a tagged OK:
 *   * 2 FETCH (UID 2 BODY[]<0> NIL)
 *   A1 OK [EXPUNGEISSUED] Some messages were also expunged.
 * The read path took that NIL as zero bytes, stored an empty block, and the
 * read ended there with success: test_chaos (seed 4) read a 400,044-byte
 * message that the mover took away mid-read as its first 393,216 bytes.
 * Against a scripted server: a NIL or short answer to a read's own FETCH
 * or to a read-ahead batch, and a short block already in memory or on disk,
 * each give either the message's bytes or EIO, never fewer bytes and OK. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/account.h"
#include "cache/blocks.h"
#include "cache/persist.h"
#include "imap/pool.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define BODY "Subject: hi\r\n\r\nsame bytes\r\n"
#define BODY_LEN "27"
#define ITEM(seq, uid, size)                                                                       \
        "* " seq " FETCH (UID " uid " RFC822.SIZE " size " INTERNALDATE "                          \
        "\"01-Jan-2024 10:00:00 +0000\" FLAGS (\\Seen) "                                           \
        "BODY[HEADER.FIELDS (DATE SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n"
#define EXPUNGEISSUED "$T OK [EXPUNGEISSUED] Some messages were also expunged.\r\n"
#define WHOLE(seq, uid) "* " seq " FETCH (UID " uid " BODY[]<0> {" BODY_LEN "}\r\n" BODY ")\r\n"

static struct fake f;
static struct account a;
static char dir[64];

/* The first steps of every script: log in, LIST, SELECT and list INBOX with
 * the listing items (then the script's own steps). */
#define START(exists, items)                                                                       \
        FAKE_LOGIN("IMAP4rev1"),                                                                   \
            {"LIST", 0, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n$T OK done\r\n", 0},              \
            {"SELECT \"INBOX\"", 0,                                                                \
             "* " exists " EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 9] n\r\n"             \
             "$T OK [READ-WRITE] done\r\n",                                                        \
             0},                                                                                   \
        {                                                                                          \
                "UID FETCH 1:*", 0, items "$T OK done\r\n", 0                                      \
        }

/* Connects an account to the fake server playing script (with a persistent
 * cache if disk) and lists INBOX. */
static void setup(const struct step *script, bool disk)
{
        fake_start(&f, script);
        memset(&a, 0, sizeof a);
        a.imap = fake_acct(f.port, "pw", true);
        a.opts.connections = 1;
        a.opts.mem_cache = 4 << 20;
        a.opts.revalidate_ms = 60000;
        a.naming = fake_naming(false);
        ck_assert_int_eq(account_init(&a), 0);
        char err[256] = "";
        dir[0] = '\0';
        if (disk) {
                snprintf(dir, sizeof dir, "/tmp/test_readshortXXXXXX");
                ck_assert_ptr_nonnull(mkdtemp(dir));
                ck_assert_msg(persist_open(&a, dir, 64 << 20, err, sizeof err) == 0, "%s", err);
        }
        bool net;
        ck_assert_msg(account_connect(&a, err, sizeof err, &net) == 0, "%s", err);
        cache_lock(a.cache);
        struct cache_mbox *m = cache_mbox_by_raw(a.cache, "INBOX");
        ck_assert_ptr_nonnull(m);
        uint64_t mid = m->node.id;
        cache_unlock(a.cache);
        int r = account_refresh_listing(&a, mid, 0);
        ck_assert_msg(r == 0, "listing: %d (server script: %s; client sent: %s)", r, f.why, f.log);
}

static void teardown(void)
{
        account_destroy(&a);
        if (dir[0])
                persist_close(&a);
        fake_stop(&f);
        if (dir[0]) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
                ck_assert_int_eq(system(cmd), 0);
        }
}

static struct account_file *open_uid(uint32_t uid)
{
        char name[32];
        snprintf(name, sizeof name, "%u.eml", uid);
        cache_lock(a.cache);
        struct cache_msg *msg = cache_msg_by_name(cache_mbox_by_raw(a.cache, "INBOX"), name);
        ck_assert_ptr_nonnull(msg);
        uint64_t id = msg->node.id;
        cache_unlock(a.cache);
        struct account_file *af;
        ck_assert_int_eq(account_file_open(&a, id, &af), 0);
        return af;
}

/* Reads uid from off (len bytes asked): the call's result, bytes in *got. */
static int read_uid(uint32_t uid, uint64_t off, size_t len, char *out, size_t *got)
{
        struct account_file *af = open_uid(uid);
        *got = 0;
        int r = account_file_read(&a, af, off, len, out, got);
        account_file_close(af);
        return r;
}

/* The message was expunged elsewhere: NIL and a tagged OK. */
START_TEST(test_nil_is_not_an_empty_message)
{
        const struct step script[] = {
            START("1", ITEM("1", "5", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0,
             "* 1 FETCH (UID 5 BODY[]<0> NIL)\r\n" EXPUNGEISSUED, 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        char out[128];
        size_t got;
        int r = read_uid(5, 0, 100, out, &got);
        ck_assert_msg(r == -EIO, "read of a message the server answers NIL for: %d, %zu bytes", r,
                      got);
        teardown();
}
END_TEST

/* Test_chaos's case: the first block was read, then the message went; the
 * read of the second block gets NIL. */
START_TEST(test_nil_mid_message)
{
        static char big[BLOCK_SIZE + 128];
        int h = snprintf(big, sizeof big, "* 1 FETCH (UID 5 BODY[]<0> {%u}\r\n", BLOCK_SIZE);
        memset(big + h, 'x', BLOCK_SIZE);
        int t = snprintf(big + h + BLOCK_SIZE, sizeof big - h - BLOCK_SIZE, ")\r\n");
        fake_big = big;
        fake_big_len = (size_t)h + BLOCK_SIZE + (size_t)t;
        const struct step script[] = {
            START("1", ITEM("1", "5", "65563")),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.65536>)", 0, "$BIG", 0},
            {NULL, 0, "$T OK done\r\n", 0},
            {"UID FETCH 5 (UID BODY.PEEK[]<65536.27>)", 0,
             "* 1 FETCH (UID 5 BODY[]<65536> NIL)\r\n" EXPUNGEISSUED, 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        struct account_file *af = open_uid(5);
        static char out[BLOCK_SIZE];
        size_t got = 0;
        int r = account_file_read(&a, af, 0, BLOCK_SIZE, out, &got);
        ck_assert_msg(r == 0 && got == BLOCK_SIZE, "first block: %d, %zu (%s)", r, got, f.why);
        got = 0;
        r = account_file_read(&a, af, BLOCK_SIZE, BLOCK_SIZE, out, &got);
        ck_assert_msg(r == -EIO, "second block answered NIL: %d, %zu bytes", r, got);
        account_file_close(af);
        teardown();
}
END_TEST

/* Fewer bytes than the size the listing gave: the server disagrees with
 * itself; the reader must not take that for the whole message. */
START_TEST(test_short_answer)
{
        const struct step script[] = {
            START("1", ITEM("1", "5", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0,
             "* 1 FETCH (UID 5 BODY[]<0> {10}\r\nSubject: h)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        char out[128];
        size_t got;
        int r = read_uid(5, 0, 100, out, &got);
        ck_assert_msg(r == -EIO, "read of 27 bytes answered with 10: %d, %zu bytes", r, got);
        teardown();
}
END_TEST

/* A short block already in memory (however it got there) is fetched again
 * alone, and the read gets the whole message. */
START_TEST(test_short_block_in_memory_is_fetched_again)
{
        const struct step script[] = {
            START("1", ITEM("1", "5", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0, WHOLE("1", "5") "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        cache_lock(a.cache);
        struct cache_mbox *m = cache_mbox_by_raw(a.cache, "INBOX");
        struct block_key k = {m->node.id, 7, 5, 0};
        cache_unlock(a.cache);
        ck_assert(blocks_try_claim(a.blocks, &k));
        blocks_put(a.blocks, &k, "Subj", 4);
        char out[128];
        size_t got;
        int r = read_uid(5, 0, 100, out, &got);
        ck_assert_msg(r == 0 && got == 27, "read over a short block: %d, %zu bytes (%s)", r, got,
                      f.why);
        ck_assert(memcmp(out, BODY, 27) == 0);
        teardown();
}
END_TEST

/* A read that starts past a short block's end (it copies nothing from it)
 * fetches the block again too. */
START_TEST(test_read_past_short_block)
{
        const struct step script[] = {
            START("1", ITEM("1", "5", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0,
             "* 1 FETCH (UID 5 BODY[]<0> {27}\r\n"
             "Subject: hi\r\n\r\nsame bytes\r\n)\r\n$T OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        cache_lock(a.cache);
        struct cache_mbox *m = cache_mbox_by_raw(a.cache, "INBOX");
        struct block_key k = {m->node.id, 7, 5, 0};
        cache_unlock(a.cache);
        ck_assert(blocks_try_claim(a.blocks, &k));
        blocks_put(a.blocks, &k, "Subj", 4);
        /* A read from 10: the short block ends before it. */
        char out[128];
        size_t got;
        int r = read_uid(5, 10, 100, out, &got);
        ck_assert_msg(r == 0 && got == 17 && memcmp(out, BODY + 10, 17) == 0,
                      "read past a short block's end: %d, %zu bytes (%s)", r, got, f.why);
        teardown();
}
END_TEST

/* A short block in the persistent cache (an older version stored one) is
 * not served: the block comes from the server. */
START_TEST(test_short_block_on_disk_is_not_used)
{
        const struct step script[] = {
            START("1", ITEM("1", "5", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0, WHOLE("1", "5") "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, true);
        persist_block_put(&a, "INBOX", 7, 5, 0, "", 0);
        char out[128];
        size_t got;
        int r = read_uid(5, 0, 100, out, &got);
        ck_assert_msg(r == 0 && got == 27, "read over an empty block on disk: %d, %zu bytes (%s)",
                      r, got, f.why);
        ck_assert(memcmp(out, BODY, 27) == 0);
        teardown();
}
END_TEST

/* A read-ahead batch whose answer has NIL for one message (expunged) and
 * too few bytes for another stores neither: their readers fetch them
 * alone, and get EIO and the message's bytes. Opening 5, then 6 (the next
 * name) makes a scan; its first batch starts with 6, whose reader gets its
 * bytes from the batch. */
START_TEST(test_batch_nil_and_short)
{
        const struct step script[] = {
            START("4", ITEM("1", "5", BODY_LEN) ITEM("2", "6", BODY_LEN) ITEM("3", "7", BODY_LEN)
                           ITEM("4", "8", BODY_LEN)),
            {"UID FETCH 5 (UID BODY.PEEK[]<0.27>)", 0, WHOLE("1", "5") "$T OK done\r\n", 0},
            {"UID FETCH 6:8 (UID BODY.PEEK[]<0.262144>)", 0,
             WHOLE("2",
                   "6") "* 3 FETCH (UID 7 BODY[]<0> NIL)\r\n* 4 FETCH (UID 8 BODY[]<0> {10}\r\n"
                        "Subject: h)\r\n" EXPUNGEISSUED,
             0},
            {"UID FETCH 7 (UID BODY.PEEK[]<0.27>)", 0,
             "* 3 FETCH (UID 7 BODY[]<0> NIL)\r\n" EXPUNGEISSUED, 0},
            {"UID FETCH 8 (UID BODY.PEEK[]<0.27>)", 0, WHOLE("4", "8") "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        setup(script, false);
        char out[128];
        size_t got;
        ck_assert_int_eq(read_uid(5, 0, 100, out, &got), 0);
        ck_assert_uint_eq(got, 27);
        int r = read_uid(6, 0, 100, out, &got);
        ck_assert_msg(r == 0 && got == 27, "read of 6 (whole in the batch): %d, %zu bytes (%s)", r,
                      got, f.why);
        r = read_uid(7, 0, 100, out, &got);
        ck_assert_msg(r == -EIO, "read of 7 (NIL in the batch): %d, %zu bytes (%s; sent: %s)", r,
                      got, f.why, f.log);
        r = read_uid(8, 0, 100, out, &got);
        ck_assert_msg(r == 0 && got == 27, "read of 8 (short in the batch): %d, %zu bytes (%s)", r,
                      got, f.why);
        ck_assert(memcmp(out, BODY, 27) == 0);
        teardown();
}
END_TEST

int main(void)
{
        Suite *s = suite_create("read_short");
        TCase *tc = tcase_create("read_short");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_nil_is_not_an_empty_message);
        tcase_add_test(tc, test_nil_mid_message);
        tcase_add_test(tc, test_short_answer);
        tcase_add_test(tc, test_short_block_in_memory_is_fetched_again);
        tcase_add_test(tc, test_read_past_short_block);
        tcase_add_test(tc, test_short_block_on_disk_is_not_used);
        tcase_add_test(tc, test_batch_nil_and_short);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
