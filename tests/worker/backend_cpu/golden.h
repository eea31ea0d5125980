/* Reading the golden files of scripts/reference/make_golden.py (JSON + raw float32 logits). */
#ifndef VESTA_TEST_GOLDEN_H
#define VESTA_TEST_GOLDEN_H

#include <jansson.h>
#include <stdint.h>

/* Loads a JSON file; exits the test with a message on failure. */
json_t *golden_json(const char *path);
/* Loads the float32 file named by doc["logits_file"] next to json_path; *n_floats gets its size. */
float *golden_logits(const char *json_path, json_t *doc, size_t *n_floats);
/* An int array field as a malloc'd int32 array. */
int32_t *golden_ids(json_t *obj, const char *key, int *n);

#endif
