/* The kernel side of FOLDER/.parts/ (issue 8): the hooks the ops_*.c files
 * call first, answering for the virtual nodes of cache/parts.c. Each hook
 * returns true when it replied (the node or name was ours). */
#ifndef IMAPFS_FS_OPS_PARTS_H
#define IMAPFS_FS_OPS_PARTS_H

#include "fs/fs.h"

/* The name found by lookup in every folder that holds messages, never listed. */
#define PARTS_DIR_NAME ".parts"

bool parts_fs_owns(struct fs *fs, fuse_ino_t ino);
bool parts_fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
bool parts_fs_getattr(fuse_req_t req, fuse_ino_t ino);
bool parts_fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
bool parts_fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi, bool plus);
bool parts_fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
bool parts_fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
bool parts_fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
bool parts_fs_release(fuse_req_t req, fuse_ino_t ino);
bool parts_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
bool parts_fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
/* Any change to a node of ours, or in a directory of ours, or to the name
 * ".parts" itself: EROFS. ino or parent may be 0 (not given). */
bool parts_fs_refuse(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name);

/* Frees the table at unmount. */
void parts_fs_destroy(void);

#endif
