/* An account against the scripted fake server (tests/unit/fake_server.h),
 * for the account-layer unit tests: one connection, 1 MiB of memory cache,
 * the test naming (fake_naming.h), a persistent cache in dir (64 MiB), and
 * connected (its tree listed). revalidate_ms as the test needs it. */
#ifndef IMAPFS_TESTS_UNIT_FAKE_ACCOUNT_H
#define IMAPFS_TESTS_UNIT_FAKE_ACCOUNT_H

#include <check.h>
#include <stdbool.h>

#include "cache/account.h"
#include "cache/persist.h"
#include "tests/unit/fake_naming.h"
#include "tests/unit/fake_server.h"

static inline void fake_account_open(struct account *a, unsigned port, const char *dir,
                                     int revalidate_ms)
{
        a->imap = fake_acct(port, "pw", true);
        a->opts.connections = 1;
        a->opts.mem_cache = 1 << 20;
        a->opts.revalidate_ms = revalidate_ms;
        a->naming = fake_naming(false);
        ck_assert_int_eq(account_init(a), 0);
        char err[256] = "";
        ck_assert_msg(persist_open(a, dir, 64 << 20, err, sizeof err) == 0, "%s", err);
        bool net;
        ck_assert_msg(account_connect(a, err, sizeof err, &net) == 0, "%s", err);
}

#endif
