/* File names: what a message file and a mailbox directory are called.
 *
 * A message name must never change while the message exists (the kernel and
 * users hold on to it), so it depends only on its inputs: dates in UTC, no
 * locale, no TZ. */
#include "fs/names.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/date.h"
#include "imap/digits.h"
#include "imap/mime_name.h"
#include "imap/rfc2047.h"
#include "imap/utf7.h"

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
        /* Cleaned as part file names are (imap_name_sanitize), cut to what
         * fits between the day and the suffix. */
        char *subject = NULL;
        if (decoded) {
                subject = imap_name_sanitize(decoded, strlen(decoded), cap);
                free(decoded);
                if (!subject)
                        return NULL;
        }
        char *name = malloc(NAME_MAX_BYTES + 1);
        if (!name) {
                free(subject);
                return NULL;
        }
        memcpy(name, day, prefix_len - 1);
        name[prefix_len - 1] = ' ';
        size_t o = prefix_len;
        const char *shown = subject && subject[0] ? subject : NO_SUBJECT;
        size_t n = strlen(shown);
        memcpy(name + o, shown, n);
        o += n;
        memcpy(name + o, suffix, (size_t)slen + 1);
        free(subject);
        return name;
}

char *names_message_uid(unsigned uid)
{
        char buf[32];
        snprintf(buf, sizeof buf, "%u.eml", uid);
        return strdup(buf);
}

/* Whole components shown with an escaped dot: "." and ".." can't be
 * directory names, and ".parts" and ".search" are the virtual directories
 * every folder has (issues 8 and 9), so a mailbox of that name must not hide
 * behind them. Table order doesn't matter: each entry is matched whole. */
static const struct {
        const char *name, *shown;
} names_reserved[] = {
    {"", "%00"}, {".", "%2E"}, {"..", "%2E%2E"}, {".parts", "%2Eparts"}, {".search", "%2Esearch"},
};
#define NAMES_NRESERVED (sizeof names_reserved / sizeof names_reserved[0])

/* "%XX" with two hex digits at s: the only spelling that is an escape. */
static bool is_escape_at(const char *s)
{
        return s[0] == '%' && imap_hex_value((unsigned char)s[1]) >= 0 &&
               imap_hex_value((unsigned char)s[2]) >= 0;
}

/* Bytes escaped only in a server spelling that isn't modified UTF-7. Every
 * such spelling holds one (a '&' that starts no valid run, a control or an
 * 8-bit byte), so its directory name holds an escape that no decoded name's
 * has: raw "a&b" (shown "a%26b") can't collide with "a&-b" (shown "a&b"). */
static bool is_raw_only(unsigned char c)
{
        return c == '&' || c < 0x20 || c == 0x7f || c >= 0x80;
}

char *names_escape_component(const char *s, bool raw)
{
        for (size_t i = 0; i < NAMES_NRESERVED; i++)
                if (strcmp(s, names_reserved[i].name) == 0)
                        return strdup(names_reserved[i].shown);
        size_t len = strlen(s);
        if (len > (SIZE_MAX - 1) / 3)
                return NULL;
        char *out = malloc(len * 3 + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if ((c == '%' && is_escape_at(s + i)) || c == '/' || (raw && is_raw_only(c)))
                        o += (size_t)sprintf(out + o, "%%%02X", c);
                else
                        out[o++] = (char)c;
        }
        out[o] = '\0';
        return out;
}

/* Decodes every "%XX", then insists that escaping the result gives s back:
 * so each name is shown one way, and "%41", "%2f" or "a%2Eb" are refused
 * instead of aliasing "A", "/" or "a.b". */
int names_unescape_component(const char *s, char **out, bool *raw)
{
        *out = NULL;
        *raw = false;
        if (strcmp(s, "%00") == 0) {
                *out = strdup("");
                return *out ? 0 : -ENOMEM;
        }
        size_t len = strlen(s);
        char *dec = malloc(len + 1);
        if (!dec)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                if (!is_escape_at(s + i)) {
                        dec[o++] = s[i];
                        continue;
                }
                unsigned char c = (unsigned char)(imap_hex_value((unsigned char)s[i + 1]) * 16 +
                                                  imap_hex_value((unsigned char)s[i + 2]));
                if (c == 0) {
                        free(dec);
                        return -EINVAL; /* a NUL can't be in a mailbox name */
                }
                *raw = *raw || is_raw_only(c);
                dec[o++] = (char)c;
                i += 2;
        }
        dec[o] = '\0';
        char *check = names_escape_component(dec, *raw);
        if (!check) {
                free(dec);
                return -ENOMEM;
        }
        bool same = strcmp(check, s) == 0;
        free(check);
        if (!same) {
                free(dec);
                return -EINVAL;
        }
        *out = dec;
        return 0;
}

char *names_dir_from_server(const char *comp)
{
        char *utf8 = imap_utf7_decode(comp, strlen(comp));
        char *dir = names_escape_component(utf8 ? utf8 : comp, utf8 == NULL);
        free(utf8);
        return dir;
}

int names_server_from_dir(const char *name, char delim, char **out)
{
        char *comp;
        bool raw;
        *out = NULL;
        int r = names_unescape_component(name, &comp, &raw);
        if (r < 0)
                return r;
        /* Checked before encoding: in modified UTF-7 a delimiter such as ','
         * could be a base64 digit. */
        if (delim && strchr(comp, delim)) {
                free(comp);
                return -EINVAL;
        }
        if (raw) {
                /* The server's own spelling: only if it is not modified UTF-7,
                 * else that mailbox is shown decoded and this is an alias. */
                char *utf8 = imap_utf7_decode(comp, strlen(comp));
                if (utf8) {
                        free(utf8);
                        free(comp);
                        return -EINVAL;
                }
                *out = comp;
                return 0;
        }
        /* The encoder takes any UTF-8 without NUL: NULL here means the name
         * isn't UTF-8 (or ENOMEM, which then reads as EINVAL; harmless). */
        *out = imap_utf7_encode(comp, strlen(comp));
        free(comp);
        return *out ? 0 : -EINVAL;
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
