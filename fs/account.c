#include "fs/account.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/names.h"
#include "imap/conn.h"
#include "imap/header.h"
#include "imap/log.h"
#include "imap/ops.h"
#include "imap/utf7.h"

/* Read-ahead grows from the first fetch's size, doubling on each sequential
 * read, up to the cap: a `head` costs one small fetch, a `cat` of a big
 * message few round trips. */
#define RA_MIN_BLOCKS 2u
#define RA_MAX_BLOCKS 16u
/* How many times a reader waits for someone else's fetch before giving up. */
#define READ_MAX_WAITS 4

static char *account_name(void *ctx, uint32_t uid, const char *header, size_t header_len,
                          time_t internaldate)
{
        const struct account *a = ctx;
        if (a->opts.names_uid)
                return names_message_uid(uid);
        char *date = imap_header_field(header, header_len, "Date");
        char *subject = imap_header_field(header, header_len, "Subject");
        char *name = names_message(uid, date, subject, internaldate);
        free(date);
        free(subject);
        return name;
}

/* A mailbox name component as a directory name: decoded from modified
 * UTF-7 when it is valid, else shown as the server spelled it, then escaped. */
static char *account_decode_component(const char *comp)
{
        char *utf8 = imap_utf7_decode(comp, strlen(comp));
        char *esc = names_escape_component(utf8 ? utf8 : comp);
        free(utf8);
        return esc;
}

static void account_on_event(void *ctx, const char *mailbox, const struct imap_response *r)
{
        struct account *a = ctx;
        if (!mailbox || r->kind != IMAP_RESP_UNTAGGED || !r->name)
                return;
        if (strcmp(r->name, "EXISTS") == 0 || strcmp(r->name, "EXPUNGE") == 0 ||
            strcmp(r->name, "FETCH") == 0 || strcmp(r->name, "VANISHED") == 0) {
                cache_lock(a->cache);
                cache_mbox_mark_stale(a->cache, mailbox);
                cache_unlock(a->cache);
        }
}

int account_init(struct account *a)
{
        a->imap.on_event = account_on_event;
        a->imap.event_ctx = a;
        a->pool = imap_pool_new(&a->imap, a->opts.connections);
        a->cache = cache_new(account_name, a);
        a->blocks = blocks_new(a->opts.mem_cache);
        if (!a->pool || !a->cache || !a->blocks)
                return -ENOMEM;
        return 0;
}

void account_destroy(struct account *a)
{
        imap_pool_free(a->pool);
        cache_free(a->cache);
        blocks_free(a->blocks);
}

/* ---- the mailbox tree ---- */

struct tree_entry {
        char *raw;
        char delim;
        unsigned attrs;
};

struct tree_acc {
        struct tree_entry *v;
        size_t n, cap;
        bool oom;
};

static void account_tree_collect(void *ctx, const char *name, char delim, unsigned attrs)
{
        struct tree_acc *t = ctx;
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 32;
                struct tree_entry *nv = realloc(t->v, ncap * sizeof(*nv));
                if (!nv) {
                        t->oom = true;
                        return;
                }
                t->v = nv;
                t->cap = ncap;
        }
        char *raw = strdup(name);
        if (!raw) {
                t->oom = true;
                return;
        }
        t->v[t->n++] = (struct tree_entry){raw, delim, attrs};
}

int account_refresh_tree(struct account *a, int max_age_ms)
{
        cache_lock(a->cache);
        for (;;) {
                if (a->tree_checked_ms && max_age_ms >= 0 &&
                    imap_now_ms() - a->tree_checked_ms < max_age_ms) {
                        cache_unlock(a->cache);
                        return 0;
                }
                if (!a->tree_refreshing)
                        break;
                cache_wait(a->cache);
                max_age_ms = max_age_ms < 0 ? max_age_ms : 1000; /* someone just did it */
        }
        a->tree_refreshing = true;
        cache_unlock(a->cache);

        /* The network part runs without the cache lock. */
        struct tree_acc t = {0};
        struct imap_session *s;
        int r = imap_pool_get(a->pool, NULL, IMAP_POOL_META, &s);
        if (r == 0) {
                r = imap_list_all(s, account_tree_collect, &t);
                imap_pool_put(a->pool, s);
        }
        if (r == 0 && t.oom)
                r = -ENOMEM;

        cache_lock(a->cache);
        if (r == 0) {
                cache_tree_begin(a->cache);
                for (size_t i = 0; i < t.n; i++)
                        cache_tree_add(a->cache, t.v[i].raw, t.v[i].delim, t.v[i].attrs,
                                       account_decode_component);
                cache_tree_end(a->cache);
                a->tree_checked_ms = imap_now_ms();
        }
        a->tree_refreshing = false;
        cache_wake(a->cache);
        cache_unlock(a->cache);
        for (size_t i = 0; i < t.n; i++)
                free(t.v[i].raw);
        free(t.v);
        return r == -ENOENT ? -EIO : r;
}

/* ---- a mailbox listing ---- */

struct listing_msg {
        uint32_t uid;
        uint64_t size;
        time_t internaldate;
        char *flags;
        char *header;
        size_t header_len;
};

struct listing_acc {
        struct listing_msg *v;
        size_t n, cap;
        bool oom;
};

static void account_listing_collect(void *ctx, const struct imap_msg_info *m)
{
        struct listing_acc *l = ctx;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 256;
                struct listing_msg *nv = realloc(l->v, ncap * sizeof(*nv));
                if (!nv) {
                        l->oom = true;
                        return;
                }
                l->v = nv;
                l->cap = ncap;
        }
        struct listing_msg *e = &l->v[l->n];
        e->uid = m->uid;
        e->size = m->size;
        e->internaldate = m->internaldate;
        e->flags = strdup(m->flags);
        e->header = malloc(m->header_len + 1);
        e->header_len = m->header_len;
        if (!e->flags || !e->header) {
                free(e->flags);
                free(e->header);
                l->oom = true;
                return;
        }
        memcpy(e->header, m->header, m->header_len);
        e->header[m->header_len] = '\0';
        l->n++;
}

static void account_listing_free(struct listing_acc *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].flags);
                free(l->v[i].header);
        }
        free(l->v);
}

/* Talks to the server: confirms or refetches one listing. Runs without the
 * cache lock; *known describes what the cache holds. */
static int account_fetch_listing(struct account *a, const char *raw, bool have_listing,
                                 uint32_t known_uidvalidity, uint32_t known_uidnext,
                                 uint32_t known_exists, struct listing_acc *out,
                                 struct imap_select_info *si, bool *changed)
{
        struct imap_session *s;
        int r = imap_pool_get(a->pool, raw, IMAP_POOL_META, &s);
        if (r < 0)
                return r;
        const char *sel = imap_session_selected(s);
        bool was_selected = sel && strcmp(sel, raw) == 0;
        r = imap_select(s, raw, si);
        if (r == 0 && was_selected)
                r = imap_noop(s); /* lets EXISTS/EXPUNGE/FETCH arrive as events */
        if (r == 0) {
                *si = *imap_session_sel_info(s);
                /* A fresh SELECT tells counts, not flags: only a listing that
                 * stayed selected (and so got every change as an event) can be
                 * confirmed without fetching it again. */
                *changed = !have_listing || !was_selected || si->uidvalidity != known_uidvalidity ||
                           si->exists != known_exists ||
                           (si->uidnext && si->uidnext != known_uidnext);
        }
        if (r == 0 && *changed && si->exists > 0)
                r = imap_fetch_listing(s, account_listing_collect, out);
        imap_pool_put(a->pool, s);
        if (r == 0 && out->oom)
                r = -ENOMEM;
        return r;
}

int account_refresh_listing(struct account *a, uint64_t mbox_id, int max_age_ms)
{
        cache_lock(a->cache);
        struct cache_mbox *m;
        for (;;) {
                struct cache_node *n = cache_node_get(a->cache, mbox_id);
                if (!n || n->kind != CACHE_MBOX) {
                        cache_unlock(a->cache);
                        return n ? -ENOTDIR : -ENOENT;
                }
                m = (struct cache_mbox *)n;
                if (!m->raw || (m->attrs & 1u /* IMAP_MBX_NOSELECT */)) {
                        cache_unlock(a->cache);
                        return 0; /* no messages to list */
                }
                bool fresh = m->state == CACHE_LISTING_VALID &&
                             (max_age_ms < 0 || imap_now_ms() - m->checked_ms < max_age_ms);
                if (fresh) {
                        cache_unlock(a->cache);
                        return 0;
                }
                if (!m->refreshing)
                        break;
                cache_wait(a->cache);
        }
        m->refreshing = true;
        char *raw = strdup(m->raw);
        bool have = m->state != CACHE_LISTING_NONE;
        bool stale = m->state == CACHE_LISTING_STALE;
        uint32_t uv = m->uidvalidity, un = m->uidnext, ex = m->exists;
        unsigned gen = m->stale_gen;
        cache_unlock(a->cache);
        if (!raw) {
                cache_lock(a->cache);
                m->refreshing = false; /* m can't go away while refreshing: see below */
                cache_wake(a->cache);
                cache_unlock(a->cache);
                return -ENOMEM;
        }

        struct listing_acc l = {0};
        struct imap_select_info si = {0};
        bool changed = false;
        int r = account_fetch_listing(a, raw, have && !stale, uv, un, ex, &l, &si, &changed);

        cache_lock(a->cache);
        /* The mailbox may have been removed from the tree while we were away:
         * find it again by name rather than trusting m. */
        struct cache_mbox *m2 = cache_mbox_by_raw(a->cache, raw);
        if (m2 && m2->node.id == mbox_id) {
                if (r == 0 && changed) {
                        cache_listing_begin(a->cache, m2, si.uidvalidity, si.uidnext, si.exists);
                        for (size_t i = 0; i < l.n; i++)
                                cache_listing_add(a->cache, m2, l.v[i].uid, l.v[i].size,
                                                  l.v[i].internaldate, l.v[i].flags, l.v[i].header,
                                                  l.v[i].header_len);
                        cache_listing_end(a->cache, m2, imap_now_ms(), gen);
                        log_dbg("listing of %s: %zu messages", raw, m2->nmsgs);
                } else if (r == 0) {
                        if (m2->stale_gen == gen)
                                m2->state = CACHE_LISTING_VALID;
                        m2->checked_ms = imap_now_ms();
                }
                m2->refreshing = false;
        } else if (r == 0) {
                r = -ENOENT;
        }
        cache_wake(a->cache);
        cache_unlock(a->cache);
        account_listing_free(&l);
        free(raw);
        return r;
}

/* ---- reading ---- */

int account_file_open(struct account *a, uint64_t msg_id, struct account_file **out)
{
        struct account_file *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        cache_lock(a->cache);
        struct cache_node *n = cache_node_get(a->cache, msg_id);
        if (!n || n->kind != CACHE_MSG) {
                cache_unlock(a->cache);
                free(f);
                return n ? -EISDIR : -ENOENT;
        }
        struct cache_msg *msg = (struct cache_msg *)n;
        f->mbox_id = msg->mbox->node.id;
        f->mailbox = strdup(msg->mbox->raw);
        f->uidvalidity = msg->mbox->uidvalidity;
        f->uid = msg->uid;
        f->size = msg->size;
        cache_unlock(a->cache);
        if (!f->mailbox) {
                free(f);
                return -ENOMEM;
        }
        atomic_init(&f->next_off, 0);
        atomic_init(&f->ra_blocks, RA_MIN_BLOCKS);
        *out = f;
        return 0;
}

void account_file_close(struct account_file *f)
{
        if (!f)
                return;
        free(f->mailbox);
        free(f);
}

static struct block_key account_key(const struct account_file *f, uint64_t index)
{
        return (struct block_key){f->mbox_id, f->uidvalidity, f->uid, index};
}

/* Fetches blocks [first, first+count) (all claimed by us) in one UID FETCH. */
static int account_fetch_blocks(struct account *a, struct account_file *f, uint64_t first,
                                unsigned count)
{
        uint64_t off = first * BLOCK_SIZE;
        uint64_t end = off + (uint64_t)count * BLOCK_SIZE;
        if (end > f->size)
                end = f->size;
        size_t len = (size_t)(end - off);
        char *buf = malloc(len ? len : 1);
        size_t got = 0;
        int r = buf ? 0 : -ENOMEM;
        struct imap_session *s = NULL;

        if (r == 0)
                r = imap_pool_get(a->pool, f->mailbox, IMAP_POOL_BULK, &s);
        if (r == 0) {
                struct imap_select_info si;
                r = imap_select(s, f->mailbox, &si);
                if (r == 0 && si.uidvalidity != f->uidvalidity)
                        r = -ESTALE; /* the UID names another message now */
                if (r == 0)
                        r = imap_fetch_range(s, f->uid, off, len, buf, &got);
                imap_pool_put(a->pool, s);
        }
        if (r == 0) {
                atomic_fetch_add(&a->fetches, 1);
                atomic_fetch_add(&a->fetched_bytes, got);
        }
        for (unsigned i = 0; i < count; i++) {
                struct block_key k = account_key(f, first + i);
                uint64_t boff = (uint64_t)i * BLOCK_SIZE;
                if (r == 0 && (boff < got || (boff == 0 && got == 0))) {
                        size_t blen = got - boff < BLOCK_SIZE ? got - boff : BLOCK_SIZE;
                        blocks_put(a->blocks, &k, buf + boff, blen);
                } else {
                        blocks_abandon(a->blocks, &k);
                }
        }
        free(buf);
        if (r == -ENOENT || r == -ESTALE) {
                log_warn("message %u in %s is gone from the server", f->uid, f->mailbox);
                cache_lock(a->cache);
                cache_mbox_mark_stale(a->cache, f->mailbox);
                cache_unlock(a->cache);
        }
        return r;
}

int account_file_read(struct account *a, struct account_file *f, uint64_t off, size_t len,
                      char *buf, size_t *got)
{
        *got = 0;
        if (off >= f->size)
                return 0;
        uint64_t end = off + len < f->size ? off + len : f->size;

        /* Sequential reads double the read-ahead; a seek resets it. */
        unsigned ra = atomic_load(&f->ra_blocks);
        if (off == atomic_load(&f->next_off) && off != 0)
                ra = ra * 2 > RA_MAX_BLOCKS ? RA_MAX_BLOCKS : ra * 2;
        else if (off != 0)
                ra = RA_MIN_BLOCKS;
        atomic_store(&f->ra_blocks, ra);

        uint64_t pos = off;
        int waits = 0;
        while (pos < end) {
                uint64_t idx = pos / BLOCK_SIZE;
                struct block_key k = account_key(f, idx);
                size_t n = 0;
                switch (
                    blocks_get(a->blocks, &k, pos % BLOCK_SIZE, end - pos, buf + (pos - off), &n)) {
                case BLOCKS_HIT:
                        if (n == 0)
                                goto done; /* the server had fewer bytes than it said */
                        pos += n;
                        waits = 0;
                        continue;
                case BLOCKS_BUSY:
                        if (++waits > READ_MAX_WAITS)
                                return pos > off ? (*got = pos - off, 0) : -EIO;
                        blocks_wait(a->blocks, &k, a->imap.timeout_ms);
                        continue;
                case BLOCKS_CLAIMED:
                        break;
                }
                /* Fetch what this read needs, and read-ahead beyond it, in one
                 * command, stopping at a block someone else has or fetches. */
                uint64_t need = (end - 1) / BLOCK_SIZE - idx + 1;
                uint64_t want = need > ra ? need : ra;
                uint64_t last = (f->size - 1) / BLOCK_SIZE;
                unsigned count = 1;
                while (count < want && idx + count <= last) {
                        struct block_key kk = account_key(f, idx + count);
                        if (!blocks_try_claim(a->blocks, &kk))
                                break;
                        count++;
                }
                int r = account_fetch_blocks(a, f, idx, count);
                if (r < 0) {
                        if (pos > off)
                                break;
                        return r == -ENOMEM ? -ENOMEM : (r == -ENOENT || r == -ESTALE) ? -EIO : r;
                }
        }
done:
        *got = pos - off;
        atomic_store(&f->next_off, pos);
        return 0;
}
