/* Asking about many mailboxes at once, for live sync without NOTIFY: the
 * tree and every folder's STATUS in one command where the server has
 * LIST-STATUS (RFC 5819), else all the STATUS commands pipelined on one
 * session. Either way a poll round costs about one round trip, however many
 * folders there are. Also the LIST and STATUS parsers ops.c shares. */
#ifndef IMAPFS_IMAP_OPS_STATUS_H
#define IMAPFS_IMAP_OPS_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/ops.h"

/* One LIST response: name (NUL-terminated, valid while r is), delimiter and
 * attributes. False for a malformed one. */
bool imap_list_parse(const struct imap_response *r, const char **name, char *delim,
                     unsigned *attrs);
/* True if a STATUS response's mailbox name (an astring) is mailbox: byte for
 * byte, except INBOX, whose name is case-insensitive. */
bool imap_status_names(const struct imap_value *name, const char *mailbox);
/* Fills out from a STATUS response's item list; true if any item was there. */
bool imap_status_items(const struct imap_value *list, struct imap_status_info *out);

/* Whether answers asked us to slow down ([LIMIT], [UNAVAILABLE],
 * "throttled" texts; see imap/rcode.h): asked, the longest wait a server
 * suggested (0: none said) and the first such answer's text, for the one log
 * line the caller writes. Such answers are not logged here. */
struct imap_slowdown {
        bool asked;
        unsigned count; /* how many answers asked */
        int suggested_ms;
        char text[300];
};

/* LIST "" "*" RETURN ([SPECIAL-USE] STATUS (MESSAGES UIDNEXT UIDVALIDITY
 * [HIGHESTMODSEQ])): fn gets every LIST entry as imap_list_all's does, sfn
 * every STATUS of a mailbox this command listed (another mailbox's STATUS is
 * not an answer but an event, as for imap_status). Only where the session's
 * CAPABILITY has LIST-STATUS (-ENOTSUP otherwise). */
typedef void (*imap_status_fn)(void *ctx, const char *mailbox, const struct imap_status_info *st);
int imap_list_status(struct imap_session *s, imap_list_fn fn, imap_status_fn sfn, void *ctx,
                     struct imap_slowdown *slow);

/* One mailbox to ask about: err 0 and st filled, or the errno of its answer
 * (-ENOENT gone, -EAGAIN/-ENOSPC the server asks us to slow down, -EPROTO
 * answered without data, ...). */
struct imap_status_req {
        const char *mailbox;
        struct imap_status_info st;
        int err;
};

/* STATUS of every mailbox in v, pipelined (imap_session_pipeline): each
 * untagged STATUS is matched to the request whose mailbox it names; the
 * tagged answers close the requests. The selected mailbox is asked about
 * with NOOP as imap_status does. Returns 0 when every request has its
 * answer (see err), -EIO if the session broke, -ENOMEM. */
int imap_status_many(struct imap_session *s, struct imap_status_req *v, size_t n,
                     struct imap_slowdown *slow);

#endif
