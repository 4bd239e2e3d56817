/* The on-disk cache: round trips, LRU bound, lock, permissions, and above all that no damaged,
 * truncated or misplaced file is ever served. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/disk.h"
#include "tests/unit/unit_main.h"

/* ---- helpers ---- */

static char base[64];  /* the mkdtemp directory of the running test */
static char cdir[128]; /* the cache directory inside it, with parents to create */

static void setup(void)
{
        strcpy(base, "/tmp/imapfs-disk-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(base));
        snprintf(cdir, sizeof(cdir), "%s/cache/imapfs/alice@host:993", base);
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

static struct disk *open_ok(uint64_t max)
{
        struct disk *d = NULL;
        char err[256] = "";
        int rc = disk_open(cdir, max, &d, err, sizeof(err));
        ck_assert_msg(rc == 0, "disk_open: %d %s", rc, err);
        return d;
}

static void lst_file(char *out, size_t len, const char *mailbox)
{
        snprintf(out, len, "%s/listings/%016" PRIx64 ".lst", cdir, disk_name_hash(mailbox));
}

static void blk_file(char *out, size_t len, const char *mailbox, uint32_t uv, uint32_t uid,
                     uint64_t index)
{
        snprintf(out, len, "%s/blocks/%016" PRIx64 "/%" PRIu32 "-%" PRIu32 "-%" PRIu64 ".blk", cdir,
                 disk_name_hash(mailbox), uv, uid, index);
}

static unsigned char *read_file(const char *path, size_t *len)
{
        int fd = open(path, O_RDONLY);
        ck_assert_int_ge(fd, 0);
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        unsigned char *b = malloc((size_t)st.st_size + 1);
        ck_assert_int_eq(read(fd, b, (size_t)st.st_size), st.st_size);
        close(fd);
        *len = (size_t)st.st_size;
        return b;
}

static void write_file(const char *path, const void *b, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, b, len), (ssize_t)len);
        close(fd);
}

static int exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static unsigned mode_of(const char *path)
{
        struct stat st;
        ck_assert_msg(lstat(path, &st) == 0, "stat %s", path);
        return st.st_mode & 07777;
}

/* Copies of what a load handed over. */
struct got {
        size_t n, cap;
        struct disk_msg *m;
};

static void collect(void *ctx, const struct disk_msg *m)
{
        struct got *g = ctx;
        if (g->n == g->cap) {
                g->cap = g->cap ? g->cap * 2 : 16;
                g->m = realloc(g->m, g->cap * sizeof(*g->m));
        }
        g->m[g->n] = *m;
        g->m[g->n].flags = strdup(m->flags);
        g->m[g->n].name = strdup(m->name);
        g->n++;
}

static void got_free(struct got *g)
{
        for (size_t i = 0; i < g->n; i++) {
                free((char *)g->m[i].flags);
                free((char *)g->m[i].name);
        }
        free(g->m);
        memset(g, 0, sizeof(*g));
}

static void expect_msgs(const struct got *g, const struct disk_msg *m, size_t n)
{
        ck_assert_uint_eq(g->n, n);
        for (size_t i = 0; i < n; i++) {
                ck_assert_uint_eq(g->m[i].uid, m[i].uid);
                ck_assert_uint_eq(g->m[i].size, m[i].size);
                ck_assert_int_eq(g->m[i].internaldate, m[i].internaldate);
                ck_assert_str_eq(g->m[i].flags, m[i].flags ? m[i].flags : "");
                ck_assert_str_eq(g->m[i].name, m[i].name ? m[i].name : "");
        }
}

static const struct disk_msg three[] = {
    {.uid = 1, .size = 1234, .internaldate = 1700000000, .flags = "\\Seen", .name = "a.eml"},
    {.uid = 7, .size = 0, .internaldate = -5, .flags = "", .name = "Grüße – b.eml"},
    {.uid = 4294967295u,
     .size = (uint64_t)INT64_MAX,
     .internaldate = INT64_MIN,
     .flags = "\\Answered $Label1",
     .name = NULL},
};
static const struct disk_mbox_meta meta3 = {.uidvalidity = 42, .uidnext = 8, .highestmodseq = 99};

/* ---- hash ---- */

START_TEST(test_hash_vectors)
{
        /* Published XXH64 values, covering the short path and the 32-byte stripes. */
        ck_assert_uint_eq(disk_hash64("", 0, 0), 0xef46db3751d8e999ULL);
        ck_assert_uint_eq(disk_hash64("a", 1, 0), 0xd24ec4f1a98c6e5bULL);
        ck_assert_uint_eq(disk_hash64("abc", 3, 0), 0x44bc2cf5ad770999ULL);
        const char *s = "abcdefghijklmnopqrstuvwxyz1234567";
        ck_assert_uint_eq(disk_hash64(s, 31, 0), 0x467605901b01d6f6ULL);
        ck_assert_uint_eq(disk_hash64(s, 31, 877380273), 0x37b562ec5715e132ULL);
        ck_assert_uint_eq(disk_hash64(s, 32, 0), 0x0022ee3b5a18531bULL);
        ck_assert_uint_eq(disk_hash64(s, 33, 0), 0x23bbd16d29353c5fULL);
        ck_assert_uint_eq(disk_hash64("", 0, 668718853), 0x04e830582a31a119ULL);
}
END_TEST

/* ---- listings ---- */

START_TEST(test_listing_round_trip)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        struct disk_mbox_meta m = {0};
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "INBOX", &m, collect, &g), 0);
        ck_assert_uint_eq(m.uidvalidity, 42);
        ck_assert_uint_eq(m.uidnext, 8);
        ck_assert_uint_eq(m.highestmodseq, 99);
        expect_msgs(&g, three, 3);
        got_free(&g);
        /* Survives a remount; meta and fn are optional. */
        disk_close(d);
        d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_load(d, "INBOX", NULL, collect, &g), 0);
        expect_msgs(&g, three, 3);
        got_free(&g);
        ck_assert_int_eq(disk_listing_load(d, "INBOX", &m, NULL, NULL), 0);
        ck_assert_uint_eq(m.uidvalidity, 42);
        ck_assert_int_eq(disk_listing_load(d, "Other", &m, collect, &g), -ENOENT);
        ck_assert_uint_eq(g.n, 0);
        disk_close(d);
}
END_TEST

START_TEST(test_listing_empty)
{
        struct disk *d = open_ok(1 << 20);
        struct disk_mbox_meta in = {.uidvalidity = 1, .uidnext = 1, .highestmodseq = 0}, m;
        ck_assert_int_eq(disk_listing_save(d, "Empty", &in, NULL, 0), 0);
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "Empty", &m, collect, &g), 0);
        ck_assert_uint_eq(g.n, 0);
        ck_assert_uint_eq(m.uidvalidity, 1);
        char p[256];
        lst_file(p, sizeof(p), "Empty");
        size_t len;
        free(read_file(p, &len));
        ck_assert_uint_eq(len, 49 + strlen("Empty"));
        disk_close(d);
}
END_TEST

START_TEST(test_listing_binary_names)
{
        static char all[256], longname[5001];
        for (int i = 1; i < 256; i++)
                all[i - 1] = (char)i;
        memset(longname, 'x', 5000);
        const char *names[] = {"INBOX",     "Entw&APw-rfe", "Entwürfe", "a/b/c", "..",
                               "../../etc", "a\nb\tc",      "",         "%2F",   all,
                               longname,    "INBOX.Sent"};
        size_t n = sizeof(names) / sizeof(names[0]);
        struct disk *d = open_ok(1 << 20);
        for (size_t i = 0; i < n; i++) {
                struct disk_mbox_meta m = {.uidvalidity = (uint32_t)i + 1};
                struct disk_msg msg = {.uid = (uint32_t)i + 100, .flags = "", .name = names[i]};
                ck_assert_int_eq(disk_listing_save(d, names[i], &m, &msg, 1), 0);
        }
        for (size_t i = 0; i < n; i++) {
                struct disk_mbox_meta m = {0};
                struct got g = {0};
                ck_assert_int_eq(disk_listing_load(d, names[i], &m, collect, &g), 0);
                ck_assert_uint_eq(m.uidvalidity, i + 1);
                ck_assert_uint_eq(g.n, 1);
                ck_assert_uint_eq(g.m[0].uid, i + 100);
                ck_assert_str_eq(g.m[0].name, names[i]);
                got_free(&g);
        }
        /* Nothing escaped the listings directory. */
        char p[256];
        snprintf(p, sizeof(p), "%s/etc", base);
        ck_assert(!exists(p));
        disk_close(d);
}
END_TEST

START_TEST(test_listing_10000)
{
        enum { N = 10000 };
        struct disk_msg *msgs = calloc(N, sizeof(*msgs));
        char(*names)[64] = calloc(N, 64);
        for (int i = 0; i < N; i++) {
                snprintf(names[i], 64, "%05d Re: Quarterly numbers (%d) – ünïcödé.eml", i, i * 7);
                msgs[i] = (struct disk_msg){.uid = (uint32_t)(i * 3 + 1),
                                            .size = (uint64_t)i * 1000 + 17,
                                            .internaldate = 1600000000 + i,
                                            .flags = i % 3 ? "\\Seen" : "\\Seen \\Flagged $Work",
                                            .name = names[i]};
        }
        struct disk *d = open_ok(1 << 20);
        struct disk_mbox_meta in = {
            .uidvalidity = 7, .uidnext = N * 3 + 2, .highestmodseq = 1234567};
        ck_assert_int_eq(disk_listing_save(d, "Archive/2023", &in, msgs, N), 0);
        struct disk_mbox_meta m;
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "Archive/2023", &m, collect, &g), 0);
        ck_assert_uint_eq(m.highestmodseq, 1234567);
        expect_msgs(&g, msgs, N);
        got_free(&g);
        /* The on-disk cost is the formula in disk.h. */
        size_t want = 49 + strlen("Archive/2023");
        for (int i = 0; i < N; i++)
                want += 26 + strlen(msgs[i].flags) + strlen(msgs[i].name);
        char p[256];
        lst_file(p, sizeof(p), "Archive/2023");
        size_t len;
        free(read_file(p, &len));
        ck_assert_uint_eq(len, want);
        disk_close(d);
        free(msgs);
        free(names);
}
END_TEST

START_TEST(test_listing_replace_and_drop)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        struct disk_mbox_meta m2 = {.uidvalidity = 43, .uidnext = 2};
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &m2, three, 1), 0);
        struct disk_mbox_meta m;
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "INBOX", &m, collect, &g), 0);
        ck_assert_uint_eq(m.uidvalidity, 43);
        expect_msgs(&g, three, 1);
        got_free(&g);
        ck_assert_int_eq(disk_listing_drop(d, "INBOX"), 0);
        ck_assert_int_eq(disk_listing_load(d, "INBOX", &m, collect, &g), -ENOENT);
        ck_assert_int_eq(disk_listing_drop(d, "INBOX"), -ENOENT);
        /* No temp file stays behind a save. */
        char p[256];
        snprintf(p, sizeof(p), "%s/listings", cdir);
        ck_assert_int_eq(rmdir(p), 0);
        disk_close(d);
}
END_TEST

START_TEST(test_listing_rejects_bad_input)
{
        struct disk *d = open_ok(1 << 20);
        struct disk_msg bad = three[0];
        bad.uid = 0;
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, &bad, 1), -EINVAL);
        bad = three[0];
        bad.size = (uint64_t)INT64_MAX + 1;
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, &bad, 1), -EINVAL);
        char *big = malloc(DISK_STR_MAX + 2);
        memset(big, 'f', DISK_STR_MAX + 1);
        big[DISK_STR_MAX + 1] = '\0';
        bad = three[0];
        bad.flags = big;
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, &bad, 1), -ENAMETOOLONG);
        bad = three[0];
        bad.name = big;
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, &bad, 1), -ENAMETOOLONG);
        ck_assert_int_eq(disk_listing_save(d, big, &meta3, three, 1), -ENAMETOOLONG);
        ck_assert_int_eq(disk_listing_load(d, "INBOX", NULL, NULL, NULL), -ENOENT);
        /* The maximum itself is fine. */
        big[DISK_STR_MAX] = '\0';
        bad = three[0];
        bad.name = big;
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, &bad, 1), 0);
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "INBOX", NULL, collect, &g), 0);
        expect_msgs(&g, &bad, 1);
        got_free(&g);
        free(big);
        disk_close(d);
}
END_TEST

/* ---- blocks ---- */

static void fill(unsigned char *b, size_t n, unsigned seed)
{
        /* Letters only: never 0 nor 0xAA, so the damage tests can tell file bytes apart. */
        for (size_t i = 0; i < n; i++)
                b[i] = (unsigned char)('A' + (i * 7 + seed) % 26);
}

START_TEST(test_block_round_trip)
{
        static unsigned char in[DISK_BLOCK_MAX], out[DISK_BLOCK_MAX];
        const size_t sizes[] = {0, 1, 4096, 65536, DISK_BLOCK_MAX};
        struct disk *d = open_ok(64 << 20);
        uint64_t want = 0;
        for (size_t i = 0; i < 5; i++) {
                fill(in, sizes[i], (unsigned)i);
                ck_assert_int_eq(disk_block_put(d, "INBOX", 9, 5, i, in, sizes[i]), 0);
                want += 48 + 5 + sizes[i];
        }
        ck_assert_uint_eq(disk_bytes(d), want);
        ck_assert_uint_eq(disk_block_count(d), 5);
        for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < 5; i++) {
                        fill(in, sizes[i], (unsigned)i);
                        ck_assert_int_eq(disk_block_get(d, "INBOX", 9, 5, i, out, sizeof(out)),
                                         (ssize_t)sizes[i]);
                        ck_assert(memcmp(in, out, sizes[i]) == 0);
                }
                /* The same after a remount, index rebuilt from the files. */
                disk_close(d);
                d = open_ok(64 << 20);
                ck_assert_uint_eq(disk_bytes(d), want);
                ck_assert_uint_eq(disk_block_count(d), 5);
        }
        /* Every part of the key counts. */
        ck_assert_int_eq(disk_block_get(d, "INBOX", 9, 5, 5, out, sizeof(out)), -ENOENT);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 9, 6, 1, out, sizeof(out)), -ENOENT);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 8, 5, 1, out, sizeof(out)), -ENOENT);
        ck_assert_int_eq(disk_block_get(d, "Inbox", 9, 5, 1, out, sizeof(out)), -ENOENT);
        /* Too small a buffer is refused, the block stays. */
        ck_assert_int_eq(disk_block_get(d, "INBOX", 9, 5, 2, out, 4095), -ENOBUFS);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 9, 5, 2, out, 4096), 4096);
        /* A put again of the same key is counted once. */
        fill(in, 4096, 2);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 9, 5, 2, in, 4096), 0);
        ck_assert_uint_eq(disk_bytes(d), want);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 9, 5, 9, in, DISK_BLOCK_MAX + 1), -EINVAL);
        disk_close(d);
}
END_TEST

START_TEST(test_lru_eviction)
{
        unsigned char in[1000], out[1000];
        const uint64_t file = 48 + 5 + 1000;
        struct disk *d = open_ok(10 * file + 500);
        for (uint64_t i = 0; i < 10; i++) {
                fill(in, sizeof(in), (unsigned)i);
                ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, i, in, sizeof(in)), 0);
        }
        ck_assert_uint_eq(disk_block_count(d), 10);
        /* Read the five oldest: now 5..9 are the least recently used. */
        for (uint64_t i = 0; i < 5; i++)
                ck_assert_int_eq(disk_block_get(d, "INBOX", 1, 1, i, out, sizeof(out)), 1000);
        for (uint64_t i = 10; i < 15; i++) {
                fill(in, sizeof(in), (unsigned)i);
                ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, i, in, sizeof(in)), 0);
                ck_assert_uint_le(disk_bytes(d), 10 * file + 500);
        }
        ck_assert_uint_eq(disk_block_count(d), 10);
        for (uint64_t i = 0; i < 15; i++) {
                ssize_t r = disk_block_get(d, "INBOX", 1, 1, i, out, sizeof(out));
                char p[256];
                blk_file(p, sizeof(p), "INBOX", 1, 1, i);
                if (i >= 5 && i < 10) {
                        ck_assert_int_eq(r, -ENOENT);
                        ck_assert(!exists(p));
                } else {
                        ck_assert_int_eq(r, 1000);
                        fill(in, sizeof(in), (unsigned)i);
                        ck_assert(memcmp(in, out, sizeof(in)) == 0);
                }
        }
        disk_close(d);
}
END_TEST

START_TEST(test_lru_survives_remount)
{
        unsigned char in[100];
        const uint64_t file = 48 + 5 + 100;
        struct disk *d = open_ok(1 << 20);
        for (uint64_t i = 0; i < 10; i++) {
                fill(in, sizeof(in), (unsigned)i);
                ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 2, i, in, sizeof(in)), 0);
        }
        disk_close(d);
        /* Block i last used at T - i: 0 is the most recent, 9 the least. */
        for (uint64_t i = 0; i < 10; i++) {
                char p[256];
                blk_file(p, sizeof(p), "INBOX", 1, 2, i);
                struct timespec t[2] = {{.tv_sec = 1700000000 - (time_t)i},
                                        {.tv_sec = 1700000000 - (time_t)i}};
                ck_assert_int_eq(utimensat(AT_FDCWD, p, t, 0), 0);
        }
        /* A smaller budget at the next mount evicts the least recent at once. */
        d = open_ok(4 * file);
        ck_assert_uint_eq(disk_block_count(d), 4);
        ck_assert_uint_eq(disk_bytes(d), 4 * file);
        for (uint64_t i = 0; i < 10; i++)
                ck_assert_int_eq(disk_block_get(d, "INBOX", 1, 2, i, in, sizeof(in)),
                                 i < 4 ? 100 : -ENOENT);
        /* A get refreshes the mtime: block 3, read last (and later than the file system's
         * timestamp granularity), outlives 0..2 across a remount. */
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 1, 2, 3, in, sizeof(in)), 100);
        disk_close(d);
        d = open_ok(1 * file);
        ck_assert_uint_eq(disk_block_count(d), 1);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 1, 2, 3, in, sizeof(in)), 100);
        disk_close(d);
}
END_TEST

START_TEST(test_block_over_budget)
{
        unsigned char in[1000] = {0};
        struct disk *d = open_ok(500);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, 0, in, sizeof(in)), -EFBIG);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, 1, in, 100), 0);
        ck_assert_uint_eq(disk_block_count(d), 1);
        disk_close(d);
        d = open_ok(0);
        ck_assert_uint_eq(disk_block_count(d), 0);
        ck_assert_uint_eq(disk_bytes(d), 0);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, 1, in, 0), -EFBIG);
        disk_close(d);
}
END_TEST

/* ---- lock and permissions ---- */

START_TEST(test_lock)
{
        struct disk *d = open_ok(1 << 20), *d2 = NULL;
        char err[256] = "";
        ck_assert_int_eq(disk_open(cdir, 1 << 20, &d2, err, sizeof(err)), -EBUSY);
        ck_assert_ptr_null(d2);
        ck_assert_msg(strstr(err, "in use") && strstr(err, cdir), "%s", err);
        char pid[32];
        snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
        ck_assert_msg(strstr(err, pid), "%s", err);
        disk_close(d);
        d2 = open_ok(1 << 20);
        disk_close(d2);
}
END_TEST

START_TEST(test_permissions)
{
        /* A umask that would strip our own write bit: modes must not depend on it. */
        mode_t old = umask(0277);
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, 0, "x", 1), 0);
        umask(old);
        char p[256];
        snprintf(p, sizeof(p), "%s/cache", base);
        ck_assert_uint_eq(mode_of(p), 0700);
        snprintf(p, sizeof(p), "%s/cache/imapfs", base);
        ck_assert_uint_eq(mode_of(p), 0700);
        ck_assert_uint_eq(mode_of(cdir), 0700);
        snprintf(p, sizeof(p), "%s/listings", cdir);
        ck_assert_uint_eq(mode_of(p), 0700);
        snprintf(p, sizeof(p), "%s/blocks", cdir);
        ck_assert_uint_eq(mode_of(p), 0700);
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64, cdir, disk_name_hash("INBOX"));
        ck_assert_uint_eq(mode_of(p), 0700);
        snprintf(p, sizeof(p), "%s/lock", cdir);
        ck_assert_uint_eq(mode_of(p), 0600);
        lst_file(p, sizeof(p), "INBOX");
        ck_assert_uint_eq(mode_of(p), 0600);
        blk_file(p, sizeof(p), "INBOX", 1, 1, 0);
        ck_assert_uint_eq(mode_of(p), 0600);
        disk_close(d);
}
END_TEST

START_TEST(test_refuses_open_dir)
{
        char err[256];
        struct disk *d = NULL;
        snprintf(cdir, sizeof(cdir), "%s/shared", base);
        const mode_t modes[] = {0755, 0750, 0701, 0707};
        for (size_t i = 0; i < 4; i++) {
                ck_assert(mkdir(cdir, 0700) == 0 || errno == EEXIST);
                ck_assert_int_eq(chmod(cdir, modes[i]), 0);
                err[0] = '\0';
                ck_assert_int_eq(disk_open(cdir, 1 << 20, &d, err, sizeof(err)), -EACCES);
                ck_assert_ptr_null(d);
                char want[16];
                snprintf(want, sizeof(want), "%04o", (unsigned)modes[i]);
                ck_assert_msg(strstr(err, want) && strstr(err, cdir), "%s", err);
        }
        /* Nothing was created in the refused directory. */
        char p[256];
        snprintf(p, sizeof(p), "%s/lock", cdir);
        ck_assert(!exists(p));
        /* A symlink in place of the directory is refused too. */
        ck_assert_int_eq(chmod(cdir, 0700), 0);
        snprintf(p, sizeof(p), "%s/link", base);
        ck_assert_int_eq(symlink(cdir, p), 0);
        int rc = disk_open(p, 1 << 20, &d, err, sizeof(err));
        ck_assert_msg(rc == -ENOTDIR || rc == -ELOOP, "%d", rc);
        ck_assert_ptr_null(d);
        /* And the fixed directory opens. */
        d = open_ok(1 << 20);
        disk_close(d);
}
END_TEST

/* ---- damage ---- */

/* Loads expecting damage: -EBADMSG, nothing handed over, the file removed. */
static void expect_bad_listing(struct disk *d, const char *mailbox, const char *path)
{
        struct got g = {0};
        struct disk_mbox_meta m = {.uidvalidity = 777};
        ck_assert_int_eq(disk_listing_load(d, mailbox, &m, collect, &g), -EBADMSG);
        ck_assert_uint_eq(g.n, 0);
        ck_assert_uint_eq(m.uidvalidity, 777);
        ck_assert(!exists(path));
}

START_TEST(test_listing_truncated)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        char p[256];
        lst_file(p, sizeof(p), "INBOX");
        size_t len;
        unsigned char *orig = read_file(p, &len);
        for (size_t t = 0; t <= len; t++) {
                write_file(p, orig, t);
                if (t < len) {
                        expect_bad_listing(d, "INBOX", p);
                        continue;
                }
                struct got g = {0};
                ck_assert_int_eq(disk_listing_load(d, "INBOX", NULL, collect, &g), 0);
                expect_msgs(&g, three, 3);
                got_free(&g);
        }
        free(orig);
        disk_close(d);
}
END_TEST

START_TEST(test_listing_flipped)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        char p[256];
        lst_file(p, sizeof(p), "INBOX");
        size_t len;
        unsigned char *orig = read_file(p, &len);
        const unsigned char masks[] = {0x01, 0x80, 0xff};
        for (size_t i = 0; i < len; i++) {
                for (size_t k = 0; k < 3; k++) {
                        orig[i] ^= masks[k];
                        write_file(p, orig, len);
                        orig[i] ^= masks[k];
                        expect_bad_listing(d, "INBOX", p);
                }
        }
        /* Extra bytes at the end are damage too. */
        unsigned char *longer = malloc(len + 1);
        memcpy(longer, orig, len);
        longer[len] = 0;
        write_file(p, longer, len + 1);
        expect_bad_listing(d, "INBOX", p);
        free(longer);
        free(orig);
        disk_close(d);
}
END_TEST

/* Recomputes the checksum after a change: exercises the structural checks behind it, as if the
 * damage had been done by a buggy writer rather than by the disk. */
static void reseal(unsigned char *b, size_t len)
{
        uint64_t h = disk_hash64(b, len - 8, 0);
        for (int i = 0; i < 8; i++)
                b[len - 8 + i] = (unsigned char)(h >> (8 * i));
}

static void put32le(unsigned char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(test_listing_resealed_garbage)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        char p[256];
        lst_file(p, sizeof(p), "INBOX");
        size_t len;
        unsigned char *orig = read_file(p, &len);
        unsigned char *b = malloc(len + 64);
        const size_t r0 = 40 + 5 + 1; /* first record */
        /* Targeted: each field that a checksum would not protect against its own writer. */
        for (int c = 0; c < 13; c++) {
                memcpy(b, orig, len);
                size_t l = len;
                switch (c) {
                case 0:
                        put32le(b + 16, 4);
                        break; /* count + 1 */
                case 1:
                        put32le(b + 16, 0xffffffffu);
                        break; /* absurd count */
                case 2:
                        put32le(b + 16, 2);
                        break; /* count - 1: bytes left */
                case 3:
                        b[r0 + 4] = 0xff;
                        b[r0 + 5] = 0xff;
                        break; /* flags length past end */
                case 4:
                        b[45] = 'x';
                        break; /* name not terminated */
                case 5:
                        b[r0 + 24] = 0;
                        break; /* NUL inside flags */
                case 6:
                        memset(b + r0, 0, 4);
                        break; /* uid 0 */
                case 7:
                        b[r0 + 15] = 0x80;
                        break; /* size > INT64_MAX */
                case 8:
                        put32le(b + 12, 6);
                        break; /* name length + 1 */
                case 9:
                        put32le(b + 12, 0xffffffffu);
                        break; /* absurd name length */
                case 10:
                        put32le(b + 28, 1);
                        break; /* reserved */
                case 11:
                        put32le(b + 8, 2);
                        break; /* version */
                case 12:       /* junk before the trailer */
                        memmove(b + len - 8 + 3, b + len - 8, 8);
                        memset(b + len - 8, 'j', 3);
                        l = len + 3;
                        break;
                }
                reseal(b, l);
                write_file(p, b, l);
                expect_bad_listing(d, "INBOX", p);
        }
        /* Random: whatever the bytes, a sane load or -EBADMSG, never a crash (ASan watches). */
        unsigned seed = 12345;
        for (int iter = 0; iter < 3000; iter++) {
                memcpy(b, orig, len);
                size_t l = len - (size_t)(rand_r(&seed) % 3 == 0 ? rand_r(&seed) % 40 : 0);
                int nflip = 1 + rand_r(&seed) % 4;
                for (int k = 0; k < nflip; k++)
                        b[(size_t)rand_r(&seed) % (l - 8)] = (unsigned char)rand_r(&seed);
                reseal(b, l);
                write_file(p, b, l);
                struct got g = {0};
                int rc = disk_listing_load(d, "INBOX", NULL, collect, &g);
                ck_assert_msg(rc == 0 || rc == -EBADMSG || rc == -ENOENT, "rc %d", rc);
                if (rc)
                        ck_assert_uint_eq(g.n, 0);
                for (size_t i = 0; i < g.n; i++) {
                        ck_assert_uint_ne(g.m[i].uid, 0);
                        ck_assert_uint_le(g.m[i].size, INT64_MAX);
                        ck_assert_uint_lt(strlen(g.m[i].flags) + strlen(g.m[i].name), l);
                }
                got_free(&g);
        }
        free(b);
        free(orig);
        disk_close(d);
}
END_TEST

static void expect_bad_block(struct disk *d, const char *path, size_t n)
{
        static unsigned char out[4096];
        memset(out, 0xAA, sizeof(out));
        ck_assert_int_eq(disk_block_get(d, "INBOX", 3, 4, 5, out, sizeof(out)), -EBADMSG);
        ck_assert(!exists(path));
        ck_assert_uint_eq(disk_block_count(d), 0);
        ck_assert_uint_eq(disk_bytes(d), 0);
        /* No byte of the file is left in the buffer. */
        for (size_t i = 0; i < n; i++)
                ck_assert(out[i] == 0xAA || out[i] == 0);
}

START_TEST(test_block_truncated)
{
        unsigned char in[200], out[4096];
        fill(in, sizeof(in), 3);
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 4, 5, in, sizeof(in)), 0);
        char p[256];
        blk_file(p, sizeof(p), "INBOX", 3, 4, 5);
        size_t len;
        unsigned char *orig = read_file(p, &len);
        ck_assert_uint_eq(len, 48 + 5 + 200);
        for (size_t t = 0; t < len; t++) {
                /* Through put first, so that the index holds it and must let go of it. */
                ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 4, 5, in, sizeof(in)), 0);
                write_file(p, orig, t);
                expect_bad_block(d, p, sizeof(in));
        }
        write_file(p, orig, len);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 3, 4, 5, out, sizeof(out)), 200);
        ck_assert(memcmp(in, out, 200) == 0);
        free(orig);
        disk_close(d);
}
END_TEST

START_TEST(test_block_flipped)
{
        unsigned char in[200];
        fill(in, sizeof(in), 5);
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 4, 5, in, sizeof(in)), 0);
        char p[256];
        blk_file(p, sizeof(p), "INBOX", 3, 4, 5);
        size_t len;
        unsigned char *orig = read_file(p, &len);
        const unsigned char masks[] = {0x01, 0x80, 0xff};
        for (size_t i = 0; i < len; i++) {
                for (size_t k = 0; k < 3; k++) {
                        ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 4, 5, in, sizeof(in)), 0);
                        orig[i] ^= masks[k];
                        write_file(p, orig, len);
                        orig[i] ^= masks[k];
                        expect_bad_block(d, p, sizeof(in));
                }
        }
        free(orig);
        disk_close(d);
}
END_TEST

START_TEST(test_block_moved)
{
        /* A sound block file under another key's name is not served as that key. */
        unsigned char in[100], out[100];
        fill(in, sizeof(in), 1);
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 4, 6, in, sizeof(in)), 0);
        char from[256], to[256];
        blk_file(from, sizeof(from), "INBOX", 3, 4, 6);
        blk_file(to, sizeof(to), "INBOX", 3, 4, 5);
        ck_assert_int_eq(rename(from, to), 0);
        memset(out, 0xAA, sizeof(out));
        ck_assert_int_eq(disk_block_get(d, "INBOX", 3, 4, 5, out, sizeof(out)), -EBADMSG);
        ck_assert(!exists(to));
        for (size_t i = 0; i < sizeof(out); i++)
                ck_assert(out[i] == 0xAA || out[i] == 0);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 3, 4, 6, out, sizeof(out)), -ENOENT);
        ck_assert_uint_eq(disk_block_count(d), 0);
        ck_assert_uint_eq(disk_bytes(d), 0);
        disk_close(d);
}
END_TEST

START_TEST(test_temp_files_removed)
{
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "INBOX", &meta3, three, 3), 0);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 1, 1, 0, "abc", 3), 0);
        disk_close(d);
        /* What a kill -9 in the middle of writes leaves. */
        char lst[256], t1[300], t2[300], junk[300], blk[256], empty[256];
        lst_file(lst, sizeof(lst), "INBOX");
        snprintf(t1, sizeof(t1), "%s.tmp.7", lst);
        blk_file(blk, sizeof(blk), "INBOX", 1, 1, 1);
        snprintf(t2, sizeof(t2), "%s.tmp.3", blk);
        blk_file(junk, sizeof(junk), "INBOX", 1, 1, 0);
        strcat(junk, "~");
        snprintf(empty, sizeof(empty), "%s/blocks/00000000000000ff", cdir);
        write_file(t1, "half a listing", 14);
        write_file(t2, "half a block", 12);
        write_file(junk, "junk", 4);
        ck_assert_int_eq(mkdir(empty, 0700), 0);
        d = open_ok(1 << 20);
        ck_assert(!exists(t1));
        ck_assert(!exists(t2));
        ck_assert(!exists(junk));
        ck_assert(!exists(empty));
        /* What was complete is still there. */
        struct got g = {0};
        ck_assert_int_eq(disk_listing_load(d, "INBOX", NULL, collect, &g), 0);
        expect_msgs(&g, three, 3);
        got_free(&g);
        char out[8];
        ck_assert_int_eq(disk_block_get(d, "INBOX", 1, 1, 0, out, sizeof(out)), 3);
        ck_assert_uint_eq(disk_block_count(d), 1);
        disk_close(d);
}
END_TEST

START_TEST(test_uidvalidity_drop)
{
        char out[16];
        struct disk *d = open_ok(1 << 20);
        for (uint32_t uid = 1; uid <= 3; uid++) {
                ck_assert_int_eq(disk_block_put(d, "INBOX", 1, uid, 0, "old", 3), 0);
                ck_assert_int_eq(disk_block_put(d, "INBOX", 2, uid, 0, "new", 3), 0);
                ck_assert_int_eq(disk_block_put(d, "Other", 1, uid, 0, "oth", 3), 0);
        }
        const uint64_t inbox = 48 + 5 + 3, other = 48 + 5 + 3;
        ck_assert_uint_eq(disk_bytes(d), 6 * inbox + 3 * other);
        ck_assert_int_eq(disk_blocks_drop(d, "INBOX", 2), 0);
        ck_assert_uint_eq(disk_bytes(d), 3 * inbox + 3 * other);
        ck_assert_uint_eq(disk_block_count(d), 6);
        for (uint32_t uid = 1; uid <= 3; uid++) {
                ck_assert_int_eq(disk_block_get(d, "INBOX", 1, uid, 0, out, sizeof(out)), -ENOENT);
                ck_assert_int_eq(disk_block_get(d, "INBOX", 2, uid, 0, out, sizeof(out)), 3);
                ck_assert(memcmp(out, "new", 3) == 0);
                ck_assert_int_eq(disk_block_get(d, "Other", 1, uid, 0, out, sizeof(out)), 3);
        }
        ck_assert_int_eq(disk_blocks_drop(d, "INBOX", 0), 0);
        ck_assert_uint_eq(disk_bytes(d), 3 * other);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 2, 1, 0, out, sizeof(out)), -ENOENT);
        char p[256];
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64, cdir, disk_name_hash("INBOX"));
        ck_assert(!exists(p));
        /* Dropping what isn't there is fine; the mailbox can be cached again. */
        ck_assert_int_eq(disk_blocks_drop(d, "Nothing", 0), 0);
        ck_assert_int_eq(disk_block_put(d, "INBOX", 3, 1, 0, "again", 5), 0);
        ck_assert_int_eq(disk_block_get(d, "INBOX", 3, 1, 0, out, sizeof(out)), 5);
        /* The index agrees with the disk after a remount. */
        uint64_t bytes = disk_bytes(d);
        disk_close(d);
        d = open_ok(1 << 20);
        ck_assert_uint_eq(disk_bytes(d), bytes);
        ck_assert_uint_eq(disk_block_count(d), 4);
        disk_close(d);
}
END_TEST

START_TEST(test_listing_collision)
{
        /* Two mailboxes whose names hash alike share a file name: stand-in by copying A's file
         * to B's name. B must read as not cached, never as A's messages. */
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_listing_save(d, "A", &meta3, three, 3), 0);
        struct disk_mbox_meta mb = {.uidvalidity = 5};
        ck_assert_int_eq(disk_listing_save(d, "B", &mb, three + 1, 1), 0);
        char pa[256], pb[256];
        lst_file(pa, sizeof(pa), "A");
        lst_file(pb, sizeof(pb), "B");
        size_t len;
        unsigned char *a = read_file(pa, &len);
        write_file(pb, a, len);
        struct got g = {0};
        struct disk_mbox_meta m = {.uidvalidity = 777};
        ck_assert_int_eq(disk_listing_load(d, "B", &m, collect, &g), -ENOENT);
        ck_assert_uint_eq(g.n, 0);
        ck_assert_uint_eq(m.uidvalidity, 777);
        /* Not B's to drop either: it is A's, sound. */
        ck_assert_int_eq(disk_listing_drop(d, "B"), -ENOENT);
        ck_assert(exists(pb));
        ck_assert_int_eq(disk_listing_load(d, "A", &m, collect, &g), 0);
        expect_msgs(&g, three, 3);
        got_free(&g);
        /* B saving again takes its name back. */
        ck_assert_int_eq(disk_listing_save(d, "B", &mb, three + 1, 1), 0);
        ck_assert_int_eq(disk_listing_load(d, "B", &m, collect, &g), 0);
        expect_msgs(&g, three + 1, 1);
        got_free(&g);
        free(a);
        disk_close(d);
}
END_TEST

START_TEST(test_block_collision)
{
        unsigned char out[64];
        struct disk *d = open_ok(1 << 20);
        ck_assert_int_eq(disk_block_put(d, "A", 1, 1, 0, "secret of A", 11), 0);
        ck_assert_int_eq(disk_block_put(d, "B", 1, 1, 1, "B's own", 7), 0);
        char pa[256], pb[256];
        blk_file(pa, sizeof(pa), "A", 1, 1, 0);
        blk_file(pb, sizeof(pb), "B", 1, 1, 0);
        size_t len;
        unsigned char *a = read_file(pa, &len);
        write_file(pb, a, len);
        memset(out, 0xAA, sizeof(out));
        ck_assert_int_eq(disk_block_get(d, "B", 1, 1, 0, out, sizeof(out)), -ENOENT);
        for (size_t i = 0; i < sizeof(out); i++)
                ck_assert(out[i] == 0xAA || out[i] == 0);
        ck_assert_int_eq(disk_block_get(d, "A", 1, 1, 0, out, sizeof(out)), 11);
        ck_assert(memcmp(out, "secret of A", 11) == 0);
        free(a);
        disk_close(d);
}
END_TEST

/* ---- threads ---- */

struct worker {
        struct disk *d;
        uint32_t id;
        int errors;
};

static void *work(void *arg)
{
        struct worker *w = arg;
        unsigned seed = w->id;
        unsigned char in[2000], out[2000];
        for (int i = 0; i < 400; i++) {
                uint32_t uid = 1 + (uint32_t)(rand_r(&seed) % 4);
                uint64_t index = (uint64_t)(rand_r(&seed) % 40);
                /* Content depends on the key only, as IMAP guarantees. */
                fill(in, sizeof(in), (unsigned)(uid * 100 + index));
                if (rand_r(&seed) % 2) {
                        if (disk_block_put(w->d, "INBOX", 1, uid, index, in, sizeof(in)) != 0)
                                w->errors++;
                } else {
                        ssize_t r = disk_block_get(w->d, "INBOX", 1, uid, index, out, sizeof(out));
                        if (r == (ssize_t)sizeof(out) ? memcmp(in, out, sizeof(in)) != 0
                                                      : r != -ENOENT)
                                w->errors++;
                }
        }
        return NULL;
}

static uint64_t du_blocks(uint64_t *count)
{
        uint64_t sum = 0;
        *count = 0;
        char p[256];
        snprintf(p, sizeof(p), "%s/blocks/%016" PRIx64, cdir, disk_name_hash("INBOX"));
        DIR *dir = opendir(p);
        ck_assert_ptr_nonnull(dir);
        struct dirent *e;
        while ((e = readdir(dir))) {
                if (e->d_name[0] == '.')
                        continue;
                ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "temp left: %s", e->d_name);
                struct stat st;
                ck_assert_int_eq(fstatat(dirfd(dir), e->d_name, &st, 0), 0);
                sum += (uint64_t)st.st_size;
                (*count)++;
        }
        closedir(dir);
        return sum;
}

START_TEST(test_threads)
{
        const uint64_t file = 48 + 5 + 2000, max = 30 * file;
        struct disk *d = open_ok(max);
        pthread_t t[6];
        struct worker w[6];
        for (uint32_t i = 0; i < 6; i++) {
                w[i] = (struct worker){.d = d, .id = i + 1};
                ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
        }
        for (int i = 0; i < 6; i++) {
                pthread_join(t[i], NULL);
                ck_assert_int_eq(w[i].errors, 0);
        }
        ck_assert_uint_le(disk_bytes(d), max);
        /* The index describes exactly the files on disk. */
        uint64_t n;
        ck_assert_uint_eq(du_blocks(&n), disk_bytes(d));
        ck_assert_uint_eq(n, disk_block_count(d));
        disk_close(d);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("disk");
        TCase *tc = tcase_create("disk");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_hash_vectors);
        tcase_add_test(tc, test_listing_round_trip);
        tcase_add_test(tc, test_listing_empty);
        tcase_add_test(tc, test_listing_binary_names);
        tcase_add_test(tc, test_listing_10000);
        tcase_add_test(tc, test_listing_replace_and_drop);
        tcase_add_test(tc, test_listing_rejects_bad_input);
        tcase_add_test(tc, test_block_round_trip);
        tcase_add_test(tc, test_lru_eviction);
        tcase_add_test(tc, test_lru_survives_remount);
        tcase_add_test(tc, test_block_over_budget);
        tcase_add_test(tc, test_lock);
        tcase_add_test(tc, test_permissions);
        tcase_add_test(tc, test_refuses_open_dir);
        tcase_add_test(tc, test_listing_truncated);
        tcase_add_test(tc, test_listing_flipped);
        tcase_add_test(tc, test_listing_resealed_garbage);
        tcase_add_test(tc, test_block_truncated);
        tcase_add_test(tc, test_block_flipped);
        tcase_add_test(tc, test_block_moved);
        tcase_add_test(tc, test_temp_files_removed);
        tcase_add_test(tc, test_uidvalidity_drop);
        tcase_add_test(tc, test_listing_collision);
        tcase_add_test(tc, test_block_collision);
        tcase_add_test(tc, test_threads);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(suite());
}
