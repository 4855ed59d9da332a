/* clformer: the environment, read once by the CLI (and by the tests and tools that honour the same
 * variables): backend options, the default device, and (test builds) fault injection. */
#ifndef CF_CLI_ENV_H
#define CF_CLI_ENV_H

#include <stddef.h>

#include "backend/backend.h"

/* cf_backend_options_default() overridden by CF_GEMM, CF_CPU_GEMM, CF_GEMM_FAST,
 * CF_GEMM_FAST_VERBOSE, CF_TUNING, CF_KERNEL_DIR, CF_KERNEL_SOURCE=dir, CF_CACHE_DIR (else
 * $XDG_CACHE_HOME/clformer, else $HOME/.cache/clformer; "off" = none), CF_ATTENTION,
 * CF_FLASH_KERNEL, CF_CL_MAP=0, CF_OPENCL_AUTO_CPU=1 and CF_AUTO_MEASURE=0 (--device auto
 * takes the first usable GPU without timing the devices, as auto:first). The strings point into
 * the environment (and, for the cache directory, a static buffer this function rewrites): use
 * them before the environment changes. */
void cf_cli_backend_options_from_env(cf_backend_options *o);
/* The program cache directory from CF_CACHE_DIR / XDG_CACHE_HOME / HOME ("" = none). */
void cf_cli_cache_dir_from_env(char *out, size_t len);
/* spec when given, else $CLFORMER_DEVICE, else NULL (= auto). */
const char *cf_cli_device_from_env(const char *spec);
/* --gemm: auto, clblast, native or blas into o->gemm (OpenCL) and o->cpu_gemm (C backend; not for
 * clblast, cleared by auto). CF_ERR_INVALID with one line for another name. */
int cf_cli_set_gemm(cf_backend_options *o, const char *which);
/* The number of processes an MPI launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
 * MPI_LOCALNRANKS; 1 under PMIx without a size), 0 when none did: `clformer train` then makes no
 * MPI call. */
int cf_cli_mpi_launched_size(void);
#ifdef CF_FAULT_INJECTION
/* clformer-fi: CF_FAULT_ALLOC, CF_FAULT_BUILD, CF_FAULT_CLBLAST, CF_FAULT_GRAD_INF=N and
 * CF_FAULT_SAVE_CRASH=1 to the
 * cf_fault_set_* switches. */
void cf_cli_faults_from_env(void);
#endif

#endif
