/* Backing off when a server asks us to (issue 11 item 5): the gate for new
 * connections in imap/rcode.c, and sessions and the pool against a scripted
 * server that throttles ([UNAVAILABLE] at login, Microsoft's "Request is
 * throttled. Suggested Backoff Time: N milliseconds", BYE again and again).
 * Each test runs in its own process (CK_FORK), so the gate starts open. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/pool.h"
#include "imap/rcode.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

static struct imap_result result(enum imap_status st, const char *code, const char *text)
{
        struct imap_result r;
        memset(&r, 0, sizeof(r));
        r.status = st;
        snprintf(r.code, sizeof(r.code), "%s", code);
        snprintf(r.text, sizeof(r.text), "%s", text);
        return r;
}

/* stderr (the log) into a file, to look for the wait's line. */
static FILE *log_capture(void)
{
        FILE *f = tmpfile();
        ck_assert_ptr_nonnull(f);
        fflush(stderr);
        ck_assert_int_ge(dup2(fileno(f), 2), 0);
        return f;
}

static char *log_text(FILE *f)
{
        static char buf[8192];
        fflush(stderr);
        rewind(f);
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        return buf;
}

START_TEST(test_gate_suggested_time)
{
        FILE *lf = log_capture();
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        struct imap_result ok = result(IMAP_ST_OK, "", "done");
        imap_throttle_note(&ok);
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        /* Not a back-off answer: the gate stays open. */
        struct imap_result gone = result(IMAP_ST_NO, "NONEXISTENT", "no such mailbox");
        imap_throttle_note(&gone);
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        /* Microsoft's answer: the suggested 1500 ms count (more than our 1 s). */
        struct imap_result ms = result(
            IMAP_ST_NO, "", "Request is throttled. Suggested Backoff Time: 1500 milliseconds");
        imap_throttle_note(&ms);
        int left = imap_throttle_left_ms();
        ck_assert_int_gt(left, 1400);
        ck_assert_int_le(left, 1500);
        ck_assert_ptr_nonnull(strstr(log_text(lf), "pause (Request is throttled"));
        ck_assert_ptr_nonnull(strstr(log_text(lf), "1500 ms"));
        char err[256];
        /* A deadline before the gate opens: EAGAIN at once, with the reason. */
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(imap_throttle_wait(t0 + 200, err, sizeof(err)), -EAGAIN);
        ck_assert_int_lt(imap_now_ms() - t0, 100);
        ck_assert_ptr_nonnull(strstr(err, "throttled"));
        /* Within the deadline: waits until it opens, and says so. */
        ck_assert_int_eq(imap_throttle_wait(t0 + 3000, err, sizeof(err)), 0);
        ck_assert_int_ge(imap_now_ms() - t0, 1400);
        ck_assert_ptr_nonnull(strstr(log_text(lf), "before connecting, as the server asked"));
        fclose(lf);
}
END_TEST

START_TEST(test_gate_doubles_in_a_row)
{
        /* Answers that come together (a pipelined burst) are one event; one
         * after the pause has passed doubles it. */
        char err[256];
        struct imap_result un = result(IMAP_ST_NO, "UNAVAILABLE", "backend busy");
        for (int i = 0; i < 5; i++)
                imap_throttle_note(&un);
        int a = imap_throttle_left_ms();
        ck_assert_int_le(a, 1000);
        ck_assert_int_eq(imap_throttle_wait(imap_now_ms() + 5000, err, sizeof(err)), 0);
        imap_throttle_note(&un);
        int b = imap_throttle_left_ms();
        ck_assert_int_eq(imap_throttle_wait(imap_now_ms() + 5000, err, sizeof(err)), 0);
        imap_throttle_note(&un);
        int c = imap_throttle_left_ms();
        ck_assert_int_gt(a, 900);
        ck_assert_int_gt(b, 1900);
        ck_assert_int_gt(c, 3900);
        ck_assert_int_le(c, 4000);
        struct imap_result lim = result(IMAP_ST_NO, "LIMIT", "Too many commands");
        imap_throttle_reset();
        imap_throttle_note(&lim);
        ck_assert_int_gt(imap_throttle_left_ms(), 900);
}
END_TEST

START_TEST(test_gate_bye)
{
        char err[256];
        /* BYE to connections that worked (an idle timeout, a restart): reconnect
         * at once, however many it ends and however often. */
        struct imap_result bye = result(IMAP_ST_BYE, "", "Server shutting down.");
        for (int i = 0; i < 4; i++)
                imap_throttle_bye(&bye, false);
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        ck_assert_int_eq(imap_throttle_wait(imap_now_ms() + 1000, err, sizeof(err)), 0);
        imap_throttle_bye(&bye, false);
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        /* New connections turned away: the first reconnects at once, the next
         * (on a connection opened since) backs off, doubling. */
        struct imap_result full =
            result(IMAP_ST_BYE, "", "Maximum number of connections from user+IP exceeded");
        imap_throttle_bye(&full, true);
        imap_throttle_bye(&full, true); /* the same event: no connection opened since */
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        ck_assert_int_eq(imap_throttle_wait(imap_now_ms() + 1000, err, sizeof(err)), 0);
        imap_throttle_bye(&full, true);
        int a = imap_throttle_left_ms();
        ck_assert_int_gt(a, 900);
        ck_assert_int_le(a, 1000);
        ck_assert_int_eq(imap_throttle_wait(imap_now_ms() + 3000, err, sizeof(err)), 0);
        imap_throttle_bye(&full, true);
        ck_assert_int_gt(imap_throttle_left_ms(), 1900);
        /* A BYE that says why counts at once, with its wait. */
        imap_throttle_reset();
        struct imap_result ms = result(
            IMAP_ST_BYE, "", "Request is throttled. Suggested Backoff Time: 2500 milliseconds");
        imap_throttle_bye(&ms, false);
        ck_assert_int_gt(imap_throttle_left_ms(), 2400);
}
END_TEST

START_TEST(test_login_unavailable_is_eagain_and_next_waits)
{
        /* NO [UNAVAILABLE] at login is no wrong password: EAGAIN, and the
         * next connection waits (here 1 s, within its 2 s deadline). */
        FILE *lf = log_capture();
        static const struct step s1[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T NO [UNAVAILABLE] Backend down, try later\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(&f, s1, &a, &s), -EAGAIN);
        fake_stop(&f);
        ck_assert_int_gt(imap_throttle_left_ms(), 900);
        static const struct step s2[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(open_plain(&f, s2, &a, &s), 0);
        ck_assert_int_ge(imap_now_ms() - t0, 900);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_ptr_nonnull(strstr(log_text(lf), "[UNAVAILABLE] Backend down"));
        fclose(lf);
}
END_TEST

START_TEST(test_throttled_command_delays_new_connections)
{
        /* A throttled NOOP answer on one session: the next connection of
         * the account waits the suggested 700 ms. */
        static const struct step s1[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "$T NO Request is throttled. Suggested Backoff Time: 700 milliseconds\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(&f, s1, &a, &s), 0);
        ck_assert_int_eq(imap_noop(s), -EAGAIN);
        imap_session_free(s);
        fake_stop(&f);
        int left = imap_throttle_left_ms();
        ck_assert_int_gt(left, 900); /* at least our own 1 s */
        static const struct step s2[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(open_plain(&f, s2, &a, &s), 0);
        ck_assert_int_ge(imap_now_ms() - t0, left - 100);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_bye_twice_then_pool_fails_fast)
{
        /* A server that drops every new connection with BYE at its first
         * command: the first reconnect is immediate, after the second BYE the
         * gate closes for a second; with a 300 ms deadline the pool then answers EAGAIN at
         * once, to every caller, without connecting. */
        static const struct step s1[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "* BYE Server shutting down\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = NULL;
        ck_assert_int_eq(open_plain(&f, s1, &a, &s), 0);
        ck_assert_int_eq(imap_noop(s), -EIO);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_int_eq(imap_throttle_left_ms(), 0);
        ck_assert_int_eq(open_plain(&f, s1, &a, &s), 0);
        ck_assert_int_eq(imap_noop(s), -EIO);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_int_gt(imap_throttle_left_ms(), 900);

        a.timeout_ms = 300;
        struct imap_pool *p = imap_pool_new(&a, 2);
        struct imap_session *ps = NULL;
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &ps), -EAGAIN);
        ck_assert_int_eq(imap_pool_get(p, NULL, IMAP_POOL_META, &ps), -EAGAIN);
        ck_assert_int_lt(imap_now_ms() - t0, 200);
        imap_pool_free(p);
}
END_TEST

START_TEST(test_bye_after_work_reconnects_at_once)
{
        /* Sessions that did their work and were then ended (a restart):
         * however often, no pause. */
        static const struct step s1[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "$T OK fine\r\n", 0},
            {"NOOP", 0, "* BYE Server shutting down\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        for (int i = 0; i < 3; i++) {
                struct fake f;
                struct imap_account a;
                struct imap_session *s = NULL;
                ck_assert_int_eq(open_plain(&f, s1, &a, &s), 0);
                ck_assert_int_eq(imap_noop(s), 0);
                ck_assert_int_eq(imap_noop(s), -EIO);
                imap_session_free(s);
                fake_stop(&f);
                ck_assert_int_eq(imap_throttle_left_ms(), 0);
        }
}
END_TEST

static Suite *throttle_suite(void)
{
        Suite *s = suite_create("throttle");
        TCase *tc = tcase_create("gate");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_gate_suggested_time);
        tcase_add_test(tc, test_gate_doubles_in_a_row);
        tcase_add_test(tc, test_gate_bye);
        tcase_add_test(tc, test_login_unavailable_is_eagain_and_next_waits);
        tcase_add_test(tc, test_throttled_command_delays_new_connections);
        tcase_add_test(tc, test_bye_twice_then_pool_fails_fast);
        tcase_add_test(tc, test_bye_after_work_reconnects_at_once);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(throttle_suite());
}
