#include "fs/persist.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/disk.h"
#include "fs/account.h"
#include "fs/cachedir.h"
#include "imap/log.h"

/* The folder tree is stored as a listing under a name no mailbox can have
 * (IMAP mailbox names are never empty): one record per mailbox, its raw name
 * in name, its LIST attributes in size and its delimiter in internaldate. */
#define TREE_KEY ""

int persist_open(struct account *a, const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
        char path[PATH_MAX];
        if (!dir) {
                int r = cachedir_default(a->imap.user, a->imap.host, a->imap.port, path,
                                         sizeof(path), err, errlen);
                if (r == -ENOENT) {
                        /* Never a shared directory instead (/tmp/.cache). */
                        fprintf(stderr, "imapfs: %s; running without a persistent cache\n", err);
                        return 0;
                }
                if (r < 0)
                        return r;
                dir = path;
        }
        /* File names depend on -o names=: each naming has its own cache. */
        char full[PATH_MAX + 16];
        if (strlen(dir) >= PATH_MAX) {
                snprintf(err, errlen, "cache directory name too long");
                return -ENAMETOOLONG;
        }
        snprintf(full, sizeof(full), "%s/%s", dir, a->opts.names_uid ? "names-uid" : "names");
        struct disk *d = NULL;
        int r = disk_open(full, max_bytes, &d, err, errlen);
        if (r == -EBUSY) {
                fprintf(stderr, "imapfs: %s; running without a persistent cache\n", err);
                return 0;
        }
        if (r < 0)
                return r;
        a->disk = d;
        return 0;
}

void persist_close(struct account *a)
{
        disk_close(a->disk);
        a->disk = NULL;
}

/* ---- the tree ---- */

struct tree_load {
        struct account *a;
        size_t n;
};

static void persist_tree_entry(void *ctx, const struct disk_msg *m)
{
        struct tree_load *t = ctx;
        if (!m->name || !*m->name)
                return;
        cache_tree_add(t->a->cache, m->name, (char)m->internaldate, (unsigned)m->size,
                       account_decode_component);
        if (!t->a->hier_delim)
                t->a->hier_delim = (char)m->internaldate;
        t->n++;
}

bool persist_load_tree(struct account *a)
{
        if (!a->disk)
                return false;
        struct tree_load t = {a, 0};
        cache_lock(a->cache);
        cache_tree_begin(a->cache);
        int r = disk_listing_load(a->disk, TREE_KEY, NULL, persist_tree_entry, &t);
        cache_tree_end(a->cache);
        cache_unlock(a->cache);
        return r == 0 && t.n > 0;
}

struct tree_save {
        struct disk_msg *v;
        size_t n, cap;
};

static void persist_tree_collect(struct cache_mbox *m, struct tree_save *t)
{
        struct cache_mbox *ch, *tmp;
        if (m->raw && m->listed && t->n < t->cap) {
                char *raw = strdup(m->raw);
                if (raw) {
                        uint32_t uid = (uint32_t)t->n + 1; /* records need a non-zero uid */
                        t->v[t->n] = (struct disk_msg){uid, m->attrs, (int64_t)m->delim, "", raw};
                        t->n++;
                }
        }
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                persist_tree_collect(ch, t);
        }
}

static size_t persist_count(struct cache_mbox *m)
{
        size_t n = 1;
        struct cache_mbox *ch, *tmp;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                n += persist_count(ch);
        }
        return n;
}

void persist_save_tree(struct account *a)
{
        if (!a->disk)
                return;
        struct tree_save t = {0};
        cache_lock(a->cache);
        t.cap = persist_count(cache_root(a->cache));
        t.v = calloc(t.cap, sizeof(*t.v));
        if (t.v)
                persist_tree_collect(cache_root(a->cache), &t);
        cache_unlock(a->cache);
        struct disk_mbox_meta meta = {0, 0, 0};
        if (t.v && disk_listing_save(a->disk, TREE_KEY, &meta, t.v, t.n) < 0)
                log_warn("could not save the folder tree in the cache");
        for (size_t i = 0; i < t.n; i++)
                free((char *)t.v[i].name);
        free(t.v);
}

/* ---- listings ---- */

struct listing_load {
        struct account *a;
        struct cache_mbox *m;
};

static void persist_listing_entry(void *ctx, const struct disk_msg *dm)
{
        struct listing_load *l = ctx;
        cache_listing_add_named(l->a->cache, l->m, dm->uid, dm->size, (time_t)dm->internaldate,
                                dm->flags, dm->name);
}

void persist_load_listing(struct account *a, uint64_t mbox_id)
{
        if (!a->disk)
                return;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, mbox_id);
        struct cache_mbox *m = n && n->kind == CACHE_MBOX ? (struct cache_mbox *)n : NULL;
        if (m && m->raw && m->state == CACHE_LISTING_NONE && !m->refreshing) {
                struct disk_mbox_meta meta;
                struct listing_load l = {a, m};
                /* Loading is local I/O of a few MB at most; holding the lock
                 * keeps anyone from seeing half a listing. */
                cache_listing_begin(a->cache, m, 0, 0, 0, 0);
                int r = disk_listing_load(a->disk, m->raw, &meta, persist_listing_entry, &l);
                if (r == 0) {
                        m->uidvalidity = meta.uidvalidity;
                        m->uidnext = meta.uidnext;
                        m->highestmodseq = meta.highestmodseq;
                        m->exists = (uint32_t)m->nmsgs;
                        m->state = CACHE_LISTING_STALE; /* to be confirmed by the server */
                        m->observed = true;
                        log_dbg("listing of %s from the cache: %zu messages", m->raw, m->nmsgs);
                }
        }
        cache_unlock(a->cache);
}

void persist_save_listing(struct account *a, uint64_t mbox_id)
{
        if (!a->disk)
                return;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, mbox_id);
        struct cache_mbox *m = n && n->kind == CACHE_MBOX ? (struct cache_mbox *)n : NULL;
        if (!m || !m->raw || m->state == CACHE_LISTING_NONE) {
                cache_unlock(a->cache);
                return;
        }
        struct disk_mbox_meta meta = {m->uidvalidity, m->uidnext, m->highestmodseq};
        char *raw = strdup(m->raw);
        size_t cnt = m->nmsgs;
        struct disk_msg *v = calloc(cnt ? cnt : 1, sizeof(*v));
        size_t i = 0;
        bool ok = raw && v;
        struct cache_msg *msg, *tmp;
        HASH_ITER(hh_uid, m->by_uid, msg, tmp)
        {
                if (!ok || i >= cnt)
                        break;
                char *f = strdup(msg->flags), *nm = strdup(msg->name);
                if (!f || !nm) {
                        free(f);
                        free(nm);
                        ok = false;
                        break;
                }
                v[i++] = (struct disk_msg){msg->uid, msg->size, msg->internaldate, f, nm};
        }
        cache_unlock(a->cache);
        /* The write (and its fsync) happens without the lock. */
        if (ok && disk_listing_save(a->disk, raw, &meta, v, i) < 0)
                log_warn("could not save the listing of %s in the cache", raw);
        for (size_t k = 0; k < i; k++) {
                free((char *)v[k].flags);
                free((char *)v[k].name);
        }
        free(v);
        if (ok)
                disk_blocks_drop(a->disk, raw, meta.uidvalidity); /* other UIDVALIDITYs are dead */
        free(raw);
}

/* ---- content ---- */

ssize_t persist_block_get(struct account *a, const char *mailbox, uint32_t uidvalidity,
                          uint32_t uid, uint64_t index, void *buf, size_t cap)
{
        if (!a->disk)
                return -ENOENT;
        return disk_block_get(a->disk, mailbox, uidvalidity, uid, index, buf, cap);
}

void persist_block_put(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index, const void *data, size_t len)
{
        if (a->disk)
                disk_block_put(a->disk, mailbox, uidvalidity, uid, index, data, len);
}

bool persist_block_has(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index)
{
        return a->disk && disk_block_has(a->disk, mailbox, uidvalidity, uid, index);
}
