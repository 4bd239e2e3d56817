/* COMPRESS=DEFLATE (RFC 4978): the two raw deflate streams (no zlib or gzip
 * header, windowBits -15) of one connection, as a layer between the byte
 * stream (TCP or TLS, imap/conn.c) and the framer above it. Knows nothing of
 * sockets: conn.c feeds it what it read and sends what it produced. */
#ifndef IMAPFS_IMAP_COMPRESS_H
#define IMAPFS_IMAP_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct imap_zstream;

/* Both directions set up; NULL when zlib can't (out of memory). */
struct imap_zstream *imap_zstream_new(void);
void imap_zstream_free(struct imap_zstream *z);

/* Compresses len bytes and flushes them (Z_SYNC_FLUSH), so the server can
 * act on a command without waiting for more: *out (owned by z, valid until
 * the next call) gets *outlen bytes to send. 0 or -ENOMEM / -EIO. */
int imap_zstream_deflate(struct imap_zstream *z, const void *buf, size_t len,
                         const unsigned char **out, size_t *outlen);

/* Room for compressed bytes from the peer: a buffer of *cap bytes to read
 * into (then imap_zstream_fed with the count). NULL while earlier input is
 * not used up yet (inflate first). */
unsigned char *imap_zstream_input(struct imap_zstream *z, size_t *cap);
void imap_zstream_fed(struct imap_zstream *z, size_t n);
/* Copies compressed bytes in (what was read before compression began); -ENOMEM. */
int imap_zstream_feed(struct imap_zstream *z, const void *buf, size_t len);

/* Decompresses into buf: > 0 bytes, 0 when it needs more input, -EIO when
 * the stream is corrupt or the peer ended it. */
ssize_t imap_zstream_inflate(struct imap_zstream *z, void *buf, size_t len);

/* True if inflate would give bytes without more input. */
bool imap_zstream_pending(struct imap_zstream *z);

/* Bytes in and out of each direction so far (plain and compressed). */
struct imap_zstats {
        unsigned long long out_plain, out_wire, in_plain, in_wire;
};
void imap_zstream_stats(const struct imap_zstream *z, struct imap_zstats *st);

#endif
