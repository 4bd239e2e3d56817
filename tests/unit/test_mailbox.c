/* The cache's waits: every one ends by its deadline, and at once after
 * cache_shutdown() (issue #7: a refresh that never ended hung its waiters). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/mailbox.h"
#include "tests/unit/unit_main.h"

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

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(test_wait_ends_at_deadline)
{
        struct cache *c = cache_new(name_fn, NULL);
        cache_lock(c);
        int64_t t0 = now_ms();
        int r = 0;
        /* Wake-ups may be spurious: the caller loops, as the real ones do. */
        while (r == 0)
                r = cache_wait(c, t0 + 200);
        int64_t took = now_ms() - t0;
        ck_assert_int_eq(r, -ETIMEDOUT);
        ck_assert_int_ge(took, 190);
        ck_assert_int_lt(took, 3000);
        /* A deadline already past: no wait at all. */
        ck_assert_int_eq(cache_wait(c, t0), -ETIMEDOUT);
        cache_unlock(c);
        cache_free(c);
}
END_TEST

static void *waker_main(void *arg)
{
        struct cache *c = arg;
        usleep(100 * 1000);
        cache_lock(c);
        cache_wake(c);
        cache_unlock(c);
        return NULL;
}

START_TEST(test_wake_ends_wait)
{
        struct cache *c = cache_new(name_fn, NULL);
        pthread_t t;
        cache_lock(c);
        pthread_create(&t, NULL, waker_main, c);
        int64_t t0 = now_ms();
        int r = cache_wait(c, t0 + 10000);
        cache_unlock(c);
        pthread_join(t, NULL);
        ck_assert_int_eq(r, 0);
        ck_assert_int_lt(now_ms() - t0, 5000);
        cache_free(c);
}
END_TEST

static void *shutdown_main(void *arg)
{
        usleep(100 * 1000);
        cache_shutdown(arg);
        return NULL;
}

START_TEST(test_shutdown_ends_waits)
{
        struct cache *c = cache_new(name_fn, NULL);
        pthread_t t;
        cache_lock(c);
        pthread_create(&t, NULL, shutdown_main, c);
        int64_t t0 = now_ms();
        int r = 0;
        while (r == 0)
                r = cache_wait(c, t0 + 10000);
        ck_assert_int_eq(r, -ESHUTDOWN);
        ck_assert_int_lt(now_ms() - t0, 5000);
        /* Later waits too, at once. */
        ck_assert_int_eq(cache_wait(c, now_ms() + 10000), -ESHUTDOWN);
        cache_unlock(c);
        pthread_join(t, NULL);
        cache_free(c);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("mailbox");
        TCase *tc = tcase_create("waits");
        tcase_add_test(tc, test_wait_ends_at_deadline);
        tcase_add_test(tc, test_wake_ends_wait);
        tcase_add_test(tc, test_shutdown_ends_waits);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
