/* clformer: the environment variables that configure a backend, read in one place. Library code
 * never reads the environment; the CLI (and the tests and tools that keep the variables working
 * for their users) fill a cf_backend_options from it here and pass it at creation. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/backend.h"
#include "cli/cli_env.h"

static const char *env_str(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void cf_cli_cache_dir_from_env(char *out, size_t len) {
    out[0] = 0;
    const char *env = getenv("CF_CACHE_DIR");
    if (env) {
        if (*env && strcmp(env, "off") != 0 && strcmp(env, "none") != 0)
            snprintf(out, len, "%s", env);
        return;
    }
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) {
        snprintf(out, len, "%s/clformer", xdg);
        return;
    }
    const char *home = getenv("HOME");
    if (home && *home) snprintf(out, len, "%s/.cache/clformer", home);
}

void cf_cli_backend_options_from_env(cf_backend_options *o) {
    static char cache_dir[1024];
    *o = cf_backend_options_default();
    o->gemm = env_str("CF_GEMM");
    o->cpu_gemm = env_str("CF_CPU_GEMM");
    o->cpu_bf16 = env_str("CF_CPU_GEMM_BF16");
    o->gemm_fast = env_str("CF_GEMM_FAST");
    o->gemm_half = env_str("CF_GEMM_HALF");
    o->gemm_half_block = env_str("CF_GEMM_HALF_BLOCK");
    const char *fv = env_str("CF_GEMM_FAST_VERBOSE");
    o->gemm_fast_verbose = fv && atoi(fv) == 1;
    o->tuning = env_str("CF_TUNING");
    o->kernel_dir = env_str("CF_KERNEL_DIR");
    const char *ks = env_str("CF_KERNEL_SOURCE");
    o->kernels_from_disk = ks && strcasecmp(ks, "dir") == 0;
    cf_cli_cache_dir_from_env(cache_dir, sizeof cache_dir);
    o->cache_dir = cache_dir[0] ? cache_dir : NULL;
    o->attention = env_str("CF_ATTENTION");
    o->flash_kernel = env_str("CF_FLASH_KERNEL");
    const char *fs = env_str("CF_FLASH_SCRATCH");
    o->flash_scratch = 0;
    if (fs) {
        char *end = NULL;
        const unsigned long long v = strtoull(fs, &end, 10);
        if (fs[0] >= '0' && fs[0] <= '9' && end && !*end)
            o->flash_scratch = (size_t)v;
        else
            CF_WARN("CF_FLASH_SCRATCH='%s' is not a number of bytes (e.g. 1073741824); using the "
                    "default budget (1/24 of the device's memory)",
                    fs);
    }
    o->matrix_engine = env_str("CF_MATRIX_ENGINE");
    const char *map = getenv("CF_CL_MAP");
    o->map = map && strcmp(map, "0") == 0 ? 0 : -1;
    const char *ac = env_str("CF_OPENCL_AUTO_CPU");
    o->auto_cpu_devices = ac && atoi(ac) != 0;
    const char *am = env_str("CF_AUTO_MEASURE");
    o->auto_first = am && strcmp(am, "0") == 0;
}

const char *cf_cli_device_from_env(const char *spec) {
    if (spec && *spec) return spec;
    return env_str("CLFORMER_DEVICE");
}

int cf_cli_set_gemm(cf_backend_options *o, const char *which) {
    if (strcmp(which, "auto") && strcmp(which, "clblast") && strcmp(which, "native") &&
        strcmp(which, "blas")) {
        CF_ERROR("--gemm '%s' is not known; use auto, clblast, native (OpenCL) or blas (CPU)",
                 which);
        return CF_ERR_INVALID;
    }
    o->gemm = which;
    if (strcmp(which, "clblast") != 0) o->cpu_gemm = which;
    if (strcmp(which, "auto") == 0) o->cpu_gemm = NULL;
    return CF_OK;
}

int cf_cli_mpi_launched_size(void) {
    /* Open MPI (mpirun), MPICH / Intel MPI (hydra), Slurm's srun with PMI-2 or PMIx */
    static const char *size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++) {
        const char *v = env_str(size_vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return env_str("PMIX_RANK") ? 1 : 0; /* launched; MPI_Init tells the size */
}

#ifdef CF_FAULT_INJECTION
void cf_cli_faults_from_env(void) {
    const char *v;
    if ((v = env_str("CF_FAULT_ALLOC"))) cf_fault_set_alloc(atoi(v));
    if ((v = env_str("CF_FAULT_BUILD"))) cf_fault_set_build(atoi(v));
    if ((v = env_str("CF_FAULT_CLBLAST"))) cf_fault_set_clblast(atoi(v));
    if ((v = env_str("CF_FAULT_GRAD_INF"))) cf_fault_set_grad_inf(atoi(v));
    if ((v = env_str("CF_FAULT_SAVE_CRASH"))) cf_fault_set_save_crash(strcmp(v, "0") != 0);
}
#endif
