#include "cache/staging.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#include "imap/log.h"

struct staged {
        uint64_t id;
        uint64_t parent;
        char *name;
        char *mem; /* the bytes while they fit in memory */
        size_t cap;
        int fd; /* else an unlinked temp file */
        uint64_t size;
        time_t mtime; /* shown in stat */
        time_t date;  /* INTERNALDATE to append with; 0 = the server's now */
        char *flags;
        int opens;
        bool local;
        uint64_t replaces;
        bool clean; /* holds the message it replaces, unchanged (staging_mark_clean) */
        UT_hash_handle hh;
};

struct staging {
        pthread_mutex_t mu;
        struct staged *by_id;
        size_t mem_max;
        char *tmpdir;
};

struct staging *staging_new(size_t mem_max, const char *tmpdir)
{
        struct staging *st = calloc(1, sizeof(*st));
        if (!st)
                return NULL;
        st->mem_max = mem_max;
        st->tmpdir = strdup(tmpdir);
        if (!st->tmpdir) {
                free(st);
                return NULL;
        }
        pthread_mutex_init(&st->mu, NULL);
        return st;
}

static void staged_free(struct staged *sd)
{
        if (sd->fd >= 0)
                close(sd->fd);
        free(sd->mem);
        free(sd->name);
        free(sd->flags);
        free(sd);
}

void staging_free(struct staging *st)
{
        struct staged *sd, *tmp;
        if (!st)
                return;
        HASH_ITER(hh, st->by_id, sd, tmp)
        {
                HASH_DEL(st->by_id, sd);
                staged_free(sd);
        }
        pthread_mutex_destroy(&st->mu);
        free(st->tmpdir);
        free(st);
}

static struct staged *staging_find(struct staging *st, uint64_t id)
{
        struct staged *sd;
        HASH_FIND(hh, st->by_id, &id, sizeof(id), sd);
        return sd;
}

static void staging_fill(const struct staged *sd, struct staged_info *out)
{
        out->id = sd->id;
        out->parent = sd->parent;
        out->size = sd->size;
        out->mtime = sd->mtime;
        out->local = sd->local;
        out->replaces = sd->replaces;
        out->clean = sd->clean;
}

int staging_create(struct staging *st, uint64_t id, uint64_t parent, const char *name)
{
        struct staged *sd = calloc(1, sizeof(*sd));
        if (!sd || !(sd->name = strdup(name))) {
                free(sd);
                return -ENOMEM;
        }
        sd->id = id;
        sd->parent = parent;
        sd->fd = -1;
        sd->mtime = time(NULL);
        /* Checked and added under one lock: two opens for writing of one
         * message (same id) that race must not both stage it. */
        pthread_mutex_lock(&st->mu);
        bool taken = staging_find(st, id) != NULL;
        for (struct staged *o = st->by_id; o && !taken; o = o->hh.next)
                taken = o->parent == parent && strcmp(o->name, name) == 0;
        if (!taken)
                HASH_ADD(hh, st->by_id, id, sizeof(sd->id), sd);
        pthread_mutex_unlock(&st->mu);
        if (taken) {
                free(sd->name);
                free(sd);
                return -EEXIST;
        }
        return 0;
}

bool staging_get(struct staging *st, uint64_t id, struct staged_info *out)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                staging_fill(sd, out);
        pthread_mutex_unlock(&st->mu);
        return sd != NULL;
}

bool staging_lookup(struct staging *st, uint64_t parent, const char *name, struct staged_info *out)
{
        bool found = false;
        pthread_mutex_lock(&st->mu);
        /* A handful of files are being written at any time: a scan is fine. */
        for (struct staged *sd = st->by_id; sd; sd = sd->hh.next)
                if (sd->parent == parent && strcmp(sd->name, name) == 0) {
                        staging_fill(sd, out);
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&st->mu);
        return found;
}

void staging_list(struct staging *st, uint64_t parent,
                  void (*fn)(void *ctx, const char *name, const struct staged_info *info),
                  void *ctx)
{
        pthread_mutex_lock(&st->mu);
        for (struct staged *sd = st->by_id; sd; sd = sd->hh.next)
                if (sd->parent == parent) {
                        struct staged_info info;
                        staging_fill(sd, &info);
                        fn(ctx, sd->name, &info);
                }
        pthread_mutex_unlock(&st->mu);
}

int staging_set_local(struct staging *st, uint64_t id, bool local)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->local = local;
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}

int staging_set_replaces(struct staging *st, uint64_t id, uint64_t msg_id)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->replaces = msg_id;
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}

int staging_mark_clean(struct staging *st, uint64_t id)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->clean = true;
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}

int staging_rename(struct staging *st, uint64_t id, uint64_t parent, const char *name)
{
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id), *o, *tmp;
        if (sd) {
                HASH_ITER(hh, st->by_id, o, tmp)
                {
                        if (o != sd && o->parent == parent && strcmp(o->name, name) == 0) {
                                HASH_DEL(st->by_id, o);
                                staged_free(o);
                        }
                }
                free(sd->name);
                sd->name = copy;
                sd->parent = parent;
                copy = NULL;
        }
        pthread_mutex_unlock(&st->mu);
        free(copy);
        return sd ? 0 : -ENOENT;
}

int staging_open(struct staging *st, uint64_t id)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->opens++;
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}

int staging_opens(struct staging *st, uint64_t id)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        int n = sd ? sd->opens : 0;
        pthread_mutex_unlock(&st->mu);
        return n;
}

int staging_close(struct staging *st, uint64_t id)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        int left = sd ? --sd->opens : 0;
        pthread_mutex_unlock(&st->mu);
        return left;
}

/* Moves the bytes from memory to a temp file once they outgrow mem_max. */
static int staging_spill(struct staging *st, struct staged *sd)
{
        if (mkdir(st->tmpdir, 0700) < 0 && errno != EEXIST)
                return -errno;
        struct stat dst;
        if (lstat(st->tmpdir, &dst) < 0 || !S_ISDIR(dst.st_mode) || dst.st_uid != geteuid() ||
            (dst.st_mode & 0077)) {
                log_err("temp directory %s must be a 0700 directory of ours", st->tmpdir);
                return -EACCES;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/stage-XXXXXX", st->tmpdir);
        int fd = mkostemp(path, O_CLOEXEC); /* mode 0600 */
        if (fd < 0)
                return -errno;
        unlink(path); /* nobody else needs a name for it */
        if (sd->size && pwrite(fd, sd->mem, sd->size, 0) != (ssize_t)sd->size) {
                int e = errno ? -errno : -EIO;
                close(fd);
                return e;
        }
        free(sd->mem);
        sd->mem = NULL;
        sd->cap = 0;
        sd->fd = fd;
        return 0;
}

int staging_write(struct staging *st, uint64_t id, const char *buf, size_t len, off_t off)
{
        int r = 0;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->clean = false;
        uint64_t end = (uint64_t)off + len;
        if (!sd) {
                r = -ENOENT;
        } else if (off < 0) {
                r = -EINVAL;
        } else {
                if (sd->fd < 0 && end > st->mem_max)
                        r = staging_spill(st, sd);
                if (r == 0 && sd->fd >= 0) {
                        if (pwrite(sd->fd, buf, len, off) != (ssize_t)len)
                                r = errno ? -errno : -EIO;
                } else if (r == 0) {
                        if (end > sd->cap) {
                                size_t ncap = sd->cap ? sd->cap : 4096;
                                while (ncap < end)
                                        ncap *= 2;
                                char *nm = realloc(sd->mem, ncap);
                                if (!nm)
                                        r = -ENOMEM;
                                else {
                                        sd->mem = nm;
                                        sd->cap = ncap;
                                }
                        }
                        if (r == 0) {
                                if ((uint64_t)off > sd->size) /* a hole reads as zeros */
                                        memset(sd->mem + sd->size, 0, (size_t)off - sd->size);
                                memcpy(sd->mem + off, buf, len);
                        }
                }
                if (r == 0 && end > sd->size)
                        sd->size = end;
                if (r == 0)
                        sd->mtime = time(NULL);
        }
        pthread_mutex_unlock(&st->mu);
        return r;
}

ssize_t staging_read(struct staging *st, uint64_t id, char *buf, size_t len, off_t off)
{
        ssize_t r;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (!sd) {
                r = -ENOENT;
        } else if ((uint64_t)off >= sd->size) {
                r = 0;
        } else {
                size_t n =
                    sd->size - (uint64_t)off < len ? (size_t)(sd->size - (uint64_t)off) : len;
                if (sd->fd >= 0) {
                        r = pread(sd->fd, buf, n, off);
                        if (r < 0)
                                r = -errno;
                } else {
                        memcpy(buf, sd->mem + off, n);
                        r = (ssize_t)n;
                }
        }
        pthread_mutex_unlock(&st->mu);
        return r;
}

int staging_truncate(struct staging *st, uint64_t id, off_t size)
{
        int r = 0;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd)
                sd->clean = false;
        if (!sd) {
                r = -ENOENT;
        } else if (size < 0) {
                r = -EINVAL;
        } else if (sd->fd >= 0) {
                if (ftruncate(sd->fd, size) < 0)
                        r = -errno;
        } else if ((uint64_t)size > sd->size) {
                uint64_t cur = sd->size;
                pthread_mutex_unlock(&st->mu);
                /* Growing in memory is a write of zeros. */
                size_t grow = (size_t)((uint64_t)size - cur);
                char *zeros = calloc(1, grow ? grow : 1);
                r = zeros ? staging_write(st, id, zeros, grow, (off_t)cur) : -ENOMEM;
                free(zeros);
                return r;
        }
        if (r == 0 && sd)
                sd->size = (uint64_t)size;
        pthread_mutex_unlock(&st->mu);
        return r;
}

int staging_set_mtime(struct staging *st, uint64_t id, time_t mtime)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd) {
                sd->mtime = sd->date = mtime;
                sd->clean = false;
        }
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}

int staging_set_date(struct staging *st, uint64_t id, time_t date)
{
        return staging_set_mtime(st, id, date);
}

int staging_set_flags(struct staging *st, uint64_t id, const char *flags, size_t len)
{
        char *f = strndup(flags, len);
        if (!f)
                return -ENOMEM;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd) {
                free(sd->flags);
                sd->flags = f;
                f = NULL;
                sd->clean = false;
        }
        pthread_mutex_unlock(&st->mu);
        free(f);
        return sd ? 0 : -ENOENT;
}

int staging_get_flags(struct staging *st, uint64_t id, char *out, size_t cap)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        int n = sd ? snprintf(out, cap, "%s", sd->flags ? sd->flags : "") : -ENOENT;
        pthread_mutex_unlock(&st->mu);
        return n;
}

/* Reads exactly len bytes at off. The kernel gives at most 2 GiB - 4 KiB
 * per read (and may give less at any time), so a file of 2 GiB or more
 * takes several. -EIO if the file ends early. */
static int staging_pread_full(int fd, char *buf, size_t len, off_t off)
{
        while (len > 0) {
                ssize_t n = pread(fd, buf, len, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                buf += n;
                len -= (size_t)n;
                off += n;
        }
        return 0;
}

/* Bare LF → CRLF: IMAP messages have CRLF line ends, and servers either
 * refuse bare LF or convert it (which would change the size we show).
 * *prev is the byte before in (a chunk of a longer run; '\r' at the
 * start); out has room for every LF doubled. Returns the bytes written. */
static size_t staging_crlf_chunk(const char *in, size_t len, char *prev, char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < len;) {
                const char *lf = memchr(in + i, '\n', len - i);
                size_t run = lf ? (size_t)(lf - (in + i)) : len - i;
                memcpy(out + o, in + i, run);
                o += run;
                i += run;
                if (!lf)
                        break;
                char before = i > 0 ? in[i - 1] : *prev;
                if (before != '\r')
                        out[o++] = '\r';
                out[o++] = '\n';
                i++;
        }
        if (len)
                *prev = in[len - 1];
        return o;
}

/* Bare LFs in a chunk that follows the byte *prev. */
static size_t staging_count_bare_lf(const char *in, size_t len, char *prev)
{
        size_t n = 0;
        for (const char *p = in, *end = in + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
                if ((p > in ? p[-1] : *prev) != '\r')
                        n++;
        if (len)
                *prev = in[len - 1];
        return n;
}

/* The temp file's bytes with CRLF line ends, read in chunks: once to count
 * the bare LFs, once to convert into the one buffer that is kept. */
#define STAGING_CHUNK (1u << 20)
static int staging_take_fd(int fd, uint64_t size, char **data, size_t *len)
{
        if (size > SIZE_MAX / 2 - 1)
                return -EFBIG;
        char *chunk = malloc(STAGING_CHUNK);
        if (!chunk)
                return -ENOMEM;
        size_t extra = 0;
        char prev = '\r';
        int r = 0;
        for (uint64_t off = 0; r == 0 && off < size; off += STAGING_CHUNK) {
                size_t n = size - off < STAGING_CHUNK ? (size_t)(size - off) : STAGING_CHUNK;
                r = staging_pread_full(fd, chunk, n, (off_t)off);
                if (r == 0)
                        extra += staging_count_bare_lf(chunk, n, &prev);
        }
        char *out = r == 0 ? malloc((size_t)size + extra + 1) : NULL;
        if (r == 0 && !out)
                r = -ENOMEM;
        size_t o = 0;
        prev = '\r';
        for (uint64_t off = 0; r == 0 && off < size; off += STAGING_CHUNK) {
                size_t n = size - off < STAGING_CHUNK ? (size_t)(size - off) : STAGING_CHUNK;
                r = staging_pread_full(fd, chunk, n, (off_t)off);
                if (r == 0)
                        o += staging_crlf_chunk(chunk, n, &prev, out + o);
        }
        free(chunk);
        if (r == 0 && o != (size_t)size + extra)
                r = -EIO; /* the file changed between the passes */
        if (r < 0) {
                free(out);
                return r;
        }
        *data = out;
        *len = o;
        return 0;
}

int staging_take(struct staging *st, uint64_t id, char **data, size_t *len, char **flags,
                 time_t *date)
{
        int r = 0, fd = -1;
        *data = NULL;
        *flags = NULL;
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (!sd) {
                pthread_mutex_unlock(&st->mu);
                return -ENOENT;
        }
        uint64_t size = sd->size;
        if (sd->fd >= 0) {
                /* A descriptor of our own: reading gigabytes must not hold
                 * the lock that every other staged file needs. */
                fd = fcntl(sd->fd, F_DUPFD_CLOEXEC, 0);
                if (fd < 0)
                        r = -errno;
        } else if (size == 0) {
                *len = 0;
                if (!(*data = malloc(1)))
                        r = -ENOMEM;
        } else {
                char prev = '\r';
                size_t extra = staging_count_bare_lf(sd->mem, (size_t)size, &prev);
                *data = malloc((size_t)size + extra + 1);
                if (!*data)
                        r = -ENOMEM;
                prev = '\r';
                if (*data)
                        *len = staging_crlf_chunk(sd->mem, (size_t)size, &prev, *data);
        }
        if (r == 0 && sd->flags && !(*flags = strdup(sd->flags)))
                r = -ENOMEM;
        *date = sd->date;
        pthread_mutex_unlock(&st->mu);
        if (r == 0 && fd >= 0)
                r = staging_take_fd(fd, size, data, len);
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                free(*data);
                *data = NULL;
                free(*flags);
                *flags = NULL;
        }
        return r;
}

int staging_remove(struct staging *st, uint64_t id, uint64_t *parent, char **name)
{
        pthread_mutex_lock(&st->mu);
        struct staged *sd = staging_find(st, id);
        if (sd) {
                HASH_DEL(st->by_id, sd);
                *parent = sd->parent;
                *name = sd->name;
                sd->name = NULL;
                staged_free(sd);
        }
        pthread_mutex_unlock(&st->mu);
        return sd ? 0 : -ENOENT;
}
