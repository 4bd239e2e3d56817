/* The config file: $XDG_CONFIG_HOME/imapfs/config (~/.config/imapfs/config),
 * one section per account:
 *
 *     [work]
 *     url = imaps://alice@mail.example.org
 *     password_command = pass show mail
 *     timeout = 60
 *
 * with the same keys as the -o options. `imapfs work MOUNTPOINT` mounts it:
 * the first argument is an account name when it isn't a URL. */
#ifndef IMAPFS_FS_CONFIG_H
#define IMAPFS_FS_CONFIG_H

#include <stddef.h>

struct fuse_args;

/* If args name an account rather than a URL, replaces the name with the
 * section's url and puts the section's options before the command line's
 * (each key the command line gives is left out: the command line wins).
 * Returns 0 (also when there is nothing to do) or -1 with a one-line reason
 * in err: no config file, no such account, an unknown key or a bad value
 * (with file and line). */
int config_apply(struct fuse_args *args, char *err, size_t errlen);

/* The file config_apply reads, into buf; NULL if neither XDG_CONFIG_HOME nor
 * HOME is set. */
const char *config_path(char *buf, size_t cap);

#endif
