/* Unit tests for the IMAP response framer and parser: every response form we
 * rely on, framing at every split point, and hostile input. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parse.h"
#include "tests/unit/unit_main.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define BIG_MAX ((uint64_t)1 << 30)

struct canned {
        const char *s;
        size_t len;
};
#define C(lit)                                                                                     \
        {                                                                                          \
                (lit), sizeof(lit) - 1                                                             \
        }

/* Every canned response must frame as one response and parse. */
static const struct canned canned[] = {
    C("A1 OK LOGIN completed\r\n"),
    C("A2 NO [ALERT] mailbox full\r\n"),
    C("A3 BAD command unknown\r\n"),
    C("* BYE server shutting down\r\n"),
    C("* PREAUTH [CAPABILITY IMAP4rev1] logged in\r\n"),
    C("* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n"),
    C("* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"),
    C("* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] Dovecot ready.\r\n"),
    C("A4 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"),
    C("* OK [XYZZY some \"odd text] hi\r\n"),
    C("* OK [UIDNEXT 4392] Predicted next UID\r\n"),
    C("A5 OK [APPENDUID 38505 3955] APPEND completed\r\n"),
    C("+ Ready for literal\r\n"),
    C("+\r\n"),
    C("* 23 EXISTS\r\n"),
    C("* 3 EXPUNGE\r\n"),
    C("* 8 RECENT\r\n"),
    C("* 12 FETCH (UID 5 FLAGS (\\Seen $Label) RFC822.SIZE 1234 INTERNALDATE "
      "\"01-Mar-2024 10:00:00 +0000\")\r\n"),
    C("* 1 FETCH (UID 7 BODY[HEADER.FIELDS (DATE SUBJECT)] {28}\r\n"
      "Subject: hi\r\nDate: today\r\n\r\n)\r\n"),
    C("* 2 FETCH (BODY[]<65536> {5+}\r\nhello UID 9)\r\n"),
    C("* 3 FETCH (BINARY[1.2]<0> ~{4}\r\na\0b\0)\r\n"),
    C("* 4 FETCH (BODY[] {3}\nabc)\n"),
    C("* 6 FETCH (BODY[1] {0}\r\n FLAGS ())\r\n"),
    C("* 7 FETCH (BODY[1] {2}\r\nab BODY[2] {3}\r\ncde)\r\n"),
    C("* 9 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
      "\"7bit\" 3 1 NIL NIL NIL NIL)(\"text\" \"html\" NIL NIL NIL \"7bit\" 5 1 NIL NIL "
      "NIL NIL) \"alternative\" (\"boundary\" \"x\") NIL NIL NIL))\r\n"),
    C("* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"),
    C("* LIST () NIL INBOX\r\n"),
    C("* LIST (\\Noselect) \".\" {9}\r\nfoo\r\nbar\"\r\n"),
    C("* LIST () \"/\" {2}\r\n{7}\r\n"),
    C("* LIST () \"/\" \"a\\\"b\\\\c\"\r\n"),
    C("* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n"),
    C("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"),
    C("* SEARCH 2 3\r\n"),
    C("* SEARCH\r\n"),
    C("* ESEARCH (TAG \"A1\") UID ALL 1:3\r\n"),
    C("* STATUS \"box\" (MESSAGES 3 UIDNEXT 4)\r\n"),
    C("* VANISHED (EARLIER) 1:3\r\n"),
    C("* ENABLED QRESYNC\r\n"),
    C("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"),
    C("* 4 EXISTS\n"),
};
#define NCANNED (sizeof(canned) / sizeof(canned[0]))

/* Parses a copy of exactly len bytes so that ASan sees any read past it. */
static int parse_exact(const char *s, size_t len, struct imap_response **out)
{
        char *copy = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, s, len);
        int r = imap_parse(copy, len, out);
        free(copy);
        return r;
}

static struct imap_response *parse_ok(const char *s, size_t len)
{
        struct imap_response *r = NULL;
        int err = parse_exact(s, len, &r);
        ck_assert_msg(err == 0, "parse failed (%d): %.*s", err, (int)len, s);
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_nonnull(r->name);
        ck_assert_ptr_nonnull(r->text);
        return r;
}

static void parse_fails(const char *s, size_t len)
{
        struct imap_response *r = (struct imap_response *)1;
        int err = parse_exact(s, len, &r);
        ck_assert_msg(err == -EPROTO, "expected -EPROTO, got %d for: %.*s", err, (int)len, s);
        ck_assert_ptr_null(r);
}

static ssize_t frame_once(const char *s, size_t len, uint64_t max)
{
        struct imap_framer f;
        imap_framer_reset(&f);
        return imap_frame(&f, s, len, max);
}

static const struct imap_value *nth(const struct imap_value *v, size_t n)
{
        while (v && n--)
                v = v->next;
        return v;
}

static void assert_str(const struct imap_value *v, enum imap_vtype type, const char *s, size_t len)
{
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(v->type, type);
        ck_assert_uint_eq(v->len, len);
        ck_assert(memcmp(v->s, s, len) == 0);
        ck_assert_int_eq(v->s[len], '\0');
}
#define ASSERT_ATOM(v, lit) assert_str((v), IMAP_ATOM, S(lit))
#define ASSERT_STRING(v, lit) assert_str((v), IMAP_STRING, S(lit))

static void assert_number(const struct imap_value *v, uint64_t n)
{
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(v->type, IMAP_NUMBER);
        ck_assert(v->num == n);
}

/* ------------------------------------------------------------------ framing */

START_TEST(frame_simple_line)
{
        ck_assert_int_eq(frame_once(S("A1 OK done\r\n"), BIG_MAX), 12);
}
END_TEST

START_TEST(frame_bare_lf)
{
        ck_assert_int_eq(frame_once(S("* 3 EXISTS\n"), BIG_MAX), 11);
}
END_TEST

START_TEST(frame_incomplete_needs_more)
{
        ck_assert_int_eq(frame_once(S("A1 OK do"), BIG_MAX), 0);
        ck_assert_int_eq(frame_once(S("A1 OK done\r"), BIG_MAX), 0);
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {5}\r\nhel"), BIG_MAX), 0);
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {5}\r\nhello"), BIG_MAX), 0);
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {5}\r\nhello)"), BIG_MAX), 0);
}
END_TEST

START_TEST(frame_empty_input)
{
        ck_assert_int_eq(frame_once("", 0, BIG_MAX), 0);
        ck_assert_int_eq(frame_once(NULL, 0, BIG_MAX), 0);
}
END_TEST

START_TEST(frame_literal)
{
        const char r[] = "* 1 FETCH (BODY[] {5}\r\nhe\r\n)\r\n";
        ck_assert_int_eq(frame_once(S(r), BIG_MAX), (ssize_t)sizeof(r) - 1);
}
END_TEST

START_TEST(frame_literal_plus_and_literal8)
{
        ck_assert_int_eq(frame_once(S("A {3+}\r\nabc\r\n"), BIG_MAX), 13);
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BINARY[] ~{3}\r\n\0\n\r)\r\n"), BIG_MAX), 32);
}
END_TEST

START_TEST(frame_literal_content_is_not_rescanned)
{
        /* The literal holds "{1" and the line after it is "}\r\n": the framer
         * must not read that as a literal spec. */
        const char r[] = "* LIST () \"/\" {2}\r\n{1}\r\n";
        ck_assert_int_eq(frame_once(S(r), BIG_MAX), (ssize_t)sizeof(r) - 1);
        /* A literal whose bytes look like a complete response. */
        const char r2[] = "* 1 FETCH (BODY[] {12}\r\nA1 OK done\r\n)\r\n";
        ck_assert_int_eq(frame_once(S(r2), BIG_MAX), (ssize_t)sizeof(r2) - 1);
}
END_TEST

START_TEST(frame_back_to_back)
{
        const char buf[] = "* 3 EXISTS\r\n* 1 FETCH (BODY[] {3}\r\nabc)\r\nA1 OK done\r\n+ go\n";
        const size_t want[] = {12, 29, 12, 5};
        size_t off = 0;
        struct imap_framer f;
        imap_framer_reset(&f);
        for (size_t i = 0; i < 4; i++) {
                ssize_t n = imap_frame(&f, buf + off, sizeof(buf) - 1 - off, BIG_MAX);
                ck_assert_int_eq(n, (ssize_t)want[i]);
                imap_framer_reset(&f);
                off += (size_t)n;
        }
        ck_assert_uint_eq(off, sizeof(buf) - 1);
        ck_assert_int_eq(imap_frame(&f, buf + off, 0, BIG_MAX), 0);
}
END_TEST

START_TEST(frame_canned_whole)
{
        for (size_t i = 0; i < NCANNED; i++)
                ck_assert_msg(frame_once(canned[i].s, canned[i].len, BIG_MAX) ==
                                  (ssize_t)canned[i].len,
                              "canned %zu", i);
}
END_TEST

/* Prefix of every length, then the whole, on the same framer. */
START_TEST(frame_canned_split_every_byte)
{
        for (size_t i = 0; i < NCANNED; i++) {
                const struct canned *c = &canned[i];
                for (size_t k = 0; k < c->len; k++) {
                        struct imap_framer f;
                        imap_framer_reset(&f);
                        ck_assert_msg(imap_frame(&f, c->s, k, BIG_MAX) == 0, "canned %zu k %zu", i,
                                      k);
                        ck_assert_msg(imap_frame(&f, c->s, c->len, BIG_MAX) == (ssize_t)c->len,
                                      "canned %zu k %zu", i, k);
                }
        }
}
END_TEST

/* A buffer that grows one byte per call, as from a very slow server. */
START_TEST(frame_canned_byte_at_a_time)
{
        for (size_t i = 0; i < NCANNED; i++) {
                const struct canned *c = &canned[i];
                struct imap_framer f;
                imap_framer_reset(&f);
                for (size_t k = 1; k < c->len; k++)
                        ck_assert_msg(imap_frame(&f, c->s, k, BIG_MAX) == 0, "canned %zu k %zu", i,
                                      k);
                ck_assert_int_eq(imap_frame(&f, c->s, c->len, BIG_MAX), (ssize_t)c->len);
        }
}
END_TEST

/* Each canned response followed by another, split at every byte: the framer
 * returns the first one's length and never runs into the second. */
START_TEST(frame_canned_followed_by_more)
{
        for (size_t i = 0; i < NCANNED; i++) {
                const struct canned *a = &canned[i], *b = &canned[(i + 7) % NCANNED];
                size_t len = a->len + b->len;
                char *buf = malloc(len);
                ck_assert_ptr_nonnull(buf);
                memcpy(buf, a->s, a->len);
                memcpy(buf + a->len, b->s, b->len);
                for (size_t k = 0; k <= len; k++) {
                        struct imap_framer f;
                        imap_framer_reset(&f);
                        ssize_t first = imap_frame(&f, buf, k, BIG_MAX);
                        ck_assert_int_eq(first, k < a->len ? 0 : (ssize_t)a->len);
                        if (first == 0)
                                ck_assert_int_eq(imap_frame(&f, buf, len, BIG_MAX),
                                                 (ssize_t)a->len);
                }
                free(buf);
        }
}
END_TEST

START_TEST(frame_literal_over_max_is_e2big)
{
        /* Only the spec has arrived: the refusal comes before any of the
         * literal, so the caller never sizes a buffer for it. */
        struct imap_framer f;
        imap_framer_reset(&f);
        ck_assert_int_eq(imap_frame(&f, S("* 1 FETCH (BODY[] {1000001}\r\n"), 1000000), -E2BIG);
        ck_assert(f.literal_left == 0);
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {1000000}\r\n"), 1000000), 0);
        ck_assert_int_eq(frame_once(S("A {18446744073709551615}\r\n"), BIG_MAX), -E2BIG);
        ck_assert_int_eq(frame_once(S("A {18446744073709551615}\r\n"), UINT64_MAX), 0);
}
END_TEST

START_TEST(values_join_skips_and_cuts)
{
        struct imap_response *r = NULL;
        const char *line = "* 1 FETCH (FLAGS (\\Seen \\Recent $Label1 \"str\" 42))\r\n";
        ck_assert_int_eq(imap_parse(line, strlen(line), &r), 0);
        const struct imap_value *flags = imap_fetch_item(r->args, "FLAGS");
        ck_assert_ptr_nonnull(flags);
        char out[64];
        ck_assert_uint_eq(imap_values_join(flags->first, "\\recent", out, sizeof(out)), 16);
        ck_assert_str_eq(out, "\\Seen $Label1 42");
        /* Never half a word: "\Seen" fits in 8 bytes, "\Seen $Label1" does not. */
        ck_assert_uint_eq(imap_values_join(flags->first, NULL, out, 8), 5);
        ck_assert_str_eq(out, "\\Seen");
        ck_assert_uint_eq(imap_values_join(NULL, NULL, out, sizeof(out)), 0);
        ck_assert_str_eq(out, "");
        imap_response_free(r);
}
END_TEST

START_TEST(frame_literal_total_is_bounded)
{
        /* Many literals each under the limit must not add up past it: one
         * response never costs more than max_literal plus a line. */
        struct imap_framer f;
        imap_framer_reset(&f);
        char buf[64];
        memcpy(buf, "* 1 FETCH (A {600}\r\n", 21);
        ck_assert_int_eq(imap_frame(&f, buf, 21, 1000), 0);
        char big[800];
        size_t n = 0;
        memcpy(big, buf, 21);
        n = 21;
        memset(big + n, 'x', 600);
        n += 600;
        memcpy(big + n, " B {600}\r\n", 11);
        n += 11;
        ck_assert_int_eq(imap_frame(&f, big, n, 1000), -E2BIG);
        /* The same two literals fit a larger bound. */
        imap_framer_reset(&f);
        memcpy(big + n, "x)\r\n", 5);
        ck_assert_int_eq(imap_frame(&f, big, n, 1200), 0);
}
END_TEST

START_TEST(frame_absurd_literal_is_eproto)
{
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {99999999999999999999}\r\n"), BIG_MAX),
                         -EPROTO);
        ck_assert_int_eq(frame_once(S("A {18446744073709551616}\r\n"), UINT64_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A {000000000000000000000000000000000005}\r\n"), BIG_MAX),
                         -EPROTO);
        ck_assert_int_eq(frame_once(S("A 0000000000000000000000000000000000005}\r\n"), BIG_MAX),
                         -EPROTO);
}
END_TEST

START_TEST(frame_malformed_spec_is_eproto)
{
        ck_assert_int_eq(frame_once(S("A {12a}\r\n"), BIG_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A {}\r\n"), BIG_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A {+}\r\n"), BIG_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A {1+2}\r\n"), BIG_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A {-1}\r\n"), BIG_MAX), -EPROTO);
        ck_assert_int_eq(frame_once(S("A { 5}\r\n"), BIG_MAX), -EPROTO);
}
END_TEST

START_TEST(frame_brace_text_not_spec)
{
        /* '}' without a '{' near it ends an ordinary line. */
        ck_assert_int_eq(frame_once(S("* OK smile :-}\r\n"), BIG_MAX), 16);
        ck_assert_int_eq(frame_once(S("* OK 12345}\r\n"), BIG_MAX), 13);
        ck_assert_int_eq(frame_once(S("* OK {5} not at the end\r\n"), BIG_MAX), 25);
}
END_TEST

/* Length of the first line of s, its LF included. */
static ssize_t first_line_len(const char *s)
{
        return strchr(s, '\n') - s + 1;
}

START_TEST(frame_status_text_brace_is_text)
{
        /* resp-text of OK/NO/BAD/BYE/PREAUTH (tagged or not) and of a
         * continuation is free text: a "{n}" at its end announces nothing. */
        ck_assert_int_eq(frame_once(S("A5 NO try later {5}\r\nhello\r\n"), BIG_MAX),
                         first_line_len("A5 NO try later {5}\r\nhello\r\n"));
        ck_assert_int_eq(frame_once(S("A5 no [LIMIT] too many {12a}\r\n"), BIG_MAX),
                         first_line_len("A5 no [LIMIT] too many {12a}\r\n"));
        ck_assert_int_eq(frame_once(S("* OK [ALERT] quota {90%}\r\n"), BIG_MAX),
                         first_line_len("* OK [ALERT] quota {90%}\r\n"));
        ck_assert_int_eq(frame_once(S("* BYE bye {}\n"), BIG_MAX),
                         first_line_len("* BYE bye {}\n"));
        ck_assert_int_eq(frame_once(S("* PREAUTH x {3}\r\nabc\r\n"), BIG_MAX),
                         first_line_len("* PREAUTH x {3}\r\nabc\r\n"));
        ck_assert_int_eq(frame_once(S("A1 BAD[PARSE] {99999999999999999999999}\r\n"), BIG_MAX),
                         first_line_len("A1 BAD[PARSE] {99999999999999999999999}\r\n"));
        ck_assert_int_eq(frame_once(S("+ {5}\r\nhello\r\n"), BIG_MAX),
                         first_line_len("+ {5}\r\nhello\r\n"));
        ck_assert_int_eq(frame_once(S("+{5}\r\n"), BIG_MAX), first_line_len("+{5}\r\n"));
        /* Data responses still take their literals, whatever follows. */
        ck_assert_int_eq(frame_once(S("* LIST () \"/\" {5}\r\nhello\r\n"), BIG_MAX),
                         (ssize_t)sizeof("* LIST () \"/\" {5}\r\nhello\r\n") - 1);
        ck_assert_int_eq(frame_once(S("* 3 FETCH (BODY[] {3}\r\nabc)\r\n"), BIG_MAX),
                         (ssize_t)sizeof("* 3 FETCH (BODY[] {3}\r\nabc)\r\n") - 1);
        ck_assert_int_eq(frame_once(S("* 3 OK {3}\r\nabc\r\n"), BIG_MAX),
                         (ssize_t)sizeof("* 3 OK {3}\r\nabc\r\n") - 1);
        ck_assert_int_eq(frame_once(S("* OKAY {3}\r\nabc\r\n"), BIG_MAX),
                         (ssize_t)sizeof("* OKAY {3}\r\nabc\r\n") - 1);
        ck_assert_int_eq(frame_once(S("* LIST () \"/\" {5a}\r\n"), BIG_MAX), -EPROTO);
        /* Only the first line says what the response is: a literal's bytes
         * that look like a status line are still data. */
        ck_assert_int_eq(frame_once(S("* 1 FETCH (BODY[] {7}\r\nA1 OK x {2}\r\nab)\r\n"), BIG_MAX),
                         (ssize_t)sizeof("* 1 FETCH (BODY[] {7}\r\nA1 OK x {2}\r\nab)\r\n") - 1);
        /* The status keyword split from the rest by the read. */
        struct imap_framer f;
        imap_framer_reset(&f);
        const char *t = "A77 NO x {3}\r\nabc\r\n";
        for (size_t i = 0; i < 14; i++)
                ck_assert_int_eq(imap_frame(&f, t, i, BIG_MAX), 0);
        ck_assert_int_eq(imap_frame(&f, t, 14, BIG_MAX), 14);
}
END_TEST

START_TEST(frame_line_too_long)
{
        size_t len = IMAP_MAX_LINE + 10;
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        memset(buf, 'a', len);
        ck_assert_int_eq(frame_once(buf, len, BIG_MAX), -E2BIG);
        buf[len - 1] = '\n';
        ck_assert_int_eq(frame_once(buf, len, BIG_MAX), -E2BIG);
        /* Growing slowly: refused as soon as the limit is passed. */
        struct imap_framer f;
        imap_framer_reset(&f);
        ssize_t n = 0;
        size_t k = 0;
        while (n == 0 && k < len) {
                k = k + 4096 < len ? k + 4096 : len;
                n = imap_frame(&f, buf, k, BIG_MAX);
        }
        ck_assert_int_eq(n, -E2BIG);
        ck_assert_uint_le(k, IMAP_MAX_LINE + 4096);
        /* Exactly at the limit is fine. */
        buf[IMAP_MAX_LINE - 1] = '\n';
        ck_assert_int_eq(frame_once(buf, len, BIG_MAX), IMAP_MAX_LINE);
        free(buf);
}
END_TEST

START_TEST(frame_literals_do_not_count_as_line)
{
        /* Two literals of 1 MiB each in one response: the line limit applies
         * to the text around them only. */
        size_t lit = 1u << 20;
        const char head[] = "* 1 FETCH (BODY[1] {1048576}\r\n";
        const char mid[] = " BODY[2] {1048576}\r\n";
        const char tail[] = ")\r\n";
        size_t len = sizeof(head) - 1 + lit + sizeof(mid) - 1 + lit + sizeof(tail) - 1;
        char *buf = malloc(len), *p = buf;
        ck_assert_ptr_nonnull(buf);
        memcpy(p, head, sizeof(head) - 1);
        p += sizeof(head) - 1;
        memset(p, '\n', lit);
        p += lit;
        memcpy(p, mid, sizeof(mid) - 1);
        p += sizeof(mid) - 1;
        memset(p, '{', lit);
        p += lit;
        memcpy(p, tail, sizeof(tail) - 1);
        ck_assert_int_eq(frame_once(buf, len, BIG_MAX), (ssize_t)len);
        free(buf);
}
END_TEST

START_TEST(frame_resets_itself)
{
        struct imap_framer f;
        imap_framer_reset(&f);
        ck_assert_int_eq(imap_frame(&f, S("* 1 FETCH (BODY[] {3}\r\nabc)\r\n"), BIG_MAX), 29);
        ck_assert_uint_eq(f.scanned, 0);
        ck_assert(f.literal_left == 0);
        ck_assert_uint_eq(f.line_bytes, 0);
        ck_assert_int_eq(imap_frame(&f, S("A1 OK x\r\n"), BIG_MAX), 9);
}
END_TEST

START_TEST(frame_literal_left_tracks_progress)
{
        /* The session sizes its reads from literal_left. */
        struct imap_framer f;
        imap_framer_reset(&f);
        const char buf[] = "* 1 FETCH (BODY[] {10}\r\n0123";
        ck_assert_int_eq(imap_frame(&f, S(buf), BIG_MAX), 0);
        ck_assert(f.literal_left == 6);
}
END_TEST

START_TEST(frame_shrinking_buffer_is_einval)
{
        struct imap_framer f;
        imap_framer_reset(&f);
        ck_assert_int_eq(imap_frame(&f, S("* 1 FETCH (BODY[] {10}\r\n0123"), BIG_MAX), 0);
        ck_assert_int_eq(imap_frame(&f, "* 1", 3, BIG_MAX), -EINVAL);
}
END_TEST

/* ------------------------------------------------------- status responses */

START_TEST(parse_canned_all)
{
        for (size_t i = 0; i < NCANNED; i++) {
                struct imap_response *r = parse_ok(canned[i].s, canned[i].len);
                imap_response_free(r);
                /* Also without the final line end. */
                size_t len = canned[i].len - 1;
                if (canned[i].s[len - 1] == '\r')
                        len--;
                r = parse_ok(canned[i].s, len);
                imap_response_free(r);
        }
}
END_TEST

START_TEST(parse_tagged_ok)
{
        struct imap_response *r = parse_ok(S("A1 OK LOGIN completed\r\n"));
        ck_assert_int_eq(r->kind, IMAP_RESP_TAGGED);
        ck_assert_str_eq(r->tag, "A1");
        ck_assert_str_eq(r->name, "OK");
        ck_assert_int_eq(r->status, IMAP_ST_OK);
        ck_assert_ptr_null(r->code);
        ck_assert_ptr_null(r->code_args);
        ck_assert_ptr_null(r->args);
        ck_assert_str_eq(r->text, "LOGIN completed");
        ck_assert(!r->has_number);
        imap_response_free(r);
}
END_TEST

START_TEST(parse_tagged_no_bad)
{
        struct imap_response *r = parse_ok(S("A2 NO [TRYCREATE] no such mailbox\r\n"));
        ck_assert_int_eq(r->status, IMAP_ST_NO);
        ck_assert_str_eq(r->code, "TRYCREATE");
        ck_assert_ptr_null(r->code_args);
        ck_assert_str_eq(r->text, "no such mailbox");
        imap_response_free(r);
        r = parse_ok(S("A3 BAD\r\n"));
        ck_assert_int_eq(r->status, IMAP_ST_BAD);
        ck_assert_str_eq(r->text, "");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_lowercase_and_spaces)
{
        struct imap_response *r = parse_ok(S("a7 ok   [uidvalidity   42 ]  done \r\n"));
        ck_assert_str_eq(r->tag, "a7");
        ck_assert_str_eq(r->name, "OK");
        ck_assert_int_eq(r->status, IMAP_ST_OK);
        ck_assert_str_eq(r->code, "UIDVALIDITY");
        assert_number(r->code_args, 42);
        ck_assert_str_eq(r->text, "done ");
        imap_response_free(r);
        r = parse_ok(S("*   3   exists  \r\n"));
        ck_assert(r->has_number);
        ck_assert_uint_eq(r->number, 3);
        ck_assert_str_eq(r->name, "EXISTS");
        ck_assert_ptr_null(r->args);
        imap_response_free(r);
}
END_TEST

START_TEST(parse_bye_preauth)
{
        struct imap_response *r = parse_ok(S("* BYE Autologout; idle for too long\r\n"));
        ck_assert_int_eq(r->kind, IMAP_RESP_UNTAGGED);
        ck_assert_int_eq(r->status, IMAP_ST_BYE);
        ck_assert_ptr_null(r->tag);
        ck_assert_str_eq(r->text, "Autologout; idle for too long");
        imap_response_free(r);
        r = parse_ok(S("* PREAUTH [CAPABILITY IMAP4rev1 IDLE] welcome\r\n"));
        ck_assert_int_eq(r->status, IMAP_ST_PREAUTH);
        ck_assert_str_eq(r->code, "CAPABILITY");
        ASSERT_ATOM(r->code_args, "IMAP4rev1");
        ASSERT_ATOM(nth(r->code_args, 1), "IDLE");
        ck_assert_ptr_null(nth(r->code_args, 2));
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_permanentflags)
{
        struct imap_response *r = parse_ok(S("* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n"));
        ck_assert_int_eq(r->status, IMAP_ST_OK);
        ck_assert_str_eq(r->code, "PERMANENTFLAGS");
        ck_assert_int_eq(r->code_args->type, IMAP_LIST);
        ck_assert_uint_eq(imap_list_count(r->code_args), 2);
        ASSERT_ATOM(r->code_args->first, "\\Seen");
        ASSERT_ATOM(r->code_args->first->next, "\\*");
        ck_assert_ptr_null(r->code_args->next);
        ck_assert_str_eq(r->text, "Limited");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_uidvalidity)
{
        struct imap_response *r = parse_ok(S("* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"));
        ck_assert_str_eq(r->code, "UIDVALIDITY");
        assert_number(r->code_args, 3857529045u);
        ck_assert_str_eq(r->code_args->s, "3857529045");
        ck_assert_str_eq(r->text, "UIDs valid");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_capability)
{
        struct imap_response *r =
            parse_ok(S("* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n"));
        ck_assert_str_eq(r->code, "CAPABILITY");
        ASSERT_ATOM(r->code_args, "IMAP4rev1");
        ASSERT_ATOM(nth(r->code_args, 1), "LITERAL+");
        ASSERT_ATOM(nth(r->code_args, 2), "AUTH=PLAIN");
        ck_assert_ptr_null(nth(r->code_args, 3));
        ck_assert_str_eq(r->text, "Dovecot ready.");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_copyuid)
{
        struct imap_response *r =
            parse_ok(S("A4 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"));
        ck_assert_str_eq(r->code, "COPYUID");
        assert_number(r->code_args, 38505);
        ASSERT_ATOM(nth(r->code_args, 1), "304,319:320");
        ASSERT_ATOM(nth(r->code_args, 2), "3956:3958");
        ck_assert_ptr_null(nth(r->code_args, 3));
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_alert)
{
        struct imap_response *r = parse_ok(S("* OK [ALERT] System shutdown in 10 minutes\r\n"));
        ck_assert_str_eq(r->code, "ALERT");
        ck_assert_ptr_null(r->code_args);
        ck_assert_str_eq(r->text, "System shutdown in 10 minutes");
        imap_response_free(r);
        r = parse_ok(S("* NO [ALERT]\r\n"));
        ck_assert_str_eq(r->code, "ALERT");
        ck_assert_str_eq(r->text, "");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_unknown_text)
{
        /* Arbitrary text that is not a run of values: kept raw. */
        struct imap_response *r = parse_ok(S("* OK [XYZZY some \"odd text] hi\r\n"));
        ck_assert_str_eq(r->code, "XYZZY");
        ASSERT_STRING(r->code_args, "some \"odd text");
        ck_assert_ptr_null(r->code_args->next);
        ck_assert_str_eq(r->text, "hi");
        imap_response_free(r);
        /* Text that happens to tokenize is kept as values. */
        r = parse_ok(S("* NO [x-vendor-thing has (several) words] hmm\r\n"));
        ck_assert_str_eq(r->code, "X-VENDOR-THING");
        ASSERT_ATOM(r->code_args, "has");
        ck_assert_int_eq(nth(r->code_args, 1)->type, IMAP_LIST);
        ASSERT_ATOM(nth(r->code_args, 2), "words");
        ck_assert_str_eq(r->text, "hmm");
        imap_response_free(r);
        /* A quoted ']' inside the args does not end the code. */
        r = parse_ok(S("* OK [BADCHARSET (\"a]b\" UTF-8)] no\r\n"));
        ck_assert_str_eq(r->code, "BADCHARSET");
        ASSERT_STRING(r->code_args->first, "a]b");
        ASSERT_ATOM(r->code_args->first->next, "UTF-8");
        ck_assert_str_eq(r->text, "no");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_code_unterminated_is_text)
{
        struct imap_response *r = parse_ok(S("* OK [ALERT no closing bracket\r\n"));
        ck_assert_ptr_null(r->code);
        ck_assert_str_eq(r->text, "[ALERT no closing bracket");
        imap_response_free(r);
        r = parse_ok(S("A1 OK [] empty\r\n"));
        ck_assert_ptr_null(r->code);
        ck_assert_str_eq(r->text, "[] empty");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_continuation)
{
        struct imap_response *r = parse_ok(S("+ Ready for literal\r\n"));
        ck_assert_int_eq(r->kind, IMAP_RESP_CONTINUATION);
        ck_assert_int_eq(r->status, IMAP_ST_NONE);
        ck_assert_str_eq(r->name, "");
        ck_assert_ptr_null(r->tag);
        ck_assert_str_eq(r->text, "Ready for literal");
        imap_response_free(r);
        r = parse_ok(S("+\r\n"));
        ck_assert_int_eq(r->kind, IMAP_RESP_CONTINUATION);
        ck_assert_str_eq(r->text, "");
        imap_response_free(r);
        r = parse_ok(S("+ \r\n"));
        ck_assert_str_eq(r->text, "");
        imap_response_free(r);
        r = parse_ok(S("+ dGVzdA==\r\n"));
        ck_assert_str_eq(r->text, "dGVzdA==");
        imap_response_free(r);
        r = parse_ok(S("+ [ALERT] idling\r\n"));
        ck_assert_str_eq(r->code, "ALERT");
        ck_assert_str_eq(r->text, "idling");
        imap_response_free(r);
}
END_TEST

/* --------------------------------------------------------- data responses */

START_TEST(parse_exists_expunge_recent)
{
        static const struct {
                const char *s;
                uint32_t n;
                const char *name;
        } t[] = {
            {"* 23 EXISTS\r\n", 23, "EXISTS"},
            {"* 3 EXPUNGE\r\n", 3, "EXPUNGE"},
            {"* 0 RECENT\r\n", 0, "RECENT"},
            {"* 4294967295 EXISTS\r\n", 4294967295u, "EXISTS"},
        };
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct imap_response *r = parse_ok(t[i].s, strlen(t[i].s));
                ck_assert_int_eq(r->kind, IMAP_RESP_UNTAGGED);
                ck_assert(r->has_number);
                ck_assert_uint_eq(r->number, t[i].n);
                ck_assert_str_eq(r->name, t[i].name);
                ck_assert_int_eq(r->status, IMAP_ST_NONE);
                ck_assert_ptr_null(r->args);
                imap_response_free(r);
        }
}
END_TEST

START_TEST(parse_fetch_basic)
{
        struct imap_response *r =
            parse_ok(S("* 12 FETCH (UID 5 FLAGS (\\Seen $Label) RFC822.SIZE 1234 "
                       "INTERNALDATE \"01-Mar-2024 10:00:00 +0000\")\r\n"));
        ck_assert(r->has_number);
        ck_assert_uint_eq(r->number, 12);
        ck_assert_str_eq(r->name, "FETCH");
        const struct imap_value *l = r->args;
        ck_assert_int_eq(l->type, IMAP_LIST);
        ck_assert_ptr_null(l->next);
        ck_assert_uint_eq(imap_list_count(l), 8);
        assert_number(imap_fetch_item(l, "UID"), 5);
        assert_number(imap_fetch_item(l, "rfc822.size"), 1234);
        const struct imap_value *fl = imap_fetch_item(l, "FLAGS");
        ck_assert_uint_eq(imap_list_count(fl), 2);
        ASSERT_ATOM(fl->first, "\\Seen");
        ASSERT_ATOM(fl->first->next, "$Label");
        ASSERT_STRING(imap_fetch_item(l, "INTERNALDATE"), "01-Mar-2024 10:00:00 +0000");
        ck_assert_ptr_null(imap_fetch_item(l, "BODY[]"));
        imap_response_free(r);
}
END_TEST

START_TEST(parse_fetch_header_fields)
{
        struct imap_response *r = parse_ok(S("* 1 FETCH (UID 7 BODY[HEADER.FIELDS (DATE SUBJECT)] "
                                             "{28}\r\nSubject: hi\r\nDate: today\r\n\r\n)\r\n"));
        const struct imap_value *l = r->args;
        ck_assert_uint_eq(imap_list_count(l), 4);
        ASSERT_ATOM(nth(l->first, 2), "BODY[HEADER.FIELDS (DATE SUBJECT)]");
        ASSERT_STRING(imap_fetch_item(l, "BODY[HEADER.FIELDS (DATE SUBJECT)]"),
                      "Subject: hi\r\nDate: today\r\n\r\n");
        const struct imap_value *name = NULL;
        const struct imap_value *v = imap_fetch_item_prefix(l, "body[header.fields", &name);
        ck_assert_ptr_nonnull(v);
        ck_assert_ptr_eq(name, nth(l->first, 2));
        ck_assert_uint_eq(v->len, 28);
        imap_response_free(r);
}
END_TEST

START_TEST(parse_fetch_partial)
{
        struct imap_response *r = parse_ok(S("* 2 FETCH (BODY[]<65536> {5+}\r\nhello UID 9)\r\n"));
        const struct imap_value *l = r->args;
        ASSERT_ATOM(l->first, "BODY[]<65536>");
        ASSERT_STRING(l->first->next, "hello");
        const struct imap_value *name;
        ASSERT_STRING(imap_fetch_item_prefix(l, "BODY[]<", &name), "hello");
        ASSERT_ATOM(name, "BODY[]<65536>");
        assert_number(imap_fetch_item(l, "UID"), 9);
        imap_response_free(r);
}
END_TEST

START_TEST(parse_fetch_binary_literal8)
{
        struct imap_response *r = parse_ok(S("* 3 FETCH (BINARY[1.2]<0> ~{4}\r\na\0b\0)\r\n"));
        const struct imap_value *l = r->args;
        ASSERT_ATOM(l->first, "BINARY[1.2]<0>");
        assert_str(l->first->next, IMAP_STRING, "a\0b\0", 4);
        imap_response_free(r);
}
END_TEST

START_TEST(parse_fetch_bodystructure_nested)
{
        const struct canned *c = NULL;
        for (size_t i = 0; i < NCANNED && !c; i++)
                if (strstr(canned[i].s, "BODYSTRUCTURE"))
                        c = &canned[i];
        ck_assert_ptr_nonnull(c);
        struct imap_response *r = parse_ok(c->s, c->len);
        const struct imap_value *bs = imap_fetch_item(r->args, "BODYSTRUCTURE");
        ck_assert_ptr_nonnull(bs);
        ck_assert_int_eq(bs->type, IMAP_LIST);
        ck_assert_uint_eq(imap_list_count(bs), 7);
        const struct imap_value *p1 = bs->first, *p2 = p1->next;
        ck_assert_int_eq(p1->type, IMAP_LIST);
        ASSERT_STRING(p1->first, "text");
        ASSERT_STRING(p1->first->next, "plain");
        const struct imap_value *params = nth(p1->first, 2);
        ck_assert_uint_eq(imap_list_count(params), 2);
        ASSERT_STRING(params->first->next, "us-ascii");
        ck_assert_int_eq(nth(p1->first, 3)->type, IMAP_NIL);
        assert_number(nth(p1->first, 6), 3);
        ASSERT_STRING(p2->first->next, "html");
        ASSERT_STRING(nth(bs->first, 2), "alternative");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_list_forms)
{
        struct imap_response *r = parse_ok(S("* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"));
        ck_assert_str_eq(r->name, "LIST");
        ck_assert(!r->has_number);
        ck_assert_uint_eq(imap_list_count(r->args), 1);
        ASSERT_ATOM(r->args->first, "\\HasNoChildren");
        ASSERT_STRING(nth(r->args, 1), "/");
        ASSERT_STRING(nth(r->args, 2), "INBOX");
        ck_assert_ptr_null(nth(r->args, 3));
        imap_response_free(r);

        r = parse_ok(S("* LIST () NIL INBOX\r\n"));
        ck_assert_int_eq(r->args->type, IMAP_LIST);
        ck_assert_ptr_null(r->args->first);
        ck_assert_uint_eq(imap_list_count(r->args), 0);
        ck_assert_int_eq(nth(r->args, 1)->type, IMAP_NIL);
        ASSERT_ATOM(nth(r->args, 2), "INBOX");
        imap_response_free(r);

        /* A name that needs a literal: CR, LF and a quote. */
        r = parse_ok(S("* LIST (\\Noselect) \".\" {9}\r\nfoo\r\nbar\"\r\n"));
        ASSERT_STRING(nth(r->args, 2), "foo\r\nbar\"");
        imap_response_free(r);

        /* Servers send ']' in atom mailbox names (ASTRING-CHAR). */
        r = parse_ok(S("* LSUB () \"/\" Lists]old\r\n"));
        ck_assert_str_eq(r->name, "LSUB");
        ASSERT_ATOM(nth(r->args, 2), "Lists]old");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_capability_flags)
{
        struct imap_response *r = parse_ok(S("* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n"));
        ck_assert_str_eq(r->name, "CAPABILITY");
        ck_assert_int_eq(r->status, IMAP_ST_NONE);
        ASSERT_ATOM(r->args, "IMAP4rev1");
        ASSERT_ATOM(nth(r->args, 1), "LITERAL+");
        ASSERT_ATOM(nth(r->args, 2), "AUTH=PLAIN");
        ck_assert_ptr_null(nth(r->args, 3));
        imap_response_free(r);

        r = parse_ok(S("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"));
        ck_assert_str_eq(r->name, "FLAGS");
        ck_assert_uint_eq(imap_list_count(r->args), 6);
        ASSERT_ATOM(nth(r->args->first, 5), "$Forwarded");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_search_esearch)
{
        struct imap_response *r = parse_ok(S("* SEARCH 2 3\r\n"));
        ck_assert_str_eq(r->name, "SEARCH");
        assert_number(r->args, 2);
        assert_number(r->args->next, 3);
        ck_assert_ptr_null(r->args->next->next);
        imap_response_free(r);

        r = parse_ok(S("* SEARCH\r\n"));
        ck_assert_ptr_null(r->args);
        imap_response_free(r);

        r = parse_ok(S("* ESEARCH (TAG \"A1\") UID ALL 1:3\r\n"));
        ck_assert_str_eq(r->name, "ESEARCH");
        ck_assert_uint_eq(imap_list_count(r->args), 2);
        ck_assert(imap_value_is(r->args->first, "tag"));
        ASSERT_STRING(r->args->first->next, "A1");
        ck_assert(imap_value_is(nth(r->args, 1), "UID"));
        ck_assert(imap_value_is(nth(r->args, 2), "ALL"));
        ASSERT_ATOM(nth(r->args, 3), "1:3");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_status_vanished_enabled_namespace)
{
        struct imap_response *r = parse_ok(S("* STATUS \"box\" (MESSAGES 3 UIDNEXT 4)\r\n"));
        ck_assert_str_eq(r->name, "STATUS");
        ASSERT_STRING(r->args, "box");
        assert_number(imap_fetch_item(r->args->next, "UIDNEXT"), 4);
        assert_number(imap_fetch_item(r->args->next, "MESSAGES"), 3);
        imap_response_free(r);

        r = parse_ok(S("* VANISHED (EARLIER) 1:3\r\n"));
        ck_assert_str_eq(r->name, "VANISHED");
        ck_assert(imap_value_is(r->args->first, "EARLIER"));
        ASSERT_ATOM(r->args->next, "1:3");
        imap_response_free(r);

        r = parse_ok(S("* VANISHED 5\r\n"));
        assert_number(r->args, 5);
        imap_response_free(r);

        r = parse_ok(S("* ENABLED QRESYNC\r\n"));
        ck_assert_str_eq(r->name, "ENABLED");
        ASSERT_ATOM(r->args, "QRESYNC");
        imap_response_free(r);

        r = parse_ok(S("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"));
        ck_assert_str_eq(r->name, "NAMESPACE");
        const struct imap_value *personal = r->args->first;
        ck_assert_int_eq(personal->type, IMAP_LIST);
        ASSERT_STRING(personal->first, "");
        ASSERT_STRING(personal->first->next, "/");
        ck_assert_int_eq(nth(r->args, 1)->type, IMAP_NIL);
        ck_assert_int_eq(nth(r->args, 2)->type, IMAP_NIL);
        imap_response_free(r);
}
END_TEST

/* ----------------------------------------------------------------- values */

START_TEST(parse_quoted_escapes)
{
        struct imap_response *r = parse_ok(S("* LIST () \"/\" \"a\\\"b\\\\c\"\r\n"));
        ASSERT_STRING(nth(r->args, 2), "a\"b\\c");
        imap_response_free(r);
        /* Another escaped byte is taken as itself. */
        r = parse_ok(S("* X \"\\q\" \"\" \"\xc3\xa4\"\r\n"));
        ASSERT_STRING(r->args, "q");
        ASSERT_STRING(r->args->next, "");
        ASSERT_STRING(r->args->next->next, "\xc3\xa4");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_quoted_rejects_crlf_and_unterminated)
{
        parse_fails(S("* X \"a\rb\"\r\n"));
        parse_fails(S("* X \"a\nb\"\r\n"));
        parse_fails(S("* X \"abc\r\n"));
        parse_fails(S("* X \"abc"));
        parse_fails(S("* X \"abc\\"));
        parse_fails(S("* X \"abc\\\""));
}
END_TEST

START_TEST(parse_nil_any_case)
{
        struct imap_response *r = parse_ok(S("* X NIL nil Nil \"NIL\" NILS\r\n"));
        ck_assert_int_eq(r->args->type, IMAP_NIL);
        ck_assert_int_eq(nth(r->args, 1)->type, IMAP_NIL);
        ck_assert_int_eq(nth(r->args, 2)->type, IMAP_NIL);
        ck_assert(imap_value_is(nth(r->args, 2), "NIL"));
        ASSERT_STRING(nth(r->args, 3), "NIL");
        ASSERT_ATOM(nth(r->args, 4), "NILS");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_numbers_and_overflow)
{
        struct imap_response *r =
            parse_ok(S("* X 0 007 18446744073709551615 18446744073709551616 12a\r\n"));
        assert_number(r->args, 0);
        assert_number(nth(r->args, 1), 7);
        ck_assert_str_eq(nth(r->args, 1)->s, "007");
        assert_number(nth(r->args, 2), UINT64_MAX);
        ASSERT_ATOM(nth(r->args, 3), "18446744073709551616");
        ASSERT_ATOM(nth(r->args, 4), "12a");
        imap_response_free(r);
}
END_TEST

START_TEST(parse_nested_lists)
{
        struct imap_response *r = parse_ok(S("* X (a (b (c ()) d) ((e)))\r\n"));
        const struct imap_value *l = r->args;
        ck_assert_uint_eq(imap_list_count(l), 3);
        ASSERT_ATOM(l->first, "a");
        const struct imap_value *l2 = l->first->next;
        ck_assert_uint_eq(imap_list_count(l2), 3);
        const struct imap_value *l3 = l2->first->next;
        ck_assert_uint_eq(imap_list_count(l3), 2);
        ck_assert_int_eq(l3->first->next->type, IMAP_LIST);
        ck_assert_ptr_null(l3->first->next->first);
        ASSERT_ATOM(l2->first->next->next, "d");
        ASSERT_ATOM(nth(l->first, 2)->first->first, "e");
        imap_response_free(r);
        /* No space needed between a list and what follows. */
        r = parse_ok(S("* X (a)(b)c\r\n"));
        ck_assert_uint_eq(imap_list_count(r->args), 1);
        ck_assert_uint_eq(imap_list_count(r->args->next), 1);
        ASSERT_ATOM(nth(r->args, 2), "c");
        imap_response_free(r);
}
END_TEST

static char *nest(size_t depth, size_t *len)
{
        const char head[] = "* X ", tail[] = "\r\n";
        *len = sizeof(head) - 1 + 2 * depth + sizeof(tail) - 1;
        char *s = malloc(*len), *p = s;
        ck_assert_ptr_nonnull(s);
        memcpy(p, head, sizeof(head) - 1);
        p += sizeof(head) - 1;
        memset(p, '(', depth);
        memset(p + depth, ')', depth);
        memcpy(p + 2 * depth, tail, sizeof(tail) - 1);
        return s;
}

START_TEST(parse_depth_limit)
{
        size_t len;
        char *s = nest(IMAP_MAX_DEPTH, &len);
        struct imap_response *r = parse_ok(s, len);
        const struct imap_value *v = r->args;
        for (int i = 1; i < IMAP_MAX_DEPTH; i++)
                v = v->first;
        ck_assert_int_eq(v->type, IMAP_LIST);
        ck_assert_ptr_null(v->first);
        imap_response_free(r);
        free(s);
        s = nest(IMAP_MAX_DEPTH + 1, &len);
        parse_fails(s, len);
        free(s);
}
END_TEST

START_TEST(parse_depth_10000)
{
        size_t len;
        char *s = nest(10000, &len);
        ck_assert_int_eq(frame_once(s, len, BIG_MAX), (ssize_t)len);
        parse_fails(s, len);
        /* Only opening parentheses. */
        parse_fails(s, 4 + 10000);
        free(s);
}
END_TEST

START_TEST(parse_unbalanced)
{
        parse_fails(S("* X (a b\r\n"));
        parse_fails(S("* X a b)\r\n"));
        parse_fails(S("* X ((a)\r\n"));
        parse_fails(S("* X )\r\n"));
        parse_fails(S("* 1 FETCH (UID 1\r\n"));
        parse_fails(S("* X (]\r\n"));
        /* A bracket that never closes: '[' is then part of the atom. */
        struct imap_response *r = parse_ok(S("* X BODY[HEADER (a)\r\n"));
        ASSERT_ATOM(r->args, "BODY[HEADER");
        imap_response_free(r);
        /* Unbalanced parenthesis inside a response code: raw text. */
        r = parse_ok(S("* OK [PERMANENTFLAGS (\\Seen] x\r\n"));
        ck_assert_str_eq(r->code, "PERMANENTFLAGS");
        ASSERT_STRING(r->code_args, "(\\Seen");
        ck_assert_str_eq(r->text, "x");
        imap_response_free(r);
}
END_TEST

/* ---------------------------------------------------------------- literals */

START_TEST(parse_literal_forms)
{
        struct imap_response *r = parse_ok(S("* X {3}\r\nabc {3+}\r\ndef {0}\r\n {2}\nxy\r\n"));
        ASSERT_STRING(r->args, "abc");
        ASSERT_STRING(nth(r->args, 1), "def");
        ASSERT_STRING(nth(r->args, 2), "");
        ASSERT_STRING(nth(r->args, 3), "xy");
        ck_assert_ptr_null(nth(r->args, 4));
        imap_response_free(r);
}
END_TEST

START_TEST(parse_literal_binary)
{
        char lit[256];
        for (int i = 0; i < 256; i++)
                lit[i] = (char)i;
        const char head[] = "* 5 FETCH (BODY[] {256}\r\n";
        size_t len = sizeof(head) - 1 + sizeof(lit) + 3;
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, head, sizeof(head) - 1);
        memcpy(buf + sizeof(head) - 1, lit, sizeof(lit));
        memcpy(buf + len - 3, ")\r\n", 3);
        ck_assert_int_eq(frame_once(buf, len, BIG_MAX), (ssize_t)len);
        struct imap_response *r = parse_ok(buf, len);
        assert_str(imap_fetch_item(r->args, "BODY[]"), IMAP_STRING, lit, sizeof(lit));
        imap_response_free(r);
        free(buf);
}
END_TEST

START_TEST(parse_literal_big)
{
        const size_t lit = 1u << 20;
        const char head[] = "* 1 FETCH (UID 3 BODY[] {1048576}\r\n";
        const char tail[] = " FLAGS (\\Seen))\r\n";
        size_t len = sizeof(head) - 1 + lit + sizeof(tail) - 1;
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, head, sizeof(head) - 1);
        for (size_t i = 0; i < lit; i++)
                buf[sizeof(head) - 1 + i] = (char)(i * 7 + (i >> 9));
        memcpy(buf + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);

        /* Framed as it arrives, in uneven reads. */
        struct imap_framer f;
        imap_framer_reset(&f);
        size_t have = 0;
        ssize_t n = 0;
        while (n == 0) {
                ck_assert_uint_lt(have, len);
                have += 1 + (have * 31 + 4093) % 9000;
                if (have > len)
                        have = len;
                n = imap_frame(&f, buf, have, BIG_MAX);
        }
        ck_assert_int_eq(n, (ssize_t)len);

        struct imap_response *r = parse_ok(buf, len);
        const struct imap_value *body = imap_fetch_item(r->args, "BODY[]");
        ck_assert_ptr_nonnull(body);
        ck_assert_int_eq(body->type, IMAP_STRING);
        ck_assert_uint_eq(body->len, lit);
        ck_assert(memcmp(body->s, buf + sizeof(head) - 1, lit) == 0);
        assert_number(imap_fetch_item(r->args, "UID"), 3);
        ck_assert_uint_eq(imap_list_count(imap_fetch_item(r->args, "FLAGS")), 1);
        imap_response_free(r);

        /* One byte at a time through the literal stays linear. */
        imap_framer_reset(&f);
        size_t early = 0;
        for (size_t k = 1; k < len; k++)
                early += imap_frame(&f, buf, k, BIG_MAX) != 0;
        ck_assert_uint_eq(early, 0);
        ck_assert_int_eq(imap_frame(&f, buf, len, BIG_MAX), (ssize_t)len);
        free(buf);
}
END_TEST

START_TEST(parse_literal_short_or_bad)
{
        parse_fails(S("* X {5}\r\nabc"));
        parse_fails(S("* X {6}\r\nabc\r\n"));
        parse_fails(S("* X {5}"));
        parse_fails(S("* X {5}abcde\r\n"));
        parse_fails(S("* X {5\r\nabcde\r\n"));
        parse_fails(S("* X {}\r\n\r\n"));
        parse_fails(S("* X {99999999999999999999}\r\nabc\r\n"));
        parse_fails(S("* X {18446744073709551615}\r\nabc\r\n"));
        parse_fails(S("* X ~{3}"));
}
END_TEST

/* ----------------------------------------------------------------- hostile */

START_TEST(parse_empty_and_tiny)
{
        struct imap_response *r = (struct imap_response *)1;
        ck_assert_int_eq(imap_parse("", 0, &r), -EPROTO);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(imap_parse(NULL, 0, &r), -EPROTO);
        parse_fails(S("*"));
        parse_fails(S("* "));
        parse_fails(S("*\r\n"));
        parse_fails(S("* \r\n"));
        parse_fails(S("\r\n"));
        parse_fails(S("\n"));
        parse_fails(S("A1"));
        parse_fails(S("A1 \r\n"));
        parse_fails(S(" A1 OK\r\n"));
        parse_fails(S("*3 EXISTS\r\n"));
}
END_TEST

START_TEST(parse_message_number_overflow)
{
        parse_fails(S("* 4294967296 EXISTS\r\n"));
        parse_fails(S("* 99999999999999999999999 FETCH (UID 1)\r\n"));
        parse_fails(S("* 12FETCH (UID 1)\r\n"));
        parse_fails(S("* 12\r\n"));
}
END_TEST

START_TEST(parse_nul_bytes_in_line)
{
        parse_fails(S("* OK hel\0lo\r\n"));
        parse_fails(S("* SEARCH 1\0 2\r\n"));
        parse_fails(S("A1\0 OK\r\n"));
        parse_fails(S("* LIST () \"/\" \"a\0b\"\r\n"));
        parse_fails(S("* OK [ALERT\0] x\r\n"));
        parse_fails(S("\0"));
}
END_TEST

START_TEST(parse_tagged_must_be_status)
{
        parse_fails(S("A1 FETCH (UID 1)\r\n"));
        parse_fails(S("A1 (OK)\r\n"));
}
END_TEST

START_TEST(parse_trailing_garbage)
{
        parse_fails(S("* 3 EXISTS\r\n\r\n"));
        parse_fails(S("* 3 EXISTS\r\nA1 OK done\r\n"));
        parse_fails(S("A1 OK done\r\nx"));
        parse_fails(S("* OK text {3}\r\nabc\r\n"));
        parse_fails(S("* SEARCH 1 \x01 2\r\n"));
}
END_TEST

/* A quick deterministic generator: the fuzz loop must be reproducible. */
static uint64_t rng_state;
static uint32_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state >> 11);
}

/* Touches every byte of every value so that ASan sees a bad pointer; checks
 * the tree's invariants. No ck_assert here: under CK_FORK each one costs a
 * write to the parent, and this runs a million times. */
static bool walk(const struct imap_value *v, unsigned depth)
{
        volatile unsigned char sink = 0;
        if (depth > IMAP_MAX_DEPTH + 1)
                return false;
        for (; v; v = v->next) {
                if (v->type == IMAP_LIST) {
                        if (v->s || !walk(v->first, depth + 1))
                                return false;
                } else {
                        if (!v->s || v->s[v->len] != '\0')
                                return false;
                        for (size_t i = 0; i < v->len; i++)
                                sink ^= (unsigned char)v->s[i];
                }
        }
        (void)sink;
        return true;
}

/* Returns NULL if the parser and framer behaved, else what went wrong. */
static const char *fuzz_one(const char *in, size_t len)
{
        const char *bad = NULL;
        char *buf = malloc(len ? len : 1);
        if (!buf)
                return "malloc";
        memcpy(buf, in, len);
        struct imap_response *r = NULL;
        int err = imap_parse(buf, len, &r);
        if (err == 0) {
                if (!walk(r->args, 0) || !walk(r->code_args, 0) || !r->name || !r->text)
                        bad = "bad tree";
                imap_response_free(r);
        } else if (err != -EPROTO || r) {
                bad = "parse error other than -EPROTO";
        }
        struct imap_framer f;
        imap_framer_reset(&f);
        ssize_t n = imap_frame(&f, buf, len, 4096);
        if (!(n == -E2BIG || n == -EPROTO || (n >= 0 && (size_t)n <= len)))
                bad = "frame result out of range";
        if (n > 0) {
                err = imap_parse(buf, (size_t)n, &r);
                if (err == 0)
                        imap_response_free(r);
                else if (err != -EPROTO)
                        bad = "parse of framed input";
        }
        free(buf);
        return bad;
}

START_TEST(parse_fuzz)
{
        static const char alphabet[] = "* +A1OKNOBADFETCH()[]{}<>\"\\\r\n 0123456789~.:$%NIL";
        char buf[512];
        rng_state = 0x9e3779b97f4a7c15ull;
        for (int iter = 0; iter < 100000; iter++) {
                size_t len;
                if (iter % 2 == 0) {
                        /* Random bytes, mostly from the grammar's alphabet. */
                        len = rng() % 200;
                        for (size_t i = 0; i < len; i++)
                                buf[i] = rng() % 8 ? alphabet[rng() % (sizeof(alphabet) - 1)]
                                                   : (char)rng();
                } else {
                        /* A canned response with a few mutations. */
                        const struct canned *c = &canned[rng() % NCANNED];
                        len = c->len;
                        memcpy(buf, c->s, len);
                        int muts = 1 + (int)(rng() % 4);
                        for (int m = 0; m < muts && len > 0; m++) {
                                size_t at = rng() % len;
                                switch (rng() % 5) {
                                case 0:
                                        buf[at] = (char)rng();
                                        break;
                                case 1:
                                        buf[at] = alphabet[rng() % (sizeof(alphabet) - 1)];
                                        break;
                                case 2:
                                        memmove(buf + at, buf + at + 1, len - at - 1);
                                        len--;
                                        break;
                                case 3:
                                        if (len < sizeof(buf) - 1) {
                                                memmove(buf + at + 1, buf + at, len - at);
                                                buf[at] = alphabet[rng() % (sizeof(alphabet) - 1)];
                                                len++;
                                        }
                                        break;
                                default:
                                        len = at;
                                        break;
                                }
                        }
                }
                const char *bad = fuzz_one(buf, len);
                ck_assert_msg(!bad, "iteration %d: %s: %.*s", iter, bad ? bad : "", (int)len, buf);
        }
}
END_TEST

/* Lines near IMAP_MAX_LINE built to provoke quadratic scans: each must parse
 * (or fail) in linear time. */
START_TEST(parse_hostile_long_lines)
{
        static const char *const units[] = {"[", "a[", "[(", "\"\\\\\" ", "1 ", "(",
                                            ")", "(a", "{",  "]",         "~",  "[\"]"};
        const size_t body = IMAP_MAX_LINE - 16;
        char *buf = malloc(body + 16);
        ck_assert_ptr_nonnull(buf);
        for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
                size_t ul = strlen(units[u]), len = 0;
                memcpy(buf, "* X ", 4);
                len = 4;
                while (len + ul <= body) {
                        memcpy(buf + len, units[u], ul);
                        len += ul;
                }
                memcpy(buf + len, "\r\n", 2);
                len += 2;
                ck_assert_int_eq(frame_once(buf, len, BIG_MAX), (ssize_t)len);
                struct imap_response *r = NULL;
                int err = imap_parse(buf, len, &r);
                ck_assert_msg(err == 0 || err == -EPROTO, "unit %zu: %d", u, err);
                imap_response_free(r);
                /* The same inside a response code. */
                memcpy(buf, "* OK [X ", 8);
                err = imap_parse(buf, len, &r);
                ck_assert_msg(err == 0 || err == -EPROTO, "unit %zu: %d", u, err);
                imap_response_free(r);
        }
        free(buf);
}
END_TEST

/* Framing must not depend on how the bytes arrive: for random streams of
 * lines and literals, feeding any sequence of growing prefixes gives 0 until
 * the same answer as one call on the whole buffer. */
START_TEST(frame_fuzz_split_consistency)
{
        static const char pieces[][8] = {"a",  " ",  "}",    "{",    "{3}",   "{0}", "{2+}",
                                         "\r", "\n", "\r\n", "x{1}", "{12a}", "9",   "~{1}"};
        char buf[256];
        size_t mismatches = 0;
        rng_state = 0x2545f4914f6cdd1dull;
        for (int iter = 0; iter < 20000; iter++) {
                size_t len = 0;
                while (len < 200) {
                        const char *p = pieces[rng() % (sizeof(pieces) / sizeof(pieces[0]))];
                        size_t n = strlen(p);
                        memcpy(buf + len, p, n);
                        len += n;
                        if (rng() % 3 == 0)
                                buf[len++] = (char)rng();
                }
                uint64_t max = rng() % 2 ? 2 : BIG_MAX;
                ssize_t whole = frame_once(buf, len, max);
                struct imap_framer f;
                imap_framer_reset(&f);
                size_t have = 0;
                ssize_t got = 0;
                while (got == 0 && have < len) {
                        have += 1 + rng() % 40;
                        if (have > len)
                                have = len;
                        got = imap_frame(&f, buf, have, max);
                }
                if (got != whole)
                        mismatches++;
        }
        ck_assert_uint_eq(mismatches, 0);
}
END_TEST

/* ----------------------------------------------------------------- helpers */

START_TEST(helpers_value_is)
{
        struct imap_response *r = parse_ok(S("* X Seen 12 NIL \"Seen\" (Seen)\r\n"));
        ck_assert(imap_value_is(r->args, "SEEN"));
        ck_assert(imap_value_is(r->args, "seen"));
        ck_assert(!imap_value_is(r->args, "See"));
        ck_assert(!imap_value_is(r->args, "Seens"));
        ck_assert(imap_value_is(nth(r->args, 1), "12"));
        ck_assert(imap_value_is(nth(r->args, 2), "nil"));
        ck_assert(!imap_value_is(nth(r->args, 3), "Seen")); /* a string is data */
        ck_assert(!imap_value_is(nth(r->args, 4), "Seen"));
        ck_assert(!imap_value_is(NULL, "Seen"));
        imap_response_free(r);
}
END_TEST

START_TEST(helpers_list_count)
{
        struct imap_response *r = parse_ok(S("* X () (a) (a b (c d)) a\r\n"));
        ck_assert_uint_eq(imap_list_count(r->args), 0);
        ck_assert_uint_eq(imap_list_count(nth(r->args, 1)), 1);
        ck_assert_uint_eq(imap_list_count(nth(r->args, 2)), 3);
        ck_assert_uint_eq(imap_list_count(nth(r->args, 3)), 0);
        ck_assert_uint_eq(imap_list_count(NULL), 0);
        imap_response_free(r);
}
END_TEST

START_TEST(helpers_fetch_item)
{
        struct imap_response *r =
            parse_ok(S("* 1 FETCH (UID 4 uid 5 FLAGS () BODY[]<0> {1}\r\nx RFC822.SIZE)\r\n"));
        const struct imap_value *l = r->args;
        assert_number(imap_fetch_item(l, "uid"), 4); /* the first one wins */
        ck_assert_uint_eq(imap_list_count(imap_fetch_item(l, "FLAGS")), 0);
        ck_assert_int_eq(imap_fetch_item(l, "FLAGS")->type, IMAP_LIST);
        /* Only item names are matched, never values. */
        ck_assert_ptr_null(imap_fetch_item(l, "4"));
        ck_assert_ptr_null(imap_fetch_item(l, "x"));
        /* A trailing name without a value. */
        ck_assert_ptr_null(imap_fetch_item(l, "RFC822.SIZE"));
        ck_assert_ptr_null(imap_fetch_item(l, "BODY[]"));
        ASSERT_STRING(imap_fetch_item(l, "BODY[]<0>"), "x");
        ck_assert_ptr_null(imap_fetch_item(NULL, "UID"));
        ck_assert_ptr_null(imap_fetch_item(l->first, "UID"));
        imap_response_free(r);
}
END_TEST

START_TEST(helpers_fetch_item_prefix)
{
        struct imap_response *r =
            parse_ok(S("* 1 FETCH (UID 4 BODY[1]<0> \"a\" BODY[]<512> \"b\")\r\n"));
        const struct imap_value *name = (const struct imap_value *)1;
        ASSERT_STRING(imap_fetch_item_prefix(r->args, "body[]<", &name), "b");
        ASSERT_ATOM(name, "BODY[]<512>");
        ASSERT_STRING(imap_fetch_item_prefix(r->args, "BODY[", NULL), "a");
        ck_assert_ptr_null(imap_fetch_item_prefix(r->args, "BINARY", &name));
        ck_assert_ptr_null(name);
        assert_number(imap_fetch_item_prefix(r->args, "", NULL), 4);
        imap_response_free(r);
}
END_TEST

static Suite *parse_suite(void)
{
        Suite *s = suite_create("parse");
        TCase *tc = tcase_create("frame");
        tcase_add_test(tc, frame_simple_line);
        tcase_add_test(tc, frame_literal_total_is_bounded);
        tcase_add_test(tc, values_join_skips_and_cuts);
        tcase_add_test(tc, frame_bare_lf);
        tcase_add_test(tc, frame_incomplete_needs_more);
        tcase_add_test(tc, frame_empty_input);
        tcase_add_test(tc, frame_literal);
        tcase_add_test(tc, frame_literal_plus_and_literal8);
        tcase_add_test(tc, frame_literal_content_is_not_rescanned);
        tcase_add_test(tc, frame_back_to_back);
        tcase_add_test(tc, frame_canned_whole);
        tcase_add_test(tc, frame_canned_split_every_byte);
        tcase_add_test(tc, frame_canned_byte_at_a_time);
        tcase_add_test(tc, frame_canned_followed_by_more);
        tcase_add_test(tc, frame_literal_over_max_is_e2big);
        tcase_add_test(tc, frame_absurd_literal_is_eproto);
        tcase_add_test(tc, frame_malformed_spec_is_eproto);
        tcase_add_test(tc, frame_brace_text_not_spec);
        tcase_add_test(tc, frame_status_text_brace_is_text);
        tcase_add_test(tc, frame_line_too_long);
        tcase_add_test(tc, frame_literals_do_not_count_as_line);
        tcase_add_test(tc, frame_resets_itself);
        tcase_add_test(tc, frame_literal_left_tracks_progress);
        tcase_add_test(tc, frame_shrinking_buffer_is_einval);
        suite_add_tcase(s, tc);

        tc = tcase_create("status");
        tcase_add_test(tc, parse_canned_all);
        tcase_add_test(tc, parse_tagged_ok);
        tcase_add_test(tc, parse_tagged_no_bad);
        tcase_add_test(tc, parse_lowercase_and_spaces);
        tcase_add_test(tc, parse_bye_preauth);
        tcase_add_test(tc, parse_code_permanentflags);
        tcase_add_test(tc, parse_code_uidvalidity);
        tcase_add_test(tc, parse_code_capability);
        tcase_add_test(tc, parse_code_copyuid);
        tcase_add_test(tc, parse_code_alert);
        tcase_add_test(tc, parse_code_unknown_text);
        tcase_add_test(tc, parse_code_unterminated_is_text);
        tcase_add_test(tc, parse_continuation);
        suite_add_tcase(s, tc);

        tc = tcase_create("data");
        tcase_add_test(tc, parse_exists_expunge_recent);
        tcase_add_test(tc, parse_fetch_basic);
        tcase_add_test(tc, parse_fetch_header_fields);
        tcase_add_test(tc, parse_fetch_partial);
        tcase_add_test(tc, parse_fetch_binary_literal8);
        tcase_add_test(tc, parse_fetch_bodystructure_nested);
        tcase_add_test(tc, parse_list_forms);
        tcase_add_test(tc, parse_capability_flags);
        tcase_add_test(tc, parse_search_esearch);
        tcase_add_test(tc, parse_status_vanished_enabled_namespace);
        suite_add_tcase(s, tc);

        tc = tcase_create("values");
        tcase_add_test(tc, parse_quoted_escapes);
        tcase_add_test(tc, parse_quoted_rejects_crlf_and_unterminated);
        tcase_add_test(tc, parse_nil_any_case);
        tcase_add_test(tc, parse_numbers_and_overflow);
        tcase_add_test(tc, parse_nested_lists);
        tcase_add_test(tc, parse_depth_limit);
        tcase_add_test(tc, parse_depth_10000);
        tcase_add_test(tc, parse_unbalanced);
        suite_add_tcase(s, tc);

        tc = tcase_create("literals");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, parse_literal_forms);
        tcase_add_test(tc, parse_literal_binary);
        tcase_add_test(tc, parse_literal_big);
        tcase_add_test(tc, parse_literal_short_or_bad);
        suite_add_tcase(s, tc);

        tc = tcase_create("hostile");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, parse_empty_and_tiny);
        tcase_add_test(tc, parse_message_number_overflow);
        tcase_add_test(tc, parse_nul_bytes_in_line);
        tcase_add_test(tc, parse_tagged_must_be_status);
        tcase_add_test(tc, parse_trailing_garbage);
        tcase_add_test(tc, parse_fuzz);
        tcase_add_test(tc, parse_hostile_long_lines);
        tcase_add_test(tc, frame_fuzz_split_consistency);
        suite_add_tcase(s, tc);

        tc = tcase_create("helpers");
        tcase_add_test(tc, helpers_value_is);
        tcase_add_test(tc, helpers_list_count);
        tcase_add_test(tc, helpers_fetch_item);
        tcase_add_test(tc, helpers_fetch_item_prefix);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(parse_suite());
}
