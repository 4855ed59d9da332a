/* clformer: OpenCL device discovery: enumeration, the usability checks, `clformer devices`, and
 * OpenCL error names. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_matrix.h"

/* What clformer's kernels need from a device. */
#define CF_CL_MIN_GROUP 64                       /* 8x8 GEMM tiles, reduction groups */
#define CF_CL_MIN_LOCAL_MEM (16u * 1024u)        /* GEMM tiles: 2 x 16 x 65 floats = 8.3 KiB */
#define CF_CL_MIN_GLOBAL_MEM (256ull << 20)      /* a tiny model with its activations */

const char *cf_cl_errstr(cl_int err) {
    switch (err) {
#define E(x)                                                                                       \
    case x: return #x;
        E(CL_SUCCESS)
        E(CL_DEVICE_NOT_FOUND)
        E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP)
        E(CL_IMAGE_FORMAT_MISMATCH)
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE)
        E(CL_LINKER_NOT_AVAILABLE)
        E(CL_LINK_PROGRAM_FAILURE)
        E(CL_DEVICE_PARTITION_FAILED)
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE)
        E(CL_INVALID_PLATFORM)
        E(CL_INVALID_DEVICE)
        E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES)
        E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        E(CL_INVALID_IMAGE_SIZE)
        E(CL_INVALID_SAMPLER)
        E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE)
        E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET)
        E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION)
        E(CL_INVALID_GL_OBJECT)
        E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_MIP_LEVEL)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
        E(CL_INVALID_PROPERTY)
        E(CL_INVALID_IMAGE_DESCRIPTOR)
        E(CL_INVALID_COMPILER_OPTIONS)
        E(CL_INVALID_LINKER_OPTIONS)
        E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL driver installed)";
    default: return "unknown OpenCL error";
    }
}

static void info_str(cl_device_id d, cl_device_info what, char *buf, size_t len) {
    buf[0] = 0;
    if (clGetDeviceInfo(d, what, len, buf, NULL) != CL_SUCCESS) snprintf(buf, len, "?");
    buf[len - 1] = 0;
}

/* "OpenCL 1.2 ..." -> 102; 0 when unparsable */
static int parse_cl_version(const char *s, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl) != 0) return 0;
    int major = 0, minor = 0;
    if (sscanf(s + pl, "%d.%d", &major, &minor) != 2) return 0;
    return major * 100 + minor;
}

static void check_usable(cf_cl_device_info *d, cl_bool available, cl_bool compiler) {
    d->usable = 0;
    if (!available) {
        snprintf(d->reason, sizeof d->reason, "the driver reports the device as not available");
    } else if (!compiler) {
        snprintf(d->reason, sizeof d->reason,
                 "no OpenCL C compiler (clformer compiles its kernels at run time)");
    } else if (parse_cl_version(d->version, "OpenCL ") < 102) {
        snprintf(d->reason, sizeof d->reason, "device version '%s': clformer needs OpenCL 1.2",
                 d->version);
    } else if (d->max_group < CF_CL_MIN_GROUP) {
        snprintf(d->reason, sizeof d->reason,
                 "work-groups of at most %zu work-items; clformer needs %d", d->max_group,
                 CF_CL_MIN_GROUP);
    } else if (d->local_mem < CF_CL_MIN_LOCAL_MEM) {
        snprintf(d->reason, sizeof d->reason, "%llu KiB of local memory; clformer needs %u KiB",
                 (unsigned long long)(d->local_mem >> 10), CF_CL_MIN_LOCAL_MEM >> 10);
    } else if (d->global_mem < CF_CL_MIN_GLOBAL_MEM) {
        snprintf(d->reason, sizeof d->reason, "%llu MiB of global memory; clformer needs %llu MiB",
                 (unsigned long long)(d->global_mem >> 20),
                 (unsigned long long)(CF_CL_MIN_GLOBAL_MEM >> 20));
    } else {
        d->usable = 1;
        d->reason[0] = 0;
    }
}

int cf_cl_enumerate(cf_cl_device_info **out, int *count, char *why, size_t why_len) {
    *out = NULL;
    *count = 0;
    if (why && why_len) why[0] = 0;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) {
        if (why && why_len)
            snprintf(why, why_len, "no OpenCL platform (%s)",
                     err != CL_SUCCESS ? cf_cl_errstr(err) : "the ICD loader found no driver");
        return CF_OK;
    }
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats) return CF_ERR_NOMEM;
    clGetPlatformIDs(np, plats, NULL);
    cf_cl_device_info *list = NULL;
    int n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
            continue;
        cl_device_id *devs = calloc(nd, sizeof *devs);
        cf_cl_device_info *grown = realloc(list, (size_t)(n + (int)nd) * sizeof *list);
        if (!devs || !grown) {
            free(devs);
            free(grown ? grown : list);
            free(plats);
            return CF_ERR_NOMEM;
        }
        list = grown;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL);
        for (cl_uint i = 0; i < nd; i++) {
            cf_cl_device_info *d = &list[n++];
            memset(d, 0, sizeof *d);
            d->platform_index = (int)p;
            d->device_index = (int)i;
            d->platform = plats[p];
            d->device = devs[i];
            if (clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof d->platform_name,
                                  d->platform_name, NULL) != CL_SUCCESS)
                snprintf(d->platform_name, sizeof d->platform_name, "?");
            if (clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof d->platform_version,
                                  d->platform_version, NULL) != CL_SUCCESS)
                snprintf(d->platform_version, sizeof d->platform_version, "?");
            d->platform_name[sizeof d->platform_name - 1] = 0;
            d->platform_version[sizeof d->platform_version - 1] = 0;
            info_str(devs[i], CL_DEVICE_NAME, d->name, sizeof d->name);
            info_str(devs[i], CL_DEVICE_VENDOR, d->vendor, sizeof d->vendor);
            info_str(devs[i], CL_DEVICE_VERSION, d->version, sizeof d->version);
            info_str(devs[i], CL_DRIVER_VERSION, d->driver, sizeof d->driver);
            info_str(devs[i], CL_DEVICE_OPENCL_C_VERSION, d->c_version, sizeof d->c_version);
            cl_bool unified = CL_FALSE, available = CL_FALSE, compiler = CL_FALSE;
            clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_AVAILABLE, sizeof available, &available, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler, &compiler,
                            NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof d->compute_units,
                            &d->compute_units, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof d->clock_mhz,
                            &d->clock_mhz, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem,
                            &d->global_mem, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem, &d->local_mem,
                            NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc,
                            &d->max_alloc, NULL);
            clGetDeviceInfo(devs[i], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_group,
                            &d->max_group, NULL);
            d->unified = unified == CL_TRUE;
            size_t ext_len = 0;
            clGetDeviceInfo(devs[i], CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len);
            char *ext = calloc(ext_len + 1, 1);
            if (ext && clGetDeviceInfo(devs[i], CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) ==
                           CL_SUCCESS) {
                snprintf(d->extensions, sizeof d->extensions, "%s", ext);
                d->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
                d->subgroups = strstr(ext, "cl_khr_subgroups") != NULL ||
                               strstr(ext, "cl_intel_subgroups") != NULL;
                if (strstr(ext, "cl_nv_device_attribute_query")) {
                    /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV / _MINOR_NV */
                    cl_uint ccmaj = 0, ccmin = 0;
                    if (clGetDeviceInfo(devs[i], 0x4000, sizeof ccmaj, &ccmaj, NULL) ==
                            CL_SUCCESS &&
                        clGetDeviceInfo(devs[i], 0x4001, sizeof ccmin, &ccmin, NULL) == CL_SUCCESS)
                        d->nv_cc = (int)(ccmaj * 10 + ccmin);
                }
            }
            free(ext);
            check_usable(d, available, compiler);
        }
        free(devs);
    }
    free(plats);
    *out = list;
    *count = n;
    if (n == 0 && why && why_len)
        snprintf(why, why_len, "%u OpenCL platform(s) but no device", (unsigned)np);
    return CF_OK;
}

const char *cf_cl_type_name(const cf_cl_device_info *d) {
    if (d->type & CL_DEVICE_TYPE_GPU) return d->unified ? "integrated GPU" : "GPU";
    if (d->type & CL_DEVICE_TYPE_CPU) return "CPU";
    if (d->type & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

static void fmt_bytes(char *buf, size_t len, cl_ulong b) {
    if (b >= (1ull << 30)) snprintf(buf, len, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ull << 20));
    else snprintf(buf, len, "%.0f KiB", (double)b / 1024.0);
}

int cf_opencl_list_devices(FILE *out) {
    cf_cl_device_info *list = NULL;
    int n = 0;
    char why[256];
    int rc = cf_cl_enumerate(&list, &n, why, sizeof why);
    if (rc < 0) return rc;
    if (n == 0) {
        fprintf(out,
                "no OpenCL devices: %s; install an OpenCL driver (PoCL for CPUs, or your GPU "
                "vendor's) to use one\n",
                why);
        return CF_OK;
    }
    for (int i = 0; i < n; i++) {
        const cf_cl_device_info *d = &list[i];
        char gm[32], lm[32], ma[32];
        fmt_bytes(gm, sizeof gm, d->global_mem);
        fmt_bytes(lm, sizeof lm, d->local_mem);
        fmt_bytes(ma, sizeof ma, d->max_alloc);
        fprintf(out, "opencl:%d:%d  %s\n", d->platform_index, d->device_index, d->name);
        fprintf(out, "    platform        %s (%s)\n", d->platform_name, d->platform_version);
        fprintf(out, "    version         %s, driver %s\n", d->version, d->driver);
        fprintf(out, "    type            %s%s\n", cf_cl_type_name(d),
                d->unified ? " (unified host memory)" : "");
        fprintf(out, "    compute units   %u at %u MHz, work-groups up to %zu\n", d->compute_units,
                d->clock_mhz, d->max_group);
        fprintf(out, "    memory          global %s, local %s, max allocation %s\n", gm, lm, ma);
        fprintf(out, "    OpenCL C        %s\n", d->c_version);
        fprintf(out, "    fp16 %s, subgroups %s\n", d->fp16 ? "yes" : "no",
                d->subgroups ? "yes" : "no");
        if (d->nv_cc) fprintf(out, "    compute capability %d.%d\n", d->nv_cc / 10, d->nv_cc % 10);
        /* the matrix engine each reduced precision would use (cl_matrix.h; CF_MATRIX_ENGINE
         * aside) */
        char mx[256] = "";
        const cf_cl_matrix_engine *eng = NULL;
        for (int p = CF_CL_MX_TF32; p < CF_CL_MX_PRECISIONS; p++) {
            const cf_cl_matrix_engine *e =
                cf_cl_matrix_select(cf_cl_matrix_engines, cf_cl_matrix_n_engines, d, p, NULL, NULL, 0)
                    .e;
            if (!e) continue;
            eng = e;
            const size_t len = strlen(mx);
            snprintf(mx + len, sizeof mx - len, "%s%s", len ? ", " : "", cf_precision_name(p));
        }
        if (eng)
            fprintf(out, "    matrix engine   %s (precision %s)\n", eng->name, mx);
        else
            fprintf(out, "    matrix engine   none (precision tf32 runs fp32 here, bf16 and fp16 "
                         "round the GEMM inputs in the kernel)\n");
        if (d->usable) fprintf(out, "    usable          yes\n");
        else fprintf(out, "    usable          no: %s\n", d->reason);
    }
    free(list);
    return CF_OK;
}

int cf_cl_device_type(const cf_cl_device_info *d) {
    if (d->type & CL_DEVICE_TYPE_GPU) return d->unified ? CF_DEVICE_INTEGRATED_GPU : CF_DEVICE_GPU;
    if (d->type & CL_DEVICE_TYPE_CPU) return CF_DEVICE_CPU;
    return CF_DEVICE_ACCELERATOR;
}

int cf_opencl_enumerate(const cf_backend_options *opts, cf_device_desc *out, int max, char *why,
                        size_t why_len) {
    (void)opts;
    cf_cl_device_info *list = NULL;
    int n = 0;
    int rc = cf_cl_enumerate(&list, &n, why, why_len);
    if (rc < 0) return rc;
    for (int i = 0; i < n && i < max; i++) {
        const cf_cl_device_info *d = &list[i];
        cf_device_desc *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->spec, sizeof o->spec, "opencl:%d:%d", d->platform_index, d->device_index);
        snprintf(o->name, sizeof o->name, "%s", d->name);
        snprintf(o->platform, sizeof o->platform, "%s", d->platform_name);
        snprintf(o->driver, sizeof o->driver, "%s", d->driver);
        o->device_type = cf_cl_device_type(d);
        o->usable = d->usable;
        snprintf(o->reason, sizeof o->reason, "%s", d->usable ? "" : d->reason);
    }
    free(list);
    return n;
}

/* ---- device selection -------------------------------------------------------------------------- */

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return 0;
}

/* "opencl:0:0 NAME (PLATFORM), ..." for error messages */
static void describe_all(const cf_cl_device_info *list, int n, int with_reason, char *out,
                         size_t len) {
    out[0] = 0;
    size_t used = 0;
    for (int i = 0; i < n && used + 1 < len; i++) {
        const cf_cl_device_info *d = &list[i];
        int w = snprintf(out + used, len - used, "%sopencl:%d:%d %s (%s%s%s)", i ? ", " : "",
                         d->platform_index, d->device_index, d->name, cf_cl_type_name(d),
                         with_reason && !d->usable ? ", not usable: " : "",
                         with_reason && !d->usable ? d->reason : "");
        if (w < 0) break;
        used += (size_t)w;
    }
    if (n == 0) snprintf(out, len, "none");
}

static int gpu_rank(const cf_cl_device_info *d) {
    if (d->type & CL_DEVICE_TYPE_GPU) return d->unified ? 2 : 3; /* discrete before integrated */
    if (d->type & CL_DEVICE_TYPE_ACCELERATOR) return 1;
    return 0;
}

/* Pick a device for spec; -1 with an error (or, for auto, the warning) printed when none. */
int cf_cl_select_device(const char *spec, const cf_cl_device_info *list, int n,
                        const char *enum_why, int is_auto, int allow_cpu) {
    char all[2048];
    if (is_auto) {
        int best = -1;
        double best_score = -1.0;
        for (int i = 0; i < n; i++) {
            const cf_cl_device_info *d = &list[i];
            int r = gpu_rank(d);
            if (!d->usable || (r < 2 && !allow_cpu)) continue;
            double score = r * 1e12 + (double)d->compute_units * d->clock_mhz * 1e3 +
                           (double)(d->global_mem >> 20);
            if (score > best_score) {
                best_score = score;
                best = i;
            }
        }
        if (best < 0) {
            if (n == 0) snprintf(all, sizeof all, "%s", enum_why);
            else describe_all(list, n, 1, all, sizeof all);
            CF_WARN("no usable OpenCL GPU (found: %s); falling back to the CPU backend", all);
        }
        return best;
    }
    describe_all(list, n, 1, all, sizeof all);
    if (strcasecmp(spec, "opencl") == 0) {
        for (int i = 0; i < n; i++)
            if (list[i].usable) return i;
        CF_ERROR("device 'opencl': no usable OpenCL device (found: %s); run 'clformer devices'",
                 n ? all : enum_why);
        return -1;
    }
    int p = -1, dv = -1;
    char tail = 0;
    if (strncasecmp(spec, "opencl:", 7) == 0) {
        if (sscanf(spec + 7, "%d:%d%c", &p, &dv, &tail) != 2 || p < 0 || dv < 0) {
            CF_ERROR("device '%s': expected opencl:P:D with platform and device numbers, e.g. "
                     "opencl:0:0; run 'clformer devices'",
                     spec);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (list[i].platform_index != p || list[i].device_index != dv) continue;
            if (list[i].usable) return i;
            CF_ERROR("device '%s' (%s) is not usable: %s; run 'clformer devices'", spec,
                     list[i].name, list[i].reason);
            return -1;
        }
        CF_ERROR("device '%s' not found; available: %s; run 'clformer devices'", spec,
                 n ? all : enum_why);
        return -1;
    }
    int first_match = -1;
    for (int i = 0; i < n; i++) {
        const cf_cl_device_info *d = &list[i];
        if (!contains_ci(d->platform_name, spec) && !contains_ci(d->name, spec) &&
            !contains_ci(d->version, spec))
            continue;
        if (d->usable) return i;
        if (first_match < 0) first_match = i;
    }
    if (first_match >= 0) {
        CF_ERROR("device '%s' (opencl:%d:%d %s) is not usable: %s; run 'clformer devices'", spec,
                 list[first_match].platform_index, list[first_match].device_index,
                 list[first_match].name, list[first_match].reason);
        return -1;
    }
    CF_ERROR("device '%s' not found; available: cpu, %s; run 'clformer devices'", spec,
             n ? all : enum_why);
    return -1;
}
