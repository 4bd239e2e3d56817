/* Logging shared by every layer: stderr in the foreground, syslog once
 * daemonized. Protocol tracing (-d) goes through log_proto(), which never
 * receives a secret: the session redacts commands marked as carrying one. */
#ifndef IMAPFS_IMAP_LOG_H
#define IMAPFS_IMAP_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(bool use_syslog, bool debug);
bool log_debug_enabled(void);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One protocol line, dir is "C" (to server) or "S"; non-printable bytes escaped,
 * long lines shortened. */
void log_proto(const char *who, const char *dir, const char *buf, size_t len);

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_dbg(...)                                                                               \
        do {                                                                                       \
                if (log_debug_enabled())                                                           \
                        log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
        } while (0)

#endif
