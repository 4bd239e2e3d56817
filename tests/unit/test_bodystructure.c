/* Unit tests for the BODYSTRUCTURE parser: every form of RFC 3501/9051
 * §7.5.2, section numbering, NIL wherever allowed, real Dovecot output, and
 * hostile input through the framer and parser split at every byte. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/bodystructure.h"
#include "imap/parse.h"
#include "tests/unit/unit_main.h"

#define S(lit) (lit), (sizeof(lit) - 1)

struct canned {
        const char *s;
        size_t len;
};
#define C(lit)                                                                                     \
        {                                                                                          \
                (lit), sizeof(lit) - 1                                                             \
        }

/* Real responses from Dovecot 2.3 to UID FETCH 1:* BODYSTRUCTURE over
 * ../shared/corpus (literals, RFC 2231 parameters, languages, nested
 * message/rfc822, an empty disposition type). */
static const struct canned dovecot[] = {
#include "tests/unit/bodystructure_vectors.inc"
};
#define NDOVECOT (sizeof(dovecot) / sizeof(dovecot[0]))

struct parsed {
        struct imap_response *r;
        struct imap_bodypart *b;
};

/* Parses "* 1 FETCH (BODYSTRUCTURE <v>)" (or the response given whole when it
 * starts with '*') and returns the parser's result. */
static int bs_parse(const char *s, size_t len, struct parsed *out)
{
        memset(out, 0, sizeof(*out));
        char *buf;
        size_t n;
        if (len && s[0] == '*') {
                buf = malloc(len);
                ck_assert_ptr_nonnull(buf);
                memcpy(buf, s, len);
                n = len;
        } else {
                static const char pre[] = "* 1 FETCH (BODYSTRUCTURE ", post[] = ")\r\n";
                n = sizeof(pre) - 1 + len + sizeof(post) - 1;
                buf = malloc(n);
                ck_assert_ptr_nonnull(buf);
                memcpy(buf, pre, sizeof(pre) - 1);
                memcpy(buf + sizeof(pre) - 1, s, len);
                memcpy(buf + sizeof(pre) - 1 + len, post, sizeof(post) - 1);
        }
        int err = imap_parse(buf, n, &out->r);
        free(buf);
        if (err)
                return 1000 + err; /* not a parser result: tells the two apart */
        const struct imap_value *v = imap_fetch_item(out->r->args, "BODYSTRUCTURE");
        if (!v)
                v = imap_fetch_item(out->r->args, "BODY");
        ck_assert_ptr_nonnull(v);
        return imap_bodystructure_parse(v, &out->b);
}

static void parsed_free(struct parsed *p)
{
        imap_bodystructure_free(p->b);
        imap_response_free(p->r);
        memset(p, 0, sizeof(*p));
}

static struct imap_bodypart *bs_ok(const char *s, size_t len, struct parsed *p)
{
        int err = bs_parse(s, len, p);
        ck_assert_msg(err == 0, "parse failed (%d): %.*s", err, (int)len, s);
        ck_assert_ptr_nonnull(p->b);
        return p->b;
}

static void bs_fails(const char *s, size_t len)
{
        struct parsed p;
        int err = bs_parse(s, len, &p);
        ck_assert_msg(err == -EPROTO, "expected -EPROTO, got %d: %.*s", err, (int)len, s);
        ck_assert_ptr_null(p.b);
        parsed_free(&p);
}

#define OK(lit, p) bs_ok(S(lit), (p))
#define FAILS(lit) bs_fails(S(lit))

static void ck_str_or_null(const char *got, const char *want)
{
        if (!want)
                ck_assert_ptr_null(got);
        else {
                ck_assert_ptr_nonnull(got);
                ck_assert_str_eq(got, want);
        }
}

/* A canonical text form of a tree, to compare parses of the same input. */
static void dump(const struct imap_bodypart *p, char *out, size_t cap)
{
        size_t o = 0;
        out[0] = '\0';
        for (const struct imap_bodypart *q = p; q; q = imap_bodypart_next(q)) {
                int n = snprintf(out + o, cap - o, "[%s %s/%s %s %llu %lld %s %s %s %zu %zu %zu]",
                                 q->section, q->type, q->subtype, q->encoding,
                                 (unsigned long long)q->size, (long long)q->lines,
                                 q->disposition ? q->disposition : "-",
                                 q->env_subject ? q->env_subject : "-", q->md5 ? q->md5 : "-",
                                 q->nparams, q->ndisp_params, q->nlanguages);
                if (n < 0 || (size_t)n >= cap - o)
                        break;
                o += (size_t)n;
        }
}

/* --------------------------------------------------------------- forms */

START_TEST(single_text_plain)
{
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92)", &p);
        ck_assert_str_eq(b->section, "1");
        ck_assert_str_eq(b->type, "text");
        ck_assert_str_eq(b->subtype, "plain");
        ck_assert_str_eq(b->encoding, "7bit");
        ck_assert_uint_eq(b->nparams, 1);
        ck_assert_str_eq(b->params[0].name, "CHARSET"); /* as sent */
        ck_assert_str_eq(b->params[0].value, "US-ASCII");
        ck_assert_str_eq(imap_mime_param_get(b->params, b->nparams, "charset"), "US-ASCII");
        ck_assert_ptr_null(imap_mime_param_get(b->params, b->nparams, "name"));
        ck_assert_ptr_null(b->id);
        ck_assert_ptr_null(b->description);
        ck_assert_uint_eq(b->size, 3028);
        ck_assert_int_eq(b->lines, 92);
        ck_assert_int_eq(b->decoded_size, -1);
        ck_assert(!b->multipart);
        ck_assert(imap_bodypart_is_leaf(b));
        ck_assert(!imap_bodypart_is_message(b));
        ck_assert_ptr_null(b->disposition);
        ck_assert_ptr_null(b->md5);
        ck_assert_ptr_null(b->parent);
        ck_assert_ptr_null(imap_bodypart_next(b));
        parsed_free(&p);
}
END_TEST

START_TEST(single_all_fields_and_extensions)
{
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"application\" \"pdf\" (\"name\" \"a.pdf\" \"x\" \"y\") \"<id@x>\" \"The "
               "invoice\" \"BASE64\" 4096 \"Q2hlY2s=\" (\"ATTACHMENT\" (\"filename\" \"a.pdf\" "
               "\"size\" \"3000\")) (\"de\" \"en\") \"http://x/a.pdf\" 42 (\"ext\" (1 2)))",
               &p);
        ck_assert_str_eq(b->type, "application");
        ck_assert_str_eq(b->subtype, "pdf");
        ck_assert_uint_eq(b->nparams, 2);
        ck_assert_str_eq(b->params[1].name, "x");
        ck_str_or_null(b->id, "<id@x>");
        ck_str_or_null(b->description, "The invoice");
        ck_assert_str_eq(b->encoding, "base64");
        ck_assert_uint_eq(b->size, 4096);
        ck_assert_int_eq(b->lines, -1);
        ck_str_or_null(b->md5, "Q2hlY2s=");
        ck_str_or_null(b->disposition, "attachment");
        ck_assert_uint_eq(b->ndisp_params, 2);
        ck_assert_str_eq(imap_mime_param_get(b->disp_params, b->ndisp_params, "FILENAME"), "a.pdf");
        ck_assert_uint_eq(b->nlanguages, 2);
        ck_assert_str_eq(b->languages[0], "de");
        ck_assert_str_eq(b->languages[1], "en");
        ck_str_or_null(b->location, "http://x/a.pdf");
        parsed_free(&p);
}
END_TEST

START_TEST(single_nil_everywhere)
{
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"image\" \"png\" NIL NIL NIL \"base64\" 10 NIL NIL NIL NIL)", &p);
        ck_assert_uint_eq(b->nparams, 0);
        ck_assert_ptr_null(b->params);
        ck_assert_ptr_null(b->md5);
        ck_assert_ptr_null(b->disposition);
        ck_assert_uint_eq(b->nlanguages, 0);
        ck_assert_ptr_null(b->location);
        parsed_free(&p);
        /* NIL type, subtype, encoding and size: servers send these. A type
         * without both halves is text/plain (RFC 2045 §5.2, as Python reads it). */
        b = OK("(NIL NIL NIL NIL NIL NIL NIL)", &p);
        ck_assert_str_eq(b->type, "text");
        ck_assert_str_eq(b->subtype, "plain");
        ck_assert_str_eq(b->encoding, "7bit");
        ck_assert_uint_eq(b->size, 0);
        parsed_free(&p);
        /* Dovecot for a Content-Type it can't parse (corpus
         * mimekit/messages/missing-subtype.eml): empty strings. */
        b = OK("(\"\" \"\" NIL NIL NIL \"7bit\" 16 NIL NIL NIL NIL)", &p);
        ck_assert_str_eq(b->type, "text");
        ck_assert_str_eq(b->subtype, "plain");
        parsed_free(&p);
        b = OK("(\"application\" NIL NIL NIL NIL \"7bit\" 16)", &p);
        ck_assert_str_eq(b->type, "text");
        ck_assert_str_eq(b->subtype, "plain");
        parsed_free(&p);
        /* nil in any case */
        b = OK("(\"text\" \"plain\" nil Nil nIL \"8bit\" 1 1 nil (\"inline\" nil) nil nil)", &p);
        ck_str_or_null(b->disposition, "inline");
        ck_assert_uint_eq(b->ndisp_params, 0);
        parsed_free(&p);
}
END_TEST

START_TEST(single_missing_extensions_at_every_point)
{
        static const char *const forms[] = {
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1)",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL)",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL (\"inline\" NIL))",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL (\"inline\" NIL) \"en\")",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL (\"inline\" NIL) \"en\" \"loc\")",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL (\"inline\" NIL) \"en\" \"loc\" 1)",
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3)", /* no lines: a lax server */
            "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 NIL (\"inline\"))",
            "(\"image\" \"gif\" NIL NIL NIL \"base64\" 3 7 NIL)", /* lines on a non-text */
            "(\"text\" \"plain\" () NIL NIL \"7bit\" 3 1 NIL (\"inline\" ()) () NIL)",
        };
        for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
                struct parsed p;
                struct imap_bodypart *b = bs_ok(forms[i], strlen(forms[i]), &p);
                ck_assert_uint_eq(b->size, 3);
                parsed_free(&p);
        }
}
END_TEST

START_TEST(body_without_extensions)
{
        struct parsed p;
        int err = bs_parse(S("* 3 FETCH (UID 4 BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") "
                             "NIL NIL \"quoted-printable\" 12 1)(\"image\" \"jpeg\" (\"name\" "
                             "\"x.jpg\") NIL NIL \"base64\" 400) \"mixed\"))\r\n"),
                           &p);
        ck_assert_int_eq(err, 0);
        struct imap_bodypart *b = p.b;
        ck_assert(b->multipart);
        ck_assert_str_eq(b->section, "");
        ck_assert_str_eq(b->type, "multipart");
        ck_assert_str_eq(b->subtype, "mixed");
        ck_assert_uint_eq(b->nparams, 0);
        ck_assert_uint_eq(b->nparts, 2);
        ck_assert_str_eq(b->parts[0].section, "1");
        ck_assert_str_eq(b->parts[1].section, "2");
        ck_assert_str_eq(b->parts[1].subtype, "jpeg");
        ck_assert_ptr_eq(b->parts[1].parent, b);
        ck_assert_ptr_null(b->parts[1].disposition);
        parsed_free(&p);
}
END_TEST

START_TEST(multipart_extensions)
{
        struct parsed p;
        struct imap_bodypart *b =
            OK("((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"text\" \"html\" NIL NIL NIL "
               "\"7bit\" 1 1) \"ALTERNATIVE\" (\"boundary\" \"b\") (\"inline\" NIL) (\"fr\") "
               "\"loc\" (1 2) \"x\")",
               &p);
        ck_assert_str_eq(b->subtype, "alternative");
        ck_assert_str_eq(imap_mime_param_get(b->params, b->nparams, "boundary"), "b");
        ck_str_or_null(b->disposition, "inline");
        ck_assert_uint_eq(b->nlanguages, 1);
        ck_str_or_null(b->location, "loc");
        ck_assert_ptr_null(b->md5); /* multiparts have none */
        parsed_free(&p);
        b = OK("((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) NIL)", &p); /* NIL subtype */
        ck_assert_str_eq(b->subtype, "mixed");
        parsed_free(&p);
}
END_TEST

START_TEST(nested_sections)
{
        /* mixed( alternative(plain, related(html, image)), pdf ) */
        struct parsed p;
        struct imap_bodypart *b =
            OK("(((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)((\"text\" \"html\" NIL NIL NIL "
               "\"7bit\" 1 1)(\"image\" \"png\" NIL \"<c>\" NIL \"base64\" 4) \"related\") "
               "\"alternative\")(\"application\" \"pdf\" NIL NIL NIL \"base64\" 8) \"mixed\")",
               &p);
        char d[1024];
        dump(b, d, sizeof d);
        const char *want[] = {"", "1", "1.1", "1.2", "1.2.1", "1.2.2", "2"};
        const struct imap_bodypart *q = b;
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, q = imap_bodypart_next(q)) {
                ck_assert_msg(q != NULL, "%s", d);
                ck_assert_str_eq(q->section, want[i]);
                ck_assert_ptr_eq(imap_bodystructure_find(b, want[i]), q);
        }
        ck_assert_ptr_null(q);
        ck_assert_str_eq(imap_bodystructure_find(b, "1.2.2")->subtype, "png");
        ck_assert_uint_eq(imap_bodystructure_find(b, "1.2.2")->depth, 3);
        ck_assert_ptr_null(imap_bodystructure_find(b, "3"));
        ck_assert_ptr_null(imap_bodystructure_find(b, "1.2.3"));
        ck_assert_ptr_null(imap_bodystructure_find(b, NULL));
        ck_assert(!imap_bodypart_is_leaf(imap_bodystructure_find(b, "1.2")));
        parsed_free(&p);
}
END_TEST

#define ENV(subj) "(\"date\" " subj " NIL NIL NIL NIL NIL NIL NIL NIL)"

START_TEST(message_rfc822_single_inner)
{
        /* A message whose only body is an attached message with a plain body:
         * the attached message is "1", its body "1.1". */
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 300 " ENV(
                   "\"=?utf-8?q?hi?=\"") " (\"text\" \"plain\" NIL NIL NIL \"7bit\" 20 2) 12 NIL "
                                         "(\"attachment\" "
                                         "NIL) NIL NIL)",
               &p);
        ck_assert_str_eq(b->section, "1");
        ck_assert(imap_bodypart_is_message(b));
        ck_assert(imap_bodypart_is_leaf(b));
        ck_assert(b->has_envelope);
        ck_str_or_null(b->env_subject, "=?utf-8?q?hi?=");
        ck_assert_int_eq(b->lines, 12);
        ck_str_or_null(b->disposition, "attachment");
        ck_assert_ptr_nonnull(b->message);
        ck_assert_str_eq(b->message->section, "1.1");
        ck_assert_ptr_eq(b->message->parent, b);
        ck_assert_ptr_eq(imap_bodypart_next(b), b->message);
        ck_assert_ptr_null(imap_bodypart_next(b->message));
        parsed_free(&p);
}
END_TEST

START_TEST(message_rfc822_at_depth)
{
        /* mixed( plain, rfc822( mixed( plain, rfc822( plain ) ) ), gif ) with a NIL subject */
        struct parsed p;
        struct imap_bodypart *b = OK(
            "((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"message\" \"rfc822\" NIL NIL NIL "
            "\"7bit\" 100 " ENV(
                "\"outer\"") " ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)"
                             "(\"message\" \"global\" NIL NIL NIL \"8bit\" 50 " ENV(
                                 "NIL") " (\"text\" \"plain\" NIL NIL NIL \"8bit\" 5 1) 3) "
                                        "\"mixed\") 9)"
                                        "(\"image\" \"gif\" NIL NIL NIL \"base64\" 4) \"mixed\")",
            &p);
        const char *want[] = {"", "1", "2", "2", "2.1", "2.2", "2.2.1", "3"};
        const struct imap_bodypart *q = b;
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, q = imap_bodypart_next(q)) {
                ck_assert_ptr_nonnull(q);
                ck_assert_str_eq(q->section, want[i]);
        }
        ck_assert_ptr_null(q);
        struct imap_bodypart *m = imap_bodystructure_find(b, "2");
        ck_assert(imap_bodypart_is_message(m)); /* the outer of the two "2"s */
        ck_assert(m->message->multipart);
        struct imap_bodypart *g = imap_bodystructure_find(b, "2.2");
        ck_assert_str_eq(g->subtype, "global");
        ck_assert(g->has_envelope);
        ck_assert_ptr_null(g->env_subject);
        ck_assert_str_eq(g->message->section, "2.2.1");
        ck_assert_uint_eq(g->message->depth, 4);
        ck_assert_str_eq(imap_bodystructure_find(b, "3")->subtype, "gif");
        parsed_free(&p);
}
END_TEST

START_TEST(message_rfc822_without_structure)
{
        /* Sent as a basic part: taken at its word, a leaf without inner parts. */
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 NIL NIL NIL NIL)", &p);
        ck_assert(!imap_bodypart_is_message(b));
        ck_assert(!b->has_envelope);
        parsed_free(&p);
        /* Envelope but no body: malformed. */
        FAILS("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 " ENV("NIL") ")");
        FAILS("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 " ENV("NIL") " NIL 3)");
}
END_TEST

START_TEST(languages_and_dispositions)
{
        struct parsed p;
        struct imap_bodypart *b =
            OK("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL \"inline\" \"de\" NIL)", &p);
        ck_str_or_null(b->disposition, "inline"); /* a bare string, from old servers */
        ck_assert_uint_eq(b->nlanguages, 1);
        ck_assert_str_eq(b->languages[0], "de");
        parsed_free(&p);
        b = OK("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL (\"\" NIL) () NIL)", &p);
        ck_str_or_null(b->disposition, "");
        ck_assert_uint_eq(b->nlanguages, 0);
        parsed_free(&p);
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL (NIL NIL) NIL NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL (\"a\" NIL NIL) NIL NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL (\"a\" \"b\") NIL NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL 5 NIL NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL (\"en\" NIL) NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL 7 NIL)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL NIL (\"l\"))");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 (\"md5\"))");
}
END_TEST

START_TEST(literals_in_fields)
{
        struct parsed p;
        int err = bs_parse(S("* 1 FETCH (BODYSTRUCTURE ({4}\r\ntext {5}\r\nplain (\"name\" "
                             "{7}\r\n\xe2\x82\xac.txt) NIL NIL {6}\r\nBase64 10 1))\r\n"),
                           &p);
        ck_assert_int_eq(err, 0);
        ck_assert_str_eq(p.b->subtype, "plain");
        ck_assert_str_eq(p.b->encoding, "base64");
        ck_assert_str_eq(p.b->params[0].value, "\xe2\x82\xac.txt");
        parsed_free(&p);
}
END_TEST

START_TEST(malformed_refused)
{
        FAILS("()");
        FAILS("NIL");
        FAILS("\"text\"");
        FAILS("(\"text\")");
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\")");           /* no size */
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" \"3\")");     /* size a string */
        FAILS("(\"text\" \"plain\" NIL NIL NIL \"7bit\" (3))");       /* size a list */
        FAILS("(\"text\" \"plain\" (\"a\") NIL NIL \"7bit\" 3)");     /* odd params */
        FAILS("(\"text\" \"plain\" \"a\" NIL NIL \"7bit\" 3)");       /* params a string */
        FAILS("(\"text\" \"plain\" (NIL \"a\") NIL NIL \"7bit\" 3)"); /* NIL name */
        FAILS("(\"text\" \"plain\" ((\"a\") \"b\") NIL NIL \"7bit\" 3)");
        FAILS("(\"text\" \"plain\" NIL (\"id\") NIL \"7bit\" 3)");
        FAILS("(\"text\" \"plain\" NIL NIL 5 \"7bit\" 3)");
        FAILS("(\"text\" \"plain\" NIL NIL NIL (\"7bit\") 3)");
        FAILS("(\"text\" (\"plain\") NIL NIL NIL \"7bit\" 3)");
        FAILS("((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1))"); /* multipart without subtype */
        FAILS("((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) (\"mixed\"))");
        FAILS("((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) \"mixed\" \"b\")");
        FAILS("(() \"mixed\")");
        FAILS("((\"text\") \"mixed\")");
        FAILS("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 3 (NIL (\"s\")) (\"text\" \"plain\" "
              "NIL NIL NIL \"7bit\" 1) 1)"); /* subject a list */
        FAILS("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 3 " ENV("NIL") " (\"text\") 1)");
}
END_TEST

START_TEST(refuses_non_list_and_null)
{
        struct imap_bodypart *b = (struct imap_bodypart *)1;
        ck_assert_int_eq(imap_bodystructure_parse(NULL, &b), -EPROTO);
        ck_assert_ptr_null(b);
        imap_bodystructure_free(NULL);
        ck_assert_ptr_null(imap_bodypart_next(NULL));
        ck_assert(!imap_bodypart_is_leaf(NULL));
}
END_TEST

/* Builds n nested levels of kind: 'm' multipart, 'r' message/rfc822. */
static char *nest(size_t n, char kind)
{
        const char *leaf = "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)";
        const char *mo = "(", *mc = " \"mixed\")";
        const char *ro = "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 1 (NIL NIL) ", *rc = " 1)";
        const char *o = kind == 'm' ? mo : ro, *c = kind == 'm' ? mc : rc;
        size_t len = n * (strlen(o) + strlen(c)) + strlen(leaf) + 1;
        char *s = malloc(len);
        ck_assert_ptr_nonnull(s);
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
                strcat(s, o);
        strcat(s, leaf);
        for (size_t i = 0; i < n; i++)
                strcat(s, c);
        return s;
}

START_TEST(depth_bounded)
{
        /* The parser allows IMAP_MAX_DEPTH list levels; the FETCH list is one
         * and every multipart another, so 62 nested multiparts are the most
         * that parse; an rfc822 level costs one too (its envelope is a sibling). */
        struct parsed p;
        char *s = nest(IMAP_MAX_DEPTH - 2, 'm');
        struct imap_bodypart *b = bs_ok(s, strlen(s), &p);
        const struct imap_bodypart *q = b;
        while (q->nparts)
                q = &q->parts[0];
        ck_assert_uint_eq(q->depth, IMAP_MAX_DEPTH - 2);
        parsed_free(&p);
        free(s);
        s = nest(IMAP_MAX_DEPTH, 'm');
        ck_assert_int_eq(bs_parse(s, strlen(s), &p), 1000 - EPROTO); /* the parser stops it */
        parsed_free(&p);
        free(s);
        s = nest(IMAP_MAX_DEPTH, 'r');
        ck_assert_int_eq(bs_parse(s, strlen(s), &p), 1000 - EPROTO);
        parsed_free(&p);
        free(s);
        s = nest(30, 'r');
        b = bs_ok(s, strlen(s), &p);
        q = b;
        while (q->message)
                q = q->message;
        ck_assert_uint_eq(q->depth, 30);
        parsed_free(&p);
        free(s);
}
END_TEST

/* Our own bound, for values not from imap_parse (hand-built trees). */
START_TEST(depth_bounded_own)
{
        size_t n = IMAP_BODY_MAX_DEPTH + 5;
        struct imap_value *v = calloc(2 * n + 16, sizeof(*v));
        ck_assert_ptr_nonnull(v);
        char plain[] = "plain", mixed[] = "mixed", text[] = "text", bit[] = "7bit", one[] = "1";
        /* leaf: ("text" "plain" NIL NIL NIL "7bit" 1) */
        struct imap_value *leaf = &v[2 * n];
        struct imap_value *f = &v[2 * n + 1];
        struct imap_value fields[7] = {
            {IMAP_STRING, text, 4, 0, NULL, NULL}, {IMAP_STRING, plain, 5, 0, NULL, NULL},
            {IMAP_NIL, NULL, 0, 0, NULL, NULL},    {IMAP_NIL, NULL, 0, 0, NULL, NULL},
            {IMAP_NIL, NULL, 0, 0, NULL, NULL},    {IMAP_STRING, bit, 4, 0, NULL, NULL},
            {IMAP_NUMBER, one, 1, 1, NULL, NULL},
        };
        for (int i = 0; i < 7; i++) {
                f[i] = fields[i];
                f[i].next = i < 6 ? &f[i + 1] : NULL;
        }
        leaf->type = IMAP_LIST;
        leaf->first = f;
        struct imap_value *inner = leaf;
        for (size_t i = 0; i < n; i++) {
                struct imap_value *l = &v[2 * i], *sub = &v[2 * i + 1];
                sub->type = IMAP_STRING;
                sub->s = mixed;
                sub->len = 5;
                l->type = IMAP_LIST;
                l->first = inner;
                inner->next = sub;
                inner = l;
        }
        struct imap_bodypart *b = (struct imap_bodypart *)1;
        ck_assert_int_eq(imap_bodystructure_parse(inner, &b), -EPROTO);
        ck_assert_ptr_null(b);
        free(v);
}
END_TEST

START_TEST(binary_sizes)
{
        struct parsed p;
        int err = bs_parse(S("* 1 FETCH (UID 3 BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL "
                             "\"7bit\" 1 1)(\"image\" \"png\" NIL NIL NIL \"base64\" 400) "
                             "\"mixed\") BINARY.SIZE[2] 297 binary.size[1] 1 BINARY.SIZE[9] 5 "
                             "BINARY.SIZE[1] \"x\" BINARY.SIZE[ 3)\r\n"),
                           &p);
        ck_assert_int_eq(err, 0);
        ck_assert_uint_eq(imap_bodystructure_set_binary_sizes(p.b, p.r->args), 2);
        ck_assert_int_eq(p.b->parts[1].decoded_size, 297);
        ck_assert_int_eq(p.b->parts[0].decoded_size, 1);
        ck_assert_int_eq(p.b->decoded_size, -1);
        ck_assert_int_eq(imap_bodystructure_set_decoded_size(p.b, "1", 12), 0);
        ck_assert_int_eq(p.b->parts[0].decoded_size, 12);
        ck_assert_int_eq(imap_bodystructure_set_decoded_size(p.b, "1.1", 12), -ENOENT);
        ck_assert_uint_eq(imap_bodystructure_set_binary_sizes(p.b, NULL), 0);
        parsed_free(&p);
}
END_TEST

/* ------------------------------------------------------------ Dovecot */

START_TEST(dovecot_vectors)
{
        for (size_t i = 0; i < NDOVECOT; i++) {
                struct parsed p;
                bs_ok(dovecot[i].s, dovecot[i].len, &p);
                parsed_free(&p);
        }
}
END_TEST

START_TEST(dovecot_details)
{
        struct parsed p;
        /* UID 2: a digest of five message/rfc822 parts inside a mixed. */
        struct imap_bodypart *b = bs_ok(dovecot[1].s, dovecot[1].len, &p);
        ck_assert_uint_eq(b->nparts, 4);
        struct imap_bodypart *d = imap_bodystructure_find(b, "3");
        ck_assert_str_eq(d->subtype, "digest");
        ck_assert_uint_eq(d->nparts, 5);
        ck_str_or_null(d->parts[0].env_subject, "[Ppp] testing #1");
        ck_assert_ptr_null(d->parts[1].env_subject);
        ck_assert_str_eq(d->parts[4].message->section, "3.5.1");
        ck_str_or_null(imap_bodystructure_find(b, "4")->description, "Digest Footer");
        parsed_free(&p);
        /* UID 69: subjects sent as literals, rfc822 inside rfc822. */
        b = bs_ok(dovecot[2].s, dovecot[2].len, &p);
        struct imap_bodypart *m = imap_bodystructure_find(b, "2");
        ck_str_or_null(m->env_subject, "[Fwd: [Fwd: FW: Another Priceless Moment]]");
        ck_assert(imap_bodypart_is_message(imap_bodystructure_find(b, "2.2")));
        parsed_free(&p);
        /* UID 112: three languages. */
        b = bs_ok(dovecot[3].s, dovecot[3].len, &p);
        d = imap_bodystructure_find(b, "4");
        ck_assert_uint_eq(d->nlanguages, 3);
        ck_assert_str_eq(d->languages[2], "en-CA");
        parsed_free(&p);
        /* UID 570: RFC 2231 filename left for mime_name.c. */
        b = bs_ok(dovecot[7].s, dovecot[7].len, &p);
        ck_assert_str_eq(
            imap_mime_param_get(b->parts[0].disp_params, b->parts[0].ndisp_params, "filename*"),
            "ISO-8859-1''Eelanal%FC%FCsi%20p%E4ring.jpg");
        parsed_free(&p);
        /* UID 592: location, and a disposition with an empty type. */
        b = bs_ok(dovecot[8].s, dovecot[8].len, &p);
        ck_str_or_null(b->parts[0].location, "somefile.jpg");
        ck_str_or_null(b->parts[0].disposition, "");
        parsed_free(&p);
}
END_TEST

/* Every Dovecot vector framed at every split point, then parsed: the same tree. */
START_TEST(dovecot_split_every_byte)
{
        static char want[16384], got[16384];
        for (size_t i = 0; i < NDOVECOT; i++) {
                const struct canned *c = &dovecot[i];
                struct parsed p;
                dump(bs_ok(c->s, c->len, &p), want, sizeof want);
                parsed_free(&p);
                for (size_t k = 0; k < c->len; k++) {
                        struct imap_framer f;
                        imap_framer_reset(&f);
                        ck_assert_int_eq(imap_frame(&f, c->s, k, UINT64_MAX), 0);
                        ck_assert_int_eq(imap_frame(&f, c->s, c->len, UINT64_MAX), (ssize_t)c->len);
                }
                bs_ok(c->s, c->len, &p);
                dump(p.b, got, sizeof got);
                ck_assert_str_eq(got, want);
                parsed_free(&p);
        }
}
END_TEST

/* Hostile: every prefix of every vector closed with ")\r\n" or "))\r\n", and
 * every vector with one byte changed at every position, go through the
 * framer and parser and then ours: an error or a tree, never a crash or a
 * read past the buffer (ASan). */
static void hostile_one(const char *buf, size_t len)
{
        struct imap_framer f;
        imap_framer_reset(&f);
        ssize_t n = imap_frame(&f, buf, len, 1 << 20);
        if (n <= 0)
                return;
        char *copy = malloc((size_t)n);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, buf, (size_t)n);
        struct imap_response *r = NULL;
        if (imap_parse(copy, (size_t)n, &r) == 0) {
                const struct imap_value *v = imap_fetch_item(r->args, "BODYSTRUCTURE");
                struct imap_bodypart *b = NULL;
                int err = imap_bodystructure_parse(v, &b);
                ck_assert(err == 0 || err == -EPROTO);
                ck_assert(err == 0 ? b != NULL : b == NULL);
                for (struct imap_bodypart *q = b; q; q = imap_bodypart_next(q)) {
                        ck_assert_ptr_nonnull(q->section);
                        ck_assert_ptr_nonnull(imap_bodystructure_find(b, q->section));
                }
                imap_bodystructure_free(b);
        }
        imap_response_free(r);
        free(copy);
}

START_TEST(hostile_truncations_and_mutations)
{
        static const char subst[] = "()\" {}NIL0\r\n\\~";
        for (size_t i = 0; i < NDOVECOT; i++) {
                const struct canned *c = &dovecot[i];
                char *buf = malloc(c->len + 8);
                ck_assert_ptr_nonnull(buf);
                for (size_t k = 0; k < c->len; k++) {
                        memcpy(buf, c->s, k);
                        memcpy(buf + k, ")\r\n", 3);
                        hostile_one(buf, k + 3);
                        memcpy(buf + k, "))\r\n", 4);
                        hostile_one(buf, k + 4);
                }
                for (size_t k = 0; k < c->len; k += 1 + (c->len > 1000)) {
                        memcpy(buf, c->s, c->len);
                        buf[k] = subst[(k + i) % (sizeof(subst) - 1)];
                        hostile_one(buf, c->len);
                }
                free(buf);
        }
}
END_TEST

static Suite *bodystructure_suite(void)
{
        Suite *s = suite_create("bodystructure");
        TCase *tc = tcase_create("forms");
        tcase_add_test(tc, single_text_plain);
        tcase_add_test(tc, single_all_fields_and_extensions);
        tcase_add_test(tc, single_nil_everywhere);
        tcase_add_test(tc, single_missing_extensions_at_every_point);
        tcase_add_test(tc, body_without_extensions);
        tcase_add_test(tc, multipart_extensions);
        tcase_add_test(tc, nested_sections);
        tcase_add_test(tc, message_rfc822_single_inner);
        tcase_add_test(tc, message_rfc822_at_depth);
        tcase_add_test(tc, message_rfc822_without_structure);
        tcase_add_test(tc, languages_and_dispositions);
        tcase_add_test(tc, literals_in_fields);
        tcase_add_test(tc, binary_sizes);
        suite_add_tcase(s, tc);

        tc = tcase_create("malformed");
        tcase_add_test(tc, malformed_refused);
        tcase_add_test(tc, refuses_non_list_and_null);
        tcase_add_test(tc, depth_bounded);
        tcase_add_test(tc, depth_bounded_own);
        suite_add_tcase(s, tc);

        tc = tcase_create("dovecot");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, dovecot_vectors);
        tcase_add_test(tc, dovecot_details);
        tcase_add_test(tc, dovecot_split_every_byte);
        tcase_add_test(tc, hostile_truncations_and_mutations);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(bodystructure_suite());
}
