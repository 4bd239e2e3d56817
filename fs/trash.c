/* The freedesktop.org trash, virtually (see trash.h for what GIO does and
 * why). One mount per process: the state is this file's. Its lock is never
 * held together with the cache lock nor across a server command. */
#include "fs/trash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/account_write.h"
#include "imap/log.h"

/* A .trashinfo is a few lines; a path of 4096 bytes escaped three times
 * over still fits. */
#define TRASH_FILE_MAX (64u << 10)
/* More entries than any Trash Can shows; keeps memory bounded. */
#define TRASH_ENTRIES_MAX 100000

/* A file in info/, in memory. */
struct trash_file {
        struct trash_file *next;
        char *name;
        uint64_t ino;
        char *data;
        size_t len;
        time_t mtime;
};

/* A name in files/: the message (its node, which keeps its id when it
 * moves) trashed under it. */
struct trash_item {
        struct trash_item *next;
        char *name;
        uint64_t msg_id;
};

/* expunged/: where gvfsd-trash moves an item to delete it when the trash is
 * emptied (then deletes it there); a move into it deletes at once, so it
 * stays empty. */
enum trash_kind { TK_NONE, TK_TOP, TK_INFO, TK_FILES, TK_EXPUNGED, TK_FILE };

static struct {
        pthread_mutex_t mu;
        struct fuse_lowlevel_ops next;       /* the operations we stand in front of */
        bool exists;                         /* .Trash-UID was made */
        uint64_t top, info, files, expunged; /* their inodes (0 until made) */
        time_t mtime;                        /* of the three directories */
        struct trash_file *ifiles;
        struct trash_item *items;
        size_t n;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void trash_topname(const struct fs *fs, char *buf, size_t cap)
{
        snprintf(buf, cap, ".Trash-%u", (unsigned)fs->uid);
}

/* Lock held. */
static struct trash_file *trash_file_find(const char *name)
{
        for (struct trash_file *f = T.ifiles; f; f = f->next)
                if (strcmp(f->name, name) == 0)
                        return f;
        return NULL;
}

static struct trash_file *trash_file_by_ino(uint64_t ino)
{
        for (struct trash_file *f = T.ifiles; f; f = f->next)
                if (f->ino == ino)
                        return f;
        return NULL;
}

static struct trash_item *trash_item_find(const char *name)
{
        for (struct trash_item *it = T.items; it; it = it->next)
                if (strcmp(it->name, name) == 0)
                        return it;
        return NULL;
}

static void trash_file_unlink(struct trash_file *f)
{
        for (struct trash_file **pp = &T.ifiles; *pp; pp = &(*pp)->next)
                if (*pp == f) {
                        *pp = f->next;
                        break;
                }
        free(f->name);
        free(f->data);
        free(f);
        T.n--;
}

static void trash_item_drop(struct trash_item *it)
{
        for (struct trash_item **pp = &T.items; *pp; pp = &(*pp)->next)
                if (*pp == it) {
                        *pp = it->next;
                        break;
                }
        free(it->name);
        free(it);
        T.n--;
}

static enum trash_kind trash_kind_of(uint64_t ino)
{
        if (!T.exists || !ino)
                return TK_NONE;
        if (ino == T.top)
                return TK_TOP;
        if (ino == T.info)
                return TK_INFO;
        if (ino == T.files)
                return TK_FILES;
        if (ino == T.expunged)
                return TK_EXPUNGED;
        return trash_file_by_ino(ino) ? TK_FILE : TK_NONE;
}

static enum trash_kind trash_kind(uint64_t ino)
{
        pthread_mutex_lock(&T.mu);
        enum trash_kind k = trash_kind_of(ino);
        pthread_mutex_unlock(&T.mu);
        return k;
}

/* The trash folder's node id, 0 if there is none to trash to. */
static uint64_t trash_folder_id(struct fs *fs)
{
        cache_lock(fs->acct.cache);
        char *raw = account_trash_folder(&fs->acct);
        struct cache_mbox *m = raw ? cache_mbox_by_raw(fs->acct.cache, raw) : NULL;
        uint64_t id = m && cache_mbox_selectable(m) ? m->node.id : 0;
        cache_unlock(fs->acct.cache);
        free(raw);
        return id;
}

static bool trash_refuse_ro(fuse_req_t req, struct fs *fs)
{
        if (!fs->read_only && account_online(&fs->acct))
                return false;
        fuse_reply_err(req, EROFS);
        return true;
}

/* Lock held. */
static void trash_stat(const struct fs *fs, uint64_t ino, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = ino;
        st->st_uid = fs->uid; /* GIO uses .Trash-UID only if it is the user's */
        st->st_gid = fs->gid;
        st->st_blksize = BLOCK_SIZE;
        struct trash_file *f = trash_file_by_ino(ino);
        if (f) {
                st->st_mode = S_IFREG | 0600;
                st->st_nlink = 1;
                st->st_size = (off_t)f->len;
                st->st_blocks = (blkcnt_t)((f->len + 511) / 512);
                st->st_mtime = st->st_ctime = st->st_atime = f->mtime;
                return;
        }
        st->st_mode = S_IFDIR | 0700;
        st->st_nlink = ino == T.top ? 5 : 2;
        st->st_size = 4096;
        st->st_mtime = st->st_ctime = st->st_atime = T.mtime;
}

static void trash_reply_entry(fuse_req_t req, const struct fs *fs, uint64_t ino)
{
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        pthread_mutex_lock(&T.mu);
        trash_stat(fs, ino, &e.attr);
        pthread_mutex_unlock(&T.mu);
        e.ino = ino;
        /* Everything here changes under the kernel's eyes: never cached. */
        fuse_reply_entry(req, &e);
}

/* The message trashed as name in files/: its node id, 0 if none (lock
 * taken here). */
static uint64_t trash_item_msg(const char *name)
{
        pthread_mutex_lock(&T.mu);
        struct trash_item *it = trash_item_find(name);
        uint64_t id = it ? it->msg_id : 0;
        pthread_mutex_unlock(&T.mu);
        return id;
}

static void trash_item_forget(const char *name)
{
        pthread_mutex_lock(&T.mu);
        struct trash_item *it = trash_item_find(name);
        if (it)
                trash_item_drop(it);
        T.mtime = time(NULL);
        pthread_mutex_unlock(&T.mu);
}

/* Where message msg_id is now: its folder's id and its name (malloc'd);
 * false if it is gone. */
static bool trash_msg_where(struct fs *fs, uint64_t msg_id, uint64_t *mbox, char **name,
                            struct stat *st)
{
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, msg_id);
        bool ok = n && n->kind == CACHE_MSG;
        if (ok) {
                struct cache_msg *m = (struct cache_msg *)n;
                if (mbox)
                        *mbox = m->mbox->node.id;
                if (name)
                        ok = (*name = strdup(m->name)) != NULL;
                if (st)
                        fs_stat_node(fs, n, st);
        }
        cache_unlock(fs->acct.cache);
        return ok;
}

/* ---- lookup and attributes ---- */

static void trash_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        char top[32];
        trash_topname(fs, top, sizeof(top));
        if (parent == CACHE_ROOT_ID && strcmp(name, top) == 0) {
                pthread_mutex_lock(&T.mu);
                uint64_t ino = strcmp(name, top) == 0 && T.exists ? T.top : 0;
                pthread_mutex_unlock(&T.mu);
                if (ino)
                        trash_reply_entry(req, fs, ino);
                /* Never a server folder: a .Trash-UID folder left on the
                 * server by an older imapfs must not take GIO back there. */
                else
                        fuse_reply_err(req, ENOENT);
                return;
        }
        uint64_t ino = 0, msg_id = 0;
        pthread_mutex_lock(&T.mu);
        enum trash_kind k = trash_kind_of(parent);
        if (k == TK_TOP)
                ino = strcmp(name, "info") == 0       ? T.info
                      : strcmp(name, "files") == 0    ? T.files
                      : strcmp(name, "expunged") == 0 ? T.expunged
                                                      : 0;
        else if (k == TK_INFO) {
                struct trash_file *f = trash_file_find(name);
                ino = f ? f->ino : 0;
        } else if (k == TK_FILES) {
                struct trash_item *it = trash_item_find(name);
                msg_id = it ? it->msg_id : 0;
        }
        pthread_mutex_unlock(&T.mu);
        if (k == TK_NONE) {
                T.next.lookup(req, parent, name);
                return;
        }
        if (k == TK_FILE) {
                fuse_reply_err(req, ENOTDIR);
                return;
        }
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        if (msg_id && trash_msg_where(fs, msg_id, NULL, NULL, &e.attr)) {
                e.ino = msg_id; /* the message's own inode, as in its folder */
                fuse_reply_entry(req, &e);
        } else if (ino)
                trash_reply_entry(req, fs, ino);
        else
                fuse_reply_err(req, ENOENT);
}

static void trash_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        if (trash_kind(ino) == TK_NONE) {
                T.next.getattr(req, ino, fi);
                return;
        }
        struct stat st;
        pthread_mutex_lock(&T.mu);
        trash_stat(fs_of(req), ino, &st);
        pthread_mutex_unlock(&T.mu);
        fuse_reply_attr(req, &st, 0);
}

static void trash_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                          struct fuse_file_info *fi)
{
        enum trash_kind k = trash_kind(ino);
        if (k == TK_NONE) {
                T.next.setattr(req, ino, attr, to_set, fi);
                return;
        }
        struct fs *fs = fs_of(req);
        if (trash_refuse_ro(req, fs))
                return;
        int err = 0;
        struct stat st;
        pthread_mutex_lock(&T.mu);
        struct trash_file *f = trash_file_by_ino(ino);
        if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
                err = EPERM;
        else if (f && (to_set & FUSE_SET_ATTR_SIZE)) {
                if ((size_t)attr->st_size > TRASH_FILE_MAX)
                        err = EFBIG;
                else if ((size_t)attr->st_size > f->len) {
                        char *nd = realloc(f->data, (size_t)attr->st_size);
                        if (!nd)
                                err = ENOMEM;
                        else {
                                memset(nd + f->len, 0, (size_t)attr->st_size - f->len);
                                f->data = nd;
                        }
                }
                if (!err)
                        f->len = (size_t)attr->st_size;
        } else if (!f && (to_set & FUSE_SET_ATTR_SIZE))
                err = EISDIR;
        if (!err && f && (to_set & FUSE_SET_ATTR_MTIME))
                f->mtime = attr->st_mtime;
        else if (!err && f && (to_set & (FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_SIZE)))
                f->mtime = time(NULL);
        trash_stat(fs, ino, &st);
        pthread_mutex_unlock(&T.mu);
        if (err)
                fuse_reply_err(req, err);
        else
                fuse_reply_attr(req, &st, 0);
}

static void trash_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
        enum trash_kind k = trash_kind(ino);
        if (k == TK_NONE) {
                if (T.next.access)
                        T.next.access(req, ino, mask);
                else
                        fuse_reply_err(req, ENOSYS);
                return;
        }
        struct fs *fs = fs_of(req);
        if ((mask & W_OK) && fs->read_only)
                fuse_reply_err(req, EROFS);
        else
                fuse_reply_err(req, (mask & X_OK) && k == TK_FILE ? EACCES : 0);
}

/* ---- directories ---- */

static void trash_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        struct fs *fs = fs_of(req);
        char top[32];
        trash_topname(fs, top, sizeof(top));
        enum trash_kind k = trash_kind(parent);
        bool at_root = parent == CACHE_ROOT_ID &&
                       (strcmp(name, ".Trash") == 0 || strncmp(name, ".Trash-", 7) == 0);
        if (k == TK_NONE && !at_root) {
                T.next.mkdir(req, parent, name, mode);
                return;
        }
        if (trash_refuse_ro(req, fs))
                return;
        if (k == TK_TOP && (strcmp(name, "info") == 0 || strcmp(name, "files") == 0 ||
                            strcmp(name, "expunged") == 0)) {
                fuse_reply_err(req, EEXIST); /* GIO takes that as "there" */
                return;
        }
        /* .Trash (shared, sticky) and other users' trash directories have no
         * meaning here; neither does anything deeper. Never a server folder. */
        if (k != TK_NONE || strcmp(name, top) != 0 || !trash_folder_id(fs)) {
                fuse_reply_err(req, EPERM);
                return;
        }
        pthread_mutex_lock(&T.mu);
        bool existed = T.exists;
        if (!existed) {
                if (!T.top) {
                        cache_lock(fs->acct.cache);
                        T.top = cache_id_alloc(fs->acct.cache);
                        T.info = cache_id_alloc(fs->acct.cache);
                        T.files = cache_id_alloc(fs->acct.cache);
                        T.expunged = cache_id_alloc(fs->acct.cache);
                        cache_unlock(fs->acct.cache);
                }
                T.exists = true;
                T.mtime = time(NULL);
        }
        uint64_t ino = T.top;
        pthread_mutex_unlock(&T.mu);
        if (existed)
                fuse_reply_err(req, EEXIST);
        else
                trash_reply_entry(req, fs, ino);
}

static void trash_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        char top[32];
        trash_topname(fs, top, sizeof(top));
        enum trash_kind k = trash_kind(parent);
        pthread_mutex_lock(&T.mu);
        bool ours = parent == CACHE_ROOT_ID && T.exists && strcmp(name, top) == 0;
        int err = 0;
        if (ours) {
                /* Only once empty, as rmdir(2) would. */
                if (T.ifiles || T.items)
                        err = ENOTEMPTY;
                else
                        T.exists = false;
        } else if (k == TK_TOP)
                err = strcmp(name, "info") == 0 || strcmp(name, "files") == 0 ||
                              strcmp(name, "expunged") == 0
                          ? EBUSY
                          : ENOENT;
        else if (k != TK_NONE)
                err = ENOTDIR;
        pthread_mutex_unlock(&T.mu);
        if (!ours && k == TK_NONE)
                T.next.rmdir(req, parent, name);
        else
                fuse_reply_err(req, err);
}

/* A directory's entries when it is opened (as ops_dir.c does). */
struct trash_snap {
        size_t n;
        struct {
                char *name;
                struct stat st;
        } v[];
};

static void trash_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        enum trash_kind k = trash_kind(ino);
        if (k == TK_NONE) {
                T.next.opendir(req, ino, fi);
                return;
        }
        if (k == TK_FILE) {
                fuse_reply_err(req, ENOTDIR);
                return;
        }
        struct fs *fs = fs_of(req);
        pthread_mutex_lock(&T.mu);
        size_t cap = 2 + T.n + 3;
        struct trash_snap *d = calloc(1, sizeof(*d) + cap * sizeof(d->v[0]));
        struct trash_item *items = NULL; /* files/: a copy, to stat outside our lock */
        bool ok = d != NULL;
        if (ok) {
                trash_stat(fs, ino, &d->v[0].st);
                d->v[0].name = strdup(".");
                trash_stat(fs, ino == T.top ? CACHE_ROOT_ID : T.top, &d->v[1].st);
                d->v[1].name = strdup("..");
                d->n = 2;
                if (k == TK_TOP) {
                        trash_stat(fs, T.info, &d->v[2].st);
                        d->v[2].name = strdup("info");
                        trash_stat(fs, T.files, &d->v[3].st);
                        d->v[3].name = strdup("files");
                        trash_stat(fs, T.expunged, &d->v[4].st);
                        d->v[4].name = strdup("expunged");
                        d->n = 5;
                }
                for (struct trash_file *f = k == TK_INFO ? T.ifiles : NULL; f; f = f->next) {
                        trash_stat(fs, f->ino, &d->v[d->n].st);
                        d->v[d->n++].name = strdup(f->name);
                }
                for (struct trash_item *it = k == TK_FILES ? T.items : NULL; it && ok;
                     it = it->next) {
                        struct trash_item *c = calloc(1, sizeof(*c));
                        ok = c && (c->name = strdup(it->name));
                        if (c) {
                                c->msg_id = it->msg_id;
                                c->next = items;
                                items = c;
                        }
                }
        }
        pthread_mutex_unlock(&T.mu);
        while (items) {
                struct trash_item *c = items;
                items = c->next;
                /* Only messages still in the trash folder show. */
                if (ok && trash_msg_where(fs, c->msg_id, NULL, NULL, &d->v[d->n].st))
                        d->v[d->n++].name = c->name;
                else
                        free(c->name);
                free(c);
        }
        for (size_t i = 0; ok && i < d->n; i++)
                ok = d->v[i].name != NULL;
        if (!ok) {
                for (size_t i = 0; d && i < d->n; i++)
                        free(d->v[i].name);
                free(d);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        fi->fh = (uint64_t)(uintptr_t)d;
        fuse_reply_open(req, fi);
}

static void trash_readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi, bool plus)
{
        if (trash_kind(ino) == TK_NONE) {
                if (plus)
                        T.next.readdirplus(req, ino, size, off, fi);
                else
                        T.next.readdir(req, ino, size, off, fi);
                return;
        }
        struct trash_snap *d = (struct trash_snap *)(uintptr_t)fi->fh;
        char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        size_t used = 0;
        for (size_t i = (size_t)off; d && i < d->n; i++) {
                size_t need;
                if (plus) {
                        struct fuse_entry_param e;
                        memset(&e, 0, sizeof(e));
                        e.attr = d->v[i].st;
                        e.ino = i < 2 ? 0 : d->v[i].st.st_ino;
                        need = fuse_add_direntry_plus(req, buf + used, size - used, d->v[i].name,
                                                      &e, (off_t)i + 1);
                } else
                        need = fuse_add_direntry(req, buf + used, size - used, d->v[i].name,
                                                 &d->v[i].st, (off_t)i + 1);
                if (need > size - used)
                        break;
                used += need;
        }
        fuse_reply_buf(req, buf, used);
        free(buf);
}

static void trash_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          struct fuse_file_info *fi)
{
        trash_readdir_any(req, ino, size, off, fi, false);
}

static void trash_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi)
{
        trash_readdir_any(req, ino, size, off, fi, true);
}

static void trash_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        /* The directories stay ours once made (rmdir only hides them), so
         * their inode still tells whose handle this is. */
        pthread_mutex_lock(&T.mu);
        bool mine = ino && (ino == T.top || ino == T.info || ino == T.files || ino == T.expunged);
        pthread_mutex_unlock(&T.mu);
        if (!mine) {
                T.next.releasedir(req, ino, fi);
                return;
        }
        struct trash_snap *d = (struct trash_snap *)(uintptr_t)fi->fh;
        for (size_t i = 0; d && i < d->n; i++)
                free(d->v[i].name);
        free(d);
        fuse_reply_err(req, 0);
}

/* ---- info/: local files ---- */

static void trash_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         struct fuse_file_info *fi)
{
        enum trash_kind k = trash_kind(parent);
        if (k == TK_NONE) {
                T.next.create(req, parent, name, mode, fi);
                return;
        }
        struct fs *fs = fs_of(req);
        if (trash_refuse_ro(req, fs))
                return;
        if (k != TK_INFO) {
                fuse_reply_err(req, EPERM); /* files/ holds only trashed messages */
                return;
        }
        struct trash_file *f = calloc(1, sizeof(*f));
        if (f)
                f->name = strdup(name);
        if (f && f->name) {
                cache_lock(fs->acct.cache);
                f->ino = cache_id_alloc(fs->acct.cache);
                cache_unlock(fs->acct.cache);
        }
        int err = !f || !f->name ? ENOMEM : 0;
        pthread_mutex_lock(&T.mu);
        if (!err && trash_file_find(name))
                err = EEXIST;
        else if (!err && T.n >= TRASH_ENTRIES_MAX)
                err = ENOSPC;
        if (!err) {
                f->mtime = T.mtime = time(NULL);
                f->next = T.ifiles;
                T.ifiles = f;
                T.n++;
        }
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        if (!err)
                trash_stat(fs, f->ino, &e.attr);
        pthread_mutex_unlock(&T.mu);
        if (err) {
                if (f)
                        free(f->name);
                free(f);
                fuse_reply_err(req, err);
                return;
        }
        e.ino = e.attr.st_ino;
        fi->direct_io = 1;
        fi->fh = 0;
        fuse_reply_create(req, &e, fi);
}

static void trash_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        enum trash_kind k = trash_kind(ino);
        if (k == TK_NONE) {
                T.next.open(req, ino, fi);
                return;
        }
        struct fs *fs = fs_of(req);
        if (k != TK_FILE) {
                fuse_reply_err(req, EISDIR);
                return;
        }
        bool writes = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
        if (writes && trash_refuse_ro(req, fs))
                return;
        pthread_mutex_lock(&T.mu);
        struct trash_file *f = trash_file_by_ino(ino);
        if (f && (fi->flags & O_TRUNC)) {
                f->len = 0;
                f->mtime = time(NULL);
        }
        pthread_mutex_unlock(&T.mu);
        if (!f) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        fi->fh = 0;
        fi->direct_io = 1;
        fuse_reply_open(req, fi);
}

static void trash_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
        if (trash_kind(ino) != TK_FILE) {
                T.next.read(req, ino, size, off, fi);
                return;
        }
        pthread_mutex_lock(&T.mu);
        struct trash_file *f = trash_file_by_ino(ino);
        char *buf = NULL;
        size_t n = 0;
        if (f && (size_t)off < f->len) {
                n = f->len - (size_t)off < size ? f->len - (size_t)off : size;
                buf = malloc(n);
                if (buf)
                        memcpy(buf, f->data + off, n);
        }
        pthread_mutex_unlock(&T.mu);
        if (!f)
                fuse_reply_err(req, ENOENT);
        else if (n && !buf)
                fuse_reply_err(req, ENOMEM);
        else
                fuse_reply_buf(req, buf, n);
        free(buf);
}

static void trash_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
        if (trash_kind(ino) != TK_FILE) {
                T.next.write(req, ino, buf, size, off, fi);
                return;
        }
        int err = 0;
        pthread_mutex_lock(&T.mu);
        struct trash_file *f = trash_file_by_ino(ino);
        if (!f)
                err = ENOENT;
        else if (off < 0 || (size_t)off > TRASH_FILE_MAX || size > TRASH_FILE_MAX - (size_t)off)
                err = EFBIG;
        else {
                size_t end = (size_t)off + size;
                if (end > f->len) {
                        char *nd = realloc(f->data, end);
                        if (!nd)
                                err = ENOMEM;
                        else {
                                memset(nd + f->len, 0, end - f->len);
                                f->data = nd;
                                f->len = end;
                        }
                }
                if (!err) {
                        memcpy(f->data + off, buf, size);
                        f->mtime = time(NULL);
                }
        }
        pthread_mutex_unlock(&T.mu);
        if (err)
                fuse_reply_err(req, err);
        else
                fuse_reply_write(req, size);
}

static void trash_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        if (trash_kind(ino) == TK_NONE && T.next.flush)
                T.next.flush(req, ino, fi);
        else
                fuse_reply_err(req, 0);
}

static void trash_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        /* Our files carry no handle (fh 0, never a message's). */
        if (fi->fh == 0 && trash_kind(ino) == TK_FILE)
                fuse_reply_err(req, 0);
        else
                T.next.release(req, ino, fi);
}

/* ---- moving messages in and out ---- */

/* Emptying the trash (unlink in files/, or gvfsd-trash's move to expunged/):
 * the message leaves the trash folder as rm there does (expunged). One that
 * left it some other way is only forgotten here. An errno, 0 if done. */
static int trash_delete(struct fs *fs, const char *name)
{
        uint64_t msg_id = trash_item_msg(name), mbox = 0;
        char *mname = NULL;
        if (!msg_id)
                return ENOENT;
        int r = 0;
        if (trash_msg_where(fs, msg_id, &mbox, &mname, NULL) && mbox == trash_folder_id(fs))
                r = account_unlink(&fs->acct, mbox, mname);
        free(mname);
        if (r == 0)
                trash_item_forget(name);
        return r < 0 ? fs_errno(r) : 0;
}

/* rename(FOLDER/name → files/newname): the message goes to the trash folder. */
static void trash_put(fuse_req_t req, struct fs *fs, fuse_ino_t parent, const char *name,
                      const char *newname)
{
        uint64_t trash_id = trash_folder_id(fs);
        pthread_mutex_lock(&T.mu);
        int err = trash_item_find(newname) ? EEXIST : T.n >= TRASH_ENTRIES_MAX ? ENOSPC : 0;
        pthread_mutex_unlock(&T.mu);
        uint64_t msg_id = 0;
        bool in_trash = false;
        cache_lock(fs->acct.cache);
        struct cache_node *pn = cache_node_get(fs->acct.cache, parent);
        struct cache_msg *msg =
            pn && pn->kind == CACHE_MBOX ? cache_msg_by_name((struct cache_mbox *)pn, name) : NULL;
        if (msg) {
                msg_id = msg->node.id;
                in_trash = msg->mbox->node.id == trash_id;
        }
        cache_unlock(fs->acct.cache);
        /* A folder, a file being written, a local file: not a message the
         * trash folder can take. EXDEV is GIO's "not supported": the file
         * manager offers to delete it instead. */
        if (!err && (!msg_id || !trash_id))
                err = EXDEV;
        if (err) {
                fuse_reply_err(req, err);
                return;
        }
        /* The name typed for a message's move only guards against a clash;
         * the trash's name for it lives here, so none is given. */
        int r = in_trash ? 0 : account_rename(&fs->acct, parent, name, trash_id, "", false);
        if (r < 0) {
                fuse_reply_err(req, fs_errno(r));
                return;
        }
        /* The node followed the message (COPYUID); without it the message
         * is in the trash folder all the same, but the Trash Can can't
         * name it. */
        if (!trash_msg_where(fs, msg_id, NULL, NULL, NULL))
                log_warn("trash: moved, but the server did not say where (no COPYUID)");
        struct trash_item *it = calloc(1, sizeof(*it));
        if (it && !(it->name = strdup(newname))) {
                free(it);
                it = NULL;
        }
        pthread_mutex_lock(&T.mu);
        if (it) {
                it->msg_id = msg_id;
                it->next = T.items;
                T.items = it;
                T.n++;
        }
        T.mtime = time(NULL);
        pthread_mutex_unlock(&T.mu);
        fuse_reply_err(req, 0);
}

/* rename(files/name → FOLDER/newname): restore. */
static void trash_restore(fuse_req_t req, struct fs *fs, const char *name, fuse_ino_t newparent,
                          const char *newname, unsigned flags)
{
        uint64_t msg_id = trash_item_msg(name), mbox = 0;
        char *mname = NULL;
        if (!msg_id || !trash_msg_where(fs, msg_id, &mbox, &mname, NULL)) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        int r = mbox == newparent ? 0
                                  : account_rename(&fs->acct, mbox, mname, newparent, newname,
                                                   (flags & RENAME_NOREPLACE) != 0);
        free(mname);
        if (r < 0) {
                fuse_reply_err(req, fs_errno(r));
                return;
        }
        trash_item_forget(name);
        /* The message sits under its own name; the one typed keeps finding
         * it for a while (as after mv). */
        alias_add(fs->alias, newparent, newname, msg_id, ALIAS_TTL_MS);
        fuse_reply_err(req, 0);
        inval_entry_later(fs->inval, newparent, newname, 1000);
}

static void trash_rename_info(fuse_req_t req, const char *name, const char *newname, unsigned flags)
{
        int err = 0;
        pthread_mutex_lock(&T.mu);
        struct trash_file *f = trash_file_find(name), *old = trash_file_find(newname);
        char *nn = f ? strdup(newname) : NULL;
        if (!f)
                err = ENOENT;
        else if (old && (flags & RENAME_NOREPLACE))
                err = EEXIST;
        else if (!nn)
                err = ENOMEM;
        if (!err && f != old) {
                if (old)
                        trash_file_unlink(old);
                free(f->name);
                f->name = nn;
                nn = NULL;
                T.mtime = time(NULL);
        }
        pthread_mutex_unlock(&T.mu);
        free(nn);
        fuse_reply_err(req, err);
}

static void trash_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                         const char *newname, unsigned int flags)
{
        struct fs *fs = fs_of(req);
        char top[32];
        trash_topname(fs, top, sizeof(top));
        enum trash_kind from = trash_kind(parent), to = trash_kind(newparent);
        pthread_mutex_lock(&T.mu);
        bool topname = (parent == CACHE_ROOT_ID && strcmp(name, top) == 0 && T.exists) ||
                       (newparent == CACHE_ROOT_ID && strcmp(newname, top) == 0);
        pthread_mutex_unlock(&T.mu);
        if (from == TK_NONE && to == TK_NONE && !topname) {
                T.next.rename(req, parent, name, newparent, newname, flags);
                return;
        }
        if (trash_refuse_ro(req, fs))
                return;
        if (flags & ~(unsigned)RENAME_NOREPLACE)
                fuse_reply_err(req, EINVAL);
        else if (from == TK_INFO && to == TK_INFO)
                trash_rename_info(req, name, newname, flags);
        else if (from == TK_NONE && to == TK_FILES && !topname)
                trash_put(req, fs, parent, name, newname);
        else if (from == TK_FILES && to == TK_EXPUNGED)
                fuse_reply_err(req, trash_delete(fs, name));
        else if (from == TK_FILES && to == TK_NONE && !topname)
                trash_restore(req, fs, name, newparent, newname, flags);
        else
                fuse_reply_err(req, topname ? EPERM : EXDEV);
}

static void trash_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        enum trash_kind k = trash_kind(parent);
        if (k == TK_NONE) {
                T.next.unlink(req, parent, name);
                return;
        }
        struct fs *fs = fs_of(req);
        if (trash_refuse_ro(req, fs))
                return;
        if (k == TK_INFO) {
                pthread_mutex_lock(&T.mu);
                struct trash_file *f = trash_file_find(name);
                if (f) {
                        trash_file_unlink(f);
                        T.mtime = time(NULL);
                }
                pthread_mutex_unlock(&T.mu);
                fuse_reply_err(req, f ? 0 : ENOENT);
                return;
        }
        if (k != TK_FILES) {
                fuse_reply_err(req, k == TK_TOP ? EISDIR : ENOTDIR);
                return;
        }
        fuse_reply_err(req, trash_delete(fs, name));
}

/* ---- the rest: refused, or not ours ---- */

static void trash_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        if (trash_kind(ino) == TK_NONE)
                T.next.getxattr(req, ino, name, size);
        else
                fuse_reply_err(req, ENODATA);
}

static void trash_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        if (trash_kind(ino) == TK_NONE)
                T.next.listxattr(req, ino, size);
        else if (size == 0)
                fuse_reply_xattr(req, 0);
        else
                fuse_reply_buf(req, NULL, 0);
}

static void trash_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                           size_t size, int flags)
{
        if (trash_kind(ino) == TK_NONE)
                T.next.setxattr(req, ino, name, value, size, flags);
        else
                fuse_reply_err(req, ENOTSUP);
}

static void trash_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        if (trash_kind(ino) == TK_NONE)
                T.next.removexattr(req, ino, name);
        else
                fuse_reply_err(req, ENODATA);
}

static void trash_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        dev_t rdev)
{
        if (trash_kind(parent) == TK_NONE)
                T.next.mknod(req, parent, name, mode, rdev);
        else
                fuse_reply_err(req, EPERM);
}

static void trash_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
        if (trash_kind(parent) == TK_NONE)
                T.next.symlink(req, link, parent, name);
        else
                fuse_reply_err(req, EPERM);
}

static void trash_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
        if (trash_kind(newparent) == TK_NONE && trash_kind(ino) == TK_NONE)
                T.next.link(req, ino, newparent, newname);
        else
                fuse_reply_err(req, EPERM);
}

void trash_register(struct fuse_lowlevel_ops *ops)
{
        T.next = *ops;
        /* Every operation wrapped here is one the table already has (else
         * libfuse's ENOSYS stays), except access, which answers for the
         * trash itself either way. */
#define TRASH_WRAP(op)                                                                             \
        if (ops->op)                                                                               \
                ops->op = trash_##op;
        TRASH_WRAP(lookup)
        TRASH_WRAP(getattr)
        TRASH_WRAP(setattr)
        TRASH_WRAP(mkdir)
        TRASH_WRAP(rmdir)
        TRASH_WRAP(opendir)
        TRASH_WRAP(readdir)
        TRASH_WRAP(readdirplus)
        TRASH_WRAP(releasedir)
        TRASH_WRAP(create)
        TRASH_WRAP(open)
        TRASH_WRAP(read)
        TRASH_WRAP(write)
        TRASH_WRAP(release)
        TRASH_WRAP(rename)
        TRASH_WRAP(unlink)
        TRASH_WRAP(getxattr)
        TRASH_WRAP(listxattr)
        TRASH_WRAP(setxattr)
        TRASH_WRAP(removexattr)
        TRASH_WRAP(mknod)
        TRASH_WRAP(symlink)
        TRASH_WRAP(link)
#undef TRASH_WRAP
        ops->flush = trash_flush;
        ops->access = trash_access;
}

void trash_free(void)
{
        pthread_mutex_lock(&T.mu);
        while (T.ifiles)
                trash_file_unlink(T.ifiles);
        while (T.items)
                trash_item_drop(T.items);
        T.exists = false;
        pthread_mutex_unlock(&T.mu);
}
