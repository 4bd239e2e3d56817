#include "imap/conn.h"

#include "imap/compress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct imap_conn {
        int fd;
        SSL *ssl;
        struct imap_zstream *z; /* COMPRESS=DEFLATE on (above TLS), or NULL */
};

/* Plain bytes handed to deflate at a time: a big APPEND is compressed and
 * sent in pieces rather than buffered whole. */
#define CONN_DEFLATE_CHUNK (64u * 1024)

int64_t imap_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int conn_wait(int fd, short events, int64_t deadline)
{
        for (;;) {
                int64_t left = deadline - imap_now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = events};
                int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

SSL_CTX *imap_tls_ctx_new(const char *cafile, char *err, size_t errlen)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
                snprintf(err, errlen, "cannot create TLS context");
                return NULL;
        }
        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
                snprintf(err, errlen, "cannot require TLS 1.2 or later");
                SSL_CTX_free(ctx);
                return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
                ERR_clear_error(); /* no system store is survivable when cafile is given */
        if (cafile && SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
                snprintf(err, errlen, "cannot load cafile %s: %s", cafile,
                         ERR_reason_error_string(ERR_get_error()));
                SSL_CTX_free(ctx);
                return NULL;
        }
        return ctx;
}

void imap_tls_ctx_free(SSL_CTX *ctx)
{
        SSL_CTX_free(ctx);
}

static int conn_try_addr(const struct addrinfo *ai, int64_t deadline)
{
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                int e = errno;
                if (e != EINPROGRESS) {
                        close(fd);
                        return -e;
                }
                int r = conn_wait(fd, POLLOUT, deadline);
                socklen_t sl = sizeof(e);
                if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e != 0)
                        r = -e;
                if (r < 0) {
                        close(fd);
                        return r;
                }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        return fd;
}

int imap_conn_connect(const char *host, unsigned port, int64_t deadline, struct imap_conn **out,
                      char *err, size_t errlen)
{
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
        struct addrinfo *res = NULL;
        char portstr[16];

        snprintf(portstr, sizeof(portstr), "%u", port);
        /* getaddrinfo has no deadline of its own; name lookups are the one
         * step that can outlive the timeout (the resolver's own limits apply). */
        int g = getaddrinfo(host, portstr, &hints, &res);
        if (g != 0) {
                snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
                return -EHOSTUNREACH;
        }
        int fd = -ECONNREFUSED;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                fd = conn_try_addr(ai, deadline);
                if (fd >= 0 || fd == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(res);
        if (fd < 0) {
                snprintf(err, errlen, "cannot connect to %s port %u: %s", host, port,
                         strerror(-fd));
                return fd;
        }
        struct imap_conn *c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        *out = c;
        return 0;
}

static bool conn_host_is_ip(const char *host)
{
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int imap_conn_start_tls(struct imap_conn *c, SSL_CTX *ctx, const char *host, int64_t deadline,
                        char *err, size_t errlen)
{
        SSL *ssl = SSL_new(ctx);
        if (!ssl) {
                snprintf(err, errlen, "cannot create TLS session");
                return -ENOMEM;
        }
        /* Without the name check the handshake would accept any trusted
         * certificate, whatever name it is for: a failure to set it up ends
         * the connection before a byte of the handshake goes out. */
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        bool ok;
        if (conn_host_is_ip(host)) {
                ok = X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1;
        } else {
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                ok = SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1;
        }
        if (!ok || SSL_set_fd(ssl, c->fd) != 1) {
                unsigned long e = ERR_get_error();
                snprintf(err, errlen, "cannot set up the TLS certificate check for %s: %s", host,
                         e && ERR_reason_error_string(e) ? ERR_reason_error_string(e)
                                                         : "OpenSSL refused");
                ERR_clear_error();
                SSL_free(ssl);
                return -EPERM;
        }
        for (;;) {
                ERR_clear_error();
                int r = SSL_connect(ssl);
                if (r == 1)
                        break;
                int e = SSL_get_error(ssl, r);
                int w = -EIO;
                if (e == SSL_ERROR_WANT_READ)
                        w = conn_wait(c->fd, POLLIN, deadline);
                else if (e == SSL_ERROR_WANT_WRITE)
                        w = conn_wait(c->fd, POLLOUT, deadline);
                if (w == 0)
                        continue;
                long vr = SSL_get_verify_result(ssl);
                if (vr != X509_V_OK)
                        snprintf(err, errlen, "TLS certificate of %s not trusted: %s", host,
                                 X509_verify_cert_error_string(vr));
                else if (w == -ETIMEDOUT)
                        snprintf(err, errlen, "TLS handshake with %s timed out", host);
                else
                        snprintf(err, errlen, "TLS handshake with %s failed: %s", host,
                                 ERR_reason_error_string(ERR_peek_last_error())
                                     ? ERR_reason_error_string(ERR_peek_last_error())
                                     : "connection closed");
                SSL_free(ssl);
                return vr != X509_V_OK ? -EPERM : w;
        }
        c->ssl = ssl;
        return 0;
}

static ssize_t conn_raw_read(struct imap_conn *c, void *buf, size_t len, int64_t deadline)
{
        for (;;) {
                int w;
                if (c->ssl) {
                        ERR_clear_error();
                        int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
                        if (n > 0)
                                return n;
                        int e = SSL_get_error(c->ssl, n);
                        if (e == SSL_ERROR_ZERO_RETURN)
                                return 0;
                        if (e == SSL_ERROR_WANT_READ)
                                w = conn_wait(c->fd, POLLIN, deadline);
                        else if (e == SSL_ERROR_WANT_WRITE)
                                w = conn_wait(c->fd, POLLOUT, deadline);
                        else
                                return e == SSL_ERROR_SYSCALL && n == 0 ? 0 : -EIO;
                } else {
                        ssize_t n = recv(c->fd, buf, len, 0);
                        if (n >= 0)
                                return n;
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        w = conn_wait(c->fd, POLLIN, deadline);
                }
                if (w < 0)
                        return w;
        }
}

static int conn_raw_write(struct imap_conn *c, const void *buf, size_t len, int64_t deadline)
{
        const char *p = buf;
        while (len > 0) {
                int w;
                if (c->ssl) {
                        ERR_clear_error();
                        int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
                        if (n > 0) {
                                p += n;
                                len -= (size_t)n;
                                continue;
                        }
                        int e = SSL_get_error(c->ssl, n);
                        if (e == SSL_ERROR_WANT_READ)
                                w = conn_wait(c->fd, POLLIN, deadline);
                        else if (e == SSL_ERROR_WANT_WRITE)
                                w = conn_wait(c->fd, POLLOUT, deadline);
                        else
                                return -EIO;
                } else {
                        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
                        if (n >= 0) {
                                p += n;
                                len -= (size_t)n;
                                continue;
                        }
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        w = conn_wait(c->fd, POLLOUT, deadline);
                }
                if (w < 0)
                        return w;
        }
        return 0;
}

ssize_t imap_conn_read(struct imap_conn *c, void *buf, size_t len, int64_t deadline)
{
        if (!c->z)
                return conn_raw_read(c, buf, len, deadline);
        for (;;) {
                ssize_t n = imap_zstream_inflate(c->z, buf, len);
                if (n != 0)
                        return n;
                /* A sync flush may end in the next TCP segment: read until a
                 * byte of output comes, within the deadline. */
                size_t cap;
                unsigned char *in = imap_zstream_input(c->z, &cap);
                if (!in)
                        return -EIO; /* input left that gives no output: can't be */
                ssize_t got = conn_raw_read(c, in, cap, deadline);
                if (got <= 0)
                        return got;
                imap_zstream_fed(c->z, (size_t)got);
        }
}

int imap_conn_write(struct imap_conn *c, const void *buf, size_t len, int64_t deadline)
{
        if (!c->z)
                return conn_raw_write(c, buf, len, deadline);
        const char *p = buf;
        do {
                size_t n = len > CONN_DEFLATE_CHUNK ? CONN_DEFLATE_CHUNK : len;
                const unsigned char *out;
                size_t outlen;
                int r = imap_zstream_deflate(c->z, p, n, &out, &outlen);
                if (r < 0)
                        return -EIO;
                r = conn_raw_write(c, out, outlen, deadline);
                if (r < 0)
                        return r;
                p += n;
                len -= n;
        } while (len > 0);
        return 0;
}

int imap_conn_start_compress(struct imap_conn *c, const void *early, size_t n)
{
        if (c->z)
                return -EALREADY;
        struct imap_zstream *z = imap_zstream_new();
        if (!z)
                return -ENOMEM;
        if (imap_zstream_feed(z, early, n) < 0) {
                imap_zstream_free(z);
                return -ENOMEM;
        }
        c->z = z;
        return 0;
}

bool imap_conn_compressed(const struct imap_conn *c, unsigned long long *plain,
                          unsigned long long *wire)
{
        if (!c->z)
                return false;
        struct imap_zstats st;
        imap_zstream_stats(c->z, &st);
        if (plain)
                *plain = st.out_plain + st.in_plain;
        if (wire)
                *wire = st.out_wire + st.in_wire;
        return true;
}

bool imap_conn_is_tls(const struct imap_conn *c)
{
        return c->ssl != NULL;
}

int imap_conn_fd(const struct imap_conn *c)
{
        return c->fd;
}

bool imap_conn_pending(struct imap_conn *c)
{
        if (c->z && imap_zstream_pending(c->z))
                return true;
        return c->ssl && SSL_pending(c->ssl) > 0;
}

void imap_conn_close(struct imap_conn *c)
{
        if (!c)
                return;
        if (c->ssl) {
                /* No close_notify round trip: the peer may be gone, and waiting
                 * for it would break the deadline promise. */
                SSL_set_quiet_shutdown(c->ssl, 1);
                SSL_free(c->ssl);
        }
        imap_zstream_free(c->z);
        close(c->fd);
        free(c);
}
