#include "cache/parts.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "cache/account.h"
#include "cache/blocks.h"
#include "cache/mailbox.h"
#include "cache/store.h"
#include "imap/bodystructure.h"
#include "imap/log.h"
#include "imap/mime_decode.h"
#include "imap/mime_name.h"
#include "imap/ops_parts.h"
#include "imap/quote.h"

/* Blocks fetched in one ranged command at most (1 MiB). */
#define PARTS_RANGE_BLOCKS 16u
/* Longest item list of one BINARY.SIZE command; a message with more parts
 * gets its sizes at lookup instead. */
#define PARTS_ITEMS_MAX 8192u
#define PARTS_READ_MAX_WAITS 8
/* BINARY.SIZE commands for one folder at most (one per shape of message). */
#define PARTS_SIZE_CMDS_MAX 8u

enum pkind { PK_ROOT, PK_DIR, PK_HEADER, PK_TEXT, PK_LEAF };

/* How a file's bytes are had. */
enum pfetch {
        PF_RANGE_BODY,   /* BODY.PEEK[s]<o.n>: the bytes as they are (identity encodings) */
        PF_RANGE_BINARY, /* BINARY.PEEK[s]<o.n>: decoded by the server */
        PF_WHOLE_RAW,    /* BODY.PEEK[s] whole, as it is (headers, a best-effort text) */
        PF_WHOLE_DECODE, /* BODY.PEEK[s] whole, transfer-decoded here */
        PF_WHOLE_TEXT,   /* BODY.PEEK[s] whole, decoded and converted to UTF-8 */
};

struct pnode {
        uint64_t id, parent;
        enum pkind kind;
        char *name;
        uint64_t mbox_id;
        char *mailbox; /* raw; NULL for a root */
        uint32_t uidvalidity, uid;
        char *section; /* of the dir's message part, or the file's fetch spec */
        enum pfetch fetch;
        char *encoding, *charset;
        /* size (parts lock) */
        uint64_t size;
        bool size_known, upper_bound;
        time_t mtime;
        /* xattrs (leaf parts) */
        char *x_type, *x_disp, *x_filename, *x_encoding, *x_section;
        uint64_t x_size;
        bool has_x_size;
        /* dirs */
        bool filled;
        uint64_t root_sig;      /* a root: the listing it was filled from (parts_fill_root) */
        struct pnode *children; /* by name (hh_child) */
        UT_hash_handle hh;
        UT_hash_handle hh_child;
};

struct pmsg_key {
        uint64_t mbox;
        uint32_t uidvalidity, uid;
};

struct pmsg {
        struct pmsg_key key;
        struct imap_bodypart *root; /* NULL: malformed or not sent */
        char *saved;                /* the BODYSTRUCTURE as sent, until it is stored */
        size_t saved_len;
        UT_hash_handle hh;
};

struct parts {
        struct account *a;
        pthread_mutex_t lock;
        struct pnode *nodes;        /* by id */
        struct pnode *roots;        /* the roots by mbox id: found by a walk, few */
        struct pmsg *msgs;          /* structures by (mbox, uidvalidity, uid) */
        pthread_mutex_t fetch_lock; /* one folder structure fetch at a time */
        unsigned long struct_fetches;
        int binary; /* -1 unknown, else whether the server has BINARY */
};

/* ---- structures in the persistent store ----
 * A message's BODYSTRUCTURE never changes under its UID: it is stored as a
 * FETCH response ("* 0 FETCH (BODYSTRUCTURE (...) BINARY.SIZE[2] 123)"),
 * strings as literals, under the section "BODYSTRUCTURE" (no MIME section
 * looks like it), and read back with the same parser as the server's. */
#define PARTS_STORE_SECTION "BODYSTRUCTURE"

struct sbuf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void sbuf_add(struct sbuf *b, const void *data, size_t len)
{
        if (b->oom)
                return;
        if (b->len + len + 1 > b->cap) {
                size_t nc = b->cap ? b->cap : 256;
                while (nc < b->len + len + 1)
                        nc *= 2;
                char *np = nc <= STORE_BLOCK_MAX * 2u ? realloc(b->p, nc) : NULL;
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = nc;
        }
        if (len) /* an empty piece may come as NULL */
                memcpy(b->p + b->len, data, len);
        b->len += len;
        b->p[b->len] = '\0';
}

static void sbuf_str(struct sbuf *b, const char *s)
{
        sbuf_add(b, s, strlen(s));
}

static void parts_value_format(struct sbuf *b, const struct imap_value *v)
{
        char num[32];
        switch (v->type) {
        case IMAP_NIL:
                sbuf_str(b, "NIL");
                break;
        case IMAP_NUMBER:
        case IMAP_ATOM:
                sbuf_add(b, v->s, v->len);
                break;
        case IMAP_STRING:
                snprintf(num, sizeof(num), "{%zu}\r\n", v->len);
                sbuf_str(b, num);
                sbuf_add(b, v->s, v->len);
                break;
        case IMAP_LIST:
                sbuf_str(b, "(");
                for (const struct imap_value *c = v->first; c; c = c->next) {
                        parts_value_format(b, c);
                        if (c->next)
                                sbuf_str(b, " ");
                }
                sbuf_str(b, ")");
                break;
        }
}

static void parts_structure_save(struct parts *p, const char *mailbox, struct pmsg *m)
{
        if (!p->a->disk || !m->saved)
                return;
        struct sbuf b = {0};
        char item[96];
        sbuf_str(&b, "* 0 FETCH (BODYSTRUCTURE ");
        sbuf_add(&b, m->saved, m->saved_len);
        for (const struct imap_bodypart *bp = m->root; bp; bp = imap_bodypart_next(bp))
                if (bp->decoded_size >= 0) {
                        snprintf(item, sizeof(item), " BINARY.SIZE[%s] %lld", bp->section,
                                 (long long)bp->decoded_size);
                        sbuf_str(&b, item);
                }
        sbuf_str(&b, ")\r\n");
        struct store_part sp = {mailbox, m->key.uidvalidity, m->key.uid, PARTS_STORE_SECTION,
                                STORE_FORM_RAW};
        if (!b.oom && b.len <= STORE_BLOCK_MAX)
                store_block_put(p->a->disk, &sp, 0, b.p, b.len);
        free(b.p);
}

/* A structure from the store: 0 with *out (NULL root for one stored as
 * unreadable is not stored: only readable ones are), -ENOENT. */
static int parts_structure_load(struct parts *p, const char *mailbox, const struct pmsg_key *key,
                                struct imap_bodypart **out)
{
        *out = NULL;
        if (!p->a->disk)
                return -ENOENT;
        struct store_part sp = {mailbox, key->uidvalidity, key->uid, PARTS_STORE_SECTION,
                                STORE_FORM_RAW};
        char *buf = malloc(STORE_BLOCK_MAX);
        ssize_t n = buf ? store_block_get(p->a->disk, &sp, 0, buf, STORE_BLOCK_MAX) : -ENOMEM;
        struct imap_response *r = NULL;
        int rc = n < 0 ? -ENOENT : imap_parse(buf, (size_t)n, &r);
        free(buf);
        if (rc < 0)
                return -ENOENT;
        const struct imap_value *bs = r->args && r->args->type == IMAP_LIST
                                          ? imap_fetch_item(r->args, "BODYSTRUCTURE")
                                          : NULL;
        rc = bs ? imap_bodystructure_parse(bs, out) : -EPROTO;
        if (rc == 0)
                imap_bodystructure_set_binary_sizes(*out, r->args);
        imap_response_free(r);
        return rc == 0 ? 0 : -ENOENT;
}

static void pnode_free(struct pnode *n)
{
        free(n->name);
        free(n->mailbox);
        free(n->section);
        free(n->encoding);
        free(n->charset);
        free(n->x_type);
        free(n->x_disp);
        free(n->x_filename);
        free(n->x_encoding);
        free(n->x_section);
        free(n);
}

struct parts *parts_new(struct account *a)
{
        struct parts *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->a = a;
        p->binary = -1;
        pthread_mutex_init(&p->lock, NULL);
        pthread_mutex_init(&p->fetch_lock, NULL);
        return p;
}

void parts_free(struct parts *p)
{
        if (!p)
                return;
        struct pnode *n, *tmp;
        /* The directories' tables first (HASH_CLEAR frees a table, not its
         * items), then the items. */
        HASH_ITER(hh, p->nodes, n, tmp)
        {
                HASH_CLEAR(hh_child, n->children);
        }
        HASH_CLEAR(hh_child, p->roots);
        HASH_ITER(hh, p->nodes, n, tmp)
        {
                HASH_DEL(p->nodes, n);
                pnode_free(n);
        }
        struct pmsg *m, *mtmp;
        HASH_ITER(hh, p->msgs, m, mtmp)
        {
                HASH_DEL(p->msgs, m);
                imap_bodystructure_free(m->root);
                free(m->saved);
                free(m);
        }
        pthread_mutex_destroy(&p->lock);
        pthread_mutex_destroy(&p->fetch_lock);
        free(p);
}

unsigned long parts_structure_fetches(struct parts *p)
{
        pthread_mutex_lock(&p->lock);
        unsigned long n = p->struct_fetches;
        pthread_mutex_unlock(&p->lock);
        return n;
}

static struct pnode *parts_node(struct parts *p, uint64_t id)
{
        struct pnode *n;
        HASH_FIND(hh, p->nodes, &id, sizeof(id), n);
        return n;
}

bool parts_owns(struct parts *p, uint64_t ino)
{
        pthread_mutex_lock(&p->lock);
        bool r = parts_node(p, ino) != NULL;
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* A new node under dir (parts lock held); NULL on ENOMEM. */
static struct pnode *parts_add(struct parts *p, struct pnode *dir, enum pkind kind,
                               const char *name)
{
        struct pnode *n = calloc(1, sizeof(*n));
        if (!n || !(n->name = strdup(name))) {
                free(n);
                return NULL;
        }
        n->kind = kind;
        cache_lock(p->a->cache);
        n->id = cache_id_alloc(p->a->cache);
        cache_unlock(p->a->cache);
        if (dir) {
                n->parent = dir->id;
                n->mbox_id = dir->mbox_id;
                n->uidvalidity = dir->uidvalidity;
                n->uid = dir->uid;
                n->mtime = dir->mtime;
                n->mailbox = dir->mailbox ? strdup(dir->mailbox) : NULL;
                HASH_ADD_KEYPTR(hh_child, dir->children, n->name, strlen(n->name), n);
        }
        HASH_ADD(hh, p->nodes, id, sizeof(n->id), n);
        return n;
}

static void parts_attr_of(const struct pnode *n, struct parts_attr *a)
{
        memset(a, 0, sizeof(*a));
        a->id = n->id;
        a->dir = n->kind == PK_ROOT || n->kind == PK_DIR;
        a->size = a->dir ? 4096 : n->size;
        a->size_known = a->dir || n->size_known || n->upper_bound;
        a->upper_bound = n->upper_bound;
        a->mtime = n->mtime;
}

/* ---- the message and its folder in the cache ---- */

/* True if the node's message is still in its folder's listing (for a root:
 * the folder exists). Takes the cache lock. */
static bool parts_alive(struct parts *p, const struct pnode *n)
{
        cache_lock(p->a->cache);
        struct cache_node *cn = cache_node_get(p->a->cache, n->mbox_id);
        struct cache_mbox *m = cn && cn->kind == CACHE_MBOX ? (struct cache_mbox *)cn : NULL;
        bool alive = m != NULL;
        if (alive && n->kind != PK_ROOT)
                alive = m->uidvalidity == n->uidvalidity && cache_msg_by_uid(m, n->uid);
        cache_unlock(p->a->cache);
        return alive;
}

int parts_root(struct parts *p, uint64_t mbox_id, struct parts_attr *out)
{
        cache_lock(p->a->cache);
        struct cache_node *cn = cache_node_get(p->a->cache, mbox_id);
        struct cache_mbox *m = cn && cn->kind == CACHE_MBOX ? (struct cache_mbox *)cn : NULL;
        bool ok = m && m->raw && cache_mbox_selectable(m);
        char *raw = ok ? strdup(m->raw) : NULL;
        cache_unlock(p->a->cache);
        if (!ok)
                return -ENOENT;
        if (!raw)
                return -ENOMEM;
        pthread_mutex_lock(&p->lock);
        struct pnode *n;
        HASH_FIND(hh_child, p->roots, &mbox_id, sizeof(mbox_id), n);
        if (!n) {
                n = parts_add(p, NULL, PK_ROOT, ".parts");
                if (n) {
                        n->mbox_id = mbox_id;
                        n->parent = mbox_id;
                        n->mailbox = raw;
                        raw = NULL;
                        HASH_ADD(hh_child, p->roots, mbox_id, sizeof(n->mbox_id), n);
                }
        }
        if (n)
                parts_attr_of(n, out);
        pthread_mutex_unlock(&p->lock);
        free(raw);
        return n ? 0 : -ENOMEM;
}

uint64_t parts_parent(struct parts *p, uint64_t id)
{
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        uint64_t r = n ? n->parent : 0;
        pthread_mutex_unlock(&p->lock);
        return r;
}

/* ---- structures: one command for the folder ---- */

struct struct_job {
        struct parts *p;
        const char *mailbox;
        uint64_t mbox_id;
        uint32_t uidvalidity;
        unsigned *uids;
        size_t nuids;
        struct pmsg *got; /* parsed, not yet in the table (by key) */
        unsigned long commands;
        bool binary;
};

static void parts_struct_item(void *ctx, uint32_t uid, const struct imap_value *list)
{
        struct struct_job *j = ctx;
        const struct imap_value *bs = imap_fetch_item(list, "BODYSTRUCTURE");
        struct pmsg_key key = {j->mbox_id, j->uidvalidity, uid};
        struct pmsg *m;
        HASH_FIND(hh, j->got, &key, sizeof(key), m);
        if (m && !bs) {
                if (m->root) /* the BINARY.SIZE answers */
                        imap_bodystructure_set_binary_sizes(m->root, list);
                return;
        }
        if (m || !bs)
                return;
        m = calloc(1, sizeof(*m));
        if (!m)
                return;
        m->key = key;
        if (imap_bodystructure_parse(bs, &m->root) < 0) {
                log_warn("message %u in %s: a BODYSTRUCTURE we can't read (only header and "
                         "text are shown)",
                         uid, j->mailbox);
        } else {
                struct sbuf b = {0};
                parts_value_format(&b, bs);
                if (!b.oom) {
                        m->saved = b.p;
                        m->saved_len = b.len;
                } else {
                        free(b.p);
                }
        }
        HASH_ADD(hh, j->got, key, sizeof(m->key), m);
}

/* The sections whose decoded size BINARY.SIZE would tell (transfer-encoded
 * leaves), as "BINARY.SIZE[1] BINARY.SIZE[2.1]" into out. */
static size_t parts_size_items(const struct imap_bodypart *root, char *out, size_t cap)
{
        size_t len = 0;
        out[0] = '\0';
        for (const struct imap_bodypart *b = root; b; b = imap_bodypart_next(b)) {
                if (!imap_bodypart_is_leaf(b) ||
                    imap_cte_from_name(b->encoding) == IMAP_CTE_IDENTITY)
                        continue;
                int n =
                    snprintf(out + len, cap - len, "%sBINARY.SIZE[%s]", len ? " " : "", b->section);
                if (n < 0 || (size_t)n >= cap - len) {
                        out[0] = '\0';
                        return 0; /* too many: sizes at lookup */
                }
                len += (size_t)n;
        }
        return len;
}

struct shape {
        char *items;
        unsigned *uids;
        size_t n, cap;
        UT_hash_handle hh;
};

static int parts_shape_cmp(const struct shape *a, const struct shape *b)
{
        return a->n > b->n ? -1 : a->n < b->n ? 1 : 0;
}

struct size_job {
        struct struct_job *j;
        const char *set, *items;
};

static int parts_size_run(struct imap_session *s, void *ctx)
{
        struct size_job *sj = ctx;
        int r = account_select(s, sj->j->mailbox, sj->j->uidvalidity, NULL);
        if (r == 0) {
                r = imap_fetch_items(s, sj->set, sj->items, parts_struct_item, sj->j);
                sj->j->commands++;
        }
        return r;
}

/* BINARY.SIZE of the structures just fetched (not yet shared: j->got),
 * one command per shape of message, each on a run of its own: sizes are a
 * saving, not a need, and Dovecot 2.3 drops the connection for a base64
 * part it finds broken, which must cost only that shape's sizes. */
static void parts_sizes_fetch(struct parts *p, struct struct_job *j)
{
        struct shape *shapes = NULL, *sh, *tmp;
        char *items = malloc(PARTS_ITEMS_MAX);
        int r = items ? 0 : -ENOMEM;
        struct pmsg *m, *mtmp;
        HASH_ITER(hh, j->got, m, mtmp)
        {
                if (r < 0 || !m->root || !parts_size_items(m->root, items, PARTS_ITEMS_MAX))
                        continue;
                HASH_FIND_STR(shapes, items, sh);
                if (!sh) {
                        sh = calloc(1, sizeof(*sh));
                        if (!sh || !(sh->items = strdup(items))) {
                                free(sh);
                                r = -ENOMEM;
                                continue;
                        }
                        HASH_ADD_KEYPTR(hh, shapes, sh->items, strlen(sh->items), sh);
                }
                if (sh->n == sh->cap) {
                        size_t nc = sh->cap ? sh->cap * 2 : 16;
                        unsigned *nv = realloc(sh->uids, nc * sizeof(*nv));
                        if (!nv) {
                                r = -ENOMEM;
                                continue;
                        }
                        sh->uids = nv;
                        sh->cap = nc;
                }
                sh->uids[sh->n++] = m->key.uid;
        }
        free(items);
        /* The biggest groups first, and only so many commands: a folder of
         * messages of all different shapes must not cost a command per
         * message (the rest find their sizes at lookup). */
        HASH_SORT(shapes, parts_shape_cmp);
        unsigned sent = 0;
        HASH_ITER(hh, shapes, sh, tmp)
        {
                if (r == 0 && sent++ < PARTS_SIZE_CMDS_MAX) {
                        size_t need = imap_uidset_format(sh->uids, sh->n, NULL, 0);
                        char *set = malloc(need + 1);
                        if (!set) {
                                r = -ENOMEM;
                        } else {
                                imap_uidset_format(sh->uids, sh->n, set, need + 1);
                                struct size_job sj = {j, set, sh->items};
                                int rs = account_run(p->a, j->mailbox, IMAP_POOL_BULK,
                                                     parts_size_run, &sj);
                                if (rs < 0)
                                        log_info("decoded sizes of parts in %s: %s (found at "
                                                 "lookup instead)",
                                                 j->mailbox, strerror(-rs));
                                free(set);
                        }
                }
                HASH_DEL(shapes, sh);
                free(sh->items);
                free(sh->uids);
                free(sh);
        }
}

static void parts_job_clear(struct struct_job *j)
{
        struct pmsg *m, *tmp;
        HASH_ITER(hh, j->got, m, tmp)
        {
                HASH_DEL(j->got, m);
                imap_bodystructure_free(m->root);
                free(m->saved);
                free(m);
        }
}

static int parts_struct_run(struct imap_session *s, void *ctx)
{
        struct struct_job *j = ctx;
        parts_job_clear(j); /* a retry starts from scratch */
        j->commands = 0;
        int r = account_select(s, j->mailbox, j->uidvalidity, NULL);
        if (r < 0)
                return r;
        size_t need = imap_uidset_format(j->uids, j->nuids, NULL, 0);
        char *set = malloc(need + 1);
        if (!set)
                return -ENOMEM;
        imap_uidset_format(j->uids, j->nuids, set, need + 1);
        r = imap_fetch_items(s, set, "BODYSTRUCTURE", parts_struct_item, j);
        free(set);
        j->commands++;
        j->binary = imap_session_caps(s)->binary;
        return r;
}

/* Makes sure the structures of every message of the folder are known: one
 * command for all that are missing (plus the BINARY.SIZE ones). */
static int parts_ensure_structures(struct parts *p, uint64_t mbox_id)
{
        int r = account_refresh_listing(p->a, mbox_id, -1);
        if (r < 0)
                return r;
        pthread_mutex_lock(&p->fetch_lock);
        struct struct_job j = {.p = p, .mbox_id = mbox_id};
        char *raw = NULL;
        cache_lock(p->a->cache);
        struct cache_node *cn = cache_node_get(p->a->cache, mbox_id);
        struct cache_mbox *m = cn && cn->kind == CACHE_MBOX ? (struct cache_mbox *)cn : NULL;
        if (m && m->raw) {
                raw = strdup(m->raw);
                j.uidvalidity = m->uidvalidity;
                j.uids = malloc((m->nmsgs ? m->nmsgs : 1) * sizeof(*j.uids));
                size_t nm;
                struct cache_msg **msgs = cache_mbox_msgs(m, &nm);
                for (size_t i = 0; j.uids && i < nm; i++)
                        j.uids[j.nuids++] = msgs[i]->uid;
        }
        cache_unlock(p->a->cache);
        /* Only those not known yet (the parts lock after the cache lock's
         * release: the order is parts, then cache). */
        pthread_mutex_lock(&p->lock);
        size_t keep = 0;
        for (size_t i = 0; j.uids && i < j.nuids; i++) {
                struct pmsg_key key = {mbox_id, j.uidvalidity, j.uids[i]};
                struct pmsg *pm;
                HASH_FIND(hh, p->msgs, &key, sizeof(key), pm);
                if (!pm)
                        j.uids[keep++] = j.uids[i];
        }
        j.nuids = keep;
        pthread_mutex_unlock(&p->lock);
        /* What the persistent store has needs no command. */
        keep = 0;
        for (size_t i = 0; raw && i < j.nuids; i++) {
                struct pmsg_key key = {mbox_id, j.uidvalidity, j.uids[i]};
                struct imap_bodypart *root;
                struct pmsg *pm = NULL;
                if (parts_structure_load(p, raw, &key, &root) == 0 &&
                    (pm = calloc(1, sizeof(*pm))) != NULL) {
                        pm->key = key;
                        pm->root = root;
                        pthread_mutex_lock(&p->lock);
                        struct pmsg *old;
                        HASH_FIND(hh, p->msgs, &key, sizeof(key), old);
                        if (!old)
                                HASH_ADD(hh, p->msgs, key, sizeof(pm->key), pm);
                        pthread_mutex_unlock(&p->lock);
                        if (old) {
                                imap_bodystructure_free(root);
                                free(pm);
                        }
                        continue;
                }
                if (!pm && root)
                        imap_bodystructure_free(root);
                j.uids[keep++] = j.uids[i];
        }
        j.nuids = keep;
        if (!m || !raw || !j.uids) {
                r = !m ? -ENOENT : -ENOMEM;
                goto out;
        }
        if (j.nuids == 0)
                goto out;
        j.mailbox = raw;
        r = account_run(p->a, raw, IMAP_POOL_BULK, parts_struct_run, &j);
        if (r == 0 && j.binary)
                parts_sizes_fetch(p, &j);
        pthread_mutex_lock(&p->lock);
        p->struct_fetches += j.commands;
        if (j.commands)
                p->binary = j.binary;
        struct pmsg *pm, *tmp;
        HASH_ITER(hh, j.got, pm, tmp)
        {
                HASH_DEL(j.got, pm);
                struct pmsg *old;
                HASH_FIND(hh, p->msgs, &pm->key, sizeof(pm->key), old);
                if (r == 0)
                        parts_structure_save(p, raw, pm);
                free(pm->saved);
                pm->saved = NULL;
                if (old) {
                        imap_bodystructure_free(pm->root);
                        free(pm);
                } else {
                        HASH_ADD(hh, p->msgs, key, sizeof(pm->key), pm);
                }
        }
        pthread_mutex_unlock(&p->lock);
        if (r < 0)
                log_warn("message structures of %s: %s", raw, strerror(-r));
        /* The server answered, but not for every message (a NO): those have
         * no structure, and show their header and raw text. */
        if (r < 0 && r != -EIO && r != -ENOMEM && r != -ETIMEDOUT && r != -ENOENT && r != -ESTALE)
                r = 0;
out:
        pthread_mutex_unlock(&p->fetch_lock);
        free(raw);
        free(j.uids);
        return r;
}

/* ---- a message directory's entries ---- */

static char *parts_join(const char *section, const char *what)
{
        size_t sl = strlen(section), wl = strlen(what);
        char *s = malloc(sl + 1 + wl + 1);
        if (!s)
                return NULL;
        memcpy(s, section, sl);
        s[sl] = '.';
        memcpy(s + sl + 1, what, wl + 1);
        return sl ? s : memmove(s, s + 1, wl + 1);
}

static const char *parts_charset(const struct imap_bodypart *b)
{
        return imap_mime_param_get(b->params, b->nparams, "charset");
}

/* True if a part's BINARY.SIZE fits its encoded size. Dovecot 2.3 answers
 * sizes a few bytes short for binary data (10249 for a PDF of 10256 bytes),
 * and a short size makes a short file; base64 lets us check: D bytes are
 * 4*ceil(D/3) characters in lines of some length L (76 by RFC 2045, also
 * 72, 64, 60), each line ending in CRLF, the last one with or without. A
 * size that fits no such layout is not used. Quoted-printable can't be
 * checked: its sizes are never taken. */
static bool parts_b64_consistent(const struct imap_bodypart *b)
{
        static const uint64_t widths[] = {76, 72, 64, 60, 68, 57, 80};
        if (imap_cte_from_name(b->encoding) != IMAP_CTE_BASE64 || b->decoded_size < 0)
                return false;
        uint64_t d = (uint64_t)b->decoded_size;
        uint64_t chars = (d + 2) / 3 * 4;
        if (chars == b->size || chars + 2 == b->size)
                return true; /* one line */
        for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
                uint64_t lines = (chars + widths[i] - 1) / widths[i];
                if (b->size == chars + 2 * lines || b->size == chars + 2 * lines - 2)
                        return true;
        }
        return false;
}

/* A leaf part's file (parts lock held). */
static int parts_add_leaf(struct parts *p, struct pnode *dir, const struct imap_bodypart *b,
                          int binary)
{
        char *name = imap_mime_part_filename(b);
        if (!name)
                return errno == ENAMETOOLONG ? 0 : -ENOMEM;
        struct pnode *n;
        HASH_FIND(hh_child, dir->children, name, strlen(name), n);
        if (!n)
                n = parts_add(p, dir, PK_LEAF, name);
        free(name);
        if (!n)
                return -ENOMEM;
        n->section = strdup(b->section);
        n->encoding = strdup(b->encoding ? b->encoding : "7bit");
        n->x_type = imap_mime_content_type(b);
        n->x_disp = imap_mime_content_disposition(b);
        imap_mime_filename(b, &n->x_filename);
        n->x_encoding = strdup(b->encoding ? b->encoding : "7bit");
        n->x_section = strdup(b->section);
        n->x_size = b->size;
        n->has_x_size = true;
        if (imap_cte_from_name(b->encoding) == IMAP_CTE_IDENTITY) {
                n->fetch = PF_RANGE_BODY;
                n->size = b->size;
                n->size_known = true;
        } else if (b->decoded_size >= 0 && parts_b64_consistent(b)) {
                n->fetch = PF_RANGE_BINARY;
                n->size = (uint64_t)b->decoded_size;
                n->size_known = true;
        } else {
                /* No size to trust: decoded here at lookup, or, for a big part,
                 * the encoded size as an upper bound (direct I/O), fetched by
                 * range where the server decodes. */
                n->fetch = PF_WHOLE_DECODE;
                if (b->size > PARTS_DECODE_AT_LOOKUP) {
                        n->size = b->size;
                        n->upper_bound = true;
                        if (binary == 1 && imap_cte_from_name(b->encoding) == IMAP_CTE_BASE64)
                                n->fetch = PF_RANGE_BINARY; /* QP: see parts_whole */
                }
        }
        return n->section && n->encoding && n->x_type && n->x_encoding && n->x_section ? 0
                                                                                       : -ENOMEM;
}

static int parts_fill_body(struct parts *p, struct pnode *dir, const struct imap_bodypart *b,
                           int binary)
{
        if (b->multipart) {
                for (size_t i = 0; i < b->nparts; i++) {
                        int r = parts_fill_body(p, dir, &b->parts[i], binary);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        int r = parts_add_leaf(p, dir, b, binary);
        if (r == 0 && imap_bodypart_is_message(b) && b->message) {
                struct pnode *sub;
                HASH_FIND(hh_child, dir->children, b->section, strlen(b->section), sub);
                if (!sub)
                        sub = parts_add(p, dir, PK_DIR, b->section);
                if (!sub || !(sub->section = strdup(b->section)))
                        return -ENOMEM;
        }
        return r;
}

/* The entries of a message directory: header, text, the leaves (parts lock
 * held). body is the message's structure (NULL: unknown or malformed). */
static int parts_fill_dir(struct parts *p, struct pnode *dir, const struct imap_bodypart *body)
{
        struct pnode *h = parts_add(p, dir, PK_HEADER, "header");
        if (!h || !(h->section = parts_join(dir->section, "HEADER")))
                return -ENOMEM;
        h->fetch = PF_WHOLE_RAW;
        h->x_section = strdup(h->section);
        const struct imap_bodypart *tp = body ? imap_mime_text_part(body) : NULL;
        if (tp || !body) {
                struct pnode *t = parts_add(p, dir, PK_TEXT, "text");
                if (!t)
                        return -ENOMEM;
                if (tp) {
                        t->section = strdup(tp->section);
                        t->encoding = strdup(tp->encoding ? tp->encoding : "7bit");
                        const char *cs = parts_charset(tp);
                        t->charset = cs ? strdup(cs) : NULL;
                        t->fetch = PF_WHOLE_TEXT;
                } else {
                        /* No structure: the body as it is, the best we can do. */
                        t->section = parts_join(dir->section, "TEXT");
                        t->fetch = PF_WHOLE_RAW;
                }
                if (!t->section)
                        return -ENOMEM;
                t->x_section = strdup(t->section);
        }
        return body ? parts_fill_body(p, dir, body, p->binary) : 0;
}

/* Fills a message directory (or an attached message's) once its structure
 * is known (parts lock held). */
static int parts_fill(struct parts *p, struct pnode *dir)
{
        if (dir->filled)
                return 0;
        struct pmsg_key key = {dir->mbox_id, dir->uidvalidity, dir->uid};
        struct pmsg *pm;
        HASH_FIND(hh, p->msgs, &key, sizeof(key), pm);
        /* No structure (the server sent none): header and raw text only. */
        const struct imap_bodypart *body = pm ? pm->root : NULL;
        if (body && dir->section[0]) {
                struct imap_bodypart *mp = imap_bodystructure_find(pm->root, dir->section);
                body = mp ? mp->message : NULL;
                if (!body)
                        return -EIO;
        }
        int r = parts_fill_dir(p, dir, body);
        if (r == 0)
                dir->filled = true;
        return r;
}

/* The message directories of a root: one per message of the listing, named
 * as its file without ".eml" (parts lock held; takes the cache lock). */
struct root_ent {
        uint32_t uid;
        time_t date;
        char *stem;
};

static int parts_fill_root(struct parts *p, struct pnode *root)
{
        int r = 0;
        size_t n = 0;
        struct root_ent *v = NULL;
        uint32_t uidvalidity = 0;
        cache_lock(p->a->cache);
        struct cache_node *cn = cache_node_get(p->a->cache, root->mbox_id);
        struct cache_mbox *m = cn && cn->kind == CACHE_MBOX ? (struct cache_mbox *)cn : NULL;
        /* Every lookup below the root comes here: the walk is done only when
         * the listing changed (a message in or out changes its count or
         * UIDNEXT), so that cp .parts/STAR/... stays linear. */
        uint64_t sig = 0;
        if (m) {
                uint64_t v[] = {m->uidvalidity, m->uidnext, m->nmsgs, m->state};
                sig = store_hash64(v, sizeof(v), 1) | 1;
        }
        if (m && root->filled && root->root_sig == sig) {
                cache_unlock(p->a->cache);
                return 0;
        }
        if (m) {
                uidvalidity = m->uidvalidity;
                v = calloc(m->nmsgs ? m->nmsgs : 1, sizeof(*v));
                size_t nm;
                struct cache_msg **msgs = cache_mbox_msgs(m, &nm);
                for (size_t i = 0; i < nm; i++) {
                        struct cache_msg *msg = msgs[i];
                        if (!v)
                                break;
                        size_t len = strlen(msg->name);
                        if (len > 4 && strcmp(msg->name + len - 4, ".eml") == 0)
                                len -= 4;
                        v[n].uid = msg->uid;
                        v[n].date = msg->internaldate;
                        v[n].stem = strndup(msg->name, len);
                        if (!v[n++].stem)
                                r = -ENOMEM;
                }
        }
        cache_unlock(p->a->cache);
        if (!m)
                return -ENOENT;
        if (!v)
                return -ENOMEM;
        root->uidvalidity = uidvalidity;
        for (size_t i = 0; i < n; i++) {
                const char *stem = v[i].stem;
                struct pnode *d = NULL;
                if (r == 0)
                        HASH_FIND(hh_child, root->children, stem, strlen(stem), d);
                if (d && (d->uid != v[i].uid || d->uidvalidity != uidvalidity)) {
                        /* Another message under this name now: a fresh node (the old
                         * one stays, ENOENT, for the kernel's references). */
                        HASH_DELETE(hh_child, root->children, d);
                        d = NULL;
                }
                if (r == 0 && !d) {
                        d = parts_add(p, root, PK_DIR, stem);
                        if (d) {
                                d->uid = v[i].uid;
                                d->mtime = v[i].date;
                                d->section = strdup("");
                        }
                        if (!d || !d->section)
                                r = -ENOMEM;
                }
                free(v[i].stem);
        }
        free(v);
        if (r == 0) {
                root->filled = true;
                root->root_sig = sig;
        }
        return r;
}

/* ---- bytes ---- */

/* What a read needs of a file node, copied out under the parts lock. */
struct pread {
        uint64_t id;
        char *mailbox, *section, *encoding, *charset;
        uint32_t uidvalidity, uid;
        enum pfetch fetch;
};

static void pread_clear(struct pread *r)
{
        free(r->mailbox);
        free(r->section);
        free(r->encoding);
        free(r->charset);
        memset(r, 0, sizeof(*r));
}

static int pread_of(const struct pnode *n, struct pread *r)
{
        memset(r, 0, sizeof(*r));
        r->id = n->id;
        r->uidvalidity = n->uidvalidity;
        r->uid = n->uid;
        r->fetch = n->fetch;
        r->mailbox = n->mailbox ? strdup(n->mailbox) : NULL;
        r->section = n->section ? strdup(n->section) : NULL;
        r->encoding = n->encoding ? strdup(n->encoding) : NULL;
        r->charset = n->charset ? strdup(n->charset) : NULL;
        if (!r->mailbox || !r->section || (n->encoding && !r->encoding) ||
            (n->charset && !r->charset)) {
                pread_clear(r);
                return -ENOMEM;
        }
        return 0;
}

/* The persistent store's key: the section and the form of the bytes. */
static bool parts_store_key(const struct pread *r, char *section, size_t cap, struct store_part *sp)
{
        const char *suffix = r->fetch == PF_WHOLE_TEXT ? ".UTF8" : "";
        int n = snprintf(section, cap, "%s%s", r->section, suffix);
        if (n < 0 || (size_t)n >= cap)
                return false;
        sp->mailbox = r->mailbox;
        sp->uidvalidity = r->uidvalidity;
        sp->uid = r->uid;
        sp->section = section;
        sp->form = r->fetch == PF_RANGE_BODY || r->fetch == PF_WHOLE_RAW ? STORE_FORM_RAW
                                                                         : STORE_FORM_DECODED;
        return true;
}

static struct block_key parts_key(const struct pread *r, uint64_t idx)
{
        /* The node's own inode number in the place of the folder's: unique,
         * so a part's blocks never mix with the message's or another part's. */
        return (struct block_key){r->id, r->uidvalidity, r->uid, idx};
}

static void parts_keep(struct parts *p, const struct pread *r, uint64_t idx, const char *data,
                       size_t len)
{
        char sec[STORE_SECTION_MAX + 1];
        struct store_part sp;
        if (p->a->disk && parts_store_key(r, sec, sizeof(sec), &sp))
                store_block_put(p->a->disk, &sp, idx, data, len);
}

/* The length of a file made whole (decoded, converted) is stored beside its
 * blocks, so that a remount knows its size without fetching it again. */
#define PARTS_LEN_INDEX 0xFFFFFFFFu

static void parts_keep_len(struct parts *p, const struct pread *r, uint64_t len)
{
        unsigned char v[8];
        for (int i = 0; i < 8; i++)
                v[i] = (unsigned char)(len >> (8 * i));
        parts_keep(p, r, PARTS_LEN_INDEX, (const char *)v, sizeof(v));
}

static bool parts_len_from_disk(struct parts *p, const struct pread *r, uint64_t *len)
{
        char sec[STORE_SECTION_MAX + 1];
        struct store_part sp;
        unsigned char v[8];
        if (!p->a->disk || !parts_store_key(r, sec, sizeof(sec), &sp) ||
            store_block_get(p->a->disk, &sp, PARTS_LEN_INDEX, v, sizeof(v)) != (ssize_t)sizeof(v))
                return false;
        *len = 0;
        for (int i = 0; i < 8; i++)
                *len |= (uint64_t)v[i] << (8 * i);
        return true;
}

static bool parts_from_disk(struct parts *p, const struct pread *r, uint64_t idx)
{
        char sec[STORE_SECTION_MAX + 1];
        struct store_part sp;
        if (!p->a->disk || !parts_store_key(r, sec, sizeof(sec), &sp))
                return false;
        char *buf = malloc(BLOCK_SIZE);
        ssize_t n = buf ? store_block_get(p->a->disk, &sp, idx, buf, BLOCK_SIZE) : -ENOMEM;
        struct block_key k = parts_key(r, idx);
        if (n >= 0)
                blocks_put(p->a->blocks, &k, buf, (size_t)n);
        free(buf);
        return n >= 0;
}

struct fetch_job {
        const struct pread *r;
        bool binary;
        uint64_t off;
        size_t len; /* 0: whole */
        char *buf;  /* ranged: len bytes of room */
        size_t got;
        char *whole; /* whole: malloc'd */
        bool oom;
        int server_binary; /* what the session said of BINARY (-1: no session) */
};

static void parts_bytes(void *ctx, const char *data, size_t len)
{
        struct fetch_job *j = ctx;
        if (j->len) {
                size_t n = len < j->len ? len : j->len;
                if (n)
                        memcpy(j->buf, data, n);
                j->got = n;
                return;
        }
        free(j->whole);
        j->whole = malloc(len + 1);
        if (!j->whole) {
                j->oom = true;
                return;
        }
        if (len)
                memcpy(j->whole, data, len);
        j->got = len;
}

static int parts_fetch_run(struct imap_session *s, void *ctx)
{
        struct fetch_job *j = ctx;
        j->server_binary = imap_session_caps(s)->binary;
        int r = account_select(s, j->r->mailbox, j->r->uidvalidity, NULL);
        if (r == 0)
                r = imap_fetch_section(s, j->r->uid, j->r->section, j->binary, j->off, j->len,
                                       parts_bytes, j);
        return r == 0 && j->oom ? -ENOMEM : r;
}

static int parts_fetch(struct parts *p, struct fetch_job *j)
{
        j->server_binary = -1;
        int r = account_run(p->a, j->r->mailbox, IMAP_POOL_BULK, parts_fetch_run, j);
        if (j->server_binary >= 0) {
                /* Known without a structure fetch too (after a remount, the
                 * structures come from the store). */
                pthread_mutex_lock(&p->lock);
                p->binary = j->server_binary;
                pthread_mutex_unlock(&p->lock);
        }
        if (r == 0) {
                atomic_fetch_add(&p->a->fetches, 1);
                atomic_fetch_add(&p->a->fetched_bytes, j->got);
        }
        if (r == -ENOENT || r == -ESTALE) {
                log_warn("message %u in %s is gone from the server", j->r->uid, j->r->mailbox);
                cache_lock(p->a->cache);
                cache_mbox_mark_stale(p->a->cache, j->r->mailbox);
                cache_unlock(p->a->cache);
        }
        return r;
}

static void parts_set_size(struct parts *p, uint64_t id, uint64_t size)
{
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        if (n) {
                n->size = size;
                n->size_known = true;
                n->upper_bound = false;
        }
        pthread_mutex_unlock(&p->lock);
}

/* Fetches a whole section, makes the file's bytes from it, records the
 * exact size and puts the blocks in memory (those nobody else holds; claimed
 * is the one the caller claimed, or UINT64_MAX) and on disk. */
static int parts_whole(struct parts *p, const struct pread *r, uint64_t claimed)
{
        struct fetch_job j = {.r = r};
        char *out = NULL;
        size_t out_len = 0;
        pthread_mutex_lock(&p->lock);
        /* base64 only: servers decode quoted-printable differently (trailing
         * blanks, a final soft break), and the bytes must be Python's. */
        bool binary = p->binary == 1 && r->fetch == PF_WHOLE_DECODE &&
                      imap_cte_from_name(r->encoding) == IMAP_CTE_BASE64;
        pthread_mutex_unlock(&p->lock);
        int rc = -EAGAIN; /* not fetched yet */
        bool decoded = false;
        if (binary) {
                /* Decoded by the server: a quarter fewer bytes than base64. If it
                 * can't (Dovecot drops the connection for base64 it finds broken),
                 * the part is fetched as sent and decoded here. */
                j.binary = true;
                rc = parts_fetch(p, &j);
                j.binary = false;
                decoded = rc == 0;
                if (rc < 0 && rc != -ENOMEM && rc != -ENOENT && rc != -ESTALE) {
                        log_info("message %u in %s: BINARY of part %s failed, decoding it here",
                                 r->uid, r->mailbox, r->section);
                        rc = -EAGAIN;
                }
        }
        if (rc == -EAGAIN)
                rc = parts_fetch(p, &j);
        if (rc == 0 && !decoded && r->fetch == PF_WHOLE_DECODE) {
                rc = imap_decode_all(imap_cte_from_name(r->encoding), j.whole, j.got, &out,
                                     &out_len);
        } else if (rc == 0 && r->fetch == PF_WHOLE_TEXT) {
                rc =
                    imap_mime_text_to_utf8(r->encoding, r->charset, j.whole, j.got, &out, &out_len);
        } else if (rc == 0) {
                out = j.whole; /* as it is, or decoded by the server */
                out_len = j.got;
                j.whole = NULL;
        }
        free(j.whole);
        if (rc < 0) {
                if (claimed != UINT64_MAX) {
                        struct block_key k = parts_key(r, claimed);
                        blocks_abandon(p->a->blocks, &k);
                }
                return rc;
        }
        parts_set_size(p, r->id, out_len);
        parts_keep_len(p, r, out_len);
        uint64_t nblocks = out_len / BLOCK_SIZE + 1; /* the last may be empty: the end */
        for (uint64_t i = 0; i < nblocks; i++) {
                struct block_key k = parts_key(r, i);
                uint64_t boff = i * BLOCK_SIZE;
                size_t blen = out_len - boff < BLOCK_SIZE ? out_len - boff : BLOCK_SIZE;
                if (i == claimed || blocks_try_claim(p->a->blocks, &k))
                        blocks_put(p->a->blocks, &k, out + boff, blen);
                if (blen)
                        parts_keep(p, r, i, out + boff, blen);
        }
        if (claimed != UINT64_MAX && claimed >= nblocks) {
                struct block_key k = parts_key(r, claimed);
                blocks_put(p->a->blocks, &k, "", 0); /* beyond the end */
        }
        free(out);
        return 0;
}

/* Fetches blocks [first, first+count) (claimed by us) of a ranged file. */
static int parts_range(struct parts *p, const struct pread *r, uint64_t size, uint64_t first,
                       unsigned count)
{
        uint64_t off = first * BLOCK_SIZE;
        uint64_t end = off + (uint64_t)count * BLOCK_SIZE;
        if (end > size)
                end = size;
        size_t len = (size_t)(end - off);
        char *buf = malloc(len ? len : 1);
        struct fetch_job j = {.r = r,
                              .binary = r->fetch == PF_RANGE_BINARY,
                              .off = off,
                              .len = len ? len : 1,
                              .buf = buf};
        int rc = buf ? parts_fetch(p, &j) : -ENOMEM;
        if (rc == 0 && j.got < len)
                parts_set_size(p, r->id, off + j.got); /* the end of an upper bound */
        for (unsigned i = 0; i < count; i++) {
                struct block_key k = parts_key(r, first + i);
                uint64_t boff = (uint64_t)i * BLOCK_SIZE;
                if (rc == 0 && (boff < j.got || boff == 0)) {
                        size_t blen = j.got - boff < BLOCK_SIZE ? j.got - boff : BLOCK_SIZE;
                        blocks_put(p->a->blocks, &k, buf + boff, blen);
                        if (blen)
                                parts_keep(p, r, first + i, buf + boff, blen);
                } else {
                        blocks_abandon(p->a->blocks, &k);
                }
        }
        free(buf);
        return rc;
}

/* Size of a file node (parts lock held): -1 when unknown. */
static int64_t parts_size_now(struct parts *p, uint64_t id, bool *upper)
{
        struct pnode *n = parts_node(p, id);
        *upper = n && n->upper_bound;
        return n && (n->size_known || n->upper_bound) ? (int64_t)n->size : -1;
}

int parts_read(struct parts *p, uint64_t id, uint64_t off, size_t len, char *buf, size_t *got)
{
        *got = 0;
        struct pread r;
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        int rc = !n ? -ENOENT : (n->kind == PK_ROOT || n->kind == PK_DIR) ? -EISDIR : 0;
        if (rc == 0)
                rc = pread_of(n, &r);
        pthread_mutex_unlock(&p->lock);
        if (rc < 0)
                return rc;
        uint64_t pos = off;
        int waits = 0;
        for (;;) {
                bool upper;
                pthread_mutex_lock(&p->lock);
                int64_t size = parts_size_now(p, id, &upper);
                pthread_mutex_unlock(&p->lock);
                if (size < 0) {
                        rc = parts_whole(p, &r, UINT64_MAX);
                        if (rc < 0)
                                break;
                        continue;
                }
                uint64_t end = off + len < (uint64_t)size ? off + len : (uint64_t)size;
                if (pos >= end)
                        break;
                uint64_t idx = pos / BLOCK_SIZE;
                struct block_key k = parts_key(&r, idx);
                size_t got_now = 0;
                enum blocks_get_result g = blocks_get(p->a->blocks, &k, pos % BLOCK_SIZE, end - pos,
                                                      buf + (pos - off), &got_now);
                if (g == BLOCKS_HIT) {
                        if (got_now == 0)
                                break; /* the end (fewer bytes than the upper bound) */
                        pos += got_now;
                        waits = 0;
                        continue;
                }
                if (g == BLOCKS_BUSY) {
                        if (++waits > PARTS_READ_MAX_WAITS) {
                                rc = -EIO;
                                break;
                        }
                        blocks_wait(p->a->blocks, &k, p->a->imap.timeout_ms);
                        continue;
                }
                if (parts_from_disk(p, &r, idx))
                        continue;
                if (r.fetch == PF_RANGE_BODY || r.fetch == PF_RANGE_BINARY) {
                        uint64_t last = size ? ((uint64_t)size - 1) / BLOCK_SIZE : 0;
                        unsigned count = 1;
                        uint64_t need = (end - 1) / BLOCK_SIZE - idx + 1;
                        uint64_t want = need > PARTS_RANGE_BLOCKS ? need : PARTS_RANGE_BLOCKS;
                        while (count < want && idx + count <= last) {
                                struct block_key kk = parts_key(&r, idx + count);
                                if (!blocks_try_claim(p->a->blocks, &kk))
                                        break;
                                count++;
                        }
                        rc = parts_range(p, &r, (uint64_t)size, idx, count);
                        if (rc < 0 && r.fetch == PF_RANGE_BINARY && rc != -EIO && rc != -ENOMEM &&
                            rc != -ENOENT && rc != -ESTALE && rc != -ETIMEDOUT) {
                                /* The server can't decode it ([UNKNOWN-CTE], a
                                 * base64 it finds broken): we decode it ourselves. */
                                log_warn("message %u in %s: BINARY of part %s refused, "
                                         "decoding it here",
                                         r.uid, r.mailbox, r.section);
                                pthread_mutex_lock(&p->lock);
                                struct pnode *fn = parts_node(p, id);
                                if (fn)
                                        fn->fetch = PF_WHOLE_DECODE;
                                pthread_mutex_unlock(&p->lock);
                                r.fetch = PF_WHOLE_DECODE;
                                rc = 0;
                        }
                } else {
                        rc = parts_whole(p, &r, idx);
                }
                if (rc < 0)
                        break;
        }
        pread_clear(&r);
        if (rc < 0)
                return rc == -ENOMEM ? -ENOMEM : (rc == -ENOENT || rc == -ESTALE) ? -EIO : rc;
        *got = pos - off;
        return 0;
}

/* ---- lookups ---- */

/* Makes a file's size exact if a lookup may fetch for it (parts lock not
 * held). */
static int parts_size_exact(struct parts *p, uint64_t id)
{
        struct pread r;
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        bool need =
            n && n->kind != PK_ROOT && n->kind != PK_DIR && !n->size_known && !n->upper_bound;
        int rc = need ? pread_of(n, &r) : 0;
        pthread_mutex_unlock(&p->lock);
        if (!need || rc < 0)
                return rc;
        uint64_t len;
        if (parts_len_from_disk(p, &r, &len)) {
                parts_set_size(p, r.id, len);
                pread_clear(&r);
                return 0;
        }
        rc = parts_whole(p, &r, UINT64_MAX);
        pread_clear(&r);
        return rc;
}

/* Brings a directory's entries up to date (parts lock not held). */
static int parts_prepare(struct parts *p, uint64_t dir, int max_age_ms)
{
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, dir);
        enum pkind kind = n ? n->kind : PK_LEAF;
        uint64_t mbox = n ? n->mbox_id : 0;
        bool filled = n && n->filled;
        pthread_mutex_unlock(&p->lock);
        if (!n)
                return -ENOENT;
        if (kind != PK_ROOT && kind != PK_DIR)
                return -ENOTDIR;
        int rc;
        if (kind == PK_ROOT) {
                rc = account_refresh_listing(p->a, mbox, max_age_ms);
                if (rc < 0 && rc != -EIO && rc != -ETIMEDOUT)
                        return rc;
                pthread_mutex_lock(&p->lock);
                n = parts_node(p, dir);
                rc = n ? parts_fill_root(p, n) : -ENOENT;
                pthread_mutex_unlock(&p->lock);
                return rc;
        }
        if (!filled) {
                rc = parts_ensure_structures(p, mbox);
                if (rc < 0)
                        return rc;
        }
        pthread_mutex_lock(&p->lock);
        n = parts_node(p, dir);
        rc = n ? parts_fill(p, n) : -ENOENT;
        pthread_mutex_unlock(&p->lock);
        return rc;
}

static int parts_attr_alive(struct parts *p, uint64_t id, struct parts_attr *out)
{
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        int rc = n && parts_alive(p, n) ? 0 : -ENOENT;
        if (rc == 0)
                parts_attr_of(n, out);
        pthread_mutex_unlock(&p->lock);
        return rc;
}

int parts_lookup(struct parts *p, uint64_t dir, const char *name, struct parts_attr *out)
{
        int rc = parts_attr_alive(p, dir, out);
        if (rc == 0)
                rc = parts_prepare(p, dir, -1);
        if (rc < 0)
                return rc;
        for (int round = 0; round < 2; round++) {
                pthread_mutex_lock(&p->lock);
                struct pnode *d = parts_node(p, dir), *c = NULL;
                if (d)
                        HASH_FIND(hh_child, d->children, name, strlen(name), c);
                uint64_t cid = c ? c->id : 0;
                bool root = d && d->kind == PK_ROOT;
                pthread_mutex_unlock(&p->lock);
                if (cid) {
                        rc = parts_size_exact(p, cid);
                        return rc < 0 ? rc : parts_attr_alive(p, cid, out);
                }
                /* A message new on the server: look again if the listing is old. */
                if (!root || round == 1)
                        break;
                rc = parts_prepare(p, dir, p->a->opts.revalidate_ms);
                if (rc < 0)
                        return rc;
        }
        return -ENOENT;
}

int parts_getattr(struct parts *p, uint64_t id, struct parts_attr *out)
{
        int rc = parts_attr_alive(p, id, out);
        if (rc == 0 && !out->size_known) {
                rc = parts_size_exact(p, id);
                if (rc == 0)
                        rc = parts_attr_alive(p, id, out);
        }
        return rc;
}

int parts_list(struct parts *p, uint64_t dir, parts_list_fn fn, void *ctx)
{
        struct parts_attr a;
        int rc = parts_attr_alive(p, dir, &a);
        if (rc == 0)
                rc = parts_prepare(p, dir, p->a->opts.revalidate_ms);
        if (rc < 0)
                return rc;
        pthread_mutex_lock(&p->lock);
        struct pnode *d = parts_node(p, dir), *c, *tmp;
        if (d) {
                HASH_ITER(hh_child, d->children, c, tmp)
                {
                        if (d->kind == PK_ROOT && !parts_alive(p, c))
                                continue; /* expunged */
                        parts_attr_of(c, &a);
                        fn(ctx, c->name, &a);
                }
        }
        pthread_mutex_unlock(&p->lock);
        return d ? 0 : -ENOENT;
}

/* ---- extended attributes ---- */

static int parts_xattr_value(const struct pnode *n, const char *name, char **value)
{
        char num[32];
        const char *v = NULL;
        if (strcmp(name, "user.mime.type") == 0)
                v = n->x_type;
        else if (strcmp(name, "user.mime.encoding") == 0)
                v = n->x_encoding;
        else if (strcmp(name, "user.mime.disposition") == 0)
                v = n->x_disp;
        else if (strcmp(name, "user.mime.filename") == 0)
                v = n->x_filename;
        else if (strcmp(name, "user.imap.section") == 0)
                v = n->x_section;
        else if (strcmp(name, "user.mime.size") == 0 && n->has_x_size) {
                snprintf(num, sizeof(num), "%llu", (unsigned long long)n->x_size);
                v = num;
        }
        if (!v)
                return -ENODATA;
        *value = strdup(v);
        return *value ? 0 : -ENOMEM;
}

int parts_xattr_get(struct parts *p, uint64_t id, const char *name, char **value)
{
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        int rc = n ? parts_xattr_value(n, name, value) : -ENOENT;
        pthread_mutex_unlock(&p->lock);
        return rc;
}

int parts_xattr_list(struct parts *p, uint64_t id, void (*fn)(void *ctx, const char *name),
                     void *ctx)
{
        static const char *const names[] = {"user.mime.type",        "user.mime.encoding",
                                            "user.mime.disposition", "user.mime.filename",
                                            "user.mime.size",        "user.imap.section"};
        pthread_mutex_lock(&p->lock);
        struct pnode *n = parts_node(p, id);
        for (size_t i = 0; n && i < sizeof(names) / sizeof(names[0]); i++) {
                char *v = NULL;
                if (parts_xattr_value(n, names[i], &v) == 0)
                        fn(ctx, names[i]);
                free(v);
        }
        pthread_mutex_unlock(&p->lock);
        return n ? 0 : -ENOENT;
}
