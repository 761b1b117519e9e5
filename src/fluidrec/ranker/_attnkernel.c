/* Multi-head softmax attention over a handful of tokens, for compiled ranker inference
 * (fluidrec.ranker.attention).
 *
 * The ranker attends over T ~ 7 tokens with heads of E = 16. torch's kernels are built for
 * long sequences: SDPA makes a call per (sample, head), and the fused loop inductor makes
 * of the pairwise form reduces each 16-wide dot product horizontally, 49 times per head;
 * either way one layer's attention for 200 candidates took ~0.7 ms of a ~7 ms request.
 * Here each (sample, head) is a few dozen vector instructions: the keys are transposed
 * once so that a query's scores against all keys fill one vector (8 keys per lane group),
 * the softmax runs on that vector, and the output row is a sum of value rows.
 *
 * The reference is torch.nn.functional.scaled_dot_product_attention; tests compare them.
 * Built by setup.py as an optional extension; without it the ranker uses its pairwise
 * form (same results up to float rounding).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

/* out[i, :] for one (sample, head), plain C.
 *   q, k, v: row r of each at base + r * ld (E floats); out rows at out + i * ld_out. */
static void head_plain(const float *q, const float *k, const float *v, int64_t ld, int64_t t, int64_t e, float scale,
                       float *out, int64_t ld_out, float *s) {
    for (int64_t i = 0; i < t; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < t; j++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < e; c++) acc += q[i * ld + c] * k[j * ld + c];
            s[j] = acc * scale;
            if (s[j] > mx) mx = s[j];
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < t; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float *o = out + i * ld_out;
        for (int64_t c = 0; c < e; c++) o[c] = 0.0f;
        for (int64_t j = 0; j < t; j++) {
            float p = s[j] / sum;
            for (int64_t c = 0; c < e; c++) o[c] += p * v[j * ld + c];
        }
    }
}

#ifdef HAVE_AVX2_PATH
/* exp for x <= 0 (softmax after subtracting the row maximum): 2^n * p(r), x = n ln2 + r,
 * |r| <= ln2/2, Cephes' degree-7 polynomial (relative error ~2e-7, like expf); below -87 it
 * underflows to 0, as expf does (to within the last denormals). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln2 split in two for accuracy */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2));
}

/* In-register transpose of an 8 x 8 block (r[i] lane j -> r[j] lane i). */
__attribute__((target("avx2,fma"), always_inline)) static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Same as head_plain for t <= 8 tokens and e a multiple of 8, vectorised over the queries
 * (lane i = query i), so the softmax over keys is plain vertical arithmetic:
 *   s[j]  = sum_c k[j, c] * qt[c]   (qt: the queries transposed, 8 per vector)
 *   p[j]  = exp(s[j] - max_j s) / sum_j (...)
 *   ot[c] = sum_j v[j, c] * p[j],   transposed back into the output rows.
 * Rows past t read a zero row; their scores are masked out. qt: scratch (e, 8). */
__attribute__((target("avx2,fma"))) static void head_avx2(const float *q, const float *k, const float *v, int64_t ld, int64_t t,
                                                           int64_t e, float scale, float *out, int64_t ld_out, float *qt,
                                                           const float *zeros) {
    const float *qrow[8], *krow[8], *vrow[8];
    for (int64_t i = 0; i < 8; i++) {
        qrow[i] = i < t ? q + i * ld : zeros;
        krow[i] = i < t ? k + i * ld : zeros;
        vrow[i] = i < t ? v + i * ld : zeros;
    }
    for (int64_t c = 0; c < e; c += 8) { /* queries transposed, 8 components at a time */
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(qrow[i] + c);
        transpose8(r);
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(qt + (c + i) * 8, r[i]);
    }
    __m256 s[8];
    for (int j = 0; j < 8; j++) s[j] = _mm256_setzero_ps();
    for (int64_t c = 0; c < e; c++) {
        __m256 qc = _mm256_loadu_ps(qt + c * 8);
        for (int j = 0; j < 8; j++) s[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(krow[j] + c), qc, s[j]);
    }
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < t; j++) {
        s[j] = _mm256_mul_ps(s[j], _mm256_set1_ps(scale));
        m = _mm256_max_ps(m, s[j]);
    }
    __m256 sum = _mm256_setzero_ps();
    for (int j = 0; j < 8; j++) {
        s[j] = j < t ? exp_nonpositive(_mm256_sub_ps(s[j], m)) : _mm256_setzero_ps();
        sum = _mm256_add_ps(sum, s[j]);
    }
    __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
    for (int j = 0; j < 8; j++) s[j] = _mm256_mul_ps(s[j], inv);
    for (int64_t c = 0; c < e; c += 8) {
        __m256 o[8];
        for (int cc = 0; cc < 8; cc++) {
            __m256 acc = _mm256_setzero_ps();
            for (int j = 0; j < 8; j++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(vrow[j] + c + cc), s[j], acc);
            o[cc] = acc;
        }
        transpose8(o); /* o[i] = output row i, components c .. c+7 */
        for (int64_t i = 0; i < t; i++) _mm256_storeu_ps(out + i * ld_out + c, o[i]);
    }
}
#endif

/* Softmax attention of every sample and head.
 *   qkv: (b, t, 3, heads, e) row-major (a fused q|k|v projection, viewed);
 *   out: (b, t, heads, e) row-major, softmax(q k^T / sqrt(e)) v per (sample, head);
 *   allow_simd: 0 forces the plain-C loop (tests compare both).
 * Returns 0, or -1 when the scratch buffer cannot be allocated. */
int64_t fluidrec_token_attention(const float *qkv, int64_t b, int64_t t, int64_t heads, int64_t e, float *out, int64_t allow_simd) {
    int64_t d = heads * e, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)e);
    /* scratch: the transposed queries (e x 8) and a zero row (e), or the plain loop's scores (t) */
    float *scratch = calloc((size_t)(e * 9 > t ? e * 9 : t), sizeof(float));
    if (!scratch) return -1;
    int simd = 0;
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    simd = allow_simd && t <= 8 && e % 8 == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    for (int64_t s = 0; s < b; s++)
        for (int64_t h = 0; h < heads; h++) {
            const float *q = qkv + s * t * ld + h * e;
            float *o = out + s * t * d + h * e;
#ifdef HAVE_AVX2_PATH
            if (simd) {
                head_avx2(q, q + d, q + 2 * d, ld, t, e, scale, o, d, scratch, scratch + e * 8);
                continue;
            }
#endif
            head_plain(q, q + d, q + 2 * d, ld, t, e, scale, o, d, scratch);
        }
    free(scratch);
    return 0;
}

/* An importable (empty) module, so the build is an ordinary extension; fluidrec calls the
 * function above through ctypes. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_attnkernel", "Small-token attention kernel (called via ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__attnkernel(void) { return PyModule_Create(&module); }
