/* Search queries (issue #9): the words a user types as a directory name
 * under .search/, parsed into a tree of IMAP SEARCH keys and written out as
 * the arguments of a UID SEARCH command.
 *
 * Nothing of the query text reaches the server as protocol: every string
 * goes out through imap_cmd_string() (quoted or a literal), every atom,
 * number, date and sequence set is checked against RFC 3501 §9 (RFC 9051)
 * and written by us. The `imap:KEYS` form is parsed against the search-key
 * grammar and re-serialised the same way, never passed through. Network-free
 * and allocation-owned: struct imap_query owns everything it points to. */
#ifndef IMAPFS_IMAP_QUERY_H
#define IMAPFS_IMAP_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "imap/quote.h"

/* Longest query text accepted (a path component is at most 255 bytes; the
 * API is wider so that callers may build queries). */
#define IMAP_QUERY_MAX_LEN 8192
/* Deepest nesting of parentheses, NOT and OR operands: deeper is EINVAL,
 * never a stack overflow here or a server's refusal later. */
#define IMAP_QUERY_MAX_DEPTH 32

struct imap_query;

/* Why a query did not parse: the byte offset in the text where it failed
 * and a one-line reason (printable: user text quoted in it has control
 * bytes replaced), for one log line and for tests. */
struct imap_query_err {
        size_t pos;
        char reason[160];
};

/* Parses text[0..len) (UTF-8; NUL bytes are refused). now is the time the
 * relative dates (older:, newer:) count from. Returns 0 and *out (free
 * with imap_query_free), -EINVAL with *err filled (err may be NULL), or
 * -ENOMEM. */
int imap_query_parse(const char *text, size_t len, time_t now, struct imap_query **out,
                     struct imap_query_err *err);
void imap_query_free(struct imap_query *q);

/* What the server can do, as far as the serialiser cares. */
struct imap_query_caps {
        bool x_gm_ext_1;   /* gmail: queries become X-GM-RAW */
        bool utf8_enabled; /* ENABLE UTF8=ACCEPT is in force: no CHARSET (RFC 6855 §3) */
        bool imap4rev2;    /* sizes may exceed 32 bits (RFC 9051 number64) */
};

/* Appends "[CHARSET UTF-8 ]KEY KEY ..." to cmd: the caller has written
 * "UID SEARCH " (and "RETURN (ALL) " where it wants ESEARCH). Strings go
 * through imap_cmd_string, so literals split cmd where they must.
 * Returns 0, -EOPNOTSUPP for gmail: without X-GM-EXT-1 (nothing appended),
 * or -ENOMEM (cmd->oom). */
int imap_query_to_search(const struct imap_query *q, const struct imap_query_caps *caps,
                         struct imap_cmd *cmd);

/* True if some string of the query is not ASCII (CHARSET UTF-8 needed). */
bool imap_query_needs_utf8(const struct imap_query *q);

/* A canonical text of the query's meaning, for keying cached results:
 * IMAP key syntax with key names upper case, ASCII letters of the
 * (case-insensitive) search strings and header names lower case, operands
 * of AND and OR sorted and duplicates dropped, nested ANDs/ORs flattened,
 * NOT NOT removed, relative dates resolved. "from:alice  invoice",
 * "invoice from:Alice" and "imap:TEXT invoice FROM alice" have the same
 * one. Strings are always quoted ("\"" and "\\" escaped, other bytes as
 * they are), so the text is unambiguous but not meant to be sent.
 * malloc'd; NULL on ENOMEM. */
char *imap_query_canonical(const struct imap_query *q);

/* A .search/ directory name → query text: "%XX" (two hex digits, either
 * case) is the byte 0xXX, a '%' not followed by two hex digits stands for
 * itself (as in folder names). "%00" is -EINVAL (a query has no NUL).
 * *out malloc'd; -ENOMEM. */
int imap_query_from_dirname(const char *name, char **out);

/* Query text → the directory name that lists it: '/' → "%2F", a '%' that
 * is followed by two hex digits → "%25", "." and ".." → "%2E", "%2E%2E".
 * imap_query_from_dirname inverts it exactly. malloc'd; NULL on ENOMEM and
 * for "" (no directory has an empty name). */
char *imap_query_to_dirname(const char *text);

#endif
