/* FOLDER/.parts/ for the kernel: entries, attributes, reads and extended
 * attributes of the virtual nodes that cache/parts.c keeps. Everything is
 * read-only. A part's bytes never change under its UID, so names and
 * attributes are cached like messages' (a file whose size is only an upper
 * bound is read with direct I/O instead, and its attributes are not cached). */
#include "fs/ops_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache/parts.h"

static pthread_mutex_t parts_fs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parts *parts_fs_table;

static struct parts *parts_of(struct fs *fs)
{
        pthread_mutex_lock(&parts_fs_lock);
        if (!parts_fs_table)
                parts_fs_table = parts_new(&fs->acct);
        struct parts *p = parts_fs_table;
        pthread_mutex_unlock(&parts_fs_lock);
        return p;
}

void parts_fs_destroy(void)
{
        pthread_mutex_lock(&parts_fs_lock);
        parts_free(parts_fs_table);
        parts_fs_table = NULL;
        pthread_mutex_unlock(&parts_fs_lock);
}

bool parts_fs_owns(struct fs *fs, fuse_ino_t ino)
{
        struct parts *p = parts_of(fs);
        return p && ino != FUSE_ROOT_ID && parts_owns(p, ino);
}

static void parts_fs_stat(const struct fs *fs, const struct parts_attr *a, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = a->id;
        st->st_uid = fs->uid;
        st->st_gid = fs->gid;
        st->st_blksize = BLOCK_SIZE;
        st->st_mtime = st->st_ctime = st->st_atime = a->mtime ? a->mtime : fs->mount_time;
        if (a->dir) {
                st->st_mode = S_IFDIR | 0555;
                /* 1: "not counted", so find never skips the directory of an
                 * attached message by the 2 + subdirectories rule. */
                st->st_nlink = 1;
                st->st_size = 4096;
        } else {
                st->st_mode = S_IFREG | 0444;
                st->st_nlink = 1;
                st->st_size = (off_t)a->size;
                st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
        }
}

static void parts_fs_reply_entry(fuse_req_t req, struct fs *fs, const struct parts_attr *a)
{
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        e.ino = a->id;
        parts_fs_stat(fs, a, &e.attr);
        e.entry_timeout = fs->entry_timeout;
        e.attr_timeout = a->upper_bound ? 0 : fs->entry_timeout;
        fuse_reply_entry(req, &e);
}

static void parts_fs_reply_err(fuse_req_t req, int r)
{
        fuse_reply_err(req, fs_errno(r));
}

bool parts_fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        struct parts *p = parts_of(fs);
        if (!p)
                return false;
        struct parts_attr a;
        int r;
        if (strcmp(name, PARTS_DIR_NAME) == 0 && !parts_owns(p, parent)) {
                r = parts_root(p, parent, &a);
                if (r == -ENOENT)
                        return false; /* not a folder that holds messages */
        } else if (parts_owns(p, parent)) {
                r = parts_lookup(p, parent, name, &a);
        } else {
                return false;
        }
        if (r < 0)
                parts_fs_reply_err(req, r);
        else
                parts_fs_reply_entry(req, fs, &a);
        return true;
}

bool parts_fs_getattr(fuse_req_t req, fuse_ino_t ino)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        struct parts_attr a;
        int r = parts_getattr(parts_of(fs), ino, &a);
        if (r < 0) {
                parts_fs_reply_err(req, r);
                return true;
        }
        struct stat st;
        parts_fs_stat(fs, &a, &st);
        fuse_reply_attr(req, &st, a.upper_bound ? 0 : fs->entry_timeout);
        return true;
}

/* A directory's entries, taken at opendir. */
struct parts_snap {
        size_t n, cap;
        struct parts_snap_ent {
                char *name;
                struct parts_attr a;
        } * v;
        int err;
};

static void parts_snap_add(void *ctx, const char *name, const struct parts_attr *a)
{
        struct parts_snap *d = ctx;
        if (d->err)
                return;
        if (d->n == d->cap) {
                size_t nc = d->cap ? d->cap * 2 : 32;
                struct parts_snap_ent *nv = realloc(d->v, nc * sizeof(*nv));
                if (!nv) {
                        d->err = -ENOMEM;
                        return;
                }
                d->v = nv;
                d->cap = nc;
        }
        d->v[d->n].name = strdup(name);
        if (!d->v[d->n].name) {
                d->err = -ENOMEM;
                return;
        }
        d->v[d->n++].a = *a;
}

static void parts_snap_free(struct parts_snap *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].name);
        free(d->v);
        free(d);
}

static int parts_snap_cmp(const void *x, const void *y)
{
        const struct parts_snap_ent *a = x, *b = y;
        return strcmp(a->name, b->name);
}

bool parts_fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        struct parts *p = parts_of(fs);
        struct parts_snap *d = calloc(1, sizeof(*d));
        if (!d) {
                fuse_reply_err(req, ENOMEM);
                return true;
        }
        struct parts_attr self;
        int r = parts_getattr(p, ino, &self);
        if (r == 0) {
                parts_snap_add(d, ".", &self);
                struct parts_attr up = self;
                up.id = parts_parent(p, ino);
                parts_snap_add(d, "..", &up);
                r = parts_list(p, ino, parts_snap_add, d);
        }
        if (r == 0)
                r = d->err;
        if (r < 0) {
                parts_snap_free(d);
                parts_fs_reply_err(req, r);
                return true;
        }
        if (d->n > 2)
                qsort(d->v + 2, d->n - 2, sizeof(*d->v), parts_snap_cmp);
        fi->fh = (uint64_t)(uintptr_t)d;
        fi->cache_readdir = 0;
        fuse_reply_open(req, fi);
        return true;
}

bool parts_fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi, bool plus)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        struct parts_snap *d = (struct parts_snap *)(uintptr_t)fi->fh;
        char *buf = malloc(size);
        size_t used = 0;
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return true;
        }
        for (size_t i = (size_t)off; i < d->n; i++) {
                const struct parts_snap_ent *de = &d->v[i];
                struct stat st;
                parts_fs_stat(fs, &de->a, &st);
                size_t need;
                if (plus) {
                        struct fuse_entry_param e;
                        memset(&e, 0, sizeof(e));
                        e.attr = st;
                        /* No entry for "." and "..", nor for a file whose size is
                         * known only after a fetch: the kernel looks it up when
                         * it is used, and listing stays free. */
                        bool skip = i < 2 || !de->a.size_known;
                        e.ino = skip ? 0 : de->a.id;
                        e.entry_timeout = skip ? 0 : fs->entry_timeout;
                        e.attr_timeout = skip || de->a.upper_bound ? 0 : fs->entry_timeout;
                        need = fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e,
                                                      (off_t)i + 1);
                } else {
                        need = fuse_add_direntry(req, buf + used, size - used, de->name, &st,
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

bool parts_fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        parts_snap_free((struct parts_snap *)(uintptr_t)fi->fh);
        fuse_reply_err(req, 0);
        return true;
}

bool parts_fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                fuse_reply_err(req, fs->read_only ? EROFS : EACCES);
                return true;
        }
        struct parts_attr a;
        int r = parts_getattr(parts_of(fs), ino, &a);
        if (r < 0) {
                parts_fs_reply_err(req, r);
                return true;
        }
        if (a.dir) {
                fuse_reply_err(req, EISDIR);
                return true;
        }
        fi->fh = 0;
        /* An upper bound is no size to cache pages against: the read that
         * ends early is the end. */
        fi->direct_io = a.upper_bound;
        fi->keep_cache = !a.upper_bound;
        fi->noflush = 1;
        fuse_reply_open(req, fi);
        return true;
}

bool parts_fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return true;
        }
        size_t got = 0;
        int r = parts_read(parts_of(fs), ino, (uint64_t)off, size, buf, &got);
        if (r < 0)
                parts_fs_reply_err(req, r);
        else
                fuse_reply_buf(req, buf, got);
        free(buf);
        return true;
}

bool parts_fs_release(fuse_req_t req, fuse_ino_t ino)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        fuse_reply_err(req, 0);
        return true;
}

bool parts_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        if (strncmp(name, "user.", 5) != 0) {
                fuse_reply_err(req, ENOTSUP);
                return true;
        }
        char *v = NULL;
        int r = parts_xattr_get(parts_of(fs), ino, name, &v);
        if (r < 0) {
                fuse_reply_err(req, r == -ENODATA ? ENODATA : fs_errno(r));
                return true;
        }
        size_t len = strlen(v);
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (len > size)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, v, len);
        free(v);
        return true;
}

struct xlist {
        char buf[512];
        size_t len;
};

static void parts_fs_xname(void *ctx, const char *name)
{
        struct xlist *l = ctx;
        size_t n = strlen(name) + 1;
        if (l->len + n <= sizeof(l->buf)) {
                memcpy(l->buf + l->len, name, n);
                l->len += n;
        }
}

bool parts_fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        struct fs *fs = fs_of(req);
        if (!parts_fs_owns(fs, ino))
                return false;
        struct xlist l = {.len = 0};
        int r = parts_xattr_list(parts_of(fs), ino, parts_fs_xname, &l);
        if (r < 0)
                parts_fs_reply_err(req, r);
        else if (size == 0)
                fuse_reply_xattr(req, l.len);
        else if (l.len > size)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, l.buf, l.len);
        return true;
}

bool parts_fs_refuse(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        struct parts_attr a;
        /* ".parts" is ours only in a folder that holds messages: elsewhere
         * (the root, \Noselect folders) it stays a name mkdir refuses. */
        if ((ino && parts_fs_owns(fs, ino)) || (parent && parts_fs_owns(fs, parent)) ||
            (name && parent && strcmp(name, PARTS_DIR_NAME) == 0 &&
             parts_root(parts_of(fs), parent, &a) == 0)) {
                fuse_reply_err(req, EROFS);
                return true;
        }
        return false;
}
