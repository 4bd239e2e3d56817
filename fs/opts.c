#include "fs/opts.h"

#define FUSE_USE_VERSION 34
#include <ctype.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <fuse_opt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/exclude.h"
#include "imap/session.h"

enum { KEY_HELP, KEY_VERSION, KEY_DEBUG, KEY_RO };

#define OPT(t, f, v)                                                                               \
        {                                                                                          \
                t, offsetof(struct opts, f), v                                                     \
        }

static const struct fuse_opt opts_table[] = {
    OPT("password_command=%s", password_command, 0),
    OPT("password_file=%s", password_file, 0),
    OPT("password=%s", password_inline, 0),
    OPT("oauth2_token_command=%s", oauth2_token_command, 0),
    OPT("cafile=%s", cafile, 0),
    OPT("exclude=%s", exclude, 0),
    OPT("names=%s", names, 0),
    OPT("timeout=%u", timeout, 0),
    OPT("connections=%u", connections, 0),
    OPT("mem_cache=%s", mem_cache, 0),
    OPT("trash=%s", trash, 0),
    OPT("poll=%u", poll, 0),
    OPT("cache_dir=%s", cache_dir, 0),
    OPT("cache_size=%s", cache_size, 0),
    OPT("cache=no", cache_off, 1),
    OPT("cache=yes", cache_off, 0),
    OPT("compress=no", compress, IMAP_COMPRESS_NO),
    OPT("compress=yes", compress, IMAP_COMPRESS_YES),
    OPT("compress=auto", compress, IMAP_COMPRESS_AUTO),
    OPT("allow_plaintext", allow_plaintext, 1),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_END,
};

static int opts_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
        struct opts *o = data;
        (void)outargs;
        switch (key) {
        case KEY_HELP:
                o->show_help = 1;
                return 0;
        case KEY_VERSION:
                o->show_version = 1;
                return 0;
        case KEY_DEBUG:
                o->debug = 1;
                return 1; /* FUSE wants it too */
        case KEY_RO:
                o->read_only = 1;
                return 1;
        case FUSE_OPT_KEY_NONOPT:
                if (!o->url &&
                    (strncmp(arg, "imap://", 7) == 0 || strncmp(arg, "imaps://", 8) == 0)) {
                        o->url = strdup(arg);
                        return 0;
                }
                return 1; /* the mountpoint */
        default:
                return 1;
        }
}

int opts_parse(struct fuse_args *args, struct opts *o)
{
        memset(o, 0, sizeof(*o));
        o->timeout = 30;
        o->connections = 4;
        o->poll = 30;
        if (fuse_opt_parse(args, o, opts_table, opts_proc) < 0)
                return -1;
        if (o->password_inline) {
                fprintf(stderr, "imapfs: -o password= is not accepted: other users can read the "
                                "command line; use password_command, password_file or "
                                "IMAPFS_PASSWORD\n");
                return -1;
        }
        if (o->oauth2_token_command && (o->password_command || o->password_file)) {
                fprintf(stderr, "imapfs: -o oauth2_token_command= replaces the password: give "
                                "it without password_command or password_file\n");
                return -1;
        }
        if (o->exclude && !exclude_valid(o->exclude)) {
                fprintf(stderr, "imapfs: -o exclude= takes PATTERN[:PATTERN...]\n");
                return -1;
        }
        if (o->names && strcmp(o->names, "uid") != 0 && strcmp(o->names, "readable") != 0) {
                fprintf(stderr, "imapfs: -o names= takes 'uid' or 'readable'\n");
                return -1;
        }
        if (o->timeout == 0 || o->timeout > 3600) {
                fprintf(stderr, "imapfs: -o timeout= takes 1 to 3600 seconds\n");
                return -1;
        }
        if (o->poll == 0 || o->poll > 86400) {
                fprintf(stderr, "imapfs: -o poll= takes 1 to 86400 seconds\n");
                return -1;
        }
        if (o->connections == 0 || o->connections > 32) {
                fprintf(stderr, "imapfs: -o connections= takes 1 to 32\n");
                return -1;
        }
        return 0;
}

void opts_free(struct opts *o)
{
        free(o->url);
        free(o->password_command);
        free(o->password_file);
        free(o->password_inline);
        free(o->oauth2_token_command);
        free(o->exclude);
        free(o->cafile);
        free(o->names);
        free(o->mem_cache);
        free(o->trash);
        free(o->cache_dir);
        free(o->cache_size);
}

void opts_usage(const char *prog)
{
        printf("usage: %s [options] imaps://USER@HOST[:PORT] MOUNTPOINT\n"
               "       %s [options] imap://USER@HOST[:PORT] MOUNTPOINT   (STARTTLS)\n"
               "       %s [options] ACCOUNT MOUNTPOINT   ([ACCOUNT] of the config file)\n"
               "\n"
               "Mounts an IMAP account: folders are directories, messages are .eml files.\n"
               "The config file is $XDG_CONFIG_HOME/imapfs/config (~/.config/imapfs/config):\n"
               "a section [ACCOUNT] with url = imaps://... and the -o options as KEY = VALUE\n"
               "(flags as KEY = yes); options on the command line override it.\n"
               "\n"
               "imapfs options:\n"
               "    -o password_command=CMD  run CMD, use the first line of its output\n"
               "    -o password_file=PATH    use the first line of PATH\n"
               "                             (else the environment variable IMAPFS_PASSWORD)\n"
               "    -o oauth2_token_command=CMD  log in with OAuth2 (OAUTHBEARER or XOAUTH2):\n"
               "                             CMD prints an access token; it runs for each\n"
               "                             new connection, within the timeout\n"
               "    -o cafile=PATH           also trust this CA or certificate (PEM)\n"
               "    -o allow_plaintext       with imap://, log in even without STARTTLS\n"
               "    -o names=uid             name messages <UID>.eml (default: readable names)\n"
               "    -o timeout=SECONDS       deadline of one server operation (default 30)\n"
               "    -o connections=N         IMAP connections to use at most (default 4)\n"
               "    -o mem_cache=SIZE        message content kept in memory (default 64M)\n"
               "    -o poll=SECONDS          check folders for changes made elsewhere this often\n"
               "                             (default 30; the folder in use is watched live)\n"
               "    -o cache=no              no persistent cache (default: on)\n"
               "    -o cache_dir=PATH        where it is (default $XDG_CACHE_HOME/imapfs/...)\n"
               "    -o cache_size=SIZE       message content kept on disk (default 1G)\n"
               "    -o compress=auto|yes|no  COMPRESS=DEFLATE where the server offers it:\n"
               "                             auto (default) once the link shows itself\n"
               "                             slower than 64 Mbit/s, yes always, no never\n"
               "    -o exclude=PATTERN[:PATTERN...]  hide these folders (a glob on the\n"
               "                             name, '/' between levels; Gmail:\n"
               "                             exclude=[Gmail]/All Mail:[Gmail]/Important)\n"
               "    -o trash=FOLDER|none     where rm moves messages (default: the server's\n"
               "                             \\Trash folder if it has one; none: expunge)\n"
               "    -h, --help               this help\n"
               "    -V, --version            version\n"
               "\n",
               prog, prog, prog);
}

static int opts_unescape(const char *s, size_t len, char *out, size_t cap)
{
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (o + 1 >= cap)
                        return -1;
                if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char)s[i + 1]) &&
                    isxdigit((unsigned char)s[i + 2])) {
                        char hex[3] = {s[i + 1], s[i + 2], 0};
                        out[o++] = (char)strtol(hex, NULL, 16);
                        i += 2;
                } else {
                        out[o++] = s[i];
                }
        }
        out[o] = '\0';
        return 0;
}

int opts_parse_url(const char *url, struct imap_account *a, char *err, size_t errlen)
{
        const char *rest;
        if (strncasecmp(url, "imaps://", 8) == 0) {
                a->security = IMAP_SEC_TLS;
                a->port = 993;
                rest = url + 8;
        } else if (strncasecmp(url, "imap://", 7) == 0) {
                a->security = IMAP_SEC_STARTTLS;
                a->port = 143;
                rest = url + 7;
        } else {
                snprintf(err, errlen,
                         "the account must be imaps://USER@HOST[:PORT] or "
                         "imap://USER@HOST[:PORT]");
                return -1;
        }
        const char *at = strrchr(rest, '@');
        if (!at || at == rest) {
                snprintf(err, errlen, "no user name in %s (imaps://USER@HOST)", url);
                return -1;
        }
        char user[512], host[256];
        if (opts_unescape(rest, (size_t)(at - rest), user, sizeof(user)) < 0) {
                snprintf(err, errlen, "user name too long");
                return -1;
        }
        const char *h = at + 1, *hend, *port = NULL;
        if (*h == '[') {
                hend = strchr(h, ']');
                if (!hend) {
                        snprintf(err, errlen, "unterminated [ in %s", url);
                        return -1;
                }
                h++;
                port = hend[1] == ':' ? hend + 2 : NULL;
        } else {
                hend = h + strcspn(h, ":/");
                port = *hend == ':' ? hend + 1 : NULL;
        }
        if (hend == h || (size_t)(hend - h) >= sizeof(host)) {
                snprintf(err, errlen, "no host name in %s", url);
                return -1;
        }
        memcpy(host, h, (size_t)(hend - h));
        host[hend - h] = '\0';
        if (port) {
                char *end;
                unsigned long p = strtoul(port, &end, 10);
                if (end == port || (*end && *end != '/') || p == 0 || p > 65535) {
                        snprintf(err, errlen, "bad port in %s", url);
                        return -1;
                }
                a->port = (unsigned)p;
        }
        a->user = strdup(user);
        a->host = strdup(host);
        if (!a->user || !a->host) {
                snprintf(err, errlen, "out of memory");
                return -1;
        }
        return 0;
}

bool opts_parse_size(const char *s, size_t *out)
{
        static const char units[] = "KMG";
        char *end;
        if (*s < '0' || *s > '9')
                return false;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return false;
        const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
        unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
        if (u)
                end++;
        if (*end && !(toupper((unsigned char)*end) == 'B' && end[1] == '\0'))
                return false;
        if (v > (SIZE_MAX >> shift))
                return false;
        *out = (size_t)(v << shift);
        return true;
}
