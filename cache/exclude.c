#include "cache/exclude.h"

#include <stdlib.h>
#include <string.h>

#include "imap/utf7.h"

/* Bytes of the UTF-8 character at s (1 for a stray byte). */
static size_t exclude_charlen(const char *s)
{
        unsigned char c = (unsigned char)*s;
        size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        for (size_t i = 1; i < n; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        return 1;
        return n;
}

/* Pattern p (up to an unescaped ':' or its end) against all of s. */
static bool exclude_glob(const char *p, const char *s)
{
        for (;;) {
                char c = *p;
                if (c == '\0' || c == ':')
                        return *s == '\0';
                if (c == '*') {
                        while (*p == '*')
                                p++;
                        for (;;) {
                                if (exclude_glob(p, s))
                                        return true;
                                if (!*s || *s == '/')
                                        return false;
                                s += exclude_charlen(s);
                        }
                }
                if (c == '?') {
                        if (!*s || *s == '/')
                                return false;
                        s += exclude_charlen(s);
                        p++;
                        continue;
                }
                if (c == '\\' && p[1])
                        c = *++p;
                if (*s != c)
                        return false;
                p++;
                s++;
        }
}

/* The pattern after the one at p, or NULL. */
static const char *exclude_next(const char *p)
{
        for (; *p && *p != ':'; p++)
                if (*p == '\\' && p[1])
                        p++;
        return *p == ':' ? p + 1 : NULL;
}

bool exclude_valid(const char *patterns)
{
        for (const char *p = patterns; p; p = exclude_next(p)) {
                if (*p && *p != ':' && !(p[0] == '\\' && !p[1]))
                        return true;
        }
        return false;
}

bool exclude_match(const char *patterns, const char *raw, char delim)
{
        if (!patterns || !*patterns)
                return false;
        char *name = imap_utf7_decode(raw, strlen(raw));
        if (!name)
                name = strdup(raw);
        if (!name)
                return false;
        if (delim && delim != '/')
                for (char *q = name; *q; q++)
                        if (*q == delim)
                                *q = '/';
        bool hit = false;
        for (const char *p = patterns; p && !hit; p = exclude_next(p)) {
                if (!*p || *p == ':')
                        continue;
                /* The folder itself, then each of its parents. */
                for (size_t end = strlen(name);;) {
                        char save = name[end];
                        name[end] = '\0';
                        hit = exclude_glob(p, name);
                        name[end] = save;
                        const char *slash = memrchr(name, '/', end);
                        if (hit || !slash)
                                break;
                        end = (size_t)(slash - name);
                }
        }
        free(name);
        return hit;
}
