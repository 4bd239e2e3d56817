/* File names: what a message file and a mailbox directory are called.
 *
 * A message name must never change while the message exists (the kernel and
 * users hold on to it), so it depends only on its inputs: dates in UTC, no
 * locale, no TZ. */
#include "fs/names.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/date.h"
#include "imap/rfc2047.h"

#define NO_SUBJECT "(no subject)"

/* "YYYY-MM-DD" of t in UTC. */
static void format_day(time_t t, char *out, size_t cap)
{
        struct tm tm;
        if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
                snprintf(out, cap, "0000-00-00");
                return;
        }
        snprintf(out, cap, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Decodes the UTF-8 character at s; returns its length (1 for a stray byte,
 * which the caller drops: the input comes from imap_rfc2047_decode and is
 * valid, this only keeps a bug there from becoming a bad name). */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
        unsigned char b = s[0];
        size_t n = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
        if (n == 0 || n > len) {
                *cp = UINT32_MAX;
                return 1;
        }
        uint32_t c = n == 1 ? b : b & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80) {
                        *cp = UINT32_MAX;
                        return 1;
                }
                c = (c << 6) | (s[i] & 0x3f);
        }
        *cp = c;
        return n;
}

static bool is_space(uint32_t c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
               c == 0x2028 || c == 0x2029;
}

/* C0, DEL and C1: invisible at best, terminal escapes at worst. */
static bool is_control(uint32_t c)
{
        return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == UINT32_MAX;
}

/* Writes the cleaned subject into out (at most cap bytes, no NUL): whitespace
 * runs become one space, leading and trailing space is dropped, controls are
 * dropped, '/' becomes '_'. Stops at the first character that doesn't fit, so
 * a cut never skips text in the middle. Returns the length written. */
static size_t clean_subject(const char *s, char *out, size_t cap)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t len = strlen(s), o = 0;
        bool space = false;
        for (size_t i = 0; i < len;) {
                uint32_t c;
                size_t n = utf8_next(u + i, len - i, &c);
                const char *bytes = s + i;
                i += n;
                if (is_space(c)) {
                        space = o > 0;
                        continue;
                }
                if (is_control(c))
                        continue;
                if (c == '/')
                        bytes = "_";
                if (o + space + n > cap)
                        break;
                if (space)
                        out[o++] = ' ';
                memcpy(out + o, bytes, n);
                o += n;
                space = false;
        }
        return o;
}

char *names_message(unsigned uid, const char *date_hdr, const char *subject_hdr,
                    time_t internaldate)
{
        time_t t = internaldate, parsed;
        if (date_hdr && imap_date_parse_rfc5322(date_hdr, strlen(date_hdr), &parsed))
                t = parsed;
        char day[32], suffix[32]; /* day: room for any int, to please -Wformat-truncation */
        format_day(t, day, sizeof day);
        int slen = snprintf(suffix, sizeof suffix, " [%u].eml", uid);
        size_t prefix_len = strlen(day) + 1;
        size_t cap = NAME_MAX_BYTES - prefix_len - (size_t)slen;

        char *decoded = NULL;
        if (subject_hdr) {
                decoded = imap_rfc2047_decode(subject_hdr, strlen(subject_hdr));
                if (!decoded)
                        return NULL;
        }
        char *name = malloc(NAME_MAX_BYTES + 1);
        if (!name) {
                free(decoded);
                return NULL;
        }
        memcpy(name, day, prefix_len - 1);
        name[prefix_len - 1] = ' ';
        size_t o = prefix_len;
        size_t n = decoded ? clean_subject(decoded, name + o, cap) : 0;
        if (n == 0) {
                memcpy(name + o, NO_SUBJECT, strlen(NO_SUBJECT));
                n = strlen(NO_SUBJECT);
        }
        o += n;
        memcpy(name + o, suffix, (size_t)slen + 1);
        free(decoded);
        return name;
}

char *names_message_uid(unsigned uid)
{
        char buf[32];
        snprintf(buf, sizeof buf, "%u.eml", uid);
        return strdup(buf);
}

char *names_escape_component(const char *s)
{
        if (s[0] == '\0')
                return strdup("%");
        if (strcmp(s, ".") == 0)
                return strdup("%2E");
        if (strcmp(s, "..") == 0)
                return strdup("%2E%2E");
        size_t len = strlen(s);
        if (len > (SIZE_MAX - 1) / 3)
                return NULL;
        char *out = malloc(len * 3 + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        memcpy(out + o, "%25", 3), o += 3;
                } else if (s[i] == '/') {
                        memcpy(out + o, "%2F", 3), o += 3;
                } else {
                        out[o++] = s[i];
                }
        }
        out[o] = '\0';
        return out;
}

/* Decodes every escape the encoder can write, then insists that encoding the
 * result gives s back: so each mailbox has exactly one directory name, and
 * "a%2Eb" or "%2f" are refused instead of aliasing "a.b" or "/". */
char *names_unescape_component(const char *s)
{
        if (strcmp(s, "%") == 0)
                return strdup("");
        size_t len = strlen(s);
        char *out = malloc(len + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] != '%') {
                        out[o++] = s[i];
                        continue;
                }
                if (len - i < 3 || s[i + 1] != '2')
                        goto malformed;
                char c = s[i + 2] == '5' ? '%' : s[i + 2] == 'F' ? '/' : s[i + 2] == 'E' ? '.' : 0;
                if (!c)
                        goto malformed;
                out[o++] = c;
                i += 2;
        }
        out[o] = '\0';
        char *check = names_escape_component(out);
        bool same = check && strcmp(check, s) == 0;
        free(check);
        if (same)
                return out;
malformed:
        free(out);
        return NULL;
}

char *names_message_reuid(const char *name, unsigned old_uid, unsigned new_uid)
{
        char old_suffix[32], new_suffix[32];
        size_t len = strlen(name);
        bool bare = false;

        snprintf(old_suffix, sizeof(old_suffix), " [%u].eml", old_uid);
        size_t ol = strlen(old_suffix);
        if (len < ol || strcmp(name + len - ol, old_suffix) != 0) {
                snprintf(old_suffix, sizeof(old_suffix), "%u.eml", old_uid);
                if (strcmp(name, old_suffix) != 0)
                        return NULL;
                bare = true;
                ol = len;
        }
        snprintf(new_suffix, sizeof(new_suffix), bare ? "%u.eml" : " [%u].eml", new_uid);
        size_t nl = strlen(new_suffix);
        if (len - ol + nl > NAME_MAX_BYTES)
                return NULL;
        char *out = malloc(len - ol + nl + 1);
        if (!out)
                return NULL;
        memcpy(out, name, len - ol);
        memcpy(out + len - ol, new_suffix, nl + 1);
        return out;
}
