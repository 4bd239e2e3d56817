/* Where the persistent cache of an account lives when -o cache_dir= is not
 * given. */
#ifndef IMAPFS_CACHE_CACHEDIR_H
#define IMAPFS_CACHE_CACHEDIR_H

#include <stddef.h>

/* $XDG_CACHE_HOME/imapfs/USER@HOST:PORT, else $HOME/.cache/imapfs/..., else
 * the home directory of the user's passwd entry (a daemon started without
 * HOME). Relative values are ignored (XDG Base Directory spec). Never a
 * shared directory such as /tmp, where another user could plant the cache.
 * The last component has '/' replaced by '_' (a user name is not a path).
 * Returns 0, -ENOENT with a reason in err when no home is known, or
 * -ENAMETOOLONG. */
int cachedir_default(const char *user, const char *host, unsigned port, char *out, size_t cap,
                     char *err, size_t errlen);

#endif
