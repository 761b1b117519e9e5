/* The 6 x 16 register-blocked GEMM micro-kernel shared by fluidrec's C kernels
 * (codes/_rqkernel.c, ranker/_fusedkernel.c).
 *
 *   out[r, p*16 + c] = (accumulate ? out[r, p*16 + c] : 0) + bias[p*16 + c]
 *                      + sum_k x[r, k] * packed[p, k, c]          for r < 6, every panel p,
 *
 * with the weights packed as (npanels, kdim, 16) so the inner loop reads them in order,
 * and bias optional (NULL). The AVX2/FMA version keeps 12 accumulators, 2 weight vectors
 * and 1 broadcast input in registers (the usual Haswell/Zen block); the plain version is
 * the reference and the fallback. Include after defining HAVE_AVX2_PATH where the
 * compiler has the AVX2 intrinsics.
 */
#ifndef FLUIDREC_GEMM6X16_H
#define FLUIDREC_GEMM6X16_H

#include <stdint.h>

#define GR 6  /* GEMM rows per register block */
#define GC 16 /* GEMM columns per packed panel */

static inline void gemm_block_plain(const float *x, int64_t ldx, int64_t kdim, const float *packed, int64_t npanels, const float *bias,
                             float *out, int64_t ldo, int accumulate) {
    for (int64_t p = 0; p < npanels; p++)
        for (int64_t r = 0; r < GR; r++)
            for (int64_t c = 0; c < GC; c++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < kdim; k++) acc += x[r * ldx + k] * packed[(p * kdim + k) * GC + c];
                float v = acc + (bias ? bias[p * GC + c] : 0.0f);
                float *o = out + r * ldo + p * GC + c;
                *o = accumulate ? *o + v : v;
            }
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static inline void gemm_block_avx2(const float *x, int64_t ldx, int64_t kdim, const float *packed,
                                                                 int64_t npanels, const float *bias, float *out, int64_t ldo,
                                                                 int accumulate) {
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *x4 = x + 4 * ldx, *x5 = x + 5 * ldx;
    for (int64_t p = 0; p < npanels; p++) {
        const float *bp = packed + p * kdim * GC;
        __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
        __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
        __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
        for (int64_t k = 0; k < kdim; k++) {
            __m256 b0 = _mm256_loadu_ps(bp + k * GC), b1 = _mm256_loadu_ps(bp + k * GC + 8), a;
            a = _mm256_broadcast_ss(x0 + k); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
            a = _mm256_broadcast_ss(x1 + k); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            a = _mm256_broadcast_ss(x2 + k); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
            a = _mm256_broadcast_ss(x3 + k); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
            a = _mm256_broadcast_ss(x4 + k); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
            a = _mm256_broadcast_ss(x5 + k); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        }
        __m256 acc[2 * GR] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
        __m256 bias0 = bias ? _mm256_loadu_ps(bias + p * GC) : _mm256_setzero_ps();
        __m256 bias1 = bias ? _mm256_loadu_ps(bias + p * GC + 8) : _mm256_setzero_ps();
        for (int r = 0; r < GR; r++) {
            float *o = out + r * ldo + p * GC;
            __m256 v0 = _mm256_add_ps(acc[2 * r], bias0), v1 = _mm256_add_ps(acc[2 * r + 1], bias1);
            if (accumulate) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(o));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(o + 8));
            }
            _mm256_storeu_ps(o, v0);
            _mm256_storeu_ps(o + 8, v1);
        }
    }
}
#endif

#endif
