/* Where the password comes from: a command, a file, or the environment.
 * Never from the command line itself. */
#ifndef IMAPFS_FS_PASSWORD_H
#define IMAPFS_FS_PASSWORD_H

#include <stddef.h>

/* Returns a malloc'd password (first line of the source, line end removed),
 * or NULL with a one-line reason in err. Sources in order: command, file,
 * IMAPFS_PASSWORD (which is then removed from the environment so that
 * password commands and children never inherit it). */
char *password_get(const char *command, const char *file, char *err, size_t errlen);

/* Overwrites and frees. */
void password_free(char *pw);

#endif
