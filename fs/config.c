#include "fs/config.h"

#define FUSE_USE_VERSION 34
#include <ctype.h>
#include <errno.h>
#include <fuse_opt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a key's value may be. */
enum config_kind {
        CK_STRING,
        CK_PATH,   /* a leading ~/ is the home directory */
        CK_NUMBER, /* digits */
        CK_FLAG,   /* yes or no: the -o option without a value, or nothing */
        CK_YESNO,  /* yes or no, passed on as key=yes / key=no */
};

/* The keys of a section: the -o options (fs/opts.c) and the FUSE mount
 * options that make sense per account. */
static const struct {
        const char *key;
        enum config_kind kind;
} config_keys[] = {
    {"url", CK_STRING},
    {"password_command", CK_STRING},
    {"password_file", CK_PATH},
    {"oauth2_token_command", CK_STRING},
    {"cafile", CK_PATH},
    {"names", CK_STRING},
    {"timeout", CK_NUMBER},
    {"connections", CK_NUMBER},
    {"mem_cache", CK_STRING},
    {"trash", CK_STRING},
    {"poll", CK_NUMBER},
    {"cache", CK_YESNO},
    {"compress", CK_YESNO},
    {"cache_dir", CK_PATH},
    {"cache_size", CK_STRING},
    {"exclude", CK_STRING},
    {"allow_plaintext", CK_FLAG},
    {"ro", CK_FLAG},
    {"allow_other", CK_FLAG},
    {"default_permissions", CK_FLAG},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

const char *config_path(char *buf, size_t cap)
{
        const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (x && *x == '/')
                snprintf(buf, cap, "%s/imapfs/config", x);
        else if (home && *home)
                snprintf(buf, cap, "%s/.config/imapfs/config", home);
        else
                return NULL;
        return buf;
}

static bool config_is_url(const char *s)
{
        return strncmp(s, "imap://", 7) == 0 || strncmp(s, "imaps://", 8) == 0;
}

/* The index in argv of the account name: the first argument that is not an
 * option when it is no URL and a mountpoint follows; -1 if none. */
static int config_account_arg(const struct fuse_args *args)
{
        int first = -1;
        for (int i = 1; i < args->argc; i++) {
                const char *a = args->argv[i];
                if (strcmp(a, "-o") == 0) {
                        i++;
                        continue;
                }
                if (a[0] == '-')
                        continue;
                if (first < 0)
                        first = i;
                else
                        return config_is_url(args->argv[first]) ? -1 : first;
        }
        return -1;
}

/* True if the command line gives key as an -o option. */
static bool config_on_cmdline(const struct fuse_args *args, const char *key)
{
        size_t kl = strlen(key);
        for (int i = 1; i < args->argc; i++) {
                const char *o = NULL;
                if (strcmp(args->argv[i], "-o") == 0 && i + 1 < args->argc)
                        o = args->argv[++i];
                else if (strncmp(args->argv[i], "-o", 2) == 0)
                        o = args->argv[i] + 2;
                /* Options are split at commas not escaped by a backslash. */
                for (const char *p = o; p && *p;) {
                        if (strncmp(p, key, kl) == 0 && (p[kl] == '=' || p[kl] == ',' || !p[kl]))
                                return true;
                        while (*p && *p != ',')
                                p += (*p == '\\' && p[1]) ? 2 : 1;
                        if (*p == ',')
                                p++;
                }
        }
        return false;
}

static char *config_trim(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Appends ",key[=value]" to the option string, value escaped for fuse_opt. */
static int config_add(char **opt, size_t *len, const char *key, const char *value)
{
        size_t need = *len + strlen(key) + 2 * (value ? strlen(value) : 0) + 3;
        char *n = realloc(*opt, need);
        if (!n)
                return -1;
        *opt = n;
        if (*len)
                n[(*len)++] = ',';
        *len += (size_t)sprintf(n + *len, "%s", key);
        if (value) {
                n[(*len)++] = '=';
                for (const char *p = value; *p; p++) {
                        if (*p == ',' || *p == '\\')
                                n[(*len)++] = '\\';
                        n[(*len)++] = *p;
                }
        }
        n[*len] = '\0';
        return 0;
}

/* Checks one key = value line and adds it to the options (or to *url). */
static int config_take(const struct fuse_args *args, const char *key, const char *value, char **opt,
                       size_t *len, char **url, char *err, size_t errlen)
{
        size_t k = 0;
        while (k < CONFIG_NKEYS && strcmp(config_keys[k].key, key) != 0)
                k++;
        if (k == CONFIG_NKEYS) {
                if (strcmp(key, "password") == 0)
                        snprintf(err, errlen,
                                 "no password in the config file: use password_command "
                                 "or password_file");
                else
                        snprintf(err, errlen, "unknown key '%s'", key);
                return -1;
        }
        enum config_kind kind = config_keys[k].kind;
        bool yes = strcmp(value, "yes") == 0, no = strcmp(value, "no") == 0;
        if (!*value) {
                snprintf(err, errlen, "%s has no value", key);
                return -1;
        }
        if ((kind == CK_FLAG || kind == CK_YESNO) && !yes && !no) {
                snprintf(err, errlen, "%s takes yes or no, not '%s'", key, value);
                return -1;
        }
        if (kind == CK_NUMBER && strspn(value, "0123456789") != strlen(value)) {
                snprintf(err, errlen, "%s takes a number, not '%s'", key, value);
                return -1;
        }
        if (strcmp(key, "url") == 0) {
                if (!config_is_url(value)) {
                        snprintf(err, errlen, "url must be imaps://USER@HOST or imap://USER@HOST");
                        return -1;
                }
                free(*url);
                *url = strdup(value);
                return *url ? 0 : -1;
        }
        if (config_on_cmdline(args, key) || (kind == CK_FLAG && no))
                return 0;
        char path[4096];
        const char *home = getenv("HOME");
        if (kind == CK_PATH && strncmp(value, "~/", 2) == 0 && home) {
                snprintf(path, sizeof(path), "%s/%s", home, value + 2);
                value = path;
        }
        return config_add(opt, len, key, kind == CK_FLAG ? NULL : value);
}

/* Reads the section name of file f into *opt and *url. */
static int config_read(FILE *f, const char *file, const char *name, const struct fuse_args *args,
                       char **opt, char **url, char *err, size_t errlen)
{
        char *line = NULL, why[512];
        size_t cap = 0, len = 0;
        bool found = false, in = false;
        int lineno = 0, r = 0;
        while (r == 0 && getline(&line, &cap, f) >= 0) {
                lineno++;
                char *s = config_trim(line);
                if (!*s || *s == '#' || *s == ';')
                        continue;
                if (*s == '[') {
                        char *end = strchr(s, ']');
                        if (!end || end[1]) {
                                snprintf(err, errlen, "%s:%d: a section is [NAME]", file, lineno);
                                r = -1;
                                break;
                        }
                        *end = '\0';
                        in = strcmp(config_trim(s + 1), name) == 0;
                        if (in && found) {
                                snprintf(err, errlen, "%s:%d: [%s] a second time", file, lineno,
                                         name);
                                r = -1;
                        }
                        found |= in;
                        continue;
                }
                char *eq = strchr(s, '=');
                if (!eq) {
                        snprintf(err, errlen, "%s:%d: not KEY = VALUE", file, lineno);
                        r = -1;
                        break;
                }
                *eq = '\0';
                if (!in)
                        continue;
                if (config_take(args, config_trim(s), config_trim(eq + 1), opt, &len, url, why,
                                sizeof(why)) < 0) {
                        snprintf(err, errlen, "%s:%d: %s", file, lineno, why);
                        r = -1;
                }
        }
        free(line);
        if (r == 0 && !found) {
                snprintf(err, errlen, "no account [%s] in %s (and %s is not an imaps:// URL)", name,
                         file, name);
                r = -1;
        }
        if (r == 0 && !*url) {
                snprintf(err, errlen, "%s: [%s] has no url", file, name);
                r = -1;
        }
        return r;
}

int config_apply(struct fuse_args *args, char *err, size_t errlen)
{
        int at = config_account_arg(args);
        if (at < 0)
                return 0;
        const char *name = args->argv[at];
        char file[4096];
        if (!config_path(file, sizeof(file))) {
                snprintf(err, errlen,
                         "%s is not an imaps:// URL, and without HOME there is no "
                         "config file to find it in",
                         name);
                return -1;
        }
        FILE *f = fopen(file, "r");
        if (!f) {
                snprintf(err, errlen, "%s is not an imaps:// URL, and %s can't be read: %s", name,
                         file, strerror(errno));
                return -1;
        }
        /* It names commands to run: nobody else may write it. */
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && (st.st_mode & 022)) {
                fclose(f);
                snprintf(err, errlen, "%s is writable by others: refusing to use it", file);
                return -1;
        }
        char *opt = NULL, *url = NULL;
        int r = config_read(f, file, name, args, &opt, &url, err, errlen);
        fclose(f);
        if (r == 0) {
                /* A new argument list (args may be main's argv): the URL in the
                 * name's place, the file's options first, so that anything
                 * after them (the command line) wins. */
                struct fuse_args n = FUSE_ARGS_INIT(0, NULL);
                bool ok = fuse_opt_add_arg(&n, args->argv[0]) == 0;
                if (ok && opt)
                        ok = fuse_opt_add_arg(&n, "-o") == 0 && fuse_opt_add_arg(&n, opt) == 0;
                for (int i = 1; ok && i < args->argc; i++)
                        ok = fuse_opt_add_arg(&n, i == at ? url : args->argv[i]) == 0;
                if (!ok) {
                        fuse_opt_free_args(&n);
                        snprintf(err, errlen, "out of memory");
                        r = -1;
                } else {
                        fuse_opt_free_args(args);
                        *args = n;
                }
        }
        free(url);
        free(opt);
        return r;
}
