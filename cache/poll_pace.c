#include "cache/poll_pace.h"

void poll_pace_init(struct poll_pace *p, int poll_ms, int64_t now)
{
        *p = (struct poll_pace){.used_ms = now, .interval_ms = poll_ms};
}

void poll_pace_used(struct poll_pace *p, int poll_ms, int64_t now)
{
        p->used_ms = now;
        p->interval_ms = poll_ms;
        int64_t due = p->asked_ms ? p->asked_ms + poll_ms * 3 / 4 : 0;
        if (p->next_ms > due)
                p->next_ms = due;
}

bool poll_pace_due(const struct poll_pace *p, int64_t now)
{
        return now >= p->next_ms;
}

void poll_pace_asked(struct poll_pace *p, int poll_ms, int64_t now, bool changed)
{
        bool recent = now - p->used_ms < POLL_PACE_RECENT_MS;
        if (recent || changed)
                p->interval_ms = poll_ms;
        else if (p->interval_ms < POLL_PACE_SLOW_MAX * poll_ms / 2)
                p->interval_ms *= 2;
        else
                p->interval_ms = POLL_PACE_SLOW_MAX * poll_ms;
        p->asked_ms = now;
        /* Due a little before a whole interval has passed, so that it falls
         * in the round that interval brings (rounds come every interval plus
         * the round's own time). */
        p->next_ms = now + p->interval_ms - poll_ms / 4;
}
