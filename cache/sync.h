/* Live sync: what other devices change shows up here within seconds.
 *
 * A thread with its own IMAP connection (IDLE holds a connection; it takes
 * one of the pool's slots, so that the mount stays within `connections`)
 * watches the folder used most recently (INBOX until another is opened)
 * with IDLE. With connections=1 there is no slot to take: the thread then
 * borrows the pool's one connection between operations, checking the
 * watched folder every 5 s (NOOP or STATUS) and polling as below. With NOTIFY the same connection hears of every other
 * folder, and a slow safety poll asks STATUS of each listed folder every
 * poll interval. Without NOTIFY a poll round costs about two round trips
 * however many folders there are: LIST-STATUS (the tree and every STATUS in
 * one command) where offered, else LIST and the due folders' STATUS
 * pipelined; folders used in the last 5 minutes are due every interval,
 * others less often. A change found any way refreshes that listing through
 * the account; the cache's observer then tells the kernel which names
 * appeared or went. Without IDLE the watched folder is polled with NOOP. */
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

/* A folder was opened: watch it with IDLE from now on, and count it as used
 * (polled every interval for the next 5 minutes). */
void sync_watch(struct sync *sy, const char *mailbox);

#endif
