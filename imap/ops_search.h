/* Searches with a query's keys (issue #9): one folder's UID SEARCH, and the
 * whole account's ESEARCH IN (personal) where MULTISEARCH is offered. The
 * keys come from imap/query.h, which quotes every string. */
#ifndef IMAPFS_IMAP_OPS_SEARCH_H
#define IMAPFS_IMAP_OPS_SEARCH_H

#include <stdint.h>

#include "imap/ops.h"
#include "imap/query.h"

/* What the serialiser may use on this session. */
void imap_search_caps(const struct imap_session *s, struct imap_query_caps *out);

/* UID SEARCH RETURN (ALL) [CHARSET UTF-8] keys (ESEARCH), plain UID SEARCH
 * otherwise, in the selected mailbox: fn gets the matching UIDs as ranges.
 * -EOPNOTSUPP for gmail: on a server without X-GM-EXT-1 (nothing sent). */
int imap_search_query(struct imap_session *s, const struct imap_query *q, imap_range_fn fn,
                      void *ctx);

/* RFC 7377: ESEARCH IN (personal) RETURN (ALL) [CHARSET UTF-8] keys, one
 * command for every folder. fn gets each folder's matches (raw name, its
 * UIDVALIDITY, a range of UIDs). -EOPNOTSUPP without MULTISEARCH. */
typedef void (*imap_msearch_fn)(void *ctx, const char *mailbox, uint32_t uidvalidity, unsigned lo,
                                unsigned hi);
int imap_multisearch(struct imap_session *s, const struct imap_query *q, imap_msearch_fn fn,
                     void *ctx);

#endif
