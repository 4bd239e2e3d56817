/* Sessions against a scripted fake server on 127.0.0.1: login with literals,
 * STARTTLS refusal, deadlines, BYE, unsolicited responses, redaction. The
 * server is a thread that reads the client's lines and answers from a script,
 * so every byte the session sees is known. */
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

#include "imap/auth.h"
#include "imap/conn.h"
#include "imap/ops.h"
#include "imap/ops_status.h"
#include "imap/ops_write.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

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
        fake_finish(&f, s);
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
        fake_finish(&f, s);
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
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "a\r\nB OK x", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        fake_finish(&f, s);
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

START_TEST(test_deadline_breaks_session)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"NOOP", 0, "$T OK too late\r\n", 1500}, /* answers after the deadline */
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        a.timeout_ms = 300;
        int64_t t0 = imap_now_ms();
        ck_assert_int_eq(imap_noop(s), -EIO);
        int64_t took = imap_now_ms() - t0;
        ck_assert_int_ge(took, 250);
        ck_assert_int_lt(took, 2000);
        ck_assert(imap_session_broken(s));
        ck_assert_int_eq(imap_noop(s), -EIO); /* fails at once from now on */
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_bye_breaks_session)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"NOOP", 0, "* BYE server shutting down\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_noop(s), -EIO);
        ck_assert(imap_session_broken(s));
        fake_finish(&f, s);
}
END_TEST

struct events {
        int exists, expunge, fetch, status, changed;
        char mailbox[32];
        char status_of[32]; /* the mailbox named by the last STATUS event */
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
        else if (ev->kind == IMAP_EV_STATUS) {
                e->status++;
                snprintf(e->status_of, sizeof(e->status_of), "%s", ev->mailbox ? ev->mailbox : "");
        } else if (ev->kind == IMAP_EV_CHANGED)
                e->changed++;
}

START_TEST(test_select_and_unsolicited_events)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
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
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
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
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_untagged_data_keeps_selection_current)
{
        /* A cat's UID FETCH hears another client's flag change (sent along
         * with the bytes), a delivery and a new HIGHESTMODSEQ: the bytes are
         * the command's, the rest are events, and the remembered SELECT
         * follows (UIDNEXT at least one more). */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
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
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
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
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_quiet_reports_what_our_command_does_not_explain)
{
        /* Around our own command one message may come or go; anything more
         * is another client's change and must be reported. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
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
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
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
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_is_store_then_uid_expunge)
{
        /* Never a plain EXPUNGE; the EXPUNGE response confirms it is gone. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 4 FETCH (UID 5 FLAGS (\\Seen))\r\nA2 OK\r\nA3 OK stored\r\n", 0},
            {"A4 UID EXPUNGE 5\r", 0, "* 4 EXPUNGE\r\n$T OK gone\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_kept_by_server_is_eacces)
{
        /* OK but no EXPUNGE, and the message is still there: not "done". */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 4 FETCH (UID 5 FLAGS ())\r\nA2 OK\r\nA3 OK stored\r\n", 0},
            {"UID EXPUNGE 5\r", 0, "$T OK nothing\r\n", 0},
            {"UID SEARCH UID 5\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            /* The message stays: so must it stay without our \Deleted, or
             * the next client's EXPUNGE removes it. */
            {"UID STORE 5 -FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EACCES);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_with_another_uid_vanished_is_not_done)
{
        /* During our UID EXPUNGE another client's expunge of UID 7 arrives:
         * that is not ours, so the message is looked for, found, and keeps
         * no \Deleted of ours. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 4 FETCH (UID 5 FLAGS ())\r\nA2 OK\r\nA3 OK stored\r\n", 0},
            {"UID EXPUNGE 5\r", 0, "* VANISHED 7,9:12\r\n$T OK done\r\n", 0},
            {"UID SEARCH UID 5\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            {"UID STORE 5 -FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0},
            {"UID FETCH 6 (UID FLAGS)", 0, "", 0},
            {"UID STORE 6 +FLAGS.SILENT (\\Deleted)", 0, "A7 OK\r\nA8 OK stored\r\n", 0},
            {"UID EXPUNGE 6\r", 0, "* VANISHED 3:8\r\n$T OK done\r\n", 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EACCES);
        /* A VANISHED that names it: gone, no SEARCH needed. */
        ck_assert_int_eq(imap_expunge_uid(s, 6), 0);
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_refused_takes_the_flag_back)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 4 FETCH (UID 5 FLAGS (\\Seen $Work))\r\nA2 OK\r\nA3 OK stored\r\n", 0},
            {"UID EXPUNGE 5\r", 0, "$T NO [NOPERM] not allowed\r\n", 0},
            {"UID STORE 5 -FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EACCES);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_failure_keeps_a_flag_set_before)
{
        /* Another client had marked it \Deleted: that was not ours to undo. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 4 FETCH (UID 5 FLAGS (\\Deleted))\r\nA2 OK\r\nA3 OK stored\r\n", 0},
            {"UID EXPUNGE 5\r", 0, "$T NO [NOPERM] not allowed\r\n", 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EACCES);
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
        ck_assert_ptr_null(strstr(f.log, "-FLAGS"));
}
END_TEST

START_TEST(test_move_copy_fallback_failure_unflags_the_original)
{
        /* No MOVE: UID COPY, then the original can't be removed. The copy is
         * taken back and the original, the only one left, loses our flag. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 SELECT \"Src\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n$T OK [READ-WRITE] done\r\n", 0},
            {"A3 UID COPY 5 \"Dst\"", 0, "$T OK [COPYUID 7 5 12] copied\r\n", 0},
            {"A4 UID FETCH 5 (UID FLAGS)", 0, "", 0},
            {"A5 UID STORE 5 +FLAGS.SILENT (\\Deleted)", 0,
             "* 1 FETCH (UID 5 FLAGS (\\Seen))\r\nA4 OK\r\nA5 OK stored\r\n", 0},
            {"A6 UID EXPUNGE 5\r", 0, "$T OK nothing\r\n", 0},
            {"A7 UID SEARCH UID 5\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            {"A8 UID STORE 5 -FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0},
            {"A9 SELECT \"Dst\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n$T OK [READ-WRITE] done\r\n", 0},
            {"A10 UID FETCH 12 (UID FLAGS)", 0, "", 0},
            {"A11 UID STORE 12 +FLAGS.SILENT (\\Deleted)", 0,
             "* 1 FETCH (UID 12 FLAGS (\\Seen))\r\nA10 OK\r\nA11 OK stored\r\n", 0},
            {"A12 UID EXPUNGE 12\r", 0, "* 1 EXPUNGE\r\n$T OK gone\r\n", 0},
            {"A13 SELECT \"Src\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n$T OK [READ-WRITE] done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        uint32_t v = 1, u = 1;
        ck_assert_int_eq(imap_move_uid(s, 5, "Dst", &v, &u), -EACCES);
        ck_assert_uint_eq(u, 0);
        ck_assert_str_eq(imap_session_selected(s), "Src");
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_copy_confirming_nothing_never_expunges)
{
        /* A UID COPY of a UID the session has not seen yet answers "OK No
         * messages found" without COPYUID: nothing was copied, so the
         * original must not be flagged or expunged (that lost mail). The
         * script ends after the check: any STORE or EXPUNGE fails it. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UIDPLUS"),
            {"A2 SELECT \"Src\"", 0,
             "* 1 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n$T OK [READ-WRITE] done\r\n", 0},
            {"A3 UID COPY 48 \"Dst\"", 0, "* 2 EXISTS\r\n$T OK No messages found\r\n", 0},
            {"A4 UID FETCH 48 (UID)\r", 0, "* 1 FETCH (UID 48)\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Src", &si), 0);
        uint32_t v = 1, u = 1;
        ck_assert_int_eq(imap_move_uid(s, 48, "Dst", &v, &u), -EAGAIN);
        ck_assert_uint_eq(u, 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_status_of_another_mailbox_is_an_event)
{
        /* NOTIFY sends STATUS of any mailbox at any time: only the one that
         * names the folder asked about is the answer; the other must reach
         * the account so that its folder is marked stale. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 NOTIFY"),
            {"STATUS \"Work\" (MESSAGES UIDNEXT UIDVALIDITY)", 0,
             "* STATUS Other (MESSAGES 9 UIDNEXT 10 UIDVALIDITY 1)\r\n"
             "* STATUS \"Work\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 5)\r\n$T OK\r\n",
             0},
            {"STATUS \"INBOX\"", 0,
             "* STATUS inbox (MESSAGES 4 UIDNEXT 5 UIDVALIDITY 6)\r\n$T OK\r\n", 0},
            {"STATUS \"Quiet\"", 0,
             "* STATUS Loud (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_status_info st;
        ck_assert_int_eq(imap_status(s, "Work", &st), 0);
        ck_assert_uint_eq(st.messages, 2);
        ck_assert_uint_eq(st.uidnext, 3);
        ck_assert_uint_eq(st.uidvalidity, 5);
        ck_assert_int_eq(ev.status, 1);
        ck_assert_str_eq(ev.status_of, "Other");
        /* INBOX is the one name compared without case. */
        ck_assert_int_eq(imap_status(s, "INBOX", &st), 0);
        ck_assert_uint_eq(st.messages, 4);
        ck_assert_int_eq(ev.status, 1);
        /* Only another mailbox's STATUS: no answer at all. */
        ck_assert_int_eq(imap_status(s, "Quiet", &st), -EPROTO);
        ck_assert_int_eq(ev.status, 2);
        ck_assert_str_eq(ev.status_of, "Loud");
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_no_with_brace_text_keeps_the_session)
{
        /* A status response's text is free text (resp-text): "{5}" at its
         * end is not a literal, and "{x}" is not an error. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"NOOP", 0, "* OK [ALERT] quota at {90%}\r\n$T NO try again {5}\r\n", 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_noop(s), -EPROTO);
        ck_assert(!imap_session_broken(s));
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
}
END_TEST

/* 120 keywords of 10 or 11 bytes and \* last, as Dovecot sends them: over 1300 bytes. */
#define KW10(p) p "0 " p "1 " p "2 " p "3 " p "4 " p "5 " p "6 " p "7 " p "8 " p "9 "
#define KW100(p)                                                                                   \
        KW10(p "0")                                                                                \
        KW10(p "1")                                                                                \
        KW10(p "2")                                                                                \
        KW10(p "3") KW10(p "4") KW10(p "5") KW10(p "6") KW10(p "7") KW10(p "8") KW10(p "9")
#define KEYWORDS KW100("keyword0") KW10("keyword10") KW10("keyword11")

START_TEST(test_long_permanentflags_kept_whole)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"SELECT \"Tags\"", 0,
             "* FLAGS (\\Seen " KEYWORDS ")\r\n* 2 EXISTS\r\n"
             "* OK [PERMANENTFLAGS (\\Seen \\Deleted " KEYWORDS "\\*)] ok\r\n"
             "* OK [UIDVALIDITY 77] x\r\n$T OK [READ-WRITE] done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "Tags", &si), 0);
        ck_assert_uint_gt(strlen(si.permanentflags), 1300);
        ck_assert_ptr_nonnull(strstr(si.permanentflags, "keyword119 \\*"));
        ck_assert_str_eq(si.permanentflags + strlen(si.permanentflags) - 2, "\\*");
        ck_assert_ptr_nonnull(strstr(si.permanentflags, "\\Seen \\Deleted keyword000 "));
        /* Selected again without a round trip: the same flags. */
        ck_assert_int_eq(imap_select(s, "Tags", &si), 0);
        ck_assert_str_eq(si.permanentflags + strlen(si.permanentflags) - 2, "\\*");
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_store_result_kept_whole)
{
        /* The flags the server reports after the STORE go to the cache: all
         * of them, however many keywords the message has. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 UID STORE 5 FLAGS (\\Seen keyword119)", 0,
             "* 1 FETCH (UID 5 FLAGS (\\Seen \\Recent " KEYWORDS "))\r\n$T OK\r\n", 0},
            {"A3 UID STORE 6 FLAGS (\\Seen)", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        char *out = NULL;
        ck_assert_int_eq(imap_store_flags(s, 5, "\\Seen keyword119", &out), 0);
        ck_assert_uint_gt(strlen(out), 1300);
        ck_assert_ptr_nonnull(strstr(out, "\\Seen keyword000 keyword001 "));
        ck_assert_str_eq(out + strlen(out) - 10, "keyword119");
        ck_assert_ptr_null(strstr(out, "Recent"));
        free(out);
        /* A server that answers no FETCH: the flags asked for. */
        ck_assert_int_eq(imap_store_flags(s, 6, "\\Seen", &out), 0);
        ck_assert_str_eq(out, "\\Seen");
        free(out);
        fake_finish(&f, s);
}
END_TEST

struct uids {
        unsigned n, next, step, bad;
};

static void on_uids(void *ctx, unsigned lo, unsigned hi)
{
        struct uids *u = ctx;
        for (unsigned x = lo; x <= hi; x++) {
                if (x != u->next)
                        u->bad++;
                u->next = x + u->step;
                u->n++;
        }
}

/* SEARCH: "* SEARCH 1 2 ... n<tail>"; ESEARCH: "* ESEARCH (TAG "A2") UID ALL
 * 1,3,5,...<tail>" (every other UID, so that the set can't be a range); then
 * "A2 OK done". */
static char *big_search(bool esearch, unsigned n, const char *tail, size_t *len)
{
        size_t cap = 64 + (size_t)n * 12 + strlen(tail);
        char *b = malloc(cap);
        ck_assert_ptr_nonnull(b);
        size_t o = (size_t)sprintf(b, esearch ? "* ESEARCH (TAG \"A2\") UID ALL " : "* SEARCH ");
        for (unsigned i = 1; i <= n; i++)
                o += (size_t)sprintf(b + o, esearch ? "%s%u" : "%s%u",
                                     i > 1 ? (esearch ? "," : " ") : "", esearch ? 2 * i - 1 : i);
        o += (size_t)sprintf(b + o, "%s\r\nA2 OK done\r\n", tail);
        *len = o;
        return b;
}

static void run_big_search(bool esearch, const char *tail)
{
        static const struct step search[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 UID SEARCH ALL", 0, "$BIG", 0},
            {"A3 NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        static const struct step esearch_script[] = {
            FAKE_LOGIN("IMAP4rev1 ESEARCH"),
            {"A2 UID SEARCH RETURN (ALL) ALL", 0, "$BIG", 0},
            {"A3 NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        const unsigned n = 200000; /* 1.3 MB and more: beyond the 1 MiB line limit */
        char *big = big_search(esearch, n, tail, &fake_big_len);
        ck_assert_uint_gt(fake_big_len, IMAP_MAX_LINE);
        fake_big = big;
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, esearch ? esearch_script : search, &a);
        struct uids u = {0, 1, esearch ? 2 : 1, 0};
        ck_assert_int_eq(imap_search_uids(s, on_uids, &u), 0);
        ck_assert_uint_eq(u.n, n);
        ck_assert_uint_eq(u.bad, 0);
        ck_assert(!imap_session_broken(s));
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
        free(big);
}

START_TEST(test_search_beyond_line_limit)
{
        run_big_search(false, "");
}
END_TEST

START_TEST(test_search_beyond_line_limit_with_modseq)
{
        run_big_search(false, " (MODSEQ 917162500)");
}
END_TEST

START_TEST(test_esearch_beyond_line_limit)
{
        run_big_search(true, "");
        run_big_search(true, " COUNT 200000");
}
END_TEST

START_TEST(test_pipeline_sends_before_reading)
{
        /* Independent commands go out together: the fake reads both lines
         * before it answers either. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 NOOP", 0, "", 0},
            {"A3 CAPABILITY", 0, "A2 OK\r\n* CAPABILITY IMAP4rev1 MOVE\r\nA3 OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
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
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_expunge_refused_without_uidplus)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_expunge_uid(s, 5), -EPERM);
        fake_finish(&f, s);
        ck_assert_ptr_null(strstr(f.log, "EXPUNGE"));
}
END_TEST

START_TEST(test_hostile_mailbox_name_is_literal)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"SELECT {18}", 0, "+ ok\r\n", 0},
            {NULL, 20, "$T NO [NONEXISTENT] no such mailbox\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "x\r\nA9 DELETE INBOX", &si), -ENOENT);
        ck_assert_ptr_null(imap_session_selected(s));
        fake_finish(&f, s);
        /* The hostile bytes went out only inside the literal. */
        ck_assert_ptr_nonnull(strstr(f.log, "{18}\r\nx\r\nA9 DELETE INBOX\r\n"));
}
END_TEST

START_TEST(test_oversized_literal_refused)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"NOOP", 0, "* 1 FETCH (BODY[] {999999999999}\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        ck_assert_int_eq(imap_noop(s), -EIO);
        ck_assert(imap_session_broken(s));
        fake_finish(&f, s);
}
END_TEST

/* ---- issue 18: pipelined STATUS and LIST-STATUS (polling without NOTIFY) ---- */

START_TEST(test_status_many_matched_by_name)
{
        /* All three commands are read before any answer (pipelined); the
         * answers come out of order with another mailbox's STATUS among
         * them; one folder is gone, one throttled. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 STATUS \"Work\" (MESSAGES UIDNEXT UIDVALIDITY)", 0, "", 0},
            {"A3 STATUS \"Gone\"", 0, "", 0},
            {"A4 STATUS \"Busy\"", 0, "", 0},
            {"A5 STATUS \"inbox\"", 0,
             "* STATUS inbox (MESSAGES 4 UIDNEXT 5 UIDVALIDITY 6)\r\n"
             "* STATUS Other (MESSAGES 9 UIDNEXT 10 UIDVALIDITY 1)\r\n"
             "A3 NO [NONEXISTENT] Mailbox doesn't exist: Gone\r\n"
             "* STATUS \"Work\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 5)\r\n"
             "A5 OK\r\nA2 OK\r\n"
             "A4 NO Request is throttled. Suggested Backoff Time: 236 milliseconds\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_status_req v[] = {
            {"Work", {0}, 0}, {"Gone", {0}, 0}, {"Busy", {0}, 0}, {"inbox", {0}, 0}};
        struct imap_slowdown slow = {0};
        ck_assert_int_eq(imap_status_many(s, v, 4, &slow), 0);
        ck_assert_int_eq(v[0].err, 0);
        ck_assert_uint_eq(v[0].st.messages, 2);
        ck_assert_uint_eq(v[0].st.uidnext, 3);
        ck_assert_uint_eq(v[0].st.uidvalidity, 5);
        ck_assert_int_eq(v[1].err, -ENOENT);
        ck_assert_int_eq(v[2].err, -EAGAIN);
        ck_assert_int_eq(v[3].err, 0);
        ck_assert_uint_eq(v[3].st.messages, 4);
        ck_assert(slow.asked);
        ck_assert_int_eq(slow.suggested_ms, 236);
        ck_assert_ptr_nonnull(strstr(slow.text, "throttled"));
        /* Other's STATUS answered nothing we asked: an event. */
        ck_assert_int_eq(ev.status, 1);
        ck_assert_str_eq(ev.status_of, "Other");
        ck_assert(!imap_session_broken(s));
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_status_many_literal_name_goes_alone)
{
        /* Without LITERAL+, a name that needs a literal waits for "+": the
         * other commands stay pipelined, that one follows on its own. */
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 STATUS \"A\"", 0, "", 0},
            {"A3 STATUS \"B\"", 0,
             "* STATUS B (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 4)\r\n"
             "* STATUS A (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)\r\nA2 OK\r\nA3 OK\r\n",
             0},
            {"A4 STATUS {4}", 0, "+ ok\r\n", 0},
            {NULL, 4, "", 0},
            {"(MESSAGES UIDNEXT UIDVALIDITY)", 0,
             "* STATUS {4}\r\nx\r\ny (MESSAGES 7 UIDNEXT 8 UIDVALIDITY 9)\r\nA4 OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct imap_status_req v[] = {{"A", {0}, 0}, {"x\r\ny", {0}, 0}, {"B", {0}, 0}};
        struct imap_slowdown slow = {0};
        ck_assert_int_eq(imap_status_many(s, v, 3, &slow), 0);
        ck_assert_int_eq(v[0].err, 0);
        ck_assert_uint_eq(v[0].st.messages, 1);
        ck_assert_int_eq(v[1].err, 0);
        ck_assert_uint_eq(v[1].st.messages, 7);
        ck_assert_int_eq(v[2].err, 0);
        ck_assert_uint_eq(v[2].st.uidvalidity, 4);
        fake_finish(&f, s);
}
END_TEST

/* 150 folders: more than one write's worth of commands. The fake reads 100
 * commands before it answers any, which only works if more than one chunk
 * is on its way at once; then it answers in order. */
#define MANY 150
#define MANY_FIRST 100
START_TEST(test_status_many_beyond_one_chunk)
{
        struct step *script = calloc(MANY + 8, sizeof(*script));
        char **bufs = calloc(2 * MANY + 2, sizeof(*bufs));
        char names[MANY][16];
        size_t k = 0, nb = 0;
        static const struct step login[] = {FAKE_LOGIN("IMAP4rev1")};
        script[k++] = login[0];
        script[k++] = login[1];
        for (int i = 0; i < MANY; i++) {
                snprintf(names[i], sizeof(names[i]), "F%03d", i);
                char *expect = malloc(64), *reply = malloc(128);
                bufs[nb++] = expect;
                bufs[nb++] = reply;
                snprintf(expect, 64, "A%d STATUS \"F%03d\"", i + 2, i);
                snprintf(reply, 128,
                         "* STATUS \"F%03d\" (MESSAGES %d UIDNEXT %d UIDVALIDITY 7)\r\n"
                         "A%d OK\r\n",
                         i, i, i + 1, i + 2);
                script[k++] = (struct step){expect, 0, "", 0};
        }
        /* The answers to the first MANY_FIRST go after the MANY_FIRST-th
         * read, each later one right after its command. */
        size_t firstreply = 2 + MANY_FIRST - 1;
        for (int i = MANY_FIRST; i < MANY; i++)
                script[2 + i].reply = bufs[2 * i + 1];
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        /* The fake's reply buffer holds 4 KiB: the first answers are sent by
         * steps without a read after the MANY_FIRST-th command. */
        struct step *full = calloc(MANY + MANY_FIRST + 8, sizeof(*full));
        size_t o = 0;
        for (size_t i = 0; i <= firstreply; i++)
                full[o++] = script[i];
        for (int i = 0; i < MANY_FIRST; i++)
                full[o++] = (struct step){NULL, 0, bufs[2 * i + 1], 0};
        for (size_t i = firstreply + 1; i < 2 + MANY; i++)
                full[o++] = script[i];
        full[o] = (struct step){NULL, 0, NULL, 0};
        s = fake_open(&f, full, &a);
        struct imap_status_req v[MANY];
        for (int i = 0; i < MANY; i++)
                v[i] = (struct imap_status_req){names[i], {0}, 0};
        struct imap_slowdown slow = {0};
        ck_assert_int_eq(imap_status_many(s, v, MANY, &slow), 0);
        for (int i = 0; i < MANY; i++) {
                ck_assert_int_eq(v[i].err, 0);
                ck_assert_uint_eq(v[i].st.messages, (unsigned)i);
                ck_assert_uint_eq(v[i].st.uidnext, (unsigned)i + 1);
        }
        ck_assert(!slow.asked);
        fake_finish(&f, s);
        for (size_t i = 0; i < nb; i++)
                free(bufs[i]);
        free(bufs);
        free(script);
        free(full);
}
END_TEST

struct lst {
        int lists, statuses;
        char names[8][32];
        struct imap_status_info st[8];
        unsigned trash_attrs;
};

static void lst_list(void *ctx, const char *name, char delim, unsigned attrs)
{
        struct lst *l = ctx;
        (void)delim;
        if (strcmp(name, "Trash") == 0)
                l->trash_attrs = attrs;
        l->lists++;
}

static void lst_status(void *ctx, const char *name, const struct imap_status_info *st)
{
        struct lst *l = ctx;
        if (l->statuses < 8) {
                snprintf(l->names[l->statuses], sizeof(l->names[0]), "%s", name);
                l->st[l->statuses] = *st;
        }
        l->statuses++;
}

START_TEST(test_list_status_tree_and_statuses_in_one_command)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 LIST-STATUS SPECIAL-USE CONDSTORE] ok\r\n",
             0},
            {"LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT UIDVALIDITY "
             "HIGHESTMODSEQ))",
             0,
             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
             "* STATUS INBOX (MESSAGES 4 UIDNEXT 5 UIDVALIDITY 6 HIGHESTMODSEQ 77)\r\n"
             "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
             "* STATUS \"Trash\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3)\r\n"
             "* LIST (\\Noselect \\HasChildren) \"/\" \"Parent\"\r\n"
             "* STATUS \"Elsewhere\" (MESSAGES 9 UIDNEXT 9 UIDVALIDITY 9)\r\n"
             "* LIST (\\HasNoChildren) \"/\" \"Parent/Kid\"\r\n"
             "* STATUS \"Parent/Kid\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8)\r\n"
             "$T OK List completed\r\n",
             0},
            {"LIST \"\" \"*\" RETURN", 0, "$T NO [UNAVAILABLE] Try again later\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct events ev = {0};
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct lst l = {0};
        struct imap_slowdown slow = {0};
        ck_assert_int_eq(imap_list_status(s, lst_list, lst_status, &l, &slow), 0);
        ck_assert_int_eq(l.lists, 4);
        ck_assert_uint_eq(l.trash_attrs & IMAP_MBX_TRASH, IMAP_MBX_TRASH);
        ck_assert_int_eq(l.statuses, 3);
        ck_assert_str_eq(l.names[0], "INBOX");
        ck_assert_uint_eq(l.st[0].messages, 4);
        ck_assert_uint_eq(l.st[0].highestmodseq, 77);
        ck_assert_str_eq(l.names[1], "Trash");
        ck_assert_uint_eq(l.st[1].uidnext, 2);
        ck_assert_str_eq(l.names[2], "Parent/Kid");
        ck_assert_uint_eq(l.st[2].uidvalidity, 8);
        /* A STATUS of a mailbox this LIST did not name is not an answer. */
        ck_assert_int_eq(ev.status, 1);
        ck_assert_str_eq(ev.status_of, "Elsewhere");
        ck_assert(!slow.asked);
        /* [UNAVAILABLE]: back off, without a suggested wait. */
        ck_assert_int_eq(imap_list_status(s, lst_list, lst_status, &l, &slow), -EAGAIN);
        ck_assert(slow.asked);
        ck_assert_int_eq(slow.suggested_ms, 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_list_status_needs_the_capability)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct lst l = {0};
        struct imap_slowdown slow = {0};
        ck_assert_int_eq(imap_list_status(s, lst_list, lst_status, &l, &slow), -ENOTSUP);
        fake_finish(&f, s);
        ck_assert_ptr_null(strstr(f.log, "LIST"));
}
END_TEST

/* ---- end of issue 18's tests ---- */

/* --- Authentication (issue 10): SASL encodings and the failure dance --- */

START_TEST(test_sasl_encodings)
{
        char *s = auth_plain_initial("alice", "pw");
        ck_assert_str_eq(s, "AGFsaWNlAHB3");
        auth_free(s);
        s = auth_xoauth2_initial("alice", "tok1");
        ck_assert_str_eq(s, "dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sxAQE=");
        auth_free(s);
        /* ',' and '=' in the user are escaped in the GS2 header (RFC 5801). */
        s = auth_oauthbearer_initial("a,b=c", "T", "h", 993);
        ck_assert_str_eq(s, "bixhPWE9MkNiPTNEYywBaG9zdD1oAXBvcnQ9OTkzAWF1dGg9QmVhcmVyIFQBAQ==");
        auth_free(s);
        char d[64];
        auth_oauth_error("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=", d, sizeof(d));
        ck_assert_str_eq(d, "status invalid_token");
        auth_oauth_error("bm90IGpzb24=", d, sizeof(d)); /* "not json" */
        ck_assert_str_eq(d, "");
        auth_oauth_error("", d, sizeof(d));
        ck_assert_str_eq(d, "");
        ck_assert_ptr_nonnull(auth_explain("User is authenticated but not connected."));
        ck_assert_ptr_null(auth_explain("Authentication failed."));
}
END_TEST

START_TEST(test_plain_preferred_with_sasl_ir)
{
        /* AUTH=PLAIN offered: PLAIN rather than LOGIN, the response on the
         * command line (SASL-IR): one round trip. */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n", 0},
            {"A1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r", 0, "A1 OK [CAPABILITY IMAP4rev1] in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        fake_finish(&f, s);
        ck_assert_ptr_null(strstr(f.log, "LOGIN"));
}
END_TEST

/* A token command played by the test: tokens[i] for the i-th call. */
struct tokens {
        const char *tokens[3];
        int calls;
        bool again[3];
};

static char *test_token(void *ctx, bool again, char *err, size_t errlen)
{
        struct tokens *t = ctx;
        if (t->calls >= 3 || !t->tokens[t->calls]) {
                snprintf(err, errlen, "oauth2_token_command failed (exit status 1)");
                return NULL;
        }
        t->again[t->calls] = again;
        return strdup(t->tokens[t->calls++]);
}

static int open_oauth(struct fake *f, const struct step *script, struct tokens *t, char *err,
                      size_t errlen, struct imap_session **s)
{
        fake_start(f, script);
        struct imap_account a = fake_acct(f->port, NULL, true);
        a.oauth2_token = test_token;
        a.token_ctx = t;
        *s = NULL;
        int r = imap_session_open(&a, s, err, errlen);
        imap_session_free(*s);
        fake_stop(f);
        return r;
}

START_TEST(test_oauthbearer_refused_then_fresh_token)
{
        /* OAUTHBEARER preferred over XOAUTH2; the failure challenge is answered
         * with %x01 (RFC 7628 §3.2.3); then the command runs again and the
         * new token is tried once. */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR] hi\r\n",
             0},
            {"A1 AUTHENTICATE OAUTHBEARER bixhPWFsaWNlLAFob3N0PTEyNy4wLjAuMQFwb3J0", 0,
             "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n", 0},
            {"AQ==\r", 0, "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", 0},
            {"A2 AUTHENTICATE OAUTHBEARER bixhPWFsaWNlLAFob3N0PTEyNy4wLjAuMQFwb3J0", 0,
             "A2 OK [CAPABILITY IMAP4rev1] in\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct tokens t = {.tokens = {"tok1", "tok2"}};
        struct imap_session *s;
        char err[256];
        ck_assert_int_eq(open_oauth(&f, script, &t, err, sizeof(err), &s), 0);
        ck_assert_int_eq(t.calls, 2);
        ck_assert(!t.again[0]);
        ck_assert(t.again[1]);
}
END_TEST

START_TEST(test_xoauth2_refused_twice_fails_with_reason)
{
        /* Microsoft: XOAUTH2 only, here without SASL-IR (the response follows
         * the empty "+"); the failure challenge is answered with an empty
         * line; two refusals: the server's reason in one line, explained. */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2] hi\r\n", 0},
            {"A1 AUTHENTICATE XOAUTH2\r", 0, "+ \r\n", 0},
            {"dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sxAQE=\r", 0,
             "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n", 0},
            {NULL, 2, "A1 NO User is authenticated but not connected.\r\n", 0},
            {"A2 AUTHENTICATE XOAUTH2\r", 0, "+ \r\n", 0},
            {"dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2syAQE=\r", 0,
             "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n", 0},
            {NULL, 2, "A2 NO User is authenticated but not connected.\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct tokens t = {.tokens = {"tok1", "tok2", "tok3"}};
        struct imap_session *s;
        char err[512];
        ck_assert_int_eq(open_oauth(&f, script, &t, err, sizeof(err), &s), -EACCES);
        ck_assert_int_eq(t.calls, 2);
        ck_assert_ptr_nonnull(strstr(err, "XOAUTH2"));
        ck_assert_ptr_nonnull(strstr(err, "User is authenticated but not connected"));
        ck_assert_ptr_nonnull(strstr(err, "invalid_token"));
        ck_assert_ptr_nonnull(strstr(err, "another user"));
        ck_assert_ptr_null(strchr(err, '\n'));
        ck_assert_ptr_null(strstr(err, "tok1"));
        ck_assert_ptr_null(strstr(err, "tok2"));
        /* The empty answers to the failure challenges were sent. */
        ck_assert_ptr_nonnull(strstr(f.log, "AQE=\r\n\r\nA2 "));
}
END_TEST

START_TEST(test_oauth_token_command_failure)
{
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER SASL-IR] hi\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct tokens t = {.tokens = {NULL}};
        struct imap_session *s;
        char err[256];
        ck_assert_int_eq(open_oauth(&f, script, &t, err, sizeof(err), &s), -EACCES);
        ck_assert_str_eq(err, "oauth2_token_command failed (exit status 1)");
        ck_assert_ptr_null(strstr(f.log, "AUTHENTICATE"));
}
END_TEST

START_TEST(test_oauth_not_offered)
{
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct tokens t = {.tokens = {"tok1"}};
        struct imap_session *s;
        char err[256];
        ck_assert_int_eq(open_oauth(&f, script, &t, err, sizeof(err), &s), -EACCES);
        ck_assert_ptr_nonnull(strstr(err, "neither AUTHENTICATE OAUTHBEARER nor XOAUTH2"));
        ck_assert_int_eq(t.calls, 0);
}
END_TEST

START_TEST(test_qresync_only_after_enabled)
{
        /* iCloud advertises QRESYNC and doesn't turn it on: without "* ENABLED
         * QRESYNC" it isn't used, and CONDSTORE is asked for instead. */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC] hi\r\n", 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC] ok\r\n", 0},
            {"ENABLE QRESYNC", 0, "$T OK nothing enabled\r\n", 0},
            {"ENABLE CONDSTORE", 0, "* ENABLED CONDSTORE\r\n$T OK\r\n", 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        fake_start(&f, script);
        a = fake_acct(f.port, "pw", true);
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert(!imap_session_caps(s)->qresync);
        ck_assert(imap_session_caps(s)->condstore);
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_qresync_enabled)
{
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC] hi\r\n", 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC] ok\r\n", 0},
            {"ENABLE QRESYNC", 0, "* ENABLED QRESYNC\r\n$T OK\r\n", 0},
            {"NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        fake_start(&f, script);
        a = fake_acct(f.port, "pw", true);
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert(imap_session_caps(s)->qresync);
        ck_assert_int_eq(imap_noop(s), 0);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_oauth_hangup_after_refusal_keeps_the_reason)
{
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hi\r\n", 0},
            {"A1 AUTHENTICATE XOAUTH2 ", 0,
             "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n", 0},
            {NULL, 2, "A1 NO AUTHENTICATE failed.\r\n", 0},
            {"A2 AUTHENTICATE XOAUTH2 ", 0, NULL, 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct tokens t = {.tokens = {"tok1", "tok2"}};
        struct imap_session *s;
        char err[512];
        ck_assert_int_eq(open_oauth(&f, script, &t, err, sizeof(err), &s), -EACCES);
        ck_assert_int_eq(t.calls, 2);
        ck_assert_ptr_nonnull(strstr(err, "AUTHENTICATE failed."));
        ck_assert_ptr_nonnull(strstr(err, "IMAP.AccessAsUser.All"));
}
END_TEST

/* imap_fetch_heads_chain: a command given by next while the first answer is
 * arriving goes out at once. The script answers the first FETCH only in part
 * and waits for the second command before it finishes: a client that waited
 * for the first tagged OK would time out. */
struct chain_ctx {
        struct imap_session *s;
        struct imap_cmd cmd;
        int asked;
        char got[64];
};

static void chain_body(void *ctx, uint32_t uid, const char *data, size_t len)
{
        struct chain_ctx *c = ctx;
        size_t o = strlen(c->got);
        snprintf(c->got + o, sizeof(c->got) - o, "%u:%.*s ", uid, (int)len, data);
}

static struct imap_cmd *chain_next(void *ctx)
{
        struct chain_ctx *c = ctx;
        if (c->asked++ > 0)
                return NULL;
        uint32_t uid = 3;
        ck_assert_int_eq(imap_fetch_heads_cmd(c->s, &uid, 1, 100, &c->cmd), 0);
        return &c->cmd;
}

START_TEST(test_fetch_heads_chain)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"UID FETCH 1:2 (UID BODY.PEEK[]<0.100>)", 0,
             "* 1 FETCH (UID 1 BODY[]<0> {3}\r\nabc)\r\n", 0},
            {"UID FETCH 3 (UID BODY.PEEK[]<0.100>)", 0,
             "* 2 FETCH (UID 2 BODY[]<0> {3}\r\ndef)\r\nA2 OK done\r\n"
             "* 3 FETCH (UID 3 BODY[]<0> {3}\r\nghi)\r\n$T OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct chain_ctx c = {.s = s};
        uint32_t uids[] = {2, 1};
        ck_assert_int_eq(imap_fetch_heads_chain(s, uids, 2, 100, chain_body, &c, chain_next, &c),
                         0);
        imap_cmd_free(&c.cmd);
        ck_assert_str_eq(c.got, "1:abc 2:def 3:ghi ");
        ck_assert(!imap_session_broken(s));
        fake_finish(&f, s);
}
END_TEST

/* A chained command refused before the first one's answer ends (a server
 * may answer FETCHes out of order, RFC 3501 5.5): the refusal is the
 * result, not the first command's OK that comes after it. */
START_TEST(test_fetch_heads_chain_refusal_first)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"UID FETCH 1:2 (UID BODY.PEEK[]<0.100>)", 0,
             "* 1 FETCH (UID 1 BODY[]<0> {3}\r\nabc)\r\n", 0},
            {"UID FETCH 3 (UID BODY.PEEK[]<0.100>)", 0,
             "$T NO [SERVERBUG] lost\r\n* 2 FETCH (UID 2 BODY[]<0> {3}\r\ndef)\r\n"
             "A2 OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        struct chain_ctx c = {.s = s};
        uint32_t uids[] = {1, 2};
        int r = imap_fetch_heads_chain(s, uids, 2, 100, chain_body, &c, chain_next, &c);
        imap_cmd_free(&c.cmd);
        ck_assert_int_lt(r, 0);
        ck_assert_str_eq(c.got, "1:abc 2:def ");
        ck_assert(!imap_session_broken(s));
        fake_finish(&f, s);
}
END_TEST

/* A server like Dovecot, which reads a command only after it has written
 * the whole answer to the one before, with small socket buffers (as a real
 * link has, where loopback's are megabytes): chained commands it has not
 * read yet fill its receive buffer and then ours; a client that then blocks
 * writing the next one no longer reads, the server blocks writing its
 * answer, and both wait for the deadline. The chain must never have more
 * unread command bytes out than the buffers hold. */
struct wall {
        int lfd;
        unsigned port;
        pthread_t thread;
        unsigned chained; /* commands answered after the first FETCH */
};

/* One line (up to cap - 1 bytes kept), byte by byte: 0 at EOF. */
static ssize_t wall_line(int fd, char *buf, size_t cap)
{
        size_t n = 0;
        for (;;) {
                char c;
                ssize_t r = read(fd, &c, 1);
                if (r <= 0)
                        return r < 0 ? -1 : 0;
                if (n + 1 < cap)
                        buf[n++] = c;
                if (c == '\n') {
                        buf[n] = '\0';
                        return (ssize_t)n;
                }
        }
}

static int wall_write(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t w = write(fd, buf, len);
                if (w <= 0)
                        return -1;
                buf += w;
                len -= (size_t)w;
        }
        return 0;
}

static int wall_ok(int fd, const char *line, const char *caps)
{
        char out[128];
        int n =
            snprintf(out, sizeof(out), "%.*s OK %sdone\r\n", (int)strcspn(line, " "), line, caps);
        return wall_write(fd, out, (size_t)n);
}

static void *wall_main(void *arg)
{
        struct wall *w = arg;
        int fd = accept(w->lfd, NULL, NULL);
        if (fd < 0)
                return NULL;
        char line[256];
        static char body[512 * 1024];
        memset(body, 'x', sizeof(body));
        if (wall_write(fd, GREETING, strlen(GREETING)) < 0 ||
            wall_line(fd, line, sizeof(line)) <= 0 ||
            wall_ok(fd, line, "[CAPABILITY IMAP4rev1] ") < 0 ||
            wall_line(fd, line, sizeof(line)) <= 0)
                goto out;
        /* The first FETCH's answer: 16 MiB, more than both sides' buffers
         * hold, written before reading on. */
        for (unsigned i = 1; i <= 32; i++) {
                char head[96];
                int n = snprintf(head, sizeof(head), "* %u FETCH (UID %u BODY[]<0> {%zu}\r\n", i, i,
                                 sizeof(body));
                if (wall_write(fd, head, (size_t)n) < 0 || wall_write(fd, body, sizeof(body)) < 0 ||
                    wall_write(fd, ")\r\n", 3) < 0)
                        goto out;
        }
        if (wall_ok(fd, line, "") < 0)
                goto out;
        while (wall_line(fd, line, sizeof(line)) > 0 && wall_ok(fd, line, "") == 0)
                w->chained++;
out:
        close(fd);
        return NULL;
}

/* A small send buffer on our side of the connection to port too (no
 * autotuning: loopback's starts at a megabyte). */
static void wall_shrink_client(unsigned port)
{
        for (int fd = 3; fd < 1024; fd++) {
                struct sockaddr_in peer;
                socklen_t pl = sizeof(peer);
                if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0 &&
                    peer.sin_family == AF_INET && ntohs(peer.sin_port) == port) {
                        int small = 8192;
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
                }
        }
}

struct wall_next {
        struct imap_session *s;
        struct imap_cmd cmd;
        bool live;
        int asked;
};

/* Up to 7 more FETCHes of 600 scattered messages each (some 5 KB). */
static struct imap_cmd *wall_next_fn(void *ctx)
{
        struct wall_next *c = ctx;
        if (c->live)
                imap_cmd_free(&c->cmd);
        c->live = false;
        if (c->asked >= 7)
                return NULL;
        c->asked++;
        static uint32_t uids[600];
        for (uint32_t i = 0; i < 600; i++)
                uids[i] = 1000000 * (uint32_t)c->asked + 2 * i;
        ck_assert_int_eq(imap_fetch_heads_cmd(c->s, uids, 600, 100, &c->cmd), 0);
        c->live = true;
        return &c->cmd;
}

static void wall_body(void *ctx, uint32_t uid, const char *data, size_t len)
{
        (void)uid;
        (void)data;
        *(size_t *)ctx += len;
}

START_TEST(test_fetch_heads_chain_never_blocks_writing)
{
        struct wall w = {0};
        w.lfd = socket(AF_INET, SOCK_STREAM, 0);
        int small = 4096;
        setsockopt(w.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        ck_assert_int_eq(bind(w.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(w.lfd, 1), 0);
        ck_assert_int_eq(getsockname(w.lfd, (struct sockaddr *)&sa, &sl), 0);
        w.port = ntohs(sa.sin_port);
        pthread_create(&w.thread, NULL, wall_main, &w);
        struct imap_account a = fake_acct(w.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        wall_shrink_client(w.port);
        struct wall_next c = {.s = s};
        size_t got = 0;
        uint32_t first[] = {1, 2};
        int r = imap_fetch_heads_chain(s, first, 2, 100, wall_body, &got, wall_next_fn, &c);
        if (c.live)
                imap_cmd_free(&c.cmd);
        ck_assert_int_eq(r, 0);
        ck_assert(!imap_session_broken(s));
        ck_assert_uint_eq(got, 32u * 512 * 1024);
        ck_assert_int_ge(c.asked, 1); /* chained at all */
        imap_session_free(s);
        pthread_join(w.thread, NULL);
        close(w.lfd);
        ck_assert_uint_eq(w.chained, (unsigned)c.asked);
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
        tcase_add_test(tc, test_fetch_heads_chain);
        tcase_add_test(tc, test_fetch_heads_chain_refusal_first);
        tcase_add_test(tc, test_fetch_heads_chain_never_blocks_writing);
        tcase_add_test(tc, test_deadline_breaks_session);
        tcase_add_test(tc, test_bye_breaks_session);
        tcase_add_test(tc, test_select_and_unsolicited_events);
        tcase_add_test(tc, test_hostile_mailbox_name_is_literal);
        tcase_add_test(tc, test_expunge_is_store_then_uid_expunge);
        tcase_add_test(tc, test_expunge_kept_by_server_is_eacces);
        tcase_add_test(tc, test_pipeline_sends_before_reading);
        tcase_add_test(tc, test_expunge_refused_without_uidplus);
        tcase_add_test(tc, test_oversized_literal_refused);
        tcase_add_test(tc, test_expunge_refused_takes_the_flag_back);
        tcase_add_test(tc, test_expunge_with_another_uid_vanished_is_not_done);
        tcase_add_test(tc, test_expunge_failure_keeps_a_flag_set_before);
        tcase_add_test(tc, test_move_copy_fallback_failure_unflags_the_original);
        tcase_add_test(tc, test_copy_confirming_nothing_never_expunges);
        tcase_add_test(tc, test_status_of_another_mailbox_is_an_event);
        tcase_add_test(tc, test_no_with_brace_text_keeps_the_session);
        tcase_add_test(tc, test_long_permanentflags_kept_whole);
        tcase_add_test(tc, test_store_result_kept_whole);
        tcase_add_test(tc, test_search_beyond_line_limit);
        tcase_add_test(tc, test_search_beyond_line_limit_with_modseq);
        tcase_add_test(tc, test_esearch_beyond_line_limit);
        tcase_add_test(tc, test_untagged_data_keeps_selection_current);
        tcase_add_test(tc, test_quiet_reports_what_our_command_does_not_explain);
        tcase_add_test(tc, test_sasl_encodings);
        tcase_add_test(tc, test_plain_preferred_with_sasl_ir);
        tcase_add_test(tc, test_oauthbearer_refused_then_fresh_token);
        tcase_add_test(tc, test_xoauth2_refused_twice_fails_with_reason);
        tcase_add_test(tc, test_oauth_token_command_failure);
        tcase_add_test(tc, test_oauth_not_offered);
        tcase_add_test(tc, test_qresync_only_after_enabled);
        tcase_add_test(tc, test_qresync_enabled);
        tcase_add_test(tc, test_oauth_hangup_after_refusal_keeps_the_reason);
        tcase_add_test(tc, test_status_many_matched_by_name);
        tcase_add_test(tc, test_status_many_beyond_one_chunk);
        tcase_add_test(tc, test_status_many_literal_name_goes_alone);
        tcase_add_test(tc, test_list_status_tree_and_statuses_in_one_command);
        tcase_add_test(tc, test_list_status_needs_the_capability);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
