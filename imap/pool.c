#include "imap/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/conn.h"
#include "imap/log.h"

/* After a connect or a command that timed out, callers fail at once
 * for this long instead of each waiting out their own deadline while the
 * server is away or silent (the kernel retries a failed read at once, and
 * that retry must not double the time the user waits). */
#define POOL_RETRY_MS 500

struct pool_slot {
        struct imap_session *s;
        bool busy;
        bool bulk;
        bool forget; /* drop the selection when the session comes back */
        int64_t last_used;
};

struct imap_pool {
        const struct imap_account *acct;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        size_t n;
        struct pool_slot *slots;
        int64_t retry_after;
        int last_err;
        bool was_down;
        size_t bulk_busy;
};

struct imap_pool *imap_pool_new(const struct imap_account *acct, size_t size)
{
        struct imap_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->slots = calloc(size ? size : 1, sizeof(*p->slots));
        if (!p->slots) {
                free(p);
                return NULL;
        }
        p->acct = acct;
        p->n = size ? size : 1;
        pthread_mutex_init(&p->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->cv, &ca);
        pthread_condattr_destroy(&ca);
        return p;
}

void imap_pool_free(struct imap_pool *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                imap_session_free(p->slots[i].s);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->slots);
        free(p);
}

void imap_pool_adopt(struct imap_pool *p, struct imap_session *s)
{
        pthread_mutex_lock(&p->mu);
        p->slots[0].s = s;
        pthread_mutex_unlock(&p->mu);
}

static bool pool_selected_is(const struct pool_slot *sl, const char *mailbox)
{
        const char *sel;
        return mailbox && sl->s && !imap_session_broken(sl->s) &&
               (sel = imap_session_selected(sl->s)) && strcmp(sel, mailbox) == 0;
}

/* Best free slot: one with the mailbox selected, else a live session used
 * least recently, else an empty slot. -1 if all are busy. */
static int pool_pick(struct imap_pool *p, const char *mailbox)
{
        int live = -1, empty = -1;
        for (size_t i = 0; i < p->n; i++) {
                struct pool_slot *sl = &p->slots[i];
                if (sl->busy)
                        continue;
                if (pool_selected_is(sl, mailbox))
                        return (int)i;
                if (sl->s && !imap_session_broken(sl->s)) {
                        if (live < 0 || sl->last_used < p->slots[live].last_used)
                                live = (int)i;
                } else if (empty < 0) {
                        empty = (int)i;
                }
        }
        /* A new connection costs more than a SELECT on a live one. */
        return live >= 0 ? live : empty;
}

/* Marks a slot free (lock held); the caller signals waiters. */
static void pool_slot_free(struct imap_pool *p, struct pool_slot *sl)
{
        sl->busy = false;
        if (sl->bulk)
                p->bulk_busy--;
        sl->bulk = false;
}

static void pool_deadline_ts(int64_t deadline_ms, struct timespec *ts)
{
        ts->tv_sec = deadline_ms / 1000;
        ts->tv_nsec = (deadline_ms % 1000) * 1000000;
}

int imap_pool_get(struct imap_pool *p, const char *mailbox, enum imap_pool_use use,
                  struct imap_session **out)
{
        int64_t deadline = imap_now_ms() + p->acct->timeout_ms;
        size_t bulk_max = p->n > 1 ? p->n - 1 : 1;
        int idx = -1;

        pthread_mutex_lock(&p->mu);
        if (imap_now_ms() < p->retry_after) {
                int e = p->last_err;
                pthread_mutex_unlock(&p->mu);
                return e;
        }
        while ((use == IMAP_POOL_BULK && p->bulk_busy >= bulk_max) ||
               (idx = pool_pick(p, mailbox)) < 0) {
                struct timespec ts;
                pool_deadline_ts(deadline, &ts);
                if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT) {
                        pthread_mutex_unlock(&p->mu);
                        log_warn("no IMAP connection became free within the timeout");
                        return -ETIMEDOUT;
                }
        }
        struct pool_slot *sl = &p->slots[idx];
        sl->busy = true;
        sl->bulk = use == IMAP_POOL_BULK;
        if (sl->bulk)
                p->bulk_busy++;
        if (sl->s && !imap_session_broken(sl->s)) {
                *out = sl->s;
                pthread_mutex_unlock(&p->mu);
                return 0;
        }
        if (imap_now_ms() < p->retry_after) {
                int e = p->last_err;
                pool_slot_free(p, sl);
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
                return e;
        }
        struct imap_session *old = sl->s;
        sl->s = NULL;
        pthread_mutex_unlock(&p->mu);

        imap_session_free(old);
        char err[256];
        struct imap_session *s = NULL;
        int r = imap_session_open(p->acct, &s, err, sizeof(err));

        pthread_mutex_lock(&p->mu);
        if (r < 0) {
                if (!p->was_down)
                        log_warn("cannot reach the server: %s", err);
                p->was_down = true;
                /* A refused connection fails fast by itself; only a server
                 * that lets us wait out the deadline earns the pause. */
                if (r == -ETIMEDOUT)
                        p->retry_after = imap_now_ms() + POOL_RETRY_MS;
                p->last_err = r == -EACCES ? -EACCES : -EIO;
                pool_slot_free(p, sl);
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
                return p->last_err;
        }
        if (p->was_down)
                log_info("server reachable again");
        p->was_down = false;
        sl->s = s;
        *out = s;
        pthread_mutex_unlock(&p->mu);
        return 0;
}

bool imap_pool_down(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        bool down = p->was_down;
        pthread_mutex_unlock(&p->mu);
        return down;
}

void imap_pool_forget_mailbox(struct imap_pool *p, const char *mailbox)
{
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n; i++) {
                struct pool_slot *sl = &p->slots[i];
                /* A busy session's selection belongs to the thread using it:
                 * don't read it, just make it start over when it comes back. */
                if (sl->busy) {
                        sl->forget = true;
                        continue;
                }
                const char *sel = sl->s ? imap_session_selected(sl->s) : NULL;
                if (sel && strcmp(sel, mailbox) == 0)
                        imap_session_set_selected(sl->s, NULL, NULL);
        }
        pthread_mutex_unlock(&p->mu);
}

void imap_pool_put(struct imap_pool *p, struct imap_session *s)
{
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n; i++) {
                if (p->slots[i].s != s)
                        continue;
                pool_slot_free(p, &p->slots[i]);
                if (p->slots[i].forget)
                        imap_session_set_selected(s, NULL, NULL);
                p->slots[i].forget = false;
                p->slots[i].last_used = imap_now_ms();
                if (imap_session_broken(s)) {
                        if (imap_session_timed_out(s)) {
                                p->retry_after = imap_now_ms() + POOL_RETRY_MS;
                                p->last_err = -EIO;
                        }
                        imap_session_free(s);
                        p->slots[i].s = NULL;
                }
                break;
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
}
