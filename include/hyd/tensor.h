/* hyd — tensor views shared by the engine and layer plugins.
 * Shapes follow GGUF: ne[0] is the contiguous dimension; a matrix mapping n_in -> n_out is
 * stored as ne = {n_in, n_out} (n_out rows of n_in elements). Types use GGML's numbering. */
#ifndef HYD_TENSOR_H
#define HYD_TENSOR_H

#include <stdint.h>

#define HYD_MAX_DIMS 4

struct hyd_tensor {
	const char *name;         /* NUL-terminated */
	uint32_t type;            /* GGML type id (0 = F32, 1 = F16, 30 = BF16, 8 = Q8_0, ...) */
	uint32_t n_dims;          /* 1..4 */
	int64_t ne[HYD_MAX_DIMS]; /* elements per dimension; unused dims are 1 */
	const void *data;         /* read-only, usually inside the mmapped model file */
	uint64_t nbytes;
};

static inline int64_t hyd_tensor_nelements(const struct hyd_tensor *t)
{
	return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

#endif
