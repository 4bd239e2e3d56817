/* Changes to the account: each function checks what it can in the cache,
 * runs the IMAP sequence, and only after the server said OK applies the
 * change to the cache. Directory entries are (parent id, name) as the
 * kernel gives them. Errors are negative errno values meant for the caller
 * of the file operation. */
#ifndef IMAPFS_CACHE_ACCOUNT_WRITE_H
#define IMAPFS_CACHE_ACCOUNT_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cache/account.h"

/* CREATE. *id gets the new directory's id. */
int account_mkdir(struct account *a, uint64_t parent, const char *name, uint64_t *id);

/* DELETE of an empty folder: -ENOTEMPTY if it has messages or subfolders,
 * -EPERM for INBOX. */
int account_rmdir(struct account *a, uint64_t parent, const char *name);

/* RENAME of a folder and its subtree (ids are kept), or UID MOVE of a message
 * to another folder. -EPERM for INBOX and for renaming a message within its
 * folder. A folder renamed onto an empty folder replaces it, as POSIX
 * rename does (DELETE of the target, then RENAME; the target is created
 * again if the RENAME fails); -ENOTEMPTY if the target holds messages or
 * subfolders, -EEXIST with noreplace (RENAME_NOREPLACE) or when a message's
 * target exists. -ENOENT if the server says the folder is gone (it then
 * leaves the cache). */
int account_rename(struct account *a, uint64_t parent, const char *name, uint64_t newparent,
                   const char *newname, bool noreplace);

/* The server says mailbox raw does not exist (any more): it leaves the
 * cache's tree at once, with its subtree. -ENOENT if the cache didn't have it. */
int account_forget_mailbox(struct account *a, const char *raw);

/* Removes a message: moved to the trash folder, or expunged (UID EXPUNGE) in
 * the trash folder, with -o trash=none or when there is none. */
int account_unlink(struct account *a, uint64_t parent, const char *name);

/* "  \Seen\t  $A " → "\Seen $A": any run of blanks (space, tab, newline) is
 * one separator (malloc'd; NULL on ENOMEM). */
char *account_flags_normalise(const char *flags, size_t len);

/* Checks a space-separated flag list from user.imap.flags: -EINVAL for
 * \Recent, unknown system flags and keywords with characters IMAP forbids. */
int account_flags_check(const char *flags, size_t len);

/* UID STORE FLAGS: replaces the message's flags with flags (checked). */
int account_set_flags(struct account *a, uint64_t msg_id, const char *flags, size_t len);

/* The largest file that can become a message: the server's APPENDLIMIT, or
 * 0 if it announced none. A file being written that grows beyond it fails
 * with EFBIG at that write, not only at close. */
uint64_t account_append_limit(struct account *a);

/* APPEND data to folder mbox_id, with flags (may be NULL) and INTERNALDATE
 * date (0: the server's now). */
int account_append(struct account *a, uint64_t mbox_id, const char *data, size_t len,
                   const char *flags, time_t date);

/* The same; with dedup, a message the folder already holds with the same
 * Message-ID and exactly the same bytes is taken instead of a second copy
 * (rsync and editors writing a file again). *uid (may be NULL) gets the
 * new or found message's UID (0 if the server did not say). */
int account_append_ex(struct account *a, uint64_t mbox_id, const char *data, size_t len,
                      const char *flags, time_t date, bool dedup, uint32_t *uid);
/* The server name of the folder rm moves messages to (lock held; malloc'd):
 * -o trash=, else the \Trash special-use folder; NULL for none. */
char *account_trash_folder(struct account *a);

#endif
