/* The query language of .search/ directories: words as in a web mail
 * search box (README "Searching"), parsed into search keys.
 *
 *   query = and
 *   and   = or *(ws ["AND" ws] or)          side by side is AND
 *   or    = unary *(ws "OR" ws unary)        OR binds tighter, as in Gmail
 *   unary = "-" unary / "(" and ")" / term
 *   term  = prefix ":" value / "\"phrase\"" / word
 *
 * imap: and gmail: take the rest of the group they are in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/query_tree.h"

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void skip_ws(struct qparse *ps)
{
        while (ps->p < ps->end && is_ws(*ps->p))
                ps->p++;
}

/* A word ends at white space or at the ')' of a group. */
static size_t word_len(const char *p, const char *end)
{
        const char *q = p;
        while (q < end && !is_ws(*q) && *q != ')')
                q++;
        return (size_t)(q - p);
}

/* The operator w (OR, AND) here: followed by white space, '(' or the end. */
static bool word_is(const struct qparse *ps, const char *w)
{
        size_t n = strlen(w);
        if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
                return false;
        return ps->p + n == ps->end || is_ws(ps->p[n]) || ps->p[n] == '(' || ps->p[n] == ')';
}

static struct qnode *oom(struct qparse *ps)
{
        ps->oom = true;
        return NULL;
}

/* A key with one string argument; NULL (ps->oom) on ENOMEM. */
static struct qnode *key_string(struct qparse *ps, const char *key, const char *s, size_t len)
{
        struct qnode *n = qnode_key(key);
        if (!n || !qnode_set(&n->s1, &n->l1, s, len)) {
                qnode_free(n);
                return oom(ps);
        }
        return n;
}

/* A value: "quoted phrase" (\" and \\ escape, any other \ is itself) or a
 * word. Sets *s (malloc'd) and *len. */
static bool parse_value(struct qparse *ps, char **s, size_t *len, const char *what)
{
        const char *start = ps->p;
        *s = NULL;
        if (ps->p < ps->end && *ps->p == '"') {
                char *buf = malloc((size_t)(ps->end - ps->p));
                if (!buf) {
                        ps->oom = true;
                        return false;
                }
                size_t o = 0;
                const char *q = ps->p + 1;
                for (; q < ps->end && *q != '"'; q++) {
                        if (*q == '\\' && q + 1 < ps->end && (q[1] == '"' || q[1] == '\\'))
                                q++;
                        buf[o++] = *q;
                }
                if (q >= ps->end) {
                        free(buf);
                        qparse_fail(ps, start, "unterminated \"");
                        return false;
                }
                ps->p = q + 1;
                if (ps->p < ps->end && !is_ws(*ps->p) && *ps->p != ')') {
                        free(buf);
                        qparse_fail(ps, ps->p, "a space was expected after the closing \"");
                        return false;
                }
                *s = buf;
                *len = o;
        } else {
                *len = word_len(ps->p, ps->end);
                *s = malloc(*len + 1);
                if (!*s) {
                        ps->oom = true;
                        return false;
                }
                memcpy(*s, ps->p, *len);
                ps->p += *len;
        }
        (*s)[*len] = '\0';
        if (*len == 0) {
                free(*s);
                *s = NULL;
                qparse_fail(ps, start, "%s needs a value", what);
                return false;
        }
        return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back
 * (H. Hinnant's algorithms): date arithmetic without the local time zone. */
static long days_from_civil(long y, int m, int d)
{
        y -= m <= 2;
        long era = (y >= 0 ? y : y - 399) / 400;
        long yoe = y - era * 400;
        long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(long z, long *y, int *m, int *d)
{
        z += 719468;
        long era = (z >= 0 ? z : z - 146096) / 146097;
        long doe = z - era * 146097;
        long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long mp = (5 * doy + 2) / 153;
        *d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *y = yoe + era * 400 + (*m <= 2);
}

static bool set_date(struct qparse *ps, struct qnode *n, long y, int m, int d, const char *at)
{
        if (y < 1 || y > 9999 || !qkeys_date_ok((int)y, m, d)) {
                qparse_fail(ps, at, "no such day (years 1 to 9999)");
                return false;
        }
        n->year = (int)y;
        n->month = m;
        n->day = d;
        return true;
}

/* YYYY-MM-DD */
static bool value_date(struct qparse *ps, struct qnode *n, const char *v, size_t len,
                       const char *at)
{
        int f[3] = {0, 0, 0};
        static const int width[3] = {4, 2, 2};
        size_t i = 0;
        for (int k = 0; k < 3; k++) {
                for (int j = 0; j < width[k]; j++, i++) {
                        if (i >= len || v[i] < '0' || v[i] > '9')
                                goto bad;
                        f[k] = f[k] * 10 + (v[i] - '0');
                }
                if (k < 2 && (i >= len || v[i++] != '-'))
                        goto bad;
        }
        if (i != len)
                goto bad;
        return set_date(ps, n, f[0], f[1], f[2], at);
bad:
        qparse_fail(ps, at, "a date like 2024-02-01 was expected");
        return false;
}

/* N followed by d, w, m (months) or y, counted back from now (UTC). */
static bool value_age(struct qparse *ps, struct qnode *n, const char *v, size_t len, const char *at)
{
        long num = 0;
        size_t i = 0;
        while (i < len && v[i] >= '0' && v[i] <= '9' && num <= 10000000)
                num = num * 10 + (v[i++] - '0');
        if (i == 0 || i + 1 != len || !strchr("dwmy", v[i]) || v[i] == '\0' || num > 10000000) {
                qparse_fail(ps, at, "an age like 30d, 2w, 6m or 1y was expected");
                return false;
        }
        struct tm tm;
        time_t now = ps->now;
        if (!gmtime_r(&now, &tm)) {
                qparse_fail(ps, at, "the current date is out of range");
                return false;
        }
        long y = tm.tm_year + 1900L;
        int m = tm.tm_mon + 1, d = tm.tm_mday;
        switch (v[i]) {
        case 'd':
        case 'w':
                civil_from_days(days_from_civil(y, m, d) - num * (v[i] == 'w' ? 7 : 1), &y, &m, &d);
                break;
        case 'm': {
                long total = y * 12 + (m - 1) - num;
                y = total >= 0 ? total / 12 : -1;
                m = (int)(total % 12 + (total % 12 < 0 ? 12 : 0)) + 1;
                break;
        }
        case 'y':
                y -= num;
                break;
        }
        /* 31 March minus one month is the last day of February */
        while (d > 28 && y >= 1 && y <= 9999 && !qkeys_date_ok((int)y, m, d))
                d--;
        return set_date(ps, n, y, m, d, at);
}

/* N with an optional k, M or G (powers of 1024). */
static bool value_size(struct qparse *ps, struct qnode *n, const char *v, size_t len,
                       const char *at)
{
        uint64_t num = 0, mult = 1;
        size_t i = 0;
        bool big = false;
        for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
                big = big || num > INT64_MAX / 10;
                num = big ? num : num * 10 + (uint64_t)(v[i] - '0');
        }
        if (i < len && i + 1 == len) {
                switch (v[i]) {
                case 'k':
                case 'K':
                        mult = 1024;
                        break;
                case 'm':
                case 'M':
                        mult = 1024 * 1024;
                        break;
                case 'g':
                case 'G':
                        mult = 1024 * 1024 * 1024;
                        break;
                default:
                        mult = 0;
                }
                i++;
        }
        if (i == 0 || i != len || mult == 0 || (v[0] < '0' || v[0] > '9')) {
                qparse_fail(ps, at, "a size like 500, 100k, 10M or 2G was expected");
                return false;
        }
        if (big || num > INT64_MAX / mult) {
                qparse_fail(ps, at, "size too large");
                return false;
        }
        n->num = num * mult;
        return true;
}

/* 1000-2000, 5, 1000-*, lists with commas: a sequence set with '-' for ':'. */
static bool value_uids(struct qparse *ps, struct qnode *n, const char *v, size_t len,
                       const char *at)
{
        char *set = malloc(len + 1);
        if (!set) {
                ps->oom = true;
                return false;
        }
        for (size_t i = 0; i < len; i++)
                set[i] = v[i] == '-' ? ':' : v[i];
        set[len] = '\0';
        if (qkeys_seqset_check(set, len) < 0) {
                free(set);
                qparse_fail(ps, at, "UIDs like 1000-2000 or 5,7,10-* were expected");
                return false;
        }
        free(n->s1);
        n->s1 = set;
        n->l1 = len;
        return true;
}

struct is_word {
        const char *word, *key;
};

static const struct is_word is_words[] = {
    {"unread", "UNSEEN"},
    {"read", "SEEN"},
    {"seen", "SEEN"},
    {"unseen", "UNSEEN"},
    {"flagged", "FLAGGED"},
    {"starred", "FLAGGED"},
    {"unflagged", "UNFLAGGED"},
    {"answered", "ANSWERED"},
    {"unanswered", "UNANSWERED"},
    {"draft", "DRAFT"},
    {"deleted", "DELETED"},
    {"undeleted", "UNDELETED"},
    {"new", "NEW"},
    {"old", "OLD"},
    {"recent", "RECENT"},
};

/* What each prefix turns into: a string key, or a value checked by fn. */
struct prefix {
        const char *name;
        const char *key; /* the IMAP key */
        bool (*fn)(struct qparse *, struct qnode *, const char *, size_t, const char *);
};

static bool value_keyword(struct qparse *ps, struct qnode *n, const char *v, size_t len,
                          const char *at)
{
        if (!qkeys_keyword_ok(v, len)) {
                char show[32];
                qparse_show(v, len, show);
                qparse_fail(ps, at, "not a keyword: \"%s\"", show);
                return false;
        }
        if (!qnode_set(&n->s1, &n->l1, v, len)) {
                ps->oom = true;
                return false;
        }
        return true;
}

static const struct prefix prefixes[] = {
    {"from", "FROM", NULL},
    {"to", "TO", NULL},
    {"cc", "CC", NULL},
    {"bcc", "BCC", NULL},
    {"subject", "SUBJECT", NULL},
    {"body", "BODY", NULL},
    {"text", "TEXT", NULL},
    {"keyword", "KEYWORD", value_keyword},
    {"before", "BEFORE", value_date},
    {"after", "SINCE", value_date},
    {"on", "ON", value_date},
    {"older", "BEFORE", value_age},
    {"newer", "SINCE", value_age},
    {"larger", "LARGER", value_size},
    {"smaller", "SMALLER", value_size},
    {"uid", "UID", value_uids},
    /* handled on their own below */
    {"is", NULL, NULL},
    {"header", NULL, NULL},
    {"imap", NULL, NULL},
    {"gmail", NULL, NULL},
};

static const struct prefix *prefix_find(const char *s, size_t len)
{
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
                if (strlen(prefixes[i].name) == len && strncasecmp(prefixes[i].name, s, len) == 0)
                        return &prefixes[i];
        return NULL;
}

static struct qnode *parse_is(struct qparse *ps, const char *at)
{
        char *v;
        size_t len;
        if (!parse_value(ps, &v, &len, "is:"))
                return NULL;
        const char *key = NULL;
        for (size_t i = 0; i < sizeof(is_words) / sizeof(is_words[0]) && !key; i++)
                if (strlen(is_words[i].word) == len && strncasecmp(is_words[i].word, v, len) == 0)
                        key = is_words[i].key;
        if (!key) {
                char show[32];
                qparse_show(v, len, show);
                qparse_fail(ps, at,
                            "unknown is:%s (unread, read, flagged, unflagged, answered, "
                            "draft, deleted, new, ...)",
                            show);
        }
        free(v);
        if (!key)
                return NULL;
        struct qnode *n = qnode_key(key);
        return n ? n : oom(ps);
}

/* header:NAME:VALUE; an empty VALUE matches every message with the field. */
static struct qnode *parse_header(struct qparse *ps, const char *at)
{
        const char *name = ps->p;
        size_t wl = word_len(ps->p, ps->end);
        const char *colon = memchr(name, ':', wl);
        if (!colon || !qkeys_header_ok(name, (size_t)(colon - name))) {
                qparse_fail(ps, at, "header:NAME:VALUE was expected");
                return NULL;
        }
        struct qnode *n = qnode_key("HEADER");
        if (!n || !qnode_set(&n->s1, &n->l1, name, (size_t)(colon - name)))
                goto nomem;
        ps->p = colon + 1;
        if (ps->p >= ps->end || is_ws(*ps->p) || *ps->p == ')') {
                if (!qnode_set(&n->s2, &n->l2, "", 0))
                        goto nomem;
                return n;
        }
        char *v;
        size_t len;
        if (!parse_value(ps, &v, &len, "header:NAME:")) {
                qnode_free(n);
                return NULL;
        }
        free(n->s2);
        n->s2 = v;
        n->l2 = len;
        return n;
nomem:
        qnode_free(n);
        return oom(ps);
}

/* gmail:QUERY — the rest of the group, sent as X-GM-RAW as it is. Quotes
 * and parentheses inside it are Gmail's; only an unmatched ')' ends it. */
static struct qnode *parse_gmail(struct qparse *ps, const char *at)
{
        const char *q = ps->p;
        int depth = 0;
        bool quoted = false;
        for (; q < ps->end; q++) {
                if (*q == '"')
                        quoted = !quoted;
                else if (!quoted && *q == '(')
                        depth++;
                else if (!quoted && *q == ')' && depth-- == 0)
                        break;
        }
        const char *e = q;
        while (e > ps->p && is_ws(e[-1]))
                e--;
        if (e == ps->p) {
                qparse_fail(ps, at, "gmail: needs a query");
                return NULL;
        }
        struct qnode *n = key_string(ps, "X-GM-RAW", ps->p, (size_t)(e - ps->p));
        ps->p = q;
        return n;
}

static struct qnode *parse_term(struct qparse *ps, int depth)
{
        const char *at = ps->p;
        if (*ps->p == '"') {
                char *v;
                size_t len;
                if (!parse_value(ps, &v, &len, "a phrase"))
                        return NULL;
                struct qnode *n = key_string(ps, "TEXT", v, len);
                free(v);
                return n;
        }
        size_t wl = word_len(ps->p, ps->end), pl = 0;
        while (pl < wl && ((ps->p[pl] | 0x20) >= 'a' && (ps->p[pl] | 0x20) <= 'z'))
                pl++;
        if (pl == 0 || pl == wl || ps->p[pl] != ':') {
                if (word_is(ps, "OR") || word_is(ps, "AND")) {
                        qparse_fail(ps, at, "%s needs a term on each side",
                                    word_is(ps, "OR") ? "OR" : "AND");
                        return NULL;
                }
                struct qnode *n = key_string(ps, "TEXT", ps->p, wl);
                ps->p += wl;
                return n;
        }
        const struct prefix *pf = prefix_find(ps->p, pl);
        if (!pf) {
                char show[32];
                qparse_show(ps->p, pl, show);
                qparse_fail(ps, at, "unknown search word \"%s:\" (quote it to search for the text)",
                            show);
                return NULL;
        }
        ps->p += pl + 1;
        if (strcmp(pf->name, "is") == 0)
                return parse_is(ps, at);
        if (strcmp(pf->name, "header") == 0)
                return parse_header(ps, at);
        if (strcmp(pf->name, "gmail") == 0)
                return parse_gmail(ps, at);
        if (strcmp(pf->name, "imap") == 0) {
                if (ps->p >= ps->end || is_ws(*ps->p) || *ps->p == ')') {
                        qparse_fail(ps, at, "imap: needs search keys");
                        return NULL;
                }
                return qkeys_parse_list(ps, depth);
        }
        char *v;
        size_t len;
        char what[16];
        snprintf(what, sizeof(what), "%s:", pf->name);
        const char *vat = ps->p;
        if (!parse_value(ps, &v, &len, what))
                return NULL;
        struct qnode *n = qnode_key(pf->key);
        bool ok = n != NULL;
        if (!ok)
                ps->oom = true;
        else if (pf->fn)
                ok = pf->fn(ps, n, v, len, vat);
        else
                ok = qnode_set(&n->s1, &n->l1, v, len) || (ps->oom = true, false);
        free(v);
        if (!ok) {
                qnode_free(n);
                return NULL;
        }
        return n;
}

static struct qnode *parse_and(struct qparse *ps, int depth);

static struct qnode *parse_unary(struct qparse *ps, int depth)
{
        const char *at = ps->p;
        if (depth > IMAP_QUERY_MAX_DEPTH) {
                qparse_fail(ps, at, "nested more than %d deep", IMAP_QUERY_MAX_DEPTH);
                return NULL;
        }
        if (ps->p >= ps->end || *ps->p == ')') {
                qparse_fail(ps, at, "a search term was expected");
                return NULL;
        }
        if (*ps->p == '-') {
                ps->p++;
                if (ps->p >= ps->end || is_ws(*ps->p) || *ps->p == ')') {
                        qparse_fail(ps, at, "nothing after -");
                        return NULL;
                }
                struct qnode *n = qnode_new(QN_NOT);
                if (!n)
                        return oom(ps);
                if (!qnode_add(n, parse_unary(ps, depth + 1))) {
                        qnode_free(n);
                        return NULL;
                }
                return n;
        }
        if (*ps->p == '(') {
                ps->p++;
                struct qnode *n = parse_and(ps, depth + 1);
                if (n && (ps->p >= ps->end || *ps->p != ')')) {
                        qparse_fail(ps, at, "missing )");
                        qnode_free(n);
                        return NULL;
                }
                if (n)
                        ps->p++;
                return n;
        }
        return parse_term(ps, depth);
}

/* Puts kid into an n-ary node of kind, creating it on the second operand. */
static bool join(struct qparse *ps, struct qnode **acc, enum qkind kind, struct qnode *kid)
{
        if (!kid)
                return false;
        if (!*acc) {
                *acc = kid;
                return true;
        }
        if ((*acc)->kind != kind || (*acc)->key) {
                struct qnode *n = qnode_new(kind);
                if (!n || !qnode_add(n, *acc)) {
                        *acc = NULL;
                        qnode_free(n);
                        qnode_free(kid);
                        ps->oom = true;
                        return false;
                }
                *acc = n;
        }
        if (!qnode_add(*acc, kid)) {
                ps->oom = true;
                return false;
        }
        return true;
}

static struct qnode *parse_or(struct qparse *ps, int depth)
{
        struct qnode *acc = NULL;
        struct qnode *first = parse_unary(ps, depth);
        if (!first)
                return NULL;
        /* a fresh OR node for this chain, so that "(a OR b) OR c" stays
         * two nodes until tidied (join() only appends to its own node) */
        struct qnode * or = NULL;
        acc = first;
        for (;;) {
                const char *save = ps->p;
                skip_ws(ps);
                if (!word_is(ps, "OR")) {
                        ps->p = save;
                        break;
                }
                const char *at = ps->p;
                ps->p += 2;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p == ')') {
                        qparse_fail(ps, at, "OR needs a term on each side");
                        goto fail;
                }
                if (! or) {
                        or = qnode_new(QN_OR);
                        if (! or || !qnode_add(or, acc)) {
                                acc = NULL;
                                ps->oom = true;
                                goto fail;
                        }
                        acc = NULL;
                }
                if (!qnode_add(or, parse_unary(ps, depth + 1)))
                        goto fail;
        }
        return or ? or : acc;
fail:
        qnode_free(or);
        qnode_free(acc);
        return NULL;
}

static struct qnode *parse_and(struct qparse *ps, int depth)
{
        struct qnode *acc = NULL;
        for (;;) {
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p == ')')
                        break;
                if (acc && word_is(ps, "AND")) {
                        const char *at = ps->p;
                        ps->p += 3;
                        skip_ws(ps);
                        if (ps->p >= ps->end || *ps->p == ')') {
                                qparse_fail(ps, at, "AND needs a term on each side");
                                goto fail;
                        }
                }
                if (!join(ps, &acc, QN_AND, parse_or(ps, depth)))
                        goto fail;
        }
        if (!acc)
                qparse_fail(ps, ps->p,
                            depth             ? "empty ( )"
                            : ps->p < ps->end ? ") without ("
                                              : "empty query");
        return acc;
fail:
        qnode_free(acc);
        return NULL;
}

/* Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF); the
 * offset of the first bad byte, or len. */
static size_t utf8_bad(const unsigned char *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                unsigned char c = s[i];
                size_t n;
                unsigned lo = 0x80, hi = 0xbf;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        lo = c == 0xe0 ? 0xa0 : 0x80;
                        hi = c == 0xed ? 0x9f : 0xbf;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        lo = c == 0xf0 ? 0x90 : 0x80;
                        hi = c == 0xf4 ? 0x8f : 0xbf;
                } else {
                        return i;
                }
                if (len - i <= n)
                        return i;
                if (s[i + 1] < lo || s[i + 1] > hi)
                        return i;
                for (size_t k = 2; k <= n; k++)
                        if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                                return i;
                i += n + 1;
        }
        return len;
}

int imap_query_parse(const char *text, size_t len, time_t now, struct imap_query **out,
                     struct imap_query_err *err)
{
        struct qparse ps = {.text = text, .p = text, .end = text + len, .now = now, .err = err};
        *out = NULL;
        if (err) {
                err->pos = 0;
                err->reason[0] = '\0';
        }
        if (len > IMAP_QUERY_MAX_LEN) {
                qparse_fail(&ps, text + IMAP_QUERY_MAX_LEN, "query longer than %d bytes",
                            IMAP_QUERY_MAX_LEN);
                return -EINVAL;
        }
        const char *nul = memchr(text, '\0', len);
        if (nul) {
                qparse_fail(&ps, nul, "NUL byte in the query");
                return -EINVAL;
        }
        size_t bad = utf8_bad((const unsigned char *)text, len);
        if (bad < len) {
                qparse_fail(&ps, text + bad, "not UTF-8");
                return -EINVAL;
        }
        struct qnode *root = parse_and(&ps, 0);
        if (root && ps.p < ps.end) {
                qparse_fail(&ps, ps.p, ") without (");
                qnode_free(root);
                root = NULL;
        }
        if (!root)
                return ps.oom && !ps.failed ? -ENOMEM : -EINVAL;
        /* Tidied under a holder so that the root itself is tidied too. */
        struct qnode holder = {.kind = QN_NOT, .kids = &root, .nkids = 1};
        qtree_tidy(&holder);
        struct imap_query *q = malloc(sizeof(*q));
        if (!q) {
                qnode_free(root);
                return -ENOMEM;
        }
        q->root = root;
        *out = q;
        return 0;
}

void imap_query_free(struct imap_query *q)
{
        if (!q)
                return;
        qnode_free(q->root);
        free(q);
}

static bool has_8bit(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] >= 0x80)
                        return true;
        return false;
}

static bool node_needs_utf8(const struct qnode *n)
{
        if (n->kind == QN_KEY)
                return (n->key->arg == QA_STRING || n->key->arg == QA_HEADER) &&
                       (has_8bit(n->s1, n->l1) || (n->s2 && has_8bit(n->s2, n->l2)));
        for (size_t i = 0; i < n->nkids; i++)
                if (node_needs_utf8(n->kids[i]))
                        return true;
        return false;
}

bool imap_query_needs_utf8(const struct imap_query *q)
{
        return node_needs_utf8(q->root);
}
