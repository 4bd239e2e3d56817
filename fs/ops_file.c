/* Files: open, read, write, flush, release. Message reads become partial
 * FETCHes through the account's block cache; the kernel may keep the pages
 * (keep_cache) because a message's bytes never change under its UID. Files
 * being written (staged) keep their bytes locally; the last close APPENDs
 * them and reports the server's answer as close()'s result. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "cache/account_write.h"
#include "fs/fs.h"
#include "fs/ops_parts.h"
#include "imap/log.h"

static void ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        if (parts_fs_open(req, ino, fi))
                return;
        if (staging_get(fs->staging, ino, &sd)) {
                int r = staging_open(fs->staging, ino);
                if (r == 0 && (fi->flags & O_TRUNC))
                        r = staging_truncate(fs->staging, ino, 0);
                fi->fh = 0; /* staged: found by inode */
                fi->direct_io = 1;
                if (r < 0)
                        fuse_reply_err(req, -r);
                else
                        fuse_reply_open(req, fi);
                return;
        }
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                /* Messages are immutable in IMAP. */
                fuse_reply_err(req, fs->read_only ? EROFS : EACCES);
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
        /* Read-ahead probes how far a scan reads its files (cache/ahead.h). */
        fi->direct_io = f->direct;
        /* Nothing to do at close() of a message: skip the FLUSH round trip
         * (files being written need it, messages don't). */
        fi->noflush = 1;
        fuse_reply_open(req, fi);
}

static void ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct account_file *f = (struct account_file *)(uintptr_t)fi->fh;
        if (!f && parts_fs_read(req, ino, size, off))
                return;
        char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        if (!f) {
                ssize_t n = staging_read(fs->staging, ino, buf, size, off);
                if (n < 0)
                        fuse_reply_err(req, (int)-n);
                else
                        fuse_reply_buf(req, buf, (size_t)n);
                free(buf);
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

static void ops_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (fi->fh) {
                fuse_reply_err(req, EBADF); /* a message opened read-only */
                return;
        }
        /* Bigger than the server takes (APPENDLIMIT): fail now, not at close. */
        uint64_t limit = account_append_limit(&fs->acct);
        int r = limit && (uint64_t)off + size > limit
                    ? -EFBIG
                    : staging_write(fs->staging, ino, buf, size, off);
        if (r < 0)
                fuse_reply_err(req, -r);
        else
                fuse_reply_write(req, size);
}

/* APPENDs a staged file and forgets it; the kernel's entry for its temporary
 * name goes too (after the reply), and the message shows under its own name
 * once the folder is listed again. */
static int ops_staged_commit(struct fs *fs, fuse_ino_t ino)
{
        char *data = NULL, *flags = NULL, *name = NULL;
        size_t len = 0;
        time_t date = 0;
        uint64_t parent = 0;
        struct staged_info sd;
        if (!staging_get(fs->staging, ino, &sd))
                return 0; /* committed by an earlier close */
        int r = sd.size ? staging_take(fs->staging, ino, &data, &len, &flags, &date) : 0;
        if (r == 0 && sd.size)
                r = account_append(&fs->acct, sd.parent, data, len, flags, date);
        free(data);
        free(flags);
        /* Also on failure: the caller hears about it from close(), and
         * nothing half-done remains on the server or here. */
        if (staging_remove(fs->staging, ino, &parent, &name) == 0) {
                inval_entry(fs->inval, parent, name);
                inval_inode(fs->inval, parent);
                free(name);
        }
        return r;
}

static void ops_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        int r = 0;
        /* close(): the server must have the message before close returns 0.
         * FUSE says "a descriptor closed", not "the last one": a shell's
         * redirection closes a dup'd descriptor before writing anything. So a
         * flush commits only a file with bytes in it and one open handle;
         * release commits whatever is left. */
        if (!fi->fh && staging_get(fs->staging, ino, &sd) && sd.size > 0 &&
            staging_opens(fs->staging, ino) == 1)
                r = ops_staged_commit(fs, ino);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

static void ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (!fi->fh && parts_fs_release(req, ino))
                return;
        if (fi->fh) {
                account_file_close((struct account_file *)(uintptr_t)fi->fh);
        } else if (staging_close(fs->staging, ino) <= 0) {
                /* Not committed by a flush (empty, or the kernel skipped the
                 * flush): do it now; the result can only be logged. */
                int r = ops_staged_commit(fs, ino);
                if (r < 0)
                        log_err("a file written to the mount could not be stored: %s",
                                strerror(-r));
        }
        fuse_reply_err(req, 0);
}

void ops_file_register(struct fuse_lowlevel_ops *ops)
{
        ops->open = ops_open;
        ops->read = ops_read;
        ops->release = ops_release;
        ops->write = ops_write;
        ops->flush = ops_flush;
}
