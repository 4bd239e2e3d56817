#include "cache/mailbox.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/ops.h" /* IMAP_MBX_* */

/* Memory per listed message is what limits the daemon in a big folder
 * (issue 13: at most 200 bytes each at 100,000 and 1,000,000 messages), so
 * messages use no uthash handle (56 bytes each) and no malloc of their own:
 *  - the struct is 64 bytes in a slab of CACHE_SLAB messages;
 *  - the name is in its mailbox's name arena (chunks that never move, so
 *    msg->name stays put; compacted at listing ends when half is garbage);
 *  - the flags are interned: a folder has a handful of distinct spellings;
 *  - id -> message is one array sorted by id (ids only grow, so a new message
 *    is appended), uid -> message an array per mailbox sorted by uid, name ->
 *    message an open-addressing table per mailbox (8 bytes a slot). */

#define CACHE_SLAB 1024            /* messages per slab (64 KiB) */
#define NAMES_CHUNK_MIN 4096       /* first name chunk of a mailbox */
#define NAMES_CHUNK_MAX (1u << 20) /* chunks grow to this */
#define NAMEV_LOAD_NUM 4           /* name table grows past 4/5 full */
#define NAMEV_LOAD_DEN 5

struct cache_slab {
        struct cache_slab *next;
        struct cache_msg msgs[CACHE_SLAB];
};

struct cache_flagset {
        UT_hash_handle hh;
        size_t refs;
        char s[]; /* what cache_msg.flags points at */
};

struct names_chunk {
        struct names_chunk *next;
        size_t used, cap;
        char data[];
};

struct cache_names {
        struct names_chunk *head; /* the chunk being filled */
        size_t live, waste;       /* bytes of live names, of names of removed messages */
};

struct cache_idx {
        uint64_t id;
        struct cache_msg *msg; /* NULL: removed */
};

struct cache {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint64_t next_id;
        struct cache_mbox *by_id; /* every mailbox (hh_id) */
        struct cache_idx *ids;    /* every message, sorted by id */
        size_t nids, capids, ndeadids;
        struct cache_mbox *by_raw; /* every listed or inferred mailbox (hh_raw) */
        struct cache_mbox *root;
        struct cache_flagset *flagsets;
        struct cache_slab *slabs;
        struct cache_msg *free_msgs; /* linked through ->name */
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

/* ---- message slots ---- */

/* Under ASan every message is its own allocation, so that a message used
 * after its removal is reported instead of hidden by slot reuse. */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_NO_SLABS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_NO_SLABS 1
#endif
#endif

static struct cache_msg *cache_msg_alloc(struct cache *c)
{
#ifdef CACHE_NO_SLABS
        (void)c;
        return calloc(1, sizeof(struct cache_msg));
#else
        if (!c->free_msgs) {
                struct cache_slab *sl = malloc(sizeof(*sl));
                if (!sl)
                        return NULL;
                sl->next = c->slabs;
                c->slabs = sl;
                for (size_t i = CACHE_SLAB; i-- > 0;) {
                        sl->msgs[i].name = (char *)c->free_msgs;
                        c->free_msgs = &sl->msgs[i];
                }
        }
        struct cache_msg *msg = c->free_msgs;
        c->free_msgs = (struct cache_msg *)msg->name;
        memset(msg, 0, sizeof(*msg));
        return msg;
#endif
}

static void cache_msg_release(struct cache *c, struct cache_msg *msg)
{
#ifdef CACHE_NO_SLABS
        (void)c;
        free(msg);
#else
        msg->name = (char *)c->free_msgs;
        c->free_msgs = msg;
#endif
}

/* ---- interned flags ---- */

static const char *cache_flags_get(struct cache *c, const char *flags)
{
        struct cache_flagset *f;
        size_t len = strlen(flags);
        HASH_FIND(hh, c->flagsets, flags, len, f);
        if (!f) {
                f = malloc(sizeof(*f) + len + 1);
                if (!f)
                        return NULL;
                memset(&f->hh, 0, sizeof(f->hh));
                f->refs = 0;
                memcpy(f->s, flags, len + 1);
                HASH_ADD_KEYPTR(hh, c->flagsets, f->s, len, f);
        }
        f->refs++;
        return f->s;
}

static void cache_flags_put(struct cache *c, const char *flags)
{
        if (!flags)
                return;
        struct cache_flagset *f =
            (struct cache_flagset *)(void *)((char *)(uintptr_t)flags -
                                             offsetof(struct cache_flagset, s));
        if (--f->refs == 0) {
                HASH_DELETE(hh, c->flagsets, f);
                free(f);
        }
}

/* ---- the name arena ---- */

static char *names_add(struct cache_mbox *m, const char *name)
{
        size_t len = strlen(name) + 1;
        if (!m->names) {
                m->names = calloc(1, sizeof(*m->names));
                if (!m->names)
                        return NULL;
        }
        struct names_chunk *h = m->names->head;
        if (!h || h->cap - h->used < len) {
                size_t cap = h ? h->cap * 2 : NAMES_CHUNK_MIN;
                if (cap > NAMES_CHUNK_MAX)
                        cap = NAMES_CHUNK_MAX;
                if (cap < len)
                        cap = len;
                struct names_chunk *n = malloc(sizeof(*n) + cap);
                if (!n)
                        return NULL;
                n->next = h;
                n->used = 0;
                n->cap = cap;
                m->names->head = n;
                h = n;
        }
        char *p = h->data + h->used;
        memcpy(p, name, len);
        h->used += len;
        m->names->live += len;
        return p;
}

static void names_drop(struct cache_mbox *m, const char *name)
{
        size_t len = strlen(name) + 1;
        m->names->live -= len;
        m->names->waste += len;
}

static void names_free_chunks(struct names_chunk *h)
{
        while (h) {
                struct names_chunk *next = h->next;
                free(h);
                h = next;
        }
}

/* ---- the index by id ---- */

static struct cache_idx *cache_idx_find(struct cache *c, uint64_t id)
{
        size_t lo = 0, hi = c->nids;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (c->ids[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < c->nids && c->ids[lo].id == id ? &c->ids[lo] : NULL;
}

static int cache_idx_add(struct cache *c, struct cache_msg *msg)
{
        if (c->nids == c->capids) {
                size_t cap = c->capids ? c->capids * 2 : 1024;
                struct cache_idx *v = realloc(c->ids, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                c->ids = v;
                c->capids = cap;
        }
        /* Ids only grow: appending keeps the array sorted. */
        c->ids[c->nids++] = (struct cache_idx){msg->node.id, msg};
        return 0;
}

static void cache_idx_remove(struct cache *c, uint64_t id)
{
        struct cache_idx *e = cache_idx_find(c, id);
        if (!e || !e->msg)
                return;
        e->msg = NULL;
        if (++c->ndeadids * 2 > c->nids && c->ndeadids > 64) {
                size_t o = 0;
                for (size_t i = 0; i < c->nids; i++)
                        if (c->ids[i].msg)
                                c->ids[o++] = c->ids[i];
                c->nids = o;
                c->ndeadids = 0;
        }
}

/* ---- the index by uid ---- */

/* Position of the first entry with a uid >= uid. */
static size_t uidv_pos(const struct cache_mbox *m, uint32_t uid)
{
        size_t lo = 0, hi = m->nuidv;
        if (hi && m->uidv[hi - 1]->uid < uid)
                return hi; /* the common case: a new, higher UID */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->uidv[mid]->uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Reclaims the slots of removed messages (one pass). */
static void uidv_compact(struct cache *c, struct cache_mbox *m)
{
        if (!m->ndead)
                return;
        size_t o = 0;
        for (size_t i = 0; i < m->nuidv; i++) {
                if (m->uidv[i]->dead)
                        cache_msg_release(c, m->uidv[i]);
                else
                        m->uidv[o++] = m->uidv[i];
        }
        m->nuidv = o;
        m->ndead = 0;
}

static int uidv_insert(struct cache *c, struct cache_mbox *m, struct cache_msg *msg)
{
        size_t pos = uidv_pos(m, msg->uid);
        if (pos < m->nuidv && m->uidv[pos]->uid == msg->uid) {
                /* Only a removed message can hold the UID here: its slot goes now. */
                cache_msg_release(c, m->uidv[pos]);
                m->uidv[pos] = msg;
                m->ndead--;
                return 0;
        }
        if (m->nuidv == m->capuidv) {
                size_t cap = m->capuidv ? m->capuidv * 2 : 16;
                struct cache_msg **v = realloc(m->uidv, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                m->uidv = v;
                m->capuidv = cap;
        }
        memmove(m->uidv + pos + 1, m->uidv + pos, (m->nuidv - pos) * sizeof(*m->uidv));
        m->uidv[pos] = msg;
        m->nuidv++;
        return 0;
}

/* ---- the index by name ---- */

static size_t name_hash(const char *s)
{
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return (size_t)(h ^ (h >> 29));
}

static int namev_grow(struct cache_mbox *m)
{
        size_t cap = m->capnamev ? m->capnamev * 2 : 16;
        struct cache_msg **v = calloc(cap, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < m->capnamev; i++) {
                struct cache_msg *msg = m->namev[i];
                if (!msg)
                        continue;
                size_t j = name_hash(msg->name) & (cap - 1);
                while (v[j])
                        j = (j + 1) & (cap - 1);
                v[j] = msg;
        }
        free(m->namev);
        m->namev = v;
        m->capnamev = cap;
        return 0;
}

static size_t namev_slot(const struct cache_mbox *m, const char *name)
{
        size_t mask = m->capnamev - 1, i = name_hash(name) & mask;
        while (m->namev[i] && strcmp(m->namev[i]->name, name) != 0)
                i = (i + 1) & mask;
        return i;
}

static int namev_insert(struct cache_mbox *m, struct cache_msg *msg)
{
        if ((m->nmsgs + 1) * NAMEV_LOAD_DEN > m->capnamev * NAMEV_LOAD_NUM && namev_grow(m) < 0)
                return -ENOMEM;
        m->namev[namev_slot(m, msg->name)] = msg;
        return 0;
}

/* Linear probing's deletion: later entries of the run move back so that no
 * lookup stops early at the hole. */
static void namev_remove(struct cache_mbox *m, struct cache_msg *msg)
{
        if (!m->capnamev)
                return;
        size_t mask = m->capnamev - 1, i = namev_slot(m, msg->name);
        if (m->namev[i] != msg)
                return;
        m->namev[i] = NULL;
        for (size_t j = (i + 1) & mask; m->namev[j]; j = (j + 1) & mask) {
                size_t k = name_hash(m->namev[j]->name) & mask;
                /* Entry j may fill hole i if its home k is not cyclically in (i, j]. */
                bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
                if (!stays) {
                        m->namev[i] = m->namev[j];
                        m->namev[j] = NULL;
                        i = j;
                }
        }
}

/* Moves the names of m's live messages into one fresh chunk once more than
 * half the arena is garbage (lock held, at a point where no caller holds a
 * name: the end of a listing). */
static void names_compact(struct cache *c, struct cache_mbox *m)
{
        struct cache_names *nm = m->names;
        if (!nm || nm->waste < 4096 || nm->waste < nm->live)
                return;
        uidv_compact(c, m);
        struct names_chunk *old = nm->head;
        struct cache_names fresh = {0};
        struct names_chunk *n = malloc(sizeof(*n) + (nm->live ? nm->live : 1));
        if (!n)
                return; /* stays as it is: costs memory, not correctness */
        n->next = NULL;
        n->used = 0;
        n->cap = nm->live ? nm->live : 1;
        fresh.head = n;
        for (size_t i = 0; i < m->nuidv; i++) {
                struct cache_msg *msg = m->uidv[i];
                size_t len = strlen(msg->name) + 1;
                memcpy(n->data + n->used, msg->name, len);
                msg->name = n->data + n->used;
                n->used += len;
                fresh.live += len;
        }
        *nm = fresh;
        names_free_chunks(old);
}

static void cache_msg_destroy(struct cache *c, struct cache_mbox *m, struct cache_msg *msg)
{
        cache_notify(c, CACHE_NAME_REMOVED, m->node.id, msg->name, msg->node.id);
        cache_idx_remove(c, msg->node.id);
        namev_remove(m, msg);
        names_drop(m, msg->name);
        cache_flags_put(c, msg->flags);
        msg->flags = NULL;
        msg->dead = 1;
        m->ndead++;
        m->nmsgs--;
        m->sorted_dirty = true;
        /* The slot stays in uidv (a removal is O(1), many are one pass) until
         * the next compaction (cache_msg_remove, listing ends, cache_mbox_msgs). */
}

static void cache_msgs_clear(struct cache *c, struct cache_mbox *m)
{
        for (size_t i = 0; i < m->nuidv; i++) {
                struct cache_msg *msg = m->uidv[i];
                if (!msg->dead) {
                        cache_notify(c, CACHE_NAME_REMOVED, m->node.id, msg->name, msg->node.id);
                        cache_idx_remove(c, msg->node.id);
                        cache_flags_put(c, msg->flags);
                }
                cache_msg_release(c, msg);
        }
        free(m->uidv);
        free(m->namev);
        m->uidv = m->namev = NULL;
        m->nuidv = m->capuidv = m->ndead = m->capnamev = 0;
        m->nmsgs = 0;
        m->sorted_dirty = true;
        if (m->names) {
                names_free_chunks(m->names->head);
                free(m->names);
                m->names = NULL;
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
        m->cache = c;
        m->node.id = c->next_id++;
        m->node.kind = CACHE_MBOX;
        HASH_ADD(hh_id, c->by_id, node.id, sizeof(m->node.id), m);
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
        HASH_DELETE(hh_id, c->by_id, m);
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
        struct cache_flagset *f, *ftmp;
        HASH_ITER(hh, c->flagsets, f, ftmp)
        {
                HASH_DELETE(hh, c->flagsets, f);
                free(f);
        }
        while (c->slabs) {
                struct cache_slab *next = c->slabs->next;
                free(c->slabs);
                c->slabs = next;
        }
        free(c->ids);
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
        struct cache_mbox *m;
        HASH_FIND(hh_id, c->by_id, &id, sizeof(id), m);
        if (m)
                return &m->node;
        struct cache_idx *e = cache_idx_find(c, id);
        return e && e->msg ? &e->msg->node : NULL;
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
        if (!m->capnamev)
                return NULL;
        return m->namev[namev_slot(m, name)];
}

struct cache_msg *cache_msg_by_uid(struct cache_mbox *m, uint32_t uid)
{
        size_t pos = uidv_pos(m, uid);
        struct cache_msg *msg = pos < m->nuidv ? m->uidv[pos] : NULL;
        return msg && msg->uid == uid && !msg->dead ? msg : NULL;
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
        /* A new UIDVALIDITY means every UID we know may name another message. */
        if (m->uidvalidity != uidvalidity)
                cache_msgs_clear(c, m);
        m->uidvalidity = uidvalidity;
        m->uidnext = uidnext;
        m->exists = exists;
        for (size_t i = 0; i < m->nuidv; i++)
                m->uidv[i]->mark = 0;
}

static int cache_listing_insert(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                                time_t internaldate, const char *flags, const char *name)
{
        struct cache_msg *msg = cache_msg_by_uid(m, uid);
        const char *nflags = cache_flags_get(c, flags ? flags : "");
        if (!nflags)
                return -ENOMEM;
        if (msg) {
                /* Size, date and name of a UID never change; flags do. */
                bool changed = strcmp(msg->flags, nflags) != 0;
                cache_flags_put(c, msg->flags);
                msg->flags = nflags;
                if (changed)
                        cache_msg_flags_changed(c, msg);
                msg->mark = 1;
                return 0;
        }
        if (!name) {
                cache_flags_put(c, nflags);
                return -ENOMEM;
        }
        msg = cache_msg_alloc(c);
        char *nname = msg ? names_add(m, name) : NULL;
        if (!nname) {
                if (msg)
                        cache_msg_release(c, msg);
                cache_flags_put(c, nflags);
                return -ENOMEM;
        }
        msg->uid = uid;
        msg->size = size;
        msg->internaldate = internaldate;
        msg->flags = nflags;
        msg->name = nname;
        msg->mbox = m;
        msg->mark = 1;
        msg->node.kind = CACHE_MSG;
        msg->node.id = c->next_id;
        if (uidv_insert(c, m, msg) < 0) {
                names_drop(m, nname);
                cache_msg_release(c, msg);
                cache_flags_put(c, nflags);
                return -ENOMEM;
        }
        if (cache_idx_add(c, msg) < 0 || namev_insert(m, msg) < 0) {
                /* Undone as a removal (the id table may hold it: drop it by id). */
                c->next_id++;
                m->nmsgs++;
                cache_idx_remove(c, msg->node.id);
                namev_remove(m, msg);
                names_drop(m, nname);
                cache_flags_put(c, nflags);
                msg->flags = NULL;
                msg->dead = 1;
                m->ndead++;
                m->nmsgs--;
                return -ENOMEM;
        }
        c->next_id++;
        m->nmsgs++;
        m->sorted_dirty = true;
        if (m->observed)
                cache_notify(c, CACHE_NAME_ADDED, m->node.id, msg->name, msg->node.id);
        return 0;
}

int cache_listing_add(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                      time_t internaldate, const char *flags, const char *header, size_t header_len)
{
        if (cache_msg_by_uid(m, uid))
                return cache_listing_insert(c, m, uid, size, internaldate, flags, "");
        char *name = c->name_fn(c->name_ctx, uid, header, header_len, internaldate);
        int r = cache_listing_insert(c, m, uid, size, internaldate, flags, name);
        free(name);
        return r;
}

int cache_listing_add_named(struct cache *c, struct cache_mbox *m, uint32_t uid, uint64_t size,
                            time_t internaldate, const char *flags, const char *name)
{
        /* A name from disk is checked like one we made: it becomes a file name. */
        if (!name || !*name || strchr(name, '/') || strlen(name) > 255)
                return -EINVAL;
        if (cache_msg_by_name(m, name) && !cache_msg_by_uid(m, uid))
                return -EEXIST;
        return cache_listing_insert(c, m, uid, size, internaldate, flags, name);
}

void cache_listing_end(struct cache *c, struct cache_mbox *m, int64_t now_ms, unsigned gen_at_start)
{
        for (size_t i = 0; i < m->nuidv; i++) {
                struct cache_msg *msg = m->uidv[i];
                /* A listing fetched when UIDNEXT was n says nothing about
                 * UIDs from n on: such a message came in since (our own move
                 * or append, applied while the listing was on its way). */
                if (!msg->dead && !msg->mark && !(m->uidnext && msg->uid >= m->uidnext))
                        cache_msg_destroy(c, m, msg);
        }
        uidv_compact(c, m);
        names_compact(c, m);
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
        if (cache_msg_by_uid(target, new_uid) || cache_msg_by_name(target, new_name))
                return -EEXIST;
        struct cache_mbox *src = msg->mbox;
        /* The same id in another mailbox: a fresh slot there, the old one dies. */
        struct cache_msg *moved = cache_msg_alloc(c);
        char *nname = moved ? names_add(target, new_name) : NULL;
        if (!nname) {
                if (moved)
                        cache_msg_release(c, moved);
                return -ENOMEM;
        }
        *moved = *msg;
        moved->name = nname;
        moved->uid = new_uid;
        moved->mbox = target;
        moved->mark = 1;
        moved->dead = 0;
        if (uidv_insert(c, target, moved) < 0 || namev_insert(target, moved) < 0) {
                size_t pos = uidv_pos(target, new_uid);
                if (pos < target->nuidv && target->uidv[pos] == moved) {
                        moved->dead = 1; /* reclaimed with the next compaction */
                        target->ndead++;
                } else {
                        cache_msg_release(c, moved);
                }
                names_drop(target, nname);
                return -ENOMEM;
        }
        struct cache_idx *e = cache_idx_find(c, msg->node.id);
        if (e)
                e->msg = moved;
        cache_notify(c, CACHE_NAME_MOVED_AWAY, src->node.id, msg->name, msg->node.id);
        namev_remove(src, msg);
        names_drop(src, msg->name);
        msg->flags = NULL; /* the reference went to moved */
        msg->dead = 1;
        src->ndead++;
        src->nmsgs--;
        src->sorted_dirty = true;
        target->nmsgs++;
        target->sorted_dirty = true;
        cache_notify(c, CACHE_NAME_MOVED_IN, target->node.id, moved->name, moved->node.id);
        free(new_name);
        /* A refresh of either listing fetched before this move must not be
         * taken as the truth: it would bring the message back in src, or
         * (a full one) drop it from target. */
        src->stale_gen++;
        target->stale_gen++;
        return 0;
}

void cache_msg_remove(struct cache *c, struct cache_msg *msg)
{
        struct cache_mbox *m = msg->mbox;
        cache_msg_destroy(c, m, msg);
        if (m->ndead * 2 > m->nuidv && m->ndead > 64)
                uidv_compact(c, m);
}

void cache_msg_flags_changed(struct cache *c, struct cache_msg *msg)
{
        if (msg->mbox->observed)
                cache_notify(c, CACHE_FLAGS_CHANGED, msg->mbox->node.id, msg->name, msg->node.id);
}

int cache_msg_set_flags(struct cache_msg *msg, const char *flags)
{
        struct cache *c = msg->mbox->cache;
        const char *f = cache_flags_get(c, flags);
        if (!f)
                return -ENOMEM;
        cache_flags_put(c, msg->flags);
        msg->flags = f;
        return 0;
}

struct cache_msg **cache_mbox_msgs(struct cache_mbox *m, size_t *n)
{
        uidv_compact(m->cache, m);
        *n = m->nuidv;
        return m->nuidv ? m->uidv : NULL;
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
        uidv_compact(m->cache, m);
        struct cache_msg **v = realloc(m->sorted, (m->nmsgs ? m->nmsgs : 1) * sizeof(*v));
        if (!v)
                return NULL;
        memcpy(v, m->uidv, m->nuidv * sizeof(*v));
        qsort(v, m->nuidv, sizeof(*v), cache_msg_cmp);
        for (size_t i = 0; i < m->nmsgs; i++)
                v[i]->sorted_idx = (uint32_t)i;
        m->sorted = v;
        m->sorted_dirty = false;
        return v;
}

void cache_listing_commit(struct cache *c, struct cache_mbox *m, int64_t now_ms,
                          unsigned gen_at_start, uint32_t uidnext, uint32_t exists,
                          uint64_t highestmodseq)
{
        if (uidnext)
                m->uidnext = uidnext;
        m->exists = exists;
        if (highestmodseq)
                m->highestmodseq = highestmodseq;
        if (m->stale_gen == gen_at_start)
                m->state = CACHE_LISTING_VALID;
        uidv_compact(c, m);
        names_compact(c, m);
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
        /* The slot, the name, the id entry, the uid and sorted arrays' pointers
         * and the name table's slot at its average fill (3/5). */
        return sizeof(*m) + strlen(m->name) + 1 + sizeof(struct cache_idx) + 2 * sizeof(m) +
               sizeof(m) * 5 / 3;
}

void cache_trim(size_t n)
{
        /* Under a few thousand entries what is left is a few hundred KiB:
         * not worth the walk over the heaps. */
        if (n < 4096)
                return;
#ifdef __GLIBC__
        malloc_trim(0);
#endif
}
