/* COMPRESS=DEFLATE (RFC 4978): the deflate layer on its own (round trips in
 * every split, corrupt input, what pending() promises), and sessions against
 * a scripted server that compresses after its OK to COMPRESS, as Dovecot's
 * imap_zlib does. The server side uses zlib directly, so the client's
 * streams are checked against an independent raw deflate peer. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "imap/compress.h"
#include "imap/ops.h"
#include "imap/session.h"
#include "tests/unit/unit_main.h"

/* ---- the layer ---------------------------------------------------------- */

static unsigned char *test_text(size_t n)
{
        unsigned char *b = malloc(n);
        ck_assert_ptr_nonnull(b);
        unsigned x = 12345;
        for (size_t i = 0; i < n; i++) {
                x = x * 1103515245 + 12345;
                /* IMAP-like text with some noise: compressible, not trivially. */
                b[i] = (i % 61 == 60)
                           ? '\n'
                           : (unsigned char)("* 1 FETCH (UID FLAGS)"[i % 21] ^ ((x >> 16) & 3));
        }
        return b;
}

/* Sends len bytes through a's deflate, hands the wire bytes to b in pieces of
 * feed_step and reads them back with buffers of read_step bytes. */
static void roundtrip(size_t len, size_t feed_step, size_t read_step)
{
        struct imap_zstream *a = imap_zstream_new(), *b = imap_zstream_new();
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        unsigned char *in = test_text(len), *out = malloc(len + 1);
        const unsigned char *wire;
        size_t wlen;
        ck_assert_int_eq(imap_zstream_deflate(a, in, len, &wire, &wlen), 0);
        ck_assert_uint_gt(wlen, 0);
        unsigned char *copy = malloc(wlen);
        memcpy(copy, wire, wlen);
        size_t fed = 0, got = 0;
        unsigned char *rb = malloc(read_step);
        while (got < len) {
                ssize_t n = imap_zstream_inflate(b, rb, read_step);
                ck_assert_int_ge(n, 0);
                if (n > 0) {
                        ck_assert_uint_le(got + (size_t)n, len);
                        memcpy(out + got, rb, (size_t)n);
                        got += (size_t)n;
                        continue;
                }
                ck_assert_msg(!imap_zstream_pending(b), "pending but inflate gave nothing");
                ck_assert_uint_lt(fed, wlen);
                size_t cap;
                unsigned char *p = imap_zstream_input(b, &cap);
                ck_assert_ptr_nonnull(p);
                size_t k = wlen - fed < feed_step ? wlen - fed : feed_step;
                if (k > cap)
                        k = cap;
                memcpy(p, copy + fed, k);
                imap_zstream_fed(b, k);
                fed += k;
        }
        ck_assert_mem_eq(in, out, len);
        /* The sync flush delivered everything: nothing more, nothing pending. */
        ck_assert(!imap_zstream_pending(b));
        ck_assert_int_eq(imap_zstream_inflate(b, rb, read_step), 0);
        struct imap_zstats st;
        imap_zstream_stats(a, &st);
        ck_assert_uint_eq(st.out_plain, len);
        ck_assert_uint_eq(st.out_wire, wlen);
        free(rb);
        free(copy);
        free(in);
        free(out);
        imap_zstream_free(a);
        imap_zstream_free(b);
}

START_TEST(test_roundtrip_splits)
{
        static const size_t lens[] = {1, 7, 100, 4096, 70000, 300000};
        static const size_t steps[] = {1, 3, 17, 4096, 65536};
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
                for (size_t f = 0; f < sizeof(steps) / sizeof(steps[0]); f++)
                        for (size_t r = 0; r < sizeof(steps) / sizeof(steps[0]); r++) {
                                if (lens[i] > 4096 && (steps[f] < 17 || steps[r] < 17))
                                        continue; /* byte steps: small inputs only (time) */
                                roundtrip(lens[i], steps[f], steps[r]);
                        }
}
END_TEST

START_TEST(test_many_flushes_one_stream)
{
        /* Command after command on one stream: each flush is complete. */
        struct imap_zstream *a = imap_zstream_new(), *b = imap_zstream_new();
        char line[64], back[64];
        for (int i = 0; i < 1000; i++) {
                int n = snprintf(line, sizeof(line), "A%d UID FETCH %d (FLAGS)\r\n", i, i * 7);
                const unsigned char *w;
                size_t wl;
                ck_assert_int_eq(imap_zstream_deflate(a, line, (size_t)n, &w, &wl), 0);
                ck_assert_int_eq(imap_zstream_feed(b, w, wl), 0);
                ck_assert_int_eq(imap_zstream_inflate(b, back, sizeof(back)), n);
                ck_assert_mem_eq(line, back, (size_t)n);
                ck_assert(!imap_zstream_pending(b));
        }
        imap_zstream_free(a);
        imap_zstream_free(b);
}
END_TEST

START_TEST(test_pending_after_full_buffer)
{
        /* A read that fills the buffer leaves the rest inside zlib:
         * pending() must say so (poll can't), and say no once it is out. */
        struct imap_zstream *a = imap_zstream_new(), *b = imap_zstream_new();
        unsigned char *in = test_text(10000), out[10000];
        const unsigned char *w;
        size_t wl;
        ck_assert_int_eq(imap_zstream_deflate(a, in, 10000, &w, &wl), 0);
        ck_assert_int_eq(imap_zstream_feed(b, w, wl), 0);
        ck_assert_int_eq(imap_zstream_inflate(b, out, 5000), 5000);
        ck_assert(imap_zstream_pending(b));
        ck_assert(imap_zstream_pending(b)); /* asking twice changes nothing */
        size_t got = 5000;
        while (got < 10000) {
                ssize_t n = imap_zstream_inflate(b, out + got, 10000 - got);
                ck_assert_int_gt(n, 0);
                got += (size_t)n;
        }
        ck_assert_mem_eq(in, out, 10000);
        ck_assert(!imap_zstream_pending(b));
        /* Exactly full: the buffer ends where the data does. */
        ck_assert_int_eq(imap_zstream_deflate(a, in, 3000, &w, &wl), 0);
        ck_assert_int_eq(imap_zstream_feed(b, w, wl), 0);
        ck_assert_int_eq(imap_zstream_inflate(b, out, 3000), 3000);
        ck_assert(!imap_zstream_pending(b));
        free(in);
        imap_zstream_free(a);
        imap_zstream_free(b);
}
END_TEST

START_TEST(test_corrupt_and_ended_streams)
{
        unsigned char out[256];
        /* Block type 3 is reserved: a data error, not a crash or a hang. */
        struct imap_zstream *b = imap_zstream_new();
        static const unsigned char bad[] = {0xff, 0xff, 0xff, 0xff};
        ck_assert_int_eq(imap_zstream_feed(b, bad, sizeof(bad)), 0);
        ck_assert_int_eq(imap_zstream_inflate(b, out, sizeof(out)), -EIO);
        ck_assert(imap_zstream_pending(b)); /* the error is for the next read to report */
        ck_assert_int_eq(imap_zstream_inflate(b, out, sizeof(out)), -EIO);
        imap_zstream_free(b);

        /* A peer that ends its stream (Z_FINISH): the data counts, then EIO. */
        z_stream d = {0};
        ck_assert_int_eq(deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        unsigned char wire[256];
        d.next_in = (Bytef *)"* BYE\r\n";
        d.avail_in = 7;
        d.next_out = wire;
        d.avail_out = sizeof(wire);
        ck_assert_int_eq(deflate(&d, Z_FINISH), Z_STREAM_END);
        size_t wl = sizeof(wire) - d.avail_out;
        deflateEnd(&d);
        b = imap_zstream_new();
        ck_assert_int_eq(imap_zstream_feed(b, wire, wl), 0);
        ck_assert_int_eq(imap_zstream_inflate(b, out, sizeof(out)), 7);
        ck_assert_mem_eq(out, "* BYE\r\n", 7);
        ck_assert_int_eq(imap_zstream_inflate(b, out, sizeof(out)), -EIO);
        imap_zstream_free(b);

        /* A zlib header (windowBits 15, not raw) is not what RFC 4978 sends. */
        unsigned char zhdr[64];
        uLongf zl = sizeof(zhdr);
        ck_assert_int_eq(compress(zhdr, &zl, (const Bytef *)"hello", 5), Z_OK);
        b = imap_zstream_new();
        ck_assert_int_eq(imap_zstream_feed(b, zhdr, zl), 0);
        ssize_t n = imap_zstream_inflate(b, out, sizeof(out));
        ck_assert(n < 0 || memcmp(out, "hello", 5) != 0);
        imap_zstream_free(b);
}
END_TEST

/* ---- sessions against a compressing scripted server --------------------- */

/* One step: wait for a line containing expect (NULL: don't read), send reply
 * ("$T": the tag of that line); deflate: from after this reply on, both ways
 * are compressed; early: sent compressed in the same write as reply. */
struct zstep {
        const char *expect;
        const char *reply;
        bool deflate;
        const char *early;
};

struct zfake {
        int lfd;
        unsigned port;
        const struct zstep *script;
        const char *big; /* sent compressed in place of a reply of "$BIG" */
        size_t big_len;
        int pace_ms; /* > 0: "$BIG" goes 64 KiB at a time, this long apart (a slow link) */
        bool on;
        z_stream in, out;
        unsigned char raw[4096];
        char pend[8192];
        size_t plen;
        char log[8192];
        size_t loglen;
        unsigned long long wire_out, plain_out;
        bool failed;
        char why[256];
        pthread_t thread;
};

static int zf_write(struct zfake *f, int fd, const char *buf, size_t len)
{
        if (!f->on)
                return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
        f->out.next_in = (Bytef *)(uintptr_t)buf;
        f->out.avail_in = (uInt)len;
        f->plain_out += len;
        do {
                unsigned char w[16384];
                f->out.next_out = w;
                f->out.avail_out = sizeof(w);
                int r = deflate(&f->out, Z_SYNC_FLUSH);
                if (r != Z_OK && r != Z_BUF_ERROR)
                        return -1;
                size_t n = sizeof(w) - f->out.avail_out;
                f->wire_out += n;
                for (size_t o = 0; o < n;) {
                        ssize_t k = write(fd, w + o, n - o);
                        if (k <= 0)
                                return -1;
                        o += (size_t)k;
                }
        } while (f->out.avail_out == 0 || f->out.avail_in > 0);
        return 0;
}

/* One line from the client, inflating once compression is on. */
static ssize_t zf_read_line(struct zfake *f, int fd, char *line, size_t cap)
{
        for (;;) {
                char *nl = memchr(f->pend, '\n', f->plen);
                if (nl) {
                        size_t n = (size_t)(nl - f->pend) + 1;
                        if (n >= cap)
                                return -1;
                        memcpy(line, f->pend, n);
                        line[n] = '\0';
                        memmove(f->pend, f->pend + n, f->plen - n);
                        f->plen -= n;
                        return (ssize_t)n;
                }
                ssize_t r = read(fd, f->raw, f->on ? sizeof(f->raw) : 1);
                if (r <= 0 || f->plen >= sizeof(f->pend))
                        return -1;
                if (!f->on) {
                        f->pend[f->plen++] = (char)f->raw[0];
                        continue;
                }
                f->in.next_in = f->raw;
                f->in.avail_in = (uInt)r;
                do {
                        f->in.next_out = (Bytef *)f->pend + f->plen;
                        f->in.avail_out = (uInt)(sizeof(f->pend) - f->plen);
                        int zr = inflate(&f->in, Z_SYNC_FLUSH);
                        if (zr != Z_OK && zr != Z_BUF_ERROR)
                                return -1;
                        f->plen = sizeof(f->pend) - f->in.avail_out;
                } while (f->in.avail_in > 0 && f->plen < sizeof(f->pend));
        }
}

static void *zf_main(void *arg)
{
        struct zfake *f = arg;
        int fd = accept(f->lfd, NULL, NULL);
        char line[4096], tag[32] = "";
        if (fd < 0)
                return NULL;
        for (const struct zstep *s = f->script; s->expect || s->reply; s++) {
                if (s->expect) {
                        ssize_t n = zf_read_line(f, fd, line, sizeof(line));
                        if (n < 0) {
                                f->failed = true;
                                snprintf(f->why, sizeof(f->why), "expected %.100s, got EOF",
                                         s->expect);
                                goto out;
                        }
                        if (f->loglen + (size_t)n < sizeof(f->log)) {
                                memcpy(f->log + f->loglen, line, (size_t)n + 1);
                                f->loglen += (size_t)n;
                        }
                        if (!strstr(line, s->expect)) {
                                f->failed = true;
                                snprintf(f->why, sizeof(f->why), "expected %.100s, got %.100s",
                                         s->expect, line);
                                goto out;
                        }
                        sscanf(line, "%31s", tag);
                }
                if (!s->reply)
                        goto out;
                if (strcmp(s->reply, "$BIG") == 0) {
                        size_t step = f->pace_ms > 0 ? 64u * 1024 : f->big_len;
                        for (size_t o = 0; o < f->big_len; o += step) {
                                size_t k = f->big_len - o < step ? f->big_len - o : step;
                                if (zf_write(f, fd, f->big + o, k) < 0)
                                        goto out;
                                if (f->pace_ms > 0 && o + k < f->big_len)
                                        nanosleep(&(struct timespec){0, f->pace_ms * 1000000L},
                                                  NULL);
                        }
                        continue;
                }
                char out[4096];
                size_t o = 0;
                for (const char *p = s->reply; *p && o + 40 < sizeof(out); p++) {
                        if (p[0] == '$' && p[1] == 'T') {
                                o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", tag);
                                p++;
                        } else {
                                out[o++] = *p;
                        }
                }
                if (s->deflate && s->early) {
                        /* The OK in clear and compressed data behind it, in one write. */
                        char both[4096];
                        memcpy(both, out, o);
                        f->on = true;
                        z_stream *z = &f->out;
                        z->next_in = (Bytef *)(uintptr_t)s->early;
                        z->avail_in = (uInt)strlen(s->early);
                        z->next_out = (Bytef *)both + o;
                        z->avail_out = (uInt)(sizeof(both) - o);
                        if (deflate(z, Z_SYNC_FLUSH) != Z_OK)
                                goto out;
                        size_t total = sizeof(both) - z->avail_out;
                        if (write(fd, both, total) != (ssize_t)total)
                                goto out;
                        continue;
                }
                if (zf_write(f, fd, out, o) < 0)
                        goto out;
                if (s->deflate)
                        f->on = true;
        }
        while (read(fd, line, sizeof(line)) > 0)
                ;
out:
        close(fd);
        return NULL;
}

static void zf_start(struct zfake *f, const struct zstep *script)
{
        memset(f, 0, sizeof(*f));
        f->script = script;
        ck_assert_int_eq(inflateInit2(&f->in, -15), Z_OK);
        ck_assert_int_eq(deflateInit2(&f->out, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t sl = sizeof(sa);
        getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
        f->port = ntohs(sa.sin_port);
        ck_assert_int_eq(listen(f->lfd, 1), 0);
        pthread_create(&f->thread, NULL, zf_main, f);
}

static void zf_stop(struct zfake *f)
{
        pthread_join(f->thread, NULL);
        close(f->lfd);
        inflateEnd(&f->in);
        deflateEnd(&f->out);
        ck_assert_msg(!f->failed, "%s", f->why);
}

static struct imap_account zf_acct(unsigned port)
{
        return (struct imap_account){
            .host = "127.0.0.1",
            .port = port,
            .security = IMAP_SEC_STARTTLS,
            .allow_plaintext = true,
            .user = "alice",
            .password = (char *)"pw",
            .timeout_ms = 2000,
            .max_literal = 1 << 24,
            .compress = IMAP_COMPRESS_YES,
        };
}

#define ZGREETING "* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] fake ready\r\n"
#define ZLOGIN_OK "$T OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE IDLE] in\r\n"

static bool count_exists(void *ctx, const struct imap_response *r)
{
        if (r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, "EXISTS") == 0) {
                *(unsigned *)ctx = r->number;
                return true;
        }
        return false;
}

static int noop(struct imap_session *s, unsigned *exists)
{
        struct imap_cmd c;
        struct imap_result res;
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "NOOP");
        int r = imap_session_cmd(s, &c, count_exists, exists, &res);
        imap_cmd_free(&c);
        return r < 0 ? r : (res.status == IMAP_ST_OK ? 0 : -EPROTO);
}

START_TEST(test_session_compresses)
{
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n", .deflate = true},
            {.expect = "NOOP\r", .reply = "* 3 EXISTS\r\n$T OK done\r\n"},
            {.expect = "NOOP\r", .reply = "* 4 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        struct imap_account a = zf_acct(f.port);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        unsigned ex = 0;
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 3);
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 4);
        imap_session_free(s);
        zf_stop(&f);
        /* The server read the NOOPs only by inflating them. */
        ck_assert_ptr_nonnull(strstr(f.log, "NOOP"));
}
END_TEST

START_TEST(test_session_compressed_bytes_behind_ok)
{
        /* The server's first compressed bytes arrive in the same segment as
         * its OK: they are compressed, not text for the framer. */
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r",
             .reply = "$T OK DEFLATE active\r\n",
             .deflate = true,
             .early = "* 9 EXISTS\r\n"},
            {.expect = "NOOP\r", .reply = "$T OK done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        struct imap_account a = zf_acct(f.port);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        unsigned ex = 0;
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 9);
        imap_session_free(s);
        zf_stop(&f);
}
END_TEST

START_TEST(test_session_compress_off_and_refused)
{
        /* -o compress=no: COMPRESS is never sent (the script fails on it). */
        static const struct zstep off[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "NOOP\r", .reply = "* 2 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, off);
        struct imap_account a = zf_acct(f.port);
        a.compress = IMAP_COMPRESS_NO;
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        unsigned ex = 0;
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 2);
        imap_session_free(s);
        zf_stop(&f);
        ck_assert_ptr_null(strstr(f.log, "COMPRESS"));

        /* Refused: the session goes on uncompressed. */
        static const struct zstep refused[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T NO [COMPRESSIONACTIVE] TLS does\r\n"},
            {.expect = "NOOP\r", .reply = "* 5 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        zf_start(&f, refused);
        a = zf_acct(f.port);
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 5);
        imap_session_free(s);
        zf_stop(&f);
}
END_TEST

struct big_ctx {
        size_t len;
        char *data;
};

static bool big_body(void *ctx, const struct imap_response *r)
{
        struct big_ctx *c = ctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "FETCH") != 0)
                return false;
        const struct imap_value *v = imap_fetch_item(r->args, "BODY[]");
        if (v && v->type == IMAP_STRING) {
                c->len = v->len;
                c->data = malloc(v->len);
                memcpy(c->data, v->s, v->len);
        }
        return true;
}

START_TEST(test_session_big_literal_compressed)
{
        /* 3 MB in one literal, inflated chunk by chunk into the session's
         * buffer: every byte arrives, none twice. */
        size_t n = 3u << 20;
        unsigned char *body = test_text(n);
        size_t hl = 64;
        char *big = malloc(n + 128);
        int h = snprintf(big, hl, "* 1 FETCH (UID 7 BODY[] {%zu}\r\n", n);
        memcpy(big + h, body, n);
        size_t bl = (size_t)h + n;
        bl += (size_t)sprintf(big + bl, ")\r\nA3 OK done\r\n");
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n", .deflate = true},
            {.expect = "UID FETCH 7", .reply = "$BIG"},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        f.big = big;
        f.big_len = bl;
        struct imap_account a = zf_acct(f.port);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        struct imap_cmd c;
        struct imap_result res;
        struct big_ctx bc = {0};
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "UID FETCH 7 (UID BODY.PEEK[])");
        ck_assert_int_eq(imap_session_cmd(s, &c, big_body, &bc, &res), 0);
        imap_cmd_free(&c);
        ck_assert_int_eq(res.status, IMAP_ST_OK);
        ck_assert_uint_eq(bc.len, n);
        ck_assert_mem_eq(bc.data, body, n);
        imap_session_free(s);
        zf_stop(&f);
        ck_assert_uint_lt(f.wire_out, f.plain_out / 2); /* it did compress */
        free(bc.data);
        free(big);
        free(body);
}
END_TEST

/* compress=auto: a big answer at under 64 Mbit/s (the fake paces 640 KiB
 * as 64 KiB every 15 ms: about 4 MB/s) turns compression on, for this
 * session before its next command and for a session opened afterwards at
 * login; the same answer at full speed (loopback) leaves it off. */
static void auto_run(int pace_ms, bool want_compress)
{
        size_t n = 640u * 1024;
        unsigned char *body = test_text(n);
        char *big = malloc(n + 128);
        int h = snprintf(big, 64, "* 1 FETCH (UID 7 BODY[] {%zu}\r\n", n);
        memcpy(big + h, body, n);
        size_t bl = (size_t)h + n;
        bl += (size_t)sprintf(big + bl, ")\r\nA2 OK done\r\n");
        static const struct zstep slow[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "UID FETCH 7", .reply = "$BIG"},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n", .deflate = true},
            {.expect = "NOOP\r", .reply = "* 3 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        static const struct zstep fast[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "UID FETCH 7", .reply = "$BIG"},
            {.expect = "NOOP\r", .reply = "* 3 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, want_compress ? slow : fast);
        f.big = big;
        f.big_len = bl;
        f.pace_ms = pace_ms;
        atomic_bool slow_link = false;
        struct imap_account a = zf_acct(f.port);
        a.compress = IMAP_COMPRESS_AUTO;
        a.slow_link = &slow_link;
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        struct imap_cmd c;
        struct imap_result res;
        struct big_ctx bc = {0};
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "UID FETCH 7 (UID BODY.PEEK[])");
        ck_assert_int_eq(imap_session_cmd(s, &c, big_body, &bc, &res), 0);
        imap_cmd_free(&c);
        ck_assert_uint_eq(bc.len, n);
        ck_assert_mem_eq(bc.data, body, n);
        ck_assert(atomic_load(&slow_link) == want_compress);
        unsigned ex = 0;
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 3);
        imap_session_free(s);
        zf_stop(&f);
        /* The script itself checks the order: COMPRESS right after the slow
         * answer, none after the fast one (NOOP expected there). */
        ck_assert(want_compress == (strstr(f.log, "COMPRESS") != NULL));
        free(bc.data);
        free(big);
        free(body);
        if (!want_compress)
                return;

        /* Another session of the account, opened after: compresses at login. */
        static const struct zstep next[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n", .deflate = true},
            {.expect = "NOOP\r", .reply = "* 4 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        zf_start(&f, next);
        a.port = f.port;
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 4);
        imap_session_free(s);
        zf_stop(&f);
}

START_TEST(test_session_auto_slow_link)
{
        auto_run(15, true);
}
END_TEST

START_TEST(test_session_auto_fast_link)
{
        auto_run(0, false);
}
END_TEST

/* compress=auto: a reader slower than the link (sanitizers, a loaded
 * machine: its callbacks take the time) is no slow link. The fake sends ten
 * answers of 64 KiB at once, the client spends 40 ms on each: the answer
 * takes 400 ms, but the link never made the client wait, and compressing
 * would only add the server's deflate and our inflate to the client's
 * work. Nothing may turn compression on (NOOP follows, no COMPRESS). */
static bool slow_reader(void *ctx, const struct imap_response *r)
{
        size_t *got = ctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "FETCH") != 0)
                return false;
        const struct imap_value *v = imap_fetch_item(r->args, "BODY[]");
        if (v && v->type == IMAP_STRING)
                *got += v->len;
        nanosleep(&(struct timespec){0, 40 * 1000000L}, NULL);
        return true;
}

START_TEST(test_session_auto_slow_reader_fast_link)
{
        size_t each = 64u * 1024, k = 10;
        unsigned char *body = test_text(each);
        char *big = malloc(k * (each + 64) + 64);
        size_t bl = 0;
        for (size_t i = 0; i < k; i++) {
                bl += (size_t)sprintf(big + bl, "* %zu FETCH (UID %zu BODY[] {%zu}\r\n", i + 1,
                                      i + 1, each);
                memcpy(big + bl, body, each);
                bl += each;
                bl += (size_t)sprintf(big + bl, ")\r\n");
        }
        bl += (size_t)sprintf(big + bl, "A2 OK done\r\n");
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "UID FETCH 1:10", .reply = "$BIG"},
            {.expect = "NOOP\r", .reply = "* 3 EXISTS\r\n$T OK done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        f.big = big;
        f.big_len = bl;
        atomic_bool slow_link = false;
        struct imap_account a = zf_acct(f.port);
        a.compress = IMAP_COMPRESS_AUTO;
        a.slow_link = &slow_link;
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        struct imap_cmd c;
        struct imap_result res;
        size_t got = 0;
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "UID FETCH 1:10 (UID BODY.PEEK[])");
        ck_assert_int_eq(imap_session_cmd(s, &c, slow_reader, &got, &res), 0);
        imap_cmd_free(&c);
        ck_assert_uint_eq(got, k * each);
        ck_assert(!atomic_load(&slow_link));
        unsigned ex = 0;
        ck_assert_int_eq(noop(s, &ex), 0);
        ck_assert_uint_eq(ex, 3);
        imap_session_free(s);
        zf_stop(&f);
        ck_assert(strstr(f.log, "COMPRESS") == NULL);
        free(big);
        free(body);
}
END_TEST

START_TEST(test_session_idle_compressed)
{
        /* IDLE waits with poll() on the socket; a change arrives compressed. */
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n", .deflate = true},
            /* NOTIFY's STATUS: news without a selected mailbox (an EXISTS
             * would be, with one). */
            {.expect = "IDLE\r", .reply = "+ idling\r\n* STATUS \"INBOX\" (MESSAGES 12)\r\n"},
            {.expect = "DONE\r", .reply = "A3 OK idle done\r\n"},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        struct imap_account a = zf_acct(f.port);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        bool changed = false;
        ck_assert_int_eq(imap_session_idle(s, -1, 1500, &changed), 0);
        ck_assert(changed);
        imap_session_free(s);
        zf_stop(&f);
}
END_TEST

START_TEST(test_session_corrupt_stream_breaks)
{
        /* Garbage after COMPRESS: the session breaks with EIO, no hang. */
        static const struct zstep script[] = {
            {.reply = ZGREETING},
            {.expect = "LOGIN \"alice\" \"pw\"", .reply = ZLOGIN_OK},
            {.expect = "COMPRESS DEFLATE\r", .reply = "$T OK DEFLATE active\r\n"},
            {.expect = NULL, .reply = "\xff\xff\xff\xff garbage"},
            {.expect = "NOOP", .reply = NULL},
            {0},
        };
        struct zfake f;
        zf_start(&f, script);
        struct imap_account a = zf_acct(f.port);
        struct imap_session *s = NULL;
        char err[256];
        ck_assert_int_eq(imap_session_open(&a, &s, err, sizeof(err)), 0);
        unsigned ex = 0;
        /* The server inflates nothing (it never turned compression on): it
         * reads our compressed NOOP as garbage and the script ends. */
        ck_assert_int_eq(noop(s, &ex), -EIO);
        ck_assert(imap_session_broken(s));
        imap_session_free(s);
        pthread_join(f.thread, NULL);
        close(f.lfd);
        inflateEnd(&f.in);
        deflateEnd(&f.out);
}
END_TEST

static Suite *compress_suite(void)
{
        Suite *s = suite_create("compress");
        TCase *tc = tcase_create("layer");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_roundtrip_splits);
        tcase_add_test(tc, test_many_flushes_one_stream);
        tcase_add_test(tc, test_pending_after_full_buffer);
        tcase_add_test(tc, test_corrupt_and_ended_streams);
        suite_add_tcase(s, tc);
        tc = tcase_create("session");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_session_compresses);
        tcase_add_test(tc, test_session_compressed_bytes_behind_ok);
        tcase_add_test(tc, test_session_compress_off_and_refused);
        tcase_add_test(tc, test_session_big_literal_compressed);
        tcase_add_test(tc, test_session_idle_compressed);
        tcase_add_test(tc, test_session_auto_slow_link);
        tcase_add_test(tc, test_session_auto_fast_link);
        tcase_add_test(tc, test_session_auto_slow_reader_fast_link);
        tcase_add_test(tc, test_session_corrupt_stream_breaks);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(compress_suite());
}
