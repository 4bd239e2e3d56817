/* Read-ahead across files. When files of a folder are opened near each other
 * in name order, up or down, by one reader or several at once (cat *,
 * grep -r, rg, `ls -r` loops, xargs -P), a background thread fetches the
 * first blocks of the next messages in the scan's direction, in batches of
 * one UID FETCH each, so the network works while the readers are busy with
 * the files they already have. */
#ifndef IMAPFS_CACHE_AHEAD_H
#define IMAPFS_CACHE_AHEAD_H

#include <stdbool.h>
#include <stdint.h>

struct account;
struct cache_msg;
struct ahead;

struct ahead *ahead_new(struct account *a);
/* Asks the thread to stop without waiting: queued jobs are dropped, the
 * batch in flight ends by its deadline. NULL is fine. */
void ahead_stop(struct ahead *h);
/* Waits until the threads have ended, at most until deadline_ms (monotonic,
 * as imap_now_ms()); true if they have (or never ran). */
bool ahead_join_until(struct ahead *h, int64_t deadline_ms);
/* Stops the thread (waiting for the batch in flight) and frees everything. */
void ahead_free(struct ahead *h);

/* Called when msg is opened, with the cache lock held: updates the scans'
 * state and, during a scan, queues the next batch. Never blocks on I/O. */
void ahead_on_open(struct ahead *h, struct cache_msg *msg);

#endif
