/* IMAP response framing and parsing (RFC 3501 §7, §9).
 *
 * Two stages, so that the network code never has to understand the grammar:
 *   1. imap_frame() finds where one complete response ends in a byte stream
 *      (a line, plus any {n} / {n+} literals and the lines that follow them).
 *   2. imap_parse() turns one complete response into a tree of values.
 * Both treat their input as hostile: they never read outside [buf, buf+len),
 * refuse absurd literal sizes before anything is allocated, and bound nesting. */
#ifndef IMAPFS_IMAP_PARSE_H
#define IMAPFS_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest run of non-literal bytes in one response (a line without its literals). */
#define IMAP_MAX_LINE (1u << 20)
/* Deepest list nesting accepted; deeper is an error, not a stack overflow. */
#define IMAP_MAX_DEPTH 64

struct imap_framer {
        size_t scanned;         /* bytes of the current response already examined (the last
                                 * few bytes of an unfinished line are looked at again, so a
                                 * literal spec split across reads is seen whole) */
        uint64_t literal_left;  /* bytes of a literal still to skip (a hint for read sizes) */
        size_t line_bytes;      /* non-literal bytes seen in this response */
        uint64_t literal_total; /* literal bytes announced in this response */
        bool continued;         /* a literal was announced: later lines continue the response */
};

/* Reset before the first call and after every complete response (imap_frame
 * also resets f itself when it returns a length, so an extra reset is harmless). */
void imap_framer_reset(struct imap_framer *f);

/* Looks for the end of the response that starts at buf[0]. buf holds all bytes
 * received so far for this response (the caller appends and calls again).
 * Returns the length of the complete response (including its final CRLF),
 * 0 if more bytes are needed, -E2BIG if the literals of the response add up to
 * more than max_literal (so one response never costs more than max_literal
 * plus IMAP_MAX_LINE bytes, however many literals it announces) or
 * the line is longer than IMAP_MAX_LINE, -EPROTO for a malformed literal spec,
 * -EINVAL if len is smaller than on the previous call for this response.
 * A bare LF ends a line as well as CRLF does. A line whose last '{' (within the
 * last 23 bytes) starts a "{...}" that ends it is a literal spec: "{n}", "{n+}"
 * (and "~{n}", RFC 3516) announce n bytes; anything else there ("{12a}", "{}",
 * a number beyond uint64) is -EPROTO. Except where the grammar allows no
 * literal: a response whose first line is a continuation ("+ ...") or a
 * status response ("tag|* OK|NO|BAD|BYE|PREAUTH ...") ends with free text
 * (resp-text), so a "{...}" at its end is text and the line ends there.
 * Literal bytes are skipped, never examined. On an error the stream is
 * unusable: drop it. */
ssize_t imap_frame(struct imap_framer *f, const char *buf, size_t len, uint64_t max_literal);

enum imap_vtype {
        IMAP_ATOM,   /* includes flags (\Seen), and fetch items like BODY[HEADER.FIELDS (A B)]<0> */
        IMAP_NUMBER, /* digits only, fits in uint64_t; text also in s (more digits: IMAP_ATOM) */
        IMAP_STRING, /* quoted (unescaped) or literal; may contain NUL bytes */
        IMAP_NIL,    /* NIL in any case; s holds it as sent */
        IMAP_LIST,   /* ( ... ); children via first/next */
};

struct imap_value {
        enum imap_vtype type;
        char *s; /* ATOM/NUMBER/STRING bytes, always NUL-terminated; len is authoritative */
        size_t len;
        uint64_t num;             /* IMAP_NUMBER */
        struct imap_value *first; /* IMAP_LIST: first child, NULL if empty */
        struct imap_value *next;  /* next sibling */
};

enum imap_rkind {
        IMAP_RESP_UNTAGGED,     /* "* ..." */
        IMAP_RESP_TAGGED,       /* "A12 OK ..." */
        IMAP_RESP_CONTINUATION, /* "+ ..." */
};

enum imap_status {
        IMAP_ST_NONE = 0, /* not a status response (e.g. "* 3 EXISTS", "* LIST ...") */
        IMAP_ST_OK,
        IMAP_ST_NO,
        IMAP_ST_BAD,
        IMAP_ST_BYE,
        IMAP_ST_PREAUTH,
};

struct imap_response {
        enum imap_rkind kind;
        char *tag;       /* TAGGED only */
        bool has_number; /* "* 12 FETCH": number = 12 */
        uint32_t number;
        char *name; /* upper-cased keyword: "OK", "FETCH", "EXISTS", "LIST", "CAPABILITY"...;
                     * "" for a continuation, never NULL */
        enum imap_status status;
        /* Status responses (OK/NO/BAD/BYE/PREAUTH) and continuations: */
        char *code;                   /* upper-cased response code atom ("UIDVALIDITY"), or NULL */
        struct imap_value *code_args; /* values after the code atom inside [ ], or NULL; if
                                       * they are not values (an unknown code's free text),
                                       * one IMAP_STRING holding the raw text */
        char *text;                   /* human-readable text after the code, "" if none; never
                                       * NULL. A "[" without "]" is kept in the text, code NULL */
        /* Data responses: every value after the name, e.g. for FETCH one IMAP_LIST;
         * for CAPABILITY/SEARCH/FLAGS a run of atoms/numbers/lists. */
        struct imap_value *args;
        void *arena; /* owns every string and node above */
};

/* Parses one complete response as framed by imap_frame() (with or without the
 * trailing CRLF). On success returns 0 and *out owns everything; free with
 * imap_response_free(). On malformed input returns -EPROTO (or -ENOMEM) and
 * *out is NULL. Malformed includes: a NUL anywhere outside a literal, a control
 * byte where a value should start, CR/LF in a quoted string, a tagged response
 * that is not OK/NO/BAD/BYE/PREAUTH, "* N" with N > 2^32-1, unbalanced parentheses, nesting deeper
 * than IMAP_MAX_DEPTH, a literal longer than the bytes given, anything after the final line end. */
int imap_parse(const char *buf, size_t len, struct imap_response **out);
void imap_response_free(struct imap_response *r);

/* Helpers for walking values. */
/* Case-insensitive compare of an ATOM, NUMBER or NIL (never a STRING: that is data). */
bool imap_value_is(const struct imap_value *v, const char *atom);
size_t imap_list_count(const struct imap_value *list); /* 0 for NULL or a non-list */
/* Joins the atoms and numbers of the values from first on, space-separated,
 * into out ("\\Seen \\*", "38505 3955"), leaving out an atom equal to skip
 * (case-insensitive; NULL: none). Stops at a value that no longer fits, so
 * out never holds half a word. Returns the length written. */
size_t imap_values_join(const struct imap_value *first, const char *skip, char *out, size_t cap);
/* The same into a string of its own, as long as it takes (never cut); the
 * caller frees it. NULL only when out of memory. */
char *imap_values_join_alloc(const struct imap_value *first, const char *skip);
/* In a FETCH item list "(UID 5 FLAGS (...) BODY[]<0> {3}...)", the value that
 * follows the item name, compared case-insensitively; NULL if absent. */
const struct imap_value *imap_fetch_item(const struct imap_value *list, const char *item);
/* Same, but matches any item whose name starts with prefix (e.g. "BODY[]<",
 * "BODY[HEADER.FIELDS"); *name_out (optional) gets the full item name. */
const struct imap_value *imap_fetch_item_prefix(const struct imap_value *list, const char *prefix,
                                                const struct imap_value **name_out);

#endif
