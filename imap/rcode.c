#include "imap/rcode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "imap/conn.h"
#include "imap/log.h"

/* One row: a response code (NULL: any code, "": no code) and a piece of the
 * server's text (NULL: any text; matched without regard to case). The first
 * matching row wins, so the rows that look at the text come before the
 * code's general row. */
struct rcode_row {
        const char *code;
        const char *text;
        int err;
        bool backoff;
};

static const struct rcode_row rcode_table[] = {
    /* Throttling, whatever the code (Microsoft: "Request is throttled.
     * Suggested Backoff Time: 236 milliseconds"). */
    {NULL, "throttl", -EAGAIN, true},
    {"THROTTLED", NULL, -EAGAIN, true},
    /* Names: Dovecot says "[CANNOT] Mailbox name too long". */
    {"CANNOT", "too long", -ENAMETOOLONG, false},
    {"LIMIT", "name too long", -ENAMETOOLONG, false},
    {"", "name too long", -ENAMETOOLONG, false},
    /* Sizes: Dovecot's quota_max_mail_size answers "[LIMIT] Mail size is
     * larger than the maximum size allowed": one message too big, not a
     * server that wants us to slow down. */
    {"LIMIT", "size", -EFBIG, false},
    {"LIMIT", "too large", -EFBIG, false},
    {"LIMIT", "too big", -EFBIG, false},
    {"TOOBIG", NULL, -EFBIG, false},
    /* Every other limit (rates, counts): back off, and the write fails. */
    {"LIMIT", NULL, -ENOSPC, true},
    {"OVERQUOTA", NULL, -EDQUOT, false},
    {"UNAVAILABLE", NULL, -EAGAIN, true},
    {"NONEXISTENT", NULL, -ENOENT, false},
    {"TRYCREATE", NULL, -ENOENT, false},
    {"ALREADYEXISTS", NULL, -EEXIST, false},
    {"HASCHILDREN", NULL, -ENOTEMPTY, false},
    {"NOPERM", NULL, -EACCES, false},
    {"AUTHENTICATIONFAILED", NULL, -EACCES, false},
    {"AUTHORIZATIONFAILED", NULL, -EACCES, false},
    {"EXPIRED", NULL, -EACCES, false},
    {"PRIVACYREQUIRED", NULL, -EACCES, false},
    {"CONTACTADMIN", NULL, -EACCES, false},
    {"INUSE", NULL, -EBUSY, false},
    {"EXPUNGEISSUED", NULL, -ENOENT, false},
    {"CANNOT", NULL, -EPERM, false},
    {"CORRUPTION", NULL, -EIO, false},
    {"SERVERBUG", NULL, -EIO, false},
    {"CLIENTBUG", NULL, -EPROTO, false},
    /* Servers that answer without a code. Dovecot's STATUS and SELECT of a
     * mailbox that is gone: "NO Mailbox doesn't exist: X". */
    {"", "doesn't exist", -ENOENT, false},
    {"", "does not exist", -ENOENT, false},
    {"", "no such mailbox", -ENOENT, false},
    {"", "unknown mailbox", -ENOENT, false},
    {"", "already exists", -EEXIST, false},
    {"", "quota exceeded", -EDQUOT, false},
    {"", "over quota", -EDQUOT, false},
};

/* "... Suggested Backoff Time: 236 milliseconds" → 236; "... 2 seconds" →
 * 2000. 0 if the text names no wait. */
static int rcode_suggested_ms(const char *text)
{
        const char *p = strcasestr(text, "backoff time");
        if (!p)
                return 0;
        p += strlen("backoff time");
        while (*p == ':' || *p == ' ')
                p++;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0)
                return 0;
        while (*end == ' ')
                end++;
        bool secs = (*end == 's' || *end == 'S') && strncasecmp(end, "sec", 3) == 0;
        if (secs)
                v = v > 3600 ? 3600000 : v * 1000;
        return v > 3600000 ? 3600000 : (int)v;
}

struct imap_rcode_class imap_rcode_classify(const struct imap_result *res)
{
        struct imap_rcode_class c = {0, false, 0};
        if (res->status == IMAP_ST_OK)
                return c;
        c.err = -EPROTO;
        for (size_t i = 0; i < sizeof(rcode_table) / sizeof(rcode_table[0]); i++) {
                const struct rcode_row *row = &rcode_table[i];
                if (row->code && strcmp(row->code, res->code) != 0)
                        continue;
                if (row->text && !strcasestr(res->text, row->text))
                        continue;
                c.err = row->err;
                c.backoff = row->backoff;
                break;
        }
        if (c.backoff)
                c.suggested_ms = rcode_suggested_ms(res->text);
        return c;
}

int imap_result_errno(const char *what, const struct imap_result *res)
{
        if (res->status == IMAP_ST_OK)
                return 0;
        log_warn("%s failed: %s%s%s%s", what, res->code[0] ? "[" : "", res->code,
                 res->code[0] ? "] " : "", res->text);
        return imap_rcode_classify(res).err;
}

bool imap_result_backoff(const struct imap_result *res, int *suggested_ms)
{
        struct imap_rcode_class c = imap_rcode_classify(res);
        if (suggested_ms)
                *suggested_ms = c.backoff ? c.suggested_ms : 0;
        return c.backoff;
}

bool imap_errno_backoff(int err)
{
        return err == -EAGAIN || err == -ENOSPC;
}

int imap_backoff_ms(unsigned failures, int base_ms, int max_ms, int suggested_ms)
{
        long long ms = base_ms;
        for (unsigned i = 1; i < failures && ms < max_ms; i++)
                ms *= 2;
        if (ms > max_ms)
                ms = max_ms;
        if (suggested_ms > ms)
                ms = suggested_ms;
        return (int)ms;
}

struct imap_retry_entry {
        char *name;
        unsigned count;
        int64_t next_ms;
        UT_hash_handle hh;
};

bool imap_retry_due(const struct imap_retry *t, const char *name)
{
        struct imap_retry_entry *e;
        HASH_FIND_STR(t->head, name, e);
        return !e || imap_now_ms() >= e->next_ms;
}

int imap_retry_note(struct imap_retry *t, const char *name, int err, int base_ms, int max_ms,
                    bool *recovered)
{
        struct imap_retry_entry *e;
        HASH_FIND_STR(t->head, name, e);
        if (recovered)
                *recovered = false;
        if (err == 0 || err == -EIO) {
                if (e && err == 0) {
                        HASH_DEL(t->head, e);
                        free(e->name);
                        free(e);
                        if (recovered)
                                *recovered = true;
                }
                return 0;
        }
        if (!e) {
                e = calloc(1, sizeof(*e));
                if (!e || !(e->name = strdup(name))) {
                        free(e);
                        return base_ms;
                }
                HASH_ADD_KEYPTR(hh, t->head, e->name, strlen(e->name), e);
        }
        e->count++;
        int wait = imap_backoff_ms(e->count, base_ms, max_ms, 0);
        e->next_ms = imap_now_ms() + wait;
        return wait;
}

void imap_retry_clear(struct imap_retry *t)
{
        struct imap_retry_entry *e, *tmp;
        HASH_ITER(hh, t->head, e, tmp)
        {
                HASH_DEL(t->head, e);
                free(e->name);
                free(e);
        }
}
