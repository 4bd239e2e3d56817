#include "cache/persist.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "cache/account.h"
#include "cache/cachedir.h"
#include "imap/log.h"

static void persist_log(const char *msg)
{
        log_warn("%s", msg);
}

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
        store_set_logger(persist_log);
        struct store *s = NULL;
        int r = store_open(full, max_bytes, &s, err, errlen);
        if (r < 0)
                return r;
        a->disk = s;
        a->disk_max = max_bytes;
        return 0;
}

void persist_start(struct account *a)
{
        if (a->disk && store_start(a->disk) < 0)
                log_warn("cache: writes go to disk in the caller's thread");
}

void persist_close(struct account *a)
{
        store_close(a->disk);
        a->disk = NULL;
}

/* ---- the tree ---- */

/* The personal namespace prefix ("INBOX." on Courier, Cyrus without
 * altnamespace) is saved with the tree, as its first entry with this
 * attribute bit (no IMAP_MBX_* uses it): an offline mount places the folders
 * below it as the online one did, without the prefix as a level of its own.
 * No store layout change: the tree's records hold it as they are. */
#define PERSIST_TREE_NS (1u << 31)

struct tree_load {
        struct account *a;
        size_t n;
};

static void persist_tree_entry(void *ctx, const struct store_folder *f)
{
        struct tree_load *t = ctx;
        if (!f->raw || !*f->raw)
                return;
        if (f->attrs & PERSIST_TREE_NS) {
                if (cache_set_ns_prefix(t->a->cache, f->raw) < 0)
                        log_warn("out of memory keeping the namespace prefix");
                return;
        }
        cache_tree_add(t->a->cache, f->raw, f->delim, f->attrs, account_decode_component, t->a);
        if (!t->a->hier_delim)
                t->a->hier_delim = f->delim;
        t->n++;
}

bool persist_load_tree(struct account *a)
{
        if (!a->disk)
                return false;
        struct tree_load t = {a, 0};
        cache_lock(a->cache);
        cache_tree_begin(a->cache);
        ssize_t r = store_tree_load(a->disk, persist_tree_entry, &t);
        cache_tree_end(a->cache);
        cache_unlock(a->cache);
        return r >= 0 && t.n > 0;
}

struct tree_save {
        struct store_folder *v;
        size_t n, cap;
};

static void persist_tree_collect(struct cache_mbox *m, struct tree_save *t)
{
        struct cache_mbox *ch, *tmp;
        if (m->raw && m->listed && t->n < t->cap) {
                char *raw = strdup(m->raw);
                if (raw)
                        t->v[t->n++] = (struct store_folder){raw, m->delim, m->attrs};
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
        t.cap = persist_count(cache_root(a->cache)) + 1;
        t.v = calloc(t.cap, sizeof(*t.v));
        const char *ns = cache_ns_prefix(a->cache);
        char *nsdup = t.v && *ns ? strdup(ns) : NULL;
        if (nsdup) /* first: the folders load below it */
                t.v[t.n++] = (struct store_folder){nsdup, 0, PERSIST_TREE_NS};
        if (t.v)
                persist_tree_collect(cache_root(a->cache), &t);
        cache_unlock(a->cache);
        if (t.v && store_tree_save(a->disk, t.v, t.n) < 0)
                log_warn("could not save the folder tree in the cache");
        for (size_t i = 0; i < t.n; i++)
                free((char *)t.v[i].raw);
        free(t.v);
}

/* ---- listings ---- */

struct listing_load {
        struct account *a;
        struct cache_mbox *m;
};

static void persist_listing_entry(void *ctx, const struct store_msg *sm)
{
        struct listing_load *l = ctx;
        cache_listing_add_named(l->a->cache, l->m, sm->uid, sm->size, (time_t)sm->internaldate,
                                sm->flags, sm->name);
}

void persist_load_listing(struct account *a, uint64_t mbox_id)
{
        if (!a->disk)
                return;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, mbox_id);
        struct cache_mbox *m = n && n->kind == CACHE_MBOX ? (struct cache_mbox *)n : NULL;
        if (m && m->raw && m->state == CACHE_LISTING_NONE && !m->refreshing) {
                struct store_meta meta;
                struct listing_load l = {a, m};
                /* Loading reads the map (local memory, a few MB at most); holding the lock
                 * keeps anyone from seeing half a listing. */
                cache_listing_begin(a->cache, m, 0, 0, 0, 0);
                int r = store_listing_load(a->disk, m->raw, &meta, persist_listing_entry, &l);
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
        /* Copied under the lock into one buffer; the writer thread compares it with what is
         * stored and writes only the difference. */
        struct store_meta meta = {m->uidvalidity, m->uidnext, m->highestmodseq};
        struct store_listing *l = store_listing_new(m->raw, &meta, m->nmsgs);
        size_t nm;
        struct cache_msg **msgs = cache_mbox_msgs(m, &nm);
        for (size_t i = 0; i < nm; i++) {
                struct cache_msg *msg = msgs[i];
                if (!l)
                        break;
                struct store_msg sm = {msg->uid, msg->size, msg->internaldate, msg->flags,
                                       msg->name};
                if (store_listing_add(l, &sm) < 0) {
                        store_listing_free(l);
                        l = NULL;
                }
        }
        char *raw = strdup(m->raw);
        cache_unlock(a->cache);
        if (!l || store_listing_save(a->disk, l) < 0)
                log_warn("could not save the listing of %s in the cache", raw ? raw : "?");
        free(raw);
}

void persist_save_cids(struct account *a, const char *mailbox, uint32_t uidvalidity,
                       const struct store_cid *v, size_t n)
{
        if (a->disk && n && store_cids_save(a->disk, mailbox, uidvalidity, v, n) < 0)
                log_warn("could not save the content ids of %s in the cache", mailbox);
}

void persist_drop_mailbox(struct account *a, const char *mailbox, char delim)
{
        if (a->disk && mailbox)
                store_mailbox_drop(a->disk, mailbox, delim);
}

/* ---- content ---- */

static struct store_part persist_part(const char *mailbox, uint32_t uidvalidity, uint32_t uid)
{
        return (struct store_part){mailbox, uidvalidity, uid, "", STORE_FORM_RAW};
}

ssize_t persist_block_get(struct account *a, const char *mailbox, uint32_t uidvalidity,
                          uint32_t uid, uint64_t index, void *buf, size_t cap)
{
        if (!a->disk)
                return -ENOENT;
        struct store_part p = persist_part(mailbox, uidvalidity, uid);
        return store_block_get(a->disk, &p, index, buf, cap);
}

void persist_block_put(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index, const void *data, size_t len)
{
        struct store_part p = persist_part(mailbox, uidvalidity, uid);
        if (a->disk)
                store_block_put(a->disk, &p, index, data, len);
}

bool persist_block_has(struct account *a, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index)
{
        struct store_part p = persist_part(mailbox, uidvalidity, uid);
        return a->disk && store_block_has(a->disk, &p, index);
}
