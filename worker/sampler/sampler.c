#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's _SAMPLING_EPS: temperatures below it mean greedy. */
#define SAMPLING_EPS 1e-5f

typedef struct cand {
    float v;
    int32_t id;
} cand;

struct vesta_sampler_scratch {
    int vocab;
    float *logits;   /* [V] processed logits */
    cand *cands;     /* [V] tokens still in play */
    int32_t *counts; /* [V] output counts; all zero between calls */
    uint8_t *seen;   /* [V] prompt/output membership; all zero between calls */
};

size_t vesta_sampler_scratch_bytes(int vocab_size)
{
    if (vocab_size <= 0)
        return 0;
    return sizeof(vesta_sampler_scratch) +
           (size_t)vocab_size * (sizeof(float) + sizeof(cand) + sizeof(int32_t) + 1);
}

vesta_sampler_scratch *vesta_sampler_scratch_create(int vocab_size, vesta_error *err)
{
    if (vocab_size <= 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "sampler: vocab_size %d must be positive",
                        vocab_size);
        return NULL;
    }
    vesta_sampler_scratch *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->vocab = vocab_size;
        s->logits = malloc((size_t)vocab_size * sizeof(float));
        s->cands = malloc((size_t)vocab_size * sizeof(cand));
        s->counts = calloc((size_t)vocab_size, sizeof(int32_t));
        s->seen = calloc((size_t)vocab_size, 1);
    }
    if (s == NULL || !s->logits || !s->cands || !s->counts || !s->seen) {
        vesta_sampler_scratch_release(s);
        vesta_error_set(err, VESTA_ERR_NOMEM, "sampler: cannot allocate scratch for %d tokens",
                        vocab_size);
        return NULL;
    }
    return s;
}

void vesta_sampler_scratch_release(vesta_sampler_scratch *s)
{
    if (s == NULL)
        return;
    free(s->logits);
    free(s->cands);
    free(s->counts);
    free(s->seen);
    free(s);
}

uint64_t vesta_rng_mix(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double vesta_rng_uniform(uint64_t seed, uint64_t offset)
{
    uint64_t x = vesta_rng_mix(seed ^ vesta_rng_mix(offset + 0x9E3779B97F4A7C15ULL));
    return (double)(x >> 11) * 0x1.0p-53;
}

/* Total order used everywhere: larger logit first, then smaller id. */
static int cand_before(const cand *a, const cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

static void cand_swap(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k best (in cand_before order) to c[0..k), the k-th best at c[k-1]. O(n) expected;
 * the pivot is the middle element, the data is logits (not adversarial ordering). */
static void cand_select(cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand_swap(&c[(lo + hi) / 2], &c[hi]);
        cand pivot = c[hi];
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (cand_before(&c[i], &pivot))
                cand_swap(&c[i], &c[store++]);
        cand_swap(&c[store], &c[hi]);
        if (store == k - 1)
            return;
        if (store < k - 1)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

static int in_range(int32_t t, int vocab)
{
    return t >= 0 && t < vocab;
}

/* Steps 1-3: bias, min_tokens mask, penalties, into s->logits. */
static void apply_processors(const float *logits, int vocab, const vesta_sample_row *row,
                             vesta_sampler_scratch *s)
{
    const vesta_sampling_params *sp = row->params;
    float *l = s->logits;
    memcpy(l, logits, (size_t)vocab * sizeof(float));
    for (int i = 0; i < sp->num_logit_bias; i++)
        if (in_range(sp->logit_bias[i].token, vocab))
            l[sp->logit_bias[i].token] += sp->logit_bias[i].bias;
    if (row->suppress_stop) {
        for (int i = 0; i < row->num_eos; i++)
            if (in_range(row->eos_ids[i], vocab))
                l[row->eos_ids[i]] = -INFINITY;
        for (int i = 0; i < sp->num_stop_token_ids; i++)
            if (in_range(sp->stop_token_ids[i], vocab))
                l[sp->stop_token_ids[i]] = -INFINITY;
    }
    if (sp->repetition_penalty != 1.0f) {
        float rp = sp->repetition_penalty;
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *ids = pass == 0 ? row->prompt_ids : row->output_ids;
            int n = pass == 0 ? row->num_prompt : row->num_output;
            for (int i = 0; i < n; i++) {
                int32_t t = ids[i];
                if (!in_range(t, vocab) || s->seen[t])
                    continue;
                s->seen[t] = 1;
                l[t] = l[t] > 0 ? l[t] / rp : l[t] * rp;
            }
        }
        for (int i = 0; i < row->num_prompt; i++)
            if (in_range(row->prompt_ids[i], vocab))
                s->seen[row->prompt_ids[i]] = 0;
        for (int i = 0; i < row->num_output; i++)
            if (in_range(row->output_ids[i], vocab))
                s->seen[row->output_ids[i]] = 0;
    }
    if (sp->frequency_penalty != 0.0f || sp->presence_penalty != 0.0f) {
        for (int i = 0; i < row->num_output; i++)
            if (in_range(row->output_ids[i], vocab))
                s->counts[row->output_ids[i]]++;
        for (int i = 0; i < row->num_output; i++) {
            int32_t t = row->output_ids[i];
            if (!in_range(t, vocab) || s->counts[t] == 0)
                continue;
            l[t] -= sp->frequency_penalty * (float)s->counts[t] + sp->presence_penalty;
            s->counts[t] = 0;
        }
    }
}

/* Steps 5-7: leaves the kept tokens, scaled by 1/temperature, in s->cands[0..*n). Sorted in
 * cand_before order whenever top-k or top-p removed anything or could have. */
static void filter_candidates(int vocab, const vesta_sampling_params *sp,
                              vesta_sampler_scratch *s, int *n_out)
{
    const float *l = s->logits;
    float inv_t = 1.0f / sp->temperature;
    cand *c = s->cands;
    int n = 0;
    float max = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        float v = l[i] * inv_t;
        if (!(v > -INFINITY)) /* -inf and NaN never win */
            continue;
        c[n].v = v;
        c[n].id = i;
        n++;
        if (v > max)
            max = v;
    }
    if (sp->min_p > 0.0f && n > 0) {
        /* p_i < min_p * p_max  <=>  exp(v_i - max) < min_p */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (!(exp((double)c[i].v - max) < (double)sp->min_p))
                c[m++] = c[i];
        n = m;
    }
    bool sorted = false;
    if (sp->top_k > 0 && sp->top_k < n) {
        int k = sp->top_k;
        cand_select(c, n, k);
        float thr = c[k - 1].v;
        int m = k;
        for (int i = k; i < n; i++) /* vLLM keeps tokens tied with the k-th largest */
            if (c[i].v >= thr)
                c[m++] = c[i];
        n = m;
    }
    if (sp->top_p < 1.0f && n > 1) {
        double z = 0;
        for (int i = 0; i < n; i++)
            z += exp((double)c[i].v - max);
        /* Tokens below t = (1 - p) / n sum to < 1 - p, so each of their ascending cumulative sums
         * is <= 1 - p: vLLM removes them all. Dropping them before the sort is exact and leaves
         * only the head of the distribution to sort. */
        double limit = 1.0 - (double)sp->top_p;
        double t = limit / n;
        double dropped = 0;
        int m = 0;
        for (int i = 0; i < n; i++) {
            double p = exp((double)c[i].v - max) / z;
            if (p < t)
                dropped += p;
            else
                c[m++] = c[i];
        }
        if (m == 0) { /* cannot happen (the max has p >= 1/n), kept for safety */
            m = 1;
        }
        n = m;
        qsort(c, (size_t)n, sizeof(cand), cand_cmp);
        sorted = true;
        double cum = dropped;
        int keep = n;
        for (int i = n - 1; i >= 1; i--) {
            cum += exp((double)c[i].v - max) / z;
            if (cum <= limit)
                keep = i;
            else
                break;
        }
        n = keep;
    }
    if (!sorted && sp->top_k > 0)
        qsort(c, (size_t)n, sizeof(cand), cand_cmp);
    *n_out = n;
}

static int greedy_argmax(const float *l, int vocab)
{
    int best = -1;
    for (int i = 0; i < vocab; i++)
        if (l[i] > -INFINITY && (best < 0 || l[i] > l[best]))
            best = i;
    return best;
}

static vesta_status check_args(int vocab_size, const vesta_sample_row *row,
                               const vesta_sampler_scratch *s, vesta_error *err)
{
    if (s == NULL || row == NULL || row->params == NULL || vocab_size != s->vocab)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "sampler: vocab_size %d does not match the scratch (%d) or no params",
                               vocab_size, s ? s->vocab : 0);
    return VESTA_OK;
}

/* Runs steps 1-7. Greedy: *greedy = token, *n = 0. Else *greedy = -1 and the candidates. */
static vesta_status process(const float *logits, int vocab, const vesta_sample_row *row,
                            vesta_sampler_scratch *s, int *greedy, int *n, double *zmax,
                            vesta_error *err)
{
    vesta_status st = check_args(vocab, row, s, err);
    if (st != VESTA_OK)
        return st;
    apply_processors(logits, vocab, row, s);
    *greedy = -1;
    *n = 0;
    if (row->params->temperature < SAMPLING_EPS) {
        *greedy = greedy_argmax(s->logits, vocab);
        if (*greedy < 0)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "sampler: every token is masked");
        return VESTA_OK;
    }
    filter_candidates(vocab, row->params, s, n);
    if (*n == 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "sampler: every token is masked");
    float max = -INFINITY;
    for (int i = 0; i < *n; i++)
        if (s->cands[i].v > max)
            max = s->cands[i].v;
    *zmax = max;
    return VESTA_OK;
}

static void fill_logprobs(const float *logits, int vocab, int top_n, int32_t token,
                          vesta_sample_result *out)
{
    double max = -INFINITY;
    for (int i = 0; i < vocab; i++)
        if (logits[i] > max)
            max = logits[i];
    double z = 0;
    for (int i = 0; i < vocab; i++)
        if (logits[i] > -INFINITY)
            z += exp((double)logits[i] - max);
    double lse = max + log(z);
    out->logprob = (float)((double)logits[token] - lse);
    if (top_n > vocab)
        top_n = vocab;
    if (top_n > VESTA_MAX_LOGPROBS)
        top_n = VESTA_MAX_LOGPROBS;
    /* Insertion into a short sorted list: N <= 20, one pass over the vocabulary. */
    cand best[VESTA_MAX_LOGPROBS];
    int nb = 0;
    for (int i = 0; i < vocab && top_n > 0; i++) {
        cand c = {logits[i], i};
        if (!(c.v == c.v))
            continue;
        if (nb == top_n && !cand_before(&c, &best[nb - 1]))
            continue;
        int j = nb < top_n ? nb++ : nb - 1;
        while (j > 0 && cand_before(&c, &best[j - 1])) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = c;
    }
    out->num_top = nb;
    for (int i = 0; i < nb; i++) {
        out->top_ids[i] = best[i].id;
        out->top_logprobs[i] = (float)((double)best[i].v - lse);
    }
}

vesta_status vesta_sampler_sample(const float *logits, int vocab_size, const vesta_sample_row *row,
                                  vesta_sample_result *out, vesta_sampler_scratch *scratch,
                                  vesta_error *err)
{
    int greedy, n;
    double max = 0;
    vesta_status st = process(logits, vocab_size, row, scratch, &greedy, &n, &max, err);
    if (st != VESTA_OK)
        return st;
    int32_t token = greedy;
    if (greedy < 0) {
        const cand *c = scratch->cands;
        double z = 0;
        for (int i = 0; i < n; i++)
            z += exp((double)c[i].v - max);
        double target = vesta_rng_uniform(row->rng_seed, row->rng_offset) * z;
        double acc = 0;
        token = c[n - 1].id;
        for (int i = 0; i < n; i++) {
            acc += exp((double)c[i].v - max);
            if (acc > target) {
                token = c[i].id;
                break;
            }
        }
    }
    out->token = token;
    out->logprob = 0;
    out->num_top = 0;
    if (row->params->logprobs >= 0)
        fill_logprobs(logits, vocab_size, row->params->logprobs, token, out);
    return VESTA_OK;
}

vesta_status vesta_sampler_probs(const float *logits, int vocab_size, const vesta_sample_row *row,
                                 float *probs, vesta_sampler_scratch *scratch, vesta_error *err)
{
    int greedy, n;
    double max = 0;
    vesta_status st = process(logits, vocab_size, row, scratch, &greedy, &n, &max, err);
    if (st != VESTA_OK)
        return st;
    memset(probs, 0, (size_t)vocab_size * sizeof(float));
    if (greedy >= 0) {
        probs[greedy] = 1.0f;
        return VESTA_OK;
    }
    const cand *c = scratch->cands;
    double z = 0;
    for (int i = 0; i < n; i++)
        z += exp((double)c[i].v - max);
    for (int i = 0; i < n; i++)
        probs[c[i].id] = (float)(exp((double)c[i].v - max) / z);
    return VESTA_OK;
}
