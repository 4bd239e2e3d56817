#include "imap/ops_search.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "imap/quote.h"

void imap_search_caps(const struct imap_session *s, struct imap_query_caps *out)
{
        const struct imap_caps *c = imap_session_caps(s);
        memset(out, 0, sizeof(*out));
        out->x_gm_ext_1 = c->gmail;
}

struct qsearch_ctx {
        imap_range_fn fn;
        void *ctx;
        bool bad;
};

static bool qsearch_data(void *vctx, const struct imap_response *r)
{
        struct qsearch_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return false;
        if (strcmp(r->name, "SEARCH") == 0) {
                for (const struct imap_value *v = r->args; v; v = v->next)
                        if (v->type == IMAP_NUMBER && v->num > 0 && v->num <= UINT32_MAX)
                                c->fn(c->ctx, (unsigned)v->num, (unsigned)v->num);
                return true;
        }
        if (strcmp(r->name, "ESEARCH") == 0) {
                /* (TAG "A1") UID ALL 1:3,5 — no ALL at all when nothing matched */
                for (const struct imap_value *v = r->args; v; v = v->next)
                        if (imap_value_is(v, "ALL") && v->next &&
                            imap_uidset_parse(v->next->s, v->next->len, c->fn, c->ctx) < 0)
                                c->bad = true;
                return true;
        }
        return false;
}

/* Writes "RETURN (ALL) " where results can come as a set, then the keys. */
static int qsearch_build(struct imap_session *s, const struct imap_query *q, const char *verb,
                         struct imap_cmd *cmd)
{
        struct imap_query_caps qc;
        imap_search_caps(s, &qc);
        imap_session_cmd_init(s, cmd);
        imap_cmd_add(cmd, "%s", verb);
        int r = imap_query_to_search(q, &qc, cmd);
        if (r == 0 && cmd->oom)
                r = -ENOMEM;
        if (r < 0)
                imap_cmd_free(cmd);
        return r;
}

int imap_search_query(struct imap_session *s, const struct imap_query *q, imap_range_fn fn,
                      void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct qsearch_ctx c = {fn, ctx, false};
        bool esearch = imap_session_caps(s)->esearch;
        int r = qsearch_build(s, q, esearch ? "UID SEARCH RETURN (ALL) " : "UID SEARCH ", &cmd);
        if (r < 0)
                return r;
        r = imap_session_cmd(s, &cmd, qsearch_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID SEARCH", &res);
        return r == 0 && c.bad ? -EPROTO : r;
}

struct msearch_ctx {
        imap_msearch_fn fn;
        void *ctx;
        const char *mailbox;
        uint32_t uidvalidity;
        bool bad;
};

static void msearch_range(void *vctx, unsigned lo, unsigned hi)
{
        struct msearch_ctx *c = vctx;
        c->fn(c->ctx, c->mailbox, c->uidvalidity, lo, hi);
}

/* * ESEARCH (TAG "A1" MAILBOX "INBOX" UIDVALIDITY 7) UID ALL 1:3,5 */
static bool msearch_data(void *vctx, const struct imap_response *r)
{
        struct msearch_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "ESEARCH") != 0)
                return false;
        const struct imap_value *corr = r->args;
        if (!corr || corr->type != IMAP_LIST)
                return true; /* not one of ours: a MULTISEARCH answer always names its folder */
        c->mailbox = NULL;
        c->uidvalidity = 0;
        for (const struct imap_value *v = corr->first; v && v->next; v = v->next->next) {
                const struct imap_value *val = v->next;
                if (imap_value_is(v, "MAILBOX") && val->type != IMAP_LIST &&
                    !memchr(val->s, '\0', val->len))
                        c->mailbox = val->s;
                else if (imap_value_is(v, "UIDVALIDITY") && val->type == IMAP_NUMBER &&
                         val->num <= UINT32_MAX)
                        c->uidvalidity = (uint32_t)val->num;
        }
        if (!c->mailbox || !c->uidvalidity) {
                c->bad = true;
                return true;
        }
        for (const struct imap_value *v = corr->next; v; v = v->next)
                if (imap_value_is(v, "ALL") && v->next &&
                    imap_uidset_parse(v->next->s, v->next->len, msearch_range, c) < 0)
                        c->bad = true;
        return true;
}

int imap_multisearch(struct imap_session *s, const struct imap_query *q, imap_msearch_fn fn,
                     void *ctx)
{
        if (!imap_session_caps(s)->multisearch)
                return -EOPNOTSUPP;
        struct imap_cmd cmd;
        struct imap_result res;
        struct msearch_ctx c = {fn, ctx, NULL, 0, false};
        int r = qsearch_build(s, q, "ESEARCH IN (personal) RETURN (ALL) ", &cmd);
        if (r < 0)
                return r;
        r = imap_session_cmd(s, &cmd, msearch_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("ESEARCH IN (personal)", &res);
        return r == 0 && c.bad ? -EPROTO : r;
}
