/* Milliseconds on the monotonic clock, the one every deadline of imapfs is
 * counted on (the same clock as imap_now_ms(), for the floors above imap/). */
#ifndef IMAPFS_CACHE_CLOCK_H
#define IMAPFS_CACHE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t cache_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
