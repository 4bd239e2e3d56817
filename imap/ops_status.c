#include "imap/ops_status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "imap/rcode.h"

static bool status_is_untagged(const struct imap_response *r, const char *name)
{
        return r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, name) == 0;
}

/* Notes a failed answer: back-off answers go to slow (one log line is the
 * caller's), others are logged as every failure is. */
static int status_answer_errno(const char *what, const struct imap_result *res,
                               struct imap_slowdown *slow)
{
        if (res->status == IMAP_ST_OK)
                return 0;
        struct imap_rcode_class c = imap_rcode_classify(res);
        if (!c.backoff)
                return imap_result_errno(what, res);
        if (!slow->asked)
                snprintf(slow->text, sizeof(slow->text), "%s%s%s%s", res->code[0] ? "[" : "",
                         res->code, res->code[0] ? "] " : "", res->text);
        slow->asked = true;
        slow->count++;
        if (c.suggested_ms > slow->suggested_ms)
                slow->suggested_ms = c.suggested_ms;
        return c.err;
}

/* ---- LIST-STATUS ---- */

struct listed {
        char *name;
        UT_hash_handle hh;
};

struct list_status_ctx {
        imap_list_fn fn;
        imap_status_fn sfn;
        void *ctx;
        struct listed *names; /* what this command listed */
        bool oom;
};

static bool status_listed(struct list_status_ctx *c, const struct imap_value *name)
{
        if (!name ||
            (name->type != IMAP_STRING && name->type != IMAP_ATOM && name->type != IMAP_NUMBER))
                return false;
        struct listed *e;
        HASH_FIND(hh, c->names, name->s, name->len, e);
        if (e)
                return true;
        /* INBOX is the one name that matches whatever its case. */
        if (name->len != 5 || !imap_status_names(name, "INBOX"))
                return false;
        HASH_FIND(hh, c->names, "INBOX", 5, e);
        return e != NULL;
}

static bool status_list_data(void *vctx, const struct imap_response *r)
{
        struct list_status_ctx *c = vctx;
        if (status_is_untagged(r, "LIST")) {
                const char *name;
                char d;
                unsigned attrs;
                if (!imap_list_parse(r, &name, &d, &attrs))
                        return true; /* malformed entry: skip it rather than fail the listing */
                c->fn(c->ctx, name, d, attrs);
                struct listed *e;
                size_t len = strlen(name);
                HASH_FIND(hh, c->names, name, len, e);
                if (e)
                        return true;
                e = calloc(1, sizeof(*e));
                if (!e || !(e->name = strdup(name))) {
                        free(e);
                        c->oom = true;
                        return true;
                }
                /* INBOX under one spelling, so that any case finds it. */
                if (len == 5 && strncasecmp(name, "INBOX", 5) == 0)
                        memcpy(e->name, "INBOX", 5);
                HASH_ADD_KEYPTR(hh, c->names, e->name, len, e);
                return true;
        }
        if (!status_is_untagged(r, "STATUS") || !status_listed(c, r->args))
                return false; /* not ours: an event, as imap_status has it */
        struct imap_status_info st = {0};
        if (imap_status_items(r->args->next, &st))
                c->sfn(c->ctx, r->args->s, &st);
        return true;
}

int imap_list_status(struct imap_session *s, imap_list_fn fn, imap_status_fn sfn, void *ctx,
                     struct imap_slowdown *slow)
{
        const struct imap_caps *caps = imap_session_caps(s);
        if (!caps->list_status)
                return -ENOTSUP;
        struct imap_cmd cmd;
        struct imap_result res;
        struct list_status_ctx c = {fn, sfn, ctx, NULL, false};

        imap_session_cmd_init(s, &cmd);
        /* SPECIAL-USE as imap_list_all asks for it: this LIST replaces that
         * one for the tree. */
        imap_cmd_add(&cmd, "LIST \"\" \"*\" RETURN (%sSTATUS (MESSAGES UIDNEXT UIDVALIDITY%s))",
                     caps->special_use ? "SPECIAL-USE " : "",
                     caps->condstore ? " HIGHESTMODSEQ" : "");
        int r = imap_session_cmd(s, &cmd, status_list_data, &c, &res);
        imap_cmd_free(&cmd);
        struct listed *e, *tmp;
        HASH_ITER(hh, c.names, e, tmp)
        {
                HASH_DEL(c.names, e);
                free(e->name);
                free(e);
        }
        if (r < 0)
                return r;
        r = status_answer_errno("LIST (STATUS)", &res, slow);
        return r == 0 && c.oom ? -ENOMEM : r;
}

/* ---- pipelined STATUS ---- */

struct status_many_ctx {
        struct imap_status_req *v;
        size_t n;
        bool *found;
        size_t hint; /* answers come in order: where the next one likely is */
};

static bool status_many_data(void *vctx, const struct imap_response *r)
{
        struct status_many_ctx *c = vctx;
        if (!status_is_untagged(r, "STATUS") || !r->args)
                return false;
        size_t k = c->n;
        for (size_t i = 0; i < c->n && k == c->n; i++) {
                size_t j = (c->hint + i) % c->n;
                if (c->v[j].mailbox && imap_status_names(r->args, c->v[j].mailbox))
                        k = j;
        }
        /* Another mailbox's STATUS (NOTIFY): not an answer, an event. */
        if (k == c->n)
                return false;
        c->found[k] |= imap_status_items(r->args->next, &c->v[k].st);
        c->hint = k + 1;
        return true;
}

int imap_status_many(struct imap_session *s, struct imap_status_req *v, size_t n,
                     struct imap_slowdown *slow)
{
        if (n == 0)
                return 0;
        const char *sel = imap_session_selected(s);
        const char *items = imap_session_caps(s)->condstore
                                ? " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
                                : " (MESSAGES UIDNEXT UIDVALIDITY)";
        struct imap_cmd *cmds = calloc(n, sizeof(*cmds));
        struct imap_cmd **ptrs = calloc(n, sizeof(*ptrs));
        struct imap_result *res = calloc(n, sizeof(*res));
        size_t *which = calloc(n, sizeof(*which));
        bool *found = calloc(n, sizeof(*found));
        int r = cmds && ptrs && res && which && found ? 0 : -ENOMEM;
        size_t m = 0, selected = n;
        for (size_t i = 0; r == 0 && i < n; i++) {
                memset(&v[i].st, 0, sizeof(v[i].st));
                v[i].err = -EPROTO;
                if (sel && strcmp(sel, v[i].mailbox) == 0) {
                        selected = i; /* see below */
                        continue;
                }
                imap_session_cmd_init(s, &cmds[m]);
                imap_cmd_add(&cmds[m], "STATUS ");
                imap_cmd_str(&cmds[m], v[i].mailbox);
                imap_cmd_add(&cmds[m], "%s", items);
                ptrs[m] = &cmds[m];
                which[m++] = i;
        }
        if (r == 0) {
                /* A name that needs a synchronizing literal (no LITERAL+)
                 * waits for the server's "+": such commands go one by one
                 * after the others, which stay pipelined. */
                size_t q = 0;
                for (size_t k = 0; k < m; k++)
                        if (cmds[k].nsplits == 0) {
                                struct imap_cmd *t = ptrs[q];
                                size_t w = which[q];
                                ptrs[q] = ptrs[k];
                                which[q] = which[k];
                                ptrs[k] = t;
                                which[k] = w;
                                q++;
                        }
                struct status_many_ctx c = {v, n, found, 0};
                r = imap_session_pipeline(s, ptrs, q, status_many_data, &c, res);
                for (size_t k = q; r == 0 && k < m; k++)
                        r = imap_session_cmd(s, ptrs[k], status_many_data, &c, &res[k]);
        }
        for (size_t k = 0; r == 0 && k < m; k++) {
                size_t i = which[k];
                v[i].err = status_answer_errno("STATUS", &res[k], slow);
                if (v[i].err == 0 && !found[i])
                        v[i].err = -EPROTO; /* OK without an answer */
        }
        for (size_t k = 0; cmds && k < m; k++)
                imap_cmd_free(&cmds[k]);
        free(cmds);
        free(ptrs);
        free(res);
        free(which);
        free(found);
        /* STATUS of the selected mailbox may answer from a stale view:
         * imap_status asks with NOOP instead. */
        if (r == 0 && selected < n) {
                int e = imap_status(s, v[selected].mailbox, &v[selected].st);
                if (e == -EIO)
                        r = e;
                v[selected].err = e;
        }
        return r;
}
