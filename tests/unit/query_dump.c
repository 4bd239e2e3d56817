/* query_dump: prints what imapfs would send for a .search/ query, for the
 * integration test that runs those keys against Dovecot and for people
 * trying the language.
 *
 *   query_dump [-g] [-u] [-2] [-n EPOCH] [-c] [-d] QUERY
 *     -g  the server has X-GM-EXT-1     -u  UTF8=ACCEPT is enabled
 *     -2  IMAP4rev2 (64-bit sizes)      -n  "now" for older:/newer:
 *     -c  print the canonical form too  -d  QUERY is a directory name
 *
 * Prints the keys (bytes as they would be sent, literals included) and a
 * newline; with -c, the canonical form on a second line. On a parse error,
 * prints "EINVAL POS REASON" to stderr and exits 2; -EOPNOTSUPP exits 3. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imap/query.h"

int main(int argc, char **argv)
{
        struct imap_query_caps caps = {0};
        time_t now = time(NULL);
        bool canon = false, dirname = false;
        int opt;
        while ((opt = getopt(argc, argv, "gu2n:cd")) != -1) {
                switch (opt) {
                case 'g':
                        caps.x_gm_ext_1 = true;
                        break;
                case 'u':
                        caps.utf8_enabled = true;
                        break;
                case '2':
                        caps.imap4rev2 = true;
                        break;
                case 'n':
                        now = (time_t)strtoll(optarg, NULL, 10);
                        break;
                case 'c':
                        canon = true;
                        break;
                case 'd':
                        dirname = true;
                        break;
                default:
                        return 1;
                }
        }
        if (optind + 1 != argc) {
                fprintf(stderr, "usage: query_dump [-g] [-u] [-2] [-n EPOCH] [-c] [-d] QUERY\n");
                return 1;
        }
        char *text = NULL;
        if (dirname) {
                if (imap_query_from_dirname(argv[optind], &text) < 0) {
                        fprintf(stderr, "EINVAL 0 bad directory name\n");
                        return 2;
                }
        } else {
                text = strdup(argv[optind]);
        }
        if (!text)
                return 1;
        struct imap_query *q;
        struct imap_query_err err;
        int r = imap_query_parse(text, strlen(text), now, &q, &err);
        free(text);
        if (r < 0) {
                fprintf(stderr, "%s %zu %s\n", r == -EINVAL ? "EINVAL" : "ERROR", err.pos,
                        err.reason);
                return 2;
        }
        struct imap_cmd cmd;
        imap_cmd_init(&cmd, false);
        r = imap_query_to_search(q, &caps, &cmd);
        if (r < 0) {
                fprintf(stderr, "%s\n", strerror(-r));
                imap_cmd_free(&cmd);
                imap_query_free(q);
                return r == -EOPNOTSUPP ? 3 : 1;
        }
        fwrite(cmd.buf, 1, cmd.len, stdout);
        putchar('\n');
        if (canon) {
                char *c = imap_query_canonical(q);
                printf("%s\n", c ? c : "(ENOMEM)");
                free(c);
        }
        imap_cmd_free(&cmd);
        imap_query_free(q);
        return 0;
}
