/* loss.c: sampled softmax, logistic (word2vec) and positives-only losses over a batch, plus the
 * gravity regularizer, in the shared-candidate GEMM form of ALGORITHMS.md §2.3.
 *
 * Key design decisions:
 *  - One GEMM gives all negative logits Z = U Vneg^T (B x S). The row pass then works in place on Z:
 *    subtract log E, mask accidental hits by writing -inf, exponentiate (vectorised, common/fastmath.h),
 *    and overwrite Z with the logit gradient G_neg. Two more GEMMs give dU (G_neg Vneg) and
 *    dVneg (G_neg^T U); positives are a handful per row and use dots/axpys.
 *  - Accidental hits (§2.4): the negatives are sorted by key once per call, then each positive of row b
 *    is binary-searched among them (O((S + P) log S) instead of O(B S npos)). A masked cell holds -inf,
 *    so exp gives exactly 0: it drops out of the LSE and its gradient is exactly 0, with no mask array.
 *  - Softmax loss of row b is -sum_k p_k log pi_k = m LSE - sum_k p_k z_k with m = sum_k p_k (m = 1 for
 *    normalised targets: LSE - sum p z); its logit gradient is m pi - t (§1). Rows without
 *    positives are skipped; the mean and the gradients use B_eff = number of rows with positives.
 *  - LSE, the loss and the logistic softplus sums are accumulated in double (§9); max subtraction
 *    keeps exp in range.
 *  - Gravity (§5) goes through the d x d Gram matrices (O((B + R) d^2)), built in double.
 * Measured (B = 256, d = 64, S = 1024, one OpenBLAS thread, this 2-vCPU VM): softmax with gradients
 * 2.2 ms, of which the three GEMMs take ~1.6 ms and the exp pass 0.22 ms; logistic 2.7 ms.
 * Thread model: pure functions; the workspace belongs to the calling thread. cblas_sgemm may use
 * OpenBLAS's own threads (the caller sets their number). */
#include "worker/loss.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fastmath.h"
#include "common/grow.h"
#include "common/hits.h"

struct psrec_loss_ws {
    float *Z; /* B x S logits, then G_neg */
    size_t cap_z;
    float *zp; /* P positive logits, then G_pos */
    size_t cap_p;
    psrec_keyidx_t *ns; /* S negatives sorted by key */
    size_t cap_s;
};

psrec_err psrec_loss_ws_new(psrec_loss_ws_t **ws)
{
    if (!ws) return PSREC_EINVAL;
    *ws = calloc(1, sizeof **ws);
    return *ws ? PSREC_OK : PSREC_ENOMEM;
}

void psrec_loss_ws_destroy(psrec_loss_ws_t **ws)
{
    if (!ws || !*ws) return;
    free((*ws)->Z);
    free((*ws)->zp);
    free((*ws)->ns);
    free(*ws);
    *ws = NULL;
}

/* log(1 + e^x), stable for any x. */
static double softplus(double x)
{
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

/* 1 / (1 + e^-x), stable for any x. */
static double sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static psrec_err check_in(psrec_loss_kind kind, const psrec_loss_in_t *in, const psrec_loss_out_t *out)
{
    if ((unsigned)kind > PSREC_LOSS_POSITIVES_ONLY) return PSREC_EINVAL;
    if (in->B < 0 || in->d < 1 || in->S < 0) return PSREC_EINVAL;
    int uses_neg = kind != PSREC_LOSS_POSITIVES_ONLY && in->S > 0;
    if (in->B > 0 && (!in->U || !in->pos_off)) return PSREC_EINVAL;
    size_t P = 0;
    if (in->B > 0) {
        if (in->pos_off[0] != 0) return PSREC_EINVAL;
        for (int b = 0; b < in->B; b++)
            if (in->pos_off[b + 1] < in->pos_off[b]) return PSREC_EINVAL;
        P = in->pos_off[in->B];
    }
    if (P > 0 && (!in->pos_key || !in->pos_w || !in->Vpos)) return PSREC_EINVAL;
    for (size_t k = 0; k < P; k++)
        if (!(in->pos_w[k] >= 0.0f) || !isfinite(in->pos_w[k])) return PSREC_EINVAL;
    if (uses_neg && (!in->neg_key || !in->Vneg)) return PSREC_EINVAL;
    if (kind == PSREC_LOSS_LOGISTIC && (!(in->neg_weight >= 0.0f) || !isfinite(in->neg_weight))) return PSREC_EINVAL;
    if (out) {
        if (in->B > 0 && !out->dU) return PSREC_EINVAL;
        if (P > 0 && !out->dVpos) return PSREC_EINVAL;
        if (uses_neg && !out->dVneg) return PSREC_EINVAL;
    }
    return PSREC_OK;
}

/* A positive's logit gradient g into its query and row: du += g v, dv = g u. */
static void pos_backward(int d, float g, const float *u, const float *v, float *du, float *dv)
{
    for (int i = 0; i < d; i++) {
        du[i] += g * v[i];
        dv[i] = g * u[i];
    }
}

psrec_err psrec_loss_compute(psrec_loss_kind kind, const psrec_loss_in_t *in, psrec_loss_ws_t *ws, double *loss,
                             const psrec_loss_out_t *out)
{
    if (!in || !ws || !loss) return PSREC_EINVAL;
    psrec_err e = check_in(kind, in, out);
    if (e) return e;

    const int B = in->B, d = in->d;
    const int S = kind == PSREC_LOSS_POSITIVES_ONLY ? 0 : in->S;
    const size_t P = B > 0 ? in->pos_off[B] : 0;
    int B_eff = 0;
    for (int b = 0; b < B; b++)
        B_eff += in->pos_off[b + 1] > in->pos_off[b];

    *loss = 0.0;
    if (B_eff == 0) {
        if (out) {
            if (B > 0) memset(out->dU, 0, (size_t)B * d * sizeof(float));
            if (P > 0) memset(out->dVpos, 0, P * d * sizeof(float));
            if (in->S > 0 && out->dVneg) memset(out->dVneg, 0, (size_t)in->S * d * sizeof(float));
        }
        return PSREC_OK;
    }

    if (psrec_grow((void **)&ws->zp, &ws->cap_p, P, sizeof(float))) return PSREC_ENOMEM;
    if (S > 0) {
        if (psrec_grow((void **)&ws->Z, &ws->cap_z, (size_t)B * S, sizeof(float))) return PSREC_ENOMEM;
        if (psrec_grow((void **)&ws->ns, &ws->cap_s, (size_t)S, sizeof(psrec_keyidx_t))) return PSREC_ENOMEM;
    }

    /* Positive logits z = u_b . v - log E. */
    float *zp = ws->zp;
    for (int b = 0; b < B; b++) {
        const float *u = in->U + (size_t)b * d;
        for (uint32_t k = in->pos_off[b]; k < in->pos_off[b + 1]; k++) {
            zp[k] = cblas_sdot(d, u, 1, in->Vpos + (size_t)k * d, 1);
            if (in->pos_logE) zp[k] -= in->pos_logE[k];
        }
    }

    /* Negative logits Z = U Vneg^T (one GEMM), negatives sorted by key for the hit search. */
    float *Z = ws->Z;
    if (S > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, S, d, 1.0f, in->U, d, in->Vneg, d, 0.0f, Z, S);
        psrec_hits_sort(ws->ns, in->neg_key, (size_t)S);
    }

    const double inv_beff = 1.0 / B_eff;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const uint32_t p0 = in->pos_off[b], p1 = in->pos_off[b + 1];
        float *zrow = S > 0 ? Z + (size_t)b * S : NULL;
        if (p0 == p1) { /* no positives: contributes nothing, zero gradient row */
            if (zrow) memset(zrow, 0, (size_t)S * sizeof(float));
            continue;
        }
        int n_unmasked = S;
        if (zrow) {
            if (in->neg_logE) cblas_saxpy(S, -1.0f, in->neg_logE, 1, zrow, 1);
            n_unmasked -= (int)psrec_hits_mask(ws->ns, (size_t)S, in->pos_key + p0, p1 - p0, zrow);
        }
        double mass = 0.0, pz = 0.0;
        for (uint32_t k = p0; k < p1; k++) {
            mass += in->pos_w[k];
            pz += (double)in->pos_w[k] * zp[k];
        }

        if (kind == PSREC_LOSS_SOFTMAX) {
            /* Positives are never masked, so the row always has an unmasked candidate. */
            float m = zrow ? psrec_max(zrow, (size_t)S) : -INFINITY;
            for (uint32_t k = p0; k < p1; k++)
                m = zp[k] > m ? zp[k] : m;
            double sum = zrow ? psrec_exp_shift_sum(zrow, (size_t)S, m) : 0.0;
            for (uint32_t k = p0; k < p1; k++)
                sum += exp((double)zp[k] - m);
            double lse = m + log(sum);
            total += mass * lse - pz;
            if (out) {
                /* G = (mass pi - t) / B_eff, pi = exp(z - m) / sum. */
                if (zrow) psrec_scale_inplace(zrow, (size_t)S, (float)(mass / sum * inv_beff));
                for (uint32_t k = p0; k < p1; k++)
                    zp[k] = (float)((mass * exp((double)zp[k] - lse) - in->pos_w[k]) * inv_beff);
            }
        } else {
            /* LOGISTIC and POSITIVES_ONLY. The logits include -log E (logQ correction, as TF's
             * nce_loss/sampled logistic with subtract_log_q): z = u.v - log E. */
            double lb = 0.0;
            for (uint32_t k = p0; k < p1; k++)
                lb += in->pos_w[k] * softplus(-(double)zp[k]);
            if (zrow) {
                double sp = psrec_softplus_sigmoid(zrow, (size_t)S); /* zrow := sigmoid(z), masked -> 0 */
                double c = n_unmasked > 0 ? (double)in->neg_weight / n_unmasked : 0.0;
                lb += c * sp;
                if (out) psrec_scale_inplace(zrow, (size_t)S, (float)(c * inv_beff));
            }
            total += lb;
            if (out)
                for (uint32_t k = p0; k < p1; k++)
                    zp[k] = (float)(-(double)in->pos_w[k] * sigmoid(-(double)zp[k]) * inv_beff);
        }
    }
    *loss = total * inv_beff;
    if (!out) return PSREC_OK;

    /* dU = G_neg Vneg + sum_k G_pos[b,k] vpos_k; dVneg = G_neg^T U; dVpos[k] = G_pos[b,k] u_b. */
    if (S > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, S, 1.0f, Z, S, in->Vneg, d, 0.0f, out->dU, d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, d, B, 1.0f, Z, S, in->U, d, 0.0f, out->dVneg, d);
    } else {
        memset(out->dU, 0, (size_t)B * d * sizeof(float));
        if (in->S > 0 && out->dVneg) memset(out->dVneg, 0, (size_t)in->S * d * sizeof(float));
    }
    for (int b = 0; b < B; b++) {
        const float *u = in->U + (size_t)b * d;
        float *du = out->dU + (size_t)b * d;
        for (uint32_t k = in->pos_off[b]; k < in->pos_off[b + 1]; k++)
            pos_backward(d, zp[k], u, in->Vpos + (size_t)k * d, du, out->dVpos + (size_t)k * d);
    }
    return PSREC_OK;
}

psrec_err psrec_loss_softmax_parts(const psrec_loss_in_t *in, int K, const float *lse_parts, const float *ybar_parts,
                                   psrec_loss_ws_t *ws, double *loss, const psrec_loss_out_t *out, float *w)
{
    if (!in || !ws || !loss || !out || K < 0 || in->S != 0 || (K > 0 && (!lse_parts || !ybar_parts || !w)))
        return PSREC_EINVAL;
    psrec_err e = check_in(PSREC_LOSS_SOFTMAX, in, out);
    if (e) return e;
    const int B = in->B, d = in->d;
    const size_t P = B > 0 ? in->pos_off[B] : 0;
    int B_eff = 0;
    for (int b = 0; b < B; b++)
        B_eff += in->pos_off[b + 1] > in->pos_off[b];
    *loss = 0.0;
    if (K > 0) memset(w, 0, (size_t)K * B * sizeof(float));
    if (B > 0) memset(out->dU, 0, (size_t)B * d * sizeof(float));
    if (B_eff == 0) {
        if (P > 0) memset(out->dVpos, 0, P * d * sizeof(float));
        return PSREC_OK;
    }
    if (psrec_grow((void **)&ws->zp, &ws->cap_p, P, sizeof(float))) return PSREC_ENOMEM;
    float *zp = ws->zp;
    const double inv_beff = 1.0 / B_eff;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const uint32_t p0 = in->pos_off[b], p1 = in->pos_off[b + 1];
        if (p0 == p1) continue;
        const float *u = in->U + (size_t)b * d;
        double mass = 0.0, pz = 0.0, m = -INFINITY;
        for (uint32_t k = p0; k < p1; k++) {
            zp[k] = cblas_sdot(d, u, 1, in->Vpos + (size_t)k * d, 1);
            if (in->pos_logE) zp[k] -= in->pos_logE[k];
            mass += in->pos_w[k];
            pz += (double)in->pos_w[k] * zp[k];
            if (zp[k] > m) m = zp[k];
        }
        for (int k = 0; k < K; k++)
            if (lse_parts[(size_t)k * B + b] > m) m = lse_parts[(size_t)k * B + b];
        double sum = 0.0;
        for (uint32_t k = p0; k < p1; k++)
            sum += exp((double)zp[k] - m);
        for (int k = 0; k < K; k++)
            sum += exp((double)lse_parts[(size_t)k * B + b] - m); /* a part with no candidate: exp(-inf) = 0 */
        double lse = m + log(sum);
        total += mass * lse - pz;
        float *du = out->dU + (size_t)b * d;
        for (int k = 0; k < K; k++) {
            float wk = (float)(mass * exp((double)lse_parts[(size_t)k * B + b] - lse) * inv_beff);
            w[(size_t)k * B + b] = wk;
            if (wk != 0.0f) cblas_saxpy(d, wk, ybar_parts + ((size_t)k * B + b) * d, 1, du, 1);
        }
        for (uint32_t k = p0; k < p1; k++) {
            const float g = (float)((mass * exp((double)zp[k] - lse) - in->pos_w[k]) * inv_beff);
            pos_backward(d, g, u, in->Vpos + (size_t)k * d, du, out->dVpos + (size_t)k * d);
        }
    }
    *loss = total * inv_beff;
    return PSREC_OK;
}

/* G += X^T X for X (n x d) float, in double, converting CHUNK rows at a time. */
#define GRAM_CHUNK 128
static void gram_d(const float *X, int n, int d, double *G, double *buf)
{
    memset(G, 0, (size_t)d * d * sizeof(double));
    for (int r0 = 0; r0 < n; r0 += GRAM_CHUNK) {
        int nr = n - r0 < GRAM_CHUNK ? n - r0 : GRAM_CHUNK;
        for (size_t i = 0; i < (size_t)nr * d; i++)
            buf[i] = X[(size_t)r0 * d + i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, nr, 1.0, buf, d, 1.0, G, d);
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++)
            G[(size_t)i * d + j] = G[(size_t)j * d + i];
}

psrec_err psrec_loss_gravity(int B, int R, int d, const float *U, const float *Vr, float lambda, double *loss,
                             float *dU, float *dVr)
{
    if (B < 0 || R < 0 || d < 1 || !loss || !isfinite(lambda)) return PSREC_EINVAL;
    if ((B > 0 && !U) || (R > 0 && !Vr)) return PSREC_EINVAL;
    if (B == 0 || R == 0) return PSREC_OK;

    size_t dd = (size_t)d * d;
    double *mem = malloc((2 * dd + (size_t)GRAM_CHUNK * d) * sizeof(double) + 2 * dd * sizeof(float));
    if (!mem) return PSREC_ENOMEM;
    double *GU = mem, *GV = mem + dd, *buf = mem + 2 * dd;
    float *GUf = (float *)(buf + (size_t)GRAM_CHUNK * d), *GVf = GUf + dd;

    gram_d(U, B, d, GU, buf);
    gram_d(Vr, R, d, GV, buf);
    const double c = (double)lambda / ((double)B * R);
    double dot = 0.0;
    for (size_t i = 0; i < dd; i++)
        dot += GU[i] * GV[i];
    *loss += c * dot;

    /* dg/du_b = 2c G_V u_b, dg/dv_r = 2c G_U v_r (Gram matrices are symmetric). */
    for (size_t i = 0; i < dd; i++) {
        GUf[i] = (float)GU[i];
        GVf[i] = (float)GV[i];
    }
    if (dU) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, d, (float)(2 * c), U, d, GVf, d, 1.0f, dU, d);
    if (dVr)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, d, d, (float)(2 * c), Vr, d, GUf, d, 1.0f, dVr, d);
    free(mem);
    return PSREC_OK;
}

const char *psrec_loss_name(psrec_loss_kind k)
{
    switch (k) {
    case PSREC_LOSS_SOFTMAX: return "softmax";
    case PSREC_LOSS_LOGISTIC: return "logistic";
    case PSREC_LOSS_POSITIVES_ONLY: return "positives-only";
    }
    return "unknown";
}

int psrec_loss_parse(const char *name, psrec_loss_kind *k)
{
    if (!name || !k) return -1;
    for (int i = PSREC_LOSS_SOFTMAX; i <= PSREC_LOSS_POSITIVES_ONLY; i++) {
        if (strcmp(name, psrec_loss_name((psrec_loss_kind)i)) == 0) {
            *k = (psrec_loss_kind)i;
            return 0;
        }
    }
    return -1;
}
