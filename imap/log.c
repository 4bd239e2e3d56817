#include "imap/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static bool log_syslog;
static bool log_debug;

void log_init(bool use_syslog, bool debug)
{
        log_syslog = use_syslog;
        log_debug = debug;
        if (use_syslog)
                openlog("imapfs", LOG_PID, LOG_DAEMON);
}

bool log_debug_enabled(void)
{
        return log_debug;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        char line[2048];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (log_syslog)
                syslog(prio[lvl], "%s", line);
        else
                fprintf(stderr, "imapfs: %s\n", line);
}

void log_proto(const char *who, const char *dir, const char *buf, size_t len)
{
        char out[600];
        size_t o = 0;
        size_t shown = len < 400 ? len : 400;

        if (!log_debug)
                return;
        for (size_t i = 0; i < shown && o + 5 < sizeof(out); i++) {
                unsigned char c = (unsigned char)buf[i];
                if (c >= 0x20 && c < 0x7f) {
                        out[o++] = (char)c;
                } else if (c == '\r' || c == '\n') {
                        continue;
                } else {
                        o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
                }
        }
        out[o] = '\0';
        log_msg(LOG_LVL_DEBUG, "%s %s: %s%s", who, dir, out, len > shown ? " ..." : "");
}
