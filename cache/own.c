#include "cache/own.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "imap/array.h"
#include "imap/conn.h"
#include "imap/parse.h"
#include "imap/quote.h"

/* How long after our last change of a folder its echoes are still expected:
 * NOTIFY and IDLE reports come within milliseconds, but a connection hears
 * of a change only with the answer to its next command. */
#define OWN_WINDOW_MS 5000
/* A VANISHED range wider than this is not looked at UID by UID: news. */
#define OWN_MAX_RANGE 100000u

struct own_pend {
        uint32_t uid;
        char *flags; /* NULL: the message goes; else the flags it gets */
};

struct own_mbox {
        char *raw;
        struct own_pend *v; /* pending per-message changes */
        size_t n, cap;
        unsigned in;     /* messages on their way in (MOVE target, APPEND) */
        uint32_t top;    /* the highest UID our changes gave a message here */
        uint32_t first;  /* the lowest one since our changes here last paused */
        int64_t last_ms; /* when a change of ours last began or ended here */
        UT_hash_handle hh;
};

struct own {
        struct own_mbox *by_raw;
};

struct own *own_new(void)
{
        return calloc(1, sizeof(struct own));
}

void own_free(struct own *o)
{
        if (!o)
                return;
        struct own_mbox *m, *tmp;
        HASH_ITER(hh, o->by_raw, m, tmp)
        {
                HASH_DEL(o->by_raw, m);
                for (size_t i = 0; i < m->n; i++)
                        free(m->v[i].flags);
                free(m->v);
                free(m->raw);
                free(m);
        }
        free(o);
}

static struct own_mbox *own_find(struct own *o, const char *raw)
{
        struct own_mbox *m = NULL;
        if (raw)
                HASH_FIND_STR(o->by_raw, raw, m);
        return m;
}

static struct own_mbox *own_get(struct own *o, const char *raw)
{
        struct own_mbox *m = own_find(o, raw);
        if (m)
                return m;
        m = calloc(1, sizeof(*m));
        if (!m || !(m->raw = strdup(raw))) {
                free(m);
                return NULL;
        }
        HASH_ADD_KEYPTR(hh, o->by_raw, m->raw, strlen(m->raw), m);
        return m;
}

int own_expect(struct own *o, const char *src, const uint32_t *uids, size_t n, const char *dst,
               const char *flags)
{
        int64_t now = imap_now_ms();
        int r = 0;
        struct own_mbox *m = src ? own_get(o, src) : NULL;
        if (src && !m)
                r = -ENOMEM;
        for (size_t i = 0; m && i < n; i++) {
                char *f = flags ? strdup(flags) : NULL;
                if ((flags && !f) || IMAP_ARRAY_GROW(m->v, m->n, m->cap, 16) < 0) {
                        free(f);
                        r = -ENOMEM;
                        break;
                }
                m->v[m->n++] = (struct own_pend){uids[i], f};
        }
        if (m)
                m->last_ms = now;
        struct own_mbox *d = dst ? own_get(o, dst) : NULL;
        if (dst && !d)
                r = -ENOMEM;
        if (d && !d->in && now - d->last_ms > OWN_WINDOW_MS)
                d->first = 0; /* a new run of changes */
        if (d) {
                d->in += (unsigned)n;
                d->last_ms = now;
        }
        return r;
}

void own_done(struct own *o, const char *src, const uint32_t *uids, size_t n, const char *dst,
              const char *flags)
{
        int64_t now = imap_now_ms();
        struct own_mbox *m = own_find(o, src);
        for (size_t i = 0; m && i < n; i++) {
                for (size_t k = 0; k < m->n; k++) {
                        if (m->v[k].uid != uids[i] || !m->v[k].flags != !flags)
                                continue;
                        free(m->v[k].flags);
                        m->v[k] = m->v[--m->n];
                        break;
                }
        }
        if (m)
                m->last_ms = now;
        struct own_mbox *d = own_find(o, dst);
        if (d) {
                d->in = d->in > n ? d->in - (unsigned)n : 0;
                d->last_ms = now;
        }
}

static const struct own_pend *own_pending(const struct own_mbox *om, uint32_t uid, bool gone)
{
        for (size_t i = 0; i < om->n; i++)
                if (om->v[i].uid == uid && !om->v[i].flags == gone)
                        return &om->v[i];
        return NULL;
}

bool own_leaving(struct own *o, const char *mailbox, uint32_t uid)
{
        const struct own_mbox *om = own_find(o, mailbox);
        if (!om)
                return false;
        for (size_t i = 0; i < om->n; i++)
                if (!om->v[i].flags && (!uid || om->v[i].uid == uid))
                        return true;
        return false;
}

static size_t own_gone_count(const struct own_mbox *om)
{
        size_t k = 0;
        for (size_t i = 0; i < om->n; i++)
                k += !om->v[i].flags;
        return k;
}

/* Does flag list (space-separated, a) hold the same flags as b? \Recent is
 * no flag of ours; case does not matter (RFC 3501 flags are atoms). */
static bool own_flag_in(const char *flag, size_t len, const char *list)
{
        for (const char *p = list; *p;) {
                while (*p == ' ')
                        p++;
                size_t l = strcspn(p, " ");
                if (l == len && strncasecmp(p, flag, len) == 0)
                        return true;
                p += l;
        }
        return false;
}

static bool own_subset(const char *a, const char *b)
{
        for (const char *p = a; *p;) {
                while (*p == ' ')
                        p++;
                size_t l = strcspn(p, " ");
                if (l && !(l == 7 && strncasecmp(p, "\\Recent", 7) == 0) && !own_flag_in(p, l, b))
                        return false;
                p += l;
        }
        return true;
}

static bool own_same_flags(const char *a, const char *b)
{
        return own_subset(a, b) && own_subset(b, a);
}

struct own_vanish {
        const struct own_mbox *om;
        struct cache_mbox *m;
        bool news;
};

static void own_vanish_range(void *ctx, unsigned lo, unsigned hi)
{
        struct own_vanish *v = ctx;
        if (v->news || hi - lo > OWN_MAX_RANGE) {
                v->news = true;
                return;
        }
        for (uint64_t u = lo; u <= hi && !v->news; u++)
                if (!own_pending(v->om, (uint32_t)u, true) && cache_msg_by_uid(v->m, (uint32_t)u))
                        v->news = true;
}

/* STATUS (MESSAGES n UIDNEXT u ...) of a folder we just changed: ours if the
 * counts are those of the cache plus or minus what we have on the way. */
static bool own_status(const struct own_mbox *om, const struct cache_mbox *m,
                       const struct imap_response *r)
{
        const struct imap_value *list = r->args ? r->args->next : NULL;
        if (!list || list->type != IMAP_LIST)
                return false;
        if (m->state == CACHE_LISTING_NONE)
                return true; /* nobody listed it: its first listing asks anyway */
        const struct imap_value *msgs = imap_fetch_item(list, "MESSAGES");
        const struct imap_value *next = imap_fetch_item(list, "UIDNEXT");
        /* A refresh that ran across our move may have set an older UIDNEXT:
         * what we gave out ourselves counts too. */
        uint64_t uidnext = m->uidnext > om->top ? m->uidnext : (uint64_t)om->top + 1;
        if (next && next->type == IMAP_NUMBER && m->uidnext && next->num > uidnext + om->in)
                return false;
        /* NOTIFY reports each of our moves in here as the server makes it;
         * the connection that hears it may read it only after the answers
         * to our later moves were applied (a loaded machine). Its UIDNEXT,
         * past the first UID of this run of ours but short of ours now,
         * dates it: the folder as it was before the last (uidnext - UIDNEXT)
         * of our messages came, which the count must match. */
        if (msgs && msgs->type == IMAP_NUMBER && next && next->type == IMAP_NUMBER && om->first &&
            next->num > om->first && next->num < uidnext && uidnext - next->num <= m->nmsgs) {
                uint64_t then = m->nmsgs - (uidnext - next->num);
                return msgs->num <= then && msgs->num + own_gone_count(om) >= then;
        }
        if (msgs && msgs->type == IMAP_NUMBER &&
            (msgs->num + own_gone_count(om) < m->nmsgs || msgs->num > m->nmsgs + om->in))
                return false;
        return msgs || next;
}

static bool own_fetch(const struct own_mbox *om, struct cache_mbox *m, const struct imap_event *ev)
{
        if (!ev->uid || !ev->r || !ev->r->args)
                return false;
        if (own_pending(om, ev->uid, true))
                return true; /* the \Deleted of our expunge, or a message on its way out */
        const struct imap_value *fl = imap_fetch_item(ev->r->args, "FLAGS");
        if (!fl || fl->type != IMAP_LIST)
                return false;
        char *flags = imap_values_join_alloc(fl->first, "\\Recent");
        if (!flags)
                return false;
        const struct own_pend *p = own_pending(om, ev->uid, false);
        struct cache_msg *msg =
            m->state == CACHE_LISTING_VALID ? cache_msg_by_uid(m, ev->uid) : NULL;
        bool own =
            (p && own_same_flags(flags, p->flags)) || (msg && own_same_flags(flags, msg->flags));
        free(flags);
        return own;
}

void own_added(struct own *o, const char *dst, uint32_t uid)
{
        struct own_mbox *d = own_find(o, dst);
        if (d && uid > d->top)
                d->top = uid;
        if (d && (!d->first || uid < d->first))
                d->first = uid;
}

bool own_event(struct own *o, struct cache *c, const struct imap_event *ev)
{
        struct own_mbox *om = own_find(o, ev->mailbox);
        if (!om || (!om->n && !om->in && imap_now_ms() - om->last_ms > OWN_WINDOW_MS))
                return false;
        struct cache_mbox *m = cache_mbox_by_raw(c, ev->mailbox);
        /* A listing being fetched right now needs no word of our change:
         * applying it bumped the listing's generation already, so that
         * refresh can't undo it (cache_msg_move). */
        if (!m || (m->state == CACHE_LISTING_STALE && ev->kind != IMAP_EV_VANISHED))
                return false;
        switch (ev->kind) {
        case IMAP_EV_VANISHED: {
                /* UIDs the listing no longer has, stale or not, are no news
                 * to it: our change took them out already. */
                if (!ev->r || !ev->r->args || ev->r->args->type == IMAP_LIST)
                        return false;
                struct own_vanish v = {om, m, false};
                if (imap_uidset_parse(ev->r->args->s, ev->r->args->len, own_vanish_range, &v) < 0)
                        return false;
                return !v.news;
        }
        case IMAP_EV_EXISTS:
                return m->state == CACHE_LISTING_NONE || ev->n <= m->nmsgs + om->in;
        case IMAP_EV_STATUS:
                return ev->r && own_status(om, m, ev->r);
        case IMAP_EV_FETCH:
                return own_fetch(om, m, ev);
        default:
                return false;
        }
}
