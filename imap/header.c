#include "imap/header.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *header_line_end(const char *p, const char *end)
{
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        return nl ? nl + 1 : end;
}

char *imap_header_field(const char *hdr, size_t len, const char *name)
{
        const char *p = hdr, *end = hdr + len;
        size_t nlen = strlen(name);

        while (p < end) {
                const char *next = header_line_end(p, end);
                if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
                        return NULL; /* end of the header block */
                if ((size_t)(next - p) > nlen && strncasecmp(p, name, nlen) == 0) {
                        const char *q = p + nlen;
                        while (q < next && (*q == ' ' || *q == '\t'))
                                q++; /* obsolete syntax allows WSP before the colon */
                        if (q < next && *q == ':') {
                                q++;
                                /* The value runs on through continuation lines. */
                                const char *vend = next;
                                while (vend < end && (*vend == ' ' || *vend == '\t'))
                                        vend = header_line_end(vend, end);
                                while (q < vend && (*q == ' ' || *q == '\t'))
                                        q++;
                                while (vend > q && (vend[-1] == '\n' || vend[-1] == '\r'))
                                        vend--;
                                size_t vl = (size_t)(vend - q);
                                char *out = malloc(vl + 1);
                                if (!out)
                                        return NULL;
                                memcpy(out, q, vl);
                                out[vl] = '\0';
                                return out;
                        }
                }
                p = next;
        }
        return NULL;
}
