/* The tree both query parsers build and the serialiser writes: RFC 3501
 * search keys, with AND and OR of any arity (the wire's OR is binary; n-ary
 * nodes keep long chains shallow). Internal to imap/query*.c. */
#ifndef IMAPFS_IMAP_QUERY_TREE_H
#define IMAPFS_IMAP_QUERY_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/query.h"

/* What follows a key's name on the wire. */
enum qarg {
        QA_NONE,
        QA_STRING,  /* astring: always quoted or a literal on output */
        QA_KEYWORD, /* flag-keyword: an atom, checked */
        QA_DATE,    /* date: d-Mon-yyyy */
        QA_NUMBER,  /* number (number64 in RFC 9051) */
        QA_HEADER,  /* header-fld-name SP astring: two strings */
        QA_SEQSET,  /* sequence-set, checked and kept as text */
};

struct qkey {
        const char *name; /* "" for a bare sequence set */
        enum qarg arg;
        bool gmail; /* X-GM-RAW: only with X-GM-EXT-1 */
};

enum qkind { QN_AND, QN_OR, QN_NOT, QN_KEY };

struct qnode {
        enum qkind kind;
        const struct qkey *key; /* QN_KEY */
        char *s1, *s2;          /* string / keyword / set / header name; header value */
        size_t l1, l2;          /* their lengths (strings may hold any byte but NUL) */
        uint64_t num;           /* QA_NUMBER */
        int year, month, day;   /* QA_DATE */
        struct qnode **kids;    /* QN_AND, QN_OR (>= 2), QN_NOT (1) */
        size_t nkids;
};

struct imap_query {
        struct qnode *root;
};

/* The key table (query_keys.c), found by name, case-insensitively. */
const struct qkey *qkey_find(const char *name, size_t len);

/* Tree building; NULL on ENOMEM. qnode_add takes kid (freed on failure). */
struct qnode *qnode_new(enum qkind kind);
struct qnode *qnode_key(const char *name);
bool qnode_add(struct qnode *parent, struct qnode *kid);
bool qnode_set(char **dst, size_t *dlen, const char *s, size_t len);
void qnode_free(struct qnode *n);

/* Parser state shared by the two grammars. */
struct qparse {
        const char *text, *p, *end;
        time_t now;
        struct imap_query_err *err;
        bool failed, oom;
};

/* Records the first failure at pos (later ones are consequences). fmt's
 * arguments must already be printable (see qparse_show). */
void qparse_fail(struct qparse *ps, const char *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A printable excerpt of s[0..len) for a reason: at most 24 bytes, control
 * bytes and quotes as '?'. out must hold 32 bytes. */
void qparse_show(const char *s, size_t len, char *out);

/* The RFC 3501 search-key grammar (query_keys.c): parses keys separated by
 * spaces until the end of the text or a ')' it did not open (left unread),
 * into an AND node (or the single key). depth counts the nesting so far. */
struct qnode *qkeys_parse_list(struct qparse *ps, int depth);

/* Checks used by both grammars. */
bool qkeys_keyword_ok(const char *s, size_t len);  /* flag-keyword (atom) */
bool qkeys_header_ok(const char *s, size_t len);   /* field name: ftext, RFC 5322 */
bool qkeys_date_ok(int year, int month, int day);  /* a real day, years 1-9999 */
int qkeys_seqset_check(const char *s, size_t len); /* 0 or -EINVAL */

/* Tree tidying after parsing: flattens AND-in-AND and OR-in-OR, drops
 * NOT NOT. Meaning unchanged. */
void qtree_tidy(struct qnode *n);

#endif
