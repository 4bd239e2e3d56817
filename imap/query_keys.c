/* The IMAP side of search queries: the table of search keys, the tree
 * nodes, and a parser of RFC 3501's search-key grammar (§6.4.4, §9; the
 * same keys in RFC 9051) for `imap:KEYS`. What it accepts is re-serialised
 * from the tree, never copied through, so the grammar can be a little
 * lenient (runs of spaces, 8-bit text in atoms) without any risk. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/query_tree.h"

/* Sorted by nothing in particular: the table is small. */
static const struct qkey keys[] = {
    {"ALL", QA_NONE, false},        {"ANSWERED", QA_NONE, false},
    {"BCC", QA_STRING, false},      {"BEFORE", QA_DATE, false},
    {"BODY", QA_STRING, false},     {"CC", QA_STRING, false},
    {"DELETED", QA_NONE, false},    {"DRAFT", QA_NONE, false},
    {"FLAGGED", QA_NONE, false},    {"FROM", QA_STRING, false},
    {"HEADER", QA_HEADER, false},   {"KEYWORD", QA_KEYWORD, false},
    {"LARGER", QA_NUMBER, false},   {"NEW", QA_NONE, false},
    {"OLD", QA_NONE, false},        {"ON", QA_DATE, false},
    {"RECENT", QA_NONE, false},     {"SEEN", QA_NONE, false},
    {"SENTBEFORE", QA_DATE, false}, {"SENTON", QA_DATE, false},
    {"SENTSINCE", QA_DATE, false},  {"SINCE", QA_DATE, false},
    {"SMALLER", QA_NUMBER, false},  {"SUBJECT", QA_STRING, false},
    {"TEXT", QA_STRING, false},     {"TO", QA_STRING, false},
    {"UID", QA_SEQSET, false},      {"UNANSWERED", QA_NONE, false},
    {"UNDELETED", QA_NONE, false},  {"UNDRAFT", QA_NONE, false},
    {"UNFLAGGED", QA_NONE, false},  {"UNKEYWORD", QA_KEYWORD, false},
    {"UNSEEN", QA_NONE, false},     {"X-GM-RAW", QA_STRING, true},
    {"", QA_SEQSET, false}, /* a bare sequence set */
};

const struct qkey *qkey_find(const char *name, size_t len)
{
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                if (strlen(keys[i].name) == len && strncasecmp(keys[i].name, name, len) == 0)
                        return &keys[i];
        return NULL;
}

struct qnode *qnode_new(enum qkind kind)
{
        struct qnode *n = calloc(1, sizeof(*n));
        if (n)
                n->kind = kind;
        return n;
}

struct qnode *qnode_key(const char *name)
{
        const struct qkey *k = qkey_find(name, strlen(name));
        struct qnode *n = k ? qnode_new(QN_KEY) : NULL;
        if (n)
                n->key = k;
        return n;
}

bool qnode_add(struct qnode *parent, struct qnode *kid)
{
        if (!kid)
                return false;
        struct qnode **nk = realloc(parent->kids, (parent->nkids + 1) * sizeof(*nk));
        if (!nk) {
                qnode_free(kid);
                return false;
        }
        parent->kids = nk;
        parent->kids[parent->nkids++] = kid;
        return true;
}

bool qnode_set(char **dst, size_t *dlen, const char *s, size_t len)
{
        char *c = malloc(len + 1);
        if (!c)
                return false;
        if (len)
                memcpy(c, s, len);
        c[len] = '\0';
        free(*dst);
        *dst = c;
        *dlen = len;
        return true;
}

void qnode_free(struct qnode *n)
{
        if (!n)
                return;
        for (size_t i = 0; i < n->nkids; i++)
                qnode_free(n->kids[i]);
        free(n->kids);
        free(n->s1);
        free(n->s2);
        free(n);
}

void qparse_fail(struct qparse *ps, const char *pos, const char *fmt, ...)
{
        if (ps->failed)
                return;
        ps->failed = true;
        if (!ps->err)
                return;
        ps->err->pos = (size_t)(pos - ps->text);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err->reason, sizeof(ps->err->reason), fmt, ap);
        va_end(ap);
}

void qparse_show(const char *s, size_t len, char *out)
{
        size_t n = len > 24 ? 24 : len, o = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char u = (unsigned char)s[i];
                out[o++] = (u < 0x20 || u == 0x7f || u == '"' || u >= 0x80) ? '?' : (char)u;
        }
        if (n < len) {
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = '\0';
}

/* ATOM-CHAR (RFC 3501 §9): any CHAR but atom-specials. */
static bool atom_char(unsigned char u)
{
        return u > 0x20 && u < 0x7f && !strchr("(){%*\"\\]", u);
}

bool qkeys_keyword_ok(const char *s, size_t len)
{
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!atom_char((unsigned char)s[i]))
                        return false;
        return true;
}

bool qkeys_header_ok(const char *s, size_t len)
{
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char u = (unsigned char)s[i];
                if (u <= 0x20 || u >= 0x7f || u == ':')
                        return false;
        }
        return true;
}

bool qkeys_date_ok(int year, int month, int day)
{
        static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1)
                return false;
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        return day <= mdays[month - 1] + (month == 2 && leap);
}

/* seq-number: nz-number (up to 2^32-1) or "*". */
static const char *seq_number(const char *p, const char *end)
{
        if (p < end && *p == '*')
                return p + 1;
        if (p >= end || *p < '1' || *p > '9')
                return NULL;
        uint64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
                v = v * 10 + (uint64_t)(*p++ - '0');
                if (v > UINT32_MAX)
                        return NULL;
        }
        return p;
}

int qkeys_seqset_check(const char *s, size_t len)
{
        const char *p = s, *end = s + len;
        for (;;) {
                p = seq_number(p, end);
                if (!p)
                        return -EINVAL;
                if (p < end && *p == ':') {
                        p = seq_number(p + 1, end);
                        if (!p)
                                return -EINVAL;
                }
                if (p == end)
                        return 0;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
}

static const char *const months[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};

static bool is_space(char c)
{
        return c == ' ' || c == '\t';
}

static void skip_spaces(struct qparse *ps)
{
        while (ps->p < ps->end && is_space(*ps->p))
                ps->p++;
}

/* A run of bytes up to a separator: what a key name, atom, number, date or
 * sequence set is read from before it is checked. */
static size_t word_len(const struct qparse *ps)
{
        const char *q = ps->p;
        while (q < ps->end && !is_space(*q) && !strchr("()\"{\r\n", *q))
                q++;
        return (size_t)(q - ps->p);
}

/* astring = 1*ASTRING-CHAR / quoted / literal; the result in n->s1 or s2. */
static bool parse_astring(struct qparse *ps, char **dst, size_t *dlen)
{
        const char *start = ps->p;
        if (ps->p < ps->end && *ps->p == '"') {
                /* quoted: the unescaped text is never longer than the quoted */
                char *buf = malloc((size_t)(ps->end - ps->p));
                if (!buf) {
                        ps->oom = true;
                        return false;
                }
                size_t o = 0;
                const char *q = ps->p + 1;
                for (;;) {
                        if (q >= ps->end || *q == '\r' || *q == '\n') {
                                free(buf);
                                qparse_fail(ps, start, "unterminated quoted string");
                                return false;
                        }
                        if (*q == '"')
                                break;
                        if (*q == '\\') {
                                if (q + 1 >= ps->end || (q[1] != '"' && q[1] != '\\')) {
                                        free(buf);
                                        qparse_fail(ps, q,
                                                    "only \\\" and \\\\ may be escaped in a "
                                                    "quoted string");
                                        return false;
                                }
                                q++;
                        }
                        buf[o++] = *q++;
                }
                ps->p = q + 1;
                bool ok = qnode_set(dst, dlen, buf, o);
                free(buf);
                ps->oom = ps->oom || !ok;
                return ok;
        }
        if (ps->p < ps->end && *ps->p == '{') {
                /* literal: "{n}" or "{n+}" CRLF, then n bytes */
                const char *q = ps->p + 1;
                uint64_t n = 0;
                if (q >= ps->end || *q < '0' || *q > '9') {
                        qparse_fail(ps, start, "malformed literal");
                        return false;
                }
                while (q < ps->end && *q >= '0' && *q <= '9') {
                        n = n * 10 + (uint64_t)(*q++ - '0');
                        if (n > IMAP_QUERY_MAX_LEN) {
                                qparse_fail(ps, start, "literal longer than the query");
                                return false;
                        }
                }
                if (q < ps->end && *q == '+')
                        q++;
                if (ps->end - q < 3 || memcmp(q, "}\r\n", 3) != 0) {
                        qparse_fail(ps, start, "malformed literal");
                        return false;
                }
                q += 3;
                if ((uint64_t)(ps->end - q) < n) {
                        qparse_fail(ps, start, "literal longer than the rest of the query");
                        return false;
                }
                ps->p = q + n;
                bool ok = qnode_set(dst, dlen, q, (size_t)n);
                ps->oom = ps->oom || !ok;
                return ok;
        }
        /* ASTRING-CHAR is ATOM-CHAR or ']'; 8-bit text is taken too (it
         * leaves as a quoted string or literal either way). */
        const char *q = ps->p;
        while (q < ps->end &&
               (atom_char((unsigned char)*q) || *q == ']' || (unsigned char)*q >= 0x80))
                q++;
        if (q == ps->p) {
                qparse_fail(ps, start, "a string was expected");
                return false;
        }
        ps->p = q;
        bool ok = qnode_set(dst, dlen, start, (size_t)(q - start));
        ps->oom = ps->oom || !ok;
        return ok;
}

/* date = date-text / DQUOTE date-text DQUOTE; date-text = d[d]-Mon-yyyy. */
static bool parse_date(struct qparse *ps, struct qnode *n)
{
        const char *start = ps->p, *q = ps->p;
        bool quoted = q < ps->end && *q == '"';
        q += quoted;
        int day = 0, digits = 0;
        while (q < ps->end && *q >= '0' && *q <= '9' && digits < 2) {
                day = day * 10 + (*q++ - '0');
                digits++;
        }
        int month = 0;
        if (digits && ps->end - q >= 5 && q[0] == '-' && q[4] == '-')
                for (int i = 0; i < 12; i++)
                        if (strncasecmp(q + 1, months[i], 3) == 0)
                                month = i + 1;
        if (!month) {
                qparse_fail(ps, start, "a date like 1-Feb-2024 was expected");
                return false;
        }
        q += 5;
        int year = 0;
        for (int i = 0; i < 4; i++, q++) {
                if (q >= ps->end || *q < '0' || *q > '9') {
                        qparse_fail(ps, start, "a date like 1-Feb-2024 was expected");
                        return false;
                }
                year = year * 10 + (*q - '0');
        }
        if (quoted && (q >= ps->end || *q++ != '"')) {
                qparse_fail(ps, start, "unterminated quoted date");
                return false;
        }
        if (!qkeys_date_ok(year, month, day)) {
                qparse_fail(ps, start, "no such day");
                return false;
        }
        n->year = year;
        n->month = month;
        n->day = day;
        ps->p = q;
        return true;
}

static bool parse_number(struct qparse *ps, struct qnode *n)
{
        const char *q = ps->p;
        uint64_t v = 0;
        if (q >= ps->end || *q < '0' || *q > '9') {
                qparse_fail(ps, ps->p, "a number was expected");
                return false;
        }
        while (q < ps->end && *q >= '0' && *q <= '9') {
                /* number64 (RFC 9051); checked before it can wrap */
                uint64_t d = (uint64_t)(*q++ - '0');
                if (v > (INT64_MAX - d) / 10) {
                        qparse_fail(ps, ps->p, "number too large");
                        return false;
                }
                v = v * 10 + d;
        }
        n->num = v;
        ps->p = q;
        return true;
}

static bool parse_atom_arg(struct qparse *ps, struct qnode *n, enum qarg arg)
{
        size_t len = word_len(ps);
        bool ok =
            arg == QA_KEYWORD ? qkeys_keyword_ok(ps->p, len) : qkeys_seqset_check(ps->p, len) == 0;
        if (!ok) {
                char show[32];
                qparse_show(ps->p, len, show);
                qparse_fail(ps, ps->p,
                            arg == QA_KEYWORD ? "not a keyword: \"%s\""
                                              : "not a sequence set: \"%s\"",
                            show);
                return false;
        }
        if (!qnode_set(&n->s1, &n->l1, ps->p, len)) {
                ps->oom = true;
                return false;
        }
        ps->p += len;
        return true;
}

/* The space between a key and its argument. */
static bool need_space(struct qparse *ps, const char *what)
{
        if (ps->p >= ps->end || !is_space(*ps->p)) {
                qparse_fail(ps, ps->p, "%s needs an argument", what);
                return false;
        }
        skip_spaces(ps);
        return true;
}

static struct qnode *parse_key(struct qparse *ps, int depth);

/* OR a OR b c: a right-nested chain becomes one n-ary node, iteratively, so
 * that a long chain costs no depth. */
static struct qnode *parse_or(struct qparse *ps, int depth)
{
        struct qnode * or = qnode_new(QN_OR);
        if (! or) {
                ps->oom = true;
                return NULL;
        }
        for (;;) {
                /* at the first operand of an OR */
                if (!need_space(ps, "OR"))
                        break;
                if (!qnode_add(or, parse_key(ps, depth + 1)))
                        break;
                if (!need_space(ps, "OR"))
                        break;
                size_t len = word_len(ps);
                if (len == 2 && strncasecmp(ps->p, "OR", 2) == 0) {
                        ps->p += 2;
                        continue;
                }
                if (!qnode_add(or, parse_key(ps, depth + 1)))
                        break;
                return or ;
        }
        qnode_free(or);
        return NULL;
}

static struct qnode *parse_key(struct qparse *ps, int depth)
{
        const char *start = ps->p;
        if (depth > IMAP_QUERY_MAX_DEPTH) {
                qparse_fail(ps, start, "nested more than %d deep", IMAP_QUERY_MAX_DEPTH);
                return NULL;
        }
        if (ps->p >= ps->end) {
                qparse_fail(ps, start, "a search key was expected");
                return NULL;
        }
        if (*ps->p == '(') {
                ps->p++;
                skip_spaces(ps);
                struct qnode *n = qkeys_parse_list(ps, depth + 1);
                if (n && (ps->p >= ps->end || *ps->p != ')')) {
                        qparse_fail(ps, ps->p, "missing )");
                        qnode_free(n);
                        return NULL;
                }
                if (n)
                        ps->p++;
                return n;
        }
        size_t len = word_len(ps);
        char show[32];
        qparse_show(ps->p, len, show);
        if (len == 0) {
                qparse_fail(ps, start, "a search key was expected");
                return NULL;
        }
        if (len == 3 && strncasecmp(ps->p, "NOT", 3) == 0) {
                ps->p += 3;
                if (!need_space(ps, "NOT"))
                        return NULL;
                struct qnode *n = qnode_new(QN_NOT);
                if (!n) {
                        ps->oom = true;
                        return NULL;
                }
                if (!qnode_add(n, parse_key(ps, depth + 1))) {
                        qnode_free(n);
                        return NULL;
                }
                return n;
        }
        if (len == 2 && strncasecmp(ps->p, "OR", 2) == 0) {
                ps->p += 2;
                return parse_or(ps, depth);
        }
        size_t setchars = 0;
        while (setchars < len && strchr("0123456789:,*", ps->p[setchars]))
                setchars++;
        const struct qkey *k = setchars == len ? qkey_find("", 0) : qkey_find(ps->p, len);
        if (!k) {
                qparse_fail(ps, start, "unknown search key \"%s\"", show);
                return NULL;
        }
        struct qnode *n = qnode_new(QN_KEY);
        if (!n) {
                ps->oom = true;
                return NULL;
        }
        n->key = k;
        bool ok = true;
        if (k->name[0] != '\0') {
                ps->p += len;
                if (k->arg != QA_NONE)
                        ok = need_space(ps, k->name);
        }
        if (ok) {
                switch (k->arg) {
                case QA_NONE:
                        break;
                case QA_STRING:
                        ok = parse_astring(ps, &n->s1, &n->l1);
                        break;
                case QA_HEADER:
                        ok = parse_astring(ps, &n->s1, &n->l1);
                        if (ok && !qkeys_header_ok(n->s1, n->l1)) {
                                qparse_show(n->s1, n->l1, show);
                                qparse_fail(ps, start, "not a header field name: \"%s\"", show);
                                ok = false;
                        }
                        ok = ok && need_space(ps, "HEADER") && parse_astring(ps, &n->s2, &n->l2);
                        break;
                case QA_KEYWORD:
                case QA_SEQSET:
                        ok = parse_atom_arg(ps, n, k->arg);
                        break;
                case QA_DATE:
                        ok = parse_date(ps, n);
                        break;
                case QA_NUMBER:
                        ok = parse_number(ps, n);
                        break;
                }
        }
        if (!ok) {
                qnode_free(n);
                return NULL;
        }
        return n;
}

struct qnode *qkeys_parse_list(struct qparse *ps, int depth)
{
        struct qnode *and = qnode_new(QN_AND);
        if (!and) {
                ps->oom = true;
                return NULL;
        }
        skip_spaces(ps);
        while (ps->p < ps->end && *ps->p != ')') {
                if (!qnode_add(and, parse_key(ps, depth))) {
                        ps->oom = ps->oom || !ps->failed;
                        qnode_free(and);
                        return NULL;
                }
                /* keys are separated by spaces (RFC 3501: exactly one SP) */
                if (ps->p < ps->end && *ps->p != ')' && !is_space(*ps->p)) {
                        qparse_fail(ps, ps->p, "a space was expected after a search key");
                        qnode_free(and);
                        return NULL;
                }
                skip_spaces(ps);
        }
        if (and->nkids == 0) {
                qparse_fail(ps, ps->p, "a search key was expected");
                qnode_free(and);
                return NULL;
        }
        if (and->nkids == 1) {
                struct qnode *one = and->kids[0];
                and->nkids = 0;
                qnode_free(and);
                return one;
        }
        return and;
}

/* Merges kid's operands into n (same kind) in place of kid at index i. */
static bool tidy_merge(struct qnode *n, size_t i)
{
        struct qnode *kid = n->kids[i];
        size_t total = n->nkids - 1 + kid->nkids;
        struct qnode **nk = malloc(total * sizeof(*nk));
        if (!nk)
                return false; /* left as it was: same meaning, only less tidy */
        size_t o = 0;
        for (size_t j = 0; j < i; j++)
                nk[o++] = n->kids[j];
        for (size_t j = 0; j < kid->nkids; j++)
                nk[o++] = kid->kids[j];
        for (size_t j = i + 1; j < n->nkids; j++)
                nk[o++] = n->kids[j];
        free(n->kids);
        n->kids = nk;
        n->nkids = total;
        kid->nkids = 0;
        qnode_free(kid);
        return true;
}

void qtree_tidy(struct qnode *n)
{
        for (size_t i = 0; i < n->nkids; i++) {
                qtree_tidy(n->kids[i]);
                /* NOT NOT x → x */
                struct qnode *k = n->kids[i];
                while (k->kind == QN_NOT && k->kids[0]->kind == QN_NOT) {
                        struct qnode *inner = k->kids[0]->kids[0];
                        k->kids[0]->nkids = 0;
                        qnode_free(k);
                        n->kids[i] = k = inner;
                }
        }
        if (n->kind != QN_AND && n->kind != QN_OR)
                return;
        for (size_t i = 0; i < n->nkids;) {
                if (n->kids[i]->kind == n->kind) {
                        size_t add = n->kids[i]->nkids;
                        if (!tidy_merge(n, i))
                                i++;
                        else
                                i += add;
                } else {
                        i++;
                }
        }
}
