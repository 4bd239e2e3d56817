/* The FETCH commands of the parts view (imap/ops_parts.c) against a scripted
 * fake server: every command a PEEK, answers matched by UID, section and
 * origin (a hostile origin is no data), literal8 for BINARY, item lists per
 * message. The fake server is test_session.c's. */
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
#include "imap/ops_parts.h"
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

static const char *fake_big; /* "$BIG": unused here */
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

static int open_plain(struct fake *f, const struct step *script, struct imap_account *a,
                      struct imap_session **s)
{
        char err[256];
        fake_start(f, script);
        *a = fake_acct(f->port, "pw", true);
        return imap_session_open(a, s, err, sizeof(err));
}

#define LOGIN_OK                                                                                   \
        {                                                                                          \
                "LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 BINARY] ok\r\n", 0                        \
        }

struct got {
        char data[256];
        size_t len;
        int calls;
};

static void on_bytes(void *ctx, const char *data, size_t len)
{
        struct got *g = ctx;
        memcpy(g->data, data, len < sizeof(g->data) ? len : sizeof(g->data));
        g->len = len;
        g->calls++;
}

START_TEST(test_section_range_binary_literal8)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"UID FETCH 7 (UID BINARY.PEEK[2]<65536.4>)", 0,
             "* 3 FETCH (UID 7 BINARY[2]<65536> ~{4}\r\na\r\nd)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct got g = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_fetch_section(s, 7, "2", true, 65536, 4, on_bytes, &g), 0);
        ck_assert_int_eq(g.calls, 1);
        ck_assert_uint_eq(g.len, 4);
        ck_assert_int_eq(memcmp(g.data, "a\r\nd", 4), 0);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_section_wrong_origin_or_section_is_no_data)
{
        /* A server answering another origin, another section or another UID
         * would put bytes in the wrong place: none of it is taken. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"UID FETCH 7 (UID BODY.PEEK[1.2]<100.3>)", 0,
             "* 3 FETCH (UID 7 BODY[1.2]<0> {3}\r\nxyz)\r\n"
             "* 3 FETCH (UID 7 BODY[1.20]<100> {3}\r\nxyz)\r\n"
             "* 4 FETCH (UID 8 BODY[1.2]<100> {3}\r\nxyz)\r\n$T OK done\r\n",
             0},
            {"UID FETCH 7 (UID BODY.PEEK[HEADER])", 0,
             "* 3 FETCH (UID 7 BODY[HEADER] {5}\r\nA: b\n)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct got g = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_fetch_section(s, 7, "1.2", false, 100, 3, on_bytes, &g), -ENOENT);
        ck_assert_int_eq(g.calls, 0);
        ck_assert_int_eq(imap_fetch_section(s, 7, "HEADER", false, 0, 0, on_bytes, &g), 0);
        ck_assert_uint_eq(g.len, 5);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_section_refused_is_an_error)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"UID FETCH 7 (UID BINARY.PEEK[2])", 0, "$T NO [UNKNOWN-CTE] can't decode\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct got g = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        int r = imap_fetch_section(s, 7, "2", true, 0, 0, on_bytes, &g);
        ck_assert_int_lt(r, 0);
        ck_assert_int_ne(r, -EIO); /* the session is fine */
        ck_assert(!imap_session_broken(s));
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

struct items {
        unsigned uids[8];
        int n;
        bool saw_size;
};

static void on_items(void *ctx, uint32_t uid, const struct imap_value *list)
{
        struct items *it = ctx;
        if (it->n < 8)
                it->uids[it->n++] = uid;
        if (imap_fetch_item(list, "BINARY.SIZE[2]"))
                it->saw_size = true;
}

START_TEST(test_items_per_message)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"UID FETCH 1:3,9 (UID BODYSTRUCTURE BINARY.SIZE[2])", 0,
             "* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1) "
             "BINARY.SIZE[2] 5)\r\n"
             "* 2 FETCH (BODYSTRUCTURE NIL)\r\n" /* no UID: not ours */
             "* 4 FETCH (UID 9 BODYSTRUCTURE NIL)\r\n$T OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct items it = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(
            imap_fetch_items(s, "1:3,9", "BODYSTRUCTURE BINARY.SIZE[2]", on_items, &it), 0);
        ck_assert_int_eq(it.n, 2);
        ck_assert_uint_eq(it.uids[0], 1);
        ck_assert_uint_eq(it.uids[1], 9);
        ck_assert(it.saw_size);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        (void)fake_big;
        (void)fake_big_len;
        Suite *s = suite_create("ops_parts");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_section_range_binary_literal8);
        tcase_add_test(tc, test_section_wrong_origin_or_section_is_no_data);
        tcase_add_test(tc, test_section_refused_is_an_error);
        tcase_add_test(tc, test_items_per_message);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
