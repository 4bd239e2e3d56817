/* Live sync: what other devices change shows up here within seconds.
 *
 * A thread with its own IMAP connection (outside the pool, since IDLE holds
 * a connection) watches the folder used most recently (INBOX until another
 * is opened) with IDLE, and every poll interval asks the server about every
 * other folder we have listed (STATUS, one command each) and the folder tree
 * (LIST). A change found either way refreshes that listing through the
 * account; the cache's observer then tells the kernel which names appeared
 * or went. Without IDLE the watched folder is polled like the others. */
#ifndef IMAPFS_CACHE_SYNC_H
#define IMAPFS_CACHE_SYNC_H

#include <stdbool.h>
#include <stdint.h>

struct account;
struct sync;

/* poll_ms: how often the other folders and the tree are checked. */
struct sync *sync_new(struct account *a, int poll_ms);
/* Starts the thread (after daemonizing: threads don't survive fork). */
int sync_start(struct sync *sy);
/* Asks the thread to stop, without waiting for it (it ends after the server
 * command in progress, which has a deadline). NULL is fine. */
void sync_stop(struct sync *sy);
/* Waits until the thread has ended, at most until deadline_ms (monotonic,
 * as imap_now_ms()); true if it has (or never ran). */
bool sync_join_until(struct sync *sy, int64_t deadline_ms);
/* Stops the thread and frees everything. */
void sync_free(struct sync *sy);

/* A folder was opened: watch it with IDLE from now on. */
void sync_watch(struct sync *sy, const char *mailbox);

#endif
