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

/* A name as typed is at most this many bytes (UTF-8, before any escape or
 * modified UTF-7): every operation that takes a name refuses a longer one
 * with ENAMETOOLONG before doing anything else. */
static inline bool names_too_long(const char *name)
{
        size_t n = 0;
        while (name[n] && n <= NAME_MAX_BYTES)
                n++;
        return n > NAME_MAX_BYTES;
}

/* Folder names. A mailbox name component (raw, as LIST gives it) becomes a
 * directory name, and a typed directory name becomes a component, so that
 * both directions are exact: server_from_dir(dir_from_server(c)) == c for
 * every component c, and dir_from_server(server_from_dir(t)) == t for every
 * t that server_from_dir accepts (mkdir of t makes a folder listed as t).
 *
 * The component is decoded from modified UTF-7 and then only what would be
 * ambiguous or unusable is escaped:
 *  - '%' followed by two hex digits (either case) → "%25": "%41" shows as
 *    "%2541", while "100%", "p%q" and "50% off" show as they are;
 *  - '/' → "%2F" (a server whose delimiter is not '/');
 *  - a component that is exactly ".", "..", ".parts" or ".search" has its
 *    first dot (both for "..") written "%2E": "." and ".." can't be names, and
 *    .parts and .search are to be the virtual directories of every folder;
 *  - an empty component ("a//b") → "%00".
 * A component that is not valid (canonical) modified UTF-7 is shown as the
 * server spells it, with these escapes plus "%XX" for each '&', control
 * (C0, DEL) and 8-bit byte; such an escape in a typed name means "this is
 * the server's spelling, send it as is". */

/* The directory name of one raw mailbox name component. malloc'd; NULL on
 * ENOMEM. Never "", ".", "..", ".parts", ".search", never holds '/'. */
char *names_dir_from_server(const char *comp);

/* The raw mailbox name component a typed directory name stands for, in
 * *out (malloc'd). -EINVAL if no component is shown under this name: a
 * malformed or superfluous escape ("%41" for "A", "%2f", "a%2Eb"), a reserved
 * name (".parts"), a NUL, or a name that is not UTF-8 while it has no raw
 * escape, or the hierarchy delimiter delim (0: none) inside the component
 * (it would make two levels). -ENOMEM. "%00" gives "" (the caller decides:
 * CREATE can't make an empty component). */
int names_server_from_dir(const char *name, char delim, char **out);

/* The two halves, for tests: escaping of an already decoded component (raw:
 * it is the server's spelling, not decoded UTF-8), and its inverse, which
 * sets *raw when the name holds a raw-only escape. names_unescape_component
 * returns -EINVAL unless escape(result, raw) == s exactly. */
char *names_escape_component(const char *s, bool raw);
int names_unescape_component(const char *s, char **out, bool *raw);

#endif
