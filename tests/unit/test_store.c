/* The LMDB store: round trips, listings saved by difference, LRU bound, UIDVALIDITY and
 * mailbox drops, old-format cleanup, modes, damaged files, a writer killed mid-batch, and
 * two processes at once. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/store.h"
#include "tests/unit/unit_main.h"

static char base[64];
static char cdir[128];
static char logged[4096];

static void note(const char *msg)
{
        size_t n = strlen(logged);
        snprintf(logged + n, sizeof(logged) - n, "%s\n", msg);
}

static void setup(void)
{
        strcpy(base, "/tmp/imapfs-store-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(base));
        snprintf(cdir, sizeof(cdir), "%s/cache/imapfs/alice@host:993/names", base);
        logged[0] = '\0';
        store_set_logger(note);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
        (void)st;
        (void)flag;
        (void)f;
        return remove(p);
}

static void teardown(void)
{
        nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct store *open_ok(uint64_t max)
{
        struct store *s = NULL;
        char err[256] = "";
        int rc = store_open(cdir, max, &s, err, sizeof(err));
        ck_assert_msg(rc == 0, "store_open: %d %s", rc, err);
        return s;
}

static struct store_part part(const char *mailbox, uint32_t uv, uint32_t uid)
{
        return (struct store_part){mailbox, uv, uid, "", STORE_FORM_RAW};
}

/* Deterministic block content from its key. */
static size_t fill(unsigned char *b, size_t len, uint32_t uv, uint32_t uid, uint64_t index)
{
        uint64_t x = ((uint64_t)uv << 32 | uid) * 0x9E3779B97F4A7C15ULL + index + 1;
        for (size_t i = 0; i < len; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b[i] = (unsigned char)x;
        }
        return len;
}

static void put_block(struct store *s, const char *mb, uint32_t uv, uint32_t uid, uint64_t idx,
                      size_t len)
{
        unsigned char *b = malloc(len ? len : 1);
        fill(b, len, uv, uid, idx);
        struct store_part p = part(mb, uv, uid);
        ck_assert_int_eq(store_block_put(s, &p, idx, b, len), 0);
        free(b);
}

/* 1: the right bytes; 0: not stored; fails on wrong bytes. */
static int check_block(struct store *s, const char *mb, uint32_t uv, uint32_t uid, uint64_t idx,
                       size_t len)
{
        unsigned char *want = malloc(len + 1), *got = malloc(STORE_BLOCK_MAX);
        fill(want, len, uv, uid, idx);
        struct store_part p = part(mb, uv, uid);
        ssize_t n = store_block_get(s, &p, idx, got, STORE_BLOCK_MAX);
        int res = 0;
        if (n >= 0) {
                ck_assert_int_eq(n, (ssize_t)len);
                ck_assert_int_eq(memcmp(want, got, len), 0);
                res = 1;
        } else {
                ck_assert_int_eq(n, -ENOENT);
        }
        free(want);
        free(got);
        return res;
}

/* ---- listings ---- */

struct collected {
        size_t n;
        uint32_t uids[20000];
        char flags[20000][24];
        char names[20000][48];
        uint64_t sizes[20000];
};

static void collect(void *ctx, const struct store_msg *m)
{
        struct collected *c = ctx;
        ck_assert_uint_lt(c->n, 20000);
        c->uids[c->n] = m->uid;
        c->sizes[c->n] = m->size;
        snprintf(c->flags[c->n], sizeof(c->flags[0]), "%s", m->flags);
        snprintf(c->names[c->n], sizeof(c->names[0]), "%s", m->name);
        c->n++;
}

/* A listing of the uids in set[] (flags from gen): saved. */
static void save_listing(struct store *s, const char *mb, uint32_t uv, const uint32_t *uids,
                         size_t n, unsigned gen)
{
        struct store_meta meta = {uv, n ? uids[n - 1] + 1 : 1, 1000 + gen};
        struct store_listing *l = store_listing_new(mb, &meta, n);
        ck_assert_ptr_nonnull(l);
        /* added in a scrambled order: the store sorts */
        for (size_t k = 0; k < n; k++) {
                size_t i = (k * 7919) % n;
                char flags[24], name[48];
                snprintf(flags, sizeof(flags), (uids[i] + gen) % 3 ? "\\Seen" : "");
                snprintf(name, sizeof(name), "message %u of %s.eml", uids[i], mb);
                struct store_msg m = {uids[i], 1000u + uids[i], 1700000000 + uids[i], flags, name};
                ck_assert_int_eq(store_listing_add(l, &m), 0);
        }
        ck_assert_int_eq(store_listing_save(s, l), 0);
}

static void check_listing(struct store *s, const char *mb, uint32_t uv, const uint32_t *uids,
                          size_t n, unsigned gen)
{
        static struct collected c;
        c.n = 0;
        struct store_meta meta;
        ck_assert_int_eq(store_listing_load(s, mb, &meta, collect, &c), 0);
        ck_assert_uint_eq(meta.uidvalidity, uv);
        ck_assert_uint_eq(meta.highestmodseq, 1000 + gen);
        ck_assert_uint_eq(c.n, n);
        for (size_t i = 0; i < n; i++) {
                ck_assert_uint_eq(c.uids[i], uids[i]); /* UID order */
                ck_assert_uint_eq(c.sizes[i], 1000u + uids[i]);
                ck_assert_str_eq(c.flags[i], (uids[i] + gen) % 3 ? "\\Seen" : "");
                char name[48];
                snprintf(name, sizeof(name), "message %u of %s.eml", uids[i], mb);
                ck_assert_str_eq(c.names[i], name);
        }
}

START_TEST(test_hash_vectors)
{
        ck_assert_uint_eq(store_hash64("", 0, 0), 0xef46db3751d8e999ULL);
        ck_assert_uint_eq(store_hash64("abc", 3, 0), 0x44bc2cf5ad770999ULL);
        const char *s = "abcdefghijklmnopqrstuvwxyz1234567";
        ck_assert_uint_eq(store_hash64(s, 31, 877380273), 0x37b562ec5715e132ULL);
        ck_assert_uint_eq(store_hash64(s, 33, 0), 0x23bbd16d29353c5fULL);
}
END_TEST

START_TEST(test_listing_round_trip)
{
        struct store *s = open_ok(1 << 20);
        uint32_t uids[] = {3, 7, 8, 100, 65536, 4000000000u};
        save_listing(s, "INBOX", 42, uids, 6, 0);
        save_listing(s, "Other", 9, uids + 2, 2, 1);
        check_listing(s, "INBOX", 42, uids, 6, 0);
        check_listing(s, "Other", 9, uids + 2, 2, 1);
        ck_assert_int_eq(store_listing_load(s, "Nope", NULL, NULL, NULL), -ENOENT);
        /* empty listing: stored, with its meta */
        save_listing(s, "Empty", 5, NULL, 0, 2);
        check_listing(s, "Empty", 5, NULL, 0, 2);
        store_close(s);
        s = open_ok(1 << 20);
        check_listing(s, "INBOX", 42, uids, 6, 0);
        store_close(s);
}
END_TEST

/* Random changes saved by difference, through the writer thread, checked each time against
 * the listing as it should be, also after a reopen. */
START_TEST(test_listing_diff_saves)
{
        struct store *s = open_ok(1 << 20);
        ck_assert_int_eq(store_start(s), 0);
        static uint32_t cur[5000], other[300];
        size_t n = 0;
        for (uint32_t u = 1; u <= 5000; u++)
                if (u % 5)
                        cur[n++] = u;
        for (size_t i = 0; i < 300; i++)
                other[i] = (uint32_t)(i * 2 + 1);
        /* a neighbour on each side, which must stay untouched */
        save_listing(s, "A", 1, other, 300, 0);
        save_listing(s, "C", 1, other, 300, 0);
        save_listing(s, "B", 7, cur, n, 0);
        srand(4711);
        for (unsigned gen = 1; gen <= 12; gen++) {
                static uint32_t next[6000];
                size_t m = 0;
                uint32_t top = cur[n - 1];
                for (size_t i = 0; i < n; i++)
                        if (rand() % 10) /* about a tenth expunged */
                                next[m++] = cur[i];
                for (unsigned k = 0; k < (unsigned)(rand() % 50) && m < 6000; k++)
                        next[m++] = ++top;
                memcpy(cur, next, m * sizeof(*cur));
                n = m;
                save_listing(s, "B", 7, cur, n, gen);
                if (gen % 3 == 0) {
                        ck_assert_int_eq(store_flush(s, 10000), 0);
                        check_listing(s, "B", 7, cur, n, gen);
                }
        }
        /* a load sees a save still queued */
        check_listing(s, "B", 7, cur, n, 12);
        check_listing(s, "A", 1, other, 300, 0);
        check_listing(s, "C", 1, other, 300, 0);
        store_close(s);
        s = open_ok(1 << 20);
        check_listing(s, "B", 7, cur, n, 12);
        check_listing(s, "A", 1, other, 300, 0);
        store_close(s);
}
END_TEST

/* A listing bigger than one write transaction takes (LISTING_TXN_RECORDS, so that LMDB's
 * cache of dirtied pages stays small: issue 13) is written in parts: every record of a
 * big first save, of a save that changes every record, expunges half and adds more, and of
 * a save that shrinks it to a few, arrives, and a neighbour stays as it was. */
START_TEST(test_listing_in_parts)
{
        struct store *s = open_ok(64 << 20);
        ck_assert_int_eq(store_start(s), 0);
        static uint32_t uids[20000], other[300];
        for (size_t i = 0; i < 300; i++)
                other[i] = (uint32_t)(i + 1);
        save_listing(s, "A", 1, other, 300, 0);
        for (uint32_t i = 0; i < 19000; i++)
                uids[i] = i + 1;
        save_listing(s, "Big", 5, uids, 19000, 0);
        ck_assert_int_eq(store_flush(s, 30000), 0);
        check_listing(s, "Big", 5, uids, 19000, 0);
        size_t n = 0;
        for (uint32_t u = 1; u <= 19000; u++)
                if (u % 2)
                        uids[n++] = u;
        while (n < 20000)
                uids[n] = 19000 + (uint32_t)n, n++;
        save_listing(s, "Big", 5, uids, n, 1);
        ck_assert_int_eq(store_flush(s, 30000), 0);
        check_listing(s, "Big", 5, uids, n, 1);
        save_listing(s, "Big", 5, uids + 100, 3, 2);
        ck_assert_int_eq(store_flush(s, 30000), 0);
        check_listing(s, "Big", 5, uids + 100, 3, 2);
        check_listing(s, "A", 1, other, 300, 0);
        store_close(s);
        s = open_ok(64 << 20);
        check_listing(s, "Big", 5, uids + 100, 3, 2);
        store_close(s);
}
END_TEST

/* A save writes only the records that changed: a flag, an expunge, a new message. */
START_TEST(test_listing_writes_only_changes)
{
        struct store *s = open_ok(1 << 20);
        static uint32_t uids[5001];
        for (uint32_t i = 0; i < 5000; i++)
                uids[i] = i + 1;
        save_listing(s, "INBOX", 3, uids, 5000, 0);
        ck_assert_uint_eq(store_records_written(s), 5000);
        save_listing(s, "INBOX", 3, uids, 5000, 3); /* (uid + 3) % 3: the same flags */
        ck_assert_uint_eq(store_records_written(s), 5000);
        /* one message gone (uid 100), one new (5001); flags as before */
        memmove(uids + 99, uids + 100, (5000 - 100) * sizeof(*uids));
        uids[4999] = 5001;
        save_listing(s, "INBOX", 3, uids, 5000, 0);
        ck_assert_uint_eq(store_records_written(s), 5002);
        check_listing(s, "INBOX", 3, uids, 5000, 0);
        /* every flag changes: every record */
        save_listing(s, "INBOX", 3, uids, 5000, 1);
        ck_assert_uint_gt(store_records_written(s), 5002 + 3000);
        check_listing(s, "INBOX", 3, uids, 5000, 1);
        store_close(s);
}
END_TEST

START_TEST(test_tree_round_trip)
{
        struct store *s = open_ok(1 << 20);
        struct store_folder v[] = {
            {"INBOX", '/', 0}, {"Archive/2024", '/', 3}, {"Entw&APw-rfe", '/', 8}};
        ck_assert_int_eq(store_tree_save(s, v, 3), 0);
        ck_assert_int_eq(store_tree_save(s, v, 2), 0); /* replaces */
        store_close(s);
        s = open_ok(1 << 20);
        ck_assert_int_eq(store_tree_load(s, NULL, NULL), 2);
        /* a mailbox the tree no longer has (deleted or renamed elsewhere) is dropped with it */
        uint32_t uids[] = {1, 2};
        save_listing(s, "INBOX", 1, uids, 2, 0);
        save_listing(s, "Archive/2024", 1, uids, 2, 0);
        save_listing(s, "Gone", 1, uids, 2, 0);
        put_block(s, "Gone", 1, 1, 0, 1000);
        ck_assert_int_eq(store_tree_save(s, v, 2), 0);
        check_listing(s, "INBOX", 1, uids, 2, 0);
        check_listing(s, "Archive/2024", 1, uids, 2, 0);
        ck_assert_int_eq(store_listing_load(s, "Gone", NULL, NULL, NULL), -ENOENT);
        ck_assert_int_eq(check_block(s, "Gone", 1, 1, 0, 1000), 0);
        store_close(s);
}
END_TEST

/* ---- blocks ---- */

/* Issue 10: a message with a server-wide content id (X-GM-MSGID, EMAILID) has one copy of
 * its content, found through any folder that shows it; a folder without the id, or under
 * another UIDVALIDITY, does not find it; dropping one folder leaves it to the others; a
 * message gone from a listing loses its id. */
static ssize_t get_raw(struct store *s, const char *mb, uint32_t uv, uint32_t uid, uint64_t idx,
                       unsigned char *buf, size_t cap)
{
        struct store_part p = part(mb, uv, uid);
        return store_block_get(s, &p, idx, buf, cap);
}

START_TEST(test_content_id)
{
        struct store *s = open_ok(64 << 20);
        struct store_cid a[] = {{10, "G1278455344230334865"}, {11, "Eabc_-9"}, {12, ""}};
        struct store_cid b[] = {{99, "G1278455344230334865"}, {98, "Eabc_-9"}};
        /* as the account does it: the listing, then the ids it came with */
        uint32_t both[] = {98, 99};
        save_listing(s, "[Gmail]/All Mail", 7, both, 2, 0);
        ck_assert_int_eq(store_cids_save(s, "INBOX", 1, a, 3), 0);
        ck_assert_int_eq(store_cids_save(s, "[Gmail]/All Mail", 7, b, 2), 0);
        unsigned char blk[1000], buf[1000];
        memset(blk, 'x', sizeof blk);
        struct store_part pa = part("INBOX", 1, 10);
        ck_assert_int_eq(store_block_put(s, &pa, 0, blk, sizeof blk), 0);
        ck_assert_int_eq(store_block_put(s, &pa, 1, "tail", 4), 0);
        struct store_part pe = part("INBOX", 1, 11);
        ck_assert_int_eq(store_block_put(s, &pe, 0, "emailid", 7), 0);
        struct store_part pn = part("INBOX", 1, 12); /* no id: by folder and UID */
        ck_assert_int_eq(store_block_put(s, &pn, 0, "plain", 5), 0);
        ck_assert_int_eq(get_raw(s, "INBOX", 1, 10, 0, buf, sizeof buf), 1000);
        /* through the other folder, under its own UIDVALIDITY and UID */
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 99, 0, buf, sizeof buf), 1000);
        ck_assert_int_eq(memcmp(buf, blk, 1000), 0);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 99, 1, buf, sizeof buf), 4);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 98, 0, buf, sizeof buf), 7);
        ck_assert_int_eq(memcmp(buf, "emailid", 7), 0);
        ck_assert_int_eq(get_raw(s, "INBOX", 1, 12, 0, buf, sizeof buf), 5);
        /* another UIDVALIDITY, another UID, a folder without ids: not this content */
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 8, 99, 0, buf, sizeof buf), -ENOENT);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 12, 0, buf, sizeof buf), -ENOENT);
        ck_assert_int_eq(get_raw(s, "Other", 1, 10, 0, buf, sizeof buf), -ENOENT);
        ck_assert_uint_eq(store_block_count(s), 4);
        /* the first folder goes: the content stays for the other */
        ck_assert_int_eq(store_mailbox_drop(s, "INBOX", '/'), 0);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 99, 0, buf, sizeof buf), 1000);
        ck_assert_int_eq(get_raw(s, "INBOX", 1, 12, 0, buf, sizeof buf), -ENOENT);
        store_close(s);
        s = open_ok(64 << 20);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 98, 0, buf, sizeof buf), 7);
        /* a listing without UID 98: its id goes with its record */
        uint32_t keep[] = {99};
        save_listing(s, "[Gmail]/All Mail", 7, keep, 1, 0);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 98, 0, buf, sizeof buf), -ENOENT);
        ck_assert_int_eq(get_raw(s, "[Gmail]/All Mail", 7, 99, 0, buf, sizeof buf), 1000);
        /* a malformed length is refused */
        char big[STORE_CID_MAX + 2];
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        struct store_cid bad = {5, big};
        ck_assert_int_eq(store_cids_save(s, "X", 1, &bad, 1), -EINVAL);
        store_close(s);
}
END_TEST

START_TEST(test_block_round_trip)
{
        struct store *s = open_ok(64 << 20);
        put_block(s, "INBOX", 5, 1, 0, 65536);
        put_block(s, "INBOX", 5, 1, 1, 100);
        put_block(s, "INBOX", 5, 2, 0, 0); /* an empty message */
        put_block(s, "INBOX", 6, 1, 0, 65536);
        put_block(s, "Other", 5, 1, 0, 65536);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 1, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 1, 1, 100), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 2, 0, 0), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 6, 1, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "Other", 5, 1, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 1, 2, 10), 0);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 3, 0, 10), 0);
        ck_assert_int_eq(check_block(s, "Nope", 5, 1, 0, 10), 0);
        /* a section and a form are other keys (#8) */
        struct store_part dec = {"INBOX", 5, 1, "2", STORE_FORM_DECODED};
        unsigned char buf[16];
        ck_assert_int_eq(store_block_get(s, &dec, 0, buf, sizeof(buf)), -ENOENT);
        ck_assert_int_eq(store_block_put(s, &dec, 0, "decoded", 7), 0);
        ck_assert_int_eq(store_block_get(s, &dec, 0, buf, sizeof(buf)), 7);
        ck_assert_int_eq(memcmp(buf, "decoded", 7), 0);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 1, 0, 65536), 1);
        struct store_part p = part("INBOX", 5, 1);
        ck_assert_int_eq(store_block_get(s, &p, 0, buf, sizeof(buf)), -ENOBUFS);
        ck_assert(store_block_has(s, &p, 0));
        ck_assert(!store_block_has(s, &p, 7));
        ck_assert_int_eq(store_block_put(s, &p, 0, buf, STORE_BLOCK_MAX + 1), -EINVAL);
        store_close(s);
        s = open_ok(64 << 20);
        ck_assert_int_eq(check_block(s, "INBOX", 5, 1, 1, 100), 1);
        ck_assert_uint_eq(store_block_count(s), 6);
        store_close(s);
}
END_TEST

/* With the writer running, a block put a moment ago is found before it is committed. */
START_TEST(test_block_queued_visible)
{
        struct store *s = open_ok(256 << 20);
        ck_assert_int_eq(store_start(s), 0);
        unsigned missing = 0;
        for (uint32_t uid = 1; uid <= 300; uid++) {
                put_block(s, "INBOX", 5, uid, 0, 65536);
                struct store_part p = part("INBOX", 5, uid);
                missing += !store_block_has(s, &p, 0);
                missing += check_block(s, "INBOX", 5, uid, 0, 65536) == 0;
        }
        ck_assert_uint_eq(missing, 0);
        ck_assert_int_eq(store_flush(s, 10000), 0);
        ck_assert_uint_eq(store_block_count(s), 300);
        store_close(s);
}
END_TEST

START_TEST(test_lru_eviction)
{
        const uint64_t max = 1 << 20;
        struct store *s = open_ok(max);
        for (uint32_t uid = 1; uid <= 10; uid++)
                put_block(s, "INBOX", 1, uid, 0, 65536);
        /* read 1 and 2 again: the most recently read now */
        ck_assert_int_eq(store_start(s), 0);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 1, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 2, 0, 65536), 1);
        ck_assert_int_eq(store_flush(s, 10000), 0);
        for (uint32_t uid = 11; uid <= 40; uid++) {
                put_block(s, "INBOX", 1, uid, 0, 65536);
                ck_assert_int_eq(store_flush(s, 10000), 0);
                ck_assert_uint_le(store_bytes(s), max);
        }
        ck_assert_uint_gt(store_bytes(s), max / 2);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 40, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 3, 0, 65536), 0);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 11, 0, 65536), 0);
        store_close(s);
        /* the order survives a reopen, and a smaller bound applies at once */
        s = open_ok(max / 2);
        put_block(s, "INBOX", 1, 41, 0, 65536);
        ck_assert_uint_le(store_bytes(s), max / 2);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 40, 0, 65536), 1);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 41, 0, 65536), 1);
        store_close(s);
        /* a block bigger than the bound is not kept */
        s = open_ok(1000);
        struct store_part p = part("INBOX", 1, 99);
        static unsigned char big[4096];
        ck_assert_int_eq(store_block_put(s, &p, 0, big, sizeof(big)), -EFBIG);
        store_close(s);
}
END_TEST

START_TEST(test_uidvalidity_drop)
{
        struct store *s = open_ok(64 << 20);
        uint32_t uids[] = {1, 2, 3};
        save_listing(s, "Box", 100, uids, 3, 0);
        put_block(s, "Box", 100, 1, 0, 5000);
        put_block(s, "Box", 100, 2, 0, 5000);
        put_block(s, "Box", 200, 1, 0, 6000); /* fetched under the new one already */
        put_block(s, "Keep", 100, 1, 0, 5000);
        uint64_t before = store_bytes(s);
        uint32_t nu[] = {1, 2};
        save_listing(s, "Box", 200, nu, 2, 0);
        check_listing(s, "Box", 200, nu, 2, 0);
        ck_assert_int_eq(check_block(s, "Box", 100, 1, 0, 5000), 0);
        ck_assert_int_eq(check_block(s, "Box", 100, 2, 0, 5000), 0);
        ck_assert_int_eq(check_block(s, "Box", 200, 1, 0, 6000), 1);
        ck_assert_int_eq(check_block(s, "Keep", 100, 1, 0, 5000), 1);
        ck_assert_uint_lt(store_bytes(s), before);
        ck_assert_uint_eq(store_block_count(s), 2);
        store_close(s);
}
END_TEST

/* Issue #7 finding 11: after rmdir or rename, nothing of the old name may come back. */
START_TEST(test_mailbox_drop)
{
        struct store *s = open_ok(64 << 20);
        uint32_t uids[] = {1, 2};
        const char *names[] = {"A", "A/b", "A/b/c", "AB", "A.x", "B"};
        for (size_t i = 0; i < 6; i++) {
                save_listing(s, names[i], 1, uids, 2, 0);
                put_block(s, names[i], 1, 1, 0, 3000);
        }
        ck_assert_int_eq(store_start(s), 0);
        ck_assert_int_eq(store_mailbox_drop(s, "A", '/'), 0);  /* rename of A: A and below */
        ck_assert_int_eq(store_mailbox_drop(s, "B", '\0'), 0); /* rmdir B */
        for (size_t i = 0; i < 6; i++) {
                bool gone = i < 3 || i == 5;
                int r = store_listing_load(s, names[i], NULL, NULL, NULL);
                ck_assert_msg(gone ? r == -ENOENT : r == 0, "%s: %d", names[i], r);
                ck_assert_int_eq(check_block(s, names[i], 1, 1, 0, 3000), gone ? 0 : 1);
        }
        ck_assert_uint_eq(store_block_count(s), 2);
        /* a new mailbox of the old name starts empty */
        save_listing(s, "A", 1, uids, 1, 0);
        check_listing(s, "A", 1, uids, 1, 0);
        ck_assert_int_eq(check_block(s, "A", 1, 1, 0, 3000), 0);
        store_close(s);
}
END_TEST

/* ---- files ---- */

static void write_file(const char *path, const void *b, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, b, len), (ssize_t)len);
        close(fd);
}

START_TEST(test_old_format_removed)
{
        char p[512];
        snprintf(p, sizeof(p),
                 "mkdir -p '%s/listings' '%s/blocks/0123456789abcdef' && chmod -R 700 '%s/..'",
                 cdir, cdir, cdir);
        ck_assert_int_eq(system(p), 0);
        chmod(cdir, 0700);
        snprintf(p, sizeof(p), "%s/listings/0123456789abcdef.lst", cdir);
        write_file(p, "IMAPFSLS", 8);
        snprintf(p, sizeof(p), "%s/blocks/0123456789abcdef/1-1-0.blk", cdir);
        write_file(p, "IMAPFSBK", 8);
        snprintf(p, sizeof(p), "%s/lock", cdir);
        write_file(p, "123\n", 4);
        struct store *s = open_ok(1 << 20);
        struct stat st;
        snprintf(p, sizeof(p), "%s/listings", cdir);
        ck_assert_int_ne(lstat(p, &st), 0);
        snprintf(p, sizeof(p), "%s/blocks", cdir);
        ck_assert_int_ne(lstat(p, &st), 0);
        snprintf(p, sizeof(p), "%s/lock", cdir);
        ck_assert_int_ne(lstat(p, &st), 0);
        ck_assert_ptr_nonnull(strstr(logged, "old format"));
        ck_assert_ptr_null(strchr(strchr(logged, '\n') + 1, '\n')); /* one line */
        store_close(s);
        logged[0] = '\0';
        s = open_ok(1 << 20);
        ck_assert_str_eq(logged, "");
        store_close(s);
}
END_TEST

START_TEST(test_modes)
{
        mode_t old = umask(0);
        struct store *s = open_ok(1 << 20);
        put_block(s, "INBOX", 1, 1, 0, 100);
        store_close(s);
        umask(old);
        struct stat st;
        ck_assert_int_eq(stat(cdir, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
        const char *files[] = {"data.mdb", "lock.mdb"};
        for (int i = 0; i < 2; i++) {
                char p[256];
                snprintf(p, sizeof(p), "%s/%s", cdir, files[i]);
                ck_assert_int_eq(stat(p, &st), 0);
                ck_assert_msg((st.st_mode & 07777) == 0600, "%s: %o", files[i], st.st_mode & 07777);
        }
        /* a directory others can read is refused, and so is a symlink in its place */
        chmod(cdir, 0755);
        struct store *t = NULL;
        char err[256];
        ck_assert_int_eq(store_open(cdir, 1 << 20, &t, err, sizeof(err)), -EACCES);
        chmod(cdir, 0700);
        char link[256];
        snprintf(link, sizeof(link), "%s/link", base);
        ck_assert_int_eq(symlink(cdir, link), 0);
        ck_assert_int_eq(store_open(link, 1 << 20, &t, err, sizeof(err)), -ENOTDIR);
}
END_TEST

/* A data file garbled, cut short or replaced: detected at open, the store starts empty, one
 * log line, and no block of the old file is ever served. */
static void damage_and_reopen(void (*damage)(const char *path), const char *what)
{
        struct store *s = open_ok(64 << 20);
        uint32_t uids[] = {1, 2, 3};
        save_listing(s, "INBOX", 1, uids, 3, 0);
        for (uint32_t u = 1; u <= 30; u++)
                put_block(s, "INBOX", 1, u, 0, 65536);
        store_close(s);
        char p[256];
        snprintf(p, sizeof(p), "%s/data.mdb", cdir);
        damage(p);
        logged[0] = '\0';
        s = open_ok(64 << 20);
        ck_assert_msg(strstr(logged, "starting an empty cache") != NULL, "%s: log %s", what,
                      logged);
        for (uint32_t u = 1; u <= 30; u++)
                ck_assert_int_eq(check_block(s, "INBOX", 1, u, 0, 65536), 0);
        ck_assert_int_eq(store_listing_load(s, "INBOX", NULL, NULL, NULL), -ENOENT);
        /* and it works */
        put_block(s, "INBOX", 1, 1, 0, 65536);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 1, 0, 65536), 1);
        store_close(s);
}

static void truncate_half(const char *p)
{
        struct stat st;
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_int_eq(truncate(p, st.st_size / 2), 0);
}

static void garbage_all(const char *p)
{
        struct stat st;
        ck_assert_int_eq(stat(p, &st), 0);
        unsigned char *b = malloc((size_t)st.st_size);
        fill(b, (size_t)st.st_size, 7, 7, 7);
        write_file(p, b, (size_t)st.st_size);
        free(b);
}

static void garbage_meta(const char *p)
{
        unsigned char b[8192];
        fill(b, sizeof(b), 1, 2, 3);
        int fd = open(p, O_WRONLY);
        ck_assert_int_eq(pwrite(fd, b, sizeof(b), 0), (ssize_t)sizeof(b));
        close(fd);
}

/* Every leaf page zeroed: the tables LMDB walks at open hit pages of the wrong type. */
static void zero_leaves(const char *p)
{
        int fd = open(p, O_RDWR);
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        static const unsigned char zero[4096];
        unsigned char hdr[16];
        for (off_t off = 2 * 4096; off + 4096 <= st.st_size; off += 4096)
                if (pread(fd, hdr, sizeof(hdr), off) == (ssize_t)sizeof(hdr) &&
                    (hdr[10] | hdr[11] << 8) == 0x02)
                        ck_assert_int_eq(pwrite(fd, zero, sizeof(zero), off), 4096);
        close(fd);
}

static void text_file(const char *p)
{
        write_file(p, "not a database at all\n", 22);
}

START_TEST(test_damaged_truncated)
{
        damage_and_reopen(truncate_half, "truncated");
}
END_TEST

START_TEST(test_damaged_garbage)
{
        damage_and_reopen(garbage_all, "garbage");
}
END_TEST

START_TEST(test_damaged_meta)
{
        damage_and_reopen(garbage_meta, "meta pages");
}
END_TEST

START_TEST(test_damaged_leaves)
{
        damage_and_reopen(zero_leaves, "leaf pages zeroed");
}
END_TEST

START_TEST(test_damaged_text)
{
        damage_and_reopen(text_file, "text");
}
END_TEST

/* The leaf pages of the msg table (8-byte keys, records longer than an LRU entry's 19 bytes). */
static size_t msg_leaf_pages(const unsigned char *f, size_t npages, size_t *out, size_t max)
{
        size_t n = 0;
        for (size_t pg = 2; pg < npages && n < max; pg++) {
                const unsigned char *p = f + pg * 4096;
                unsigned flags = p[10] | p[11] << 8, lower = p[12] | p[13] << 8;
                if (flags != 0x02 || lower <= 16)
                        continue;
                unsigned off = p[16] | p[17] << 8;
                if (off < 16 || off > 4096 - 8)
                        continue;
                const unsigned char *node = p + off;
                unsigned dsize = node[0] | node[1] << 8, ksize = node[6] | node[7] << 8;
                if (ksize == 8 && dsize > 19 && dsize < 200)
                        out[n++] = pg;
        }
        return n;
}

static void count_msg(void *ctx, const struct store_msg *m)
{
        (void)m;
        (*(size_t *)ctx)++;
}

/* A page of listing records zeroed (damage LMDB can't see at open): the load says so, hands
 * out no part of the listing, the store is not used any more, and the next open starts anew. */
START_TEST(test_damaged_page_in_use)
{
        struct store *s = open_ok(64 << 20);
        static uint32_t uids[20000];
        for (uint32_t i = 0; i < 20000; i++)
                uids[i] = i + 1;
        save_listing(s, "Big", 1, uids, 20000, 0);
        put_block(s, "Big", 1, 1, 0, 5000);
        store_close(s);
        char p[256];
        snprintf(p, sizeof(p), "%s/data.mdb", cdir);
        size_t len;
        int fd = open(p, O_RDWR);
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        len = (size_t)st.st_size;
        unsigned char *f = malloc(len);
        ck_assert_int_eq(pread(fd, f, len, 0), (ssize_t)len);
        size_t pages[1024];
        size_t n = msg_leaf_pages(f, len / 4096, pages, 1024);
        ck_assert_uint_gt(n, 100);
        static const unsigned char zero[4096];
        ck_assert_int_eq(pwrite(fd, zero, 4096, (off_t)(pages[n / 2] * 4096)), 4096);
        close(fd);
        free(f);

        s = open_ok(64 << 20);
        size_t got = 0;
        int r = store_listing_load(s, "Big", NULL, count_msg, &got);
        ck_assert_int_lt(r, 0);
        ck_assert_uint_eq(got, 0); /* no part of it */
        ck_assert_ptr_nonnull(strstr(logged, "damaged"));
        ck_assert_int_eq(check_block(s, "Big", 1, 1, 0, 5000), 0); /* not used any more */
        store_close(s);
        logged[0] = '\0';
        s = open_ok(64 << 20);
        ck_assert_ptr_nonnull(strstr(logged, "starting an empty cache"));
        ck_assert_int_eq(store_listing_load(s, "Big", NULL, NULL, NULL), -ENOENT);
        save_listing(s, "Big", 1, uids, 100, 0);
        check_listing(s, "Big", 1, uids, 100, 0);
        store_close(s);
}
END_TEST

START_TEST(test_garbage_lock_file)
{
        struct store *s = open_ok(1 << 20);
        put_block(s, "INBOX", 1, 1, 0, 1000);
        store_close(s);
        char p[256];
        snprintf(p, sizeof(p), "%s/lock.mdb", cdir);
        unsigned char b[8192];
        fill(b, sizeof(b), 9, 9, 9);
        write_file(p, b, sizeof(b));
        s = open_ok(1 << 20);
        ck_assert_int_eq(check_block(s, "INBOX", 1, 1, 0, 1000), 1);
        store_close(s);
}
END_TEST

/* A writer killed with SIGKILL in the middle of its batches: the store opens consistent, every
 * block it holds has the right bytes, and every listing is one that was saved whole. */
START_TEST(test_kill9_mid_batch)
{
        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        struct store *s0 = open_ok(8 << 20); /* made here, so that the child only writes */
        store_close(s0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(pfd[0]);
                struct store *s = NULL;
                char err[256];
                if (store_open(cdir, 8 << 20, &s, err, sizeof(err)) || store_start(s))
                        _exit(2);
                static unsigned char b[65536];
                static uint32_t uids[3000];
                bool told = false;
                for (uint32_t round = 1;; round++) {
                        for (uint32_t k = 0; k < 40; k++) {
                                uint32_t uid = round * 40 + k;
                                fill(b, sizeof(b), 1, uid, 0);
                                struct store_part p = part("INBOX", 1, uid);
                                store_block_put(s, &p, 0, b, sizeof(b));
                        }
                        /* a listing whose uidnext says how many records it has */
                        size_t n = 100 + (round * 37) % 2900;
                        for (size_t i = 0; i < n; i++)
                                uids[i] = (uint32_t)(i + 1);
                        struct store_meta meta = {1, (uint32_t)n + 1, round};
                        struct store_listing *l = store_listing_new("INBOX", &meta, n);
                        for (size_t i = 0; i < n; i++) {
                                struct store_msg m = {uids[i], 1, 2, "\\Seen", "some name.eml"};
                                store_listing_add(l, &m);
                        }
                        store_listing_save(s, l);
                        if (round == 20 && !told) {
                                told = write(pfd[1], "x", 1) == 1;
                        }
                }
        }
        close(pfd[1]);
        char c;
        ck_assert_int_eq(read(pfd[0], &c, 1), 1);
        usleep(50 * 1000);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        ck_assert(WIFSIGNALED(st));
        close(pfd[0]);

        struct store *s = open_ok(8 << 20);
        ck_assert_str_eq(logged, ""); /* not damaged: nothing removed */
        static struct collected col;
        col.n = 0;
        struct store_meta meta;
        ck_assert_int_eq(store_listing_load(s, "INBOX", &meta, collect, &col), 0);
        ck_assert_uint_eq(col.n + 1, meta.uidnext);
        for (size_t i = 0; i < col.n; i++)
                ck_assert_uint_eq(col.uids[i], i + 1);
        unsigned found = 0;
        for (uint32_t uid = 40; uid < 40 * 400; uid++)
                found += check_block(s, "INBOX", 1, uid, 0, 65536);
        ck_assert_uint_gt(found, 0);
        ck_assert_uint_le(store_bytes(s), 8 << 20);
        store_close(s);
}
END_TEST

/* Two processes use the store at once: each sees what the other committed. */
START_TEST(test_two_processes)
{
        struct store *s = open_ok(64 << 20);
        ck_assert_int_eq(store_start(s), 0);
        for (uint32_t uid = 1; uid <= 50; uid++)
                put_block(s, "INBOX", 1, uid, 0, 20000);
        ck_assert_int_eq(store_flush(s, 10000), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* the child: its own environment, as a second mount has */
                struct store *t = NULL;
                char err[256];
                if (store_open(cdir, 64 << 20, &t, err, sizeof(err)) || store_start(t))
                        _exit(2);
                int bad = 0;
                for (uint32_t uid = 1; uid <= 50; uid++)
                        bad += check_block(t, "INBOX", 1, uid, 0, 20000) != 1;
                for (uint32_t uid = 51; uid <= 100; uid++)
                        put_block(t, "INBOX", 1, uid, 0, 20000);
                store_close(t);
                _exit(bad ? 1 : 0);
        }
        /* meanwhile, this one reads and writes too */
        for (uint32_t uid = 101; uid <= 150; uid++) {
                put_block(s, "INBOX", 1, uid, 0, 20000);
                ck_assert_int_eq(check_block(s, "INBOX", 1, uid - 100, 0, 20000), 1);
        }
        int st;
        waitpid(pid, &st, 0);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        ck_assert_int_eq(store_flush(s, 10000), 0);
        for (uint32_t uid = 1; uid <= 150; uid++)
                ck_assert_int_eq(check_block(s, "INBOX", 1, uid, 0, 20000), 1);
        store_close(s);
}
END_TEST

struct thr {
        struct store *s;
        unsigned id, bad;
};

static void *thr_main(void *arg)
{
        struct thr *t = arg;
        unsigned char *b = malloc(STORE_BLOCK_MAX), *want = malloc(32768);
        for (uint32_t k = 0; k < 200; k++) {
                uint32_t uid = t->id * 1000 + k % 50;
                struct store_part p = part("INBOX", 1, uid);
                fill(want, 32768, 1, uid, 0);
                if (k < 50)
                        store_block_put(t->s, &p, 0, want, 32768);
                ssize_t n = store_block_get(t->s, &p, 0, b, STORE_BLOCK_MAX);
                if (n >= 0 && (n != 32768 || memcmp(b, want, 32768)))
                        t->bad++;
        }
        free(b);
        free(want);
        return NULL;
}

START_TEST(test_threads)
{
        struct store *s = open_ok(64 << 20);
        ck_assert_int_eq(store_start(s), 0);
        pthread_t th[4];
        struct thr t[4];
        for (unsigned i = 0; i < 4; i++) {
                t[i] = (struct thr){s, i + 1, 0};
                pthread_create(&th[i], NULL, thr_main, &t[i]);
        }
        for (unsigned i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                ck_assert_uint_eq(t[i].bad, 0);
        }
        store_close(s);
        s = open_ok(64 << 20);
        ck_assert_uint_eq(store_block_count(s), 200);
        store_close(s);
}
END_TEST

int main(void)
{
        Suite *su = suite_create("store");
        TCase *tc = tcase_create("store");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_hash_vectors);
        tcase_add_test(tc, test_listing_round_trip);
        tcase_add_test(tc, test_listing_diff_saves);
        tcase_add_test(tc, test_listing_in_parts);
        tcase_add_test(tc, test_listing_writes_only_changes);
        tcase_add_test(tc, test_tree_round_trip);
        tcase_add_test(tc, test_content_id);
        tcase_add_test(tc, test_block_round_trip);
        tcase_add_test(tc, test_block_queued_visible);
        tcase_add_test(tc, test_lru_eviction);
        tcase_add_test(tc, test_uidvalidity_drop);
        tcase_add_test(tc, test_mailbox_drop);
        tcase_add_test(tc, test_old_format_removed);
        tcase_add_test(tc, test_modes);
        tcase_add_test(tc, test_damaged_truncated);
        tcase_add_test(tc, test_damaged_garbage);
        tcase_add_test(tc, test_damaged_meta);
        tcase_add_test(tc, test_damaged_text);
        tcase_add_test(tc, test_damaged_leaves);
        tcase_add_test(tc, test_damaged_page_in_use);
        tcase_add_test(tc, test_garbage_lock_file);
        tcase_add_test(tc, test_kill9_mid_batch);
        tcase_add_test(tc, test_two_processes);
        tcase_add_test(tc, test_threads);
        suite_add_tcase(su, tc);
        return unit_run(su);
}
