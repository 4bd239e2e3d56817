/* Command building: the only way user data reaches the wire is as a quoted
 * string or a literal whose length the server is told in advance, so no byte
 * of it can end the command or start another. */
#include <errno.h>
#include "imap/quote.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longer strings go as literals: some servers limit quoted strings, and a
 * literal costs no escaping. */
#define QUOTE_MAX 1024
#define CMD_INITIAL_CAP 256

void imap_cmd_init(struct imap_cmd *c, bool literal_plus)
{
        memset(c, 0, sizeof(*c));
        c->literal_plus = literal_plus;
        /* Allocated now so that buf is a valid NUL-terminated string even
         * for an empty command. */
        c->buf = malloc(CMD_INITIAL_CAP);
        if (c->buf) {
                c->cap = CMD_INITIAL_CAP;
                c->buf[0] = '\0';
        } else {
                c->oom = true;
        }
}

void imap_cmd_free(struct imap_cmd *c)
{
        free(c->buf);
        free(c->splits);
        c->buf = NULL;
        c->splits = NULL;
        c->len = c->cap = c->nsplits = 0;
}

/* Makes room for extra more bytes plus the terminating NUL. Once anything
 * fails the command stays broken: a command with a hole in it must never be
 * sent. */
static bool cmd_reserve(struct imap_cmd *c, size_t extra)
{
        if (c->oom)
                return false;
        if (extra > SIZE_MAX - c->len - 1) {
                c->oom = true;
                return false;
        }
        size_t need = c->len + extra + 1;
        if (need <= c->cap)
                return true;
        size_t cap = c->cap ? c->cap : CMD_INITIAL_CAP;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
                c->oom = true;
                return false;
        }
        c->buf = nb;
        c->cap = cap;
        return true;
}

static void cmd_append(struct imap_cmd *c, const char *s, size_t len)
{
        if (!cmd_reserve(c, len))
                return;
        if (len)
                memcpy(c->buf + c->len, s, len);
        c->len += len;
        c->buf[c->len] = '\0';
}

void imap_cmd_add(struct imap_cmd *c, const char *fmt, ...)
{
        va_list ap;

        if (!cmd_reserve(c, 0))
                return;
        va_start(ap, fmt);
        int n = vsnprintf(c->buf + c->len, c->cap - c->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
                c->oom = true;
                c->buf[c->len] = '\0';
                return;
        }
        if ((size_t)n >= c->cap - c->len) {
                if (!cmd_reserve(c, (size_t)n))
                        return;
                va_start(ap, fmt);
                vsnprintf(c->buf + c->len, c->cap - c->len, fmt, ap);
                va_end(ap);
        }
        c->len += (size_t)n;
}

bool imap_quotable(const char *s, size_t len)
{
        if (len > QUOTE_MAX)
                return false;
        /* RFC 3501 allows any 7-bit byte but CR, LF and NUL in a quoted
         * string; other control bytes are sent as literals too, because some
         * servers mangle them in quoted strings and a literal is always
         * exact. */
        for (size_t i = 0; i < len; i++) {
                unsigned char u = (unsigned char)s[i];
                if (u < 0x20 || u >= 0x7f)
                        return false;
        }
        return true;
}

static void cmd_quoted(struct imap_cmd *c, const char *s, size_t len)
{
        if (!cmd_reserve(c, 2 * len + 2))
                return;
        char *d = c->buf + c->len;
        *d++ = '"';
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '"' || s[i] == '\\')
                        *d++ = '\\';
                *d++ = s[i];
        }
        *d++ = '"';
        *d = '\0';
        c->len = (size_t)(d - c->buf);
}

/* Records that the session must wait for "+" after what was built so far. */
static void cmd_split(struct imap_cmd *c)
{
        size_t *ns = realloc(c->splits, (c->nsplits + 1) * sizeof(*ns));
        if (!ns) {
                c->oom = true;
                return;
        }
        c->splits = ns;
        c->splits[c->nsplits++] = c->len;
}

static void cmd_literal(struct imap_cmd *c, const char *s, size_t len)
{
        bool plus = c->literal_plus && (c->literal_minus_max == 0 || len <= c->literal_minus_max);
        imap_cmd_add(c, "{%zu%s}\r\n", len, plus ? "+" : "");
        if (c->oom)
                return;
        if (!plus)
                cmd_split(c);
        cmd_append(c, s, len);
}

void imap_cmd_await_continuation(struct imap_cmd *c)
{
        imap_cmd_add(c, "\r\n");
        if (!c->oom)
                cmd_split(c);
}

void imap_cmd_string(struct imap_cmd *c, const char *s, size_t len)
{
        if (c->oom)
                return;
        if (!s && len) {
                c->oom = true;
                return;
        }
        if (imap_quotable(s, len))
                cmd_quoted(c, s, len);
        else
                cmd_literal(c, s, len);
}

void imap_cmd_literal(struct imap_cmd *c, const char *s, size_t len)
{
        cmd_literal(c, s, len);
}

void imap_cmd_str(struct imap_cmd *c, const char *s)
{
        /* A missing string is a caller bug; sending "" in its place could
         * act on the wrong mailbox, so the command is refused instead. */
        if (!s) {
                c->oom = true;
                return;
        }
        imap_cmd_string(c, s, strlen(s));
}

static int uid_cmp(const void *a, const void *b)
{
        unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
        return (x > y) - (x < y);
}

/* Appends like snprintf: copies what fits, always counts. */
static void uidset_put(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
        if (*pos + 1 < cap) {
                size_t room = cap - 1 - *pos;
                memcpy(out + *pos, s, len < room ? len : room);
        }
        *pos += len;
}

size_t imap_uidset_format(unsigned *uids, size_t n, char *out, size_t cap)
{
        size_t pos = 0, m = 0;

        if (n > 1)
                qsort(uids, n, sizeof(*uids), uid_cmp);
        for (size_t i = 0; i < n; i++)
                if (m == 0 || uids[i] != uids[m - 1])
                        uids[m++] = uids[i];
        for (size_t i = 0; i < m;) {
                size_t j = i;
                while (j + 1 < m && uids[j + 1] - uids[j] == 1)
                        j++;
                char tmp[32];
                int k = j == i
                            ? snprintf(tmp, sizeof(tmp), "%s%u", i ? "," : "", uids[i])
                            : snprintf(tmp, sizeof(tmp), "%s%u:%u", i ? "," : "", uids[i], uids[j]);
                uidset_put(out, cap, &pos, tmp, (size_t)k);
                i = j + 1;
        }
        if (cap)
                out[pos < cap ? pos : cap - 1] = '\0';
        return pos;
}

static int uidset_number(const char **p, const char *end, unsigned *out)
{
        const char *q = *p;
        uint64_t v = 0;
        if (q >= end || *q < '0' || *q > '9')
                return -EPROTO;
        while (q < end && *q >= '0' && *q <= '9') {
                v = v * 10 + (uint64_t)(*q++ - '0');
                if (v > UINT32_MAX)
                        return -EPROTO;
        }
        *out = (unsigned)v;
        *p = q;
        return 0;
}

int imap_uidset_parse(const char *s, size_t len, void (*fn)(void *ctx, unsigned lo, unsigned hi),
                      void *ctx)
{
        const char *p = s, *end = s + len;
        if (len == 0)
                return -EPROTO;
        while (p < end) {
                unsigned lo, hi;
                if (uidset_number(&p, end, &lo) < 0)
                        return -EPROTO;
                hi = lo;
                if (p < end && *p == ':') {
                        p++;
                        if (uidset_number(&p, end, &hi) < 0)
                                return -EPROTO;
                }
                if (p < end && *p != ',')
                        return -EPROTO;
                if (p < end)
                        p++;
                else if (p[-1] == ',')
                        return -EPROTO;
                fn(ctx, lo < hi ? lo : hi, lo < hi ? hi : lo);
        }
        return 0;
}
