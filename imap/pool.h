/* A few sessions to one account, handed out one caller at a time, with
 * mailbox affinity so that a read in a folder reuses the session that
 * already has it selected. Broken sessions are replaced on the next get. */
#ifndef IMAPFS_IMAP_POOL_H
#define IMAPFS_IMAP_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/session.h"

struct imap_pool;

/* The pool keeps a pointer to acct; it must outlive the pool. */
struct imap_pool *imap_pool_new(const struct imap_account *acct, size_t size);
void imap_pool_free(struct imap_pool *p);

/* Hands over the first session at mount time (opened before daemonizing). */
void imap_pool_adopt(struct imap_pool *p, struct imap_session *s);

/* What a session is wanted for. Bulk work (message content) may hold all
 * sessions but one, so that listings and lookups always find a connection
 * while big messages are being read. */
enum imap_pool_use { IMAP_POOL_META, IMAP_POOL_BULK };

/* Gets a session for exclusive use, preferring one with mailbox (may be NULL)
 * selected; connects one if needed. When every session is busy and a slot is
 * free, it first waits up to 1.5 round trips (as measured on the busy
 * sessions, at most 1 s) for one to come back, since a new connection costs
 * several; it connects when none did. Waits at most the account's timeout
 * for a free slot. Returns 0 or a negative errno (-EIO, -ETIMEDOUT,
 * -EACCES...). */
int imap_pool_get(struct imap_pool *p, const char *mailbox, enum imap_pool_use use,
                  struct imap_session **out);

/* After a mailbox was renamed or deleted: no idle session may go on
 * believing it has that name selected (the name may come back meaning
 * another mailbox). Busy sessions are marked and forget it when returned. */
void imap_pool_forget_mailbox(struct imap_pool *p, const char *mailbox);

/* Before DELETE or RENAME of mailbox: every session of ours that has it (or,
 * with delim, a mailbox below it) selected leaves it first. Some servers
 * drop a session whose selected mailbox another session deletes or renames
 * (Dovecot: "BYE IMAP session state is inconsistent"). self, the caller's
 * own session from this pool (may be NULL), leaves at once; idle sessions
 * leave with UNSELECT; a session busy in that mailbox is waited for (at most
 * the account's timeout); then every leave hook runs (live sync's IDLE
 * session moves elsewhere). Never CLOSE: it would expunge what other clients
 * marked \Deleted. Returns 0, or -EIO if self broke. */
int imap_pool_leave_mailbox(struct imap_pool *p, struct imap_session *self, const char *mailbox,
                            char delim);

/* A session outside the pool (live sync's) that must leave mailboxes too:
 * fn(ctx, mailbox, delim) returns once it no longer has mailbox or a child of
 * it selected, or after its own deadline. One hook; NULL removes it. */
typedef void (*imap_pool_leave_fn)(void *ctx, const char *mailbox, char delim);
void imap_pool_on_leave(struct imap_pool *p, imap_pool_leave_fn fn, void *ctx);

/* True if sel is mailbox or, with delim, a mailbox below it. */
bool imap_mailbox_within(const char *sel, const char *mailbox, char delim);

/* The largest message the server takes (APPENDLIMIT=n, RFC 7889) as the
 * sessions opened so far announced it; 0 if none did. */
uint64_t imap_pool_appendlimit(struct imap_pool *p);

/* True while the last attempt to connect failed: the server is away. */
bool imap_pool_down(struct imap_pool *p);
/* While down: why the last attempt to connect failed (-ETIMEDOUT,
 * -EHOSTUNREACH, -ECONNREFUSED...), which callers get as -EIO; else 0. */
int imap_pool_down_err(struct imap_pool *p);

/* Live sync's connection counts against the pool's size (big providers
 * count every connection of an account): it takes one of the slots for its
 * own session. False if the pool has only one slot, which then stays the
 * operations' (live sync must share it). unreserve gives the slot back. */
bool imap_pool_reserve_one(struct imap_pool *p);
void imap_pool_unreserve_one(struct imap_pool *p);

/* Returns a session; a broken one is closed here. */
void imap_pool_put(struct imap_pool *p, struct imap_session *s);

#endif
