/* Building command lines safely. Every string that reaches the server goes
 * through imap_cmd_string(): it becomes a quoted string when that is legal and
 * a literal otherwise, so no byte of user data can end a command or start
 * another (RFC 3501 §4.3, §9 "string"). */
#ifndef IMAPFS_IMAP_QUOTE_H
#define IMAPFS_IMAP_QUOTE_H

#include <stdbool.h>
#include <stddef.h>

/* A command under construction. The tag is not part of it (the session adds
 * it). Synchronizing literals split the command: the session sends up to each
 * split point and waits for the server's "+" before sending on. */
struct imap_cmd {
        char *buf;
        size_t len, cap;
        size_t *splits; /* offsets just after each "{n}\r\n" that needs a continuation */
        size_t nsplits;
        bool literal_plus;        /* use non-synchronizing {n+} literals (LITERAL+/LITERAL-) */
        size_t literal_minus_max; /* with LITERAL- only: {n+} up to this size, else 0 = unlimited */
        bool redact;              /* the command carries a secret: never log its arguments */
        bool oom;                 /* an allocation failed; the command must not be sent */
};

void imap_cmd_init(struct imap_cmd *c, bool literal_plus);
void imap_cmd_free(struct imap_cmd *c);

/* Appends raw protocol text (command names, atoms we generate, numbers,
 * parentheses). Never pass user data here. printf-style. */
void imap_cmd_add(struct imap_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends an IMAP string holding exactly s[0..len): a quoted string with "
 * and \ escaped when s is 7-bit without CR, LF or NUL and not too long, else a
 * literal. */
void imap_cmd_string(struct imap_cmd *c, const char *s, size_t len);

/* Ends the line here and makes the session wait for the server's "+"
 * before sending the rest (SASL exchanges without an initial response). */
void imap_cmd_await_continuation(struct imap_cmd *c);

/* Appends s[0..len) as a literal whatever it holds (message bodies). */
void imap_cmd_literal(struct imap_cmd *c, const char *s, size_t len);

/* Same as imap_cmd_string for a NUL-terminated string. */
void imap_cmd_str(struct imap_cmd *c, const char *s);

/* True if a quoted string can carry these bytes (used by imap_cmd_string). */
bool imap_quotable(const char *s, size_t len);

/* Formats a sorted, de-duplicated array of UIDs as a compact sequence set
 * ("1:3,7,9:12"). Writes at most cap bytes including the NUL. Returns the
 * length it needs (excluding the NUL), like snprintf; 0 for n == 0. The input
 * need not be sorted: it is sorted and de-duplicated in place. */
size_t imap_uidset_format(unsigned *uids, size_t n, char *out, size_t cap);

/* Calls fn(ctx, lo, hi) for each range of a sequence set as servers send it
 * ("1:3,7,9:12"; "12:9" is the same as "9:12"). 0, or -EPROTO for anything
 * else ("*" included: servers don't send it in results). */
int imap_uidset_parse(const char *s, size_t len, void (*fn)(void *ctx, unsigned lo, unsigned hi),
                      void *ctx);

#endif
