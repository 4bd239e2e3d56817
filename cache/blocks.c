#include "cache/blocks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utlist.h>
#include <uthash.h>

struct block {
        struct block_key key;
        bool pending; /* claimed, bytes not here yet */
        char *data;
        size_t len;
        struct block *prev, *next; /* LRU list, most recent first; only filled blocks */
        UT_hash_handle hh;
};

struct blocks {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct block *table;
        struct block *lru;
        size_t bytes, max_bytes, count;
        bool shutdown;
};

/* Keys are compared as bytes: build them with no padding garbage. */
static struct block_key blocks_norm(const struct block_key *k)
{
        struct block_key n;
        memset(&n, 0, sizeof(n));
        n.mbox = k->mbox;
        n.uidvalidity = k->uidvalidity;
        n.uid = k->uid;
        n.index = k->index;
        return n;
}

static struct block *blocks_find(struct blocks *b, const struct block_key *k)
{
        struct block_key n = blocks_norm(k);
        struct block *bl;
        HASH_FIND(hh, b->table, &n, sizeof(n), bl);
        return bl;
}

struct blocks *blocks_new(size_t max_bytes)
{
        struct blocks *b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        pthread_mutex_init(&b->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&b->cv, &ca);
        pthread_condattr_destroy(&ca);
        b->max_bytes = max_bytes;
        return b;
}

static void blocks_drop(struct blocks *b, struct block *bl)
{
        HASH_DEL(b->table, bl);
        if (!bl->pending) {
                DL_DELETE(b->lru, bl);
                b->bytes -= bl->len;
        }
        b->count--;
        free(bl->data);
        free(bl);
}

void blocks_free(struct blocks *b)
{
        struct block *bl, *tmp;
        if (!b)
                return;
        HASH_ITER(hh, b->table, bl, tmp)
        {
                blocks_drop(b, bl);
        }
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        free(b);
}

static struct block *blocks_claim_locked(struct blocks *b, const struct block_key *k)
{
        struct block *bl = calloc(1, sizeof(*bl));
        if (!bl)
                return NULL;
        bl->key = blocks_norm(k);
        bl->pending = true;
        HASH_ADD(hh, b->table, key, sizeof(bl->key), bl);
        b->count++;
        return bl;
}

enum blocks_get_result blocks_get(struct blocks *b, const struct block_key *k, size_t off,
                                  size_t len, void *dst, size_t *copied)
{
        enum blocks_get_result r;
        pthread_mutex_lock(&b->mu);
        struct block *bl = blocks_find(b, k);
        if (!bl) {
                /* Out of memory for the claim: report busy, the caller retries. */
                r = blocks_claim_locked(b, k) ? BLOCKS_CLAIMED : BLOCKS_BUSY;
        } else if (bl->pending) {
                r = BLOCKS_BUSY;
        } else {
                size_t n = off < bl->len ? bl->len - off : 0;
                if (n > len)
                        n = len;
                memcpy(dst, bl->data + off, n);
                *copied = n;
                DL_DELETE(b->lru, bl);
                DL_PREPEND(b->lru, bl);
                r = BLOCKS_HIT;
        }
        pthread_mutex_unlock(&b->mu);
        return r;
}

bool blocks_try_claim(struct blocks *b, const struct block_key *k)
{
        pthread_mutex_lock(&b->mu);
        bool ok = !blocks_find(b, k) && blocks_claim_locked(b, k) != NULL;
        pthread_mutex_unlock(&b->mu);
        return ok;
}

bool blocks_present(struct blocks *b, const struct block_key *k)
{
        pthread_mutex_lock(&b->mu);
        bool present = blocks_find(b, k) != NULL;
        pthread_mutex_unlock(&b->mu);
        return present;
}

void blocks_put(struct blocks *b, const struct block_key *k, const void *data, size_t len)
{
        char *copy = malloc(len ? len : 1);
        pthread_mutex_lock(&b->mu);
        struct block *bl = blocks_find(b, k);
        if (bl && bl->pending && copy) {
                memcpy(copy, data, len);
                bl->data = copy;
                bl->len = len;
                bl->pending = false;
                copy = NULL;
                DL_PREPEND(b->lru, bl);
                b->bytes += len;
                /* Evict from the cold end, never the block just stored. */
                while (b->bytes > b->max_bytes && b->lru && b->lru->prev != bl)
                        blocks_drop(b, b->lru->prev);
        } else if (bl && bl->pending) {
                blocks_drop(b, bl);
        }
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        free(copy);
}

void blocks_abandon(struct blocks *b, const struct block_key *k)
{
        pthread_mutex_lock(&b->mu);
        struct block *bl = blocks_find(b, k);
        if (bl && bl->pending)
                blocks_drop(b, bl);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
}

void blocks_forget(struct blocks *b, const struct block_key *k)
{
        pthread_mutex_lock(&b->mu);
        struct block *bl = blocks_find(b, k);
        if (bl && !bl->pending)
                blocks_drop(b, bl);
        pthread_mutex_unlock(&b->mu);
}

void blocks_wait(struct blocks *b, const struct block_key *k, int timeout_ms)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&b->mu);
        struct block *bl;
        while (!b->shutdown && (bl = blocks_find(b, k)) && bl->pending)
                if (pthread_cond_timedwait(&b->cv, &b->mu, &ts) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&b->mu);
}

void blocks_shutdown(struct blocks *b)
{
        pthread_mutex_lock(&b->mu);
        b->shutdown = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
}

size_t blocks_bytes(struct blocks *b)
{
        pthread_mutex_lock(&b->mu);
        size_t n = b->bytes;
        pthread_mutex_unlock(&b->mu);
        return n;
}

size_t blocks_count(struct blocks *b)
{
        pthread_mutex_lock(&b->mu);
        size_t n = b->count;
        pthread_mutex_unlock(&b->mu);
        return n;
}
