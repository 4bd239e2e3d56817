/* Dates: RFC 5322 Date headers and IMAP INTERNALDATE. */
#ifndef IMAPFS_IMAP_DATE_H
#define IMAPFS_IMAP_DATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Parses an IMAP date-time "01-Mar-2024 14:30:00 +0100" (day may be " 1"
 * or "1"; month name case-insensitive; nothing may follow the zone).
 * Returns true and sets *out (UTC seconds since the epoch). */
bool imap_date_parse_internal(const char *s, time_t *out);

/* Formats t as an IMAP date-time in UTC ("01-Mar-2024 13:30:00 +0000").
 * out must hold 27 bytes (a smaller cap truncates safely). A time outside
 * years 0000-9999 is written as the epoch. */
void imap_date_format_internal(time_t t, char *out, size_t cap);

/* Parses an RFC 5322 Date header value leniently: optional day name, 1-2 digit
 * day, month name, 2/4-digit year, hh:mm[:ss], numeric zone or obsolete
 * names (GMT, UT, EST, ...; unknown = +0000), comments, extra whitespace.
 * Also takes asctime ("Fri Mar  1 14:30:00 2024") and ISO 8601 layouts, AM/PM
 * and fractional seconds. 2-digit years: < 50 → 20xx, else 19xx; 3-digit:
 * 1900 + n (RFC 5322 §4.3). No time means 00:00:00; an impossible numeric
 * zone is ignored (+0000). Day, month and a year 1900-9999 are required, and
 * impossible fields ("31 Feb", "25:00") make it fail.
 * Returns true and sets *out (UTC) when a plausible date was found. */
bool imap_date_parse_rfc5322(const char *s, size_t len, time_t *out);

#endif
