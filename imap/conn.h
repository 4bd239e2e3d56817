/* One byte stream to the server: TCP, optionally wrapped in TLS, where every
 * call has a deadline. Knows nothing of IMAP. */
#ifndef IMAPFS_IMAP_CONN_H
#define IMAPFS_IMAP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ssl_ctx_st SSL_CTX;
struct imap_conn;

/* Milliseconds on a monotonic clock; deadlines are absolute values of it. */
int64_t imap_now_ms(void);

/* The TLS context every connection of an account shares: system trust store
 * plus cafile (may be NULL), peer verification on, TLS >= 1.2. NULL with a
 * reason in err on failure. */
SSL_CTX *imap_tls_ctx_new(const char *cafile, char *err, size_t errlen);
void imap_tls_ctx_free(SSL_CTX *ctx);

/* TCP connect to host:port (tries every address). Returns 0 or a negative
 * errno with a reason in err. */
int imap_conn_connect(const char *host, unsigned port, int64_t deadline, struct imap_conn **out,
                      char *err, size_t errlen);

/* TLS handshake on an open connection, verifying the chain and that the
 * certificate names host (a DNS name or an IP address). */
int imap_conn_start_tls(struct imap_conn *c, SSL_CTX *ctx, const char *host, int64_t deadline,
                        char *err, size_t errlen);

/* Reads at most len bytes: > 0 bytes read, 0 end of stream, -ETIMEDOUT,
 * -ECONNRESET/-EIO on failure. */
ssize_t imap_conn_read(struct imap_conn *c, void *buf, size_t len, int64_t deadline);

/* Writes all of buf or fails: 0, -ETIMEDOUT, -EIO. */
int imap_conn_write(struct imap_conn *c, const void *buf, size_t len, int64_t deadline);

bool imap_conn_is_tls(const struct imap_conn *c);
/* The socket, for waiting on it together with other descriptors. */
int imap_conn_fd(const struct imap_conn *c);
/* Bytes already decrypted and waiting in the TLS layer, or decompressed
 * bytes waiting in the COMPRESS layer (poll can't see either). Not const:
 * finding out whether compressed input holds output means inflating it. */
bool imap_conn_pending(struct imap_conn *c);
/* COMPRESS=DEFLATE from now on, both ways (RFC 4978), above TLS: early holds
 * n bytes already read after the server's OK, which are compressed. 0,
 * -ENOMEM, -EALREADY. */
int imap_conn_start_compress(struct imap_conn *c, const void *early, size_t n);
/* True while compressing; *plain and *wire (may be NULL) get the bytes both
 * ways before and after compression. */
bool imap_conn_compressed(const struct imap_conn *c, unsigned long long *plain,
                          unsigned long long *wire);
void imap_conn_close(struct imap_conn *c);

#endif
