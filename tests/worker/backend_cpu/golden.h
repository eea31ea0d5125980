/* Reading the golden files of scripts/reference/make_golden.py (JSON + raw float32 logits). */
#ifndef VESTA_TEST_GOLDEN_H
#define VESTA_TEST_GOLDEN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/model.h"

/* Loads a JSON file; exits the test with a message on failure. */
json_t *golden_json(const char *path);
/* Loads the float32 file named by doc["logits_file"] next to json_path; *n_floats gets its size. */
float *golden_logits(const char *json_path, json_t *doc, size_t *n_floats);
/* An int array field as a malloc'd int32 array. */
int32_t *golden_ids(json_t *obj, const char *key, int *n);
/* The golden file at json_path, its logits, and the model it names under root, opened after
 * checking that the model's weights still hash to doc["weights_fnv1a64"] (so that a rewritten test
 * model fails as stale, not as wrong). Exits the test on any failure. */
vesta_model_file *golden_model(const char *root, const char *json_path, json_t **doc, float **logits, size_t *n_floats);

/* The tests' step budget: smaller than the longest golden prompt, so that one is split. */
#define GOLDEN_STEP_TOKENS 64
/* `TEST ROOT GOLDEN.json`: golden_model, then a CPU backend over it (max_model_len 256, steps of
 * GOLDEN_STEP_TOKENS, block_size, all cores: races show up with many threads). Exits the test on
 * any failure (2 on usage). */
struct vesta_backend *golden_backend(int argc, char **argv, int block_size, json_t **doc, float **logits,
                                     size_t *n_floats, vesta_model_file **mf);

#endif
