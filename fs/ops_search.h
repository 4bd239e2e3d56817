/* The kernel side of the .search virtual directories (issue #9): hooks that
 * the ops_*.c files call at the top of an operation. Each returns true when
 * it has answered the request (the node was a search node, or the request
 * was refused), false when the caller goes on as usual. */
#ifndef IMAPFS_FS_OPS_SEARCH_H
#define IMAPFS_FS_OPS_SEARCH_H

#include "fs/fs.h"

/* lookup: ".search" in a folder or the mount, and every name inside. */
bool ops_search_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
/* getattr (also setattr: a search directory's attributes can't change). */
bool ops_search_getattr(fuse_req_t req, fuse_ino_t ino);
bool ops_search_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
bool ops_search_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi, bool plus);
bool ops_search_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Creating anything in a search directory (mkdir, create, mknod, symlink,
 * link, rmdir, a rename's target): EPERM. */
bool ops_search_refuse(fuse_req_t req, fuse_ino_t parent);
/* unlink / rename of an entry of a search directory: *parent becomes the
 * message's own folder, so the operation acts on the message as there. */
bool ops_search_redirect(fuse_req_t req, fuse_ino_t *parent, const char *name);
/* xattrs of a search directory: none, and none can be set. name NULL: list. */
bool ops_search_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size, bool set);

/* A name left folder parent (live sync; cache lock held): forget it in the
 * search directories that show that folder's matches too. */
void ops_search_observe(struct fs *fs, uint64_t parent, const char *name);

#endif
