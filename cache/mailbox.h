/* What we know about the account: the mailbox tree and each mailbox's
 * message listing, in memory. Every object has a node id that is stable for
 * the life of the process (the FUSE layer uses it as the inode number).
 *
 * Locking: one mutex (cache_lock/cache_unlock) guards everything here. It is
 * never held across network I/O; callers copy what they need out of the
 * objects before unlocking, because an object may be freed once unlocked
 * (a mailbox deleted, a message expunged). */
#ifndef IMAPFS_CACHE_MAILBOX_H
#define IMAPFS_CACHE_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uthash.h>

#define CACHE_ROOT_ID 1

enum cache_kind { CACHE_MBOX, CACHE_MSG };

/* Common head of every object, found by id. Mailboxes are few and hashed;
 * messages are many and found through one array sorted by id (see
 * mailbox.c: what a listed message costs is what decides the daemon's memory
 * in a big folder). */
struct cache_node {
        uint64_t id;
        enum cache_kind kind;
};

struct cache_mbox;

/* One listed message: 64 bytes, allocated from slabs, found by uid (an array
 * sorted by uid), by name (an open-addressing table) and by id (the cache's
 * id array). The name lives in its mailbox's name arena and the flags are
 * interned (one copy per distinct spelling), so a message costs no malloc of
 * its own. */
struct cache_msg {
        struct cache_node node; /* first: a cache_node* is a cache_msg* when kind == CACHE_MSG */
        uint32_t uid;
        uint32_t sorted_idx : 30; /* position in mbox->sorted (valid when not sorted_dirty) */
        uint32_t mark : 1;        /* seen in the refresh that is being applied */
        uint32_t dead : 1;        /* removed; its slot is reclaimed at the next compaction */
        uint64_t size;
        time_t internaldate;
        const char *flags; /* space-separated, as the server spells them; interned, read-only */
        char *name;        /* file name, never changes while the message exists */
        struct cache_mbox *mbox;
};

struct cache_names; /* a mailbox's arena of message names (mailbox.c) */

enum cache_listing_state {
        CACHE_LISTING_NONE,  /* never fetched */
        CACHE_LISTING_VALID, /* fetched and nothing says it changed */
        CACHE_LISTING_STALE, /* the server told us it changed */
};

/* What the server reported about a mailbox on any of our connections, at
 * any time (during any command, in IDLE, through NOTIFY), that our own
 * commands don't explain. One record per mailbox, fed through one function
 * (cache_mbox_heard), so that whatever connection heard a change, the next
 * refresh of the listing knows it must not take "nothing changed" from a
 * connection's remembered SELECT. */
struct cache_server_state {
        unsigned heard;        /* changes reported so far */
        unsigned heard_listed; /* of those, how many the listing already reflects: the
                                  value of heard when its last successful refresh began */
};

struct cache_mbox {
        struct cache_node node;
        char *raw;      /* server name (modified UTF-7); NULL for the root */
        char *dname;    /* this directory's name in its parent */
        char delim;     /* hierarchy delimiter, '\0' if none */
        unsigned attrs; /* IMAP_MBX_* from LIST */
        bool listed;    /* present in the last LIST (false: a parent we inferred) */
        bool mark;
        struct cache *cache; /* the cache it belongs to */
        struct cache_mbox *parent;
        struct cache_mbox *children; /* hash by dname (hh_child) */
        UT_hash_handle hh_id;        /* in the cache's table of mailboxes by id */
        UT_hash_handle hh_child;
        UT_hash_handle hh_raw;
        /* Listing */
        uint32_t uidvalidity, uidnext, exists;
        uint64_t highestmodseq; /* CONDSTORE: changes of any kind raise it */
        enum cache_listing_state state;
        bool observed;      /* report changes to the observer (not during a first listing) */
        int64_t checked_ms; /* when the listing was last confirmed with the server */
        int64_t opened_ms;  /* when a reader last opened it as a directory (opendir) */
        unsigned stale_gen; /* bumped by every change notice; a refresh that saw
                               a bump while it ran leaves the listing stale */
        bool refreshing;    /* a thread is fetching the listing: others wait */
        /* Messages: by uid, an array sorted by uid that may hold removed (dead)
         * entries until the next compaction (cache_mbox_msgs compacts); by
         * name, an open-addressing table of live messages. */
        struct cache_msg **uidv;
        size_t nuidv, capuidv, ndead;
        struct cache_msg **namev;
        size_t capnamev;
        struct cache_names *names;
        size_t nmsgs; /* live messages */
        size_t nchildren;
        /* Messages in file-name order (the order of readdir, ls and shell
         * globs), rebuilt lazily after the listing changes. */
        struct cache_msg **sorted;
        bool sorted_dirty;
        /* What the server said about it, on any connection. */
        struct cache_server_state srv;
};

struct cache;

/* How message file names are made (fs/ decides; the cache only stores them). */
typedef char *(*cache_name_fn)(void *ctx, uint32_t uid, const char *header, size_t header_len,
                               time_t internaldate);

/* What changed in the tree, for whoever must tell the kernel: a name that
 * appeared in or disappeared from directory parent, a message that our own
 * move took from folder parent (MOVED_AWAY) or brought there (MOVED_IN: the
 * same node, which the kernel already moved itself), or the flags of
 * message name in folder parent. Called with the cache lock held: it must
 * only queue work. Messages found by a folder's first listing are not
 * reported (nothing can have cached them). */
enum cache_change {
        CACHE_NAME_ADDED,
        CACHE_NAME_REMOVED,
        CACHE_NAME_MOVED_AWAY,
        CACHE_NAME_MOVED_IN,
        CACHE_FLAGS_CHANGED
};
typedef void (*cache_observe_fn)(void *ctx, enum cache_change what, uint64_t parent,
                                 const char *name, uint64_t id);

struct cache *cache_new(cache_name_fn name_fn, void *name_ctx);
void cache_set_observer(struct cache *c, cache_observe_fn fn, void *ctx);
void cache_free(struct cache *c);

void cache_lock(struct cache *c);
void cache_unlock(struct cache *c);
/* Waits (with the lock held on entry and exit) until another thread's refresh
 * ends or deadline_ms (monotonic, as imap_now_ms()) passes: 0 when woken (the
 * caller re-checks what it waits for; wake-ups may be spurious), -ETIMEDOUT
 * once the deadline has passed. Every wait has one: a refresh that never
 * ends must not take its waiters with it. */
int cache_wait(struct cache *c, int64_t deadline_ms);
void cache_wake(struct cache *c);
/* The daemon is stopping: every wait, present and future, returns
 * -ESHUTDOWN at once. Takes the lock itself. */
void cache_shutdown(struct cache *c);

/* --- lookups (lock held) --- */
struct cache_node *cache_node_get(struct cache *c, uint64_t id);
struct cache_mbox *cache_root(struct cache *c);
struct cache_mbox *cache_mbox_child(struct cache_mbox *parent, const char *dname);
struct cache_mbox *cache_mbox_by_raw(struct cache *c, const char *raw);
struct cache_msg *cache_msg_by_name(struct cache_mbox *m, const char *name);
struct cache_msg *cache_msg_by_uid(struct cache_mbox *m, uint32_t uid);

/* --- the mailbox tree from LIST (lock held) ---
 * cache_tree_begin(); cache_tree_add() for every LIST entry; cache_tree_end()
 * removes mailboxes (and their messages) that were not listed again. Existing
 * mailboxes keep their ids. decode(decode_ctx, component) turns one raw name component
 * into its directory name (malloc'd). */
typedef char *(*cache_decode_fn)(void *ctx, const char *component);
void cache_tree_begin(struct cache *c);
int cache_tree_add(struct cache *c, const char *raw, char delim, unsigned attrs,
                   cache_decode_fn decode, void *decode_ctx);
void cache_tree_end(struct cache *c);
/* The personal namespace prefix (NAMESPACE, e.g. "INBOX."): mailboxes under
 * it are shown from the root down, without the prefix as a level. ""/NULL:
 * none. cache_ns_prefix gives "" for none. Lock held. */
int cache_set_ns_prefix(struct cache *c, const char *prefix);
const char *cache_ns_prefix(const struct cache *c);

/* --- a mailbox listing (lock held) ---
 * cache_listing_begin() (drops everything if uidvalidity changed); then
 * cache_listing_add() per message from the server; cache_listing_end()
 * removes messages the server no longer has and marks the listing valid. */
void cache_listing_begin(struct cache *c, struct cache_mbox *m, uint32_t uidvalidity,
                         uint32_t uidnext, uint32_t exists, uint64_t highestmodseq);
int cache_listing_add(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                      time_t internaldate, const char *flags, const char *header,
                      size_t header_len);
/* The same with the name already made (from the persistent cache). */
int cache_listing_add_named(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                            time_t internaldate, const char *flags, const char *name);
void cache_listing_end(struct cache *c, struct cache_mbox *m, int64_t now_ms,
                       unsigned gen_at_start);

/* --- changes we made ourselves (lock held), applied after the server said OK --- */
/* A new id for something that is not in the cache (a file being written). */
uint64_t cache_id_alloc(struct cache *c);
/* Removes a mailbox, its children and their messages. */
void cache_mbox_remove(struct cache *c, struct cache_mbox *m);
/* Moves m (and its subtree) under new_parent as new_dname with server name
 * new_raw; the subtree's raw names change prefix. Ids are kept. */
int cache_mbox_rename(struct cache *c, struct cache_mbox *m, struct cache_mbox *new_parent,
                      const char *new_dname, const char *new_raw);
/* Moves one message to another mailbox where the server gave it new_uid
 * (COPYUID): the same node (same id, so the kernel's inode stays right), now
 * called new_name (taken over). -EEXIST if target already has that UID. */
int cache_msg_move(struct cache *c, struct cache_msg *msg, struct cache_mbox *target,
                   uint32_t new_uid, char *new_name);
/* Removes one message (expunged or moved away). */
void cache_msg_remove(struct cache *c, struct cache_msg *msg);
/* Replaces one message's flags. */
int cache_msg_set_flags(struct cache_msg *msg, const char *flags);
/* Reports a change of msg's flags to the observer (CACHE_FLAGS_CHANGED). */
void cache_msg_flags_changed(struct cache *c, struct cache_msg *msg);

/* The live messages of m in uid order (lock held): *n entries, valid until
 * the listing changes. NULL (with *n 0) when there are none or on ENOMEM. */
struct cache_msg **cache_mbox_msgs(struct cache_mbox *m, size_t *n);

/* The messages of m sorted by name (lock held); NULL only on ENOMEM. The array
 * holds m->nmsgs entries and stays valid until the listing changes. */
struct cache_msg **cache_mbox_sorted(struct cache_mbox *m);

/* Records that the listing (brought up to date piecemeal, or found
 * unchanged) matches the server as of now. */
void cache_listing_commit(struct cache *c, struct cache_mbox *m, int64_t now_ms,
                          unsigned gen_at_start, uint32_t uidnext, uint32_t exists,
                          uint64_t highestmodseq);

/* Marks a mailbox's listing as changed on the server (EXISTS, EXPUNGE...). */
void cache_mbox_mark_stale(struct cache *c, const char *raw);

/* The server reported a change of mailbox raw that we did not cause (an
 * EXISTS, EXPUNGE, VANISHED or FETCH on any connection, a NOTIFY STATUS, or
 * counts around our own command that don't add up): counted in its server
 * state and its listing marked stale. */
void cache_mbox_heard(struct cache *c, const char *raw);

/* True if m holds messages: a server mailbox that is not \Noselect (the root
 * and inferred parents hold none). */
bool cache_mbox_selectable(const struct cache_mbox *m);

/* Gives the memory that a big transient allocation left behind (a listing's
 * answer, a directory snapshot of n entries) back to the system when n is
 * large: freed small blocks between live ones stay resident otherwise, and
 * in a big folder they outweigh the listing itself. */
void cache_trim(size_t n);

/* Bytes the metadata of one message costs in memory (for the README figure):
 * its slot, its name in the arena, its entries in the id, uid and name
 * indexes and in the sorted array. */
size_t cache_msg_footprint(const struct cache_msg *m);

#endif
