/* Issue 11: a caller that finds every session busy waits a moment (1.5 of
 * the round trips measured on the busy session) for one to come back before
 * it opens another connection (TCP, TLS, login: several round trips), and
 * still connects when none comes back in time. Against a scripted server
 * whose login answer takes 40 ms (the measured round trip). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/pool.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

struct holder {
        struct imap_pool *p;
        int hold_ms;
        struct imap_session *s;
        int r;
        atomic_bool got; /* s is set (read by the test's thread) */
};

/* Another caller: takes a session, holds it for hold_ms (a command on the
 * wire), gives it back. */
static void *holder_main(void *arg)
{
        struct holder *h = arg;
        h->r = imap_pool_get(h->p, NULL, IMAP_POOL_META, &h->s);
        atomic_store(&h->got, true);
        if (h->r == 0) {
                usleep((useconds_t)h->hold_ms * 1000);
                imap_pool_put(h->p, h->s);
        }
        return NULL;
}

/* Starts a holder and returns once it holds the pool's only session. */
static void hold(pthread_t *th, struct holder *h)
{
        ck_assert_int_eq(pthread_create(th, NULL, holder_main, h), 0);
        /* Until it has the session: then the pool has no free one. */
        for (int i = 0; i < 200 && !atomic_load(&h->got); i++)
                usleep(1000);
        ck_assert(atomic_load(&h->got));
        ck_assert_ptr_nonnull(h->s);
}

START_TEST(test_busy_session_is_waited_for_not_a_new_connection)
{
        /* One connection in the whole script: a second one would get no
         * greeting and fail after the 2 s deadline. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 40},
            {"NOOP", 0, "$T OK fine\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s1 = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s1), 0);
        ck_assert_int_ge(imap_session_rtt_ms(s1), 35);
        struct imap_pool *p = imap_pool_new(&a, 2);
        imap_pool_adopt(p, s1);

        pthread_t th;
        struct holder h = {p, 20, NULL, -1, false};
        hold(&th, &h);
        int64_t t0 = imap_now_ms();
        struct imap_session *s = NULL;
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &s), 0);
        int64_t waited = imap_now_ms() - t0;
        ck_assert_ptr_eq(s, s1); /* the same connection: no second one opened */
        ck_assert_int_lt(waited, 60);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_pool_put(p, s);
        pthread_join(th, NULL);
        ck_assert_int_eq(h.r, 0);
        imap_pool_free(p);
        fake_stop(&f);
}
END_TEST

START_TEST(test_connects_when_none_comes_back_in_time)
{
        /* The first connection is held for 400 ms: after ~60 ms (1.5 x 40)
         * the caller connects a second one (the script goes on there). */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 40},
            {NULL, 0, "$ACCEPT", 0},
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "$T OK fine\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s1 = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s1), 0);
        struct imap_pool *p = imap_pool_new(&a, 2);
        imap_pool_adopt(p, s1);

        pthread_t th;
        struct holder h = {p, 400, NULL, -1, false};
        hold(&th, &h);
        int64_t t0 = imap_now_ms();
        struct imap_session *s = NULL;
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &s), 0);
        int64_t waited = imap_now_ms() - t0;
        ck_assert_ptr_ne(s, s1);
        ck_assert_int_ge(waited, 50);  /* it waited for the busy one first */
        ck_assert_int_lt(waited, 300); /* but not until it came back */
        ck_assert_int_eq(imap_noop(s), 0);
        imap_pool_put(p, s);
        pthread_join(th, NULL);
        imap_pool_free(p);
        fake_stop(&f);
}
END_TEST

START_TEST(test_reserved_slot_is_not_connected)
{
        /* connections=2 with live sync: its connection takes one slot, so
         * with the one left busy a caller waits (here out its 300 ms
         * deadline) instead of opening a second connection; a pool of one
         * keeps its slot. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s1 = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s1), 0);
        a.timeout_ms = 300;
        struct imap_pool *one = imap_pool_new(&a, 1);
        ck_assert(!imap_pool_reserve_one(one));
        imap_pool_free(one);
        struct imap_pool *p = imap_pool_new(&a, 2);
        imap_pool_adopt(p, s1);
        ck_assert(imap_pool_reserve_one(p));
        struct imap_session *s = NULL, *s2 = NULL;
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &s), 0);
        ck_assert_ptr_eq(s, s1);
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &s2), -ETIMEDOUT);
        imap_pool_put(p, s);
        /* Given back (live sync ended): the slot is the operations' again. */
        imap_pool_unreserve_one(p);
        ck_assert(imap_pool_reserve_one(p));
        imap_pool_free(p);
        fake_stop(&f);
}
END_TEST

struct breaker {
        struct imap_pool *p;
        atomic_bool got;
        int r;
};

/* Another caller whose command breaks the connection while it holds it. */
static void *breaker_main(void *arg)
{
        struct breaker *b = arg;
        struct imap_session *s = NULL;
        b->r = imap_pool_get(b->p, NULL, IMAP_POOL_META, &s);
        atomic_store(&b->got, true);
        if (b->r == 0) {
                b->r = imap_noop(s);
                imap_pool_put(b->p, s);
        }
        return NULL;
}

START_TEST(test_session_breaks_while_waited_for)
{
        /* The pool reads nothing of a busy session but its atomic round
         * trip: the thread using it may be marking it broken meanwhile (a
         * data race ThreadSanitizer reports: build with -Db_sanitize=thread).
         * The waiting caller then connects. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 40},
            {"NOOP", 0, "$ACCEPT", 30},
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "$T OK fine\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s1 = NULL;
        ck_assert_int_eq(open_plain(&f, script, &a, &s1), 0);
        struct imap_pool *p = imap_pool_new(&a, 2);
        imap_pool_adopt(p, s1);
        pthread_t th;
        struct breaker b = {p, false, 1};
        ck_assert_int_eq(pthread_create(&th, NULL, breaker_main, &b), 0);
        while (!atomic_load(&b.got))
                usleep(1000);
        struct imap_session *s = NULL;
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &s), 0);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_pool_put(p, s);
        pthread_join(th, NULL);
        ck_assert_int_eq(b.r, -EIO);
        imap_pool_free(p);
        fake_stop(&f);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("pool_wait");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_busy_session_is_waited_for_not_a_new_connection);
        tcase_add_test(tc, test_connects_when_none_comes_back_in_time);
        tcase_add_test(tc, test_reserved_slot_is_not_connected);
        tcase_add_test(tc, test_session_breaks_while_waited_for);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
