#include "imap/rcode.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        imap_throttle_note(res); /* a back-off answer: fewer new connections too */
        return imap_rcode_classify(res).err;
}

bool imap_result_backoff(const struct imap_result *res, int *suggested_ms)
{
        struct imap_rcode_class c = imap_rcode_classify(res);
        if (suggested_ms)
                *suggested_ms = c.backoff ? c.suggested_ms : 0;
        if (c.backoff)
                imap_throttle_note(res);
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

/* The gate (see rcode.h): one per process, shared by the pool's sessions,
 * live sync's and the first one at mount. */
#define THROTTLE_BASE_MS 1000
#define THROTTLE_MAX_MS 60000
/* An answer or a BYE counts as "again" within this long of the one before. */
#define THROTTLE_WINDOW_MS 60000

static struct {
        pthread_mutex_t mu;
        int64_t until;    /* no new connection before this (monotonic ms) */
        unsigned row;     /* back-off answers in a row */
        int64_t last_row; /* when the last one came */
        unsigned byes;    /* BYEs in a row */
        int64_t last_bye; /* when the last one came */
        /* Connections begun so far, and that count at the last BYE: a BYE
         * is "again" only on a connection opened after the one before
         * (a restart that drops four sessions at once is one event). */
        unsigned long opened, opened_at_bye;
        char why[256]; /* the server's words, for the log */
} throttle = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void throttle_close(int wait_ms, const struct imap_result *res)
{
        int64_t now = imap_now_ms();
        bool was_open = throttle.until <= now;
        if (now + wait_ms <= throttle.until)
                return;
        throttle.until = now + wait_ms;
        snprintf(throttle.why, sizeof(throttle.why), "%s%s%.32s%s%.200s",
                 res->status == IMAP_ST_BYE ? "BYE " : "", res->code[0] ? "[" : "", res->code,
                 res->code[0] ? "] " : "", res->text);
        /* One line when the gate closes, not one per answer of a burst (a
         * pipelined round of STATUS all throttled). */
        if (was_open)
                log_warn("server wants a pause (%s): no new connection for %d ms", throttle.why,
                         wait_ms);
        else
                log_dbg("server wants a pause (%s): no new connection for %d ms", throttle.why,
                        wait_ms);
}

void imap_throttle_note(const struct imap_result *res)
{
        struct imap_rcode_class c = imap_rcode_classify(res);
        if (!c.backoff)
                return;
        int64_t now = imap_now_ms();
        pthread_mutex_lock(&throttle.mu);
        /* In a row: each within the window of the one before, and after the
         * last pause ended (answers to commands sent together are one event). */
        if (throttle.row == 0 || now - throttle.last_row >= THROTTLE_WINDOW_MS)
                throttle.row = 1;
        else if (now >= throttle.until)
                throttle.row++;
        throttle.last_row = now;
        throttle_close(
            imap_backoff_ms(throttle.row, THROTTLE_BASE_MS, THROTTLE_MAX_MS, c.suggested_ms), res);
        pthread_mutex_unlock(&throttle.mu);
}

void imap_throttle_bye(const struct imap_result *res, bool fresh)
{
        struct imap_rcode_class c = imap_rcode_classify(res);
        int64_t now = imap_now_ms();
        pthread_mutex_lock(&throttle.mu);
        bool again = throttle.byes > 0 && now - throttle.last_bye < THROTTLE_WINDOW_MS;
        if (!fresh && !c.backoff)
                throttle.byes = 0; /* a connection that worked: no storm */
        else if (!again)
                throttle.byes = 1;
        else if (throttle.opened != throttle.opened_at_bye)
                throttle.byes++;
        throttle.last_bye = now;
        throttle.opened_at_bye = throttle.opened;
        if (c.backoff || throttle.byes > 1) {
                unsigned n = c.backoff ? throttle.byes : throttle.byes - 1;
                throttle_close(
                    imap_backoff_ms(n ? n : 1, THROTTLE_BASE_MS, THROTTLE_MAX_MS, c.suggested_ms),
                    res);
        }
        pthread_mutex_unlock(&throttle.mu);
}

int imap_throttle_left_ms(void)
{
        pthread_mutex_lock(&throttle.mu);
        int64_t left = throttle.until - imap_now_ms();
        pthread_mutex_unlock(&throttle.mu);
        return left > 0 ? (int)left : 0;
}

int imap_throttle_wait(int64_t deadline, char *err, size_t errlen)
{
        pthread_mutex_lock(&throttle.mu);
        int64_t until = throttle.until;
        char why[sizeof(throttle.why)];
        memcpy(why, throttle.why, sizeof(why));
        if (until <= deadline)
                throttle.opened++; /* this caller will connect */
        pthread_mutex_unlock(&throttle.mu);
        int64_t now = imap_now_ms();
        if (until > deadline) {
                snprintf(err, errlen, "server wants a pause (%s): next connection in %lld ms", why,
                         (long long)(until - now));
                return -EAGAIN;
        }
        if (until <= now)
                return 0;
        log_info("waiting %lld ms before connecting, as the server asked (%s)",
                 (long long)(until - now), why);
        while ((now = imap_now_ms()) < until) {
                int64_t left = until - now;
                struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000};
                nanosleep(&ts, NULL);
        }
        return 0;
}

void imap_throttle_reset(void)
{
        pthread_mutex_lock(&throttle.mu);
        throttle.until = 0;
        throttle.row = throttle.byes = 0;
        throttle.last_bye = 0;
        throttle.opened = throttle.opened_at_bye = 0;
        throttle.why[0] = '\0';
        pthread_mutex_unlock(&throttle.mu);
}
