/* The IMAP commands that change the account. Each one is a short, explicit
 * sequence whose failure points are named in its comment; results come from
 * the server's answer (APPENDUID, COPYUID, FETCH FLAGS), never from hope.
 * Errors as imap_result_errno(): -EEXIST, -ENOENT, -EDQUOT, -EFBIG, -EACCES,
 * -EPERM (refused, or the server lacks what a safe sequence needs), -EIO (the
 * session broke: the outcome is unknown), -EPROTO (other NO/BAD). */
#ifndef IMAPFS_IMAP_OPS_WRITE_H
#define IMAPFS_IMAP_OPS_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "imap/session.h"

int imap_create(struct imap_session *s, const char *mailbox);
int imap_delete(struct imap_session *s, const char *mailbox);
int imap_rename(struct imap_session *s, const char *from, const char *to);

/* STATUS mailbox (MESSAGES): how many messages it holds. */
int imap_status_messages(struct imap_session *s, const char *mailbox, uint32_t *messages);

/* True if flag may be sent in a flag list: a system flag other than \Recent,
 * or a keyword made of atom characters (no \ ( ) { " % * ] SP CTL, 8-bit). */
bool imap_flag_valid(const char *flag, size_t len);

/* UID STORE uid FLAGS (flags) in the selected mailbox; flags is a
 * space-separated list already checked with imap_flag_valid. On success *out
 * gets the flags the server reports afterwards, whole (space-separated,
 * \Recent left out; flags itself if the server reported none); the caller
 * frees it. NULL on failure. */
int imap_store_flags(struct imap_session *s, uint32_t uid, const char *flags, char **out);

/* The same for n messages that get the same flags, in one command: outs[i]
 * gets the flags uids[i] has afterwards (each freed by the caller); all
 * NULL on failure. */
int imap_store_flags_many(struct imap_session *s, const uint32_t *uids, size_t n, const char *flags,
                          char **outs);

/* Removes one message from the selected mailbox and nothing else:
 * UID STORE uid +FLAGS.SILENT (\Deleted), then UID EXPUNGE uid. Never a
 * plain EXPUNGE or CLOSE, which would also remove messages that other clients
 * marked \Deleted. Needs UIDPLUS (-EPERM without it). */
int imap_expunge_uid(struct imap_session *s, uint32_t uid);

/* Moves one message of the selected mailbox to target: UID MOVE where the
 * server has MOVE; else UID COPY, and only after it succeeded,
 * imap_expunge_uid(). *new_uidvalidity and *new_uid say where it is in target
 * (COPYUID), 0 if the server did not say. A failure after the copy leaves the
 * message in both places, never in neither. */
int imap_move_uid(struct imap_session *s, uint32_t uid, const char *target,
                  uint32_t *new_uidvalidity, uint32_t *new_uid);

/* UID MOVE of n messages of the selected mailbox to target in one command
 * (needs MOVE: -EPERM without). new_uids[i] gets where uids[i] went
 * (COPYUID), 0 where the server did not say: the caller checks those. The
 * move of a set is not atomic on every server: after a failure, ask which
 * are gone. */
int imap_move_uids(struct imap_session *s, const uint32_t *uids, size_t n, const char *target,
                   uint32_t *new_uidvalidity, uint32_t *new_uids);

/* UID SEARCH DELETED in the selected mailbox: *ours if uid carries \Deleted,
 * *others if any other message does. */
int imap_search_deleted(struct imap_session *s, uint32_t uid, bool *ours, bool *others);
/* Removes one message on a server without UIDPLUS, where the only EXPUNGE is
 * the plain one (the one guarded exception to "never a plain EXPUNGE"):
 * UID FETCH + UID STORE +FLAGS.SILENT (\Deleted), UID SEARCH DELETED, and a
 * plain EXPUNGE only if no other message carries \Deleted; otherwise our flag
 * is taken back and -EPERM. Left: another client may flag a message between
 * the SEARCH and the EXPUNGE. With UIDPLUS: imap_expunge_uid(). */
int imap_expunge_guarded(struct imap_session *s, uint32_t uid);
/* UID COPY uid target, confirmed: uid is in the session's view and the server
 * answered OK (without UIDPLUS there is no COPYUID to confirm it). -ENOENT if
 * the session does not see uid. */
int imap_copy_confirmed(struct imap_session *s, uint32_t uid, const char *target);
/* After a successful STORE: on a server with UNSELECT but neither UIDPLUS nor
 * CONDSTORE (GNU Mailutils keeps a STORE's flags to its session until it
 * leaves the mailbox) leaves the mailbox, so that other clients see the
 * change when the call returns. 0 and nothing sent elsewhere. */
int imap_publish_flags(struct imap_session *s);
/* APPEND mailbox (flags) date {len} with data. flags may be NULL/"";
 * date 0 leaves INTERNALDATE to the server (now). *new_uid from APPENDUID,
 * 0 if the server did not say. Refused before sending when the server's
 * APPENDLIMIT is smaller than len (-EFBIG). */
int imap_append(struct imap_session *s, const char *mailbox, const char *flags, time_t date,
                const char *data, size_t len, uint32_t *new_uid);

#endif
