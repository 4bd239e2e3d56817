/* Unit tests for part file names: RFC 2231 / RFC 2047 / raw 8-bit filename
 * decoding, sanitising and cutting, extensions, message subjects, and the
 * choice of the `text` part. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/bodystructure.h"
#include "imap/mime_name.h"
#include "imap/parse.h"
#include "tests/unit/unit_main.h"

#define P(n, v)                                                                                    \
        {                                                                                          \
                (char *)(n), (char *)(v)                                                           \
        }
#define NP(arr) (sizeof(arr) / sizeof(arr[0]))

static void decodes_to(const struct imap_mime_param *ps, size_t n, const char *name,
                       const char *want)
{
        char *out = (char *)1;
        ck_assert_int_eq(imap_mime_param_decode(ps, n, name, &out), 0);
        if (!want) {
                ck_assert_ptr_null(out);
                return;
        }
        ck_assert_msg(out && strcmp(out, want) == 0, "want \"%s\", got \"%s\"", want,
                      out ? out : "(null)");
        free(out);
}

START_TEST(rfc2231_extended)
{
        struct imap_mime_param a[] = {P("filename*", "utf-8''%E2%82%AC.pdf")};
        decodes_to(a, NP(a), "filename", "\xe2\x82\xac.pdf");
        struct imap_mime_param b[] = {P("FILENAME*", "ISO-8859-1'de'%FCbersicht%20neu.xlsx")};
        decodes_to(b, NP(b), "filename",
                   "\xc3\xbc"
                   "bersicht neu.xlsx");
        /* No charset: UTF-8 if valid, else windows-1252. */
        struct imap_mime_param c[] = {P("filename*", "''%C3%A9t%E9")};
        decodes_to(c, NP(c), "filename", "\xc3\xa9t\xc3\xa9");
        /* Forgotten quotes: the whole is the value. A bad %-escape stays. */
        struct imap_mime_param d[] = {P("filename*", "a%20b%zz%4.txt%")};
        decodes_to(d, NP(d), "filename", "a b%zz%4.txt%");
        /* Unknown and lying charsets: the bytes, each valid UTF-8 sequence kept,
         * each other byte as windows-1252. */
        struct imap_mime_param e[] = {P("filename*", "x-nope''%E9t%C3%A9")};
        decodes_to(e, NP(e), "filename", "\xc3\xa9t\xc3\xa9");
        /* Dovecot vector (UID 569): iso-2022-jp that isn't. */
        struct imap_mime_param f[] = {
            P("name*", "iso-2022-jp'ja'01%20Quien%20Te%20Dij%8aat.%20Pitbull.mp3")};
        decodes_to(f, NP(f), "name",
                   "01 Quien Te Dij\xc5\xa0"
                   "at. Pitbull.mp3");
}
END_TEST

START_TEST(rfc2231_continuations)
{
        /* Out of order, mixed encoded and literal segments, charset from *0*. */
        struct imap_mime_param a[] = {
            P("filename*2", "%20literal"), P("filename*0*", "utf-8'en'%E2%82%AC"),
            P("filename*1*", "%20part"),   P("filename*3", ".pdf"),
            P("filename", "fallback.pdf"),
        };
        decodes_to(a, NP(a), "filename", "\xe2\x82\xac part%20literal.pdf");
        /* Plain continuations may hold encoded words (as plain values do). */
        struct imap_mime_param b[] = {P("name*0", "=?utf-8?q?Gr=C3=BC"),
                                      P("name*1", "=C3=9Fe?=.txt")};
        decodes_to(b, NP(b), "name",
                   "Gr\xc3\xbc\xc3\x9f"
                   "e.txt");
        /* A gap ends the value; a missing *0 means no continuation value. */
        struct imap_mime_param c[] = {P("filename*0", "a"), P("filename*1", "b"),
                                      P("filename*3", "d")};
        decodes_to(c, NP(c), "filename", "ab");
        struct imap_mime_param d[] = {P("filename*1", "b"), P("filename", "plain.txt")};
        decodes_to(d, NP(d), "filename", "plain.txt");
        /* Leading zeros, signs and huge indices are not segments. */
        struct imap_mime_param e[] = {P("filename*0", "a"), P("filename*01", "x"),
                                      P("filename*+1", "y"), P("filename*99999", "z"),
                                      P("filename*1x", "w")};
        decodes_to(e, NP(e), "filename", "a");
        /* Extended wins over continuations and plain. */
        struct imap_mime_param f[] = {P("filename*0", "cont"), P("filename", "plain"),
                                      P("filename*", "''ext")};
        decodes_to(f, NP(f), "filename", "ext");
        /* Other parameters with the same prefix are not ours. */
        struct imap_mime_param g[] = {P("filenames", "x"), P("filename-x*", "''y"), P("name", "n")};
        decodes_to(g, NP(g), "filename", NULL);
        decodes_to(g, NP(g), "name", "n");
        decodes_to(NULL, 0, "name", NULL);
}
END_TEST

START_TEST(rfc2047_and_raw)
{
        struct imap_mime_param a[] = {P("name", "=?koi8-r?B?89DJ08/LLmRvYw==?=")};
        decodes_to(a, NP(a), "name", "\xd0\xa1\xd0\xbf\xd0\xb8\xd1\x81\xd0\xbe\xd0\xba.doc");
        struct imap_mime_param b[] = {P("name", "=?ISO-8859-1?Q?Eelanal=FC=FCsi_p=E4ring.jpg?=")};
        decodes_to(b, NP(b), "name", "Eelanal\xc3\xbc\xc3\xbcsi p\xc3\xa4ring.jpg");
        /* Raw 8-bit: UTF-8 when valid, else windows-1252. */
        struct imap_mime_param c[] = {P("filename", "\xc3\xa4.txt"), P("name", "\xe4\x80.txt")};
        decodes_to(c, NP(c), "filename", "\xc3\xa4.txt");
        decodes_to(c, NP(c), "name", "\xc3\xa4\xe2\x82\xac.txt");
}
END_TEST

START_TEST(sanitize_rules)
{
        static const struct {
                const char *in, *want;
                size_t max;
        } t[] = {
            {"a/b\\c", "a_b\\c", 255},
            {"  lead \t\r\n  trail  ", "lead trail", 255},
            {"ctl\x01\x1b[31m\x7f\xc2\x9b.txt", "ctl[31m.txt", 255},
            {"", "", 255},
            {" \t ", "", 255},
            {"..", "..", 255},
            {"\xe2\x82\xac\xe2\x82\xac", "\xe2\x82\xac", 5}, /* cut before a char */
            {"ab\xe2\x82\xac", "ab", 4},
            {"abc", "", 0},
            {"x\xff", "x\xc3\xbf", 255}, /* invalid UTF-8 as windows-1252 */
            {"a\xe2\x80\xa8"
             "b",
             "a b", 255}, /* U+2028 is space */
        };
        for (size_t i = 0; i < NP(t); i++) {
                char *o = imap_name_sanitize(t[i].in, strlen(t[i].in), t[i].max);
                ck_assert_ptr_nonnull(o);
                ck_assert_msg(strcmp(o, t[i].want) == 0, "%zu: \"%s\"", i, o);
                free(o);
        }
        char *o = imap_name_sanitize("a\0b", 3, 255); /* NUL dropped */
        ck_assert_str_eq(o, "ab");
        free(o);
        o = imap_name_sanitize(NULL, 0, 255);
        ck_assert_str_eq(o, "");
        free(o);
}
END_TEST

START_TEST(extensions)
{
        static const struct {
                const char *type, *subtype, *ext;
        } t[] = {
            {"text", "plain", "txt"},
            {"text", "html", "html"},
            {"text", "x-unheard-of", "txt"},
            {"image", "jpeg", "jpg"},
            {"image", "png", "png"},
            {"application", "pdf", "pdf"},
            {"application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
            {"application", "pgp-signature", "asc"},
            {"application", "x-unheard-of", "bin"},
            {"message", "rfc822", "eml"},
            {"message", "delivery-status", "txt"},
            {"foo", "bar", "bin"},
            {"", "", "bin"},
        };
        for (size_t i = 0; i < NP(t); i++)
                ck_assert_str_eq(imap_mime_extension(t[i].type, t[i].subtype), t[i].ext);
        ck_assert_str_eq(imap_mime_extension(NULL, "x"), "bin");
}
END_TEST

/* Parses a BODYSTRUCTURE value given as text. */
struct parsed {
        struct imap_response *r;
        struct imap_bodypart *b;
};

static struct imap_bodypart *bs(const char *v, struct parsed *p)
{
        static const char pre[] = "* 1 FETCH (BODYSTRUCTURE ", post[] = ")\r\n";
        size_t n = strlen(pre) + strlen(v) + strlen(post);
        char *buf = malloc(n + 1);
        ck_assert_ptr_nonnull(buf);
        strcpy(buf, pre);
        strcat(buf, v);
        strcat(buf, post);
        ck_assert_int_eq(imap_parse(buf, n, &p->r), 0);
        free(buf);
        ck_assert_int_eq(
            imap_bodystructure_parse(imap_fetch_item(p->r->args, "BODYSTRUCTURE"), &p->b), 0);
        return p->b;
}

static void parsed_free(struct parsed *p)
{
        imap_bodystructure_free(p->b);
        imap_response_free(p->r);
}

static void name_is(const struct imap_bodypart *b, const char *section, const char *want)
{
        const struct imap_bodypart *q = imap_bodystructure_find((struct imap_bodypart *)b, section);
        ck_assert_ptr_nonnull(q);
        char *n = imap_mime_part_filename(q);
        ck_assert_ptr_nonnull(n);
        ck_assert_msg(strcmp(n, want) == 0, "%s: want \"%s\", got \"%s\"", section, want, n);
        ck_assert_uint_le(strlen(n), IMAP_NAME_MAX);
        free(n);
}

#define ENV(subj) "(\"date\" " subj " NIL NIL NIL NIL NIL NIL NIL NIL)"
#define TXT "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)"
#define HTML "(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 1)"
#define IMG "(\"image\" \"png\" NIL NIL NIL \"base64\" 1)"

START_TEST(part_names)
{
        struct parsed p;
        struct imap_bodypart *b = bs(
            "((" TXT "(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 1) \"alternative\")"
            "(\"application\" \"pdf\" (\"name\" \"ignored.pdf\") NIL NIL \"base64\" 8 NIL "
            "(\"attachment\" (\"filename*\" \"utf-8''invoice%20%E2%82%AC.pdf\")) NIL NIL)"
            "(\"image\" \"jpeg\" NIL NIL NIL \"base64\" 8)"
            "(\"application\" \"x-thing\" (\"name\" \"  \") NIL NIL \"base64\" 8)"
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 9 " ENV(
                "\"=?utf-8?q?a/b=E2=82=AC?=\"") " (" TXT TXT " \"mixed\") 3)"
                                                "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "
                                                "9 " ENV("NIL") " " TXT " 3)"
                                                                "(\"message\" \"rfc822\" NIL NIL "
                                                                "NIL \"7bit\" 9 NIL NIL NIL NIL)"
                                                                "(\"text\" \"plain\" (\"name\" "
                                                                "\"a/../../etc/passwd\") NIL NIL "
                                                                "\"7bit\" 1 1)"
                                                                " \"mixed\")",
            &p);
        name_is(b, "1.1", "1.1.txt");
        name_is(b, "1.2", "1.2.html");
        name_is(b, "2", "2-invoice \xe2\x82\xac.pdf");
        name_is(b, "3", "3.jpg");
        name_is(b, "4", "4.bin"); /* a name of only space is none */
        name_is(b, "5", "5-a_b\xe2\x82\xac.eml");
        name_is(b, "5.1", "5.1.txt");
        name_is(b, "5.2", "5.2.txt");
        name_is(b, "6", "6-(no subject).eml");
        name_is(b, "6.1", "6.1.txt");
        name_is(b, "7", "7-(no subject).eml"); /* no structure sent: still a message */
        name_is(b, "8", "8-a_.._.._etc_passwd");
        ck_assert_ptr_null(imap_mime_part_filename(b)); /* a multipart is no file */
        ck_assert_ptr_null(imap_mime_part_filename(imap_bodystructure_find(b, "1")));
        ck_assert_ptr_null(imap_mime_part_filename(NULL));
        char *fn = (char *)1;
        ck_assert_int_eq(imap_mime_filename(imap_bodystructure_find(b, "4"), &fn), 0);
        ck_assert_ptr_null(fn);
        parsed_free(&p);
        /* A non-multipart message is "1". */
        b = bs(TXT, &p);
        name_is(b, "1", "1.txt");
        parsed_free(&p);
}
END_TEST

START_TEST(long_names_cut_keeping_extension)
{
        /* 300 "é" (600 bytes) + ".pdf": cut at a character boundary, ".pdf" kept. */
        char v[2048] = "(\"application\" \"pdf\" (\"name\" \"";
        for (int i = 0; i < 300; i++)
                strcat(v, "\xc3\xa9");
        strcat(v, ".pdf\") NIL NIL \"base64\" 8)");
        struct parsed p;
        struct imap_bodypart *b = bs(v, &p);
        char *n = imap_mime_part_filename(b);
        ck_assert_ptr_nonnull(n);
        size_t len = strlen(n);
        ck_assert_uint_le(len, IMAP_NAME_MAX);
        ck_assert_uint_ge(len, IMAP_NAME_MAX - 1);
        ck_assert(strncmp(n, "1-\xc3\xa9", 4) == 0);
        ck_assert_str_eq(n + len - 4, ".pdf");
        ck_assert_int_eq((unsigned char)n[len - 5], 0xa9); /* a whole é before the dot */
        free(n);
        parsed_free(&p);
        /* An over-long "extension" is not kept: a plain cut. */
        strcpy(v, "(\"application\" \"pdf\" (\"name\" \"a.");
        for (int i = 0; i < 300; i++)
                strcat(v, "b");
        strcat(v, "\") NIL NIL \"base64\" 8)");
        b = bs(v, &p);
        n = imap_mime_part_filename(b);
        ck_assert_uint_eq(strlen(n), IMAP_NAME_MAX);
        ck_assert(strncmp(n, "1-a.bbb", 7) == 0);
        free(n);
        parsed_free(&p);
        /* A long subject: ".eml" kept. */
        strcpy(v, "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 9 (NIL \"");
        for (int i = 0; i < 400; i++)
                strcat(v, "s");
        strcat(v, "\") " TXT " 1)");
        b = bs(v, &p);
        n = imap_mime_part_filename(b);
        ck_assert_uint_eq(strlen(n), IMAP_NAME_MAX);
        ck_assert_str_eq(n + IMAP_NAME_MAX - 4, ".eml");
        free(n);
        parsed_free(&p);
}
END_TEST

/* A section too long to leave room for a name: no file, ENAMETOOLONG. */
START_TEST(long_section_has_no_name)
{
        struct imap_bodypart part = {0};
        char section[IMAP_NAME_MAX];
        memset(section, '1', sizeof section - 1);
        section[sizeof section - 1] = '\0';
        part.section = section;
        part.type = (char *)"text";
        part.subtype = (char *)"plain";
        part.encoding = (char *)"7bit";
        errno = 0;
        ck_assert_ptr_null(imap_mime_part_filename(&part));
        ck_assert_int_eq(errno, ENAMETOOLONG);
        section[IMAP_NAME_MAX - 17] = '\0'; /* the longest that still gets a name */
        char *n = imap_mime_part_filename(&part);
        ck_assert_ptr_nonnull(n);
        ck_assert_uint_le(strlen(n), IMAP_NAME_MAX);
        ck_assert_str_eq(n + IMAP_NAME_MAX - 17, ".txt");
        free(n);
}
END_TEST

START_TEST(header_strings)
{
        struct parsed p;
        struct imap_bodypart *b = bs(
            "(\"text\" \"plain\" (\"charset\" \"UTF-8\" \"name\" \"a b\\\"c\\\\.txt\" \"x\" \"\") "
            "NIL NIL \"7bit\" 1 1 NIL (\"ATTACHMENT\" (\"filename*\" \"utf-8''a%20b\")) NIL NIL)",
            &p);
        char *ct = imap_mime_content_type(b);
        ck_assert_str_eq(ct, "text/plain; charset=UTF-8; name=\"a b\\\"c\\\\.txt\"; x=\"\"");
        free(ct);
        char *cd = imap_mime_content_disposition(b);
        ck_assert_str_eq(cd, "attachment; filename*=utf-8''a%20b");
        free(cd);
        parsed_free(&p);
        b = bs(IMG, &p);
        ct = imap_mime_content_type(b);
        ck_assert_str_eq(ct, "image/png");
        free(ct);
        errno = EINVAL;
        ck_assert_ptr_null(imap_mime_content_disposition(b));
        ck_assert_int_eq(errno, 0);
        parsed_free(&p);
}
END_TEST

static void text_is(const char *v, const char *want_section)
{
        struct parsed p;
        struct imap_bodypart *b = bs(v, &p);
        const struct imap_bodypart *t = imap_mime_text_part(b);
        if (!want_section)
                ck_assert_msg(t == NULL, "want none, got %s", t ? t->section : "");
        else {
                ck_assert_msg(t != NULL, "want %s, got none", want_section);
                ck_assert_str_eq(t->section, want_section);
        }
        parsed_free(&p);
}

#define ATT_TXT "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL (\"attachment\" NIL) NIL NIL)"

START_TEST(text_part_choice)
{
        text_is(TXT, "1");
        text_is(HTML, "1");
        text_is(IMG, NULL);
        text_is("(\"text\" \"enriched\" NIL NIL NIL \"7bit\" 1 1)", NULL);
        text_is(ATT_TXT, NULL);
        /* alternative prefers plain, wherever it is */
        text_is("(" HTML TXT " \"alternative\")", "2");
        text_is("(" TXT HTML " \"alternative\")", "1");
        text_is("(" HTML " \"alternative\")", "1");
        text_is("((" HTML IMG " \"related\")" TXT " \"alternative\")", "2");
        text_is("((" HTML IMG " \"related\") \"alternative\")", "1.1");
        /* mixed: the first child with a text */
        text_is("((" TXT HTML " \"alternative\")" IMG TXT " \"mixed\")", "1.1");
        text_is("(" IMG ATT_TXT HTML TXT " \"mixed\")", "4");
        /* plain anywhere beats an earlier html (corpus mail_test_14.eml, body.9.eml) */
        text_is("(" HTML IMG TXT " \"mixed\")", "3");
        text_is("((" HTML " \"alternative\")((" TXT " \"mixed\") \"mixed\") \"mixed\")", "2.1.1");
        /* related: its start part (by Content-ID), else its first part only */
        text_is("((\"image\" \"png\" NIL \"<i>\" NIL \"base64\" 1)(\"text\" \"html\" NIL \"<h>\" "
                "NIL \"7bit\" 1 1) \"related\" (\"start\" \"<h>\"))",
                "2");
        text_is("(" IMG HTML " \"related\")", NULL);
        text_is("(" HTML IMG TXT " \"related\")", "1");
        text_is("(" IMG " \"mixed\")", NULL);
        /* signed: its content */
        text_is("(((" TXT HTML " \"alternative\") (\"application\" \"pgp-signature\" NIL NIL NIL "
                "\"7bit\" 1) \"signed\")" IMG " \"mixed\")",
                "1.1.1");
        /* an attached message's text is not the message's text */
        text_is("((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 9 " ENV("NIL") " " TXT " 3)" IMG
                                                                              " \"mixed\")",
                NULL);
        text_is("((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 9 " ENV("NIL") " " TXT " 3)" TXT
                                                                              " \"mixed\")",
                "2");
        ck_assert_ptr_null(imap_mime_text_part(NULL));
}
END_TEST

static Suite *mime_name_suite(void)
{
        Suite *s = suite_create("mime_name");
        TCase *tc = tcase_create("filenames");
        tcase_add_test(tc, rfc2231_extended);
        tcase_add_test(tc, rfc2231_continuations);
        tcase_add_test(tc, rfc2047_and_raw);
        tcase_add_test(tc, sanitize_rules);
        suite_add_tcase(s, tc);
        tc = tcase_create("parts");
        tcase_add_test(tc, extensions);
        tcase_add_test(tc, part_names);
        tcase_add_test(tc, long_names_cut_keeping_extension);
        tcase_add_test(tc, long_section_has_no_name);
        tcase_add_test(tc, header_strings);
        tcase_add_test(tc, text_part_choice);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(mime_name_suite());
}
