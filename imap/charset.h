/* Charset labels and iconv conversion to UTF-8, shared by the header decoder
 * (imap/rfc2047.c) and the body decoder (imap/mime_decode.c), so that both
 * read a label the same way. */
#ifndef IMAPFS_IMAP_CHARSET_H
#define IMAPFS_IMAP_CHARSET_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>

/* Room for a normalised charset name, NUL included. */
#define IMAP_CHARSET_MAX 64

/* Copies the len bytes at s upper-cased into out and resolves the narrow
 * labels senders use for a wider repertoire (ISO-8859-1/LATIN1 as
 * WINDOWS-1252, GB2312/GBK/EUC-CN as GB18030, Shift_JIS as WINDOWS-31J,
 * KS_C_5601-1987/EUC-KR as CP949, ISO-8859-8-I as ISO-8859-8). False if it
 * can't be a charset name: empty, IMAP_CHARSET_MAX bytes or more, or any
 * byte other than letters, digits and "-_.:+", so nothing like "//TRANSLIT"
 * reaches iconv_open. */
bool imap_charset_normalize(const char *s, size_t len, char out[IMAP_CHARSET_MAX]);

/* Converts len bytes at in with cd (opened as iconv_open("UTF-8", ...)) into
 * a malloc'd NUL-terminated buffer (*out, *out_len without the NUL), the
 * shift state flushed at the end. A byte that doesn't decode: with replace,
 * U+FFFD and the conversion goes on after it (input cut inside a character:
 * one U+FFFD and the end); without, -EILSEQ and nothing in *out. -ENOMEM. */
int imap_charset_iconv(iconv_t cd, const char *in, size_t len, bool replace, char **out,
                       size_t *out_len);

#endif
