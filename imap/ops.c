#include "imap/ops.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/date.h"
#include "imap/log.h"
#include "imap/ops_status.h"
#include "imap/quote.h"

static bool ops_is_untagged(const struct imap_response *r, const char *name)
{
        return r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, name) == 0;
}

/* ---- LIST ---- */

struct list_ctx {
        imap_list_fn fn;
        void *ctx;
};

static unsigned ops_mbox_attrs(const struct imap_value *list)
{
        static const struct {
                const char *name;
                unsigned bit;
        } table[] = {
            {"\\Noselect", IMAP_MBX_NOSELECT},
            {"\\NoInferiors", IMAP_MBX_NOINFERIORS},
            {"\\HasChildren", IMAP_MBX_HASCHILDREN},
            {"\\HasNoChildren", IMAP_MBX_HASNOCHILDREN},
            {"\\NonExistent", IMAP_MBX_NONEXISTENT | IMAP_MBX_NOSELECT},
            {"\\Trash", IMAP_MBX_TRASH},
            {"\\Sent", IMAP_MBX_SENT},
            {"\\Drafts", IMAP_MBX_DRAFTS},
            {"\\Junk", IMAP_MBX_JUNK},
            {"\\Archive", IMAP_MBX_ARCHIVE},
            {"\\All", IMAP_MBX_ALL},
            {"\\Flagged", IMAP_MBX_FLAGGED},
        };
        unsigned attrs = 0;
        for (const struct imap_value *v = list ? list->first : NULL; v; v = v->next)
                for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                        if (imap_value_is(v, table[i].name))
                                attrs |= table[i].bit;
        return attrs;
}

bool imap_list_parse(const struct imap_response *r, const char **name, char *delim, unsigned *attrs)
{
        const struct imap_value *at = r->args;
        const struct imap_value *d = at ? at->next : NULL;
        const struct imap_value *nm = d ? d->next : NULL;
        if (!at || at->type != IMAP_LIST || !nm ||
            (nm->type != IMAP_STRING && nm->type != IMAP_ATOM && nm->type != IMAP_NUMBER) ||
            memchr(nm->s, '\0', nm->len))
                return false;
        *name = nm->s;
        *delim = d->type == IMAP_STRING && d->len == 1 ? d->s[0] : '\0';
        *attrs = ops_mbox_attrs(at);
        return true;
}

static bool ops_list_data(void *vctx, const struct imap_response *r)
{
        struct list_ctx *c = vctx;
        if (!ops_is_untagged(r, "LIST"))
                return false;
        const char *name;
        char d;
        unsigned attrs;
        if (imap_list_parse(r, &name, &d, &attrs)) /* else malformed: skip it rather than fail */
                c->fn(c->ctx, name, d, attrs);
        return true;
}

int imap_list_all(struct imap_session *s, imap_list_fn fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct list_ctx c = {fn, ctx};
        const struct imap_caps *caps = imap_session_caps(s);

        imap_session_cmd_init(s, &cmd);
        /* SPECIAL-USE servers add \Trash etc. with RETURN (SPECIAL-USE); the
         * write path needs them to find the trash folder. */
        imap_cmd_add(&cmd, caps->special_use ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
                                             : "LIST \"\" \"*\"");
        int r = imap_session_cmd(s, &cmd, ops_list_data, &c, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("LIST", &res);
}

/* ---- SELECT ---- */

struct select_ctx {
        struct imap_select_info info;
        char *permanentflags; /* owned until the session copies it */
        bool oom;
};

static bool ops_select_data(void *vctx, const struct imap_response *r)
{
        struct select_ctx *c = vctx;
        struct imap_select_info *info = &c->info;
        if (r->kind != IMAP_RESP_UNTAGGED)
                return false;
        if (r->has_number && r->name && strcmp(r->name, "EXISTS") == 0) {
                info->exists = r->number;
                return true;
        }
        if (r->status == IMAP_ST_OK && r->code) {
                const struct imap_value *a = r->code_args;
                uint64_t n = a && a->type == IMAP_NUMBER ? a->num : 0;
                if (strcmp(r->code, "UIDVALIDITY") == 0)
                        info->uidvalidity = (uint32_t)n;
                else if (strcmp(r->code, "UIDNEXT") == 0)
                        info->uidnext = (uint32_t)n;
                else if (strcmp(r->code, "HIGHESTMODSEQ") == 0)
                        info->highestmodseq = n;
                else if (strcmp(r->code, "PERMANENTFLAGS") == 0 && a && a->type == IMAP_LIST) {
                        /* Whole, however many keywords: Dovecot sends \* last. */
                        free(c->permanentflags);
                        c->permanentflags = imap_values_join_alloc(a->first, NULL);
                        c->oom |= !c->permanentflags;
                } else
                        return false;
                return true;
        }
        /* FLAGS, RECENT and friends are not needed by the read path. */
        return r->name && (strcmp(r->name, "FLAGS") == 0 || strcmp(r->name, "RECENT") == 0);
}

int imap_select(struct imap_session *s, const char *mailbox, struct imap_select_info *info)
{
        const char *cur = imap_session_selected(s);
        if (cur && strcmp(cur, mailbox) == 0) {
                *info = *imap_session_sel_info(s);
                return 0;
        }
        struct imap_cmd cmd;
        struct imap_result res;
        struct select_ctx sc = {0};

        /* Until SELECT answers, the session is in no known mailbox: a failed
         * SELECT leaves none selected (RFC 3501 §6.3.1). */
        imap_session_set_selected(s, NULL, NULL);
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "SELECT ");
        imap_cmd_str(&cmd, mailbox);
        int r = imap_session_cmd(s, &cmd, ops_select_data, &sc, &res);
        imap_cmd_free(&cmd);
        if (r == 0 && res.status != IMAP_ST_OK)
                /* A plain NO is how most servers say "no such mailbox"; a NO
                 * with a code (UNAVAILABLE, INUSE, LIMIT) is a passing refusal. */
                r = res.status == IMAP_ST_NO && !res.code[0] ? -ENOENT
                                                             : imap_result_errno("SELECT", &res);
        else if (r == 0 && sc.oom)
                r = -ENOMEM; /* selected, but without knowing what it permits */
        if (r == 0) {
                sc.info.read_only = strcmp(res.code, "READ-ONLY") == 0;
                sc.info.permanentflags = sc.permanentflags ? sc.permanentflags : "";
                imap_session_set_selected(s, mailbox, &sc.info);
                *info = *imap_session_sel_info(s);
        }
        free(sc.permanentflags);
        return r;
}

/* ---- UID FETCH of the listing ---- */

struct listing_ctx {
        imap_msg_fn fn;
        void *ctx;
        char *flagbuf;
        size_t flagcap;
};

/* IMAP_MSG_CID_MAX bytes at most: RFC 8474 objectids are 1-255 characters
 * of [A-Za-z0-9_-]; X-GM-MSGID is a 64-bit number. Anything else is no id
 * (the content is then keyed by folder and UID, as without one). */
static void ops_cid(const struct imap_value *l, char *out, size_t cap)
{
        out[0] = '\0';
        const struct imap_value *g = imap_fetch_item(l, "X-GM-MSGID");
        if (g && g->type == IMAP_NUMBER) {
                snprintf(out, cap, "G%llu", (unsigned long long)g->num);
                return;
        }
        const struct imap_value *e = imap_fetch_item(l, "EMAILID");
        /* EMAILID (id): a parenthesised list of one atom. */
        if (e && e->type == IMAP_LIST)
                e = e->first;
        if (!e || (e->type != IMAP_ATOM && e->type != IMAP_STRING && e->type != IMAP_NUMBER) ||
            e->len == 0 || e->len > 255 || e->len + 2 > cap)
                return;
        for (size_t i = 0; i < e->len; i++) {
                char ch = e->s[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                        return;
        }
        out[0] = 'E';
        memcpy(out + 1, e->s, e->len);
        out[e->len + 1] = '\0';
}

/* Joins a FLAGS list into "\Seen \Flagged $Label1". \Recent is left out:
 * it describes the session that saw the message first, not the message, so
 * it would differ with whichever pooled connection fetched the listing. */
static const char *ops_flags_join(struct listing_ctx *c, const struct imap_value *list)
{
        size_t need = 1;
        for (const struct imap_value *v = list ? list->first : NULL; v; v = v->next)
                need += v->len + 1;
        if (need > c->flagcap) {
                char *nb = realloc(c->flagbuf, need);
                if (!nb)
                        return "";
                c->flagbuf = nb;
                c->flagcap = need;
        }
        imap_values_join(list ? list->first : NULL, "\\Recent", c->flagbuf, c->flagcap);
        return c->flagbuf;
}

static bool ops_listing_data(void *vctx, const struct imap_response *r)
{
        struct listing_ctx *c = vctx;
        if (!ops_is_untagged(r, "FETCH") || !r->args || r->args->type != IMAP_LIST)
                return false;
        const struct imap_value *l = r->args;
        const struct imap_value *uid = imap_fetch_item(l, "UID");
        const struct imap_value *size = imap_fetch_item(l, "RFC822.SIZE");
        const struct imap_value *date = imap_fetch_item(l, "INTERNALDATE");
        const struct imap_value *flags = imap_fetch_item(l, "FLAGS");
        const struct imap_value *hdr = imap_fetch_item_prefix(l, "BODY[HEADER.FIELDS", NULL);
        /* An unsolicited flag update has no size or date: let it be an event. */
        if (!uid || uid->type != IMAP_NUMBER || !size || size->type != IMAP_NUMBER || !date)
                return false;
        struct imap_msg_info m = {
            .uid = (uint32_t)uid->num,
            .size = size->num,
            .flags = ops_flags_join(c, flags),
            .header = hdr && hdr->type == IMAP_STRING ? hdr->s : "",
            .header_len = hdr && hdr->type == IMAP_STRING ? hdr->len : 0,
        };
        if (date->type != IMAP_STRING || !imap_date_parse_internal(date->s, &m.internaldate))
                m.internaldate = 0;
        char cid[260];
        ops_cid(l, cid, sizeof cid);
        m.cid = cid;
        c->fn(c->ctx, &m);
        return true;
}

int imap_fetch_listing(struct imap_session *s, imap_msg_fn fn, void *ctx)
{
        return imap_fetch_listing_set(s, "1:*", fn, ctx);
}

int imap_fetch_listing_set(struct imap_session *s, const char *uidset, imap_msg_fn fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct listing_ctx c = {fn, ctx, NULL, 0};

        imap_session_cmd_init(s, &cmd);
        /* The content id, so that a message in several folders (Gmail's labels)
         * is downloaded once (issue 10). */
        const struct imap_caps *caps = imap_session_caps(s);
        const char *cid = caps->cid_refused ? ""
                          : caps->gmail     ? " X-GM-MSGID"
                          : caps->objectid  ? " EMAILID"
                                            : "";
        /* uidset is digits, ':' and ',' that we formatted ourselves. */
        imap_cmd_add(&cmd,
                     "UID FETCH %s (UID RFC822.SIZE INTERNALDATE FLAGS%s "
                     "BODY.PEEK[HEADER.FIELDS (DATE SUBJECT)])",
                     uidset, cid);
        int r = imap_session_cmd(s, &cmd, ops_listing_data, &c, &res);
        imap_cmd_free(&cmd);
        free(c.flagbuf);
        if (r == 0 && res.status == IMAP_ST_BAD && cid[0]) {
                /* A BAD is answered before any data: asking again without the
                 * content id lists the same messages, only not shared. */
                log_warn("the server announced%s but refused it (%s); listing without it", cid,
                         res.text);
                imap_session_cid_refused(s);
                return imap_fetch_listing_set(s, uidset, fn, ctx);
        }
        return r < 0 ? r : imap_result_errno("UID FETCH (listing)", &res);
}

/* ---- what changed (CONDSTORE / QRESYNC) ---- */

struct changes_ctx {
        imap_flags_fn flags_fn;
        imap_range_fn gone_fn;
        void *ctx;
        struct listing_ctx join; /* for ops_flags_join's buffer */
        bool bad;
};

static bool ops_changes_data(void *vctx, const struct imap_response *r)
{
        struct changes_ctx *c = vctx;
        if (ops_is_untagged(r, "VANISHED")) {
                const struct imap_value *v = r->args;
                if (!v || v->type != IMAP_LIST || !imap_value_is(v->first, "EARLIER"))
                        return false; /* a live expunge: an event like EXPUNGE */
                v = v->next;
                if (v && c->gone_fn && imap_uidset_parse(v->s, v->len, c->gone_fn, c->ctx) < 0)
                        c->bad = true;
                return true;
        }
        if (!ops_is_untagged(r, "FETCH") || !r->args || r->args->type != IMAP_LIST)
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        const struct imap_value *flags = imap_fetch_item(r->args, "FLAGS");
        if (!uid || uid->type != IMAP_NUMBER || uid->num > UINT32_MAX || !flags ||
            flags->type != IMAP_LIST)
                return false;
        c->flags_fn(c->ctx, (uint32_t)uid->num, ops_flags_join(&c->join, flags));
        return true;
}

int imap_fetch_changes(struct imap_session *s, uint64_t modseq, bool vanished,
                       imap_flags_fn flags_fn, imap_range_fn gone_fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct changes_ctx c = {flags_fn, gone_fn, ctx, {0}, false};

        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %llu%s)",
                     (unsigned long long)modseq, vanished ? " VANISHED" : "");
        int r = imap_session_cmd(s, &cmd, ops_changes_data, &c, &res);
        imap_cmd_free(&cmd);
        free(c.join.flagbuf);
        if (r < 0)
                return r;
        r = imap_result_errno("UID FETCH (CHANGEDSINCE)", &res);
        return r == 0 && c.bad ? -EPROTO : r;
}

struct search_ctx {
        imap_range_fn fn;
        void *ctx;
        bool bad, esearch;
};

static bool ops_search_data(void *vctx, const struct imap_response *r)
{
        struct search_ctx *c = vctx;
        if (ops_is_untagged(r, "SEARCH")) {
                for (const struct imap_value *v = r->args; v; v = v->next)
                        if (v->type == IMAP_NUMBER && v->num <= UINT32_MAX)
                                c->fn(c->ctx, (unsigned)v->num, (unsigned)v->num);
                return true;
        }
        if (ops_is_untagged(r, "ESEARCH")) {
                /* (TAG "A1") UID ALL 1:3,5 */
                for (const struct imap_value *v = r->args; v; v = v->next)
                        if (imap_value_is(v, "ALL") && v->next &&
                            imap_uidset_parse(v->next->s, v->next->len, c->fn, c->ctx) < 0)
                                c->bad = true;
                return true;
        }
        return false;
}

int imap_search_uids(struct imap_session *s, imap_range_fn fn, void *ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct search_ctx c = {fn, ctx, false, imap_session_caps(s)->esearch};

        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, c.esearch ? "UID SEARCH RETURN (ALL) ALL" : "UID SEARCH ALL");
        int r = imap_session_cmd(s, &cmd, ops_search_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID SEARCH", &res);
        return r == 0 && c.bad ? -EPROTO : r;
}

/* ---- UID FETCH of a byte range ---- */

/* A content fetch asks for no FLAGS: FLAGS in its answer are another
 * client's change that the server sent along (RFC 3501 §7.4.2). The bytes
 * are the command's; the response also goes on as an event. */
static bool ops_carries_news(const struct imap_response *r)
{
        return imap_fetch_item(r->args, "FLAGS") != NULL;
}

/* True if the item name says the bytes start at off: "BODY[]<off>", or
 * "BODY[]" for off 0. Parsed strictly: a hostile server's digits can't
 * overflow anything. */
static bool ops_origin_is(const struct imap_value *name, uint64_t off)
{
        if (!name)
                return off == 0;
        const char *p = name->s;
        if (strncasecmp(p, "BODY[]", 6) != 0)
                return false;
        p += 6;
        if (*p == '\0')
                return off == 0;
        if (*p++ != '<')
                return false;
        uint64_t v = 0;
        const char *digits = p;
        while (*p >= '0' && *p <= '9') {
                if (v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*p++ - '0');
        }
        return p > digits && p[0] == '>' && p[1] == '\0' && v == off;
}

struct range_ctx {
        uint32_t uid;
        uint64_t off;
        size_t len;
        char *buf;
        size_t got;
        bool found;
};

static bool ops_range_data(void *vctx, const struct imap_response *r)
{
        struct range_ctx *c = vctx;
        if (!ops_is_untagged(r, "FETCH") || !r->args || r->args->type != IMAP_LIST)
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        const struct imap_value *name = NULL;
        const struct imap_value *body = imap_fetch_item_prefix(r->args, "BODY[]", &name);
        if (!uid || uid->type != IMAP_NUMBER || uid->num != c->uid || !body)
                return false;
        /* The server echoes the origin: "BODY[]<65536>". A different origin
         * would put bytes at the wrong offset, so it is treated as no data. */
        if (ops_origin_is(name, c->off) && body->type == IMAP_NIL) {
                c->found = true;
        } else if (ops_origin_is(name, c->off) && body->type == IMAP_STRING) {
                size_t n = body->len < c->len ? body->len : c->len;
                memcpy(c->buf, body->s, n);
                c->got = n;
                c->found = true;
        }
        return !ops_carries_news(r);
}

int imap_fetch_range(struct imap_session *s, uint32_t uid, uint64_t off, size_t len, void *buf,
                     size_t *got)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct range_ctx c = {.uid = uid, .off = off, .len = len, .buf = buf};

        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID FETCH %u (UID BODY.PEEK[]<%llu.%zu>)", uid, (unsigned long long)off,
                     len);
        int r = imap_session_cmd(s, &cmd, ops_range_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        if (!c.found)
                return res.status == IMAP_ST_BAD ? imap_result_errno("UID FETCH", &res) : -ENOENT;
        *got = c.got;
        return 0;
}

struct heads_ctx {
        imap_body_fn fn;
        void *ctx;
};

static bool ops_heads_data(void *vctx, const struct imap_response *r)
{
        struct heads_ctx *c = vctx;
        if (!ops_is_untagged(r, "FETCH") || !r->args || r->args->type != IMAP_LIST)
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        const struct imap_value *name = NULL;
        const struct imap_value *body = imap_fetch_item_prefix(r->args, "BODY[]", &name);
        if (!uid || uid->type != IMAP_NUMBER || !body || uid->num > UINT32_MAX)
                return false;
        bool ours = ops_origin_is(name, 0); /* else not the origin we asked for */
        if (ours && body->type == IMAP_STRING)
                c->fn(c->ctx, (uint32_t)uid->num, body->s, body->len);
        else if (ours && body->type == IMAP_NIL)
                c->fn(c->ctx, (uint32_t)uid->num, "", 0);
        return !ops_carries_news(r);
}

int imap_fetch_heads_cmd(struct imap_session *s, uint32_t *uids, size_t n, size_t len,
                         struct imap_cmd *cmd)
{
        size_t need = imap_uidset_format(uids, n, NULL, 0);
        char *set = malloc(need + 1);
        if (!set)
                return -ENOMEM;
        imap_uidset_format(uids, n, set, need + 1);
        imap_session_cmd_init(s, cmd);
        imap_cmd_add(cmd, "UID FETCH %s (UID BODY.PEEK[]<0.%zu>)", set, len);
        free(set);
        return cmd->oom ? -ENOMEM : 0;
}

int imap_fetch_heads_chain(struct imap_session *s, uint32_t *uids, size_t n, size_t len,
                           imap_body_fn fn, void *ctx, imap_next_fn next, void *next_ctx)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct heads_ctx c = {fn, ctx};
        int r = imap_fetch_heads_cmd(s, uids, n, len, &cmd);
        if (r == 0)
                r = next ? imap_session_cmd_chain(s, &cmd, ops_heads_data, &c, next, next_ctx, &res)
                         : imap_session_cmd(s, &cmd, ops_heads_data, &c, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("UID FETCH (heads)", &res);
}

int imap_fetch_heads(struct imap_session *s, uint32_t *uids, size_t n, size_t len, imap_body_fn fn,
                     void *ctx)
{
        return imap_fetch_heads_chain(s, uids, n, len, fn, ctx, NULL, NULL);
}

struct status_ctx {
        const char *mailbox;
        struct imap_status_info *out;
        bool found;
};

/* True if the mailbox name of a STATUS response (an astring) is mailbox:
 * byte for byte as we sent it, except INBOX, whose name is case-insensitive
 * (RFC 3501 §5.1). */
bool imap_status_names(const struct imap_value *name, const char *mailbox)
{
        if (!name ||
            (name->type != IMAP_STRING && name->type != IMAP_ATOM && name->type != IMAP_NUMBER))
                return false;
        size_t n = strlen(mailbox);
        if (name->len != n)
                return false;
        if (memcmp(name->s, mailbox, n) == 0)
                return true;
        return n == 5 && strncasecmp(name->s, "INBOX", 5) == 0 &&
               strncasecmp(mailbox, "INBOX", 5) == 0;
}

bool imap_status_items(const struct imap_value *list, struct imap_status_info *out)
{
        static const struct {
                const char *item;
                size_t off;
                bool wide;
        } items[] = {
            {"MESSAGES", offsetof(struct imap_status_info, messages), false},
            {"UIDNEXT", offsetof(struct imap_status_info, uidnext), false},
            {"UIDVALIDITY", offsetof(struct imap_status_info, uidvalidity), false},
            {"HIGHESTMODSEQ", offsetof(struct imap_status_info, highestmodseq), true},
        };
        bool found = false;
        for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
                const struct imap_value *v = imap_fetch_item(list, items[i].item);
                if (!v || v->type != IMAP_NUMBER)
                        continue;
                char *field = (char *)out + items[i].off;
                if (items[i].wide)
                        *(uint64_t *)(void *)field = v->num;
                else
                        *(uint32_t *)(void *)field = (uint32_t)v->num;
                found = true;
        }
        return found;
}

static bool ops_status_data(void *vctx, const struct imap_response *r)
{
        struct status_ctx *c = vctx;
        if (!ops_is_untagged(r, "STATUS"))
                return false;
        /* NOTIFY (or a pipelined neighbour) may deliver another mailbox's
         * STATUS meanwhile: that is not our answer, but an event that must
         * reach the account so that mailbox is marked stale. */
        if (!imap_status_names(r->args, c->mailbox))
                return false;
        c->found |= imap_status_items(r->args->next, c->out);
        return true;
}

int imap_status(struct imap_session *s, const char *mailbox, struct imap_status_info *out)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct status_ctx c = {mailbox, out, false};

        memset(out, 0, sizeof(*out));
        const char *sel = imap_session_selected(s);
        if (sel && strcmp(sel, mailbox) == 0) {
                /* STATUS of the selected mailbox may answer from the session's
                 * stale view (RFC 3501 says not to ask it): NOOP brings the
                 * session up to date, and its counts are the answer. */
                int r = imap_noop(s);
                if (r < 0)
                        return r;
                const struct imap_select_info *si = imap_session_sel_info(s);
                out->messages = si->exists;
                out->uidnext = si->uidnext;
                out->uidvalidity = si->uidvalidity;
                out->highestmodseq = si->highestmodseq;
                return 0;
        }
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "STATUS ");
        imap_cmd_str(&cmd, mailbox);
        imap_cmd_add(&cmd, imap_session_caps(s)->condstore
                               ? " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
                               : " (MESSAGES UIDNEXT UIDVALIDITY)");
        int r = imap_session_cmd(s, &cmd, ops_status_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("STATUS", &res);
        return r == 0 && !c.found ? -EPROTO : r;
}

int imap_noop(struct imap_session *s)
{
        struct imap_cmd cmd;
        struct imap_result res;

        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "NOOP");
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("NOOP", &res);
}
