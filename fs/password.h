/* Where the secret comes from: a command, a file, or the environment for a
 * password; a command run for each connection for an OAuth2 token. Never
 * from the command line itself, never passed on to a child's argv or
 * environment. */
#ifndef IMAPFS_FS_PASSWORD_H
#define IMAPFS_FS_PASSWORD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Returns the password (first line of the source, line end removed) in
 * memory left out of core dumps, or NULL with a one-line reason in err.
 * Sources in order: command, file, IMAPFS_PASSWORD. */
char *password_get(const char *command, const char *file, char *err, size_t errlen);

/* Removes IMAPFS_PASSWORD from the environment, bytes and all, so that
 * commands and children never inherit it. password_get does it too. */
void password_scrub_env(void);

/* Overwrites and frees what password_get returned. */
void password_free(char *pw);

/* Runs cmd with /bin/sh -c, its output read through a pipe, within
 * timeout_ms; after that the command (with own_group, its whole process
 * group) is killed. Returns the first line of its output, malloc'd, or NULL
 * with a one-line reason naming what ("oauth2_token_command") in err: it
 * could not start, it failed, it timed out, it printed nothing. */
char *password_run(const char *what, const char *cmd, int timeout_ms, bool own_group, char *err,
                   size_t errlen);

/* The OAuth2 token source behind imap_account.oauth2_token: the command
 * runs for each new connection, one run at a time. */
struct token_source {
        const char *command;
        int timeout_ms;
        pthread_mutex_t mu;
        unsigned runs;
};

char *password_token(void *ctx, bool again, char *err, size_t errlen);

#endif
