/* The command line: options, the account URL, and --help. */
#ifndef IMAPFS_FS_OPTS_H
#define IMAPFS_FS_OPTS_H

#include <stdbool.h>
#include <stddef.h>

struct fuse_args;
struct imap_account;

struct opts {
        char *url;
        char *password_command;
        char *password_file;
        char *password_inline; /* refused: only caught to say why */
        char *oauth2_token_command;
        char *exclude;
        char *cafile;
        char *names;
        char *mem_cache;
        char *trash;
        char *cache_dir;
        char *cache_size;
        int cache_off;
        int compress;     /* -o compress=auto|yes|no: enum imap_compress */
        unsigned timeout;
        unsigned connections;
        unsigned poll;
        int allow_plaintext;
        int show_help;
        int show_version;
        int debug;
        int read_only;
};

/* Parses and removes imapfs's own options from args, leaving FUSE's.
 * Returns 0 or -1 after printing a one-line error. */
int opts_parse(struct fuse_args *args, struct opts *o);
void opts_free(struct opts *o);
void opts_usage(const char *prog);

/* imaps://USER@HOST[:PORT] or imap://...; USER may contain '@' (the last one
 * separates the host) or %XX escapes; HOST may be [IPv6]. */
int opts_parse_url(const char *url, struct imap_account *a, char *err, size_t errlen);

/* "64M", "1G", "4096" → bytes; false if malformed. */
bool opts_parse_size(const char *s, size_t *out);

#endif
