/* Keeping a folder's listing up to date with as little traffic as the server
 * allows:
 *   - nothing changed: a SELECT (or NOOP on a session that has the folder
 *     selected) and, with CONDSTORE, HIGHESTMODSEQ equal to ours: no FETCH.
 *     A NOOP only counts if no connection heard a change of the folder
 *     since the listing was made (its server state in the cache says);
 *   - something changed, CONDSTORE: UID FETCH (FLAGS) (CHANGEDSINCE ours),
 *     with VANISHED under QRESYNC, then the listing items of the new UIDs
 *     only; without VANISHED a UID SEARCH finds what went;
 *   - otherwise (first listing, new UIDVALIDITY, no CONDSTORE): one
 *     UID FETCH 1:* of everything.
 * The network part runs without the cache lock; the answer is applied under
 * it, to the mailbox found again by its node id (it may have been renamed,
 * or gone, meanwhile). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/account.h"
#include "cache/own.h"
#include "cache/persist.h"
#include "cache/store.h"
#include "imap/array.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/ops.h"
#include "imap/quote.h"

struct listing_msg {
        uint32_t uid;
        uint64_t size;
        time_t internaldate;
        char *flags;
        char *header;
        size_t header_len;
        char *cid; /* server-wide content id (X-GM-MSGID, EMAILID); NULL if none */
};

struct listing_acc {
        struct listing_msg *v;
        size_t n, cap;
        bool oom;
};

struct flag_change {
        uint32_t uid;
        char *flags;
};

enum listing_kind { LISTING_SAME, LISTING_FULL, LISTING_DELTA };

/* What a refresh knows going in and learns from the server. */
struct listing_job {
        const char *raw;
        bool have; /* a listing of this UIDVALIDITY to build on */
        /* The server reported changes (on any connection) since the listing
         * was made: its counts can't confirm it then, only a fetch can. */
        bool heard;
        /* Marked stale: something outside this session's view (our own
         * APPEND without APPENDUID, another session's SELECT or STATUS)
         * says the folder changed. */
        bool stale;
        unsigned heard_at_start; /* what the listing reflects once applied */
        uint32_t uidvalidity, uidnext, exists;
        uint64_t modseq;
        uint32_t *known; /* UIDs we have, sorted */
        size_t nknown;

        struct imap_select_info si;
        enum listing_kind kind;
        struct listing_acc msgs; /* FULL: all; DELTA: the new ones */
        struct flag_change *changes;
        size_t nchanges, capchanges;
        uint32_t *gone;
        size_t ngone, capgone;
        bool oom;
};

static void listing_collect(void *ctx, const struct imap_msg_info *m)
{
        struct listing_acc *l = ctx;
        if (IMAP_ARRAY_GROW(l->v, l->n, l->cap, 256) < 0) {
                l->oom = true;
                return;
        }
        struct listing_msg *e = &l->v[l->n];
        e->uid = m->uid;
        e->size = m->size;
        e->internaldate = m->internaldate;
        e->flags = strdup(m->flags);
        e->header = malloc(m->header_len + 1);
        e->header_len = m->header_len;
        if (!e->flags || !e->header) {
                free(e->flags);
                free(e->header);
                l->oom = true;
                return;
        }
        memcpy(e->header, m->header, m->header_len);
        e->header[m->header_len] = '\0';
        e->cid = m->cid && m->cid[0] ? strdup(m->cid) : NULL; /* none on ENOMEM: only cache */
        l->n++;
}

static void listing_job_reset(struct listing_job *j)
{
        for (size_t i = 0; i < j->msgs.n; i++) {
                free(j->msgs.v[i].flags);
                free(j->msgs.v[i].header);
                free(j->msgs.v[i].cid);
        }
        free(j->msgs.v);
        memset(&j->msgs, 0, sizeof(j->msgs));
        for (size_t i = 0; i < j->nchanges; i++)
                free(j->changes[i].flags);
        free(j->changes);
        j->changes = NULL;
        j->nchanges = j->capchanges = 0;
        free(j->gone);
        j->gone = NULL;
        j->ngone = j->capgone = 0;
        j->oom = false;
}

static bool listing_known(const struct listing_job *j, uint32_t uid)
{
        size_t lo = 0, hi = j->nknown;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (j->known[mid] == uid)
                        return true;
                if (j->known[mid] < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

static void listing_change(void *ctx, uint32_t uid, const char *flags)
{
        struct listing_job *j = ctx;
        if (IMAP_ARRAY_GROW(j->changes, j->nchanges, j->capchanges, 64) < 0) {
                j->oom = true;
                return;
        }
        char *f = strdup(flags);
        if (!f) {
                j->oom = true;
                return;
        }
        j->changes[j->nchanges++] = (struct flag_change){uid, f};
}

static void listing_gone_one(struct listing_job *j, uint32_t uid)
{
        if (IMAP_ARRAY_GROW(j->gone, j->ngone, j->capgone, 64) < 0) {
                j->oom = true;
                return;
        }
        j->gone[j->ngone++] = uid;
}

/* VANISHED (EARLIER) ranges: only the UIDs we know matter (a range may be
 * huge and mostly long gone). */
static void listing_gone_range(void *ctx, unsigned lo, unsigned hi)
{
        struct listing_job *j = ctx;
        for (size_t i = 0; i < j->nknown; i++)
                if (j->known[i] >= lo && j->known[i] <= hi)
                        listing_gone_one(j, j->known[i]);
}

/* UID SEARCH ALL ranges: mark what the server still has. */
struct listing_present {
        const struct listing_job *j;
        bool *present;
};

static void listing_present_range(void *ctx, unsigned lo, unsigned hi)
{
        struct listing_present *p = ctx;
        const struct listing_job *j = p->j;
        /* known[] is sorted: find the first >= lo. */
        size_t a = 0, b = j->nknown;
        while (a < b) {
                size_t mid = a + (b - a) / 2;
                if (j->known[mid] < lo)
                        a = mid + 1;
                else
                        b = mid;
        }
        for (size_t i = a; i < j->nknown && j->known[i] <= hi; i++)
                p->present[i] = true;
}

/* Brings a listing of the same UIDVALIDITY up to date (CONDSTORE). */
static int listing_delta(struct imap_session *s, struct listing_job *j, bool vanished)
{
        int r = imap_fetch_changes(s, j->modseq, vanished, listing_change, listing_gone_range, j);
        if (r < 0)
                return r;
        /* The changed UIDs we don't know are new messages: their listing items. */
        unsigned *fresh = malloc((j->nchanges ? j->nchanges : 1) * sizeof(*fresh));
        if (!fresh)
                return -ENOMEM;
        size_t nfresh = 0;
        for (size_t i = 0; i < j->nchanges; i++)
                if (!listing_known(j, j->changes[i].uid))
                        fresh[nfresh++] = j->changes[i].uid;
        if (nfresh) {
                size_t need = imap_uidset_format(fresh, nfresh, NULL, 0);
                char *set = malloc(need + 1);
                if (set) {
                        imap_uidset_format(fresh, nfresh, set, need + 1);
                        r = imap_fetch_listing_set(s, set, listing_collect, &j->msgs);
                        free(set);
                } else {
                        r = -ENOMEM;
                }
        }
        free(fresh);
        if (r < 0)
                return r;
        /* Without VANISHED we only know that something went if the numbers
         * don't add up; then one UID SEARCH tells what is still there. */
        size_t expect = j->nknown + j->msgs.n - j->ngone;
        if (expect != j->si.exists) {
                bool *present = calloc(j->nknown ? j->nknown : 1, sizeof(*present));
                if (!present)
                        return -ENOMEM;
                struct listing_present p = {j, present};
                r = imap_search_uids(s, listing_present_range, &p);
                if (r == 0) {
                        j->ngone = 0;
                        for (size_t i = 0; i < j->nknown; i++)
                                if (!present[i])
                                        listing_gone_one(j, j->known[i]);
                }
                free(present);
        }
        return r;
}

static int listing_fetch(struct imap_session *s, void *ctx)
{
        struct listing_job *j = ctx;
        listing_job_reset(j);
        const char *sel = imap_session_selected(s);
        bool was_selected = sel && strcmp(sel, j->raw) == 0;
        if (was_selected && (j->stale || j->heard)) {
                /* A session's memory of its selected folder is only as good
                 * as the untagged data the server sent it, and some servers
                 * (GNU Mailutils) send the session that APPENDed no EXISTS:
                 * a NOOP there finds nothing new forever. When the folder is
                 * known to have changed, SELECT it again (the same one round
                 * trip as the NOOP) and take the server's fresh counts. */
                imap_session_set_selected(s, NULL, NULL);
                was_selected = false;
        }
        int r = imap_select(s, j->raw, &j->si);
        unsigned events = imap_session_events(s);
        if (r == 0 && was_selected)
                r = imap_noop(s); /* lets EXISTS/EXPUNGE/FETCH arrive as events */
        if (r < 0)
                return r;
        j->si = *imap_session_sel_info(s);
        const struct imap_caps *caps = imap_session_caps(s);
        bool condstore = (caps->condstore || caps->qresync) && j->si.highestmodseq && j->modseq;
        bool same_counts =
            j->si.exists == j->exists && (!j->si.uidnext || j->si.uidnext == j->uidnext);

        /* A session that keeps the folder selected answers SELECT from
         * memory: its counts may be back where they were after an expunge
         * and a delivery it heard during some other command. What any
         * session heard is in the mailbox's server state (j->heard), and
         * then only a fresh SELECT can confirm the listing. */
        bool quiet = imap_session_events(s) == events && !(was_selected && j->heard);
        if (!j->have || j->si.uidvalidity != j->uidvalidity)
                j->kind = LISTING_FULL;
        else if (condstore && j->si.highestmodseq == j->modseq && same_counts && quiet)
                j->kind = LISTING_SAME; /* nothing at all changed */
        else if (condstore)
                j->kind = LISTING_DELTA;
        else if (was_selected && quiet && same_counts)
                j->kind = LISTING_SAME; /* every change would have come as an event */
        else
                j->kind = LISTING_FULL;

        if (j->kind == LISTING_DELTA)
                r = listing_delta(s, j, caps->qresync);
        else if (j->kind == LISTING_FULL && j->si.exists > 0)
                r = imap_fetch_listing(s, listing_collect, &j->msgs);
        if (r == 0 && (j->msgs.oom || j->oom))
                r = -ENOMEM;
        return r;
}

static int listing_uid_cmp(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

/* Copies the UIDs the cache has (lock held), sorted. */
static uint32_t *listing_known_uids(struct cache_mbox *m, size_t *n)
{
        uint32_t *v = malloc((m->nmsgs ? m->nmsgs : 1) * sizeof(*v));
        if (!v)
                return NULL;
        size_t i = 0, nm;
        struct cache_msg **msgs = cache_mbox_msgs(m, &nm);
        for (; i < nm; i++)
                v[i] = msgs[i]->uid;
        *n = i;
        qsort(v, i, sizeof(*v), listing_uid_cmp);
        return v;
}

/* The content ids the answer brought go to the store after the listing, so that a message's
 * content is stored (and found) once whichever folder shows it (issue 10). */
static void listing_save_cids(struct account *a, const struct listing_job *j)
{
        size_t n = 0;
        for (size_t i = 0; i < j->msgs.n; i++)
                n += j->msgs.v[i].cid != NULL;
        struct store_cid *v = n ? malloc(n * sizeof(*v)) : NULL;
        if (!v)
                return;
        n = 0;
        for (size_t i = 0; i < j->msgs.n; i++)
                if (j->msgs.v[i].cid)
                        v[n++] = (struct store_cid){j->msgs.v[i].uid, j->msgs.v[i].cid};
        persist_save_cids(a, j->raw, j->si.uidvalidity, v, n);
        free(v);
}

/* A message we are moving or removing at this moment is left to our own
 * command's answer, which moves its node along (so `mv`'s stat of the name
 * it just renamed to still finds the inode). A listing that crossed that
 * command on the wire must not drop it first (lock held). */
static bool listing_ours_leaving(struct account *a, struct cache_mbox *m, uint32_t uid)
{
        return a->own && own_leaving(a->own, m->raw, uid);
}

static void listing_keep_ours(struct account *a, struct cache_mbox *m)
{
        if (!listing_ours_leaving(a, m, 0))
                return;
        for (size_t i = 0; i < m->nuidv; i++) {
                struct cache_msg *msg = m->uidv[i];
                if (!msg->dead && !msg->mark && listing_ours_leaving(a, m, msg->uid))
                        msg->mark = 1;
        }
}

/* Applies the server's answer (lock held). */
static void listing_apply(struct account *a, struct cache_mbox *m, struct listing_job *j,
                          unsigned gen)
{
        const struct imap_select_info *si = &j->si;
        int64_t now = imap_now_ms();
        m->srv.heard_listed = j->heard_at_start;
        if (j->kind == LISTING_FULL) {
                cache_listing_begin(a->cache, m, si->uidvalidity, si->uidnext, si->exists,
                                    si->highestmodseq);
                for (size_t i = 0; i < j->msgs.n; i++) {
                        struct listing_msg *e = &j->msgs.v[i];
                        cache_listing_add(a->cache, m, e->uid, e->size, e->internaldate, e->flags,
                                          e->header, e->header_len);
                }
                listing_keep_ours(a, m);
                cache_listing_end(a->cache, m, now, gen);
                log_dbg("listing of %s: %zu messages", m->raw, m->nmsgs);
                return;
        }
        if (j->kind == LISTING_DELTA) {
                for (size_t i = 0; i < j->ngone; i++) {
                        struct cache_msg *msg = cache_msg_by_uid(m, j->gone[i]);
                        if (msg && !listing_ours_leaving(a, m, j->gone[i]))
                                cache_msg_remove(a->cache, msg);
                }
                for (size_t i = 0; i < j->nchanges; i++) {
                        struct cache_msg *msg = cache_msg_by_uid(m, j->changes[i].uid);
                        if (msg && cache_msg_set_flags(msg, j->changes[i].flags) == 0)
                                cache_msg_flags_changed(a->cache, msg);
                }
                for (size_t i = 0; i < j->msgs.n; i++) {
                        struct listing_msg *e = &j->msgs.v[i];
                        cache_listing_add(a->cache, m, e->uid, e->size, e->internaldate, e->flags,
                                          e->header, e->header_len);
                }
                log_dbg("listing of %s brought up to date: %zu new, %zu gone, %zu changed", m->raw,
                        j->msgs.n, j->ngone, j->nchanges);
        }
        cache_listing_commit(a->cache, m, now, gen, si->uidnext, si->exists, si->highestmodseq);
}

/* One refresh: waits for another thread's, or fetches and applies. Sets
 * *renamed when the folder got another name while we asked under the old
 * one: the answer was thrown away and the caller asks again. */
static int listing_refresh_once(struct account *a, uint64_t mbox_id, int max_age_ms, bool *renamed)
{
        *renamed = false;
        cache_lock(a->cache);
        struct cache_mbox *m;
        /* Another thread's refresh of the same folder is waited for, but not
         * longer than one server operation: after that this thread asks the
         * server itself (its own commands have deadlines), so a refresh that
         * is slow, or a bug that never clears the flag, costs a duplicate
         * fetch, never a hang. */
        int64_t deadline = imap_now_ms() + a->imap.timeout_ms;
        for (;;) {
                struct cache_node *n = cache_node_get(a->cache, mbox_id);
                if (!n || n->kind != CACHE_MBOX) {
                        cache_unlock(a->cache);
                        return n ? -ENOTDIR : -ENOENT;
                }
                m = (struct cache_mbox *)n;
                if (!cache_mbox_selectable(m)) {
                        cache_unlock(a->cache);
                        return 0; /* no messages to list */
                }
                bool fresh = m->state == CACHE_LISTING_VALID &&
                             (max_age_ms < 0 || imap_now_ms() - m->checked_ms < max_age_ms);
                if (fresh) {
                        cache_unlock(a->cache);
                        return 0;
                }
                /* The server is away: a listing we have answers at once (its
                 * callers show it, as after a failed FETCH) instead of each
                 * opendir waiting a timeout. One never made is still asked. */
                int away = max_age_ms > 0 && m->state != CACHE_LISTING_NONE ? account_away(a) : 0;
                if (away < 0) {
                        cache_unlock(a->cache);
                        return away;
                }
                if (!m->refreshing)
                        break;
                int w = cache_wait(a->cache, deadline);
                if (w == -ESHUTDOWN) {
                        cache_unlock(a->cache);
                        return -EIO; /* unmounting: nobody waits for the answer */
                }
                if (w == -ETIMEDOUT) {
                        log_warn("the listing of %s is taking long: asking the server again",
                                 m->raw);
                        break;
                }
        }
        struct listing_job j = {
            .raw = strdup(m->raw),
            .have = m->state != CACHE_LISTING_NONE,
            .uidvalidity = m->uidvalidity,
            .uidnext = m->uidnext,
            .exists = (uint32_t)m->nmsgs,
            .modseq = m->highestmodseq,
            .heard = m->srv.heard != m->srv.heard_listed,
            .stale = m->state == CACHE_LISTING_STALE,
            .heard_at_start = m->srv.heard,
        };
        j.known = j.have ? listing_known_uids(m, &j.nknown) : NULL;
        if (!j.raw || (j.have && !j.known)) {
                cache_unlock(a->cache);
                free((char *)j.raw);
                free(j.known);
                return -ENOMEM;
        }
        m->refreshing = true;
        unsigned gen = m->stale_gen;
        cache_unlock(a->cache);

        int r = account_run(a, j.raw, IMAP_POOL_META, listing_fetch, &j);

        /* The mailbox is found again by its id, never by name: a folder
         * renamed meanwhile keeps its id (and its waiters), and its old name
         * may stand for another mailbox by now. Whatever happened, the flag
         * is cleared and the waiters are woken. */
        cache_lock(a->cache);
        struct cache_node *n2 = cache_node_get(a->cache, mbox_id);
        struct cache_mbox *m2 = n2 && n2->kind == CACHE_MBOX ? (struct cache_mbox *)n2 : NULL;
        if (m2) {
                m2->refreshing = false;
                if (!m2->raw || strcmp(m2->raw, j.raw) != 0) {
                        /* Renamed: what the old name answered may already be
                         * another mailbox's. Ask again under the new name. */
                        *renamed = true;
                } else if (r == 0) {
                        listing_apply(a, m2, &j, gen);
                }
        } else if (r == 0) {
                r = -ENOENT;
        }
        cache_wake(a->cache);
        cache_unlock(a->cache);
        if (r == 0 && !*renamed && j.kind != LISTING_SAME) {
                persist_save_listing(a, mbox_id);
                listing_save_cids(a, &j);
        }
        size_t nlisted = j.msgs.n;
        listing_job_reset(&j);
        cache_trim(nlisted);
        free(j.known);
        free((char *)j.raw);
        return r;
}

int account_refresh_listing(struct account *a, uint64_t mbox_id, int max_age_ms)
{
        /* A listing never fetched in this session may be on disk from the
         * last one: then the server only has to confirm it (CONDSTORE). */
        persist_load_listing(a, mbox_id);
        /* A rename during the fetch costs one more; a folder renamed again
         * and again gets an error rather than an endless loop. */
        for (int attempt = 0; attempt < 3; attempt++) {
                bool renamed;
                int r = listing_refresh_once(a, mbox_id, max_age_ms, &renamed);
                if (!renamed)
                        return r;
                log_dbg("folder renamed while being listed: listing it again");
        }
        return -EIO;
}
