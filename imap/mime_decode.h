/* Content-Transfer-Encoding decoders (base64, quoted-printable) that stream:
 * feed chunks of any size, split anywhere, and get the same bytes as decoding
 * the whole at once; plus the charset conversion of a readable text part.
 *
 * The bytes are those Python's email package yields for
 * part.get_payload(decode=True), which is what users compare against
 * (tests/unit/mime_decode_diff.py checks it over ../shared/corpus):
 *  - base64 as binascii.a2b_base64 without strict mode: every byte outside
 *    the alphabet is skipped (line ends, spaces, stray characters); a '='
 *    counts as padding only after two or three data characters of a quad, and
 *    a complete pad ends the data (whatever follows is ignored, as Python
 *    does); an incomplete final quad of two or three characters gives its
 *    whole bytes (missing padding is no error). One deliberate difference: a
 *    final quad of a single character can't encode a byte and is dropped,
 *    where Python gives up and returns the whole undecoded payload;
 *  - quoted-printable as binascii.a2b_qp: "=XX" (either case) is a byte;
 *    "=" before LF, or before CR and everything up to the next LF, is a soft
 *    line break; "==" is "="; any other "=" stays as it is; a "=" at the very
 *    end is dropped; trailing whitespace is kept, line ends are kept as sent;
 *  - anything else (7bit, 8bit, binary, unknown names) as it is. */
#ifndef IMAPFS_IMAP_MIME_DECODE_H
#define IMAPFS_IMAP_MIME_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_cte {
        IMAP_CTE_IDENTITY = 0,
        IMAP_CTE_BASE64,
        IMAP_CTE_QP,
};

/* The decoder for a Content-Transfer-Encoding name as sent (case-insensitive,
 * surrounding whitespace ignored); NULL or an unknown name: identity. */
enum imap_cte imap_cte_from_name(const char *name);

struct imap_decoder {
        enum imap_cte cte;
        /* base64 */
        unsigned quad_pos; /* data characters of the current quad seen (0-3) */
        unsigned leftchar; /* bits of the quad not yet output */
        unsigned pads;     /* '=' seen at the end of the current quad */
        bool done;         /* a complete pad was seen: the rest is ignored */
        /* quoted-printable */
        unsigned qp_state;    /* 0 text, 1 after '=', 2 after '=' and a hex digit,
                               * 3 in a soft break after "=\r", up to its LF */
        unsigned char qp_hex; /* the hex digit of state 2 */
};

/* Output room a feed of len bytes needs at most (finish needs at most 2). */
#define IMAP_DECODE_MAX_OUT(len) ((len) + 2)

void imap_decoder_init(struct imap_decoder *d, enum imap_cte cte);
/* Decodes len bytes of input into out (IMAP_DECODE_MAX_OUT(len) bytes of
 * room); returns how many bytes it wrote. Never fails: bad input is treated
 * as described above. */
size_t imap_decoder_feed(struct imap_decoder *d, const void *in, size_t len, void *out);
/* Ends the input: writes what a pending "=X" still means (at most 2 bytes)
 * and returns how many. The decoder is then as after init. */
size_t imap_decoder_finish(struct imap_decoder *d, void *out);

/* Decodes a whole buffer into a new malloc'd one (*out_len bytes, plus a NUL
 * not counted). 0, or -ENOMEM. */
int imap_decode_all(enum imap_cte cte, const void *in, size_t len, char **out, size_t *out_len);

/* Converts text in the declared charset to UTF-8 with glibc iconv, into a new
 * malloc'd buffer (*out_len bytes, plus a NUL not counted). UTF-8, US-ASCII,
 * no charset, a name iconv doesn't know or can't be a charset name, and a
 * "lying" charset (the bytes are not valid in it) all give the bytes as they
 * are: a text file is never an error. Narrow labels are read as the superset
 * senders mean (ISO-8859-1 as windows-1252, GB2312 as GB18030, ...), as
 * imap/rfc2047.c does. Returns 0, or -ENOMEM. */
int imap_charset_to_utf8(const char *charset, const void *in, size_t len, char **out,
                         size_t *out_len);

/* The `text` file's bytes from a part's raw (transfer-encoded) bytes: decoded
 * by its Content-Transfer-Encoding name, then converted from its charset as
 * imap_charset_to_utf8 does. 0 with *out malloc'd (*out_len bytes, plus a NUL
 * not counted), or -ENOMEM. */
int imap_mime_text_to_utf8(const char *encoding, const char *charset, const void *in, size_t len,
                           char **out, size_t *out_len);

#endif
