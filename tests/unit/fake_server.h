/* A scripted fake IMAP server on 127.0.0.1 for the Check unit tests: a thread
 * accepts one connection, reads the client's lines and answers from a script,
 * so every byte the session sees is known. A line the script does not expect
 * fails the test in fake_stop(). Shared by test_session, test_ops_parts and
 * test_search_ops so that the scaffold lives in one place. */
#ifndef IMAPFS_TESTS_UNIT_FAKE_SERVER_H
#define IMAPFS_TESTS_UNIT_FAKE_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "imap/session.h"

/* One step: wait for a client line containing expect (NULL: don't read),
 * or for exactly raw_len raw bytes; then send reply with "$T" replaced by the
 * tag of the last line read. reply NULL: close the connection; "$ACCEPT":
 * close it and go on with the script on the client's next connection. */
struct step {
        const char *expect;
        size_t raw_len;
        const char *reply;
        int stall_ms; /* sleep before replying */
};

/* A reply of "$BIG" sends these bytes as they are (a response longer than a
 * script line can hold, e.g. a SEARCH of 200,000 UIDs). The test sets them
 * before fake_start() and owns the buffer. */
extern const char *fake_big;
extern size_t fake_big_len;

struct fake {
        int lfd;
        unsigned port;
        const struct step *script;
        char log[8192]; /* everything the client sent */
        size_t loglen;
        bool failed;
        char why[256];
        pthread_t thread;
};

/* No AUTH=PLAIN: these scripts log in with LOGIN (PLAIN has tests of its own). */
#define GREETING "* OK [CAPABILITY IMAP4rev1] fake ready\r\n"
/* A script's first two steps: the greeting, and LOGIN answered OK with the
 * capabilities caps (a string literal, e.g. "IMAP4rev1 UIDPLUS"). */
/* clang-format off */
#define FAKE_LOGIN(caps) \
        {NULL, 0, GREETING, 0}, {"LOGIN", 0, "$T OK [CAPABILITY " caps "] ok\r\n", 0}
/* clang-format on */

/* Listens on an ephemeral loopback port (f->port) and plays script on the
 * first connection. */
void fake_start(struct fake *f, const struct step *script);
/* Waits for the script to end and fails the test if the client strayed. */
void fake_stop(struct fake *f);
/* An account for the fake server: user "alice", STARTTLS unless plaintext
 * is allowed, 2 s deadline. */
struct imap_account fake_acct(unsigned port, const char *password, bool plaintext);
/* fake_start() and imap_session_open() with password "pw", plaintext allowed. */
int open_plain(struct fake *f, const struct step *script, struct imap_account *a,
               struct imap_session **s);
/* open_plain() that fails the test unless the session opens; returns it. */
struct imap_session *fake_open(struct fake *f, const struct step *script, struct imap_account *a);
/* The end of a scripted test: frees the session, then fake_stop(). */
void fake_finish(struct fake *f, struct imap_session *s);

#endif
