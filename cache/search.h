/* Search results as directories (issue #9), the store's half: which virtual
 * directories exist (FOLDER/.search, its query directories, MOUNT/.search
 * and the tree of folders under each of its queries), running a query on
 * the server and matching the UIDs against the folder listings. Nothing of
 * the messages is downloaded to search.
 *
 * Every virtual directory has an id from cache_id_alloc() (so it never
 * collides with a mailbox, a message or another virtual node) and lives
 * until the account is destroyed: the kernel may keep an inode number long
 * after a query was last used. A result names messages by folder and UID
 * and is resolved against the listing whenever it is read, so a message
 * expunged or moved away drops out at once, and an entry is the message's
 * own node (same id, same attributes).
 *
 * Locking: the table is guarded by the cache lock, like the cache. Functions
 * say whether they take it (no network I/O with it held). */
#ifndef IMAPFS_CACHE_SEARCH_H
#define IMAPFS_CACHE_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/mailbox.h"

struct account;
struct search;

/* How long a query used through a .search directory is listed there. */
#define SEARCH_RECENT_MS (5 * 60 * 1000)

enum search_kind {
        SEARCH_NONE,  /* not a search node */
        SEARCH_DOT,   /* FOLDER/.search or MOUNT/.search */
        SEARCH_QUERY, /* .search/QUERY */
        SEARCH_TREE,  /* MOUNT/.search/QUERY/FOLDER/...: one folder of a root query */
};

struct search *search_new(void);
void search_free(struct search *t);

/* What node id is (lock held); *mbox_id (may be NULL) gets the folder it
 * is about (CACHE_ROOT_ID for the mount's). */
enum search_kind search_kind_of(struct account *a, uint64_t id, uint64_t *mbox_id);

/* The id of the .search directory of mailbox mbox_id, made on first use
 * (lock held). 0 if the folder can hold no search (a \Noselect folder other
 * than the root) or on ENOMEM. */
uint64_t search_dot(struct account *a, uint64_t mbox_id);

/* The query directory dirname in .search directory dot_id (no lock): the
 * name is unescaped (%2F is '/') and parsed; a query that does not parse is
 * -EINVAL with one log line saying where. Marks the query as used now.
 * -ENOENT if dot_id is not a .search directory, -ENOMEM. */
int search_query_open(struct account *a, uint64_t dot_id, const char *dirname, uint64_t *id);

/* Called (lock held) for each entry that left directory dir when a query
 * was run again, so that the kernel can be told. */
typedef void (*search_gone_fn)(void *ctx, uint64_t dir, const char *name);

/* Runs the query of directory id (a query or one of its tree folders) on
 * the server unless its result is younger than max_age_ms (-1: any result
 * will do) and no folder it covers has changed since (no lock). 0, -ENOENT,
 * -EIO, -EOPNOTSUPP (gmail: without X-GM-EXT-1), -ENOMEM. */
int search_run(struct account *a, uint64_t id, int max_age_ms, search_gone_fn gone, void *ctx);

/* True once the query of directory id has a result (lock held). */
bool search_has_result(struct account *a, uint64_t id);

/* The entries of directory id (lock held): for .search, the queries used
 * in the last SEARCH_RECENT_MS (node NULL); for a query or tree folder, the
 * folders below it with matches (node NULL) and the matching messages of
 * its folder in file-name order (node: the message). Stops at the first
 * non-zero return of fn and returns it. */
typedef int (*search_ent_fn)(void *ctx, const char *name, uint64_t id,
                             const struct cache_node *node);
int search_list(struct account *a, uint64_t id, search_ent_fn fn, void *ctx);

/* Finds name in directory id (lock held): *out gets the entry's id, *msg
 * (may be NULL) the message (NULL for a directory). -ENOENT if it is not
 * an entry (a .search name is not found here: it is a query to open). */
int search_find(struct account *a, uint64_t id, const char *name, uint64_t *out,
                struct cache_msg **msg);

/* Calls fn for each directory (lock held) that shows the matches of folder
 * mbox_id, so that a name the folder lost can be forgotten there too. */
void search_dirs_of(struct account *a, uint64_t mbox_id, void (*fn)(void *ctx, uint64_t dir),
                    void *ctx);

#endif
