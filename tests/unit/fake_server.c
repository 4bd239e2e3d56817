/* The scripted fake IMAP server of the unit tests; see fake_server.h. */
#include "tests/unit/fake_server.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *fake_big;
size_t fake_big_len;

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
                if (strcmp(s->reply, "$ACCEPT") == 0) {
                        /* The connection breaks; the script goes on with the
                         * client's next connection (a reconnect). */
                        close(fd);
                        fd = accept(f->lfd, NULL, NULL);
                        if (fd < 0)
                                return NULL;
                        continue;
                }
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

void fake_start(struct fake *f, const struct step *script)
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

void fake_stop(struct fake *f)
{
        pthread_join(f->thread, NULL);
        close(f->lfd);
        ck_assert_msg(!f->failed, "%s", f->why);
}

struct imap_account fake_acct(unsigned port, const char *password, bool plaintext)
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

int open_plain(struct fake *f, const struct step *script, struct imap_account *a,
               struct imap_session **s)
{
        char err[256];
        fake_start(f, script);
        *a = fake_acct(f->port, "pw", true);
        return imap_session_open(a, s, err, sizeof(err));
}

struct imap_session *fake_open(struct fake *f, const struct step *script, struct imap_account *a)
{
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(f, script, a, &s), 0);
        return s;
}

void fake_finish(struct fake *f, struct imap_session *s)
{
        imap_session_free(s);
        fake_stop(f);
}
