/* Sessions against a scripted fake server on 127.0.0.1: login with literals,
 * STARTTLS refusal, deadlines, BYE, unsolicited responses, redaction. The
 * server is a thread that reads the client's lines and answers from a script,
 * so every byte the session sees is known. */
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
#include "imap/ops_write.h"
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
                        if (n < 0)
                                goto out;
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

#define GREETING "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n"

START_TEST(test_refuses_without_starttls)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", false);
        struct imap_session *s = NULL;
        char err[256];
        int r = imap_session_open(&a, &s, err, sizeof(err));
        ck_assert_int_eq(r, -EPERM);
        ck_assert_ptr_null(s);
        ck_assert_ptr_nonnull(strstr(err, "STARTTLS"));
        fake_stop(&f);
        ck_assert_ptr_null(strstr(f.log, "LOGIN")); /* the password never left */
}
END_TEST

START_TEST(test_refuses_preauth_before_starttls)
{
        /* A man in the middle can answer PREAUTH to skip STARTTLS. */
        static const struct step script[] = {
            {NULL, 0, "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", false);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), -EPERM);
        ck_assert_ptr_nonnull(strstr(err, "PREAUTH"));
        fake_stop(&f);
}
END_TEST

START_TEST(test_authenticate_plain_without_sasl_ir)
{
        /* LOGINDISABLED: AUTHENTICATE PLAIN; no SASL-IR: the response waits
         * for the server's "+". base64("\0alice\0pw") = AGFsaWNlAHB3 */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi\r\n", 0},
            {"AUTHENTICATE PLAIN\r", 0, "+ \r\n", 0},
            {"AGFsaWNlAHB3", 0, "A1 OK [CAPABILITY IMAP4rev1] in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_login_quoted_then_capability)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN \"alice\" \"p\\\\w\\\"d\"", 0,
             "$T OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS MOVE] hi\r\n", 0},
            {"NOOP", 0, "* 3 EXISTS\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "p\\w\"d", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert(imap_session_caps(s)->uidplus);
        ck_assert(imap_session_caps(s)->move);
        ck_assert(imap_session_caps(s)->literal_plus);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_login_synchronizing_literal)
{
        /* A password with CR LF can't be quoted: it must go as a literal, and
         * without LITERAL+ the client must wait for "+" before sending it. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN \"alice\" {9}", 0, "+ go ahead\r\n", 0},
            {NULL, 11, "$T OK logged in\r\n", 0},
            {"CAPABILITY", 0, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "a\r\nB OK x", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_ptr_nonnull(strstr(f.log, "{9}\r\na\r\nB OK x\r\n"));
}
END_TEST

START_TEST(test_login_refused)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "wrong", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), -EACCES);
        ck_assert_ptr_nonnull(strstr(err, "Authentication failed"));
        ck_assert_ptr_null(strstr(err, "wrong"));
        fake_stop(&f);
}
END_TEST

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
                "LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0                               \
        }

START_TEST(test_deadline_breaks_session)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"NOOP", 0, "$T OK too late\r\n", 1500}, /* answers after the deadline */
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        a.timeout_ms = 300;
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(imap_noop(s), -EIO);
        int64_t took = imap_now_ms() - t0;
        ck_assert_int_ge(took, 250);
        ck_assert_int_lt(took, 2000);
        ck_assert(imap_session_broken(s));
        ck_assert_int_eq(imap_noop(s), -EIO); /* fails at once from now on */
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_bye_breaks_session)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"NOOP", 0, "* BYE server shutting down\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_noop(s), -EIO);
        ck_assert(imap_session_broken(s));
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

struct events {
        int exists, expunge, fetch, changed;
        char mailbox[32];
};

static void on_event(void *ctx, const struct imap_event *ev)
{
        struct events *e = ctx;
        snprintf(e->mailbox, sizeof(e->mailbox), "%s", ev->mailbox ? ev->mailbox : "");
        if (ev->kind == IMAP_EV_EXISTS)
                e->exists = (int)ev->n;
        else if (ev->kind == IMAP_EV_EXPUNGE)
                e->expunge = (int)ev->n;
        else if (ev->kind == IMAP_EV_FETCH)
                e->fetch++;
        else if (ev->kind == IMAP_EV_CHANGED)
                e->changed++;
}

START_TEST(test_select_and_unsolicited_events)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"SELECT \"Work\"", 0,
             "* FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 77] x\r\n"
             "* OK [UIDNEXT 9] x\r\n$T OK [READ-WRITE] done\r\n",
             0},
            {"UID FETCH 5 (UID BODY.PEEK[]<0.10>)", 0,
             "* 4 EXPUNGE\r\n* 1 FETCH (FLAGS (\\Seen))\r\n"
             "* 2 FETCH (UID 5 BODY[]<0> {10}\r\n0123\r\n6789)\r\n* 3 EXISTS\r\n$T OK\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct events ev = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Work", &si), 0);
        ck_assert_uint_eq(si.uidvalidity, 77);
        ck_assert_uint_eq(si.uidnext, 9);
        ck_assert_uint_eq(si.exists, 2);
        ck_assert_int_eq(ev.exists, 0); /* SELECT's own EXISTS is data, not an event */
        /* Selecting it again costs nothing. */
        ck_assert_int_eq(imap_select(s, "Work", &si), 0);
        char buf[10];
        size_t got = 0;
        ck_assert_int_eq(imap_fetch_range(s, 5, 0, sizeof(buf), buf, &got), 0);
        ck_assert_uint_eq(got, 10);
        ck_assert(memcmp(buf, "0123\r\n6789", 10) == 0);
        ck_assert_int_eq(ev.expunge, 4);
        ck_assert_int_eq(ev.exists, 3);
        ck_assert_int_eq(ev.fetch, 1);
        ck_assert_str_eq(ev.mailbox, "Work");
        ck_assert_uint_eq(imap_session_sel_info(s)->exists, 3);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_untagged_data_keeps_selection_current)
{
        /* A cat's UID FETCH hears another client's flag change (sent along
         * with the bytes), a delivery and a new HIGHESTMODSEQ: the bytes are
         * the command's, the rest are events, and the remembered SELECT
         * follows (UIDNEXT at least one more). */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"SELECT \"Work\"", 0,
             "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 10] x\r\n"
             "* OK [HIGHESTMODSEQ 50] x\r\n$T OK [READ-WRITE] done\r\n",
             0},
            {"UID FETCH 5 (UID BODY.PEEK[]<0.4>)", 0,
             "* 2 FETCH (UID 5 BODY[]<0> {4}\r\nabcd FLAGS (\\Flagged) MODSEQ (60))\r\n"
             "* 4 EXISTS\r\n* OK [HIGHESTMODSEQ 61] x\r\n$T OK\r\n",
             0},
            {"NOOP", 0, "* OK [UIDNEXT 13] x\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct events ev = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Work", &si), 0);
        char buf[4];
        size_t got = 0;
        ck_assert_int_eq(imap_fetch_range(s, 5, 0, sizeof(buf), buf, &got), 0);
        ck_assert_uint_eq(got, 4);
        ck_assert(memcmp(buf, "abcd", 4) == 0);
        ck_assert_int_eq(ev.fetch, 1);
        ck_assert_int_eq(ev.exists, 4);
        ck_assert_uint_eq(imap_session_events(s), 2);
        ck_assert_int_eq(imap_select(s, "Work", &si), 0); /* from memory */
        ck_assert_uint_eq(si.exists, 4);
        ck_assert_uint_eq(si.uidnext, 11);
        ck_assert_uint_eq(si.highestmodseq, 61);
        ck_assert_int_eq(imap_noop(s), 0);
        ck_assert_uint_eq(imap_session_sel_info(s)->uidnext, 13);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_quiet_reports_what_our_command_does_not_explain)
{
        /* Around our own command one message may come or go; anything more
         * is another client's change and must be reported. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"SELECT \"Work\"", 0,
             "* 4 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 10] x\r\n"
             "$T OK [READ-WRITE] done\r\n",
             0},
            {"A3 NOOP", 0, "* 5 EXISTS\r\n$T OK\r\n", 0},                /* our APPEND */
            {"A4 NOOP", 0, "* VANISHED 9\r\n$T OK\r\n", 0},              /* our expunge */
            {"A5 NOOP", 0, "* 2 EXPUNGE\r\n* 5 EXISTS\r\n$T OK\r\n", 0}, /* ours + 1 */
            {"A6 NOOP", 0, "* VANISHED 3:4\r\n$T OK\r\n", 0},            /* two gone */
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct events ev = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Work", &si), 0);
        static const int changed_after[] = {0, 0, 1, 2};
        for (size_t i = 0; i < 4; i++) {
                imap_session_quiet(s, true);
                ck_assert_int_eq(imap_noop(s), 0);
                imap_session_quiet(s, false);
                ck_assert_int_eq(ev.changed, changed_after[i]);
        }
        ck_assert_int_eq(ev.exists, 0); /* held back, not reported as such */
        ck_assert_uint_eq(imap_session_sel_info(s)->exists, 3);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_expunge_is_store_then_uid_expunge)
{
        /* Never a plain EXPUNGE; the EXPUNGE response confirms it is gone. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 UIDPLUS] ok\r\n", 0},
            {"A2 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0, "$T OK stored\r\n", 0},
            {"A3 UID EXPUNGE 5\r", 0, "* 4 EXPUNGE\r\n$T OK gone\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_expunge_uid(s, 5), 0);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_expunge_kept_by_server_is_eacces)
{
        /* OK but no EXPUNGE, and the message is still there: not "done". */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 UIDPLUS] ok\r\n", 0},
            {"UID STORE 5", 0, "$T OK stored\r\n", 0},
            {"UID EXPUNGE 5\r", 0, "$T OK nothing\r\n", 0},
            {"UID SEARCH UID 5\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EACCES);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_pipeline_sends_before_reading)
{
        /* Independent commands go out together: the fake reads both lines
         * before it answers either. */
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"A2 NOOP", 0, "", 0},
            {"A3 CAPABILITY", 0, "A2 OK\r\n* CAPABILITY IMAP4rev1 MOVE\r\nA3 OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        struct imap_cmd c1, c2;
        struct imap_cmd *cmds[2] = {&c1, &c2};
        struct imap_result res[2];
        imap_session_cmd_init(s, &c1);
        imap_cmd_add(&c1, "NOOP");
        imap_session_cmd_init(s, &c2);
        imap_cmd_add(&c2, "CAPABILITY");
        ck_assert_int_eq(imap_session_pipeline(s, cmds, 2, NULL, NULL, res), 0);
        ck_assert_int_eq(res[0].status, IMAP_ST_OK);
        ck_assert_int_eq(res[1].status, IMAP_ST_OK);
        ck_assert(imap_session_caps(s)->move);
        imap_cmd_free(&c1);
        imap_cmd_free(&c2);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_expunge_refused_without_uidplus)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EPERM);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_ptr_null(strstr(f.log, "EXPUNGE"));
}
END_TEST

START_TEST(test_hostile_mailbox_name_is_literal)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"SELECT {18}", 0, "+ ok\r\n", 0},
            {NULL, 20, "$T NO [NONEXISTENT] no such mailbox\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "x\r\nA9 DELETE INBOX", &si), -ENOENT);
        ck_assert_ptr_null(imap_session_selected(s));
        imap_session_free(s);
        fake_stop(&f);
        /* The hostile bytes went out only inside the literal. */
        ck_assert_ptr_nonnull(strstr(f.log, "{18}\r\nx\r\nA9 DELETE INBOX\r\n"));
}
END_TEST

START_TEST(test_oversized_literal_refused)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"NOOP", 0, "* 1 FETCH (BODY[] {999999999999}\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_noop(s), -EIO);
        ck_assert(imap_session_broken(s));
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN); /* the fake server may write to a closed client */
        Suite *s = suite_create("session");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_refuses_without_starttls);
        tcase_add_test(tc, test_refuses_preauth_before_starttls);
        tcase_add_test(tc, test_authenticate_plain_without_sasl_ir);
        tcase_add_test(tc, test_login_quoted_then_capability);
        tcase_add_test(tc, test_login_synchronizing_literal);
        tcase_add_test(tc, test_login_refused);
        tcase_add_test(tc, test_deadline_breaks_session);
        tcase_add_test(tc, test_bye_breaks_session);
        tcase_add_test(tc, test_select_and_unsolicited_events);
        tcase_add_test(tc, test_hostile_mailbox_name_is_literal);
        tcase_add_test(tc, test_expunge_is_store_then_uid_expunge);
        tcase_add_test(tc, test_expunge_kept_by_server_is_eacces);
        tcase_add_test(tc, test_pipeline_sends_before_reading);
        tcase_add_test(tc, test_expunge_refused_without_uidplus);
        tcase_add_test(tc, test_oversized_literal_refused);
        tcase_add_test(tc, test_untagged_data_keeps_selection_current);
        tcase_add_test(tc, test_quiet_reports_what_our_command_does_not_explain);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
