/* Live sync's pace per folder without NOTIFY (issue 18): rounds every poll
 * interval (plus the round's own time), simulated over half an hour. */
#include <check.h>
#include <stdint.h>

#include "cache/poll_pace.h"
#include "tests/unit/unit_main.h"

#define POLL 10000
#define ROUND_TIME 300 /* each round starts this much after poll after the last */

/* Runs rounds from `from` until `until`; returns how many asked about p and
 * checks no two were closer than one interval. */
static int rounds(struct poll_pace *p, int64_t *t, int64_t until, int64_t *last_asked)
{
        int n = 0;
        for (; *t < until; *t += POLL + ROUND_TIME) {
                if (!poll_pace_due(p, *t))
                        continue;
                if (*last_asked)
                        ck_assert_int_ge(*t - *last_asked, POLL);
                poll_pace_asked(p, POLL, *t, false);
                *last_asked = *t;
                n++;
        }
        return n;
}

START_TEST(test_recent_folder_every_round)
{
        struct poll_pace p;
        int64_t t = 1000, last = 0;
        poll_pace_init(&p, POLL, t);
        /* Used (listed) at 1000: every round for five minutes. */
        int n = rounds(&p, &t, 1000 + POLL_PACE_RECENT_MS - POLL, &last);
        ck_assert_int_eq(n, (POLL_PACE_RECENT_MS - POLL) / (POLL + ROUND_TIME) + 1);
}
END_TEST

START_TEST(test_old_folder_slows_down_to_ten_intervals)
{
        struct poll_pace p;
        int64_t t = 1000;
        poll_pace_init(&p, POLL, t);
        /* Two hours of rounds: the gaps between its turns, in rounds. */
        int gaps[1000], n = 0;
        int64_t last = 0;
        for (int k = 0; k < 2 * 3600 * 1000 / (POLL + ROUND_TIME); k++, t += POLL + ROUND_TIME) {
                if (!poll_pace_due(&p, t))
                        continue;
                if (last)
                        gaps[n++] = (int)((t - last) / (POLL + ROUND_TIME));
                poll_pace_asked(&p, POLL, t, false);
                last = t;
        }
        /* Every round while used (five minutes), then 2, 4, 8 and 10 rounds
         * apart for good. */
        int i = 0;
        while (i < n && gaps[i] == 1)
                i++;
        ck_assert_int_ge(i, POLL_PACE_RECENT_MS / (POLL + ROUND_TIME) - 1);
        int want[] = {2, 4, 8};
        for (int k = 0; k < 3; k++)
                ck_assert_int_eq(gaps[i + k], want[k]);
        ck_assert_int_gt(n, i + 6);
        for (int k = i + 3; k < n; k++)
                ck_assert_int_eq(gaps[k], POLL_PACE_SLOW_MAX);
}
END_TEST

START_TEST(test_use_or_change_brings_it_back)
{
        struct poll_pace p;
        int64_t t = 0, last = 0;
        poll_pace_init(&p, POLL, t);
        t = POLL_PACE_RECENT_MS + 1;
        /* Slow: several rounds without a turn. */
        for (int i = 0; i < 5; i++) {
                if (poll_pace_due(&p, t))
                        poll_pace_asked(&p, POLL, t, false);
                t += POLL + ROUND_TIME;
        }
        ck_assert_int_gt(p.interval_ms, POLL);
        /* Opened now: its turn in the very next round, then every round. */
        poll_pace_used(&p, POLL, t - 1);
        ck_assert(poll_pace_due(&p, t));
        last = 0;
        int64_t end = t + 10 * (POLL + ROUND_TIME);
        ck_assert_int_eq(rounds(&p, &t, end, &last), 10);
        /* Unused again for long, then a change found: every round again. */
        t += POLL_PACE_RECENT_MS;
        while (!poll_pace_due(&p, t))
                t += POLL + ROUND_TIME;
        poll_pace_asked(&p, POLL, t, false);
        ck_assert_int_eq(p.interval_ms, 2 * POLL);
        while (!poll_pace_due(&p, t))
                t += POLL + ROUND_TIME;
        poll_pace_asked(&p, POLL, t, true);
        ck_assert_int_eq(p.interval_ms, POLL);
        ck_assert(poll_pace_due(&p, t + POLL + ROUND_TIME));
}
END_TEST

START_TEST(test_use_never_makes_it_twice_in_one_interval)
{
        struct poll_pace p;
        int64_t t = 5000;
        poll_pace_init(&p, POLL, t);
        ck_assert(poll_pace_due(&p, t));
        poll_pace_asked(&p, POLL, t, false);
        /* Used right after being asked: not due again before most of an
         * interval has passed. */
        poll_pace_used(&p, POLL, t + 100);
        ck_assert(!poll_pace_due(&p, t + POLL / 2));
        ck_assert(poll_pace_due(&p, t + POLL));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("poll_pace");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_recent_folder_every_round);
        tcase_add_test(tc, test_old_folder_slows_down_to_ten_intervals);
        tcase_add_test(tc, test_use_or_change_brings_it_back);
        tcase_add_test(tc, test_use_never_makes_it_twice_in_one_interval);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
