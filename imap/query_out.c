/* Writing a parsed query: as SEARCH keys into a command (every string
 * through imap_cmd_string, so quoting and literals are quote.c's job), and
 * as a canonical text for keying cached results. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/query_tree.h"

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static bool uses_gmail(const struct qnode *n)
{
        if (n->kind == QN_KEY)
                return n->key->gmail;
        for (size_t i = 0; i < n->nkids; i++)
                if (uses_gmail(n->kids[i]))
                        return true;
        return false;
}

static void out_node(const struct qnode *n, const struct imap_query_caps *caps,
                     struct imap_cmd *cmd, bool top);

static void out_key(const struct qnode *n, const struct imap_query_caps *caps, struct imap_cmd *cmd)
{
        const struct qkey *k = n->key;
        uint64_t num = n->num;
        /* RFC 3501 sizes are 32-bit: no message is larger than 2^32-1, so a
         * larger bound is the same as that one, and "smaller than it" is
         * every message. */
        if (k->arg == QA_NUMBER && num > UINT32_MAX && !caps->imap4rev2) {
                if (strcmp(k->name, "SMALLER") == 0) {
                        imap_cmd_add(cmd, "ALL");
                        return;
                }
                num = UINT32_MAX;
        }
        imap_cmd_add(cmd, "%s", k->name);
        switch (k->arg) {
        case QA_NONE:
                break;
        case QA_STRING:
                imap_cmd_add(cmd, " ");
                imap_cmd_string(cmd, n->s1, n->l1);
                break;
        case QA_HEADER:
                imap_cmd_add(cmd, " ");
                imap_cmd_string(cmd, n->s1, n->l1);
                imap_cmd_add(cmd, " ");
                imap_cmd_string(cmd, n->s2, n->l2);
                break;
        case QA_KEYWORD:
        case QA_SEQSET:
                /* atoms checked by the parser (qkeys_keyword_ok,
                 * qkeys_seqset_check); a bare set has no name */
                imap_cmd_add(cmd, "%s%.*s", k->name[0] ? " " : "", (int)n->l1, n->s1);
                break;
        case QA_DATE:
                imap_cmd_add(cmd, " %d-%s-%04d", n->day, month_names[n->month - 1], n->year);
                break;
        case QA_NUMBER:
                imap_cmd_add(cmd, " %llu", (unsigned long long)num);
                break;
        }
}

static void out_node(const struct qnode *n, const struct imap_query_caps *caps,
                     struct imap_cmd *cmd, bool top)
{
        switch (n->kind) {
        case QN_KEY:
                out_key(n, caps, cmd);
                break;
        case QN_NOT:
                imap_cmd_add(cmd, "NOT ");
                out_node(n->kids[0], caps, cmd, false);
                break;
        case QN_OR:
                /* OR a OR b c */
                for (size_t i = 0; i + 1 < n->nkids; i++) {
                        imap_cmd_add(cmd, "OR ");
                        out_node(n->kids[i], caps, cmd, false);
                        imap_cmd_add(cmd, " ");
                }
                out_node(n->kids[n->nkids - 1], caps, cmd, false);
                break;
        case QN_AND:
                if (!top)
                        imap_cmd_add(cmd, "(");
                for (size_t i = 0; i < n->nkids; i++) {
                        if (i)
                                imap_cmd_add(cmd, " ");
                        out_node(n->kids[i], caps, cmd, false);
                }
                if (!top)
                        imap_cmd_add(cmd, ")");
                break;
        }
}

int imap_query_to_search(const struct imap_query *q, const struct imap_query_caps *caps,
                         struct imap_cmd *cmd)
{
        static const struct imap_query_caps none;
        if (!caps)
                caps = &none;
        if (!caps->x_gm_ext_1 && uses_gmail(q->root))
                return -EOPNOTSUPP;
        if (!caps->utf8_enabled && imap_query_needs_utf8(q))
                imap_cmd_add(cmd, "CHARSET UTF-8 ");
        out_node(q->root, caps, cmd, true);
        return cmd->oom ? -ENOMEM : 0;
}

/* A growing string for the canonical form. */
struct qbuf {
        char *s;
        size_t len, cap;
        bool oom;
};

static void qbuf_add(struct qbuf *b, const char *s, size_t len)
{
        if (b->oom)
                return;
        if (b->len + len + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                while (cap < b->len + len + 1)
                        cap *= 2;
                char *ns = realloc(b->s, cap);
                if (!ns) {
                        b->oom = true;
                        return;
                }
                b->s = ns;
                b->cap = cap;
        }
        memcpy(b->s + b->len, s, len);
        b->len += len;
        b->s[b->len] = '\0';
}

static void qbuf_str(struct qbuf *b, const char *s)
{
        qbuf_add(b, s, strlen(s));
}

/* "..." with " and \ escaped; ASCII folded to lower case when the server
 * compares case-insensitively (every SEARCH string but X-GM-RAW). */
static void canon_string(struct qbuf *b, const char *s, size_t len, bool fold)
{
        qbuf_add(b, " \"", 2);
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (fold && c >= 'A' && c <= 'Z')
                        c = (char)(c - 'A' + 'a');
                if (c == '"' || c == '\\')
                        qbuf_add(b, "\\", 1);
                qbuf_add(b, &c, 1);
        }
        qbuf_add(b, "\"", 1);
}

static char *canon_node(const struct qnode *n, bool top);

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* AND and OR: operands sorted, duplicates dropped. */
static void canon_list(struct qbuf *b, const struct qnode *n, bool top)
{
        char **parts = calloc(n->nkids, sizeof(*parts));
        if (!parts) {
                b->oom = true;
                return;
        }
        size_t m = 0;
        for (size_t i = 0; i < n->nkids; i++) {
                parts[i] = canon_node(n->kids[i], false);
                if (!parts[i])
                        b->oom = true;
        }
        if (!b->oom) {
                qsort(parts, n->nkids, sizeof(*parts), cmp_str);
                for (size_t i = 0; i < n->nkids; i++)
                        if (m == 0 || strcmp(parts[i], parts[m - 1]) != 0)
                                parts[m++] = parts[i];
                        else
                                free(parts[i]);
                bool and = n->kind == QN_AND;
                bool paren = and&&!top && m > 1;
                if (paren)
                        qbuf_str(b, "(");
                for (size_t i = 0; i < m; i++) {
                        if (!and&&i + 1 < m)
                                qbuf_str(b, "OR ");
                        qbuf_str(b, parts[i]);
                        if (i + 1 < m)
                                qbuf_str(b, " ");
                }
                if (paren)
                        qbuf_str(b, ")");
        } else {
                m = n->nkids;
        }
        for (size_t i = 0; i < m; i++)
                free(parts[i]);
        free(parts);
}

static char *canon_node(const struct qnode *n, bool top)
{
        struct qbuf b = {0};
        char tmp[48];
        switch (n->kind) {
        case QN_AND:
        case QN_OR:
                canon_list(&b, n, top);
                break;
        case QN_NOT: {
                char *k = canon_node(n->kids[0], false);
                if (!k)
                        b.oom = true;
                else
                        qbuf_str(&b, "NOT "), qbuf_str(&b, k);
                free(k);
                break;
        }
        case QN_KEY:
                qbuf_str(&b, n->key->name);
                switch (n->key->arg) {
                case QA_NONE:
                        break;
                case QA_STRING:
                        canon_string(&b, n->s1, n->l1, !n->key->gmail);
                        break;
                case QA_HEADER:
                        canon_string(&b, n->s1, n->l1, true);
                        canon_string(&b, n->s2, n->l2, true);
                        break;
                case QA_KEYWORD:
                case QA_SEQSET:
                        if (n->key->name[0])
                                qbuf_str(&b, " ");
                        qbuf_add(&b, n->s1, n->l1);
                        break;
                case QA_DATE:
                        snprintf(tmp, sizeof(tmp), " %d-%s-%04d", n->day, month_names[n->month - 1],
                                 n->year);
                        qbuf_str(&b, tmp);
                        break;
                case QA_NUMBER:
                        snprintf(tmp, sizeof(tmp), " %llu", (unsigned long long)n->num);
                        qbuf_str(&b, tmp);
                        break;
                }
                break;
        }
        if (b.oom || !b.s) {
                free(b.s);
                return NULL;
        }
        return b.s;
}

char *imap_query_canonical(const struct imap_query *q)
{
        return canon_node(q->root, true);
}
