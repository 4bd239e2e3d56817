/* Issue 11: a batch that gathered requests while an earlier one was on the
 * wire waits a moment (a fraction of a round trip) for the callers of that
 * earlier batch to come back with their next request, so that callers
 * working through lists (xargs -P 16 setfattr) go out as one batch per
 * round trip, not as two halves taking turns; a serial caller still never
 * waits. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cache/batch.h"
#include "imap/conn.h"
#include "tests/unit/unit_main.h"

#define RTT_US 20000 /* one batch's round trip */
#define TURN_US 300  /* a caller's turnaround before its next request */

struct run_log {
        pthread_mutex_t mu;
        size_t batches, items;
};

static void rtt_run(void *ctx, void **args, size_t n)
{
        struct run_log *l = ctx;
        pthread_mutex_lock(&l->mu);
        l->batches++;
        l->items += n;
        pthread_mutex_unlock(&l->mu);
        for (size_t i = 0; i < n; i++)
                *(int *)args[i] = 1;
        usleep(RTT_US);
}

struct worker {
        struct batch *b;
        struct run_log *log;
        int reqs, failed;
};

/* A process of xargs -P: one request after another, each sent once the
 * previous one was answered. */
static void *worker_main(void *arg)
{
        struct worker *w = arg;
        for (int i = 0; i < w->reqs; i++) {
                int answer = 0;
                if (batch_submit(w->b, "k", &answer, rtt_run, w->log) != 0 || answer != 1)
                        w->failed++;
                usleep(TURN_US);
        }
        return NULL;
}

START_TEST(test_workers_go_as_one_batch_per_round_trip)
{
        enum { W = 10, R = 12 };
        struct batch *b = batch_new(5000);
        struct run_log log = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
        pthread_t th[W];
        struct worker w[W];
        int64_t t0 = imap_now_ms();
        for (int i = 0; i < W; i++) {
                w[i] = (struct worker){b, &log, R, 0};
                ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
        }
        for (int i = 0; i < W; i++) {
                pthread_join(th[i], NULL);
                ck_assert_int_eq(w[i].failed, 0);
        }
        int64_t ms = imap_now_ms() - t0;
        ck_assert_uint_eq(log.items, W * R);
        printf("# %d workers x %d requests: %zu batches (%.1f a batch) in %lld ms\n", W, R,
               log.batches, (double)log.items / (double)log.batches, (long long)ms);
        /* Two halves taking turns would need 2 * R batches; together, R and
         * the first (the first request goes alone) and some slack for a
         * loaded machine. */
        ck_assert_uint_le(log.batches, R + R / 2);
        batch_free(b);
}
END_TEST

START_TEST(test_serial_caller_still_goes_at_once)
{
        struct batch *b = batch_new(5000);
        struct run_log log = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
        struct worker w = {b, &log, 5, 0};
        int64_t t0 = imap_now_ms();
        worker_main(&w);
        int64_t ms = imap_now_ms() - t0;
        ck_assert_int_eq(w.failed, 0);
        ck_assert_uint_eq(log.batches, 5);
        /* five round trips and five turnarounds, no waiting for company */
        ck_assert_int_lt(ms, 5 * (RTT_US + TURN_US) / 1000 + 40);
        batch_free(b);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("batch_rounds");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_workers_go_as_one_batch_per_round_trip);
        tcase_add_test(tc, test_serial_caller_still_goes_at_once);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
