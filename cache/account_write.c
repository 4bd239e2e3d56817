#include "cache/account_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/batch.h"
#include "cache/own.h"
#include "cache/expunge_guard.h"
#include "cache/persist.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/header.h"
#include "imap/ops.h"
#include "imap/ops_find.h"
#include "imap/ops_write.h"
#include "imap/utf7.h"

#define MBX_NOSELECT IMAP_MBX_NOSELECT
#define MBX_NOINFERIORS IMAP_MBX_NOINFERIORS
#define MBX_TRASH IMAP_MBX_TRASH

static bool write_is_inbox(const char *raw)
{
        return raw && strcasecmp(raw, "INBOX") == 0;
}

/* The directory named name in parent (lock held). */
static struct cache_mbox *write_find_dir(struct account *a, uint64_t parent, const char *name,
                                         int *err)
{
        struct cache_node *n = cache_node_get(a->cache, parent);
        if (!n || n->kind != CACHE_MBOX) {
                *err = n ? -ENOTDIR : -ENOENT;
                return NULL;
        }
        struct cache_mbox *m = cache_mbox_child((struct cache_mbox *)n, name);
        if (!m)
                *err = -ENOENT;
        return m;
}

static struct cache_mbox *write_parent(struct account *a, uint64_t parent, int *err)
{
        struct cache_node *n = cache_node_get(a->cache, parent);
        if (!n || n->kind != CACHE_MBOX) {
                *err = n ? -ENOTDIR : -ENOENT;
                return NULL;
        }
        return (struct cache_mbox *)n;
}

/* Runs a change. While the server can't be reached the mount is read-only:
 * the change fails with EROFS, as the caller would expect of a read-only
 * file system, rather than with a generic I/O error. */
static int write_run(struct account *a, const char *mailbox, enum imap_pool_use use,
                     account_op_fn fn, void *ctx)
{
        int r = account_run(a, mailbox, use, fn, ctx);
        return r == -EIO && imap_pool_down(a->pool) ? -EROFS : r;
}

/* ---- folders ---- */

static int write_create(struct imap_session *s, void *ctx)
{
        return imap_create(s, ctx);
}

struct exists_job {
        const char *raw;
        bool found;
};

static void write_exists_entry(void *ctx, const char *name, char delim, unsigned attrs)
{
        struct exists_job *j = ctx;
        (void)delim;
        if (strcmp(name, j->raw) == 0 && !(attrs & IMAP_MBX_NONEXISTENT))
                j->found = true;
}

/* After a CREATE whose answer was lost: is the folder there now? */
static int write_create_verify(struct imap_session *s, void *ctx)
{
        struct exists_job j = {ctx, false};
        int r = imap_list_all(s, write_exists_entry, &j);
        return r < 0 ? r : j.found ? 0 : -ENOENT;
}

int account_mkdir(struct account *a, uint64_t parent, const char *name, uint64_t *id)
{
        int err = 0;
        cache_lock(a->cache);
        struct cache_mbox *p = write_parent(a, parent, &err);
        char *raw = NULL;
        if (p && (cache_mbox_child(p, name) || cache_msg_by_name(p, name)))
                err = -EEXIST;
        else if (p && (p->attrs & MBX_NOINFERIORS))
                err = -EPERM;
        else if (p)
                raw = account_child_raw(a, p, name, &err);
        char delim = p && p->raw ? p->delim : a->hier_delim;
        cache_unlock(a->cache);
        if (!raw)
                return err;

        int r = account_run_write(a, NULL, IMAP_POOL_META, write_create, write_create_verify, raw);
        r = r == -EIO && imap_pool_down(a->pool) ? -EROFS : r;
        if (r == -EEXIST)
                account_refresh_tree(a, 0); /* made elsewhere: show it */
        if (r == 0) {
                cache_lock(a->cache);
                a->tree_gen++;
                r = cache_tree_add(a->cache, raw, delim, 0, account_decode_component, a);
                struct cache_mbox *m = r == 0 ? cache_mbox_by_raw(a->cache, raw) : NULL;
                if (m)
                        *id = m->node.id;
                else if (r == 0)
                        r = -EIO;
                cache_unlock(a->cache);
        }
        free(raw);
        return r;
}

int account_forget_mailbox(struct account *a, const char *raw)
{
        imap_pool_forget_mailbox(a->pool, raw);
        /* A server that reuses the name (even its UIDVALIDITY) for a new
         * folder must never get the old one's cached bytes served. */
        persist_drop_mailbox(a, raw, '\0');
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, raw);
        a->tree_gen++; /* a LIST on its way may still hold it */
        if (m) {
                log_info("%s is gone from the server", raw);
                cache_mbox_remove(a->cache, m);
                /* Its subfolders may still be there (Dovecot keeps them
                 * under a \Noselect name): the next lookup lists again. */
                a->tree_checked_ms = 0;
        }
        cache_unlock(a->cache);
        return m ? 0 : -ENOENT;
}

/* DELETE of a folder that must be empty: the cache may not know about mail
 * that arrived just now, so STATUS asks the server, and a folder that holds
 * mail is never deleted. Every session of ours leaves it first. */
static int write_delete_empty(struct account *a, struct imap_session *s, const char *raw,
                              char delim, bool selectable)
{
        if (selectable) {
                uint32_t n = 0;
                int r = imap_status_messages(s, raw, &n);
                if (r < 0)
                        return r;
                if (n > 0)
                        return -ENOTEMPTY;
        }
        int r = imap_pool_leave_mailbox(a->pool, s, raw, delim);
        return r < 0 ? r : imap_delete(s, raw);
}

struct rmdir_job {
        struct account *a;
        const char *raw;
        char delim;
        bool selectable;
};

static int write_rmdir(struct imap_session *s, void *ctx)
{
        struct rmdir_job *j = ctx;
        return write_delete_empty(j->a, s, j->raw, j->delim, j->selectable);
}

int account_rmdir(struct account *a, uint64_t parent, const char *name)
{
        int err = 0;
        cache_lock(a->cache);
        struct cache_mbox *m = write_find_dir(a, parent, name, &err);
        char *raw = NULL;
        bool selectable = false;
        char delim = 0;
        if (m && write_is_inbox(m->raw))
                err = -EPERM;
        else if (m && (m->nchildren > 0 || m->nmsgs > 0))
                err = -ENOTEMPTY;
        else if (m && !(raw = strdup(m->raw)))
                err = -ENOMEM;
        if (m) {
                selectable = !(m->attrs & MBX_NOSELECT);
                delim = m->delim ? m->delim : a->hier_delim;
        }
        cache_unlock(a->cache);
        if (!raw)
                return err;

        struct rmdir_job j = {a, raw, delim, selectable};
        int r = write_run(a, NULL, IMAP_POOL_META, write_rmdir, &j);
        if (r == 0 || r == -ENOENT) /* ENOENT: another client deleted it first */
                account_forget_mailbox(a, raw);
        free(raw);
        return r;
}

struct rename_job {
        struct account *a;
        const char *from, *to;
        char delim;
        /* mv -T over an empty folder: DELETE it first, and if the RENAME
         * then fails, CREATE it again. */
        bool replace, to_selectable;
        bool deleted; /* we deleted the target (kept across a retry) */
};

static int write_rename_dir(struct imap_session *s, void *ctx)
{
        struct rename_job *j = ctx;
        int r = 0;
        if (j->replace) {
                r = write_delete_empty(j->a, s, j->to, j->delim, j->to_selectable);
                if (r < 0 && r != -ENOENT) /* ENOENT: gone already, which will do */
                        return r;
                j->deleted = r == 0;
                j->replace = false;
        }
        r = imap_pool_leave_mailbox(j->a->pool, s, j->from, j->delim);
        return r < 0 ? r : imap_rename(s, j->from, j->to);
}

/* The target of mv -T (lock held): 0 if there is none, 1 if it is an empty
 * folder to be replaced, else the error. */
static int write_rename_target(struct cache_mbox *m, struct cache_mbox *t, bool noreplace)
{
        if (!t)
                return 0;
        if (noreplace)
                return -EEXIST;
        if (t == m)
                return -EINVAL; /* the caller answers 0: renaming onto itself */
        if (write_is_inbox(t->raw))
                return -EPERM;
        if (t->nchildren > 0 || t->nmsgs > 0)
                return -ENOTEMPTY;
        return 1;
}

static int account_rename_dir(struct account *a, struct cache_mbox *m, struct cache_mbox *np,
                              const char *newname, bool noreplace)
{
        int err = 0;
        if (write_is_inbox(m->raw))
                return -EPERM; /* RENAME INBOX moves its messages instead: not a rename */
        struct cache_mbox *t = cache_mbox_child(np, newname);
        int replace = write_rename_target(m, t, noreplace);
        if (replace == -EINVAL)
                return 0;
        if (replace < 0)
                return replace;
        if (cache_msg_by_name(np, newname))
                return -ENOTDIR;
        if (np->attrs & MBX_NOINFERIORS)
                return -EPERM;
        uint64_t id = m->node.id, npid = np->node.id, tid = t ? t->node.id : 0;
        /* Everything needed from the cache is copied now: after the unlock a
         * tree refresh may free m, np and t. */
        char d = np->raw ? np->delim : a->hier_delim;
        char delim = m->delim ? m->delim : a->hier_delim;
        bool to_selectable = t && !(t->attrs & MBX_NOSELECT);
        char *to = account_child_raw(a, np, newname, &err);
        char *from = to ? strdup(m->raw) : NULL;
        cache_unlock(a->cache);
        int r = !to ? err : !from ? -ENOMEM : 0;
        struct rename_job j = {a, from, to, delim, replace == 1, to_selectable, false};
        if (r == 0)
                r = write_run(a, NULL, IMAP_POOL_META, write_rename_dir, &j);
        if (r < 0 && j.deleted) {
                /* The RENAME failed after the empty target was deleted: put
                 * it back. ALREADYEXISTS there means the server had
                 * subfolders under it that we did not know. */
                int rc = write_run(a, NULL, IMAP_POOL_META, write_create, to);
                if (rc < 0 && rc != -EEXIST)
                        log_warn("%s was deleted to make room and could not be created again: %s",
                                 to, strerror(-rc));
                if (r == -EEXIST)
                        r = -ENOTEMPTY;
        }
        if (r == -ENOENT && from)
                account_forget_mailbox(a, from); /* the server says it is gone */
        if (r == 0) {
                imap_pool_forget_mailbox(a->pool, from);
                persist_drop_mailbox(a, from, a->hier_delim); /* and its subtree's names */
                const char *last = to;
                if (d && strrchr(to, d))
                        last = strrchr(to, d) + 1;
                char *dname = account_decode_component(a, last);
                cache_lock(a->cache);
                struct cache_node *tn = tid ? cache_node_get(a->cache, tid) : NULL;
                if (tn && tn->kind == CACHE_MBOX)
                        cache_mbox_remove(a->cache, (struct cache_mbox *)tn);
                struct cache_node *n = cache_node_get(a->cache, id);
                struct cache_node *pn = cache_node_get(a->cache, npid);
                a->tree_gen++;
                if (n && pn && n->kind == CACHE_MBOX && pn->kind == CACHE_MBOX && dname)
                        r = cache_mbox_rename(a->cache, (struct cache_mbox *)n,
                                              (struct cache_mbox *)pn, dname, to);
                else
                        a->tree_checked_ms = 0; /* lost track: the next lookup re-lists */
                cache_unlock(a->cache);
                free(dname);
        }
        free(from);
        free(to);
        cache_lock(a->cache); /* the caller unlocks */
        return r;
}

/* ---- messages ---- */

/* What a command on one message needs, copied out of the cache. */
struct msg_ref {
        char *mailbox;
        uint32_t uidvalidity, uid;
        uint64_t mbox_id;
};

static int msg_ref_take(struct cache_msg *msg, struct msg_ref *ref)
{
        ref->mailbox = strdup(msg->mbox->raw);
        ref->uidvalidity = msg->mbox->uidvalidity;
        ref->uid = msg->uid;
        ref->mbox_id = msg->mbox->node.id;
        return ref->mailbox ? 0 : -ENOMEM;
}

/* SELECTs the message's mailbox and checks that its UID still means it. */
static int write_select_ref(struct imap_session *s, const struct msg_ref *ref,
                            struct imap_select_info *si)
{
        return account_select_uid(s, ref->mailbox, ref->uidvalidity, ref->uid, si);
}

/* Applies a message's removal to the cache once the server confirmed it. */
static void write_forget_msg(struct account *a, const struct msg_ref *ref, const char *also_stale)
{
        cache_lock(a->cache);
        struct cache_mbox *m = cache_mbox_by_raw(a->cache, ref->mailbox);
        struct cache_msg *msg =
            m && m->uidvalidity == ref->uidvalidity ? cache_msg_by_uid(m, ref->uid) : NULL;
        if (msg)
                cache_msg_remove(a->cache, msg);
        if (also_stale)
                cache_mbox_mark_stale(a->cache, also_stale);
        cache_unlock(a->cache);
}

struct move_job {
        struct msg_ref ref;
        const char *target; /* NULL: expunge */
        /* Gmail: unlink in a label folder takes the label off (see
         * account_unlink); set when that is what happened. */
        bool label, label_taken;
        uint32_t new_uidvalidity, new_uid; /* where it went (COPYUID) */
        int r;                             /* the outcome, when run in a batch */
};

static int write_move(struct imap_session *s, void *ctx)
{
        struct move_job *j = ctx;
        struct imap_select_info si;
        int r = write_select_ref(s, &j->ref, &si);
        if (r < 0)
                return r;
        if (j->label && imap_session_caps(s)->gmail) {
                j->label_taken = true;
                return imap_expunge_uid(s, j->ref.uid);
        }
        if (expunge_guard_needed(s, j->target != NULL))
                return expunge_guard_run(s, j->ref.uid, j->target);
        if (!j->target)
                return imap_expunge_uid(s, j->ref.uid);
        return imap_move_uid(s, j->ref.uid, j->target, &j->new_uidvalidity, &j->new_uid);
}

/* The COPY fallback's answer was lost: is the copy in the target? Looked up
 * by the original's Message-ID (and size), on the session that has the
 * source selected, which it selects again afterwards. 0 with j->new_uid set
 * if it is there. A message without a Message-ID can't be found: -EIO. */
static int write_find_copy(struct imap_session *s, struct move_job *j)
{
        char *id = NULL;
        uint64_t size = 0;
        int r = imap_fetch_message_id(s, j->ref.uid, &id, &size);
        if (r == 0 && !id)
                r = -EIO;
        uint32_t uid = 0;
        if (r == 0)
                r = imap_find_appended(s, j->target, id, size, 0, &uid);
        free(id);
        struct imap_select_info si;
        int rs = write_select_ref(s, &j->ref, &si);
        if (r == 0 && rs == 0) {
                j->new_uid = uid;
                j->new_uidvalidity = 0; /* unknown here: the target is listed again */
                return 0;
        }
        return r < 0 ? r : rs;
}

/* After a move or removal whose answer was lost with the connection: did it
 * happen? Asked on a new connection. Gone from its folder: it did (a UID
 * MOVE is atomic; the COPY fallback removes the original only after the
 * copy was confirmed). Still there: a UID MOVE did not happen (-ENOENT,
 * nothing changed); a removal, or the COPY fallback whose copy was
 * confirmed (COPYUID), is finished now: STORE \Deleted and UID EXPUNGE of
 * this one UID do the same however often they run, and leaving it half-done
 * would leave a \Deleted message for another client's EXPUNGE, or two
 * copies. A COPY whose answer was lost can't be told apart from one that
 * never ran: unknown (-EIO). */
static int write_move_verify(struct imap_session *s, void *ctx)
{
        struct move_job *j = ctx;
        struct imap_select_info si;
        int r = write_select_ref(s, &j->ref, &si);
        bool present = true;
        if (r == 0)
                r = imap_uid_present(s, j->ref.uid, &present);
        if (r < 0)
                return r == -ESTALE ? -EIO : r;
        if (!present)
                return 0;
        bool copied = j->target && !imap_session_caps(s)->move && j->new_uid;
        if (j->target && imap_session_caps(s)->move)
                return -ENOENT;
        if (j->target && !copied && write_find_copy(s, j) < 0)
                return -EIO;
        log_info("finishing the removal of message %u from %s", j->ref.uid, j->ref.mailbox);
        r = imap_expunge_guarded(s, j->ref.uid); /* imap_expunge_uid with UIDPLUS */
        return r == -EIO ? r : r < 0 ? -ENOENT : 0;
}

/* Runs a change with its check after a lost answer (account_run_write);
 * EROFS while the server can't be reached, as write_run. */
static int write_run_verified(struct account *a, const char *mailbox, account_op_fn fn,
                              account_op_fn verify, void *ctx)
{
        int r = account_run_write(a, mailbox, IMAP_POOL_META, fn, verify, ctx);
        return r == -EIO && imap_pool_down(a->pool) ? -EROFS : r;
}

/* How long, in timeouts from its start, a move whose copy the server
 * confirmed goes on trying to remove the original, and the pause between
 * two tries. */
#define WRITE_FINISH_TIMEOUTS 3
#define WRITE_FINISH_PAUSE_MS 250

/* One move or removal on its own, with its check after a lost answer. A
 * move without MOVE whose COPY was confirmed (COPYUID, or the copy found)
 * but whose original could not be removed yet, because the server went
 * away (a restart refuses connections for a few seconds, longer than the
 * one timeout of account_run_write's check): only the removal is left, and
 * write_move_verify's STORE \Deleted + UID EXPUNGE of that UID is safe
 * however often it runs. Giving up would leave both copies, and the user,
 * told mv failed, moves the original again: a second copy. So it is tried
 * again until `until` (write_finish_until), or an answer that is not
 * transient. */
static int write_move_one(struct account *a, struct move_job *j, int64_t until)
{
        int r = write_run_verified(a, j->ref.mailbox, write_move, write_move_verify, j);
        if (r == 0 || !j->target || !j->new_uid || !account_transient(r))
                return r;
        log_warn("message %u of %s was copied to %s, but the original is still there: trying to "
                 "remove it until the server is back",
                 j->ref.uid, j->ref.mailbox, j->target);
        while (imap_now_ms() < until) {
                struct timespec pause = {0, WRITE_FINISH_PAUSE_MS * 1000000L};
                nanosleep(&pause, NULL);
                int v = account_run(a, j->ref.mailbox, IMAP_POOL_META, write_move_verify, j);
                if (v == 0) {
                        log_info("the server is back: message %u moved", j->ref.uid);
                        return 0;
                }
                if (!account_transient(v))
                        break;
        }
        log_warn("message %u is both in %s and in %s", j->ref.uid, j->ref.mailbox, j->target);
        return r;
}

/* The end of the tries of write_move_one: WRITE_FINISH_TIMEOUTS timeouts
 * from the start of the moves run together, so that the call stays under
 * the hang limit of the tests (3 timeouts + 5 s; one last try may take a
 * timeout more) however many of them are left half-done. */
static int64_t write_finish_until(const struct account *a)
{
        return imap_now_ms() + WRITE_FINISH_TIMEOUTS * (int64_t)a->imap.timeout_ms;
}

/* ---- moves in batches ---- */

/* Concurrent moves of one folder's messages to the same target, as one
 * UID MOVE of the set (see cache/batch.h). */
struct moves_job {
        struct move_job **v;
        size_t n;
        uint32_t *uids, *new_uids;
        bool nomove;   /* the server can't: each goes on its own */
        bool verified; /* after a lost answer, each one's outcome was asked */
};

static int write_moves(struct imap_session *s, void *ctx)
{
        struct moves_job *mj = ctx;
        const struct msg_ref *ref = &mj->v[0]->ref;
        uint32_t max = 0;
        bool label = false;
        for (size_t i = 0; i < mj->n; i++) {
                max = mj->uids[i] > max ? mj->uids[i] : max;
                label |= mj->v[i]->label;
        }
        struct imap_select_info si;
        int r = account_select_uid(s, ref->mailbox, ref->uidvalidity, max, &si);
        if (r < 0)
                return r;
        const struct imap_caps *caps = imap_session_caps(s);
        if (!caps->move || (label && caps->gmail)) {
                mj->nomove = true; /* nothing sent: each takes the path of one */
                return -EPERM;
        }
        uint32_t nv = 0;
        r = imap_move_uids(s, mj->uids, mj->n, mj->v[0]->target, &nv, mj->new_uids);
        if (r < 0)
                return r;
        for (size_t i = 0; i < mj->n; i++) {
                struct move_job *j = mj->v[i];
                j->new_uidvalidity = nv;
                j->new_uid = mj->new_uids[i];
                j->r = 0;
                if (j->new_uid)
                        continue;
                /* Not named in COPYUID: moved only if it is gone (the
                 * command may not have seen it at all). */
                bool present = true;
                int rp = imap_uid_present(s, j->ref.uid, &present);
                if (rp < 0)
                        return rp;
                if (present)
                        log_warn("UID MOVE of message %u confirmed no copy: it stays", j->ref.uid);
                j->r = present ? -EAGAIN : 0;
        }
        return 0;
}

/* The answer of a batch's UID MOVE was lost: which ones are gone from the
 * source? Those were moved (UID MOVE moves each message whole); the others
 * were not. */
static int write_moves_verify(struct imap_session *s, void *ctx)
{
        struct moves_job *mj = ctx;
        const struct msg_ref *ref = &mj->v[0]->ref;
        struct imap_select_info si;
        int r = account_select(s, ref->mailbox, ref->uidvalidity, &si);
        if (r < 0)
                return r == -ESTALE ? -EIO : r;
        bool all = true;
        for (size_t i = 0; i < mj->n; i++) {
                bool present = true;
                r = imap_uid_present(s, mj->v[i]->ref.uid, &present);
                if (r < 0)
                        return r;
                mj->v[i]->r = present ? -EIO : 0;
                mj->v[i]->new_uid = 0; /* where to is unknown: the target is listed again */
                all &= !present;
        }
        mj->verified = true;
        return all ? 0 : -ENOENT;
}

static void write_move_batch(void *ctx, void **args, size_t n)
{
        struct account *a = ctx;
        int64_t until = write_finish_until(a);
        struct moves_job mj = {(struct move_job **)args, n, NULL, NULL, false, false};
        if (n > 1) {
                mj.uids = malloc(n * sizeof(*mj.uids));
                mj.new_uids = malloc(n * sizeof(*mj.new_uids));
        }
        if (mj.uids && mj.new_uids) {
                for (size_t i = 0; i < n; i++)
                        mj.uids[i] = mj.v[i]->ref.uid;
                const char *src = mj.v[0]->ref.mailbox;
                int r = write_run_verified(a, src, write_moves, write_moves_verify, &mj);
                if (!mj.nomove) {
                        for (size_t i = 0; r < 0 && !mj.verified && i < n; i++)
                                mj.v[i]->r = r;
                        log_dbg("moved %zu messages of %s in one command: %d", n, src, r);
                        if (r < 0) {
                                /* Which of them moved is not known here. */
                                cache_lock(a->cache);
                                cache_mbox_mark_stale(a->cache, src);
                                cache_mbox_mark_stale(a->cache, mj.v[0]->target);
                                cache_unlock(a->cache);
                        }
                        n = 0;
                }
        }
        free(mj.uids);
        free(mj.new_uids);
        for (size_t i = 0; i < n; i++)
                mj.v[i]->r = write_move_one(a, mj.v[i], until);
}

/* Runs one move or removal: to a folder, together with the others of the
 * same source and target in flight at the same time; an expunge on its own. */
static int write_move_run(struct account *a, struct move_job *j)
{
        if (!j->target)
                return write_move_one(a, j, write_finish_until(a));
        size_t len = strlen(j->ref.mailbox) + strlen(j->target) + 32;
        char *key = malloc(len);
        if (!key)
                return -ENOMEM;
        snprintf(key, len, "M%u\x01%s\x01%s", j->ref.uidvalidity, j->ref.mailbox, j->target);
        j->r = -EIO;
        int r = batch_submit(a->batch, key, j, write_move_batch, a);
        free(key);
        return r < 0 ? r : j->r;
}

/* A change of ours is over (lock not held): its echoes are no longer
 * pending. An outcome we don't know (the answer was lost and the server
 * could not say) may have changed both folders: they are listed again. */
static void write_own_done(struct account *a, const struct msg_ref *ref, const char *dst,
                           const char *flags, int r)
{
        cache_lock(a->cache);
        own_done(a->own, ref->mailbox, &ref->uid, 1, dst, flags);
        if (r == -EIO || r == -EROFS || r == -ETIMEDOUT) {
                cache_mbox_mark_stale(a->cache, ref->mailbox);
                if (dst)
                        cache_mbox_mark_stale(a->cache, dst);
        }
        cache_unlock(a->cache);
}

/* After a move the server confirmed with COPYUID, the message's node goes
 * with it: same inode, its new UID and name, in the target's listing. GNU mv
 * stats the target name right after renaming several files; that name then
 * still finds this very message (until the kernel is told to forget it),
 * and nothing has to be fetched again. False if that can't be done (no
 * COPYUID, a target listing of another UIDVALIDITY): the caller forgets it. */
static bool write_follow_move(struct account *a, const struct move_job *j)
{
        if (!j->new_uid || !j->new_uidvalidity)
                return false;
        bool moved = false;
        cache_lock(a->cache);
        struct cache_mbox *src = cache_mbox_by_raw(a->cache, j->ref.mailbox);
        struct cache_mbox *dst = cache_mbox_by_raw(a->cache, j->target);
        struct cache_msg *msg = src && src->uidvalidity == j->ref.uidvalidity
                                    ? cache_msg_by_uid(src, j->ref.uid)
                                    : NULL;
        if (msg && dst && dst->state == CACHE_LISTING_NONE && dst->nmsgs == 0)
                dst->uidvalidity = j->new_uidvalidity; /* the listing will agree */
        if (msg && dst && dst->uidvalidity == j->new_uidvalidity) {
                char *name = a->naming.reuid(a->naming.ctx, msg->name, msg->uid, j->new_uid);
                if (name && cache_msg_move(a->cache, msg, dst, j->new_uid, name) == 0)
                        moved = true;
                else
                        free(name);
        }
        /* The counts follow too, so that the server's echo of this move
         * (EXISTS, NOTIFY's STATUS) matches the cache and is no news. */
        if (moved && j->new_uid >= dst->uidnext)
                dst->uidnext = j->new_uid + 1;
        if (j->new_uid)
                own_added(a->own, j->target, j->new_uid);
        cache_unlock(a->cache);
        return moved;
}

static int account_move_msg(struct account *a, struct cache_msg *msg, struct cache_mbox *np,
                            const char *newname)
{
        if (np == msg->mbox)
                return -EPERM; /* a message's name comes from its content */
        if (!np->raw || (np->attrs & MBX_NOSELECT))
                return -EPERM;
        if (cache_msg_by_name(np, newname))
                return -EEXIST;
        if (cache_mbox_child(np, newname))
                return -EISDIR;
        struct move_job j = {.target = strdup(np->raw)};
        int r = j.target ? msg_ref_take(msg, &j.ref) : -ENOMEM;
        if (r == 0)
                own_expect(a->own, j.ref.mailbox, &j.ref.uid, 1, j.target, NULL);
        cache_unlock(a->cache);
        if (r == 0)
                r = write_move_run(a, &j);
        if (r == 0 && !write_follow_move(a, &j))
                write_forget_msg(a, &j.ref, j.target);
        if (j.ref.mailbox)
                write_own_done(a, &j.ref, j.target, NULL, r);
        free(j.ref.mailbox);
        free((char *)j.target);
        cache_lock(a->cache);
        return r == -ESTALE ? -ENOENT : r;
}

int account_rename(struct account *a, uint64_t parent, const char *name, uint64_t newparent,
                   const char *newname, bool noreplace)
{
        int err = 0;
        cache_lock(a->cache);
        struct cache_mbox *p = write_parent(a, parent, &err);
        struct cache_mbox *np = p ? write_parent(a, newparent, &err) : NULL;
        if (np) {
                struct cache_mbox *m = cache_mbox_child(p, name);
                struct cache_msg *msg = m ? NULL : cache_msg_by_name(p, name);
                if (m)
                        err = account_rename_dir(a, m, np, newname, noreplace);
                else if (msg)
                        err = account_move_msg(a, msg, np, newname);
                else
                        err = -ENOENT;
        }
        cache_unlock(a->cache);
        return err;
}

/* The folder that unlink moves messages to (lock held): NULL for none. */
static char *write_trash(struct account *a)
{
        if (a->opts.trash)
                return *a->opts.trash ? strdup(a->opts.trash) : NULL;
        struct cache_mbox *root = cache_root(a->cache);
        struct cache_mbox *stack[64];
        size_t n = 0;
        stack[n++] = root;
        while (n > 0) {
                struct cache_mbox *m = stack[--n], *ch, *tmp;
                if (m->raw && (m->attrs & MBX_TRASH) && !(m->attrs & MBX_NOSELECT))
                        return strdup(m->raw);
                HASH_ITER(hh_child, m->children, ch, tmp)
                {
                        if (n < sizeof(stack) / sizeof(stack[0]))
                                stack[n++] = ch;
                }
        }
        return NULL;
}

int account_unlink(struct account *a, uint64_t parent, const char *name)
{
        int err = 0;
        cache_lock(a->cache);
        struct cache_mbox *p = write_parent(a, parent, &err);
        struct cache_msg *msg = p ? cache_msg_by_name(p, name) : NULL;
        struct move_job j = {0};
        if (p && !msg)
                err = cache_mbox_child(p, name) ? -EISDIR : -ENOENT;
        if (msg) {
                err = msg_ref_take(msg, &j.ref);
                j.target = write_trash(a);
                /* In the trash itself, unlink means gone. */
                if (j.target && strcmp(j.target, j.ref.mailbox) == 0) {
                        free((char *)j.target);
                        j.target = NULL;
                }
                /* On Gmail a folder is a label: moving a message from it to
                 * the trash would delete it from every label, and expunging it
                 * only takes this label off (the message stays in All Mail).
                 * So by default rm expunges in a label folder, and moves to
                 * the trash only from All Mail (\All). */
                j.label = j.target && !a->opts.trash && !(p->attrs & IMAP_MBX_ALL);
                if (err == 0)
                        own_expect(a->own, j.ref.mailbox, &j.ref.uid, 1, j.target, NULL);
        }
        cache_unlock(a->cache);
        if (!msg || err < 0) {
                free(j.ref.mailbox);
                free((char *)j.target);
                return err;
        }
        int r = write_move_run(a, &j);
        /* Moved to the trash with COPYUID: the node goes along, as for mv,
         * so the trash's listing stays true without a refresh. */
        bool to_trash = j.target && !j.label_taken;
        if (r == 0 && !(to_trash && write_follow_move(a, &j)))
                write_forget_msg(a, &j.ref, to_trash ? j.target : NULL);
        else if (r == -ENOENT && to_trash)
                log_warn("trash folder %s does not exist on the server", j.target);
        write_own_done(a, &j.ref, j.target, NULL, r);
        free(j.ref.mailbox);
        free((char *)j.target);
        return r == -ESTALE ? -ENOENT : r;
}

/* ---- flags ---- */

int account_flags_check(const char *flags, size_t len)
{
        size_t i = 0;
        while (i < len) {
                while (i < len && flags[i] == ' ')
                        i++;
                size_t start = i;
                while (i < len && flags[i] != ' ')
                        i++;
                if (i > start && !imap_flag_valid(flags + start, i - start))
                        return -EINVAL;
        }
        return 0;
}

/* True if the mailbox lets flag be stored (PERMANENTFLAGS; \* allows any
 * keyword). A server that sent no PERMANENTFLAGS is taken at its word later. */
static bool write_flag_permitted(const char *perm, const char *flag, size_t len)
{
        if (!*perm)
                return true;
        if (flag[0] != '\\' && strstr(perm, "\\*"))
                return true;
        for (const char *p = perm; *p;) {
                size_t l = strcspn(p, " ");
                if (l == len && strncasecmp(p, flag, len) == 0)
                        return true;
                p += l;
                while (*p == ' ')
                        p++;
        }
        return false;
}

struct flags_job {
        struct msg_ref ref;
        char *flags; /* normalised: single spaces */
        char *out;   /* the flags the server reports after the STORE */
        int r;       /* the outcome, when run in a batch */
};

/* -EPERM if the folder does not let one of the flags be stored. */
static int write_flags_check(const struct flags_job *j, const struct imap_select_info *si)
{
        for (const char *p = j->flags; *p;) {
                size_t l = strcspn(p, " ");
                if (!write_flag_permitted(si->permanentflags, p, l)) {
                        log_warn("%s does not allow the flag %.*s", j->ref.mailbox, (int)l, p);
                        return -EPERM;
                }
                p += l;
                while (*p == ' ')
                        p++;
        }
        return 0;
}

static int write_flags(struct imap_session *s, void *ctx)
{
        struct flags_job *j = ctx;
        struct imap_select_info si;
        int r = write_select_ref(s, &j->ref, &si);
        if (r == 0)
                r = write_flags_check(j, &si);
        if (r < 0)
                return r;
        free(j->out);
        r = imap_store_flags(s, j->ref.uid, j->flags, &j->out);
        return r == 0 ? imap_publish_flags(s) : r;
}

/* Concurrent STOREs of the same flags in one folder (setfattr run by
 * xargs -P, a file manager's threads): one UID STORE of the set. */
struct flags_many {
        struct flags_job **v;
        size_t n;
        uint32_t *uids;
        char **outs;
};

static int write_flags_many(struct imap_session *s, void *ctx)
{
        struct flags_many *fm = ctx;
        uint32_t max = 0;
        for (size_t i = 0; i < fm->n; i++)
                max = fm->uids[i] > max ? fm->uids[i] : max;
        struct imap_select_info si;
        const struct msg_ref *ref = &fm->v[0]->ref;
        int r = account_select_uid(s, ref->mailbox, ref->uidvalidity, max, &si);
        if (r == 0)
                r = write_flags_check(fm->v[0], &si);
        if (r < 0)
                return r;
        for (size_t i = 0; i < fm->n; i++) {
                free(fm->outs[i]);
                fm->outs[i] = NULL;
        }
        return imap_store_flags_many(s, fm->uids, fm->n, fm->v[0]->flags, fm->outs);
}

static void write_flags_batch(void *ctx, void **args, size_t n)
{
        struct account *a = ctx;
        struct flags_many fm = {(struct flags_job **)args, n, NULL, NULL};
        if (n > 1) {
                fm.uids = malloc(n * sizeof(*fm.uids));
                fm.outs = calloc(n, sizeof(*fm.outs));
        }
        if (fm.uids && fm.outs) {
                for (size_t i = 0; i < n; i++)
                        fm.uids[i] = fm.v[i]->ref.uid;
                /* FLAGS (...) sets the whole set: sending it again after a
                 * lost answer gives the same flags, so it is its own check. */
                int r = write_run_verified(a, fm.v[0]->ref.mailbox, write_flags_many,
                                           write_flags_many, &fm);
                log_dbg("stored the flags of %zu messages of %s in one command: %d", n,
                        fm.v[0]->ref.mailbox, r);
                for (size_t i = 0; i < n; i++) {
                        fm.v[i]->r = r;
                        free(fm.v[i]->out);
                        fm.v[i]->out = r == 0 ? fm.outs[i] : NULL;
                        if (r < 0)
                                free(fm.outs[i]);
                }
                n = 0;
        }
        free(fm.uids);
        free(fm.outs);
        for (size_t i = 0; i < n; i++)
                fm.v[i]->r =
                    write_run_verified(a, fm.v[i]->ref.mailbox, write_flags, write_flags, fm.v[i]);
}

/* Runs one STORE, together with the others of the same folder and flags
 * in flight at the same time. */
static int write_flags_run(struct account *a, struct flags_job *j)
{
        size_t len = strlen(j->ref.mailbox) + strlen(j->flags) + 32;
        char *key = malloc(len);
        if (!key)
                return -ENOMEM;
        snprintf(key, len, "F%u\x01%s\x01%s", j->ref.uidvalidity, j->ref.mailbox, j->flags);
        j->r = -EIO;
        int r = batch_submit(a->batch, key, j, write_flags_batch, a);
        free(key);
        return r < 0 ? r : j->r;
}

char *account_flags_normalise(const char *flags, size_t len)
{
        char *out = malloc(len + 1);
        size_t o = 0;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (flags[i] == ' ' || flags[i] == '\t' || flags[i] == '\n') {
                        if (o && out[o - 1] != ' ')
                                out[o++] = ' ';
                        continue;
                }
                out[o++] = flags[i];
        }
        while (o && out[o - 1] == ' ')
                o--;
        out[o] = '\0';
        return out;
}

int account_set_flags(struct account *a, uint64_t msg_id, const char *flags, size_t len)
{
        struct flags_job j = {0};
        j.flags = account_flags_normalise(flags, len);
        if (!j.flags)
                return -ENOMEM;
        int r = account_flags_check(j.flags, strlen(j.flags));
        if (r == 0) {
                cache_lock(a->cache);
                struct cache_node *n = cache_node_get(a->cache, msg_id);
                if (!n || n->kind != CACHE_MSG)
                        r = n ? -EPERM : -ENOENT;
                else
                        r = msg_ref_take((struct cache_msg *)n, &j.ref);
                if (r == 0)
                        own_expect(a->own, j.ref.mailbox, &j.ref.uid, 1, NULL, j.flags);
                cache_unlock(a->cache);
        }
        if (r == 0)
                /* FLAGS (...) sets the whole set: sending it again after a
                 * lost answer gives the same flags, so it is its own check. */
                r = write_flags_run(a, &j);
        if (r == 0) {
                cache_lock(a->cache);
                struct cache_node *n = cache_node_get(a->cache, msg_id);
                if (n && n->kind == CACHE_MSG)
                        r = cache_msg_set_flags((struct cache_msg *)n, j.out);
                if (r == 0 && n && n->kind == CACHE_MSG)
                        cache_msg_flags_changed(a->cache, (struct cache_msg *)n);
                cache_unlock(a->cache);
        }
        if (j.ref.mailbox)
                write_own_done(a, &j.ref, NULL, j.flags, r);
        free(j.ref.mailbox);
        free(j.flags);
        free(j.out);
        return r == -ESTALE ? -ENOENT : r;
}

/* ---- APPEND ---- */

struct append_job {
        const char *mailbox;
        const char *flags;
        time_t date;
        const char *data;
        size_t len;
        uint32_t uid;
        uint32_t uid_floor; /* the folder's UIDNEXT before the APPEND, as known; 0: unknown */
        /* The new message's listing entry, when the session had the folder
         * selected and could ask for it at once. */
        bool listed;
        uint32_t uidvalidity;
        struct imap_msg_info info;
        char *flags_out, *header;
        bool dedup; /* an identical message already there is taken instead */
        bool found; /* ... and it was (nothing was appended) */
};

/* ---- an identical message already in the folder ---- */

/* Candidates compared byte by byte; a folder rarely holds more than one
 * message with one Message-ID and one size. */
#define WRITE_SAME_MAX 8
/* Larger messages are not compared (reading them back costs more than a
 * second copy saves). */
#define WRITE_SAME_MAX_LEN (64u << 20)

struct write_same {
        uint32_t uids[WRITE_SAME_MAX];
        size_t n;
};

static bool write_same_data(void *vctx, const struct imap_response *r)
{
        struct write_same *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "SEARCH") != 0)
                return false;
        for (const struct imap_value *v = r->args; v; v = v->next)
                if (v->type == IMAP_NUMBER && v->num > 0 && v->num <= UINT32_MAX &&
                    c->n < WRITE_SAME_MAX)
                        c->uids[c->n++] = (uint32_t)v->num;
        return true;
}

/* Does mailbox hold a message with data's Message-ID and exactly data's
 * bytes? Candidates come from one UID SEARCH (that Message-ID, that size);
 * each is read back and compared, so two different messages that share a
 * Message-ID are never taken for each other. 0 with *uid, -ENOENT if there
 * is none (or data has no Message-ID), else -errno. Leaves mailbox selected. */
static int write_find_same(struct imap_session *s, const char *mailbox, const char *data,
                           size_t len, uint32_t *uid)
{
        if (len == 0 || len > WRITE_SAME_MAX_LEN)
                return -ENOENT;
        char *id = imap_message_id(data, len);
        if (!id)
                return -ENOENT;
        struct imap_select_info si;
        int r = imap_select(s, mailbox, &si);
        struct write_same c = {.n = 0};
        if (r == 0) {
                struct imap_cmd cmd;
                struct imap_result res;
                imap_session_cmd_init(s, &cmd);
                imap_cmd_add(&cmd, "UID SEARCH LARGER %zu SMALLER %zu HEADER Message-ID ", len - 1,
                             len + 1);
                imap_cmd_str(&cmd, id);
                r = imap_session_cmd(s, &cmd, write_same_data, &c, &res);
                imap_cmd_free(&cmd);
                if (r == 0)
                        r = imap_result_errno("UID SEARCH (same message)", &res);
                if (r == -ENOENT)
                        r = -EIO; /* the folder is there: not "no such message" */
        }
        free(id);
        char *buf = r == 0 && c.n ? malloc(len) : NULL;
        if (r == 0 && c.n && !buf)
                r = -ENOMEM;
        int found = -ENOENT;
        for (size_t i = c.n; r == 0 && found < 0 && i-- > 0;) { /* newest first */
                size_t got = 0;
                int fr = imap_fetch_range(s, c.uids[i], 0, len, buf, &got);
                if (fr == 0 && got == len && memcmp(buf, data, len) == 0) {
                        *uid = c.uids[i];
                        found = 0;
                } else if (fr < 0 && fr != -ENOENT) {
                        r = fr;
                }
        }
        free(buf);
        return r < 0 ? r : found;
}

uint64_t account_append_limit(struct account *a)
{
        return imap_pool_appendlimit(a->pool);
}

static void write_append_item(void *ctx, const struct imap_msg_info *m)
{
        struct append_job *j = ctx;
        if (m->uid != j->uid || j->listed)
                return;
        j->info = *m;
        j->flags_out = strdup(m->flags);
        j->header = malloc(m->header_len + 1);
        if (!j->flags_out || !j->header)
                return;
        memcpy(j->header, m->header, m->header_len);
        j->header[m->header_len] = '\0';
        j->info.flags = j->flags_out;
        j->info.header = j->header;
        j->listed = true;
}

static int write_append(struct imap_session *s, void *ctx)
{
        struct append_job *j = ctx;
        if (j->dedup) {
                int fr = write_find_same(s, j->mailbox, j->data, j->len, &j->uid);
                if (fr == 0) {
                        j->found = true;
                        return 0;
                }
                if (fr != -ENOENT)
                        return fr;
        }
        const char *sel = imap_session_selected(s);
        bool selected = sel && strcmp(sel, j->mailbox) == 0;
        /* With the folder selected, our own APPEND's EXISTS is no news. */
        imap_session_quiet(s, selected);
        int r = imap_append(s, j->mailbox, j->flags, j->date, j->data, j->len, &j->uid);
        if (r == 0 && selected && j->uid) {
                /* One more round trip now saves a refresh of the listing when
                 * the next name is looked up (cp of many files). */
                char set[16];
                snprintf(set, sizeof(set), "%u", j->uid);
                j->uidvalidity = imap_session_sel_info(s)->uidvalidity;
                if (imap_fetch_listing_set(s, set, write_append_item, j) < 0)
                        j->listed = false;
        }
        imap_session_quiet(s, false);
        return r;
}

/* After an APPEND whose answer was lost: did the message arrive? Looked up
 * by its Message-ID (or its size) among the UIDs given since. */
static int write_append_verify(struct imap_session *s, void *ctx)
{
        struct append_job *j = ctx;
        char *id = imap_message_id(j->data, j->len);
        int r = imap_find_appended(s, j->mailbox, id, j->len, j->uid_floor, &j->uid);
        free(id);
        return r;
}

int account_append(struct account *a, uint64_t mbox_id, const char *data, size_t len,
                   const char *flags, time_t date)
{
        return account_append_ex(a, mbox_id, data, len, flags, date, false, NULL);
}

int account_append_ex(struct account *a, uint64_t mbox_id, const char *data, size_t len,
                      const char *flags, time_t date, bool dedup, uint32_t *uid_out)
{
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, mbox_id);
        char *mailbox = NULL;
        int r = 0;
        if (!n || n->kind != CACHE_MBOX)
                r = n ? -ENOTDIR : -ENOENT;
        else if (!((struct cache_mbox *)n)->raw || (((struct cache_mbox *)n)->attrs & MBX_NOSELECT))
                r = -EPERM;
        else if (!(mailbox = strdup(((struct cache_mbox *)n)->raw)))
                r = -ENOMEM;
        uint32_t uid_floor = r == 0 ? ((struct cache_mbox *)n)->uidnext : 0;
        /* The new message's UID is above every one the folder already gave
         * (UIDNEXT may be unknown, or a session's estimate from EXISTS that
         * lags): a lost answer must not be confirmed by a message that was
         * there before, such as the one an edit replaces (same Message-ID). */
        if (r == 0) {
                const struct cache_mbox *m = (const struct cache_mbox *)n;
                uint32_t top = m->nuidv ? m->uidv[m->nuidv - 1]->uid : 0;
                if (top && top < UINT32_MAX && top >= uid_floor)
                        uid_floor = top + 1;
        }
        if (r == 0)
                own_expect(a->own, NULL, NULL, 1, mailbox, NULL);
        cache_unlock(a->cache);
        if (r < 0)
                return r;
        struct append_job j = {.mailbox = mailbox,
                               .flags = flags,
                               .date = date,
                               .data = data,
                               .len = len,
                               .uid_floor = uid_floor,
                               .dedup = dedup};
        /* EIO, as for any failed close; never sent twice (see write_append_verify) */
        r = account_run_write(a, mailbox, IMAP_POOL_META, write_append, write_append_verify, &j);
        if (r == 0 && uid_out)
                *uid_out = j.uid;
        if (r == 0 && j.found) {
                log_dbg("%s already holds these %zu bytes as UID %u: not appended", mailbox, len,
                        j.uid);
        } else if (r == 0) {
                log_dbg("appended %zu bytes to %s as UID %u", len, mailbox, j.uid);
                cache_lock(a->cache);
                struct cache_mbox *m = cache_mbox_by_raw(a->cache, mailbox);
                if (m && j.listed && m->state == CACHE_LISTING_VALID &&
                    m->uidvalidity == j.uidvalidity) {
                        cache_listing_add(a->cache, m, j.uid, j.info.size, j.info.internaldate,
                                          j.info.flags, j.info.header, j.info.header_len);
                        m->exists = (uint32_t)m->nmsgs;
                        if (j.uid >= m->uidnext)
                                m->uidnext = j.uid + 1;
                } else {
                        cache_mbox_mark_stale(a->cache, mailbox);
                }
                cache_unlock(a->cache);
        }
        cache_lock(a->cache);
        own_done(a->own, NULL, NULL, 1, mailbox, NULL);
        cache_unlock(a->cache);
        free(j.flags_out);
        free(j.header);
        free(mailbox);
        return r;
}

char *account_trash_folder(struct account *a)
{
        return write_trash(a);
}
