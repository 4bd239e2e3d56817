#include "imap/ops_write.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/array.h"
#include "imap/date.h"
#include "imap/log.h"
#include "imap/ops.h"
#include "imap/ops_find.h"

/* A command with one mailbox argument: "CREATE <mailbox>". */
static int ops_mailbox_cmd(struct imap_session *s, const char *verb, const char *mailbox)
{
        struct imap_cmd cmd;
        struct imap_result res;

        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "%s ", verb);
        imap_cmd_str(&cmd, mailbox);
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno(verb, &res);
}

int imap_create(struct imap_session *s, const char *mailbox)
{
        return ops_mailbox_cmd(s, "CREATE", mailbox);
}

/* Leaves the selected mailbox without expunging anything: UNSELECT (RFC
 * 3691), or else a SELECT that must fail, which leaves none selected. Never
 * CLOSE: it expunges what other clients marked \Deleted. A session that
 * deletes or renames its own selected mailbox gets BYE from some servers. */
static int ops_unselect(struct imap_session *s, const char *mailbox)
{
        const char *sel = imap_session_selected(s);
        if (!sel || strcmp(sel, mailbox) != 0)
                return 0;
        imap_session_set_selected(s, NULL, NULL);
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, imap_session_caps(s)->unselect ? "UNSELECT" : "EXAMINE \"\"");
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : 0;
}

int imap_delete(struct imap_session *s, const char *mailbox)
{
        int r = ops_unselect(s, mailbox);
        return r < 0 ? r : ops_mailbox_cmd(s, "DELETE", mailbox);
}

int imap_rename(struct imap_session *s, const char *from, const char *to)
{
        struct imap_cmd cmd;
        struct imap_result res;

        int r = ops_unselect(s, from);
        if (r < 0)
                return r;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "RENAME ");
        imap_cmd_str(&cmd, from);
        imap_cmd_add(&cmd, " ");
        imap_cmd_str(&cmd, to);
        r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("RENAME", &res);
}

int imap_status_messages(struct imap_session *s, const char *mailbox, uint32_t *messages)
{
        struct imap_status_info st;
        int r = imap_status(s, mailbox, &st);
        *messages = st.messages;
        return r;
}

bool imap_flag_valid(const char *flag, size_t len)
{
        static const char *const system[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                             "\\Draft"};
        if (len == 0)
                return false;
        if (flag[0] == '\\') {
                for (size_t i = 0; i < sizeof(system) / sizeof(system[0]); i++)
                        if (strlen(system[i]) == len && strncasecmp(flag, system[i], len) == 0)
                                return true;
                return false; /* \Recent can't be set; other \words are not flags */
        }
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)flag[i];
                if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch))
                        return false;
        }
        return true;
}

/* The UID of an untagged FETCH (0, which no message has: not a FETCH, or one
 * without a UID) and its FLAGS list (NULL: none). */
static uint32_t ops_fetch_uid(const struct imap_response *r, const struct imap_value **flags)
{
        *flags = NULL;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "FETCH") != 0 || !r->args)
                return 0;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        if (!uid || uid->type != IMAP_NUMBER || uid->num > UINT32_MAX)
                return 0;
        const struct imap_value *f = imap_fetch_item(r->args, "FLAGS");
        if (f && f->type == IMAP_LIST)
                *flags = f;
        return (uint32_t)uid->num;
}

int imap_store_flags(struct imap_session *s, uint32_t uid, const char *flags, char **out)
{
        return imap_store_flags_many(s, &uid, 1, flags, out); /* a set of one */
}

/* What a UID SEARCH answered: uid among the UIDs, and any other UID. */
struct search_ctx {
        uint32_t uid;
        bool ours, others;
};

static bool ops_search_data(void *vctx, const struct imap_response *r)
{
        struct search_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "SEARCH") != 0)
                return false;
        for (const struct imap_value *v = r->args; v; v = v->next) {
                if (v->type != IMAP_NUMBER)
                        continue;
                if (v->num == c->uid)
                        c->ours = true;
                else
                        c->others = true;
        }
        return true;
}

struct expunge_ctx {
        uint32_t uid;
        bool gone; /* an EXPUNGE, or a VANISHED that names uid, came */
};

static void ops_vanished_range(void *vctx, unsigned lo, unsigned hi)
{
        struct expunge_ctx *c = vctx;
        if (lo <= c->uid && c->uid <= hi)
                c->gone = true;
}

/* Notes EXPUNGE/VANISHED while UID EXPUNGE runs, leaving them to be events.
 * VANISHED (QRESYNC) names the UIDs, so one that doesn't name ours (another
 * client's expunge arriving meanwhile) does not count; EXPUNGE gives only a
 * sequence number and is taken as ours. */
static bool ops_expunge_seen(void *vctx, const struct imap_response *r)
{
        struct expunge_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return false;
        if (strcmp(r->name, "EXPUNGE") == 0)
                c->gone = true;
        else if (strcmp(r->name, "VANISHED") == 0 && r->args && r->args->type != IMAP_LIST)
                /* An unreadable set counts as not ours: the SEARCH decides. */
                (void)imap_uidset_parse(r->args->s, r->args->len, ops_vanished_range, c);
        return false;
}

static int ops_uid_cmd(struct imap_session *s, const char *what, imap_data_fn fn, void *ctx,
                       const char *fmt, uint32_t uid)
{
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, fmt, uid);
        int r = imap_session_cmd(s, &cmd, fn, ctx, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno(what, &res);
}

struct had_ctx {
        uint32_t uid;
        bool seen;    /* the FETCH answered */
        bool deleted; /* and the message had \Deleted already */
};

/* The first FETCH FLAGS of uid is the pipelined FETCH's answer (the server
 * runs it before the STORE); a later one would already show our \Deleted. */
static bool ops_had_deleted_data(void *vctx, const struct imap_response *r)
{
        struct had_ctx *c = vctx;
        const struct imap_value *flags;
        if (ops_fetch_uid(r, &flags) != c->uid || !flags)
                return false;
        if (!c->seen)
                for (const struct imap_value *v = flags->first; v; v = v->next)
                        if (imap_value_is(v, "\\Deleted"))
                                c->deleted = true;
        c->seen = true;
        return true;
}

/* UID FETCH uid (UID FLAGS) and UID STORE uid +FLAGS.SILENT (\Deleted) in one
 * round trip. Knowing whether the message had \Deleted before is what lets a
 * failure later take the flag back without undoing another client's mark. A
 * non-silent STORE would not tell: it answers the flags after the change. The
 * pipeline is safe: a FETCH of flags and a STORE of them on the same message
 * are the ambiguity RFC 3501 §5.5 names, which a server must run in the
 * order sent. */
static int ops_flag_deleted(struct imap_session *s, uint32_t uid, struct had_ctx *hc)
{
        struct imap_cmd fetch, store;
        struct imap_cmd *cmds[2] = {&fetch, &store};
        struct imap_result res[2];
        imap_session_cmd_init(s, &fetch);
        imap_cmd_add(&fetch, "UID FETCH %u (UID FLAGS)", uid);
        imap_session_cmd_init(s, &store);
        imap_cmd_add(&store, "UID STORE %u +FLAGS.SILENT (\\Deleted)", uid);
        int r = imap_session_pipeline(s, cmds, 2, ops_had_deleted_data, hc, res);
        imap_cmd_free(&fetch);
        imap_cmd_free(&store);
        return r < 0 ? r : imap_result_errno("UID STORE \\Deleted", &res[1]);
}

/* Takes our \Deleted back from a message that stays, so that no other
 * client's EXPUNGE (or CLOSE) removes it later. */
static void ops_unflag_deleted(struct imap_session *s, uint32_t uid)
{
        int r = ops_uid_cmd(s, "UID STORE -\\Deleted", NULL, NULL,
                            "UID STORE %u -FLAGS.SILENT (\\Deleted)", uid);
        if (r < 0)
                log_warn("message %u keeps the \\Deleted flag of a failed removal%s", uid,
                         r == -EIO ? " (connection lost)" : "");
}

int imap_expunge_uid(struct imap_session *s, uint32_t uid)
{
        if (!imap_session_caps(s)->uidplus) {
                log_warn("the server has no UIDPLUS: removing one message would need a plain "
                         "EXPUNGE, which also removes what other clients marked \\Deleted");
                return -EPERM;
        }
        /* UID EXPUNGE is not pipelined with the STORE: it depends on it, and
         * RFC 3501 §5.5 forbids sending dependent commands without waiting
         * (a server may run them concurrently). */
        struct had_ctx hc = {uid, false, false};
        int r = ops_flag_deleted(s, uid, &hc);
        if (r < 0)
                return r; /* the STORE failed: nothing to take back */
        struct expunge_ctx ec = {uid, false};
        imap_session_quiet(s, true);
        r = ops_uid_cmd(s, "UID EXPUNGE", ops_expunge_seen, &ec, "UID EXPUNGE %u", uid);
        imap_session_quiet(s, false);
        if (r == 0 && !ec.gone) {
                /* OK without an EXPUNGE: a server may keep the message (no
                 * right to remove it, a \Deleted it silently ignored). rm
                 * must not say "done" unless it is gone. */
                struct search_ctx sc = {uid, false, false};
                r = ops_uid_cmd(s, "UID SEARCH", ops_search_data, &sc, "UID SEARCH UID %u", uid);
                if (r == 0 && sc.ours) {
                        log_warn("the server kept message %u after UID EXPUNGE (no right to "
                                 "remove it?)",
                                 uid);
                        r = -EACCES;
                }
        }
        /* Every failure after the STORE: the message may still be there, and
         * must not stay marked for the next client's EXPUNGE. On a message
         * that is gone after all the STORE changes nothing. */
        if (r < 0 && !hc.deleted)
                ops_unflag_deleted(s, uid);
        return r;
}

/* COPYUID <uidvalidity> <source set> <dest set>: for one message the dest
 * set is one UID. False if the arguments don't say that. */
static bool ops_copyuid(const char *args, uint32_t *uidvalidity, uint32_t *uid)
{
        unsigned long v = 0, dst = 0;
        char src[64];
        if (sscanf(args, "%lu %63s %lu", &v, src, &dst) != 3 || v > UINT32_MAX ||
            dst > UINT32_MAX || strchr(src, ':') || strchr(src, ','))
                return false;
        *uidvalidity = (uint32_t)v;
        *uid = (uint32_t)dst;
        return true;
}

struct move_ctx {
        uint32_t uidvalidity, uid;
};

/* UID MOVE reports COPYUID in an untagged OK before its EXPUNGEs. */
static bool ops_move_data(void *vctx, const struct imap_response *r)
{
        struct move_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || r->status != IMAP_ST_OK || !r->code ||
            strcmp(r->code, "COPYUID") != 0)
                return false;
        char args[128];
        imap_values_join(r->code_args, NULL, args, sizeof(args));
        ops_copyuid(args, &c->uidvalidity, &c->uid);
        return true;
}

int imap_move_uid(struct imap_session *s, uint32_t uid, const char *target,
                  uint32_t *new_uidvalidity, uint32_t *new_uid)
{
        const struct imap_caps *caps = imap_session_caps(s);
        struct imap_cmd cmd;
        struct imap_result res;
        struct move_ctx c = {0, 0};

        *new_uid = *new_uidvalidity = 0;
        if (!caps->move && !caps->uidplus) {
                log_warn("the server has neither MOVE nor UIDPLUS: a message can't be moved "
                         "without a plain EXPUNGE");
                return -EPERM;
        }
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID %s %u ", caps->move ? "MOVE" : "COPY", uid);
        imap_cmd_str(&cmd, target);
        imap_session_quiet(s, true);
        int r = imap_session_cmd(s, &cmd, ops_move_data, &c, &res);
        imap_session_quiet(s, false);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno(caps->move ? "UID MOVE" : "UID COPY", &res);
        if (r < 0)
                return r;
        if (strcmp(res.code, "COPYUID") == 0)
                ops_copyuid(res.args, &c.uidvalidity, &c.uid);
        *new_uidvalidity = c.uidvalidity;
        *new_uid = c.uid;
        if (!c.uid) {
                /* UIDPLUS servers name the copy (COPYUID). Without it the
                 * command may have found nothing to act on ("OK No messages
                 * found": the UID was not in this session's view): nothing
                 * is confirmed, and the original must never go. */
                bool present = true;
                int rp = imap_uid_present(s, uid, &present);
                if (rp < 0)
                        return rp;
                if (caps->move && !present)
                        return 0; /* moved; where to, the server did not say */
                log_warn("%s of message %u confirmed no copy: the original stays",
                         caps->move ? "UID MOVE" : "UID COPY", uid);
                return -EAGAIN;
        }
        if (caps->move)
                return 0;
        /* Copied: only now may the original go. */
        const char *src = imap_session_selected(s);
        char *source = src ? strdup(src) : NULL;
        r = imap_expunge_uid(s, uid);
        if (r == -EACCES && c.uid && source) {
                /* The original stays: take the copy back, so that a failed mv
                 * leaves one message, not two. Safe: the original is there. */
                struct imap_select_info si;
                int rb = imap_select(s, target, &si);
                if (rb == 0 && si.uidvalidity == c.uidvalidity)
                        rb = imap_expunge_uid(s, c.uid);
                if (rb < 0)
                        log_warn("the copy of message %u stays in %s", uid, target);
                else
                        imap_select(s, source, &si);
                *new_uid = *new_uidvalidity = 0;
        }
        free(source);
        return r;
}

int imap_append(struct imap_session *s, const char *mailbox, const char *flags, time_t date,
                const char *data, size_t len, uint32_t *new_uid)
{
        const struct imap_caps *caps = imap_session_caps(s);
        struct imap_cmd cmd;
        struct imap_result res;

        *new_uid = 0;
        if (caps->appendlimit && len > caps->appendlimit)
                return -EFBIG;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "APPEND ");
        imap_cmd_str(&cmd, mailbox);
        if (flags && *flags)
                imap_cmd_add(&cmd, " (%s)", flags);
        if (date) {
                char d[40];
                imap_date_format_internal(date, d, sizeof(d));
                imap_cmd_add(&cmd, " \"%s\"", d);
        }
        imap_cmd_add(&cmd, " ");
        /* Always a literal: a message is never a quoted string. */
        imap_cmd_literal(&cmd, data, len);
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("APPEND", &res);
        if (r == 0 && strcmp(res.code, "APPENDUID") == 0) {
                unsigned long v, u;
                if (sscanf(res.args, "%lu %lu", &v, &u) == 2 && u <= UINT32_MAX)
                        *new_uid = (uint32_t)u;
        }
        return r;
}

/* COPYUID's source and destination sets, expanded and paired in order
 * (RFC 4315: the n-th source UID went to the n-th destination UID). */
struct uidlist {
        uint32_t *v;
        size_t n, cap, max;
        bool bad;
};

static void ops_uidlist_range(void *vctx, unsigned lo, unsigned hi)
{
        struct uidlist *l = vctx;
        for (uint64_t u = lo; u <= hi && !l->bad; u++) {
                if (l->n >= l->max || IMAP_ARRAY_GROW(l->v, l->n, l->cap, 64) < 0) {
                        l->bad = true; /* more than we moved, or ENOMEM */
                        return;
                }
                l->v[l->n++] = (uint32_t)u;
        }
}

struct moves_ctx {
        const uint32_t *uids;
        size_t n;
        uint32_t uidvalidity;
        uint32_t *new_uids;
};

/* "v srcset dstset": fills new_uids[i] for the uids[] it names. */
static void ops_copyuid_map(struct moves_ctx *c, const char *args)
{
        unsigned long v = 0;
        char *end;
        v = strtoul(args, &end, 10);
        if (end == args || *end != ' ' || v > UINT32_MAX)
                return;
        const char *src = end + 1;
        const char *sp = strchr(src, ' ');
        if (!sp)
                return;
        const char *dst = sp + 1;
        struct uidlist a = {.max = c->n}, b = {.max = c->n};
        if (imap_uidset_parse(src, (size_t)(sp - src), ops_uidlist_range, &a) == 0 &&
            imap_uidset_parse(dst, strcspn(dst, " "), ops_uidlist_range, &b) == 0 && !a.bad &&
            !b.bad && a.n == b.n) {
                c->uidvalidity = (uint32_t)v;
                for (size_t k = 0; k < a.n; k++)
                        for (size_t i = 0; i < c->n; i++)
                                if (c->uids[i] == a.v[k])
                                        c->new_uids[i] = b.v[k];
        }
        free(a.v);
        free(b.v);
}

static bool ops_moves_data(void *vctx, const struct imap_response *r)
{
        struct moves_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || r->status != IMAP_ST_OK || !r->code ||
            strcmp(r->code, "COPYUID") != 0)
                return false;
        char *args = imap_values_join_alloc(r->code_args, NULL);
        if (args)
                ops_copyuid_map(c, args);
        free(args);
        return true;
}

/* uids as an IMAP UID set ("5,7:9"), allocated; NULL when out of memory. */
static char *ops_uidset_alloc(const uint32_t *uids, size_t n)
{
        unsigned *set = malloc((n ? n : 1) * sizeof(*set));
        if (!set)
                return NULL;
        for (size_t i = 0; i < n; i++)
                set[i] = uids[i];
        size_t need = imap_uidset_format(set, n, NULL, 0);
        char *str = malloc(need + 1);
        if (str)
                imap_uidset_format(set, n, str, need + 1);
        free(set);
        return str;
}

int imap_move_uids(struct imap_session *s, const uint32_t *uids, size_t n, const char *target,
                   uint32_t *new_uidvalidity, uint32_t *new_uids)
{
        *new_uidvalidity = 0;
        memset(new_uids, 0, n * sizeof(*new_uids));
        if (!imap_session_caps(s)->move)
                return -EPERM;
        char *str = ops_uidset_alloc(uids, n);
        if (!str)
                return -ENOMEM;
        struct imap_cmd cmd;
        struct imap_result res;
        struct moves_ctx c = {uids, n, 0, new_uids};
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID MOVE %s ", str);
        imap_cmd_str(&cmd, target);
        free(str);
        imap_session_quiet(s, true);
        imap_session_quiet_ours(s, (uint32_t)n);
        int r = imap_session_cmd(s, &cmd, ops_moves_data, &c, &res);
        imap_session_quiet(s, false);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID MOVE", &res);
        if (r < 0)
                return r;
        if (strcmp(res.code, "COPYUID") == 0) {
                const char *args = res.args_cut ? imap_session_long_args(s) : res.args;
                if (args)
                        ops_copyuid_map(&c, args);
        }
        *new_uidvalidity = c.uidvalidity;
        return 0;
}

struct flags_many_ctx {
        const uint32_t *uids;
        size_t n;
        char **outs;
        bool oom;
};

static bool ops_flags_many_data(void *vctx, const struct imap_response *r)
{
        struct flags_many_ctx *c = vctx;
        const struct imap_value *flags;
        uint32_t uid = ops_fetch_uid(r, &flags);
        if (!uid || !flags)
                return false;
        for (size_t i = 0; i < c->n; i++) {
                if (c->uids[i] != uid)
                        continue;
                /* The last answer counts: the flags after the STORE. */
                free(c->outs[i]);
                c->outs[i] = imap_values_join_alloc(flags->first, "\\Recent");
                c->oom |= !c->outs[i];
                return true;
        }
        return false; /* another message's change: an event */
}

int imap_store_flags_many(struct imap_session *s, const uint32_t *uids, size_t n, const char *flags,
                          char **outs)
{
        memset(outs, 0, n * sizeof(*outs));
        char *str = ops_uidset_alloc(uids, n);
        if (!str)
                return -ENOMEM;
        struct imap_cmd cmd;
        struct imap_result res;
        struct flags_many_ctx c = {uids, n, outs, false};
        /* flags were checked flag by flag: they are atoms and safe as they are. */
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID STORE %s FLAGS (%s)", str, flags);
        free(str);
        int r = imap_session_cmd(s, &cmd, ops_flags_many_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r == 0)
                r = imap_result_errno("UID STORE", &res);
        for (size_t i = 0; r == 0 && i < n; i++)
                if (!outs[i] && !(outs[i] = strdup(flags))) /* a server that stays silent */
                        c.oom = true;
        if (r == 0 && c.oom)
                r = -ENOMEM; /* stored, but what the server says it holds is lost */
        if (r < 0) {
                for (size_t i = 0; i < n; i++) {
                        free(outs[i]);
                        outs[i] = NULL;
                }
        }
        return r;
}
/* ---- servers with neither UIDPLUS nor MOVE (issue 15) ---- */

int imap_search_deleted(struct imap_session *s, uint32_t uid, bool *ours, bool *others)
{
        struct search_ctx c = {uid, false, false};
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID SEARCH DELETED");
        int r = imap_session_cmd(s, &cmd, ops_search_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r == 0)
                r = imap_result_errno("UID SEARCH DELETED", &res);
        *ours = c.ours;
        *others = c.others;
        return r;
}

struct fetched_ctx {
        uint32_t uid;
        bool found;
};

static bool ops_fetched_data(void *vctx, const struct imap_response *r)
{
        struct fetched_ctx *c = vctx;
        const struct imap_value *flags;
        if (ops_fetch_uid(r, &flags) != c->uid)
                return false;
        c->found = true;
        return true;
}

/* Is uid in the session's view? Asked with UID FETCH uid (UID), not UID
 * SEARCH UID: GNU Mailutils 3.15 reads the set of "UID SEARCH UID n" as
 * sequence numbers (with a gap in the UIDs, "UID SEARCH UID 3" answers 4).
 * A single UID that isn't there fetches nothing. */
static int ops_uid_fetched(struct imap_session *s, uint32_t uid, bool *present)
{
        struct fetched_ctx c = {uid, false};
        int r = ops_uid_cmd(s, "UID FETCH", ops_fetched_data, &c, "UID FETCH %u (UID)", uid);
        *present = c.found;
        return r;
}

int imap_expunge_guarded(struct imap_session *s, uint32_t uid)
{
        if (imap_session_caps(s)->uidplus)
                return imap_expunge_uid(s, uid);
        struct had_ctx hc = {uid, false, false};
        int r = ops_flag_deleted(s, uid, &hc);
        if (r < 0)
                return r; /* the STORE failed: nothing to take back */
        bool ours = false, others = false;
        r = imap_search_deleted(s, uid, &ours, &others);
        if (r == 0 && others) {
                log_warn("not removing message %u: other messages of the folder are marked "
                         "\\Deleted, and without UIDPLUS the only EXPUNGE there is would remove "
                         "them too",
                         uid);
                r = -EPERM;
        } else if (r == 0 && !ours) {
                /* The STORE did not take (no right to \Deleted?): an EXPUNGE
                 * would remove nothing of ours. */
                log_warn("message %u did not keep \\Deleted: not removed", uid);
                r = -EACCES;
        }
        if (r == 0) {
                /* The guarded exception to "never a plain EXPUNGE": just now
                 * only our message carried \Deleted. */
                struct expunge_ctx ec = {uid, false};
                struct imap_cmd cmd;
                struct imap_result res;
                imap_session_cmd_init(s, &cmd);
                imap_cmd_add(&cmd, "EXPUNGE");
                imap_session_quiet(s, true);
                r = imap_session_cmd(s, &cmd, ops_expunge_seen, &ec, &res);
                imap_session_quiet(s, false);
                imap_cmd_free(&cmd);
                if (r == 0)
                        r = imap_result_errno("EXPUNGE", &res);
                if (r == 0 && !ec.gone) {
                        /* No EXPUNGE heard (Mailutils 3.15 answers "* n
                         * EXPUNGED"). Ours carried \Deleted: still listed by
                         * SEARCH DELETED means still there. The DELETED key,
                         * not a UID set, which that server misreads. */
                        bool found = false, rest = false;
                        r = imap_search_deleted(s, uid, &found, &rest);
                        if (r == 0 && found) {
                                log_warn("the server kept message %u after EXPUNGE", uid);
                                r = -EACCES;
                        }
                }
        }
        if (r < 0 && !hc.deleted)
                ops_unflag_deleted(s, uid);
        return r;
}

int imap_copy_confirmed(struct imap_session *s, uint32_t uid, const char *target)
{
        /* An OK to UID COPY of a UID outside the session's view copies
         * nothing ("OK No messages found"): only a UID the session sees makes
         * the OK a confirmation. */
        bool present = false;
        int r = ops_uid_fetched(s, uid, &present);
        if (r < 0)
                return r;
        if (!present)
                return -ENOENT;
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID COPY %u ", uid);
        imap_cmd_str(&cmd, target);
        imap_session_quiet(s, true);
        r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_session_quiet(s, false);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("UID COPY", &res);
}

int imap_publish_flags(struct imap_session *s)
{
        const struct imap_caps *caps = imap_session_caps(s);
        const char *sel = imap_session_selected(s);
        if (!sel || caps->uidplus || caps->condstore || caps->qresync || !caps->unselect)
                return 0;
        /* GNU Mailutils keeps a STORE's flags to the session until it leaves
         * the mailbox (NOOP and CHECK don't publish them; UNSELECT does, in
         * well under a millisecond). The next command there SELECTs again. */
        imap_session_set_selected(s, NULL, NULL);
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UNSELECT");
        int r = imap_session_cmd(s, &cmd, NULL, NULL, &res);
        imap_cmd_free(&cmd);
        return r < 0 ? r : imap_result_errno("UNSELECT", &res);
}
