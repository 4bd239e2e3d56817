#include "cache/cachedir.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The home directory of the passwd entry of our uid into buf, or NULL. */
static const char *cachedir_passwd_home(char *buf, size_t cap)
{
        struct passwd pw, *res = NULL;
        long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t len = sz > 0 ? (size_t)sz : 16384;
        char *tmp = malloc(len);
        const char *home = NULL;
        if (tmp && getpwuid_r(getuid(), &pw, tmp, len, &res) == 0 && res && res->pw_dir &&
            res->pw_dir[0] == '/' && strlen(res->pw_dir) < cap) {
                memcpy(buf, res->pw_dir, strlen(res->pw_dir) + 1);
                home = buf;
        }
        free(tmp);
        return home;
}

int cachedir_default(const char *user, const char *host, unsigned port, char *out, size_t cap,
                     char *err, size_t errlen)
{
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        char pwhome[4096];
        int n, base;
        if (xdg && xdg[0] == '/') {
                n = snprintf(out, cap, "%s/imapfs/%n%s@%s:%u", xdg, &base, user, host, port);
        } else {
                if (!home || home[0] != '/')
                        home = cachedir_passwd_home(pwhome, sizeof(pwhome));
                if (!home) {
                        snprintf(err, errlen,
                                 "no home directory (neither XDG_CACHE_HOME nor HOME is set, and "
                                 "the passwd entry has none); give one with -o cache_dir=PATH");
                        return -ENOENT;
                }
                n = snprintf(out, cap, "%s/.cache/imapfs/%n%s@%s:%u", home, &base, user, host,
                             port);
        }
        if (n < 0 || (size_t)n >= cap) {
                snprintf(err, errlen, "cache directory name too long");
                return -ENAMETOOLONG;
        }
        for (char *p = out + base; *p; p++)
                if (*p == '/')
                        *p = '_';
        return 0;
}
