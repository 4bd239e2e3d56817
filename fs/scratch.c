#include "fs/scratch.h"

#include <fnmatch.h>
#include <string.h>

/* fnmatch(3) patterns of the names tools use for their own files, with who
 * makes them. A dot file covers rsync's `.NAME.XXXXXX`, vim's `.NAME.swp`
 * and LibreOffice's `.~lock.NAME#`; the others are listed for the tools
 * that put them beside the file without a dot. */
static const char *const scratch_patterns[] = {
    ".*",    /* hidden files, rsync, vim swap files, lock files */
    "*~",    /* backups: vim, emacs, nano */
    "#*#",   /* emacs auto-save */
    "*.swp", /* vim swap files (with 'directory' not starting with .) */
    "*.swx", /* vim's probe for a writable directory */
    "4913",  /* vim's probe for whether it may rename the original */
    /* GNU sed -i: "sed" and six random letters or digits (mkostemp) */
    "sed[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]",
};

bool scratch_name(const char *name)
{
        for (size_t i = 0; i < sizeof(scratch_patterns) / sizeof(scratch_patterns[0]); i++)
                if (fnmatch(scratch_patterns[i], name, FNM_PERIOD) == 0)
                        return true;
        return false;
}

/* RFC 5322 field names are printable ASCII but ':'. */
static bool scratch_field_char(unsigned char c)
{
        return c > 32 && c < 127 && c != ':';
}

bool scratch_looks_like_message(const char *buf, size_t len)
{
        /* A UTF-8 byte order mark, as some editors save, is no reason to refuse. */
        if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
                buf += 3;
                len -= 3;
        }
        if (len >= 5 && memcmp(buf, "From ", 5) == 0)
                return true; /* an mbox separator line */
        size_t i = 0;
        while (i < len && scratch_field_char((unsigned char)buf[i]))
                i++;
        /* "Name:" or "Name :" (obsolete syntax allows blanks before the colon) */
        size_t name_len = i;
        while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
                i++;
        return name_len > 0 && i < len && buf[i] == ':';
}
