/* The persistent cache of one account: mailbox listings (metadata) and message content blocks,
 * kept on disk so that a remount does not download again what it already has.
 *
 * No network, no FUSE: the caller decides what to store and when; this file only keeps bytes
 * safe. Every file is checksummed and length-checked, and a damaged file is removed and
 * reported (-EBADMSG) instead of being served, so that a crash, a power cut or a scribbled cache
 * costs a refetch and never shows wrong mail.
 *
 * Layout of the directory (one per account, e.g. $XDG_CACHE_HOME/imapfs/alice@host:993):
 *
 *   DIR/lock                                   0600, flock()ed while open; holds our pid
 *   DIR/listings/<H>.lst                       one per mailbox
 *   DIR/blocks/<H>/<UIDVALIDITY>-<UID>-<INDEX>.blk
 *
 * where <H> is disk_name_hash() of the raw mailbox name as 16 lowercase hex digits, so that any
 * mailbox bytes give a safe file name. Hash collisions are harmless: each file also holds the
 * full mailbox name, which is compared on every load (a mismatch reads as "not cached").
 * Directories are 0700, files 0600, whatever the umask. Temporary files are
 * "<final name>.tmp.<N>" beside their final name and are removed by disk_open().
 *
 * Listing file (all integers little-endian):
 *   0   magic "IMAPFSLS"          8
 *   8   version (1)               u32
 *   12  mailbox name length L     u32   (<= DISK_NAME_MAX)
 *   16  message count N           u32
 *   20  UIDVALIDITY               u32
 *   24  UIDNEXT                   u32
 *   28  reserved, 0               u32
 *   32  HIGHESTMODSEQ             u64
 *   40  mailbox name, L bytes, then a NUL
 *   ... N records: UID u32 (not 0), flags length F u16, name length M u16, size u64
 *       (<= INT64_MAX), INTERNALDATE i64, flags (F bytes + NUL), name (M bytes + NUL)
 *   end checksum u64 = disk_hash64(every byte before it, seed 0)
 *
 *   On disk a listing costs 49 + strlen(mailbox) bytes plus, per message,
 *   26 + strlen(flags) + strlen(name) bytes (71 bytes for a 40-byte name and "\Seen").
 *   Loading it briefly needs the file's size in memory; nothing of it stays here.
 *
 * Block file:
 *   0   magic "IMAPFSBK"          8
 *   8   version (1)               u32
 *   12  mailbox name length L     u32
 *   16  UIDVALIDITY               u32
 *   20  UID                       u32
 *   24  block index               u64
 *   32  data length D             u64   (<= DISK_BLOCK_MAX)
 *   40  mailbox name (L bytes), data (D bytes)
 *   end checksum u64 = disk_hash64(data, D, disk_hash64(bytes 0 .. 40+L, 0))
 *
 *   A block costs 48 + strlen(mailbox) bytes on disk beyond its data (plus the file system's
 *   rounding). In memory the index costs one 56-byte entry per block (64 bytes as malloc
 *   chunks) plus 8 to 16 bytes of hash buckets: at most 80 bytes per block, about 1.3 MB for a
 *   1 GiB store of 64 KiB blocks.
 *
 * Thread-safe: one mutex guards the index and every rename/unlink, so the index and the
 * directory always agree; file reads, writes and fsyncs run outside it. */
#ifndef IMAPFS_CACHE_DISK_H
#define IMAPFS_CACHE_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DISK_BLOCK_MAX (1024u * 1024)    /* bytes of data in one block */
#define DISK_NAME_MAX 65535u             /* bytes of a mailbox name */
#define DISK_STR_MAX 65535u              /* bytes of one message's flags or name */
#define DISK_LISTING_MAX (1024ull << 20) /* bytes of one listing file */
#define DISK_LISTING_HEADER 40u          /* fixed part of a listing file before the name */
#define DISK_LISTING_RECORD 24u          /* fixed part of one message record */
#define DISK_BLOCK_HEADER 40u            /* fixed part of a block file before the name */

struct disk;

/* One message of a listing. On load the strings point into a buffer that lives only during the
 * callback: copy what you keep. On save NULL strings are stored as "". */
struct disk_msg {
        uint32_t uid;         /* never 0 */
        uint64_t size;        /* RFC822.SIZE, <= INT64_MAX */
        int64_t internaldate; /* seconds since the epoch */
        const char *flags;    /* e.g. "\\Seen \\Answered $Label1", at most DISK_STR_MAX bytes */
        const char *name;     /* the file name shown, at most DISK_STR_MAX bytes */
};

struct disk_mbox_meta {
        uint32_t uidvalidity, uidnext;
        uint64_t highestmodseq;
};

/* Opens the cache directory of one account, creating it (and its missing parents) with mode
 * 0700. Refuses (-EACCES) a directory that is not ours or that grants any group/other
 * permission, and a symlink in place of it (-ENOTDIR). Takes an exclusive non-blocking flock on
 * DIR/lock: -EBUSY if another open file description holds it (a second mount of the account).
 * Removes the temporary files a crash left behind, indexes the blocks present (their mtime is
 * their recency) and evicts the least recently used ones beyond max_bytes (which bounds the
 * bytes of block files, headers included; 0 keeps no content).
 * On failure returns -errno, leaves *out alone and puts a one-line reason in err (if errlen > 0).
 * The lock lives as long as the returned handle, and survives fork() into a daemon child. */
int disk_open(const char *dir, uint64_t max_bytes, struct disk **out, char *err, size_t errlen);

/* Releases the lock and frees everything. Must not race with other calls on d. NULL is fine. */
void disk_close(struct disk *d);

/* Replaces the stored listing of a mailbox (raw IMAP name, any bytes but NUL) with meta and the
 * n messages. Atomic and durable: a 0600 temp file is written and fsynced, renamed over the old
 * one, and the directory is fsynced, so a crash or power cut leaves the old or the new listing.
 * 0, -EINVAL (uid 0, size > INT64_MAX, NULL argument), -ENAMETOOLONG (a string over its
 * maximum), -EFBIG (file over DISK_LISTING_MAX) or -errno of the I/O. */
int disk_listing_save(struct disk *d, const char *mailbox, const struct disk_mbox_meta *meta,
                      const struct disk_msg *msgs, size_t n);

/* Reads a mailbox's listing: fills *meta (if not NULL), then calls fn (if not NULL) once per
 * message in the order saved. The whole file is verified before the first call, so fn never
 * sees part of a damaged listing. 0; -ENOENT if none is stored (or the file holds another
 * mailbox's listing, after a hash collision); -EBADMSG if the file is damaged (bad
 * magic/version, wrong length, checksum mismatch, counts that don't add up, strings with a NUL
 * or running past the end, uid 0, absurd sizes) — the file is then removed so that it gets
 * rebuilt; or -errno of the I/O. Never reads beyond the bytes it read from the file. fn runs
 * with no lock held and may call into d. */
int disk_listing_load(struct disk *d, const char *mailbox, struct disk_mbox_meta *meta,
                      void (*fn)(void *ctx, const struct disk_msg *m), void *ctx);

/* Removes a mailbox's listing (not its blocks: see disk_blocks_drop). A file that holds another
 * mailbox's listing (hash collision) is left alone. 0, -ENOENT if there was none, or -errno. */
int disk_listing_drop(struct disk *d, const char *mailbox);

/* Stores one block of message content: the bytes [index * B, index * B + len) of message uid
 * of the mailbox at uidvalidity, for the caller's block size B (only the last block of a
 * message may be shorter). Content is immutable under IMAP, so a put replaces an existing
 * block only with the same bytes. Written to a temp file and renamed, not fsynced (a block lost
 * in a crash is fetched again; a half-written one fails its checksum). Then evicts the least
 * recently used blocks until the store is within max_bytes. 0, -EINVAL (len > DISK_BLOCK_MAX,
 * NULL argument), -ENAMETOOLONG, -EFBIG (the block alone exceeds max_bytes; not stored) or
 * -errno. */
int disk_block_put(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                   uint64_t index, const void *data, size_t len);

/* Copies a stored block into buf and marks it most recently used (in memory and in the file's
 * mtime, so that the order survives a remount). Returns its length; -ENOENT if not stored (or
 * stored for another mailbox after a hash collision); -ENOBUFS if it is longer than cap;
 * -EBADMSG if the file is damaged (removed, so the caller refetches); or -errno. On any error
 * buf holds no bytes of the file. */
ssize_t disk_block_get(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index, void *buf, size_t cap);

/* Removes every block of a mailbox whose UIDVALIDITY is not keep_uidvalidity; 0 removes all of
 * them (after a UIDVALIDITY change, or when the mailbox is deleted). Blocks of a mailbox whose
 * name hashes alike go too (a refetch, never wrong data). 0 or -errno. */
int disk_blocks_drop(struct disk *d, const char *mailbox, uint32_t keep_uidvalidity);

/* Bytes of block files now stored (headers included), the quantity max_bytes bounds. */
uint64_t disk_bytes(struct disk *d);

/* Number of blocks now stored. */
/* Whether a block is stored, from the in-memory index (no I/O; a hash
 * collision of mailbox names may say yes wrongly, disk_block_get then says
 * -ENOENT). */
bool disk_block_has(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                    uint64_t index);
size_t disk_block_count(struct disk *d);

/* The 64-bit hash behind the file names: disk_hash64(mailbox, strlen(mailbox), 0). */
uint64_t disk_name_hash(const char *mailbox);

/* XXH64 (the published xxHash 64-bit algorithm) of n bytes with a seed: the files' checksum. */
uint64_t disk_hash64(const void *p, size_t n, uint64_t seed);

#endif
