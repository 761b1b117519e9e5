/* Encode kernel of the residual-quantisation encoder (fluidrec.codes.rqkmeans).
 *
 * With scores[b, l*K + m] = <x_b, c_{l,m}> - ||c_{l,m}||^2 / 2 for every level (one GEMM
 * against all levels' codewords), the code of level l is
 *     argmax_m  scores[b, l*K + m] - sum_{j<l} <c_{j, code_j}, c_{l,m}>,
 * with the cross inner products read from tables. fluidrec_rq_encode computes the scores
 * of six rows at a time with a register-blocked AVX2/FMA GEMM and runs that argmax on them
 * while they sit in L1; fluidrec_rq_levels_argmax is the argmax alone, on given scores
 * (tests use it for ties and extreme values). ctypes releases the GIL around each call,
 * so the encode workers run in parallel. The plain NumPy reference is
 * fluidrec.codes.rqkmeans.encode_reference; tests compare the two, and the SIMD loops
 * with the plain-C ones.
 *
 * Ties go to the lowest index, as numpy.argmax does. Built by setup.py as an optional
 * extension; without a C compiler fluidrec falls back to the torch/NumPy path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#include "../_gemm6x16.h"

#define MAX_LEVELS 64

/* First index of the largest value of s[m] - sum_r rows[r][m] (plain C; subtraction in row order). */
static inline int64_t argmax_plain(const float *s, const float *const *rows, int64_t nrows, int64_t k) {
    int64_t best = 0;
    float best_v = 0.0f;
    for (int64_t m = 0; m < k; m++) {
        float v = s[m];
        for (int64_t r = 0; r < nrows; r++) v -= rows[r][m];
        if (m == 0 || v > best_v) { best_v = v; best = m; }
    }
    return best;
}

#ifdef HAVE_AVX2_PATH
/* Same result as argmax_plain, 8 lanes at a time and branch-free: each lane keeps its
 * largest value and the first index where it occurred (strict >, so ties keep the earlier
 * index); the lanes are then reduced with shuffles: the maximum, and the smallest index
 * among the lanes holding it. -0.0 == +0.0 under the float compare, as in numpy.argmax. */
__attribute__((target("avx2"), always_inline)) static inline int64_t argmax_avx2(const float *s, const float *const *rows, int64_t nrows,
                                                                                int64_t k) {
    int64_t m = 0;
    int32_t best = 0;
    float best_v = 0.0f;
    if (k >= 8) {
        __m256 best_val = _mm256_set1_ps(-INFINITY);
        __m256i best_idx = _mm256_setzero_si256();
        __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i step = _mm256_set1_epi32(8);
        for (; m + 8 <= k; m += 8) {
            __m256 v = _mm256_loadu_ps(s + m);
            for (int64_t r = 0; r < nrows; r++) v = _mm256_sub_ps(v, _mm256_loadu_ps(rows[r] + m));
            __m256 better = _mm256_cmp_ps(v, best_val, _CMP_GT_OQ);
            best_val = _mm256_blendv_ps(best_val, v, better);
            best_idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best_idx), _mm256_castsi256_ps(idx), better));
            idx = _mm256_add_epi32(idx, step);
        }
        /* lane reduction: max value, broadcast */
        __m256 t = _mm256_max_ps(best_val, _mm256_permute2f128_ps(best_val, best_val, 1));
        t = _mm256_max_ps(t, _mm256_shuffle_ps(t, t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm256_max_ps(t, _mm256_shuffle_ps(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
        /* smallest index among the lanes holding it */
        __m256 hold = _mm256_cmp_ps(best_val, t, _CMP_EQ_OQ);
        __m256i cand = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(_mm256_set1_epi32(INT32_MAX)), _mm256_castsi256_ps(best_idx), hold));
        cand = _mm256_min_epi32(cand, _mm256_permute2x128_si256(cand, cand, 1));
        cand = _mm256_min_epi32(cand, _mm256_shuffle_epi32(cand, _MM_SHUFFLE(1, 0, 3, 2)));
        cand = _mm256_min_epi32(cand, _mm256_shuffle_epi32(cand, _MM_SHUFFLE(2, 3, 0, 1)));
        best = _mm256_cvtsi256_si32(cand);
        best_v = _mm256_cvtss_f32(t);
    }
    for (; m < k; m++) { /* tail (k not a multiple of 8), same arithmetic */
        float v = s[m];
        for (int64_t r = 0; r < nrows; r++) v -= rows[r][m];
        if (m == 0 || v > best_v) { best_v = v; best = (int32_t)m; }
    }
    return best;
}
#endif

/* 1 if all k values are finite. A NaN or inf anywhere in x makes every level-0 score of
 * its row non-finite (inf * 0 and inf - inf are NaN), so scanning those scores replaces a
 * separate pass over x. Integer test on the exponent bits: an OR reduction the compiler
 * vectorises (a float sum would be one serial add chain). */
static int all_finite(const float *v, int64_t k) {
    uint32_t bad = 0;
    for (int64_t m = 0; m < k; m++) {
        uint32_t bits;
        memcpy(&bits, v + m, sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* The row loop, once per argmax flavour so the argmax inlines. Rows go in pairs: each
 * level's argmax must finish before the next level can look up its cross rows, so one row
 * is a chain of dependent steps; two interleaved rows give the core independent work. */
#define DEFINE_ROWS(NAME, ATTR, ARGMAX)                                                                           \
    ATTR static int64_t NAME(const float *scores, int64_t n, int64_t stride, int64_t levels, int64_t k,           \
                             const float *cross, int32_t *codes) {                                                \
        const float *rows_a[MAX_LEVELS], *rows_b[MAX_LEVELS];                                                     \
        int64_t b = 0;                                                                                            \
        for (; b + 2 <= n; b += 2) {                                                                              \
            const float *ra = scores + b * stride, *rb = ra + stride;                                             \
            if (!all_finite(ra, k) || !all_finite(rb, k)) break; /* the single-row loop finds which */            \
            int32_t *oa = codes + b * levels, *ob = oa + levels;                                                  \
            const float *block = cross;                                                                           \
            for (int64_t l = 0; l < levels; l++) {                                                                \
                for (int64_t j = 0; j < l; j++) {                                                                 \
                    rows_a[j] = block + (j * k + oa[j]) * k;                                                      \
                    rows_b[j] = block + (j * k + ob[j]) * k;                                                      \
                }                                                                                                 \
                oa[l] = (int32_t)ARGMAX(ra + l * k, rows_a, l, k);                                                \
                ob[l] = (int32_t)ARGMAX(rb + l * k, rows_b, l, k);                                                \
                if (l > 0) block += l * k * k;                                                                    \
            }                                                                                                     \
        }                                                                                                         \
        for (; b < n; b++) { /* odd last row, or from a non-finite pair on */                                     \
            const float *ra = scores + b * stride;                                                                \
            if (!all_finite(ra, k)) return b;                                                                     \
            int32_t *oa = codes + b * levels;                                                                     \
            const float *block = cross;                                                                           \
            for (int64_t l = 0; l < levels; l++) {                                                                \
                for (int64_t j = 0; j < l; j++) rows_a[j] = block + (j * k + oa[j]) * k;                          \
                oa[l] = (int32_t)ARGMAX(ra + l * k, rows_a, l, k);                                                \
                if (l > 0) block += l * k * k;                                                                    \
            }                                                                                                     \
        }                                                                                                         \
        return -1;                                                                                                \
    }

DEFINE_ROWS(rows_plain, , argmax_plain)
#ifdef HAVE_AVX2_PATH
DEFINE_ROWS(rows_avx2, __attribute__((target("avx2"))), argmax_avx2)
#endif

/* 1 where the AVX2/FMA loops were compiled in and this CPU runs them, else 0. fluidrec
 * encodes with this kernel only then: its plain-C loops are slower than the torch path. */
int64_t fluidrec_rq_simd(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* codes[b, l] for b < n, l < levels (levels <= MAX_LEVELS).
 *   scores: (n, levels * k) row-major, as above.
 *   cross:  for each level l >= 1, an (l * k, k) block (rows j * k + c hold <c_{j,c}, c_{l,.}>),
 *           blocks stored one after another in level order.
 *   codes:  (n, levels) int32 output.
 * Returns the first row whose level-0 scores are not all finite (its input has a NaN or
 * inf, or overflows), or -1; rows before it are encoded, rows from it on are left unset.
 */
int64_t fluidrec_rq_levels_argmax(const float *scores, int64_t n, int64_t levels, int64_t k, const float *cross,
                                  int32_t *codes) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return rows_avx2(scores, n, levels * k, levels, k, cross, codes);
#endif
    return rows_plain(scores, n, levels * k, levels, k, cross, codes);
}

/* ---- Fused path: the GEMM and the argmax in one pass, scores never leave L1 ----
 *
 * A score block of 2048 rows x 256 columns is 2 MB: written by the GEMM and read back by
 * the argmax, it travels through L3 twice. Here a register-blocked GEMM computes the
 * scores of GR (6) rows at a time into a small buffer (GR x columns, a few KB, in L1),
 * and the argmax above runs on it at once. The micro-kernel is the 6 x 16 AVX2/FMA
 * register block of _gemm6x16.h, shared with the ranker's fused kernel; the codewords are
 * packed once per encode call in its panel order (fluidrec.utils.ckernel.pack_panels). */
/* codes (n, levels) of the rows of x (n, d; row stride ldx), straight from the input.
 *   packed: the (d, levels * k) codeword matrix in panel order (pack_panels);
 *   bias:   -||c||^2 / 2 per column, padded with zeros to a multiple of GC;
 *   cross:  as for fluidrec_rq_levels_argmax;
 *   allow_simd: 0 forces the plain-C loops (tests compare both).
 * Returns the first row whose input has a NaN/inf (or whose scores overflow), or -1 (rows
 * before it are encoded), or -2 when the two small work buffers cannot be allocated. */
int64_t fluidrec_rq_encode(const float *x, int64_t n, int64_t d, int64_t ldx, const float *packed, const float *bias,
                           int64_t levels, int64_t k, const float *cross, int32_t *codes, int64_t allow_simd) {
    int64_t ncols = levels * k, npanels = (ncols + GC - 1) / GC, stride = npanels * GC;
    float *scores = malloc(sizeof(float) * GR * stride);
    float *tail = calloc((size_t)(GR * d), sizeof(float));
    if (!scores || !tail) { free(scores); free(tail); return -2; }
    int avx2 = allow_simd && fluidrec_rq_simd();
    int64_t bad = -1;
    for (int64_t b = 0; b < n && bad < 0; b += GR) {
        int64_t rows = n - b < GR ? n - b : GR;
        const float *xb = x + b * ldx;
        int64_t ld = ldx;
        if (rows < GR) { /* last rows: a zero-padded copy, so the kernel always does GR */
            for (int64_t r = 0; r < rows; r++) memcpy(tail + r * d, xb + r * ldx, sizeof(float) * (size_t)d);
            xb = tail; ld = d;
        }
        int64_t row_bad;
#ifdef HAVE_AVX2_PATH
        if (avx2) {
            gemm_block_avx2(xb, ld, d, packed, npanels, bias, scores, stride, 0);
            row_bad = rows_avx2(scores, rows, stride, levels, k, cross, codes + b * levels);
        } else
#endif
        {
            gemm_block_plain(xb, ld, d, packed, npanels, bias, scores, stride, 0);
            row_bad = rows_plain(scores, rows, stride, levels, k, cross, codes + b * levels);
        }
        if (row_bad >= 0) bad = b + row_bad;
    }
    free(scores);
    free(tail);
    return bad;
}

/* An importable (empty) module, so the build is an ordinary extension; fluidrec calls the
 * function above through ctypes, which releases the GIL for the call. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rqkernel", "RQ-KMeans encode kernel (called via ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__rqkernel(void) { return PyModule_Create(&module); }
