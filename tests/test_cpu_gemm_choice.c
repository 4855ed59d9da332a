/* clformer test: the C backend's GEMM kernel for this CPU (cf_cpu_gemm_native_kernel).
 *   - in a fresh process with an empty cache directory, "native" is measured: the pick is a vector
 *     kernel where the CPU has one, the reason names the kernels and their rates when there are
 *     two (AVX2 and AVX-512), and the pick is written to the cache;
 *   - a cached pick is used as it is (a cache naming the other kernel makes a new backend use it);
 *   - CF_CPU_GEMM (cf_backend_options.cpu_gemm) overrides the choice. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "clformer/common.h"

static int g_fail = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        printf("%s", (cond) ? "ok   " : (g_fail++, "FAIL "));                                     \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

/* the one cpu_gemm-*.txt file in dir into buf ("" when there is none or several) */
static void read_cache(const char *dir, char *buf, size_t len, char *path, size_t plen) {
    buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "cpu_gemm-", 9)) {
            n++;
            snprintf(path, plen, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    if (n != 1) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t r = fread(buf, 1, len - 1, f);
    buf[r] = 0;
    fclose(f);
}

static const char *gemm_of(const cf_backend_options *o, char *buf, size_t len) {
    cf_backend *be = NULL;
    cf_backend_info info;
    buf[0] = 0;
    if (cf_backend_create("cpu", o, &be) == CF_OK && cf_be_info(be, &info) == CF_OK)
        snprintf(buf, len, "%s", info.gemm);
    cf_backend_destroy(be);
    return buf;
}

int main(void) {
    char dir[1024], cmd[2200], text[512], path[1400], buf[64];
    const int n = cf_cpu_gemm_kernel_count();
    int vec = 0, other = -1;
    for (int i = 0; i < n; i++)
        if (strstr(cf_cpu_gemm_kernel_name(i), "avx")) {
            vec++;
            if (i > 0 && other < 0) other = i;
        }
    printf("kernels usable on this CPU: %d (%d vector)\n", n, vec);

    /* ---- a fresh process, an empty cache: measured (in a child, whose choice is its own) ----- */
    snprintf(dir, sizeof dir, "%s/test_cpu_gemm_choice.cache", CF_BINARY_DIR);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(cf_cpu_gemm_native_kernel(dir));
    int status = 0;
    waitpid(pid, &status, 0);
    const int pick = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    CHECK(pick >= 0 && pick < n, "first use picked kernel %d (%s)", pick,
          pick >= 0 && pick < n ? cf_cpu_gemm_kernel_name(pick) : "?");
    if (vec > 0)
        CHECK(pick >= 0 && pick < n && strstr(cf_cpu_gemm_kernel_name(pick), "avx"),
              "a vector kernel where the CPU has one");
    read_cache(dir, text, sizeof text, path, sizeof path);
    CHECK(pick >= 0 && pick < n && !strncmp(text, cf_cpu_gemm_kernel_name(pick),
                                            strlen(cf_cpu_gemm_kernel_name(pick))),
          "the pick is cached: %s", text[0] ? path : "(no cache file)");
    if (vec >= 2)
        CHECK(strstr(text, "measured at first use") && strstr(text, "avx2-6x16") &&
                  strstr(text, "avx512-12x32") && strstr(text, "GFLOP/s"),
              "two vector kernels: measured, both rates given: %s", text);

    /* ---- a cached pick is used as it is --------------------------------------------------- */
    const int want = other >= 0 ? other : 0;
    FILE *f = path[0] ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%s\nplanted by the test\n", cf_cpu_gemm_kernel_name(want));
        fclose(f);
    }
    cf_backend_options o = cf_backend_options_default();
    o.cache_dir = dir;
    char expect[96];
    snprintf(expect, sizeof expect, "native:%s", cf_cpu_gemm_kernel_name(want));
    CHECK(f && !strcmp(gemm_of(&o, buf, sizeof buf), expect) &&
              strstr(cf_cpu_gemm_native_reason(), "planted by the test (cached)"),
          "a new backend uses the cached kernel: %s (%s)", buf, cf_cpu_gemm_native_reason());
    o.cpu_gemm = "native";
    CHECK(!strcmp(gemm_of(&o, buf, sizeof buf), expect), "\"native\" is the same: %s", buf);

    /* ---- the override ------------------------------------------------------------------------ */
    for (int i = 0; i < n; i++) {
        char which[96];
        snprintf(which, sizeof which, "native:%s", cf_cpu_gemm_kernel_name(i));
        o.cpu_gemm = which;
        CHECK(!strcmp(gemm_of(&o, buf, sizeof buf), which), "cpu_gemm=%s overrides: %s", which,
              buf);
    }
    o.cpu_gemm = "native:no-such-kernel";
    cf_backend *be = NULL;
    CHECK(cf_backend_create("cpu", &o, &be) == CF_ERR_INVALID && !be,
          "an unknown kernel is refused");
    if (g_fail) {
        printf("FAIL test_cpu_gemm_choice: %d checks failed\n", g_fail);
        return 1;
    }
    printf("PASS test_cpu_gemm_choice\n");
    return 0;
}
