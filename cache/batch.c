#include "cache/batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uthash.h>

#include "imap/array.h"
#include "imap/conn.h"

struct batch_item {
        void *arg;
        bool taken, done;
};

struct batch_queue {
        char *key;
        struct batch_item **v; /* waiting to be taken */
        size_t n, cap;
        bool leader;     /* a thread will take the waiting ones */
        unsigned busy;   /* batches of this key on the wire */
        size_t back;     /* answered callers not yet back with a new request */
        int64_t done_us; /* when the last batch was answered */
        int64_t run_us;  /* how long it took (about a round trip) */
        UT_hash_handle hh;
};

struct batch {
        pthread_mutex_t mu;
        pthread_cond_t cv;     /* any batch finished or was taken */
        pthread_cond_t arrive; /* a request joined a queue */
        struct batch_queue *queues;
        int wait_ms;
};

struct batch *batch_new(int wait_ms)
{
        struct batch *b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        pthread_mutex_init(&b->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&b->cv, &ca);
        pthread_cond_init(&b->arrive, &ca);
        pthread_condattr_destroy(&ca);
        b->wait_ms = wait_ms;
        return b;
}

void batch_free(struct batch *b)
{
        if (!b)
                return;
        struct batch_queue *q, *tmp;
        HASH_ITER(hh, b->queues, q, tmp)
        {
                HASH_DEL(b->queues, q);
                free(q->v);
                free(q->key);
                free(q);
        }
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        pthread_cond_destroy(&b->arrive);
        free(b);
}

/* The longest a leader waits for the callers of the batch just answered to
 * come back (see batch_await_back): a fraction of that batch's round trip,
 * so that the wait costs little beside the round trip it saves, and never
 * much. */
#define BATCH_BACK_DIV 8
#define BATCH_BACK_MAX_US 5000

/* Waits on the condition until deadline (monotonic ms): false once it passed. */
static bool batch_wait(struct batch *b, int64_t deadline)
{
        struct timespec ts = {deadline / 1000, (long)(deadline % 1000) * 1000000L};
        return pthread_cond_timedwait(&b->cv, &b->mu, &ts) != ETIMEDOUT;
}

static int64_t batch_now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Until when the callers of q's last batch are waited for. */
static int64_t batch_back_until(const struct batch_queue *q)
{
        int64_t wait = q->run_us / BATCH_BACK_DIV;
        return q->done_us + (wait < BATCH_BACK_MAX_US ? wait : BATCH_BACK_MAX_US);
}

/* Forgets callers that did not come back in time (mu held). */
static void batch_back_expire(struct batch_queue *q, int64_t now)
{
        if (q->back && now >= batch_back_until(q))
                q->back = 0;
}

static void batch_queue_free(struct batch *b, struct batch_queue *q)
{
        HASH_DEL(b->queues, q);
        free(q->v);
        free(q->key);
        free(q);
}

/* A queue with nothing waiting, no leader, nothing on the wire and nobody
 * expected back goes. */
static void batch_queue_done(struct batch *b, struct batch_queue *q)
{
        batch_back_expire(q, batch_now_us());
        if (q->n || q->leader || q->busy || q->back)
                return;
        batch_queue_free(b, q);
}

/* Queues kept for callers who never came back (they had no more to do). */
static void batch_sweep(struct batch *b)
{
        struct batch_queue *q, *tmp;
        int64_t now = batch_now_us();
        HASH_ITER(hh, b->queues, q, tmp)
        {
                if (q->back && !q->n && !q->leader && !q->busy) {
                        batch_back_expire(q, now);
                        if (!q->back)
                                batch_queue_free(b, q);
                }
        }
}

/* The callers of the batch answered last are often about to send their
 * next request (each process of xargs -P works through its list one file at
 * a time, waiting for each answer). A leader that went without them would
 * split the callers into two groups that take turns on the wire from then
 * on, each half-sized batch costing a round trip. So the leader waits until
 * they are back or a small fraction of a round trip has passed since the
 * answer (mu held). A serial caller is its own comeback: it never waits. */
static void batch_await_back(struct batch *b, struct batch_queue *q)
{
        int64_t until = batch_back_until(q);
        while (q->back && batch_now_us() < until) {
                struct timespec ts = {until / 1000000, (long)(until % 1000000) * 1000L};
                pthread_cond_timedwait(&b->arrive, &b->mu, &ts);
        }
        q->back = 0;
}

static void batch_withdraw(struct batch_queue *q, struct batch_item *it)
{
        for (size_t i = 0; i < q->n; i++)
                if (q->v[i] == it) {
                        q->v[i] = q->v[--q->n];
                        return;
                }
}

int batch_submit(struct batch *b, const char *key, void *arg, batch_run_fn run, void *ctx)
{
        struct batch_item it = {arg, false, false};
        pthread_mutex_lock(&b->mu);
        batch_sweep(b);
        struct batch_queue *q;
        HASH_FIND_STR(b->queues, key, q);
        if (!q) {
                q = calloc(1, sizeof(*q));
                if (!q || !(q->key = strdup(key))) {
                        free(q);
                        pthread_mutex_unlock(&b->mu);
                        return -ENOMEM;
                }
                HASH_ADD_KEYPTR(hh, b->queues, q->key, strlen(q->key), q);
        }
        if (IMAP_ARRAY_GROW(q->v, q->n, q->cap, 16) < 0) {
                batch_queue_done(b, q);
                pthread_mutex_unlock(&b->mu);
                return -ENOMEM;
        }
        q->v[q->n++] = &it;
        if (q->back) {
                q->back--;
                pthread_cond_broadcast(&b->arrive);
        }
        int64_t deadline = imap_now_ms() + b->wait_ms;
        if (q->leader) {
                /* A follower: the leader runs this request with its own. Once
                 * taken, the wait is bounded by the leader's server deadlines. */
                while (!it.done) {
                        if (batch_wait(b, deadline) || it.done)
                                continue;
                        if (!it.taken) {
                                batch_withdraw(q, &it);
                                batch_queue_done(b, q);
                                pthread_mutex_unlock(&b->mu);
                                return -ETIMEDOUT;
                        }
                        deadline = imap_now_ms() + b->wait_ms;
                }
                pthread_mutex_unlock(&b->mu);
                return 0;
        }
        /* The leader: while this key's previous batch is on the wire, the
         * requests arriving meanwhile gather here. */
        q->leader = true;
        while (q->busy && batch_wait(b, deadline))
                ;
        if (!q->busy)
                batch_await_back(b, q);
        size_t n = q->n;
        struct batch_item **items = q->v;
        q->v = NULL;
        q->n = q->cap = 0;
        q->leader = false;
        q->busy++;
        void **args = malloc(n * sizeof(*args));
        for (size_t i = 0; i < n; i++) {
                items[i]->taken = true;
                if (args)
                        args[i] = items[i]->arg;
        }
        pthread_cond_broadcast(&b->cv); /* the next leader may gather now */
        pthread_mutex_unlock(&b->mu);
        int64_t t0 = batch_now_us();
        if (args) {
                run(ctx, args, n);
        } else {
                for (size_t i = 0; i < n; i++) /* ENOMEM: one by one then */
                        run(ctx, &items[i]->arg, 1);
        }
        pthread_mutex_lock(&b->mu);
        for (size_t i = 0; i < n; i++)
                items[i]->done = true;
        q->busy--;
        q->done_us = batch_now_us();
        q->run_us = q->done_us - t0;
        q->back += n; /* they may come back with their next request */
        batch_queue_done(b, q);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        free(args);
        free(items);
        return 0;
}
