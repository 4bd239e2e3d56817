#include "cache/mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/ops.h" /* IMAP_MBX_* */

struct cache {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint64_t next_id;
        struct cache_node *by_id;  /* every object (hh) */
        struct cache_mbox *by_raw; /* every listed or inferred mailbox (hh_raw) */
        struct cache_mbox *root;
        cache_name_fn name_fn;
        void *name_ctx;
        cache_observe_fn observer;
        void *observer_ctx;
        bool shutdown;   /* waits return at once */
        char *ns_prefix; /* personal namespace prefix ("INBOX."), shown as the root; NULL: none */
};

static void cache_notify(struct cache *c, enum cache_change what, uint64_t parent, const char *name,
                         uint64_t id)
{
        if (c->observer)
                c->observer(c->observer_ctx, what, parent, name, id);
}

void cache_set_observer(struct cache *c, cache_observe_fn fn, void *ctx)
{
        c->observer = fn;
        c->observer_ctx = ctx;
}

static void cache_node_add(struct cache *c, struct cache_node *n, enum cache_kind kind)
{
        n->id = c->next_id++;
        n->kind = kind;
        HASH_ADD(hh, c->by_id, id, sizeof(n->id), n);
}

static void cache_msg_destroy(struct cache *c, struct cache_mbox *m, struct cache_msg *msg)
{
        cache_notify(c, CACHE_NAME_REMOVED, m->node.id, msg->name, msg->node.id);
        HASH_DELETE(hh, c->by_id, &msg->node);
        HASH_DELETE(hh_uid, m->by_uid, msg);
        HASH_DELETE(hh_name, m->by_name, msg);
        m->nmsgs--;
        m->sorted_dirty = true;
        free(msg->flags);
        free(msg->name);
        free(msg);
}

static void cache_msgs_clear(struct cache *c, struct cache_mbox *m)
{
        struct cache_msg *msg, *tmp;
        HASH_ITER(hh_uid, m->by_uid, msg, tmp)
        {
                cache_msg_destroy(c, m, msg);
        }
}

static struct cache_mbox *cache_mbox_create(struct cache *c, struct cache_mbox *parent,
                                            const char *raw, const char *dname)
{
        struct cache_mbox *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->raw = raw ? strdup(raw) : NULL;
        m->dname = strdup(dname);
        if ((raw && !m->raw) || !m->dname) {
                free(m->raw);
                free(m->dname);
                free(m);
                return NULL;
        }
        m->parent = parent;
        cache_node_add(c, &m->node, CACHE_MBOX);
        if (parent) {
                HASH_ADD_KEYPTR(hh_child, parent->children, m->dname, strlen(m->dname), m);
                parent->nchildren++;
                cache_notify(c, CACHE_NAME_ADDED, parent->node.id, m->dname, m->node.id);
        }
        if (m->raw)
                HASH_ADD_KEYPTR(hh_raw, c->by_raw, m->raw, strlen(m->raw), m);
        return m;
}

static void cache_mbox_destroy(struct cache *c, struct cache_mbox *m)
{
        struct cache_mbox *ch, *tmp;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                cache_mbox_destroy(c, ch);
        }
        cache_msgs_clear(c, m);
        if (m->parent) {
                cache_notify(c, CACHE_NAME_REMOVED, m->parent->node.id, m->dname, m->node.id);
                HASH_DELETE(hh_child, m->parent->children, m);
                m->parent->nchildren--;
        }
        if (m->raw)
                HASH_DELETE(hh_raw, c->by_raw, m);
        HASH_DELETE(hh, c->by_id, &m->node);
        free(m->sorted);
        free(m->raw);
        free(m->dname);
        free(m);
}

struct cache *cache_new(cache_name_fn name_fn, void *name_ctx)
{
        struct cache *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        pthread_mutex_init(&c->mu, NULL);
        /* Waits have deadlines on the monotonic clock: a change of the
         * wall clock must not make one longer (or end it early). */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cv, &ca);
        pthread_condattr_destroy(&ca);
        c->next_id = CACHE_ROOT_ID;
        c->name_fn = name_fn;
        c->name_ctx = name_ctx;
        c->root = cache_mbox_create(c, NULL, NULL, "");
        if (!c->root) {
                free(c);
                return NULL;
        }
        c->root->attrs = IMAP_MBX_NOSELECT; /* the root holds no messages */
        c->root->listed = true;
        return c;
}

void cache_free(struct cache *c)
{
        if (!c)
                return;
        cache_mbox_destroy(c, c->root);
        free(c->ns_prefix);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
}

void cache_lock(struct cache *c)
{
        pthread_mutex_lock(&c->mu);
}

void cache_unlock(struct cache *c)
{
        pthread_mutex_unlock(&c->mu);
}

int cache_wait(struct cache *c, int64_t deadline_ms)
{
        if (c->shutdown)
                return -ESHUTDOWN;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= deadline_ms)
                return -ETIMEDOUT;
        struct timespec ts = {.tv_sec = deadline_ms / 1000,
                              .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
        return pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

void cache_wake(struct cache *c)
{
        pthread_cond_broadcast(&c->cv);
}

void cache_shutdown(struct cache *c)
{
        pthread_mutex_lock(&c->mu);
        c->shutdown = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
}

struct cache_node *cache_node_get(struct cache *c, uint64_t id)
{
        struct cache_node *n;
        HASH_FIND(hh, c->by_id, &id, sizeof(id), n);
        return n;
}

struct cache_mbox *cache_root(struct cache *c)
{
        return c->root;
}

struct cache_mbox *cache_mbox_child(struct cache_mbox *parent, const char *dname)
{
        struct cache_mbox *m;
        HASH_FIND(hh_child, parent->children, dname, strlen(dname), m);
        return m;
}

struct cache_mbox *cache_mbox_by_raw(struct cache *c, const char *raw)
{
        struct cache_mbox *m;
        HASH_FIND(hh_raw, c->by_raw, raw, strlen(raw), m);
        return m;
}

struct cache_msg *cache_msg_by_name(struct cache_mbox *m, const char *name)
{
        struct cache_msg *msg;
        HASH_FIND(hh_name, m->by_name, name, strlen(name), msg);
        return msg;
}

struct cache_msg *cache_msg_by_uid(struct cache_mbox *m, uint32_t uid)
{
        struct cache_msg *msg;
        HASH_FIND(hh_uid, m->by_uid, &uid, sizeof(uid), msg);
        return msg;
}

/* ---- tree ---- */

static void cache_tree_mark(struct cache_mbox *m, bool v)
{
        struct cache_mbox *ch, *tmp;
        m->mark = v;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                cache_tree_mark(ch, v);
        }
}

void cache_tree_begin(struct cache *c)
{
        cache_tree_mark(c->root, false);
        c->root->mark = true;
}

int cache_tree_add(struct cache *c, const char *raw, char delim, unsigned attrs,
                   cache_decode_fn decode, void *decode_ctx)
{
        /* INBOX is case-insensitive (RFC 3501 §5.1): always show it as INBOX. */
        bool inbox = strcasecmp(raw, "INBOX") == 0;
        const char *name = inbox ? "INBOX" : raw;
        struct cache_mbox *parent = c->root;
        size_t len = strlen(name);
        /* Under a personal namespace prefix ("INBOX." on Courier, Cyrus with
         * altnamespace: no) the folders show at the top, not one level down:
         * the walk starts after the prefix, raw names keep it. */
        size_t pl = c->ns_prefix ? strlen(c->ns_prefix) : 0;
        size_t skip = pl && len > pl && strncmp(raw, c->ns_prefix, pl) == 0 ? pl : 0;
        char *prefix = malloc(len + 1);
        if (!prefix)
                return -ENOMEM;

        /* Walk the components, creating inferred parents (not listed
         * themselves) on the way. An INBOX child such as "INBOX.Sub" keeps the
         * server's spelling of the INBOX prefix in its raw name. */
        size_t start = skip;
        for (;;) {
                const char *d = delim ? memchr(name + start, delim, len - start) : NULL;
                size_t end = d ? (size_t)(d - name) : len;
                memcpy(prefix, raw, end);
                prefix[end] = '\0';
                char *comp = strndup(name + start, end - start);
                char *dname = comp ? decode(decode_ctx, comp) : NULL;
                free(comp);
                if (!dname) {
                        free(prefix);
                        return -ENOMEM;
                }
                struct cache_mbox *m = cache_mbox_child(parent, dname);
                if (!m) {
                        m = cache_mbox_create(c, parent, d ? prefix : raw, dname);
                        if (!m) {
                                free(dname);
                                free(prefix);
                                return -ENOMEM;
                        }
                        m->delim = delim;
                        if (d)
                                m->attrs = IMAP_MBX_NOSELECT; /* until LIST says otherwise */
                }
                free(dname);
                m->mark = true;
                if (!d) {
                        m->attrs = attrs;
                        m->listed = true;
                        m->delim = delim;
                        break;
                }
                parent = m;
                start = end + 1;
        }
        free(prefix);
        return 0;
}

static void cache_tree_sweep(struct cache *c, struct cache_mbox *m)
{
        struct cache_mbox *ch, *tmp;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                if (!ch->mark)
                        cache_mbox_destroy(c, ch);
                else
                        cache_tree_sweep(c, ch);
        }
}

int cache_set_ns_prefix(struct cache *c, const char *prefix)
{
        char *p = prefix && *prefix ? strdup(prefix) : NULL;
        if (prefix && *prefix && !p)
                return -ENOMEM;
        free(c->ns_prefix);
        c->ns_prefix = p;
        return 0;
}

const char *cache_ns_prefix(const struct cache *c)
{
        return c->ns_prefix ? c->ns_prefix : "";
}

void cache_tree_end(struct cache *c)
{
        cache_tree_sweep(c, c->root);
}

/* ---- listing ---- */

void cache_listing_begin(struct cache *c, struct cache_mbox *m, uint32_t uidvalidity,
                         uint32_t uidnext, uint32_t exists, uint64_t highestmodseq)
{
        m->observed = m->state != CACHE_LISTING_NONE;
        m->highestmodseq = highestmodseq;
        struct cache_msg *msg, *tmp;
        /* A new UIDVALIDITY means every UID we know may name another message. */
        if (m->uidvalidity != uidvalidity)
                cache_msgs_clear(c, m);
        m->uidvalidity = uidvalidity;
        m->uidnext = uidnext;
        m->exists = exists;
        HASH_ITER(hh_uid, m->by_uid, msg, tmp)
        {
                msg->mark = false;
        }
}

static int cache_listing_insert(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                                time_t internaldate, const char *flags, char *name)
{
        struct cache_msg *msg = cache_msg_by_uid(m, uid);
        char *nflags = strdup(flags ? flags : "");
        if (!nflags || !name) {
                free(nflags);
                free(name);
                return -ENOMEM;
        }
        if (msg) {
                /* Size, date and name of a UID never change; flags do. */
                free(msg->flags);
                msg->flags = nflags;
                msg->mark = true;
                free(name);
                return 0;
        }
        msg = calloc(1, sizeof(*msg));
        if (!msg) {
                free(nflags);
                free(name);
                return -ENOMEM;
        }
        msg->uid = uid;
        msg->size = size;
        msg->internaldate = internaldate;
        msg->flags = nflags;
        msg->name = name;
        msg->mbox = m;
        msg->mark = true;
        cache_node_add(c, &msg->node, CACHE_MSG);
        HASH_ADD(hh_uid, m->by_uid, uid, sizeof(msg->uid), msg);
        HASH_ADD_KEYPTR(hh_name, m->by_name, msg->name, strlen(msg->name), msg);
        m->nmsgs++;
        m->sorted_dirty = true;
        if (m->observed)
                cache_notify(c, CACHE_NAME_ADDED, m->node.id, msg->name, msg->node.id);
        return 0;
}

int cache_listing_add(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                      time_t internaldate, const char *flags, const char *header, size_t header_len)
{
        char *name = cache_msg_by_uid(m, uid)
                         ? strdup("")
                         : c->name_fn(c->name_ctx, uid, header, header_len, internaldate);
        return cache_listing_insert(c, m, uid, size, internaldate, flags, name);
}

int cache_listing_add_named(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                            time_t internaldate, const char *flags, const char *name)
{
        /* A name from disk is checked like one we made: it becomes a file name. */
        if (!name || !*name || strchr(name, '/') || strlen(name) > 255)
                return -EINVAL;
        if (cache_msg_by_name(m, name) && !cache_msg_by_uid(m, uid))
                return -EEXIST;
        return cache_listing_insert(c, m, uid, size, internaldate, flags, strdup(name));
}

void cache_listing_end(struct cache *c, struct cache_mbox *m, int64_t now_ms, unsigned gen_at_start)
{
        struct cache_msg *msg, *tmp;
        HASH_ITER(hh_uid, m->by_uid, msg, tmp)
        {
                /* A listing fetched when UIDNEXT was n says nothing about
                 * UIDs from n on: such a message came in since (our own move
                 * or append, applied while the listing was on its way). */
                if (!msg->mark && !(m->uidnext && msg->uid >= m->uidnext))
                        cache_msg_destroy(c, m, msg);
        }
        m->state = m->stale_gen == gen_at_start ? CACHE_LISTING_VALID : CACHE_LISTING_STALE;
        m->observed = true;
        m->checked_ms = now_ms;
}

uint64_t cache_id_alloc(struct cache *c)
{
        return c->next_id++;
}

void cache_mbox_remove(struct cache *c, struct cache_mbox *m)
{
        if (m != c->root)
                cache_mbox_destroy(c, m);
}

int cache_msg_move(struct cache *c, struct cache_msg *msg, struct cache_mbox *target,
                   uint32_t new_uid, char *new_name)
{
        (void)c;
        if (cache_msg_by_uid(target, new_uid) || cache_msg_by_name(target, new_name))
                return -EEXIST;
        struct cache_mbox *src = msg->mbox;
        HASH_DELETE(hh_uid, src->by_uid, msg);
        HASH_DELETE(hh_name, src->by_name, msg);
        src->nmsgs--;
        src->sorted_dirty = true;
        free(msg->name);
        msg->name = new_name;
        msg->uid = new_uid;
        msg->mbox = target;
        msg->mark = true;
        HASH_ADD(hh_uid, target->by_uid, uid, sizeof(msg->uid), msg);
        HASH_ADD_KEYPTR(hh_name, target->by_name, msg->name, strlen(msg->name), msg);
        target->nmsgs++;
        target->sorted_dirty = true;
        /* A refresh of either listing fetched before this move must not be
         * taken as the truth: it would bring the message back in src, or
         * (a full one) drop it from target. */
        src->stale_gen++;
        target->stale_gen++;
        return 0;
}

void cache_msg_remove(struct cache *c, struct cache_msg *msg)
{
        cache_msg_destroy(c, msg->mbox, msg);
}

int cache_msg_set_flags(struct cache_msg *msg, const char *flags)
{
        char *f = strdup(flags);
        if (!f)
                return -ENOMEM;
        free(msg->flags);
        msg->flags = f;
        return 0;
}

/* Gives m and its subtree raw names under a new prefix (old_len bytes of
 * each raw name are replaced by new_prefix). */
static int cache_mbox_reprefix(struct cache *c, struct cache_mbox *m, size_t old_len,
                               const char *new_prefix)
{
        size_t rest = strlen(m->raw) - old_len;
        size_t np = strlen(new_prefix);
        char *raw = malloc(np + rest + 1);
        if (!raw)
                return -ENOMEM;
        memcpy(raw, new_prefix, np);
        memcpy(raw + np, m->raw + old_len, rest + 1);
        HASH_DELETE(hh_raw, c->by_raw, m);
        free(m->raw);
        m->raw = raw;
        HASH_ADD_KEYPTR(hh_raw, c->by_raw, m->raw, strlen(m->raw), m);
        struct cache_mbox *ch, *tmp;
        HASH_ITER(hh_child, m->children, ch, tmp)
        {
                if (ch->raw && cache_mbox_reprefix(c, ch, old_len, new_prefix) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int cache_mbox_rename(struct cache *c, struct cache_mbox *m, struct cache_mbox *new_parent,
                      const char *new_dname, const char *new_raw)
{
        char *dname = strdup(new_dname);
        if (!dname || !m->raw) {
                free(dname);
                return -ENOMEM;
        }
        int r = cache_mbox_reprefix(c, m, strlen(m->raw), new_raw);
        if (r < 0) {
                free(dname);
                return r;
        }
        HASH_DELETE(hh_child, m->parent->children, m);
        m->parent->nchildren--;
        free(m->dname);
        m->dname = dname;
        m->parent = new_parent;
        HASH_ADD_KEYPTR(hh_child, new_parent->children, m->dname, strlen(m->dname), m);
        new_parent->nchildren++;
        return 0;
}

static int cache_msg_cmp(const void *a, const void *b)
{
        const struct cache_msg *x = *(const struct cache_msg *const *)a;
        const struct cache_msg *y = *(const struct cache_msg *const *)b;
        return strcmp(x->name, y->name);
}

struct cache_msg **cache_mbox_sorted(struct cache_mbox *m)
{
        if (m->sorted && !m->sorted_dirty)
                return m->sorted;
        struct cache_msg **v = realloc(m->sorted, (m->nmsgs ? m->nmsgs : 1) * sizeof(*v));
        if (!v)
                return NULL;
        size_t i = 0;
        struct cache_msg *msg, *tmp;
        HASH_ITER(hh_uid, m->by_uid, msg, tmp)
        {
                v[i++] = msg;
        }
        qsort(v, i, sizeof(*v), cache_msg_cmp);
        for (i = 0; i < m->nmsgs; i++)
                v[i]->sorted_idx = i;
        m->sorted = v;
        m->sorted_dirty = false;
        return v;
}

void cache_listing_commit(struct cache *c, struct cache_mbox *m, int64_t now_ms,
                          unsigned gen_at_start, uint32_t uidnext, uint32_t exists,
                          uint64_t highestmodseq)
{
        (void)c;
        if (uidnext)
                m->uidnext = uidnext;
        m->exists = exists;
        if (highestmodseq)
                m->highestmodseq = highestmodseq;
        if (m->stale_gen == gen_at_start)
                m->state = CACHE_LISTING_VALID;
        m->checked_ms = now_ms;
        m->observed = true;
}

void cache_mbox_mark_stale(struct cache *c, const char *raw)
{
        struct cache_mbox *m = raw ? cache_mbox_by_raw(c, raw) : NULL;
        if (!m)
                return;
        m->stale_gen++;
        if (m->state == CACHE_LISTING_VALID)
                m->state = CACHE_LISTING_STALE;
}

void cache_mbox_heard(struct cache *c, const char *raw)
{
        struct cache_mbox *m = raw ? cache_mbox_by_raw(c, raw) : NULL;
        if (!m)
                return;
        m->srv.heard++;
        cache_mbox_mark_stale(c, raw);
}

bool cache_mbox_selectable(const struct cache_mbox *m)
{
        return m->raw && !(m->attrs & IMAP_MBX_NOSELECT);
}

size_t cache_msg_footprint(const struct cache_msg *m)
{
        /* Three uthash handles, the struct, the strings and malloc's overhead. */
        return sizeof(*m) + strlen(m->name) + 1 + strlen(m->flags) + 1 + 3 * 16;
}
