/*
 * simnvml: a scripted stand-in for NVIDIA's libnvidia-ml.so.1, for tests on machines without a GPU.
 *
 * It exports NVML's C ABI (the subset carbonlab and pynvml use), so the real pynvml loads it as if
 * it were the driver's library. What the "GPUs" do is read from a config file named by the
 * SIMNVML_CONFIG environment variable, read again whenever a session starts (the NVML reference
 * count goes from 0 to 1). Time is the simulated clock: CLOCK_MONOTONIC since that start
 * ("clock real"), or a clock that only moves when the test calls simnvml_advance_ns()
 * ("clock manual"), so tests are exact without sleeping.
 *
 * The energy counter is the exact integral of the scripted power, truncated to whole mJ and
 * updated only every energy_update_ms, like the driver's (~100 ms). Ground truth for tests comes
 * from simnvml_exact_energy_mj(), which integrates the same script without quantisation.
 *
 * Config format: one directive per line, '#' starts a comment. Directives before the first "gpu"
 * line are global; after it they apply to the latest GPU.
 *
 *   clock real | manual
 *   driver 550.54.15                 nvmlSystemGetDriverVersion
 *   nvml_version 12.550.54.15        nvmlSystemGetNVMLVersion
 *   cuda_version 12040               nvmlSystemGetCudaDriverVersion(_v2): major*1000 + minor*10
 *   gpu                              start a new GPU (NVML index = order in the file)
 *   name NVIDIA A100-SXM4-40GB
 *   uuid GPU-0b1c...                 default GPU-5137aa00-0000-0000-0000-00000000000<i>
 *   arch volta | 5                   kepler maxwell pascal volta turing ampere ada hopper blackwell
 *                                    unknown, or the NVML number; default ampere
 *   power 250                        constant watts
 *   power step 0:100 0.5:300 [period 1]     t:W knots, held until the next (square wave with period)
 *   power linear 0:0 10:300 [period P]      t:W knots, linear between them (ramps)
 *                                    before the first knot the first value holds, after the last
 *                                    the last; with a period the script repeats (knots in [0, P))
 *   energy_counter yes | no          default: yes for Volta or newer (and unknown), no before
 *   energy_update_ms 100             counter update period (0: continuous); default 100
 *   energy_update_pattern 60 140     irregular counter updates: these gaps (ms) in turn, repeated
 *                                    from t=0 (overrides energy_update_ms)
 *   power_update_ms 0                power readings sample-and-hold period; default 0
 *   counter_start_mj 123456          counter value at time 0 ("mJ since driver load"); default
 *                                    1e9 (1 MJ, hours of use), so a reload makes it drop
 *   counter_reset 1.5                driver reload at t=1.5 s: the counter restarts from 0
 *   error <function> <CODE> [after S] [until S]
 *                                    <function> is an NVML name, a prefix ending in '*', '*' for
 *                                    every function, or field:<id> for one field of
 *                                    nvmlDeviceGetFieldValues (its per-field nvmlReturn).
 *                                    CODE: NOT_SUPPORTED, GPU_IS_LOST, ... or a number.
 *                                    Global errors apply to functions that take no device.
 *   process <pid|self> <used_bytes> [sm [mem_pct]] [from S] [until S] [sample_pid P]
 *                                    a compute process on this GPU, listed while it lives
 *                                    (from S, default 0, until S, default forever). sm is its SM
 *                                    utilisation in %: a number, or a step script of t:pct knots
 *                                    joined by commas ("0:70,2:0"), held until the next knot.
 *                                    sample_pid: the PID its utilisation samples carry (drivers
 *                                    that translate the process list into a container's PID
 *                                    namespace but not the samples); default pid
 *   util_sample_ms 0                 process utilisation sampling period of the driver. 0
 *                                    (default): one sample per living process, stamped now,
 *                                    zero utilisation included. > 0: a sample at every multiple
 *                                    of the period for each process with a non-zero mean SM
 *                                    utilisation over that period (the mean, rounded), as the
 *                                    driver keeps them; queries return those stamped after
 *                                    lastSeenTimeStamp. Timestamps are µs of the simulated clock
 *   util_buffer 0                    the driver keeps only the latest N samples (0: all)
 *   mig <MIG-uuid> [name...]         a MIG instance of this GPU (MIG mode on)
 *
 * Process utilisation (nvmlDeviceGetProcessUtilization, nvmlDeviceGetProcessesUtilizationInfo) is
 * NOT_SUPPORTED on a GPU in MIG mode and on MIG handles, as the NVML reference says.
 *
 * Test hooks (not NVML): simnvml_now_ns, simnvml_advance_ns, simnvml_set_now_ns,
 * simnvml_is_manual, simnvml_exact_energy_mj, simnvml_power_mw, simnvml_calls,
 * simnvml_reset_calls, simnvml_refcount.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define ARCH_VOLTA 5u
#define ARCH_AMPERE 7u
#define ARCH_UNKNOWN 0xffffffffu

#define FI_TOTAL_ENERGY 83u
#define FI_POWER_AVERAGE 185u
#define FI_POWER_INSTANT 186u
#define FI_ENERGY 191u

#define VALUE_TYPE_UNSIGNED_INT 1
#define VALUE_TYPE_UNSIGNED_LONG_LONG 3

#define MAX_GPUS 16
#define MAX_KNOTS 64
#define MAX_ERRS 32
#define MAX_PROCS 32
#define MAX_PROC_KNOTS 16
#define MAX_MIG 7
#define MAX_RESETS 8
#define STR 96

typedef struct {
    double t, w;
} knot_t;

typedef struct {
    char func[STR];
    int field; /* >= 0: a field id of nvmlDeviceGetFieldValues */
    int code;
    int64_t after_ns, until_ns;
} err_t;

typedef struct {
    unsigned pid;
    unsigned long long mem;
    unsigned memutil;
    int nsm; /* SM % step script: (t, pct) knots; the first value holds before its knot */
    knot_t sm[MAX_PROC_KNOTS];
    int64_t from_ns, until_ns; /* alive in [from, until) */
    unsigned sample_pid;       /* the PID in its utilisation samples */
} proc_t;

typedef struct sim_device {
    int in_use, is_mig, index;
    struct sim_device *parent;
    char name[STR], uuid[STR];
    unsigned arch;
    int energy_counter; /* -1: by arch */
    int nknots, linear;
    knot_t knots[MAX_KNOTS];
    double period;
    int64_t energy_update_ns, power_update_ns;
    int nupdate_pattern; /* > 0: the counter updates at these successive gaps, cyclically */
    int64_t update_pattern[MAX_KNOTS];
    unsigned long long counter_start_mj;
    int nresets;
    int64_t resets[MAX_RESETS];
    int nerrs;
    err_t errs[MAX_ERRS];
    int nprocs;
    proc_t procs[MAX_PROCS];
    int64_t util_sample_ns;
    unsigned util_buffer;
    int nmig;
    struct sim_device *migs[MAX_MIG];
} sim_device;

typedef sim_device *nvmlDevice_t;

typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    unsigned int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t; /* _v2 and _v3 share this layout */

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned long long timeStamp;
    unsigned int pid, smUtil, memUtil, encUtil, decUtil, jpgUtil, ofaUtil;
} nvmlProcessUtilizationInfo_v1_t;

typedef struct {
    unsigned int version;
    unsigned int processSamplesCount;
    unsigned long long lastSeenTimeStamp;
    nvmlProcessUtilizationInfo_v1_t *procUtilArray;
} nvmlProcessesUtilizationInfo_t;

/* NVML_STRUCT_VERSION(ProcessesUtilizationInfo, 1): the struct's size, version 1 in the top byte. */
#define PROCESSES_UTILIZATION_INFO_V1 ((unsigned)sizeof(nvmlProcessesUtilizationInfo_t) | (1u << 24))

static struct {
    pthread_mutex_t mu;
    int refcount;
    int manual;
    int64_t epoch_ns;  /* CLOCK_MONOTONIC at session start (clock real) */
    int64_t manual_ns; /* simulated time since session start (clock manual) */
    char driver[STR], nvml_version[STR];
    int cuda_version;
    int ngpus;
    sim_device gpus[MAX_GPUS];
    sim_device migs[MAX_GPUS * MAX_MIG];
    int nerrs;
    err_t errs[MAX_ERRS];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- call counting (tests check "one init per process", "probe once") ---- */

#define MAX_COUNTED 64
static struct {
    const char *name;
    unsigned long long n;
} calls[MAX_COUNTED];

static void count_call(const char *name) {
    for (int i = 0; i < MAX_COUNTED; i++) {
        if (calls[i].name == NULL) {
            calls[i].name = name;
            calls[i].n = 1;
            return;
        }
        if (strcmp(calls[i].name, name) == 0) {
            calls[i].n++;
            return;
        }
    }
}

#define LOCK()                          \
    do {                                \
        pthread_mutex_lock(&g.mu);      \
        count_call(__func__);           \
    } while (0)
#define UNLOCK() pthread_mutex_unlock(&g.mu)
#define RETURN(x)      \
    do {               \
        nvmlReturn_t r_ = (x); \
        UNLOCK();      \
        return r_;     \
    } while (0)

/* ---- time ---- */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t now_ns(void) {
    if (g.manual) return g.manual_ns;
    if (g.refcount == 0) return 0;
    return mono_ns() - g.epoch_ns;
}

/* ---- the power script and its exact integral ---- */

static double lin(const sim_device *d, int i, double t) {
    const knot_t *a = &d->knots[i], *b = &d->knots[i + 1];
    if (b->t <= a->t) return b->w;
    return a->w + (b->w - a->w) * (t - a->t) / (b->t - a->t);
}

static double power_at(const sim_device *d, double t) {
    int n = d->nknots;
    if (n == 0) return 0.0;
    if (d->period > 0) t -= floor(t / d->period) * d->period;
    if (t < d->knots[0].t) return d->knots[0].w;
    int i = 0;
    while (i + 1 < n && d->knots[i + 1].t <= t) i++;
    if (d->linear && i + 1 < n) return lin(d, i, t);
    return d->knots[i].w;
}

/* Integral of the non-repeating script over [0, x], in joules. */
static double once_integral(const sim_device *d, double x) {
    int n = d->nknots;
    if (x <= 0 || n == 0) return 0.0;
    double acc = 0.0;
    double hi = fmin(x, d->knots[0].t);
    if (hi > 0) acc += hi * d->knots[0].w;
    for (int i = 0; i < n; i++) {
        double s = d->knots[i].t, e = (i + 1 < n) ? d->knots[i + 1].t : INFINITY;
        double lo = fmax(s, 0.0), h = fmin(e, x);
        if (h <= lo) continue;
        if (d->linear && i + 1 < n)
            acc += (h - lo) * (lin(d, i, lo) + lin(d, i, h)) / 2.0; /* exact for a line */
        else
            acc += (h - lo) * d->knots[i].w;
    }
    return acc;
}

static double integral(const sim_device *d, double x) {
    if (x <= 0) return 0.0;
    if (d->period > 0) {
        double k = floor(x / d->period);
        return k * once_integral(d, d->period) + once_integral(d, x - k * d->period);
    }
    return once_integral(d, x);
}

static double energy_j(const sim_device *d, int64_t t0, int64_t t1) {
    return integral(d, t1 / 1e9) - integral(d, t0 / 1e9);
}

static unsigned long long to_mj(double j) {
    if (j <= 0) return 0;
    return (unsigned long long)floor(j * 1000.0 + 1e-6);
}

static unsigned long long counter_mj(const sim_device *d, int64_t t) {
    if (t < 0) t = 0;
    int64_t tq = d->energy_update_ns > 0 ? t - t % d->energy_update_ns : t;
    if (d->nupdate_pattern > 0) {
        int64_t cycle = 0;
        for (int i = 0; i < d->nupdate_pattern; i++) cycle += d->update_pattern[i];
        tq = t - t % cycle;
        for (int i = 0; i < d->nupdate_pattern && tq + d->update_pattern[i] <= t; i++)
            tq += d->update_pattern[i];
    }
    int64_t last_reset = -1;
    for (int i = 0; i < d->nresets; i++)
        if (d->resets[i] <= t && d->resets[i] > last_reset) last_reset = d->resets[i];
    if (last_reset < 0) return d->counter_start_mj + to_mj(energy_j(d, 0, tq));
    if (tq < last_reset) return 0; /* reloaded, not updated since */
    return to_mj(energy_j(d, last_reset, tq));
}

static unsigned power_mw_reading(const sim_device *d, int64_t t) {
    if (d->power_update_ns > 0) t -= t % d->power_update_ns;
    double w = power_at(d, t / 1e9);
    return w <= 0 ? 0u : (unsigned)floor(w * 1000.0 + 0.5);
}

static int has_counter(const sim_device *d) {
    if (d->energy_counter >= 0) return d->energy_counter;
    return d->arch >= ARCH_VOLTA; /* ARCH_UNKNOWN is newer than anything named */
}

/* ---- scripted errors ---- */

static int err_matches(const err_t *e, const char *fn, int64_t t) {
    if (e->field >= 0) return 0;
    if (t < e->after_ns || t >= e->until_ns) return 0;
    size_t n = strlen(e->func);
    if (n > 0 && e->func[n - 1] == '*') return strncmp(e->func, fn, n - 1) == 0;
    return strcmp(e->func, fn) == 0;
}

static int find_err(const err_t *errs, int nerrs, const char *fn) {
    int64_t t = now_ns();
    for (int i = 0; i < nerrs; i++)
        if (err_matches(&errs[i], fn, t)) return errs[i].code;
    return NVML_SUCCESS;
}

static int dev_err(const sim_device *d, const char *fn) {
    int r = find_err(d->errs, d->nerrs, fn);
    if (r == NVML_SUCCESS && d->parent) r = find_err(d->parent->errs, d->parent->nerrs, fn);
    return r;
}

static int field_err(const sim_device *d, unsigned field) {
    int64_t t = now_ns();
    for (int i = 0; i < d->nerrs; i++) {
        const err_t *e = &d->errs[i];
        if (e->field == (int)field && t >= e->after_ns && t < e->until_ns) return e->code;
    }
    return NVML_SUCCESS;
}

/* ---- config ---- */

static const struct {
    const char *name;
    int code;
} codes[] = {
    {"SUCCESS", 0}, {"UNINITIALIZED", 1}, {"INVALID_ARGUMENT", 2}, {"NOT_SUPPORTED", 3},
    {"NO_PERMISSION", 4}, {"ALREADY_INITIALIZED", 5}, {"NOT_FOUND", 6},
    {"INSUFFICIENT_SIZE", 7}, {"INSUFFICIENT_POWER", 8}, {"DRIVER_NOT_LOADED", 9},
    {"TIMEOUT", 10}, {"IRQ_ISSUE", 11}, {"LIBRARY_NOT_FOUND", 12}, {"FUNCTION_NOT_FOUND", 13},
    {"CORRUPTED_INFOROM", 14}, {"GPU_IS_LOST", 15}, {"RESET_REQUIRED", 16},
    {"OPERATING_SYSTEM", 17}, {"LIB_RM_VERSION_MISMATCH", 18}, {"IN_USE", 19}, {"MEMORY", 20},
    {"NO_DATA", 21}, {"VGPU_ECC_NOT_SUPPORTED", 22}, {"INSUFFICIENT_RESOURCES", 23},
    {"FREQ_NOT_SUPPORTED", 24}, {"ARGUMENT_VERSION_MISMATCH", 25}, {"DEPRECATED", 26},
    {"NOT_READY", 27}, {"GPU_NOT_FOUND", 28}, {"INVALID_STATE", 29}, {"UNKNOWN", 999},
};

static const struct {
    const char *name;
    unsigned arch;
} archs[] = {
    {"kepler", 2}, {"maxwell", 3}, {"pascal", 4}, {"volta", 5}, {"turing", 6}, {"ampere", 7},
    {"ada", 8}, {"hopper", 9}, {"blackwell", 10}, {"unknown", ARCH_UNKNOWN},
};

static int parse_double(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_code(const char *s, int *out) {
    const char *name = strncmp(s, "NVML_ERROR_", 11) == 0 ? s + 11 : s;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].name, name) == 0) {
            *out = codes[i].code;
            return 1;
        }
    double v;
    if (parse_double(s, &v) && v >= 0 && v == floor(v)) {
        *out = (int)v;
        return 1;
    }
    return 0;
}

static int64_t s_to_ns(double s) { return (int64_t)llround(s * 1e9); }

static void default_gpu(sim_device *d, int index) {
    memset(d, 0, sizeof *d);
    d->in_use = 1;
    d->index = index;
    snprintf(d->name, STR, "Simulated GPU %d", index);
    snprintf(d->uuid, STR, "GPU-5137aa00-0000-0000-0000-%012d", index);
    d->arch = ARCH_AMPERE;
    d->energy_counter = -1;
    d->energy_update_ns = 100000000LL;
    d->counter_start_mj = 1000000000ULL;
}

/* Parse "error <fn> <CODE> [after S] [until S]" into e; 0 on a malformed line. */
static int parse_error(char **tok, int ntok, err_t *e) {
    if (ntok < 3) return 0;
    memset(e, 0, sizeof *e);
    e->field = -1;
    e->until_ns = INT64_MAX;
    if (strncmp(tok[1], "field:", 6) == 0) {
        double f;
        if (!parse_double(tok[1] + 6, &f) || f < 0) return 0;
        e->field = (int)f;
    }
    snprintf(e->func, STR, "%s", tok[1]);
    if (!parse_code(tok[2], &e->code)) return 0;
    for (int i = 3; i < ntok; i += 2) {
        double v;
        if (i + 1 >= ntok || !parse_double(tok[i + 1], &v)) return 0;
        if (strcmp(tok[i], "after") == 0)
            e->after_ns = s_to_ns(v);
        else if (strcmp(tok[i], "until") == 0)
            e->until_ns = s_to_ns(v);
        else
            return 0;
    }
    return 1;
}

static int parse_power(sim_device *d, char **tok, int ntok) {
    double v;
    d->nknots = 0;
    d->linear = 0;
    d->period = 0;
    if (ntok == 2 && parse_double(tok[1], &v)) {
        d->knots[0].t = 0;
        d->knots[0].w = v;
        d->nknots = 1;
        return 1;
    }
    if (ntok < 3) return 0;
    if (strcmp(tok[1], "linear") == 0)
        d->linear = 1;
    else if (strcmp(tok[1], "step") != 0)
        return 0;
    for (int i = 2; i < ntok; i++) {
        if (strcmp(tok[i], "period") == 0) {
            if (i + 2 != ntok || !parse_double(tok[i + 1], &d->period) || d->period <= 0) return 0;
            break;
        }
        char *colon = strchr(tok[i], ':');
        if (!colon || d->nknots >= MAX_KNOTS) return 0;
        *colon = '\0';
        knot_t *k = &d->knots[d->nknots];
        if (!parse_double(tok[i], &k->t) || !parse_double(colon + 1, &k->w) || k->t < 0) return 0;
        if (d->nknots > 0 && k->t <= d->knots[d->nknots - 1].t) return 0;
        d->nknots++;
    }
    if (d->nknots == 0) return 0;
    if (d->period > 0 && d->knots[d->nknots - 1].t >= d->period) return 0;
    return 1;
}

/* Parse "process <pid> <bytes> [sm [mem]] [from S] [until S]" into p; 0 on a malformed line. */
static int parse_process(proc_t *p, char **tok, int ntok) {
    double pid, mem, v;
    memset(p, 0, sizeof *p);
    p->until_ns = INT64_MAX;
    /* "self": the process that loaded the library (a pytest run in a subprocess, say) */
    if (strcmp(tok[1], "self") == 0) pid = (double)getpid();
    else if (!parse_double(tok[1], &pid) || pid < 0) return 0;
    if (!parse_double(tok[2], &mem) || mem < 0) return 0;
    p->pid = p->sample_pid = (unsigned)pid;
    p->mem = (unsigned long long)mem;
    p->nsm = 1; /* sm 0 unless given */
    int i = 3;
#define IS_OPTION(t) (strcmp(t, "from") == 0 || strcmp(t, "until") == 0 || strcmp(t, "sample_pid") == 0)
    if (i < ntok && !IS_OPTION(tok[i])) {
        if (strchr(tok[i], ':')) {
            p->nsm = 0;
            char *save = NULL;
            for (char *kn = strtok_r(tok[i], ",", &save); kn; kn = strtok_r(NULL, ",", &save)) {
                char *colon = strchr(kn, ':');
                if (!colon || p->nsm >= MAX_PROC_KNOTS) return 0;
                *colon = '\0';
                knot_t *k = &p->sm[p->nsm];
                if (!parse_double(kn, &k->t) || !parse_double(colon + 1, &k->w) || k->t < 0 ||
                    k->w < 0 || k->w > 100)
                    return 0;
                if (p->nsm > 0 && k->t <= p->sm[p->nsm - 1].t) return 0;
                p->nsm++;
            }
            if (p->nsm == 0) return 0;
        } else {
            if (!parse_double(tok[i], &v) || v < 0 || v > 100) return 0;
            p->sm[0].w = v;
        }
        i++;
        if (i < ntok && !IS_OPTION(tok[i])) {
            if (!parse_double(tok[i], &v) || v < 0 || v > 100) return 0;
            p->memutil = (unsigned)v;
            i++;
        }
    }
    for (; i < ntok; i += 2) {
        if (i + 1 >= ntok || !parse_double(tok[i + 1], &v) || v < 0) return 0;
        if (strcmp(tok[i], "from") == 0)
            p->from_ns = s_to_ns(v);
        else if (strcmp(tok[i], "until") == 0)
            p->until_ns = s_to_ns(v);
        else if (strcmp(tok[i], "sample_pid") == 0 && v == floor(v))
            p->sample_pid = (unsigned)v;
        else
            return 0;
    }
#undef IS_OPTION
    return p->from_ns < p->until_ns;
}

static int load_config(void) {
    const char *path = getenv("SIMNVML_CONFIG");
    if (!path || !*path) return NVML_ERROR_DRIVER_NOT_LOADED;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "simnvml: cannot open SIMNVML_CONFIG=%s\n", path);
        return NVML_ERROR_UNKNOWN;
    }
    g.manual = 0;
    g.ngpus = 0;
    g.nerrs = 0;
    memset(g.migs, 0, sizeof g.migs);
    snprintf(g.driver, STR, "%s", "550.54.15");
    snprintf(g.nvml_version, STR, "%s", "12.550.54.15");
    g.cuda_version = 12040;
    int nmig_total = 0;
    char line[4096];
    int lineno = 0;
    sim_device *d = NULL;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *tok[80];
        int ntok = 0;
        for (char *p = strtok(line, " \t\r\n"); p && ntok < 80; p = strtok(NULL, " \t\r\n"))
            tok[ntok++] = p;
        if (ntok == 0) continue;
        const char *k = tok[0];
        int ok = 1;
        double v = 0;
        if (strcmp(k, "clock") == 0 && ntok == 2) {
            if (strcmp(tok[1], "manual") == 0)
                g.manual = 1;
            else if (strcmp(tok[1], "real") == 0)
                g.manual = 0;
            else
                ok = 0;
        } else if (strcmp(k, "driver") == 0 && ntok == 2) {
            snprintf(g.driver, STR, "%s", tok[1]);
        } else if (strcmp(k, "nvml_version") == 0 && ntok == 2) {
            snprintf(g.nvml_version, STR, "%s", tok[1]);
        } else if (strcmp(k, "cuda_version") == 0 && ntok == 2) {
            g.cuda_version = atoi(tok[1]);
        } else if (strcmp(k, "gpu") == 0 && ntok == 1) {
            if (g.ngpus >= MAX_GPUS)
                ok = 0;
            else {
                d = &g.gpus[g.ngpus];
                default_gpu(d, g.ngpus++);
            }
        } else if (strcmp(k, "error") == 0) {
            err_t *errs = d ? d->errs : g.errs;
            int *n = d ? &d->nerrs : &g.nerrs;
            ok = *n < MAX_ERRS && parse_error(tok, ntok, &errs[*n]);
            if (ok) (*n)++;
        } else if (!d) {
            ok = 0; /* a per-GPU directive before any "gpu" line */
        } else if (strcmp(k, "name") == 0 && ntok >= 2) {
            d->name[0] = '\0';
            for (int i = 1; i < ntok; i++) {
                if (i > 1) strncat(d->name, " ", STR - strlen(d->name) - 1);
                strncat(d->name, tok[i], STR - strlen(d->name) - 1);
            }
        } else if (strcmp(k, "uuid") == 0 && ntok == 2) {
            snprintf(d->uuid, STR, "%s", tok[1]);
        } else if (strcmp(k, "arch") == 0 && ntok == 2) {
            ok = 0;
            for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
                if (strcmp(archs[i].name, tok[1]) == 0) {
                    d->arch = archs[i].arch;
                    ok = 1;
                }
            if (!ok && parse_double(tok[1], &v) && v >= 0) {
                d->arch = (unsigned)v;
                ok = 1;
            }
        } else if (strcmp(k, "power") == 0) {
            ok = parse_power(d, tok, ntok);
        } else if (strcmp(k, "energy_counter") == 0 && ntok == 2) {
            d->energy_counter = strcmp(tok[1], "yes") == 0 ? 1 : strcmp(tok[1], "no") == 0 ? 0 : -2;
            ok = d->energy_counter >= 0;
        } else if (strcmp(k, "energy_update_ms") == 0 && ntok == 2) {
            ok = parse_double(tok[1], &v) && v >= 0;
            d->energy_update_ns = s_to_ns(v / 1000.0);
        } else if (strcmp(k, "energy_update_pattern") == 0 && ntok >= 2) {
            ok = ntok - 1 <= MAX_KNOTS;
            for (int i = 1; ok && i < ntok; i++) {
                ok = parse_double(tok[i], &v) && v > 0;
                if (ok) d->update_pattern[i - 1] = s_to_ns(v / 1000.0);
            }
            d->nupdate_pattern = ok ? ntok - 1 : 0;
        } else if (strcmp(k, "power_update_ms") == 0 && ntok == 2) {
            ok = parse_double(tok[1], &v) && v >= 0;
            d->power_update_ns = s_to_ns(v / 1000.0);
        } else if (strcmp(k, "counter_start_mj") == 0 && ntok == 2) {
            ok = parse_double(tok[1], &v) && v >= 0;
            d->counter_start_mj = (unsigned long long)v;
        } else if (strcmp(k, "counter_reset") == 0 && ntok == 2) {
            ok = d->nresets < MAX_RESETS && parse_double(tok[1], &v) && v >= 0;
            if (ok) d->resets[d->nresets++] = s_to_ns(v);
        } else if (strcmp(k, "process") == 0 && ntok >= 3) {
            ok = d->nprocs < MAX_PROCS && parse_process(&d->procs[d->nprocs], tok, ntok);
            if (ok) d->nprocs++;
        } else if (strcmp(k, "util_sample_ms") == 0 && ntok == 2) {
            ok = parse_double(tok[1], &v) && v >= 0;
            d->util_sample_ns = s_to_ns(v / 1000.0);
        } else if (strcmp(k, "util_buffer") == 0 && ntok == 2) {
            ok = parse_double(tok[1], &v) && v >= 0 && v == floor(v);
            d->util_buffer = (unsigned)v;
        } else if (strcmp(k, "mig") == 0 && ntok >= 2) {
            ok = d->nmig < MAX_MIG && nmig_total < MAX_GPUS * MAX_MIG;
            if (ok) {
                sim_device *m = &g.migs[nmig_total++];
                memset(m, 0, sizeof *m);
                m->in_use = 1;
                m->is_mig = 1;
                m->index = d->nmig;
                m->parent = d;
                m->arch = d->arch;
                m->energy_counter = 0;
                snprintf(m->uuid, STR, "%s", tok[1]);
                snprintf(m->name, STR, "%.80s MIG", d->name);
                if (ntok > 2) {
                    m->name[0] = '\0';
                    for (int i = 2; i < ntok; i++) {
                        if (i > 2) strncat(m->name, " ", STR - strlen(m->name) - 1);
                        strncat(m->name, tok[i], STR - strlen(m->name) - 1);
                    }
                }
                d->migs[d->nmig++] = m;
            }
        } else {
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "simnvml: %s:%d: cannot use this line: %s\n", path, lineno, k);
            fclose(f);
            g.ngpus = 0;
            return NVML_ERROR_UNKNOWN;
        }
    }
    fclose(f);
    return NVML_SUCCESS;
}

static sim_device *dev_of(nvmlDevice_t h) {
    if (h >= &g.gpus[0] && h < &g.gpus[g.ngpus]) return h;
    if (h >= &g.migs[0] && h < &g.migs[MAX_GPUS * MAX_MIG] && h->in_use) return h;
    return NULL;
}

/* Common prologue of device functions: session open, valid handle, scripted error. */
#define DEVICE_PROLOGUE(h, d)                            \
    LOCK();                                              \
    if (g.refcount == 0) RETURN(NVML_ERROR_UNINITIALIZED); \
    sim_device *d = dev_of(h);                           \
    if (!d) RETURN(NVML_ERROR_INVALID_ARGUMENT);         \
    do {                                                 \
        int e_ = dev_err(d, __func__);                   \
        if (e_) RETURN(e_);                              \
    } while (0)

#define SYSTEM_PROLOGUE()                                \
    LOCK();                                              \
    if (g.refcount == 0) RETURN(NVML_ERROR_UNINITIALIZED); \
    do {                                                 \
        int e_ = find_err(g.errs, g.nerrs, __func__);    \
        if (e_) RETURN(e_);                              \
    } while (0)

/* ---- NVML: session ---- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    LOCK();
    if (g.refcount == 0) {
        int r = load_config();
        if (r) RETURN(r);
        g.manual_ns = 0;
        int e = find_err(g.errs, g.nerrs, __func__);
        if (e) RETURN(e);
        g.epoch_ns = mono_ns();
        g.manual_ns = 0;
    }
    g.refcount++;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

EXPORT nvmlReturn_t nvmlShutdown(void) {
    LOCK();
    if (g.refcount == 0) RETURN(NVML_ERROR_UNINITIALIZED);
    g.refcount--;
    RETURN(NVML_SUCCESS);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
    static const char *strs[] = {
        "Success", "Uninitialized", "Invalid Argument", "Not Supported",
        "Insufficient Permissions", "Already Initialized", "Not Found", "Insufficient Size",
        "Insufficient External Power", "Driver Not Loaded", "Timeout", "Interrupt Request Issue",
        "NVML Shared Library Not Found", "Function Not Found", "Corrupted infoROM", "GPU is lost",
        "GPU requires restart",
    };
    if (r >= 0 && r < (int)(sizeof strs / sizeof strs[0])) return strs[r];
    return "Unknown Error";
}

static nvmlReturn_t copy_str(char *dst, unsigned len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    SYSTEM_PROLOGUE();
    RETURN(copy_str(version, length, g.driver));
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    SYSTEM_PROLOGUE();
    RETURN(copy_str(version, length, g.nvml_version));
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    SYSTEM_PROLOGUE();
    if (!version) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *version = g.cuda_version;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    return nvmlSystemGetCudaDriverVersion(version);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    SYSTEM_PROLOGUE();
    if (!count) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *count = (unsigned)g.ngpus;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    SYSTEM_PROLOGUE();
    if (!device || index >= (unsigned)g.ngpus) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    int e = dev_err(&g.gpus[index], __func__);
    if (e) RETURN(e);
    *device = &g.gpus[index];
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    SYSTEM_PROLOGUE();
    if (!uuid || !device) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    for (int i = 0; i < g.ngpus; i++)
        if (strcmp(g.gpus[i].uuid, uuid) == 0) {
            *device = &g.gpus[i];
            RETURN(NVML_SUCCESS);
        }
    for (int i = 0; i < MAX_GPUS * MAX_MIG; i++)
        if (g.migs[i].in_use && strcmp(g.migs[i].uuid, uuid) == 0) {
            *device = &g.migs[i];
            RETURN(NVML_SUCCESS);
        }
    RETURN(NVML_ERROR_NOT_FOUND);
}

/* ---- NVML: device identity ---- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    DEVICE_PROLOGUE(device, d);
    RETURN(copy_str(name, length, d->name));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    DEVICE_PROLOGUE(device, d);
    RETURN(copy_str(uuid, length, d->uuid));
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    DEVICE_PROLOGUE(device, d);
    if (!index || d->is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *index = (unsigned)d->index;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned int *arch) {
    DEVICE_PROLOGUE(device, d);
    if (!arch) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *arch = d->arch;
    RETURN(NVML_SUCCESS);
}

/* ---- NVML: energy and power ---- */

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                        unsigned long long *energy) {
    DEVICE_PROLOGUE(device, d);
    if (!energy) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (d->is_mig || !has_counter(d)) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *energy = counter_mj(d, now_ns());
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    DEVICE_PROLOGUE(device, d);
    if (!power) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (d->is_mig) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *power = power_mw_reading(d, now_ns());
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int count,
                                             nvmlFieldValue_t *values) {
    DEVICE_PROLOGUE(device, d);
    if (count < 0 || (count > 0 && !values)) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    int64_t t = now_ns();
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = t / 1000;
        v->latencyUsec = 0;
        v->value.ullVal = 0;
        int r = field_err(d, v->fieldId);
        if (!r && d->is_mig) r = NVML_ERROR_NOT_SUPPORTED;
        if (!r) {
            switch (v->fieldId) {
            case FI_POWER_INSTANT:
                v->valueType = VALUE_TYPE_UNSIGNED_INT;
                v->value.uiVal = power_mw_reading(d, t);
                break;
            case FI_POWER_AVERAGE: {
                if (d->arch < ARCH_AMPERE) {
                    r = NVML_ERROR_NOT_SUPPORTED;
                    break;
                }
                int64_t t0 = t > 1000000000LL ? t - 1000000000LL : 0;
                double w = t > t0 ? energy_j(d, t0, t) / ((t - t0) / 1e9) : power_at(d, 0);
                v->valueType = VALUE_TYPE_UNSIGNED_INT;
                v->value.uiVal = w <= 0 ? 0u : (unsigned)floor(w * 1000.0 + 0.5);
                break;
            }
            case FI_TOTAL_ENERGY:
            case FI_ENERGY:
                if (!has_counter(d)) {
                    r = NVML_ERROR_NOT_SUPPORTED;
                    break;
                }
                v->valueType = VALUE_TYPE_UNSIGNED_LONG_LONG;
                v->value.ullVal = counter_mj(d, t);
                break;
            default:
                r = NVML_ERROR_NOT_SUPPORTED;
            }
        }
        v->nvmlReturn = r;
    }
    RETURN(NVML_SUCCESS);
}

/* ---- NVML: processes ---- */

static int proc_alive(const proc_t *p, int64_t t) { return t >= p->from_ns && t < p->until_ns; }

/* Integral over [x0, x1] seconds of a step script (the first value holds before its knot). */
static double step_integral(const knot_t *k, int n, double x0, double x1) {
    double acc = 0.0;
    if (x1 <= x0 || n == 0) return 0.0;
    for (int i = -1; i < n; i++) {
        double s = i < 0 ? -INFINITY : k[i].t;
        double e = i + 1 < n ? k[i + 1].t : INFINITY;
        double w = k[i < 0 ? 0 : i].w;
        double lo = fmax(s, x0), hi = fmin(e, x1);
        if (hi > lo) acc += (hi - lo) * w;
    }
    return acc;
}

static double proc_sm_at(const proc_t *p, int64_t t) {
    if (!proc_alive(p, t)) return 0.0;
    double x = t / 1e9, w = p->sm[0].w;
    for (int i = 0; i < p->nsm && p->sm[i].t <= x; i++) w = p->sm[i].w;
    return w;
}

/* Mean SM % over (a, b] ns, zero while the process is not alive. */
static double proc_sm_mean(const proc_t *p, int64_t a, int64_t b) {
    if (b <= a) return 0.0;
    int64_t lo = a > p->from_ns ? a : p->from_ns, hi = b < p->until_ns ? b : p->until_ns;
    if (hi <= lo) return 0.0;
    return step_integral(p->sm, p->nsm, lo / 1e9, hi / 1e9) / ((b - a) / 1e9);
}

typedef struct {
    unsigned pid, sm, mem;
    unsigned long long ts;
} sample_t;

/* The utilisation samples the driver holds stamped after last_seen (µs), oldest first. Writes
 * up to max of them into out (out may be NULL) and returns how many there are. */
static unsigned util_samples(const sim_device *d, unsigned long long last_seen, sample_t *out,
                             unsigned max) {
    int64_t now = now_ns();
    unsigned n = 0;
    if (d->util_sample_ns <= 0) {
        unsigned long long ts = (unsigned long long)(now / 1000);
        if (ts <= last_seen) return 0;
        for (int i = 0; i < d->nprocs; i++) {
            const proc_t *p = &d->procs[i];
            if (!proc_alive(p, now)) continue;
            if (out && n < max)
                out[n] = (sample_t){p->sample_pid, (unsigned)llround(proc_sm_at(p, now)),
                                    p->memutil, ts};
            n++;
        }
        return n;
    }
    if (last_seen >= (unsigned long long)(now / 1000)) return 0;
    int64_t per = d->util_sample_ns;
    int64_t k0 = (int64_t)(last_seen * 1000ULL) / per + 1, k1 = now / per;
    for (int pass = 0; pass < 2; pass++) {
        unsigned total = n, skip = 0;
        if (pass == 1) {
            if (!out) break;
            skip = d->util_buffer && total > d->util_buffer ? total - d->util_buffer : 0;
            n = 0;
        }
        unsigned seen = 0;
        for (int64_t k = k0 > 1 ? k0 : 1; k <= k1; k++) {
            for (int i = 0; i < d->nprocs; i++) {
                const proc_t *p = &d->procs[i];
                double m = proc_sm_mean(p, (k - 1) * per, k * per);
                if (m <= 0) continue;
                if (pass == 0) {
                    n++;
                    continue;
                }
                if (seen++ < skip) continue;
                if (n < max)
                    out[n] = (sample_t){p->sample_pid, (unsigned)llround(m), p->memutil,
                                        (unsigned long long)(k * per / 1000)};
                n++;
            }
        }
    }
    if (d->util_buffer && n > d->util_buffer) n = d->util_buffer;
    return n;
}

static nvmlReturn_t list_procs(sim_device *d, unsigned *count, void *infos, int version) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    int64_t now = now_ns();
    unsigned n = 0;
    for (int i = 0; i < d->nprocs; i++) n += proc_alive(&d->procs[i], now);
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (*count < n || !infos) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned j = 0;
    for (int i = 0; i < d->nprocs; i++) {
        const proc_t *q = &d->procs[i];
        if (!proc_alive(q, now)) continue;
        if (version == 1) {
            nvmlProcessInfo_v1_t *p = &((nvmlProcessInfo_v1_t *)infos)[j++];
            p->pid = q->pid;
            p->usedGpuMemory = q->mem;
        } else {
            nvmlProcessInfo_t *p = &((nvmlProcessInfo_t *)infos)[j++];
            p->pid = q->pid;
            p->usedGpuMemory = q->mem;
            p->gpuInstanceId = 0xffffffffu;
            p->computeInstanceId = 0xffffffffu;
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                            unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
    DEVICE_PROLOGUE(device, d);
    RETURN(list_procs(d, count, infos, 3));
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                            unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
    DEVICE_PROLOGUE(device, d);
    RETURN(list_procs(d, count, infos, 2));
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count,
                                                         nvmlProcessInfo_v1_t *infos) {
    DEVICE_PROLOGUE(device, d);
    RETURN(list_procs(d, count, infos, 1));
}

#define MAX_SAMPLES 65536

EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                                    nvmlProcessUtilizationSample_t *utilization,
                                                    unsigned int *count,
                                                    unsigned long long lastSeenTimeStamp) {
    DEVICE_PROLOGUE(device, d);
    if (!count) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (d->is_mig || d->nmig > 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
    unsigned n = util_samples(d, lastSeenTimeStamp, NULL, 0);
    if (n == 0) RETURN(NVML_ERROR_NOT_FOUND);
    if (!utilization || *count < n) {
        *count = n;
        RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    if (n > MAX_SAMPLES) RETURN(NVML_ERROR_UNKNOWN);
    sample_t *buf = calloc(n, sizeof *buf);
    if (!buf) RETURN(NVML_ERROR_UNKNOWN);
    n = util_samples(d, lastSeenTimeStamp, buf, n);
    for (unsigned i = 0; i < n; i++)
        utilization[i] = (nvmlProcessUtilizationSample_t){buf[i].pid, buf[i].ts, buf[i].sm,
                                                          buf[i].mem, 0, 0};
    free(buf);
    *count = n;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetProcessesUtilizationInfo(nvmlDevice_t device,
                                                          nvmlProcessesUtilizationInfo_t *info) {
    DEVICE_PROLOGUE(device, d);
    if (!info) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (info->version != PROCESSES_UTILIZATION_INFO_V1)
        RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (d->is_mig || d->nmig > 0) RETURN(NVML_ERROR_NOT_SUPPORTED);
    unsigned n = util_samples(d, info->lastSeenTimeStamp, NULL, 0);
    if (n == 0) RETURN(NVML_ERROR_NOT_FOUND);
    if (!info->procUtilArray || info->processSamplesCount < n) {
        info->processSamplesCount = n;
        RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    if (n > MAX_SAMPLES) RETURN(NVML_ERROR_UNKNOWN);
    sample_t *buf = calloc(n, sizeof *buf);
    if (!buf) RETURN(NVML_ERROR_UNKNOWN);
    n = util_samples(d, info->lastSeenTimeStamp, buf, n);
    for (unsigned i = 0; i < n; i++)
        info->procUtilArray[i] = (nvmlProcessUtilizationInfo_v1_t){
            buf[i].ts, buf[i].pid, buf[i].sm, buf[i].mem, 0, 0, 0, 0};
    free(buf);
    info->processSamplesCount = n;
    RETURN(NVML_SUCCESS);
}

/* ---- NVML: MIG ---- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current,
                                         unsigned int *pending) {
    DEVICE_PROLOGUE(device, d);
    if (!current || !pending || d->is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (d->nmig == 0 && d->arch < ARCH_AMPERE) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *current = *pending = d->nmig > 0;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMig) {
    DEVICE_PROLOGUE(device, d);
    if (!isMig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *isMig = (unsigned)d->is_mig;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice,
                                                                 nvmlDevice_t *device) {
    DEVICE_PROLOGUE(migDevice, d);
    if (!device || !d->is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *device = d->parent;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    DEVICE_PROLOGUE(device, d);
    if (!count || d->is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (d->nmig == 0 && d->arch < ARCH_AMPERE) RETURN(NVML_ERROR_NOT_SUPPORTED);
    *count = (unsigned)d->nmig;
    RETURN(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *migDevice) {
    DEVICE_PROLOGUE(device, d);
    if (!migDevice || d->is_mig) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= (unsigned)d->nmig) RETURN(NVML_ERROR_NOT_FOUND);
    *migDevice = d->migs[index];
    RETURN(NVML_SUCCESS);
}

/* ---- test hooks (not part of NVML) ---- */

EXPORT long long simnvml_now_ns(void) {
    pthread_mutex_lock(&g.mu);
    long long t = now_ns();
    pthread_mutex_unlock(&g.mu);
    return t;
}

/* Moves the manual clock; returns the new time, or -1 when the clock is real. */
EXPORT long long simnvml_advance_ns(long long ns) {
    pthread_mutex_lock(&g.mu);
    long long t = -1;
    if (g.manual && ns >= 0) t = g.manual_ns += ns;
    pthread_mutex_unlock(&g.mu);
    return t;
}

EXPORT long long simnvml_set_now_ns(long long ns) {
    pthread_mutex_lock(&g.mu);
    long long t = -1;
    if (g.manual && ns >= g.manual_ns) t = g.manual_ns = ns;
    pthread_mutex_unlock(&g.mu);
    return t;
}

EXPORT int simnvml_is_manual(void) { return g.manual; }

EXPORT int simnvml_refcount(void) { return g.refcount; }

/* Exact integral of GPU index's scripted power over [t0, t1], in mJ (no quantisation, no reset). */
EXPORT double simnvml_exact_energy_mj(unsigned index, long long t0_ns, long long t1_ns) {
    pthread_mutex_lock(&g.mu);
    double e = index < (unsigned)g.ngpus ? energy_j(&g.gpus[index], t0_ns, t1_ns) * 1000.0 : NAN;
    pthread_mutex_unlock(&g.mu);
    return e;
}

/* Scripted (unquantised) power of GPU index at t, in mW. */
EXPORT double simnvml_power_mw(unsigned index, long long t_ns) {
    pthread_mutex_lock(&g.mu);
    double w = index < (unsigned)g.ngpus ? power_at(&g.gpus[index], t_ns / 1e9) * 1000.0 : NAN;
    pthread_mutex_unlock(&g.mu);
    return w;
}

EXPORT unsigned long long simnvml_calls(const char *name) {
    unsigned long long n = 0;
    pthread_mutex_lock(&g.mu);
    for (int i = 0; i < MAX_COUNTED && calls[i].name; i++)
        if (strcmp(calls[i].name, name) == 0) n = calls[i].n;
    pthread_mutex_unlock(&g.mu);
    return n;
}

EXPORT void simnvml_reset_calls(void) {
    pthread_mutex_lock(&g.mu);
    memset(calls, 0, sizeof calls);
    pthread_mutex_unlock(&g.mu);
}
