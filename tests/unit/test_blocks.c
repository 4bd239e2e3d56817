/* The content block cache: hits, single-flight claims, LRU bound. */
#include <check.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/blocks.h"
#include "tests/unit/unit_main.h"

static struct block_key key(uint32_t uid, uint64_t idx)
{
        return (struct block_key){.mbox = 7, .uidvalidity = 42, .uid = uid, .index = idx};
}

START_TEST(test_miss_claims_then_hit)
{
        struct blocks *b = blocks_new(1 << 20);
        struct block_key k = key(1, 0);
        char out[16];
        size_t n = 99;
        ck_assert_int_eq(blocks_get(b, &k, 0, sizeof(out), out, &n), BLOCKS_CLAIMED);
        ck_assert_int_eq(blocks_get(b, &k, 0, sizeof(out), out, &n), BLOCKS_BUSY);
        blocks_put(b, &k, "hello world", 11);
        ck_assert_int_eq(blocks_get(b, &k, 6, sizeof(out), out, &n), BLOCKS_HIT);
        ck_assert_uint_eq(n, 5);
        ck_assert(memcmp(out, "world", 5) == 0);
        /* A read past the end of a short block copies nothing. */
        ck_assert_int_eq(blocks_get(b, &k, 11, sizeof(out), out, &n), BLOCKS_HIT);
        ck_assert_uint_eq(n, 0);
        blocks_free(b);
}
END_TEST

START_TEST(test_keys_distinct)
{
        struct blocks *b = blocks_new(1 << 20);
        struct block_key k1 = key(1, 0), k2 = key(2, 0), k3 = key(1, 1);
        struct block_key k4 = k1;
        k4.uidvalidity = 43;
        char out[4];
        size_t n;
        ck_assert_int_eq(blocks_get(b, &k1, 0, 4, out, &n), BLOCKS_CLAIMED);
        blocks_put(b, &k1, "one", 3);
        ck_assert_int_eq(blocks_get(b, &k2, 0, 4, out, &n), BLOCKS_CLAIMED);
        ck_assert_int_eq(blocks_get(b, &k3, 0, 4, out, &n), BLOCKS_CLAIMED);
        ck_assert_int_eq(blocks_get(b, &k4, 0, 4, out, &n), BLOCKS_CLAIMED);
        blocks_free(b);
}
END_TEST

START_TEST(test_abandon_lets_next_claim)
{
        struct blocks *b = blocks_new(1 << 20);
        struct block_key k = key(3, 0);
        char out[4];
        size_t n;
        ck_assert(blocks_try_claim(b, &k));
        ck_assert(!blocks_try_claim(b, &k));
        blocks_abandon(b, &k);
        ck_assert_int_eq(blocks_get(b, &k, 0, 4, out, &n), BLOCKS_CLAIMED);
        blocks_free(b);
}
END_TEST

START_TEST(test_lru_bound)
{
        static char block[BLOCK_SIZE];
        struct blocks *b = blocks_new(4 * BLOCK_SIZE);
        char out[1];
        size_t n;
        for (uint64_t i = 0; i < 10; i++) {
                struct block_key k = key(9, i);
                ck_assert(blocks_try_claim(b, &k));
                block[0] = (char)i;
                blocks_put(b, &k, block, BLOCK_SIZE);
                ck_assert_uint_le(blocks_bytes(b), 4 * BLOCK_SIZE);
                /* Touch block 0 so it stays the most recently used. */
                struct block_key k0 = key(9, 0);
                ck_assert_int_eq(blocks_get(b, &k0, 0, 1, out, &n), BLOCKS_HIT);
        }
        struct block_key k1 = key(9, 1), k9 = key(9, 9);
        ck_assert_int_eq(blocks_get(b, &k9, 0, 1, out, &n), BLOCKS_HIT);
        ck_assert_int_eq(out[0], 9);
        ck_assert_int_eq(blocks_get(b, &k1, 0, 1, out, &n), BLOCKS_CLAIMED);
        blocks_free(b);
}
END_TEST

struct waiter {
        struct blocks *b;
        struct block_key k;
        char out[8];
        size_t n;
        int result;
};

static void *waiter_main(void *arg)
{
        struct waiter *w = arg;
        blocks_wait(w->b, &w->k, 10000);
        w->result = blocks_get(w->b, &w->k, 0, sizeof(w->out), w->out, &w->n);
        return NULL;
}

START_TEST(test_waiter_woken_by_put)
{
        struct blocks *b = blocks_new(1 << 20);
        struct waiter w = {.b = b, .k = key(5, 0)};
        ck_assert(blocks_try_claim(b, &w.k));
        pthread_t t;
        pthread_create(&t, NULL, waiter_main, &w);
        blocks_put(b, &w.k, "data", 4);
        pthread_join(t, NULL);
        ck_assert_int_eq(w.result, BLOCKS_HIT);
        ck_assert_uint_eq(w.n, 4);
        blocks_free(b);
}
END_TEST

START_TEST(test_present_never_claims)
{
        struct blocks *b = blocks_new(1 << 20);
        struct block_key k = key(6, 0);
        ck_assert(!blocks_present(b, &k));
        ck_assert(!blocks_present(b, &k)); /* asking twice still claims nothing */
        ck_assert(blocks_try_claim(b, &k));
        ck_assert(blocks_present(b, &k)); /* being fetched */
        blocks_put(b, &k, "x", 1);
        ck_assert(blocks_present(b, &k)); /* here */
        blocks_free(b);
}
END_TEST

static void *shutdown_main(void *arg)
{
        struct blocks *b = arg;
        usleep(100 * 1000);
        blocks_shutdown(b);
        return NULL;
}

START_TEST(test_shutdown_ends_waits)
{
        struct blocks *b = blocks_new(1 << 20);
        struct block_key k = key(7, 0);
        ck_assert(blocks_try_claim(b, &k)); /* a fetch that never ends */
        pthread_t t;
        pthread_create(&t, NULL, shutdown_main, b);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        blocks_wait(b, &k, 10000); /* ended by the shutdown, not the timeout */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_join(t, NULL);
        ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 5);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        blocks_wait(b, &k, 10000); /* and every later one at once */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);
        blocks_free(b);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("blocks");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_miss_claims_then_hit);
        tcase_add_test(tc, test_keys_distinct);
        tcase_add_test(tc, test_abandon_lets_next_claim);
        tcase_add_test(tc, test_lru_bound);
        tcase_add_test(tc, test_waiter_woken_by_put);
        tcase_add_test(tc, test_present_never_claims);
        tcase_add_test(tc, test_shutdown_ends_waits);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
