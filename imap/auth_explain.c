/* Server answers to a failed login that say little or mislead, with what
 * they mean in practice (from the providers' documentation and reports). */
#include "imap/auth.h"

#include <string.h>

static const struct {
        const char *text; /* a part of the server's answer */
        const char *meaning;
} auth_explanations[] = {
    {"User is authenticated but not connected",
     "Microsoft accepted the token but not for this mailbox: the token is for another user "
     "than the one in the URL, the organisation has not approved the app, or IMAP is off for "
     "the mailbox"},
    {"Application-specific password required",
     "Gmail takes no account password here: use an app password or -o oauth2_token_command"},
    {"Please log in via your web browser",
     "the provider wants a login in a web browser first (a security check on the account)"},
    {"Invalid credentials (Failure)",
     "Gmail refused the password or token (with OAuth2: expired, revoked, or without the "
     "https://mail.google.com/ scope)"},
    {"AUTHENTICATE failed",
     "Microsoft refused the token: expired, for another tenant, or without the "
     "IMAP.AccessAsUser.All scope"},
};

const char *auth_explain(const char *server_text)
{
        for (size_t i = 0; i < sizeof(auth_explanations) / sizeof(auth_explanations[0]); i++)
                if (strstr(server_text, auth_explanations[i].text))
                        return auth_explanations[i].meaning;
        return NULL;
}
