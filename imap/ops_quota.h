/* QUOTA (RFC 9208, formerly 2087): how much the account may hold and holds,
 * for statfs (df). */
#ifndef IMAPFS_IMAP_OPS_QUOTA_H
#define IMAPFS_IMAP_OPS_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "imap/session.h"

/* The most KiB of STORAGE taken from a server (8 EiB): its bytes, and
 * those rounded up to any block size up to 1 MiB, fit 64 bits. */
#define IMAP_QUOTA_STORAGE_MAX (UINT64_C(1) << 53)

/* One quota root's resources, as the server counts them (STORAGE at most
 * IMAP_QUOTA_STORAGE_MAX). */
struct imap_quota {
        bool storage;                         /* STORAGE was given */
        uint64_t storage_used, storage_limit; /* in KiB (1024 octets) */
        bool messages;                        /* MESSAGE was given */
        uint64_t messages_used, messages_limit;
};

/* GETQUOTAROOT mailbox: the resources of its quota root (if it has several,
 * the one that leaves the least storage free). 0 with q filled (storage and
 * messages false if no root has them), -ENOTSUP if the server has no QUOTA
 * (it refused the command), -EIO if the session broke. */
int imap_quota_get(struct imap_session *s, const char *mailbox, struct imap_quota *q);

/* Reads the resource list of one QUOTA response ("(STORAGE 10 512 MESSAGE
 * 2 1000)") into q; false if it is malformed. Exposed for the unit test. */
struct imap_value;
bool imap_quota_parse(const struct imap_value *list, struct imap_quota *q);

#endif
