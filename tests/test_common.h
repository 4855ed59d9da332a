/* clformer test helpers shared by the C tests (tests/test_*.c): a count of failed checks with
 * CHECK, which prints the failing condition and a message, and a log callback that keeps the last
 * error line (for checks on what a refusal says). A test returns non-zero when g_fail > 0. */
#ifndef CF_TEST_COMMON_H
#define CF_TEST_COMMON_H

#include <stdio.h>

#include "clformer/common.h"

#define CF_TEST_UNUSED __attribute__((unused))

static int g_fail CF_TEST_UNUSED = 0;   /* failed checks */
static char g_msg[4096] CF_TEST_UNUSED; /* the last error line logged (capture_log) */
static int g_nerr CF_TEST_UNUSED = 0;   /* error lines logged (capture_log) */

/* CHECK(cond, fmt, ...): counts and prints a failure ("FAIL file:line: cond: message") */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            g_fail++;                                                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* A cf_log callback (cf_log_set_callback(capture_log, NULL)): error lines go to g_msg and are
 * counted in g_nerr; other levels are dropped. */
static CF_TEST_UNUSED void capture_log(int level, const char *msg, void *user) {
    (void)user;
    if (level == CF_LOG_ERROR) {
        snprintf(g_msg, sizeof g_msg, "%s", msg);
        g_nerr++;
    }
}

#endif
