/* Searches with a query's keys (imap/ops_search.c) against a scripted fake
 * server: UID SEARCH with and without ESEARCH, CHARSET and literals, X-GM-RAW
 * only with X-GM-EXT-1, and RFC 7377 MULTISEARCH (which Dovecot lacks). The
 * fake server is the one of test_session.c. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/ops_search.h"
#include "imap/query.h"
#include "imap/session.h"
#include "tests/unit/unit_main.h"

/* One step: wait for a client line containing expect (NULL: don't read),
 * or for exactly raw_len raw bytes; then send reply with "$T" replaced by the
 * tag of the last line read. reply NULL: close the connection. */
struct step {
        const char *expect;
        size_t raw_len;
        const char *reply;
        int stall_ms; /* sleep before replying */
};

/* A reply of "$BIG" sends these bytes as they are (a response longer than a
 * script line can hold, e.g. a SEARCH of 200,000 UIDs). */
static const char *fake_big;
static size_t fake_big_len;

struct fake {
        int lfd;
        unsigned port;
        const struct step *script;
        char log[8192]; /* everything the client sent */
        size_t loglen;
        bool failed;
        char why[256];
        pthread_t thread;
};

static ssize_t fake_read_line(int fd, char *buf, size_t cap)
{
        size_t n = 0;
        while (n + 1 < cap) {
                ssize_t r = read(fd, buf + n, 1);
                if (r <= 0)
                        return -1;
                n++;
                if (buf[n - 1] == '\n')
                        break;
        }
        buf[n] = '\0';
        return (ssize_t)n;
}

static void fake_log(struct fake *f, const char *b, size_t n)
{
        if (f->loglen + n < sizeof(f->log)) {
                memcpy(f->log + f->loglen, b, n);
                f->loglen += n;
                f->log[f->loglen] = '\0';
        }
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        int fd = accept(f->lfd, NULL, NULL);
        char line[4096], tag[32] = "";
        if (fd < 0)
                return NULL;
        for (const struct step *s = f->script; s->expect || s->raw_len || s->reply; s++) {
                if (s->raw_len) {
                        size_t got = 0;
                        while (got < s->raw_len) {
                                ssize_t r = read(fd, line + got, s->raw_len - got);
                                if (r <= 0)
                                        goto out;
                                got += (size_t)r;
                        }
                        fake_log(f, line, got);
                } else if (s->expect) {
                        ssize_t n = fake_read_line(fd, line, sizeof(line));
                        if (n < 0) {
                                /* A command the script waits for never came. */
                                f->failed = true;
                                snprintf(f->why, sizeof(f->why),
                                         "expected %.100s, got end of stream", s->expect);
                                goto out;
                        }
                        fake_log(f, line, (size_t)n);
                        if (!strstr(line, s->expect)) {
                                f->failed = true;
                                snprintf(f->why, sizeof(f->why), "expected %.100s, got %.100s",
                                         s->expect, line);
                                goto out;
                        }
                        sscanf(line, "%31s", tag);
                }
                if (s->stall_ms)
                        usleep((useconds_t)s->stall_ms * 1000);
                if (!s->reply)
                        goto out;
                if (strcmp(s->reply, "$BIG") == 0) {
                        for (size_t o = 0; o < fake_big_len;) {
                                ssize_t w = write(fd, fake_big + o, fake_big_len - o);
                                if (w <= 0)
                                        goto out;
                                o += (size_t)w;
                        }
                        continue;
                }
                char out[4096];
                size_t o = 0;
                for (const char *p = s->reply; *p && o + 40 < sizeof(out); p++) {
                        if (p[0] == '$' && p[1] == 'T') {
                                o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", tag);
                                p++;
                        } else {
                                out[o++] = *p;
                        }
                }
                if (write(fd, out, o) < 0)
                        goto out;
        }
        /* Script done: wait for the client to go away. */
        while (read(fd, line, sizeof(line)) > 0)
                ;
out:
        close(fd);
        return NULL;
}

static void fake_start(struct fake *f, const struct step *script)
{
        memset(f, 0, sizeof(*f));
        f->script = script;
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t sl = sizeof(sa);
        getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
        f->port = ntohs(sa.sin_port);
        ck_assert_int_eq(listen(f->lfd, 1), 0);
        pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
        pthread_join(f->thread, NULL);
        close(f->lfd);
        ck_assert_msg(!f->failed, "%s", f->why);
}

static struct imap_account fake_acct(unsigned port, const char *password, bool plaintext)
{
        return (struct imap_account){
            .host = "127.0.0.1",
            .port = port,
            .security = IMAP_SEC_STARTTLS,
            .allow_plaintext = plaintext,
            .user = "alice",
            .password = (char *)password,
            .timeout_ms = 2000,
            .max_literal = 1 << 20,
        };
}

#define GREETING "* OK [CAPABILITY IMAP4rev1] fake ready\r\n"

static struct imap_session *open_with(struct fake *f, const struct step *script,
                                      struct imap_account *a)
{
        char err[256];
        struct imap_session *s = NULL;
        fake_start(f, script);
        *a = fake_acct(f->port, "pw", true);
        ck_assert_int_eq(imap_session_open(a, &s, err, sizeof(err)), 0);
        return s;
}

static struct imap_query *parse(const char *text)
{
        struct imap_query *q = NULL;
        ck_assert_int_eq(imap_query_parse(text, strlen(text), 0, &q, NULL), 0);
        return q;
}

/* The UIDs a search reported, as "lo-hi lo-hi ..." */
struct got {
        char buf[512];
};

static void on_range(void *ctx, unsigned lo, unsigned hi)
{
        struct got *g = ctx;
        size_t o = strlen(g->buf);
        snprintf(g->buf + o, sizeof(g->buf) - o, "%s%u-%u", o ? " " : "", lo, hi);
}

static void on_multi(void *ctx, const char *mailbox, uint32_t uidvalidity, unsigned lo, unsigned hi)
{
        struct got *g = ctx;
        size_t o = strlen(g->buf);
        snprintf(g->buf + o, sizeof(g->buf) - o, "%s%s/%u:%u-%u", o ? " " : "", mailbox,
                 uidvalidity, lo, hi);
}

START_TEST(test_plain_search_without_esearch)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID SEARCH FROM \"alice\" TEXT \"invoice\"\r", 0,
             "* SEARCH 2 4 9\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("from:alice invoice");
        struct got g = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "2-2 4-4 9-9");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_esearch_with_charset_and_literal)
{
        /* "café" is 5 bytes of UTF-8: a synchronizing literal, after "+". */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH] ok\r\n", 0},
            {"A2 UID SEARCH RETURN (ALL) CHARSET UTF-8 SUBJECT {5}\r", 0, "+ go\r\n", 0},
            {NULL, 7, "* ESEARCH (TAG \"A2\") UID ALL 3:5,8\r\nA2 OK done\r\n", 0},
            {"A3 UID SEARCH RETURN (ALL) UNSEEN\r", 0,
             "* ESEARCH (TAG \"A3\") UID\r\n$T OK nothing\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("subject:café");
        struct got g = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "3-5 8-8");
        ck_assert(memmem(f.log, f.loglen, "café\r\n", 7) != NULL);
        imap_query_free(q);
        q = parse("is:unread");
        struct got g2 = {""};
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g2), 0);
        ck_assert_str_eq(g2.buf, "");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_gmail_only_with_x_gm_ext_1)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 NOOP", 0, "$T OK\r\n", 0}, /* the refused search sent nothing */
            {NULL, 0, NULL, 0},
        };
        static const struct step gm[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 X-GM-EXT-1] ok\r\n", 0},
            {"A2 UID SEARCH X-GM-RAW \"has:attachment\"\r", 0, "* SEARCH 7\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_query *q = parse("gmail:has:attachment");
        struct got g = {""};
        struct imap_session *s = open_with(&f, script, &a);
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), -EOPNOTSUPP);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_session_free(s);
        fake_stop(&f);
        s = open_with(&f, gm, &a);
        ck_assert_int_eq(imap_search_query(s, q, on_range, &g), 0);
        ck_assert_str_eq(g.buf, "7-7");
        imap_session_free(s);
        fake_stop(&f);
        imap_query_free(q);
}
END_TEST

START_TEST(test_multisearch)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH MULTISEARCH] ok\r\n", 0},
            {"A2 ESEARCH IN (personal) RETURN (ALL) FROM \"alice\"\r", 0,
             "* ESEARCH (TAG \"A2\" MAILBOX \"INBOX\" UIDVALIDITY 7) UID ALL 1:3,5\r\n"
             "* ESEARCH (TAG \"A2\" MAILBOX \"Work/a b\" UIDVALIDITY 9) UID ALL 4\r\n"
             "* ESEARCH (TAG \"A2\" MAILBOX \"Empty\" UIDVALIDITY 3) UID\r\n"
             "$T OK done\r\n",
             0},
            {"A3 ESEARCH IN (personal)", 0,
             "* ESEARCH (TAG \"A3\" UIDVALIDITY 7) UID ALL 1\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("from:alice");
        struct got g = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g), 0);
        ck_assert_str_eq(g.buf, "INBOX/7:1-3 INBOX/7:5-5 Work/a b/9:4-4");
        /* An answer that does not say which folder it is about is refused. */
        struct got g2 = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g2), -EPROTO);
        ck_assert_str_eq(g2.buf, "");
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_multisearch_needs_the_capability)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ESEARCH] ok\r\n", 0},
            {"A2 NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = open_with(&f, script, &a);
        struct imap_query *q = parse("x");
        struct got g = {""};
        ck_assert_int_eq(imap_multisearch(s, q, on_multi, &g), -EOPNOTSUPP);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_query_free(q);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        Suite *s = suite_create("search_ops");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_plain_search_without_esearch);
        tcase_add_test(tc, test_esearch_with_charset_and_literal);
        tcase_add_test(tc, test_gmail_only_with_x_gm_ext_1);
        tcase_add_test(tc, test_multisearch);
        tcase_add_test(tc, test_multisearch_needs_the_capability);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
