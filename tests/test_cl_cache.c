/* clformer test: the on-disk program cache of the OpenCL backend, with the start-up time measured
 * cold and warm. A fresh cache directory: the first backend compiles every program and writes one
 * binary per program (no temporary files left behind); the second loads all of them and compiles
 * nothing, and its kernels give the CPU backend's results; a corrupt entry (junk, truncated,
 * bit-flipped, a FIFO, a directory) is recompiled and rewritten; an edited kernel source gets a new key; an unwritable cache directory costs only the
 * cache. PoCL's own kernel cache is turned off (POCL_KERNEL_CACHE=0) so "cold" means cold. */
#include "test_cl_common.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char cache_dir[512];

/* number of *.bin files in the cache directory; *tmp receives leftover temporary files */
static int count_bins(int *tmp) {
    int n = 0;
    *tmp = 0;
    DIR *d = opendir(cache_dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".bin") == 0) n++;
        if (strstr(e->d_name, ".tmp")) (*tmp)++;
    }
    closedir(d);
    return n;
}

/* a bin file name of the cache starting with prefix ("gelu-"), or "" */
static void find_bin(const char *prefix, char *out, size_t len) {
    out[0] = 0;
    DIR *d = opendir(cache_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, len, "%s/%s", cache_dir, e->d_name);
            break;
        }
    closedir(d);
}

static cf_backend *open_timed(const char *label, double *sec, cf_cl_build_stats *st) {
    double t0 = cf_time_now();
    cf_backend *be = NULL;
    TCL_OK(cf_backend_opencl_create(tcl_spec(), tcl_opts(), &be));
    *sec = cf_time_now() - t0;
    TCL_OK(cf_backend_opencl_build_stats(be, st));
    printf("     %-34s %7.3f s: %d compiled, %d from cache, %d written (build %.3f s)\n", label,
           *sec, st->programs_from_source, st->programs_from_cache, st->cache_writes,
           st->build_seconds);
    return be;
}

/* a few ops on the backend under test against the CPU backend */
static void check_ops(const char *label) {
    pair a = pair_rand(37 * 45, 1.0f), b = pair_rand(45 * 29, 1.0f), c = pair_rand(37 * 29, 1.0f);
    BOTH(cf_be_gemm(be, 0, 0, 37, 29, 45, 1.0f, V(a), 45, V(b), 29, 0.0f, V(c), 29));
    char what[128];
    snprintf(what, sizeof what, "%s: gemm 37x29x45", label);
    check(what, c, 2e-5);
    pair x = pair_rand(1000, 3.0f), y = pair_rand(1000, 1.0f);
    BOTH(cf_be_gelu_forward(be, V(y), V(x), 1000));
    snprintf(what, sizeof what, "%s: gelu_forward", label);
    check(what, y, 1e-6);
    pair_free(a), pair_free(b), pair_free(c), pair_free(x), pair_free(y);
}

int main(void) {
    setenv("CF_TUNING", "off", 0); /* build counts assume the built-in rule */
    /* before the first OpenCL call: PoCL reads it when the platform loads */
    setenv("POCL_KERNEL_CACHE", "0", 1);
    if (tcl_device_count() == 0) return tcl_no_device("test_cl_cache");
    snprintf(cache_dir, sizeof cache_dir, "%s/cl_cache_test_XXXXXX", CF_BINARY_DIR);
    if (!mkdtemp(cache_dir)) {
        printf("FAIL test_cl_cache: cannot create a directory under %s\n", CF_BINARY_DIR);
        return 1;
    }
    setenv("CF_CACHE_DIR", cache_dir, 1);
    cf_log_set_callback(capture_log, NULL);
    cf_rng_seed(&rng, 99);
    TCL_OK(cf_backend_cpu_create("cpu", NULL, &CPU));
    double t0 = cf_time_now(), cold, warm, t;
    cf_cl_build_stats st;
    int tmp = 0;

    GPU = open_timed("cold cache", &cold, &st);
    int programs = st.programs_from_source;
    int bins = count_bins(&tmp);
    expect(programs >= 9 && st.programs_from_cache == 0 && st.cache_writes == programs &&
               bins == programs && tmp == 0,
           "cold start compiles %d programs and writes %d binaries (%d temporary files left)",
           programs, bins, tmp);
    check_ops("cold");
    cf_backend_destroy(GPU);

    GPU = open_timed("warm cache", &warm, &st);
    expect(st.programs_from_source == 0 && st.programs_from_cache == programs &&
               st.cache_writes == 0,
           "warm start compiles nothing and loads all %d programs", programs);
    check_ops("warm");
    cf_backend_destroy(GPU);
    printf("     start-up: cold %.3f s, warm %.3f s (%.0fx faster)\n", cold, warm,
           warm > 0 ? cold / warm : 0.0);
    expect(warm < cold, "the warm start is faster than the cold one");

    /* a corrupt entry is recompiled and rewritten */
    char path[1024];
    find_bin("gelu-", path, sizeof path);
    const char junk[] = "not a program binary";
    TCL_OK(cf_write_file_atomic(path, junk, sizeof junk));
    GPU = open_timed("one corrupt entry", &t, &st);
    struct stat sb;
    expect(st.programs_from_source == 1 && st.programs_from_cache == programs - 1 &&
               st.cache_writes == 1 && stat(path, &sb) == 0 && sb.st_size > (off_t)sizeof junk,
           "a corrupt entry is compiled again and rewritten");
    check_ops("after a corrupt entry");
    cf_backend_destroy(GPU);

    /* damaged entries: each is compiled from source, rewritten, logged at debug level, and the
     * kernels give the CPU backend's results; none reaches the driver */
    static const char *damage[] = {"truncated", "bit-flipped", "a FIFO", "an empty directory",
                                   "a directory with a file"};
    char *entry = NULL;
    size_t entry_len = 0;
    TCL_OK(cf_read_file(path, &entry, &entry_len));
    for (int i = 0; i < 5; i++) {
        char *good = NULL, sub[1100];
        size_t len = 0;
        TCL_OK(cf_read_file(path, &good, &len));
        if (i == 0) {
            TCL_OK(cf_write_file_atomic(path, good, len / 2));
        } else if (i == 1) {
            good[len - len / 3] ^= 0x10;
            TCL_OK(cf_write_file_atomic(path, good, len));
        } else {
            remove(path);
            int made = i == 2 ? mkfifo(path, 0644) : mkdir(path, 0755);
            if (made != 0) printf("FAIL cannot make %s at %s\n", damage[i], path);
            snprintf(sub, sizeof sub, "%s/x", path);
            if (i == 4) TCL_OK(cf_write_file_atomic(sub, "x", 1));
        }
        free(good);
        int level = cf_log_get_level();
        cf_log_set_level(CF_LOG_DEBUG);
        g_log[0] = 0;
        char label[64];
        snprintf(label, sizeof label, "entry %s", damage[i]);
        GPU = open_timed(label, &t, &st);
        cf_log_set_level(level);
        struct stat sd;
        int regular = lstat(path, &sd) == 0 && S_ISREG(sd.st_mode);
        const char *line = strstr(g_log, "program cache");
        expect(st.programs_from_source == 1 && st.programs_from_cache == programs - 1 &&
                   (i == 4 ? !regular : st.cache_writes == 1 && regular) && line &&
                   strstr(line, "compiling from source"),
               "an entry that is %s is compiled from source%s, with a debug line (%d compiled, "
               "%d written)",
               damage[i], i == 4 ? " (the directory is left alone)" : " and rewritten",
               st.programs_from_source, st.cache_writes);
        check_ops(label);
        cf_backend_destroy(GPU);
        if (i == 4) { /* put a valid entry back for the cases below */
            remove(sub);
            rmdir(path);
            TCL_OK(cf_write_file_atomic(path, entry, entry_len));
        }
    }

    free(entry);

    /* the key covers the source: an edited kernel (here: a comment added) is a new entry */
    char kdir[600];
    snprintf(kdir, sizeof kdir, "%s/kernels", cache_dir);
    mkdir(kdir, 0755);
    /* every kernel source of cl_kernels/ (a new op family's file included) */
    DIR *kd = opendir(CF_SOURCE_DIR "/cl_kernels");
    if (!kd) {
        printf("FAIL cannot list %s\n", CF_SOURCE_DIR "/cl_kernels");
        return 1;
    }
    struct dirent *de;
    while ((de = readdir(kd))) {
        const size_t nl = strlen(de->d_name);
        if (nl < 4 || strcmp(de->d_name + nl - 3, ".cl") != 0) continue;
        const char *file = de->d_name;
        char *src = NULL, p2[800];
        size_t len = 0;
        snprintf(p2, sizeof p2, "%s/%s", CF_SOURCE_DIR "/cl_kernels", file);
        TCL_OK(cf_read_file(p2, &src, &len));
        snprintf(p2, sizeof p2, "%s/%s", kdir, file);
        if (strcmp(file, "adamw.cl") == 0) {
            char *edited = tcl_malloc(len + 64);
            int n = snprintf(edited, len + 64, "%s/* edited */\n", src);
            TCL_OK(cf_write_file_atomic(p2, edited, (size_t)n));
            free(edited);
        } else {
            TCL_OK(cf_write_file_atomic(p2, src, len));
        }
        free(src);
    }
    closedir(kd);
    setenv("CF_KERNEL_DIR", kdir, 1);
    GPU = open_timed("edited adamw.cl (CF_KERNEL_DIR)", &t, &st);
    expect(st.programs_from_source == 1 && st.programs_from_cache == programs - 1,
           "an edited kernel source is compiled again, the rest come from the cache");
    cf_backend_destroy(GPU);
    unsetenv("CF_KERNEL_DIR");

    /* an unwritable cache directory: the backend works, nothing is reported above debug level */
    setenv("CF_CACHE_DIR", "/proc/clformer-no-such-dir", 1);
    g_log[0] = 0;
    GPU = open_timed("unwritable cache directory", &t, &st);
    expect(st.programs_from_source == programs && st.cache_writes == 0 && !strstr(g_log, "error"),
           "an unwritable cache directory only costs the cache");
    check_ops("no cache");
    return tcl_finish("test_cl_cache", t0);
}
