/* What issue 15 added for servers other than Dovecot, against a scripted
 * fake server: NAMESPACE's personal prefix, the guarded plain EXPUNGE on a
 * server without UIDPLUS, and UNSELECT publishing a STORE's flags. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "imap/ops_namespace.h"
#include "imap/ops_write.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

static void select_inbox(struct imap_session *s)
{
        struct imap_select_info si = {.uidvalidity = 7, .uidnext = 10, .exists = 3};
        imap_session_set_selected(s, "INBOX", &si);
}

START_TEST(test_namespace_prefix)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 NAMESPACE"),
            {"A2 NAMESPACE\r", 0,
             "* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) NIL\r\n$T OK\r\n", 0},
            {"A3 NAMESPACE\r", 0, "* NAMESPACE NIL NIL ((\"\" \"/\"))\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        char *p = NULL, d = 0;
        ck_assert_int_eq(imap_namespace_personal(s, &p, &d), 0);
        ck_assert_str_eq(p, "INBOX.");
        ck_assert_int_eq(d, '.');
        free(p);
        /* no personal namespace: shown as LIST gives it */
        ck_assert_int_eq(imap_namespace_personal(s, &p, &d), 0);
        ck_assert_str_eq(p, "");
        free(p);
        fake_finish(&f, s);
}
END_TEST

START_TEST(test_namespace_needs_the_capability)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1"),
            {"A2 NOOP", 0, "$T OK\r\n", 0}, /* nothing was sent before */
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        char *p = NULL, d = 0;
        ck_assert_int_eq(imap_namespace_personal(s, &p, &d), 0);
        ck_assert_str_eq(p, "");
        free(p);
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "NOOP");
        ck_assert_int_eq(imap_session_cmd(s, &cmd, NULL, NULL, &res), 0);
        imap_cmd_free(&cmd);
        fake_finish(&f, s);
}
END_TEST

/* A server without UIDPLUS: the guarded EXPUNGE's first round trip, the FETCH
 * of the flags UID 5 had and the STORE of \Deleted. */
/* clang-format off */
#define FLAG_5_DELETED \
        {"A2 UID FETCH 5 (UID FLAGS)\r", 0, "* 2 FETCH (UID 5 FLAGS ())\r\n$T OK\r\n", 0}, \
        {"A3 UID STORE 5 +FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0}
/* clang-format on */

/* imap_expunge_guarded(5) in INBOX against script; the script must be played to its end. */
static int guarded_expunge_5(const struct step *script)
{
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        select_inbox(s);
        int r = imap_expunge_guarded(s, 5);
        fake_finish(&f, s);
        return r;
}

START_TEST(test_guarded_expunge_refused_beside_another_deleted)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UNSELECT"),
            FLAG_5_DELETED,
            {"A4 UID SEARCH DELETED\r", 0, "* SEARCH 5 7\r\n$T OK\r\n", 0},
            /* our flag goes back; no EXPUNGE */
            {"A5 UID STORE 5 -FLAGS.SILENT (\\Deleted)\r", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        ck_assert_int_eq(guarded_expunge_5(script), -EPERM);
}
END_TEST

START_TEST(test_guarded_expunge_when_only_ours)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UNSELECT"),
            FLAG_5_DELETED,
            {"A4 UID SEARCH DELETED\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            {"A5 EXPUNGE\r", 0, "* 2 EXPUNGE\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        ck_assert_int_eq(guarded_expunge_5(script), 0);
}
END_TEST

/* Mailutils 3.15 answers EXPUNGE with "* n EXPUNGED": SEARCH DELETED decides. */
START_TEST(test_guarded_expunge_checks_without_an_expunge_response)
{
        static const struct step script[] = {
            FAKE_LOGIN("IMAP4rev1 UNSELECT"),
            FLAG_5_DELETED,
            {"A4 UID SEARCH DELETED\r", 0, "* SEARCH 5\r\n$T OK\r\n", 0},
            {"A5 EXPUNGE\r", 0, "* 2 EXPUNGED\r\n* 2 EXISTS\r\n$T OK\r\n", 0},
            {"A6 UID SEARCH DELETED\r", 0, "* SEARCH\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        ck_assert_int_eq(guarded_expunge_5(script), 0);
}
END_TEST

START_TEST(test_publish_flags_unselects_only_where_needed)
{
        static const struct step mailutils[] = {
            FAKE_LOGIN("IMAP4rev1 UNSELECT"),
            {"A2 UNSELECT\r", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, mailutils, &a);
        select_inbox(s);
        ck_assert_int_eq(imap_publish_flags(s), 0);
        ck_assert_ptr_null(imap_session_selected(s));
        fake_finish(&f, s);

        static const struct step condstore[] = {
            FAKE_LOGIN("IMAP4rev1 UNSELECT CONDSTORE"),
            {NULL, 0, NULL, 0},
        };
        s = fake_open(&f, condstore, &a);
        select_inbox(s);
        ck_assert_int_eq(imap_publish_flags(s), 0);
        ck_assert_str_eq(imap_session_selected(s), "INBOX");
        fake_finish(&f, s);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        Suite *su = suite_create("ops_servers");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_namespace_prefix);
        tcase_add_test(tc, test_namespace_needs_the_capability);
        tcase_add_test(tc, test_guarded_expunge_refused_beside_another_deleted);
        tcase_add_test(tc, test_guarded_expunge_when_only_ours);
        tcase_add_test(tc, test_guarded_expunge_checks_without_an_expunge_response);
        tcase_add_test(tc, test_publish_flags_unselects_only_where_needed);
        suite_add_tcase(su, tc);
        return unit_run(su);
}
