/* What issue 15 added for servers other than Dovecot, against a scripted
 * fake server: NAMESPACE's personal prefix, the guarded plain EXPUNGE on a
 * server without UIDPLUS, and UNSELECT publishing a STORE's flags. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "imap/ops_find.h"
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

/* The lost-answer check asks for one UID. GNU Mailutils 3.15 reads "UID
 * SEARCH UID n" as a sequence number (with UIDs 1 3 4, "UID SEARCH UID 3"
 * answers 4, and a check of 3 would find it gone), so the check uses UID
 * FETCH; the scripts answer as Mailutils did when tried. */
static int uid_present_with(const struct step *script, uint32_t uid, bool *present)
{
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        select_inbox(s);
        int r = imap_uid_present(s, uid, present);
        fake_finish(&f, s);
        return r;
}

START_TEST(test_uid_present_fetches)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID FETCH 3 (UID)\r", 0, "* 2 FETCH (UID 3)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        bool present = false;
        ck_assert_int_eq(uid_present_with(script, 3, &present), 0);
        ck_assert(present);
}
END_TEST

/* A UID past the last one: Mailutils answers with the last message. */
START_TEST(test_uid_present_past_the_end)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID FETCH 9 (UID)\r", 0, "* 3 FETCH (UID 4)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        bool present = true;
        ck_assert_int_eq(uid_present_with(script, 9, &present), 0);
        ck_assert(!present);
}
END_TEST

/* RFC 3501: a UID that isn't there fetches nothing (Dovecot, Cyrus). */
START_TEST(test_uid_present_nothing_fetched)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID FETCH 2 (UID)\r", 0, "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        bool present = true;
        ck_assert_int_eq(uid_present_with(script, 2, &present), 0);
        ck_assert(!present);
}
END_TEST

/* Mailutils answers a missing UID with BAD "Failed to parse message set",
 * the same words as for a set that is malformed: no proof. The UIDs of
 * every message (by sequence number, which every server parses) are. */
START_TEST(test_uid_present_bad_then_every_uid)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID FETCH 2 (UID)\r", 0, "$T BAD UID FETCH Failed to parse message set\r\n", 0},
            {"A3 FETCH 1:* (UID)\r", 0,
             "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\n$T OK done\r\n", 0},
            {"A4 UID FETCH 3 (UID)\r", 0, "$T BAD UID FETCH Failed to parse message set\r\n", 0},
            {"A5 FETCH 1:* (UID)\r", 0,
             "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        select_inbox(s);
        bool present = true;
        ck_assert_int_eq(imap_uid_present(s, 2, &present), 0);
        ck_assert(!present);
        present = false;
        ck_assert_int_eq(imap_uid_present(s, 3, &present), 0);
        ck_assert(present);
        fake_finish(&f, s);
}
END_TEST

/* Neither question answered: unknown, never "gone". */
START_TEST(test_uid_present_unknown_is_eio)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID FETCH 2 (UID)\r", 0, "$T BAD UID FETCH Failed to parse message set\r\n", 0},
            {"A3 FETCH 1:* (UID)\r", 0, "$T BAD no\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        bool present = false;
        ck_assert_int_eq(uid_present_with(script, 2, &present), -EIO);
}
END_TEST

/* Our APPEND got UID 5, then UID 7 arrived (UIDs 1 3 5 7): Mailutils reads
 * "UID 5:*" as sequence numbers 4:5 and finds only UID 7. Not found there
 * must not be believed (the caller would APPEND a second time): the whole
 * folder is asked, and UIDs below the floor (older copies) don't count. */
START_TEST(test_find_appended_asks_again_over_the_folder)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID SEARCH UID 5:* HEADER Message-ID \"<m@x>\"\r", 0, "* SEARCH\r\n$T OK\r\n", 0},
            {"A3 UID SEARCH HEADER Message-ID \"<m@x>\"\r", 0, "* SEARCH 1 5\r\n$T OK\r\n", 0},
            {"A4 UID SEARCH UID 8:* HEADER Message-ID \"<m@x>\"\r", 0, "* SEARCH 5\r\n$T OK\r\n",
             0},
            {"A5 UID SEARCH HEADER Message-ID \"<m@x>\"\r", 0, "* SEARCH 1 5\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        select_inbox(s);
        uint32_t uid = 0;
        ck_assert_int_eq(imap_find_appended(s, "INBOX", "<m@x>", 100, 5, &uid), 0);
        ck_assert_uint_eq(uid, 5);
        /* "UID 8:*" answers the highest UID below 8: neither search has ours */
        ck_assert_int_eq(imap_find_appended(s, "INBOX", "<m@x>", 100, 8, &uid), -ENOENT);
        fake_finish(&f, s);
}
END_TEST

/* Found at once (Dovecot, Cyrus): one search. */
START_TEST(test_find_appended_found_at_once)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            {"LOGIN", 0, "$T OK [CAPABILITY IMAP4rev1] ok\r\n", 0},
            {"A2 UID SEARCH UID 5:* LARGER 99 SMALLER 101\r", 0, "* SEARCH 6\r\n$T OK\r\n", 0},
            {"A3 NOOP", 0, "$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s = fake_open(&f, script, &a);
        select_inbox(s);
        uint32_t uid = 0;
        ck_assert_int_eq(imap_find_appended(s, "INBOX", NULL, 100, 5, &uid), 0);
        ck_assert_uint_eq(uid, 6);
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "NOOP");
        ck_assert_int_eq(imap_session_cmd(s, &cmd, NULL, NULL, &res), 0);
        imap_cmd_free(&cmd);
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
        tcase_add_test(tc, test_uid_present_fetches);
        tcase_add_test(tc, test_uid_present_past_the_end);
        tcase_add_test(tc, test_uid_present_nothing_fetched);
        tcase_add_test(tc, test_uid_present_bad_then_every_uid);
        tcase_add_test(tc, test_uid_present_unknown_is_eio);
        tcase_add_test(tc, test_find_appended_asks_again_over_the_folder);
        tcase_add_test(tc, test_find_appended_found_at_once);
        suite_add_tcase(su, tc);
        return unit_run(su);
}
