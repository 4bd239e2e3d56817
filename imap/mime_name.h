/* Names of the files a message's parts become under FOLDER/.parts/<stem>/
 * (issue 8): decoded attachment filenames, extensions by type, the choice of
 * the readable `text` part, and the name sanitiser they share. */
#ifndef IMAPFS_IMAP_MIME_NAME_H
#define IMAPFS_IMAP_MIME_NAME_H

#include <stddef.h>

#include "imap/bodystructure.h"

/* Longest file name (bytes) we make, as NAME_MAX. */
#define IMAP_NAME_MAX 255

/* A name component from text in any bytes, as message names are cleaned
 * (fs/names.c): invalid UTF-8 is taken as windows-1252, whitespace runs
 * become one space, leading and trailing space go, C0/DEL/C1 controls are
 * dropped, '/' becomes '_'; at most max_bytes, cut before the first
 * character that doesn't fit (never inside one). malloc'd, "" when nothing
 * is left; NULL on ENOMEM. */
char *imap_name_sanitize(const char *s, size_t len, size_t max_bytes);

/* Decodes the value of parameter `name` ("filename", "name") from a list as
 * BODYSTRUCTURE sends it, in every real form: RFC 2231 extended
 * (name*=charset'lang'%XX...), continuations (name*0*=, name*1=, ... in any
 * order, up to the first missing index; a segment with '*' is %-decoded, one
 * without is literal; the charset is segment 0's), RFC 2047 encoded words in
 * a plain value (not standard, but what most mailers send), raw 8-bit (UTF-8
 * if valid, else windows-1252). RFC 2231 forms win over a plain value. The
 * result is valid UTF-8 without NUL, NOT yet sanitised. Returns 0 with *out
 * malloc'd, or NULL when there is no such parameter; -ENOMEM. */
int imap_mime_param_decode(const struct imap_mime_param *params, size_t n, const char *name,
                           char **out);

/* The decoded filename of a part: Content-Disposition filename, else
 * Content-Type name (as Python's get_filename), sanitised with no length
 * limit of its own; NULL (with 0) when none or when nothing is left after
 * sanitising. 0 or -ENOMEM. */
int imap_mime_filename(const struct imap_bodypart *p, char **out);

/* Extension (without the dot) for a lowercased type/subtype: a table of
 * common types, "txt" for other text types, "eml" for message/rfc822 and
 * message/global, "bin" when nothing fits. Never NULL. */
const char *imap_mime_extension(const char *type, const char *subtype);

/* "type/subtype; name=value; ..." from the parsed Content-Type, parameters in
 * the order sent, a value quoted (with \\ and \" escaped) when it is empty or
 * holds a space, control or RFC 2045 tspecial: for the user.mime.type
 * extended attribute. malloc'd, NULL on ENOMEM. */
char *imap_mime_content_type(const struct imap_bodypart *p);
/* The same for Content-Disposition ("attachment; filename=a.pdf"); NULL with
 * errno 0 when the part has none, NULL with ENOMEM. */
char *imap_mime_content_disposition(const struct imap_bodypart *p);

/* The file name of a leaf part (imap_bodypart_is_leaf), at most
 * IMAP_NAME_MAX bytes:
 *  - message/rfc822 or message/global: "<section>-<subject>.eml", the inner
 *    message's envelope subject RFC 2047-decoded and sanitised, "(no
 *    subject)" when it has none;
 *  - a part with a filename: "<section>-<filename>";
 *  - otherwise "<section>.<extension>" ("1.1.txt", "3.jpg", "4.bin").
 * A name too long is cut at a character boundary before its extension, which
 * is kept (when it is at most 16 bytes), so "*.pdf" still matches.
 * malloc'd; NULL for a multipart, on ENOMEM, and with errno ENAMETOOLONG for
 * a part whose section is longer than IMAP_NAME_MAX - 17 bytes (only absurd
 * nesting makes one: such a part gets no file). */
char *imap_mime_part_filename(const struct imap_bodypart *p);

/* The part whose decoded, UTF-8 converted bytes make the `text` file, NULL
 * when the message has none. The same part Python's email picks with
 * msg.get_body(preferencelist=('plain', 'html')), so that what users and the
 * tests compare with agrees: walking the tree in order,
 *  - a part with Content-Disposition "attachment" and all below it: skipped;
 *  - a text/plain leaf: the answer (the walk ends);
 *  - the first text/html leaf: remembered, the answer if no text/plain comes;
 *  - multipart/related: only its root, the child whose Content-ID equals its
 *    "start" parameter, else its first child (the other children are what
 *    the root refers to: images, style sheets);
 *  - any other multipart (alternative, mixed, signed, digest, unknown): every
 *    child in order;
 *  - anything else, message/rfc822 included (an attached message's text is
 *    not this message's text): skipped.
 * So "the first text/plain part of the main alternative, else its text/html"
 * holds for the usual shapes, and a plain part anywhere wins over an html one
 * earlier (mixed(html, plain) gives the plain). */
const struct imap_bodypart *imap_mime_text_part(const struct imap_bodypart *root);

#endif
