#include "imap/ops_quota.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "imap/log.h"
#include "imap/quote.h"

bool imap_quota_parse(const struct imap_value *list, struct imap_quota *q)
{
        if (!list || list->type != IMAP_LIST)
                return false;
        memset(q, 0, sizeof(*q));
        /* Triples: resource name, usage, limit. Unknown resources are
         * skipped as the RFC asks. */
        for (const struct imap_value *v = list->first; v; v = v->next->next->next) {
                const struct imap_value *use = v->next, *lim = use ? use->next : NULL;
                if (v->type != IMAP_ATOM || !use || !lim || use->type != IMAP_NUMBER ||
                    lim->type != IMAP_NUMBER)
                        return false;
                if (strcasecmp(v->s, "STORAGE") == 0) {
                        /* KiB: statfs multiplies by 1024 and rounds up. */
                        q->storage = true;
                        q->storage_used =
                            use->num < IMAP_QUOTA_STORAGE_MAX ? use->num : IMAP_QUOTA_STORAGE_MAX;
                        q->storage_limit =
                            lim->num < IMAP_QUOTA_STORAGE_MAX ? lim->num : IMAP_QUOTA_STORAGE_MAX;
                } else if (strcasecmp(v->s, "MESSAGE") == 0) {
                        q->messages = true;
                        q->messages_used = use->num;
                        q->messages_limit = lim->num;
                }
        }
        return true;
}

struct quota_ctx {
        struct imap_quota best;
        bool any;
};

static uint64_t quota_free(const struct imap_quota *q)
{
        return q->storage_limit > q->storage_used ? q->storage_limit - q->storage_used : 0;
}

static bool quota_data(void *vctx, const struct imap_response *r)
{
        struct quota_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return false;
        if (strcmp(r->name, "QUOTAROOT") == 0)
                return true; /* the roots' names: their QUOTA responses follow */
        if (strcmp(r->name, "QUOTA") != 0 || !r->args)
                return false;
        struct imap_quota q;
        if (!imap_quota_parse(r->args->next, &q)) {
                log_dbg("GETQUOTAROOT: malformed QUOTA response ignored");
                return true;
        }
        /* Several roots: the tightest storage limit is the one a write
         * meets; a MESSAGE count is taken from whichever root has one. */
        struct imap_quota old = c->best;
        if (!c->any || (q.storage && (!old.storage || quota_free(&q) < quota_free(&old))))
                c->best = q;
        if (!c->best.messages && old.messages) {
                c->best.messages = true;
                c->best.messages_used = old.messages_used;
                c->best.messages_limit = old.messages_limit;
        } else if (!c->best.messages && q.messages) {
                c->best.messages = true;
                c->best.messages_used = q.messages_used;
                c->best.messages_limit = q.messages_limit;
        }
        c->any = true;
        return true;
}

int imap_quota_get(struct imap_session *s, const char *mailbox, struct imap_quota *q)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct quota_ctx c = {0};
        /* Not asked where not announced: it would only cost a round trip
         * and a BAD (Dovecot without imap_quota). */
        if (!imap_session_caps(s)->quota)
                return -ENOTSUP;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "GETQUOTAROOT ");
        imap_cmd_str(&cmd, mailbox);
        int r = imap_session_cmd(s, &cmd, quota_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        if (res.status != IMAP_ST_OK) {
                /* No QUOTA extension (BAD), or no quota for us (NO): nothing
                 * to report, and nothing wrong with the session. */
                log_dbg("GETQUOTAROOT: %s", res.text);
                return -ENOTSUP;
        }
        memset(q, 0, sizeof(*q));
        if (c.any)
                *q = c.best;
        return 0;
}
