/* A message's MIME structure from a FETCH BODYSTRUCTURE (or BODY) value
 * (RFC 3501 / RFC 9051 §7.5.2), as an owned tree of parts with their IMAP
 * section numbers, for the files under FOLDER/.parts/ (issue 8).
 *
 * Section numbers (RFC 3501 §6.4.5 "BODY[<section>]"):
 *  - a non-multipart message: its one body is "1";
 *  - a multipart message: the top multipart is "" and its children "1", "2"...;
 *    a child of the multipart at "S" is "S.1", "S.2"... (nested multiparts
 *    are numbered parts too);
 *  - a message/rfc822 (or message/global) part "N" holds its inner message in
 *    `message`: a non-multipart inner body is "N.1"; an inner multipart gets
 *    the section "N" (it has no number of its own: BODY[N.TEXT]) and its
 *    children are "N.1", "N.2"...
 * imap_bodystructure_find() on a section shared by a message part and its
 * inner multipart returns the message part (pre-order, outer first). */
#ifndef IMAPFS_IMAP_BODYSTRUCTURE_H
#define IMAPFS_IMAP_BODYSTRUCTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/parse.h"

/* Deepest part nesting accepted (each level also costs at least one list
 * level in the parser, which stops at IMAP_MAX_DEPTH anyway). */
#define IMAP_BODY_MAX_DEPTH 64

/* One "name" "value" pair of a parameter list, as sent (names keep their
 * case and any RFC 2231 "*0*" suffix: decoding is mime_name.c's job).
 * Strings are NUL-terminated; a NUL inside a sent string ends it there. */
struct imap_mime_param {
        char *name;
        char *value;
};

struct imap_bodypart {
        char *section;                  /* see above; "" for the top multipart */
        char *type, *subtype;           /* lowercased; never NULL or "" (see parse) */
        struct imap_mime_param *params; /* Content-Type parameters; NULL when nparams == 0 */
        size_t nparams;
        char *id, *description; /* NULL for NIL (single parts only) */
        char *encoding;         /* lowercased Content-Transfer-Encoding; "7bit" for NIL */
        uint64_t size;          /* encoded size in octets (single parts; 0 for multiparts) */
        int64_t lines;          /* text and message/rfc822 body lines; -1 when not sent */
        int64_t decoded_size;   /* BINARY.SIZE (RFC 3516) once known; -1 until then */
        bool multipart;
        /* message/rfc822 and message/global: */
        bool has_envelope;
        char *env_subject; /* raw (RFC 2047 encoded) subject of the inner message; NULL for NIL */
        struct imap_bodypart *message; /* the inner message's body, NULL if not sent */
        /* multipart: children in order */
        struct imap_bodypart *parts; /* array of nparts */
        size_t nparts;
        /* Extension data (BODYSTRUCTURE only; absent fields stay NULL/0): */
        char *md5;                           /* single parts only */
        char *disposition;                   /* lowercased ("attachment", "inline"), NULL */
        struct imap_mime_param *disp_params; /* Content-Disposition parameters */
        size_t ndisp_params;
        char **languages; /* Content-Language values, NULL when nlanguages == 0 */
        size_t nlanguages;
        char *location;
        struct imap_bodypart *parent; /* NULL for the root */
        unsigned depth;               /* 0 for the root */
};

/* Parses a BODYSTRUCTURE or BODY value (the list after the item name). On
 * success returns 0 and *out owns the tree (free with
 * imap_bodystructure_free). Returns -EPROTO for anything that is not a body
 * (wrong types where the grammar has no choice, a missing required field,
 * nesting deeper than IMAP_BODY_MAX_DEPTH), -ENOMEM; *out is then NULL.
 * Tolerated: NIL wherever RFC 3501/9051 allow it and also for type, subtype,
 * encoding (servers do send it); a type or subtype NIL or "" (Dovecot's
 * answer to a Content-Type it can't parse) makes the part text/plain, the
 * RFC 2045 §5.2 default that Python's email applies too; missing extension data at any point;
 * unknown extension values after the location; text parts without a line count; message/rfc822
 * without envelope/body/lines (then it is an ordinary leaf). */
int imap_bodystructure_parse(const struct imap_value *v, struct imap_bodypart **out);
void imap_bodystructure_free(struct imap_bodypart *root);

/* The part with this section ("" or "1.2"), NULL if there is none. */
struct imap_bodypart *imap_bodystructure_find(struct imap_bodypart *root, const char *section);

/* Records a decoded size (BINARY.SIZE[section]) for the part with this
 * section: 0, or -ENOENT if there is no such part. */
int imap_bodystructure_set_decoded_size(struct imap_bodypart *root, const char *section,
                                        uint64_t size);

/* Walks a FETCH item list "(UID 5 BODYSTRUCTURE (...) BINARY.SIZE[1] 123 ...)"
 * and records every BINARY.SIZE[section] number it finds. Returns how many
 * were recorded (items naming no part, or not numbers, are skipped). */
size_t imap_bodystructure_set_binary_sizes(struct imap_bodypart *root,
                                           const struct imap_value *fetch_list);

/* Pre-order walk: the part after p (its first child or inner message, else
 * its next sibling, else an ancestor's next sibling), NULL after the last.
 * for (p = root; p; p = imap_bodypart_next(p)) visits every part once. */
struct imap_bodypart *imap_bodypart_next(const struct imap_bodypart *p);

/* True for a part whose bytes make a file of their own: not a multipart. A
 * message/rfc822 part is a leaf too (the attached .eml) and also has
 * `message`, its own parts. */
bool imap_bodypart_is_leaf(const struct imap_bodypart *p);
/* True for message/rfc822 and message/global parts that carry their inner structure. */
bool imap_bodypart_is_message(const struct imap_bodypart *p);

/* Value of a parameter by name (ASCII case-insensitive, exact: no RFC 2231
 * decoding), NULL if absent. */
const char *imap_mime_param_get(const struct imap_mime_param *params, size_t n, const char *name);

#endif
