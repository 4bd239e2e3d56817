/* Scratch names (local files) and the "starts like a message" test. */
#include <string.h>

#include "fs/scratch.h"
#include "tests/unit/unit_main.h"

START_TEST(test_scratch_names)
{
        static const char *const yes[] = {
            ".notes",
            ".a.eml.swp",
            ".a.eml.swx",
            ".a.eml.Zq81Kd",
            ".~lock.report.odt#",
            "draft.eml~",
            "~",
            "#draft.eml#",
            "x.swp",
            "x.swx",
            "4913",
            "sedAb3xYz",
            "sed012345",
            ".",
            ".Trash-0",
            ".hidden",
        };
        static const char *const no[] = {
            "a.eml",         "2024-03-01 Hello [12].eml",
            "12.eml",        "4914",
            "49130",         "sed",
            "sedabc",        "sedabcdefg",
            "sed-abcde",     "notes.txt",
            "#draft",        "draft#",
            "x.swpx",        "a~b",
            "Übersicht.eml", "",
            "sedAb3xY!",
        };
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                ck_assert_msg(scratch_name(yes[i]), "%s should be a scratch name", yes[i]);
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
                ck_assert_msg(!scratch_name(no[i]), "%s should not be a scratch name", no[i]);
}
END_TEST

static bool looks(const char *s)
{
        return scratch_looks_like_message(s, strlen(s));
}

START_TEST(test_looks_like_message)
{
        ck_assert(looks("From: a@b\r\n\r\nhi"));
        ck_assert(looks("Return-Path: <a@b>\n"));
        ck_assert(looks("X-Weird_Name!: v"));
        ck_assert(looks("Subject : obsolete blank before the colon"));
        ck_assert(looks("From alice@example.org Fri Mar  1 10:00:00 2024\nFrom: a\n"));
        ck_assert(looks("Received:"));
        ck_assert(looks("\xef\xbb\xbf"
                        "From: <abuse@example.com>\n"));
        ck_assert(!looks("\xef\xbb\xbf"
                         "text"));
        ck_assert(!looks("This is a simple message not having headers.\r\n"));
        ck_assert(!looks(""));
        ck_assert(!looks(":no name"));
        ck_assert(!looks("just some notes\nnot a mail\n"));
        ck_assert(!looks("b0VIM 9.0"));
        ck_assert(!looks("\x7f"
                         "ELF"));
        ck_assert(!looks(" Subject: folded?"));
        ck_assert(!looks("Subject"));
        ck_assert(!looks("From"));
        ck_assert(!scratch_looks_like_message("\0\1\2", 3));
        /* the length bounds the scan */
        ck_assert(!scratch_looks_like_message("Subject: x", 7));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("scratch");
        TCase *tc = tcase_create("scratch");
        tcase_add_test(tc, test_scratch_names);
        tcase_add_test(tc, test_looks_like_message);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
