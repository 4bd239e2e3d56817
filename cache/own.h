/* Our own changes, as the server echoes them on other connections.
 *
 * A UID MOVE of ours is answered on its own connection (and applied to the
 * cache from that answer); the connection in IDLE, other pooled connections
 * with the folder selected and NOTIFY's STATUS reports hear of it too. Those
 * echoes are no news: they must not mark a listing stale, end an IDLE or
 * start a resync. Each change registers what it will cause before it is sent
 * (own_expect) and is done with it once its answer is applied or it failed
 * (own_done); own_event then tells an echo from news. Everything here runs
 * under the cache lock. */
#ifndef IMAPFS_CACHE_OWN_H
#define IMAPFS_CACHE_OWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/mailbox.h"
#include "imap/session.h"

struct own;

struct own *own_new(void);
void own_free(struct own *o);

/* Before a change is sent (lock held): the n UIDs of src will go (UID MOVE,
 * UID EXPUNGE; src may be NULL), n messages will arrive in dst (may be NULL),
 * and, with flags, the UIDs of src will get exactly these flags (UID STORE
 * FLAGS). -ENOMEM if it could not be noted (the change then just costs a
 * refresh). */
int own_expect(struct own *o, const char *src, const uint32_t *uids, size_t n, const char *dst,
               const char *flags);

/* The change's answer was applied, or it failed (lock held): what own_expect
 * noted is no longer pending. Echoes that come later are still recognised
 * for a short while from the cache's own state (see own_event). */
void own_done(struct own *o, const char *src, const uint32_t *uids, size_t n, const char *dst,
              const char *flags);

/* True if a change of ours that removes uid from mailbox is on its way
 * (lock held); with uid 0, if any is. */
bool own_leaving(struct own *o, const char *mailbox, uint32_t uid);

/* A change of ours gave uid to a message of dst (COPYUID, APPENDUID). */
void own_added(struct own *o, const char *dst, uint32_t uid);

/* True if ev is the echo of a change of ours (lock held): VANISHED of UIDs
 * we remove or no longer list; EXISTS, or NOTIFY's STATUS, whose counts our
 * pending and recent changes account for; FETCH of flags the cache already
 * holds or we are storing, or of a message we remove. Anything else, and any
 * event of a folder we did not change just now, is news. */
bool own_event(struct own *o, struct cache *c, const struct imap_event *ev);

#endif
