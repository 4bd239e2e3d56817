/* One growable array for every list built up one element at a time (LIST
 * entries, listing rows, flag changes, UIDs, names), instead of a copy of
 * the same realloc-doubling loop in each. */
#ifndef IMAPFS_IMAP_ARRAY_H
#define IMAPFS_IMAP_ARRAY_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for element n of the array whose pointer is at *arrp (cap
 * slots of elem bytes): doubles it, starting at first slots. Returns 0, or
 * -ENOMEM with the array as it was. Use IMAP_ARRAY_GROW. */
static inline int imap_array_grow(void *arrp, size_t *cap, size_t n, size_t elem, size_t first)
{
        if (n < *cap)
                return 0;
        size_t ncap = *cap ? *cap * 2 : first;
        if (ncap <= n)
                ncap = n + 1;
        if (ncap < *cap || ncap > SIZE_MAX / elem)
                return -ENOMEM;
        void *old;
        memcpy(&old, arrp, sizeof(old)); /* arrp is a T**: no aliasing through void** */
        void *nv = realloc(old, ncap * elem);
        if (!nv)
                return -ENOMEM;
        memcpy(arrp, &nv, sizeof(nv));
        *cap = ncap;
        return 0;
}

/* IMAP_ARRAY_GROW(v, n, cap, first): room for v[n] (v a T*, cap a size_t). */
#define IMAP_ARRAY_GROW(v, n, cap, first) imap_array_grow(&(v), &(cap), (n), sizeof(*(v)), (first))

#endif
