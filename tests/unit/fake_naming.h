/* The naming of the account-layer unit tests: a message is "UID.eml", a
 * folder its raw name component, a server name the name itself. */
#ifndef IMAPFS_TESTS_FAKE_NAMING_H
#define IMAPFS_TESTS_FAKE_NAMING_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/account.h"

static inline char *fake_name_message(void *ctx, uint32_t uid, const char *date,
                                      const char *subject, time_t internaldate)
{
        (void)ctx;
        (void)date;
        (void)subject;
        (void)internaldate;
        char buf[32];
        snprintf(buf, sizeof buf, "%u.eml", uid);
        return strdup(buf);
}

static inline char *fake_name_reuid(void *ctx, const char *name, uint32_t old_uid, uint32_t new_uid)
{
        (void)name;
        (void)old_uid;
        return fake_name_message(ctx, new_uid, NULL, NULL, 0);
}

static inline char *fake_name_dir(void *ctx, const char *comp)
{
        (void)ctx;
        return strdup(comp);
}

static inline int fake_name_server(void *ctx, const char *name, char delim, char **out)
{
        (void)ctx;
        (void)delim;
        *out = strdup(name);
        return *out ? 0 : -ENOMEM;
}

/* These tests' account_naming; with reuid, a moved message is named by its
 * new UID. */
static inline struct account_naming fake_naming(bool reuid)
{
        return (struct account_naming){NULL, fake_name_message, reuid ? fake_name_reuid : NULL,
                                       fake_name_dir, fake_name_server};
}

#endif
