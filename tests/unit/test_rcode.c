/* The response-code table: every RFC 5530 code gives its errno and back-off
 * flag, the texts of servers that send no code (Dovecot's "Mailbox doesn't
 * exist" for STATUS), the size and name-length refinements, throttling
 * texts with a suggested wait, and the back-off arithmetic. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "imap/rcode.h"
#include "tests/unit/unit_main.h"

static struct imap_result res(enum imap_status st, const char *code, const char *text)
{
        struct imap_result r;
        memset(&r, 0, sizeof(r));
        r.status = st;
        snprintf(r.code, sizeof(r.code), "%s", code);
        snprintf(r.text, sizeof(r.text), "%s", text);
        return r;
}

static const struct {
        const char *code, *text;
        int err;
        bool backoff;
} cases[] = {
    {"NONEXISTENT", "Mailbox doesn't exist: X", -ENOENT, false},
    {"TRYCREATE", "no such mailbox", -ENOENT, false},
    {"ALREADYEXISTS", "Mailbox already exists", -EEXIST, false},
    {"NOPERM", "Permission denied", -EACCES, false},
    {"INUSE", "Mailbox is locked", -EBUSY, false},
    {"OVERQUOTA", "Quota exceeded (mailbox for user is full)", -EDQUOT, false},
    {"TOOBIG", "message too big", -EFBIG, false},
    {"LIMIT", "Too many mailboxes", -ENOSPC, true},
    {"LIMIT", "Mail size is larger than the maximum size allowed by server configuration", -EFBIG,
     false},
    {"UNAVAILABLE", "Backend down, try later", -EAGAIN, true},
    {"CANNOT", "Mailbox name too long", -ENAMETOOLONG, false},
    {"CANNOT", "Can't rename mailbox under itself", -EPERM, false},
    {"HASCHILDREN", "has children", -ENOTEMPTY, false},
    {"SERVERBUG", "Internal error", -EIO, false},
    {"CORRUPTION", "index broken", -EIO, false},
    {"EXPIRED", "password expired", -EACCES, false},
    {"AUTHORIZATIONFAILED", "no", -EACCES, false},
    {"CONTACTADMIN", "call us", -EACCES, false},
    {"", "Mailbox doesn't exist: Gone", -ENOENT, false},
    {"", "Request is throttled. Suggested Backoff Time: 236 milliseconds", -EAGAIN, true},
    {"THROTTLED", "slow down", -EAGAIN, true},
    {"", "something else went wrong", -EPROTO, false},
    {"XSOMETHING", "unknown code", -EPROTO, false},
};

START_TEST(test_table)
{
        struct imap_result r = res(IMAP_ST_NO, cases[_i].code, cases[_i].text);
        struct imap_rcode_class c = imap_rcode_classify(&r);
        ck_assert_msg(c.err == cases[_i].err, "[%s] %s: %d, want %d", cases[_i].code,
                      cases[_i].text, c.err, cases[_i].err);
        ck_assert_int_eq(imap_result_errno("TEST", &r), cases[_i].err);
        ck_assert_int_eq(imap_result_backoff(&r, NULL), cases[_i].backoff);
        ck_assert_int_eq(imap_errno_backoff(c.err), cases[_i].backoff);
}
END_TEST

START_TEST(test_ok_is_zero)
{
        struct imap_result r = res(IMAP_ST_OK, "NONEXISTENT", "odd but OK");
        ck_assert_int_eq(imap_result_errno("TEST", &r), 0);
        ck_assert(!imap_result_backoff(&r, NULL));
        r = res(IMAP_ST_BAD, "", "Error in IMAP command");
        ck_assert_int_eq(imap_result_errno("TEST", &r), -EPROTO);
}
END_TEST

START_TEST(test_suggested_wait)
{
        int ms = -1;
        struct imap_result r =
            res(IMAP_ST_NO, "", "Request is throttled. Suggested Backoff Time: 236 milliseconds");
        ck_assert(imap_result_backoff(&r, &ms));
        ck_assert_int_eq(ms, 236);
        r = res(IMAP_ST_NO, "UNAVAILABLE", "throttled, suggested backoff time: 3 seconds");
        ck_assert(imap_result_backoff(&r, &ms));
        ck_assert_int_eq(ms, 3000);
        r = res(IMAP_ST_NO, "LIMIT", "Too many commands");
        ck_assert(imap_result_backoff(&r, &ms));
        ck_assert_int_eq(ms, 0);
        r = res(IMAP_ST_NO, "NOPERM", "Suggested Backoff Time: 5 seconds");
        ck_assert(!imap_result_backoff(&r, &ms));
        ck_assert_int_eq(ms, 0);
}
END_TEST

START_TEST(test_backoff_arithmetic)
{
        ck_assert_int_eq(imap_backoff_ms(1, 1000, 60000, 0), 1000);
        ck_assert_int_eq(imap_backoff_ms(2, 1000, 60000, 0), 2000);
        ck_assert_int_eq(imap_backoff_ms(4, 1000, 60000, 0), 8000);
        ck_assert_int_eq(imap_backoff_ms(40, 1000, 60000, 0), 60000);
        ck_assert_int_eq(imap_backoff_ms(1000000, 1000, 60000, 0), 60000);
        ck_assert_int_eq(imap_backoff_ms(1, 1000, 60000, 5000), 5000);
        ck_assert_int_eq(imap_backoff_ms(0, 1000, 60000, 0), 1000);
}
END_TEST

START_TEST(test_retry_table)
{
        struct imap_retry t = {0};
        bool back = true;
        ck_assert(imap_retry_due(&t, "A"));
        ck_assert_int_eq(imap_retry_note(&t, "A", -EIO, 1000, 8000, &back), 0);
        ck_assert(!back);
        ck_assert(imap_retry_due(&t, "A")); /* the connection failed, not A */
        ck_assert_int_eq(imap_retry_note(&t, "A", -EAGAIN, 1000, 8000, &back), 1000);
        ck_assert(!imap_retry_due(&t, "A"));
        ck_assert(imap_retry_due(&t, "B"));
        ck_assert_int_eq(imap_retry_note(&t, "A", -EPROTO, 1000, 8000, NULL), 2000);
        ck_assert_int_eq(imap_retry_note(&t, "A", -EPROTO, 1000, 8000, NULL), 4000);
        ck_assert_int_eq(imap_retry_note(&t, "A", -EPROTO, 1000, 8000, NULL), 8000);
        ck_assert_int_eq(imap_retry_note(&t, "A", -EPROTO, 1000, 8000, NULL), 8000);
        ck_assert_int_eq(imap_retry_note(&t, "A", 0, 1000, 8000, &back), 0);
        ck_assert(back);
        ck_assert(imap_retry_due(&t, "A"));
        ck_assert_int_eq(imap_retry_note(&t, "A", -EACCES, 1000, 8000, NULL), 1000);
        ck_assert_int_eq(imap_retry_note(&t, "B", -EACCES, 0, 0, NULL), 0);
        ck_assert(imap_retry_due(&t, "B")); /* a zero wait is due at once */
        imap_retry_clear(&t);
        ck_assert(imap_retry_due(&t, "A"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("rcode");
        TCase *tc = tcase_create("core");
        tcase_add_loop_test(tc, test_table, 0, sizeof(cases) / sizeof(cases[0]));
        tcase_add_test(tc, test_ok_is_zero);
        tcase_add_test(tc, test_suggested_wait);
        tcase_add_test(tc, test_backoff_arithmetic);
        tcase_add_test(tc, test_retry_table);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
