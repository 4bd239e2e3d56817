/* imapfs: start-up. Everything that can fail for a reason the user must hear
 * (options, password, network, certificate, login) happens before the mount
 * and before daemonizing, so it ends in a one-line error and a non-zero exit
 * with nothing mounted. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/ahead.h"
#include "fs/fs.h"
#include "fs/naming.h"
#include "fs/config.h"
#include "fs/ops_parts.h"
#include "fs/opts.h"
#include "fs/ops_search.h"
#include "fs/password.h"
#include "fs/trash.h"
#include "cache/persist.h"
#include "cache/clock.h"
#include "imap/log.h"
#include "imap/utf7.h"

#define DEFAULT_MEM_CACHE (64u << 20)
/* A file being written stays in memory up to this size, then in a temp file. */
#define STAGE_MEM_MAX (4u << 20)
/* The most literal bytes one server response may carry. imapfs never asks
 * for more than 1 MiB of a message in one response; the bound keeps a hostile
 * server from making us allocate without limit. */
#define MAX_LITERAL (16u << 20)
/* Once the session has ended (unmount, or a signal), the daemon finishes
 * within one server timeout plus this, whatever a thread is waiting on. */
#define EXIT_GRACE_MS 3000
/* How often the watchdog looks whether the session has ended (libfuse has
 * no notification for it). */
#define WATCH_PERIOD_MS 500
/* How long the main thread waits for the sync and read-ahead threads to end
 * after the session: a live server answers within this. */
#define EXIT_THREADS_MS 1000

/* libfuse 3.12 and later run at most 10 worker threads unless told
 * otherwise, so that no more than 10 requests reach imapfs at once: 16
 * processes of xargs -P 16 setfattr then had 10 STOREs to coalesce, not 16.
 * The call that takes a thread cap is declared only for FUSE_USE_VERSION
 * 312, which this file's siblings don't use; its ABI is stable. */
#define MAX_WORKER_THREADS 32
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 12)
#define HAVE_LOOP_CFG 1
int fuse_session_loop_mt_312(struct fuse_session *se, struct fuse_loop_config *config);
#endif

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
        (void)userdata;
        if (conn->capable & FUSE_CAP_READDIRPLUS)
                conn->want |= FUSE_CAP_READDIRPLUS;
        /* READDIRPLUS for every batch, not only the first (the kernel's "auto"
         * mode answers the rest with plain READDIR): grep -r and find then
         * open files whose entries came with the listing, instead of sending
         * a LOOKUP for each one past the first 64 KiB of entries (661 of
         * 1,000 in bench_cache's grep). The attributes are in the snapshot
         * taken at opendir either way. */
        conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
        if (conn->capable & FUSE_CAP_ASYNC_READ)
                conn->want |= FUSE_CAP_ASYNC_READ;
        /* Reads run concurrently in threads; the kernel may read ahead well
         * beyond the request because message bytes never change. */
        conn->max_readahead = 1u << 20;
}

/* The cache saw a name appear or go, or a message's flags change (sync,
 * revalidation, our own changes): the kernel must not keep a dentry, or a
 * "no such file", for it, and the folder's mtime moves. */
static void main_observe(void *ctx, enum cache_change what, uint64_t parent, const char *name,
                         uint64_t id)
{
        struct fs *fs = ctx;
        if (!fs->inval)
                return;
        /* The kernel tells no inotify watcher of these notices (README,
         * "Live sync"): a folder's mtime is what watchers can see. */
        (void)id;
        /* Our own move: the kernel moved its entry itself (and the typed
         * name must keep working, fs/alias.h); only the folders' times. */
        if (what == CACHE_NAME_ADDED || what == CACHE_NAME_REMOVED)
                inval_entry(fs->inval, parent, name);
        inval_dir_changed(fs->inval, parent);
        if (what == CACHE_NAME_REMOVED)
                ops_search_observe(fs, parent, name);
}

/* The exit watchdog. libfuse's loop returns only after every worker has
 * finished its request, and our own threads finish their server command
 * before they stop. Each of those waits has a deadline, but several can come
 * one after another; the watchdog turns that into one bound: from the end
 * of the session, one timeout plus EXIT_GRACE_MS, then the process exits
 * without cleanup (nothing is lost: every change the user saw succeed is on
 * the server, and the disk cache's files are replaced atomically). */
struct watchdog {
        struct fs *fs;
        pthread_t thread;
        bool started;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool cleaning;  /* the main thread stops the threads itself */
        bool unmounted; /* the main thread took the mount away */
        bool done;      /* the main thread finished cleaning up */
};

static void watchdog_until(struct watchdog *w, int64_t deadline_ms)
{
        struct timespec ts = {.tv_sec = deadline_ms / 1000,
                              .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

static void *watchdog_main(void *arg)
{
        struct watchdog *w = arg;
        struct fs *fs = w->fs;
        pthread_mutex_lock(&w->mu);
        while (!w->done && !fuse_session_exited(fs->se))
                watchdog_until(w, cache_now_ms() + WATCH_PERIOD_MS);
        if (w->done) {
                pthread_mutex_unlock(&w->mu);
                return NULL;
        }
        /* The session ended: ask our threads to stop now, while libfuse
         * waits for the workers, not only after (unless the main thread got
         * there first: then they may be freed already). */
        if (!w->cleaning) {
                sync_stop(fs->sync);
                ahead_stop(fs->acct.ahead);
        }
        /* Nobody waits for the answers any more: waits end at once. */
        blocks_shutdown(fs->acct.blocks);
        cache_shutdown(fs->acct.cache);
        int64_t deadline = cache_now_ms() + fs->acct.imap.timeout_ms + EXIT_GRACE_MS;
        while (!w->done && cache_now_ms() < deadline)
                watchdog_until(w, deadline);
        if (w->done) {
                pthread_mutex_unlock(&w->mu);
                return NULL;
        }
        log_warn("a thread is still waiting on the server %d s after unmount: exiting without "
                 "cleaning up",
                 (fs->acct.imap.timeout_ms + EXIT_GRACE_MS) / 1000);
        /* After a signal the mount is still there: take it away (lazily,
         * so that this can't block either). */
        if (!w->unmounted)
                fuse_session_unmount(fs->se);
        _exit(0);
}

static void watchdog_start(struct watchdog *w, struct fs *fs)
{
        w->fs = fs;
        pthread_mutex_init(&w->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cv, &ca);
        pthread_condattr_destroy(&ca);
        /* Signals go to the main thread, which libfuse's loop waits in. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        w->started = pthread_create(&w->thread, NULL, watchdog_main, w) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!w->started)
                log_warn("no exit watchdog: an unmount may wait for a stalled server");
}

/* From here on the main thread stops and frees the threads itself. */
static void watchdog_cleaning(struct watchdog *w)
{
        if (!w->started)
                return;
        pthread_mutex_lock(&w->mu);
        w->cleaning = true;
        pthread_mutex_unlock(&w->mu);
}

/* Unmounts (lazily: it never blocks), once: the watchdog may want to. */
static void watchdog_unmount(struct watchdog *w, struct fuse_session *se)
{
        if (w->started)
                pthread_mutex_lock(&w->mu);
        fuse_session_unmount(se);
        w->unmounted = true;
        if (w->started)
                pthread_mutex_unlock(&w->mu);
}

static void watchdog_done(struct watchdog *w)
{
        if (!w->started)
                return;
        pthread_mutex_lock(&w->mu);
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
}

static void fs_register(struct fuse_lowlevel_ops *ops)
{
        memset(ops, 0, sizeof(*ops));
        ops->init = fs_init;
        ops_dir_register(ops);
        ops_file_register(ops);
        ops_xattr_register(ops);
        ops_write_register(ops);
        /* Last: it stands in front of the others. */
        trash_register(ops);
}

/* fsname shows in /proc/mounts and df; commas would split mount options. */
static void main_add_fsname(struct fuse_args *args, const struct imap_account *a)
{
        char opt[600];
        snprintf(opt, sizeof(opt), "-ofsname=imap%s://%s@%s:%u,subtype=imapfs",
                 a->security == IMAP_SEC_TLS ? "s" : "", a->user, a->host, a->port);
        for (char *p = opt + 9; *p && p < strstr(opt, ",subtype"); p++)
                if (*p == ',' || *p == '\\')
                        *p = '_';
        fuse_opt_add_arg(args, opt);
}

/* Where files being written go once they outgrow memory: a 0700 directory
 * of ours under $XDG_RUNTIME_DIR, else /tmp. */
static const char *main_tmpdir(char *buf, size_t cap)
{
        const char *run = getenv("XDG_RUNTIME_DIR");
        if (run && *run)
                snprintf(buf, cap, "%s/imapfs", run);
        else
                snprintf(buf, cap, "/tmp/imapfs-%u", (unsigned)getuid());
        return buf;
}

/* The OAuth2 token command's state: lives as long as the account. */
static struct token_source main_tokens = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The login secret: a password now, or a token command run per connection. */
static int main_setup_secret(struct account *a, const struct opts *o, char *err, size_t errlen)
{
        if (o->oauth2_token_command) {
                password_scrub_env();
                main_tokens.command = o->oauth2_token_command;
                main_tokens.timeout_ms = a->imap.timeout_ms;
                a->imap.oauth2_token = password_token;
                a->imap.token_ctx = &main_tokens;
                return 0;
        }
        a->imap.password = password_get(o->password_command, o->password_file, err, errlen);
        return a->imap.password ? 0 : -1;
}

static int main_setup_account(struct fs *fs, const struct opts *o)
{
        struct account *a = &fs->acct;
        char err[512];

        if (opts_parse_url(o->url, &a->imap, err, sizeof(err)) < 0) {
                fprintf(stderr, "imapfs: %s\n", err);
                return -1;
        }
        a->imap.allow_plaintext = o->allow_plaintext;
        a->imap.timeout_ms = (int)o->timeout * 1000;
        a->imap.max_literal = MAX_LITERAL;
        a->imap.compress = (enum imap_compress)o->compress;
        a->opts.names_uid = o->names && strcmp(o->names, "uid") == 0;
        a->opts.connections = o->connections;
        a->opts.read_only = o->read_only;
        a->opts.exclude = o->exclude;
        fs->read_only = o->read_only;
        if (o->trash) {
                /* Given as the folder's name in UTF-8; the server knows it in
                 * modified UTF-7. */
                a->opts.trash = strcmp(o->trash, "none") == 0
                                    ? strdup("")
                                    : imap_utf7_encode(o->trash, strlen(o->trash));
                if (!a->opts.trash) {
                        fprintf(stderr, "imapfs: -o trash= takes a folder name or none\n");
                        return -1;
                }
        }
        fs->poll_ms = (int)o->poll * 1000;
        fs->staging = staging_new(STAGE_MEM_MAX, main_tmpdir(fs->tmpdir, sizeof(fs->tmpdir)));
        fs->inval = inval_new();
        fs->alias = alias_new();
        if (!fs->staging || !fs->inval || !fs->alias) {
                fprintf(stderr, "imapfs: out of memory\n");
                return -1;
        }
        a->opts.revalidate_ms = 5000;
        a->opts.mem_cache = DEFAULT_MEM_CACHE;
        /* Below a few MiB, blocks of one read would evict each other and be
         * fetched twice. */
        if (o->mem_cache && (!opts_parse_size(o->mem_cache, &a->opts.mem_cache) ||
                             a->opts.mem_cache < (4u << 20))) {
                fprintf(stderr, "imapfs: -o mem_cache= takes a size from 4M up, like 64M\n");
                return -1;
        }
        if (main_setup_secret(a, o, err, sizeof(err)) < 0) {
                fprintf(stderr, "imapfs: %s\n", err);
                return -1;
        }
        if (account_tls_setup(a, o->cafile, err, sizeof(err)) < 0) {
                fprintf(stderr, "imapfs: %s\n", err);
                return -1;
        }
        a->naming = naming_table(a->opts.names_uid);
        if (account_init(a) < 0) {
                fprintf(stderr, "imapfs: out of memory\n");
                return -1;
        }
        /* Connect and log in now, so that a wrong host, password or
         * certificate is reported here and nothing gets mounted. */
        if (!o->cache_off) {
                size_t size = 1u << 30;
                if (o->cache_size && !opts_parse_size(o->cache_size, &size)) {
                        fprintf(stderr, "imapfs: -o cache_size= takes a size like 1G\n");
                        return -1;
                }
                if (persist_open(a, o->cache_dir, size, err, sizeof(err)) < 0) {
                        fprintf(stderr, "imapfs: cache: %s\n", err);
                        return -1;
                }
        }
        bool network = false;
        int r = account_connect(a, err, sizeof(err), &network);
        if (r == ACCOUNT_OFFLINE) {
                fprintf(stderr, "imapfs: %s; mounting offline from the cache\n", err);
                log_warn("offline: %s", err);
                return 0;
        }
        if (r < 0) {
                fprintf(stderr, "imapfs: %s%s\n", err,
                        network
                            ? (a->disk ? " (and no cache of this account to mount offline)" : "")
                            : "");
                return -1;
        }
        return 0;
}

int main(int argc, char *argv[])
{
        struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
        struct fuse_cmdline_opts fo;
        struct fuse_lowlevel_ops ops;
        struct opts o;
        static struct fs fs;
        static struct watchdog wd;
        int ret = 1;

        signal(SIGPIPE, SIG_IGN);
        memset(&fo, 0, sizeof(fo));
        memset(&o, 0, sizeof(o));
        char cerr[1024];
        if (config_apply(&args, cerr, sizeof(cerr)) < 0) {
                fprintf(stderr, "imapfs: %s\n", cerr);
                goto out_args;
        }
        if (opts_parse(&args, &o) < 0)
                goto out_args;
        if (o.show_help) {
                opts_usage(argv[0]);
                printf("FUSE options:\n");
                fuse_cmdline_help();
                fuse_lowlevel_help();
                ret = 0;
                goto out_args;
        }
        if (o.show_version) {
                printf("imapfs %s\nFUSE library %s\n", IMAPFS_VERSION, fuse_pkgversion());
                ret = 0;
                goto out_args;
        }
        if (fuse_parse_cmdline(&args, &fo) != 0)
                goto out_args;
        if (!o.url || !fo.mountpoint) {
                fprintf(stderr, "imapfs: usage: imapfs [options] imaps://USER@HOST[:PORT] "
                                "MOUNTPOINT, or ACCOUNT MOUNTPOINT (see --help)\n");
                goto out_args;
        }
        log_init(false, o.debug);
        fs.uid = getuid();
        fs.gid = getgid();
        fs.mount_time = time(NULL);
        fs.entry_timeout = 5.0;
        if (main_setup_account(&fs, &o) < 0)
                goto out_acct;
        main_add_fsname(&args, &fs.acct.imap);
        fs_register(&ops);
        fs.se = fuse_session_new(&args, &ops, sizeof(ops), &fs);
        if (!fs.se)
                goto out_acct;
        inval_set_session(fs.inval, fs.se);
        if (fuse_set_signal_handlers(fs.se) != 0)
                goto out_session;
        if (fuse_session_mount(fs.se, fo.mountpoint) != 0) {
                fprintf(stderr, "imapfs: cannot mount on %s\n", fo.mountpoint);
                goto out_signals;
        }
        fuse_daemonize(fo.foreground);
        if (!fo.foreground)
                log_init(true, o.debug);
        log_info("mounted %s@%s on %s", fs.acct.imap.user, fs.acct.imap.host, fo.mountpoint);
        /* Threads start only now: they would not survive daemonizing. */
        persist_start(&fs.acct);
        cache_lock(fs.acct.cache);
        cache_set_observer(fs.acct.cache, main_observe, &fs);
        cache_unlock(fs.acct.cache);
        fs.sync = sync_new(&fs.acct, fs.poll_ms);
        if (!fs.sync || sync_start(fs.sync) < 0)
                log_warn("live sync could not start: changes elsewhere show on revalidation only");
        watchdog_start(&wd, &fs);
        if (fo.singlethread) {
                ret = fuse_session_loop(fs.se);
        } else {
#ifdef HAVE_LOOP_CFG
                struct fuse_loop_config *cfg = fuse_loop_cfg_create();
                if (cfg) {
                        fuse_loop_cfg_set_clone_fd(cfg, 0);
                        fuse_loop_cfg_set_idle_threads(cfg, 16);
                        fuse_loop_cfg_set_max_threads(cfg, MAX_WORKER_THREADS);
                        ret = fuse_session_loop_mt_312(fs.se, cfg);
                        fuse_loop_cfg_destroy(cfg);
                } else {
                        ret = fuse_session_loop(fs.se);
                }
#else
                struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 16};
                ret = fuse_session_loop_mt(fs.se, &cfg);
#endif
        }
        ret = ret == 0 ? 0 : 1;
        watchdog_cleaning(&wd);
        /* Our threads finish the server command they are in before they
         * stop. A live server answers at once; a stalled one is not waited
         * for beyond EXIT_THREADS_MS. */
        sync_stop(fs.sync);
        ahead_stop(fs.acct.ahead);
        int64_t until = cache_now_ms() + EXIT_THREADS_MS;
        bool sync_ended = sync_join_until(fs.sync, until);
        bool ahead_ended = ahead_join_until(fs.acct.ahead, until);
        /* Stop what feeds the kernel notifications, then the notifications,
         * before the session goes. */
        cache_lock(fs.acct.cache);
        cache_set_observer(fs.acct.cache, NULL, NULL);
        cache_unlock(fs.acct.cache);
        inval_free(fs.inval);
        fs.inval = NULL;
        log_info("unmounted; %llu content fetches, %llu bytes", (unsigned long long)fs.acct.fetches,
                 (unsigned long long)fs.acct.fetched_bytes);
        watchdog_unmount(&wd, fs.se);
        if (!sync_ended || !ahead_ended) {
                /* Freeing what a running thread uses is not an option, and
                 * nothing is left to save: leave now. */
                log_info("a server command was still running: not waiting for it");
                _exit(ret);
        }
        sync_free(fs.sync);
        fs.sync = NULL;
        ahead_free(fs.acct.ahead);
        fs.acct.ahead = NULL;
        watchdog_done(&wd);
out_signals:
        fuse_remove_signal_handlers(fs.se);
out_session:
        fuse_session_destroy(fs.se);
out_acct:
        inval_free(fs.inval); /* only when start-up failed before the loop */
        parts_fs_destroy();
        trash_free();
        account_destroy(&fs.acct);
        persist_close(&fs.acct);
        staging_free(fs.staging);
        alias_free(fs.alias);
        free(fs.acct.opts.trash);
        account_tls_free(&fs.acct);
        password_free(fs.acct.imap.password);
        free(fs.acct.imap.user);
        free(fs.acct.imap.host);
out_args:
        free(fo.mountpoint);
        opts_free(&o);
        fuse_opt_free_args(&args);
        return ret;
}
