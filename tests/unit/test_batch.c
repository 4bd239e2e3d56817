/* Issue 11: changes over a UID set and the recognition of our own changes.
 * - imap_move_uids / imap_store_flags_many against a scripted server: each
 *   message gets its own answer (COPYUID map, FETCH FLAGS), also when the
 *   COPYUID is too long for imap_result.args (never cut), and the quiet
 *   weighing takes the set's VANISHED as ours;
 * - batch_submit: concurrent requests of one key run as one batch, a serial
 *   caller never waits, every caller returns after its request ran;
 * - own_event: the echo of our move is no news, another client's change is. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/batch.h"
#include "cache/mailbox.h"
#include "cache/own.h"
#include "imap/ops.h"
#include "imap/ops_write.h"
#include "imap/parse.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

static unsigned changed_events;

static void count_events(void *ctx, const struct imap_event *ev)
{
        (void)ctx;
        if (ev->kind == IMAP_EV_CHANGED)
                changed_events++;
}

#define SELECT_SRC "* 4 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n$T OK [READ-WRITE] done\r\n"

START_TEST(test_move_set_maps_each_message)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS MOVE"),
            {"A2 SELECT \"Src\"", 0, SELECT_SRC, 0},
            {"A3 UID MOVE 5,7:9 \"Dst\"", 0,
             "* OK [COPYUID 11 5,7:9 20:22,30] moved\r\n* VANISHED 5,7:9\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        a.on_event = count_events;
        changed_events = 0;
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        const uint32_t uids[4] = {9, 5, 8, 7};
        uint32_t nv = 0, out[4];
        ck_assert_int_eq(imap_move_uids(s, uids, 4, "Dst", &nv, out), 0);
        ck_assert_uint_eq(nv, 11);
        ck_assert_uint_eq(out[0], 30); /* 9 is the fourth source UID */
        ck_assert_uint_eq(out[1], 20);
        ck_assert_uint_eq(out[2], 22);
        ck_assert_uint_eq(out[3], 21);
        /* Four gone, four moved: ours, not a change made elsewhere. */
        ck_assert_uint_eq(changed_events, 0);
        fake_finish(&f, s);
}
END_TEST

/* Our changes: UID 5 (this command) and 6 (another connection's move). */
static bool own_5_6(void *ctx, const struct imap_event *ev)
{
        (void)ctx;
        return ev->kind == IMAP_EV_VANISHED && ev->r && ev->r->args &&
               (strcmp(ev->r->args->s, "5") == 0 || strcmp(ev->r->args->s, "6") == 0);
}

START_TEST(test_quiet_echo_is_ours_foreign_is_news)
{
        /* During our UID MOVE of 5 the connection also hears of 6 (our own
         * move on another connection: no news) and, in a second run, of 9
         * (another client's expunge: news, even though the count of what
         * went could pass for one message of ours). */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS MOVE"),
            {"A2 SELECT \"Src\"", 0, SELECT_SRC, 0},
            {"A3 UID MOVE 5 \"Dst\"", 0,
             "* OK [COPYUID 11 5 20] moved\r\n* VANISHED 5\r\n* VANISHED 6\r\n$T OK done\r\n", 0},
            {"A4 UID MOVE 7 \"Dst\"", 0,
             "* OK [COPYUID 11 7 21] moved\r\n* VANISHED 5\r\n* VANISHED 9\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        a.on_event = count_events;
        a.own_event = own_5_6;
        changed_events = 0;
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        uint32_t v, u;
        ck_assert_int_eq(imap_move_uid(s, 5, "Dst", &v, &u), 0);
        ck_assert_uint_eq(changed_events, 0);
        /* (the script reuses "VANISHED 5" as the echo standing for 7's) */
        ck_assert_int_eq(imap_move_uid(s, 7, "Dst", &v, &u), 0);
        ck_assert_uint_eq(changed_events, 1);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_move_set_long_copyuid_not_cut)
{
        /* A tagged COPYUID longer than imap_result.args: 60 scattered UIDs
         * (every other one) make sets of ~300 bytes each. */
        enum { N = 60 };
        static char move_line[64], reply[2048];
        char src[1024] = "", dst[1024] = "";
        for (int i = 0; i < N; i++) {
                char b[16];
                snprintf(b, sizeof(b), "%s%d", i ? "," : "", 1001 + 2 * i);
                strcat(src, b);
                snprintf(b, sizeof(b), "%s%d", i ? "," : "", 5001 + 2 * i);
                strcat(dst, b);
        }
        snprintf(move_line, sizeof(move_line), "A3 UID MOVE %d,", 1001);
        snprintf(reply, sizeof(reply), "* VANISHED %s\r\n$T OK [COPYUID 9 %s %s] done\r\n", src,
                 src, dst);
        ck_assert_uint_gt(strlen(src) + strlen(dst), 256);
        const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS MOVE"),
            {"A2 SELECT \"Src\"", 0,
             "* 60 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n$T OK [READ-WRITE] done\r\n", 0},
            {move_line, 0, reply, 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        uint32_t uids[N], out[N], nv = 0;
        for (int i = 0; i < N; i++)
                uids[i] = (uint32_t)(1001 + 2 * i);
        ck_assert_int_eq(imap_move_uids(s, uids, N, "Dst", &nv, out), 0);
        ck_assert_uint_eq(nv, 9);
        for (int i = 0; i < N; i++)
                ck_assert_uint_eq(out[i], (uint32_t)(5001 + 2 * i));
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_store_set_answers_each_message)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS MOVE"),
            {"A2 SELECT \"Src\"", 0, SELECT_SRC, 0},
            {"A3 UID STORE 5,7 FLAGS (\\Flagged $Done)", 0,
             "* 1 FETCH (UID 5 FLAGS (\\Flagged $Done \\Recent))\r\n"
             "* 2 FETCH (UID 7 FLAGS (\\Flagged $Done $Other))\r\n$T OK stored\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        const uint32_t uids[2] = {7, 5};
        char *outs[2];
        ck_assert_int_eq(imap_store_flags_many(s, uids, 2, "\\Flagged $Done", outs), 0);
        ck_assert_str_eq(outs[0], "\\Flagged $Done $Other");
        ck_assert_str_eq(outs[1], "\\Flagged $Done");
        free(outs[0]);
        free(outs[1]);
        fake_finish(&f, s);
}
END_TEST

/* ---- batch_submit ---- */

struct run_log {
        pthread_mutex_t mu;
        size_t batches, items, largest;
};

static void slow_run(void *ctx, void **args, size_t n)
{
        struct run_log *l = ctx;
        pthread_mutex_lock(&l->mu);
        l->batches++;
        l->items += n;
        if (n > l->largest)
                l->largest = n;
        pthread_mutex_unlock(&l->mu);
        for (size_t i = 0; i < n; i++)
                *(int *)args[i] = 1; /* each caller's answer */
        usleep(50 * 1000);           /* a round trip */
}

struct submitter {
        struct batch *b;
        struct run_log *log;
        int answer, r;
};

static void *submit_main(void *arg)
{
        struct submitter *t = arg;
        t->r = batch_submit(t->b, "k", &t->answer, slow_run, t->log);
        return NULL;
}

START_TEST(test_batch_coalesces_concurrent_requests)
{
        enum { T = 16 };
        struct batch *b = batch_new(5000);
        struct run_log log = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
        pthread_t th[T];
        struct submitter sub[T];
        for (int i = 0; i < T; i++) {
                sub[i] = (struct submitter){b, &log, 0, -1};
                ck_assert_int_eq(pthread_create(&th[i], NULL, submit_main, &sub[i]), 0);
        }
        for (int i = 0; i < T; i++) {
                pthread_join(th[i], NULL);
                ck_assert_int_eq(sub[i].r, 0);
                ck_assert_int_eq(sub[i].answer, 1);
        }
        ck_assert_uint_eq(log.items, T);
        /* The first goes at once; those arriving during its round trip wait
         * for it and go together. */
        ck_assert_uint_le(log.batches, 4);
        ck_assert_uint_ge(log.largest, 4);
        batch_free(b);
}
END_TEST

START_TEST(test_batch_serial_caller_goes_at_once)
{
        struct batch *b = batch_new(5000);
        struct run_log log = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
        for (int i = 0; i < 3; i++) {
                int answer = 0;
                ck_assert_int_eq(batch_submit(b, "k", &answer, slow_run, &log), 0);
                ck_assert_int_eq(answer, 1);
        }
        ck_assert_uint_eq(log.batches, 3);
        ck_assert_uint_eq(log.largest, 1);
        batch_free(b);
}
END_TEST

/* ---- own_event ---- */

static char *name_fn(void *ctx, uint32_t uid, const char *header, size_t header_len,
                     time_t internaldate)
{
        (void)ctx;
        (void)header;
        (void)header_len;
        (void)internaldate;
        char buf[32];
        snprintf(buf, sizeof(buf), "%u.eml", uid);
        return strdup(buf);
}

static char *decode_fn(void *ctx, const char *comp)
{
        (void)ctx;
        return strdup(comp);
}

static bool own_of(struct own *o, struct cache *c, const char *line, enum imap_event_kind kind,
                   const char *mailbox, uint32_t n)
{
        struct imap_response *r = NULL;
        ck_assert_int_eq(imap_parse(line, strlen(line), &r), 0);
        struct imap_event ev = {.kind = kind, .mailbox = mailbox, .n = n, .r = r};
        if (kind == IMAP_EV_STATUS)
                ev.mailbox = r->args->s;
        bool own = own_event(o, c, &ev);
        imap_response_free(r);
        return own;
}

START_TEST(test_own_echo_is_no_news)
{
        struct cache *c = cache_new(name_fn, NULL);
        struct own *o = own_new();
        cache_lock(c);
        cache_tree_begin(c);
        cache_tree_add(c, "Src", '/', 0, decode_fn, NULL);
        cache_tree_add(c, "Dst", '/', 0, decode_fn, NULL);
        cache_tree_end(c);
        struct cache_mbox *src = cache_mbox_by_raw(c, "Src"), *dst = cache_mbox_by_raw(c, "Dst");
        cache_listing_begin(c, src, 3, 10, 3, 0);
        for (uint32_t u = 5; u <= 7; u++)
                cache_listing_add(c, src, u, 100, 0, "", "Subject: x\r\n\r\n", 14);
        cache_listing_end(c, src, 1, src->stale_gen);
        cache_listing_begin(c, dst, 4, 20, 0, 0);
        cache_listing_end(c, dst, 1, dst->stale_gen);

        /* Nothing of ours on the way: news. */
        ck_assert(!own_of(o, c, "* VANISHED 5\r\n", IMAP_EV_VANISHED, "Src", 0));
        /* Our move of 5 is on its way: its echoes are ours. */
        uint32_t uid = 5;
        ck_assert_int_eq(own_expect(o, "Src", &uid, 1, "Dst", NULL), 0);
        ck_assert(own_of(o, c, "* VANISHED 5\r\n", IMAP_EV_VANISHED, "Src", 0));
        ck_assert(own_of(o, c, "* 1 EXISTS\r\n", IMAP_EV_EXISTS, "Dst", 1));
        ck_assert(
            own_of(o, c, "* STATUS Dst (MESSAGES 1 UIDNEXT 21)\r\n", IMAP_EV_STATUS, NULL, 0));
        /* Another client's change at the same time is not. */
        ck_assert(!own_of(o, c, "* VANISHED 5:6\r\n", IMAP_EV_VANISHED, "Src", 0));
        ck_assert(!own_of(o, c, "* 2 EXISTS\r\n", IMAP_EV_EXISTS, "Dst", 2));
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 2 UIDNEXT 22)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(!own_of(o, c, "* 2 FETCH (UID 6 FLAGS (\\Seen))\r\n", IMAP_EV_FETCH, "Src", 0));
        /* Applied (the message left Src's listing) and done: a late echo on
         * another connection is still ours. */
        cache_msg_remove(c, cache_msg_by_uid(src, 5));
        own_done(o, "Src", &uid, 1, "Dst", NULL);
        ck_assert(own_of(o, c, "* VANISHED 5\r\n", IMAP_EV_VANISHED, "Src", 0));
        ck_assert(!own_of(o, c, "* VANISHED 6\r\n", IMAP_EV_VANISHED, "Src", 0));
        cache_unlock(c);
        own_free(o);
        cache_free(c);
}
END_TEST

/* Our move into dst as write_follow_move applies it: the node moves, the
 * counts follow, the new UID is noted. */
static void moved_in(struct own *o, struct cache *c, uint32_t uid, uint32_t new_uid)
{
        struct cache_mbox *src = cache_mbox_by_raw(c, "Src"), *dst = cache_mbox_by_raw(c, "Dst");
        char name[32];
        snprintf(name, sizeof(name), "%u.eml", new_uid);
        char *n = strdup(name);
        ck_assert_ptr_nonnull(n);
        ck_assert_int_eq(cache_msg_move(c, cache_msg_by_uid(src, uid), dst, new_uid, n), 0);
        if (new_uid >= dst->uidnext)
                dst->uidnext = new_uid + 1;
        own_added(o, "Dst", new_uid);
        own_done(o, "Src", &uid, 1, "Dst", NULL);
}

/* NOTIFY reports each of our moves into Dst on the sync connection; on a
 * loaded machine that connection may read one only after the answers to
 * our later moves were applied (test_link's mv of 60 then saw 4 to 7
 * SELECTs instead of 2: the report, taken for news, restarted IDLE and
 * re-listed both folders). A report of the folder as one of our own moves
 * left it is ours; one that no state of ours explains is still news. */
START_TEST(test_own_late_status_is_no_news)
{
        struct cache *c = cache_new(name_fn, NULL);
        struct own *o = own_new();
        cache_lock(c);
        cache_tree_begin(c);
        cache_tree_add(c, "Src", '/', 0, decode_fn, NULL);
        cache_tree_add(c, "Dst", '/', 0, decode_fn, NULL);
        cache_tree_end(c);
        struct cache_mbox *src = cache_mbox_by_raw(c, "Src"), *dst = cache_mbox_by_raw(c, "Dst");
        cache_listing_begin(c, src, 3, 10, 3, 0);
        for (uint32_t u = 5; u <= 7; u++)
                cache_listing_add(c, src, u, 100, 0, "", "Subject: x\r\n\r\n", 14);
        cache_listing_end(c, src, 1, src->stale_gen);
        cache_listing_begin(c, dst, 4, 20, 0, 0);
        cache_listing_end(c, dst, 1, dst->stale_gen);

        /* Nothing of ours yet: a report of fewer messages than listed is news. */
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 0 UIDNEXT 20)\r\n", IMAP_EV_STATUS, NULL, 0));
        /* 5 → Dst 20 and 6 → Dst 21 are done, 7 is on its way. */
        uint32_t uids[] = {5, 6, 7};
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(own_expect(o, "Src", &uids[i], 1, "Dst", NULL), 0);
                moved_in(o, c, uids[i], 20 + (uint32_t)i);
        }
        ck_assert_int_eq(own_expect(o, "Src", &uids[2], 1, "Dst", NULL), 0);
        ck_assert_uint_eq(dst->nmsgs, 2);
        /* The report of Dst after the first move, read late: ours. So are the
         * current state and the one with the third move in. */
        ck_assert(
            own_of(o, c, "* STATUS Dst (MESSAGES 1 UIDNEXT 21)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            own_of(o, c, "* STATUS Dst (MESSAGES 2 UIDNEXT 22)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            own_of(o, c, "* STATUS Dst (MESSAGES 3 UIDNEXT 23)\r\n", IMAP_EV_STATUS, NULL, 0));
        /* No state of ours: one of our messages expunged elsewhere (now, or
         * already after the first move), the folder before any move of
         * ours (with a message gone), another client's message. */
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 1 UIDNEXT 22)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 0 UIDNEXT 21)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 0 UIDNEXT 20)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 2 UIDNEXT 21)\r\n", IMAP_EV_STATUS, NULL, 0));
        ck_assert(
            !own_of(o, c, "* STATUS Dst (MESSAGES 4 UIDNEXT 24)\r\n", IMAP_EV_STATUS, NULL, 0));
        cache_unlock(c);
        own_free(o);
        cache_free(c);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("batch");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_move_set_maps_each_message);
        tcase_add_test(tc, test_move_set_long_copyuid_not_cut);
        tcase_add_test(tc, test_quiet_echo_is_ours_foreign_is_news);
        tcase_add_test(tc, test_store_set_answers_each_message);
        tcase_add_test(tc, test_batch_coalesces_concurrent_requests);
        tcase_add_test(tc, test_batch_serial_caller_goes_at_once);
        tcase_add_test(tc, test_own_echo_is_no_news);
        tcase_add_test(tc, test_own_late_status_is_no_news);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
