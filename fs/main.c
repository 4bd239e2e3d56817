/* imapfs: start-up. Everything that can fail for a reason the user must hear
 * (options, password, network, certificate, login) happens before the mount
 * and before daemonizing, so it ends in a one-line error and a non-zero exit
 * with nothing mounted. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/opts.h"
#include "fs/password.h"
#include "fs/persist.h"
#include "imap/conn.h"
#include "imap/log.h"
#include "imap/utf7.h"

#define DEFAULT_MEM_CACHE (64u << 20)
/* A file being written stays in memory up to this size, then in a temp file. */
#define STAGE_MEM_MAX (4u << 20)
/* The most literal bytes one server response may carry. imapfs never asks
 * for more than 1 MiB of a message in one response; the bound keeps a hostile
 * server from making us allocate without limit. */
#define MAX_LITERAL (16u << 20)

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
        (void)userdata;
        if (conn->capable & FUSE_CAP_READDIRPLUS)
                conn->want |= FUSE_CAP_READDIRPLUS;
        if (conn->capable & FUSE_CAP_ASYNC_READ)
                conn->want |= FUSE_CAP_ASYNC_READ;
        /* Reads run concurrently in threads; the kernel may read ahead well
         * beyond the request because message bytes never change. */
        conn->max_readahead = 1u << 20;
}

/* The cache saw a name appear or go (sync, revalidation, our own changes):
 * the kernel must not keep a dentry, or a "no such file", for it. */
static void main_observe(void *ctx, enum cache_change what, uint64_t parent, const char *name,
                         uint64_t id)
{
        struct fs *fs = ctx;
        (void)what;
        (void)id;
        if (fs->inval)
                inval_entry(fs->inval, parent, name);
}

static void fs_register(struct fuse_lowlevel_ops *ops)
{
        memset(ops, 0, sizeof(*ops));
        ops->init = fs_init;
        ops_dir_register(ops);
        ops_file_register(ops);
        ops_xattr_register(ops);
        ops_write_register(ops);
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
        a->opts.names_uid = o->names && strcmp(o->names, "uid") == 0;
        a->opts.connections = o->connections;
        a->opts.read_only = o->read_only;
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
        if (!fs->staging || !fs->inval) {
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
        a->imap.password = password_get(o->password_command, o->password_file, err, sizeof(err));
        if (!a->imap.password) {
                fprintf(stderr, "imapfs: %s\n", err);
                return -1;
        }
        a->imap.tls = imap_tls_ctx_new(o->cafile, err, sizeof(err));
        if (!a->imap.tls) {
                fprintf(stderr, "imapfs: %s\n", err);
                return -1;
        }
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
        struct imap_session *s;
        int r = imap_session_open(&a->imap, &s, err, sizeof(err));
        bool network = r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EHOSTUNREACH ||
                       r == -ENETUNREACH || r == -EIO || r == -ECONNRESET;
        if (r < 0 && network && persist_load_tree(a)) {
                /* The server is away but we know the account: mount what the
                 * cache has; the pool and the sync thread reconnect later. */
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
        imap_pool_adopt(a->pool, s);
        r = account_refresh_tree(a, 0);
        if (r < 0) {
                fprintf(stderr, "imapfs: cannot list the mailboxes: %s\n", strerror(-r));
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
        int ret = 1;

        signal(SIGPIPE, SIG_IGN);
        memset(&fo, 0, sizeof(fo));
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
                                "MOUNTPOINT (see --help)\n");
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
        if (fo.singlethread) {
                ret = fuse_session_loop(fs.se);
        } else {
                struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 16};
                ret = fuse_session_loop_mt(fs.se, &cfg);
        }
        ret = ret == 0 ? 0 : 1;
        /* Stop what feeds the kernel notifications, then the notifications,
         * before the session goes. */
        sync_free(fs.sync);
        fs.sync = NULL;
        cache_lock(fs.acct.cache);
        cache_set_observer(fs.acct.cache, NULL, NULL);
        cache_unlock(fs.acct.cache);
        inval_free(fs.inval);
        fs.inval = NULL;
        log_info("unmounted; %llu content fetches, %llu bytes", (unsigned long long)fs.acct.fetches,
                 (unsigned long long)fs.acct.fetched_bytes);
        fuse_session_unmount(fs.se);
out_signals:
        fuse_remove_signal_handlers(fs.se);
out_session:
        fuse_session_destroy(fs.se);
out_acct:
        inval_free(fs.inval); /* only when start-up failed before the loop */
        account_destroy(&fs.acct);
        persist_close(&fs.acct);
        staging_free(fs.staging);
        free(fs.acct.opts.trash);
        imap_tls_ctx_free(fs.acct.imap.tls);
        password_free(fs.acct.imap.password);
        free(fs.acct.imap.user);
        free(fs.acct.imap.host);
out_args:
        free(fo.mountpoint);
        opts_free(&o);
        fuse_opt_free_args(&args);
        return ret;
}
