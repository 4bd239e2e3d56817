/* How often live sync without NOTIFY asks about one folder (issue 18): a
 * folder used in the last POLL_PACE_RECENT_MS (opened, or listed by anything
 * but live sync) every poll interval; another one less often, its interval
 * doubling after each round that found no change, up to POLL_PACE_SLOW_MAX
 * intervals; back to every interval once it changes or is used again; and
 * never twice within one interval. Pure arithmetic on a monotonic clock, so
 * that the rule can be tested without waiting for it. */
#ifndef IMAPFS_CACHE_POLL_PACE_H
#define IMAPFS_CACHE_POLL_PACE_H

#include <stdbool.h>
#include <stdint.h>

#define POLL_PACE_RECENT_MS (5 * 60 * 1000)
#define POLL_PACE_SLOW_MAX 10

struct poll_pace {
        int64_t used_ms;  /* last use */
        int64_t asked_ms; /* our last STATUS of it, 0 if never */
        int64_t next_ms;  /* not asked before this */
        int interval_ms;  /* its current pace */
};

/* A folder first seen at now (it has just been listed: used now). */
void poll_pace_init(struct poll_pace *p, int poll_ms, int64_t now);
/* It was used at now: due in the next round, unless asked within this
 * interval already. */
void poll_pace_used(struct poll_pace *p, int poll_ms, int64_t now);
/* Its turn in the round that began at now. */
bool poll_pace_due(const struct poll_pace *p, int64_t now);
/* It was asked about in the round that began at now; changed: its STATUS
 * differed from its listing. */
void poll_pace_asked(struct poll_pace *p, int poll_ms, int64_t now, bool changed);

#endif
