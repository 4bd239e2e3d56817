/* SASL PLAIN (RFC 4616), and the base64 and wiping every mechanism uses. */
#include "imap/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *auth_b64(const unsigned char *raw, size_t len)
{
        if (len > (size_t)INT32_MAX / 2)
                return NULL;
        char *out = malloc(4 * ((len + 2) / 3) + 1);
        if (out)
                EVP_EncodeBlock((unsigned char *)out, raw, (int)len);
        return out;
}

void auth_free(char *s)
{
        if (!s)
                return;
        OPENSSL_cleanse(s, strlen(s));
        free(s);
}

char *auth_plain_initial(const char *user, const char *password)
{
        size_t ul = strlen(user), pl = strlen(password), n = ul + pl + 2;
        unsigned char *raw = malloc(n);
        if (!raw)
                return NULL;
        raw[0] = '\0';
        memcpy(raw + 1, user, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, password, pl);
        char *b64 = auth_b64(raw, n);
        OPENSSL_cleanse(raw, n);
        free(raw);
        return b64;
}
