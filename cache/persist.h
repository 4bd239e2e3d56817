/* The persistent cache seen from the account: listings and the folder tree
 * survive a remount (so a remount costs a few commands, not a download), and
 * message content read once is read from disk next time, also while the
 * server is unreachable. A thin layer over cache/store.c (LMDB); every
 * function is a no-op when the cache is off (-o cache=no). */
#ifndef IMAPFS_CACHE_PERSIST_H
#define IMAPFS_CACHE_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct account;

/* Opens dir (NULL: cachedir_default(), $XDG_CACHE_HOME/imapfs/USER@HOST:PORT).
 * Another mount of the same account may use it at the same time. No home
 * directory to put the default in means running without a persistent cache:
 * said once on stderr, not an error. Other failures are errors (-errno, err). */
int persist_open(struct account *a, const char *dir, uint64_t max_bytes, char *err, size_t errlen);
/* Starts the store's writer thread, in the process that serves the mount
 * (after daemonizing): from then on writes never wait for the disk. */
void persist_start(struct account *a);
/* Commits what is queued and closes. */
void persist_close(struct account *a);

/* The folder tree from the last session; false if none. */
bool persist_load_tree(struct account *a);
void persist_save_tree(struct account *a);

/* Fills the listing of mailbox id from disk if the cache has none yet; it is
 * marked stale, to be confirmed (cheaply, with CONDSTORE) by the server. */
void persist_load_listing(struct account *a, uint64_t mbox_id);
/* Writes the listing of mailbox id as the cache has it now (only the
 * messages that changed reach the disk). */
void persist_save_listing(struct account *a, uint64_t mbox_id);
/* Server-wide content ids of messages of mailbox (see store_cids_save): their content is
 * then stored and found by id, whichever folder it is read through. */
struct store_cid;
void persist_save_cids(struct account *a, const char *mailbox, uint32_t uidvalidity,
                       const struct store_cid *v, size_t n);
/* Forgets everything stored under a mailbox name (its listing and content)
 * and, if delim is not '\0', under the names below it: after rmdir, and for
 * the old names after a rename. */
void persist_drop_mailbox(struct account *a, const char *mailbox, char delim);

/* Content blocks. get: length, or < 0 when not on disk. */
ssize_t persist_block_get(struct account *a, const char *mailbox, uint32_t uidvalidity,
                          uint32_t uid, uint64_t index, void *buf, size_t cap);
void persist_block_put(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index, const void *data, size_t len);
bool persist_block_has(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index);

#endif
