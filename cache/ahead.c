#include "cache/ahead.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/ops.h"

/* A scan is a run of opens of one folder's files near each other in name
 * order, in any order and from any number of readers: `cat *` and grep -r go
 * up the names, rg and `ls -r` loops down, rg's threads and `xargs -P` both
 * ways and out of order. An open belongs to a scan when it lands within NEAR
 * positions of the range the scan has opened, or inside what it has planned.
 * Read-ahead goes in a direction once SCAN_MIN opens have extended the range
 * that way, or at once when the scan's second open is of the next name (or
 * the one before) after its first. While the probes (below) have not shown what the readers read,
 * a batch is FIRST_BATCH messages; after that one batch takes the rest of
 * the folder that way, up to SCAN_BATCH messages and the byte budget
 * (SCAN_BYTES, at most half of mem_cache), and the next batch is queued
 * when less than half of the last one is left ahead of the reader. Each
 * batch costs a round trip before its first byte and one worker runs them
 * one after the other, so a ramp of growing batches cost a round trip per
 * step (issue 13); the server streams one big batch as fast as small ones,
 * and the reader gets each message as it arrives. A header scan's batch
 * likewise takes the starts of the rest of the folder (up to SCAN_BATCH
 * messages and BATCH_BYTES of starts), as soon as one file shows it: one
 * command for a `head` loop or a file manager reading the first 8 KiB of
 * every file. STREAMS scans are followed at once, over all
 * folders. */
#define SCAN_MIN 2u
#define NEAR 16u
#define STREAMS 8u
#define BATCH_BYTES (8u << 20)
#define SCAN_BATCH 4096u
/* Not more: a batch claims its messages when it starts, and a reader who
 * opens one of them far ahead of the scan waits for the batch to get there
 * (on a slow link, seconds per 8 MiB); past the running batch it fetches
 * its file alone (test_hangs: read not behind queued read-ahead). */
#define SCAN_BYTES BATCH_BYTES
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
/* Header scans (a `head` loop, mscan): a file of a scan whose reader stopped
 * within HEAD_EXTENT, before its end, votes for one; a file read further, or
 * asked for more than HEAD_EXTENT at once, votes against; a small file read
 * whole by a smaller first read tells nothing. The opens after a scan's first, up to
 * PROBES of them until there is a vote, are opened with direct I/O (see
 * ahead_on_open), so that their reads are the reader's own, not the
 * kernel's read-ahead of the whole small file. During a header scan the
 * batches bring the start of each message, as far as the probes were read
 * (rounded up to PREFIX_ROUND), instead of the first blocks, kept in memory
 * up to HEADS_BYTES. (Never a short read to stop a reader at the header's
 * end: tar, for one, takes that for a file that shrank.) */
#define PREFIX_ROUND 4096u
#define HEAD_EXTENT AHEAD_HEAD_EXTENT
#define PROBES 16u
#define HEADS_BYTES (16u << 20) /* two full batches */

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
        bool from_disk;  /* the blocks are in the persistent cache: load, don't fetch */
        bool claimed;    /* nblocks are claims held by this job (else only planned) */
        size_t prefix;   /* > 0: brings the first prefix bytes of each (nblocks unused) */
        uint64_t *sizes; /* the messages' sizes: what each answer must hold */
        uint64_t stream; /* the scan that planned it */
};

/* The start of a message, brought by a header scan and served to the scan's
 * direct-I/O readers. Pending while its job runs. */
struct ahead_head {
        struct block_key key; /* index 0 */
        UT_hash_handle hh;
        struct ahead_head *older, *newer; /* by age, for dropping the oldest */
        char *data;
        size_t len;
        bool pending;
};

/* One scan (see above). Used only under the cache lock (ahead_on_open). */
struct ahead_stream {
        uint64_t id;   /* 0: a free slot */
        uint64_t used; /* tick of its last open: the oldest is replaced first */
        uint64_t mbox_id;
        size_t lo, hi;    /* the sorted positions opened: the range's ends */
        size_t down_next; /* [down_next, up_next) is opened or planned */
        size_t up_next;
        unsigned up, down;         /* opens that moved hi up, lo down */
        size_t up_last, down_last; /* messages in the last batch each way... */
        bool up_cut, down_cut;     /* ...if the byte budget cut it short */
        unsigned opens;            /* after the first */
        unsigned heads;            /* files read only at their start, in a row */
        uint64_t reach;            /* how far those were read, at most */
        bool voted;                /* a probe has told what the readers read */
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
        struct ahead_stream streams[STREAMS];
        uint64_t tick;
        /* Starts of messages for header scans (under mu; hcv: one arrived
         * or failed). */
        struct ahead_head *heads, *heads_oldest, *heads_newest;
        size_t heads_bytes;
        pthread_cond_t hcv;
};

static void ahead_job_free(struct ahead_job *j)
{
        free(j->mailbox);
        free(j->uids);
        free(j->nblocks);
        free(j->sizes);
        free(j);
}

static struct block_key ahead_key(const struct ahead_job *j, uint32_t uid, uint64_t index)
{
        return (struct block_key){j->mbox_id, j->uidvalidity, uid, index};
}

/* ---- starts of messages for header scans (all with h->mu held) ---- */

static struct ahead_head *ahead_head_find(struct ahead *h, const struct block_key *k)
{
        struct ahead_head *e;
        HASH_FIND(hh, h->heads, k, sizeof(*k), e);
        return e;
}

static void ahead_head_drop(struct ahead *h, struct ahead_head *e)
{
        HASH_DEL(h->heads, e);
        if (e->older)
                e->older->newer = e->newer;
        else
                h->heads_oldest = e->newer;
        if (e->newer)
                e->newer->older = e->older;
        else
                h->heads_newest = e->older;
        h->heads_bytes -= e->len;
        free(e->data);
        free(e);
}

/* Drops the oldest entries that arrived while there are too many bytes. */
static void ahead_heads_trim(struct ahead *h)
{
        struct ahead_head *e = h->heads_oldest;
        while (e && h->heads_bytes > HEADS_BYTES) {
                struct ahead_head *next = e->newer;
                if (!e->pending)
                        ahead_head_drop(h, e);
                e = next;
        }
}

/* The "claim" of a prefix job that starts: a pending entry for each message
 * that has neither its start here nor a first block (cached or on its way);
 * the job keeps those messages only. */
static void ahead_heads_reserve(struct ahead *h, struct ahead_job *j)
{
        size_t k = 0;
        for (size_t i = 0; i < j->n; i++) {
                struct block_key key = ahead_key(j, j->uids[i], 0);
                if (ahead_head_find(h, &key) || blocks_present(h->a->blocks, &key))
                        continue;
                struct ahead_head *e = calloc(1, sizeof(*e));
                if (!e)
                        continue;
                e->key = key;
                e->pending = true;
                HASH_ADD(hh, h->heads, key, sizeof(e->key), e);
                e->older = h->heads_newest;
                if (h->heads_newest)
                        h->heads_newest->newer = e;
                else
                        h->heads_oldest = e;
                h->heads_newest = e;
                j->uids[k] = j->uids[i];
                j->sizes[k++] = j->sizes[i];
        }
        j->n = k;
        j->claimed = true;
}

/* A prefix job ended: what it did not bring is not coming. */
static void ahead_heads_release(struct ahead *h, struct ahead_job *j)
{
        for (size_t i = 0; i < j->n; i++) {
                struct block_key key = ahead_key(j, j->uids[i], 0);
                struct ahead_head *e = ahead_head_find(h, &key);
                if (e && e->pending)
                        ahead_head_drop(h, e);
        }
        pthread_cond_broadcast(&h->hcv);
}

/* Claims the planned blocks of a job that starts, leading ones only, and
 * keeps the messages of which it got at least one: the rest is cached by
 * now or being fetched by a reader. */
static void ahead_job_claim(struct ahead *h, struct ahead_job *j)
{
        if (j->prefix) {
                ahead_heads_reserve(h, j);
                return;
        }
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
                j->sizes[k] = j->sizes[i];
                j->nblocks[k++] = (uint8_t)nb;
        }
        j->n = k;
        j->claimed = true;
}

/* Gives back the claims a job did not fill (expunged, or the fetch failed,
 * or it never ran). Nothing for a job that holds no claims: the blocks may
 * be a reader's. With h->mu held (a job that holds claims). */
static void ahead_job_release(struct ahead *h, struct ahead_job *j)
{
        if (!j->claimed)
                return;
        if (j->prefix) {
                ahead_heads_release(h, j);
                return;
        }
        for (size_t i = 0; i < j->n; i++)
                for (unsigned b = 0; b < j->nblocks[i]; b++) {
                        struct block_key k = ahead_key(j, j->uids[i], b);
                        blocks_abandon(h->a->blocks, &k);
                }
}

/* One command of the worker, and the jobs chained behind it: a job queued
 * for the same folder while the answer to the one before is still arriving
 * goes out at once on the same connection (imap_session_cmd_chain), instead
 * of a round trip after that answer's end. That is the common case: the
 * probing batch's first files show what the readers read while the rest of
 * it streams in, and the batch for the rest of the folder is planned then
 * (issue 11: a round trip per batch at 20 ms). */
struct ahead_run {
        struct ahead *h;
        struct ahead_job *j; /* the job the worker took */
        uint32_t *copy;
        struct imap_session *s;
        struct ahead_job *more[IMAP_CHAIN_MAX - 1]; /* taken from the queue, in order */
        size_t nmore;
        size_t resent;       /* of more[], sent on this attempt (account_run may retry) */
        struct imap_cmd cmd; /* the last chained command, until the next is asked */
        bool cmd_live;
        /* Bytes the commands sent on this attempt will bring, and brought
         * so far: a job is chained only near the end (CHAIN_AHEAD_BYTES). */
        uint64_t expect, got;
};

/* A queued job goes out behind the running command only once at most this
 * much of that command's answer is still to come. Enough to cover a round
 * trip on a fast link (1 MiB is 20 ms at 50 MB/s) and a whole probing
 * batch (PROBE_BYTES); not more, because a chained job has claimed its
 * messages: a reader who opens one of them far ahead of the scan then waits
 * for the answers before it instead of fetching its file alone
 * (test_hangs: read not behind queued read-ahead). */
#define CHAIN_AHEAD_BYTES (1u << 20)

/* The bytes job j asks for of each message: a header scan's prefix, else the leading
 * blocks. */
static uint64_t ahead_fetch_len(const struct ahead_job *j)
{
        return j->prefix ? j->prefix : (uint64_t)HEAD_BLOCKS * BLOCK_SIZE;
}

/* The bytes job j's answer brings of a message of size bytes: what it asked for, or the
 * whole message. A shorter answer is not kept (see ahead_put). */
static uint64_t ahead_want(const struct ahead_job *j, uint64_t size)
{
        uint64_t len = ahead_fetch_len(j);
        return size < len ? size : len;
}

/* What job j's answer will bring. */
static uint64_t ahead_job_bytes(const struct ahead_job *j)
{
        uint64_t sum = 0;
        for (size_t i = 0; i < j->n; i++)
                sum += ahead_want(j, j->sizes[i]);
        return sum;
}

/* The size of message uid of job j (0 if the job has no such message). */
static uint64_t ahead_size_of(const struct ahead_job *j, uint32_t uid)
{
        for (size_t i = 0; i < j->n; i++)
                if (j->uids[i] == uid)
                        return j->sizes[i];
        return 0;
}

/* The job of the run that asked for uid with an answer of len bytes. Block
 * jobs claim their messages apart, but a header scan's prefix job and a
 * block job of another scan of the folder may both ask for one message:
 * the length tells their answers apart (the first such job otherwise). */
static struct ahead_job *ahead_run_job(struct ahead_run *run, uint32_t uid, size_t len)
{
        struct ahead_job *any = NULL;
        for (size_t i = 0; i <= run->nmore; i++) {
                struct ahead_job *j = i == 0 ? run->j : run->more[i - 1];
                uint64_t size = ahead_size_of(j, uid);
                if (!size)
                        continue;
                if ((uint64_t)len == ahead_want(j, size))
                        return j;
                if (!any)
                        any = j;
        }
        return any;
}

/* A message's leading blocks arrived. They are kept only if they are as
 * long as asked (or the whole message): Dovecot answers a message another
 * session expunged with NIL (no bytes) and a tagged OK, and fewer bytes
 * stored would end its reader's read early, with success (test_chaos).
 * What is not stored is abandoned with the job; the reader fetches it. */
static void ahead_put(struct ahead_run *run, struct ahead_job *j, uint32_t uid, const char *data,
                      size_t len)
{
        if (len != ahead_want(j, ahead_size_of(j, uid)) || len == 0)
                return;
        /* Only blocks this job claimed are stored: blocks_put ignores others. */
        for (uint64_t b = 0; b * BLOCK_SIZE < len; b++) {
                struct block_key k = ahead_key(j, uid, b);
                size_t off = (size_t)(b * BLOCK_SIZE);
                size_t n = len - off < BLOCK_SIZE ? len - off : BLOCK_SIZE;
                blocks_put(run->h->a->blocks, &k, data + off, n);
                /* Only whole blocks (or a message's last) are worth keeping. */
                if (n == BLOCK_SIZE || off + n == len)
                        persist_block_put(run->h->a, j->mailbox, j->uidvalidity, uid, b, data + off,
                                          n);
        }
}

/* The start of a message arrived. It is kept only if it is as long as asked
 * (or the whole message): anything else would look like a shorter message. */
static void ahead_put_prefix(struct ahead_run *run, struct ahead_job *j, uint32_t uid,
                             const char *data, size_t len)
{
        struct ahead *h = run->h;
        bool ok = len > 0 && len == ahead_want(j, ahead_size_of(j, uid));
        struct block_key key = ahead_key(j, uid, 0);
        pthread_mutex_lock(&h->mu);
        struct ahead_head *e = ahead_head_find(h, &key);
        if (e && e->pending) {
                e->data = ok ? malloc(len) : NULL;
                if (e->data) {
                        memcpy(e->data, data, len);
                        e->len = len;
                        e->pending = false;
                        h->heads_bytes += len;
                        ahead_heads_trim(h);
                } else {
                        ahead_head_drop(h, e);
                }
        }
        pthread_cond_broadcast(&h->hcv);
        pthread_mutex_unlock(&h->mu);
}

/* A message of the run arrived: to the job that asked for it. */
static void ahead_put_any(void *ctx, uint32_t uid, const char *data, size_t len)
{
        struct ahead_run *run = ctx;
        atomic_fetch_add(&run->h->a->fetched_bytes, len);
        run->got += len;
        struct ahead_job *j = ahead_run_job(run, uid, len);
        if (!j)
                return; /* not asked for: never stored */
        if (j->prefix)
                ahead_put_prefix(run, j, uid, data, len);
        else
                ahead_put(run, j, uid, data, len);
}

/* The command for the next job to chain behind the run's (see struct
 * ahead_run): the ones taken on an earlier attempt first, then the queue's
 * head if it is a fetch in the same folder. Stops at a job that loads from
 * disk, so that the queue keeps its order. */
static struct imap_cmd *ahead_next(void *ctx)
{
        struct ahead_run *run = ctx;
        struct ahead *h = run->h;
        if (run->cmd_live) {
                imap_cmd_free(&run->cmd);
                run->cmd_live = false;
        }
        struct ahead_job *j = NULL;
        if (run->resent < run->nmore) {
                j = run->more[run->resent++];
        } else if (run->nmore < sizeof(run->more) / sizeof(run->more[0]) &&
                   run->expect <= run->got + CHAIN_AHEAD_BYTES) {
                pthread_mutex_lock(&h->mu);
                struct ahead_job *q = h->head;
                if (q && !h->stop && !q->from_disk && q->mbox_id == run->j->mbox_id &&
                    q->uidvalidity == run->j->uidvalidity) {
                        h->head = q->next;
                        if (!h->head)
                                h->tail = NULL;
                        if (!q->claimed)
                                ahead_job_claim(h, q);
                        run->more[run->nmore++] = q;
                        run->resent = run->nmore;
                        j = q;
                }
                pthread_mutex_unlock(&h->mu);
        }
        if (!j || j->n == 0)
                return NULL; /* nothing, or everything came meanwhile */
        uint32_t *copy = malloc(j->n * sizeof(*copy));
        if (!copy)
                return NULL;
        memcpy(copy, j->uids, j->n * sizeof(*copy));
        int r = imap_fetch_heads_cmd(run->s, copy, j->n, ahead_fetch_len(j), &run->cmd);
        free(copy);
        if (r < 0) {
                imap_cmd_free(&run->cmd);
                return NULL; /* its claims are given back with the run */
        }
        run->cmd_live = true;
        run->expect += ahead_job_bytes(j);
        return &run->cmd;
}

static int ahead_fetch(struct imap_session *s, void *ctx)
{
        struct ahead_run *run = ctx;
        int r = account_select(s, run->j->mailbox, run->j->uidvalidity, NULL);
        if (r < 0)
                return r;
        run->s = s;
        run->resent = 0;
        run->expect = ahead_job_bytes(run->j);
        run->got = 0;
        /* imap_fetch_heads sorts its argument in place. */
        memcpy(run->copy, run->j->uids, run->j->n * sizeof(*run->copy));
        r = imap_fetch_heads_chain(s, run->copy, run->j->n, ahead_fetch_len(run->j), ahead_put_any,
                                   run, ahead_next, run);
        if (run->cmd_live) {
                imap_cmd_free(&run->cmd);
                run->cmd_live = false;
        }
        return r;
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
                        uint64_t off = (uint64_t)b * BLOCK_SIZE;
                        uint64_t blen = j->sizes[i] > off ? j->sizes[i] - off : 0;
                        /* Only a block as long as the size says (see
                         * account_block_from_disk); the rest stays claimed
                         * and is abandoned. */
                        if (n < 0 || (uint64_t)n != (blen < BLOCK_SIZE ? blen : BLOCK_SIZE))
                                break;
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
                if (!j->claimed)
                        ahead_job_claim(h, j);
                pthread_mutex_unlock(&h->mu);

                if (j->n == 0) {
                        /* Everything came meanwhile: nothing to do. */
                } else if (j->from_disk) {
                        ahead_load(h, j);
                } else {
                        struct ahead_run run = {
                            .h = h, .j = j, .copy = malloc(j->n * sizeof(uint32_t))};
                        int r = -ENOMEM;
                        if (run.copy)
                                r = account_run(h->a, j->mailbox, IMAP_POOL_BULK, ahead_fetch,
                                                &run);
                        if (r == 0)
                                atomic_fetch_add(&h->a->fetches, 1 + run.nmore);
                        else
                                log_dbg("read-ahead of %zu messages in %s failed: %d", j->n,
                                        j->mailbox, r);
                        if (run.nmore)
                                log_dbg("read-ahead: %zu batches sent behind one in %s", run.nmore,
                                        j->mailbox);
                        free(run.copy);
                        pthread_mutex_lock(&h->mu);
                        for (size_t i = 0; i < run.nmore; i++) {
                                ahead_job_release(h, run.more[i]);
                                ahead_job_free(run.more[i]);
                                h->queued--;
                        }
                        pthread_mutex_unlock(&h->mu);
                }
                pthread_mutex_lock(&h->mu);
                ahead_job_release(h, j);
                ahead_job_free(j);
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
        pthread_cond_init(&h->hcv, &ca);
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
        pthread_cond_broadcast(&h->hcv);
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
        while (h->heads)
                ahead_head_drop(h, h->heads);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_cond_destroy(&h->hcv);
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

/* Drops the queued jobs of scan stream. */
static void ahead_cancel(struct ahead *h, uint64_t stream)
{
        pthread_mutex_lock(&h->mu);
        struct ahead_job **pp = &h->head, *last = NULL;
        while (*pp) {
                struct ahead_job *j = *pp;
                if (j->stream == stream) {
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
            !(jd->sizes = malloc(want * sizeof(*jd->sizes))) ||
            !(jd->mailbox = strdup(j->mailbox))) {
                if (jd)
                        ahead_job_free(jd);
                return NULL;
        }
        jd->mbox_id = j->mbox_id;
        jd->uidvalidity = j->uidvalidity;
        jd->stream = j->stream;
        jd->from_disk = true;
        return jd;
}

/* The scan a folder's open at sorted position idx belongs to: one of the
 * folder whose range it is near, or whose planned read-ahead holds it. */
static struct ahead_stream *ahead_stream_find(struct ahead *h, uint64_t mbox_id, size_t idx)
{
        for (unsigned i = 0; i < STREAMS; i++) {
                struct ahead_stream *st = &h->streams[i];
                if (st->id == 0 || st->mbox_id != mbox_id)
                        continue;
                if ((idx + NEAR >= st->lo && idx <= st->hi + NEAR) ||
                    (idx >= st->down_next && idx < st->up_next))
                        return st;
        }
        return NULL;
}

/* A new scan starting at idx, in a free slot or in place of the one used
 * least recently, whose queued jobs are dropped (they would only hold up the
 * connection; the one running ends by itself). */
static struct ahead_stream *ahead_stream_start(struct ahead *h, uint64_t mbox_id, size_t idx)
{
        struct ahead_stream *st = &h->streams[0];
        for (unsigned i = 0; i < STREAMS; i++) {
                if (h->streams[i].id == 0) {
                        st = &h->streams[i];
                        break;
                }
                if (h->streams[i].used < st->used)
                        st = &h->streams[i];
        }
        if (st->id)
                ahead_cancel(h, st->id);
        *st = (struct ahead_stream){.id = ++h->tick,
                                    .used = h->tick,
                                    .mbox_id = mbox_id,
                                    .lo = idx,
                                    .hi = idx,
                                    .down_next = idx,
                                    .up_next = idx + 1};
        return st;
}

/* A probing batch: enough messages that the readers are still busy with
 * them when the next batch's first answer comes (64 small messages take
 * `cat` about a 20 ms round trip; 16 left it waiting most of one), but few
 * bytes, as the scan may turn out to read only the start of each. */
#define FIRST_BATCH 64u
/* How soon after an opendir of the folder its first or last name opened
 * starts a scan (ahead_on_open). */
#define SCAN_AFTER_LIST_MS 2000
#define PROBE_BYTES (1u << 20)

/* The bytes one batch of a scan of whole messages may bring: they wait in
 * mem_cache for their reader, so at most half of it. */
static uint64_t ahead_budget(const struct ahead *h)
{
        uint64_t half = h->a->opts.mem_cache / 2;
        uint64_t b = half > 0 && half < SCAN_BYTES ? half : SCAN_BYTES;
        /* Nor more than half of a small persistent cache: every block read
         * ahead is also written there, and a batch bigger than cache_size
         * is evicted as it lands, the file growing by what the writer's
         * batches hold before their freed pages can be reused (test_cache:
         * a 2 MB cache_size reached a 9.9 MB file with 8 MiB batches). */
        uint64_t disk_half = h->a->disk && h->a->disk_max ? h->a->disk_max / 2 : 0;
        if (disk_half && disk_half < b)
                b = disk_half > BLOCK_SIZE ? disk_half : BLOCK_SIZE;
        return b;
}

/* Plans the leading blocks of message m nobody has yet into j (from the
 * server) or jd (from the persistent cache); the bytes it will bring. The
 * blocks are claimed when the job starts. */
static uint64_t ahead_plan_msg(struct ahead *h, struct cache_mbox *mb, const struct cache_msg *m,
                               struct ahead_job *j, struct ahead_job *jd)
{
        uint64_t head = ahead_want(j, m->size);
        unsigned nb = 0;
        /* Stop at the first block that is cached or on its way (a reader has
         * been there). */
        while ((uint64_t)nb * BLOCK_SIZE < head) {
                struct block_key k = ahead_key(j, m->uid, nb);
                if (blocks_present(h->a->blocks, &k))
                        break;
                nb++;
        }
        if (nb > 0 && persist_block_has(h->a, mb->raw, mb->uidvalidity, m->uid, 0)) {
                /* On disk already: load from there (the blocks the disk has),
                 * not from the server. */
                unsigned nd = 0;
                while (jd && nd < nb &&
                       persist_block_has(h->a, mb->raw, mb->uidvalidity, m->uid, nd))
                        nd++;
                if (nd) {
                        jd->uids[jd->n] = m->uid;
                        jd->sizes[jd->n] = m->size;
                        jd->nblocks[jd->n++] = (uint8_t)nd;
                }
                return 0;
        }
        if (nb == 0)
                return 0; /* empty, cached already, or being fetched */
        j->uids[j->n] = m->uid;
        j->sizes[j->n] = m->size;
        j->nblocks[j->n++] = (uint8_t)nb;
        return head;
}

/* Plans message m into a prefix job (its start, unless its first block is
 * here or on its way: then the reader reads that) or a block job. */
static uint64_t ahead_plan_one(struct ahead *h, struct cache_mbox *mb, const struct cache_msg *m,
                               struct ahead_job *j, struct ahead_job *jd)
{
        if (!j->prefix)
                return ahead_plan_msg(h, mb, m, j, jd);
        struct block_key k = ahead_key(j, m->uid, 0);
        if (m->size == 0 || blocks_present(h->a->blocks, &k))
                return 0;
        j->uids[j->n] = m->uid;
        j->sizes[j->n] = m->size;
        j->nblocks[j->n++] = 0;
        return ahead_want(j, m->size);
}

/* Queues the next batch of scan st in direction dir (+1: up the names, -1:
 * down), unless less than half a batch ahead of the reader is left unplanned. */
static void ahead_plan(struct ahead *h, struct cache_mbox *mb, struct cache_msg **sorted,
                       struct ahead_stream *st, int dir)
{
        size_t want = SCAN_BATCH;
        uint64_t budget = st->heads > 0 ? BATCH_BYTES : ahead_budget(h);
        /* Still probing: no more than a first batch of blocks until the
         * readers have shown how much of each file they read. */
        bool probing = st->heads == 0 && !st->voted && st->opens <= PROBES && want > FIRST_BATCH;
        if (probing) {
                want = FIRST_BATCH;
                budget = budget < PROBE_BYTES ? budget : PROBE_BYTES;
        }
        size_t n = mb->nmsgs;
        /* Half a batch left ahead is enough: half of the last one if the
         * byte budget cut it (big messages), else half of want (a probing
         * batch is followed by a whole one at once). */
        bool cut = dir > 0 ? st->up_cut : st->down_cut;
        size_t last = dir > 0 ? st->up_last : st->down_last;
        size_t enough = (cut && last < want ? last : want) / 2;
        /* The first batch each way starts with the file whose open
         * established the scan (its reader has not read yet): that reader
         * then waits for the batch's first answer on the worker's
         * connection, instead of fetching its file alone while the worker
         * holds that connection, on one it must first open and select
         * (several round trips, issue 13). */
        bool first = dir > 0 ? st->up_last == 0 : st->down_last == 0;
        if (dir > 0) {
                if (st->up_next < st->hi + !first)
                        st->up_next = st->hi + !first;
                if ((st->up_next > st->hi && st->up_next - (st->hi + 1) >= enough) ||
                    st->up_next >= n)
                        return; /* enough is on its way */
        } else {
                if (st->down_next > st->lo + first)
                        st->down_next = st->lo + first;
                if ((st->down_next <= st->lo && st->lo - st->down_next >= enough) ||
                    st->down_next == 0)
                        return;
        }

        struct ahead_job *j = calloc(1, sizeof(*j));
        if (!j || !(j->uids = malloc(want * sizeof(*j->uids))) ||
            !(j->nblocks = malloc(want * sizeof(*j->nblocks))) ||
            !(j->sizes = malloc(want * sizeof(*j->sizes))) || !(j->mailbox = strdup(mb->raw))) {
                if (j)
                        ahead_job_free(j);
                return;
        }
        j->mbox_id = mb->node.id;
        j->uidvalidity = mb->uidvalidity;
        j->stream = st->id;
        /* A header scan brings the starts of messages; no persistent-cache
         * job then (the first blocks on disk are more than the reader wants). */
        if (st->heads > 0)
                j->prefix = (size_t)((st->reach + PREFIX_ROUND - 1) / PREFIX_ROUND * PREFIX_ROUND);
        struct ahead_job *jd = j->prefix ? NULL : ahead_job_like(j, want);
        /* No small tail: a batch the budget would cut less than a quarter
         * before the end takes the end too. Each batch costs a round trip
         * (one worker, one command at a time), and a short last batch cost
         * cat of 1,000 messages (10 MB) one more at the end. */
        if (!probing) {
                uint64_t all = 0, cap = budget + budget / 4;
                size_t k = 0;
                for (size_t i = dir > 0 ? st->up_next : st->down_next;
                     k < want && all <= cap && (dir > 0 ? i < n : i > 0); k++) {
                        const struct cache_msg *m = sorted[dir > 0 ? i++ : --i];
                        all += ahead_want(j, m->size);
                }
                if (all <= cap && all > budget)
                        budget = all + 1;
        }
        uint64_t bytes = 0;
        size_t planned = 0;
        if (dir > 0) {
                size_t i = st->up_next;
                for (; i < n && planned < want && bytes < budget; i++, planned++)
                        bytes += ahead_plan_one(h, mb, sorted[i], j, jd);
                st->up_next = i;
                st->up_last = planned;
                st->up_cut = !probing && bytes >= budget; /* a probe's cut is its own */
        } else {
                size_t i = st->down_next;
                for (; i > 0 && planned < want && bytes < budget; i--, planned++)
                        bytes += ahead_plan_one(h, mb, sorted[i - 1], j, jd);
                st->down_next = i;
                st->down_last = planned;
                st->down_cut = !probing && bytes >= budget;
        }
        if (jd && jd->n && !ahead_enqueue(h, jd)) {
                ahead_job_release(h, jd);
                ahead_job_free(jd);
        } else if (jd && !jd->n) {
                ahead_job_free(jd);
        }
        if (j->n == 0 || !ahead_enqueue(h, j)) {
                /* A full queue: plan these again at the next open. */
                if (j->n && dir > 0)
                        st->up_next -= planned;
                else if (j->n)
                        st->down_next += planned;
                ahead_job_release(h, j);
                ahead_job_free(j);
        }
}

/* A reader of scan stream opened uid, which a queued job of the scan plans
 * but has not claimed: the readers have caught up with the read-ahead. The
 * job claims its blocks now and goes first, so that this reader and the
 * ones after it wait for its one command instead of each fetching its own
 * file (several readers at once outrun one worker: xargs -P, rg). */
static void ahead_promote(struct ahead *h, uint64_t stream, uint32_t uid)
{
        pthread_mutex_lock(&h->mu);
        struct ahead_job **pp = &h->head, *prev = NULL;
        for (; *pp; prev = *pp, pp = &(*pp)->next) {
                struct ahead_job *j = *pp;
                if (j->stream != stream || j->claimed || j->from_disk)
                        continue;
                size_t i = 0;
                while (i < j->n && j->uids[i] != uid)
                        i++;
                if (i == j->n)
                        continue;
                ahead_job_claim(h, j);
                if (prev) { /* to the head of the queue */
                        *pp = j->next;
                        if (h->tail == j)
                                h->tail = prev;
                        j->next = h->head;
                        h->head = j;
                }
                break;
        }
        pthread_mutex_unlock(&h->mu);
}

bool ahead_on_open(struct ahead *h, struct cache_msg *msg, uint64_t *stream)
{
        *stream = 0;
        if (!h)
                return false;
        struct cache_mbox *mb = msg->mbox;
        struct cache_msg **sorted = cache_mbox_sorted(mb);
        if (!sorted)
                return false;
        size_t idx = msg->sorted_idx;
        struct ahead_stream *st = ahead_stream_find(h, mb->node.id, idx);
        if (!st) {
                st = ahead_stream_start(h, mb->node.id, idx);
                *stream = st->id;
                /* The first (or last) name opened right after its folder was
                 * listed: `cat *`, grep -r, find -exec start there. Read-ahead
                 * starts now, with a probing batch that brings this file too,
                 * instead of at the next open: the first file fetched alone
                 * cost a round trip (issue 11). A lone `cat` of that one file
                 * costs a probe's batch (FIRST_BATCH messages, PROBE_BYTES). */
                int dir = idx == 0 ? +1 : idx + 1 == mb->nmsgs ? -1 : 0;
                if (dir == 0 || mb->nmsgs < 2 || !mb->opened_ms ||
                    imap_now_ms() - mb->opened_ms > SCAN_AFTER_LIST_MS)
                        return false; /* a single open is an ordinary read */
                if (dir > 0)
                        st->up_next = idx;
                else
                        st->down_next = idx + 1;
                ahead_plan(h, mb, sorted, st, dir);
                return true; /* a probe: its reads show what the reader reads */
        }
        *stream = st->id;
        st->used = ++h->tick;
        st->opens++;
        if (idx + NEAR >= st->lo && idx <= st->hi + NEAR)
                ahead_promote(h, st->id, msg->uid);
        /* The sorted positions move when the listing changes: keep the
         * scan inside the folder. */
        if (st->up_next > mb->nmsgs)
                st->up_next = mb->nmsgs;
        if (st->down_next > mb->nmsgs)
                st->down_next = mb->nmsgs;
        /* The second open of a scan, of the very next name after the first
         * (or before it), starts read-ahead at once: `cat *`, grep -r, a
         * head loop open the files in listing order, and waiting for a
         * third open cost a round trip (the second file fetched alone). A
         * probe's batch is small (FIRST_BATCH), so two neighbours opened
         * by chance cost little. */
        bool next_up = st->opens == 1 && idx == st->hi + 1;
        bool next_down = st->opens == 1 && idx + 1 == st->lo;
        if (idx > st->hi) {
                st->hi = idx;
                st->up++;
        } else if (idx < st->lo) {
                st->lo = idx;
                st->down++;
        }
        if (st->up >= SCAN_MIN || next_up)
                ahead_plan(h, mb, sorted, st, +1);
        if (st->down >= SCAN_MIN || next_down)
                ahead_plan(h, mb, sorted, st, -1);
        /* The probes, and every file of a header scan, bypass the page
         * cache: their reads show how far the reader reads, and only what
         * the reader asks for is read (the start a header scan brought). */
        return st->heads > 0 || (!st->voted && st->opens <= PROBES);
}

void ahead_on_close(struct ahead *h, uint64_t stream, uint64_t extent, uint64_t size)
{
        if (!h || !stream || extent == 0)
                return; /* not read at all: no vote */
        for (unsigned i = 0; i < STREAMS; i++) {
                struct ahead_stream *st = &h->streams[i];
                if (st->id != stream)
                        continue;
                st->voted = true;
                if (extent < size && extent <= HEAD_EXTENT) {
                        st->heads++;
                        if (extent > st->reach)
                                st->reach = extent;
                } else {
                        st->heads = 0;
                        st->reach = 0;
                }
                return;
        }
}

size_t ahead_head_read(struct ahead *h, uint64_t mbox_id, uint32_t uidvalidity, uint32_t uid,
                       uint64_t off, size_t len, char *buf, int timeout_ms)
{
        if (!h)
                return 0;
        struct block_key key = {mbox_id, uidvalidity, uid, 0};
        struct timespec ts;
        ahead_deadline_ts(timeout_ms, &ts);
        size_t n = 0;
        pthread_mutex_lock(&h->mu);
        struct ahead_head *e;
        while ((e = ahead_head_find(h, &key)) && e->pending && !h->stop)
                if (pthread_cond_timedwait(&h->hcv, &h->mu, &ts) == ETIMEDOUT)
                        break;
        if (e && !e->pending && off < e->len) {
                n = e->len - off < len ? (size_t)(e->len - off) : len;
                memcpy(buf, e->data + off, n);
        }
        pthread_mutex_unlock(&h->mu);
        return n;
}
