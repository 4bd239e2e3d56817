/* Extended attributes: IMAP facts about a message or a folder, one table of
 * names per kind of node. user.imap.flags can be set: on a message it is a
 * UID STORE, on a file being written it is kept for its APPEND. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/account_write.h"
#include "fs/fs.h"
#include "fs/ops_parts.h"
#include "fs/ops_search.h"
#include "imap/date.h"

#define XATTR_VALUE_MAX 4096

/* Writes the value into out (cap bytes); returns its length, or -1 when the
 * attribute has no value for this node (ENODATA). Cache lock held. */
typedef int (*xattr_get_fn)(const void *node, char *out, size_t cap);

static int xattr_msg_uid(const void *n, char *out, size_t cap)
{
        return snprintf(out, cap, "%u", ((const struct cache_msg *)n)->uid);
}

static int xattr_msg_flags(const void *n, char *out, size_t cap)
{
        return snprintf(out, cap, "%s", ((const struct cache_msg *)n)->flags);
}

static int xattr_msg_date(const void *n, char *out, size_t cap)
{
        imap_date_format_internal(((const struct cache_msg *)n)->internaldate, out, cap);
        return (int)strlen(out);
}

static int xattr_msg_size(const void *n, char *out, size_t cap)
{
        return snprintf(out, cap, "%llu", (unsigned long long)((const struct cache_msg *)n)->size);
}

static int xattr_mbox_name(const void *n, char *out, size_t cap)
{
        const struct cache_mbox *m = n;
        return m->raw ? snprintf(out, cap, "%s", m->raw) : -1;
}

static int xattr_mbox_uidvalidity(const void *n, char *out, size_t cap)
{
        const struct cache_mbox *m = n;
        return m->state != CACHE_LISTING_NONE ? snprintf(out, cap, "%u", m->uidvalidity) : -1;
}

static int xattr_mbox_delim(const void *n, char *out, size_t cap)
{
        const struct cache_mbox *m = n;
        if (!m->raw)
                return -1;
        return m->delim ? snprintf(out, cap, "%c", m->delim) : 0;
}

struct xattr_def {
        const char *name;
        xattr_get_fn get;
};

static const struct xattr_def xattr_msg[] = {
    {"user.imap.uid", xattr_msg_uid},
    {"user.imap.flags", xattr_msg_flags},
    {"user.imap.internaldate", xattr_msg_date},
    {"user.imap.size", xattr_msg_size},
    {NULL, NULL},
};

static const struct xattr_def xattr_mbox[] = {
    {"user.imap.mailbox", xattr_mbox_name},
    {"user.imap.uidvalidity", xattr_mbox_uidvalidity},
    {"user.imap.delimiter", xattr_mbox_delim},
    {NULL, NULL},
};

static void ops_reply_value(fuse_req_t req, const char *val, size_t len, size_t size)
{
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (len > size)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, val, len);
}

static void ops_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        struct fs *fs = fs_of(req);
        char val[XATTR_VALUE_MAX];
        int len = -2;
        struct staged_info sd;

        if (ops_search_xattr(req, ino, name, size, false))
                return;
        if (parts_fs_getxattr(req, ino, name, size))
                return;
        if (staging_get(fs->staging, ino, &sd)) {
                len = strcmp(name, "user.imap.flags") == 0
                          ? staging_get_flags(fs->staging, ino, val, sizeof(val))
                          : -1;
                if (len < 0)
                        fuse_reply_err(req, strncmp(name, "user.", 5) ? ENOTSUP : ENODATA);
                else
                        ops_reply_value(req, val, (size_t)len, size);
                return;
        }

        /* Only user.* attributes exist here. "Not supported" (rather than "no
         * such attribute") for security.* and system.* lets tools like ls
         * remember per file system that there are no labels or ACLs, instead of
         * asking again for every file. */
        if (strncmp(name, "user.", 5) != 0) {
                fuse_reply_err(req, ENOTSUP);
                return;
        }
        /* uidvalidity is only known once the folder was selected. */
        if (strcmp(name, "user.imap.uidvalidity") == 0)
                account_refresh_listing(&fs->acct, ino, -1);
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, ino);
        if (n) {
                const struct xattr_def *t = n->kind == CACHE_MSG ? xattr_msg : xattr_mbox;
                for (; t->name; t++)
                        if (strcmp(t->name, name) == 0) {
                                len = t->get(n, val, sizeof(val));
                                break;
                        }
        }
        cache_unlock(fs->acct.cache);
        if (!n)
                fuse_reply_err(req, ENOENT);
        else if (len < 0)
                fuse_reply_err(req, ENODATA);
        else if ((size_t)len >= sizeof(val))
                fuse_reply_err(req, E2BIG); /* longer than we can hold: never cut silently */
        else
                ops_reply_value(req, val, (size_t)len, size);
}

/* uidvalidity has no value until the folder was selected, but a folder that
 * can hold messages will have one: list it so getfattr -d asks for it. */
static bool ops_xattr_will_have(const struct cache_node *n, const char *name)
{
        const struct cache_mbox *m = (const struct cache_mbox *)n;
        return n->kind == CACHE_MBOX && strcmp(name, "user.imap.uidvalidity") == 0 &&
               cache_mbox_selectable(m);
}

static void ops_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        struct fs *fs = fs_of(req);
        char list[512];
        size_t len = 0;
        char val[XATTR_VALUE_MAX];
        struct staged_info sd;

        if (ops_search_xattr(req, ino, NULL, size, false))
                return;
        if (parts_fs_listxattr(req, ino, size))
                return;
        if (staging_get(fs->staging, ino, &sd)) {
                static const char names[] = "user.imap.flags";
                ops_reply_value(req, names, sizeof(names), size);
                return;
        }

        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, ino);
        if (n) {
                const struct xattr_def *t = n->kind == CACHE_MSG ? xattr_msg : xattr_mbox;
                for (; t->name; t++) {
                        size_t nl = strlen(t->name) + 1;
                        if (t->get(n, val, sizeof(val)) < 0 && !ops_xattr_will_have(n, t->name))
                                continue; /* no value, and none to come */
                        if (len + nl <= sizeof(list)) {
                                memcpy(list + len, t->name, nl);
                                len += nl;
                        }
                }
        }
        cache_unlock(fs->acct.cache);
        if (!n)
                fuse_reply_err(req, ENOENT);
        else
                ops_reply_value(req, list, len, size);
}

/* Setting on a file being written: flags and the date are kept for the
 * APPEND; the other user.imap.* facts (uid, size) are the server's to give
 * and are ignored, so that cp -a from one folder to another works. */
static int ops_setxattr_staged(struct fs *fs, fuse_ino_t ino, const char *name, const char *value,
                               size_t size)
{
        if (strcmp(name, "user.imap.flags") == 0) {
                char *flags = account_flags_normalise(value, size);
                if (!flags)
                        return -ENOMEM;
                int r = account_flags_check(flags, strlen(flags));
                if (r == 0)
                        r = staging_set_flags(fs->staging, ino, flags, strlen(flags));
                free(flags);
                return r;
        }
        if (strcmp(name, "user.imap.internaldate") == 0) {
                char buf[64];
                time_t t;
                if (size >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, value, size);
                buf[size] = '\0';
                if (!imap_date_parse_internal(buf, &t))
                        return -EINVAL;
                return staging_set_date(fs->staging, ino, t);
        }
        return strncmp(name, "user.imap.", 10) == 0 ? 0 : -ENOTSUP;
}

static void ops_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                         size_t size, int flags)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        int r;
        (void)flags;
        if (parts_fs_refuse(req, ino, 0, NULL))
                return;
        if (fs->read_only) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (ops_search_xattr(req, ino, name, size, true))
                return;
        if (staging_get(fs->staging, ino, &sd))
                r = ops_setxattr_staged(fs, ino, name, value, size);
        else if (strcmp(name, "user.imap.flags") == 0)
                r = account_set_flags(&fs->acct, ino, value, size);
        else
                r = strncmp(name, "user.imap.", 10) == 0 ? -EPERM : -ENOTSUP;
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

static void ops_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        int r;
        if (parts_fs_refuse(req, ino, 0, NULL))
                return;
        if (fs->read_only) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (strcmp(name, "user.imap.flags") != 0)
                r = strncmp(name, "user.imap.", 10) == 0 ? -EPERM : -ENOTSUP;
        else if (staging_get(fs->staging, ino, &sd))
                r = staging_set_flags(fs->staging, ino, "", 0);
        else
                r = account_set_flags(&fs->acct, ino, "", 0);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

void ops_xattr_register(struct fuse_lowlevel_ops *ops)
{
        ops->getxattr = ops_getxattr;
        ops->listxattr = ops_listxattr;
        ops->setxattr = ops_setxattr;
        ops->removexattr = ops_removexattr;
}
