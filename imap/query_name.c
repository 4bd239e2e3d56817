/* A query as a directory name: a path component can't hold '/', so it is
 * written "%2F", with the same escape rule as folder names (README
 * "Folders"): "%XX" with two hex digits is an escape, any other '%' stands
 * for itself. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/query.h"

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static bool escape_at(const char *s)
{
        return s[0] == '%' && hex_value(s[1]) >= 0 && hex_value(s[2]) >= 0;
}

int imap_query_from_dirname(const char *name, char **out)
{
        size_t len = strlen(name);
        char *q = malloc(len + 1);
        *out = NULL;
        if (!q)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (!escape_at(name + i)) {
                        q[o++] = name[i];
                        continue;
                }
                int c = hex_value(name[i + 1]) * 16 + hex_value(name[i + 2]);
                if (c == 0) {
                        free(q);
                        return -EINVAL;
                }
                q[o++] = (char)c;
                i += 2;
        }
        q[o] = '\0';
        *out = q;
        return 0;
}

char *imap_query_to_dirname(const char *text)
{
        size_t len = strlen(text);
        if (len == 0 || len > (SIZE_MAX - 1) / 3)
                return NULL;
        char *d = malloc(3 * len + 1);
        if (!d)
                return NULL;
        size_t o = 0;
        bool dots = strcmp(text, ".") == 0 || strcmp(text, "..") == 0;
        for (size_t i = 0; i < len; i++) {
                const char *esc = NULL;
                if (text[i] == '/')
                        esc = "%2F";
                else if (escape_at(text + i))
                        esc = "%25";
                else if (dots)
                        esc = "%2E";
                if (esc) {
                        memcpy(d + o, esc, 3);
                        o += 3;
                } else {
                        d[o++] = text[i];
                }
        }
        d[o] = '\0';
        return d;
}
