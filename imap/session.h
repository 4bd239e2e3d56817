/* One authenticated IMAP connection and the commands run on it.
 *
 * A session runs one command at a time (the pool gives concurrency); each
 * command has a deadline. Any transport failure, timeout, protocol error or
 * BYE marks the session broken: every later command on it fails at once with
 * -EIO and the pool replaces it. */
#ifndef IMAPFS_IMAP_SESSION_H
#define IMAPFS_IMAP_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/parse.h"
#include "imap/quote.h"

typedef struct ssl_ctx_st SSL_CTX;
struct imap_conn;
struct imap_session;

enum imap_security {
        IMAP_SEC_TLS,      /* imaps:// — TLS from the first byte */
        IMAP_SEC_STARTTLS, /* imap:// — STARTTLS, refused if absent unless allow_plaintext */
};

/* A change the server reported that no command of ours explains. Every
 * untagged response of every session goes through one handler in session.c:
 * it keeps the session's view of the selected mailbox current (counts,
 * UIDNEXT, HIGHESTMODSEQ), hands a command the data it asked for, and turns
 * the rest into these events, for the account to apply to its one
 * per-mailbox state. What our own APPEND / UID MOVE / UID EXPUNGE caused is
 * not reported (see imap_session_quiet). */
enum imap_event_kind {
        IMAP_EV_EXISTS,   /* n: the selected mailbox's new message count */
        IMAP_EV_EXPUNGE,  /* n: the sequence number that went */
        IMAP_EV_VANISHED, /* r->args: the UIDs that went (QRESYNC) */
        IMAP_EV_FETCH,    /* flags (or other data) changed: uid and modseq if sent, else 0 */
        IMAP_EV_CHANGED,  /* the counts around our own command don't add up: something
                             else changed as well (r is NULL) */
        IMAP_EV_STATUS,   /* mailbox: STATUS of another mailbox (NOTIFY) */
        IMAP_EV_LIST,     /* mailbox: one created, renamed or deleted (NOTIFY) */
};

struct imap_event {
        enum imap_event_kind kind;
        const char *mailbox; /* the selected mailbox, or the one STATUS/LIST names; may be
                                NULL (nothing selected) */
        uint32_t n, uid;
        uint64_t modseq;
        const struct imap_response *r; /* the response itself; NULL for IMAP_EV_CHANGED */
};

/* Called on the thread running the command; must not call back into the session. */
typedef void (*imap_event_fn)(void *ctx, const struct imap_event *ev);

/* Everything needed to open sessions to one account. Owned by the caller,
 * read-only while sessions exist. */
struct imap_account {
        char *host;
        unsigned port;
        enum imap_security security;
        bool allow_plaintext;
        char *user;
        char *password;
        /* OAuth2 instead of the password: called for each new connection for
         * an access token (again: the server refused the one just sent; a new
         * one is wanted). Returns a malloc'd token, which the session wipes
         * and frees, or NULL with a one-line reason in err. */
        char *(*oauth2_token)(void *ctx, bool again, char *err, size_t errlen);
        void *token_ctx;
        SSL_CTX *tls;
        int timeout_ms;       /* deadline of one server operation */
        uint64_t max_literal; /* largest literal accepted from the server */
        /* COMPRESS=DEFLATE where the server offers it: always (-o compress=yes),
         * never (-o compress=no), or (auto, the default) once the link has
         * shown itself slower than the server compresses (see session.c). */
        enum imap_compress { IMAP_COMPRESS_AUTO, IMAP_COMPRESS_NO, IMAP_COMPRESS_YES } compress;
        /* compress=auto: set by the first session that measured a slow link;
         * every session of the account then compresses. NULL: never set. */
        atomic_bool *slow_link;
        imap_event_fn on_event;
        /* Optional, asked first (same ctx, same thread rules): true if the
         * event is the echo of a change of ours, seen on another connection
         * (our UID MOVE's VANISHED on the connection in IDLE, NOTIFY's STATUS
         * of the target). Such an event is not counted, not reported and does
         * not end an IDLE. */
        bool (*own_event)(void *ctx, const struct imap_event *ev);
        void *event_ctx;
};

struct imap_caps {
        bool imap4rev1, literal_plus, literal_minus, uidplus, move, condstore, qresync, idle,
            notify, esearch, enable, special_use, binary, starttls, logindisabled, auth_plain,
            sasl_ir, unselect, auth_xoauth2, auth_oauthbearer, multisearch, list_status,
            gmail,            /* X-GM-EXT-1: labels are folders */
            objectid,         /* OBJECTID (RFC 8474): EMAILID names a message's content */
            namespace,        /* NAMESPACE (RFC 2342) */
            cid_refused,      /* X-GM-MSGID/EMAILID announced but refused by FETCH */
            compress_deflate, /* COMPRESS=DEFLATE (RFC 4978) */
            uidonly,          /* UIDONLY (RFC 9586); after login: the server enabled it */
            quota;            /* QUOTA (RFC 2087, RFC 9208): GETQUOTAROOT is understood */
        uint64_t appendlimit; /* APPENDLIMIT=n (RFC 7889); 0 if not announced */
};

/* The outcome of a command the server answered. */
struct imap_result {
        enum imap_status status; /* OK, NO or BAD */
        char code[32];           /* response code atom, "" if none */
        char args[256];          /* the code's atom/number arguments, space-separated
                                    ("38505 3955" for APPENDUID) */
        bool args_cut;           /* args could not hold them all: see imap_session_long_args */
        char text[256];          /* server's text, for the log and error messages */
};

/* The errno a finished command stands for (0 for OK), from the one table of
 * response codes in imap/rcode.c (see imap/rcode.h, which also says whether
 * to back off). Failures are logged with what and the server's text. */
int imap_result_errno(const char *what, const struct imap_result *res);

/* Called for each untagged response while a command runs. Return true if the
 * response was the command's data (it is then not reported as an event). */
typedef bool (*imap_data_fn)(void *ctx, const struct imap_response *r);

/* Connects, secures, reads the greeting, logs in, learns capabilities.
 * Returns 0, or a negative errno with a one-line reason in err:
 * -EACCES wrong credentials, -EPERM certificate or plaintext refusal,
 * -ECONNREFUSED / -ETIMEDOUT / -EHOSTUNREACH network, -EPROTO protocol. */
int imap_session_open(const struct imap_account *a, struct imap_session **out, char *err,
                      size_t errlen);
void imap_session_free(struct imap_session *s);

/* Sends cmd (with a fresh tag) and reads until its tagged response. Returns
 * 0 when the server answered (see res->status), or -EIO when the session
 * broke (timeout, disconnect, garbage); the reason is logged. */
int imap_session_cmd(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                     struct imap_result *res);

/* Asked while the answers of imap_session_cmd_chain come in: another command
 * to send now, behind the ones on their way, or NULL. The command stays the
 * caller's; it must not need a synchronizing literal. */
typedef struct imap_cmd *(*imap_next_fn)(void *ctx);

/* imap_session_cmd, and after each untagged response next is asked for
 * another command, which goes out at once, or, while the commands waiting
 * behind the one being answered hold CHAIN_UNREAD_BYTES (session.c), once
 * the server has read them; next is not asked again until it has gone out
 * (at most IMAP_CHAIN_MAX in all):
 * a caller whose next command becomes known while the answer to the one
 * before is still arriving saves the round trip of waiting for its end.
 * The answers of all of them go to fn. res is the first command's result,
 * or the first other one that was not OK. Returns -EIO when the session
 * broke. */
#define IMAP_CHAIN_MAX 8
int imap_session_cmd_chain(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                           imap_next_fn next, void *next_ctx, struct imap_result *res);

/* Sends the commands without waiting for answers and reads all their
 * answers: about one round trip for the lot, however many (RFC 3501 §5.5).
 * They go out in chunks (see PIPE_CHUNK_* in session.c), the next chunk
 * written while the server answers the one before, so that neither side has
 * to buffer more than two chunks. Each still succeeds or fails on its own
 * (res[i]); the caller must only pipeline commands that are safe to run
 * whatever the earlier ones answered. Commands with synchronizing literals
 * are sent one after another. */
int imap_session_pipeline(struct imap_session *s, struct imap_cmd **cmds, size_t n, imap_data_fn fn,
                          void *ctx, struct imap_result *res);

/* IDLE (RFC 2177) in the selected mailbox until the server reports a change
 * (*changed = true; the change went to the account's event handler), wake_fd
 * becomes readable (it is not read here), or max_ms passes; then DONE. Waiting
 * in IDLE has no deadline of its own (that is the point), but getting in and
 * out of it has the usual one. -EPROTO if the server refuses IDLE. */
int imap_session_idle(struct imap_session *s, int wake_fd, int max_ms, bool *changed);

bool imap_session_broken(const struct imap_session *s);
/* True once a command ran after login: a failure then may be a connection
 * the server dropped while it sat idle. */
bool imap_session_used(const struct imap_session *s);
/* Around our own APPEND / UID MOVE / UID EXPUNGE of one message: while on,
 * EXISTS/EXPUNGE/VANISHED of the selected mailbox update the counts but are
 * held back, because the cache applies our command's result itself. When it
 * is turned off, what was held back is weighed: one message added or one
 * removed is ours; anything more (another client's expunge or delivery in
 * the same answer) is reported as IMAP_EV_CHANGED, so the listing is
 * refreshed rather than confirmed. */
void imap_session_quiet(struct imap_session *s, bool on);
/* While quiet: our command adds or removes n messages, not one (a UID MOVE
 * of a set). */
void imap_session_quiet_ours(struct imap_session *s, uint32_t n);
/* The whole code arguments of the last result whose args_cut was set
 * (malloc'd by the session, valid until the next such result or the
 * session's end); NULL if they could not be kept (ENOMEM). */
const char *imap_session_long_args(const struct imap_session *s);
/* How many commands that change the account (APPEND, CREATE, STORE, MOVE,
 * ...) this session has sent or begun to send. If it grew during a call that
 * failed, the change may have been carried out: never repeat it blindly. */
unsigned imap_session_writes(const struct imap_session *s);
/* How many unsolicited changes (EXISTS, EXPUNGE, FETCH, VANISHED) of the
 * selected mailbox the session has seen: compare before and after a NOOP. */
unsigned imap_session_events(const struct imap_session *s);
/* The session broke because the server did not answer within the deadline. */
bool imap_session_timed_out(const struct imap_session *s);
/* When the server last answered anything on this session (monotonic ms). */
int64_t imap_session_last_activity(const struct imap_session *s);
/* The round trip of the quickest command on this session so far (the login
 * gives a first one), in ms; -1 before any. */
int64_t imap_session_rtt_ms(const struct imap_session *s);
const struct imap_caps *imap_session_caps(const struct imap_session *s);
/* The server answered BAD to a FETCH naming X-GM-MSGID or EMAILID although it
 * announced X-GM-EXT-1 or OBJECTID (a proxy or a server that lists what it
 * doesn't do): this session asks without them from now on. */
void imap_session_cid_refused(struct imap_session *s);
/* Starts a command with the literal mode this server supports. */
void imap_session_cmd_init(const struct imap_session *s, struct imap_cmd *cmd);

/* What SELECT told us, kept current from untagged data while the mailbox
 * stays selected: exists by EXISTS / EXPUNGE / VANISHED; uidnext by
 * [UIDNEXT n] and, as a lower bound, by EXISTS growth (each new message took
 * a UID at or above it); highestmodseq by [HIGHESTMODSEQ n] and FETCH MODSEQ. */
struct imap_select_info {
        uint32_t uidvalidity;
        uint32_t uidnext;
        uint32_t exists;
        uint64_t highestmodseq;
        bool read_only;
        /* PERMANENTFLAGS as sent ("\Seen \Deleted \*"), whole however long; "" if
         * the server sent none. Owned by the session: valid while it keeps
         * this mailbox selected (a copy of the struct borrows it). */
        const char *permanentflags;
};

/* Selected-mailbox bookkeeping used by imap/ops.c. */
const char *imap_session_selected(const struct imap_session *s);
/* mailbox NULL: nothing selected. The session keeps its own copy of
 * info->permanentflags. */
void imap_session_set_selected(struct imap_session *s, const char *mailbox,
                               const struct imap_select_info *info);
struct imap_select_info *imap_session_sel_info(struct imap_session *s);
int imap_session_id(const struct imap_session *s);
/* The event_ctx of the account the session was opened with (its owner). */
void *imap_session_event_ctx(const struct imap_session *s);

#endif
