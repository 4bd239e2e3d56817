/* Which new files in a folder are local scratch files and which become
 * messages (../shared/DECISIONS.md, "Which new files become messages").
 * Editors, rsync, sed and office suites write temp, swap, backup and lock
 * files next to the file they work on; those names stay local to the mount
 * (never APPENDed, never seen by other mail clients). Every other new file
 * must look like a message to be APPENDed. Pure functions, no state. */
#ifndef IMAPFS_FS_SCRATCH_H
#define IMAPFS_FS_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if name (one path component) is a scratch name: dot files, `*~`,
 * `#*#`, `*.swp`, `*.swx`, `4913`, `.~lock.*#`, GNU sed's `sedXXXXXX`. */
bool scratch_name(const char *name);

/* True if the first len bytes of a file start like a message: a header
 * field ("Name:" with a printable-ASCII name) or an mbox "From " line. */
bool scratch_looks_like_message(const char *buf, size_t len);

/* Stores staged file ino (fs/ops_file.c) as a message of folder parent,
 * after checking that it looks like one (-EINVAL if not). With replaces
 * (a message's id), it becomes that message's new content: APPENDed with
 * the old message's flags and INTERNALDATE (unless set on the file), then
 * the old one is removed as rm would; if the APPEND fails nothing changes.
 * With dedup, a message the folder already holds with the same Message-ID
 * and bytes is taken instead of a second copy. *msg_id (may be NULL) gets
 * the id of the message that now holds the bytes (0: not known yet). The
 * staged file itself stays; the caller removes it. */
struct fs;
int fs_staged_store(struct fs *fs, uint64_t ino, uint64_t parent, uint64_t replaces, bool dedup,
                    uint64_t *msg_id);

#endif
