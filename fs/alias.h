/* Names a message answered to a moment ago. After `mv F/msg.eml G/typed`,
 * the message sits in G under its own name (and new UID), but programs go on
 * using the name they typed: GNU mv stats it right after the rename, and the
 * kernel may ask imapfs about it again once its cached entry runs out. For a
 * short time the typed name still finds the message (as a second name of the
 * same inode), then it is gone. Thread-safe. */
#ifndef IMAPFS_FS_ALIAS_H
#define IMAPFS_FS_ALIAS_H

#include <stdbool.h>
#include <stdint.h>

/* How long a typed name keeps finding the moved message (../shared/DECISIONS.md). */
#define ALIAS_TTL_MS 10000

struct alias;

struct alias *alias_new(void);
void alias_free(struct alias *t);

/* name in directory parent means node id for ttl_ms from now. */
void alias_add(struct alias *t, uint64_t parent, const char *name, uint64_t id, int ttl_ms);
/* The node name in parent stands for, if that alias is still alive. */
bool alias_find(struct alias *t, uint64_t parent, const char *name, uint64_t *id);
/* name in parent no longer stands for anything (it was reused or removed). */
void alias_drop(struct alias *t, uint64_t parent, const char *name);

#endif
