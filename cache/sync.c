#include "cache/sync.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <uthash.h>

#include "cache/account.h"
#include "imap/array.h"
#include "cache/account_write.h"
#include "cache/poll_pace.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/ops.h"
#include "imap/ops_status.h"
#include "imap/rcode.h"

/* Servers drop an IDLE after 30 minutes of silence (RFC 2177): renew it
 * before that. */
#define IDLE_RENEW_MS (25 * 60 * 1000)
/* Pause before watching a folder just opened (see sync_main). */
#define SWITCH_DELAY_MS 300
/* Waits between attempts while the server can't be reached. */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
/* How long a DELETE or RENAME waits for the watcher to leave that folder. */
#define LEAVE_MAX_MS 2000
/* Sharing the pool's only connection (connections=1): how often the
 * folder in use is checked (NOOP or STATUS between operations). */
#define SHARED_WATCH_MS 5000
/* A server that asks us to slow down: the next round waits twice the poll
 * interval, doubling while it keeps asking, up to THROTTLE_MAX_FACTOR
 * intervals (or longer if the server suggests a longer wait). */
#define THROTTLE_MAX_FACTOR 16

struct sync {
        struct account *a;
        int poll_ms;
        int wake_fd;
        pthread_t thread;
        bool started;
        pthread_mutex_t mu;
        pthread_cond_t cv; /* signalled when the thread ends */
        bool stop;
        bool finished;               /* the thread has ended (guarded by mu) */
        char *watched;               /* guarded by mu */
        struct imap_session *s;      /* the watcher's own connection (thread only) */
        unsigned connects;           /* sessions opened so far (thread only) */
        bool notify;                 /* the server reports all mailboxes (NOTIFY) */
        char *in;                    /* what s has selected (guarded by mu) */
        pthread_cond_t moved;        /* in changed */
        struct imap_retry bad;       /* folders whose STATUS failed (thread) */
        struct sync_folder *folders; /* poll pace per folder (guarded by mu) */
        unsigned throttled;          /* rounds in a row the server asked us to slow down */
        unsigned failed_rounds;      /* rounds in a row whose connection broke */
        int64_t not_before;          /* no poll round before this (thread) */
        bool own_slot;               /* s took one of the pool's slots */
        int8_t list_status;          /* the server has LIST-STATUS (-1: not known yet) */
};

/* When a folder was last used (opened with sync_watch, or listed by someone
 * else) and when it is to be polled next (see cache/poll_pace.h). */
struct sync_folder {
        char *raw;
        struct poll_pace pace;
        int64_t checked_ms; /* its listing's checked_ms as we last saw it */
        UT_hash_handle hh;
};

/* Records the outcome of asking about name (STATUS, or SELECT of the
 * watched folder): after a failure it is asked again only after a back-off
 * that doubles each time (from one poll interval up to eight), so that a
 * folder the server refuses is not asked about, and logged, every time.
 * Returns that wait. */
static int sync_asked(struct sync *sy, const char *name, int r)
{
        bool back;
        int wait = imap_retry_note(&sy->bad, name, r, sy->poll_ms, 8 * sy->poll_ms, &back);
        if (back)
                log_info("sync: %s answers again", name);
        else if (wait)
                log_dbg("sync: asking about %s again in %d ms", name, wait);
        return wait;
}

static void sync_set_in(struct sync *sy, const char *mailbox)
{
        pthread_mutex_lock(&sy->mu);
        free(sy->in);
        sy->in = mailbox ? strdup(mailbox) : NULL;
        pthread_cond_broadcast(&sy->moved);
        pthread_mutex_unlock(&sy->mu);
}

static void sync_leave(void *ctx, const char *mailbox, char delim);

/* Just before the SELECT of target: false if the folder to watch changed
 * meanwhile. Checked and noted under the lock, so that sync_leave either
 * sees the thread in target and waits, or the thread sees the change. */
static bool sync_enter(struct sync *sy, const char *target)
{
        pthread_mutex_lock(&sy->mu);
        bool same = strcmp(sy->watched ? sy->watched : "INBOX", target) == 0;
        if (same) {
                free(sy->in);
                sy->in = strdup(target);
        }
        pthread_mutex_unlock(&sy->mu);
        return same;
}

struct sync *sync_new(struct account *a, int poll_ms)
{
        struct sync *sy = calloc(1, sizeof(*sy));
        if (!sy)
                return NULL;
        sy->a = a;
        sy->poll_ms = poll_ms;
        sy->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sy->wake_fd < 0) {
                free(sy);
                return NULL;
        }
        pthread_mutex_init(&sy->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&sy->cv, &ca);
        pthread_cond_init(&sy->moved, &ca);
        pthread_condattr_destroy(&ca);
        imap_pool_on_leave(a->pool, sync_leave, sy);
        /* Our connection is one of the `connections` (big providers count
         * every connection of an account): it takes one of the pool's slots.
         * With connections=1 there is none to take: we share the pool's. */
        sy->own_slot = imap_pool_reserve_one(a->pool);
        sy->list_status = -1;
        return sy;
}

static void sync_wake(struct sync *sy)
{
        uint64_t one = 1;
        if (write(sy->wake_fd, &one, sizeof(one)) < 0)
                return; /* already pending: the thread wakes anyway */
}

static void sync_clear_wake(struct sync *sy)
{
        uint64_t v;
        while (read(sy->wake_fd, &v, sizeof(v)) > 0)
                ;
}

static bool sync_stopping(struct sync *sy)
{
        pthread_mutex_lock(&sy->mu);
        bool stop = sy->stop;
        pthread_mutex_unlock(&sy->mu);
        return stop;
}

/* The poll state of raw, made on first sight (mu held): a folder first seen
 * has just been listed, so it counts as used now. NULL on ENOMEM. */
static struct sync_folder *sync_folder_get(struct sync *sy, const char *raw, int64_t now)
{
        struct sync_folder *f;
        HASH_FIND_STR(sy->folders, raw, f);
        if (f)
                return f;
        f = calloc(1, sizeof(*f));
        if (!f || !(f->raw = strdup(raw))) {
                free(f);
                return NULL;
        }
        poll_pace_init(&f->pace, sy->poll_ms, now);
        HASH_ADD_KEYPTR(hh, sy->folders, f->raw, strlen(f->raw), f);
        return f;
}

void sync_watch(struct sync *sy, const char *mailbox)
{
        if (!sy || !mailbox)
                return;
        pthread_mutex_lock(&sy->mu);
        int64_t now = imap_now_ms();
        struct sync_folder *f = sync_folder_get(sy, mailbox, now);
        if (f)
                poll_pace_used(&f->pace, sy->poll_ms, now);
        bool same = sy->watched && strcmp(sy->watched, mailbox) == 0;
        if (!same) {
                char *w = strdup(mailbox);
                if (w) {
                        free(sy->watched);
                        sy->watched = w;
                }
        }
        pthread_mutex_unlock(&sy->mu);
        if (!same)
                sync_wake(sy);
}

/* Before our own DELETE or RENAME of mailbox: the watcher moves to INBOX
 * and this returns once its session has left mailbox, or after LEAVE_MAX_MS:
 * the thread may be busy (a refresh waiting for the pool session the caller
 * holds), and the worst that going ahead costs is a server that drops the
 * watcher's connection, which then reconnects. The wake-up is repeated
 * because the thread may be between IDLE and its next wait when the first
 * one comes. */
static void sync_leave(void *ctx, const char *mailbox, char delim)
{
        struct sync *sy = ctx;
        int64_t deadline = imap_now_ms() + LEAVE_MAX_MS;
        pthread_mutex_lock(&sy->mu);
        if (imap_mailbox_within(sy->watched, mailbox, delim)) {
                free(sy->watched);
                sy->watched = strdup("INBOX");
                sync_wake(sy); /* out of the pause before a switch, too */
        }
        while (imap_mailbox_within(sy->in, mailbox, delim) && imap_now_ms() < deadline) {
                pthread_mutex_unlock(&sy->mu);
                sync_wake(sy);
                pthread_mutex_lock(&sy->mu);
                int64_t until = imap_now_ms() + 50;
                struct timespec ts = {until / 1000, (until % 1000) * 1000000};
                pthread_cond_timedwait(&sy->moved, &sy->mu, &ts);
        }
        pthread_mutex_unlock(&sy->mu);
}

/* Waits on the wake descriptor; true if woken (or told to stop). A stop
 * whose wake-up an earlier sync_clear_wake() ate is seen here too: sleeps
 * can be as long as BACKOFF_MAX_MS. */
static bool sync_sleep(struct sync *sy, int ms)
{
        if (sync_stopping(sy))
                return true;
        struct pollfd p = {.fd = sy->wake_fd, .events = POLLIN};
        int r = poll(&p, 1, ms);
        sync_clear_wake(sy);
        return r > 0;
}

/* The id of mailbox raw's directory, 0 if unknown or not listed yet (a
 * folder nobody looked at needs no refresh). */
static uint64_t sync_listed_id(struct account *a, const char *raw, uint32_t *uidvalidity,
                               uint32_t *uidnext, uint32_t *exists, uint64_t *modseq)
{
        uint64_t id = 0;
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        if (m && m->state != CACHE_LISTING_NONE) {
                id = m->node.id;
                *uidvalidity = m->uidvalidity;
                *uidnext = m->uidnext;
                *exists = (uint32_t)m->nmsgs;
                *modseq = m->highestmodseq;
        }
        cache_unlock(a->cache);
        return id;
}

/* True if the watched folder's listing is stale or disagrees with what the
 * server just said about it. */
static bool sync_differs(struct account *a, const char *raw, const struct imap_select_info *si)
{
        bool differs = false;
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        if (m && m->state != CACHE_LISTING_NONE) {
                differs = m->state == CACHE_LISTING_STALE || m->uidvalidity != si->uidvalidity;
                bool moved = m->nmsgs != si->exists || (si->uidnext && m->uidnext != si->uidnext) ||
                             (m->highestmodseq && si->highestmodseq &&
                              m->highestmodseq != si->highestmodseq);
                /* Our own moves and removals still on their way (or just
                 * done) move the counts and HIGHESTMODSEQ too: no news
                 * (test_link's xargs -P16 rm re-listed the folder 30 times
                 * under load). A change of another client's meanwhile still
                 * shows in counts own.c can't explain, and its flags come
                 * with the next listing check. */
                if (!differs && moved && a->own && account_select_explained(a, raw, si))
                        moved = false;
                differs = differs || moved;
        }
        cache_unlock(a->cache);
        return differs;
}

/* True if news of raw's listing came (it is stale), or it has none yet. */
static bool sync_is_stale(struct account *a, const char *raw)
{
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        bool stale = !m || m->state != CACHE_LISTING_VALID;
        cache_unlock(a->cache);
        return stale;
}

/* Refreshes one listing now; the observer invalidates what changed. */
static void sync_refresh(struct sync *sy, const char *raw)
{
        uint32_t uv, un, ex;
        uint64_t ms;
        uint64_t id = sync_listed_id(sy->a, raw, &uv, &un, &ex, &ms);
        if (!id)
                return;
        cache_lock(sy->a->cache);
        cache_mbox_mark_stale(sy->a->cache, raw);
        cache_unlock(sy->a->cache);
        int r = account_refresh_listing(sy->a, id, 0);
        if (r < 0)
                log_dbg("sync: refreshing %s failed: %d", raw, r);
        /* This refresh is ours, not a sign that someone uses the folder. */
        int64_t checked = 0;
        cache_lock(sy->a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(sy->a->cache, raw);
        if (m)
                checked = m->checked_ms;
        cache_unlock(sy->a->cache);
        pthread_mutex_lock(&sy->mu);
        struct sync_folder *f;
        HASH_FIND_STR(sy->folders, raw, f);
        if (f)
                f->checked_ms = checked;
        pthread_mutex_unlock(&sy->mu);
}

struct sync_names {
        char **v;
        size_t n, cap;
};

static void sync_names_add(struct sync_names *l, const char *raw)
{
        if (IMAP_ARRAY_GROW(l->v, l->n, l->cap, 16) < 0)
                return;
        if ((l->v[l->n] = strdup(raw)))
                l->n++;
}

/* Every folder we have listed (their names: the tree may change meanwhile). */
static void sync_collect(struct cache_mbox *m, struct sync_names *out)
{
        struct cache_mbox *ch, *tmp;
        if (m->raw && m->state != CACHE_LISTING_NONE)
                sync_names_add(out, m->raw);
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                sync_collect(ch, out);
        }
}

/* The safety poll where NOTIFY reports changes (servers drop some of its
 * reports): the tree, then STATUS of every listed folder but the watched one
 * (IDLE covers it), one after another, as before issue 18. */
static int sync_poll_each(struct sync *sy, const char *watched)
{
        struct account *a = sy->a;
        /* At the first connect, a tree checked within the revalidation
         * window is what a lookup would show too: on a fresh mount, the
         * mount's own LIST is a few round trips old, and listing it again
         * would cost the first reader of a folder a round trip on the pool's
         * connection (issue 11). Not after a reconnect: NOTIFY was off
         * meanwhile, and a folder renamed then (Dovecot drops a session whose
         * selected folder is renamed: test_sync) shows only in a LIST. */
        cache_lock(a->cache);
        bool fresh = sy->connects <= 1 && a->tree_checked_ms &&
                     imap_now_ms() - a->tree_checked_ms < a->opts.revalidate_ms;
        cache_unlock(a->cache);
        int r = fresh ? 0 : account_refresh_tree(a, 0);
        if (r < 0)
                return r;
        struct sync_names names = {0};
        cache_lock(a->cache);
        sync_collect(cache_root(a->cache), &names);
        cache_unlock(a->cache);
        for (size_t i = 0; i < names.n && r != -EIO && !sync_stopping(sy); i++) {
                if (watched && strcmp(names.v[i], watched) == 0)
                        continue;
                uint32_t uv = 0, un = 0, ex = 0;
                uint64_t ms = 0;
                if (!sync_listed_id(a, names.v[i], &uv, &un, &ex, &ms) ||
                    !imap_retry_due(&sy->bad, names.v[i]))
                        continue;
                struct imap_status_info st;
                r = imap_status(sy->s, names.v[i], &st);
                sync_asked(sy, names.v[i], r);
                if (r == -ENOENT)
                        account_forget_mailbox(a, names.v[i]); /* gone: leaves the tree now */
                if (imap_errno_backoff(r))
                        break; /* the server asks us to slow down: the rest waits too */
                if (r < 0)
                        continue;
                bool changed = st.uidvalidity != uv || st.uidnext != un || st.messages != ex ||
                               (ms && st.highestmodseq && st.highestmodseq != ms);
                if (changed)
                        sync_refresh(sy, names.v[i]);
        }
        for (size_t i = 0; i < names.n; i++)
                free(names.v[i]);
        free(names.v);
        return r == -EIO ? r : 0;
}

/* True if what STATUS says of raw differs from its listing; the listing is
 * then refreshed. Folders nobody listed are left alone. */
static bool sync_compare(struct sync *sy, const char *raw, const struct imap_status_info *st)
{
        uint32_t uv = 0, un = 0, ex = 0;
        uint64_t ms = 0;
        if (!sync_listed_id(sy->a, raw, &uv, &un, &ex, &ms))
                return false;
        bool changed = st->uidvalidity != uv || st->uidnext != un || st->messages != ex ||
                       (ms && st->highestmodseq && st->highestmodseq != ms);
        if (changed)
                sync_refresh(sy, raw);
        return changed;
}

/* After a folder's STATUS (err 0) in a round that began at now. */
static void sync_folder_asked(struct sync *sy, const char *raw, int64_t now, bool changed)
{
        pthread_mutex_lock(&sy->mu);
        struct sync_folder *f = sync_folder_get(sy, raw, now);
        if (f)
                poll_pace_asked(&f->pace, sy->poll_ms, now, changed);
        pthread_mutex_unlock(&sy->mu);
}

struct sync_round {
        struct sync *sy;
        const char *watched;
        int64_t now;
};

/* One folder's STATUS from LIST-STATUS. */
static void sync_on_status(void *ctx, const char *raw, const struct imap_status_info *st)
{
        struct sync_round *rd = ctx;
        if ((rd->watched && strcmp(raw, rd->watched) == 0) || sync_stopping(rd->sy))
                return;
        uint32_t uv, un, ex;
        uint64_t ms;
        if (!sync_listed_id(rd->sy->a, raw, &uv, &un, &ex, &ms))
                return; /* never visited: nothing to keep current */
        bool changed = sync_compare(rd->sy, raw, st);
        sync_folder_asked(rd->sy, raw, rd->now, changed);
        sync_asked(rd->sy, raw, 0);
}

struct sync_due {
        char *raw;
        int64_t checked_ms;
};

/* The listed folders (with their listings' checked_ms), as of now. */
static void sync_collect_due(struct cache_mbox *m, struct sync_due **v, size_t *n, size_t *cap)
{
        struct cache_mbox *ch, *tmp;
        if (m->raw && m->state != CACHE_LISTING_NONE && IMAP_ARRAY_GROW(*v, *n, *cap, 64) == 0 &&
            ((*v)[*n].raw = strdup(m->raw)))
                (*v)[(*n)++].checked_ms = m->checked_ms;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                sync_collect_due(ch, v, n, cap);
        }
}

/* The folders whose turn it is in a round that begins at now: listed ones,
 * not the watched one (IDLE covers it), not ones in a back-off, and only
 * when their interval has passed. A folder whose listing someone else
 * refreshed since we last looked has been listed: it counts as used. The
 * state of folders no longer listed is dropped. Returns how many of v are
 * due (moved to the front; the caller frees all n names). */
static size_t sync_pick(struct sync *sy, const char *watched, int64_t now, struct sync_due *v,
                        size_t n)
{
        size_t due = 0;
        pthread_mutex_lock(&sy->mu);
        struct sync_folder *f, *tmp;
        /* Move what is listed to seen, then drop the rest. */
        struct sync_folder *seen = NULL;
        for (size_t i = 0; i < n; i++) {
                struct sync_folder *e = sync_folder_get(sy, v[i].raw, now);
                if (!e)
                        continue;
                HASH_DEL(sy->folders, e);
                HASH_ADD_KEYPTR(hh, seen, e->raw, strlen(e->raw), e);
                if (e->checked_ms != v[i].checked_ms) {
                        if (e->checked_ms)
                                poll_pace_used(&e->pace, sy->poll_ms, now);
                        e->checked_ms = v[i].checked_ms;
                }
                bool mine = watched && strcmp(v[i].raw, watched) == 0;
                if (!mine && poll_pace_due(&e->pace, now) && imap_retry_due(&sy->bad, v[i].raw)) {
                        struct sync_due t = v[due];
                        v[due++] = v[i];
                        v[i] = t;
                }
        }
        HASH_ITER(hh, sy->folders, f, tmp)
        {
                HASH_DEL(sy->folders, f);
                free(f->raw);
                free(f);
        }
        sy->folders = seen;
        pthread_mutex_unlock(&sy->mu);
        return due;
}

/* True if the answers of a round ask the whole account to slow down: a
 * refused tree command, a throttling text or a suggested wait, or most of
 * the STATUS answers (of `asked` sent). Else a folder or two that the server
 * can't serve now ([UNAVAILABLE] of one mailbox) are backed off one by one,
 * and the others keep their pace. */
static bool sync_throttled(int r, const struct imap_slowdown *slow, size_t asked)
{
        if (imap_errno_backoff(r))
                return true;
        if (!slow->asked)
                return false;
        return slow->suggested_ms > 0 || strcasestr(slow->text, "throttl") ||
               (size_t)slow->count * 2 > asked;
}

/* The wait before the next round: the poll interval, or longer after a
 * round that the server asked to slow down (throttled) or whose connection
 * broke (r == -EIO): never a tight loop. One log line when the server starts
 * asking. */
static int sync_pace(struct sync *sy, int r, const struct imap_slowdown *slow, bool throttled)
{
        sy->not_before = 0;
        if (throttled) {
                sy->throttled++;
                int wait = imap_backoff_ms(sy->throttled + 1, sy->poll_ms,
                                           THROTTLE_MAX_FACTOR * sy->poll_ms, slow->suggested_ms);
                sy->not_before = imap_now_ms() + wait;
                if (sy->throttled == 1)
                        log_warn("sync: the server asks us to slow down (%s): polling every %d s "
                                 "or less often until it stops",
                                 slow->asked ? slow->text : "throttled", (wait + 999) / 1000);
                else
                        log_dbg("sync: still throttled: next poll in %d ms", wait);
                return wait;
        }
        if (sy->throttled)
                log_info("sync: the server no longer asks us to slow down");
        sy->throttled = 0;
        if (r == -EIO) {
                /* The first time a reconnect polls at once (anything may have
                 * changed meanwhile); a server that keeps dropping us in the
                 * middle of rounds is polled less and less often. */
                int wait = sy->failed_rounds++
                               ? imap_backoff_ms(sy->failed_rounds, sy->poll_ms,
                                                 THROTTLE_MAX_FACTOR * sy->poll_ms, 0)
                               : sy->poll_ms;
                if (sy->failed_rounds > 1)
                        sy->not_before = imap_now_ms() + wait;
                return wait;
        }
        sy->failed_rounds = 0;
        return sy->poll_ms;
}

/* The session for the thread's own commands (STATUS): its own, or with
 * connections=1 the pool's, borrowed between operations (never held across
 * a call into the account, which takes a pool session itself). NULL with
 * *err set if there is none. */
static struct imap_session *sync_borrow(struct sync *sy, int *err)
{
        struct imap_session *s = NULL;
        if (sy->own_slot) {
                *err = sy->s ? 0 : -EIO;
                return sy->s;
        }
        *err = imap_pool_get(sy->a->pool, NULL, IMAP_POOL_META, &s);
        if (*err == 0 && sy->list_status < 0)
                sy->list_status = imap_session_caps(s)->list_status;
        return *err == 0 ? s : NULL;
}

static void sync_give_back(struct sync *sy, struct imap_session *s)
{
        if (s && !sy->own_slot)
                imap_pool_put(sy->a->pool, s);
}

/* Whether the server has LIST-STATUS, from our connection or, sharing the
 * pool's, from the first one borrowed. */
static bool sync_list_status(struct sync *sy)
{
        if (sy->own_slot)
                return sy->s && imap_session_caps(sy->s)->list_status;
        if (sy->list_status < 0) {
                int err;
                sync_give_back(sy, sync_borrow(sy, &err));
        }
        return sy->list_status > 0;
}

/* One round of polling without NOTIFY, in about two round trips however
 * many folders there are: where the server has LIST-STATUS, the tree and
 * every folder's STATUS in one command; otherwise LIST, then the STATUS of
 * every folder whose turn it is (sync_pick), all pipelined on our session.
 * Only folders whose STATUS differs from their listing are listed again.
 * Returns the wait before the next round. */
static int sync_poll_round(struct sync *sy, const char *watched)
{
        struct account *a = sy->a;
        int64_t now = imap_now_ms();
        struct imap_slowdown slow = {0};
        bool with_status = false;
        int r;
        if (sync_list_status(sy)) {
                struct sync_round rd = {sy, watched, now};
                r = account_refresh_tree_status(a, sync_on_status, &rd, &with_status, &slow);
                if (r < 0 || with_status)
                        return sync_pace(sy, r, &slow, sync_throttled(r, &slow, 1));
        } else {
                r = account_refresh_tree(a, 0);
                if (r < 0)
                        return sync_pace(sy, r, &slow, sync_throttled(r, &slow, 1));
        }
        struct sync_due *v = NULL;
        size_t n = 0, cap = 0;
        cache_lock(a->cache);
        sync_collect_due(cache_root(a->cache), &v, &n, &cap);
        cache_unlock(a->cache);
        size_t due = sync_pick(sy, watched, now, v, n);
        struct imap_status_req *req = due ? calloc(due, sizeof(*req)) : NULL;
        if (due && !req)
                r = -ENOMEM;
        for (size_t i = 0; req && i < due; i++)
                req[i].mailbox = v[i].raw;
        if (req && !sync_stopping(sy)) {
                struct imap_session *s = sync_borrow(sy, &r);
                if (s)
                        r = imap_status_many(s, req, due, &slow);
                sync_give_back(sy, s);
        }
        bool throttled = r == 0 && sync_throttled(r, &slow, due);
        for (size_t i = 0; r == 0 && i < due && !sync_stopping(sy); i++) {
                const char *raw = req[i].mailbox;
                int err = req[i].err;
                if (imap_errno_backoff(err) && throttled)
                        continue; /* the whole account waits: see sync_pace */
                sync_asked(sy, raw, err);
                if (err == -ENOENT)
                        account_forget_mailbox(a, raw); /* gone: leaves the tree now */
                if (err < 0)
                        continue;
                sync_folder_asked(sy, raw, now, sync_compare(sy, raw, &req[i].st));
        }
        free(req);
        for (size_t i = 0; i < n; i++)
                free(v[i].raw);
        free(v);
        log_dbg("sync: polled %zu of %zu folders", due, n);
        return sync_pace(sy, r, &slow, throttled);
}

/* Asks the server to report, while we IDLE, changes in every mailbox: the
 * selected one as usual, the others as STATUS, new/renamed/deleted ones as
 * LIST (NOTIFY, RFC 5465). One connection then covers the whole account. */
static void sync_notify(struct sync *sy)
{
        sy->notify = false;
        if (!imap_session_caps(sy->s)->notify)
                return;
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(sy->s, &cmd);
        imap_cmd_add(&cmd, "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) "
                           "(personal (MessageNew MessageExpunge FlagChange MailboxName))");
        int r = imap_session_cmd(sy->s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        sy->notify = r == 0 && res.status == IMAP_ST_OK;
        log_dbg("sync: NOTIFY %s", sy->notify ? "on" : "refused: polling");
}

/* After a NOTIFY report: refresh the listed folders it marked stale and the
 * tree if it changed. */
static void sync_refresh_stale(struct sync *sy, const char *watched)
{
        struct account *a = sy->a;
        struct sync_names names = {0};
        cache_lock(a->cache);
        bool tree = a->tree_checked_ms == 0;
        sync_collect(cache_root(a->cache), &names);
        cache_unlock(a->cache);
        if (tree)
                account_refresh_tree(a, 0);
        for (size_t i = 0; i < names.n; i++) {
                if (sync_stopping(sy)) {
                        free(names.v[i]);
                        continue;
                }
                bool stale = false;
                cache_lock(a->cache);
                struct cache_mbox *m = cache_mbox_by_raw(a->cache, names.v[i]);
                stale = m && m->state == CACHE_LISTING_STALE;
                cache_unlock(a->cache);
                if (stale && strcmp(names.v[i], watched) != 0)
                        sync_refresh(sy, names.v[i]);
                free(names.v[i]);
        }
        free(names.v);
}

static char *sync_target(struct sync *sy)
{
        pthread_mutex_lock(&sy->mu);
        char *t = strdup(sy->watched ? sy->watched : "INBOX");
        pthread_mutex_unlock(&sy->mu);
        return t;
}

/* Sharing the pool's only connection: the folder in use is checked (NOOP
 * where the session has it selected, whose answer brings its news, else
 * STATUS compared with its listing) every SHARED_WATCH_MS, and a poll round
 * (every listed folder, the watched one included) runs every poll interval,
 * each taking the connection between operations for a round trip or two.
 * No IDLE and no NOTIFY: they would hold the one connection. */
static void sync_check_shared(struct sync *sy, const char *target)
{
        struct account *a = sy->a;
        struct imap_session *s = NULL;
        if (imap_pool_get(a->pool, target, IMAP_POOL_META, &s) < 0)
                return;
        const char *sel = imap_session_selected(s);
        int r;
        bool news = false;
        struct imap_status_info st;
        bool by_status = !sel || strcmp(sel, target) != 0;
        if (!by_status) {
                unsigned ev = imap_session_events(s);
                r = imap_noop(s);
                news = r == 0 && imap_session_events(s) != ev;
        } else {
                r = imap_status(s, target, &st);
        }
        imap_pool_put(a->pool, s);
        sync_asked(sy, target, r);
        if (r == -ENOENT)
                sync_watch(sy, "INBOX"); /* the watched folder went away */
        else if (r == 0 && by_status)
                sync_compare(sy, target, &st);
        else if (news && sync_is_stale(a, target))
                sync_refresh(sy, target);
}

static void sync_run_shared(struct sync *sy)
{
        int64_t watch_ms = sy->poll_ms < SHARED_WATCH_MS ? sy->poll_ms : SHARED_WATCH_MS;
        int64_t next_poll = imap_now_ms() + sy->poll_ms;
        int64_t next_watch = imap_now_ms() + watch_ms;
        log_dbg("sync: connections=1: sharing it, checking the folder in use every %lld ms",
                (long long)watch_ms);
        while (!sync_stopping(sy)) {
                int64_t now = imap_now_ms();
                int64_t until = next_poll < next_watch ? next_poll : next_watch;
                if (sy->not_before > until)
                        until = sy->not_before;
                if (until > now) {
                        sync_sleep(sy, (int)(until - now));
                        continue; /* woken: the folder to watch may have changed */
                }
                char *target = sync_target(sy);
                if (!target) {
                        sync_sleep(sy, 1000);
                        continue;
                }
                if (now >= next_poll) {
                        /* The watched folder too: it is not IDLEd. */
                        next_poll = imap_now_ms() + sync_poll_round(sy, NULL);
                        next_watch = imap_now_ms() + watch_ms;
                } else if (imap_retry_due(&sy->bad, target)) {
                        sync_check_shared(sy, target);
                        next_watch = imap_now_ms() + watch_ms;
                } else {
                        next_watch = imap_now_ms() + watch_ms;
                }
                free(target);
        }
}

static void *sync_main(void *arg)
{
        struct sync *sy = arg;
        struct account *a = sy->a;
        if (!sy->own_slot) {
                sync_run_shared(sy);
                goto out;
        }
        int backoff = BACKOFF_MIN_MS;
        int64_t next_poll = imap_now_ms() + sy->poll_ms;

        while (!sync_stopping(sy)) {
                if (!sy->s || imap_session_broken(sy->s)) {
                        imap_session_free(sy->s);
                        sy->s = NULL;
                        sync_set_in(sy, NULL);
                        char err[256];
                        if (imap_session_open(&a->imap, &sy->s, err, sizeof(err)) < 0) {
                                log_dbg("sync: %s", err);
                                sync_sleep(sy, backoff);
                                backoff =
                                    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                                continue;
                        }
                        backoff = BACKOFF_MIN_MS;
                        sy->connects++;
                        /* Reconnected: anything may have changed meanwhile
                         * (but a server that asked us to slow down, or that
                         * keeps dropping us, is not polled again at once). */
                        next_poll = sy->not_before;
                        sync_notify(sy);
                }
                char *target = sync_target(sy);
                if (!target) {
                        sync_sleep(sy, 1000);
                        continue;
                }
                /* A folder just opened is being listed on another connection
                 * right now: let that go first rather than make the server
                 * SELECT a big folder twice at once. Changes meanwhile are
                 * caught by the fresh SELECT below. */
                const char *cur_sel = sy->s ? imap_session_selected(sy->s) : NULL;
                if (cur_sel && strcmp(cur_sel, target) != 0 && sync_sleep(sy, SWITCH_DELAY_MS)) {
                        /* Woken: the folder to watch may have changed meanwhile,
                         * and the wake-up was used up by this sleep. */
                        free(target);
                        if (!(target = sync_target(sy)))
                                continue;
                }
                /* A sleep eats the wake-up: look at the stop flag again
                 * before waiting in IDLE. */
                if (sync_stopping(sy)) {
                        free(target);
                        break;
                }
                if (imap_now_ms() >= next_poll) {
                        if (sy->notify) {
                                sync_poll_each(sy, target);
                                next_poll = imap_now_ms() + sy->poll_ms;
                        } else {
                                next_poll = imap_now_ms() + sync_poll_round(sy, target);
                        }
                }
                /* Each step may have waited out a deadline: no further one
                 * once we are told to stop. */
                if (sync_stopping(sy)) {
                        free(target);
                        break;
                }
                int64_t wait = next_poll - imap_now_ms();
                if (wait < 0)
                        wait = 0;
                if (wait > IDLE_RENEW_MS)
                        wait = IDLE_RENEW_MS;
                struct imap_select_info si;
                bool changed = false;
                if (!sync_enter(sy, target)) {
                        free(target);
                        continue;
                }
                int r =
                    sy->s && !imap_session_broken(sy->s) ? imap_select(sy->s, target, &si) : -EIO;
                sync_set_in(sy, r == 0 ? target : NULL);
                if (r == 0)
                        sync_asked(sy, target, 0);
                unsigned ev = sy->s ? imap_session_events(sy->s) : 0;
                /* Changes made before IDLE began (while polling, or before this
                 * folder became the watched one) don't come as pushes: catch
                 * them from what SELECT says and from events seen meanwhile. */
                if (r == 0 && sync_differs(a, target, &si))
                        sync_refresh(sy, target);
                if (r == 0 && imap_session_caps(sy->s)->idle) {
                        r = imap_session_idle(sy->s, sy->wake_fd, (int)wait, &changed);
                        sync_clear_wake(sy);
                } else if (r == 0) {
                        /* No IDLE: poll the watched folder at the same pace. */
                        sync_sleep(sy, (int)wait);
                        r = imap_noop(sy->s);
                }
                /* News marked the listing stale (account_on_event); the
                 * echo of our own change did not, and costs nothing. With
                 * NOTIFY the news may have been about another folder. */
                if (r == 0 && (changed || imap_session_events(sy->s) != ev) &&
                    sync_is_stale(a, target))
                        sync_refresh(sy, target);
                /* NOTIFY reports may come at any time, also while we poll:
                 * whatever they marked stale is refreshed now. */
                if (r == 0 && sy->notify)
                        sync_refresh_stale(sy, target);
                else if (r == -ENOENT)
                        sync_watch(sy, "INBOX"); /* the watched folder went away */
                else if (r < 0)
                        sync_sleep(sy, r == -EIO ? backoff : sync_asked(sy, target, r));
                free(target);
        }
out:
        imap_session_free(sy->s);
        sy->s = NULL;
        pthread_mutex_lock(&sy->mu);
        sy->finished = true;
        pthread_cond_broadcast(&sy->cv);
        pthread_mutex_unlock(&sy->mu);
        return NULL;
}

int sync_start(struct sync *sy)
{
        if (!sy || sy->started)
                return 0;
        /* Signals (SIGTERM, SIGINT) must reach the main thread, where
         * libfuse's loop waits for them. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(&sy->thread, NULL, sync_main, sy);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                /* No live sync: its slot goes back to the operations. */
                if (sy->own_slot)
                        imap_pool_unreserve_one(sy->a->pool);
                sy->own_slot = false;
                return -EAGAIN;
        }
        sy->started = true;
        return 0;
}

void sync_stop(struct sync *sy)
{
        if (!sy)
                return;
        pthread_mutex_lock(&sy->mu);
        sy->stop = true;
        pthread_mutex_unlock(&sy->mu);
        sync_wake(sy);
}

bool sync_join_until(struct sync *sy, int64_t deadline_ms)
{
        if (!sy || !sy->started)
                return true;
        struct timespec ts = {.tv_sec = deadline_ms / 1000,
                              .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
        pthread_mutex_lock(&sy->mu);
        while (!sy->finished)
                if (pthread_cond_timedwait(&sy->cv, &sy->mu, &ts) == ETIMEDOUT)
                        break;
        bool done = sy->finished;
        pthread_mutex_unlock(&sy->mu);
        return done;
}

void sync_free(struct sync *sy)
{
        if (!sy)
                return;
        sync_stop(sy);
        if (sy->started)
                pthread_join(sy->thread, NULL);
        imap_pool_on_leave(sy->a->pool, NULL, NULL);
        if (sy->own_slot)
                imap_pool_unreserve_one(sy->a->pool);
        close(sy->wake_fd);
        pthread_mutex_destroy(&sy->mu);
        pthread_cond_destroy(&sy->cv);
        pthread_cond_destroy(&sy->moved);
        free(sy->watched);
        free(sy->in);
        imap_retry_clear(&sy->bad);
        struct sync_folder *f, *tmp;
        HASH_ITER(hh, sy->folders, f, tmp)
        {
                HASH_DEL(sy->folders, f);
                free(f->raw);
                free(f);
        }
        free(sy);
}
