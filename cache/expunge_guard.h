/* rm and mv of a message on servers with neither UIDPLUS nor MOVE (GNU
 * Mailutils): the guarded plain EXPUNGE of issue 15 (see DECISIONS.md). */
#ifndef IMAPFS_CACHE_EXPUNGE_GUARD_H
#define IMAPFS_CACHE_EXPUNGE_GUARD_H
#include <stdbool.h>
#include <stdint.h>

#include "imap/session.h"

/* True if removing (target NULL) or moving a message needs the guarded path:
 * no UIDPLUS, and for a move no MOVE either. */
bool expunge_guard_needed(const struct imap_session *s, bool move);

/* The session has the message's mailbox selected (the caller checked that
 * uid still means it). target NULL: remove uid; else UID COPY it to target
 * and, only after the copy is confirmed, remove it. Refused with -EPERM
 * before anything is done when another message of the folder is marked
 * \Deleted. */
int expunge_guard_run(struct imap_session *s, uint32_t uid, const char *target);
#endif
