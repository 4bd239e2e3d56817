/* Directories: lookup, getattr, readdir(plus), statfs. All answered from the
 * cache; the listing is fetched or revalidated when a directory is opened or
 * a name is not found in a listing older than the revalidation window. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/names.h"
#include "fs/ops_parts.h"
#include "fs/ops_search.h"
#include "fs/scratch.h"
#include "imap/log.h"

int fs_errno(int r)
{
        switch (r) {
        case -ENOENT:
        case -ENOTDIR:
        case -EISDIR:
        case -ENOMEM:
        case -EACCES:
        case -EEXIST:
        case -ENOTEMPTY:
        case -EPERM:
        case -EINVAL:
        case -EDQUOT:
        case -EFBIG:
        case -EROFS:
        case -EBUSY:
        case -ENOTSUP:
        case -ENOSPC:       /* [LIMIT] */
        case -ENAMETOOLONG: /* a name the server finds too long */
        case -EAGAIN:       /* [UNAVAILABLE], throttled: worth a retry later */
                return -r;
        default:
                return EIO;
        }
}

void fs_stat_node(const struct fs *fs, const struct cache_node *n, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = n->id;
        st->st_uid = fs->uid;
        st->st_gid = fs->gid;
        st->st_blksize = BLOCK_SIZE;
        if (n->kind == CACHE_MBOX) {
                const struct cache_mbox *m = (const struct cache_mbox *)n;
                st->st_mode = S_IFDIR | (fs->read_only ? 0555 : 0755);
                st->st_nlink = 2 + m->nchildren;
                st->st_size = 4096;
                /* The mount time until its content changes (fs/inval.h). */
                struct timespec t = {.tv_sec = fs->mount_time};
                if (fs->inval)
                        inval_dir_mtime(fs->inval, n->id, &t);
                st->st_mtim = st->st_ctim = t;
                st->st_atime = fs->mount_time;
        } else {
                const struct cache_msg *msg = (const struct cache_msg *)n;
                /* 0644 so that rm does not ask; messages still can't be
                 * opened for writing (EACCES). */
                st->st_mode = S_IFREG | (fs->read_only ? 0444 : 0644);
                st->st_nlink = 1;
                st->st_size = (off_t)msg->size;
                st->st_blocks = (blkcnt_t)((msg->size + 511) / 512);
                st->st_mtime = st->st_ctime = st->st_atime = msg->internaldate;
        }
}

void fs_stat_staged(const struct fs *fs, const struct staged_info *sd, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = sd->id;
        st->st_uid = fs->uid;
        st->st_gid = fs->gid;
        st->st_blksize = BLOCK_SIZE;
        /* Local (scratch) files are private to the mount: 0600. That also
         * tells vim that a file it makes here would not get a message's
         * mode, so it writes over the message instead of renaming it away. */
        st->st_mode = S_IFREG | (sd->local ? 0600 : 0644);
        st->st_nlink = 1;
        st->st_size = (off_t)sd->size;
        st->st_blocks = (blkcnt_t)((sd->size + 511) / 512);
        st->st_mtime = st->st_ctime = st->st_atime = sd->mtime;
}

bool fs_stat_ino(struct fs *fs, fuse_ino_t ino, struct stat *st, bool *volatile_attrs)
{
        struct staged_info sd;
        *volatile_attrs = false;
        if (staging_get(fs->staging, ino, &sd)) {
                fs_stat_staged(fs, &sd, st);
                *volatile_attrs = true;
                return true;
        }
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, ino);
        if (n)
                fs_stat_node(fs, n, st);
        cache_unlock(fs->acct.cache);
        return n != NULL;
}

/* Finds name in directory parent (lock held). */
static struct cache_node *ops_dir_find(struct cache *c, fuse_ino_t parent, const char *name,
                                       int *err)
{
        struct cache_node *pn = cache_node_get(c, parent);
        if (!pn) {
                *err = ENOENT;
                return NULL;
        }
        if (pn->kind != CACHE_MBOX) {
                *err = ENOTDIR;
                return NULL;
        }
        struct cache_mbox *m = (struct cache_mbox *)pn;
        struct cache_mbox *child = cache_mbox_child(m, name);
        if (child)
                return &child->node;
        struct cache_msg *msg = cache_msg_by_name(m, name);
        if (msg)
                return &msg->node;
        *err = ENOENT;
        return NULL;
}

static bool ops_dir_known(struct fs *fs, fuse_ino_t ino)
{
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, ino);
        const struct cache_mbox *m =
            n && n->kind == CACHE_MBOX ? (const struct cache_mbox *)n : NULL;
        /* The root and \Noselect folders hold only folders, which the tree knows. */
        bool known = m && (!cache_mbox_selectable(m) || m->state != CACHE_LISTING_NONE);
        cache_unlock(fs->acct.cache);
        return known;
}

static bool ops_dir_needs_listing(struct cache *c, fuse_ino_t ino)
{
        struct cache_node *n = cache_node_get(c, ino);
        if (!n || n->kind != CACHE_MBOX)
                return false;
        const struct cache_mbox *m = (const struct cache_mbox *)n;
        return cache_mbox_selectable(m) && m->state != CACHE_LISTING_VALID;
}

static int ops_dir_reply_entry(fuse_req_t req, struct fs *fs, fuse_ino_t parent, const char *name)
{
        struct fuse_entry_param e;
        int err = 0;
        memset(&e, 0, sizeof(e));
        cache_lock(fs->acct.cache);
        struct cache_node *n = ops_dir_find(fs->acct.cache, parent, name, &err);
        if (n) {
                fs_stat_node(fs, n, &e.attr);
                e.ino = n->id;
                e.attr_timeout = e.entry_timeout = fs->entry_timeout;
        }
        cache_unlock(fs->acct.cache);
        if (!n)
                return err;
        fuse_reply_entry(req, &e);
        return 0;
}

static bool ops_lookup_staged(fuse_req_t req, struct fs *fs, fuse_ino_t parent, const char *name)
{
        struct staged_info sd;
        if (!staging_lookup(fs->staging, parent, name, &sd))
                return false;
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        fs_stat_staged(fs, &sd, &e.attr);
        e.ino = sd.id;
        /* It changes with every write and vanishes on close: don't cache it. */
        e.attr_timeout = e.entry_timeout = 0;
        fuse_reply_entry(req, &e);
        return true;
}

/* A name typed for a message moved here a moment ago (fs/alias.h). Never
 * cached by the kernel: it must stop working when the alias ends. */
static bool ops_lookup_alias(fuse_req_t req, struct fs *fs, fuse_ino_t parent, const char *name)
{
        uint64_t id;
        if (!alias_find(fs->alias, parent, name, &id))
                return false;
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, id);
        bool live = n && n->kind == CACHE_MSG;
        if (live) {
                fs_stat_node(fs, n, &e.attr);
                e.ino = n->id;
        }
        cache_unlock(fs->acct.cache);
        if (live)
                fuse_reply_entry(req, &e);
        return live;
}

static void ops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct fs *fs = fs_of(req);
        struct account *a = &fs->acct;

        /* The kernel looks a name up before mkdir, rmdir, unlink, rename or
         * create: this is where a long one is refused for all of them. */
        if (names_too_long(name)) {
                fuse_reply_err(req, ENAMETOOLONG);
                return;
        }
        if (ops_search_lookup(req, parent, name))
                return;
        if (parts_fs_lookup(req, parent, name))
                return;
        if (ops_lookup_staged(req, fs, parent, name))
                return;

        cache_lock(a->cache);
        bool need = ops_dir_needs_listing(a->cache, parent);
        cache_unlock(a->cache);
        if (need)
                account_refresh_listing(a, parent, -1);
        if (ops_dir_reply_entry(req, fs, parent, name) == 0)
                return;
        if (ops_lookup_alias(req, fs, parent, name))
                return;
        /* Not there: maybe it is new on the server. Look again if what we know
         * is older than the revalidation window. A folder's listing never
         * holds a scratch name (fs/scratch.h): vim's and rsync's probes for
         * their temp files cost no round trip. */
        int r = parent == CACHE_ROOT_ID ? account_refresh_tree(a, a->opts.revalidate_ms)
                : scratch_name(name)    ? 0
                                        : account_refresh_listing(a, parent, a->opts.revalidate_ms);
        int err = ops_dir_reply_entry(req, fs, parent, name);
        if (err == 0)
                return;
        /* The server could not be asked: "no such name" holds only if we
         * know the directory (a listing, possibly from the persistent cache,
         * or the tree); else the honest answer is an I/O error. */
        if (r < 0 && err == ENOENT && r != -ENOENT && !ops_dir_known(fs, parent))
                err = fs_errno(r);
        if (err == ENOENT) {
                /* Negative entry: the kernel may skip asking again for a while. */
                struct fuse_entry_param e;
                memset(&e, 0, sizeof(e));
                e.entry_timeout = fs->entry_timeout;
                fuse_reply_entry(req, &e);
                return;
        }
        fuse_reply_err(req, err);
}

static void ops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct stat st;
        bool changing;
        (void)fi;
        if (ops_search_getattr(req, ino))
                return;
        if (parts_fs_getattr(req, ino))
                return;
        if (!fs_stat_ino(fs, ino, &st, &changing))
                fuse_reply_err(req, ENOENT);
        else
                fuse_reply_attr(req, &st, changing ? 0 : fs->entry_timeout);
}

/* A directory's entries, taken when it is opened so that readdir offsets
 * stay meaningful while the listing changes underneath. */
struct dirsnap {
        size_t n;
        struct dirsnap_ent {
                char *name;
                struct stat st;
        } * v;
};

static void ops_dirsnap_free(struct dirsnap *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].name);
        free(d->v);
        free(d);
}

static int ops_dirsnap_add(struct dirsnap *d, size_t cap, const char *name, const struct stat *st)
{
        if (d->n >= cap)
                return -ENOMEM;
        if (!name[0])
                return 0; /* no valid name (can't happen with escaping) */
        d->v[d->n].name = strdup(name);
        if (!d->v[d->n].name)
                return -ENOMEM;
        d->v[d->n].st = *st;
        d->n++;
        return 0;
}

struct dirsnap_staged {
        struct fs *fs;
        struct dirsnap *d;
        int err;
};

static void ops_dirsnap_staged(void *vctx, const char *name, const struct staged_info *info)
{
        struct dirsnap_staged *c = vctx;
        if (info->replaces)
                return; /* a message being written over: listed as the message */
        struct dirsnap_ent *nv = realloc(c->d->v, (c->d->n + 1) * sizeof(*nv));
        if (!nv) {
                c->err = -ENOMEM;
                return;
        }
        c->d->v = nv;
        struct stat st;
        fs_stat_staged(c->fs, info, &st);
        if (ops_dirsnap_add(c->d, c->d->n + 1, name, &st) < 0)
                c->err = -ENOMEM;
}

static int ops_dirsnap_take(struct fs *fs, fuse_ino_t ino, struct dirsnap **out)
{
        struct cache *c = fs->acct.cache;
        struct dirsnap *d = calloc(1, sizeof(*d));
        if (!d)
                return ENOMEM;
        cache_lock(c);
        struct cache_node *n = cache_node_get(c, ino);
        if (!n || n->kind != CACHE_MBOX) {
                cache_unlock(c);
                free(d);
                return n ? ENOTDIR : ENOENT;
        }
        struct cache_mbox *m = (struct cache_mbox *)n;
        size_t cap = 2 + m->nchildren + m->nmsgs;
        d->v = calloc(cap, sizeof(*d->v));
        int r = d->v ? 0 : -ENOMEM;
        struct stat st;
        fs_stat_node(fs, &m->node, &st);
        if (r == 0)
                r = ops_dirsnap_add(d, cap, ".", &st);
        if (m->parent)
                fs_stat_node(fs, &m->parent->node, &st);
        if (r == 0)
                r = ops_dirsnap_add(d, cap, "..", &st);
        struct cache_mbox *ch, *ctmp;
        HASH_ITER(hh_child, m->children, ch, ctmp)
        {
                fs_stat_node(fs, &ch->node, &st);
                if (r == 0)
                        r = ops_dirsnap_add(d, cap, ch->dname, &st);
        }
        /* Name order, so that tools that read in readdir order (grep -r,
         * find) walk messages in the order read-ahead across files expects. */
        struct cache_msg **sorted = m->nmsgs ? cache_mbox_sorted(m) : NULL;
        if (m->nmsgs && !sorted)
                r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < m->nmsgs; i++) {
                fs_stat_node(fs, &sorted[i]->node, &st);
                r = ops_dirsnap_add(d, cap, sorted[i]->name, &st);
        }
        cache_unlock(c);
        if (r == 0) {
                /* Files being written show too, so that cp and file managers
                 * see what they just created. */
                struct dirsnap_staged ctx = {fs, d, 0};
                staging_list(fs->staging, ino, ops_dirsnap_staged, &ctx);
                r = ctx.err;
        }
        if (r < 0) {
                ops_dirsnap_free(d);
                return ENOMEM;
        }
        *out = d;
        return 0;
}

static void ops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct account *a = &fs->acct;
        if (ops_search_opendir(req, ino, fi))
                return;
        if (parts_fs_opendir(req, ino, fi))
                return;
        int r = ino == CACHE_ROOT_ID ? account_refresh_tree(a, a->opts.revalidate_ms)
                                     : account_refresh_listing(a, ino, a->opts.revalidate_ms);
        if (r == 0 && ino != CACHE_ROOT_ID)
                account_dir_opened(a, ino);
        if (r == -ENOENT || r == -ENOTDIR) {
                fuse_reply_err(req, -r);
                return;
        }
        if (r < 0) {
                /* The server is away: what we know is better than nothing, but
                 * a folder never listed can't be shown. */
                cache_lock(a->cache);
                bool never = ops_dir_needs_listing(a->cache, ino);
                struct cache_node *n = cache_node_get(a->cache, ino);
                bool listed = n && n->kind == CACHE_MBOX &&
                              ((struct cache_mbox *)n)->state != CACHE_LISTING_NONE;
                cache_unlock(a->cache);
                if (never && !listed) {
                        fuse_reply_err(req, fs_errno(r));
                        return;
                }
        }
        /* The folder in use is the one to watch with IDLE. */
        cache_lock(a->cache);
        struct cache_node *wn = cache_node_get(a->cache, ino);
        char *watch = wn && wn->kind == CACHE_MBOX && cache_mbox_selectable((struct cache_mbox *)wn)
                          ? strdup(((struct cache_mbox *)wn)->raw)
                          : NULL;
        cache_unlock(a->cache);
        sync_watch(fs->sync, watch);
        free(watch);
        struct dirsnap *d;
        int err = ops_dirsnap_take(fs, ino, &d);
        if (err) {
                fuse_reply_err(req, err);
                return;
        }
        fi->fh = (uint64_t)(uintptr_t)d;
        fi->cache_readdir = 0;
        fuse_reply_open(req, fi);
}

static void ops_readdir_common(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
                               bool plus)
{
        struct fs *fs = fs_of(req);
        struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;
        char *buf = malloc(size);
        size_t used = 0;
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        for (size_t i = (size_t)off; i < d->n; i++) {
                const struct dirsnap_ent *de = &d->v[i];
                size_t need;
                if (plus) {
                        struct fuse_entry_param e;
                        memset(&e, 0, sizeof(e));
                        e.attr = de->st;
                        /* "." and ".." carry no lookup reference (ino 0). */
                        bool dots = i < 2;
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
}

static void ops_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
        if (!ops_search_readdir(req, ino, size, off, fi, false) &&
            !parts_fs_readdir(req, ino, size, off, fi, false))
                ops_readdir_common(req, size, off, fi, false);
}

static void ops_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
        if (!ops_search_readdir(req, ino, size, off, fi, true) &&
            !parts_fs_readdir(req, ino, size, off, fi, true))
                ops_readdir_common(req, size, off, fi, true);
}

static void ops_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        if (ops_search_releasedir(req, ino, fi))
                return;
        if (parts_fs_releasedir(req, ino, fi))
                return;
        struct dirsnap *d = (struct dirsnap *)(uintptr_t)fi->fh;
        size_t n = d ? d->n : 0;
        ops_dirsnap_free(d);
        fuse_reply_err(req, 0);
        cache_trim(n); /* after the reply: the caller need not wait for it */
}

/* df: the account's QUOTA, else an estimate (cache/account.h). */
static void ops_statfs(fuse_req_t req, fuse_ino_t ino)
{
        struct statvfs sv;
        struct account_space sp;
        (void)ino;
        account_space(&fs_of(req)->acct, &sp);
        memset(&sv, 0, sizeof(sv));
        sv.f_bsize = sv.f_frsize = BLOCK_SIZE;
        sv.f_namemax = 255;
        sv.f_blocks = (sp.total + BLOCK_SIZE - 1) / BLOCK_SIZE;
        uint64_t used = (sp.used + BLOCK_SIZE - 1) / BLOCK_SIZE;
        sv.f_bfree = sv.f_bavail = sv.f_blocks > used ? sv.f_blocks - used : 0;
        sv.f_files = sp.files;
        sv.f_ffree = sv.f_favail = sp.files_free;
        if (fs_of(req)->read_only)
                sv.f_flag |= ST_RDONLY;
        fuse_reply_statfs(req, &sv);
}

/* True if st's mode bits give uid/gid what mask asks (R_OK, W_OK, X_OK), as
 * the kernel's own check would: root may read and write anything, and
 * execute what has an x bit (or is a directory). */
static bool ops_mode_allows(const struct stat *st, uid_t uid, gid_t gid, int mask)
{
        if (uid == 0)
                return !(mask & X_OK) || S_ISDIR(st->st_mode) || (st->st_mode & 0111);
        unsigned bits = uid == st->st_uid   ? (st->st_mode >> 6) & 7
                        : gid == st->st_gid ? (st->st_mode >> 3) & 7
                                            : st->st_mode & 7;
        return ((unsigned)mask & bits) == (unsigned)mask;
}

/* access(2), test -w/-x, find -executable, GIO's can-write/can-execute: the
 * mode's answer (messages 0644, so X_OK is EACCES; 0444 and EROFS for
 * W_OK with -o ro). Without this op the kernel says yes to everything.
 * W_OK on a message is yes on a writable mount, as its mode says: it can be
 * renamed, removed and flagged (rm doesn't ask first); opening it for
 * writing is still EACCES. Inodes of .search and .parts answer yes here;
 * their operations refuse what they can't do. */
static void ops_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
        struct fs *fs = fs_of(req);
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        struct stat st;
        bool changing;
        if ((mask & W_OK) && fs->read_only) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (!fs_stat_ino(fs, ino, &st, &changing)) {
                fuse_reply_err(req, 0);
                return;
        }
        fuse_reply_err(req, ops_mode_allows(&st, ctx->uid, ctx->gid, mask) ? 0 : EACCES);
}

static void ops_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
        /* Nodes live as long as their mailbox or message does, so inode numbers
         * stay stable for the life of the mount; nothing to release here. */
        (void)ino;
        (void)nlookup;
        fuse_reply_none(req);
}

void ops_dir_register(struct fuse_lowlevel_ops *ops)
{
        ops->lookup = ops_lookup;
        ops->forget = ops_forget;
        ops->getattr = ops_getattr;
        ops->opendir = ops_opendir;
        ops->readdir = ops_readdir;
        ops->readdirplus = ops_readdirplus;
        ops->releasedir = ops_releasedir;
        ops->statfs = ops_statfs;
        ops->access = ops_access;
}
