/* libFuzzer target: dates (imap/date.c). The RFC 5322 parser reads a heap
 * copy of exactly the input (no NUL after it); the INTERNALDATE parser a
 * NUL-terminated copy. A parsed INTERNALDATE formats and parses back to the
 * same time; a parsed Date header lies within its documented years; the
 * formatter never writes past a small cap. */
#include "imap/date.h"

#include "fuzz_util.h"

/* 1900-01-01 minus a day of zone slack, 10000-01-01 plus a day. */
#define DATE_MIN (-2208988800LL - 86400)
#define DATE_MAX (253402300800LL + 86400)

static void check_format(time_t t, size_t cap)
{
        char *out = malloc(cap ? cap : 1);
        imap_date_format_internal(t, out, cap);
        if (cap) {
                FUZZ_CHECK(memchr(out, '\0', cap) != NULL, "format: no NUL within cap %zu", cap);
                if (cap >= 27)
                        FUZZ_CHECK(strlen(out) == 26, "format wrote %zu bytes", strlen(out));
        }
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *exact = fuzz_dup_exact(data, size);
        time_t t = 0;
        if (imap_date_parse_rfc5322(exact, size, &t))
                FUZZ_CHECK((long long)t >= DATE_MIN && (long long)t <= DATE_MAX,
                           "Date parsed to %lld, outside years 1900-9999", (long long)t);
        free(exact);

        char *str = fuzz_dup_str(data, size);
        if (imap_date_parse_internal(str, &t)) {
                char out[27];
                imap_date_format_internal(t, out, sizeof(out));
                time_t t2 = 0;
                FUZZ_CHECK(imap_date_parse_internal(out, &t2), "own format does not parse: %s",
                           out);
                FUZZ_CHECK(t2 == t, "%s parsed to %lld, formatted as %s, back as %lld", str,
                           (long long)t, out, (long long)t2);
        }
        free(str);

        if (size >= 9) {
                int64_t v;
                memcpy(&v, data, 8);
                check_format((time_t)v, data[8] % 40);
                check_format((time_t)(v % 400000000000LL), 27);
        }
        return 0;
}
