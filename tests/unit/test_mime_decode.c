/* Unit tests for the streaming base64 / quoted-printable decoders (expected
 * bytes computed with Python's email package, as get_payload(decode=True)
 * does) at every chunk split, and for the charset conversion. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime_decode.h"
#include "tests/unit/unit_main.h"

struct vec {
        const char *in;
        size_t in_len;
        const char *out;
        size_t out_len;
};

static const struct vec qp_vectors[] = {
    {"abc=3D=3d=\x0d"
     "\x0a"
     "x",
     13, "abc==x", 6},
    {"soft =\x0a"
     "break",
     12, "soft break", 10},
    {"=\x0d"
     "junk\x0a"
     "next",
     11, "next", 4},
    {"==41", 4, "=41", 3},
    {"=G1", 3, "=G1", 3},
    {"=4", 2, "=4", 2},
    {"=", 1, "", 0},
    {"a=\x0d", 3, "a", 1},
    {"tail  \x0d\x0a", 8, "tail  \x0d\x0a", 8},
    {"=41=42=4", 8, "AB=4", 4},
    {"= \x0d\x0a"
     "x",
     5,
     "= \x0d\x0a"
     "x",
     5},
    {"=\xff\xe9", 3, "=\xff\xe9", 3},
    {"=0a=0D", 6, "\x0a\x0d", 2},
    {"x=4g", 4, "x=4g", 4},
    {"", 0, "", 0},
};

static const struct vec b64_vectors[] = {
    {"SGVsbG8=", 8, "Hello", 5},
    {"SGVs\x0d\x0a"
     "bG8=\x0d\x0a",
     12, "Hello", 5},
    {"SGVsbG8", 7, "Hello", 5},
    {"SGVsbA", 6, "Hell", 4},
    {"S GV!sb*G8=", 11, "Hello", 5},
    {"QQ==QkM=", 8, "A", 1},
    {"=QQ==", 5, "A", 1},
    {"QQ=\x0a"
     "=QkM",
     8, "A", 1},
    {"QUJDRA=", 7, "ABCD", 4},
    {"QU=JD", 5, "ABC", 3},
    {"", 0, "", 0},
    {"////", 4, "\xff\xff\xff", 3},
    {"QUI=junk", 8, "AB", 2},
};

/* Decodes in with the given split points: the whole, every two-way split,
 * and one byte at a time, all must give want. */
static void check_all_splits(enum imap_cte cte, const struct vec *v)
{
        char *out = malloc(IMAP_DECODE_MAX_OUT(v->in_len) * (v->in_len + 1) + 8);
        ck_assert_ptr_nonnull(out);
        for (size_t k = 0; k <= v->in_len; k++) {
                struct imap_decoder d;
                imap_decoder_init(&d, cte);
                /* Input copies of exactly their size, so ASan sees over-reads. */
                char *a = malloc(k + 1), *b = malloc(v->in_len - k + 1);
                ck_assert(a && b);
                memcpy(a, v->in, k);
                memcpy(b, v->in + k, v->in_len - k);
                size_t n = imap_decoder_feed(&d, a, k, out);
                ck_assert_uint_le(n, IMAP_DECODE_MAX_OUT(k));
                size_t m = imap_decoder_feed(&d, b, v->in_len - k, out + n);
                ck_assert_uint_le(m, IMAP_DECODE_MAX_OUT(v->in_len - k));
                n += m;
                size_t f = imap_decoder_finish(&d, out + n);
                ck_assert_uint_le(f, 2);
                n += f;
                ck_assert_msg(n == v->out_len && memcmp(out, v->out, n) == 0,
                              "split %zu of \"%.*s\": got %zu bytes \"%.*s\"", k, (int)v->in_len,
                              v->in, n, (int)n, out);
                free(a);
                free(b);
        }
        struct imap_decoder d;
        imap_decoder_init(&d, cte);
        size_t n = 0;
        for (size_t i = 0; i < v->in_len; i++)
                n += imap_decoder_feed(&d, v->in + i, 1, out + n);
        n += imap_decoder_finish(&d, out + n);
        ck_assert_uint_eq(n, v->out_len);
        ck_assert(memcmp(out, v->out, n) == 0);
        /* imap_decode_all agrees. */
        char *all;
        size_t all_len;
        ck_assert_int_eq(imap_decode_all(cte, v->in, v->in_len, &all, &all_len), 0);
        ck_assert_uint_eq(all_len, v->out_len);
        ck_assert(memcmp(all, v->out, all_len) == 0);
        ck_assert_int_eq(all[all_len], '\0');
        free(all);
        free(out);
}

START_TEST(qp_vectors_every_split)
{
        check_all_splits(IMAP_CTE_QP, &qp_vectors[_i]);
}
END_TEST

START_TEST(b64_vectors_every_split)
{
        check_all_splits(IMAP_CTE_BASE64, &b64_vectors[_i]);
}
END_TEST

/* The one documented difference from Python: a lone final data character
 * can't be a byte; Python gives up and returns the payload undecoded. */
START_TEST(b64_single_final_char_dropped)
{
        static const struct vec v[] = {
            {"Q", 1, "", 0},
            {"QUJDR\r\n", 7, "ABC", 3},
        };
        check_all_splits(IMAP_CTE_BASE64, &v[0]);
        check_all_splits(IMAP_CTE_BASE64, &v[1]);
}
END_TEST

START_TEST(identity_is_a_copy)
{
        static const struct vec v = {"=41 QQ==\0\xff", 10, "=41 QQ==\0\xff", 10};
        check_all_splits(IMAP_CTE_IDENTITY, &v);
}
END_TEST

START_TEST(cte_names)
{
        ck_assert_int_eq(imap_cte_from_name("base64"), IMAP_CTE_BASE64);
        ck_assert_int_eq(imap_cte_from_name("BASE64"), IMAP_CTE_BASE64);
        ck_assert_int_eq(imap_cte_from_name(" Base64 \t"), IMAP_CTE_BASE64);
        ck_assert_int_eq(imap_cte_from_name("quoted-printable"), IMAP_CTE_QP);
        ck_assert_int_eq(imap_cte_from_name("Quoted-Printable"), IMAP_CTE_QP);
        ck_assert_int_eq(imap_cte_from_name("quoted-printabl"), IMAP_CTE_IDENTITY);
        ck_assert_int_eq(imap_cte_from_name("base64x"), IMAP_CTE_IDENTITY);
        ck_assert_int_eq(imap_cte_from_name("7bit"), IMAP_CTE_IDENTITY);
        ck_assert_int_eq(imap_cte_from_name("x-uuencode"), IMAP_CTE_IDENTITY);
        ck_assert_int_eq(imap_cte_from_name(""), IMAP_CTE_IDENTITY);
        ck_assert_int_eq(imap_cte_from_name(NULL), IMAP_CTE_IDENTITY);
}
END_TEST

/* A large base64 body with CRLF every 76 characters, fed in chunks of every
 * size from 1 to 100: the same bytes as the source. */
START_TEST(b64_long_roundtrip_chunks)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        enum { N = 3000 };
        unsigned char src[N];
        for (size_t i = 0; i < N; i++)
                src[i] = (unsigned char)(i * 131 + 7);
        char enc[N * 2];
        size_t e = 0, col = 0;
        for (size_t i = 0; i < N; i += 3) {
                unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
                for (int s = 18; s >= 0; s -= 6)
                        enc[e++] = alphabet[(v >> s) & 63];
                if ((col += 4) == 76) {
                        enc[e++] = '\r', enc[e++] = '\n';
                        col = 0;
                }
        }
        char *out = malloc(N + 4);
        ck_assert_ptr_nonnull(out);
        for (size_t chunk = 1; chunk <= 100; chunk++) {
                struct imap_decoder d;
                imap_decoder_init(&d, IMAP_CTE_BASE64);
                size_t n = 0;
                for (size_t i = 0; i < e; i += chunk)
                        n += imap_decoder_feed(&d, enc + i, e - i < chunk ? e - i : chunk, out + n);
                n += imap_decoder_finish(&d, out + n);
                ck_assert_uint_eq(n, N);
                ck_assert(memcmp(out, src, N) == 0);
        }
        free(out);
}
END_TEST

/* The decoder can be reused after finish. */
START_TEST(finish_resets)
{
        struct imap_decoder d;
        char out[16];
        imap_decoder_init(&d, IMAP_CTE_QP);
        ck_assert_uint_eq(imap_decoder_feed(&d, "a=4", 3, out), 1);
        ck_assert_uint_eq(imap_decoder_finish(&d, out), 2);
        ck_assert(memcmp(out, "=4", 2) == 0);
        ck_assert_uint_eq(imap_decoder_feed(&d, "=41", 3, out), 1);
        ck_assert_int_eq(out[0], 'A');
        imap_decoder_init(&d, IMAP_CTE_BASE64);
        ck_assert_uint_eq(imap_decoder_feed(&d, "QQ==", 4, out), 1);
        ck_assert_uint_eq(imap_decoder_feed(&d, "QUJD", 4, out), 0); /* after the pad: ignored */
        ck_assert_uint_eq(imap_decoder_finish(&d, out), 0);
        ck_assert_uint_eq(imap_decoder_feed(&d, "QUJD", 4, out), 3); /* a fresh start */
}
END_TEST

/* ------------------------------------------------------------- charsets */

static void conv_is(const char *cs, const char *in, size_t len, const char *want, size_t want_len)
{
        char *out = NULL;
        size_t n = 99;
        ck_assert_int_eq(imap_charset_to_utf8(cs, in, len, &out, &n), 0);
        ck_assert_ptr_nonnull(out);
        ck_assert_msg(n == want_len && memcmp(out, want, n) == 0, "%s: got %zu \"%.*s\"",
                      cs ? cs : "(null)", n, (int)n, out);
        ck_assert_int_eq(out[n], '\0');
        free(out);
}
#define CONV(cs, in, want) conv_is((cs), (in), sizeof(in) - 1, (want), sizeof(want) - 1)

START_TEST(charset_conversions)
{
        CONV("iso-8859-1", "caf\xe9", "caf\xc3\xa9");
        CONV("ISO-8859-1", "\x80 5", "\xe2\x82\xac 5"); /* read as windows-1252 */
        CONV("latin1", "\xfc", "\xc3\xbc");
        CONV("iso-8859-15", "\xa4", "\xe2\x82\xac");
        CONV(" koi8-r ", "\xf0\xd2\xc9\xd7\xc5\xd4",
             "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
        CONV("shift_jis", "\x82\xa0", "\xe3\x81\x82");
        CONV("gb2312", "\xc4\xe3\xba\xc3", "\xe4\xbd\xa0\xe5\xa5\xbd");
        CONV("utf-16le", "a\0b\0", "ab");
        CONV("windows-1252", "", "");
}
END_TEST

START_TEST(charset_falls_back_to_bytes)
{
        /* Pass-through names, unknown names, names that can't be names, and
         * lying charsets: the bytes as they are, never an error. */
        CONV("utf-8", "caf\xc3\xa9 \xff", "caf\xc3\xa9 \xff");
        CONV("UTF8", "x", "x");
        CONV("us-ascii", "caf\xc3\xa9", "caf\xc3\xa9");
        CONV(NULL, "\xe9", "\xe9");
        CONV("", "\xe9", "\xe9");
        CONV("x-no-such-charset", "\xe9", "\xe9");
        CONV("utf-8//TRANSLIT", "\xe9", "\xe9");
        CONV("iso-2022-jp", "\x1b$B\xff\xff", "\x1b$B\xff\xff"); /* lying */
        CONV("utf-16le", "abc", "abc");                          /* ends inside a character */
        CONV("shift_jis", "\x82", "\x82");
        char longname[200];
        memset(longname, 'a', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        CONV(longname, "\xe9", "\xe9");
}
END_TEST

START_TEST(charset_large_input_grows)
{
        enum { N = 100000 };
        char *in = malloc(N);
        ck_assert_ptr_nonnull(in);
        memset(in, 0xe9, N); /* é: two bytes each in UTF-8 */
        char *out;
        size_t n;
        ck_assert_int_eq(imap_charset_to_utf8("iso-8859-1", in, N, &out, &n), 0);
        ck_assert_uint_eq(n, 2 * N);
        for (size_t i = 0; i < n; i += 2)
                ck_assert(out[i] == '\xc3' && out[i + 1] == '\xa9');
        free(out);
        free(in);
}
END_TEST

START_TEST(text_to_utf8)
{
        char *out;
        size_t n;
        ck_assert_int_eq(
            imap_mime_text_to_utf8("quoted-printable", "iso-8859-1", "caf=E9=\r\n!", 10, &out, &n),
            0);
        ck_assert_uint_eq(n, 6);
        ck_assert_str_eq(out, "caf\xc3\xa9!");
        free(out);
        ck_assert_int_eq(imap_mime_text_to_utf8("BASE64", "koi8-r", "8NLJ18XU", 8, &out, &n), 0);
        ck_assert_str_eq(out, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
        free(out);
        /* 8bit with a lying charset: the bytes as they are. */
        ck_assert_int_eq(imap_mime_text_to_utf8("8bit", "iso-2022-jp", "\xff=41", 4, &out, &n), 0);
        ck_assert_uint_eq(n, 4);
        ck_assert(memcmp(out, "\xff=41", 4) == 0);
        free(out);
        ck_assert_int_eq(imap_mime_text_to_utf8(NULL, NULL, "", 0, &out, &n), 0);
        ck_assert_uint_eq(n, 0);
        free(out);
}
END_TEST

static Suite *mime_decode_suite(void)
{
        Suite *s = suite_create("mime_decode");
        TCase *tc = tcase_create("decoders");
        tcase_add_loop_test(tc, qp_vectors_every_split, 0,
                            (int)(sizeof(qp_vectors) / sizeof(qp_vectors[0])));
        tcase_add_loop_test(tc, b64_vectors_every_split, 0,
                            (int)(sizeof(b64_vectors) / sizeof(b64_vectors[0])));
        tcase_add_test(tc, b64_single_final_char_dropped);
        tcase_add_test(tc, identity_is_a_copy);
        tcase_add_test(tc, cte_names);
        tcase_add_test(tc, b64_long_roundtrip_chunks);
        tcase_add_test(tc, finish_resets);
        suite_add_tcase(s, tc);
        tc = tcase_create("charset");
        tcase_add_test(tc, charset_conversions);
        tcase_add_test(tc, charset_falls_back_to_bytes);
        tcase_add_test(tc, charset_large_input_grows);
        tcase_add_test(tc, text_to_utf8);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return unit_run(mime_decode_suite());
}
