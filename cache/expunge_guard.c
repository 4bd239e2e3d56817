#include "cache/expunge_guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap/log.h"
#include "imap/ops.h"
#include "imap/ops_write.h"

bool expunge_guard_needed(const struct imap_session *s, bool move)
{
        const struct imap_caps *caps = imap_session_caps(s);
        return !caps->uidplus && !(move && caps->move);
}

int expunge_guard_run(struct imap_session *s, uint32_t uid, const char *target)
{
        const char *sel = imap_session_selected(s);
        char *mailbox = sel ? strdup(sel) : NULL;
        if (!mailbox)
                return sel ? -ENOMEM : -EIO;
        /* A fresh SELECT: a session long in the folder may not have heard
         * of flags other clients set since (Mailutils sends them at SELECT),
         * and the SEARCH below must see every \Deleted there is. */
        struct imap_select_info si;
        imap_session_set_selected(s, NULL, NULL);
        int r = imap_select(s, mailbox, &si);
        bool ours = false, others = false;
        if (r == 0)
                r = imap_search_deleted(s, uid, &ours, &others);
        if (r == 0 && others) {
                /* Checked before the copy, so that a refusal leaves nothing
                 * to take back. */
                log_warn("not removing message %u from %s: other messages there are marked "
                         "\\Deleted, and without UIDPLUS the only EXPUNGE there is would remove "
                         "them too",
                         uid, mailbox);
                r = -EPERM;
        }
        if (r == 0 && target)
                r = imap_copy_confirmed(s, uid, target);
        if (r == 0) {
                r = imap_expunge_guarded(s, uid);
                if (r < 0 && target)
                        log_warn("message %u was copied to %s but stays in %s: it is in both now",
                                 uid, target, mailbox);
        }
        free(mailbox);
        return r;
}
