/* What cache/search.c and cache/search_run.c share: the table of search
 * nodes and results (guarded by the cache lock), and the helpers both use.
 * Not for use outside cache/. */
#ifndef IMAPFS_CACHE_SEARCH_INT_H
#define IMAPFS_CACHE_SEARCH_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

#include "cache/mailbox.h"
#include "cache/search.h"

/* One folder's matches: UIDs (sorted) valid under uidvalidity. heard is the
 * folder's count of changes heard from the server when the search ran: a
 * different count later means the result may be out of date. */
struct search_hits {
        uint64_t mbox_id;
        uint32_t uidvalidity;
        unsigned heard;
        uint32_t *uids;
        size_t n, cap;
};

struct search_query;

struct search_node {
        uint64_t id;
        enum search_kind kind;
        uint64_t mbox_id;             /* the folder shown (DOT: whose .search) */
        struct search_query *query;   /* QUERY, TREE */
        struct search_query *queries; /* DOT: its queries, newest first */
        UT_hash_handle hh;            /* search.nodes, by id */
        UT_hash_handle hh_dot;        /* search.dots, by mbox_id */
        UT_hash_handle hh_tree;       /* query->trees, by mbox_id */
};

struct search_query {
        struct search_node *node; /* its directory */
        struct search_node *dot;
        char *dirname;           /* as typed (escapes included) */
        char *text;              /* the query itself */
        char *canon;             /* its meaning (imap_query_canonical): same meaning, same result */
        int64_t used_ms, run_ms; /* run_ms 0: never run */
        bool running;
        struct search_hits *hits; /* one per folder with matches */
        size_t nhits;
        struct search_node *trees; /* tree folders under a root query */
        struct search_query *next;
};

struct search {
        struct search_node *nodes;
        struct search_node *dots;
};

void search_hits_free(struct search_hits *h, size_t n);
int search_uid_cmp(const void *x, const void *y);
bool search_hits_has(const struct search_hits *h, uint32_t uid);
struct search_node *search_node_get(struct account *a, uint64_t id);
/* The mailbox id stands for, or NULL (lock held). */
struct cache_mbox *search_mbox(struct account *a, uint64_t id);
/* Query q's result for folder mbox_id, or NULL. */
struct search_hits *search_hits_of(struct search_query *q, uint64_t mbox_id);
/* The directory of q that shows folder mbox_id, if it exists. */
struct search_node *search_tree_of(struct search_query *q, uint64_t mbox_id);

#endif
