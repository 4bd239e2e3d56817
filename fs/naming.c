#include "fs/naming.h"

#include "fs/names.h"

static char *naming_message(void *ctx, uint32_t uid, const char *date, const char *subject,
                            time_t internaldate)
{
        (void)ctx;
        return names_message(uid, date, subject, internaldate);
}

static char *naming_message_uid(void *ctx, uint32_t uid, const char *date, const char *subject,
                                time_t internaldate)
{
        (void)ctx;
        (void)date;
        (void)subject;
        (void)internaldate;
        return names_message_uid(uid);
}

static char *naming_reuid(void *ctx, const char *name, uint32_t old_uid, uint32_t new_uid)
{
        (void)ctx;
        return names_message_reuid(name, old_uid, new_uid);
}

static char *naming_dir_from_server(void *ctx, const char *comp)
{
        (void)ctx;
        return names_dir_from_server(comp);
}

static int naming_server_from_dir(void *ctx, const char *name, char delim, char **out)
{
        (void)ctx;
        return names_server_from_dir(name, delim, out);
}

struct account_naming naming_table(bool uid_names)
{
        return (struct account_naming){
            .ctx = NULL,
            .message = uid_names ? naming_message_uid : naming_message,
            .reuid = naming_reuid,
            .dir_from_server = naming_dir_from_server,
            .server_from_dir = naming_server_from_dir,
        };
}
