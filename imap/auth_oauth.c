/* OAuth 2.0 bearer tokens over SASL: OAUTHBEARER (RFC 7628) and the older
 * XOAUTH2 that Google and Microsoft speak. Both send the token in the first
 * message; a refusal comes as a challenge holding a JSON error, which the
 * client must answer before the server sends its tagged NO (session.c). */
#include "imap/auth.h"

#include <ctype.h>
#include <stdbool.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *auth_xoauth2_initial(const char *user, const char *token)
{
        size_t n = strlen(user) + strlen(token) + 32;
        char *raw = malloc(n);
        if (!raw)
                return NULL;
        int len = snprintf(raw, n, "user=%s\001auth=Bearer %s\001\001", user, token);
        char *b64 =
            len > 0 && (size_t)len < n ? auth_b64((const unsigned char *)raw, (size_t)len) : NULL;
        OPENSSL_cleanse(raw, n);
        free(raw);
        return b64;
}

/* RFC 5801 saslname: ',' → "=2C", '=' → "=3D". */
static size_t auth_saslname(const char *user, char *out)
{
        size_t o = 0;
        for (const char *p = user; *p; p++) {
                if (*p == ',' || *p == '=') {
                        memcpy(out + o, *p == ',' ? "=2C" : "=3D", 3);
                        o += 3;
                } else {
                        out[o++] = *p;
                }
        }
        out[o] = '\0';
        return o;
}

char *auth_oauthbearer_initial(const char *user, const char *token, const char *host, unsigned port)
{
        size_t n = 3 * strlen(user) + strlen(token) + strlen(host) + 64;
        char *raw = malloc(n), *name = malloc(3 * strlen(user) + 1);
        char *b64 = NULL;
        if (raw && name) {
                auth_saslname(user, name);
                int len =
                    snprintf(raw, n, "n,a=%s,\001host=%s\001port=%u\001auth=Bearer %s\001\001",
                             name, host, port, token);
                if (len > 0 && (size_t)len < n)
                        b64 = auth_b64((const unsigned char *)raw, (size_t)len);
        }
        if (raw)
                OPENSSL_cleanse(raw, n);
        free(raw);
        free(name);
        return b64;
}

/* The string value of "key" in a flat JSON object, into out; false if absent. */
static bool auth_json_string(const char *json, const char *key, char *out, size_t outlen)
{
        char pat[32];
        snprintf(pat, sizeof(pat), "\"%s\"", key);
        const char *p = strstr(json, pat);
        if (!p)
                return false;
        p += strlen(pat);
        while (isspace((unsigned char)*p))
                p++;
        if (*p++ != ':')
                return false;
        while (isspace((unsigned char)*p))
                p++;
        if (*p != '"')
                return false;
        size_t o = 0;
        for (p++; *p && *p != '"' && o + 1 < outlen; p++)
                if (isprint((unsigned char)*p) && *p != '\\')
                        out[o++] = *p;
        out[o] = '\0';
        return true;
}

void auth_oauth_error(const char *challenge_b64, char *out, size_t outlen)
{
        if (outlen)
                out[0] = '\0';
        size_t n = strlen(challenge_b64);
        if (n == 0 || n > 4096 || outlen < 16)
                return;
        unsigned char *json = malloc(n + 1);
        if (!json)
                return;
        int len = EVP_DecodeBlock(json, (const unsigned char *)challenge_b64, (int)n);
        if (len > 0) {
                json[len] = '\0';
                char status[64];
                if (auth_json_string((const char *)json, "status", status, sizeof(status)))
                        snprintf(out, outlen, "status %s", status);
        }
        free(json);
}
