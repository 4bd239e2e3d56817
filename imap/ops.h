/* The IMAP commands imapfs uses, each one round trip, results as plain
 * structs. Errors: 0 on OK; -EIO the session broke; -ENOENT the server said
 * the mailbox/message is gone (NO [NONEXISTENT] / TRYCREATE or no data);
 * -EPROTO other NO/BAD (the server's text is logged). */
#ifndef IMAPFS_IMAP_OPS_H
#define IMAPFS_IMAP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "imap/session.h"

enum imap_mbox_attr {
        IMAP_MBX_NOSELECT = 1u << 0,
        IMAP_MBX_NOINFERIORS = 1u << 1,
        IMAP_MBX_HASCHILDREN = 1u << 2,
        IMAP_MBX_HASNOCHILDREN = 1u << 3,
        IMAP_MBX_NONEXISTENT = 1u << 4,
        IMAP_MBX_TRASH = 1u << 5,
        IMAP_MBX_SENT = 1u << 6,
        IMAP_MBX_DRAFTS = 1u << 7,
        IMAP_MBX_JUNK = 1u << 8,
        IMAP_MBX_ARCHIVE = 1u << 9,
        IMAP_MBX_ALL = 1u << 10,
        IMAP_MBX_FLAGGED = 1u << 11,
};

/* One LIST entry: name is the raw (modified UTF-7) mailbox name; delim is
 * '\0' when the server has no hierarchy (NIL). */
typedef void (*imap_list_fn)(void *ctx, const char *name, char delim, unsigned attrs);
int imap_list_all(struct imap_session *s, imap_list_fn fn, void *ctx);

/* SELECT mailbox unless the session has it selected already (then no round
 * trip: info is the last SELECT kept current from untagged data, which says
 * nothing of changes the server has not told this session yet; a NOOP
 * asks). */
int imap_select(struct imap_session *s, const char *mailbox, struct imap_select_info *info);

/* What a listing needs of one message. Pointers are valid during the callback. */
struct imap_msg_info {
        uint32_t uid;
        uint64_t size;
        time_t internaldate;
        const char *flags;  /* space-separated, as the server spelled them */
        const char *header; /* the DATE and SUBJECT header lines, raw */
        size_t header_len;
        /* The server-wide content id, "" if the server has none: "G" and
         * X-GM-MSGID's digits (X-GM-EXT-1), or "E" and EMAILID (OBJECTID,
         * RFC 8474). The same message in two folders has the same id. */
        const char *cid;
};
typedef void (*imap_msg_fn)(void *ctx, const struct imap_msg_info *m);

/* One UID FETCH 1:* of UID, RFC822.SIZE, INTERNALDATE, FLAGS and the Date and
 * Subject header fields of every message in the selected mailbox, and its
 * content id where the server has one (X-GM-MSGID, EMAILID). */
int imap_fetch_listing(struct imap_session *s, imap_msg_fn fn, void *ctx);

/* The same for the messages in uidset only ("1:*" is the whole folder). */
int imap_fetch_listing_set(struct imap_session *s, const char *uidset, imap_msg_fn fn, void *ctx);

/* What changed since modseq (CONDSTORE, RFC 7162): UID FETCH 1:* (UID FLAGS)
 * (CHANGEDSINCE modseq [VANISHED]). flags_fn gets every message whose flags
 * changed (new ones included); with vanished (a QRESYNC session) gone_fn gets
 * each range of UIDs expunged since then. */
typedef void (*imap_flags_fn)(void *ctx, uint32_t uid, const char *flags);
typedef void (*imap_range_fn)(void *ctx, unsigned lo, unsigned hi);
int imap_fetch_changes(struct imap_session *s, uint64_t modseq, bool vanished,
                       imap_flags_fn flags_fn, imap_range_fn gone_fn, void *ctx);

/* Every UID of the selected mailbox, as ranges (UID SEARCH, ESEARCH where
 * offered so that a big folder is a short answer). */
int imap_search_uids(struct imap_session *s, imap_range_fn fn, void *ctx);

/* UID FETCH uid BODY.PEEK[]<off.len> into buf (which holds len bytes).
 * *got is how many bytes the server sent (short at the end of the message).
 * -ENOENT if the server sent nothing for that UID (expunged). */
int imap_fetch_range(struct imap_session *s, uint32_t uid, uint64_t off, size_t len, void *buf,
                     size_t *got);

/* The first len bytes of several messages in one command:
 * UID FETCH uid-set (UID BODY.PEEK[]<0.len>). fn gets each message's bytes
 * (data valid during the call). Messages the server no longer has are simply
 * not reported. uids is sorted in place. */
typedef void (*imap_body_fn)(void *ctx, uint32_t uid, const char *data, size_t len);
int imap_fetch_heads(struct imap_session *s, uint32_t *uids, size_t n, size_t len, imap_body_fn fn,
                     void *ctx);
/* The same command, built into cmd (the caller frees it): for chaining. */
int imap_fetch_heads_cmd(struct imap_session *s, uint32_t *uids, size_t n, size_t len,
                         struct imap_cmd *cmd);
/* imap_fetch_heads, and while its answer arrives next may give more commands
 * to send behind it (imap_session_cmd_chain), whose FETCH answers go to fn
 * too. The result is the first command's, or the first other one's that was
 * not OK. */
int imap_fetch_heads_chain(struct imap_session *s, uint32_t *uids, size_t n, size_t len,
                           imap_body_fn fn, void *ctx, imap_next_fn next, void *next_ctx);

/* STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]): a cheap
 * "did anything change" for a mailbox that is not selected. highestmodseq
 * is asked for (and non-zero) only where the server has CONDSTORE. */
struct imap_status_info {
        uint32_t messages, uidnext, uidvalidity;
        uint64_t highestmodseq;
};
int imap_status(struct imap_session *s, const char *mailbox, struct imap_status_info *out);

/* NOOP: lets the server deliver pending EXISTS/EXPUNGE/FETCH as events. */
int imap_noop(struct imap_session *s);

#endif
