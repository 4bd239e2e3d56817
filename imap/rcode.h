/* What a server's NO or BAD means: one table from response codes (RFC 5530,
 * RFC 3501's TRYCREATE, RFC 7889's TOOBIG, ...) and from the texts of servers
 * that send no code, to the errno the caller reports and whether the caller
 * should back off (the server asks us to slow down or is busy) before it asks
 * again. Every operation in imap/ turns its answer into an errno here, so the
 * same answer means the same error everywhere; the server's text goes to the
 * log. A write is never retried because of the back-off flag: only reads,
 * polls and live sync wait and ask again. */
#ifndef IMAPFS_IMAP_RCODE_H
#define IMAPFS_IMAP_RCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/session.h"

/* How an answer is classified: the errno (negative; 0 for OK) and whether
 * to back off, with the wait the server suggested (0: none said). */
struct imap_rcode_class {
        int err;
        bool backoff;
        int suggested_ms;
};

/* Classifies a finished command's answer without logging it. */
struct imap_rcode_class imap_rcode_classify(const struct imap_result *res);

/* The errno a finished command stands for: 0 for OK, else from the table
 * (see imap/rcode.c), -EPROTO for a NO or BAD the table doesn't know.
 * Failures are logged with what and the server's code and text. */
int imap_result_errno(const char *what, const struct imap_result *res);

/* True if the answer asks the caller to slow down before asking again
 * ([LIMIT], [UNAVAILABLE], "throttled" texts). *suggested_ms (may be NULL)
 * gets the wait the server suggested, 0 if it said none. */
bool imap_result_backoff(const struct imap_result *res, int *suggested_ms);

/* For callers that only have the errno: true for the errnos that the
 * back-off answers map to (-EAGAIN, -ENOSPC). */
bool imap_errno_backoff(int err);

/* The wait before the next attempt after `failures` failures in a row:
 * base_ms doubled each time, at most max_ms; a wait the server suggested
 * counts if it is longer. */
int imap_backoff_ms(unsigned failures, int base_ms, int max_ms, int suggested_ms);

/* Names (mailboxes) whose last attempts failed, each with its failure count
 * and the time before which it should not be asked about again. Not locked:
 * one thread owns a table. Zero-initialised is empty. */
struct imap_retry_entry;
struct imap_retry {
        struct imap_retry_entry *head;
};

/* False while name is within its back-off. */
bool imap_retry_due(const struct imap_retry *t, const char *name);
/* Records the outcome of asking about name: err 0 ends its back-off (true is
 * returned in *recovered if it had one); -EIO (the connection, not the
 * name) changes nothing; any other failure counts. Returns the wait before
 * the next attempt (imap_backoff_ms(count, base_ms, max_ms)), 0 after a
 * success. */
int imap_retry_note(struct imap_retry *t, const char *name, int err, int base_ms, int max_ms,
                    bool *recovered);
void imap_retry_clear(struct imap_retry *t);

/* The account's gate for new connections (one account per process): when
 * a server asks us to slow down (a BYE, a refused greeting or login, a
 * [LIMIT]/[UNAVAILABLE]/throttled answer), no session of ours opens a new
 * connection before the time it suggested (or a back-off of our own). Every
 * wait goes to the log with the server's words. */

/* Notes an answer of the server: a back-off class (see the table) closes
 * the gate for the suggested time, at least base_ms doubled per answer of
 * the kind in a row (each within a minute of the one before). Other
 * answers are ignored. */
void imap_throttle_note(const struct imap_result *res);
/* The server said BYE (res->status IMAP_ST_BYE). fresh: on a connection
 * that had not yet finished a command after login (the greeting, the login,
 * its first command): a server that turns new connections away ("Maximum
 * number of connections"). One such BYE reconnects at once; another on a
 * connection opened since (within a minute) closes the gate, doubling from
 * 1 s up to 60 s. A BYE that says the server is throttling or unavailable
 * closes it at once, at least for what it suggested. Any other BYE (an idle
 * timeout, a restart, however many connections it ends at once) reconnects
 * at once and ends the count. */
void imap_throttle_bye(const struct imap_result *res, bool fresh);
/* Before connecting: 0 at once if the gate is open, 0 after waiting for it
 * if it opens before deadline (logged), else -EAGAIN with the reason in err. */
int imap_throttle_wait(int64_t deadline, char *err, size_t errlen);
/* Milliseconds until the gate opens (0: open). */
int imap_throttle_left_ms(void);
/* Forgets every back-off (tests). */
void imap_throttle_reset(void);

#endif
