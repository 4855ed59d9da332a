/* clformer test helper: checks counted and printed one per line ("ok   ..." / "FAIL ..."), for the
 * tests that report every check (test_cl_common.h's OpenCL tests, the planning layer's and the
 * matrix-engine table's). A test ends with its counts and returns non-zero when fails > 0. */
#ifndef CF_TEST_EXPECT_H
#define CF_TEST_EXPECT_H

#include <stdarg.h>
#include <stdio.h>

static int fails __attribute__((unused)) = 0, checks __attribute__((unused)) = 0;

static inline void expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void expect(int cond, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    checks++;
    if (!cond) fails++;
    printf("%-4s %s\n", cond ? "ok" : "FAIL", msg);
}

#endif
