/* Changing the tree: mkdir, rmdir, rename, unlink, create, setattr. Each
 * reply comes after the server answered; with -o ro every one is EROFS. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/account_write.h"
#include "fs/fs.h"
#include "fs/ops_parts.h"
#include "fs/names.h"
#include "fs/ops_search.h"
#include "fs/scratch.h"

/* -o ro, or offline (the server can't be reached): every change is EROFS,
 * before any check that would give another answer. */
static bool ops_refuse_ro(fuse_req_t req)
{
        struct fs *fs = fs_of(req);
        if (!fs->read_only && account_online(&fs->acct))
                return false;
        fuse_reply_err(req, EROFS);
        return true;
}

/* A name over 255 bytes: ENAMETOOLONG, as the lookup before every one of
 * these ops already answers; checked here too, before -o ro's EROFS, so the
 * answer doesn't depend on whether the kernel looked the name up. */
static bool ops_refuse_name(fuse_req_t req, const char *name)
{
        if (!names_too_long(name))
                return false;
        fuse_reply_err(req, ENAMETOOLONG);
        return true;
}

static void ops_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        if (parts_fs_refuse(req, 0, parent, name))
                return;
        struct fs *fs = fs_of(req);
        uint64_t id = 0;
        (void)mode;
        if (ops_refuse_name(req, name) || ops_refuse_ro(req) || ops_search_refuse(req, parent))
                return;
        int r = account_mkdir(&fs->acct, parent, name, &id);
        if (r < 0) {
                fuse_reply_err(req, fs_errno(r));
                return;
        }
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, id);
        bool same_name = false;
        if (n) {
                fs_stat_node(fs, n, &e.attr);
                same_name = strcmp(((struct cache_mbox *)n)->dname, name) == 0;
        }
        cache_unlock(fs->acct.cache);
        if (!n) {
                fuse_reply_err(req, EIO);
                return;
        }
        e.ino = id;
        /* Every name mkdir accepts lists as typed (fs/names.h); should the
         * server still make it list differently, the typed spelling must not
         * stay in the kernel's cache. */
        e.attr_timeout = e.entry_timeout = same_name ? fs->entry_timeout : 0;
        fuse_reply_entry(req, &e);
        if (!same_name)
                inval_entry(fs->inval, parent, name);
}

static void ops_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        if (ops_refuse_name(req, name) || ops_refuse_ro(req) || ops_search_refuse(req, parent))
                return;
        if (parts_fs_refuse(req, 0, parent, name))
                return;
        if (ops_refuse_name(req, name) || ops_refuse_ro(req))
                return;
        int r = account_rmdir(&fs_of(req)->acct, parent, name);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

static void ops_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        if (parts_fs_refuse(req, 0, parent, name))
                return;
        struct fs *fs = fs_of(req);
        if (ops_refuse_name(req, name) || ops_refuse_ro(req) ||
            ops_search_redirect(req, &parent, name))
                return;
        struct staged_info sd;
        if (staging_lookup(fs->staging, parent, name, &sd)) {
                /* A file still being written: drop it, nothing reached the server.
                 * A message being written over is still the message under this
                 * name: it goes as rm would, and only then its replacement. */
                int r = sd.replaces ? account_unlink(&fs->acct, parent, name) : 0;
                uint64_t p;
                char *n = NULL;
                if (r == 0)
                        staging_remove(fs->staging, sd.id, &p, &n);
                free(n);
                fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
                return;
        }
        int r = account_unlink(&fs->acct, parent, name);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

/* The message a name in folder parent stands for: its own name, or a
 * typed name that still finds it (fs/alias.h). 0: none. */
static uint64_t ops_msg_named(struct fs *fs, uint64_t parent, const char *name)
{
        uint64_t id = 0;
        cache_lock(fs->acct.cache);
        struct cache_node *pn = cache_node_get(fs->acct.cache, parent);
        struct cache_msg *m =
            pn && pn->kind == CACHE_MBOX ? cache_msg_by_name((struct cache_mbox *)pn, name) : NULL;
        if (m)
                id = m->node.id;
        bool dir = pn && pn->kind == CACHE_MBOX && cache_mbox_child((struct cache_mbox *)pn, name);
        cache_unlock(fs->acct.cache);
        if (!id && !dir && alias_find(fs->alias, parent, name, &id)) {
                cache_lock(fs->acct.cache);
                struct cache_node *n = cache_node_get(fs->acct.cache, id);
                if (!n || n->kind != CACHE_MSG)
                        id = 0;
                cache_unlock(fs->acct.cache);
        }
        return id;
}

static bool ops_is_dir(struct fs *fs, uint64_t parent, const char *name)
{
        cache_lock(fs->acct.cache);
        struct cache_node *pn = cache_node_get(fs->acct.cache, parent);
        bool dir = pn && pn->kind == CACHE_MBOX && cache_mbox_child((struct cache_mbox *)pn, name);
        cache_unlock(fs->acct.cache);
        return dir;
}

/* rename of a file being written or a local (scratch) file. Between
 * scratch names it stays local. To any other name it becomes a message
 * now (rsync's and editors' write-then-rename), and over an existing
 * message it replaces that message; rename answers what the server said,
 * and the local file stays if that failed. */
static int ops_rename_staged(struct fs *fs, const struct staged_info *sd, fuse_ino_t newparent,
                             const char *newname, bool noreplace)
{
        struct staged_info other;
        bool other_staged = staging_lookup(fs->staging, newparent, newname, &other);
        if (other_staged && other.id == sd->id)
                return 0; /* onto itself */
        if (ops_is_dir(fs, newparent, newname))
                return -EISDIR;
        if (sd->replaces || (other_staged && (!other.local || other.replaces)))
                return -EBUSY; /* a file being written: rename it when it is done */
        uint64_t target = other_staged ? 0 : ops_msg_named(fs, newparent, newname);
        if (noreplace && (other_staged || target))
                return -EEXIST;
        if (!sd->local || scratch_name(newname)) {
                int rr = staging_rename(fs->staging, sd->id, newparent, newname);
                /* A file still being written that goes to a scratch name is
                 * a scratch file from now on (editors' and rsync's backups). */
                if (rr == 0 && !sd->local && !sd->replaces && scratch_name(newname))
                        rr = staging_set_local(fs->staging, sd->id, true);
                return rr;
        }
        uint64_t msg_id = 0;
        int r = fs_staged_store(fs, sd->id, newparent, target, true, &msg_id);
        if (r < 0)
                return r;
        uint64_t p;
        char *n = NULL;
        staging_remove(fs->staging, sd->id, &p, &n);
        free(n);
        if (other_staged) { /* the local file the rename replaced */
                staging_remove(fs->staging, other.id, &p, &n);
                free(n);
        }
        /* The kernel now believes the local file's inode sits at newname;
         * the message has its own name (and inode). The typed name finds it
         * for a while (rsync and mv stat it after the rename). */
        if (msg_id)
                alias_add(fs->alias, newparent, newname, msg_id, ALIAS_TTL_MS);
        return 0;
}

static void ops_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                       const char *newname, unsigned int flags)
{
        if (parts_fs_refuse(req, 0, parent, name) || parts_fs_refuse(req, 0, newparent, newname))
                return;
        struct fs *fs = fs_of(req);
        if (ops_refuse_name(req, name) || ops_refuse_name(req, newname) || ops_refuse_ro(req) ||
            ops_search_refuse(req, newparent) || ops_search_redirect(req, &parent, name))
                return;
        /* NOREPLACE: an existing target is EEXIST (without it, a folder
         * replaces an empty one); accepting it saves GNU mv a fallback per
         * file. EXCHANGE has no IMAP equivalent. */
        if (flags & ~(unsigned)RENAME_NOREPLACE) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        struct staged_info sd;
        if (staging_lookup(fs->staging, parent, name, &sd)) {
                int sr =
                    ops_rename_staged(fs, &sd, newparent, newname, (flags & RENAME_NOREPLACE) != 0);
                fuse_reply_err(req, -sr);
                if (sr == 0 && !staging_get(fs->staging, sd.id, &sd))
                        inval_entry_later(fs->inval, newparent, newname, 1000);
                return;
        }
        cache_lock(fs->acct.cache);
        struct cache_node *pn = cache_node_get(fs->acct.cache, parent);
        struct cache_msg *msg =
            pn && pn->kind == CACHE_MBOX ? cache_msg_by_name((struct cache_mbox *)pn, name) : NULL;
        uint64_t msg_id = msg ? msg->node.id : 0;
        cache_unlock(fs->acct.cache);
        int r = account_rename(&fs->acct, parent, name, newparent, newname,
                               (flags & RENAME_NOREPLACE) != 0);
        /* The kernel now believes the message sits at newname; it sits under
         * its own name (and new UID) in the target folder, as the same inode.
         * The typed name keeps finding it for a while (GNU mv stats it after
         * the rename, and the kernel's entry may run out before it does),
         * then goes. The alias is in place before the reply. */
        if (r == 0 && msg_id)
                alias_add(fs->alias, newparent, newname, msg_id, ALIAS_TTL_MS);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
        if (r == 0 && msg_id)
                inval_entry_later(fs->inval, newparent, newname, 1000);
}

static void ops_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        (void)mode;
        if (ops_refuse_name(req, name) || ops_refuse_ro(req) || ops_search_refuse(req, parent))
                return;
        if (parts_fs_refuse(req, 0, parent, name))
                return;
        if (ops_refuse_name(req, name) || ops_refuse_ro(req))
                return;
        bool local = scratch_name(name);
        cache_lock(fs->acct.cache);
        struct cache_node *pn = cache_node_get(fs->acct.cache, parent);
        int err = 0;
        if (!pn || pn->kind != CACHE_MBOX)
                err = pn ? ENOTDIR : ENOENT;
        else if (!local && !cache_mbox_selectable((struct cache_mbox *)pn))
                err = EPERM; /* the root and \Noselect folders hold no messages */
        else if (cache_msg_by_name((struct cache_mbox *)pn, name) ||
                 cache_mbox_child((struct cache_mbox *)pn, name))
                err = EEXIST;
        uint64_t id = err ? 0 : cache_id_alloc(fs->acct.cache);
        cache_unlock(fs->acct.cache);
        if (!err) {
                int r = staging_create(fs->staging, id, parent, name);
                /* A scratch name is a local file: never APPENDed. */
                if (r == 0 && local)
                        r = staging_set_local(fs->staging, id, true);
                if (r == 0)
                        r = staging_open(fs->staging, id);
                err = -r;
        }
        if (err) {
                fuse_reply_err(req, err);
                return;
        }
        struct staged_info sd;
        staging_get(fs->staging, id, &sd);
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        fs_stat_staged(fs, &sd, &e.attr);
        e.ino = id;
        fi->fh = 0;
        fi->direct_io = 1;
        fuse_reply_create(req, &e, fi);
}

static void ops_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
        if (parts_fs_refuse(req, ino, 0, NULL))
                return;
        struct fs *fs = fs_of(req);
        struct stat st;
        (void)fi;
        if (ops_refuse_ro(req) || ops_search_getattr(req, ino))
                return;
        struct staged_info sd;
        if (staging_get(fs->staging, ino, &sd)) {
                int r = 0;
                if (to_set & FUSE_SET_ATTR_SIZE)
                        r = staging_truncate(fs->staging, ino, attr->st_size);
                /* The mtime given before close becomes the INTERNALDATE
                 * (cp -p, touch -d); mode and owner have no IMAP meaning and
                 * are accepted so that cp -p does not fail. */
                if (r == 0 && (to_set & FUSE_SET_ATTR_MTIME))
                        r = staging_set_mtime(fs->staging, ino, attr->st_mtime);
                if (r == 0 && (to_set & FUSE_SET_ATTR_MTIME_NOW))
                        r = staging_set_mtime(fs->staging, ino, time(NULL));
                if (r < 0 || !staging_get(fs->staging, ino, &sd)) {
                        fuse_reply_err(req, r < 0 ? -r : ENOENT);
                        return;
                }
                fs_stat_staged(fs, &sd, &st);
                fuse_reply_attr(req, &st, 0);
                return;
        }
        bool changing;
        if (!fs_stat_ino(fs, ino, &st, &changing)) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
                fuse_reply_err(req, EPERM);
                return;
        }
        if (to_set & FUSE_SET_ATTR_SIZE) {
                fuse_reply_err(req, S_ISREG(st.st_mode) ? EACCES : EISDIR);
                return;
        }
        /* Times: accepted and ignored, so that touch, cp -p and rsync work;
         * a message's date is its INTERNALDATE, which IMAP can't change. */
        fuse_reply_attr(req, &st, fs->entry_timeout);
}

static void ops_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
        if (parts_fs_refuse(req, 0, p, n))
                return;
        (void)p, (void)m, (void)d;
        if (!ops_refuse_name(req, n) && !ops_refuse_ro(req))
                fuse_reply_err(req, EPERM);
}

static void ops_symlink(fuse_req_t req, const char *link, fuse_ino_t p, const char *n)
{
        if (parts_fs_refuse(req, 0, p, n))
                return;
        (void)link, (void)p;
        if (!ops_refuse_name(req, n) && !ops_refuse_ro(req))
                fuse_reply_err(req, EPERM);
}

static void ops_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t np, const char *nn)
{
        if (parts_fs_refuse(req, ino, np, nn))
                return;
        (void)ino, (void)np;
        if (!ops_refuse_name(req, nn) && !ops_refuse_ro(req))
                fuse_reply_err(req, EPERM);
}

void ops_write_register(struct fuse_lowlevel_ops *ops)
{
        ops->mkdir = ops_mkdir;
        ops->rmdir = ops_rmdir;
        ops->unlink = ops_unlink;
        ops->rename = ops_rename;
        ops->create = ops_create;
        ops->setattr = ops_setattr;
        ops->mknod = ops_mknod;
        ops->symlink = ops_symlink;
        ops->link = ops_link;
}
