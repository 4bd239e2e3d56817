#include "imap/ops_find.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "imap/header.h"
#include "imap/ops.h"

struct find_ctx {
        uint32_t max;
        unsigned n;
};

static bool find_search_data(void *vctx, const struct imap_response *r)
{
        struct find_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "SEARCH") != 0)
                return false;
        for (const struct imap_value *v = r->args; v; v = v->next)
                if (v->type == IMAP_NUMBER && v->num > 0 && v->num <= UINT32_MAX) {
                        c->n++;
                        if (v->num > c->max)
                                c->max = (uint32_t)v->num;
                }
        return true;
}

/* A Message-ID value as a search string: unfolded, no trailing space;
 * NULL (freed) when empty. Takes over id. */
static char *message_id_clean(char *id)
{
        if (!id)
                return NULL;
        size_t o = 0;
        for (const char *p = id; *p; p++)
                if (*p != '\r' && *p != '\n')
                        id[o++] = *p == '\t' ? ' ' : *p;
        while (o && id[o - 1] == ' ')
                o--;
        id[o] = '\0';
        if (!*id) {
                free(id);
                return NULL;
        }
        return id;
}

char *imap_message_id(const char *msg, size_t len)
{
        const char *end = memmem(msg, len, "\r\n\r\n", 4);
        size_t hlen = end ? (size_t)(end - msg) + 2 : len;
        return message_id_clean(imap_header_field(msg, hlen, "Message-ID"));
}

struct msgid_ctx {
        uint32_t uid;
        bool found;
        char *id;
        uint64_t size;
};

static bool find_msgid_data(void *vctx, const struct imap_response *r)
{
        struct msgid_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "FETCH") != 0 || !r->args)
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        const struct imap_value *size = imap_fetch_item(r->args, "RFC822.SIZE");
        const struct imap_value *hdr = imap_fetch_item_prefix(r->args, "BODY[HEADER.FIELDS", NULL);
        if (!uid || uid->type != IMAP_NUMBER || uid->num != c->uid || !size ||
            size->type != IMAP_NUMBER)
                return false;
        c->found = true;
        c->size = size->num;
        if (hdr && hdr->type == IMAP_STRING && !c->id)
                c->id = imap_header_field(hdr->s, hdr->len, "Message-ID");
        return true;
}

int imap_fetch_message_id(struct imap_session *s, uint32_t uid, char **out, uint64_t *size)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct msgid_ctx c = {uid, false, NULL, 0};
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(
            &cmd, "UID FETCH %" PRIu32 " (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            uid);
        int r = imap_session_cmd(s, &cmd, find_msgid_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r == 0)
                r = imap_result_errno("UID FETCH (Message-ID)", &res);
        if (r == 0 && !c.found)
                r = -ENOENT;
        if (r < 0) {
                free(c.id);
                return r;
        }
        *out = message_id_clean(c.id);
        *size = c.size;
        return 0;
}

int imap_uid_present(struct imap_session *s, uint32_t uid, bool *present)
{
        struct imap_cmd cmd;
        struct imap_result res;
        struct find_ctx c = {0, 0};
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID SEARCH UID %" PRIu32, uid);
        int r = imap_session_cmd(s, &cmd, find_search_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID SEARCH", &res);
        if (r < 0)
                return r == -ENOENT ? -EIO : r;
        /* "UID n" matches the highest UID when n is past it: compare. */
        *present = c.n > 0 && c.max == uid;
        return 0;
}

int imap_find_appended(struct imap_session *s, const char *mailbox, const char *message_id,
                       uint64_t size, uint32_t uid_floor, uint32_t *uid)
{
        if (!message_id && !uid_floor)
                return -EIO;
        struct imap_select_info si;
        int r = imap_select(s, mailbox, &si);
        if (r < 0)
                return r;
        struct imap_cmd cmd;
        struct imap_result res;
        struct find_ctx c = {0, 0};
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID SEARCH");
        if (uid_floor)
                imap_cmd_add(&cmd, " UID %" PRIu32 ":*", uid_floor);
        if (message_id) {
                imap_cmd_add(&cmd, " HEADER Message-ID ");
                imap_cmd_str(&cmd, message_id);
        } else {
                imap_cmd_add(&cmd, " LARGER %" PRIu64 " SMALLER %" PRIu64, size ? size - 1 : 0,
                             size + 1);
        }
        r = imap_session_cmd(s, &cmd, find_search_data, &c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID SEARCH", &res);
        if (r < 0)
                return r == -ENOENT ? -EIO : r;
        /* "UID n:*" matches the highest UID even when it is below n. */
        if (c.n == 0 || c.max < uid_floor)
                return -ENOENT;
        *uid = c.max;
        return 0;
}
