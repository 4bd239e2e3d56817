#include "cache/ahead.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "imap/log.h"
#include "imap/ops.h"

/* A scan starts after SCAN_MIN opens in a row in name order. Batches grow
 * 16, 64, then BATCH_MAX messages (at most BATCH_BYTES), and the next batch is
 * queued when less than half a batch is left ahead of the reader. Starting at
 * 16 rather than smaller matters: each batch costs a round trip before its
 * first byte, and the reader waits for the first ones. */
#define SCAN_MIN 2u
#define BATCH_MAX 256u
#define BATCH_BYTES (8u << 20)
#define QUEUE_MAX 4u
/* Fetching threads. One: a second one measured slower (two server processes
 * competing for the same two cores), but the design allows more. */
#define WORKERS 1
/* An idle worker looks at its stop flag at least this often (no wait
 * without a deadline, even one that a signal should end). */
#define IDLE_CHECK_MS 1000
/* How much of each message a batch brings: whole messages up to this size,
 * which covers nearly all mail; bigger ones get their start and are read on
 * with the usual growing read-ahead. */
#define HEAD_BLOCKS 4u

/* A job claims its blocks only when it starts: a queued job holds nothing,
 * so a reader who gets to a message first reads it at once instead of
 * waiting for the batches queued before it. (A job for an idle worker, which
 * starts at once, claims when it is queued, so that the reader it runs ahead
 * of does not race it to the next file.) */
struct ahead_job {
        struct ahead_job *next;
        uint64_t mbox_id;
        uint32_t uidvalidity;
        char *mailbox;
        uint32_t *uids;   /* the messages whose first blocks this job brings */
        uint8_t *nblocks; /* how many blocks of each: planned, then claimed */
        size_t n;
        bool from_disk; /* the blocks are in the persistent cache: load, don't fetch */
        bool claimed;   /* nblocks are claims held by this job (else only planned) */
};

struct ahead {
        struct account *a;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct ahead_job *head, *tail;
        size_t queued;
        bool started, stop;
        int nthreads;
        int nfinished; /* threads that have ended */
        pthread_t threads[WORKERS];
};

static void ahead_job_free(struct ahead_job *j)
{
        free(j->mailbox);
        free(j->uids);
        free(j->nblocks);
        free(j);
}

static struct block_key ahead_key(const struct ahead_job *j, uint32_t uid, uint64_t index)
{
        return (struct block_key){j->mbox_id, j->uidvalidity, uid, index};
}

/* Claims the planned blocks of a job that starts, leading ones only, and
 * keeps the messages of which it got at least one: the rest is cached by
 * now or being fetched by a reader. */
static void ahead_job_claim(struct ahead *h, struct ahead_job *j)
{
        size_t k = 0;
        for (size_t i = 0; i < j->n; i++) {
                unsigned nb = 0;
                while (nb < j->nblocks[i]) {
                        struct block_key key = ahead_key(j, j->uids[i], nb);
                        if (!blocks_try_claim(h->a->blocks, &key))
                                break;
                        nb++;
                }
                if (nb == 0)
                        continue;
                j->uids[k] = j->uids[i];
                j->nblocks[k++] = (uint8_t)nb;
        }
        j->n = k;
        j->claimed = true;
}

/* Gives back the claims a job did not fill (expunged, or the fetch failed,
 * or it never ran). Nothing for a job that holds no claims: the blocks may
 * be a reader's. */
static void ahead_job_release(struct ahead *h, struct ahead_job *j)
{
        if (!j->claimed)
                return;
        for (size_t i = 0; i < j->n; i++)
                for (unsigned b = 0; b < j->nblocks[i]; b++) {
                        struct block_key k = ahead_key(j, j->uids[i], b);
                        blocks_abandon(h->a->blocks, &k);
                }
}

struct ahead_run {
        struct ahead *h;
        struct ahead_job *j;
        uint32_t *copy;
};

static void ahead_put(void *ctx, uint32_t uid, const char *data, size_t len)
{
        struct ahead_run *run = ctx;
        atomic_fetch_add(&run->h->a->fetched_bytes, len);
        /* Only blocks this job claimed are stored: blocks_put ignores others. */
        for (uint64_t b = 0; b * BLOCK_SIZE < len || (b == 0 && len == 0); b++) {
                struct block_key k = ahead_key(run->j, uid, b);
                size_t off = (size_t)(b * BLOCK_SIZE);
                size_t n = len - off < BLOCK_SIZE ? len - off : BLOCK_SIZE;
                blocks_put(run->h->a->blocks, &k, data + off, n);
                /* Only whole blocks (or a message's last) are worth keeping. */
                if (n == BLOCK_SIZE || off + n == len)
                        persist_block_put(run->h->a, run->j->mailbox, run->j->uidvalidity, uid, b,
                                          data + off, n);
        }
}

static int ahead_fetch(struct imap_session *s, void *ctx)
{
        struct ahead_run *run = ctx;
        int r = account_select(s, run->j->mailbox, run->j->uidvalidity, NULL);
        if (r < 0)
                return r;
        /* imap_fetch_heads sorts its argument in place. */
        memcpy(run->copy, run->j->uids, run->j->n * sizeof(*run->copy));
        return imap_fetch_heads(s, run->copy, run->j->n, (size_t)HEAD_BLOCKS * BLOCK_SIZE,
                                ahead_put, run);
}

/* A job of blocks the persistent cache has: read them into memory, so the
 * reader doesn't wait for the disk either. */
static void ahead_load(struct ahead *h, struct ahead_job *j)
{
        char *buf = malloc(BLOCK_SIZE);
        if (!buf)
                return;
        for (size_t i = 0; i < j->n; i++)
                for (unsigned b = 0; b < j->nblocks[i]; b++) {
                        ssize_t n = persist_block_get(h->a, j->mailbox, j->uidvalidity, j->uids[i],
                                                      b, buf, BLOCK_SIZE);
                        if (n < 0)
                                break; /* the rest stays claimed and is abandoned */
                        struct block_key k = ahead_key(j, j->uids[i], b);
                        blocks_put(h->a->blocks, &k, buf, (size_t)n);
                }
        free(buf);
}

static void ahead_deadline_ts(int ms, struct timespec *ts)
{
        clock_gettime(CLOCK_MONOTONIC, ts);
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (long)(ms % 1000) * 1000000;
        if (ts->tv_nsec >= 1000000000) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000;
        }
}

static void *ahead_main(void *arg)
{
        struct ahead *h = arg;
        pthread_mutex_lock(&h->mu);
        for (;;) {
                while (!h->head && !h->stop) {
                        struct timespec ts;
                        ahead_deadline_ts(IDLE_CHECK_MS, &ts);
                        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
                }
                if (h->stop)
                        break; /* queued jobs are dropped below, unstarted */
                struct ahead_job *j = h->head;
                h->head = j->next;
                if (!h->head)
                        h->tail = NULL;
                pthread_mutex_unlock(&h->mu);

                if (!j->claimed)
                        ahead_job_claim(h, j);
                if (j->n == 0) {
                        /* Everything came meanwhile: nothing to do. */
                } else if (j->from_disk) {
                        ahead_load(h, j);
                } else {
                        struct ahead_run run = {h, j, malloc(j->n * sizeof(uint32_t))};
                        int r = -ENOMEM;
                        if (run.copy)
                                r = account_run(h->a, j->mailbox, IMAP_POOL_BULK, ahead_fetch,
                                                &run);
                        if (r == 0)
                                atomic_fetch_add(&h->a->fetches, 1);
                        else
                                log_dbg("read-ahead of %zu messages in %s failed: %d", j->n,
                                        j->mailbox, r);
                        free(run.copy);
                }
                ahead_job_release(h, j);
                ahead_job_free(j);

                pthread_mutex_lock(&h->mu);
                h->queued--;
        }
        /* Stopping: drop what never started. */
        while (h->head) {
                struct ahead_job *j = h->head;
                h->head = j->next;
                h->queued--;
                ahead_job_release(h, j);
                ahead_job_free(j);
        }
        h->tail = NULL;
        h->nfinished++;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        return NULL;
}

struct ahead *ahead_new(struct account *a)
{
        struct ahead *h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        h->a = a;
        pthread_mutex_init(&h->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cv, &ca);
        pthread_condattr_destroy(&ca);
        return h;
}

void ahead_stop(struct ahead *h)
{
        if (!h)
                return;
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
}

bool ahead_join_until(struct ahead *h, int64_t deadline_ms)
{
        if (!h)
                return true;
        struct timespec ts = {.tv_sec = deadline_ms / 1000,
                              .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
        pthread_mutex_lock(&h->mu);
        while (h->nfinished < h->nthreads)
                if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT)
                        break;
        bool done = h->nfinished >= h->nthreads;
        pthread_mutex_unlock(&h->mu);
        return done;
}

void ahead_free(struct ahead *h)
{
        if (!h)
                return;
        ahead_stop(h);
        for (int i = 0; i < h->nthreads; i++)
                pthread_join(h->threads[i], NULL);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
}

/* Queues a job; false if the queue is full or the thread can't start. The
 * thread starts with the first job, which comes after daemonizing (a thread
 * started before fork() would not survive it). */
static bool ahead_enqueue(struct ahead *h, struct ahead_job *j)
{
        pthread_mutex_lock(&h->mu);
        bool ok = !h->stop && h->queued < QUEUE_MAX;
        if (ok && !h->started) {
                h->started = true;
                for (int i = 0; i < WORKERS; i++)
                        if (pthread_create(&h->threads[h->nthreads], NULL, ahead_main, h) == 0)
                                h->nthreads++;
                ok = h->nthreads > 0;
        }
        if (ok) {
                if (h->queued < (size_t)h->nthreads)
                        ahead_job_claim(h, j); /* a worker is idle: it starts at once */
                if (h->tail)
                        h->tail->next = j;
                else
                        h->head = j;
                h->tail = j;
                h->queued++;
                pthread_cond_signal(&h->cv);
        }
        pthread_mutex_unlock(&h->mu);
        return ok;
}

/* The scan of folder mbox_id stopped (the reader went elsewhere): its
 * queued jobs would only hold up the connection. The one running ends
 * by itself. */
static void ahead_cancel(struct ahead *h, uint64_t mbox_id)
{
        pthread_mutex_lock(&h->mu);
        struct ahead_job **pp = &h->head, *last = NULL;
        while (*pp) {
                struct ahead_job *j = *pp;
                if (j->mbox_id == mbox_id) {
                        *pp = j->next;
                        h->queued--;
                        ahead_job_release(h, j);
                        ahead_job_free(j);
                        continue;
                }
                last = j;
                pp = &j->next;
        }
        h->tail = last;
        pthread_mutex_unlock(&h->mu);
}

/* An empty job for the same folder as j, for up to want messages. */
static struct ahead_job *ahead_job_like(const struct ahead_job *j, size_t want)
{
        struct ahead_job *jd = calloc(1, sizeof(*jd));
        if (!jd || !(jd->uids = malloc(want * sizeof(*jd->uids))) ||
            !(jd->nblocks = malloc(want * sizeof(*jd->nblocks))) ||
            !(jd->mailbox = strdup(j->mailbox))) {
                if (jd)
                        ahead_job_free(jd);
                return NULL;
        }
        jd->mbox_id = j->mbox_id;
        jd->uidvalidity = j->uidvalidity;
        jd->from_disk = true;
        return jd;
}

void ahead_on_open(struct ahead *h, struct cache_msg *msg)
{
        struct cache_mbox *mb = msg->mbox;
        struct cache_msg **sorted = cache_mbox_sorted(mb);
        if (!sorted || !h)
                return;
        size_t idx = msg->sorted_idx;
        if (idx == mb->last_open_idx + 1) {
                mb->scan_streak++;
        } else if (idx != mb->last_open_idx) {
                if (mb->scan_streak >= SCAN_MIN)
                        ahead_cancel(h, mb->node.id);
                mb->scan_streak = 0;
                mb->ahead_next = 0;
        }
        mb->last_open_idx = idx;
        if (mb->scan_streak < SCAN_MIN)
                return;
        unsigned shift = mb->scan_streak - SCAN_MIN;
        size_t want = shift >= 2 ? BATCH_MAX : 16u << (2 * shift);
        size_t start = mb->ahead_next > idx + 1 ? mb->ahead_next : idx + 1;
        if (start - (idx + 1) >= want / 2 || start >= mb->nmsgs)
                return; /* enough is on its way */

        struct ahead_job *j = calloc(1, sizeof(*j));
        if (!j || !(j->uids = malloc(want * sizeof(*j->uids))) ||
            !(j->nblocks = malloc(want * sizeof(*j->nblocks))) || !(j->mailbox = strdup(mb->raw))) {
                if (j)
                        ahead_job_free(j);
                return;
        }
        j->mbox_id = mb->node.id;
        j->uidvalidity = mb->uidvalidity;
        struct ahead_job *jd = ahead_job_like(j, want);
        uint64_t bytes = 0;
        size_t i = start;
        for (; i < mb->nmsgs && i < start + want && bytes < BATCH_BYTES; i++) {
                uint64_t size = sorted[i]->size;
                uint64_t head = size < HEAD_BLOCKS * BLOCK_SIZE ? size : HEAD_BLOCKS * BLOCK_SIZE;
                unsigned nb = 0;
                /* Plan the leading blocks nobody has; stop at the first one
                 * that is cached or on its way (the reader has been there).
                 * They are claimed when the job starts. */
                while ((uint64_t)nb * BLOCK_SIZE < head) {
                        struct block_key k = ahead_key(j, sorted[i]->uid, nb);
                        if (blocks_present(h->a->blocks, &k))
                                break;
                        nb++;
                }
                if (nb > 0 &&
                    persist_block_has(h->a, mb->raw, mb->uidvalidity, sorted[i]->uid, 0)) {
                        /* On disk already: load from there (the blocks the disk has),
                         * not from the server. */
                        unsigned nd = 0;
                        while (
                            jd && nd < nb &&
                            persist_block_has(h->a, mb->raw, mb->uidvalidity, sorted[i]->uid, nd))
                                nd++;
                        if (nd) {
                                jd->uids[jd->n] = sorted[i]->uid;
                                jd->nblocks[jd->n++] = (uint8_t)nd;
                        }
                        nb = 0;
                }
                if (nb == 0)
                        continue; /* empty, cached already, or being fetched */
                j->uids[j->n] = sorted[i]->uid;
                j->nblocks[j->n++] = (uint8_t)nb;
                bytes += head;
        }
        if (jd && jd->n && !ahead_enqueue(h, jd)) {
                ahead_job_release(h, jd);
                ahead_job_free(jd);
        } else if (jd && !jd->n) {
                ahead_job_free(jd);
        }
        if (j->n == 0) {
                mb->ahead_next = i;
                ahead_job_free(j);
                return;
        }
        if (!ahead_enqueue(h, j)) {
                ahead_job_release(h, j);
                ahead_job_free(j);
                return;
        }
        mb->ahead_next = i;
}
