/* -o exclude=: the glob on folder names (cache/exclude.c). */
#include <check.h>

#include "cache/exclude.h"
#include "tests/unit/unit_main.h"

START_TEST(test_gmail_line)
{
        const char *p = "[Gmail]/All Mail:[Gmail]/Important";
        /* '[' is itself, not a bracket expression. */
        ck_assert(exclude_match(p, "[Gmail]/All Mail", '/'));
        ck_assert(exclude_match(p, "[Gmail]/Important", '/'));
        ck_assert(!exclude_match(p, "[Gmail]/Sent Mail", '/'));
        ck_assert(!exclude_match(p, "[Gmail]", '/'));
        ck_assert(!exclude_match(p, "G/All Mail", '/'));
        ck_assert(!exclude_match(p, "INBOX", '/'));
        /* A hidden folder hides its subfolders. */
        ck_assert(exclude_match(p, "[Gmail]/All Mail/x", '/'));
}
END_TEST

START_TEST(test_wildcards_and_escapes)
{
        ck_assert(exclude_match("Work/O*", "Work/Old", '/'));
        ck_assert(exclude_match("Work/O*", "Work/Old/Deep", '/'));
        ck_assert(!exclude_match("Work/O*", "Work/New", '/'));
        ck_assert(!exclude_match("Work/O*", "Work", '/'));
        /* '*' stays within one level. */
        ck_assert(!exclude_match("W*d", "Work/Old", '/'));
        ck_assert(exclude_match("*/Old", "Work/Old", '/'));
        ck_assert(exclude_match("Wo?k", "Work", '/'));
        ck_assert(exclude_match("a\\:b:c", "a:b", '/'));
        ck_assert(exclude_match("a\\:b:c", "c", '/'));
        ck_assert(!exclude_match("a\\:b:c", "a", '/'));
        ck_assert(exclude_match("x\\*", "x*", '/'));
        ck_assert(!exclude_match("x\\*", "xy", '/'));
        ck_assert(!exclude_match("", "INBOX", '/'));
        ck_assert(!exclude_match(NULL, "INBOX", '/'));
}
END_TEST

START_TEST(test_utf8_names_and_delimiters)
{
        /* The server's name is modified UTF-7; the pattern is UTF-8, with '/'
         * whatever the server's delimiter. "Entw&APw-rfe" is "Entwürfe". */
        ck_assert(exclude_match("Entwürfe", "Entw&APw-rfe", '/'));
        ck_assert(exclude_match("Entw?rfe", "Entw&APw-rfe", '/'));
        ck_assert(exclude_match("INBOX/Entwürfe", "INBOX.Entw&APw-rfe", '.'));
        ck_assert(!exclude_match("INBOX.Entwürfe", "INBOX.Entw&APw-rfe", '.'));
}
END_TEST

START_TEST(test_valid)
{
        ck_assert(exclude_valid("a"));
        ck_assert(exclude_valid(":a"));
        ck_assert(!exclude_valid(""));
        ck_assert(!exclude_valid(":"));
        ck_assert(!exclude_valid("::"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("exclude");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_gmail_line);
        tcase_add_test(tc, test_wildcards_and_escapes);
        tcase_add_test(tc, test_utf8_names_and_delimiters);
        tcase_add_test(tc, test_valid);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
