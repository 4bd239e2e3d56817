/* The FETCH commands of the parts view (imap/ops_parts.c) against a scripted
 * fake server: every command a PEEK, answers matched by UID, section and
 * origin (a hostile origin is no data), literal8 for BINARY, item lists per
 * message. The fake server is test_session.c's. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/conn.h"
#include "imap/ops_parts.h"
#include "imap/session.h"
#include "tests/unit/fake_server.h"
#include "tests/unit/unit_main.h"

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

/* Another session expunged the message: Dovecot's NIL with OK [EXPUNGEISSUED]
 * is "gone", not an empty part (a read would end there with success). */
START_TEST(test_section_expunged_is_gone)
{
        static const struct step script[] = {
            {NULL, 0, GREETING, 0},
            LOGIN_OK,
            {"UID FETCH 7 (UID BODY.PEEK[2]<0.100>)", 0,
             "* 3 FETCH (UID 7 BODY[2]<0> NIL)\r\n$T OK [EXPUNGEISSUED] Some messages were also "
             "expunged\r\n",
             0},
            {"UID FETCH 7 (UID BODY.PEEK[3])", 0, "* 3 FETCH (UID 7 BODY[3] \"\")\r\n$T OK\r\n", 0},
            {NULL, 0, NULL, 0},
        };
        struct fake f;
        struct imap_account a;
        struct imap_session *s;
        struct got g = {0};
        ck_assert_int_eq(open_plain(&f, script, &a, &s), 0);
        ck_assert_int_eq(imap_fetch_section(s, 7, "2", false, 0, 100, on_bytes, &g), -ENOENT);
        /* an empty part that is there stays an empty part */
        ck_assert_int_eq(imap_fetch_section(s, 7, "3", false, 0, 0, on_bytes, &g), 0);
        ck_assert_uint_eq(g.len, 0);
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
        Suite *s = suite_create("ops_parts");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_section_range_binary_literal8);
        tcase_add_test(tc, test_section_wrong_origin_or_section_is_no_data);
        tcase_add_test(tc, test_section_refused_is_an_error);
        tcase_add_test(tc, test_section_expunged_is_gone);
        tcase_add_test(tc, test_items_per_message);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
