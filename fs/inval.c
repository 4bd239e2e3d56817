#include "fs/inval.h"

#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "imap/log.h"

struct inval_item {
        struct inval_item *next;
        uint64_t ino;
        char *name;          /* NULL: an inode, not an entry */
        struct timespec due; /* not before (CLOCK_MONOTONIC); 0 = now */
};

/* When a directory's content last changed. */
struct inval_dir {
        uint64_t id;
        struct timespec mtime;
        UT_hash_handle hh;
};

struct inval {
        pthread_mutex_t mu;
        struct inval_dir *dirs; /* by id */
        pthread_cond_t cv;
        struct inval_item *head, *tail;
        struct fuse_session *se;
        bool started, stop;
        pthread_t thread;
};

struct inval *inval_new(void)
{
        struct inval *q = calloc(1, sizeof(*q));
        if (!q)
                return NULL;
        pthread_mutex_init(&q->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
        return q;
}

void inval_set_session(struct inval *q, struct fuse_session *se)
{
        pthread_mutex_lock(&q->mu);
        q->se = se;
        pthread_mutex_unlock(&q->mu);
}

static void inval_send(struct fuse_session *se, struct inval_item *it)
{
        int r = it->name ? fuse_lowlevel_notify_inval_entry(se, it->ino, it->name, strlen(it->name))
                         : fuse_lowlevel_notify_inval_inode(se, it->ino, 0, 0);
        /* -ENOENT: the kernel had nothing cached; nothing to do. */
        if (r < 0 && r != -ENOENT)
                log_dbg("kernel cache invalidation failed: %s", strerror(-r));
}

static void *inval_main(void *arg)
{
        struct inval *q = arg;
        pthread_mutex_lock(&q->mu);
        for (;;) {
                while (!q->head && !q->stop) {
                        /* Idle: look again at least once a second (every wait has a
                         * deadline; a missed signal can't keep the thread asleep). */
                        struct timespec idle;
                        clock_gettime(CLOCK_MONOTONIC, &idle);
                        idle.tv_sec += 1;
                        pthread_cond_timedwait(&q->cv, &q->mu, &idle);
                }
                struct inval_item *it = q->head;
                if (!it)
                        break;
                if (it->due.tv_sec && !q->stop) {
                        struct timespec now;
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        if (now.tv_sec < it->due.tv_sec ||
                            (now.tv_sec == it->due.tv_sec && now.tv_nsec < it->due.tv_nsec)) {
                                pthread_cond_timedwait(&q->cv, &q->mu, &it->due);
                                continue;
                        }
                }
                q->head = it->next;
                if (!q->head)
                        q->tail = NULL;
                struct fuse_session *se = q->se;
                pthread_mutex_unlock(&q->mu);
                if (se)
                        inval_send(se, it);
                free(it->name);
                free(it);
                pthread_mutex_lock(&q->mu);
        }
        pthread_mutex_unlock(&q->mu);
        return NULL;
}

void inval_free(struct inval *q)
{
        if (!q)
                return;
        pthread_mutex_lock(&q->mu);
        q->stop = true;
        pthread_cond_signal(&q->cv);
        bool started = q->started;
        pthread_mutex_unlock(&q->mu);
        if (started)
                pthread_join(q->thread, NULL);
        while (q->head) {
                struct inval_item *it = q->head;
                q->head = it->next;
                free(it->name);
                free(it);
        }
        struct inval_dir *d, *dtmp;
        HASH_ITER(hh, q->dirs, d, dtmp)
        {
                HASH_DEL(q->dirs, d);
                free(d);
        }
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        free(q);
}

static void inval_push(struct inval *q, uint64_t ino, const char *name, int delay_ms)
{
        struct inval_item *it = calloc(1, sizeof(*it));
        if (!it || (name && !(it->name = strdup(name)))) {
                free(it);
                return; /* the entry times out by itself (entry_timeout) */
        }
        it->ino = ino;
        if (delay_ms > 0) {
                clock_gettime(CLOCK_MONOTONIC, &it->due);
                it->due.tv_sec += delay_ms / 1000;
                it->due.tv_nsec += (long)(delay_ms % 1000) * 1000000;
                if (it->due.tv_nsec >= 1000000000) {
                        it->due.tv_sec++;
                        it->due.tv_nsec -= 1000000000;
                }
        }
        pthread_mutex_lock(&q->mu);
        /* Started on first use: after daemonizing, which a thread would not survive. */
        if (!q->started && !q->stop)
                q->started = pthread_create(&q->thread, NULL, inval_main, q) == 0;
        if (!q->started) {
                pthread_mutex_unlock(&q->mu);
                free(it->name);
                free(it);
                return;
        }
        if (q->tail)
                q->tail->next = it;
        else
                q->head = it;
        q->tail = it;
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
}

void inval_entry(struct inval *q, uint64_t parent, const char *name)
{
        inval_push(q, parent, name, 0);
}

void inval_entry_later(struct inval *q, uint64_t parent, const char *name, int delay_ms)
{
        inval_push(q, parent, name, delay_ms);
}

void inval_inode(struct inval *q, uint64_t ino)
{
        inval_push(q, ino, NULL, 0);
}

void inval_dir_changed(struct inval *q, uint64_t dir)
{
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        pthread_mutex_lock(&q->mu);
        struct inval_dir *d;
        HASH_FIND(hh, q->dirs, &dir, sizeof(dir), d);
        if (!d && (d = calloc(1, sizeof(*d)))) {
                d->id = dir;
                HASH_ADD(hh, q->dirs, id, sizeof(d->id), d);
        }
        if (d) {
                /* Strictly later than before, even within one clock tick or
                 * after the wall clock stepped back: a watcher compares. */
                if (now.tv_sec < d->mtime.tv_sec ||
                    (now.tv_sec == d->mtime.tv_sec && now.tv_nsec <= d->mtime.tv_nsec)) {
                        now = d->mtime;
                        if (++now.tv_nsec >= 1000000000) {
                                now.tv_sec++;
                                now.tv_nsec = 0;
                        }
                }
                d->mtime = now;
        }
        pthread_mutex_unlock(&q->mu);
        /* Without memory for the record the kernel still hears of it; the
         * folder's time then stays as it was. */
        inval_push(q, dir, NULL, 0);
}

void inval_dir_mtime(struct inval *q, uint64_t dir, struct timespec *ts)
{
        pthread_mutex_lock(&q->mu);
        struct inval_dir *d;
        HASH_FIND(hh, q->dirs, &dir, sizeof(dir), d);
        if (d)
                *ts = d->mtime;
        pthread_mutex_unlock(&q->mu);
}
