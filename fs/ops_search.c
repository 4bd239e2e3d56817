/* .search directories as the kernel sees them. The store's half (which
 * directories exist, running queries, matching results) is cache/search.c;
 * here: attributes, entries, snapshots for readdir, invalidation, and
 * sending changes made through a search directory to the message's folder.
 * An entry of a search directory is the message's own inode. */
#include "fs/ops_search.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/search.h"

#define SEARCH_DIR_NAME ".search"

static enum search_kind ops_search_kind(struct fs *fs, fuse_ino_t ino, uint64_t *mbox)
{
        cache_lock(fs->acct.cache);
        enum search_kind k = search_kind_of(&fs->acct, ino, mbox);
        cache_unlock(fs->acct.cache);
        return k;
}

static void ops_search_stat_dir(const struct fs *fs, uint64_t id, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = id;
        st->st_uid = fs->uid;
        st->st_gid = fs->gid;
        st->st_blksize = BLOCK_SIZE;
        /* Writable like a folder so that rm and mv reach us (we refuse what
         * a search directory can't do, with EPERM). */
        st->st_mode = S_IFDIR | (fs->read_only ? 0555 : 0755);
        st->st_nlink = 2;
        st->st_size = 4096;
        st->st_mtime = st->st_ctime = st->st_atime = fs->mount_time;
}

static void ops_search_reply_dir(fuse_req_t req, struct fs *fs, uint64_t id, double timeout)
{
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        ops_search_stat_dir(fs, id, &e.attr);
        e.ino = id;
        e.attr_timeout = e.entry_timeout = timeout;
        fuse_reply_entry(req, &e);
}

/* Answers name in a query or tree directory from its result (lock taken
 * here). 0 when answered, else the errno. */
static int ops_search_reply_found(fuse_req_t req, struct fs *fs, fuse_ino_t parent,
                                  const char *name)
{
        struct fuse_entry_param e;
        struct cache_msg *msg;
        uint64_t id;
        memset(&e, 0, sizeof(e));
        cache_lock(fs->acct.cache);
        int r = search_find(&fs->acct, parent, name, &id, &msg);
        if (r == 0 && msg) {
                fs_stat_node(fs, &msg->node, &e.attr);
                e.ino = id;
                e.attr_timeout = e.entry_timeout = fs->entry_timeout;
        }
        cache_unlock(fs->acct.cache);
        if (r < 0)
                return -r;
        if (!msg)
                ops_search_reply_dir(req, fs, id, fs->entry_timeout);
        else
                fuse_reply_entry(req, &e);
        return 0;
}

static void ops_search_gone(void *ctx, uint64_t dir, const char *name)
{
        inval_entry(((struct fs *)ctx)->inval, dir, name);
}

bool ops_search_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        struct account *a = &fs->acct;
        uint64_t mbox;
        enum search_kind k = ops_search_kind(fs, parent, &mbox);
        if (k == SEARCH_NONE) {
                if (strcmp(name, SEARCH_DIR_NAME) != 0)
                        return false;
                /* The folder's listing is not needed, only the folder. */
                cache_lock(a->cache);
                uint64_t dot = search_dot(a, parent);
                cache_unlock(a->cache);
                if (!dot)
                        return false; /* not a folder that can be searched: ENOENT as usual */
                ops_search_reply_dir(req, fs, dot, fs->entry_timeout);
                return true;
        }
        if (k == SEARCH_DOT) {
                uint64_t id;
                int r = search_query_open(a, parent, name, &id);
                if (r < 0)
                        fuse_reply_err(req, fs_errno(r));
                else
                        ops_search_reply_dir(req, fs, id, fs->entry_timeout);
                return true;
        }
        /* A query or tree directory: its result, run first if never run;
         * a name not in a result older than the window asks again (as a
         * folder's listing does). */
        int r = search_run(a, parent, -1, ops_search_gone, fs);
        int err = ops_search_reply_found(req, fs, parent, name);
        if (err == 0)
                return true;
        if (r == 0) {
                r = search_run(a, parent, a->opts.revalidate_ms, ops_search_gone, fs);
                err = ops_search_reply_found(req, fs, parent, name);
                if (err == 0)
                        return true;
        }
        /* Not cached as a negative entry: the next run may find it. */
        fuse_reply_err(req, r < 0 && r != -ENOENT ? fs_errno(r) : err);
        return true;
}

bool ops_search_getattr(fuse_req_t req, fuse_ino_t ino)
{
        struct fs *fs = fs_of(req);
        if (ops_search_kind(fs, ino, NULL) == SEARCH_NONE)
                return false;
        struct stat st;
        ops_search_stat_dir(fs, ino, &st);
        fuse_reply_attr(req, &st, fs->entry_timeout);
        return true;
}

/* ---- readdir: a snapshot taken at opendir ---- */

struct search_snap {
        size_t n, cap;
        struct search_snap_ent {
                char *name;
                struct stat st;
        } * v;
};

static void ops_search_snap_free(struct search_snap *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].name);
        free(d->v);
        free(d);
}

static int ops_search_snap_add(struct search_snap *d, const char *name, const struct stat *st)
{
        if (d->n == d->cap) {
                size_t nc = d->cap ? 2 * d->cap : 32;
                struct search_snap_ent *nv = realloc(d->v, nc * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                d->v = nv;
                d->cap = nc;
        }
        d->v[d->n].name = strdup(name);
        if (!d->v[d->n].name)
                return -ENOMEM;
        d->v[d->n].st = *st;
        d->n++;
        return 0;
}

struct snap_ctx {
        struct fs *fs;
        struct search_snap *d;
};

static int ops_search_snap_ent(void *vctx, const char *name, uint64_t id,
                               const struct cache_node *node)
{
        struct snap_ctx *c = vctx;
        struct stat st;
        if (node)
                fs_stat_node(c->fs, node, &st);
        else
                ops_search_stat_dir(c->fs, id, &st);
        return ops_search_snap_add(c->d, name, &st);
}

bool ops_search_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct account *a = &fs->acct;
        uint64_t mbox;
        enum search_kind k = ops_search_kind(fs, ino, &mbox);
        if (k == SEARCH_NONE)
                return false;
        if (k != SEARCH_DOT && mbox != CACHE_ROOT_ID) {
                /* The folder looked at through a search is the one to watch with
                 * IDLE, as if it had been opened: its changes then reach the
                 * search directory at once. */
                cache_lock(a->cache);
                struct cache_node *wn = cache_node_get(a->cache, mbox);
                char *watch =
                    wn && wn->kind == CACHE_MBOX && cache_mbox_selectable((struct cache_mbox *)wn)
                        ? strdup(((struct cache_mbox *)wn)->raw)
                        : NULL;
                cache_unlock(a->cache);
                if (watch)
                        sync_watch(fs->sync, watch);
                free(watch);
        }
        if (k != SEARCH_DOT) {
                /* Opened after the window (or after a change was heard): run again. */
                int r = search_run(a, ino, a->opts.revalidate_ms, ops_search_gone, fs);
                cache_lock(a->cache);
                bool have = search_has_result(a, ino);
                cache_unlock(a->cache);
                if (r < 0 && (!have || r == -ENOENT || r == -EOPNOTSUPP)) {
                        fuse_reply_err(req, fs_errno(r));
                        return true;
                }
        }
        struct search_snap *d = calloc(1, sizeof(*d));
        struct snap_ctx c = {fs, d};
        struct stat st;
        ops_search_stat_dir(fs, ino, &st);
        int r = d ? ops_search_snap_add(d, ".", &st) : -ENOMEM;
        if (r == 0)
                r = ops_search_snap_add(d, "..", &st); /* attributes of ".." are not used */
        cache_lock(a->cache);
        if (r == 0)
                r = search_list(a, ino, ops_search_snap_ent, &c);
        cache_unlock(a->cache);
        if (r < 0) {
                ops_search_snap_free(d);
                fuse_reply_err(req, fs_errno(r));
                return true;
        }
        fi->fh = (uint64_t)(uintptr_t)d;
        fi->cache_readdir = 0;
        fuse_reply_open(req, fi);
        return true;
}

bool ops_search_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi, bool plus)
{
        struct fs *fs = fs_of(req);
        if (ops_search_kind(fs, ino, NULL) == SEARCH_NONE)
                return false;
        struct search_snap *d = (struct search_snap *)(uintptr_t)fi->fh;
        char *buf = malloc(size);
        size_t used = 0;
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return true;
        }
        for (size_t i = (size_t)off; i < d->n; i++) {
                const struct search_snap_ent *de = &d->v[i];
                size_t need;
                if (plus) {
                        struct fuse_entry_param e;
                        memset(&e, 0, sizeof(e));
                        e.attr = de->st;
                        bool dots = i < 2; /* "." and ".." carry no lookup reference */
                        e.ino = dots ? 0 : de->st.st_ino;
                        e.attr_timeout = e.entry_timeout = dots ? 0 : fs->entry_timeout;
                        need = fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e,
                                                      (off_t)i + 1);
                } else {
                        need = fuse_add_direntry(req, buf + used, size - used, de->name, &de->st,
                                                 (off_t)i + 1);
                }
                if (need > size - used)
                        break;
                used += need;
        }
        fuse_reply_buf(req, buf, used);
        free(buf);
        return true;
}

bool ops_search_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        if (ops_search_kind(fs_of(req), ino, NULL) == SEARCH_NONE)
                return false;
        ops_search_snap_free((struct search_snap *)(uintptr_t)fi->fh);
        fuse_reply_err(req, 0);
        return true;
}

bool ops_search_refuse(fuse_req_t req, fuse_ino_t parent)
{
        if (ops_search_kind(fs_of(req), parent, NULL) == SEARCH_NONE)
                return false;
        fuse_reply_err(req, EPERM);
        return true;
}

bool ops_search_redirect(fuse_req_t req, fuse_ino_t *parent, const char *name)
{
        struct fs *fs = fs_of(req);
        struct account *a = &fs->acct;
        cache_lock(a->cache);
        enum search_kind k = search_kind_of(a, *parent, NULL);
        if (k == SEARCH_NONE) {
                cache_unlock(a->cache);
                return false;
        }
        uint64_t id;
        struct cache_msg *msg = NULL;
        int err = k == SEARCH_DOT ? EPERM : -search_find(a, *parent, name, &id, &msg);
        if (err == 0 && !msg)
                err = EPERM; /* a folder of a root query's tree */
        if (err == 0)
                *parent = msg->mbox->node.id;
        cache_unlock(a->cache);
        if (err)
                fuse_reply_err(req, err);
        return err != 0;
}

bool ops_search_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size, bool set)
{
        if (ops_search_kind(fs_of(req), ino, NULL) == SEARCH_NONE)
                return false;
        if (set)
                fuse_reply_err(req, EPERM);
        else if (name)
                fuse_reply_err(req, strncmp(name, "user.", 5) == 0 ? ENODATA : ENOTSUP);
        else if (size == 0)
                fuse_reply_xattr(req, 0);
        else
                fuse_reply_buf(req, NULL, 0);
        return true;
}

struct observe_ctx {
        struct fs *fs;
        const char *name;
};

static void ops_search_observe_dir(void *vctx, uint64_t dir)
{
        struct observe_ctx *c = vctx;
        inval_entry(c->fs->inval, dir, c->name);
}

void ops_search_observe(struct fs *fs, uint64_t parent, const char *name)
{
        struct observe_ctx c = {fs, name};
        search_dirs_of(&fs->acct, parent, ops_search_observe_dir, &c);
}
