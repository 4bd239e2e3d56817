/* Files being written into a folder (cp, cat >, a file manager's drop):
 * their bytes stay here while the file is open, in memory up to a bound and
 * then in an unlinked 0600 temp file in a 0700 directory, until the last
 * close APPENDs them. They have inode numbers from the cache's id space so
 * they never collide with messages or folders. */
#ifndef IMAPFS_CACHE_STAGING_H
#define IMAPFS_CACHE_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct staging;

/* What the FUSE layer needs to show a staged file (copied out). */
struct staged_info {
        uint64_t id;
        uint64_t parent;
        uint64_t size;
        time_t mtime;
        bool local;        /* a scratch file: never APPENDed by a close */
        uint64_t replaces; /* written over message id (open with O_TRUNC); 0: new */
        bool clean;        /* a replacement that still holds the message unchanged */
};

/* mem_max: bytes a file keeps in memory before it moves to a temp file in
 * tmpdir (created 0700 if missing). */
struct staging *staging_new(size_t mem_max, const char *tmpdir);
void staging_free(struct staging *st);

/* A new empty file; -EEXIST if parent already has a staged file of that name. */
int staging_create(struct staging *st, uint64_t id, uint64_t parent, const char *name);
bool staging_get(struct staging *st, uint64_t id, struct staged_info *out);
bool staging_lookup(struct staging *st, uint64_t parent, const char *name, struct staged_info *out);
/* Calls fn for each staged file in parent (for readdir). */
void staging_list(struct staging *st, uint64_t parent,
                  void (*fn)(void *ctx, const char *name, const struct staged_info *info),
                  void *ctx);

/* Marks a file local (a scratch file, fs/scratch.h): kept for the life of
 * the mount, never APPENDed by a close. */
int staging_set_local(struct staging *st, uint64_t id, bool local);
/* Marks a file as the new content of message msg_id (its id is then the
 * message's own), to replace it at close. */
int staging_set_replaces(struct staging *st, uint64_t id, uint64_t msg_id);
/* The file holds its message's bytes as they are: until a write, truncation
 * or a new mtime or flags, closing it changes nothing (staged_info.clean). */
int staging_mark_clean(struct staging *st, uint64_t id);
/* Gives the file a new name (rename between local names); a staged file
 * already there is dropped, as POSIX rename replaces its target. */
int staging_rename(struct staging *st, uint64_t id, uint64_t parent, const char *name);

/* Open handles: the last close appends. */
int staging_open(struct staging *st, uint64_t id);
/* How many handles are open. */
int staging_opens(struct staging *st, uint64_t id);
/* Returns the number of handles still open after this one closes. */
int staging_close(struct staging *st, uint64_t id);

int staging_write(struct staging *st, uint64_t id, const char *buf, size_t len, off_t off);
ssize_t staging_read(struct staging *st, uint64_t id, char *buf, size_t len, off_t off);
int staging_truncate(struct staging *st, uint64_t id, off_t size);
int staging_set_mtime(struct staging *st, uint64_t id, time_t mtime);
/* user.imap.flags and user.imap.internaldate set before close. */
int staging_set_flags(struct staging *st, uint64_t id, const char *flags, size_t len);
int staging_get_flags(struct staging *st, uint64_t id, char *out, size_t cap);
int staging_set_date(struct staging *st, uint64_t id, time_t date);

/* The message to append: the bytes with bare LF turned into CRLF (malloc'd
 * in *data), the flags (malloc'd or NULL) and the date (0: none set). */
int staging_take(struct staging *st, uint64_t id, char **data, size_t *len, char **flags,
                 time_t *date);
/* Forgets the file; *parent and name (malloc'd) say where it was, for the
 * kernel invalidation. */
int staging_remove(struct staging *st, uint64_t id, uint64_t *parent, char **name);

#endif
