/* Telling the kernel to forget what it cached: a directory entry that no
 * longer means what it did (a message moved away under a name the user typed,
 * a file that became a message on close). The kernel holds directory locks
 * while an operation runs, so these notifications can't be sent from inside
 * the operation; a thread sends them right after the reply. Live sync will
 * feed the same queue. */
#ifndef IMAPFS_FS_INVAL_H
#define IMAPFS_FS_INVAL_H

#include <stdint.h>
#include <time.h>

struct fuse_session;
struct inval;

struct inval *inval_new(void);
/* The session notifications go to (set once it exists). */
void inval_set_session(struct inval *q, struct fuse_session *se);
/* Stops the thread after sending what is queued. */
void inval_free(struct inval *q);

/* Forget the entry name in directory parent. */
void inval_entry(struct inval *q, uint64_t parent, const char *name);
/* The same after delay_ms: for a name that may be used once more right
 * away (GNU mv stats the target of each rename) but must not linger. Items
 * are sent in order, so give every delayed one the same delay. */
void inval_entry_later(struct inval *q, uint64_t parent, const char *name, int delay_ms);
/* Forget the attributes and listing of inode ino. */
void inval_inode(struct inval *q, uint64_t ino);

/* The content of directory dir changed (a name came or went, a message's
 * flags changed): its mtime and ctime become now (later than any time it
 * showed before), and the kernel forgets its attributes so that the next
 * stat shows them (notmuch, make, backup tools and file managers that poll
 * compare a folder's mtime). May be called with the cache lock held. */
void inval_dir_changed(struct inval *q, uint64_t dir);
/* dir's content change time, or *ts unchanged if it never changed. */
void inval_dir_mtime(struct inval *q, uint64_t dir, struct timespec *ts);

#endif
