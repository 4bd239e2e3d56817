/* Dates: RFC 5322 Date headers and IMAP INTERNALDATE.
 *
 * Month and zone names are matched against our own English tables and times
 * are converted with timegm(), so the results never depend on the locale or
 * the TZ of the process. */
#include "imap/date.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const month_abbr[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const month_full[12] = {"january",   "february", "march",    "april",
                                           "may",       "june",     "july",     "august",
                                           "september", "october",  "november", "december"};

/* RFC 5322 §4.3 obsolete zones, plus a few unambiguous names seen in the wild
 * (minutes east of UTC). Everything else, military letters included, is taken
 * as +0000, as §4.3 recommends. */
static const struct {
        const char *name;
        int minutes;
} zone_names[] = {
    {"ut", 0},     {"utc", 0},    {"gmt", 0},    {"z", 0},      {"est", -300}, {"edt", -240},
    {"cst", -360}, {"cdt", -300}, {"mst", -420}, {"mdt", -360}, {"pst", -480}, {"pdt", -420},
    {"wet", 0},    {"west", 60},  {"cet", 60},   {"cest", 120}, {"met", 60},   {"mest", 120},
    {"eet", 120},  {"eest", 180}, {"jst", 540},  {"kst", 540},  {"aest", 600}, {"aedt", 660},
    {"nzst", 720}, {"nzdt", 780},
};

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int year, int month)
{
        static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

/* zone: minutes east of UTC. Rejects impossible fields rather than letting
 * timegm() normalise "31 Feb" into March. A leap second (:60) is allowed. */
static bool make_time(int year, int month, int day, int hour, int min, int sec, int zone,
                      time_t *out)
{
        if (year < 1900 || year > 9999 || month < 1 || month > 12 || day < 1 ||
            day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 60)
                return false;
        struct tm tm = {0};
        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        *out = timegm(&tm) - (time_t)zone * 60;
        return true;
}

/* Reads exactly n digits at s. */
static bool digits(const char *s, int n, int *out)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return true;
}

bool imap_date_parse_internal(const char *s, time_t *out)
{
        int day, month = 0, year, hour, min, sec, zh, zm;
        /* date-day-fixed is " 1" or "01"; a bare "1" is tolerated too. */
        if (s[0] == ' ')
                s++;
        if (!is_digit(s[0]))
                return false;
        if (is_digit(s[1])) {
                day = (s[0] - '0') * 10 + (s[1] - '0');
                s += 2;
        } else {
                day = s[0] - '0';
                s += 1;
        }
        if (s[0] != '-' || strlen(s) < 4)
                return false;
        for (int m = 0; m < 12; m++)
                if (strncasecmp(s + 1, month_abbr[m], 3) == 0)
                        month = m + 1;
        if (month == 0 || s[4] != '-')
                return false;
        s += 5;
        if (!digits(s, 4, &year) || s[4] != ' ' || !digits(s + 5, 2, &hour) || s[7] != ':' ||
            !digits(s + 8, 2, &min) || s[10] != ':' || !digits(s + 11, 2, &sec) || s[13] != ' ' ||
            (s[14] != '+' && s[14] != '-') || !digits(s + 15, 2, &zh) || !digits(s + 17, 2, &zm) ||
            s[19] != '\0')
                return false;
        if (zh > 23 || zm > 59)
                return false;
        int zone = (zh * 60 + zm) * (s[14] == '-' ? -1 : 1);
        return make_time(year, month, day, hour, min, sec, zone, out);
}

void imap_date_format_internal(time_t t, char *out, size_t cap)
{
        struct tm tm;
        /* Out of the 4-digit-year range the format can't express the time;
         * the epoch is a recognisable stand-in rather than a garbled string. */
        if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
                t = 0;
                gmtime_r(&t, &tm);
        }
        snprintf(out, cap, "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday, month_abbr[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* What the lenient parser has found so far. */
struct fields {
        int day, month, year, year_digits;
        int hour, min, sec;
        bool have_time, year_first;
        int zone;       /* numeric zone, minutes east */
        int named_zone; /* from a zone name */
        bool have_zone, have_named_zone;
        int meridiem; /* 0, or 'a' / 'p' for "AM" / "PM" */
};

static size_t skip_comment(const char *s, size_t len, size_t i)
{
        int depth = 0;
        for (; i < len; i++) {
                if (s[i] == '\\' && i + 1 < len)
                        i++;
                else if (s[i] == '(')
                        depth++;
                else if (s[i] == ')' && --depth == 0)
                        return i + 1;
        }
        return len;
}

static void take_word(struct fields *f, const char *w, size_t n)
{
        char low[12];
        if (n >= sizeof low)
                return;
        for (size_t i = 0; i < n; i++)
                low[i] = (char)(w[i] | 0x20);
        low[n] = '\0';
        for (int m = 0; m < 12; m++) {
                if ((n == 3 && strncmp(low, month_full[m], 3) == 0) ||
                    strcmp(low, month_full[m]) == 0 || (m == 8 && strcmp(low, "sept") == 0)) {
                        if (!f->month)
                                f->month = m + 1;
                        return;
                }
        }
        /* Zone names and AM/PM only mean something after the time; before it
         * a letter is more likely the ISO 8601 "T" or a day name. */
        if (!f->have_time)
                return;
        if (strcmp(low, "am") == 0 || strcmp(low, "pm") == 0) {
                f->meridiem = low[0];
                return;
        }
        for (size_t z = 0; z < sizeof zone_names / sizeof zone_names[0]; z++) {
                if (strcmp(low, zone_names[z].name) == 0 && !f->have_named_zone) {
                        f->named_zone = zone_names[z].minutes;
                        f->have_named_zone = true;
                        return;
                }
        }
}

static void take_number(struct fields *f, int v, int ndigits)
{
        if (ndigits == 4 || ndigits == 3) {
                if (f->year_digits)
                        return;
                f->year = v;
                f->year_digits = ndigits;
                f->year_first = !f->day && !f->month;
        } else if (ndigits <= 2) {
                if (f->year_first && !f->month)
                        f->month = v ? v : -1;
                else if (!f->day)
                        f->day = v ? v : -1;
                else if (!f->year_digits)
                        f->year = v, f->year_digits = ndigits;
        }
}

/* "+hhmm", "+hh:mm" or "+hh" at s[i]; returns the index after it, or i if
 * there is no zone there. */
static size_t take_zone(struct fields *f, const char *s, size_t len, size_t i)
{
        size_t j = i + 1;
        int v = 0, n = 0;
        while (j < len && is_digit(s[j]) && n < 5)
                v = v * 10 + (s[j++] - '0'), n++;
        int hh, mm = 0;
        if (n == 4) {
                hh = v / 100, mm = v % 100;
        } else if (n == 2) {
                hh = v;
                if (j < len && s[j] == ':') {
                        if (j + 2 >= len || !digits(s + j + 1, 2, &mm))
                                return i;
                        j += 3;
                }
        } else {
                return i;
        }
        if (j < len && is_digit(s[j]))
                return i;
        if (hh <= 23 && mm <= 59) {
                f->zone = (hh * 60 + mm) * (s[i] == '-' ? -1 : 1);
                f->have_zone = true;
        }
        return j;
}

/* hh:mm[:ss[.fraction]] at s[i], the hour already read as v. Returns the index
 * after it, or 0 if it is malformed. */
static size_t take_time(struct fields *f, const char *s, size_t len, size_t i, int v)
{
        int mm, ss = 0;
        if (i + 2 >= len || !digits(s + i + 1, 2, &mm))
                return 0;
        i += 3;
        if (i < len && s[i] == ':') {
                if (i + 2 >= len || !digits(s + i + 1, 2, &ss))
                        return 0;
                i += 3;
                if (i + 1 < len && s[i] == '.' && is_digit(s[i + 1]))
                        for (i++; i < len && is_digit(s[i]); i++)
                                ;
        }
        if (i < len && is_digit(s[i]))
                return 0;
        if (!f->have_time) {
                f->hour = v, f->min = mm, f->sec = ss;
                f->have_time = true;
        }
        return i;
}

bool imap_date_parse_rfc5322(const char *s, size_t len, time_t *out)
{
        struct fields f = {0};
        for (size_t i = 0; i < len;) {
                char c = s[i];
                if (c == '(') {
                        i = skip_comment(s, len, i);
                } else if ((c == '+' || c == '-') && f.have_time && !f.have_zone && i + 1 < len &&
                           is_digit(s[i + 1])) {
                        size_t j = take_zone(&f, s, len, i);
                        i = j > i ? j : i + 1;
                } else if (is_digit(c)) {
                        int v = 0, n = 0;
                        size_t j = i;
                        for (; j < len && is_digit(s[j]); j++, n++)
                                if (n < 9)
                                        v = v * 10 + (s[j] - '0');
                        if (j < len && s[j] == ':') {
                                if (n > 2 || !(j = take_time(&f, s, len, j, v)))
                                        return false;
                        } else {
                                take_number(&f, v, n);
                        }
                        i = j;
                } else if (is_alpha(c)) {
                        size_t j = i;
                        while (j < len && is_alpha(s[j]))
                                j++;
                        take_word(&f, s + i, j - i);
                        i = j;
                } else {
                        i++;
                }
        }
        if (f.day <= 0 || f.month <= 0 || !f.year_digits)
                return false;
        int year = f.year;
        if (f.year_digits == 2)
                year += year < 50 ? 2000 : 1900;
        else if (f.year_digits == 3)
                year += 1900;
        int hour = f.hour;
        if (f.meridiem && hour >= 1 && hour <= 12)
                hour = hour % 12 + (f.meridiem == 'p' ? 12 : 0);
        int zone = f.have_zone ? f.zone : f.have_named_zone ? f.named_zone : 0;
        return make_time(year, f.month, f.day, hour, f.min, f.sec, zone, out);
}
