/* The FETCH commands of the parts view (issue 8): message structures for a
 * set of UIDs in one command, and one section's bytes (whole or a range),
 * always with PEEK so that reading a part never sets \Seen. */
#ifndef IMAPFS_IMAP_OPS_PARTS_H
#define IMAPFS_IMAP_OPS_PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "imap/parse.h"
#include "imap/session.h"

/* UID FETCH uidset (UID items): fn gets each message's FETCH item list
 * (valid during the call). items is made by the caller from fixed words
 * and section numbers ("BODYSTRUCTURE", "BINARY.SIZE[1.2]"). Messages the
 * server no longer has are simply not reported. */
typedef void (*imap_items_fn)(void *ctx, uint32_t uid, const struct imap_value *list);
int imap_fetch_items(struct imap_session *s, const char *uidset, const char *items,
                     imap_items_fn fn, void *ctx);

/* One section of one message. what is the section spec inside the brackets
 * ("HEADER", "1.2", "2.HEADER"); binary asks BINARY.PEEK (decoded by the
 * server, RFC 3516) rather than BODY.PEEK. len 0 fetches the whole section,
 * else <off.len>. fn gets the bytes (valid during the call; "" for NIL).
 * -ENOENT when the server sent nothing for the UID. */
typedef void (*imap_bytes_fn)(void *ctx, const char *data, size_t len);
int imap_fetch_section(struct imap_session *s, uint32_t uid, const char *what, bool binary,
                       uint64_t off, size_t len, imap_bytes_fn fn, void *ctx);

#endif
