/* The default cache directory: XDG_CACHE_HOME, HOME, then the passwd entry's
 * home; never a shared directory like /tmp when none is known. getpwuid_r is
 * wrapped at link time (tests/meson.build) to play a passwd entry. */
#include <check.h>
#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cachedir.h"
#include "tests/unit/unit_main.h"

static const char *pw_home; /* NULL: no passwd entry */

int __wrap_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res);
int __wrap_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
        (void)uid;
        *res = NULL;
        if (!pw_home)
                return 0; /* no such entry */
        if (strlen(pw_home) + 1 > len)
                return ERANGE;
        memset(pw, 0, sizeof(*pw));
        strcpy(buf, pw_home);
        pw->pw_dir = buf;
        *res = pw;
        return 0;
}

static int dir_for(char *out, size_t cap, char *err)
{
        return cachedir_default("al/ice", "imap.example.org", 993, out, cap, err, 256);
}

START_TEST(test_xdg_first)
{
        char out[4096], err[256];
        setenv("XDG_CACHE_HOME", "/x/cache", 1);
        setenv("HOME", "/home/al", 1);
        pw_home = "/pw/home";
        ck_assert_int_eq(dir_for(out, sizeof(out), err), 0);
        ck_assert_str_eq(out, "/x/cache/imapfs/al_ice@imap.example.org:993");
}
END_TEST

START_TEST(test_home_next)
{
        char out[4096], err[256];
        unsetenv("XDG_CACHE_HOME");
        setenv("HOME", "/home/al", 1);
        pw_home = "/pw/home";
        ck_assert_int_eq(dir_for(out, sizeof(out), err), 0);
        ck_assert_str_eq(out, "/home/al/.cache/imapfs/al_ice@imap.example.org:993");
        setenv("XDG_CACHE_HOME", "relative/cache", 1); /* ignored, as the XDG spec says */
        ck_assert_int_eq(dir_for(out, sizeof(out), err), 0);
        ck_assert_str_eq(out, "/home/al/.cache/imapfs/al_ice@imap.example.org:993");
}
END_TEST

START_TEST(test_without_home_the_passwd_entry)
{
        char out[4096], err[256];
        unsetenv("XDG_CACHE_HOME");
        unsetenv("HOME");
        pw_home = "/pw/home";
        ck_assert_int_eq(dir_for(out, sizeof(out), err), 0);
        ck_assert_str_eq(out, "/pw/home/.cache/imapfs/al_ice@imap.example.org:993");
        setenv("HOME", "", 1);
        ck_assert_int_eq(dir_for(out, sizeof(out), err), 0);
        ck_assert_str_eq(out, "/pw/home/.cache/imapfs/al_ice@imap.example.org:993");
}
END_TEST

START_TEST(test_no_home_at_all_is_no_directory)
{
        char out[4096] = "", err[256] = "";
        unsetenv("XDG_CACHE_HOME");
        unsetenv("HOME");
        pw_home = NULL;
        ck_assert_int_eq(dir_for(out, sizeof(out), err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err, "cache_dir"));
        ck_assert_ptr_null(strstr(out, "/tmp"));
        pw_home = "relative"; /* an entry without a usable home */
        ck_assert_int_eq(dir_for(out, sizeof(out), err), -ENOENT);
}
END_TEST

START_TEST(test_too_long)
{
        char out[32], err[256];
        setenv("XDG_CACHE_HOME", "/x/cache", 1);
        ck_assert_int_eq(dir_for(out, sizeof(out), err), -ENAMETOOLONG);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("cachedir");
        TCase *tc = tcase_create("default");
        tcase_add_test(tc, test_xdg_first);
        tcase_add_test(tc, test_home_next);
        tcase_add_test(tc, test_without_home_the_passwd_entry);
        tcase_add_test(tc, test_no_home_at_all_is_no_directory);
        tcase_add_test(tc, test_too_long);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
