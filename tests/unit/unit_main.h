/* Shared main() for the Check unit tests: TAP on stdout so that meson counts
 * every test case, not just every executable. */
#ifndef IMAPFS_TESTS_UNIT_MAIN_H
#define IMAPFS_TESTS_UNIT_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int unit_run(Suite *s)
{
        SRunner *sr = srunner_create(s);
        srunner_set_tap(sr, "-");
        srunner_run_all(sr, CK_SILENT);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
