/* The ranker backbone's forward pass in one call, for compiled inference
 * (fluidrec.ranker.fused; the reference is fluidrec.ranker.backbone.Backbone.forward).
 *
 * For 200 candidates every op of the backbone is small (GEMMs of 1400 x 64 x 192, SiLU on
 * 180k values, attention over T ~ 7 tokens with 16-wide heads), and a compiled torch graph
 * spent much of a request between kernels: OpenMP fork/join per op, tensors written and
 * re-read, and attention kernels built for long sequences (SDPA makes a call per sample
 * and head; inductor's fused loop reduces each 16-wide dot product horizontally).
 * fluidrec_backbone_forward runs every layer for a slice of the batch per thread, with a
 * register-blocked GEMM on weights packed once, an attention vectorised over the queries
 * (so the softmax needs no horizontal reductions), and SiLU on a polynomial exp.
 * fluidrec_token_attention exposes the attention alone (tests use it for edge cases).
 *
 * Built by setup.py as an optional extension; without it the compiled scorer runs the
 * torch backbone (same results up to float rounding).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#include "../_gemm6x16.h"

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
/* exp for x <= 88: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, Cephes' degree-7 polynomial
 * (relative error ~2e-7, like expf). Inputs below -87 give e^-87 ~ 1.6e-38 instead of a
 * denormal or 0, which no caller can tell from 0 (softmax weights, 1 + e^-x in SiLU). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 exp_poly(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x); /* NaN stays NaN: max/min return their second operand on NaN */
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
        s[j] = j < t ? exp_poly(_mm256_sub_ps(s[j], m)) : _mm256_setzero_ps();
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

/* Softmax attention of every sample and head, into out (b, t, heads * e).
 *   qkv: (b, t, 3, heads, e) row-major (a fused q|k|v projection, viewed);
 *   scratch: max(9 e, t) floats (transposed queries and a zero row, or the plain scores). */
static void attention(const float *qkv, int64_t b, int64_t t, int64_t heads, int64_t e, float *out, int simd, float *scratch) {
    int64_t d = heads * e, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)e);
    for (int64_t s = 0; s < b; s++)
        for (int64_t h = 0; h < heads; h++) {
            const float *q = qkv + s * t * ld + h * e;
            float *o = out + s * t * d + h * e;
#ifdef HAVE_AVX2_PATH
            if (simd && t <= 8 && e % 8 == 0) {
                head_avx2(q, q + d, q + 2 * d, ld, t, e, scale, o, d, scratch, scratch + e * 8);
                continue;
            }
#endif
            head_plain(q, q + d, q + 2 * d, ld, t, e, scale, o, d, scratch);
        }
}

static int simd_available(int64_t allow_simd) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    return allow_simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    (void)allow_simd;
    return 0;
#endif
}

/* 1 where the AVX2/FMA loops were compiled in and this CPU runs them, else 0. fluidrec
 * chooses this kernel only then: its plain-C loops are slower than torch's backbone. */
int64_t fluidrec_backbone_simd(void) { return simd_available(1); }

/* attention() on its own (tests check it against SDPA); allow_simd 0 forces the plain loop.
 * Returns 0, or -1 when the scratch buffer cannot be allocated. */
int64_t fluidrec_token_attention(const float *qkv, int64_t b, int64_t t, int64_t heads, int64_t e, float *out, int64_t allow_simd) {
    float *scratch = calloc((size_t)(e * 9 > t ? e * 9 : t), sizeof(float));
    if (!scratch) return -1;
    attention(qkv, b, t, heads, e, out, simd_available(allow_simd), scratch);
    free(scratch);
    return 0;
}

/* ---- The whole backbone ---- */

/* exp for any float: exp_poly with the input clamped to <= 88 (e^88 ~ 1.7e38 < FLT_MAX). */
#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 exp_any(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    return exp_poly(x);
}

/* o[c] = g[c] / (1 + exp(-g[c])) * u[c] for c < f rounded down to 8; returns how many. */
__attribute__((target("avx2,fma"))) static int64_t silu_mul_avx2(const float *g, const float *u, int64_t f, float *o) {
    int64_t c = 0;
    for (; c + 8 <= f; c += 8) {
        __m256 gv = _mm256_loadu_ps(g + c);
        __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_any(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
        _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + c)));
    }
    return c;
}
#endif

/* out (rows, n) (+)= x (rows, kdim) @ W + bias, W packed as (n / GC, kdim, GC); n % GC == 0.
 * tail: scratch of GR * (kdim + n) floats for the last, partial block of rows. */
static void gemm(const float *x, int64_t ldx, int64_t rows, int64_t kdim, const float *packed, int64_t n, const float *bias,
                 float *out, int64_t ldo, int accumulate, int simd, float *tail) {
    int64_t npanels = n / GC, r = 0;
    void (*block)(const float *, int64_t, int64_t, const float *, int64_t, const float *, float *, int64_t, int) = gemm_block_plain;
#ifdef HAVE_AVX2_PATH
    if (simd) block = gemm_block_avx2;
#endif
    for (; r + GR <= rows; r += GR) block(x + r * ldx, ldx, kdim, packed, npanels, bias, out + r * ldo, ldo, accumulate);
    if (r < rows) { /* zero-padded copy of the last rows, then copy back the valid ones */
        float *xt = tail, *ot = tail + GR * kdim;
        memset(xt, 0, sizeof(float) * GR * kdim);
        for (int64_t i = 0; i < rows - r; i++) memcpy(xt + i * kdim, x + (r + i) * ldx, sizeof(float) * kdim);
        block(xt, kdim, kdim, packed, npanels, bias, ot, n, 0);
        for (int64_t i = 0; i < rows - r; i++)
            for (int64_t c = 0; c < n; c++) out[(r + i) * ldo + c] = (accumulate ? out[(r + i) * ldo + c] : 0.0f) + ot[i * n + c];
    }
}

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, rows of d. */
static void rms_norm(const float *x, int64_t rows, int64_t d, const float *w, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float ss = 0.0f;
        for (int64_t c = 0; c < d; c++) ss += xr[c] * xr[c];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int64_t c = 0; c < d; c++) y[r * d + c] = xr[c] * inv * w[c];
    }
}

/* m[r, c] = silu(gu[r, c]) * gu[r, f + c]: gate and up halves of each row of 2f. */
static void silu_mul(const float *gu, int64_t rows, int64_t f, float *m, int simd) {
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * 2 * f, *u = g + f;
        float *o = m + r * f;
        int64_t c = 0;
#ifdef HAVE_AVX2_PATH
        if (simd) c = silu_mul_avx2(g, u, f, o);
#endif
        for (; c < f; c++) o[c] = g[c] / (1.0f + expf(-g[c])) * u[c];
    }
}

typedef struct {
    const float *x;      /* (nb, t, d) input rows of this slice */
    float *out;          /* (nb, t, d) */
    const float *weights;
    int64_t nb, t, d, heads, f, layers;
    float eps;
    int simd;
    int64_t status;
} BackboneJob;

static void *backbone_job(void *arg) {
    BackboneJob *job = arg;
    int64_t nb = job->nb, t = job->t, d = job->d, f = job->f, e = d / job->heads, rows = nb * t;
    size_t need = (size_t)(rows * d + rows * 3 * d + rows * d + nb * 2 * f + nb * f + GR * (2 * f + 3 * d + f) + e * 9 + t + 16);
    float *buf = calloc(need, sizeof(float));
    if (!buf) { job->status = -1; return NULL; }
    float *h = buf, *qkv = h + rows * d, *att = qkv + rows * 3 * d, *gu = att + rows * d, *m = gu + nb * 2 * f;
    float *tail = m + nb * f, *scratch = tail + GR * (2 * f + 3 * d + f);
    const float *w = job->weights, *tok_type = w;
    w += t * d;
    float *x = job->out;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < d; c++) x[r * d + c] = job->x[r * d + c] + tok_type[(r % t) * d + c];
    for (int64_t layer = 0; layer < job->layers; layer++) {
        const float *norm1 = w, *w_qkv = norm1 + d, *b_qkv = w_qkv + 3 * d * d, *w_out = b_qkv + 3 * d, *b_out = w_out + d * d;
        const float *norm2 = b_out + d, *w13 = norm2 + d, *w2 = w13 + t * d * 2 * f;
        w = w2 + t * f * d;
        rms_norm(x, rows, d, norm1, job->eps, h);
        gemm(h, d, rows, d, w_qkv, 3 * d, b_qkv, qkv, 3 * d, 0, job->simd, tail);
        attention(qkv, nb, t, job->heads, e, att, job->simd, scratch);
        gemm(att, d, rows, d, w_out, d, b_out, x, d, 1, job->simd, tail);
        rms_norm(x, rows, d, norm2, job->eps, h);
        for (int64_t tok = 0; tok < t; tok++) { /* token boost: each token its own SwiGLU */
            gemm(h + tok * d, t * d, nb, d, w13 + tok * d * 2 * f, 2 * f, NULL, gu, 2 * f, 0, job->simd, tail);
            silu_mul(gu, nb, f, m, job->simd);
            gemm(m, f, nb, f, w2 + tok * f * d, d, NULL, x + tok * d, t * d, 1, job->simd, tail);
        }
    }
    rms_norm(x, rows, d, w, job->eps, x); /* final norm, in place (row by row) */
    free(buf);
    job->status = 0;
    return NULL;
}

/* The Backbone forward of x (b, t, d) into out (b, t, d).
 *   weights: as packed by fluidrec.ranker.fused.pack_backbone: tok_type (t, d); per layer
 *            norm1 (d), qkv (3d/GC, d, GC), qkv bias (3d), out (d/GC, d, GC), out bias (d),
 *            norm2 (d), per token w13 (2f/GC, d, GC), per token w2 (d/GC, f, GC); final norm (d).
 *   d, 2f multiples of GC (16); heads divide d.
 *   threads: the batch is split into this many contiguous slices, one thread each.
 * Returns 0, or -1 when a work buffer or a thread cannot be had. */
int64_t fluidrec_backbone_forward(const float *x, int64_t b, int64_t t, int64_t d, int64_t heads, int64_t f, int64_t layers,
                                  const float *weights, double eps, float *out, int64_t threads, int64_t allow_simd) {
    int simd = simd_available(allow_simd);
    if (threads < 1) threads = 1;
    if (threads > b) threads = b > 0 ? b : 1;
    if (threads > 16) threads = 16;
    BackboneJob jobs[16];
    pthread_t tids[16];
    int started[16] = {0};
    int64_t done = 0;
    for (int64_t i = 0; i < threads; i++) {
        int64_t nb = (b - done) / (threads - i);
        jobs[i] = (BackboneJob){x + done * t * d, out + done * t * d, weights, nb, t, d, heads, f, layers, (float)eps, simd, -1};
        done += nb;
    }
    for (int64_t i = 1; i < threads; i++) started[i] = pthread_create(&tids[i], NULL, backbone_job, &jobs[i]) == 0;
    backbone_job(&jobs[0]);
    int64_t status = jobs[0].status;
    for (int64_t i = 1; i < threads; i++) {
        if (started[i]) pthread_join(tids[i], NULL);
        else backbone_job(&jobs[i]); /* no thread: run its slice here */
        if (jobs[i].status != 0) status = -1;
    }
    return status;
}

/* An importable (empty) module, so the build is an ordinary extension; fluidrec calls the
 * function above through ctypes. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fusedkernel", "Fused ranker backbone kernel (called via ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__fusedkernel(void) { return PyModule_Create(&module); }
