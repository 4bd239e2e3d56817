/* Files being written: the bytes handed to APPEND, with bare LF turned into
 * CRLF, from memory and from the temp file, across chunk boundaries; and a
 * file of more than 2 GiB (sparse, so it costs no disk), which the kernel
 * can't read with one pread (at most 2 GiB - 4 KiB per call). */
#include <check.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/staging.h"
#include "tests/unit/unit_main.h"

static char tmpdir[64];

static void setup(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/imapfs-test-stagingXXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
        char sub[128];
        snprintf(sub, sizeof(sub), "%s/stage", tmpdir);
        rmdir(sub);
        rmdir(tmpdir);
}

static struct staging *new_staging(size_t mem_max)
{
        char sub[128];
        snprintf(sub, sizeof(sub), "%s/stage", tmpdir);
        struct staging *st = staging_new(mem_max, sub);
        ck_assert_ptr_nonnull(st);
        ck_assert_int_eq(staging_create(st, 7, 1, "new.eml"), 0);
        return st;
}

static void take(struct staging *st, char **data, size_t *len)
{
        char *flags = NULL;
        time_t date = 0;
        ck_assert_int_eq(staging_take(st, 7, data, len, &flags, &date), 0);
        free(flags);
}

/* One staged file per id and per name: two opens for writing of the same
 * message (its inode is the staged id) that race must not both create one,
 * or the second entry outlives every close and shadows the message. The
 * check and the insertion happen under one lock; an id in use is EEXIST
 * whatever the name. */
struct create_race {
        struct staging *st;
        int ok;
};

static void *create_race_run(void *arg)
{
        struct create_race *c = arg;
        c->ok = staging_create(c->st, 9, 1, "msg.eml") == 0;
        return NULL;
}

START_TEST(test_create_once)
{
        struct staging *st = new_staging(1 << 20);
        ck_assert_int_eq(staging_create(st, 7, 1, "other.eml"), -EEXIST);
        ck_assert_int_eq(staging_create(st, 8, 1, "new.eml"), -EEXIST);
        for (int round = 0; round < 200; round++) {
                enum { N = 4 };
                struct create_race c[N];
                pthread_t t[N];
                for (int i = 0; i < N; i++) {
                        c[i] = (struct create_race){st, 0};
                        pthread_create(&t[i], NULL, create_race_run, &c[i]);
                }
                int made = 0;
                for (int i = 0; i < N; i++) {
                        pthread_join(t[i], NULL);
                        made += c[i].ok;
                }
                ck_assert_int_eq(made, 1);
                uint64_t p;
                char *nm = NULL;
                ck_assert_int_eq(staging_remove(st, 9, &p, &nm), 0);
                free(nm);
                struct staged_info in;
                ck_assert(!staging_get(st, 9, &in));
        }
        staging_free(st);
}
END_TEST

/* A replacement opened without O_TRUNC holds its message unchanged (clean)
 * until a write, a truncation, an mtime or flags: only then does its close
 * replace the message. */
START_TEST(test_clean_until_changed)
{
        struct staging *st = new_staging(1 << 20);
        struct staged_info in;
        ck_assert(staging_get(st, 7, &in));
        ck_assert(!in.clean); /* a new file is never "clean" */
        ck_assert_int_eq(staging_write(st, 7, "Subject: x\r\n", 12, 0), 0);
        for (int how = 0; how < 4; how++) {
                ck_assert_int_eq(staging_mark_clean(st, 7), 0);
                ck_assert(staging_get(st, 7, &in));
                ck_assert(in.clean);
                int r = how == 0   ? staging_write(st, 7, "y", 1, 12)
                        : how == 1 ? staging_truncate(st, 7, 12)
                        : how == 2 ? staging_set_mtime(st, 7, 1000)
                                   : staging_set_flags(st, 7, "\\Seen", 5);
                ck_assert_int_eq(r, 0);
                ck_assert(staging_get(st, 7, &in));
                ck_assert_msg(!in.clean, "still clean after change %d", how);
        }
        ck_assert_int_eq(staging_mark_clean(st, 99), -ENOENT);
        staging_free(st);
}
END_TEST

/* The same bytes give the same CRLF text in memory and from the temp file. */
/* Local (scratch) files and replacements: flags shown, renames between
 * local names replace a staged file at the target, and bytes survive a
 * rename, in memory and in the temp file. */
START_TEST(test_local_rename_and_replaces)
{
        for (int spill = 0; spill < 2; spill++) {
                struct staging *st = new_staging(spill ? 4 : 1 << 20);
                struct staged_info in;
                ck_assert(staging_get(st, 7, &in));
                ck_assert(!in.local);
                ck_assert_uint_eq(in.replaces, 0);
                ck_assert_int_eq(staging_set_local(st, 7, true), 0);
                ck_assert_int_eq(staging_write(st, 7, "swap data", 9, 0), 0);
                ck_assert_int_eq(staging_create(st, 8, 1, ".b"), 0);
                ck_assert_int_eq(staging_rename(st, 7, 1, ".b"), 0); /* replaces 8 */
                ck_assert(!staging_get(st, 8, &in));
                ck_assert(!staging_lookup(st, 1, "new.eml", &in));
                ck_assert(staging_lookup(st, 1, ".b", &in));
                ck_assert_uint_eq(in.id, 7);
                ck_assert(in.local);
                ck_assert_uint_eq(in.size, 9);
                char buf[16] = {0};
                ck_assert_int_eq(staging_read(st, 7, buf, sizeof(buf), 0), 9);
                ck_assert_str_eq(buf, "swap data");
                ck_assert_int_eq(staging_rename(st, 7, 2, ".c"), 0); /* another folder */
                ck_assert(staging_lookup(st, 2, ".c", &in));
                ck_assert_int_eq(staging_set_replaces(st, 7, 42), 0);
                ck_assert(staging_get(st, 7, &in));
                ck_assert_uint_eq(in.replaces, 42);
                ck_assert_int_eq(staging_rename(st, 99, 1, "x"), -ENOENT);
                ck_assert_int_eq(staging_set_local(st, 99, true), -ENOENT);
                staging_free(st);
        }
}
END_TEST

START_TEST(test_crlf_memory_and_file)
{
        const char in[] = "Subject: a\nX: b\r\n\r\nline\n\nend";
        const char want[] = "Subject: a\r\nX: b\r\n\r\nline\r\n\r\nend";
        for (int spill = 0; spill < 2; spill++) {
                struct staging *st = new_staging(spill ? 4 : 1 << 20);
                for (size_t i = 0; i < sizeof(in) - 1; i++) /* byte by byte */
                        ck_assert_int_eq(staging_write(st, 7, in + i, 1, (off_t)i), 0);
                char *data;
                size_t len;
                take(st, &data, &len);
                ck_assert_uint_eq(len, sizeof(want) - 1);
                ck_assert_mem_eq(data, want, len);
                free(data);
                staging_free(st);
        }
}
END_TEST

/* A CR at the end of one 1 MiB chunk and its LF at the start of the next
 * are one line end, not a bare LF. */
START_TEST(test_crlf_across_chunks)
{
        struct staging *st = new_staging(16);
        size_t n = (1u << 20) + 10;
        char *in = calloc(1, n);
        memset(in, 'a', n);
        in[(1u << 20) - 1] = '\r';
        in[1u << 20] = '\n';
        in[n - 1] = '\n';
        ck_assert_int_eq(staging_write(st, 7, in, n, 0), 0);
        char *data;
        size_t len;
        take(st, &data, &len);
        ck_assert_uint_eq(len, n + 1);
        ck_assert_mem_eq(data + (1u << 20) - 1, "\r\na", 3);
        ck_assert_mem_eq(data + len - 2, "\r\n", 2);
        free(data);
        free(in);
        staging_free(st);
}
END_TEST

/* 2 GiB and a few bytes: before, the single pread came back short and
 * close failed with EIO. */
START_TEST(test_file_over_2gib)
{
        struct staging *st = new_staging(4096);
        const char head[] = "Subject: big\r\n\r\n";
        const char tail[] = "the end\n";
        uint64_t off = (2ull << 30) + 5;
        ck_assert_int_eq(staging_write(st, 7, head, sizeof(head) - 1, 0), 0);
        ck_assert_int_eq(staging_write(st, 7, tail, sizeof(tail) - 1, (off_t)off), 0);
        char *data = NULL;
        size_t len = 0;
        take(st, &data, &len);
        ck_assert_uint_eq(len, off + sizeof(tail)); /* the bare LF became CRLF */
        ck_assert_mem_eq(data, head, sizeof(head) - 1);
        ck_assert_mem_eq(data + off, "the end\r\n", 9);
        ck_assert_int_eq(data[1u << 30], 0); /* the hole reads as zeros */
        ck_assert_int_eq(data[off - 1], 0);
        free(data);
        staging_free(st);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("staging");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 120);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_crlf_memory_and_file);
        tcase_add_test(tc, test_local_rename_and_replaces);
        tcase_add_test(tc, test_create_once);
        tcase_add_test(tc, test_clean_until_changed);
        tcase_add_test(tc, test_crlf_across_chunks);
        tcase_add_test(tc, test_file_over_2gib);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
