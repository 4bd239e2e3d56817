/* Everything that would change the mailbox: refused with EROFS until the
 * write path exists, so that no tool believes it changed mail. */
#include <errno.h>

#include "fs/fs.h"

static void ops_erofs_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{
        (void)p, (void)n, (void)m;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
        (void)p, (void)n, (void)m, (void)d;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m,
                             struct fuse_file_info *fi)
{
        (void)p, (void)n, (void)m, (void)fi;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_unlink(fuse_req_t req, fuse_ino_t p, const char *n)
{
        (void)p, (void)n;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np,
                             const char *nn, unsigned int flags)
{
        (void)p, (void)n, (void)np, (void)nn, (void)flags;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                              struct fuse_file_info *fi)
{
        (void)ino, (void)attr, (void)to_set, (void)fi;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
        (void)ino, (void)buf, (void)size, (void)off, (void)fi;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                               size_t size, int flags)
{
        (void)ino, (void)name, (void)value, (void)size, (void)flags;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        (void)ino, (void)name;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_symlink(fuse_req_t req, const char *link, fuse_ino_t p, const char *n)
{
        (void)link, (void)p, (void)n;
        fuse_reply_err(req, EROFS);
}

static void ops_erofs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t np, const char *nn)
{
        (void)ino, (void)np, (void)nn;
        fuse_reply_err(req, EROFS);
}

void ops_misc_register(struct fuse_lowlevel_ops *ops)
{
        ops->mkdir = ops_erofs_mkdir;
        ops->mknod = ops_erofs_mknod;
        ops->create = ops_erofs_create;
        ops->unlink = ops_erofs_unlink;
        ops->rmdir = ops_erofs_unlink;
        ops->rename = ops_erofs_rename;
        ops->setattr = ops_erofs_setattr;
        ops->write = ops_erofs_write;
        ops->setxattr = ops_erofs_setxattr;
        ops->removexattr = ops_erofs_removexattr;
        ops->symlink = ops_erofs_symlink;
        ops->link = ops_erofs_link;
}
