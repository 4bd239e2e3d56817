/* Message content in memory: fixed-size blocks of immutable message bytes,
 * keyed by (mailbox id, UIDVALIDITY, UID, block number), bounded in total
 * size with least-recently-used eviction.
 *
 * Single flight: the first reader of a missing block claims it and fetches
 * it; later readers of the same block wait for that fetch instead of sending
 * their own. */
#ifndef IMAPFS_CACHE_BLOCKS_H
#define IMAPFS_CACHE_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOCK_SIZE (64u * 1024)

struct block_key {
        uint64_t mbox;
        uint32_t uidvalidity;
        uint32_t uid;
        uint64_t index;
};

struct blocks;

struct blocks *blocks_new(size_t max_bytes);
void blocks_free(struct blocks *b);

enum blocks_get_result {
        BLOCKS_HIT,     /* copied into dst */
        BLOCKS_CLAIMED, /* missing: the caller must blocks_put() or blocks_abandon() it */
        BLOCKS_BUSY,    /* another thread is fetching it: blocks_wait() then ask again */
};

/* Looks up a block; on a hit copies bytes [off, off+len) of it (clipped to
 * what the block holds) into dst and sets *copied. */
enum blocks_get_result blocks_get(struct blocks *b, const struct block_key *k, size_t off,
                                  size_t len, void *dst, size_t *copied);

/* Claims a block only if nobody has it or is fetching it (for read-ahead:
 * never waits). */
bool blocks_try_claim(struct blocks *b, const struct block_key *k);

/* True if the block is here or being fetched (for read-ahead's plans: never
 * claims). */
bool blocks_present(struct blocks *b, const struct block_key *k);

/* Stores a claimed block's bytes (len <= BLOCK_SIZE; short only for the last
 * block of a message) and wakes the waiters. */
void blocks_put(struct blocks *b, const struct block_key *k, const void *data, size_t len);

/* Gives up a claim (the fetch failed); waiters retry and one of them claims. */
void blocks_abandon(struct blocks *b, const struct block_key *k);

/* Drops a stored block that turned out wrong (shorter than the message's
 * size says it must be), so that the next reader claims and fetches it
 * again. Nothing for a block being fetched. */
void blocks_forget(struct blocks *b, const struct block_key *k);

/* Waits until the block stops being fetched, at most timeout_ms; at once
 * after blocks_shutdown(). The caller asks again (blocks_get). */
void blocks_wait(struct blocks *b, const struct block_key *k, int timeout_ms);

/* The daemon is stopping: every wait, present and future, returns at once
 * (readers then give up after their few tries instead of waiting out each
 * timeout). */
void blocks_shutdown(struct blocks *b);

/* Totals for statistics and tests. */
size_t blocks_bytes(struct blocks *b);
size_t blocks_count(struct blocks *b);

#endif
