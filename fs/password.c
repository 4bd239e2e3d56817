#include "fs/password.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/clock.h"
#include "imap/log.h"

extern char **environ;

/* A password line longer than this is not a password. */
#define PASSWORD_MAX (64u * 1024)
/* A password command may ask on the terminal (it runs once, in the
 * foreground, at mount time): it gets this long. */
#define PASSWORD_COMMAND_MS (300 * 1000)

/* A copy of s in pages of its own that core dumps leave out. */
static char *password_keep(const char *s)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE), n = strlen(s) + 1;
        size_t len = (n + page - 1) / page * page;
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        madvise(p, len, MADV_DONTDUMP);
        memcpy(p, s, n);
        return p;
}

void password_free(char *pw)
{
        if (!pw)
                return;
        size_t page = (size_t)sysconf(_SC_PAGESIZE), n = strlen(pw) + 1;
        OPENSSL_cleanse(pw, n);
        munmap(pw, (n + page - 1) / page * page);
}

/* Overwrites and frees a line read with getline or password_run. */
static void line_free(char *s)
{
        if (!s)
                return;
        OPENSSL_cleanse(s, strlen(s));
        free(s);
}

/* The first line of buf[0..n), without CR/LF, malloc'd; NULL if empty. */
static char *password_first_line(const char *buf, size_t n)
{
        size_t l = 0;
        while (l < n && buf[l] != '\n' && buf[l] != '\r' && buf[l] != '\0')
                l++;
        if (l == 0)
                return NULL;
        char *line = malloc(l + 1);
        if (line) {
                memcpy(line, buf, l);
                line[l] = '\0';
        }
        return line;
}

static int password_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
        return (int)syscall(SYS_pidfd_open, pid, 0);
#else
        (void)pid;
        return -1;
#endif
}

/* Waits for pid until deadline; true with *status once it has exited. */
static bool password_reap(pid_t pid, int pidfd, int64_t deadline, int *status)
{
        for (;;) {
                pid_t w = waitpid(pid, status, WNOHANG);
                if (w == pid || (w < 0 && errno != EINTR))
                        return true;
                int64_t left = deadline - cache_now_ms();
                if (left <= 0)
                        return false;
                /* Without a pidfd (old kernels) the child is looked at every 20 ms. */
                struct pollfd p = {.fd = pidfd, .events = POLLIN};
                poll(&p, pidfd >= 0 ? 1 : 0, pidfd >= 0 ? (int)left : (left < 20 ? (int)left : 20));
        }
}

static pid_t password_spawn(const char *cmd, int out_fd, bool own_group, char *err, size_t errlen,
                            const char *what)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        sigset_t none, dfl;
        pid_t pid = -1;
        char *argv[] = {"sh", "-c", (char *)cmd, NULL};

        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        /* Our sockets, the FUSE device and the cache stay ours. */
        posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
        /* The daemon ignores SIGPIPE and its threads block signals; the
         * command should start as from a shell. */
        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE);
        sigaddset(&dfl, SIGINT);
        sigaddset(&dfl, SIGTERM);
        sigaddset(&dfl, SIGHUP);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dfl);
        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        /* A process group of its own, so that a timeout kills whatever the
         * shell started too. */
        if (own_group) {
                flags |= POSIX_SPAWN_SETPGROUP;
                posix_spawnattr_setpgroup(&at, 0);
        }
        posix_spawnattr_setflags(&at, flags);
        int r = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (r != 0) {
                snprintf(err, errlen, "cannot run %s: %s", what, strerror(r));
                return -1;
        }
        return pid;
}

char *password_run(const char *what, const char *cmd, int timeout_ms, bool own_group, char *err,
                   size_t errlen)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                snprintf(err, errlen, "cannot run %s: %s", what, strerror(errno));
                return NULL;
        }
        pid_t pid = password_spawn(cmd, pfd[1], own_group, err, errlen, what);
        close(pfd[1]);
        if (pid < 0) {
                close(pfd[0]);
                return NULL;
        }
        int pidfd = password_pidfd(pid);
        int64_t deadline = cache_now_ms() + timeout_ms;
        char *buf = malloc(PASSWORD_MAX);
        size_t n = 0;
        bool eof = false, timed_out = false;
        /* Read to the end: the command should not die of SIGPIPE, and its
         * exit status counts. */
        while (!eof) {
                int64_t left = deadline - cache_now_ms();
                if (left <= 0) {
                        timed_out = true;
                        break;
                }
                struct pollfd p = {.fd = pfd[0], .events = POLLIN};
                int pr = poll(&p, 1, (int)left);
                if (pr < 0 && errno != EINTR)
                        break;
                if (pr <= 0)
                        continue;
                char sink[4096];
                bool keep = buf && n < PASSWORD_MAX;
                ssize_t got =
                    read(pfd[0], keep ? buf + n : sink, keep ? PASSWORD_MAX - n : sizeof(sink));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        eof = true;
                else if (keep)
                        n += (size_t)got;
                else
                        OPENSSL_cleanse(sink, sizeof(sink));
        }
        close(pfd[0]);
        int st = 0;
        if (!timed_out && !password_reap(pid, pidfd, deadline, &st))
                timed_out = true;
        if (timed_out) {
                kill(own_group ? -pid : pid, SIGKILL);
                waitpid(pid, &st, 0);
        }
        if (pidfd >= 0)
                close(pidfd);
        char *line = buf ? password_first_line(buf, n) : NULL;
        if (buf) {
                OPENSSL_cleanse(buf, n);
                free(buf);
        }
        const char *fail = NULL;
        char why[64];
        if (timed_out) {
                snprintf(why, sizeof(why), "timed out after %d s", (timeout_ms + 999) / 1000);
                fail = why;
        } else if (WIFSIGNALED(st)) {
                snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
                fail = why;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                snprintf(why, sizeof(why), "failed (exit status %d)",
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                fail = why;
        } else if (!line) {
                fail = "printed nothing";
        }
        if (fail) {
                snprintf(err, errlen, "%s %s", what, fail);
                line_free(line);
                return NULL;
        }
        return line;
}

static char *password_from_file(const char *path, char *err, size_t errlen)
{
        FILE *f = fopen(path, "r");
        if (!f) {
                snprintf(err, errlen, "cannot read password_file %s: %s", path, strerror(errno));
                return NULL;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        fclose(f);
        char *pw = n > 0 ? password_first_line(line, (size_t)n) : NULL;
        if (line) {
                OPENSSL_cleanse(line, cap);
                free(line);
        }
        if (!pw)
                snprintf(err, errlen, "password_file %s is empty", path);
        return pw;
}

void password_scrub_env(void)
{
        /* unsetenv only drops the pointer: the bytes would still show in
         * /proc/PID/environ. */
        const char *envp = getenv("IMAPFS_PASSWORD");
        if (envp)
                OPENSSL_cleanse((char *)envp, strlen(envp));
        unsetenv("IMAPFS_PASSWORD");
}

char *password_get(const char *command, const char *file, char *err, size_t errlen)
{
        const char *envp = getenv("IMAPFS_PASSWORD");
        char *env = envp && *envp ? strdup(envp) : NULL;
        char *pw = NULL;

        password_scrub_env();
        if (command)
                pw = password_run("password_command", command, PASSWORD_COMMAND_MS, false, err,
                                  errlen);
        else if (file)
                pw = password_from_file(file, err, errlen);
        else if (env)
                pw = strdup(env);
        else
                snprintf(err, errlen,
                         "no password: give -o password_command=CMD, "
                         "-o password_file=PATH or set IMAPFS_PASSWORD");
        line_free(env);
        if (!pw)
                return NULL;
        char *kept = password_keep(pw);
        line_free(pw);
        if (!kept)
                snprintf(err, errlen, "out of memory");
        return kept;
}

char *password_token(void *ctx, bool again, char *err, size_t errlen)
{
        struct token_source *t = ctx;
        /* One run at a time: token helpers refresh a token in place, and
         * connections opening together would each start a refresh. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2 * t->timeout_ms / 1000 + 1;
        if (pthread_mutex_timedlock(&t->mu, &ts) != 0) {
                snprintf(err, errlen,
                         "oauth2_token_command is still running for another "
                         "connection");
                return NULL;
        }
        unsigned run = ++t->runs;
        log_dbg("running oauth2_token_command (run %u%s)", run,
                again ? ", the server refused the last token" : "");
        char *tok =
            password_run("oauth2_token_command", t->command, t->timeout_ms, true, err, errlen);
        pthread_mutex_unlock(&t->mu);
        return tok;
}
