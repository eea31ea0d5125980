/* The default real model (SmolLM2-135M-Instruct, GGUF Q4_1/Q8_0/F32 tensors, llama arch):
 * opens and validates; configuration equals transformers' reading of the same GGUF
 * (models-golden.json "smollm2"); sampled rows of the embedding, permuted Q/K, an FFN matrix and
 * a norm equal gguf-py's dequantize with the permutation undone (smollm2-rows.ref); every tensor
 * reads back finite.  Usage: test_model_smollm2 MODELS_DIR   (model from $VESTA_MODEL) */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "../../common/format/test_check.h"
#include "vesta/model.h"

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    const char *path = getenv("VESTA_MODEL");
    if (path == NULL) {
        fprintf(stderr, "VESTA_MODEL is not set (run scripts/fetch-model.sh)\n");
        return 1;
    }
    char gp[1024];
    snprintf(gp, sizeof(gp), "%s/models-golden.json", argv[1]);
    json_error_t jerr;
    json_t *golden = json_load_file(gp, 0, &jerr);
    REQUIRE(golden != NULL);
    json_t *g = json_object_get(json_object_get(golden, "smollm2"), "config");
    REQUIRE(g != NULL);
    vesta_error err = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &err);
    if (mf == NULL) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    const vesta_model_config *c = vesta_model_file_config(mf);
    CHECK(strcmp(c->arch, json_string_value(json_object_get(g, "arch"))) == 0);
#define CI(field, key) CHECKF(c->field == json_integer_value(json_object_get(g, key)), "%s=%d", key, (int)c->field)
    CI(vocab_size, "vocab_size");
    CI(hidden_size, "hidden_size");
    CI(intermediate_size, "intermediate_size");
    CI(num_layers, "num_layers");
    CI(num_heads, "num_heads");
    CI(num_kv_heads, "num_kv_heads");
    CI(head_dim, "head_dim");
    CI(max_position_embeddings, "max_position_embeddings");
    CI(bos_token_id, "bos_token_id");
    CHECK(c->tie_word_embeddings == json_is_true(json_object_get(g, "tie_word_embeddings")));
    CHECK(c->rms_norm_eps == (float)json_number_value(json_object_get(g, "rms_norm_eps")));
    CHECK(c->rope_theta == (float)json_number_value(json_object_get(g, "rope_theta")));
    CHECK(c->rope_scaling == VESTA_ROPE_SCALING_NONE);
    json_t *eos = json_object_get(g, "eos_token_ids");
    CHECK(c->num_eos_token_ids == (int)json_array_size(eos));
    CHECK(c->eos_token_ids[0] == json_integer_value(json_array_get(eos, 0)));
    CHECK(!c->attention_bias);
    CHECKF(vesta_model_file_validate(mf, &err) == VESTA_OK, "validate: %s", err.msg);
    CHECK(vesta_model_file_find(mf, "lm_head.weight") == NULL);

    /* sampled rows vs gguf-py */
    snprintf(gp, sizeof(gp), "%s/smollm2-rows.ref", argv[1]);
    FILE *f = fopen(gp, "rb");
    REQUIRE(f != NULL);
    char magic[4];
    uint32_t count;
    REQUIRE(fread(magic, 1, 4, f) == 4 && memcmp(magic, "VREF", 4) == 0 && fread(&count, 4, 1, f) == 1);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t nl, nd;
        char name[256];
        int64_t shape[4];
        REQUIRE(fread(&nl, 4, 1, f) == 1 && nl < sizeof(name) && fread(name, 1, nl, f) == nl);
        name[nl] = '\0';
        REQUIRE(fread(&nd, 4, 1, f) == 1 && nd <= 4 && fread(shape, 8, nd, f) == nd);
        size_t n = 1;
        for (uint32_t d = 0; d < nd; d++)
            n *= (size_t)shape[d];
        float *ref = malloc(n * 4), *got = malloc(n * 4);
        REQUIRE(fread(ref, 4, n, f) == n);
        char *h1 = strchr(name, '#');
        REQUIRE(h1 != NULL);
        *h1 = '\0';
        long b = strtol(h1 + 1, &h1, 10), e = strtol(h1 + 1, NULL, 10);
        REQUIRE(vesta_model_file_read_rows(mf, name, VESTA_DTYPE_F32, b, e, got, &err) == VESTA_OK);
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += fabsf(got[i] - ref[i]) > 1e-6f * fabsf(ref[i]) + 1e-30f;
        CHECKF(bad == 0, "%s rows [%ld, %ld): %d values differ from gguf-py", name, b, e, bad);
        free(ref);
        free(got);
    }
    fclose(f);

    /* every tensor dequantizes to finite values */
    const char *names[] = {"model.embed_tokens.weight", "model.norm.weight"};
    for (int l = -1; l < c->num_layers; l++) {
        const char *sfx[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                             "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                             "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"};
        int nn = l < 0 ? 2 : 9;
        for (int k = 0; k < nn; k++) {
            char n[160];
            if (l < 0)
                snprintf(n, sizeof(n), "%s", names[k]);
            else
                snprintf(n, sizeof(n), "model.layers.%d.%s", l, sfx[k]);
            const vesta_tensor_info *t = vesta_model_file_find(mf, n);
            REQUIRE(t != NULL);
            int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
            float *buf = malloc((size_t)(rows * cols) * 4);
            REQUIRE(vesta_model_file_read_rows(mf, n, VESTA_DTYPE_F32, 0, rows, buf, &err) == VESTA_OK);
            int bad = 0;
            for (int64_t i = 0; i < rows * cols; i++)
                bad += !isfinite(buf[i]);
            CHECKF(bad == 0, "%s: %d non-finite", n, bad);
            free(buf);
        }
    }
    vesta_model_file_close(mf);
    json_decref(golden);
    return test_finish("test_model_smollm2");
}
