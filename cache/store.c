/* The mail store on LMDB (schema and rules: see store.h). */
#include "cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DATA_FILE "data.mdb"
#define LOCK_FILE "lock.mdb"
#define DAMAGED_FILE "damaged" /* left by a process that found damage while using the store */
#define KEY_MAX (1 + 1 + STORE_CID_MAX + 1 + STORE_SECTION_MAX + 1 + 4)
#define MBOX_VAL 25u /* number, uidvalidity, uidnext, modseq, listed, messages */
#define MSG_FIXED 18u
#define TREE_FIXED 5u
#define ATIME_VAL 12u
/* A load waits this long for a queued save of its mailbox; past it, it reads the older
 * listing, which the server then brings up to date as it would any stale one. */
#define SETTLE_MS 2000
#define BATCH_MS 5
/* A read's LRU stamp waits this long for a commit that writes something else, or for more
 * stamps: stamps alone are not worth a commit (and its fdatasync) while a scan is reading,
 * and a stamp lost in a crash only makes eviction a little less exact. */
#define TOUCH_MS 2000
/* ... or until this many are waiting. */
#define TOUCH_BATCH 4096u

/* ---- byte order ---- */

static void be32(unsigned char *p, uint32_t v)
{
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
}

static void be64(unsigned char *p, uint64_t v)
{
        be32(p, (uint32_t)(v >> 32));
        be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void le16(unsigned char *p, uint16_t v)
{
        p[0] = (unsigned char)v;
        p[1] = (unsigned char)(v >> 8);
}

static void le32(unsigned char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static void le64(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_le16(const unsigned char *p)
{
        return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get_le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const unsigned char *p)
{
        return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- XXH64 ---- */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl64(uint64_t x, int r)
{
        return (x << r) | (x >> (64 - r));
}

static uint64_t xx_round(uint64_t acc, uint64_t in)
{
        acc += in * P2;
        acc = rotl64(acc, 31);
        return acc * P1;
}

static uint64_t xx_merge(uint64_t acc, uint64_t v)
{
        acc ^= xx_round(0, v);
        return acc * P1 + P4;
}

uint64_t store_hash64(const void *data, size_t n, uint64_t seed)
{
        const unsigned char *p = data;
        size_t left = n;
        uint64_t h;

        if (left >= 32) {
                uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
                do {
                        v1 = xx_round(v1, get_le64(p));
                        v2 = xx_round(v2, get_le64(p + 8));
                        v3 = xx_round(v3, get_le64(p + 16));
                        v4 = xx_round(v4, get_le64(p + 24));
                        p += 32;
                        left -= 32;
                } while (left >= 32);
                h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
                h = xx_merge(h, v1);
                h = xx_merge(h, v2);
                h = xx_merge(h, v3);
                h = xx_merge(h, v4);
        } else {
                h = seed + P5;
        }
        h += n;
        while (left >= 8) {
                h ^= xx_round(0, get_le64(p));
                h = rotl64(h, 27) * P1 + P4;
                p += 8;
                left -= 8;
        }
        if (left >= 4) {
                h ^= (uint64_t)get_le32(p) * P1;
                h = rotl64(h, 23) * P2 + P3;
                p += 4;
                left -= 4;
        }
        while (left) {
                h ^= *p * P5;
                h = rotl64(h, 11) * P1;
                p++;
                left--;
        }
        h ^= h >> 33;
        h *= P2;
        h ^= h >> 29;
        h *= P3;
        h ^= h >> 32;
        return h;
}

/* ---- the log hook ---- */

static void (*store_logger)(const char *msg);

void store_set_logger(void (*fn)(const char *msg))
{
        store_logger = fn;
}

__attribute__((format(printf, 1, 2))) static void store_log(const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (store_logger)
                store_logger(buf);
        else
                fprintf(stderr, "imapfs: %s\n", buf);
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t len, const char *fmt,
                                                          ...)
{
        if (!err || !len)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
}

/* LMDB's own codes are positive and outside errno's range: map them to an errno. */
static int mdb_errno(int rc)
{
        if (rc == 0)
                return 0;
        if (rc == MDB_NOTFOUND)
                return -ENOENT;
        if (rc == MDB_MAP_FULL)
                return -ENOSPC;
        if (rc > 0) /* a system error */
                return -rc;
        return -EIO;
}

/* LMDB's codes that mean the file is not a store we can trust. */
static bool mdb_damage(int rc)
{
        return rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE && rc != MDB_MAP_FULL &&
               rc != MDB_READERS_FULL && rc != MDB_TXN_FULL && rc != MDB_NOTFOUND;
}

/* ---- the write queue ---- */

enum op_kind { OP_BLOCK, OP_TOUCH, OP_LISTING, OP_TREE, OP_DROP, OP_CIDS };

struct store_listing {
        char *mailbox;
        struct store_meta meta;
        unsigned char *buf; /* records: uid u32, value length u32, value */
        size_t len, cap, n;
};

struct op {
        struct op *next;
        enum op_kind kind;
        /* OP_BLOCK, OP_TOUCH: the part and index; OP_LISTING, OP_DROP: mailbox only */
        char *mailbox;
        uint32_t uidvalidity, uid;
        char section[STORE_SECTION_MAX + 1];
        enum store_form form;
        char delim; /* OP_DROP: the hierarchy delimiter, '\0' for the mailbox alone */
        uint32_t index;
        uint64_t khash; /* of the part and index: a queue scan compares this first */
        size_t len;
        unsigned char *data;           /* OP_BLOCK; OP_CIDS: uid u32, length u8, id, ... */
        struct store_listing *listing; /* OP_LISTING */
        unsigned char *tree;           /* OP_TREE: serialized folders (values of the tree DB) */
        size_t ntree;
        uint64_t seq; /* OP_BLOCK, OP_LISTING, ...: its place in the queue (FIFO) */
};

struct store {
        char *dir;
        uint64_t max_bytes;
        MDB_env *env;
        pid_t pid; /* the process env was opened in */
        MDB_dbi info, tree, mbox, msg, blk, atime, lru, cid;
        size_t psize;
        pthread_mutex_t mu;
        pthread_cond_t cv;   /* the writer waits for work */
        pthread_cond_t done; /* flushers wait for commits */
        struct op *head, *tail;
        struct op *committing;             /* the batch being committed: still visible to readers */
        struct op *touches, *touches_tail; /* LRU stamps (OP_TOUCH): readers never look */
        size_t ntouches;
        uint64_t touch_takes;       /* lists of stamps the writer took */
        uint64_t touch_flush;       /* a flusher waits until touch_takes reaches this */
        uint64_t touch_done;        /* the last list of stamps taken that is committed */
        uint64_t op_seq;            /* ops queued so far: each op's seq is its number */
        uint64_t op_taken, op_done; /* seq of the last op taken into a batch; committed */
        struct timespec touch_due;  /* when the oldest waiting stamp goes out (CLOCK_REALTIME) */
        uint64_t commits;
        size_t queued_bytes;
        uint64_t dropped;
        uint64_t records_written;
        atomic_bool broken;     /* LMDB found damage while in use: not used until reopened */
        unsigned flushing;      /* store_flush() callers waiting: commit at once */
        size_t batch_bytes;     /* block bytes one transaction takes at most */
        MDB_txn *volatile wtxn; /* the writer's open transaction (aborted after an assert) */
        bool running, stop;
        pthread_t thread;
};

static void store_broken(struct store *s, int rc);

/* This process's id, for the check that an environment was opened here and not inherited
 * over a fork: every read asks, and getpid() is a system call. Refreshed in a child. */
static atomic_int store_pid_now;
static pthread_once_t store_pid_once = PTHREAD_ONCE_INIT;

static void store_pid_child(void)
{
        atomic_store(&store_pid_now, (int)getpid());
}

static void store_pid_init(void)
{
        atomic_store(&store_pid_now, (int)getpid());
        pthread_atfork(NULL, NULL, store_pid_child);
}

static pid_t store_getpid(void)
{
        pthread_once(&store_pid_once, store_pid_init);
        return (pid_t)atomic_load(&store_pid_now);
}

/* LMDB checks a page's type with assert() and aborts the process when it finds a page that is
 * not what the tree says (damage its open can't see: a page of garbage in the middle of the
 * file). Its assert callback jumps back out to the store function that called it, armed here
 * per thread; that function ends its transaction and reports the store damaged. No lock of
 * LMDB is held by a reader, and a writer's abort releases the write lock. */
static _Thread_local sigjmp_buf *guard_jmp;

static void store_assert(MDB_env *env, const char *msg)
{
        (void)env;
        sigjmp_buf *j = guard_jmp;
        if (!j)
                return; /* LMDB aborts: nothing to go back to */
        guard_jmp = NULL;
        store_log("cache: LMDB: %s", msg);
        siglongjmp(*j, 1);
}

static void op_free(struct op *o)
{
        if (!o)
                return;
        free(o->mailbox);
        free(o->data);
        store_listing_free(o->listing);
        free(o->tree);
        free(o);
}

static void ops_free(struct op *o)
{
        while (o) {
                struct op *next = o->next;
                op_free(o);
                o = next;
        }
}

static const char *sect(const struct store_part *p)
{
        return p->section ? p->section : "";
}

static int part_check(const struct store_part *p, uint64_t index)
{
        if (!p || !p->mailbox || index > UINT32_MAX)
                return -EINVAL;
        if (strlen(p->mailbox) > STORE_NAME_MAX || strlen(sect(p)) > STORE_SECTION_MAX)
                return -ENAMETOOLONG;
        return 0;
}

/* A hash of a block's identity, so that a scan of the queue rarely compares strings. */
static uint64_t part_hash(const struct store_part *p, uint64_t index)
{
        uint64_t h = store_hash64(p->mailbox, strlen(p->mailbox), index);
        h = store_hash64(sect(p), strlen(sect(p)), h ^ ((uint64_t)p->uidvalidity << 32 | p->uid));
        return h ^ (uint64_t)(p->form ? p->form : STORE_FORM_RAW);
}

static bool op_is_part(const struct op *o, const struct store_part *p, uint64_t index,
                       uint64_t khash)
{
        return o->kind == OP_BLOCK && o->khash == khash && o->uid == p->uid && o->index == index &&
               o->uidvalidity == p->uidvalidity && o->form == p->form &&
               strcmp(o->mailbox, p->mailbox) == 0 && strcmp(o->section, sect(p)) == 0;
}

/* ---- keys ---- */

/* The server-wide content id of message uid of mailbox number no, if the cid table has one
 * for this UIDVALIDITY: its length (0: none) and bytes in id. */
static size_t cid_get(struct store *s, MDB_txn *txn, uint32_t no, uint32_t uv, uint32_t uid,
                      unsigned char *id)
{
        unsigned char kb[8];
        be32(kb, no);
        be32(kb + 4, uid);
        MDB_val k = {8, kb}, v;
        if (mdb_get(txn, s->cid, &k, &v) != 0 || v.mv_size < 5 || v.mv_size > 4 + STORE_CID_MAX ||
            get_le32(v.mv_data) != uv)
                return 0;
        memcpy(id, (const unsigned char *)v.mv_data + 4, v.mv_size - 4);
        return v.mv_size - 4;
}

/* The content key of a block of message uid of mailbox number no: by its server-wide id where
 * the cid table knows it, else by mailbox number, UIDVALIDITY and UID. */
static size_t content_key(struct store *s, MDB_txn *txn, unsigned char *k, uint32_t no, uint32_t uv,
                          uint32_t uid, const char *section, char form, uint32_t index)
{
        size_t sl = strlen(section), n = 0;
        size_t il = cid_get(s, txn, no, uv, uid, k + 2);
        if (il) {
                k[n++] = STORE_ID_SERVER;
                k[n++] = (unsigned char)(il - 1); /* 1-256 bytes in one byte */
                n += il;
        } else {
                k[n++] = STORE_ID_MAILBOX;
                be32(k + n, no);
                n += 4;
                be32(k + n, uv);
                n += 4;
                be32(k + n, uid);
                n += 4;
        }
        k[n++] = (unsigned char)sl;
        memcpy(k + n, section, sl);
        n += sl;
        k[n++] = (unsigned char)form;
        be32(k + n, index);
        return n + 4;
}

/* Bytes a value of len takes in the file: a big one gets overflow pages of its own. */
static uint32_t block_cost(const struct store *s, size_t len, size_t klen)
{
        if (len + klen > s->psize / 4) {
                size_t pages = (len + 16 + s->psize - 1) / s->psize;
                return (uint32_t)(pages * s->psize + klen + 16);
        }
        return (uint32_t)(len + klen + 16);
}

/* ---- info counters ---- */

static uint64_t info_get(MDB_txn *txn, MDB_dbi dbi, const char *name)
{
        MDB_val k = {strlen(name), (void *)name}, v;
        if (mdb_get(txn, dbi, &k, &v) != 0 || (v.mv_size != 8 && v.mv_size != 4))
                return 0;
        return v.mv_size == 8 ? get_le64(v.mv_data) : get_le32(v.mv_data);
}

static int info_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val, size_t width)
{
        unsigned char b[8];
        if (width == 8)
                le64(b, val);
        else
                le32(b, (uint32_t)val);
        MDB_val k = {strlen(name), (void *)name}, v = {width, b};
        return mdb_put(txn, dbi, &k, &v, 0);
}

/* ---- mailbox records ---- */

struct mbox_rec {
        uint32_t no, uidvalidity, uidnext;
        uint64_t modseq;
        bool listed;
        uint32_t count; /* records of its listing: a walk that finds another number is damage */
};

static int mbox_get(struct store *s, MDB_txn *txn, const char *mailbox, struct mbox_rec *r)
{
        MDB_val k = {strlen(mailbox), (void *)mailbox}, v;
        int rc = mdb_get(txn, s->mbox, &k, &v);
        if (rc)
                return mdb_errno(rc);
        if (v.mv_size != MBOX_VAL)
                return -EBADMSG;
        const unsigned char *p = v.mv_data;
        r->no = get_le32(p);
        r->uidvalidity = get_le32(p + 4);
        r->uidnext = get_le32(p + 8);
        r->modseq = get_le64(p + 12);
        r->listed = p[20] != 0;
        r->count = get_le32(p + 21);
        return 0;
}

static int mbox_put(struct store *s, MDB_txn *txn, const char *mailbox, const struct mbox_rec *r)
{
        unsigned char b[MBOX_VAL];
        le32(b, r->no);
        le32(b + 4, r->uidvalidity);
        le32(b + 8, r->uidnext);
        le64(b + 12, r->modseq);
        b[20] = r->listed;
        le32(b + 21, r->count);
        MDB_val k = {strlen(mailbox), (void *)mailbox}, v = {sizeof(b), b};
        return mdb_put(txn, s->mbox, &k, &v, 0);
}

/* The mailbox's record, made (with a new number) if there is none. */
static int mbox_ensure(struct store *s, MDB_txn *txn, const char *mailbox, struct mbox_rec *r)
{
        int rc = mbox_get(s, txn, mailbox, r);
        if (rc != -ENOENT)
                return rc;
        uint64_t no = info_get(txn, s->info, "mbox_seq") + 1;
        if (no > UINT32_MAX)
                return -EOVERFLOW;
        *r = (struct mbox_rec){.no = (uint32_t)no};
        rc = info_put(txn, s->info, "mbox_seq", no, 4);
        if (!rc)
                rc = mbox_put(s, txn, mailbox, r);
        return mdb_errno(rc);
}

/* ---- blocks inside a write transaction ---- */

struct wstate {
        MDB_txn *txn;
        uint64_t bytes, seq;
        uint64_t records; /* listing records written or deleted */
};

/* Listing records one write transaction changes at most. LMDB keeps every
 * page a transaction dirtied on a free list of its own for the life of the
 * environment (malloc'd, never given back): one transaction rewriting the
 * listing of a 100,000-message folder left 8 MB of anonymous memory behind
 * (80 bytes per message, issue 13). A bigger listing is written in several
 * transactions, the folder marked unlisted in the first and listed again in
 * the last, so that a crash between them leaves no half listing to load. */
#define LISTING_TXN_RECORDS 4096u

static int info_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val, size_t width);

/* Commits what the batch did so far and begins another transaction. */
static int wstate_renew(struct store *s, struct wstate *w)
{
        int rc = info_put(w->txn, s->info, "bytes", w->bytes, 8);
        if (!rc)
                rc = info_put(w->txn, s->info, "read_seq", w->seq, 8);
        if (!rc)
                rc = mdb_txn_commit(w->txn);
        else
                mdb_txn_abort(w->txn);
        w->txn = s->wtxn = NULL;
        if (!rc)
                rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
        s->wtxn = rc ? NULL : w->txn;
        return rc;
}

/* Removes one block with its LRU entries. */
static int blk_delete(struct store *s, struct wstate *w, const MDB_val *key)
{
        MDB_val k = *key, a;
        int rc = mdb_get(w->txn, s->atime, &k, &a);
        if (rc == 0 && a.mv_size == ATIME_VAL) {
                unsigned char sk[8];
                uint64_t seq = get_le64(a.mv_data);
                uint32_t cost = get_le32((const unsigned char *)a.mv_data + 8);
                be64(sk, seq);
                MDB_val lk = {8, sk};
                mdb_del(w->txn, s->lru, &lk, NULL);
                w->bytes = w->bytes > cost ? w->bytes - cost : 0;
                k = *key;
                mdb_del(w->txn, s->atime, &k, NULL);
        }
        k = *key;
        rc = mdb_del(w->txn, s->blk, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Stamps a block as read now (stored blocks only). */
static int blk_stamp(struct store *s, struct wstate *w, const MDB_val *key, uint32_t cost,
                     bool is_new)
{
        MDB_val k = *key, a;
        if (!is_new) {
                int rc = mdb_get(w->txn, s->atime, &k, &a);
                if (rc)
                        return rc == MDB_NOTFOUND ? 0 : rc;
                if (a.mv_size != ATIME_VAL)
                        return MDB_CORRUPTED;
                cost = get_le32((const unsigned char *)a.mv_data + 8);
                unsigned char old[8];
                be64(old, get_le64(a.mv_data));
                MDB_val lk = {8, old};
                mdb_del(w->txn, s->lru, &lk, NULL);
        }
        unsigned char sk[8], av[ATIME_VAL];
        w->seq++;
        be64(sk, w->seq);
        le64(av, w->seq);
        le32(av + 8, cost);
        MDB_val lk = {8, sk}, lv = *key, akey = *key, aval = {sizeof(av), av};
        int rc = mdb_put(w->txn, s->lru, &lk, &lv, 0);
        if (!rc)
                rc = mdb_put(w->txn, s->atime, &akey, &aval, 0);
        return rc;
}

/* Deletes the blocks of mailbox number no, all of them or those of another UIDVALIDITY. */
static int blk_drop_mailbox(struct store *s, struct wstate *w, uint32_t no, bool all,
                            uint32_t keep_uv)
{
        MDB_cursor *c;
        int rc = mdb_cursor_open(w->txn, s->blk, &c);
        if (rc)
                return rc;
        unsigned char start[5];
        start[0] = STORE_ID_MAILBOX;
        be32(start + 1, no);
        MDB_val k = {sizeof(start), start}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (rc == 0) {
                const unsigned char *kp = k.mv_data;
                if (k.mv_size < 9 || kp[0] != STORE_ID_MAILBOX || get_be32(kp + 1) != no)
                        break;
                if (!all && get_be32(kp + 5) == keep_uv) {
                        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                        continue;
                }
                unsigned char copy[KEY_MAX];
                size_t kl = k.mv_size < sizeof(copy) ? k.mv_size : sizeof(copy);
                memcpy(copy, k.mv_data, kl);
                MDB_val ck = {kl, copy};
                /* The cursor's position is lost by deletes through the txn: seek again. */
                rc = blk_delete(s, w, &ck);
                if (rc)
                        break;
                k = (MDB_val){kl, copy};
                rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes the records of mailbox number no from dbi (keyed mailbox number + UID). */
static int recs_drop_mailbox(MDB_dbi dbi, struct wstate *w, uint32_t no)
{
        MDB_cursor *c;
        int rc = mdb_cursor_open(w->txn, dbi, &c);
        if (rc)
                return rc;
        unsigned char start[8];
        be32(start, no);
        be32(start + 4, 0);
        MDB_val k = {8, start}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && k.mv_size == 8 && get_be32(k.mv_data) == no) {
                rc = mdb_cursor_del(c, 0);
                if (rc)
                        break;
                /* After a delete the cursor's next item is the one that followed. */
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes the listing records and content ids of mailbox number no. */
static int msg_drop_mailbox(struct store *s, struct wstate *w, uint32_t no)
{
        int rc = recs_drop_mailbox(s->msg, w, no);
        return rc ? rc : recs_drop_mailbox(s->cid, w, no);
}

/* ---- applying queued operations ---- */

static int apply_cids(struct store *s, struct wstate *w, struct op *o)
{
        struct mbox_rec r;
        int e = mbox_ensure(s, w->txn, o->mailbox, &r);
        if (e)
                return e == -ENOSPC ? MDB_MAP_FULL : EIO;
        int rc = 0;
        for (size_t off = 0; !rc && off + 5 <= o->len;) {
                uint32_t uid = get_le32(o->data + off);
                size_t il = o->data[off + 4] + 1u;
                unsigned char kb[8], vb[4 + STORE_CID_MAX];
                be32(kb, r.no);
                be32(kb + 4, uid);
                le32(vb, o->uidvalidity);
                memcpy(vb + 4, o->data + off + 5, il);
                MDB_val k = {8, kb}, v;
                /* Unchanged (the usual case after the first listing): no write. */
                if (mdb_get(w->txn, s->cid, &k, &v) == 0 && v.mv_size == 4 + il &&
                    memcmp(v.mv_data, vb, 4 + il) == 0) {
                        off += 5 + il;
                        continue;
                }
                v = (MDB_val){4 + il, vb};
                rc = mdb_put(w->txn, s->cid, &k, &v, 0);
                off += 5 + il;
        }
        return rc;
}

static int apply_block(struct store *s, struct wstate *w, struct op *o)
{
        struct mbox_rec r;
        int e = mbox_ensure(s, w->txn, o->mailbox, &r);
        if (e)
                return e == -ENOSPC ? MDB_MAP_FULL : EIO;
        unsigned char kb[KEY_MAX];
        MDB_val k = {content_key(s, w->txn, kb, r.no, o->uidvalidity, o->uid, o->section,
                                 (char)o->form, o->index),
                     kb},
                v;
        int rc = mdb_get(w->txn, s->blk, &k, &v);
        if (rc == 0) /* content never changes under a UID: just a read */
                return blk_stamp(s, w, &k, 0, false);
        uint32_t cost = block_cost(s, o->len, k.mv_size);
        v = (MDB_val){o->len, o->data};
        rc = mdb_put(w->txn, s->blk, &k, &v, 0);
        if (rc)
                return rc;
        w->bytes += cost;
        return blk_stamp(s, w, &k, cost, true);
}

static int apply_touch(struct store *s, struct wstate *w, struct op *o)
{
        struct mbox_rec r;
        if (mbox_get(s, w->txn, o->mailbox, &r) != 0)
                return 0;
        unsigned char kb[KEY_MAX];
        MDB_val k = {content_key(s, w->txn, kb, r.no, o->uidvalidity, o->uid, o->section,
                                 (char)o->form, o->index),
                     kb};
        return blk_stamp(s, w, &k, 0, false);
}

static int drop_one(struct store *s, struct wstate *w, const char *mailbox)
{
        struct mbox_rec r;
        if (mbox_get(s, w->txn, mailbox, &r) != 0)
                return 0;
        int rc = msg_drop_mailbox(s, w, r.no);
        if (!rc)
                rc = blk_drop_mailbox(s, w, r.no, true, 0);
        if (!rc) {
                MDB_val k = {strlen(mailbox), (void *)mailbox};
                rc = mdb_del(w->txn, s->mbox, &k, NULL);
        }
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Drops a mailbox and, with a delimiter, the mailboxes below it (their names sort right
 * after "mailbox" + delim in the mbox table). */
static int apply_drop(struct store *s, struct wstate *w, const char *mailbox, char delim)
{
        int rc = drop_one(s, w, mailbox);
        size_t ml = strlen(mailbox);
        while (!rc && delim) {
                char prefix[STORE_NAME_MAX + 2];
                memcpy(prefix, mailbox, ml);
                prefix[ml] = delim;
                MDB_cursor *c;
                rc = mdb_cursor_open(w->txn, s->mbox, &c);
                if (rc)
                        break;
                MDB_val k = {ml + 1, prefix}, v;
                rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
                char child[STORE_NAME_MAX + 1];
                bool found = rc == 0 && k.mv_size > ml + 1 && k.mv_size <= STORE_NAME_MAX &&
                             memcmp(k.mv_data, prefix, ml + 1) == 0;
                if (found) {
                        memcpy(child, k.mv_data, k.mv_size);
                        child[k.mv_size] = '\0';
                }
                mdb_cursor_close(c);
                if (rc == MDB_NOTFOUND || (!rc && !found))
                        return 0;
                if (!rc)
                        rc = drop_one(s, w, child);
        }
        return rc;
}

static int cmp_rec(const void *a, const void *b)
{
        uint32_t x = get_le32(*(const unsigned char *const *)a);
        uint32_t y = get_le32(*(const unsigned char *const *)b);
        return (x > y) - (x < y);
}

/* Writes the listing as the difference from what is stored: a cursor walks the mailbox's
 * records in UID order beside the new ones, sorted alike. */
static int apply_listing(struct store *s, struct wstate *w, struct store_listing *l)
{
        struct mbox_rec r;
        int e = mbox_ensure(s, w->txn, l->mailbox, &r);
        if (e)
                return e == -ENOSPC ? MDB_MAP_FULL : EIO;
        int rc = 0;
        if (r.uidvalidity != l->meta.uidvalidity) {
                /* Another UIDVALIDITY: the UIDs name other messages now. */
                rc = msg_drop_mailbox(s, w, r.no);
                if (!rc)
                        rc = blk_drop_mailbox(s, w, r.no, false, l->meta.uidvalidity);
                if (rc)
                        return rc;
        }
        const unsigned char **recs = malloc((l->n ? l->n : 1) * sizeof(*recs));
        if (!recs)
                return ENOMEM;
        size_t n = 0;
        for (size_t off = 0; off < l->len; n++) {
                recs[n] = l->buf + off;
                off += 8 + get_le32(l->buf + off + 4);
        }
        qsort(recs, n, sizeof(*recs), cmp_rec);

        /* Written in parts when it may dirty more than one transaction should. */
        bool parts = n > LISTING_TXN_RECORDS || r.count > LISTING_TXN_RECORDS;
        if (parts && r.listed) {
                r.listed = false;
                rc = mbox_put(s, w->txn, l->mailbox, &r);
                if (rc) {
                        free(recs);
                        return rc;
                }
        }
        uint64_t since = 0; /* records changed in this transaction */

        MDB_cursor *c;
        rc = mdb_cursor_open(w->txn, s->msg, &c);
        if (rc) {
                free(recs);
                return rc;
        }
        unsigned char kb[8];
        be32(kb, r.no);
        be32(kb + 4, 0);
        MDB_val k = {8, kb}, v;
        int have = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        size_t i = 0;
        for (;;) {
                if (parts && w->records - since >= LISTING_TXN_RECORDS) {
                        /* Where to go on: the key the cursor is at, or past the end. */
                        unsigned char at[8];
                        bool more = have == 0 && k.mv_size == 8;
                        if (more)
                                memcpy(at, k.mv_data, 8);
                        mdb_cursor_close(c);
                        rc = wstate_renew(s, w);
                        if (!rc)
                                rc = mdb_cursor_open(w->txn, s->msg, &c);
                        if (rc) {
                                free(recs);
                                return rc;
                        }
                        since = w->records;
                        if (more) {
                                k = (MDB_val){8, at};
                                have = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
                        } else {
                                have = MDB_NOTFOUND;
                        }
                }
                bool stored = have == 0 && k.mv_size == 8 && get_be32(k.mv_data) == r.no;
                if (!stored && i == n)
                        break;
                uint32_t suid = stored ? get_be32((const unsigned char *)k.mv_data + 4) : 0;
                uint32_t nuid = i < n ? get_le32(recs[i]) : 0;
                if (stored && (i == n || suid < nuid)) {
                        /* gone from the server: its content id too */
                        w->records++;
                        unsigned char gk[8];
                        memcpy(gk, k.mv_data, 8);
                        rc = mdb_cursor_del(c, 0);
                        if (rc)
                                break;
                        MDB_val gkv = {8, gk};
                        rc = mdb_del(w->txn, s->cid, &gkv, NULL);
                        if (rc && rc != MDB_NOTFOUND)
                                break;
                        rc = 0;
                        have = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                        continue;
                }
                size_t vl = get_le32(recs[i] + 4);
                const unsigned char *val = recs[i] + 8;
                if (stored && suid == nuid) {
                        if (v.mv_size != vl || memcmp(v.mv_data, val, vl) != 0) {
                                /* The key is copied: k points into the page the put rewrites. */
                                unsigned char ck[8];
                                memcpy(ck, k.mv_data, 8);
                                MDB_val kk = {8, ck}, nv = {vl, (void *)val};
                                w->records++;
                                rc = mdb_cursor_put(c, &kk, &nv, MDB_CURRENT);
                                if (rc)
                                        break;
                        }
                        i++;
                        have = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                        continue;
                }
                /* new on the server (or the stored ones ran out) */
                unsigned char nk[8];
                be32(nk, r.no);
                be32(nk + 4, nuid);
                MDB_val kk = {8, nk}, nv = {vl, (void *)val};
                w->records++;
                rc = mdb_cursor_put(c, &kk, &nv, 0);
                if (rc)
                        break;
                i++;
                /* The cursor now sits on the new record: the next stored one follows it. */
                have = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
        free(recs);
        if (rc)
                return rc;
        r.uidvalidity = l->meta.uidvalidity;
        r.uidnext = l->meta.uidnext;
        r.modseq = l->meta.highestmodseq;
        r.listed = true;
        r.count = (uint32_t)n;
        return mbox_put(s, w->txn, l->mailbox, &r);
}

struct name_ref {
        const unsigned char *p;
        size_t n;
};

static int cmp_name(const void *a, const void *b)
{
        const struct name_ref *x = a, *y = b;
        int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);
        return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Drops the stored mailboxes that the new tree no longer has (deleted or renamed by another
 * client): their listings and blocks would otherwise stay, unbounded by cache_size. */
static int drop_gone_mailboxes(struct store *s, struct wstate *w, struct name_ref *names, size_t n)
{
        qsort(names, n, sizeof(*names), cmp_name);
        MDB_cursor *c;
        int rc = mdb_cursor_open(w->txn, s->mbox, &c);
        if (rc)
                return rc;
        char(*gone)[STORE_NAME_MAX + 1] = NULL;
        size_t ngone = 0, cap = 0;
        MDB_val k, v;
        while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
                struct name_ref key = {k.mv_data, k.mv_size};
                if (k.mv_size > STORE_NAME_MAX || bsearch(&key, names, n, sizeof(*names), cmp_name))
                        continue;
                if (ngone == cap) {
                        cap = cap ? cap * 2 : 8;
                        void *ng = realloc(gone, cap * sizeof(*gone));
                        if (!ng) {
                                rc = ENOMEM;
                                break;
                        }
                        gone = ng;
                }
                memcpy(gone[ngone], k.mv_data, k.mv_size);
                gone[ngone++][k.mv_size] = '\0';
        }
        mdb_cursor_close(c);
        if (rc == MDB_NOTFOUND)
                rc = 0;
        for (size_t i = 0; !rc && i < ngone; i++)
                rc = drop_one(s, w, gone[i]);
        free(gone);
        return rc;
}

static int apply_tree(struct store *s, struct wstate *w, struct op *o)
{
        int rc = mdb_drop(w->txn, s->tree, 0);
        struct name_ref *names = malloc((o->ntree ? o->ntree : 1) * sizeof(*names));
        if (!names)
                return ENOMEM;
        size_t off = 0;
        for (uint32_t i = 0; !rc && i < o->ntree; i++) {
                size_t vl = get_le32(o->tree + off);
                unsigned char kb[4];
                be32(kb, i);
                MDB_val k = {4, kb}, v = {vl, o->tree + off + 4};
                names[i] = (struct name_ref){o->tree + off + 4 + TREE_FIXED, vl - TREE_FIXED};
                rc = mdb_put(w->txn, s->tree, &k, &v, MDB_APPEND);
                off += 4 + vl;
        }
        if (!rc)
                rc = drop_gone_mailboxes(s, w, names, o->ntree);
        free(names);
        return rc;
}

/* Drops the least recently read blocks until the bound holds. */
static int evict(struct store *s, struct wstate *w)
{
        while (w->bytes > s->max_bytes) {
                MDB_cursor *c;
                int rc = mdb_cursor_open(w->txn, s->lru, &c);
                if (rc)
                        return rc;
                MDB_val k, v;
                rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
                unsigned char key[KEY_MAX];
                size_t kl = 0;
                if (rc == 0) {
                        kl = v.mv_size < sizeof(key) ? v.mv_size : sizeof(key);
                        memcpy(key, v.mv_data, kl);
                        /* an LRU entry whose block is gone must go too */
                        rc = mdb_cursor_del(c, 0);
                }
                mdb_cursor_close(c);
                if (rc == MDB_NOTFOUND) {
                        w->bytes = 0; /* nothing left to count */
                        return 0;
                }
                if (rc)
                        return rc;
                MDB_val bk = {kl, key};
                rc = blk_delete(s, w, &bk);
                if (rc)
                        return rc;
        }
        return 0;
}

static int apply_one(struct store *s, struct wstate *w, struct op *o)
{
        switch (o->kind) {
        case OP_BLOCK:
                return apply_block(s, w, o);
        case OP_TOUCH:
                return apply_touch(s, w, o);
        case OP_LISTING:
                return apply_listing(s, w, o->listing);
        case OP_TREE:
                return apply_tree(s, w, o);
        case OP_DROP:
                return apply_drop(s, w, o->mailbox, o->delim);
        case OP_CIDS:
                return apply_cids(s, w, o);
        }
        return EINVAL;
}

static size_t op_cost(const struct op *o);

static bool op_same_part(const struct op *a, const struct op *b)
{
        return a->khash == b->khash && a->uid == b->uid && a->index == b->index &&
               a->uidvalidity == b->uidvalidity && a->form == b->form &&
               strcmp(a->mailbox, b->mailbox) == 0 && strcmp(a->section, b->section) == 0;
}

/* Keeps the last stamp of each block, in order, and frees the others: a scan reads the same
 * blocks over and over, and each stamp costs the writer two records. Returns what the whole
 * list counted against the queue's bound. Without memory for the table, all are kept. */
static size_t touches_dedup(struct op **list)
{
        size_t n = 0, cost = 0;
        for (struct op *o = *list; o; o = o->next) {
                n++;
                cost += op_cost(o);
        }
        if (n < 2)
                return cost;
        size_t cap = 16;
        while (cap < 2 * n)
                cap *= 2;
        struct op **all = malloc(n * sizeof(*all));
        struct op **seen = calloc(cap, sizeof(*seen));
        if (!all || !seen) {
                free(all);
                free(seen);
                return cost;
        }
        size_t i = 0;
        for (struct op *o = *list; o; o = o->next)
                all[i++] = o;
        for (i = n; i-- > 0;) { /* from the last: the one kept is the latest */
                size_t h = (size_t)all[i]->khash & (cap - 1);
                while (seen[h] && !op_same_part(seen[h], all[i]))
                        h = (h + 1) & (cap - 1);
                if (seen[h]) {
                        op_free(all[i]);
                        all[i] = NULL;
                } else {
                        seen[h] = all[i];
                }
        }
        struct op **tail = list;
        for (i = 0; i < n; i++)
                if (all[i]) {
                        *tail = all[i];
                        tail = &all[i]->next;
                }
        *tail = NULL;
        free(all);
        free(seen);
        return cost;
}

/* Commits a batch in one write transaction. A failed batch is dropped whole (it is only
 * cache) and said once in the log. Applies ops, then the LRU stamps touches. */
static void apply_batch(struct store *s, struct op *ops, struct op *touches, bool skip_blocks)
{
        struct wstate w = {0};
        if (!s->env || s->pid != store_getpid() || atomic_load(&s->broken))
                return;
        int rc = mdb_txn_begin(s->env, NULL, 0, &w.txn);
        if (rc == MDB_MAP_RESIZED) {
                /* another mount grew the map */
                mdb_env_set_mapsize(s->env, 0);
                rc = mdb_txn_begin(s->env, NULL, 0, &w.txn);
        }
        if (rc) {
                store_log("cache: cannot write: %s", mdb_strerror(rc));
                return;
        }
        s->wtxn = w.txn;
        sigjmp_buf jb;
        if (sigsetjmp(jb, 0)) {
                /* LMDB's assert fired on a damaged page (see store_assert()) */
                if (s->wtxn)
                        mdb_txn_abort(s->wtxn);
                s->wtxn = NULL;
                store_broken(s, MDB_CORRUPTED);
                return;
        }
        guard_jmp = &jb;
        w.bytes = info_get(w.txn, s->info, "bytes");
        w.seq = info_get(w.txn, s->info, "read_seq");
        for (struct op *o = ops; o && !rc; o = o->next)
                if (!skip_blocks || o->kind != OP_BLOCK)
                        rc = apply_one(s, &w, o);
        for (struct op *o = touches; o && !rc; o = o->next)
                rc = apply_one(s, &w, o);
        if (rc == MDB_MAP_FULL && !skip_blocks) {
                /* Room for listings matters more than content: again without the blocks. */
                guard_jmp = NULL;
                s->wtxn = NULL;
                mdb_txn_abort(w.txn);
                apply_batch(s, ops, touches, true);
                return;
        }
        if (!rc)
                rc = evict(s, &w);
        if (!rc)
                rc = info_put(w.txn, s->info, "bytes", w.bytes, 8);
        if (!rc)
                rc = info_put(w.txn, s->info, "read_seq", w.seq, 8);
        guard_jmp = NULL;
        s->wtxn = NULL;
        if (rc) {
                mdb_txn_abort(w.txn);
                store_log("cache: a write was dropped: %s", mdb_strerror(rc));
                store_broken(s, rc);
                return;
        }
        rc = mdb_txn_commit(w.txn);
        if (rc) {
                store_log("cache: a write was dropped: %s", mdb_strerror(rc));
                return;
        }
        pthread_mutex_lock(&s->mu);
        s->records_written += w.records;
        s->commits++;
        pthread_mutex_unlock(&s->mu);
}

/* What an op counts against STORE_QUEUE_BYTES: its data, or a stamp's bookkeeping (listings,
 * trees and drops are not bounded: a newer one replaces a queued one). */
static size_t op_cost(const struct op *o)
{
        return o->kind == OP_BLOCK ? o->len : o->kind == OP_TOUCH ? sizeof(*o) + 64 : 0;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static struct timespec ts_after_ms(long ms)
{
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

/* Whether the waiting LRU stamps go out now (lock held). */
static bool touches_due(struct store *s)
{
        if (!s->touches)
                return false;
        if (s->stop || s->touch_takes < s->touch_flush || s->ntouches >= TOUCH_BATCH)
                return true;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return !ts_before(&now, &s->touch_due);
}

static void *store_writer(void *arg)
{
        struct store *s = arg;
        pthread_mutex_lock(&s->mu);
        for (;;) {
                while (!s->head && !s->stop && !touches_due(s)) {
                        /* Idle: wake at least once a second to look again, so that no
                         * missed signal can keep the writer asleep (the house rule:
                         * every wait has a deadline), or when the stamps are due. */
                        struct timespec idle = ts_after_ms(1000);
                        if (s->touches && ts_before(&s->touch_due, &idle))
                                idle = s->touch_due;
                        pthread_cond_timedwait(&s->cv, &s->mu, &idle);
                }
                if (!s->head && !s->touches)
                        break;
                /* Let a batch gather for a few milliseconds: every commit syncs the data
                 * pages, and one sync for many blocks is what keeps the writer ahead.
                 * submit() wakes the writer only when the batch is full or someone
                 * flushes, not for every block. */
                struct timespec dl = ts_after_ms(BATCH_MS);
                while (s->head && !s->stop && !s->flushing && s->queued_bytes < s->batch_bytes &&
                       pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
                        ;
                /* Take what is queued, up to batch_bytes of it: pages a batch frees are
                 * reused only by a later one, so the size of a batch is what the file may
                 * grow beyond the bound. The waiting stamps ride along (they are small). */
                struct op *first = s->head, *last = s->head;
                if (first) {
                        size_t taken = op_cost(last);
                        while (last->next && taken + op_cost(last->next) <= s->batch_bytes) {
                                last = last->next;
                                taken += op_cost(last);
                        }
                        s->head = last->next;
                        last->next = NULL;
                        s->op_taken = last->seq;
                        if (!s->head)
                                s->tail = NULL;
                }
                /* The stamps go in the same transaction but not in the list readers scan
                 * for queued blocks: a scan takes them by the ten thousand. */
                struct op *touches = s->touches;
                s->touches = s->touches_tail = NULL;
                s->ntouches = 0;
                if (touches)
                        s->touch_takes++;
                uint64_t take = s->touch_takes;
                s->committing = first;
                pthread_mutex_unlock(&s->mu);
                size_t touch_cost = touches_dedup(&touches);
                apply_batch(s, s->committing, touches, false);
                pthread_mutex_lock(&s->mu);
                struct op *batch = s->committing;
                s->committing = NULL;
                for (struct op *o = batch; o; o = o->next)
                        if (o->kind == OP_BLOCK)
                                s->queued_bytes -= op_cost(o);
                s->queued_bytes -= touch_cost;
                s->touch_done = take;
                s->op_done = s->op_taken;
                pthread_cond_broadcast(&s->done);
                pthread_mutex_unlock(&s->mu);
                ops_free(batch);
                ops_free(touches);
                pthread_mutex_lock(&s->mu);
        }
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

/* Queues o (taken over), or commits it at once when there is no writer thread. */
static int submit(struct store *s, struct op *o)
{
        pthread_mutex_lock(&s->mu);
        if (!s->running) {
                pthread_mutex_unlock(&s->mu);
                if (o->kind == OP_TOUCH)
                        apply_batch(s, NULL, o, false);
                else
                        apply_batch(s, o, NULL, false);
                op_free(o);
                return 0;
        }
        if (o->kind == OP_BLOCK || o->kind == OP_TOUCH) {
                size_t cost = op_cost(o);
                if (s->queued_bytes + cost > STORE_QUEUE_BYTES) {
                        s->dropped++;
                        pthread_mutex_unlock(&s->mu);
                        op_free(o);
                        return -EAGAIN;
                }
                s->queued_bytes += cost;
        }
        if (o->kind == OP_TOUCH) {
                /* Not in the queue readers scan, and no wake-up until they are due. */
                o->next = NULL;
                if (!s->touches)
                        s->touch_due = ts_after_ms(TOUCH_MS);
                if (s->touches_tail)
                        s->touches_tail->next = o;
                else
                        s->touches = o;
                s->touches_tail = o;
                if (++s->ntouches >= TOUCH_BATCH)
                        pthread_cond_signal(&s->cv);
                pthread_mutex_unlock(&s->mu);
                return 0;
        }
        if (o->kind == OP_LISTING) {
                /* A newer listing of the same mailbox replaces a queued one, unless a drop of
                 * the mailbox sits between them. */
                struct op *same = NULL;
                for (struct op *q = s->head; q; q = q->next) {
                        if (q->kind == OP_DROP && strcmp(q->mailbox, o->mailbox) == 0)
                                same = NULL;
                        else if (q->kind == OP_LISTING && strcmp(q->mailbox, o->mailbox) == 0)
                                same = q;
                }
                if (same) {
                        struct store_listing *old = same->listing;
                        same->listing = o->listing;
                        o->listing = old;
                        pthread_mutex_unlock(&s->mu);
                        op_free(o);
                        return 0;
                }
        }
        o->next = NULL;
        o->seq = ++s->op_seq;
        /* The writer waits for a first op, or gathers a batch until BATCH_MS, a full
         * batch or a flush: a wake-up per block would only put it back to sleep. */
        bool wake = !s->head || o->kind != OP_BLOCK || s->queued_bytes >= s->batch_bytes;
        if (s->tail)
                s->tail->next = o;
        else
                s->head = o;
        s->tail = o;
        if (wake)
                pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return 0;
}

/* ---- open ---- */

static int make_dir(const char *path)
{
        if (mkdir(path, 0700) == 0)
                return chmod(path, 0700) < 0 ? -errno : 0;
        return errno == EEXIST ? 0 : -errno;
}

static int mkdir_parents(const char *path)
{
        size_t n = strlen(path);
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        int rc = 0;
        for (size_t i = 1; i <= n && !rc; i++) {
                if (i < n && p[i] != '/')
                        continue;
                if (p[i - 1] == '/')
                        continue;
                p[i] = '\0';
                rc = make_dir(p);
                if (i < n)
                        p[i] = '/';
        }
        free(p);
        return rc;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
        (void)st;
        (void)flag;
        (void)f;
        remove(p);
        return 0;
}

/* A cache of cache/disk.c's format (a file per block): removed, said once. */
static void remove_old_format(const char *dir)
{
        static const char *const old[] = {"listings", "blocks", "lock"};
        bool found = false;
        for (size_t i = 0; i < sizeof(old) / sizeof(*old); i++) {
                char p[4096];
                struct stat st;
                snprintf(p, sizeof(p), "%s/%s", dir, old[i]);
                if (lstat(p, &st) < 0)
                        continue;
                found = true;
                nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        }
        if (found)
                store_log("cache: removed a cache of the old format (a file per block) in %s; "
                          "it is rebuilt as mail is read",
                          dir);
}

/* Creates (or opens) a 0600 regular file that is not a symlink. */
static int prepare_file(const char *dir, const char *name)
{
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        struct stat st;
        int rc = fstat(fd, &st) < 0 ? -errno : 0;
        if (!rc && (!S_ISREG(st.st_mode) || st.st_uid != geteuid()))
                rc = -EACCES;
        if (!rc && fchmod(fd, 0600) < 0)
                rc = -errno;
        close(fd);
        return rc;
}

static void remove_store_files(const char *dir)
{
        char p[4096];
        snprintf(p, sizeof(p), "%s/" DAMAGED_FILE, dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/" DATA_FILE, dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/" LOCK_FILE, dir);
        unlink(p);
}

/* Reads every record of a small table and checks its shape: a garbled page shows up here,
 * at open, rather than later. */
static int check_table(MDB_txn *txn, MDB_dbi dbi, size_t klen, size_t vlen)
{
        MDB_cursor *c;
        int rc = mdb_cursor_open(txn, dbi, &c);
        if (rc)
                return rc;
        MDB_val k, v;
        while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
                if ((klen && k.mv_size != klen) || (vlen && v.mv_size != vlen) || !k.mv_size) {
                        rc = MDB_CORRUPTED;
                        break;
                }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Opens the tables and checks what can be checked cheaply at open. */
static int env_check(struct store *s, MDB_txn *txn)
{
        int rc = 0;
        struct {
                const char *name;
                MDB_dbi *dbi;
        } tabs[] = {{"info", &s->info}, {"tree", &s->tree},   {"mbox", &s->mbox}, {"msg", &s->msg},
                    {"blk", &s->blk},   {"atime", &s->atime}, {"lru", &s->lru},   {"cid", &s->cid}};
        MDB_stat st;
        MDB_envinfo ei;
        struct stat fst;
        char p[4096];
        snprintf(p, sizeof(p), "%s/" DATA_FILE, s->dir);
        mdb_env_stat(s->env, &st);
        mdb_env_info(s->env, &ei);
        s->psize = st.ms_psize;
        /* A file cut short (a crash of the file system, a copy): pages past its end would
         * fault when read, so this comes before any table is read. */
        if (stat(p, &fst) < 0 ||
            (uint64_t)fst.st_size < ((uint64_t)ei.me_last_pgno + 1) * st.ms_psize)
                rc = MDB_CORRUPTED;
        for (size_t i = 0; !rc && i < sizeof(tabs) / sizeof(*tabs); i++)
                rc = mdb_dbi_open(txn, tabs[i].name, MDB_CREATE, tabs[i].dbi);
        if (!rc) {
                uint64_t v = info_get(txn, s->info, "version");
                if (v == 0 && mdb_stat(txn, s->mbox, &st) == 0 && st.ms_entries == 0)
                        rc = info_put(txn, s->info, "version", STORE_VERSION, 4);
                else if (v != STORE_VERSION)
                        rc = MDB_VERSION_MISMATCH;
        }
        if (!rc)
                rc = check_table(txn, s->info, 0, 0);
        if (!rc)
                rc = check_table(txn, s->mbox, 0, MBOX_VAL);
        if (!rc)
                rc = check_table(txn, s->tree, 4, 0);
        if (!rc)
                rc = check_table(txn, s->lru, 8, 0);
        if (!rc)
                rc = check_table(txn, s->atime, 0, ATIME_VAL);
        return rc;
}

/* Opens the environment and its tables: 0, 1 (the file is damaged or not ours), or -errno. */
static int env_open(struct store *s, char *err, size_t errlen)
{
        int rc = mdb_env_create(&s->env);
        if (rc)
                return mdb_errno(rc);
        mdb_env_set_assert(s->env, store_assert);
        mdb_env_set_maxdbs(s->env, 10);
        mdb_env_set_maxreaders(s->env, 256);
        /* Address space, not disk: the file grows as needed. Content is bounded by max_bytes;
         * listings take the rest. */
        uint64_t map = s->max_bytes * 2 + (4ull << 30);
        mdb_env_set_mapsize(s->env, (size_t)map);
        int r = prepare_file(s->dir, DATA_FILE);
        if (!r)
                r = prepare_file(s->dir, LOCK_FILE);
        if (r) {
                set_err(err, errlen, "cannot create the cache in %s: %s", s->dir, strerror(-r));
                mdb_env_close(s->env);
                s->env = NULL;
                return r;
        }
        char mark[4096];
        struct stat mst;
        snprintf(mark, sizeof(mark), "%s/" DAMAGED_FILE, s->dir);
        rc = lstat(mark, &mst) == 0 ? MDB_CORRUPTED
                                    : mdb_env_open(s->env, s->dir, MDB_NOMETASYNC, 0600);
        MDB_txn *txn = NULL;
        if (!rc) {
                int dead = 0;
                mdb_reader_check(s->env, &dead); /* slots of killed processes */
                rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        }
        if (!rc) {
                /* A page LMDB's asserts reject ends here as damage, not as an abort. */
                sigjmp_buf jb;
                if (sigsetjmp(jb, 0) == 0) {
                        guard_jmp = &jb;
                        rc = env_check(s, txn);
                        guard_jmp = NULL;
                } else {
                        rc = MDB_CORRUPTED;
                }
        }
        if (!rc)
                rc = mdb_txn_commit(txn);
        else if (txn)
                mdb_txn_abort(txn);
        if (rc) {
                mdb_env_close(s->env);
                s->env = NULL;
                set_err(err, errlen, "cannot open the cache in %s: %s", s->dir, mdb_strerror(rc));
                return mdb_damage(rc) ? 1 : mdb_errno(rc);
        }
        s->pid = store_getpid();
        return 0;
}

int store_open(const char *dir, uint64_t max_bytes, struct store **out, char *err, size_t errlen)
{
        if (!dir || !out)
                return -EINVAL;
        if (strlen(dir) > 4000) {
                set_err(err, errlen, "cache directory name too long");
                return -ENAMETOOLONG;
        }
        int r = mkdir_parents(dir);
        if (r) {
                set_err(err, errlen, "cannot create %s: %s", dir, strerror(-r));
                return r;
        }
        struct stat st;
        if (lstat(dir, &st) < 0) {
                r = -errno;
                set_err(err, errlen, "%s: %s", dir, strerror(errno));
                return r;
        }
        if (!S_ISDIR(st.st_mode)) {
                set_err(err, errlen, "%s is not a directory", dir);
                return -ENOTDIR;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 077)) {
                set_err(err, errlen, "%s must be a directory of ours with mode 0700", dir);
                return -EACCES;
        }
        /* An absolute name: a daemon opens the store again after chdir("/"). */
        char *abs = realpath(dir, NULL);
        if (!abs) {
                r = -errno;
                set_err(err, errlen, "%s: %s", dir, strerror(errno));
                return r;
        }
        remove_old_format(abs);
        struct store *s = calloc(1, sizeof(*s));
        if (!s) {
                free(abs);
                return -ENOMEM;
        }
        s->dir = abs;
        s->max_bytes = max_bytes;
        s->batch_bytes = max_bytes / 8;
        if (s->batch_bytes < (256u << 10))
                s->batch_bytes = 256u << 10;
        if (s->batch_bytes > STORE_QUEUE_BYTES / 4)
                s->batch_bytes = STORE_QUEUE_BYTES / 4;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        pthread_cond_init(&s->done, NULL);
        r = env_open(s, err, errlen);
        if (r > 0) {
                /* Damaged, not ours, or of another layout: it is only cache. */
                store_log("cache: %s; removing it and starting an empty cache", err);
                remove_store_files(dir);
                r = env_open(s, err, errlen);
                if (r > 0)
                        r = -EIO;
        }
        if (r) {
                pthread_mutex_destroy(&s->mu);
                pthread_cond_destroy(&s->cv);
                pthread_cond_destroy(&s->done);
                free(s->dir);
                free(s);
                return r;
        }
        *out = s;
        return 0;
}

/* Environments opened by a parent before a fork: the child must neither use nor close them
 * (closing a descriptor of the lock file would drop the child's own locks on it, as POSIX
 * record locks go). Kept here so that they are not reported as leaks. */
static MDB_env *inherited[4];

int store_start(struct store *s)
{
        if (!s)
                return 0;
        if (s->pid != store_getpid()) {
                for (size_t i = 0; i < sizeof(inherited) / sizeof(*inherited); i++)
                        if (!inherited[i]) {
                                inherited[i] = s->env;
                                break;
                        }
                s->env = NULL;
                char err[256];
                int r = env_open(s, err, sizeof(err));
                if (r) {
                        store_log("cache: %s; running without a persistent cache", err);
                        return r > 0 ? -EIO : r;
                }
        }
        pthread_mutex_lock(&s->mu);
        if (s->running) {
                pthread_mutex_unlock(&s->mu);
                return 0;
        }
        s->stop = false;
        int rc = pthread_create(&s->thread, NULL, store_writer, s);
        s->running = rc == 0;
        pthread_mutex_unlock(&s->mu);
        return -rc;
}

int store_flush(struct store *s, int timeout_ms)
{
        if (!s)
                return 0;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        pthread_mutex_lock(&s->mu);
        s->flushing++;
        pthread_cond_signal(&s->cv);
        /* The stamps waiting now, not those that reads add meanwhile: with a
         * scan going on there would always be more, a commit after commit. */
        bool stamps = s->touches != NULL;
        uint64_t takes = s->touch_takes;
        if (stamps && s->touch_flush <= takes)
                s->touch_flush = takes + 1;
        /* Ops queued now and in the batch being committed, and with stamps waiting, the
         * list of stamps the writer takes next. A commit that starts after those are done
         * (of the stamps reads add meanwhile) is not waited for. */
        uint64_t want_op = s->tail ? s->tail->seq : s->op_taken;
        uint64_t want_touch = stamps ? takes + 1 : s->touch_takes;
        while (s->running && (s->op_done < want_op || s->touch_done < want_touch) && rc == 0)
                rc = pthread_cond_timedwait(&s->done, &s->mu, &dl);
        s->flushing--;
        pthread_mutex_unlock(&s->mu);
        return rc ? -ETIMEDOUT : 0;
}

void store_close(struct store *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        bool running = s->running;
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        /* The writer commits what is queued before it ends. */
        if (running)
                pthread_join(s->thread, NULL);
        ops_free(s->head);
        ops_free(s->touches);
        if (s->env && s->pid == store_getpid())
                mdb_env_close(s->env);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        pthread_cond_destroy(&s->done);
        free(s->dir);
        free(s);
}

/* ---- reads ---- */

/* Damage found while in use (a page of the wrong type, a record of the wrong shape): the store
 * is not used any more, and a marker file makes the next open start it anew. */
static void store_broken(struct store *s, int rc)
{
        if (!mdb_damage(rc) || atomic_exchange(&s->broken, true))
                return;
        char p[4096];
        snprintf(p, sizeof(p), "%s/" DAMAGED_FILE, s->dir);
        int fd = open(p, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
                close(fd);
        store_log("cache: the cache in %s is damaged (%s); not used until the next mount, which "
                  "starts it anew",
                  s->dir, mdb_strerror(rc));
}

static int read_begin(struct store *s, MDB_txn **txn)
{
        if (!s || !s->env || s->pid != store_getpid() || atomic_load(&s->broken))
                return -ENOENT;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED) {
                mdb_env_set_mapsize(s->env, 0);
                rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        }
        return mdb_errno(rc);
}

/* Waits for the queue when it holds something for this mailbox that a load must see. */
static void settle_mailbox(struct store *s, const char *mailbox)
{
        bool pending = false;
        pthread_mutex_lock(&s->mu);
        for (int pass = 0; pass < 2 && !pending; pass++)
                for (struct op *q = pass ? s->committing : s->head; q; q = q->next)
                        if ((q->kind == OP_LISTING || q->kind == OP_DROP || q->kind == OP_TREE) &&
                            (!mailbox || (q->mailbox && strcmp(q->mailbox, mailbox) == 0)))
                                pending = true;
        pthread_mutex_unlock(&s->mu);
        if (pending)
                store_flush(s, SETTLE_MS);
}

ssize_t store_tree_load(struct store *s, void (*fn)(void *ctx, const struct store_folder *f),
                        void *ctx)
{
        MDB_txn *txn;
        if (!s)
                return -EINVAL;
        settle_mailbox(s, NULL);
        int rc = read_begin(s, &txn);
        if (rc)
                return rc;
        MDB_cursor *c = NULL;
        rc = mdb_cursor_open(txn, s->tree, &c);
        if (rc)
                c = NULL;
        ssize_t n = 0;
        MDB_val k, v;
        while (!rc && (rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
                if (v.mv_size <= TREE_FIXED)
                        continue;
                const unsigned char *p = v.mv_data;
                size_t nl = v.mv_size - TREE_FIXED;
                char *raw = malloc(nl + 1);
                if (!raw) {
                        rc = ENOMEM;
                        break;
                }
                memcpy(raw, p + TREE_FIXED, nl);
                raw[nl] = '\0';
                struct store_folder f = {raw, (char)p[0], get_le32(p + 1)};
                if (strlen(raw) == nl && fn)
                        fn(ctx, &f);
                n += strlen(raw) == nl;
                free(raw);
        }
        if (c)
                mdb_cursor_close(c);
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND || rc == 0 ? n : mdb_errno(rc);
}

/* What a walk holds, on the heap so that a jump out of LMDB can release it. */
struct walk {
        MDB_cursor *c;
        char *scratch;
};

/* Walks the records of mailbox number no in UID order; with fn NULL it only checks them. */
static int walk_listing(struct store *s, MDB_txn *txn, uint32_t no, uint32_t count, struct walk *wk,
                        void (*fn)(void *ctx, const struct store_msg *m), void *ctx)
{
        uint32_t seen = 0, last = 0;
        int mrc = mdb_cursor_open(txn, s->msg, &wk->c);
        if (mrc) {
                wk->c = NULL;
                return mrc;
        }
        MDB_cursor *c = wk->c;
        unsigned char kb[8];
        be32(kb, no);
        be32(kb + 4, 0);
        MDB_val k = {8, kb}, v;
        size_t scap = 0;
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        while (mrc == 0 && k.mv_size == 8 && get_be32(k.mv_data) == no) {
                const unsigned char *p = v.mv_data;
                size_t fl = v.mv_size >= MSG_FIXED ? get_le16(p + 16) : 0;
                if (v.mv_size < MSG_FIXED || MSG_FIXED + fl > v.mv_size ||
                    v.mv_size > MSG_FIXED + 2 * STORE_STR_MAX ||
                    get_be32((const unsigned char *)k.mv_data + 4) <= last) {
                        mrc = MDB_CORRUPTED;
                        break;
                }
                last = get_be32((const unsigned char *)k.mv_data + 4);
                seen++;
                if (fn) {
                        size_t nl = v.mv_size - MSG_FIXED - fl;
                        if (fl + nl + 2 > scap) {
                                scap = (fl + nl + 2) * 2;
                                char *ns = realloc(wk->scratch, scap);
                                if (!ns) {
                                        mrc = ENOMEM;
                                        break;
                                }
                                wk->scratch = ns;
                        }
                        char *scratch = wk->scratch;
                        memcpy(scratch, p + MSG_FIXED, fl);
                        scratch[fl] = '\0';
                        memcpy(scratch + fl + 1, p + MSG_FIXED + fl, nl);
                        scratch[fl + 1 + nl] = '\0';
                        struct store_msg m = {get_be32((const unsigned char *)k.mv_data + 4),
                                              get_le64(p), (int64_t)get_le64(p + 8), scratch,
                                              scratch + fl + 1};
                        fn(ctx, &m);
                }
                mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(c);
        wk->c = NULL;
        if ((mrc == 0 || mrc == MDB_NOTFOUND) && seen != count)
                mrc = MDB_CORRUPTED; /* a page of records lost or garbled */
        return mrc;
}

int store_listing_load(struct store *s, const char *mailbox, struct store_meta *meta,
                       void (*fn)(void *ctx, const struct store_msg *m), void *ctx)
{
        if (!s || !mailbox)
                return -EINVAL;
        if (strlen(mailbox) > STORE_NAME_MAX)
                return -ENAMETOOLONG;
        settle_mailbox(s, mailbox);
        MDB_txn *txn;
        int rc = read_begin(s, &txn);
        if (rc)
                return rc;
        struct mbox_rec r;
        rc = mbox_get(s, txn, mailbox, &r);
        if (!rc && !r.listed)
                rc = -ENOENT;
        if (rc) {
                mdb_txn_abort(txn);
                return rc;
        }
        struct walk *wk = calloc(1, sizeof(*wk));
        if (!wk) {
                mdb_txn_abort(txn);
                return -ENOMEM;
        }
        /* Two walks: the first checks every record, so that fn never sees part of a listing
         * that turns out damaged further on. */
        int mrc;
        sigjmp_buf jb;
        if (sigsetjmp(jb, 0) == 0) {
                guard_jmp = &jb;
                mrc = walk_listing(s, txn, r.no, r.count, wk, NULL, NULL);
                guard_jmp = NULL;
                if (mrc == 0 || mrc == MDB_NOTFOUND) {
                        if (meta)
                                *meta = (struct store_meta){r.uidvalidity, r.uidnext, r.modseq};
                        mrc = walk_listing(s, txn, r.no, r.count, wk, fn, ctx);
                }
        } else {
                mrc = MDB_CORRUPTED; /* LMDB's assert fired: see store_assert() */
        }
        if (wk->c)
                mdb_cursor_close(wk->c);
        free(wk->scratch);
        free(wk);
        mdb_txn_abort(txn);
        if (mrc == 0 || mrc == MDB_NOTFOUND)
                return 0;
        store_broken(s, mrc);
        return mdb_errno(mrc);
}

/* Copies a queued block; -ENOENT if none is queued. */
static ssize_t queued_block(struct store *s, const struct store_part *p, uint64_t index, void *buf,
                            size_t cap)
{
        ssize_t n = -ENOENT;
        uint64_t kh = part_hash(p, index);
        pthread_mutex_lock(&s->mu);
        for (int pass = 0; pass < 2 && n == -ENOENT; pass++)
                for (struct op *q = pass ? s->committing : s->head; q; q = q->next)
                        if (op_is_part(q, p, index, kh)) {
                                if (q->len > cap) {
                                        n = -ENOBUFS;
                                } else {
                                        memcpy(buf, q->data, q->len);
                                        n = (ssize_t)q->len;
                                }
                                break;
                        }
        pthread_mutex_unlock(&s->mu);
        return n;
}

static struct op *part_op(enum op_kind kind, const struct store_part *p, uint64_t index)
{
        struct op *o = calloc(1, sizeof(*o));
        if (!o || !(o->mailbox = strdup(p->mailbox))) {
                free(o);
                return NULL;
        }
        o->kind = kind;
        o->uidvalidity = p->uidvalidity;
        o->uid = p->uid;
        snprintf(o->section, sizeof(o->section), "%s", sect(p));
        o->form = p->form ? p->form : STORE_FORM_RAW;
        o->index = (uint32_t)index;
        struct store_part q = *p;
        q.form = o->form;
        o->khash = part_hash(&q, index);
        return o;
}

/* Reads a block from the map; the bytes are copied out before the transaction ends, because a
 * mapped page may be reused by the writer once no reader holds its snapshot. */
static ssize_t mapped_block(struct store *s, const struct store_part *p, uint64_t index, void *buf,
                            size_t cap, bool copy)
{
        MDB_txn *txn;
        int rc = read_begin(s, &txn);
        if (rc)
                return rc;
        struct mbox_rec r;
        ssize_t n = mbox_get(s, txn, p->mailbox, &r);
        if (n == 0) {
                unsigned char kb[KEY_MAX];
                MDB_val k = {0, kb}, v;
                sigjmp_buf jb;
                if (sigsetjmp(jb, 0) == 0) {
                        guard_jmp = &jb;
                        /* In the guard: finding the key reads the cid table. */
                        k.mv_size = content_key(s, txn, kb, r.no, p->uidvalidity, p->uid, sect(p),
                                                (char)(p->form ? p->form : STORE_FORM_RAW),
                                                (uint32_t)index);
                        rc = mdb_get(txn, s->blk, &k, &v);
                        guard_jmp = NULL;
                } else {
                        rc = MDB_CORRUPTED;
                }
                if (rc) {
                        store_broken(s, rc);
                        n = mdb_errno(rc);
                } else if (!copy) {
                        n = (ssize_t)v.mv_size;
                } else if (v.mv_size > cap) {
                        n = -ENOBUFS;
                } else {
                        memcpy(buf, v.mv_data, v.mv_size);
                        n = (ssize_t)v.mv_size;
                }
        }
        mdb_txn_abort(txn);
        return n;
}

ssize_t store_block_get(struct store *s, const struct store_part *p, uint64_t index, void *buf,
                        size_t cap)
{
        int rc = part_check(p, index);
        if (!s || rc)
                return rc ? rc : -EINVAL;
        struct store_part q = *p;
        if (!q.form)
                q.form = STORE_FORM_RAW;
        ssize_t n = queued_block(s, &q, index, buf, cap);
        if (n != -ENOENT)
                return n;
        n = mapped_block(s, &q, index, buf, cap, true);
        if (n >= 0) {
                /* The LRU stamp is a write: the writer does it, or nobody if it is busy. */
                struct op *o = part_op(OP_TOUCH, &q, index);
                pthread_mutex_lock(&s->mu);
                bool running = s->running;
                pthread_mutex_unlock(&s->mu);
                if (o && running)
                        submit(s, o);
                else
                        op_free(o);
        }
        return n;
}

bool store_block_has(struct store *s, const struct store_part *p, uint64_t index)
{
        if (!s || part_check(p, index))
                return false;
        struct store_part q = *p;
        if (!q.form)
                q.form = STORE_FORM_RAW;
        bool has = false;
        uint64_t kh = part_hash(&q, index);
        pthread_mutex_lock(&s->mu);
        for (int pass = 0; pass < 2 && !has; pass++)
                for (struct op *o = pass ? s->committing : s->head; o && !has; o = o->next)
                        has = op_is_part(o, &q, index, kh);
        pthread_mutex_unlock(&s->mu);
        return has || mapped_block(s, &q, index, NULL, 0, false) >= 0;
}

uint64_t store_bytes(struct store *s)
{
        MDB_txn *txn;
        if (read_begin(s, &txn))
                return 0;
        uint64_t n = info_get(txn, s->info, "bytes");
        mdb_txn_abort(txn);
        return n;
}

size_t store_block_count(struct store *s)
{
        MDB_txn *txn;
        if (read_begin(s, &txn))
                return 0;
        MDB_stat st;
        size_t n = mdb_stat(txn, s->blk, &st) == 0 ? st.ms_entries : 0;
        mdb_txn_abort(txn);
        return n;
}

uint64_t store_records_written(struct store *s)
{
        pthread_mutex_lock(&s->mu);
        uint64_t n = s->records_written;
        pthread_mutex_unlock(&s->mu);
        return n;
}

uint64_t store_commits(struct store *s)
{
        pthread_mutex_lock(&s->mu);
        uint64_t n = s->commits;
        pthread_mutex_unlock(&s->mu);
        return n;
}

uint64_t store_dropped(struct store *s)
{
        pthread_mutex_lock(&s->mu);
        uint64_t n = s->dropped;
        pthread_mutex_unlock(&s->mu);
        return n;
}

/* ---- writes ---- */

int store_block_put(struct store *s, const struct store_part *p, uint64_t index, const void *data,
                    size_t len)
{
        int rc = part_check(p, index);
        if (rc)
                return rc;
        if (!s || (!data && len) || len > STORE_BLOCK_MAX)
                return -EINVAL;
        if (block_cost(s, len, KEY_MAX) > s->max_bytes)
                return -EFBIG;
        struct op *o = part_op(OP_BLOCK, p, index);
        if (!o || !(o->data = malloc(len ? len : 1))) {
                op_free(o);
                return -ENOMEM;
        }
        memcpy(o->data, data, len);
        o->len = len;
        return submit(s, o);
}

struct store_listing *store_listing_new(const char *mailbox, const struct store_meta *meta,
                                        size_t expect)
{
        if (!mailbox || !meta)
                return NULL;
        struct store_listing *l = calloc(1, sizeof(*l));
        if (!l || !(l->mailbox = strdup(mailbox))) {
                free(l);
                return NULL;
        }
        l->meta = *meta;
        l->cap = expect * 64 + 64;
        l->buf = malloc(l->cap);
        if (!l->buf) {
                store_listing_free(l);
                return NULL;
        }
        return l;
}

int store_listing_add(struct store_listing *l, const struct store_msg *m)
{
        if (!l || !m || m->uid == 0)
                return -EINVAL;
        const char *f = m->flags ? m->flags : "", *nm = m->name ? m->name : "";
        size_t fl = strlen(f), nl = strlen(nm);
        if (fl > STORE_STR_MAX || nl > STORE_STR_MAX)
                return -ENAMETOOLONG;
        size_t vl = MSG_FIXED + fl + nl;
        if (l->len + 8 + vl > l->cap) {
                size_t nc = (l->len + 8 + vl) * 2;
                unsigned char *nb = realloc(l->buf, nc);
                if (!nb)
                        return -ENOMEM;
                l->buf = nb;
                l->cap = nc;
        }
        unsigned char *p = l->buf + l->len;
        le32(p, m->uid);
        le32(p + 4, (uint32_t)vl);
        le64(p + 8, m->size);
        le64(p + 16, (uint64_t)m->internaldate);
        le16(p + 24, (uint16_t)fl);
        memcpy(p + 8 + MSG_FIXED, f, fl);
        memcpy(p + 8 + MSG_FIXED + fl, nm, nl);
        l->len += 8 + vl;
        l->n++;
        return 0;
}

void store_listing_free(struct store_listing *l)
{
        if (!l)
                return;
        free(l->mailbox);
        free(l->buf);
        free(l);
}

int store_cids_save(struct store *s, const char *mailbox, uint32_t uidvalidity,
                    const struct store_cid *v, size_t n)
{
        if (!s || !mailbox || (!v && n))
                return -EINVAL;
        if (strlen(mailbox) > STORE_NAME_MAX)
                return 0; /* nothing of it can be stored */
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
                size_t il = v[i].cid ? strlen(v[i].cid) : 0;
                if (il > STORE_CID_MAX)
                        return -EINVAL;
                if (il)
                        len += 5 + il;
        }
        if (!len)
                return 0;
        struct op *o = calloc(1, sizeof(*o));
        if (!o || !(o->mailbox = strdup(mailbox)) || !(o->data = malloc(len))) {
                op_free(o);
                return -ENOMEM;
        }
        o->kind = OP_CIDS;
        o->uidvalidity = uidvalidity;
        for (size_t i = 0; i < n; i++) {
                size_t il = v[i].cid ? strlen(v[i].cid) : 0;
                if (!il || v[i].uid == 0)
                        continue;
                le32(o->data + o->len, v[i].uid);
                o->data[o->len + 4] = (unsigned char)(il - 1);
                memcpy(o->data + o->len + 5, v[i].cid, il);
                o->len += 5 + il;
        }
        return submit(s, o);
}

int store_listing_save(struct store *s, struct store_listing *l)
{
        if (!s || !l) {
                store_listing_free(l);
                return -EINVAL;
        }
        if (strlen(l->mailbox) > STORE_NAME_MAX) {
                store_listing_free(l);
                return -ENAMETOOLONG;
        }
        struct op *o = calloc(1, sizeof(*o));
        if (!o || !(o->mailbox = strdup(l->mailbox))) {
                free(o);
                store_listing_free(l);
                return -ENOMEM;
        }
        o->kind = OP_LISTING;
        o->listing = l;
        return submit(s, o);
}

int store_mailbox_drop(struct store *s, const char *mailbox, char delim)
{
        if (!s || !mailbox)
                return -EINVAL;
        if (strlen(mailbox) > STORE_NAME_MAX)
                return 0; /* nothing of it can be stored */
        struct op *o = calloc(1, sizeof(*o));
        if (!o || !(o->mailbox = strdup(mailbox))) {
                free(o);
                return -ENOMEM;
        }
        o->kind = OP_DROP;
        o->delim = delim;
        return submit(s, o);
}

int store_tree_save(struct store *s, const struct store_folder *v, size_t n)
{
        if (!s || (!v && n))
                return -EINVAL;
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
                len += 4 + TREE_FIXED + strlen(v[i].raw);
        struct op *o = calloc(1, sizeof(*o));
        if (!o || !(o->tree = malloc(len ? len : 1))) {
                free(o);
                return -ENOMEM;
        }
        o->kind = OP_TREE;
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
                size_t nl = strlen(v[i].raw);
                unsigned char *p = o->tree + off;
                le32(p, (uint32_t)(TREE_FIXED + nl));
                p[4] = (unsigned char)v[i].delim;
                le32(p + 5, v[i].attrs);
                memcpy(p + 4 + TREE_FIXED, v[i].raw, nl);
                off += 4 + TREE_FIXED + nl;
        }
        o->ntree = n;
        return submit(s, o);
}
