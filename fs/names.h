/* File names: what a message file and a mailbox directory are called.
 * Pure functions (no FUSE, no I/O) so they are unit-tested on their own. */
#ifndef IMAPFS_FS_NAMES_H
#define IMAPFS_FS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define NAME_MAX_BYTES 255

/* The readable name of a message: "YYYY-MM-DD Subject [UID].eml".
 *  - date: the Date header (date_hdr, raw value, may be NULL) in UTC; if absent
 *    or unparsable, internaldate (UTC);
 *  - subject: subject_hdr (raw value, may be NULL) decoded (RFC 2047), with
 *    whitespace runs collapsed to one space and trimmed, control characters
 *    dropped, '/' replaced by '_'; empty or absent → "(no subject)";
 *  - cut at a UTF-8 character boundary so the whole name is at most 255 bytes.
 * Whitespace is SP, HT, CR, LF, VT, FF, U+2028 and U+2029 (not NBSP); control
 * characters are C0, DEL and C1 (U+0080-U+009F). A date outside years
 * 0000-9999 is written "0000-00-00". The " [UID].eml" suffix is never cut.
 * Returns a malloc'd string (NULL on ENOMEM). */
char *names_message(unsigned uid, const char *date_hdr, const char *subject_hdr,
                    time_t internaldate);

/* The name a message gets when it moves to another folder under new_uid:
 * the same name with the UID in it replaced (" [old].eml" or "old.eml").
 * NULL if name doesn't end that way or the result would not fit 255 bytes;
 * the caller then lets the next listing name it. */
char *names_message_reuid(const char *name, unsigned old_uid, unsigned new_uid);

/* "<UID>.eml" (for -o names=uid). */
char *names_message_uid(unsigned uid);

/* Escapes one decoded mailbox name component for use as a directory name:
 * '%' → "%25", '/' → "%2F"; a component that is exactly "." or ".." has its
 * dots written "%2E"; an empty component (possible in IMAP: "a//b") is "%".
 * Nothing else changes. Reversible with names_unescape_component().
 * Returns a malloc'd string. */
char *names_escape_component(const char *s);

/* Inverse of names_escape_component(); NULL if s has a malformed escape, or
 * is not exactly what names_escape_component() would write ("%2f", "a%2Eb",
 * "%41" are refused, so every mailbox has one directory name), or on ENOMEM. */
char *names_unescape_component(const char *s);

#endif
