/* The freedesktop.org trash of the mount, served virtually (issue 12).
 *
 * GIO (and so Nautilus, pcmanfm, Thunar's gvfs) trashes a file on another
 * file system as: lstat MOUNT/.Trash, MOUNT/.Trash-UID; mkdir .Trash-UID,
 * .Trash-UID/info, .Trash-UID/files; write info/NAME.trashinfo (a temp file
 * renamed into place); rename(FILE, .Trash-UID/files/NAME). Done on the
 * server as it stands, that made a .Trash-UID folder tree and APPENDed the
 * .trashinfo as a mail message.
 *
 * Here .Trash-UID (UID: the mounting user) is a directory of ours that never
 * reaches the server: info/ holds the .trashinfo files in memory, files/
 * names the messages trashed through it. A rename of a message into files/
 * is a move to the account's trash folder (\Trash, or -o trash=); a rename
 * out of files/ (restore) moves it back; unlink in files/ (empty trash)
 * removes it from the trash folder as rm there does. Folders and files that
 * are not messages can't go there: EXDEV, which GIO reports as "not
 * supported", so the file manager offers to delete instead.
 *
 * Without a trash folder (-o trash=none, or none on the server) mkdir of
 * .Trash-UID is EPERM: GIO then answers "not supported" at once.
 *
 * What lives here lasts as long as the mount: the messages stay in the
 * trash folder on the server after an unmount, the Trash Can's view of
 * them goes. */
#ifndef IMAPFS_FS_TRASH_H
#define IMAPFS_FS_TRASH_H

#include "fs/fs.h"

/* Puts the trash in front of the operations already in ops: each one it
 * wraps answers for the trash's inodes and names and hands every other
 * request on. Call after every other ops_*_register(). */
void trash_register(struct fuse_lowlevel_ops *ops);
/* Frees what the trash holds (after the session loop ended). */
void trash_free(void);

#endif
