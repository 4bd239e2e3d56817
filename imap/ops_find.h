/* Asking the server whether a change whose answer was lost was made: after
 * a connection broke once an APPEND had left, is the message there? The
 * answer decides between "done" and "failed"; the change itself is never
 * sent twice. */
#ifndef IMAPFS_IMAP_OPS_FIND_H
#define IMAPFS_IMAP_OPS_FIND_H

#include <stdbool.h>
#include <stdint.h>

#include "imap/session.h"

/* Selects mailbox and looks for a message with UID >= uid_floor (0: any)
 * that has the header Message-ID message_id (NULL: unknown) and, when
 * message_id is NULL, exactly size bytes. 0 with *uid (the highest match) if
 * there is one, -ENOENT if not, -EIO or another error if the server can't
 * be asked; -ENOENT is never guessed: with neither a Message-ID nor a UID
 * floor nothing can tell our message from an older copy, so that is -EIO. */
int imap_find_appended(struct imap_session *s, const char *mailbox, const char *message_id,
                       uint64_t size, uint32_t uid_floor, uint32_t *uid);

/* Is uid still in the selected mailbox? UID FETCH uid (UID); where the
 * server refuses that with BAD (GNU Mailutils for a missing UID), the UIDs
 * of every message decide. 0 with *present, or -errno (-EIO when neither
 * answer came: unknown is never "gone"). */
int imap_uid_present(struct imap_session *s, uint32_t uid, bool *present);

/* The Message-ID of a whole message's bytes as a search string (unfolded),
 * malloc'd; NULL if it has none. */
char *imap_message_id(const char *msg, size_t len);

/* The Message-ID header of uid in the selected mailbox (unfolded, NULL in
 * *out if it has none) and its RFC822.SIZE. 0, -ENOENT (no such UID) or
 * -errno. */
int imap_fetch_message_id(struct imap_session *s, uint32_t uid, char **out, uint64_t *size);

#endif
