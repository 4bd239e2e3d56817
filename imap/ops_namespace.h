/* NAMESPACE (RFC 2342): where the user's own folders live. */
#ifndef IMAPFS_IMAP_OPS_NAMESPACE_H
#define IMAPFS_IMAP_OPS_NAMESPACE_H
#include "imap/session.h"

/* The first personal namespace's prefix ("" on most servers; "INBOX." or
 * "INBOX/" on Courier and on Cyrus with altnamespace: no, where every folder
 * lives under INBOX and top-level CREATE is refused) and its delimiter (0 if
 * NIL). *prefix is the server's spelling (modified UTF-7), malloc'd; "" when
 * the server has no NAMESPACE, gives no personal namespace, or says
 * something unreadable (the tree is then shown as LIST gives it). */
int imap_namespace_personal(struct imap_session *s, char **prefix, char *delim);
#endif
