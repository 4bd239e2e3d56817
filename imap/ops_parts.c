#include "imap/ops_parts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/quote.h"

static bool ops_parts_untagged_fetch(const struct imap_response *r)
{
        return r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, "FETCH") == 0 &&
               r->args && r->args->type == IMAP_LIST;
}

/* A FETCH that also reports FLAGS tells of a change by someone else: it
 * must reach the account as an event too (we never ask for FLAGS here). */
static bool ops_parts_news(const struct imap_response *r)
{
        return imap_fetch_item(r->args, "FLAGS") != NULL;
}

struct items_ctx {
        imap_items_fn fn;
        void *ctx;
};

static bool ops_items_data(void *vctx, const struct imap_response *r)
{
        struct items_ctx *c = vctx;
        if (!ops_parts_untagged_fetch(r))
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        if (!uid || uid->type != IMAP_NUMBER || uid->num == 0 || uid->num > UINT32_MAX)
                return false;
        c->fn(c->ctx, (uint32_t)uid->num, r->args);
        return !ops_parts_news(r);
}

int imap_fetch_items(struct imap_session *s, const char *uidset, const char *items,
                     imap_items_fn fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct items_ctx c = {fn, ctx};
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID FETCH %s (UID %s)", uidset, items);
        int r = imap_session_cmd(s, &cmd, ops_items_data, &c, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("UID FETCH (structure)", &res);
}

struct section_ctx {
        uint32_t uid;
        char name[96]; /* the item name the answer must carry: "BINARY[1.2]" */
        size_t name_len;
        uint64_t off;
        bool ranged;
        imap_bytes_fn fn;
        void *ctx;
        bool found;
        bool nil; /* the answer was NIL, not a string */
};

/* True if the answer's item name is ours with the origin we asked for:
 * "BODY[1.2]<65536>" (a range) or "BODY[1.2]" (whole, or a range at 0).
 * Strict, so a hostile server's digits can't overflow anything. */
static bool ops_section_origin(const struct section_ctx *c, const struct imap_value *name)
{
        if (!name || name->len < c->name_len || strncasecmp(name->s, c->name, c->name_len) != 0)
                return false;
        const char *p = name->s + c->name_len;
        if (*p == '\0')
                return !c->ranged || c->off == 0;
        if (!c->ranged || *p++ != '<')
                return false;
        uint64_t v = 0;
        const char *digits = p;
        while (*p >= '0' && *p <= '9') {
                if (v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*p++ - '0');
        }
        return p != digits && p[0] == '>' && p[1] == '\0' && v == c->off;
}

static bool ops_section_data(void *vctx, const struct imap_response *r)
{
        struct section_ctx *c = vctx;
        if (!ops_parts_untagged_fetch(r))
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        const struct imap_value *name = NULL;
        const struct imap_value *body = imap_fetch_item_prefix(r->args, c->name, &name);
        if (!uid || uid->type != IMAP_NUMBER || uid->num != c->uid || !body)
                return false;
        if (!c->found && ops_section_origin(c, name)) {
                if (body->type == IMAP_STRING) {
                        c->fn(c->ctx, body->s, body->len);
                        c->found = true;
                } else if (body->type == IMAP_NIL) {
                        c->fn(c->ctx, "", 0);
                        c->found = true;
                        c->nil = true;
                }
        }
        return !ops_parts_news(r);
}

int imap_fetch_section(struct imap_session *s, uint32_t uid, const char *what, bool binary,
                       uint64_t off, size_t len, imap_bytes_fn fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct section_ctx c = {.uid = uid, .off = off, .ranged = len != 0, .fn = fn, .ctx = ctx};
        int n = snprintf(c.name, sizeof(c.name), "%s[%s]", binary ? "BINARY" : "BODY", what);
        if (n < 0 || (size_t)n >= sizeof(c.name))
                return -ENAMETOOLONG;
        c.name_len = (size_t)n;
        imap_session_cmd_init(s, &cmd);
        if (len)
                imap_cmd_add(&cmd, "UID FETCH %u (UID %s.PEEK[%s]<%llu.%zu>)", uid,
                             binary ? "BINARY" : "BODY", what, (unsigned long long)off, len);
        else
                imap_cmd_add(&cmd, "UID FETCH %u (UID %s.PEEK[%s])", uid,
                             binary ? "BINARY" : "BODY", what);
        int r = imap_session_cmd(s, &cmd, ops_section_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        if (!c.found)
                return res.status == IMAP_ST_OK ? -ENOENT : imap_result_errno("UID FETCH", &res);
        /* Dovecot answers a message another session expunged (and this one
         * wasn't told yet) with NIL and OK [EXPUNGEISSUED]: gone, not an
         * empty part, which a reader would take for the end of the file. */
        if (c.nil && strcmp(res.code, "EXPUNGEISSUED") == 0)
                return -ENOENT;
        if (res.status != IMAP_ST_OK)
                return imap_result_errno("UID FETCH", &res);
        return 0;
}
