/* Per-level argmax of the residual-quantisation encoder (fluidrec.codes.rqkmeans).
 *
 * After one GEMM gives scores[b, l*K + m] = <x_b, c_{l,m}> - ||c_{l,m}||^2 / 2 for every
 * level, the code of level l is
 *     argmax_m  scores[b, l*K + m] - sum_{j<l} <c_{j, code_j}, c_{l,m}>,
 * with the cross inner products read from tables. NumPy/torch need ~4 passes over the
 * score block per level for this (gather, subtract, argmax, write back), and hold the GIL
 * in between; this loop does it in one pass per row, and ctypes releases the GIL so the
 * encode workers run it in parallel. The plain NumPy reference is
 * fluidrec.codes.rqkmeans.encode_reference; tests compare the two.
 *
 * Ties go to the lowest index, as numpy.argmax does. Inputs are finite (validated).
 * Built by setup.py as an optional extension; without a C compiler fluidrec falls back
 * to the torch/NumPy path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

/* First index of the largest value (plain C). */
static int64_t argmax_plain(const float *s, int64_t k) {
    int64_t best = 0;
    for (int64_t m = 1; m < k; m++)
        if (s[m] > s[best]) best = m;
    return best;
}

#ifdef HAVE_AVX2_PATH
/* Same result as argmax_plain, 8 lanes at a time. Floats are compared as order-preserving
 * int32 keys (sign-magnitude -> two's complement), so each lane keeps (max key, its first
 * index) with integer compares and blends; -0.0 is mapped to +0.0 first so equal floats
 * have equal keys. */
__attribute__((target("avx2"))) static int64_t argmax_avx2(const float *s, int64_t k) {
    __m256i best_key = _mm256_set1_epi32(INT32_MIN), best_idx = _mm256_setzero_si256();
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i step = _mm256_set1_epi32(8), magnitude = _mm256_set1_epi32(0x7fffffff);
    const __m256 zero = _mm256_setzero_ps();
    int64_t m = 0;
    for (; m + 8 <= k; m += 8) {
        __m256i bits = _mm256_castps_si256(_mm256_add_ps(_mm256_loadu_ps(s + m), zero));
        __m256i key = _mm256_xor_si256(bits, _mm256_and_si256(_mm256_srai_epi32(bits, 31), magnitude));
        __m256i better = _mm256_cmpgt_epi32(key, best_key); /* strict: the earlier index keeps ties */
        best_key = _mm256_blendv_epi8(best_key, key, better);
        best_idx = _mm256_blendv_epi8(best_idx, idx, better);
        idx = _mm256_add_epi32(idx, step);
    }
    int32_t keys[8], idxs[8];
    _mm256_storeu_si256((__m256i *)keys, best_key);
    _mm256_storeu_si256((__m256i *)idxs, best_idx);
    int64_t best = -1;
    int32_t bk = INT32_MIN;
    for (int t = 0; t < 8 && m > 0; t++)
        if (best < 0 || keys[t] > bk || (keys[t] == bk && idxs[t] < best)) { bk = keys[t]; best = idxs[t]; }
    for (; m < k; m++) { /* tail (k not a multiple of 8), compared as floats */
        if (best < 0 || s[m] > s[best]) best = m;
    }
    return best;
}
#endif

/* codes[b, l] for b < n, l < levels.
 *   scores: (n, levels * k) row-major, as above.
 *   cross:  for each level l >= 1, an (l * k, k) block (rows j * k + c hold <c_{j,c}, c_{l,.}>),
 *           blocks stored one after another in level order.
 *   codes:  (n, levels) int32 output.
 *   work:   k floats of scratch.
 */
void fluidrec_rq_levels_argmax(const float *scores, int64_t n, int64_t levels, int64_t k, const float *cross,
                               int32_t *codes, float *work) {
    int64_t (*argmax)(const float *, int64_t) = argmax_plain;
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) argmax = argmax_avx2;
#endif
    for (int64_t b = 0; b < n; b++) {
        const float *row = scores + b * levels * k;
        int32_t *out = codes + b * levels;
        const float *block = cross;
        for (int64_t l = 0; l < levels; l++) {
            const float *s = row + l * k;
            if (l > 0) {
                const float *c = block + (int64_t)out[0] * k;
                for (int64_t m = 0; m < k; m++) work[m] = s[m] - c[m];
                for (int64_t j = 1; j < l; j++) {
                    c = block + (j * k + out[j]) * k;
                    for (int64_t m = 0; m < k; m++) work[m] -= c[m];
                }
                block += l * k * k;
                s = work;
            }
            out[l] = (int32_t)argmax(s, k);
        }
    }
}

/* An importable (empty) module, so the build is an ordinary extension; fluidrec calls the
 * function above through ctypes, which releases the GIL for the call. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rqkernel", "RQ-KMeans encode kernel (called via ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__rqkernel(void) { return PyModule_Create(&module); }
