/* The persistent cache of one account on disk (format and layout: see disk.h). */
#include "cache/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LST_MAGIC "IMAPFSLS"
#define BLK_MAGIC "IMAPFSBK"
#define FORMAT_VERSION 1u
#define TRAILER 8u
/* Smallest and largest block files that can be well formed: the scan at open skips others. */
#define BLK_FILE_MIN (DISK_BLOCK_HEADER + TRAILER)
#define BLK_FILE_MAX ((uint64_t)DISK_BLOCK_HEADER + DISK_NAME_MAX + DISK_BLOCK_MAX + TRAILER)
/* Room for "<16 hex>/<u32>-<u32>-<u64>.blk" (63 bytes) and a NUL; a temp name adds
 * ".tmp.<u64>". */
#define PATH_LEN 96
#define TMP_LEN (PATH_LEN + 32)
#define TMP_MARK ".tmp."

/* One stored block: the index entry. Kept small on purpose (its size is stated in disk.h). */
struct blk {
        struct blk *hnext;         /* next in the hash bucket */
        struct blk *newer, *older; /* LRU list */
        uint64_t mhash, index;
        uint32_t uidvalidity, uid;
        uint32_t size; /* bytes of the file, header included */
};

struct disk {
        pthread_mutex_t mu;
        int dirfd, lockfd, lstfd, blkfd;
        uint64_t max_bytes;
        /* Under mu: */
        uint64_t bytes;
        size_t count, nbuckets;
        struct blk **buckets;
        struct blk *newest, *oldest;
        /* Unique temp names within this process; no other process writes here while we hold
         * the lock. */
        atomic_uint_fast64_t tmpseq;
};

/* ---- little-endian fields: the format must not depend on the host ---- */

static void put16(unsigned char *p, uint16_t v)
{
        p[0] = (unsigned char)v;
        p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
        return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
        return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
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

/* xxHash rather than FNV-1a: it checksums a 1 MiB block at memory speed, where FNV's
 * byte-at-a-time multiply would cost a millisecond per cached read. */
uint64_t disk_hash64(const void *data, size_t n, uint64_t seed)
{
        const unsigned char *p = data;
        size_t left = n;
        uint64_t h;

        if (left >= 32) {
                uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
                do {
                        v1 = xx_round(v1, get64(p));
                        v2 = xx_round(v2, get64(p + 8));
                        v3 = xx_round(v3, get64(p + 16));
                        v4 = xx_round(v4, get64(p + 24));
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
                h ^= xx_round(0, get64(p));
                h = rotl64(h, 27) * P1 + P4;
                p += 8;
                left -= 8;
        }
        if (left >= 4) {
                h ^= (uint64_t)get32(p) * P1;
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

uint64_t disk_name_hash(const char *mailbox)
{
        return disk_hash64(mailbox, strlen(mailbox), 0);
}

/* ---- small helpers ---- */

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

static int write_all(int fd, const void *p, size_t n)
{
        const char *c = p;
        while (n) {
                ssize_t w = write(fd, c, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (w == 0)
                        return -EIO;
                c += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Reads up to n bytes at off; fewer only at end of file. */
static ssize_t pread_full(int fd, void *p, size_t n, off_t off)
{
        char *c = p;
        size_t got = 0;
        while (got < n) {
                ssize_t r = pread(fd, c + got, n - got, off + (off_t)got);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return (ssize_t)got;
}

static void hex_name(char out[17], uint64_t h)
{
        snprintf(out, 17, "%016" PRIx64, h);
}

static void lst_path(char out[PATH_LEN], uint64_t mh)
{
        snprintf(out, PATH_LEN, "%016" PRIx64 ".lst", mh);
}

static void blk_path(char out[PATH_LEN], uint64_t mh, uint32_t uv, uint32_t uid, uint64_t index)
{
        snprintf(out, PATH_LEN, "%016" PRIx64 "/%" PRIu32 "-%" PRIu32 "-%" PRIu64 ".blk", mh, uv,
                 uid, index);
}

static void tmp_path(struct disk *d, char out[TMP_LEN], const char *final)
{
        uint64_t n = atomic_fetch_add(&d->tmpseq, 1);
        snprintf(out, TMP_LEN, "%s" TMP_MARK "%" PRIu64, final, n);
}

/* Creates a 0600 file for writing whatever the umask; fails if the name exists. */
static int create_file(int dirfd, const char *path)
{
        int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0600) < 0) {
                int e = errno;
                close(fd);
                unlinkat(dirfd, path, 0);
                return -e;
        }
        return fd;
}

/* Creates a 0700 directory whatever the umask; an existing one is fine. */
static int make_dir_at(int dirfd, const char *path)
{
        if (mkdirat(dirfd, path, 0700) == 0)
                return fchmodat(dirfd, path, 0700, 0) < 0 ? -errno : 0;
        return errno == EEXIST ? 0 : -errno;
}

/* Is path (in dirfd) still the file open as fd? Keeps a damaged-file removal from deleting a
 * good file that another thread renamed into place meanwhile. Call under d->mu, which every
 * rename is done under. */
static bool same_file(int dirfd, const char *path, int fd)
{
        struct stat a, b;
        if (fstat(fd, &a) < 0 || fstatat(dirfd, path, &b, AT_SYMLINK_NOFOLLOW) < 0)
                return false;
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* ---- the block index: a chained hash table plus an LRU list, all under d->mu ---- */

static size_t idx_slot(const struct disk *d, uint64_t mh, uint32_t uv, uint32_t uid, uint64_t index)
{
        uint64_t h = mh ^ (((uint64_t)uv << 32 | uid) * P1) ^ (index * P2);
        h ^= h >> 29;
        h *= P3;
        h ^= h >> 32;
        return (size_t)(h & (d->nbuckets - 1));
}

/* The link that points at the entry for this key, or the NULL link ending its chain. */
static struct blk **idx_find(struct disk *d, uint64_t mh, uint32_t uv, uint32_t uid, uint64_t index)
{
        struct blk **pp = &d->buckets[idx_slot(d, mh, uv, uid, index)];
        while (*pp && !((*pp)->mhash == mh && (*pp)->uidvalidity == uv && (*pp)->uid == uid &&
                        (*pp)->index == index))
                pp = &(*pp)->hnext;
        return pp;
}

static void idx_grow(struct disk *d)
{
        size_t n = d->nbuckets * 2;
        struct blk **nb = calloc(n, sizeof(*nb));
        /* Without memory the chains just get longer; still correct. */
        if (!nb)
                return;
        struct blk **old = d->buckets;
        size_t on = d->nbuckets;
        d->buckets = nb;
        d->nbuckets = n;
        for (size_t i = 0; i < on; i++) {
                struct blk *b = old[i];
                while (b) {
                        struct blk *next = b->hnext;
                        size_t s = idx_slot(d, b->mhash, b->uidvalidity, b->uid, b->index);
                        b->hnext = nb[s];
                        nb[s] = b;
                        b = next;
                }
        }
        free(old);
}

static void lru_unlink(struct disk *d, struct blk *b)
{
        if (b->newer)
                b->newer->older = b->older;
        else
                d->newest = b->older;
        if (b->older)
                b->older->newer = b->newer;
        else
                d->oldest = b->newer;
        b->newer = b->older = NULL;
}

static void lru_push_newest(struct disk *d, struct blk *b)
{
        b->newer = NULL;
        b->older = d->newest;
        if (d->newest)
                d->newest->newer = b;
        else
                d->oldest = b;
        d->newest = b;
}

/* Adds an entry not yet in the index as the most recently used. */
static void idx_add(struct disk *d, struct blk *b)
{
        if (d->count >= d->nbuckets)
                idx_grow(d);
        size_t s = idx_slot(d, b->mhash, b->uidvalidity, b->uid, b->index);
        b->hnext = d->buckets[s];
        d->buckets[s] = b;
        lru_push_newest(d, b);
        d->count++;
        d->bytes += b->size;
}

/* Drops an entry from the index (not its file). */
static void idx_forget(struct disk *d, struct blk *b)
{
        struct blk **pp = &d->buckets[idx_slot(d, b->mhash, b->uidvalidity, b->uid, b->index)];
        while (*pp != b)
                pp = &(*pp)->hnext;
        *pp = b->hnext;
        lru_unlink(d, b);
        d->count--;
        d->bytes -= b->size;
        free(b);
}

static void evict_locked(struct disk *d)
{
        while (d->bytes > d->max_bytes && d->oldest) {
                struct blk *b = d->oldest;
                char path[PATH_LEN];
                blk_path(path, b->mhash, b->uidvalidity, b->uid, b->index);
                /* If the unlink fails the file escapes the budget until the next disk_open
                 * counts it again; keeping the entry would only evict it again and again. */
                unlinkat(d->blkfd, path, 0);
                idx_forget(d, b);
        }
}

/* ---- open and close ---- */

/* mkdir -p with 0700 for what we create (the parents hold nothing, but nobody else needs to
 * traverse them either). */
static int mkdir_parents(const char *path)
{
        size_t n = strlen(path);
        char *p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, path, n + 1);
        int rc = 0;
        for (size_t i = 1; i <= n && !rc; i++) {
                if (i < n && p[i] != '/')
                        continue;
                if (p[i - 1] == '/')
                        continue; /* "a//b" or a trailing slash: no new component */
                p[i] = '\0';
                rc = make_dir_at(AT_FDCWD, p);
                if (i < n)
                        p[i] = '/';
        }
        free(p);
        return rc;
}

static int open_subdir(int dirfd, const char *name)
{
        int rc = make_dir_at(dirfd, name);
        if (rc)
                return rc;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int take_lock(struct disk *d, const char *dir, char *err, size_t errlen)
{
        d->lockfd = openat(d->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (d->lockfd < 0 || fchmod(d->lockfd, 0600) < 0) {
                int rc = -errno;
                set_err(err, errlen, "cannot create %s/lock: %s", dir, strerror(-rc));
                return rc;
        }
        if (flock(d->lockfd, LOCK_EX | LOCK_NB) < 0) {
                int rc = -errno;
                if (rc != -EWOULDBLOCK) {
                        set_err(err, errlen, "cannot lock %s/lock: %s", dir, strerror(-rc));
                        return rc;
                }
                /* The holder wrote its pid: name it, it helps to find the other mount. */
                char pid[24] = "";
                ssize_t r = pread_full(d->lockfd, pid, sizeof(pid) - 1, 0);
                size_t k = 0;
                while (r > 0 && k < (size_t)r && pid[k] >= '0' && pid[k] <= '9')
                        k++;
                pid[k] = '\0';
                set_err(err, errlen,
                        "cache directory %s is in use by another imapfs process%s%s%s (is this "
                        "account mounted twice?)",
                        dir, k ? " (pid " : "", pid, k ? ")" : "");
                return -EBUSY;
        }
        /* The pid is for messages only: a failure to write it changes nothing. */
        char pid[24];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(d->lockfd, 0) == 0) {
                ssize_t w = pwrite(d->lockfd, pid, (size_t)n, 0);
                (void)w;
        }
        return 0;
}

/* Removes the temp files of writes a crash interrupted. We hold the lock, so none is live. */
static void clean_listings(struct disk *d)
{
        int fd = openat(d->lstfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dir = fd < 0 ? NULL : fdopendir(fd);
        if (!dir) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        struct dirent *e;
        while ((e = readdir(dir)))
                if (strstr(e->d_name, TMP_MARK))
                        unlinkat(d->lstfd, e->d_name, 0);
        closedir(dir);
}

/* A decimal number as blk_path() writes it: no sign, no leading zero, no overflow. */
static bool parse_dec(const char **s, uint64_t max, uint64_t *out)
{
        const char *p = *s;
        uint64_t v = 0;
        if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
                return false;
        for (; *p >= '0' && *p <= '9'; p++) {
                unsigned dig = (unsigned)(*p - '0');
                if (v > (max - dig) / 10)
                        return false;
                v = v * 10 + dig;
        }
        *s = p;
        *out = v;
        return true;
}

static bool parse_blk_name(const char *s, uint32_t *uv, uint32_t *uid, uint64_t *index)
{
        uint64_t a, b;
        if (!parse_dec(&s, UINT32_MAX, &a) || *s++ != '-' || !parse_dec(&s, UINT32_MAX, &b) ||
            *s++ != '-' || !parse_dec(&s, UINT64_MAX, index) || strcmp(s, ".blk") != 0)
                return false;
        *uv = (uint32_t)a;
        *uid = (uint32_t)b;
        return true;
}

static bool parse_hex_name(const char *s, uint64_t *out)
{
        uint64_t v = 0;
        for (int i = 0; i < 16; i++) {
                char c = s[i];
                unsigned dig;
                if (c >= '0' && c <= '9')
                        dig = (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        dig = (unsigned)(c - 'a' + 10);
                else
                        return false;
                v = v << 4 | dig;
        }
        if (s[16] != '\0')
                return false;
        *out = v;
        return true;
}

struct scanned {
        struct blk *b;
        struct timespec mtime;
};

static int by_mtime(const void *x, const void *y)
{
        const struct timespec *a = &((const struct scanned *)x)->mtime;
        const struct timespec *b = &((const struct scanned *)y)->mtime;
        if (a->tv_sec != b->tv_sec)
                return a->tv_sec < b->tv_sec ? -1 : 1;
        return (a->tv_nsec > b->tv_nsec) - (a->tv_nsec < b->tv_nsec);
}

/* Scans one mailbox's block directory into *v. Files that can't be blocks (crash temps,
 * junk) are removed: the budget could not see them. Returns the blocks kept, or -ENOMEM. */
static ssize_t scan_mailbox(struct disk *d, const char *hex, uint64_t mh, struct scanned **v,
                            size_t *n, size_t *cap)
{
        int fd = openat(d->blkfd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *dir = fd < 0 ? NULL : fdopendir(fd);
        if (!dir) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        ssize_t kept = 0;
        struct dirent *e;
        while ((e = readdir(dir))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                uint32_t uv, uid;
                uint64_t index;
                if (!S_ISREG(st.st_mode) || !parse_blk_name(e->d_name, &uv, &uid, &index) ||
                    (uint64_t)st.st_size < BLK_FILE_MIN || (uint64_t)st.st_size > BLK_FILE_MAX) {
                        if (!S_ISDIR(st.st_mode))
                                unlinkat(fd, e->d_name, 0);
                        continue;
                }
                if (*n == *cap) {
                        size_t nc = *cap ? *cap * 2 : 256;
                        struct scanned *nv = realloc(*v, nc * sizeof(**v));
                        if (!nv) {
                                closedir(dir);
                                return -ENOMEM;
                        }
                        *v = nv;
                        *cap = nc;
                }
                struct blk *b = calloc(1, sizeof(*b));
                if (!b) {
                        closedir(dir);
                        return -ENOMEM;
                }
                b->mhash = mh;
                b->uidvalidity = uv;
                b->uid = uid;
                b->index = index;
                b->size = (uint32_t)st.st_size;
                (*v)[*n].b = b;
                (*v)[*n].mtime = st.st_mtim;
                (*n)++;
                kept++;
        }
        closedir(dir);
        return kept;
}

/* Builds the index from the files present, ordered by mtime (which disk_block_get refreshes),
 * so that the least recently used survive a remount as such. */
static int scan_blocks(struct disk *d)
{
        int fd = openat(d->blkfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *top = fd < 0 ? NULL : fdopendir(fd);
        if (!top) {
                int rc = -errno;
                if (fd >= 0)
                        close(fd);
                return rc;
        }
        struct scanned *v = NULL;
        size_t n = 0, cap = 0;
        int rc = 0;
        struct dirent *e;
        while (!rc && (e = readdir(top))) {
                uint64_t mh;
                if (!parse_hex_name(e->d_name, &mh))
                        continue;
                ssize_t kept = scan_mailbox(d, e->d_name, mh, &v, &n, &cap);
                if (kept < 0)
                        rc = (int)kept;
                else if (kept == 0)
                        unlinkat(d->blkfd, e->d_name, AT_REMOVEDIR);
        }
        closedir(top);
        if (rc) {
                for (size_t i = 0; i < n; i++)
                        free(v[i].b);
                free(v);
                return rc;
        }
        if (n)
                qsort(v, n, sizeof(*v), by_mtime);
        for (size_t i = 0; i < n; i++)
                idx_add(d, v[i].b);
        free(v);
        return 0;
}

int disk_open(const char *dir, uint64_t max_bytes, struct disk **out, char *err, size_t errlen)
{
        if (!dir || !*dir || !out) {
                set_err(err, errlen, "no cache directory given");
                return -EINVAL;
        }
        int rc = mkdir_parents(dir);
        if (rc) {
                set_err(err, errlen, "cannot create cache directory %s: %s", dir, strerror(-rc));
                return rc;
        }
        struct disk *d = calloc(1, sizeof(*d));
        if (!d) {
                set_err(err, errlen, "out of memory");
                return -ENOMEM;
        }
        pthread_mutex_init(&d->mu, NULL);
        d->dirfd = d->lockfd = d->lstfd = d->blkfd = -1;
        d->max_bytes = max_bytes;
        atomic_init(&d->tmpseq, 0);
        d->nbuckets = 64;
        d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
        if (!d->buckets) {
                set_err(err, errlen, "out of memory");
                rc = -ENOMEM;
                goto fail;
        }

        /* O_NOFOLLOW: a symlink planted in place of the directory could point anywhere. */
        d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (d->dirfd < 0 || fstat(d->dirfd, &st) < 0) {
                rc = -errno;
                set_err(err, errlen, "cannot open cache directory %s: %s", dir, strerror(-rc));
                goto fail;
        }
        /* Cached mail is private: refuse a directory others could read or plant files in. */
        if (st.st_uid != geteuid()) {
                rc = -EACCES;
                set_err(err, errlen, "cache directory %s belongs to uid %ld, not to us (uid %ld)",
                        dir, (long)st.st_uid, (long)geteuid());
                goto fail;
        }
        if (st.st_mode & 077) {
                rc = -EACCES;
                set_err(err, errlen,
                        "cache directory %s has mode %04o: other users could read cached mail "
                        "(chmod 700 it)",
                        dir, (unsigned)(st.st_mode & 07777));
                goto fail;
        }
        rc = take_lock(d, dir, err, errlen);
        if (rc)
                goto fail;
        d->lstfd = rc = open_subdir(d->dirfd, "listings");
        if (rc >= 0)
                d->blkfd = rc = open_subdir(d->dirfd, "blocks");
        if (rc < 0) {
                set_err(err, errlen, "cannot create the cache's subdirectories in %s: %s", dir,
                        strerror(-rc));
                goto fail;
        }
        /* Makes the subdirectories' entries durable (a no-op when nothing changed), so that a
         * listing's own fsyncs are enough later. */
        fsync(d->dirfd);
        clean_listings(d);
        rc = scan_blocks(d);
        if (rc) {
                set_err(err, errlen, "cannot read the cache in %s: %s", dir, strerror(-rc));
                goto fail;
        }
        /* max_bytes may be smaller than at the last mount. */
        pthread_mutex_lock(&d->mu);
        evict_locked(d);
        pthread_mutex_unlock(&d->mu);
        *out = d;
        return 0;
fail:
        disk_close(d);
        return rc;
}

void disk_close(struct disk *d)
{
        if (!d)
                return;
        struct blk *b = d->newest;
        while (b) {
                struct blk *next = b->older;
                free(b);
                b = next;
        }
        free(d->buckets);
        if (d->blkfd >= 0)
                close(d->blkfd);
        if (d->lstfd >= 0)
                close(d->lstfd);
        if (d->dirfd >= 0)
                close(d->dirfd);
        /* Last: the lock guards everything above. The file stays, so that two processes always
         * lock the same inode. */
        if (d->lockfd >= 0)
                close(d->lockfd);
        pthread_mutex_destroy(&d->mu);
        free(d);
}

/* ---- listings ---- */

int disk_listing_save(struct disk *d, const char *mailbox, const struct disk_mbox_meta *meta,
                      const struct disk_msg *msgs, size_t n)
{
        if (!d || !mailbox || !meta || (n && !msgs))
                return -EINVAL;
        size_t nl = strlen(mailbox);
        if (nl > DISK_NAME_MAX)
                return -ENAMETOOLONG;
        if ((uint64_t)n > UINT32_MAX)
                return -EFBIG;
        /* Validate everything first: a listing we could not load back is never written. */
        uint64_t total = DISK_LISTING_HEADER + nl + 1 + TRAILER;
        for (size_t i = 0; i < n; i++) {
                const struct disk_msg *m = &msgs[i];
                if (m->uid == 0 || m->size > INT64_MAX)
                        return -EINVAL;
                size_t fl = m->flags ? strlen(m->flags) : 0;
                size_t ml = m->name ? strlen(m->name) : 0;
                if (fl > DISK_STR_MAX || ml > DISK_STR_MAX)
                        return -ENAMETOOLONG;
                total += DISK_LISTING_RECORD + fl + 1 + ml + 1;
                if (total > DISK_LISTING_MAX)
                        return -EFBIG;
        }
        unsigned char *buf = malloc((size_t)total);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, LST_MAGIC, 8);
        put32(buf + 8, FORMAT_VERSION);
        put32(buf + 12, (uint32_t)nl);
        put32(buf + 16, (uint32_t)n);
        put32(buf + 20, meta->uidvalidity);
        put32(buf + 24, meta->uidnext);
        put32(buf + 28, 0);
        put64(buf + 32, meta->highestmodseq);
        memcpy(buf + DISK_LISTING_HEADER, mailbox, nl + 1);
        size_t pos = DISK_LISTING_HEADER + nl + 1;
        for (size_t i = 0; i < n; i++) {
                const struct disk_msg *m = &msgs[i];
                const char *f = m->flags ? m->flags : "", *nm = m->name ? m->name : "";
                size_t fl = strlen(f), ml = strlen(nm);
                unsigned char *r = buf + pos;
                uint64_t date;
                memcpy(&date, &m->internaldate, sizeof(date));
                put32(r, m->uid);
                put16(r + 4, (uint16_t)fl);
                put16(r + 6, (uint16_t)ml);
                put64(r + 8, m->size);
                put64(r + 16, date);
                memcpy(r + DISK_LISTING_RECORD, f, fl + 1);
                memcpy(r + DISK_LISTING_RECORD + fl + 1, nm, ml + 1);
                pos += DISK_LISTING_RECORD + fl + 1 + ml + 1;
        }
        put64(buf + pos, disk_hash64(buf, pos, 0));

        char path[PATH_LEN], tmp[TMP_LEN];
        lst_path(path, disk_name_hash(mailbox));
        tmp_path(d, tmp, path);
        int fd = create_file(d->lstfd, tmp);
        if (fd < 0) {
                free(buf);
                return fd;
        }
        int rc = write_all(fd, buf, (size_t)total);
        /* Data on disk before the rename makes it visible: else a power cut could leave the new
         * name with no bytes behind it. */
        if (!rc && fdatasync(fd) < 0)
                rc = -errno;
        if (close(fd) < 0 && !rc)
                rc = -errno;
        free(buf);
        if (!rc) {
                pthread_mutex_lock(&d->mu);
                if (renameat(d->lstfd, tmp, d->lstfd, path) < 0)
                        rc = -errno;
                pthread_mutex_unlock(&d->mu);
        }
        if (rc) {
                unlinkat(d->lstfd, tmp, 0);
                return rc;
        }
        /* The rename itself is durable only once the directory is. */
        return fsync(d->lstfd) < 0 ? -errno : 0;
}

/* Checks the fixed part, the name and the checksum of a listing read into buf. */
static bool lst_header_ok(const unsigned char *buf, size_t size)
{
        if (size < DISK_LISTING_HEADER + 1 + TRAILER || memcmp(buf, LST_MAGIC, 8) != 0 ||
            get32(buf + 8) != FORMAT_VERSION || get32(buf + 28) != 0)
                return false;
        uint32_t nl = get32(buf + 12);
        if (nl > DISK_NAME_MAX || (uint64_t)DISK_LISTING_HEADER + nl + 1 + TRAILER > size)
                return false;
        const unsigned char *name = buf + DISK_LISTING_HEADER;
        if (name[nl] != 0 || memchr(name, 0, nl))
                return false;
        return get64(buf + size - TRAILER) == disk_hash64(buf, size - TRAILER, 0);
}

/* Walks the records of a listing whose header is known good: with fn NULL only checks them
 * (every length against what is left, so no byte past the buffer is ever read), else hands
 * them to fn. */
static int lst_walk(const unsigned char *buf, size_t size,
                    void (*fn)(void *ctx, const struct disk_msg *m), void *ctx)
{
        uint32_t count = get32(buf + 16);
        size_t pos = DISK_LISTING_HEADER + get32(buf + 12) + 1, end = size - TRAILER;
        /* A record takes at least RECORD + 2 bytes: refuse a count that cannot fit before
         * looping over it. */
        if (count > (end - pos) / (DISK_LISTING_RECORD + 2))
                return -EBADMSG;
        for (uint32_t i = 0; i < count; i++) {
                if (end - pos < DISK_LISTING_RECORD)
                        return -EBADMSG;
                const unsigned char *r = buf + pos;
                size_t fl = get16(r + 4), ml = get16(r + 6);
                size_t need = DISK_LISTING_RECORD + fl + 1 + ml + 1;
                if (end - pos < need)
                        return -EBADMSG;
                const char *f = (const char *)r + DISK_LISTING_RECORD;
                const char *nm = f + fl + 1;
                struct disk_msg m = {.uid = get32(r), .size = get64(r + 8), .flags = f, .name = nm};
                uint64_t date = get64(r + 16);
                memcpy(&m.internaldate, &date, sizeof(date));
                if (m.uid == 0 || m.size > INT64_MAX || f[fl] != 0 || nm[ml] != 0 ||
                    memchr(f, 0, fl) || memchr(nm, 0, ml))
                        return -EBADMSG;
                if (fn)
                        fn(ctx, &m);
                pos += need;
        }
        return pos == end ? 0 : -EBADMSG;
}

int disk_listing_load(struct disk *d, const char *mailbox, struct disk_mbox_meta *meta,
                      void (*fn)(void *ctx, const struct disk_msg *m), void *ctx)
{
        if (!d || !mailbox)
                return -EINVAL;
        size_t nl = strlen(mailbox);
        if (nl > DISK_NAME_MAX)
                return -ENAMETOOLONG;
        char path[PATH_LEN];
        lst_path(path, disk_name_hash(mailbox));
        int fd = openat(d->lstfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        unsigned char *buf = NULL;
        int rc;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                rc = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > DISK_LISTING_MAX)
                goto bad;
        size_t size = (size_t)st.st_size;
        buf = malloc(size ? size : 1);
        if (!buf) {
                rc = -ENOMEM;
                goto out;
        }
        ssize_t r = pread_full(fd, buf, size, 0);
        if (r < 0) {
                rc = (int)r;
                goto out;
        }
        /* Sizes come from what was read, never from fstat alone. */
        if ((size_t)r != size || !lst_header_ok(buf, size) || lst_walk(buf, size, NULL, NULL))
                goto bad;
        /* Another mailbox's listing (a hash collision): not ours to serve, nor damaged. */
        if (get32(buf + 12) != nl || memcmp(buf + DISK_LISTING_HEADER, mailbox, nl) != 0) {
                rc = -ENOENT;
                goto out;
        }
        if (meta) {
                meta->uidvalidity = get32(buf + 20);
                meta->uidnext = get32(buf + 24);
                meta->highestmodseq = get64(buf + 32);
        }
        if (fn)
                lst_walk(buf, size, fn, ctx);
        rc = 0;
        goto out;
bad:
        rc = -EBADMSG;
        pthread_mutex_lock(&d->mu);
        if (same_file(d->lstfd, path, fd))
                unlinkat(d->lstfd, path, 0);
        pthread_mutex_unlock(&d->mu);
out:
        free(buf);
        close(fd);
        return rc;
}

int disk_listing_drop(struct disk *d, const char *mailbox)
{
        if (!d || !mailbox)
                return -EINVAL;
        size_t nl = strlen(mailbox);
        if (nl > DISK_NAME_MAX)
                return -ENAMETOOLONG;
        char path[PATH_LEN];
        lst_path(path, disk_name_hash(mailbox));
        int fd = openat(d->lstfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Leave another mailbox's listing alone; anything else that sits here goes. */
        bool foreign = false;
        unsigned char hdr[DISK_LISTING_HEADER];
        if (pread_full(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
            memcmp(hdr, LST_MAGIC, 8) == 0) {
                if (get32(hdr + 12) != nl) {
                        foreign = true;
                } else if (nl) {
                        char *name = malloc(nl);
                        if (name && pread_full(fd, name, nl, DISK_LISTING_HEADER) == (ssize_t)nl)
                                foreign = memcmp(name, mailbox, nl) != 0;
                        free(name);
                }
        }
        int rc = foreign ? -ENOENT : 0;
        if (!foreign) {
                pthread_mutex_lock(&d->mu);
                if (same_file(d->lstfd, path, fd) && unlinkat(d->lstfd, path, 0) < 0)
                        rc = -errno;
                pthread_mutex_unlock(&d->mu);
                /* A dropped listing must not come back after a power cut. */
                if (!rc && fsync(d->lstfd) < 0)
                        rc = -errno;
        }
        close(fd);
        return rc;
}

/* ---- blocks ---- */

int disk_block_put(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                   uint64_t index, const void *data, size_t len)
{
        if (!d || !mailbox || (!data && len) || len > DISK_BLOCK_MAX)
                return -EINVAL;
        size_t nl = strlen(mailbox);
        if (nl > DISK_NAME_MAX)
                return -ENAMETOOLONG;
        uint64_t fsize = DISK_BLOCK_HEADER + nl + len + TRAILER;
        /* Storing it would only evict everything, then itself. */
        if (fsize > d->max_bytes)
                return -EFBIG;
        size_t hl = DISK_BLOCK_HEADER + nl;
        unsigned char *h = malloc(hl);
        if (!h)
                return -ENOMEM;
        memcpy(h, BLK_MAGIC, 8);
        put32(h + 8, FORMAT_VERSION);
        put32(h + 12, (uint32_t)nl);
        put32(h + 16, uidvalidity);
        put32(h + 20, uid);
        put64(h + 24, index);
        put64(h + 32, len);
        memcpy(h + DISK_BLOCK_HEADER, mailbox, nl);
        unsigned char tr[TRAILER];
        put64(tr, disk_hash64(data, len, disk_hash64(h, hl, 0)));

        uint64_t mh = disk_name_hash(mailbox);
        char path[PATH_LEN], tmp[TMP_LEN], hex[17];
        blk_path(path, mh, uidvalidity, uid, index);
        tmp_path(d, tmp, path);
        hex_name(hex, mh);
        int fd = create_file(d->blkfd, tmp);
        /* The mailbox's directory appears with its first block, and disk_blocks_drop may remove
         * it at any moment: create it and retry. */
        for (int tries = 0; fd == -ENOENT && tries < 3; tries++) {
                int rc = make_dir_at(d->blkfd, hex);
                if (rc) {
                        fd = rc;
                        break;
                }
                fd = create_file(d->blkfd, tmp);
        }
        if (fd < 0) {
                free(h);
                return fd;
        }
        int rc = write_all(fd, h, hl);
        if (!rc)
                rc = write_all(fd, data, len);
        if (!rc)
                rc = write_all(fd, tr, sizeof(tr));
        if (close(fd) < 0 && !rc)
                rc = -errno;
        free(h);
        if (rc) {
                unlinkat(d->blkfd, tmp, 0);
                return rc;
        }

        /* Rename and index change together, so that the index always describes the files. */
        pthread_mutex_lock(&d->mu);
        if (renameat(d->blkfd, tmp, d->blkfd, path) < 0) {
                rc = -errno;
                unlinkat(d->blkfd, tmp, 0);
                pthread_mutex_unlock(&d->mu);
                return rc;
        }
        struct blk *b = *idx_find(d, mh, uidvalidity, uid, index);
        if (b) {
                d->bytes = d->bytes - b->size + fsize;
                b->size = (uint32_t)fsize;
                lru_unlink(d, b);
                lru_push_newest(d, b);
        } else if ((b = calloc(1, sizeof(*b)))) {
                b->mhash = mh;
                b->uidvalidity = uidvalidity;
                b->uid = uid;
                b->index = index;
                b->size = (uint32_t)fsize;
                idx_add(d, b);
        } else {
                /* A file the budget can't count must not stay. */
                unlinkat(d->blkfd, path, 0);
                rc = -ENOMEM;
        }
        evict_locked(d);
        pthread_mutex_unlock(&d->mu);
        return rc;
}

ssize_t disk_block_get(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                       uint64_t index, void *buf, size_t cap)
{
        if (!d || !mailbox || (!buf && cap))
                return -EINVAL;
        size_t nl = strlen(mailbox);
        if (nl > DISK_NAME_MAX)
                return -ENAMETOOLONG;
        uint64_t mh = disk_name_hash(mailbox);
        char path[PATH_LEN];
        blk_path(path, mh, uidvalidity, uid, index);
        int fd = openat(d->blkfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                if (e == ENOENT) {
                        /* Gone behind our back: forget it, unless a put renamed it into place
                         * since our open (checked under the lock every rename takes). */
                        struct stat st;
                        pthread_mutex_lock(&d->mu);
                        struct blk **pp = idx_find(d, mh, uidvalidity, uid, index);
                        if (*pp && fstatat(d->blkfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
                            errno == ENOENT)
                                idx_forget(d, *pp);
                        pthread_mutex_unlock(&d->mu);
                }
                return -e;
        }
        unsigned char *file = NULL; /* the whole file: one read instead of four */
        size_t dirty = 0;           /* bytes of buf we may have written */
        ssize_t rc, r;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                rc = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < BLK_FILE_MIN ||
            (uint64_t)st.st_size >
                (uint64_t)DISK_BLOCK_HEADER + DISK_NAME_MAX + DISK_BLOCK_MAX + TRAILER)
                goto bad;
        file = malloc((size_t)st.st_size);
        if (!file) {
                rc = -ENOMEM;
                goto out;
        }
        r = pread_full(fd, file, (size_t)st.st_size, 0);
        if (r < 0) {
                rc = r;
                goto out;
        }
        if (r != (ssize_t)st.st_size || memcmp(file, BLK_MAGIC, 8) != 0 ||
            get32(file + 8) != FORMAT_VERSION)
                goto bad;
        const unsigned char *hdr = file;
        uint32_t fnl = get32(hdr + 12);
        uint64_t flen = get64(hdr + 32);
        if (fnl > DISK_NAME_MAX || flen > DISK_BLOCK_MAX ||
            (uint64_t)st.st_size != DISK_BLOCK_HEADER + fnl + flen + TRAILER)
                goto bad;
        if (flen > cap) {
                rc = -ENOBUFS;
                goto out;
        }
        const unsigned char *hn = file; /* header and name, as hashed */
        const unsigned char *data = file + DISK_BLOCK_HEADER + fnl;
        const unsigned char *tr = data + flen;
        if (get64(tr) !=
            disk_hash64(data, (size_t)flen, disk_hash64(hn, DISK_BLOCK_HEADER + fnl, 0)))
                goto bad;
        dirty = (size_t)flen;
        memcpy(buf, data, (size_t)flen);
        /* A sound file under a name that is not its key has been moved: damage all the same. */
        if (get32(hdr + 16) != uidvalidity || get32(hdr + 20) != uid || get64(hdr + 24) != index)
                goto bad;
        /* Another mailbox's block (a hash collision): not ours, nor damaged. */
        if (fnl != nl || memcmp(hn + DISK_BLOCK_HEADER, mailbox, nl) != 0) {
                rc = -ENOENT;
                goto out;
        }
        /* The mtime carries the recency across remounts; a failure only costs LRU accuracy. */
        futimens(fd, NULL);
        pthread_mutex_lock(&d->mu);
        struct blk *b = *idx_find(d, mh, uidvalidity, uid, index);
        if (b) {
                lru_unlink(d, b);
                lru_push_newest(d, b);
        }
        pthread_mutex_unlock(&d->mu);
        rc = (ssize_t)flen;
        dirty = 0;
        goto out;
bad:
        rc = -EBADMSG;
        pthread_mutex_lock(&d->mu);
        if (same_file(d->blkfd, path, fd)) {
                unlinkat(d->blkfd, path, 0);
                struct blk **pp = idx_find(d, mh, uidvalidity, uid, index);
                if (*pp)
                        idx_forget(d, *pp);
        }
        pthread_mutex_unlock(&d->mu);
out:
        if (dirty)
                memset(buf, 0, dirty);
        free(file);
        close(fd);
        return rc;
}

int disk_blocks_drop(struct disk *d, const char *mailbox, uint32_t keep_uidvalidity)
{
        if (!d || !mailbox)
                return -EINVAL;
        uint64_t mh = disk_name_hash(mailbox);
        char hex[17];
        hex_name(hex, mh);
        int rc = 0;
        pthread_mutex_lock(&d->mu);
        for (struct blk *b = d->oldest, *next; b; b = next) {
                next = b->newer;
                if (b->mhash == mh && (!keep_uidvalidity || b->uidvalidity != keep_uidvalidity))
                        idx_forget(d, b);
        }
        /* The directory, not the index, says which files exist. */
        int fd = openat(d->blkfd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *dir = fd < 0 ? NULL : fdopendir(fd);
        if (!dir) {
                if (fd >= 0)
                        close(fd);
                else if (errno != ENOENT)
                        rc = -errno;
                pthread_mutex_unlock(&d->mu);
                return rc;
        }
        struct dirent *e;
        while ((e = readdir(dir))) {
                uint32_t uv, uid;
                uint64_t index;
                if (!parse_blk_name(e->d_name, &uv, &uid, &index))
                        continue; /* a put's temp file: that put will rename it or fail */
                if (keep_uidvalidity && uv == keep_uidvalidity)
                        continue;
                if (unlinkat(fd, e->d_name, 0) < 0 && errno != ENOENT && !rc)
                        rc = -errno;
        }
        closedir(dir);
        /* Fails harmlessly (ENOTEMPTY) while a put's temp file is in it. */
        if (!keep_uidvalidity)
                unlinkat(d->blkfd, hex, AT_REMOVEDIR);
        pthread_mutex_unlock(&d->mu);
        return rc;
}

uint64_t disk_bytes(struct disk *d)
{
        pthread_mutex_lock(&d->mu);
        uint64_t n = d->bytes;
        pthread_mutex_unlock(&d->mu);
        return n;
}

bool disk_block_has(struct disk *d, const char *mailbox, uint32_t uidvalidity, uint32_t uid,
                    uint64_t index)
{
        uint64_t mh = disk_name_hash(mailbox);
        pthread_mutex_lock(&d->mu);
        bool has = *idx_find(d, mh, uidvalidity, uid, index) != NULL;
        pthread_mutex_unlock(&d->mu);
        return has;
}

size_t disk_block_count(struct disk *d)
{
        pthread_mutex_lock(&d->mu);
        size_t n = d->count;
        pthread_mutex_unlock(&d->mu);
        return n;
}
