/* Running a query (issue #9): one UID SEARCH per folder, or one ESEARCH IN
 * (personal) for the mount with MULTISEARCH, a few folders at once on the
 * pool otherwise; the UIDs found are matched against the listings and become
 * the query's result. Another spelling of the same query shares its result
 * within the window. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uthash.h>

#include "cache/account.h"
#include "cache/search.h"
#include "cache/search_int.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/ops_search.h"
#include "imap/query.h"

static int search_hits_add(struct search_hits *h, unsigned lo, unsigned hi, size_t limit)
{
        if (lo > hi) {
                unsigned t = lo;
                lo = hi;
                hi = t;
        }
        if (lo == 0 || (size_t)(hi - lo) + 1 > limit - h->n)
                return -EPROTO; /* more matches than messages: a broken answer */
        for (uint64_t u = lo; u <= hi; u++) {
                if (h->n == h->cap) {
                        size_t nc = h->cap ? 2 * h->cap : 64;
                        uint32_t *nv = realloc(h->uids, nc * sizeof(*nv));
                        if (!nv)
                                return -ENOMEM;
                        h->uids = nv;
                        h->cap = nc;
                }
                h->uids[h->n++] = (uint32_t)u;
        }
        return 0;
}

static void search_hits_sort(struct search_hits *h)
{
        if (!h->n)
                return; /* no matches: uids may be NULL, which qsort must not get */
        qsort(h->uids, h->n, sizeof(*h->uids), search_uid_cmp);
        size_t o = 0;
        for (size_t i = 0; i < h->n; i++)
                if (o == 0 || h->uids[o - 1] != h->uids[i])
                        h->uids[o++] = h->uids[i];
        h->n = o;
}

/* One folder to search, and what it answered. */
struct search_job {
        uint64_t mbox_id;
        unsigned heard; /* the folder's count of changes heard, before the search */
        char *raw;
        struct search_hits hits;
        int err;
};

struct search_run {
        struct account *a;
        struct imap_query *q;
        struct search_job *jobs;
        size_t njobs;
        size_t next; /* next job for a worker (mu) */
        pthread_mutex_t mu;
        int limit_err; /* an answer that breaks the rules (mu) */
};

struct folder_ctx {
        struct search_job *j;
        struct imap_query *q;
        size_t limit;
        int err;
};

static void search_folder_range(void *vctx, unsigned lo, unsigned hi)
{
        struct folder_ctx *c = vctx;
        if (c->err == 0)
                c->err = search_hits_add(&c->j->hits, lo, hi, c->limit);
}

static int search_folder_fn(struct imap_session *s, void *vctx)
{
        struct folder_ctx *c = vctx;
        struct imap_select_info si;
        c->j->hits.n = 0;
        c->err = 0;
        int r = imap_select(s, c->j->raw, &si);
        if (r < 0)
                return r;
        c->j->hits.uidvalidity = si.uidvalidity;
        c->limit = si.exists;
        r = imap_search_query(s, c->q, search_folder_range, c);
        return r < 0 ? r : c->err;
}

static void search_job_run(struct account *a, struct imap_query *q, struct search_job *j)
{
        struct folder_ctx c = {j, q, 0, 0};
        j->err = account_run(a, j->raw, IMAP_POOL_META, search_folder_fn, &c);
        if (j->err == 0)
                search_hits_sort(&j->hits);
        else if (j->err != -EOPNOTSUPP)
                log_warn("search in %s failed: %s", j->raw, strerror(-j->err));
}

static void *search_worker(void *vctx)
{
        struct search_run *run = vctx;
        for (;;) {
                pthread_mutex_lock(&run->mu);
                size_t i = run->next < run->njobs ? run->next++ : run->njobs;
                pthread_mutex_unlock(&run->mu);
                if (i >= run->njobs)
                        return NULL;
                search_job_run(run->a, run->q, &run->jobs[i]);
        }
}

/* Without MULTISEARCH: one UID SEARCH per folder, a few folders at once on
 * the pool's connections (each needs its folder selected). */
static void search_run_folders(struct search_run *run)
{
        size_t nthreads = run->a->opts.connections;
        if (nthreads > 4)
                nthreads = 4;
        if (nthreads > run->njobs)
                nthreads = run->njobs;
        pthread_t th[4];
        size_t started = 0;
        for (size_t i = 1; i < nthreads; i++)
                if (pthread_create(&th[started], NULL, search_worker, run) == 0)
                        started++;
        search_worker(run);
        for (size_t i = 0; i < started; i++)
                pthread_join(th[i], NULL);
}

struct multi_ctx {
        struct search_run *run;
        int err;
};

static void search_multi_range(void *vctx, const char *mailbox, uint32_t uidvalidity, unsigned lo,
                               unsigned hi)
{
        struct multi_ctx *c = vctx;
        for (size_t i = 0; i < c->run->njobs; i++) {
                struct search_job *j = &c->run->jobs[i];
                /* INBOX is the one name that is not case-sensitive (RFC 3501 §5.1). */
                if (strcmp(j->raw, mailbox) != 0 &&
                    (strcasecmp(j->raw, "INBOX") != 0 || strcasecmp(mailbox, "INBOX") != 0))
                        continue;
                if (j->hits.n && j->hits.uidvalidity != uidvalidity)
                        c->err = -EPROTO;
                j->hits.uidvalidity = uidvalidity;
                /* No message count here: a UID is 32 bits, and a folder's
                 * answer beyond 16M matches is taken as broken. */
                if (c->err == 0)
                        c->err = search_hits_add(&j->hits, lo, hi, 1u << 24);
                return;
        }
        /* A folder our tree does not know yet: the next tree refresh shows it. */
}

static int search_multi_fn(struct imap_session *s, void *vctx)
{
        struct multi_ctx *c = vctx;
        for (size_t i = 0; i < c->run->njobs; i++)
                c->run->jobs[i].hits.n = 0;
        c->err = 0;
        int r = imap_multisearch(s, c->run->q, search_multi_range, c);
        return r < 0 ? r : c->err;
}

/* Adds folder m to the run (lock held). */
static int search_collect_one(struct cache_mbox *m, struct search_run *run, size_t *cap)
{
        if (m->node.id != CACHE_ROOT_ID && cache_mbox_selectable(m)) {
                if (run->njobs == *cap) {
                        size_t nc = *cap ? 2 * *cap : 16;
                        struct search_job *nv = realloc(run->jobs, nc * sizeof(*nv));
                        if (!nv)
                                return -ENOMEM;
                        run->jobs = nv;
                        *cap = nc;
                }
                struct search_job *j = &run->jobs[run->njobs];
                memset(j, 0, sizeof(*j));
                j->mbox_id = m->node.id;
                j->heard = m->srv.heard;
                j->raw = strdup(m->raw);
                if (!j->raw)
                        return -ENOMEM;
                run->njobs++;
        }
        return 0;
}

/* Collects the folders a root query covers (lock held). */
static int search_collect(struct cache_mbox *m, struct search_run *run, size_t *cap)
{
        int r = search_collect_one(m, run, cap);
        if (r < 0)
                return r;
        struct cache_mbox *ch, *tmp;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                int r = search_collect(ch, run, cap);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The listing must know every UID found (a message delivered since it was
 * taken): fetch it first if not, so that every match has its file. */
static void search_match_listing(struct account *a, struct search_job *j)
{
        if (j->err || j->hits.n == 0)
                return;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, j->mbox_id);
        struct cache_mbox *m = n && n->kind == CACHE_MBOX ? (struct cache_mbox *)n : NULL;
        int age = -2;
        if (m && m->state == CACHE_LISTING_NONE)
                age = -1;
        else if (m && m->uidvalidity != j->hits.uidvalidity)
                age = 0;
        for (size_t i = 0; m && age == -2 && i < j->hits.n; i++)
                if (!cache_msg_by_uid(m, j->hits.uids[i]))
                        age = 0;
        cache_unlock(a->cache);
        if (m && age != -2)
                account_refresh_listing(a, j->mbox_id, age);
}

/* True if the result may be out of date: a folder it covers heard of a
 * change from the server since the search (lock held). */
static bool search_changed(struct account *a, struct search_query *q)
{
        for (size_t i = 0; i < q->nhits; i++) {
                struct cache_mbox *m = search_mbox(a, q->hits[i].mbox_id);
                if (m && m->srv.heard != q->hits[i].heard)
                        return true;
        }
        /* A folder query without a match must see a new message too. */
        if (q->dot->mbox_id != CACHE_ROOT_ID && q->nhits == 0) {
                struct cache_mbox *m = search_mbox(a, q->dot->mbox_id);
                return m && m->state == CACHE_LISTING_STALE;
        }
        return false;
}

/* Tells gone about each entry of the old result not in the new (lock held). */
static void search_report_gone(struct account *a, struct search_query *q, struct search_hits *old,
                               size_t nold, search_gone_fn gone, void *ctx)
{
        for (size_t i = 0; gone && i < nold; i++) {
                struct search_hits *nh = search_hits_of(q, old[i].mbox_id);
                struct cache_mbox *m = search_mbox(a, old[i].mbox_id);
                struct search_node *dir = search_tree_of(q, old[i].mbox_id);
                if (!m || !dir || m->uidvalidity != old[i].uidvalidity)
                        continue;
                for (size_t k = 0; k < old[i].n; k++) {
                        if (nh && nh->uidvalidity == old[i].uidvalidity &&
                            search_hits_has(nh, old[i].uids[k]))
                                continue;
                        struct cache_msg *msg = cache_msg_by_uid(m, old[i].uids[k]);
                        if (msg)
                                gone(ctx, dir->id, msg->name);
                }
        }
}

/* Another spelling of the same query in the same .search directory has a
 * result fresh enough: take a copy of it rather than ask the server again
 * (lock held). */
static bool search_share(struct account *a, struct search_query *q, int max_age_ms)
{
        struct search_query *s = q->dot->queries;
        for (; s; s = s->next)
                if (s != q && s->canon && q->canon && strcmp(s->canon, q->canon) == 0 &&
                    s->run_ms && !s->running &&
                    (max_age_ms < 0 || imap_now_ms() - s->run_ms < max_age_ms) &&
                    !search_changed(a, s))
                        break;
        if (!s)
                return false;
        struct search_hits *h = calloc(s->nhits ? s->nhits : 1, sizeof(*h));
        for (size_t i = 0; h && i < s->nhits; i++) {
                h[i] = s->hits[i];
                h[i].cap = h[i].n;
                h[i].uids = malloc((h[i].n ? h[i].n : 1) * sizeof(*h[i].uids));
                if (!h[i].uids) {
                        search_hits_free(h, i);
                        return false;
                }
                if (h[i].n) /* no matches: the source may be NULL */
                        memcpy(h[i].uids, s->hits[i].uids, h[i].n * sizeof(*h[i].uids));
        }
        if (!h)
                return false;
        search_hits_free(q->hits, q->nhits);
        q->hits = h;
        q->nhits = s->nhits;
        q->run_ms = s->run_ms;
        return true;
}

/* Waits for another thread's run of q, or claims it (lock held on entry and
 * exit). 1: the result is fresh, nothing to do; 0: claimed; <0 error. */
static int search_claim(struct account *a, uint64_t qid, int max_age_ms, struct search_query **out)
{
        int64_t deadline = imap_now_ms() + a->imap.timeout_ms;
        for (;;) {
                struct search_node *n = search_node_get(a, qid);
                if (!n || (n->kind != SEARCH_QUERY && n->kind != SEARCH_TREE))
                        return -ENOENT;
                struct search_query *q = n->query;
                *out = q;
                q->used_ms = imap_now_ms(); /* opened through a name the kernel kept */
                bool fresh = q->run_ms &&
                             (max_age_ms < 0 || imap_now_ms() - q->run_ms < max_age_ms) &&
                             (max_age_ms < 0 || !search_changed(a, q));
                if (fresh)
                        return 1;
                if (!q->running && search_share(a, q, max_age_ms))
                        return 1;
                if (!q->running) {
                        q->running = true;
                        return 0;
                }
                int w = cache_wait(a->cache, deadline);
                if (w == -ESHUTDOWN)
                        return -EIO;
                /* The other run has its own deadlines (a root query may take
                 * several): not waiting twice as long, the last result will do. */
                if (w == -ETIMEDOUT)
                        return q->run_ms ? 1 : -EIO;
        }
}

int search_run(struct account *a, uint64_t id, int max_age_ms, search_gone_fn gone, void *ctx)
{
        struct search_query *sq;
        cache_lock(a->cache);
        int r = search_claim(a, id, max_age_ms, &sq);
        if (r != 0) {
                cache_unlock(a->cache);
                return r < 0 ? r : 0;
        }
        uint64_t scope = sq->dot->mbox_id;
        uint64_t qid = sq->node->id;
        char *text = strdup(sq->text);
        struct search_run run = {.a = a};
        size_t cap = 0;
        int64_t started = imap_now_ms();
        r = text ? 0 : -ENOMEM;
        cache_unlock(a->cache);

        if (r == 0)
                r = imap_query_parse(text, strlen(text), time(NULL), &run.q, NULL);
        if (r == 0 && scope == CACHE_ROOT_ID)
                r = account_refresh_tree(a, a->opts.revalidate_ms);
        cache_lock(a->cache);
        struct cache_mbox *sm = search_mbox(a, scope);
        if (r == 0 && !sm)
                r = -ENOENT;
        /* FOLDER/.search covers the folder itself, not its subfolders. */
        if (r == 0)
                r = scope == CACHE_ROOT_ID ? search_collect(sm, &run, &cap)
                                           : search_collect_one(sm, &run, &cap);
        cache_unlock(a->cache);

        if (r == 0 && scope == CACHE_ROOT_ID && run.njobs) {
                struct multi_ctx mc = {&run, 0};
                int m = account_run(a, NULL, IMAP_POOL_META, search_multi_fn, &mc);
                if (m == 0) {
                        for (size_t i = 0; i < run.njobs; i++)
                                search_hits_sort(&run.jobs[i].hits);
                } else {
                        if (m != -EOPNOTSUPP)
                                log_warn("ESEARCH IN (personal) failed (%s): one search per "
                                         "folder instead",
                                         strerror(-m));
                        pthread_mutex_init(&run.mu, NULL);
                        search_run_folders(&run);
                        pthread_mutex_destroy(&run.mu);
                }
        } else if (r == 0 && run.njobs) {
                search_job_run(a, run.q, &run.jobs[0]);
        }
        size_t failed = 0;
        for (size_t i = 0; r == 0 && i < run.njobs; i++) {
                if (run.jobs[i].err) {
                        failed++;
                        if (run.jobs[i].err == -EOPNOTSUPP || scope != CACHE_ROOT_ID)
                                r = run.jobs[i].err;
                }
                search_match_listing(a, &run.jobs[i]);
        }
        if (r == 0 && failed && failed == run.njobs)
                r = run.jobs[0].err;

        /* The new result: every folder with matches. */
        struct search_hits *hits = NULL;
        size_t nhits = 0;
        if (r == 0) {
                hits = calloc(run.njobs ? run.njobs : 1, sizeof(*hits));
                if (!hits)
                        r = -ENOMEM;
        }
        cache_lock(a->cache);
        struct search_node *qn = search_node_get(a, qid);
        for (size_t i = 0; r == 0 && i < run.njobs; i++) {
                struct search_job *j = &run.jobs[i];
                if (j->err || j->hits.n == 0)
                        continue;
                hits[nhits] = j->hits;
                hits[nhits].mbox_id = j->mbox_id;
                hits[nhits].heard = j->heard;
                j->hits.uids = NULL;
                nhits++;
        }
        if (qn) {
                struct search_query *q = qn->query;
                q->running = false;
                if (r == 0) {
                        struct search_hits *old = q->hits;
                        size_t nold = q->nhits;
                        q->hits = hits;
                        q->nhits = nhits;
                        q->run_ms = started;
                        hits = NULL;
                        search_report_gone(a, q, old, nold, gone, ctx);
                        search_hits_free(old, nold);
                }
        }
        cache_wake(a->cache);
        cache_unlock(a->cache);
        if (hits)
                search_hits_free(hits, nhits);
        for (size_t i = 0; i < run.njobs; i++) {
                free(run.jobs[i].raw);
                free(run.jobs[i].hits.uids);
        }
        free(run.jobs);
        imap_query_free(run.q);
        free(text);
        return r;
}
