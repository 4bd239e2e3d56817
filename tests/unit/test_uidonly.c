/* UIDONLY (RFC 9586, issue 10, Yahoo): ENABLE UIDONLY where offered and
 * only once the server says ENABLED; then "* <uid> UIDFETCH (...)" instead
 * of FETCH, VANISHED instead of EXPUNGE, against a scripted server. A
 * server without it, or one that doesn't enable it, keeps the usual FETCH. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/ops.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

#define UGREETING "* OK [CAPABILITY IMAP4rev1 ENABLE UIDONLY] yahoo-like\r\n"
#define SELECT_OK                                                                                  \
        "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 90001] n\r\n"                       \
        "$T OK [READ-WRITE] selected\r\n"

struct seen {
        uint32_t uids[8];
        uint64_t sizes[8];
        char flags[8][64];
        size_t n;
};

static void on_msg(void *ctx, const struct imap_msg_info *m)
{
        struct seen *s = ctx;
        if (s->n < 8) {
                s->uids[s->n] = m->uid;
                s->sizes[s->n] = m->size;
                snprintf(s->flags[s->n], sizeof(s->flags[0]), "%s", m->flags);
                s->n++;
        }
}

struct events {
        int kinds[8];
        uint32_t uid[8], n[8];
        size_t count;
};

static void on_event(void *ctx, const struct imap_event *ev)
{
        struct events *e = ctx;
        if (e->count < 8) {
                e->kinds[e->count] = ev->kind;
                e->uid[e->count] = ev->uid;
                e->n[e->count] = ev->n;
                e->count++;
        }
}

START_TEST(test_uidfetch_listing_and_events)
{
        static const struct step script[] = {
            {NULL, 0, UGREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"ENABLE UIDONLY\r", 0, "* ENABLED UIDONLY\r\n$T OK enabled\r\n", 0},
            {"SELECT \"INBOX\"", 0, SELECT_OK, 0},
            /* Big UIDs past any message count: Yahoo's mailboxes over its limit. */
            {"UID FETCH 1:* (UID RFC822.SIZE", 0,
             "* 70001 UIDFETCH (RFC822.SIZE 120 INTERNALDATE \"01-Mar-2024 10:00:00 +0000\" "
             "FLAGS (\\Seen) BODY[HEADER.FIELDS (DATE SUBJECT)] {12}\r\nSubject: a\r\n)\r\n"
             "* 80002 UIDFETCH (UID 80002 RFC822.SIZE 340 INTERNALDATE "
             "\"01-Mar-2024 11:00:00 +0000\" FLAGS () BODY[HEADER.FIELDS (DATE SUBJECT)] "
             "{12}\r\nSubject: b\r\n)\r\n"
             "$T OK done\r\n",
             0},
            /* Another client's flag change and expunge, unsolicited. */
            {"NOOP", 0,
             "* 80002 UIDFETCH (FLAGS (\\Flagged))\r\n* VANISHED 70001\r\n* 2 EXISTS\r\n"
             "$T OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct events ev = {0};
        struct imap_account a = fake_acct(f.port, "pw", true);
        a.on_event = on_event;
        a.event_ctx = &ev;
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert(imap_session_caps(s)->uidonly);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "INBOX", &si), 0);
        ck_assert_uint_eq(si.exists, 3);
        struct seen seen = {0};
        ck_assert_int_eq(imap_fetch_listing(s, on_msg, &seen), 0);
        ck_assert_uint_eq(seen.n, 2);
        ck_assert_uint_eq(seen.uids[0], 70001);
        ck_assert_uint_eq(seen.sizes[0], 120);
        ck_assert_str_eq(seen.flags[0], "\\Seen");
        ck_assert_uint_eq(seen.uids[1], 80002);
        ck_assert_uint_eq(seen.sizes[1], 340);
        ck_assert_uint_eq(ev.count, 0); /* the listing's data is no event */
        ck_assert_int_eq(imap_noop(s), 0);
        /* The flag change names its UID (not a sequence number); the
         * VANISHED takes one message off the count. */
        ck_assert_uint_ge(ev.count, 2);
        ck_assert_int_eq(ev.kinds[0], IMAP_EV_FETCH);
        ck_assert_uint_eq(ev.uid[0], 80002);
        ck_assert_uint_eq(ev.n[0], 0);
        ck_assert_int_eq(ev.kinds[1], IMAP_EV_VANISHED);
        ck_assert_uint_eq(imap_session_sel_info(s)->exists, 2);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_not_enabled_keeps_fetch)
{
        /* Offered but not enabled (no ENABLED UIDONLY): a UIDFETCH is not
         * expected and not taken for FETCH; the session speaks as usual. */
        static const struct step script[] = {
            {NULL, 0, UGREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"ENABLE UIDONLY\r", 0, "$T OK nothing enabled\r\n", 0},
            {"SELECT \"INBOX\"", 0, SELECT_OK, 0},
            {"UID FETCH 1:* (UID RFC822.SIZE", 0,
             "* 1 FETCH (UID 5 RFC822.SIZE 10 INTERNALDATE \"01-Mar-2024 10:00:00 +0000\" "
             "FLAGS ())\r\n$T OK done\r\n",
             0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert(!imap_session_caps(s)->uidonly);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "INBOX", &si), 0);
        struct seen seen = {0};
        ck_assert_int_eq(imap_fetch_listing(s, on_msg, &seen), 0);
        ck_assert_uint_eq(seen.n, 1);
        ck_assert_uint_eq(seen.uids[0], 5);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

START_TEST(test_no_uidonly_no_enable)
{
        /* Without the capability nothing is asked. */
        static const struct step script[] = {
            {NULL, 0, "* OK [CAPABILITY IMAP4rev1 ENABLE] plain\r\n", 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"NOOP", 0, "$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert_int_eq(imap_noop(s), 0);
        imap_session_free(s);
        fake_stop(&f);
        ck_assert_ptr_null(strstr(f.log, "ENABLE"));
}
END_TEST

START_TEST(test_uidfetch_body_range)
{
        /* A read: UID FETCH of a byte range answered as UIDFETCH. */
        static const struct step script[] = {
            {NULL, 0, UGREETING, 0},
            {"LOGIN", 0, "$T OK in\r\n", 0},
            {"ENABLE UIDONLY\r", 0, "* ENABLED UIDONLY\r\n$T OK enabled\r\n", 0},
            {"SELECT \"INBOX\"", 0, SELECT_OK, 0},
            {"UID FETCH 4000000000 (UID BODY.PEEK[]<0.5>)", 0,
             "* 4000000000 UIDFETCH (BODY[]<0> {5}\r\nHello)\r\n$T OK done\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        fake_start(&f, script);
        struct imap_account a = fake_acct(f.port, "pw", true);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        struct imap_select_info si;
        ck_assert_int_eq(imap_select(s, "INBOX", &si), 0);
        char buf[8] = {0};
        size_t got = 0;
        ck_assert_int_eq(imap_fetch_range(s, 4000000000u, 0, 5, buf, &got), 0);
        ck_assert_uint_eq(got, 5);
        ck_assert_mem_eq(buf, "Hello", 5);
        imap_session_free(s);
        fake_stop(&f);
}
END_TEST

static Suite *uidonly_suite(void)
{
        Suite *s = suite_create("uidonly");
        TCase *tc = tcase_create("uidonly");
        tcase_add_test(tc, test_uidfetch_listing_and_events);
        tcase_add_test(tc, test_not_enabled_keeps_fetch);
        tcase_add_test(tc, test_no_uidonly_no_enable);
        tcase_add_test(tc, test_uidfetch_body_range);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(uidonly_suite());
}
