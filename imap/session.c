#include "imap/session.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/auth.h"
#include "imap/conn.h"
#include <poll.h>
#include "imap/log.h"
#include "imap/rcode.h"

#define SESSION_READ_CHUNK (64u * 1024)
/* compress=auto: see session_measure. */
#define AUTO_MIN_BYTES (512u * 1024)
#define AUTO_SLOW_BYTES_PER_S (8u * 1024 * 1024)

struct imap_session {
        int id;
        const struct imap_account *acct;
        struct imap_conn *conn;
        char *rbuf; /* received bytes; the next response starts at rstart */
        size_t rstart, rlen, rcap;
        struct imap_framer fr;
        unsigned tagseq;
        struct imap_caps caps;
        char *selected;
        struct imap_select_info sel;
        char *permanentflags; /* what sel.permanentflags points to ("" when NULL) */
        bool broken;
        bool timed_out; /* broke because the server went silent past the deadline */
        /* The deadline counts silence, not transfer time: every read that
         * brings bytes moves it to now + timeout, up to this cap (0: no
         * extension), so a big answer on a slow link is not cut off while a
         * server that trickles bytes still can't hold us forever. */
        int64_t deadline_ext, deadline_cap;
        unsigned events; /* changes to the selected mailbox reported so far */
        unsigned ncmds;  /* commands since login */
        unsigned writes; /* commands that change the account, sent (or begun) so far */
        /* While our own command runs (imap_session_quiet): the count before
         * it, and how many messages the held-back responses removed. */
        struct {
                bool on;
                uint32_t exists0;
                uint32_t gone;
                uint32_t ours; /* messages our command adds or removes (1 unless told) */
                uint32_t echo; /* removed by our other changes (own_event) */
        } quiet;
        char *long_args; /* the last result's code arguments when args could not hold them */
        int64_t last_activity;
        /* The quickest command's round trip so far (-1: none yet); read by
         * the pool while another thread uses the session. */
        _Atomic int64_t rtt_ms;
        char who[16]; /* "s3", for log lines */
        /* UIDONLY (RFC 9586) enabled: "* 7 UIDFETCH (FLAGS ...)" names UID 7.
         * Each such response is handed on as "* 7 FETCH (UID 7 FLAGS ...)",
         * the form every reader of FETCH data knows; the two values put in
         * front of its list live here, because the response's arena belongs
         * to the parser (one response is read and dispatched at a time). */
        bool uidonly;
        bool login_backoff; /* login refused with a back-off answer ([UNAVAILABLE], ...) */
        bool opened;        /* imap_session_open finished */
        bool compressing;   /* COMPRESS=DEFLATE is on */
        bool compress_sent; /* COMPRESS was asked for (once: a refusal stands) */
        uint64_t rbytes;    /* bytes received since login (after inflating) */
        /* compress=auto: the answer being read is measured once it has
         * brought AUTO_MIN_BYTES after its first bytes (session_measure),
         * while it still arrives, so that what comes after it can go
         * compressed. m_wait_us: time spent waiting for the link since the
         * first bytes (not the time our callbacks took). */
        bool m_on, m_started;
        bool m_fast; /* an answer of this session measured the link fast */
        uint64_t m_b0;
        int64_t m_wait_us;
        struct imap_value uidonly_name, uidonly_uid;
        char uidonly_buf[16];
};

static atomic_int session_ids;

static bool session_wants_compress(const struct imap_session *s);
static int session_compress(struct imap_session *s);
static void session_measure_start(struct imap_session *s);
static void session_measure_read(struct imap_session *s, int64_t waited_us);
static int64_t session_now_us(void);

static void session_break(struct imap_session *s, const char *why)
{
        if (!s->broken)
                log_warn("%s: connection dropped: %s", s->who, why);
        s->broken = true;
        imap_conn_close(s->conn);
        s->conn = NULL;
}

/* Makes room for want more bytes after rlen; breaks the session on ENOMEM. */
static int session_reserve(struct imap_session *s, size_t want)
{
        if (s->rcap - s->rlen >= want)
                return 0;
        size_t ncap = s->rcap ? s->rcap : SESSION_READ_CHUNK;
        while (ncap - s->rlen < want)
                ncap *= 2;
        char *nb = realloc(s->rbuf, ncap);
        if (!nb) {
                session_break(s, "out of memory");
                return -EIO;
        }
        s->rbuf = nb;
        s->rcap = ncap;
        return 0;
}

/* A SEARCH or ESEARCH line this long is answered in pieces (see below). */
#define SESSION_SEARCH_PIECE (256u * 1024)
/* How far into an ESEARCH line its "ALL " may be. */
#define SESSION_SEARCH_HEAD_MAX 512u

/* The responses answered in pieces: how they start (any case), the word that
 * ends the head each piece repeats (NULL: the start alone), the bytes of
 * their run of numbers and where that run may be cut. */
static const struct {
        const char *start, *head_end, *run;
        char sep;
} session_pieces[] = {
    {"* SEARCH ", NULL, "0123456789 ", ' '},
    {"* ESEARCH ", " ALL ", "0123456789:,", ','},
};

/* Length of the head of the response at b (len bytes) that each piece
 * repeats, or 0 if it is none of session_pieces; *k gets which one. */
static size_t session_piece_head(const char *b, size_t len, size_t *k)
{
        for (*k = 0; *k < sizeof(session_pieces) / sizeof(session_pieces[0]); ++*k) {
                const char *start = session_pieces[*k].start, *end = session_pieces[*k].head_end;
                size_t sl = strlen(start);
                if (strncasecmp(b, start, sl) != 0)
                        continue;
                if (!end)
                        return sl;
                size_t el = strlen(end),
                       lim = len < SESSION_SEARCH_HEAD_MAX ? len : SESSION_SEARCH_HEAD_MAX;
                for (size_t i = sl - 1; i + el <= lim && b[i] != '\n'; i++)
                        if (strncasecmp(b + i, end, el) == 0)
                                return i + el;
                return 0;
        }
        return 0;
}

/* "* SEARCH n n n ..." grows by some 7 bytes per message and passes
 * IMAP_MAX_LINE at about 150,000 (UID SEARCH ALL without ESEARCH); an
 * ESEARCH "ALL 1,3,5,..." of a fragmented folder can too. Rather than let one
 * response shape lift the line limit, the numbers are handed on in pieces as
 * they arrive: each piece is a response of its own (its head, "* SEARCH" or
 * "* ESEARCH (TAG ..) UID ALL", repeated) holding the numbers complete so
 * far, and every consumer adds up the responses it gets. Only the run of
 * numbers is cut, at a separator, so a trailing "(MODSEQ n)" or "COUNT n" and
 * the line end stay whole in the last piece. Returns 1 with *out set, 0 if
 * the pending bytes are no such long line, -EIO if a piece does not parse
 * (the session is broken). */
static int session_search_piece(struct imap_session *s, struct imap_response **out)
{
        size_t len = s->rlen - s->rstart, k;
        if (len < SESSION_SEARCH_PIECE)
                return 0;
        char *b = s->rbuf + s->rstart;
        size_t hl = session_piece_head(b, len, &k);
        if (!hl)
                return 0;
        size_t cut = 0;
        for (size_t i = hl; i < len && b[i] && strchr(session_pieces[k].run, b[i]); i++)
                if (b[i] == session_pieces[k].sep)
                        cut = i;
        if (cut <= hl)
                return 0;
        log_proto(s->who, "S", b, cut);
        s->last_activity = imap_now_ms();
        if (imap_parse(b, cut, out) < 0) {
                session_break(s, "unparsable response from server");
                return -EIO;
        }
        /* The rest is a response of its own: the head is written again just
         * before it, over bytes the piece has already been parsed from (cut
         * > hl, so the rest starts at least 1 byte further on; memmove, as
         * head and destination may overlap). */
        size_t rest = cut + 1 - hl;
        memmove(b + rest, b, hl);
        s->rstart += rest;
        imap_framer_reset(&s->fr);
        return 1;
}

/* UIDONLY's "* 7 UIDFETCH (FLAGS (\\Seen))" → "* 7 FETCH (UID 7 FLAGS
 * (\\Seen))": the number is the UID, not a sequence number, and there are no
 * sequence numbers on such a session (RFC 9586 §3.3). */
static void session_uidfetch(struct imap_session *s, struct imap_response *r)
{
        if (!s->uidonly || r->kind != IMAP_RESP_UNTAGGED || !r->has_number || !r->name ||
            strcmp(r->name, "UIDFETCH") != 0 || !r->args || r->args->type != IMAP_LIST)
                return;
        r->name = (char *)"FETCH"; /* the arena's copy is freed with it; this one is static */
        if (!imap_fetch_item(r->args, "UID")) {
                int n = snprintf(s->uidonly_buf, sizeof(s->uidonly_buf), "%u", r->number);
                s->uidonly_name =
                    (struct imap_value){.type = IMAP_ATOM, .s = (char *)"UID", .len = 3};
                s->uidonly_uid = (struct imap_value){
                    .type = IMAP_NUMBER, .s = s->uidonly_buf, .len = (size_t)n, .num = r->number};
                s->uidonly_name.next = &s->uidonly_uid;
                s->uidonly_uid.next = r->args->first;
                r->args->first = &s->uidonly_name;
        }
        /* No sequence number: nothing may take the UID for one. */
        r->has_number = false;
        r->number = 0;
}

/* Reads until one complete response is framed, then parses it. */
static int session_read_response(struct imap_session *s, int64_t deadline,
                                 struct imap_response **out)
{
        for (;;) {
                int piece = session_search_piece(s, out);
                if (piece != 0)
                        return piece < 0 ? piece : 0;
                ssize_t n = imap_frame(&s->fr, s->rbuf + s->rstart, s->rlen - s->rstart,
                                       s->acct->max_literal);
                if (n < 0) {
                        session_break(s, n == -E2BIG ? "server sent an oversized response"
                                                     : "malformed literal from server");
                        return -EIO;
                }
                if (n > 0) {
                        const char *line = s->rbuf + s->rstart;
                        log_proto(s->who, "S", line, (size_t)n);
                        s->last_activity = imap_now_ms();
                        int r = imap_parse(line, (size_t)n, out);
                        s->rstart += (size_t)n;
                        imap_framer_reset(&s->fr);
                        if (r < 0) {
                                session_break(s, "unparsable response from server");
                                return -EIO;
                        }
                        session_uidfetch(s, *out);
                        return 0;
                }
                /* Compact lazily so that a burst of small responses is not
                 * memmoved once per response. */
                if (s->rstart > 0 && (s->rstart == s->rlen || s->rstart > s->rcap / 2)) {
                        memmove(s->rbuf, s->rbuf + s->rstart, s->rlen - s->rstart);
                        s->rlen -= s->rstart;
                        s->rstart = 0;
                }
                /* A big response grew the buffer: give the memory back once
                 * it is empty, so idle sessions don't keep their peak. */
                if (s->rlen == 0 && s->rcap > 4 * SESSION_READ_CHUNK) {
                        free(s->rbuf);
                        s->rbuf = NULL;
                        s->rcap = 0;
                }
                size_t want = SESSION_READ_CHUNK;
                if (s->fr.literal_left > want)
                        want = s->fr.literal_left > (64u << 20) ? (64u << 20) : s->fr.literal_left;
                if (session_reserve(s, want) < 0)
                        return -EIO;
                int64_t dl = deadline > s->deadline_ext ? deadline : s->deadline_ext;
                int64_t w0 = s->m_on ? session_now_us() : 0;
                ssize_t got = imap_conn_read(s->conn, s->rbuf + s->rlen, s->rcap - s->rlen, dl);
                if (got > 0 && s->deadline_cap) {
                        int64_t ext = imap_now_ms() + s->acct->timeout_ms;
                        s->deadline_ext = ext < s->deadline_cap ? ext : s->deadline_cap;
                }
                if (got <= 0) {
                        s->timed_out = got == -ETIMEDOUT;
                        session_break(s, got == 0            ? "server closed the connection"
                                         : got == -ETIMEDOUT ? "timed out waiting for server"
                                                             : "read error");
                        return -EIO;
                }
                s->rlen += (size_t)got;
                s->rbytes += (uint64_t)got;
                if (s->m_on)
                        session_measure_read(s, session_now_us() - w0);
        }
}

static void session_caps_word(struct imap_caps *c, const char *w)
{
        static const struct {
                const char *name;
                size_t off;
        } table[] = {
            {"IMAP4REV1", offsetof(struct imap_caps, imap4rev1)},
            {"LITERAL+", offsetof(struct imap_caps, literal_plus)},
            {"LITERAL-", offsetof(struct imap_caps, literal_minus)},
            {"UIDPLUS", offsetof(struct imap_caps, uidplus)},
            {"MOVE", offsetof(struct imap_caps, move)},
            {"CONDSTORE", offsetof(struct imap_caps, condstore)},
            {"QRESYNC", offsetof(struct imap_caps, qresync)},
            {"IDLE", offsetof(struct imap_caps, idle)},
            {"NOTIFY", offsetof(struct imap_caps, notify)},
            {"ESEARCH", offsetof(struct imap_caps, esearch)},
            {"ENABLE", offsetof(struct imap_caps, enable)},
            {"SPECIAL-USE", offsetof(struct imap_caps, special_use)},
            {"BINARY", offsetof(struct imap_caps, binary)},
            {"STARTTLS", offsetof(struct imap_caps, starttls)},
            {"LOGINDISABLED", offsetof(struct imap_caps, logindisabled)},
            {"AUTH=PLAIN", offsetof(struct imap_caps, auth_plain)},
            {"SASL-IR", offsetof(struct imap_caps, sasl_ir)},
            {"UNSELECT", offsetof(struct imap_caps, unselect)},
            {"AUTH=XOAUTH2", offsetof(struct imap_caps, auth_xoauth2)},
            {"AUTH=OAUTHBEARER", offsetof(struct imap_caps, auth_oauthbearer)},
            {"MULTISEARCH", offsetof(struct imap_caps, multisearch)},
            {"X-GM-EXT-1", offsetof(struct imap_caps, gmail)},
            {"OBJECTID", offsetof(struct imap_caps, objectid)},
            {"LIST-STATUS", offsetof(struct imap_caps, list_status)},
            {"NAMESPACE", offsetof(struct imap_caps, namespace)},
            {"COMPRESS=DEFLATE", offsetof(struct imap_caps, compress_deflate)},
            {"UIDONLY", offsetof(struct imap_caps, uidonly)},
            {"QUOTA", offsetof(struct imap_caps, quota)},
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (strcasecmp(w, table[i].name) == 0)
                        *(bool *)((char *)c + table[i].off) = true;
        if (strncasecmp(w, "APPENDLIMIT=", 12) == 0)
                c->appendlimit = strtoull(w + 12, NULL, 10);
}

static void session_caps_set(struct imap_session *s, const struct imap_value *v)
{
        memset(&s->caps, 0, sizeof(s->caps));
        for (; v; v = v->next)
                if (v->type == IMAP_ATOM)
                        session_caps_word(&s->caps, v->s);
}

/* Capabilities can come as "* CAPABILITY ..." or as a [CAPABILITY ...] code
 * on any status response; both replace what we knew. */
static bool session_note_caps(struct imap_session *s, const struct imap_response *r)
{
        if (r->code && strcmp(r->code, "CAPABILITY") == 0) {
                session_caps_set(s, r->code_args);
                return false;
        }
        if (r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, "CAPABILITY") == 0) {
                session_caps_set(s, r->args);
                return true;
        }
        return false;
}

static void session_count_range(void *ctx, unsigned lo, unsigned hi)
{
        *(uint64_t *)ctx += (uint64_t)hi - lo + 1;
}

/* How many UIDs a set value names, at most max. */
static uint32_t session_set_count(const struct imap_value *v, uint32_t max)
{
        uint64_t n = 0;
        if ((v->type != IMAP_ATOM && v->type != IMAP_NUMBER) ||
            imap_uidset_parse(v->s, v->len, session_count_range, &n) < 0)
                return 0;
        return n > max ? max : (uint32_t)n;
}

static bool session_is(const struct imap_response *r, const char *name)
{
        return r->kind == IMAP_RESP_UNTAGGED && r->name && strcmp(r->name, name) == 0;
}

/* A live VANISHED (not the EARLIER answer to a resync): how many it removes. */
static uint32_t session_vanished(const struct imap_session *s, const struct imap_response *r)
{
        if (!session_is(r, "VANISHED") || !r->args || r->args->type == IMAP_LIST)
                return 0;
        return session_set_count(r->args, s->sel.exists);
}

/* Keeps the selected mailbox's counts current from any untagged response,
 * claimed by a command or not (SELECT's own data arrives while nothing is
 * selected and goes to the SELECT). */
static void session_track(struct imap_session *s, const struct imap_response *r)
{
        struct imap_select_info *si = &s->sel;
        if (!s->selected || r->kind != IMAP_RESP_UNTAGGED)
                return;
        if (session_is(r, "EXISTS") && r->has_number) {
                uint32_t n = (uint32_t)r->number;
                /* Each new message took a UID at or above UIDNEXT. */
                if (n > si->exists && si->uidnext)
                        si->uidnext += n - si->exists;
                si->exists = n;
        } else if (session_is(r, "EXPUNGE") && r->has_number) {
                if (si->exists > 0)
                        si->exists--;
        } else if (session_is(r, "VANISHED")) {
                si->exists -= session_vanished(s, r);
        } else if (session_is(r, "FETCH") && r->args) {
                /* With CONDSTORE every change carries its MODSEQ. */
                const struct imap_value *ms = imap_fetch_item(r->args, "MODSEQ");
                if (ms && ms->type == IMAP_LIST && ms->first && ms->first->type == IMAP_NUMBER &&
                    ms->first->num > si->highestmodseq)
                        si->highestmodseq = ms->first->num;
        } else if (r->status == IMAP_ST_OK && r->code && r->code_args &&
                   r->code_args->type == IMAP_NUMBER) {
                uint64_t n = r->code_args->num;
                if (strcmp(r->code, "UIDNEXT") == 0 && n <= UINT32_MAX)
                        si->uidnext = (uint32_t)n;
                else if (strcmp(r->code, "HIGHESTMODSEQ") == 0)
                        si->highestmodseq = n;
        }
}

/* True if the event was reported (news), false if it was our own echo. */
static bool session_report(struct imap_session *s, enum imap_event_kind kind, const char *mailbox,
                           const struct imap_response *r)
{
        struct imap_event ev = {.kind = kind, .mailbox = mailbox, .r = r};
        if (r && r->has_number)
                ev.n = (uint32_t)r->number;
        if (kind == IMAP_EV_FETCH && r->args) {
                const struct imap_value *uid = imap_fetch_item(r->args, "UID");
                const struct imap_value *ms = imap_fetch_item(r->args, "MODSEQ");
                if (uid && uid->type == IMAP_NUMBER && uid->num <= UINT32_MAX)
                        ev.uid = (uint32_t)uid->num;
                if (ms && ms->type == IMAP_LIST && ms->first && ms->first->type == IMAP_NUMBER)
                        ev.modseq = ms->first->num;
        }
        if (s->acct->own_event && s->acct->own_event(s->acct->event_ctx, &ev))
                return false;
        if (s->selected && mailbox == s->selected)
                s->events++;
        if (s->acct->on_event)
                s->acct->on_event(s->acct->event_ctx, &ev);
        return true;
}

static void session_fill_result(struct imap_session *s, struct imap_result *res,
                                const struct imap_response *r);

/* An untagged response no command claimed: a change made elsewhere, or ours
 * while quiet. True if it was reported as news. */
static bool session_event(struct imap_session *s, const struct imap_response *r)
{
        static const struct {
                const char *name;
                enum imap_event_kind kind;
                bool counts; /* changes the message count: ours while quiet */
        } table[] = {
            {"EXISTS", IMAP_EV_EXISTS, true},
            {"EXPUNGE", IMAP_EV_EXPUNGE, true},
            {"VANISHED", IMAP_EV_VANISHED, true},
            {"FETCH", IMAP_EV_FETCH, false},
        };
        if (r->status == IMAP_ST_BYE) {
                struct imap_result bye;
                log_info("%s: server says BYE: %s", s->who, r->text ? r->text : "");
                session_fill_result(s, &bye, r);
                /* A server that keeps turning new connections away is left alone. */
                imap_throttle_bye(&bye, !s->opened || s->ncmds <= 1);
                return false;
        }
        if (r->code && strcmp(r->code, "ALERT") == 0)
                log_warn("server alert: %s", r->text);
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return false;
        /* NOTIFY (RFC 5465) reports other mailboxes' changes as STATUS, and
         * mailboxes created, renamed or deleted as LIST. */
        if (strcmp(r->name, "STATUS") == 0 && r->args &&
            (r->args->type == IMAP_STRING || r->args->type == IMAP_ATOM)) {
                return session_report(s, IMAP_EV_STATUS, r->args->s, r);
        }
        if (strcmp(r->name, "LIST") == 0) {
                return session_report(s, IMAP_EV_LIST, NULL, r);
        }
        if (!s->selected)
                return false;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                if (strcmp(r->name, table[i].name) != 0)
                        continue;
                enum imap_event_kind kind = table[i].kind;
                if (kind == IMAP_EV_VANISHED && (!r->args || r->args->type == IMAP_LIST))
                        return false; /* VANISHED (EARLIER): a resync's answer, not news */
                if (s->quiet.on && table[i].counts) {
                        /* Weighed when our command is done (imap_session_quiet).
                         * A VANISHED that is the echo of another change of
                         * ours (made on another connection) explains a count
                         * that dropped, but is not this command's doing. */
                        struct imap_event ev = {.kind = kind, .mailbox = s->selected, .r = r};
                        if (kind == IMAP_EV_EXPUNGE)
                                s->quiet.gone++;
                        else if (kind == IMAP_EV_VANISHED && s->acct->own_event &&
                                 s->acct->own_event(s->acct->event_ctx, &ev))
                                s->quiet.echo += session_set_count(r->args, UINT32_MAX);
                        else if (kind == IMAP_EV_VANISHED)
                                s->quiet.gone += session_set_count(r->args, UINT32_MAX);
                        return false;
                }
                return session_report(s, kind, s->selected, r);
        }
        return false;
}

/* The one way in for untagged responses: capabilities, then the selected
 * mailbox's counts, then the running command's data (fn), then what is left
 * is an event. */
static bool session_untagged(struct imap_session *s, const struct imap_response *r, imap_data_fn fn,
                             void *ctx)
{
        if (session_note_caps(s, r))
                return false;
        session_track(s, r);
        if (fn && fn(ctx, r))
                return false;
        return session_event(s, r);
}

void imap_session_quiet(struct imap_session *s, bool on)
{
        if (on) {
                s->quiet.on = true;
                s->quiet.exists0 = s->sel.exists;
                s->quiet.gone = 0;
                s->quiet.echo = 0;
                s->quiet.ours = 1;
                return;
        }
        if (!s->quiet.on)
                return;
        s->quiet.on = false;
        if (!s->selected)
                return;
        /* Messages that came: the count now, plus what went, minus before. */
        int64_t added = (int64_t)s->sel.exists + s->quiet.gone + s->quiet.echo - s->quiet.exists0;
        /* Echoes (by UID) include our command's own removals: what is left
         * of its allowance is for what came without a UID (EXPUNGE, EXISTS). */
        uint32_t left = s->quiet.echo >= s->quiet.ours ? 0 : s->quiet.ours - s->quiet.echo;
        if (added < 0 || added + s->quiet.gone > left) {
                log_dbg("%s: %s changed beyond our own command (%lld new, %u gone)", s->who,
                        s->selected, (long long)added, s->quiet.gone);
                session_report(s, IMAP_EV_CHANGED, s->selected, NULL);
        }
}

void imap_session_quiet_ours(struct imap_session *s, uint32_t n)
{
        if (s->quiet.on)
                s->quiet.ours = n;
}

/* A code's arguments that don't fit res->args (COPYUID of a big set) are
 * kept whole on the session (imap_session_long_args), never cut. */
static void session_fill_result(struct imap_session *s, struct imap_result *res,
                                const struct imap_response *r)
{
        res->status = r->status;
        snprintf(res->code, sizeof(res->code), "%s", r->code ? r->code : "");
        snprintf(res->text, sizeof(res->text), "%s", r->text ? r->text : "");
        char *all = r->code_args ? imap_values_join_alloc(r->code_args, NULL) : NULL;
        size_t got = imap_values_join(r->code_args, NULL, res->args, sizeof(res->args));
        res->args_cut = r->code_args && (!all || strlen(all) > got);
        if (res->args_cut) {
                free(s->long_args);
                s->long_args = all; /* NULL on ENOMEM: the caller sees args_cut */
        } else {
                free(all);
        }
}

const char *imap_session_long_args(const struct imap_session *s)
{
        return s->long_args;
}

static int session_send(struct imap_session *s, const char *buf, size_t len, bool redact,
                        int64_t deadline)
{
        if (redact)
                log_proto(s->who, "C", "<command with credentials redacted>", 35);
        else
                log_proto(s->who, "C", buf, len);
        int r = imap_conn_write(s->conn, buf, len, deadline);
        if (r < 0) {
                s->timed_out = r == -ETIMEDOUT;
                session_break(s, r == -ETIMEDOUT ? "timed out sending" : "write error");
                return -EIO;
        }
        return 0;
}

/* Waits for the "+" that allows the rest of a synchronizing literal. A tagged
 * answer instead means the server refused the command. */
static int session_await_continuation(struct imap_session *s, const char *tag, imap_data_fn fn,
                                      void *ctx, struct imap_result *res, int64_t deadline,
                                      bool *done)
{
        for (;;) {
                struct imap_response *r;
                if (session_read_response(s, deadline, &r) < 0)
                        return -EIO;
                if (r->kind == IMAP_RESP_CONTINUATION) {
                        imap_response_free(r);
                        return 0;
                }
                if (r->kind == IMAP_RESP_TAGGED && strcmp(r->tag, tag) == 0) {
                        session_fill_result(s, res, r);
                        *done = true;
                        imap_response_free(r);
                        return 0;
                }
                session_untagged(s, r, fn, ctx);
                imap_response_free(r);
        }
}

/* Reads one response. Untagged ones go to fn (or become events; a BYE ends
 * the session with -EIO); a tagged one is handed back in *tagged, its
 * capabilities noted, for the caller to match to its command and free.
 * *tagged is NULL for anything else (a stray "+" outside a literal is
 * ignored). */
static int session_next_tagged(struct imap_session *s, int64_t deadline, imap_data_fn fn, void *ctx,
                               struct imap_response **tagged)
{
        struct imap_response *resp;
        *tagged = NULL;
        if (session_read_response(s, deadline, &resp) < 0)
                return -EIO;
        if (resp->kind == IMAP_RESP_TAGGED) {
                session_note_caps(s, resp);
                *tagged = resp;
                return 0;
        }
        if (resp->kind == IMAP_RESP_UNTAGGED) {
                session_untagged(s, resp, fn, ctx);
                if (resp->status == IMAP_ST_BYE) {
                        imap_response_free(resp);
                        session_break(s, "server said BYE");
                        return -EIO;
                }
        }
        imap_response_free(resp);
        return 0;
}

/* The result of a command from its tagged answer; a BAD is logged. */
static void session_take_result(struct imap_session *s, struct imap_result *res,
                                const struct imap_response *tagged)
{
        session_fill_result(s, res, tagged);
        if (res->status == IMAP_ST_BAD)
                log_warn("%s: server rejected a command: %s", s->who, res->text);
}

/* Reads responses until every tag in tags[0..n) has its tagged answer
 * (res[i] for tags[i]); untagged ones go to fn, else become events. */
static int session_collect(struct imap_session *s, char **tags, size_t n, imap_data_fn fn,
                           void *ctx, struct imap_result *res, int64_t deadline)
{
        size_t left = n;
        while (left > 0) {
                struct imap_response *resp;
                if (session_next_tagged(s, deadline, fn, ctx, &resp) < 0)
                        return -EIO;
                for (size_t i = 0; resp && i < n; i++)
                        if (tags[i] && strcmp(resp->tag, tags[i]) == 0) {
                                session_take_result(s, &res[i], resp);
                                tags[i] = NULL;
                                left--;
                                break;
                        }
                imap_response_free(resp);
        }
        return 0;
}

/* Commands that change the account. Once one of them has left, a failure
 * leaves its outcome unknown: it may have been carried out, so it is never
 * simply sent again (the caller asks the server instead). */
static const char *const session_write_verbs[] = {
    "APPEND", "CREATE",  "DELETE",    "RENAME",      "STORE",       "COPY",
    "MOVE",   "EXPUNGE", "SUBSCRIBE", "UNSUBSCRIBE", "SETMETADATA", "SETACL",
};

static bool session_cmd_writes(const struct imap_cmd *cmd)
{
        const char *p = cmd->buf;
        size_t len = cmd->len;
        if (len >= 4 && strncasecmp(p, "UID ", 4) == 0) {
                p += 4;
                len -= 4;
        }
        size_t w = 0;
        while (w < len && p[w] != ' ' && p[w] != '\r')
                w++;
        for (size_t i = 0; i < sizeof(session_write_verbs) / sizeof(session_write_verbs[0]); i++)
                if (strlen(session_write_verbs[i]) == w &&
                    strncasecmp(p, session_write_verbs[i], w) == 0)
                        return true;
        return false;
}

/* True if the server has closed the connection (or reset it) while it sat
 * idle: the next command would be lost unseen. Checked before a command is
 * sent, so that such a session is replaced while nothing has left yet. */
static bool session_peer_gone(struct imap_session *s)
{
        if (!s->conn || imap_conn_pending(s->conn))
                return false;
        struct pollfd p = {.fd = imap_conn_fd(s->conn), .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) <= 0)
                return false;
        return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* Breaks a session whose connection the server already closed (see
 * session_peer_gone): -EIO before anything was sent. */
static int session_check_alive(struct imap_session *s)
{
        if (s->broken)
                return -EIO;
        if (session_peer_gone(s)) {
                session_break(s, "closed by the server while idle");
                return -EIO;
        }
        return 0;
}

int imap_session_cmd(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                     struct imap_result *res)
{
        char tag[16];
        int64_t deadline = imap_now_ms() + s->acct->timeout_ms;
        bool done = false;

        s->deadline_ext = 0;
        s->deadline_cap = imap_now_ms() + 10 * (int64_t)s->acct->timeout_ms;
        memset(res, 0, sizeof(*res));
        if (session_check_alive(s) < 0)
                return -EIO;
        if (cmd->oom)
                return -ENOMEM;
        /* Another session found the link slow (compress=auto): this one
         * compresses too, before its next command, as no command is on its
         * way now. */
        if (s->opened && session_wants_compress(s) && session_compress(s) < 0)
                return -EIO;
        s->ncmds++;
        if (session_cmd_writes(cmd))
                s->writes++;
        imap_cmd_add(cmd, "\r\n");
        snprintf(tag, sizeof(tag), "A%u", ++s->tagseq);
        size_t taglen = strlen(tag);

        /* The tag and the first segment go out in one write so that a small
         * command is one TCP segment. */
        size_t first = cmd->nsplits ? cmd->splits[0] : cmd->len;
        char *line = malloc(taglen + 1 + first);
        if (!line)
                return -ENOMEM;
        memcpy(line, tag, taglen);
        line[taglen] = ' ';
        memcpy(line + taglen + 1, cmd->buf, first);
        int r = session_send(s, line, taglen + 1 + first, cmd->redact, deadline);
        free(line);
        if (r < 0)
                return r;
        for (size_t i = 0; i < cmd->nsplits && !done; i++) {
                if (session_await_continuation(s, tag, fn, ctx, res, deadline, &done) < 0)
                        return -EIO;
                if (done)
                        break;
                size_t end = i + 1 < cmd->nsplits ? cmd->splits[i + 1] : cmd->len;
                if (session_send(s, cmd->buf + cmd->splits[i], end - cmd->splits[i], cmd->redact,
                                 deadline) < 0)
                        return -EIO;
        }
        if (done)
                return 0;
        char *tags[1] = {tag};
        int64_t t0 = imap_now_ms();
        session_measure_start(s);
        r = session_collect(s, tags, 1, fn, ctx, res, deadline);
        s->m_on = false;
        /* Any command takes at least a round trip: the quickest one so far
         * is the best estimate of it (the pool weighs a wait against a new
         * connection with it). */
        int64_t took = imap_now_ms() - t0, best = atomic_load(&s->rtt_ms);
        if (r == 0 && (best < 0 || took < best))
                atomic_store(&s->rtt_ms, took);
        return r;
}

/* Sends a command that needs no continuation under a fresh tag (written to
 * tag, 16 bytes). */
static int session_send_tagged(struct imap_session *s, struct imap_cmd *cmd, char *tag,
                               int64_t deadline)
{
        s->ncmds++;
        if (session_cmd_writes(cmd))
                s->writes++;
        imap_cmd_add(cmd, "\r\n");
        if (cmd->oom)
                return -ENOMEM;
        snprintf(tag, 16, "A%u", ++s->tagseq);
        size_t taglen = strlen(tag);
        char *line = malloc(taglen + 1 + cmd->len);
        if (!line)
                return -ENOMEM;
        memcpy(line, tag, taglen);
        line[taglen] = ' ';
        memcpy(line + taglen + 1, cmd->buf, cmd->len);
        int r = session_send(s, line, taglen + 1 + cmd->len, cmd->redact, deadline);
        free(line);
        return r;
}

static int session_chain(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                         imap_next_fn next, void *next_ctx, struct imap_result *res);

int imap_session_cmd_chain(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                           imap_next_fn next, void *next_ctx, struct imap_result *res)
{
        if (cmd->nsplits || !next)
                return imap_session_cmd(s, cmd, fn, ctx, res);
        int r = session_chain(s, cmd, fn, ctx, next, next_ctx, res);
        /* On every way out: a measurement left on would count the reads of
         * whatever comes next (an IDLE) from this answer's start. */
        s->m_on = false;
        return r;
}

/* Chained commands the server has not read yet wait in its receive buffer
 * and then in our send buffer: Dovecot reads the next command only after
 * it has written the whole answer before it. Once both buffers are full,
 * writing one more blocks, we stop reading, the server blocks writing its
 * answer, and both wait for the deadline. Kept under what any socket's
 * buffers hold, as pipelining does (PIPE_CHUNK_BYTES): a command is
 * chained only while the commands behind the one being answered have fewer
 * bytes than this, or when there are none. */
#define CHAIN_UNREAD_BYTES 8192u

/* The bytes of the open commands behind the oldest open one (the one whose
 * answer arrives, which the server has read). */
static size_t session_chain_unread(const bool *open, const size_t *lens, size_t n)
{
        size_t sum = 0;
        bool oldest = true;
        for (size_t i = 0; i < n; i++) {
                if (!open[i])
                        continue;
                if (!oldest)
                        sum += lens[i];
                oldest = false;
        }
        return sum;
}

static int session_chain(struct imap_session *s, struct imap_cmd *cmd, imap_data_fn fn, void *ctx,
                         imap_next_fn next, void *next_ctx, struct imap_result *res)
{
        int64_t deadline = imap_now_ms() + s->acct->timeout_ms;
        s->deadline_ext = 0;
        s->deadline_cap = imap_now_ms() + 10 * (int64_t)s->acct->timeout_ms;
        memset(res, 0, sizeof(*res));
        if (session_check_alive(s) < 0)
                return -EIO;
        if (cmd->oom)
                return -ENOMEM;
        if (s->opened && session_wants_compress(s) && session_compress(s) < 0)
                return -EIO;
        char tags[IMAP_CHAIN_MAX][16];
        bool open[IMAP_CHAIN_MAX] = {false};
        struct imap_result other, *bad_other = NULL; /* the first other one not OK */
        size_t lens[IMAP_CHAIN_MAX] = {0};
        struct imap_cmd *held = NULL; /* given by next, not sent yet */
        session_measure_start(s);
        int r = session_send_tagged(s, cmd, tags[0], deadline);
        if (r < 0)
                return r;
        open[0] = true;
        size_t n = 1, left = 1;
        for (;;) {
                /* A command goes out once the server has few unread bytes
                 * of ours (see CHAIN_UNREAD_BYTES), at the latest when the
                 * one before has been answered. */
                size_t unread = session_chain_unread(open, lens, n);
                if (held && (unread == 0 || unread + held->len <= CHAIN_UNREAD_BYTES)) {
                        int64_t dl = imap_now_ms() + s->acct->timeout_ms;
                        if (session_send_tagged(s, held, tags[n], dl) < 0) {
                                /* The answers on their way can't be read
                                 * apart from what follows: the session ends. */
                                session_break(s, "a chained command could not be sent");
                                return -EIO;
                        }
                        lens[n] = held->len;
                        open[n++] = true;
                        left++;
                        deadline = dl;
                        held = NULL;
                }
                if (left == 0)
                        break;
                struct imap_response *resp;
                if (session_next_tagged(s, deadline, fn, ctx, &resp) < 0)
                        return -EIO;
                for (size_t i = 0; resp && i < n; i++) {
                        if (!open[i] || strcmp(resp->tag, tags[i]) != 0)
                                continue;
                        struct imap_result one, *to = i == 0 ? res : &one;
                        session_take_result(s, to, resp);
                        /* Kept apart: the first command's answer may come
                         * after it (RFC 3501 5.5). */
                        if (i > 0 && one.status != IMAP_ST_OK && !bad_other)
                                *(bad_other = &other) = one;
                        open[i] = false;
                        left--;
                        break;
                }
                imap_response_free(resp);
                /* Only while an answer is still coming: after the last
                 * tagged one the caller goes on as usual. A link just found
                 * slow: what follows goes compressed, after this chain
                 * (COMPRESS waits for no command on its way), rather than in
                 * clear behind it. And while compress=auto has not yet seen
                 * this link, nothing is chained before the answer being read
                 * has shown its speed: on a slow link the rest of a scan (up
                 * to 8 MiB) then goes compressed rather than in clear behind
                 * a probe (bench_link --mbit 20). */
                bool unknown = s->m_on && !s->m_fast;
                if (!held && left > 0 && n < IMAP_CHAIN_MAX && !unknown &&
                    !session_wants_compress(s)) {
                        held = next(next_ctx);
                        if (held && held->nsplits) {
                                log_warn("%s: a chained command needs a literal", s->who);
                                held = NULL; /* the caller's bug: dropped, not sent */
                        }
                }
        }
        if (bad_other && res->status == IMAP_ST_OK)
                *res = *bad_other;
        return 0;
}

int64_t imap_session_rtt_ms(const struct imap_session *s)
{
        return atomic_load(&s->rtt_ms);
}

/* How commands are pipelined: at most this many per write and at most this
 * many bytes per write (a server reads a line at a time; Dovecot takes 64
 * KiB lines, most servers 8 KiB or more), and at most PIPE_WINDOW writes
 * unanswered. Two chunks in flight keep the link busy (the next one travels
 * while the server answers the previous one) while bounding what either side
 * buffers, so that we never block writing while the server is blocked
 * writing answers we don't read yet. */
#define PIPE_CHUNK_CMDS 64
#define PIPE_CHUNK_BYTES 8192
#define PIPE_WINDOW 2

/* Reads responses until tags[lo..hi) all have their tagged answer; tagged
 * answers of later commands in flight (up to sent) are taken as well.
 * answered counts what has been taken; untagged responses go to fn, else
 * become events. Tags are "A<seq>" with seq = base + index, so an answer
 * finds its command without a search. */
static int session_collect_window(struct imap_session *s, char **tags, unsigned base, size_t lo,
                                  size_t hi, size_t sent, imap_data_fn fn, void *ctx,
                                  struct imap_result *res, size_t *answered, int64_t deadline)
{
        for (;;) {
                size_t i = lo;
                while (i < hi && !tags[i])
                        i++;
                if (i == hi)
                        return 0;
                struct imap_response *resp;
                if (session_next_tagged(s, deadline, fn, ctx, &resp) < 0)
                        return -EIO;
                if (resp) {
                        char *end;
                        unsigned long seq =
                            resp->tag[0] == 'A' ? strtoul(resp->tag + 1, &end, 10) : 0;
                        size_t k = seq > base ? (size_t)(seq - base - 1) : sent;
                        if (k < sent && tags[k] && strcmp(resp->tag, tags[k]) == 0) {
                                session_take_result(s, &res[k], resp);
                                tags[k] = NULL;
                                (*answered)++;
                        }
                }
                imap_response_free(resp);
        }
}

int imap_session_pipeline(struct imap_session *s, struct imap_cmd **cmds, size_t n, imap_data_fn fn,
                          void *ctx, struct imap_result *res)
{
        bool simple = true;
        for (size_t i = 0; i < n && simple; i++)
                simple = cmds[i]->nsplits == 0 && !cmds[i]->oom;
        if (!simple) {
                /* Synchronizing literals need a round trip each anyway. */
                for (size_t i = 0; i < n; i++) {
                        int r = imap_session_cmd(s, cmds[i], fn, ctx, &res[i]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        s->deadline_ext = 0;
        s->deadline_cap = imap_now_ms() + 10 * (int64_t)s->acct->timeout_ms;
        memset(res, 0, n * sizeof(*res));
        if (session_check_alive(s) < 0)
                return -EIO;
        if (s->opened && session_wants_compress(s) && session_compress(s) < 0)
                return -EIO;
        if (n == 0)
                return 0;
        char(*tagbuf)[16] = calloc(n, sizeof(*tagbuf));
        char **tags = calloc(n, sizeof(*tags));
        /* chunk c holds commands [starts[c], starts[c + 1]) */
        size_t *starts = calloc(n + 1, sizeof(*starts));
        char *buf = malloc(PIPE_CHUNK_BYTES);
        size_t bufcap = PIPE_CHUNK_BYTES;
        int r = tagbuf && tags && starts && buf ? 0 : -ENOMEM;
        unsigned base = s->tagseq;
        size_t nchunks = 0;
        for (size_t i = 0, bytes = 0; r == 0 && i < n; i++) {
                snprintf(tagbuf[i], sizeof(tagbuf[i]), "A%u", base + 1 + (unsigned)i);
                size_t len = strlen(tagbuf[i]) + 1 + cmds[i]->len + 2;
                if (i == 0 || i - starts[nchunks - 1] >= PIPE_CHUNK_CMDS ||
                    bytes + len > PIPE_CHUNK_BYTES) {
                        starts[nchunks++] = i;
                        bytes = 0;
                }
                bytes += len;
        }
        if (r < 0) {
                free(tagbuf);
                free(tags);
                free(starts);
                free(buf);
                return r;
        }
        starts[nchunks] = n;
        s->tagseq += (unsigned)n;
        s->ncmds += (unsigned)n;
        for (size_t i = 0; i < n; i++) {
                if (session_cmd_writes(cmds[i]))
                        s->writes++;
                imap_cmd_add(cmds[i], "\r\n");
                tags[i] = tagbuf[i];
        }
        size_t next = 0, done = 0, answered = 0;
        while (r == 0 && done < nchunks) {
                /* Keep PIPE_WINDOW chunks on their way. */
                while (r == 0 && next < nchunks && next - done < PIPE_WINDOW) {
                        size_t o = 0;
                        bool redact = false;
                        for (size_t i = starts[next]; i < starts[next + 1]; i++) {
                                size_t need = o + strlen(tags[i]) + 1 + cmds[i]->len;
                                if (need > bufcap) {
                                        char *nb = realloc(buf, need);
                                        if (!nb) {
                                                /* Commands before this chunk are out:
                                                 * the session can't go on cleanly. */
                                                session_break(s, "out of memory");
                                                r = -EIO;
                                                break;
                                        }
                                        buf = nb;
                                        bufcap = need;
                                }
                                o += (size_t)sprintf(buf + o, "%s ", tags[i]);
                                memcpy(buf + o, cmds[i]->buf, cmds[i]->len);
                                o += cmds[i]->len;
                                redact |= cmds[i]->redact;
                        }
                        if (r == 0)
                                r = session_send(s, buf, o, redact,
                                                 imap_now_ms() + s->acct->timeout_ms);
                        next++;
                }
                if (r == 0)
                        r = session_collect_window(s, tags, base, starts[done], starts[done + 1],
                                                   starts[next], fn, ctx, res, &answered,
                                                   imap_now_ms() + s->acct->timeout_ms);
                done++;
        }
        free(tagbuf);
        free(tags);
        free(starts);
        free(buf);
        return r;
}

static int session_simple(struct imap_session *s, const char *command, struct imap_result *res)
{
        struct imap_cmd c;
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "%s", command);
        int r = imap_session_cmd(s, &c, NULL, NULL, res);
        imap_cmd_free(&c);
        return r;
}

static int session_greeting(struct imap_session *s, int64_t deadline, char *err, size_t errlen,
                            bool *preauth)
{
        struct imap_response *r;
        if (session_read_response(s, deadline, &r) < 0) {
                snprintf(err, errlen, "no IMAP greeting from %s", s->acct->host);
                return -EPROTO;
        }
        int ret = 0;
        if (r->kind != IMAP_RESP_UNTAGGED ||
            (r->status != IMAP_ST_OK && r->status != IMAP_ST_PREAUTH)) {
                snprintf(err, errlen, "server refused the connection: %s", r->text ? r->text : "");
                ret = -ECONNREFUSED;
                if (r->status == IMAP_ST_BYE) {
                        struct imap_result bye;
                        session_fill_result(s, &bye, r);
                        imap_throttle_bye(&bye, true); /* "Too many connections" */
                }
        }
        *preauth = r->status == IMAP_ST_PREAUTH;
        session_note_caps(s, r);
        imap_response_free(r);
        return ret;
}

static int session_starttls(struct imap_session *s, char *err, size_t errlen)
{
        struct imap_result res;
        const struct imap_account *a = s->acct;

        if (!s->caps.imap4rev1 && session_simple(s, "CAPABILITY", &res) < 0)
                goto broken;
        if (!s->caps.starttls) {
                if (!a->allow_plaintext) {
                        snprintf(err, errlen,
                                 "%s does not offer STARTTLS; refusing to log in without TLS "
                                 "(use imaps:// or -o allow_plaintext)",
                                 a->host);
                        return -EPERM;
                }
                log_warn("%s does not offer STARTTLS: password and mail travel unencrypted "
                         "(allow_plaintext)",
                         a->host);
                return 0;
        }
        if (session_simple(s, "STARTTLS", &res) < 0)
                goto broken;
        if (res.status != IMAP_ST_OK) {
                snprintf(err, errlen, "STARTTLS refused: %s", res.text);
                return -EPROTO;
        }
        /* Bytes the server sent before the handshake are not trustworthy. */
        s->rstart = s->rlen = 0;
        imap_framer_reset(&s->fr);
        int r = imap_conn_start_tls(s->conn, a->tls, a->host, imap_now_ms() + a->timeout_ms, err,
                                    errlen);
        if (r < 0)
                return r;
        memset(&s->caps, 0, sizeof(s->caps));
        return 0;
broken:
        snprintf(err, errlen, "connection to %s lost during STARTTLS", a->host);
        return -EIO;
}

/* The SASL mechanisms we speak (imap/auth_*.c), best first among those
 * using the same secret. after: how a client answers a challenge that follows
 * its initial response, i.e. the server's report of a failure. OAUTHBEARER
 * wants the dummy response %x01 (RFC 7628 §3.2.3), XOAUTH2 an empty line
 * (Google's XOAUTH2 protocol page); PLAIN has no such step, so "*" cancels
 * (RFC 3501 §6.2.2). */
enum session_mech { MECH_PLAIN, MECH_OAUTHBEARER, MECH_XOAUTH2 };
static const struct {
        const char *name;
        const char *after;
} session_mechs[] = {
    [MECH_PLAIN] = {"PLAIN", "*"},
    [MECH_OAUTHBEARER] = {"OAUTHBEARER", "AQ=="},
    [MECH_XOAUTH2] = {"XOAUTH2", ""},
};

/* Runs AUTHENTICATE with the initial response ir (base64). With SASL-IR it
 * rides on the command line, otherwise it answers the server's first, empty
 * challenge. A challenge after it is the server's failure report: kept in
 * detail (decoded for the log) and answered as the mechanism requires, and the
 * tagged NO follows. Returns 0 once the server answered (res), -EIO if the
 * session broke. Nothing carrying the secret is logged. */
static int session_authenticate(struct imap_session *s, enum session_mech m, const char *ir,
                                struct imap_result *res, char *detail, size_t dlen)
{
        char tag[16];
        int64_t deadline = imap_now_ms() + s->acct->timeout_ms;
        bool ir_sent = s->caps.sasl_ir;
        int challenges = 0;

        memset(res, 0, sizeof(*res));
        detail[0] = '\0';
        s->deadline_ext = s->deadline_cap = 0;
        snprintf(tag, sizeof(tag), "A%u", ++s->tagseq);
        size_t cap = strlen(tag) + strlen(ir) + 40;
        char *line = malloc(cap);
        if (!line)
                return -ENOMEM;
        int len = snprintf(line, cap, "%s AUTHENTICATE %s%s%s\r\n", tag, session_mechs[m].name,
                           ir_sent ? " " : "", ir_sent ? ir : "");
        int r = session_send(s, line, (size_t)len, true, deadline);
        OPENSSL_cleanse(line, cap);
        free(line);
        if (r < 0)
                return -EIO;
        for (;;) {
                struct imap_response *resp;
                if (session_read_response(s, deadline, &resp) < 0)
                        return -EIO;
                if (resp->kind == IMAP_RESP_TAGGED && strcmp(resp->tag, tag) == 0) {
                        session_note_caps(s, resp);
                        session_fill_result(s, res, resp);
                        imap_response_free(resp);
                        return 0;
                }
                if (resp->kind != IMAP_RESP_CONTINUATION) {
                        if (resp->kind == IMAP_RESP_UNTAGGED)
                                session_untagged(s, resp, NULL, NULL);
                        bool bye = resp->status == IMAP_ST_BYE;
                        imap_response_free(resp);
                        if (bye) {
                                session_break(s, "server said BYE");
                                return -EIO;
                        }
                        continue;
                }
                const char *answer;
                if (!ir_sent) {
                        answer = ir;
                        ir_sent = true;
                } else {
                        if (m != MECH_PLAIN)
                                auth_oauth_error(resp->text, detail, dlen);
                        /* A server that keeps challenging gets a cancel. */
                        answer = ++challenges > 1 ? "*" : session_mechs[m].after;
                }
                imap_response_free(resp);
                size_t alen = strlen(answer);
                char *out = malloc(alen + 3);
                if (!out)
                        return -ENOMEM;
                memcpy(out, answer, alen);
                memcpy(out + alen, "\r\n", 3);
                r = session_send(s, out, alen + 2, answer == ir, deadline);
                OPENSSL_cleanse(out, alen + 2);
                free(out);
                if (r < 0)
                        return -EIO;
        }
}

/* The one line a refused login ends in: the server's reason, what its
 * failure challenge said, and what a known confusing answer means. */
static void session_login_failed(struct imap_session *s, const char *mech,
                                 const struct imap_result *res, const char *detail, char *err,
                                 size_t errlen)
{
        const char *why = auth_explain(res->text);
        /* "[UNAVAILABLE]" or a throttled login is no wrong password. */
        s->login_backoff = imap_rcode_classify(res).backoff;
        imap_throttle_note(res);
        snprintf(err, errlen, "login as %s%s%s failed: %s%s%s%s%s%s", s->acct->user,
                 mech ? " with " : "", mech ? mech : "", res->code[0] ? "[" : "", res->code,
                 res->code[0] ? "] " : "", res->text, *detail ? "; " : "", detail);
        if (why) {
                size_t n = strlen(err);
                snprintf(err + n, errlen - n, " (%s)", why);
        }
}

/* OAuth2: a token from the account's command for this connection; if the
 * server refuses it, one more from a new run of the command and one more try
 * (the first may have expired between the command and the server). */
static int session_login_oauth(struct imap_session *s, char *err, size_t errlen)
{
        const struct imap_account *a = s->acct;
        enum session_mech m;
        if (s->caps.auth_oauthbearer)
                m = MECH_OAUTHBEARER;
        else if (s->caps.auth_xoauth2)
                m = MECH_XOAUTH2;
        else {
                snprintf(err, errlen,
                         "%s offers neither AUTHENTICATE OAUTHBEARER nor XOAUTH2: "
                         "oauth2_token_command can't be used with it",
                         a->host);
                return -EACCES;
        }
        struct imap_result res, refused;
        char detail[96], refused_detail[96];
        for (int attempt = 0; attempt < 2; attempt++) {
                char *token = a->oauth2_token(a->token_ctx, attempt > 0, err, errlen);
                if (!token)
                        return -EACCES;
                char *ir = m == MECH_OAUTHBEARER
                               ? auth_oauthbearer_initial(a->user, token, a->host, a->port)
                               : auth_xoauth2_initial(a->user, token);
                auth_free(token);
                if (!ir)
                        return -ENOMEM;
                int r = session_authenticate(s, m, ir, &res, detail, sizeof(detail));
                auth_free(ir);
                if (r == -EIO && attempt > 0) {
                        /* Hung up after refusing the first token: its reason
                         * is the one to give. */
                        session_login_failed(s, session_mechs[m].name, &refused, refused_detail,
                                             err, errlen);
                        return -EACCES;
                }
                if (r < 0) {
                        snprintf(err, errlen, "connection to %s lost during login", a->host);
                        return r == -ENOMEM ? r : -EIO;
                }
                if (res.status == IMAP_ST_OK)
                        return 0;
                if (res.status != IMAP_ST_NO)
                        break;
                refused = res;
                memcpy(refused_detail, detail, sizeof(detail));
                log_dbg("%s: %s refused the token (%s%s%s)%s", s->who, session_mechs[m].name,
                        res.text, *detail ? ", " : "", detail,
                        attempt == 0 ? ": running oauth2_token_command again" : "");
        }
        session_login_failed(s, session_mechs[m].name, &res, detail, err, errlen);
        return -EACCES;
}

/* With a password: AUTHENTICATE PLAIN where offered (UTF-8 safe, one round
 * trip with SASL-IR), else LOGIN unless the server disabled it. */
static int session_login_password(struct imap_session *s, char *err, size_t errlen)
{
        const struct imap_account *a = s->acct;
        struct imap_result res;
        char detail[8];
        int r;
        if (s->caps.auth_plain) {
                char *ir = auth_plain_initial(a->user, a->password);
                if (!ir)
                        return -ENOMEM;
                r = session_authenticate(s, MECH_PLAIN, ir, &res, detail, sizeof(detail));
                auth_free(ir);
        } else if (s->caps.logindisabled) {
                snprintf(err, errlen, "server allows neither LOGIN nor AUTHENTICATE PLAIN");
                return -EPROTO;
        } else {
                struct imap_cmd c;
                imap_session_cmd_init(s, &c);
                c.redact = true;
                imap_cmd_add(&c, "LOGIN ");
                imap_cmd_str(&c, a->user);
                imap_cmd_add(&c, " ");
                imap_cmd_str(&c, a->password);
                r = imap_session_cmd(s, &c, NULL, NULL, &res);
                OPENSSL_cleanse(c.buf, c.len);
                imap_cmd_free(&c);
                detail[0] = '\0';
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                snprintf(err, errlen, "connection to %s lost during login", a->host);
                return -EIO;
        }
        if (res.status != IMAP_ST_OK) {
                session_login_failed(s, NULL, &res, detail, err, errlen);
                return -EACCES;
        }
        return 0;
}

static int session_login(struct imap_session *s, char *err, size_t errlen)
{
        const struct imap_account *a = s->acct;
        struct imap_result res;

        if (!s->caps.imap4rev1 && session_simple(s, "CAPABILITY", &res) < 0)
                goto broken;
        int r = a->oauth2_token ? session_login_oauth(s, err, errlen)
                                : session_login_password(s, err, errlen);
        if (r < 0)
                return r;
        /* Capabilities change after login; most servers send them with OK. */
        if (!s->caps.imap4rev1 && session_simple(s, "CAPABILITY", &res) < 0)
                goto broken;
        return 0;
broken:
        snprintf(err, errlen, "connection to %s lost during login", a->host);
        return -EIO;
}

/* ENABLE's answer: what the server really turned on (RFC 5161 §3.2). */
static bool session_enabled_data(void *ctx, const struct imap_response *r)
{
        struct imap_caps *on = ctx;
        if (!session_is(r, "ENABLED"))
                return false;
        for (const struct imap_value *v = r->args; v; v = v->next) {
                if (v->type != IMAP_ATOM)
                        continue;
                if (strcasecmp(v->s, "QRESYNC") == 0)
                        on->qresync = on->condstore = true; /* QRESYNC implies CONDSTORE */
                else if (strcasecmp(v->s, "CONDSTORE") == 0)
                        on->condstore = true;
                else if (strcasecmp(v->s, "UIDONLY") == 0)
                        on->uidonly = true;
        }
        return true;
}

static int session_enable_one(struct imap_session *s, const char *what, struct imap_caps *on)
{
        struct imap_cmd c;
        struct imap_result res;
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "ENABLE %s", what);
        int r = imap_session_cmd(s, &c, session_enabled_data, on, &res);
        imap_cmd_free(&c);
        return r;
}

/* CONDSTORE on: SELECT then reports HIGHESTMODSEQ, which STATUS can be
 * compared with to see flag changes too, and a listing can be brought up to
 * date with CHANGEDSINCE. QRESYNC adds VANISHED: which UIDs went, not just
 * how many. QRESYNC counts only once the server answers "* ENABLED QRESYNC":
 * some advertise it and don't turn it on (iCloud), and would then answer a
 * SELECT (QRESYNC ...) with BAD or without VANISHED. */
static int session_enable(struct imap_session *s)
{
        struct imap_caps on = {0};
        if (!s->caps.enable)
                return 0;
        /* UIDONLY (RFC 9586): no sequence numbers at all, so a mailbox
         * bigger than the server's view of it (Yahoo's message limit) still
         * shows whole. Every command of ours names UIDs already. */
        if (s->caps.uidonly) {
                if (session_enable_one(s, "UIDONLY", &on) < 0)
                        return -EIO;
                s->uidonly = on.uidonly;
                s->caps.uidonly = on.uidonly;
                if (s->uidonly)
                        log_dbg("%s: UIDONLY enabled", s->who);
        }
        if (!(s->caps.condstore || s->caps.qresync))
                return 0;
        if (s->caps.qresync) {
                if (session_enable_one(s, "QRESYNC", &on) < 0)
                        return -EIO;
                if (!on.qresync) {
                        log_dbg("%s: %s advertises QRESYNC but did not enable it: working without",
                                s->who, s->acct->host);
                        s->caps.qresync = false;
                }
        }
        if (!on.condstore && s->caps.condstore && session_enable_one(s, "CONDSTORE", &on) < 0)
                return -EIO;
        return 0;
}

/* COMPRESS=DEFLATE (RFC 4978) after login, where offered and not turned
 * off: IMAP text (listings, headers, base64 bodies) shrinks to a third or
 * less, which a slow or metered link feels. A refusal (COMPRESSIONACTIVE: the
 * TLS layer compresses already) leaves the session as it was. */
static int session_compress(struct imap_session *s)
{
        struct imap_cmd c;
        struct imap_result res;
        if (!s->caps.compress_deflate || s->compress_sent)
                return 0;
        s->compress_sent = true;
        imap_session_cmd_init(s, &c);
        imap_cmd_add(&c, "COMPRESS DEFLATE");
        int r = imap_session_cmd(s, &c, NULL, NULL, &res);
        imap_cmd_free(&c);
        if (r < 0)
                return -EIO;
        if (res.status != IMAP_ST_OK) {
                log_info("%s: COMPRESS refused, working without: %s", s->who, res.text);
                return 0;
        }
        /* Whatever followed the OK in the same read is compressed already. */
        r = imap_conn_start_compress(s->conn, s->rbuf + s->rstart, s->rlen - s->rstart);
        s->rstart = s->rlen = 0;
        if (r < 0) {
                session_break(s, "cannot start compression");
                return -EIO;
        }
        s->compressing = true;
        log_dbg("%s: COMPRESS=DEFLATE on", s->who);
        return 0;
}

/* Whether to compress now: always with compress=yes; with auto once a
 * session of the account measured a slow link (session_measure). */
static bool session_wants_compress(const struct imap_session *s)
{
        if (!s->caps.compress_deflate || s->compress_sent)
                return false;
        switch (s->acct->compress) {
        case IMAP_COMPRESS_YES:
                return true;
        case IMAP_COMPRESS_AUTO:
                return s->acct->slow_link && atomic_load(s->acct->slow_link);
        default:
                return false;
        }
}

/* compress=auto. Compression pays only where the link is slower than the
 * server compresses: the server's deflate (Dovecot's, here: about 20 MB/s of
 * mail per core) then runs while the link would have waited anyway, and a
 * third of the bytes cross it. On a LAN or over loopback the link is faster
 * and the server's deflate is the bottleneck instead (cat of 1,000 messages:
 * 0.68 s instead of 0.24 s). The link shows its speed in a big answer: an
 * answer that, after its first bytes, brought AUTO_MIN_BYTES more while we
 * waited for them longer than AUTO_SLOW_BYTES_PER_S allows (64 Mbit/s, well
 * under what the server compresses; see session_measure_read) marks the
 * link slow for good, as soon as those bytes are in; every
 * session compresses before its next command (one round trip each), and no
 * more commands are chained behind the one in progress. */

static int64_t session_now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void session_measure_start(struct imap_session *s)
{
        s->m_on = s->acct->compress == IMAP_COMPRESS_AUTO && s->acct->slow_link &&
                  s->caps.compress_deflate && !s->compress_sent;
        s->m_started = false;
        s->m_wait_us = 0;
}

/* A read of the answer being measured, after waiting waited_us for it. The
 * first one ends the round trip and the server's start (its wait is not the
 * link's speed; nor is an unknown or stale rtt needed to take it off); from
 * there on only the time spent waiting counts: a client that takes its time
 * over what arrived (sanitizers, a loaded machine, a callback writing to
 * disk) finds the bytes there when it reads, and is no slow link. */
static void session_measure_read(struct imap_session *s, int64_t waited_us)
{
        if (!s->m_started) {
                s->m_started = true;
                s->m_b0 = s->rbytes;
                return;
        }
        s->m_wait_us += waited_us;
        uint64_t bytes = s->rbytes - s->m_b0;
        if (bytes < AUTO_MIN_BYTES)
                return;
        s->m_on = false;
        if (s->compressing || s->compress_sent)
                return;
        int64_t ms = s->m_wait_us / 1000 > 0 ? s->m_wait_us / 1000 : 1;
        uint64_t rate = bytes * 1000 / (uint64_t)ms;
        log_dbg("%s: the link brought %llu kB in %lld ms", s->who,
                (unsigned long long)(bytes / 1024), (long long)ms);
        if (rate >= AUTO_SLOW_BYTES_PER_S) {
                s->m_fast = true;
                return;
        }
        if (!atomic_exchange(s->acct->slow_link, true))
                log_info("%s: the link brought %llu kB in %lld ms (%llu kB/s): compressing "
                         "(COMPRESS=DEFLATE; -o compress=no turns it off)",
                         s->who, (unsigned long long)(bytes / 1024), (long long)ms,
                         (unsigned long long)(rate / 1024));
}

int imap_session_open(const struct imap_account *a, struct imap_session **out, char *err,
                      size_t errlen)
{
        struct imap_session *s = calloc(1, sizeof(*s));
        int64_t deadline = imap_now_ms() + a->timeout_ms;
        bool preauth = false;
        int r;

        if (!s)
                return -ENOMEM;
        s->acct = a;
        atomic_init(&s->rtt_ms, -1);
        s->sel.permanentflags = "";
        s->id = atomic_fetch_add(&session_ids, 1) + 1;
        snprintf(s->who, sizeof(s->who), "s%d", s->id);
        /* A server that asked us to slow down gets no new connection before
         * the time it said (imap/rcode.c); within our deadline we wait. */
        r = imap_throttle_wait(deadline, err, errlen);
        if (r < 0)
                goto fail;
        r = imap_conn_connect(a->host, a->port, deadline, &s->conn, err, errlen);
        if (r < 0)
                goto fail;
        if (a->security == IMAP_SEC_TLS) {
                r = imap_conn_start_tls(s->conn, a->tls, a->host, deadline, err, errlen);
                if (r < 0)
                        goto fail;
        }
        r = session_greeting(s, deadline, err, errlen, &preauth);
        if (r < 0)
                goto fail;
        if (a->security == IMAP_SEC_STARTTLS && preauth && !a->allow_plaintext) {
                /* PREAUTH before STARTTLS would put the whole session in the
                 * clear, and a man in the middle can send it (the STARTTLS
                 * downgrade of CVE-2020-14093). */
                snprintf(err, errlen,
                         "%s sent PREAUTH before TLS; refusing an unencrypted session "
                         "(use imaps:// or -o allow_plaintext)",
                         a->host);
                r = -EPERM;
                goto fail;
        }
        if (a->security == IMAP_SEC_STARTTLS && preauth)
                log_warn("%s sent PREAUTH: the session is unencrypted (allow_plaintext)", a->host);
        if (a->security == IMAP_SEC_STARTTLS && !preauth) {
                r = session_starttls(s, err, errlen);
                if (r < 0)
                        goto fail;
        }
        if (!preauth) {
                r = session_login(s, err, errlen);
                if (r == -EACCES && s->login_backoff)
                        r = -EAGAIN;
                if (r < 0)
                        goto fail;
        }
        if ((session_wants_compress(s) && session_compress(s) < 0) || session_enable(s) < 0) {
                snprintf(err, errlen, "connection to %s lost after login", a->host);
                r = -EIO;
                goto fail;
        }
        log_dbg("%s: logged in to %s as %s", s->who, a->host, a->user);
        s->ncmds = 0;
        s->opened = true;
        *out = s;
        return 0;
fail:
        if (s->timed_out)
                r = -ETIMEDOUT; /* the pool pauses after timeouts, not after refusals */
        imap_session_free(s);
        return r;
}

void imap_session_free(struct imap_session *s)
{
        unsigned long long plain, wire;
        if (!s)
                return;
        if (s->conn && imap_conn_compressed(s->conn, &plain, &wire))
                log_dbg("%s: COMPRESS: %llu bytes as %llu on the wire", s->who, plain, wire);
        imap_conn_close(s->conn);
        free(s->rbuf);
        free(s->selected);
        free(s->permanentflags);
        free(s->long_args);
        free(s);
}

bool imap_session_broken(const struct imap_session *s)
{
        return s->broken;
}

bool imap_session_used(const struct imap_session *s)
{
        return s->ncmds > 0;
}

unsigned imap_session_writes(const struct imap_session *s)
{
        return s->writes;
}

unsigned imap_session_events(const struct imap_session *s)
{
        return s->events;
}

bool imap_session_timed_out(const struct imap_session *s)
{
        return s->timed_out;
}

int64_t imap_session_last_activity(const struct imap_session *s)
{
        return s->last_activity;
}

void imap_session_cid_refused(struct imap_session *s)
{
        s->caps.cid_refused = true;
}

const struct imap_caps *imap_session_caps(const struct imap_session *s)
{
        return &s->caps;
}

void imap_session_cmd_init(const struct imap_session *s, struct imap_cmd *cmd)
{
        imap_cmd_init(cmd, s->caps.literal_plus || s->caps.literal_minus);
        if (!s->caps.literal_plus && s->caps.literal_minus)
                cmd->literal_minus_max = 4096;
}

const char *imap_session_selected(const struct imap_session *s)
{
        return s->selected;
}

void imap_session_set_selected(struct imap_session *s, const char *mailbox,
                               const struct imap_select_info *info)
{
        free(s->selected);
        s->selected = mailbox ? strdup(mailbox) : NULL;
        /* Copied before the old one goes: info may be the session's own. */
        char *perm = info && info->permanentflags && *info->permanentflags
                         ? strdup(info->permanentflags)
                         : NULL;
        if (info && info->permanentflags && *info->permanentflags && !perm)
                log_warn("%s: out of memory keeping PERMANENTFLAGS", s->who);
        free(s->permanentflags);
        s->permanentflags = perm;
        if (info)
                s->sel = *info;
        else
                memset(&s->sel, 0, sizeof(s->sel));
        s->sel.permanentflags = perm ? perm : "";
}

struct imap_select_info *imap_session_sel_info(struct imap_session *s)
{
        return &s->sel;
}

int imap_session_id(const struct imap_session *s)
{
        return s->id;
}

void *imap_session_event_ctx(const struct imap_session *s)
{
        return s->acct->event_ctx;
}

/* True for the untagged responses that say the account changed. */
static bool session_is_change(const struct imap_response *r)
{
        static const char *const names[] = {"EXISTS",   "EXPUNGE", "FETCH",
                                            "VANISHED", "STATUS",  "LIST"};
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return false;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(r->name, names[i]) == 0)
                        return true;
        return false;
}

/* Reads and dispatches every response that is already complete in the
 * buffer or the TLS layer, without waiting. */
static int session_drain(struct imap_session *s, bool *changed)
{
        for (;;) {
                ssize_t n = imap_frame(&s->fr, s->rbuf + s->rstart, s->rlen - s->rstart,
                                       s->acct->max_literal);
                if (n == 0 && !imap_conn_pending(s->conn))
                        return 0;
                struct imap_response *r;
                if (session_read_response(s, imap_now_ms() + s->acct->timeout_ms, &r) < 0)
                        return -EIO;
                if (r->status == IMAP_ST_BYE) {
                        session_event(s, r);
                        imap_response_free(r);
                        session_break(s, "server said BYE");
                        return -EIO;
                }
                /* Only news ends an IDLE: the echo of our own change does not. */
                if (r->kind == IMAP_RESP_UNTAGGED && session_untagged(s, r, NULL, NULL) &&
                    session_is_change(r))
                        *changed = true;
                imap_response_free(r);
        }
}

int imap_session_idle(struct imap_session *s, int wake_fd, int max_ms, bool *changed)
{
        char tag[16];
        struct imap_result res;
        *changed = false;
        if (s->broken)
                return -EIO;
        s->ncmds++;
        s->deadline_ext = s->deadline_cap = 0;
        snprintf(tag, sizeof(tag), "A%u", ++s->tagseq);
        char line[32];
        int len = snprintf(line, sizeof(line), "%s IDLE\r\n", tag);
        int64_t deadline = imap_now_ms() + s->acct->timeout_ms;
        if (session_send(s, line, (size_t)len, false, deadline) < 0)
                return -EIO;
        bool done = false;
        memset(&res, 0, sizeof(res));
        if (session_await_continuation(s, tag, NULL, NULL, &res, deadline, &done) < 0)
                return -EIO;
        if (done)
                return imap_result_errno("IDLE", &res) ? -EPROTO : 0;

        int64_t until = imap_now_ms() + max_ms;
        int r = 0;
        while (!*changed) {
                r = session_drain(s, changed);
                if (r < 0 || *changed)
                        break;
                int64_t left = until - imap_now_ms();
                if (left <= 0)
                        break;
                struct pollfd p[2] = {{.fd = imap_conn_fd(s->conn), .events = POLLIN},
                                      {.fd = wake_fd, .events = POLLIN}};
                int pr = poll(p, wake_fd >= 0 ? 2 : 1, left > 60000 ? 60000 : (int)left);
                if (pr < 0 && errno != EINTR)
                        break;
                if (pr > 0 && (p[1].revents & POLLIN))
                        break;
                if (pr > 0 && p[0].revents) {
                        /* Bytes arrived: take what is there (TLS may need
                         * more than one read for a record). */
                        if (session_reserve(s, SESSION_READ_CHUNK) < 0)
                                return -EIO;
                        ssize_t got = imap_conn_read(s->conn, s->rbuf + s->rlen, s->rcap - s->rlen,
                                                     imap_now_ms() + s->acct->timeout_ms);
                        if (got <= 0) {
                                session_break(s, got == 0 ? "server closed the connection"
                                                          : "read error in IDLE");
                                return -EIO;
                        }
                        s->rlen += (size_t)got;
                        s->last_activity = imap_now_ms();
                }
        }
        if (r < 0)
                return r;
        deadline = imap_now_ms() + s->acct->timeout_ms;
        if (session_send(s, "DONE\r\n", 6, false, deadline) < 0)
                return -EIO;
        char *tags[1] = {tag};
        r = session_collect(s, tags, 1, NULL, NULL, &res, deadline);
        return r;
}
