#include "cache/account.h"
#include "cache/search.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/store.h"
#include "cache/ahead.h"
#include "cache/exclude.h"
#include "cache/own.h"
#include "cache/batch.h"
#include "cache/persist.h"
#include "imap/array.h"
#include "imap/conn.h"
#include "imap/header.h"
#include "imap/log.h"
#include "imap/ops.h"
#include "imap/ops_quota.h"
#include "imap/ops_namespace.h"
#include "imap/ops_status.h"

/* Read-ahead grows from the first fetch's size, doubling on each sequential
 * read, up to the cap: a `head` costs one small fetch, a `cat` of a big
 * message few round trips. */
#define RA_MIN_BLOCKS 1u
#define RA_MAX_BLOCKS 16u
/* How many times a reader waits for someone else's fetch before giving up. */
#define READ_MAX_WAITS 4

static char *account_name(void *ctx, uint32_t uid, const char *header, size_t header_len,
                          time_t internaldate)
{
        const struct account *a = ctx;
        char *date = imap_header_field(header, header_len, "Date");
        char *subject = imap_header_field(header, header_len, "Subject");
        char *name = a->naming.message(a->naming.ctx, uid, date, subject, internaldate);
        free(date);
        free(subject);
        return name;
}

char *account_decode_component(void *ctx, const char *comp)
{
        const struct account *a = ctx;
        return a->naming.dir_from_server(a->naming.ctx, comp);
}

/* Every change the server reports on any connection, that no command of
 * ours explains, lands here (imap/session.c decides what is news) and goes
 * to the mailbox's one server state in the cache. */
/* A NOTIFY LIST (RFC 5465 §5.4) that changes nothing in the tree: a mailbox
 * it has, under that name, neither \NonExistent (deleted) nor with extended
 * data (OLDNAME: renamed). Dovecot sends one for a mailbox a session of ours
 * stops selecting (live sync moving from INBOX to the folder in use); taken
 * as news, it made the next lookup list the tree again, on the pool's
 * connection in the middle of a scan (test_scan). With the cache lock held. */
static bool account_list_unchanged(struct account *a, const struct imap_response *r)
{
        const struct imap_value *attrs = r ? r->args : NULL;
        if (!attrs || attrs->type != IMAP_LIST || !attrs->next)
                return false;
        const struct imap_value *name = attrs->next->next;
        if (!name || (name->type != IMAP_STRING && name->type != IMAP_ATOM) || name->next ||
            memchr(name->s, '\0', name->len))
                return false;
        for (const struct imap_value *v = attrs->first; v; v = v->next)
                if (v->type == IMAP_ATOM && strcasecmp(v->s, "\\NonExistent") == 0)
                        return false;
        return cache_mbox_by_raw(a->cache, name->s) != NULL;
}

static void account_on_event(void *ctx, const struct imap_event *ev)
{
        struct account *a = ctx;
        cache_lock(a->cache);
        switch (ev->kind) {
        case IMAP_EV_LIST:
                /* A mailbox came or went: the next lookup re-lists. */
                if (!account_list_unchanged(a, ev->r))
                        a->tree_checked_ms = 0;
                break;
        case IMAP_EV_STATUS:
        case IMAP_EV_EXISTS:
        case IMAP_EV_EXPUNGE:
        case IMAP_EV_VANISHED:
        case IMAP_EV_FETCH:
        case IMAP_EV_CHANGED:
                cache_mbox_heard(a->cache, ev->mailbox);
                break;
        }
        cache_unlock(a->cache);
}

/* Asked before account_on_event: the echo of our own change is no news. */
static bool account_own_event(void *ctx, const struct imap_event *ev)
{
        struct account *a = ctx;
        cache_lock(a->cache);
        bool own = own_event(a->own, a->cache, ev);
        cache_unlock(a->cache);
        return own;
}

/* Asks own.c whether our own changes on the way (or just done) account for
 * a SELECT's counts, as it does for NOTIFY's STATUS of a folder: a UID MOVE
 * into the folder whose answer has not been applied yet is no news. */
bool account_select_explained(struct account *a, const char *mailbox,
                              const struct imap_select_info *si)
{
        char k1[] = "MESSAGES", k2[] = "UIDNEXT", empty[] = "";
        struct imap_value next_v = {IMAP_NUMBER, empty, 0, si->uidnext, NULL, NULL};
        struct imap_value next_k = {IMAP_ATOM, k2, sizeof k2 - 1, 0, NULL, &next_v};
        struct imap_value msgs_v = {IMAP_NUMBER, empty, 0,
                                    si->exists,  NULL,  si->uidnext ? &next_k : NULL};
        struct imap_value msgs_k = {IMAP_ATOM, k1, sizeof k1 - 1, 0, NULL, &msgs_v};
        struct imap_value list = {IMAP_LIST, empty, 0, 0, &msgs_k, NULL};
        struct imap_value name = {IMAP_STRING, empty, 0, 0, NULL, &list};
        struct imap_response r = {.kind = IMAP_RESP_UNTAGGED, .args = &name};
        struct imap_event ev = {.kind = IMAP_EV_STATUS, .mailbox = mailbox, .r = &r};
        return own_event(a->own, a->cache, &ev);
}

/* A read's or a write's SELECT says how many messages the folder has and
 * which UID comes next: more than the listing holds, or a UIDNEXT past the
 * listing's, means messages came that no event told us of (GNU Mailutils
 * sends the session that APPENDed no EXISTS; any server may have answered
 * another client's APPEND since). The listing is then stale, as if we had
 * heard of the change, and the next lookup re-lists. Fewer messages are no
 * sign: our own expunges lower the count before the listing is refreshed;
 * nor are the messages of our own changes still on the way. */
static void account_select_compare(struct imap_session *s, const char *mailbox,
                                   const struct imap_select_info *si)
{
        struct account *a = imap_session_event_ctx(s);
        if (!a || !a->cache)
                return;
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, mailbox);
        if (m && m->state == CACHE_LISTING_VALID && m->uidvalidity == si->uidvalidity &&
            ((si->exists > m->exists && si->exists > m->nmsgs) ||
             (si->uidnext && m->uidnext && si->uidnext > m->uidnext)) &&
            !(a->own && account_select_explained(a, mailbox, si))) {
                log_dbg("%s: SELECT says %u messages, UIDNEXT %u; the listing %zu, %u: stale",
                        mailbox, si->exists, si->uidnext, m->nmsgs, m->uidnext);
                cache_mbox_heard(a->cache, mailbox);
        }
        cache_unlock(a->cache);
}

int account_select(struct imap_session *s, const char *mailbox, uint32_t uidvalidity,
                   struct imap_select_info *si)
{
        struct imap_select_info tmp;
        if (!si)
                si = &tmp;
        int r = imap_select(s, mailbox, si);
        if (r == 0 && si->uidvalidity != uidvalidity)
                r = -ESTALE; /* the UID names another message now */
        if (r == 0)
                account_select_compare(s, mailbox, si);
        return r;
}

int account_select_uid(struct imap_session *s, const char *mailbox, uint32_t uidvalidity,
                       uint32_t uid, struct imap_select_info *si)
{
        struct imap_select_info tmp;
        if (!si)
                si = &tmp;
        int r = account_select(s, mailbox, uidvalidity, si);
        /* A UID at or past what this session has seen was given since it
         * selected the folder (another connection's APPEND or COPY): the
         * server answers commands from the session's view, where a COPY of
         * it copies nothing ("OK No messages found") while a later STORE
         * and EXPUNGE, sent after the view caught up, do find it. NOOP
         * brings the view up to date first. */
        if (r == 0 && (!si->uidnext || uid >= si->uidnext)) {
                r = imap_noop(s);
                if (r == 0)
                        *si = *imap_session_sel_info(s);
        }
        return r;
}

bool account_online(struct account *a)
{
        if (!imap_pool_down(a->pool))
                return true;
        struct imap_session *s;
        if (imap_pool_get(a->pool, NULL, IMAP_POOL_META, &s) < 0)
                return false;
        imap_pool_put(a->pool, s);
        return true;
}

int account_tls_setup(struct account *a, const char *cafile, char *err, size_t errlen)
{
        a->imap.tls = imap_tls_ctx_new(cafile, err, errlen);
        return a->imap.tls ? 0 : -EINVAL;
}

void account_tls_free(struct account *a)
{
        imap_tls_ctx_free(a->imap.tls);
        a->imap.tls = NULL;
}

int account_connect(struct account *a, char *err, size_t errlen, bool *network)
{
        struct imap_session *s;
        int r = imap_session_open(&a->imap, &s, err, errlen);
        *network = r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EHOSTUNREACH ||
                   r == -ENETUNREACH || r == -EIO || r == -ECONNRESET;
        if (r < 0 && *network && persist_load_tree(a))
                return ACCOUNT_OFFLINE;
        if (r < 0)
                return r;
        /* Before the first LIST: the tree is shown below the personal
         * namespace's prefix. A server that fails NAMESPACE is shown as LIST
         * gives it. */
        char *ns = NULL, ns_delim = 0;
        if (imap_namespace_personal(s, &ns, &ns_delim) == 0) {
                cache_lock(a->cache);
                cache_set_ns_prefix(a->cache, ns);
                cache_unlock(a->cache);
        }
        free(ns);
        imap_pool_adopt(a->pool, s);
        r = account_refresh_tree(a, 0);
        if (r < 0)
                snprintf(err, errlen, "cannot list the mailboxes: %s", strerror(-r));
        return r;
}

int account_init(struct account *a)
{
        a->imap.on_event = account_on_event;
        a->imap.own_event = account_own_event;
        a->imap.event_ctx = a;
        a->imap.slow_link = &a->slow_link;
        a->pool = imap_pool_new(&a->imap, a->opts.connections);
        a->cache = cache_new(account_name, a);
        a->blocks = blocks_new(a->opts.mem_cache);
        a->ahead = ahead_new(a);
        a->search = search_new();
        a->own = own_new();
        /* A change waits for its batch at most two server deadlines. */
        a->batch = batch_new(2 * (a->imap.timeout_ms > 0 ? a->imap.timeout_ms : 30000));
        if (!a->pool || !a->cache || !a->blocks || !a->ahead || !a->search || !a->own || !a->batch)
                return -ENOMEM;
        return 0;
}

void account_destroy(struct account *a)
{
        ahead_free(a->ahead); /* first: its thread uses the pool and the blocks */
        imap_pool_free(a->pool);
        search_free(a->search);
        cache_free(a->cache);
        blocks_free(a->blocks);
        own_free(a->own);
        batch_free(a->batch);
}

/* ---- running commands ---- */

/* Runs fn on a pooled session; *wrote tells whether a command that changes
 * the account left on it. A connection that the server closed while it sat
 * idle (autologout, a server restart) is usually seen before anything is
 * sent (imap_session_cmd checks); if it fails at once on its next command
 * instead, the call is retried once on a new connection, so the caller does
 * not see it, but only when no change was sent: a change the server may
 * have carried out is never sent again (issue 7). A failure that took time
 * (a timeout) is not retried: the deadline promise is worth more. fn must
 * start from scratch each time it is called. */
int account_away(struct account *a)
{
        int64_t until = atomic_load(&a->away_until_ms);
        if (!until || imap_now_ms() >= until)
                return 0;
        int e = atomic_load(&a->away_err);
        return e < 0 ? e : -EIO;
}

/* After each try of an operation: a server that let it time out, or a
 * network that can't reach it, is away for a while; an answer ends that. A
 * connection that was merely reset is not: the next operation reconnects
 * at once (and quickly, if the server is there). */
static void account_away_note(struct account *a, int r, bool reached)
{
        static const int away[] = {-ETIMEDOUT, -EHOSTUNREACH, -ENETUNREACH, -ENETDOWN};
        if (reached) {
                atomic_store(&a->away_until_ms, 0);
                return;
        }
        for (size_t i = 0; i < sizeof(away) / sizeof(away[0]); i++)
                if (r == away[i]) {
                        /* What the failed call itself answered: a connection
                         * that could not be made is -EIO to callers (some
                         * show the cache on -EIO or -ETIMEDOUT only). */
                        atomic_store(&a->away_err, r == -ETIMEDOUT ? r : -EIO);
                        atomic_store(&a->away_until_ms, imap_now_ms() + ACCOUNT_AWAY_MS);
                }
}

static int account_run_once(struct account *a, const char *mailbox, enum imap_pool_use use,
                            account_op_fn fn, void *ctx, bool *wrote)
{
        *wrote = false;
        for (int attempt = 0;; attempt++) {
                struct imap_session *s;
                int64_t t0 = imap_now_ms();
                int r = imap_pool_get(a->pool, mailbox, use, &s);
                if (r < 0) {
                        /* A connection that could not be made comes back as
                         * -EIO: its own cause says whether the server is away. */
                        int why = r == -EIO ? imap_pool_down_err(a->pool) : 0;
                        account_away_note(a, why < 0 ? why : r, false);
                        return r;
                }
                bool reused = imap_session_used(s);
                unsigned writes = imap_session_writes(s);
                r = fn(s, ctx);
                bool broke = imap_session_broken(s);
                bool silent = broke && imap_session_timed_out(s);
                *wrote = imap_session_writes(s) != writes;
                imap_pool_put(a->pool, s);
                account_away_note(a, silent ? -ETIMEDOUT : r, !broke);
                if (r == -EIO && broke && reused && !*wrote && attempt == 0 &&
                    imap_now_ms() - t0 < a->imap.timeout_ms / 2) {
                        log_dbg("retrying on a new connection");
                        continue;
                }
                return r;
        }
}

int account_run(struct account *a, const char *mailbox, enum imap_pool_use use, account_op_fn fn,
                void *ctx)
{
        bool wrote;
        return account_run_once(a, mailbox, use, fn, ctx, &wrote);
}

/* How long to wait between two attempts to ask the server after a lost
 * answer. */
#define VERIFY_PAUSE_MS 250

bool account_transient(int r)
{
        static const int transient[] = {-EIO,          -ETIMEDOUT,   -ECONNREFUSED, -ECONNRESET,
                                        -EHOSTUNREACH, -ENETUNREACH, -EROFS};
        for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
                if (r == transient[i])
                        return true;
        return false;
}

int account_run_write(struct account *a, const char *mailbox, enum imap_pool_use use,
                      account_op_fn fn, account_op_fn verify, void *ctx)
{
        bool wrote;
        int r = account_run_once(a, mailbox, use, fn, ctx, &wrote);
        if (r != -EIO || !wrote || !verify)
                return r;
        /* The change left, and the answer was lost with the connection: ask
         * the server (on another connection) whether it was carried out. A
         * server that can't be asked yet is asked again for up to one more
         * deadline: an answer now saves a half-done change (a copy whose
         * original stays) from lasting. */
        int64_t until = imap_now_ms() + a->imap.timeout_ms;
        int v;
        for (;;) {
                v = account_run(a, mailbox, IMAP_POOL_META, verify, ctx);
                if (!account_transient(v) || imap_now_ms() >= until)
                        break;
                struct timespec pause = {0, VERIFY_PAUSE_MS * 1000000L};
                nanosleep(&pause, NULL);
        }
        if (v == 0) {
                log_info("the connection broke after a change was sent; the server has it");
                return 0;
        }
        log_warn("the connection broke after a change was sent; the server %s",
                 v == -ENOENT ? "does not have it" : "could not be asked whether it has it");
        return r;
}

/* ---- the mailbox tree ---- */

struct tree_entry {
        char *raw;
        char delim;
        unsigned attrs;
};

struct tree_status {
        char *raw;
        struct imap_status_info st;
};

struct tree_acc {
        struct tree_entry *v;
        size_t n, cap;
        bool oom;
        /* A poll round's LIST-STATUS: every folder's STATUS as well. */
        bool want_status, with_status;
        struct tree_status *st;
        size_t nst, capst;
        struct imap_slowdown *slow;
};

static void account_tree_reset(struct tree_acc *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i].raw);
        free(t->v);
        for (size_t i = 0; i < t->nst; i++)
                free(t->st[i].raw);
        free(t->st);
        t->v = NULL;
        t->st = NULL;
        t->n = t->cap = t->nst = t->capst = 0;
        t->oom = t->with_status = false;
}

static void account_tree_collect(void *ctx, const char *name, char delim, unsigned attrs)
{
        struct tree_acc *t = ctx;
        if (IMAP_ARRAY_GROW(t->v, t->n, t->cap, 32) < 0) {
                t->oom = true;
                return;
        }
        char *raw = strdup(name);
        if (!raw) {
                t->oom = true;
                return;
        }
        t->v[t->n++] = (struct tree_entry){raw, delim, attrs};
}

static void account_tree_status(void *ctx, const char *name, const struct imap_status_info *st)
{
        struct tree_acc *t = ctx;
        if (IMAP_ARRAY_GROW(t->st, t->nst, t->capst, 32) < 0) {
                t->oom = true;
                return;
        }
        char *raw = strdup(name);
        if (!raw) {
                t->oom = true;
                return;
        }
        t->st[t->nst++] = (struct tree_status){raw, *st};
}

static int account_tree_fetch(struct imap_session *s, void *ctx)
{
        struct tree_acc *t = ctx;
        account_tree_reset(t);
        if (t->want_status && imap_session_caps(s)->list_status) {
                int r = imap_list_status(s, account_tree_collect, account_tree_status, t, t->slow);
                /* A server that offers LIST-STATUS but refuses it (BAD) still
                 * has plain LIST: the poll then asks STATUS itself. */
                if (r != -EPROTO) {
                        t->with_status = r == 0;
                        return r;
                }
                account_tree_reset(t);
        }
        return imap_list_all(s, account_tree_collect, ctx);
}

/* account_refresh_tree, and with want_status the poll round's LIST-STATUS
 * (see account_refresh_tree_status). */
static int account_tree_refresh(struct account *a, int max_age_ms, struct tree_acc *t)
{
        cache_lock(a->cache);
        /* Someone else's LIST is waited for at most one server operation;
         * then this thread asks itself (see account_refresh_listing). */
        int64_t deadline = imap_now_ms() + a->imap.timeout_ms;
        for (;;) {
                if (a->tree_checked_ms && max_age_ms >= 0 &&
                    imap_now_ms() - a->tree_checked_ms < max_age_ms) {
                        cache_unlock(a->cache);
                        return 0;
                }
                /* The server is away: the tree we have answers at once (the
                 * caller shows it, as after a failed LIST); the sync thread's
                 * polls (max_age 0) keep asking. */
                int away = max_age_ms > 0 ? account_away(a) : 0;
                if (away < 0) {
                        cache_unlock(a->cache);
                        return away;
                }
                if (!a->tree_refreshing)
                        break;
                if (cache_wait(a->cache, deadline) < 0)
                        break; /* -ETIMEDOUT, or -ESHUTDOWN: unmounting */
                max_age_ms = max_age_ms < 0 ? max_age_ms : 1000; /* someone just did it */
        }
        a->tree_refreshing = true;
        unsigned gen = a->tree_gen;
        cache_unlock(a->cache);

        /* The network part runs without the cache lock. */
        int r = account_run(a, NULL, IMAP_POOL_META, account_tree_fetch, t);
        if (r == 0 && t->oom)
                r = -ENOMEM;

        cache_lock(a->cache);
        /* A folder change of ours applied while the LIST was on its way: the
         * LIST may predate it (it ran on another connection) and would undo
         * it, losing a new folder or bringing a deleted one back. Drop it; the
         * next lookup lists again. */
        bool current = gen == a->tree_gen;
        if (r == 0 && !current)
                a->tree_checked_ms = 0;
        if (r == 0 && current) {
                cache_tree_begin(a->cache);
                for (size_t i = 0; i < t->n; i++) {
                        if (!a->hier_delim)
                                a->hier_delim = t->v[i].delim;
                        if (exclude_match(a->opts.exclude, t->v[i].raw, t->v[i].delim))
                                continue;
                        cache_tree_add(a->cache, t->v[i].raw, t->v[i].delim, t->v[i].attrs,
                                       account_decode_component, a);
                }
                cache_tree_end(a->cache);
                a->tree_checked_ms = imap_now_ms();
        }
        a->tree_refreshing = false;
        /* Saved only when it changed: polls re-list the tree every time. */
        uint64_t sig = 0;
        for (size_t i = 0; r == 0 && i < t->n; i++) {
                sig = store_hash64(t->v[i].raw, strlen(t->v[i].raw), sig);
                unsigned char extra[2] = {(unsigned char)t->v[i].delim,
                                          (unsigned char)t->v[i].attrs};
                sig = store_hash64(extra, sizeof(extra), sig);
        }
        bool save = r == 0 && current && sig != a->tree_sig;
        if (save)
                a->tree_sig = sig;
        cache_wake(a->cache);
        cache_unlock(a->cache);
        if (save)
                persist_save_tree(a);
        return r == -ENOENT ? -EIO : r;
}

int account_refresh_tree(struct account *a, int max_age_ms)
{
        struct tree_acc t = {0};
        int r = account_tree_refresh(a, max_age_ms, &t);
        account_tree_reset(&t);
        return r;
}

int account_refresh_tree_status(struct account *a, account_status_fn fn, void *ctx,
                                bool *with_status, struct imap_slowdown *slow)
{
        struct tree_acc t = {.want_status = true, .slow = slow};
        int r = account_tree_refresh(a, 0, &t);
        *with_status = r == 0 && t.with_status;
        /* After the tree is in place, so that a folder new in this LIST is
         * known when its STATUS is looked at. */
        for (size_t i = 0; *with_status && i < t.nst; i++)
                fn(ctx, t.st[i].raw, &t.st[i].st);
        account_tree_reset(&t);
        return r;
}

char *account_child_raw(const struct account *a, const struct cache_mbox *parent, const char *name,
                        int *err)
{
        char delim = parent->raw ? parent->delim : a->hier_delim;
        /* Only a name that lists as typed is accepted: "100%" and "p%q" are
         * that name, "%2541" is "%41"; "%41" is refused (it would list as
         * "A"), so mkdir never makes a folder that can't be found under the
         * name it was made with. */
        char *enc = NULL;
        *err = a->naming.server_from_dir(a->naming.ctx, name, delim, &enc);
        if (*err == 0 && !*enc) {
                *err = -EINVAL; /* IMAP has no way to make an empty component */
                free(enc);
                enc = NULL;
        }
        if (!enc)
                return NULL;
        const char *ns = cache_ns_prefix(a->cache);
        if (!parent->raw && *ns) {
                /* At the top of a namespace with a prefix: the server's top
                 * level refuses CREATE; the user's folders live under it. */
                size_t nl = strlen(ns), el = strlen(enc);
                char *raw = malloc(nl + el + 1);
                if (raw) {
                        memcpy(raw, ns, nl);
                        memcpy(raw + nl, enc, el + 1);
                }
                free(enc);
                *err = raw ? 0 : -ENOMEM;
                return raw;
        }
        if (!parent->raw) {
                *err = 0;
                return enc;
        }
        if (!delim) {
                free(enc);
                *err = -EPERM; /* a server without hierarchy has no subfolders */
                return NULL;
        }
        size_t pl = strlen(parent->raw), el = strlen(enc);
        char *raw = malloc(pl + 1 + el + 1);
        if (raw) {
                memcpy(raw, parent->raw, pl);
                raw[pl] = delim;
                memcpy(raw + pl + 1, enc, el + 1);
        }
        free(enc);
        if (!raw) {
                *err = -ENOMEM;
                return NULL;
        }
        *err = 0;
        return raw;
}

/* ---- reading ---- */

int account_file_open(struct account *a, uint64_t msg_id, struct account_file **out)
{
        struct account_file *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, msg_id);
        if (!n || n->kind != CACHE_MSG) {
                cache_unlock(a->cache);
                free(f);
                return n ? -EISDIR : -ENOENT;
        }
        struct cache_msg *msg = (struct cache_msg *)n;
        f->mbox_id = msg->mbox->node.id;
        f->mailbox = strdup(msg->mbox->raw);
        f->uidvalidity = msg->mbox->uidvalidity;
        f->uid = msg->uid;
        f->size = msg->size;
        f->acct = a;
        f->direct = ahead_on_open(a->ahead, msg, &f->stream);
        cache_unlock(a->cache);
        if (!f->mailbox) {
                free(f);
                return -ENOMEM;
        }
        atomic_init(&f->next_off, 0);
        atomic_init(&f->ra_blocks, RA_MIN_BLOCKS);
        atomic_init(&f->extent, 0);
        atomic_init(&f->read_on, false);
        atomic_init(&f->asked, 0);
        *out = f;
        return 0;
}

void account_file_close(struct account_file *f)
{
        if (!f)
                return;
        if (f->direct) { /* a probe of a scan: tell read-ahead how far it was read */
                uint64_t extent = atomic_load(&f->extent);
                /* All of it in the first read (a file smaller than what the
                 * reader asks for at once) tells nothing about the reader,
                 * unless it asked for more than a header scan would bring. */
                if (extent >= f->size && !atomic_load(&f->read_on) &&
                    atomic_load(&f->asked) <= AHEAD_HEAD_EXTENT)
                        extent = 0;
                cache_lock(f->acct->cache);
                ahead_on_close(f->acct->ahead, f->stream, extent, f->size);
                cache_unlock(f->acct->cache);
        }
        free(f->mailbox);
        free(f);
}

static struct block_key account_key(const struct account_file *f, uint64_t index)
{
        return (struct block_key){f->mbox_id, f->uidvalidity, f->uid, index};
}

struct range_job {
        const struct account_file *f;
        uint64_t off;
        size_t len;
        char *buf;
        size_t got;
};

static int account_range_fetch(struct imap_session *s, void *ctx)
{
        struct range_job *j = ctx;
        int r = account_select_uid(s, j->f->mailbox, j->f->uidvalidity, j->f->uid, NULL);
        if (r == 0)
                r = imap_fetch_range(s, j->f->uid, j->off, j->len, j->buf, &j->got);
        return r;
}

/* How many bytes block idx of a message of size bytes holds: BLOCK_SIZE,
 * less for the last one. A block of any other length is wrong. */
static size_t account_block_len(uint64_t size, uint64_t idx)
{
        uint64_t off = idx * BLOCK_SIZE;
        if (off >= size)
                return 0;
        return size - off < BLOCK_SIZE ? (size_t)(size - off) : BLOCK_SIZE;
}

/* A claimed block found in the persistent cache goes to memory (and the
 * claim is fulfilled). Only a block of the length the message's size says:
 * an older version stored what the server sent for a message expunged
 * meanwhile (NIL, taken for no bytes), and such a block would end every
 * read of the message there. */
static bool account_block_from_disk(struct account *a, struct account_file *f, uint64_t idx)
{
        if (!a->disk)
                return false;
        char *buf = malloc(BLOCK_SIZE);
        ssize_t n =
            buf ? persist_block_get(a, f->mailbox, f->uidvalidity, f->uid, idx, buf, BLOCK_SIZE)
                : -ENOMEM;
        bool ok = n >= 0 && (size_t)n == account_block_len(f->size, idx);
        struct block_key k = account_key(f, idx);
        if (ok)
                blocks_put(a->blocks, &k, buf, (size_t)n);
        else if (n >= 0)
                log_dbg("block %llu of message %u in %s on disk has %zd bytes, not %zu: fetched "
                        "again",
                        (unsigned long long)idx, f->uid, f->mailbox, n,
                        account_block_len(f->size, idx));
        free(buf);
        return ok;
}

/* Fetches blocks [first, first+count) (all claimed by us) in one UID FETCH. */
static int account_fetch_blocks(struct account *a, struct account_file *f, uint64_t first,
                                unsigned count)
{
        uint64_t off = first * BLOCK_SIZE;
        uint64_t end = off + (uint64_t)count * BLOCK_SIZE;
        if (end > f->size)
                end = f->size;
        size_t len = (size_t)(end - off);
        char *buf = malloc(len ? len : 1);
        struct range_job j = {.f = f, .off = off, .len = len, .buf = buf};
        int r = buf ? account_run(a, f->mailbox, IMAP_POOL_BULK, account_range_fetch, &j) : -ENOMEM;
        size_t got = j.got;
        if (r == 0) {
                atomic_fetch_add(&a->fetches, 1);
                atomic_fetch_add(&a->fetched_bytes, got);
        }
        /* Fewer bytes than the size says: nothing is stored, and the read
         * fails rather than end early with success (a short read is the end
         * of the file to the kernel and to every reader). Dovecot answers a
         * message that another session expunged, before this one has been
         * told, with NIL and a tagged OK [EXPUNGEISSUED]: no bytes at all
         * means that, the message is gone. Else the server contradicts the
         * size it listed. */
        if (r == 0 && got != len) {
                if (got == 0) {
                        r = -ENOENT;
                } else {
                        log_warn("message %u in %s: the server sent %zu bytes at %llu, its size "
                                 "says %zu",
                                 f->uid, f->mailbox, got, (unsigned long long)off, len);
                        r = -EIO;
                }
        }
        for (unsigned i = 0; i < count; i++) {
                struct block_key k = account_key(f, first + i);
                uint64_t boff = (uint64_t)i * BLOCK_SIZE;
                if (r == 0) {
                        size_t blen = account_block_len(f->size, first + i);
                        blocks_put(a->blocks, &k, buf + boff, blen);
                        persist_block_put(a, f->mailbox, f->uidvalidity, f->uid, first + i,
                                          buf + boff, blen);
                } else {
                        blocks_abandon(a->blocks, &k);
                }
        }
        free(buf);
        if (r == -ENOENT || r == -ESTALE) {
                log_warn("message %u in %s is gone from the server", f->uid, f->mailbox);
                cache_lock(a->cache);
                cache_mbox_mark_stale(a->cache, f->mailbox);
                cache_unlock(a->cache);
        }
        return r;
}

/* Read-ahead learns from how far a file was read (see ahead_on_close). */
static void account_file_reached(struct account_file *f, uint64_t pos)
{
        unsigned long long cur = atomic_load(&f->extent);
        while (cur < pos && !atomic_compare_exchange_weak(&f->extent, &cur, pos)) {
        }
}

int account_file_read(struct account *a, struct account_file *f, uint64_t off, size_t len,
                      char *buf, size_t *got)
{
        *got = 0;
        if (off >= f->size)
                return 0;
        uint64_t end = off + len < f->size ? off + len : f->size;
        if (off > 0)
                atomic_store(&f->read_on, true);
        unsigned long long asked = atomic_load(&f->asked);
        while (asked < len && !atomic_compare_exchange_weak(&f->asked, &asked, len)) {
        }
        /* A header scan's file: what the scan brought of its start answers
         * first, and the rest of the read (if any) goes on below. */
        size_t pre = f->direct ? ahead_head_read(a->ahead, f->mbox_id, f->uidvalidity, f->uid, off,
                                                 (size_t)(end - off), buf, a->imap.timeout_ms)
                               : 0;

        /* Sequential reads double the read-ahead; a seek resets it. */
        unsigned ra = atomic_load(&f->ra_blocks);
        if (off == atomic_load(&f->next_off) && off != 0)
                ra = ra * 2 > RA_MAX_BLOCKS ? RA_MAX_BLOCKS : ra * 2;
        else if (off != 0)
                ra = RA_MIN_BLOCKS;
        atomic_store(&f->ra_blocks, ra);

        uint64_t pos = off + pre;
        int waits = 0, shorts = 0;
        while (pos < end) {
                uint64_t idx = pos / BLOCK_SIZE;
                struct block_key k = account_key(f, idx);
                size_t n = 0;
                /* What this block must give: to the read's end or the block's. */
                uint64_t bend = (idx + 1) * BLOCK_SIZE < end ? (idx + 1) * BLOCK_SIZE : end;
                switch (
                    blocks_get(a->blocks, &k, pos % BLOCK_SIZE, end - pos, buf + (pos - off), &n)) {
                case BLOCKS_HIT:
                        if (n < bend - pos) {
                                /* A block shorter than the size says (never
                                 * stored so now, but a short read would be
                                 * data lost without a word): fetched again
                                 * alone, once; else the read fails. */
                                log_warn("message %u in %s: block %llu is short, fetched again",
                                         f->uid, f->mailbox, (unsigned long long)idx);
                                blocks_forget(a->blocks, &k);
                                if (++shorts > 1)
                                        return -EIO;
                                continue;
                        }
                        pos += n;
                        waits = 0;
                        continue;
                case BLOCKS_BUSY:
                        if (++waits > READ_MAX_WAITS)
                                return -EIO; /* the fetcher never finished: not EOF */
                        blocks_wait(a->blocks, &k, a->imap.timeout_ms);
                        continue;
                case BLOCKS_CLAIMED:
                        break;
                }
                if (account_block_from_disk(a, f, idx))
                        continue;
                /* Fetch what this read needs, and read-ahead beyond it, in one
                 * command, stopping at a block someone else has or fetches. */
                uint64_t need = (end - 1) / BLOCK_SIZE - idx + 1;
                uint64_t want = need > ra ? need : ra;
                uint64_t last = (f->size - 1) / BLOCK_SIZE;
                unsigned count = 1;
                while (count < want && idx + count <= last) {
                        struct block_key kk = account_key(f, idx + count);
                        if (!blocks_try_claim(a->blocks, &kk))
                                break;
                        count++;
                }
                int r = account_fetch_blocks(a, f, idx, count);
                /* Never a short read for a failure: outside direct I/O the
                 * kernel takes a short read as the end of the file, and a
                 * truncated message would look complete. */
                if (r < 0)
                        return r == -ENOMEM ? -ENOMEM : (r == -ENOENT || r == -ESTALE) ? -EIO : r;
        }
        *got = pos - off;
        atomic_store(&f->next_off, pos);
        account_file_reached(f, pos);
        return 0;
}

/* ---- space (statfs) ---- */

/* How long a statfs answer stands: df, file managers and GIO ask often.
 * An estimate from the listings costs no round trip but a walk over every
 * message: it follows the listings within the revalidation window. */
#define ACCOUNT_SPACE_TTL_MS 60000
#define ACCOUNT_SPACE_ESTIMATE_TTL_MS 5000

static int account_quota_fetch(struct imap_session *s, void *ctx)
{
        return imap_quota_get(s, "INBOX", ctx);
}

/* The bytes of every message the listings know (lock held). */
static uint64_t account_known_bytes(struct account *a)
{
        uint64_t sum = 0;
        struct cache_mbox *stack[256];
        size_t n = 0;
        stack[n++] = cache_root(a->cache);
        while (n > 0) {
                struct cache_mbox *m = stack[--n], *ch, *tmp;
                size_t nmsg = 0;
                struct cache_msg **msgs = cache_mbox_msgs(m, &nmsg);
                for (size_t i = 0; i < nmsg; i++)
                        sum += msgs[i]->size;
                /* A tree deeper than the stack is summed in part: an estimate. */
                HASH_ITER(hh_child, m->children, ch, tmp)
                {
                        if (n < sizeof(stack) / sizeof(stack[0]))
                                stack[n++] = ch;
                }
        }
        return sum;
}

void account_dir_opened(struct account *a, uint64_t mbox_id)
{
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, mbox_id);
        if (n && n->kind == CACHE_MBOX)
                ((struct cache_mbox *)n)->opened_ms = imap_now_ms();
        cache_unlock(a->cache);
}

void account_space(struct account *a, struct account_space *out)
{
        int64_t now = imap_now_ms();
        cache_lock(a->cache);
        int ttl = a->space.quota ? ACCOUNT_SPACE_TTL_MS : ACCOUNT_SPACE_ESTIMATE_TTL_MS;
        bool fresh = a->space_checked_ms && now - a->space_checked_ms < ttl;
        bool no_quota = a->space_no_quota; /* read under the lock: another df may set it */
        bool ask = !fresh && !no_quota && account_away(a) == 0;
        if (fresh) {
                *out = a->space;
                cache_unlock(a->cache);
                return;
        }
        cache_unlock(a->cache);
        struct imap_quota q = {0};
        int r = ask        ? account_run(a, NULL, IMAP_POOL_META, account_quota_fetch, &q)
                : no_quota ? -ENOTSUP
                           : -EIO;
        struct account_space sp = {0};
        cache_lock(a->cache);
        if (r == 0 && q.storage && q.storage_limit) {
                sp.quota = true;
                sp.total = q.storage_limit * 1024;
                sp.used = q.storage_used * 1024;
        } else {
                sp.used = account_known_bytes(a);
                sp.total = sp.used + ACCOUNT_SPACE_UNKNOWN_FREE;
        }
        if (r == 0 && q.messages && q.messages_limit) {
                sp.files = q.messages_limit;
                sp.files_free =
                    q.messages_limit > q.messages_used ? q.messages_limit - q.messages_used : 0;
        }
        if (r == -ENOTSUP)
                a->space_no_quota = true;
        /* A failed question (server away) gives the estimate, which stands
         * for its own few seconds: asked again at every call, each df of a
         * file manager would wait the operation's timeout. */
        a->space = sp;
        a->space_checked_ms = now;
        *out = sp;
        cache_unlock(a->cache);
}
