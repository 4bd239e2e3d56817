#include "imap/ops_find.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "imap/header.h"
#include "imap/log.h"
#include "imap/ops.h"

struct find_ctx {
        uint32_t floor; /* UIDs below it are older copies, not ours */
        uint32_t max;
        unsigned n;
};

static bool find_search_data(void *vctx, const struct imap_response *r)
{
        struct find_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "SEARCH") != 0)
                return false;
        for (const struct imap_value *v = r->args; v; v = v->next)
                if (v->type == IMAP_NUMBER && v->num >= c->floor && v->num > 0 &&
                    v->num <= UINT32_MAX) {
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

struct present_ctx {
        uint32_t uid;
        bool found;
};

/* Every FETCH of the UID alone is this command's answer: the one of uid,
 * and the last message that GNU Mailutils answers for a UID past the end
 * (it reads a lone number there like "*"). Compared, not trusted. */
static bool find_present_data(void *vctx, const struct imap_response *r)
{
        struct present_ctx *c = vctx;
        if (r->kind != IMAP_RESP_UNTAGGED || !r->name || strcmp(r->name, "FETCH") != 0 || !r->args)
                return false;
        const struct imap_value *uid = imap_fetch_item(r->args, "UID");
        if (!uid || uid->type != IMAP_NUMBER || imap_fetch_item(r->args, "FLAGS"))
                return false; /* flags that changed are news for the account */
        if (uid->num == c->uid)
                c->found = true;
        return true;
}

/* One UID FETCH or FETCH with its answers gathered; BAD is *bad, not an error. */
static int find_present_cmd(struct imap_session *s, const char *what, const char *fmt, uint32_t uid,
                            struct present_ctx *c, bool *bad)
{
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, fmt, uid);
        int r = imap_session_cmd(s, &cmd, find_present_data, c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        *bad = res.status == IMAP_ST_BAD;
        if (*bad)
                return 0;
        r = imap_result_errno(what, &res);
        return r == -ENOENT ? -EIO : r;
}

int imap_uid_present(struct imap_session *s, uint32_t uid, bool *present)
{
        /* Not UID SEARCH UID n: GNU Mailutils 3.15 reads its set as sequence
         * numbers (with UIDs 1 3 4, "UID SEARCH UID 3" answers 4, and 3
         * would look gone). A UID FETCH of a UID that isn't there fetches
         * nothing (RFC 3501 §6.4.8). */
        struct present_ctx c = {uid, false};
        bool bad = false;
        int r =
            find_present_cmd(s, "UID FETCH (UID)", "UID FETCH %" PRIu32 " (UID)", uid, &c, &bad);
        if (r == 0 && bad) {
                /* Mailutils answers a UID it doesn't have with BAD "Failed to
                 * parse message set", the words it has for a malformed set
                 * too: no proof of anything. The UID of every message, by
                 * sequence number, is. It costs a line per message, on the
                 * rare path of an answer that was lost. */
                log_info("UID FETCH %" PRIu32 " was refused: asking for every UID", uid);
                c.found = false;
                r = find_present_cmd(s, "FETCH 1:* (UID)", "FETCH 1:* (UID)", 0, &c, &bad);
                if (r == 0 && bad)
                        r = -EIO; /* unknown: the caller must not take it for gone */
        }
        if (r < 0)
                return r;
        *present = c.found;
        return 0;
}

/* One UID SEARCH for our message, by Message-ID or else by exact size; with
 * ranged, only among "UID floor:*". */
static int find_search(struct imap_session *s, const char *message_id, uint64_t size, bool ranged,
                       struct find_ctx *c)
{
        struct imap_cmd cmd;
        struct imap_result res;
        imap_session_cmd_init(s, &cmd);
        imap_cmd_add(&cmd, "UID SEARCH");
        if (ranged)
                imap_cmd_add(&cmd, " UID %" PRIu32 ":*", c->floor);
        if (message_id) {
                imap_cmd_add(&cmd, " HEADER Message-ID ");
                imap_cmd_str(&cmd, message_id);
        } else {
                imap_cmd_add(&cmd, " LARGER %" PRIu64 " SMALLER %" PRIu64, size ? size - 1 : 0,
                             size + 1);
        }
        int r = imap_session_cmd(s, &cmd, find_search_data, c, &res);
        imap_cmd_free(&cmd);
        if (r < 0)
                return r;
        r = imap_result_errno("UID SEARCH", &res);
        return r == -ENOENT ? -EIO : r;
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
        /* "UID n:*" matches the highest UID even when it is below n: the
         * floor is applied to the answer as well. */
        struct find_ctx c = {uid_floor, 0, 0};
        r = find_search(s, message_id, size, uid_floor > 0, &c);
        if (r == 0 && c.n == 0 && uid_floor > 0)
                /* GNU Mailutils reads the set of "UID SEARCH UID n:*" as
                 * sequence numbers, which can leave out our message when a
                 * gap in the UIDs puts it below sequence n. "Not there"
                 * would APPEND it a second time, so it is asked once more
                 * over the whole folder before that answer is believed. */
                r = find_search(s, message_id, size, false, &c);
        if (r < 0)
                return r;
        if (c.n == 0)
                return -ENOENT;
        *uid = c.max;
        return 0;
}
