/* Header text decoding: RFC 2047 encoded words, unfolding, charsets. */
#ifndef IMAPFS_IMAP_RFC2047_H
#define IMAPFS_IMAP_RFC2047_H

#include <stddef.h>

/* Decodes an unstructured header value (e.g. a Subject, already without the
 * "Subject:" prefix, possibly folded with CRLF + WSP) to valid UTF-8:
 *  - unfolds (CRLF/LF followed by WSP become nothing but the WSP);
 *  - decodes =?charset?Q?...?= and =?charset?B?...?= words in any charset
 *    iconv knows (charset names case-insensitive, RFC 2231 "*lang" suffix
 *    ignored); whitespace between two adjacent encoded words is dropped;
 *  - a broken word (bad base64, unknown charset, missing ?=) is kept as its
 *    raw text, never dropped;
 *  - raw 8-bit bytes that are not valid UTF-8 are taken as windows-1252;
 *  - the result is always valid UTF-8 (invalid sequences after decoding
 *    become U+FFFD).
 * Details: CR and LF are removed wherever they are (a fold keeps its WSP);
 * NUL bytes, raw or decoded, are dropped; words are recognised even when not
 * separated from text by space (as mail clients do); adjacent words in one
 * charset are converted as one byte string, so a character split across words
 * survives; a word with space inside or a bad Q escape is broken (kept raw);
 * B words may lack padding. Labels are read as the superset senders mean:
 * ISO-8859-1/US-ASCII as windows-1252, GB2312/GBK as GB18030, Shift_JIS as
 * Windows-31J, KS_C_5601-1987/EUC-KR as CP949.
 * Returns malloc'd NUL-terminated UTF-8, or NULL on ENOMEM. */
char *imap_rfc2047_decode(const char *in, size_t len);

/* Makes s valid UTF-8 in a new malloc'd string: valid sequences are kept, each
 * invalid byte is taken as windows-1252 (its five unassigned bytes become the
 * C1 controls of the same value), NUL bytes are dropped. NULL on ENOMEM. */
char *imap_utf8_sanitize(const char *s, size_t len);

#endif
