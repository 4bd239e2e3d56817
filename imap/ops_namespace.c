#include "imap/ops_namespace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap/log.h"

struct ns_ctx {
        char *prefix;
        char delim;
        bool seen, oom;
};

/* * NAMESPACE (("INBOX." ".")) NIL NIL: the first value is the personal
 * namespaces, a list of (prefix delimiter ...) lists, or NIL. */
static bool ns_data(void *vctx, const struct imap_response *r)
{
        struct ns_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "NAMESPACE") != 0)
                return false;
        if (c->seen)
                return true;
        c->seen = true;
        const struct imap_value *personal = r->args;
        if (!personal || personal->type != IMAP_LIST || !personal->first ||
            personal->first->type != IMAP_LIST)
                return true;
        const struct imap_value *p = personal->first->first;
        const struct imap_value *d = p ? p->next : NULL;
        if (!p || p->type != IMAP_STRING || memchr(p->s, '\0', p->len) || !d ||
            (d->type != IMAP_STRING && d->type != IMAP_NIL) ||
            (d->type == IMAP_STRING && d->len != 1))
                return true;
        c->prefix = strndup(p->s, p->len);
        c->oom = !c->prefix;
        c->delim = d->type == IMAP_STRING ? d->s[0] : 0;
        return true;
}

int imap_namespace_personal(struct imap_session *s, char **prefix, char *delim)
{
        *prefix = NULL;
        *delim = 0;
        struct ns_ctx c = {0};
        if (imap_session_caps(s)->namespace) {
                struct imap_cmd cmd;
                struct imap_result res;
                imap_session_cmd_init(s, &cmd);
                imap_cmd_add(&cmd, "NAMESPACE");
                int r = imap_session_cmd(s, &cmd, ns_data, &c, &res);
                imap_cmd_free(&cmd);
                if (r < 0) {
                        free(c.prefix);
                        return r;
                }
                if (res.status != IMAP_ST_OK) {
                        free(c.prefix);
                        c.prefix = NULL;
                }
        }
        if (c.oom)
                return -ENOMEM;
        *prefix = c.prefix ? c.prefix : strdup("");
        *delim = c.delim;
        if (!*prefix)
                return -ENOMEM;
        if (**prefix)
                log_info("the server keeps your folders under \"%s\" (its personal namespace): "
                         "the mount shows them at its top level",
                         *prefix);
        return 0;
}
