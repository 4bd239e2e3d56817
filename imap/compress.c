#include "imap/compress.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Compressed bytes read from the peer at a time. */
#define ZS_IN_CHUNK (64u * 1024)
/* Output of a probe (imap_zstream_pending): inflated ahead, taken first. */
#define ZS_STASH 4096u

struct imap_zstream {
        z_stream d, i;
        bool d_ok, i_ok;
        unsigned char *dbuf; /* deflate output; grows until a flush fits */
        size_t dcap;
        unsigned char *ibuf; /* compressed input; i.next_in points into it */
        size_t icap;
        unsigned char stash[ZS_STASH];
        size_t stash_off, stash_len;
        /* The last inflate filled the caller's buffer: zlib may hold more
         * output without new input. */
        bool more;
        bool failed; /* corrupt input, or the peer ended its stream */
        struct imap_zstats st;
};

struct imap_zstream *imap_zstream_new(void)
{
        struct imap_zstream *z = calloc(1, sizeof(*z));
        if (!z)
                return NULL;
        /* Raw deflate (RFC 4978 §3: no zlib header or checksum), the default
         * level: IMAP text compresses well already at it. */
        z->d_ok = deflateInit2(&z->d, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                               Z_DEFAULT_STRATEGY) == Z_OK;
        z->i_ok = inflateInit2(&z->i, -15) == Z_OK;
        z->icap = ZS_IN_CHUNK;
        z->ibuf = malloc(z->icap);
        if (!z->d_ok || !z->i_ok || !z->ibuf) {
                imap_zstream_free(z);
                return NULL;
        }
        z->i.next_in = z->ibuf;
        z->i.avail_in = 0;
        return z;
}

void imap_zstream_free(struct imap_zstream *z)
{
        if (!z)
                return;
        if (z->d_ok)
                deflateEnd(&z->d);
        if (z->i_ok)
                inflateEnd(&z->i);
        free(z->dbuf);
        free(z->ibuf);
        free(z);
}

static int zs_grow_dbuf(struct imap_zstream *z, size_t want)
{
        if (want <= z->dcap)
                return 0;
        if (want > UINT_MAX)
                return -ENOMEM;
        unsigned char *n = realloc(z->dbuf, want);
        if (!n)
                return -ENOMEM;
        z->dbuf = n;
        z->dcap = want;
        return 0;
}

int imap_zstream_deflate(struct imap_zstream *z, const void *buf, size_t len,
                         const unsigned char **out, size_t *outlen)
{
        /* avail_in is an unsigned int: callers pass chunks (conn.c: 64 KiB). */
        if (len > UINT_MAX / 2)
                return -EINVAL;
        /* The bound for len bytes plus the sync flush's empty block. */
        size_t bound = deflateBound(&z->d, (uLong)len) + 64;
        if (zs_grow_dbuf(z, bound) < 0)
                return -ENOMEM;
        z->d.next_in = (Bytef *)(uintptr_t)buf;
        z->d.avail_in = (uInt)len;
        size_t used = 0;
        for (;;) {
                z->d.next_out = z->dbuf + used;
                z->d.avail_out = (uInt)(z->dcap - used);
                int r = deflate(&z->d, Z_SYNC_FLUSH);
                used = z->dcap - z->d.avail_out;
                /* Z_BUF_ERROR: nothing left to do (all in, all flushed). */
                if (r != Z_OK && r != Z_BUF_ERROR)
                        return -EIO;
                if (z->d.avail_out > 0 && z->d.avail_in == 0)
                        break;
                if (r == Z_BUF_ERROR && z->d.avail_out > 0)
                        return -EIO; /* no progress with room left: can't happen */
                if (zs_grow_dbuf(z, z->dcap * 2) < 0)
                        return -ENOMEM;
        }
        z->st.out_plain += len;
        z->st.out_wire += used;
        *out = z->dbuf;
        *outlen = used;
        return 0;
}

unsigned char *imap_zstream_input(struct imap_zstream *z, size_t *cap)
{
        if (z->i.avail_in > 0)
                return NULL;
        z->i.next_in = z->ibuf;
        *cap = z->icap;
        return z->ibuf;
}

void imap_zstream_fed(struct imap_zstream *z, size_t n)
{
        if (n > z->icap)
                n = z->icap; /* a caller bug; never read past ibuf */
        z->i.next_in = z->ibuf;
        z->i.avail_in = (uInt)n;
        z->st.in_wire += n;
}

int imap_zstream_feed(struct imap_zstream *z, const void *buf, size_t len)
{
        size_t have = z->i.avail_in;
        if (len == 0)
                return 0;
        if (len > UINT_MAX / 2 - have)
                return -ENOMEM;
        if (have + len > z->icap) {
                unsigned char *n = malloc(have + len);
                if (!n)
                        return -ENOMEM;
                memcpy(n, z->i.next_in, have);
                free(z->ibuf);
                z->ibuf = n;
                z->icap = have + len;
        } else {
                memmove(z->ibuf, z->i.next_in, have);
        }
        memcpy(z->ibuf + have, buf, len);
        z->i.next_in = z->ibuf;
        z->i.avail_in = (uInt)(have + len);
        z->st.in_wire += len;
        return 0;
}

/* One inflate step into buf; see imap_zstream_inflate. */
static ssize_t zs_inflate_into(struct imap_zstream *z, unsigned char *buf, size_t len)
{
        if (z->failed)
                return -EIO;
        if (len == 0 || (z->i.avail_in == 0 && !z->more))
                return 0;
        uInt room = len > UINT_MAX ? UINT_MAX : (uInt)len;
        z->i.next_out = buf;
        z->i.avail_out = room;
        int r = inflate(&z->i, Z_SYNC_FLUSH);
        size_t got = room - z->i.avail_out;
        z->st.in_plain += got;
        switch (r) {
        case Z_OK:
                z->more = z->i.avail_out == 0;
                return (ssize_t)got;
        case Z_BUF_ERROR: /* no progress possible: needs input */
                z->more = false;
                return (ssize_t)got;
        case Z_STREAM_END:
                /* RFC 4978 has no end of compression: a final block means
                 * the peer is done; what came with it still counts. */
                z->failed = true;
                return got > 0 ? (ssize_t)got : -EIO;
        default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR, Z_STREAM_ERROR */
                z->failed = true;
                return -EIO;
        }
}

ssize_t imap_zstream_inflate(struct imap_zstream *z, void *buf, size_t len)
{
        if (z->stash_off < z->stash_len) {
                size_t n = z->stash_len - z->stash_off;
                if (n > len)
                        n = len;
                memcpy(buf, z->stash + z->stash_off, n);
                z->stash_off += n;
                return (ssize_t)n;
        }
        return zs_inflate_into(z, buf, len);
}

bool imap_zstream_pending(struct imap_zstream *z)
{
        if (z->stash_off < z->stash_len || z->failed)
                return true; /* bytes, or an error for the next read to report */
        if (z->i.avail_in == 0 && !z->more)
                return false;
        /* Input left or a full last read: only inflating tells whether it
         * holds output (the rest may be part of a block header). */
        z->stash_off = z->stash_len = 0;
        ssize_t n = zs_inflate_into(z, z->stash, sizeof(z->stash));
        if (n > 0)
                z->stash_len = (size_t)n;
        return n != 0;
}

void imap_zstream_stats(const struct imap_zstream *z, struct imap_zstats *st)
{
        *st = z->st;
}
