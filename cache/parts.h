/* Message parts as files (issue 8): the virtual tree under FOLDER/.parts/,
 * the message structures it is made from (one UID FETCH of BODYSTRUCTURE for
 * a folder, BINARY.SIZE grouped by the messages' shapes) and the parts'
 * bytes, read through the block cache and the persistent store keyed by
 * section and form. No FUSE types: fs/ops_parts.c turns these into replies.
 *
 * Nodes have inode numbers from cache_id_alloc(), so they never collide with
 * folders, messages or other virtual nodes; a node keeps its number for the
 * life of the mount. A node whose message is gone from the folder's listing
 * is ENOENT. Thread-safe (an own lock, taken before the cache lock, never
 * while holding it). */
#ifndef IMAPFS_CACHE_PARTS_H
#define IMAPFS_CACHE_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct account;
struct parts;

/* Largest encoded part decoded at lookup (without BINARY) to know its size
 * exactly; a bigger one shows its encoded size as an upper bound and is read
 * with direct I/O (docs: README "Message parts"). */
#define PARTS_DECODE_AT_LOOKUP (1024u * 1024)

struct parts_attr {
        uint64_t id;
        bool dir;
        uint64_t size;
        bool upper_bound; /* size is the encoded size, the bytes may be fewer: direct I/O */
        bool size_known;  /* false: a lookup (parts_getattr) will fetch to know it */
        time_t mtime;
};

struct parts *parts_new(struct account *a);
void parts_free(struct parts *p);

/* True if ino is one of ours. */
bool parts_owns(struct parts *p, uint64_t ino);

/* FOLDER/.parts for folder mbox_id (a folder that holds messages): 0 with
 * *out, -ENOENT. */
int parts_root(struct parts *p, uint64_t mbox_id, struct parts_attr *out);
/* name in directory dir (one of ours); sizes are exact (fetching what it
 * takes) unless upper_bound. -ENOENT, -ENOTDIR, -EIO. */
int parts_lookup(struct parts *p, uint64_t dir, const char *name, struct parts_attr *out);
int parts_getattr(struct parts *p, uint64_t id, struct parts_attr *out);
/* The entries of a directory (without "." and ".."); a->size_known false
 * for a size the caller must not announce (it needs a lookup). */
typedef void (*parts_list_fn)(void *ctx, const char *name, const struct parts_attr *a);
int parts_list(struct parts *p, uint64_t dir, parts_list_fn fn, void *ctx);
/* The parent directory's inode (the folder for FOLDER/.parts). */
uint64_t parts_parent(struct parts *p, uint64_t id);

/* Reads [off, off+len) of a part file; *got < len only at its end. */
int parts_read(struct parts *p, uint64_t id, uint64_t off, size_t len, char *buf, size_t *got);

/* Extended attributes of a node: the value (malloc'd) or -ENODATA; list:
 * fn per name that has a value. */
int parts_xattr_get(struct parts *p, uint64_t id, const char *name, char **value);
int parts_xattr_list(struct parts *p, uint64_t id, void (*fn)(void *ctx, const char *name),
                     void *ctx);

/* Statistics for the log and tests: structure commands sent. */
unsigned long parts_structure_fetches(struct parts *p);

#endif
