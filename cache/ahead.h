/* Read-ahead across files. When files of a folder are opened near each other
 * in name order, up or down, by one reader or several at once (cat *,
 * grep -r, rg, `ls -r` loops, xargs -P), a background thread fetches the
 * first blocks of the next messages in the scan's direction, in batches of
 * one UID FETCH each, so the network works while the readers are busy with
 * the files they already have. */
#ifndef IMAPFS_CACHE_AHEAD_H
#define IMAPFS_CACHE_AHEAD_H

#include <stdbool.h>
#include <stddef.h>
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
 * state and, during a scan, queues the next batch. Never blocks on I/O.
 * Sets *stream to the scan the open belongs to (for ahead_on_close); true if
 * the file should be read with direct I/O (a probe of a new scan, or a file
 * of a header scan: see ahead.c). */
bool ahead_on_open(struct ahead *h, struct cache_msg *msg, uint64_t *stream);
/* How far into a file a reader of a header scan may go (see ahead.c). */
#define AHEAD_HEAD_EXTENT (64u << 10)

/* A file opened with direct I/O was closed after reading up to extent of
 * its size bytes: a vote for or against a header scan. Cache lock held. */
void ahead_on_close(struct ahead *h, uint64_t stream, uint64_t extent, uint64_t size);
/* Bytes from off (at most len) of the start of the message that a header
 * scan brought, waiting up to timeout_ms for one on its way; 0 if there is
 * none or off is past it. The caller reads on from where it ends. */
size_t ahead_head_read(struct ahead *h, uint64_t mbox_id, uint32_t uidvalidity, uint32_t uid,
                       uint64_t off, size_t len, char *buf, int timeout_ms);

#endif
