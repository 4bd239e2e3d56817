/* TLS setup of a connection: when OpenSSL can't set up the certificate name
 * check, the connection is refused before a byte of the handshake goes out
 * (a handshake without it would accept any trusted certificate for any
 * name). The failures are injected with the linker's --wrap (see
 * tests/meson.build): the real functions fail only when out of memory. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imap/conn.h"
#include "tests/unit/unit_main.h"

static bool fail_host, fail_ip;
static int host_calls, ip_calls;

int __real_SSL_set1_host(SSL *s, const char *host);
int __wrap_SSL_set1_host(SSL *s, const char *host);
int __real_X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *p, const char *ip);
int __wrap_X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *p, const char *ip);

int __wrap_SSL_set1_host(SSL *s, const char *host)
{
        host_calls++;
        return fail_host ? 0 : __real_SSL_set1_host(s, host);
}

int __wrap_X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *p, const char *ip)
{
        ip_calls++;
        return fail_ip ? 0 : __real_X509_VERIFY_PARAM_set1_ip_asc(p, ip);
}

/* Connects to a local listener that never answers; *peer is its end. */
static struct imap_conn *connect_local(int *lfd, int *peer)
{
        *lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ck_assert_int_eq(bind(*lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t sl = sizeof(sa);
        getsockname(*lfd, (struct sockaddr *)&sa, &sl);
        ck_assert_int_eq(listen(*lfd, 1), 0);
        struct imap_conn *c = NULL;
        char err[256];
        ck_assert_int_eq(imap_conn_connect("127.0.0.1", ntohs(sa.sin_port), imap_now_ms() + 2000,
                                           &c, err, sizeof(err)),
                         0);
        *peer = accept(*lfd, NULL, NULL);
        ck_assert_int_ge(*peer, 0);
        return c;
}

/* True if the peer got any byte within ms. */
static bool peer_got_bytes(int peer, int ms)
{
        struct pollfd p = {.fd = peer, .events = POLLIN};
        return poll(&p, 1, ms) > 0;
}

static void check_refused(const char *host, int *calls)
{
        char err[256] = "";
        SSL_CTX *ctx = imap_tls_ctx_new(NULL, err, sizeof(err));
        ck_assert_ptr_nonnull(ctx);
        int lfd, peer;
        struct imap_conn *c = connect_local(&lfd, &peer);
        int64_t t0 = imap_now_ms();
        int r = imap_conn_start_tls(c, ctx, host, t0 + 1500, err, sizeof(err));
        /* Refused at once, not after a handshake that timed out. */
        ck_assert_int_eq(r, -EPERM);
        ck_assert_int_lt(imap_now_ms() - t0, 1000);
        ck_assert_int_eq(*calls, 1);
        ck_assert_ptr_nonnull(strstr(err, host));
        ck_assert(!peer_got_bytes(peer, 100)); /* no ClientHello went out */
        imap_conn_close(c);
        close(peer);
        close(lfd);
        imap_tls_ctx_free(ctx);
}

START_TEST(test_host_check_failure_refuses)
{
        fail_host = true;
        check_refused("imap.example.org", &host_calls);
}
END_TEST

START_TEST(test_ip_check_failure_refuses)
{
        fail_ip = true;
        check_refused("127.0.0.1", &ip_calls);
}
END_TEST

START_TEST(test_name_check_set_up_then_handshake)
{
        /* Nothing fails: the ClientHello goes out (and times out here). */
        char err[256] = "";
        SSL_CTX *ctx = imap_tls_ctx_new(NULL, err, sizeof(err));
        int lfd, peer;
        struct imap_conn *c = connect_local(&lfd, &peer);
        int r =
            imap_conn_start_tls(c, ctx, "imap.example.org", imap_now_ms() + 300, err, sizeof(err));
        ck_assert_int_eq(r, -ETIMEDOUT);
        ck_assert_int_eq(host_calls, 1);
        ck_assert(peer_got_bytes(peer, 100));
        imap_conn_close(c);
        close(peer);
        close(lfd);
        imap_tls_ctx_free(ctx);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("conn");
        TCase *tc = tcase_create("tls");
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_host_check_failure_refuses);
        tcase_add_test(tc, test_ip_check_failure_refuses);
        tcase_add_test(tc, test_name_check_set_up_then_handshake);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
