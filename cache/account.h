/* The account: the one place that asks imap/ and stores the answers in
 * cache/. The FUSE operations call these functions and then read the cache
 * under its lock. No FUSE types here, so the policy (when to revalidate, how
 * much to read ahead) reads on its own. */
#ifndef IMAPFS_CACHE_ACCOUNT_H
#define IMAPFS_CACHE_ACCOUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cache/blocks.h"
#include "cache/mailbox.h"
#include "imap/pool.h"
#include "imap/session.h"

/* How names are made: fs/ decides (fs/names.c), the store only keeps them.
 * Every function returns a malloc'd string, NULL on ENOMEM. */
struct account_naming {
        void *ctx;
        /* A message's file name from its Date and Subject fields (either may
         * be NULL) and INTERNALDATE; it must depend on nothing else. */
        char *(*message)(void *ctx, uint32_t uid, const char *date, const char *subject,
                         time_t internaldate);
        /* The name of the same message under a new UID (after a move). */
        char *(*reuid)(void *ctx, const char *name, uint32_t old_uid, uint32_t new_uid);
        /* A server name component as a directory name. */
        char *(*dir_from_server)(void *ctx, const char *comp);
        /* A typed directory name as a server name component (modified
         * UTF-7), for a server whose delimiter is delim: 0, or -EINVAL for a
         * name that would not list as typed, -ENOMEM. */
        int (*server_from_dir)(void *ctx, const char *name, char delim, char **out);
};

struct search;
struct own;
struct batch;

struct account_opts {
        bool names_uid;     /* -o names=uid */
        int revalidate_ms;  /* how old a listing may be before a lookup/opendir checks it */
        size_t connections; /* pool size */
        size_t mem_cache;   /* bytes of message content kept in memory */
        bool read_only;
        /* -o trash=: NULL = the \Trash special-use folder if there is one;
         * "" = none (expunge); else that folder's server name (modified UTF-7). */
        char *trash;
        bool offline_ok;     /* a cache is there: mount even if the server is away */
        const char *exclude; /* -o exclude=: folders hidden from the tree (cache/exclude.h) */
};

struct account {
        struct imap_account imap;
        struct account_opts opts;
        struct account_naming naming; /* set before account_init() */
        struct imap_pool *pool;
        struct cache *cache;
        struct blocks *blocks;
        struct ahead *ahead;
        struct store *disk;      /* the persistent cache (cache/store.h), NULL when off */
        uint64_t disk_max;       /* its bound on content (-o cache_size) */
        struct search *search;   /* .search directories (cache/search.h), cache lock */
        struct own *own;         /* our changes' echoes (cache/own.h), cache lock */
        struct batch *batch;     /* concurrent changes coalesced (cache/batch.h) */
        int64_t tree_checked_ms; /* guarded by the cache lock */
        char hier_delim;         /* the server's hierarchy delimiter (from LIST) */
        uint64_t tree_sig;       /* hash of the last LIST, to save the tree only on change */
        bool tree_refreshing;
        unsigned tree_gen; /* bumped by each of our own folder changes (cache lock) */
        /* The last statfs answer (account_space), cache lock. */
        struct account_space {
                uint64_t total, used;       /* bytes */
                bool quota;                 /* from the server's QUOTA STORAGE, else estimated */
                uint64_t files, files_free; /* QUOTA MESSAGE; 0, 0 if unknown */
        } space;
        int64_t space_checked_ms;             /* when space was asked (0: never) */
        bool space_no_quota;                  /* the server refused GETQUOTAROOT: don't ask again */
        atomic_ullong fetches, fetched_bytes; /* content fetches, for the log at exit */
        /* The server could not be reached or stopped answering: until then
         * (ms), revalidating what the cache holds answers from it at once
         * rather than waiting a timeout again (account_away). */
        atomic_bool slow_link; /* compress=auto: a session measured a slow link */
        _Atomic int64_t away_until_ms;
        atomic_int away_err;
};

/* Per open message: what a read needs without taking the cache lock, plus
 * the read-ahead state of this file handle. */
struct account_file {
        uint64_t mbox_id;
        char *mailbox; /* raw name */
        uint32_t uidvalidity, uid;
        uint64_t size;
        atomic_ullong next_off; /* where a sequential read would continue */
        atomic_uint ra_blocks;  /* current read-ahead, in blocks */
        /* Read-ahead's view (cache/ahead.h): the scan this open belongs to,
         * whether to read with direct I/O, and how far the reader got. */
        struct account *acct;
        uint64_t stream;
        bool direct;
        atomic_ullong extent;
        atomic_bool read_on; /* a read after the first one */
        atomic_ullong asked; /* the longest read asked for */
};

/* How long a revalidation is answered from the cache after the server could
 * not be reached or stopped answering. */
#define ACCOUNT_AWAY_MS 15000

/* 0, or the error of the failure that shows the server is away (a
 * connection that could not be made or broke within an operation in the
 * last ACCOUNT_AWAY_MS). A revalidation of something the cache holds then
 * answers with it at once; the next success (a poll, a read, a write)
 * ends it. */
int account_away(struct account *a);

/* Runs fn on a pooled session; a connection the server closed while idle is
 * replaced and fn run again once (fn must start from scratch each call). */
typedef int (*account_op_fn)(struct imap_session *s, void *ctx);
int account_run(struct account *a, const char *mailbox, enum imap_pool_use use, account_op_fn fn,
                void *ctx);

/* The same for a change. If the connection breaks once a command that
 * changes the account has left (its outcome unknown), verify runs on another
 * connection with the same ctx: 0 if the server shows the change was made
 * (the call then succeeds), -ENOENT if it shows it was not, else unknown.
 * A change is never sent twice. verify may be NULL (the call fails). */
int account_run_write(struct account *a, const char *mailbox, enum imap_pool_use use,
                      account_op_fn fn, account_op_fn verify, void *ctx);
/* r (a negative errno) says the server could not be reached or did not
 * answer: asking again later may work. */
bool account_transient(int r);
/* Whether our own changes on their way or just done (cache/own.h) account
 * for what a SELECT of mailbox says (counts, UIDNEXT) where it differs from
 * the listing. With the cache lock held. */
bool account_select_explained(struct account *a, const char *mailbox,
                              const struct imap_select_info *si);

/* SELECTs mailbox on s (no round trip if it is selected already) and checks
 * that its UIDVALIDITY is still uidvalidity: -ESTALE if not (our UIDs name
 * other messages now). si (may be NULL) gets what SELECT said. */
int account_select(struct imap_session *s, const char *mailbox, uint32_t uidvalidity,
                   struct imap_select_info *si);

/* The same, and makes sure the session's view of the folder includes uid
 * (a NOOP when the UID is newer than what the session has seen). */
int account_select_uid(struct imap_session *s, const char *mailbox, uint32_t uidvalidity,
                       uint32_t uid, struct imap_select_info *si);

/* False while the server can't be reached (after a failed connect, one more
 * attempt is made here, so the answer turns as soon as it is back). */
bool account_online(struct account *a);

/* The TLS context of every connection: the system's trust store, plus
 * cafile (may be NULL). -EINVAL with a reason in err. */
int account_tls_setup(struct account *a, const char *cafile, char *err, size_t errlen);
void account_tls_free(struct account *a);

/* account_connect() could not reach the server, but the persistent cache
 * knows the account: mount what it has; the pool and live sync reconnect. */
#define ACCOUNT_OFFLINE 1

/* Connects and logs in (the first session of the pool, before the mount,
 * so that a wrong host, password or certificate is reported and nothing
 * gets mounted), then lists the folder tree. 0, ACCOUNT_OFFLINE (err says
 * why), or -errno with a one-line reason in err; *network tells whether
 * the server could not be reached (rather than refused us). */
int account_connect(struct account *a, char *err, size_t errlen, bool *network);

int account_init(struct account *a);
void account_destroy(struct account *a);

/* Runs LIST and rebuilds the tree if it is older than max_age_ms (0: always). */
int account_refresh_tree(struct account *a, int max_age_ms);

/* A poll round's tree (live sync without NOTIFY): where the server has
 * LIST-STATUS (RFC 5819), the tree and every folder's STATUS come in one
 * command; the tree is rebuilt, then fn gets each folder's STATUS and
 * *with_status is true. Otherwise a plain LIST as account_refresh_tree(a, 0)
 * and *with_status is false (the caller asks STATUS itself). An answer that
 * asks us to slow down fills slow (not logged here). */
struct imap_slowdown;
struct imap_status_info;
typedef void (*account_status_fn)(void *ctx, const char *raw, const struct imap_status_info *st);
int account_refresh_tree_status(struct account *a, account_status_fn fn, void *ctx,
                                bool *with_status, struct imap_slowdown *slow);

/* Turns a directory name typed by the user into the server name of a child
 * of parent (lock held): unescaped, encoded to modified UTF-7, joined with
 * the delimiter. NULL with *err = -EINVAL for a name IMAP can't hold. */
char *account_child_raw(const struct account *a, const struct cache_mbox *parent, const char *name,
                        int *err);

/* The directory name a server name component shows as (a cache_decode_fn;
 * ctx is the account). */
char *account_decode_component(void *ctx, const char *comp);

/* Makes sure the listing of mailbox id is known and no older than
 * max_age_ms (confirming with the server if it is older; -1: any age will do
 * once fetched). Returns 0, -ENOENT (mailbox gone), -ENOTDIR, -EIO. */
int account_refresh_listing(struct account *a, uint64_t mbox_id, int max_age_ms);

/* A reader opened mailbox id as a directory (opendir): the first or last
 * message opened right after starts a scan at once (cache/ahead.c). */
void account_dir_opened(struct account *a, uint64_t mbox_id);

/* What df shows (statfs), asked at most once a minute: the QUOTA STORAGE
 * limit and usage of INBOX's quota root where the server has QUOTA; else
 * used = the sizes of every message in the listings known, total = used +
 * ACCOUNT_SPACE_UNKNOWN_FREE (a placeholder free space: copy tools refuse
 * to copy onto a file system with none). */
#define ACCOUNT_SPACE_UNKNOWN_FREE (1ull << 40)
void account_space(struct account *a, struct account_space *out);

/* Opens message id for reading. */
int account_file_open(struct account *a, uint64_t msg_id, struct account_file **out);
void account_file_close(struct account_file *f);

/* Reads [off, off+len) of the message into buf; *got < len only at the end. */
int account_file_read(struct account *a, struct account_file *f, uint64_t off, size_t len,
                      char *buf, size_t *got);

#endif
