/* SASL mechanisms for IMAP AUTHENTICATE (RFC 4422): what the client sends.
 * The exchange itself (commands, challenges, deadlines) is in session.c;
 * these files only encode, one mechanism per file. Every string returned
 * carries a secret: release it with auth_free, which wipes it. */
#ifndef IMAPFS_IMAP_AUTH_H
#define IMAPFS_IMAP_AUTH_H

#include <stddef.h>

/* base64 of len bytes; NULL when out of memory. */
char *auth_b64(const unsigned char *raw, size_t len);
/* Overwrites and frees (NULL is fine). */
void auth_free(char *s);

/* PLAIN (RFC 4616): base64("\0" user "\0" password). */
char *auth_plain_initial(const char *user, const char *password);

/* XOAUTH2 (Google's and Microsoft's): base64("user=" user "\1auth=Bearer " token "\1\1"). */
char *auth_xoauth2_initial(const char *user, const char *token);
/* OAUTHBEARER (RFC 7628 §3.1): base64 of the GS2 header "n,a=USER," (',' and '='
 * in the user escaped as =2C and =3D, RFC 5801), then "\1host=H\1port=P\1auth=Bearer
 * TOKEN\1\1". */
char *auth_oauthbearer_initial(const char *user, const char *token, const char *host,
                               unsigned port);
/* A server's failure challenge (base64 JSON, RFC 7628 §3.2.2: {"status":"invalid_token",
 * "scope":...}) as one short line for the log: "status invalid_token" or, if it
 * isn't JSON, "" (out is always terminated). */
void auth_oauth_error(const char *challenge_b64, char *out, size_t outlen);

/* A plain explanation of a server answer to a login that is known to
 * confuse (Microsoft's "User is authenticated but not connected"), or NULL. */
const char *auth_explain(const char *server_text);

#endif
