/* Digit values for the codecs' escapes: %XX and =XX (hex) and base64. */
#ifndef IMAPFS_IMAP_DIGITS_H
#define IMAPFS_IMAP_DIGITS_H

/* 0-15 for a hex digit (either case), -1 for anything else. */
static inline int imap_hex_value(unsigned char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* 0-63 for a base64 digit, -1 for anything else. digit63 is the last one:
 * '/' in MIME base64, ',' in modified UTF-7 (RFC 3501), which has no '/'. */
static inline int imap_b64_value(unsigned char c, unsigned char digit63)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == digit63)
                return 63;
        return -1;
}

#endif
