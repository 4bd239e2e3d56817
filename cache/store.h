/* The mail store on disk: one LMDB environment per account and naming mode, holding the folder
 * tree, each mailbox's metadata and listing (one record per message) and message content in
 * blocks, with an LRU bound on the content. No network, no FUSE: the caller decides what to
 * store and when.
 *
 * Directory (e.g. $XDG_CACHE_HOME/imapfs/alice@host:993/names), 0700 whatever the umask:
 *   DIR/data.mdb, DIR/lock.mdb      the LMDB environment, both 0600 whatever the umask
 *
 * Named databases (integers in keys big-endian, so that a cursor walks them in order; values
 * little-endian):
 *   info   "version" u32 (STORE_VERSION: another layout is dropped, not misread),
 *          "mbox_seq" u32 (last mailbox number given), "read_seq" u64 (last LRU stamp),
 *          "bytes" u64 (bytes the content blocks take, the quantity max_bytes bounds)
 *   tree   position u32 -> delim u8, attrs u32, raw name (the whole tree, rewritten when it
 *          changes: it is small and changes rarely)
 *   mbox   raw mailbox name (<= STORE_NAME_MAX bytes) -> number u32, UIDVALIDITY u32,
 *          UIDNEXT u32, HIGHESTMODSEQ u64, listed u8 (a listing is stored), records u32 (a
 *          load that walks another number of them reports damage)
 *   msg    mailbox number u32 + UID u32 -> size u64, INTERNALDATE i64, flags length u16, flags,
 *          name (the rest). One record per message: a cursor walks a folder in UID order, and
 *          a save writes only the records that changed.
 *   blk    content key -> the block's bytes
 *   atime  content key -> read stamp u64, bytes counted u32
 *   lru    read stamp u64 -> content key (oldest first: eviction walks from the start)
 *
 * A content key is: a content id, then the part's section and form, then the block index:
 *   STORE_ID_MAILBOX u8, mailbox number u32, UIDVALIDITY u32, UID u32   (the content id today)
 *   section length u8, section bytes ("" = the whole message; "1.2" for a MIME part, #8)
 *   form u8 (STORE_FORM_RAW, or STORE_FORM_DECODED for a decoded part, #8)
 *   block index u32
 * or, for a message whose server-wide content id is known (#10):
 *   STORE_ID_SERVER u8, id length u8, id ("G" + X-GM-MSGID digits, "E" + EMAILID)
 * with the same tail. Which one a block gets is decided by the cid table:
 *   cid    mailbox number u32 + UID u32 -> UIDVALIDITY u32, content id (the rest)
 * so the same message in two folders (Gmail's labels and All Mail) has one copy of its content,
 * and nothing per message needs to be kept in memory to find it. Blocks with a server-wide id
 * are not dropped with a folder (another may show them): they age out by the LRU bound.
 *
 * Writes never wait for the disk in the caller: after store_start() they go to a writer thread
 * that commits everything queued in one write transaction per batch (MDB_NOMETASYNC: data
 * pages are synced at commit, so a power cut loses at most the last batch and never leaves a
 * torn store). Until store_start() (a daemon before it forks) writes are committed at once.
 * A block put a moment ago is found by store_block_get() in the queue before it is committed.
 * The queue is bounded: when it is full a block write (or an LRU stamp) is dropped, the reader
 * never waits for it. Listing and tree saves are never dropped; a newer save of the same
 * mailbox replaces a queued one.
 *
 * Two processes (two mounts of one account) may share the store: LMDB is multi-process.
 *
 * At open, a cache of the old format (DIR/listings/, DIR/blocks/, DIR/lock) is removed, and a
 * store that LMDB can't open, that is shorter than its own metadata says, whose layout version
 * is not ours, or whose small tables don't read back, is removed and created anew (one log line
 * each): it costs a refetch, never wrong mail. Damage found later, while in use (a page of the
 * wrong type, where LMDB would assert and abort; a listing whose records don't add up to the
 * count stored with it), stops the use of the store at once (the caller refetches) and leaves
 * DIR/damaged, so that the next open starts anew. LMDB has no checksums: a bit flipped inside
 * a block's bytes is not detected. Thread-safe. */
#ifndef IMAPFS_CACHE_STORE_H
#define IMAPFS_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORE_VERSION 2u
#define STORE_NAME_MAX 400u            /* bytes of a mailbox name kept (LMDB keys: <= 511) */
#define STORE_SECTION_MAX 64u          /* bytes of a part's section */
#define STORE_BLOCK_MAX (1024u * 1024) /* bytes of one block */
#define STORE_STR_MAX 65535u           /* bytes of one message's flags */
#define STORE_QUEUE_BYTES (32u << 20)  /* block bytes waiting for the writer, at most */

enum store_id_type {
        STORE_ID_MAILBOX = 1, /* mailbox number, UIDVALIDITY, UID */
        STORE_ID_SERVER = 2,  /* a server-wide id: length u8, "G" + X-GM-MSGID or "E" + EMAILID */
};
#define STORE_CID_MAX 256u /* bytes of a server-wide content id */
enum store_form { STORE_FORM_RAW = 'R', STORE_FORM_DECODED = 'D' };

struct store;

/* What a content block belongs to: the message (mailbox + UIDVALIDITY + UID; the store keys
 * it by the message's server-wide content id where one was saved with store_cids_save), the
 * section ("" or NULL: the whole message) and the form. */
struct store_part {
        const char *mailbox;
        uint32_t uidvalidity, uid;
        const char *section;
        enum store_form form;
};

struct store_meta {
        uint32_t uidvalidity, uidnext;
        uint64_t highestmodseq;
};

/* One message of a listing. On load the strings live only during the callback. */
struct store_msg {
        uint32_t uid; /* never 0 */
        uint64_t size;
        int64_t internaldate;
        const char *flags;
        const char *name;
};

struct store_folder {
        const char *raw;
        char delim;
        unsigned attrs;
};

/* Opens (creating it and its missing parents, 0700) the store of one account. Refuses
 * (-EACCES) a directory that is not ours or that grants group/other permissions, and a
 * symlink in its place (-ENOTDIR). max_bytes bounds the content blocks (0 keeps none).
 * -errno and a one-line reason in err on failure. */
int store_open(const char *dir, uint64_t max_bytes, struct store **out, char *err, size_t errlen);

/* Starts the writer thread. Call it in the process that will use the store: after a fork
 * (daemonizing) the environment is opened again in the child, as LMDB requires. 0 or -errno
 * (the store then keeps writing synchronously). */
int store_start(struct store *s);

/* Waits (at most timeout_ms) until every write queued so far is committed. 0 or -ETIMEDOUT. */
int store_flush(struct store *s, int timeout_ms);

/* Commits what is queued, stops the writer and closes. NULL is fine. */
void store_close(struct store *s);

/* ---- the folder tree ---- */
int store_tree_save(struct store *s, const struct store_folder *v, size_t n);
/* Calls fn per folder (in the order saved); the number of folders, or -errno. */
ssize_t store_tree_load(struct store *s, void (*fn)(void *ctx, const struct store_folder *f),
                        void *ctx);

/* Server-wide content ids of messages of mailbox (X-GM-MSGID with X-GM-EXT-1, EMAILID with
 * OBJECTID), queued like a listing (never dropped): from then on the blocks of these messages
 * are keyed by the id, so that the message read through another folder is found without a
 * download. cid: at most STORE_CID_MAX bytes of [A-Za-z0-9_-] ("" entries are skipped). */
struct store_cid {
        uint32_t uid;
        const char *cid;
};
int store_cids_save(struct store *s, const char *mailbox, uint32_t uidvalidity,
                    const struct store_cid *v, size_t n);

/* ---- listings ---- */
/* A listing being built by the caller (e.g. under its own lock, without the store's). */
struct store_listing;
struct store_listing *store_listing_new(const char *mailbox, const struct store_meta *meta,
                                        size_t expect);
/* Copies one message in. -EINVAL (uid 0), -ENAMETOOLONG (flags over STORE_STR_MAX), -ENOMEM. */
int store_listing_add(struct store_listing *l, const struct store_msg *m);
void store_listing_free(struct store_listing *l);
/* Queues the listing (taken over, also on failure) to replace the stored one: only records that
 * changed are written, in one transaction with the metadata. A new UIDVALIDITY drops the
 * mailbox's records and its blocks of other UIDVALIDITYs. 0 or -errno. */
int store_listing_save(struct store *s, struct store_listing *l);
/* Fills *meta and calls fn per message in UID order. 0, -ENOENT (none stored), -errno. */
int store_listing_load(struct store *s, const char *mailbox, struct store_meta *meta,
                       void (*fn)(void *ctx, const struct store_msg *m), void *ctx);
/* Drops everything stored for a mailbox: metadata, listing and blocks (rmdir, rename, DELETE
 * seen elsewhere); with a delimiter, also for every mailbox below it (name + delim + ...).
 * Queued. */
int store_mailbox_drop(struct store *s, const char *mailbox, char delim);

/* ---- content ---- */
/* Queues one block (len <= STORE_BLOCK_MAX) of a part. 0, -EAGAIN (queue full: dropped),
 * -EFBIG (bigger than max_bytes), -EINVAL, -ENAMETOOLONG. */
int store_block_put(struct store *s, const struct store_part *p, uint64_t index, const void *data,
                    size_t len);
/* Copies a block into buf (from the queue or the store) and queues its LRU stamp. Its length,
 * -ENOENT, -ENOBUFS (longer than cap) or -errno. */
ssize_t store_block_get(struct store *s, const struct store_part *p, uint64_t index, void *buf,
                        size_t cap);
bool store_block_has(struct store *s, const struct store_part *p, uint64_t index);

/* For tests and figures: bytes counted against max_bytes, committed blocks, writes dropped. */
uint64_t store_bytes(struct store *s);
size_t store_block_count(struct store *s);
uint64_t store_dropped(struct store *s);
/* Write transactions committed (reads alone commit only their LRU stamps, a few at a time). */
uint64_t store_commits(struct store *s);
/* Listing records written or deleted by committed saves (a save writes only what changed). */
uint64_t store_records_written(struct store *s);

/* Where the store's few log lines go (default: stderr). */
void store_set_logger(void (*fn)(const char *msg));

/* XXH64 (the published xxHash 64-bit algorithm) of n bytes with a seed. */
uint64_t store_hash64(const void *p, size_t n, uint64_t seed);

#endif
