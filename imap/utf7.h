/* Modified UTF-7 for mailbox names (RFC 3501 §5.1.3). */
#ifndef IMAPFS_IMAP_UTF7_H
#define IMAPFS_IMAP_UTF7_H

#include <stddef.h>

/* Decodes a mailbox name from modified UTF-7 to UTF-8. Returns a malloc'd
 * NUL-terminated string, or NULL if the input is not valid modified UTF-7
 * (bad base64, a '&' run that encodes plain ASCII, unpaired surrogates,
 * 8-bit bytes, a missing '-', non-zero padding bits) or on ENOMEM.
 * Only the canonical form imap_utf7_encode() writes is accepted, so that
 * encode(decode(x)) == x and the name sent back reaches the same mailbox:
 * also NULL for raw control characters (C0, DEL: they must be base64), a
 * run encoding U+0000, a superfluous base64 character, and two base64 runs
 * in a row ("&AOQ-&APY-"; "&AOQ-&-" is fine). */
char *imap_utf7_decode(const char *in, size_t len);

/* Encodes UTF-8 to modified UTF-7. Returns a malloc'd string, or NULL if the
 * input is not valid UTF-8 (strict: no overlongs, surrogates or NUL) or on
 * ENOMEM. '&' becomes "&-"; printable ASCII stands for itself, everything else
 * (controls included) goes into base64 runs. */
char *imap_utf7_encode(const char *in, size_t len);

#endif
