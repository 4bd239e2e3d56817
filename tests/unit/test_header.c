/* Header field extraction from a HEADER.FIELDS fetch. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "imap/header.h"
#include "tests/unit/unit_main.h"

static void expect(const char *hdr, const char *name, const char *want)
{
        char *v = imap_header_field(hdr, strlen(hdr), name);
        if (!want) {
                ck_assert_ptr_null(v);
                return;
        }
        ck_assert_ptr_nonnull(v);
        ck_assert_str_eq(v, want);
        free(v);
}

START_TEST(test_simple)
{
        expect("Subject: Hello\r\nDate: Fri, 1 Mar 2024 10:00:00 +0000\r\n\r\n", "Subject",
               "Hello");
        expect("Subject: Hello\r\nDate: Fri, 1 Mar 2024 10:00:00 +0000\r\n\r\n", "date",
               "Fri, 1 Mar 2024 10:00:00 +0000");
}
END_TEST

START_TEST(test_folded)
{
        expect("Subject: one\r\n two\r\n\tthree\r\nDate: x\r\n\r\n", "Subject",
               "one\r\n two\r\n\tthree");
}
END_TEST

START_TEST(test_absent_and_prefix)
{
        expect("Subjectivity: no\r\n\r\n", "Subject", NULL);
        expect("", "Subject", NULL);
        expect("\r\nSubject: after the blank line\r\n", "Subject", NULL);
}
END_TEST

START_TEST(test_bare_lf_and_no_final_newline)
{
        expect("Date: a\nSubject:b", "Subject", "b");
        expect("Subject :  spaced\n\n", "Subject", "spaced");
        expect("Subject:\r\n\r\n", "Subject", "");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("header");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_simple);
        tcase_add_test(tc, test_folded);
        tcase_add_test(tc, test_absent_and_prefix);
        tcase_add_test(tc, test_bare_lf_and_no_final_newline);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
