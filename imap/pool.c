#include "imap/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/conn.h"
#include "imap/log.h"
#include "imap/rcode.h"

/* After a connect or a command that timed out, callers fail at once
 * for this long instead of each waiting out their own deadline while the
 * server is away or silent (the kernel retries a failed read at once, and
 * that retry must not double the time the user waits). */
#define POOL_RETRY_MS 500
/* A caller that finds every session busy waits this many round trips for
 * one to come back before it connects another (see pool_spare_wait), and
 * never longer than POOL_SPARE_WAIT_MAX_MS. */
#define POOL_SPARE_WAIT_NUM 3
#define POOL_SPARE_WAIT_DEN 2
#define POOL_SPARE_WAIT_MAX_MS 1000

struct pool_slot {
        struct imap_session *s;
        bool busy;
        bool bulk;
        bool forget;  /* drop the selection when the session comes back */
        char *wanted; /* the mailbox it was taken for, while busy (NULL: any) */
        int64_t last_used;
};

struct imap_pool {
        const struct imap_account *acct;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        size_t n;
        size_t use_n; /* slots operations may use: n, less one live sync took */
        struct pool_slot *slots;
        int64_t retry_after;
        int last_err;
        bool was_down;
        int down_err; /* why the last connect failed (imap_pool_down_err) */
        size_t bulk_busy;
        imap_pool_leave_fn leave_fn;
        void *leave_ctx;
        uint64_t appendlimit; /* from the last session opened */
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
        p->use_n = p->n;
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
        for (size_t i = 0; i < p->n; i++) {
                imap_session_free(p->slots[i].s);
                free(p->slots[i].wanted);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->slots);
        free(p);
}

void imap_pool_adopt(struct imap_pool *p, struct imap_session *s)
{
        pthread_mutex_lock(&p->mu);
        p->slots[0].s = s;
        p->appendlimit = imap_session_caps(s)->appendlimit;
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
        for (size_t i = 0; i < p->use_n; i++) {
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
        free(sl->wanted);
        sl->wanted = NULL;
        if (sl->bulk)
                p->bulk_busy--;
        sl->bulk = false;
}

static void pool_deadline_ts(int64_t deadline_ms, struct timespec *ts)
{
        ts->tv_sec = deadline_ms / 1000;
        ts->tv_nsec = (deadline_ms % 1000) * 1000000;
}

/* How long a caller that would have to connect waits for a busy session
 * instead (lock held): a new connection costs several round trips (TCP,
 * TLS, login, SELECT: ~80 ms at 20 ms RTT) while a busy session is often
 * done within one or two (a LIST, a small FETCH). 1.5 times the quickest
 * round trip measured on a busy session; 0 (connect at once) if none is
 * busy or none has been measured. Bulk work counts too: on a fast link a
 * read-ahead batch is back within a round trip or two (waiting only for
 * sessions busy with listings opened as many connections at the start of a
 * grep -r as before, at the same speed). */
static int64_t pool_spare_wait(const struct imap_pool *p)
{
        int64_t rtt = -1;
        for (size_t i = 0; i < p->n; i++) {
                const struct pool_slot *sl = &p->slots[i];
                /* Only its atomic round trip: the thread using a busy
                 * session may be marking it broken right now. */
                if (!sl->busy || !sl->s)
                        continue;
                int64_t r = imap_session_rtt_ms(sl->s);
                if (r >= 0 && (rtt < 0 || r < rtt))
                        rtt = r;
        }
        if (rtt < 0)
                return 0;
        int64_t w = rtt * POOL_SPARE_WAIT_NUM / POOL_SPARE_WAIT_DEN;
        return w < 1 ? 1 : w > POOL_SPARE_WAIT_MAX_MS ? POOL_SPARE_WAIT_MAX_MS : w;
}

static bool pool_slot_live(const struct pool_slot *sl)
{
        return sl->s && !imap_session_broken(sl->s);
}

int imap_pool_get(struct imap_pool *p, const char *mailbox, enum imap_pool_use use,
                  struct imap_session **out)
{
        int64_t deadline = imap_now_ms() + p->acct->timeout_ms;
        int idx = -1;

        pthread_mutex_lock(&p->mu);
        size_t bulk_max = p->use_n > 1 ? p->use_n - 1 : 1; /* use_n: live sync's, lock held */
        if (imap_now_ms() < p->retry_after) {
                int e = p->last_err;
                pthread_mutex_unlock(&p->mu);
                return e;
        }
        int64_t spare_until = -1; /* waiting for a busy session rather than connecting */
        for (;;) {
                bool can_connect = false;
                if (use != IMAP_POOL_BULK || p->bulk_busy < bulk_max) {
                        idx = pool_pick(p, mailbox);
                        if (idx >= 0 && pool_slot_live(&p->slots[idx]))
                                break;
                        can_connect = idx >= 0;
                }
                if (can_connect && spare_until < 0) {
                        spare_until = imap_now_ms() + pool_spare_wait(p);
                        if (spare_until > deadline)
                                spare_until = deadline;
                }
                if (can_connect && imap_now_ms() >= spare_until)
                        break; /* none came back in time: connect */
                struct timespec ts;
                pool_deadline_ts(can_connect ? spare_until : deadline, &ts);
                if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT && !can_connect &&
                    imap_now_ms() >= deadline) {
                        pthread_mutex_unlock(&p->mu);
                        log_warn("no IMAP connection became free within the timeout");
                        return -ETIMEDOUT;
                }
        }
        struct pool_slot *sl = &p->slots[idx];
        sl->busy = true;
        sl->wanted = mailbox ? strdup(mailbox) : NULL;
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
                p->down_err = r;
                /* A refused connection fails fast by itself; only a server
                 * that lets us wait out the deadline earns the pause. */
                if (r == -ETIMEDOUT)
                        p->retry_after = imap_now_ms() + POOL_RETRY_MS;
                /* The server asked us to wait longer than a caller's
                 * deadline: until then callers fail at once with EAGAIN
                 * ("try again later") rather than each asking again. */
                if (r == -EAGAIN)
                        p->retry_after = imap_now_ms() + imap_throttle_left_ms();
                p->last_err = r == -EACCES || r == -EAGAIN ? r : -EIO;
                pool_slot_free(p, sl);
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
                return p->last_err;
        }
        if (p->was_down)
                log_info("server reachable again");
        p->was_down = false;
        p->appendlimit = imap_session_caps(s)->appendlimit;
        sl->s = s;
        *out = s;
        pthread_mutex_unlock(&p->mu);
        return 0;
}

bool imap_pool_reserve_one(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        bool ok = p->use_n > 1;
        if (ok) {
                struct pool_slot *sl = &p->slots[--p->use_n];
                if (!sl->busy) {
                        imap_session_free(sl->s);
                        sl->s = NULL;
                }
        }
        pthread_mutex_unlock(&p->mu);
        return ok;
}

void imap_pool_unreserve_one(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        if (p->use_n < p->n)
                p->use_n++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
}

uint64_t imap_pool_appendlimit(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        uint64_t v = p->appendlimit;
        pthread_mutex_unlock(&p->mu);
        return v;
}

bool imap_pool_down(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        bool down = p->was_down;
        pthread_mutex_unlock(&p->mu);
        return down;
}

int imap_pool_down_err(struct imap_pool *p)
{
        pthread_mutex_lock(&p->mu);
        int e = p->was_down ? p->down_err : 0;
        pthread_mutex_unlock(&p->mu);
        return e;
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
                if (i >= p->use_n) {
                        /* Its slot went to live sync meanwhile. */
                        imap_session_free(s);
                        p->slots[i].s = NULL;
                } else if (imap_session_broken(s)) {
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

bool imap_mailbox_within(const char *sel, const char *mailbox, char delim)
{
        size_t n = strlen(mailbox);
        return sel && strncmp(sel, mailbox, n) == 0 &&
               (sel[n] == '\0' || (delim && sel[n] == delim));
}

void imap_pool_on_leave(struct imap_pool *p, imap_pool_leave_fn fn, void *ctx)
{
        pthread_mutex_lock(&p->mu);
        p->leave_fn = fn;
        p->leave_ctx = ctx;
        pthread_mutex_unlock(&p->mu);
}

/* Leaves the selected mailbox without expunging anything: UNSELECT (RFC
 * 3691), or else EXAMINE of a name that can't exist, whose failure leaves
 * nothing selected (RFC 3501 6.3.1). */
static int pool_unselect(struct imap_session *s)
{
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_set_selected(s, NULL, NULL);
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, imap_session_caps(s)->unselect ? "UNSELECT" : "EXAMINE \"\"");
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : 0;
}

/* A slot that must leave mailbox (lock held): 1 idle with it selected, 2
 * busy and taken for it (wait), 0 neither. */
static int pool_slot_in(const struct pool_slot *sl, const struct imap_session *self,
                        const char *mailbox, char delim)
{
        if (!sl->s || sl->s == self)
                return 0;
        if (sl->busy)
                return imap_mailbox_within(sl->wanted, mailbox, delim) ? 2 : 0;
        return !imap_session_broken(sl->s) &&
                       imap_mailbox_within(imap_session_selected(sl->s), mailbox, delim)
                   ? 1
                   : 0;
}

int imap_pool_leave_mailbox(struct imap_pool *p, struct imap_session *self, const char *mailbox,
                            char delim)
{
        int r = 0;
        if (self && imap_mailbox_within(imap_session_selected(self), mailbox, delim))
                r = pool_unselect(self);
        int64_t deadline = imap_now_ms() + p->acct->timeout_ms;
        pthread_mutex_lock(&p->mu);
        for (;;) {
                int idx = -1;
                bool wait = false;
                for (size_t i = 0; i < p->n && idx < 0; i++) {
                        int in = pool_slot_in(&p->slots[i], self, mailbox, delim);
                        if (in == 1)
                                idx = (int)i;
                        wait |= in == 2;
                }
                if (idx >= 0) {
                        /* Take it like pool_get does, so nobody else uses it meanwhile. */
                        struct pool_slot *sl = &p->slots[idx];
                        sl->busy = true;
                        pthread_mutex_unlock(&p->mu);
                        if (pool_unselect(sl->s) < 0)
                                log_dbg("a session broke while leaving %s", mailbox);
                        imap_pool_put(p, sl->s);
                        pthread_mutex_lock(&p->mu);
                        continue;
                }
                if (!wait)
                        break;
                struct timespec ts;
                pool_deadline_ts(deadline, &ts);
                if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT) {
                        log_warn("a session still busy in %s: going ahead", mailbox);
                        break;
                }
        }
        imap_pool_leave_fn fn = p->leave_fn;
        void *ctx = p->leave_ctx;
        pthread_mutex_unlock(&p->mu);
        if (fn)
                fn(ctx, mailbox, delim);
        return r;
}
