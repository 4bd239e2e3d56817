/* Batch front end of imap/mime_decode.c for tests/unit/mime_decode_diff.py:
 * reads records from stdin, decodes each through the streaming decoder in
 * chunks of the given size, writes the result to stdout.
 *   in:  u8 n, n bytes CTE name, u32 chunk (0: whole), u64 len, len bytes
 *   out: u64 len, len bytes
 * (native byte order: both ends run on the same machine). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime_decode.h"

static int read_all(void *p, size_t n)
{
        return fread(p, 1, n, stdin) == n ? 0 : -1;
}

int main(void)
{
        for (;;) {
                unsigned char n;
                char name[256];
                uint32_t chunk;
                uint64_t len;
                if (fread(&n, 1, 1, stdin) != 1)
                        return 0;
                if (read_all(name, n) || read_all(&chunk, sizeof chunk) ||
                    read_all(&len, sizeof len))
                        return 1;
                name[n] = '\0';
                char *in = malloc(len + 1), *out = malloc(IMAP_DECODE_MAX_OUT(len) + 2);
                if (!in || !out || read_all(in, len))
                        return 1;
                struct imap_decoder d;
                imap_decoder_init(&d, imap_cte_from_name(name));
                uint64_t o = 0, step = chunk ? chunk : (len ? len : 1);
                for (uint64_t i = 0; i < len; i += step)
                        o +=
                            imap_decoder_feed(&d, in + i, len - i < step ? len - i : step, out + o);
                o += imap_decoder_finish(&d, out + o);
                if (fwrite(&o, sizeof o, 1, stdout) != 1 || fwrite(out, 1, o, stdout) != o)
                        return 1;
                fflush(stdout);
                free(in);
                free(out);
        }
}
