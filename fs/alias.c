#include "fs/alias.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache/clock.h"

/* Bounded: a mv of thousands of files keeps only the newest names (the
 * older ones have been stat-ed long since). */
#define ALIAS_MAX 4096

struct alias_ent {
        uint64_t parent, id;
        int64_t expires_ms;
        char *name;
};

/* A ring in insertion order, which is expiry order (one TTL for all). */
struct alias {
        pthread_mutex_t lock;
        struct alias_ent v[ALIAS_MAX];
        size_t head, n;
};

struct alias *alias_new(void)
{
        struct alias *t = calloc(1, sizeof(*t));
        if (t && pthread_mutex_init(&t->lock, NULL) != 0) {
                free(t);
                return NULL;
        }
        return t;
}

static void alias_pop(struct alias *t)
{
        free(t->v[t->head].name);
        t->v[t->head].name = NULL;
        t->head = (t->head + 1) % ALIAS_MAX;
        t->n--;
}

void alias_free(struct alias *t)
{
        if (!t)
                return;
        while (t->n)
                alias_pop(t);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

/* Drops expired entries from the front (lock held). */
static void alias_expire(struct alias *t, int64_t now)
{
        while (t->n && t->v[t->head].expires_ms <= now)
                alias_pop(t);
}

static struct alias_ent *alias_match(struct alias *t, uint64_t parent, const char *name)
{
        for (size_t i = t->n; i-- > 0;) { /* newest first */
                struct alias_ent *e = &t->v[(t->head + i) % ALIAS_MAX];
                if (e->name && e->parent == parent && strcmp(e->name, name) == 0)
                        return e;
        }
        return NULL;
}

void alias_add(struct alias *t, uint64_t parent, const char *name, uint64_t id, int ttl_ms)
{
        char *copy = strdup(name);
        if (!copy)
                return; /* an alias is a convenience: without memory, there is none */
        int64_t now = cache_now_ms();
        pthread_mutex_lock(&t->lock);
        alias_expire(t, now);
        struct alias_ent *old = alias_match(t, parent, name);
        if (old) { /* the older meaning of the name is void */
                free(old->name);
                old->name = NULL;
        }
        if (t->n == ALIAS_MAX)
                alias_pop(t);
        t->v[(t->head + t->n) % ALIAS_MAX] = (struct alias_ent){parent, id, now + ttl_ms, copy};
        t->n++;
        pthread_mutex_unlock(&t->lock);
}

bool alias_find(struct alias *t, uint64_t parent, const char *name, uint64_t *id)
{
        pthread_mutex_lock(&t->lock);
        alias_expire(t, cache_now_ms());
        struct alias_ent *e = alias_match(t, parent, name);
        if (e)
                *id = e->id;
        pthread_mutex_unlock(&t->lock);
        return e != NULL;
}

void alias_drop(struct alias *t, uint64_t parent, const char *name)
{
        pthread_mutex_lock(&t->lock);
        struct alias_ent *e = alias_match(t, parent, name);
        if (e) {
                free(e->name);
                e->name = NULL;
        }
        pthread_mutex_unlock(&t->lock);
}
