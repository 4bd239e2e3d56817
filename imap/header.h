/* Finding one field in a block of RFC 5322 header lines. */
#ifndef IMAPFS_IMAP_HEADER_H
#define IMAPFS_IMAP_HEADER_H

#include <stddef.h>

/* Returns the raw value of the first field called name (case-insensitive) in
 * hdr[0..len), with its folding kept (the decoder unfolds), leading WSP and the
 * final line end removed; malloc'd, NUL-terminated. NULL if absent. The header
 * block ends at the first empty line. */
char *imap_header_field(const char *hdr, size_t len, const char *name);

#endif
