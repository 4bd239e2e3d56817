/* -o exclude=PATTERN[:PATTERN...]: folders hidden from the tree (Gmail's
 * "[Gmail]/All Mail" holds every message once more). */
#ifndef IMAPFS_CACHE_EXCLUDE_H
#define IMAPFS_CACHE_EXCLUDE_H

#include <stdbool.h>

/* True if the folder raw (the server's modified UTF-7 name, hierarchy
 * delimiter delim) or one of its parents matches one of patterns. A pattern
 * is a glob on the folder's UTF-8 name with '/' between levels: '*' is any
 * run of characters within a level, '?' one character (not '/'), '\' takes
 * the next character literally (also ':', which separates patterns); every
 * other character, '[' included, is itself. NULL or "" matches nothing. */
bool exclude_match(const char *patterns, const char *raw, char delim);

/* False if patterns holds no pattern at all ("", ":", a trailing '\'). */
bool exclude_valid(const char *patterns);

#endif
