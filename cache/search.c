#include "cache/search.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "cache/account.h"
#include "cache/search_int.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/query.h"

/* The search table: which .search directories, queries and tree folders
 * exist, and what a query's result lists. Running a query: search_run.c. */

struct search *search_new(void)
{
        return calloc(1, sizeof(struct search));
}

void search_hits_free(struct search_hits *h, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(h[i].uids);
        free(h);
}

void search_free(struct search *t)
{
        if (!t)
                return;
        struct search_node *n, *tmp;
        /* The secondary tables first: their bookkeeping lives in nodes. */
        HASH_CLEAR(hh_dot, t->dots);
        HASH_ITER(hh, t->nodes, n, tmp)
        {
                if (n->kind == SEARCH_QUERY)
                        HASH_CLEAR(hh_tree, n->query->trees);
        }
        HASH_ITER(hh, t->nodes, n, tmp)
        {
                HASH_DELETE(hh, t->nodes, n);
                if (n->kind == SEARCH_QUERY) {
                        struct search_query *q = n->query;
                        search_hits_free(q->hits, q->nhits);
                        free(q->dirname);
                        free(q->text);
                        free(q->canon);
                        free(q);
                }
                free(n);
        }
        free(t);
}

struct search_node *search_node_get(struct account *a, uint64_t id)
{
        struct search_node *n = NULL;
        if (a->search)
                HASH_FIND(hh, a->search->nodes, &id, sizeof(id), n);
        return n;
}

static struct search_node *search_node_new(struct account *a, enum search_kind kind,
                                           uint64_t mbox_id)
{
        struct search_node *n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->id = cache_id_alloc(a->cache);
        n->kind = kind;
        n->mbox_id = mbox_id;
        HASH_ADD(hh, a->search->nodes, id, sizeof(n->id), n);
        return n;
}

enum search_kind search_kind_of(struct account *a, uint64_t id, uint64_t *mbox_id)
{
        struct search_node *n = search_node_get(a, id);
        if (n && mbox_id)
                *mbox_id = n->mbox_id;
        return n ? n->kind : SEARCH_NONE;
}

uint64_t search_dot(struct account *a, uint64_t mbox_id)
{
        if (!a->search)
                return 0;
        struct cache_node *cn = cache_node_get(a->cache, mbox_id);
        if (!cn || cn->kind != CACHE_MBOX)
                return 0;
        if (mbox_id != CACHE_ROOT_ID && !cache_mbox_selectable((struct cache_mbox *)cn))
                return 0;
        struct search_node *d;
        HASH_FIND(hh_dot, a->search->dots, &mbox_id, sizeof(mbox_id), d);
        if (d)
                return d->id;
        d = search_node_new(a, SEARCH_DOT, mbox_id);
        if (!d)
                return 0;
        HASH_ADD(hh_dot, a->search->dots, mbox_id, sizeof(d->mbox_id), d);
        return d->id;
}

int search_query_open(struct account *a, uint64_t dot_id, const char *dirname, uint64_t *id)
{
        char *text = NULL;
        int r = imap_query_from_dirname(dirname, &text);
        if (r < 0) {
                if (r == -EINVAL)
                        log_warn("search query %s: a NUL byte (%%00) can't be searched for",
                                 dirname);
                return r;
        }
        struct imap_query *q = NULL;
        struct imap_query_err err = {0};
        r = imap_query_parse(text, strlen(text), time(NULL), &q, &err);
        char *canon = r == 0 ? imap_query_canonical(q) : NULL;
        imap_query_free(q);
        if (r == 0 && !canon)
                r = -ENOMEM;
        if (r < 0) {
                if (r == -EINVAL)
                        log_warn("search query %s: %s (at byte %zu)", dirname, err.reason, err.pos);
                free(text);
                return r;
        }
        cache_lock(a->cache);
        struct search_node *d = search_node_get(a, dot_id);
        if (!d || d->kind != SEARCH_DOT) {
                cache_unlock(a->cache);
                free(text);
                free(canon);
                return -ENOENT;
        }
        int64_t now = imap_now_ms();
        struct search_query *sq = d->queries;
        /* Results of queries not used for a while are dropped (the directory
         * stays: the kernel may still know its inode; it runs again if used). */
        for (; sq; sq = sq->next)
                if (!sq->running && sq->hits && now - sq->used_ms >= SEARCH_RECENT_MS) {
                        search_hits_free(sq->hits, sq->nhits);
                        sq->hits = NULL;
                        sq->nhits = 0;
                        sq->run_ms = 0;
                }
        sq = d->queries;
        while (sq && strcmp(sq->dirname, dirname) != 0)
                sq = sq->next;
        if (!sq) {
                sq = calloc(1, sizeof(*sq));
                char *dn = strdup(dirname);
                struct search_node *qn =
                    sq && dn ? search_node_new(a, SEARCH_QUERY, d->mbox_id) : NULL;
                if (!qn) {
                        cache_unlock(a->cache);
                        free(sq);
                        free(dn);
                        free(text);
                        free(canon);
                        return -ENOMEM;
                }
                qn->query = sq;
                sq->node = qn;
                sq->dot = d;
                sq->dirname = dn;
                sq->text = text;
                text = NULL;
                sq->next = d->queries;
                d->queries = sq;
        }
        /* Relative dates make the meaning change with the day: the latest. */
        free(sq->canon);
        sq->canon = canon;
        sq->used_ms = now;
        *id = sq->node->id;
        cache_unlock(a->cache);
        free(text);
        return 0;
}

/* ---- running a query ---- */

int search_uid_cmp(const void *x, const void *y)
{
        uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
        return a < b ? -1 : a > b;
}

bool search_hits_has(const struct search_hits *h, uint32_t uid)
{
        return bsearch(&uid, h->uids, h->n, sizeof(*h->uids), search_uid_cmp) != NULL;
}

struct search_hits *search_hits_of(struct search_query *q, uint64_t mbox_id)
{
        for (size_t i = 0; i < q->nhits; i++)
                if (q->hits[i].mbox_id == mbox_id)
                        return &q->hits[i];
        return NULL;
}

struct cache_mbox *search_mbox(struct account *a, uint64_t id)
{
        struct cache_node *n = cache_node_get(a->cache, id);
        return n && n->kind == CACHE_MBOX ? (struct cache_mbox *)n : NULL;
}

struct search_node *search_tree_of(struct search_query *q, uint64_t mbox_id)
{
        struct search_node *t;
        if (mbox_id == q->dot->mbox_id)
                return q->node;
        HASH_FIND(hh_tree, q->trees, &mbox_id, sizeof(mbox_id), t);
        return t;
}

bool search_has_result(struct account *a, uint64_t id)
{
        struct search_node *n = search_node_get(a, id);
        return n && n->query && n->query->run_ms != 0;
}

/* True if folder m or one below it has matches in q (lock held). */
static bool search_below(struct account *a, struct search_query *q, const struct cache_mbox *m)
{
        for (size_t i = 0; i < q->nhits; i++)
                for (struct cache_mbox *h = search_mbox(a, q->hits[i].mbox_id); h; h = h->parent)
                        if (h == m)
                                return true;
        return false;
}

/* The tree folder of root query q for mailbox m, made on first use (lock held). */
static struct search_node *search_tree_make(struct account *a, struct search_query *q,
                                            struct cache_mbox *m)
{
        struct search_node *t = search_tree_of(q, m->node.id);
        if (t)
                return t;
        t = search_node_new(a, SEARCH_TREE, m->node.id);
        if (!t)
                return NULL;
        t->query = q;
        HASH_ADD(hh_tree, q->trees, mbox_id, sizeof(t->mbox_id), t);
        return t;
}

int search_list(struct account *a, uint64_t id, search_ent_fn fn, void *ctx)
{
        struct search_node *n = search_node_get(a, id);
        if (!n)
                return -ENOENT;
        int64_t now = imap_now_ms();
        if (n->kind == SEARCH_DOT) {
                for (struct search_query *q = n->queries; q; q = q->next)
                        if (now - q->used_ms < SEARCH_RECENT_MS) {
                                int r = fn(ctx, q->dirname, q->node->id, NULL);
                                if (r)
                                        return r;
                        }
                return 0;
        }
        struct search_query *q = n->query;
        struct cache_mbox *m = search_mbox(a, n->mbox_id);
        if (!m)
                return 0;
        /* Folders below, with matches (a root query only). */
        if (q->dot->mbox_id == CACHE_ROOT_ID) {
                struct cache_mbox *ch, *tmp;
                HASH_ITER(hh_child, m->children, ch, tmp)
                {
                        if (!search_below(a, q, ch))
                                continue;
                        struct search_node *t = search_tree_make(a, q, ch);
                        if (!t)
                                return -ENOMEM;
                        int r = fn(ctx, ch->dname, t->id, NULL);
                        if (r)
                                return r;
                }
        }
        struct search_hits *h = search_hits_of(q, m->node.id);
        if (!h || h->uidvalidity != m->uidvalidity || !m->nmsgs)
                return 0;
        /* In file-name order, as the folder lists them. */
        struct cache_msg **sorted = cache_mbox_sorted(m);
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < m->nmsgs; i++)
                if (search_hits_has(h, sorted[i]->uid)) {
                        int r = fn(ctx, sorted[i]->name, sorted[i]->node.id, &sorted[i]->node);
                        if (r)
                                return r;
                }
        return 0;
}

int search_find(struct account *a, uint64_t id, const char *name, uint64_t *out,
                struct cache_msg **msg)
{
        struct search_node *n = search_node_get(a, id);
        if (msg)
                *msg = NULL;
        if (!n || n->kind == SEARCH_DOT)
                return -ENOENT;
        struct search_query *q = n->query;
        struct cache_mbox *m = search_mbox(a, n->mbox_id);
        if (!m)
                return -ENOENT;
        struct cache_msg *cm = cache_msg_by_name(m, name);
        struct search_hits *h = search_hits_of(q, m->node.id);
        if (cm && h && h->uidvalidity == m->uidvalidity && search_hits_has(h, cm->uid)) {
                *out = cm->node.id;
                if (msg)
                        *msg = cm;
                return 0;
        }
        struct cache_mbox *ch = q->dot->mbox_id == CACHE_ROOT_ID ? cache_mbox_child(m, name) : NULL;
        if (ch && search_below(a, q, ch)) {
                struct search_node *t = search_tree_make(a, q, ch);
                if (!t)
                        return -ENOMEM;
                *out = t->id;
                return 0;
        }
        return -ENOENT;
}

void search_dirs_of(struct account *a, uint64_t mbox_id, void (*fn)(void *ctx, uint64_t dir),
                    void *ctx)
{
        struct search_node *n, *tmp;
        if (!a->search)
                return;
        HASH_ITER(hh, a->search->nodes, n, tmp)
        {
                if (n->kind != SEARCH_QUERY || !search_hits_of(n->query, mbox_id))
                        continue;
                struct search_node *dir = search_tree_of(n->query, mbox_id);
                if (dir)
                        fn(ctx, dir->id);
        }
}
