/* Message files: open, read, release. Reads become partial FETCHes through
 * the account's block cache; the kernel may keep the pages (keep_cache)
 * because a message's bytes never change under its UID. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "fs/fs.h"

static void ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                fuse_reply_err(req, EROFS);
                return;
        }
        struct account_file *f;
        int r = account_file_open(&fs->acct, ino, &f);
        if (r < 0) {
                fuse_reply_err(req, fs_errno(r));
                return;
        }
        fi->fh = (uint64_t)(uintptr_t)f;
        fi->keep_cache = 1;
        fuse_reply_open(req, fi);
}

static void ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct account_file *f = (struct account_file *)(uintptr_t)fi->fh;
        (void)ino;
        char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        size_t got = 0;
        int r = account_file_read(&fs->acct, f, (uint64_t)off, size, buf, &got);
        if (r < 0)
                fuse_reply_err(req, fs_errno(r));
        else
                fuse_reply_buf(req, buf, got);
        free(buf);
}

static void ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void)ino;
        account_file_close((struct account_file *)(uintptr_t)fi->fh);
        fuse_reply_err(req, 0);
}

void ops_file_register(struct fuse_lowlevel_ops *ops)
{
        ops->open = ops_open;
        ops->read = ops_read;
        ops->release = ops_release;
}
