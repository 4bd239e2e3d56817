#include "fs/password.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* First line of f, without CR/LF; NULL if empty. */
static char *password_first_line(FILE *f)
{
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n <= 0) {
                free(line);
                return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        return line;
}

static char *password_from_command(const char *cmd, char *err, size_t errlen)
{
        FILE *p = popen(cmd, "r");
        if (!p) {
                snprintf(err, errlen, "cannot run password_command: %s", strerror(errno));
                return NULL;
        }
        char *pw = password_first_line(p);
        /* Drain the rest so the command does not die of SIGPIPE. */
        char sink[256];
        while (fread(sink, 1, sizeof(sink), p) > 0)
                ;
        int st = pclose(p);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                snprintf(err, errlen, "password_command failed (exit status %d)",
                         st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                password_free(pw);
                return NULL;
        }
        if (!pw)
                snprintf(err, errlen, "password_command printed nothing");
        return pw;
}

static char *password_from_file(const char *path, char *err, size_t errlen)
{
        FILE *f = fopen(path, "r");
        if (!f) {
                snprintf(err, errlen, "cannot read password_file %s: %s", path, strerror(errno));
                return NULL;
        }
        char *pw = password_first_line(f);
        fclose(f);
        if (!pw)
                snprintf(err, errlen, "password_file %s is empty", path);
        return pw;
}

char *password_get(const char *command, const char *file, char *err, size_t errlen)
{
        const char *envp = getenv("IMAPFS_PASSWORD");
        char *env = envp && *envp ? strdup(envp) : NULL;
        char *pw = NULL;

        /* unsetenv only drops the pointer: the bytes would still show in
         * /proc/PID/environ. */
        if (envp)
                OPENSSL_cleanse((char *)envp, strlen(envp));
        unsetenv("IMAPFS_PASSWORD");
        if (command)
                pw = password_from_command(command, err, errlen);
        else if (file)
                pw = password_from_file(file, err, errlen);
        else if (env)
                pw = strdup(env);
        else
                snprintf(err, errlen,
                         "no password: give -o password_command=CMD, "
                         "-o password_file=PATH or set IMAPFS_PASSWORD");
        password_free(env);
        return pw;
}

void password_free(char *pw)
{
        if (!pw)
                return;
        OPENSSL_cleanse(pw, strlen(pw));
        free(pw);
}
