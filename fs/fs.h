/* The FUSE daemon's shared state and the operation tables' parts. */
#ifndef IMAPFS_FS_FS_H
#define IMAPFS_FS_FS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include "cache/account.h"
#include "fs/alias.h"
#include "fs/inval.h"
#include "cache/staging.h"
#include "cache/sync.h"

struct fs {
        struct account acct;
        struct fuse_session *se;
        struct staging *staging; /* files being written, until their APPEND */
        struct inval *inval;     /* kernel cache invalidations after replies */
        struct sync *sync;       /* live sync: IDLE on the folder in use, polls */
        struct alias *alias;     /* typed names of messages just moved */
        bool read_only;          /* -o ro: every change is EROFS */
        char tmpdir[4096];       /* for staged files that outgrow memory */
        int poll_ms;             /* -o poll */
        uid_t uid;
        gid_t gid;
        time_t mount_time;
        double entry_timeout; /* seconds the kernel may trust a name or attribute */
};

static inline struct fs *fs_of(fuse_req_t req)
{
        return fuse_req_userdata(req);
}

/* Fills st from a cache node (cache lock held). */
void fs_stat_node(const struct fs *fs, const struct cache_node *n, struct stat *st);
/* Fills st for inode ino (a file being written or a cache node); false if
 * there is none. *volatile_attrs: the attributes change (don't cache them). */
bool fs_stat_ino(struct fs *fs, fuse_ino_t ino, struct stat *st, bool *volatile_attrs);
/* Fills st for a file being written. */
void fs_stat_staged(const struct fs *fs, const struct staged_info *sd, struct stat *st);

/* Each ops_*.c file fills in its part of the table. */
void ops_dir_register(struct fuse_lowlevel_ops *ops);
void ops_file_register(struct fuse_lowlevel_ops *ops);
void ops_xattr_register(struct fuse_lowlevel_ops *ops);
void ops_write_register(struct fuse_lowlevel_ops *ops);

/* Errors from the account layer as the errno a FUSE caller should see. */
int fs_errno(int r);

#endif
