/* The account's naming (cache/account.h struct account_naming) made from
 * fs/names.c: the kernel adapter decides what files and directories are
 * called; the store keeps the names. */
#ifndef IMAPFS_FS_NAMING_H
#define IMAPFS_FS_NAMING_H

#include <stdbool.h>

#include "cache/account.h"

/* uid_names: -o names=uid (message files are "<UID>.eml"). */
struct account_naming naming_table(bool uid_names);

#endif
