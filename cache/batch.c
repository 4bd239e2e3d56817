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
        bool leader;   /* a thread will take the waiting ones */
        unsigned busy; /* batches of this key on the wire */
        UT_hash_handle hh;
};

struct batch {
        pthread_mutex_t mu;
        pthread_cond_t cv; /* any batch finished or was taken */
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
        free(b);
}

/* Waits on the condition until deadline (monotonic ms): false once it passed. */
static bool batch_wait(struct batch *b, int64_t deadline)
{
        struct timespec ts = {deadline / 1000, (long)(deadline % 1000) * 1000000L};
        return pthread_cond_timedwait(&b->cv, &b->mu, &ts) != ETIMEDOUT;
}

/* A queue with nothing waiting, no leader and nothing on the wire goes. */
static void batch_queue_done(struct batch *b, struct batch_queue *q)
{
        if (q->n || q->leader || q->busy)
                return;
        HASH_DEL(b->queues, q);
        free(q->v);
        free(q->key);
        free(q);
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
        batch_queue_done(b, q);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        free(args);
        free(items);
        return 0;
}
