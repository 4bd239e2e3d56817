/* Coalescing of concurrent changes of the same kind (issue 11): requests
 * with the same key (kind, source folder, target) that are in flight at
 * once go out as one command over a UID set.
 *
 * The first request of a key becomes the leader. While an earlier batch of
 * the same key is still on the wire, it waits for it (at most a deadline),
 * collecting the requests that arrive meanwhile; then it takes them all and
 * runs them at once (run gets every request's argument and sets each one's
 * answer in it). Followers sleep until their request was run. Before it
 * goes, a leader also waits for the callers of the batch answered last to
 * come back with their next request (at most an eighth of that batch's
 * round trip): callers working through lists (xargs -P) then go as one
 * batch per round trip instead of two halves taking turns. A serial caller
 * never waits: it is its own comeback, and with nothing in flight the leader
 * goes at once. */
#ifndef IMAPFS_CACHE_BATCH_H
#define IMAPFS_CACHE_BATCH_H

#include <stddef.h>

struct batch;

/* wait_ms: the longest a request waits before it is taken into a batch; a
 * request not taken by then is withdrawn (nothing was sent for it). */
struct batch *batch_new(int wait_ms);
void batch_free(struct batch *b);

typedef void (*batch_run_fn)(void *ctx, void **args, size_t n);

/* Queues arg under key and returns once run(ctx, args, n) has been called
 * with arg among args, by this thread or another: 0; -ETIMEDOUT if it was
 * withdrawn before any command for it left; -ENOMEM. */
int batch_submit(struct batch *b, const char *key, void *arg, batch_run_fn run, void *ctx);

#endif
