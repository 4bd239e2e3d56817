/* Files: open, read, write, flush, release. Message reads become partial
 * FETCHes through the account's block cache; the kernel may keep the pages
 * (keep_cache) because a message's bytes never change under its UID. Files
 * being written (staged) keep their bytes locally; the last close APPENDs
 * them and reports the server's answer as close()'s result. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/account_write.h"
#include "fs/fs.h"
#include "fs/ops_parts.h"
#include "fs/scratch.h"
#include "imap/date.h"
#include "imap/header.h"
#include "imap/log.h"

/* The message's bytes as the start of its replacement: vim (9.x) opens
 * the file it writes without O_TRUNC and truncates after writing. */
static int ops_replace_preload(struct fs *fs, fuse_ino_t ino)
{
        struct account_file *f;
        int r = account_file_open(&fs->acct, ino, &f);
        if (r < 0)
                return r;
        enum { CHUNK = 1 << 20 };
        char *buf = malloc(CHUNK);
        uint64_t off = 0;
        if (!buf)
                r = -ENOMEM;
        while (r == 0) {
                size_t got = 0;
                r = account_file_read(&fs->acct, f, off, CHUNK, buf, &got);
                if (r < 0 || got == 0)
                        break;
                r = staging_write(fs->staging, ino, buf, got, (off_t)off);
                off += got;
        }
        free(buf);
        account_file_close(f);
        return r;
}

/* open for writing of a message (vim, `cat > msg.eml`): a staged file with
 * the message's own inode that replaces the message at close (as a rename
 * over it does). With O_TRUNC it starts empty, else with the message. */
static int ops_open_replace(struct fs *fs, fuse_ino_t ino, bool trunc)
{
        if (!account_online(&fs->acct))
                return -EROFS;
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, ino);
        const struct cache_msg *m = n && n->kind == CACHE_MSG ? (const struct cache_msg *)n : NULL;
        uint64_t parent = m ? m->mbox->node.id : 0;
        char *name = m ? strdup(m->name) : NULL;
        cache_unlock(fs->acct.cache);
        int r = name ? staging_create(fs->staging, ino, parent, name) : -EACCES;
        bool made = r == 0;
        if (r == 0)
                r = staging_set_replaces(fs->staging, ino, ino);
        if (r == 0 && !trunc)
                r = ops_replace_preload(fs, ino);
        /* Opened to write, but nothing written yet: a close now leaves the
         * message as it is (O_TRUNC empties it: that is a change). */
        if (r == 0 && !trunc)
                r = staging_mark_clean(fs->staging, ino);
        if (r == 0)
                r = staging_open(fs->staging, ino);
        free(name);
        if (r < 0 && made) {
                uint64_t p;
                char *nm = NULL;
                staging_remove(fs->staging, ino, &p, &nm);
                free(nm);
        }
        return r;
}

static void ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        if (parts_fs_open(req, ino, fi))
                return;
        if (staging_get(fs->staging, ino, &sd)) {
                int r = staging_open(fs->staging, ino);
                if (r == 0 && (fi->flags & O_TRUNC))
                        r = staging_truncate(fs->staging, ino, 0);
                fi->fh = 0; /* staged: found by inode */
                fi->direct_io = 1;
                if (r < 0)
                        fuse_reply_err(req, -r);
                else
                        fuse_reply_open(req, fi);
                return;
        }
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
                /* Messages are immutable in IMAP: writing one makes a new
                 * message that replaces it at close. */
                int r =
                    fs->read_only ? -EROFS : ops_open_replace(fs, ino, (fi->flags & O_TRUNC) != 0);
                if (r < 0) {
                        fuse_reply_err(req, fs_errno(r));
                        return;
                }
                fi->fh = 0;
                fi->direct_io = 1;
                fuse_reply_open(req, fi);
                return;
        }
        struct account_file *f;
        int r = account_file_open(&fs->acct, ino, &f);
        if (r < 0) {
                fuse_reply_err(req, fs_errno(r));
                return;
        }
        fi->fh = (uint64_t)(uintptr_t)f;
        fi->keep_cache = 1;
        /* Read-ahead probes how far a scan reads its files (cache/ahead.h). */
        fi->direct_io = f->direct;
        /* Nothing to do at close() of a message: skip the FLUSH round trip
         * (files being written need it, messages don't). */
        fi->noflush = 1;
        fuse_reply_open(req, fi);
}

static void ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct account_file *f = (struct account_file *)(uintptr_t)fi->fh;
        if (!f && parts_fs_read(req, ino, size, off))
                return;
        char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        if (!f) {
                ssize_t n = staging_read(fs->staging, ino, buf, size, off);
                if (n < 0)
                        fuse_reply_err(req, (int)-n);
                else
                        fuse_reply_buf(req, buf, (size_t)n);
                free(buf);
                return;
        }
        size_t got = 0;
        int r = account_file_read(&fs->acct, f, (uint64_t)off, size, buf, &got);
        if (r < 0)
                fuse_reply_err(req, fs_errno(r));
        else
                fuse_reply_buf(req, buf, got);
        free(buf);
}

static void ops_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (fi->fh) {
                fuse_reply_err(req, EBADF); /* a message opened read-only */
                return;
        }
        /* Bigger than the server takes (APPENDLIMIT): fail now, not at close. */
        uint64_t limit = account_append_limit(&fs->acct);
        int r = limit && (uint64_t)off + size > limit
                    ? -EFBIG
                    : staging_write(fs->staging, ino, buf, size, off);
        if (r < 0)
                fuse_reply_err(req, -r);
        else
                fuse_reply_write(req, size);
}

/* The INTERNALDATE of a new message: the mtime set before close (cp -p,
 * touch -d, rsync), else the message's own Date: header when it parses (cp
 * without -p, file managers: GIO sets the mtime only after close), else 0
 * (the server's now). */
static time_t ops_commit_date(const char *data, size_t len, time_t set)
{
        if (set)
                return set;
        const char *end = memmem(data, len, "\r\n\r\n", 4);
        size_t hlen = end ? (size_t)(end - data) + 2 : len;
        char *v = imap_header_field(data, hlen, "Date");
        time_t t = 0;
        if (v && !imap_date_parse_rfc5322(v, strlen(v), &t))
                t = 0;
        free(v);
        return t > 0 ? t : 0;
}

/* flags without \Recent (a session's flag, which APPEND can't set); malloc'd. */
static char *ops_flags_for_append(const char *flags)
{
        char *out = malloc(strlen(flags) + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (const char *p = flags; *p;) {
                while (*p == ' ')
                        p++;
                size_t n = strcspn(p, " ");
                if (n && !(n == 7 && strncasecmp(p, "\\Recent", 7) == 0)) {
                        if (o)
                                out[o++] = ' ';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p += n;
        }
        out[o] = '\0';
        return out;
}

/* The cache id of message uid in folder parent; the listing is fetched
 * again if the APPEND did not add it. 0 if it can't be found. */
static uint64_t ops_msg_id(struct fs *fs, uint64_t parent, uint32_t uid)
{
        uint64_t id = 0;
        for (int pass = 0; uid && !id && pass < 2; pass++) {
                if (pass == 1 && account_refresh_listing(&fs->acct, parent, 0) < 0)
                        break;
                cache_lock(fs->acct.cache);
                struct cache_node *n = cache_node_get(fs->acct.cache, parent);
                struct cache_msg *m = n && n->kind == CACHE_MBOX
                                          ? cache_msg_by_uid((struct cache_mbox *)n, uid)
                                          : NULL;
                id = m ? m->node.id : 0;
                cache_unlock(fs->acct.cache);
        }
        return id;
}

/* What a replacement takes over from the message it replaces. */
struct ops_old_msg {
        uint64_t parent;
        uint32_t uid;
        time_t internaldate;
        char *flags, *name;
};

static int ops_old_msg_take(struct fs *fs, uint64_t id, struct ops_old_msg *o)
{
        memset(o, 0, sizeof(*o));
        cache_lock(fs->acct.cache);
        struct cache_node *n = cache_node_get(fs->acct.cache, id);
        const struct cache_msg *m = n && n->kind == CACHE_MSG ? (const struct cache_msg *)n : NULL;
        int r = m ? 0 : -ENOENT;
        if (m) {
                o->parent = m->mbox->node.id;
                o->uid = m->uid;
                o->internaldate = m->internaldate;
                o->flags = ops_flags_for_append(m->flags ? m->flags : "");
                o->name = strdup(m->name);
                if (!o->flags || !o->name)
                        r = -ENOMEM;
        }
        cache_unlock(fs->acct.cache);
        return r;
}

int fs_staged_store(struct fs *fs, uint64_t ino, uint64_t parent, uint64_t replaces, bool dedup,
                    uint64_t *msg_id)
{
        char *data = NULL, *flags = NULL;
        size_t len = 0;
        time_t date = 0;
        struct ops_old_msg old = {0};
        uint32_t uid = 0;
        int r = staging_take(fs->staging, ino, &data, &len, &flags, &date);
        if (r == 0 && !scratch_looks_like_message(data, len))
                r = -EINVAL; /* DECISIONS.md: only what starts like a message goes */
        if (r == 0 && replaces)
                r = ops_old_msg_take(fs, replaces, &old);
        if (r == 0) {
                if (replaces) {
                        parent = old.parent;
                        date = date ? date : old.internaldate;
                } else {
                        date = ops_commit_date(data, len, date);
                }
                const char *fl = flags ? flags : replaces ? old.flags : NULL;
                r = account_append_ex(&fs->acct, parent, data, len, fl, date, dedup, &uid);
        }
        /* The new bytes are on the server: only now may the old message go.
         * The same bytes found as the old message itself change nothing. */
        if (r == 0 && replaces && uid != old.uid) {
                r = account_unlink(&fs->acct, old.parent, old.name);
                if (r < 0)
                        log_err("%s was stored again as UID %u, but the old copy could not be "
                                "removed: %s",
                                old.name, uid, strerror(-r));
        }
        if (msg_id)
                *msg_id = r == 0 ? ops_msg_id(fs, parent, uid) : 0;
        free(data);
        free(flags);
        free(old.flags);
        free(old.name);
        return r;
}

/* APPENDs a staged file and forgets it; the kernel's entry for its temporary
 * name goes too (after the reply), and the message shows under its own name
 * once the folder is listed again. A local (scratch) file stays. */
static int ops_staged_commit(struct fs *fs, fuse_ino_t ino)
{
        char *name = NULL;
        uint64_t parent = 0, msg_id = 0;
        struct staged_info sd;
        if (!staging_get(fs->staging, ino, &sd))
                return 0; /* committed by an earlier close */
        if (sd.local)
                return 0;
        if (sd.replaces && sd.clean) {
                /* Opened for writing, closed unwritten: nothing to replace. */
                uint64_t p;
                char *n = NULL;
                staging_remove(fs->staging, ino, &p, &n);
                free(n);
                return 0;
        }
        /* An empty new file is not a message and not an error (touch); an
         * emptied message is not a message either. */
        int r = sd.size || sd.replaces
                    ? fs_staged_store(fs, ino, sd.parent, sd.replaces, sd.replaces != 0, &msg_id)
                    : 0;
        /* Also on failure: the caller hears about it from close(), and
         * nothing half-done remains on the server or here. */
        if (staging_remove(fs->staging, ino, &parent, &name) == 0) {
                /* A rewritten message's name finds its new version for a
                 * while (the editor stats it after writing). */
                if (r == 0 && sd.replaces && msg_id)
                        alias_add(fs->alias, parent, name, msg_id, ALIAS_TTL_MS);
                inval_entry(fs->inval, parent, name);
                inval_inode(fs->inval, parent);
                free(name);
        }
        return r;
}

static void ops_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        struct staged_info sd;
        int r = 0;
        /* close(): the server must have the message before close returns 0.
         * FUSE says "a descriptor closed", not "the last one": a shell's
         * redirection closes a dup'd descriptor before writing anything. So a
         * flush commits only a file with bytes in it and one open handle;
         * release commits whatever is left. A message opened for writing
         * and not written yet (`>> msg.eml`: the shell's first descriptor
         * closes before the command writes) waits for its writes. */
        if (!fi->fh && staging_get(fs->staging, ino, &sd) && !sd.local && sd.size > 0 &&
            !(sd.replaces && sd.clean) && staging_opens(fs->staging, ino) == 1)
                r = ops_staged_commit(fs, ino);
        fuse_reply_err(req, r < 0 ? fs_errno(r) : 0);
}

static void ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct fs *fs = fs_of(req);
        if (!fi->fh && parts_fs_release(req, ino))
                return;
        if (fi->fh) {
                account_file_close((struct account_file *)(uintptr_t)fi->fh);
        } else if (staging_close(fs->staging, ino) <= 0) {
                /* Not committed by a flush (empty, or the kernel skipped the
                 * flush): do it now; the result can only be logged. */
                int r = ops_staged_commit(fs, ino);
                if (r < 0)
                        log_err("a file written to the mount could not be stored: %s",
                                strerror(-r));
        }
        fuse_reply_err(req, 0);
}

void ops_file_register(struct fuse_lowlevel_ops *ops)
{
        ops->open = ops_open;
        ops->read = ops_read;
        ops->release = ops_release;
        ops->write = ops_write;
        ops->flush = ops_flush;
}
