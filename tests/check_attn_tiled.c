/* The attention plugins' tiled kernel (prefill steps of 64 rows or more, ggml's tiled flash
 * attention): the blocked AVX2 kernel, which takes 32 query rows of a head per task, must give
 * every output exactly the bits of the plain C reference, attn_task_tiled, which takes one row.
 * Greedy parity with llama.cpp rests on those bits, so this compares them bit for bit, over
 * paged and ring (sliding window) KV, grouped heads, head sizes that are and are not multiples
 * of 8, soft-capping, steps that start mid-tile and batches of two sessions.
 *
 * The kernels are static in attn_core.c, so this file includes it. */
#include "plugins/common/attn_core.c"

#include <check.h>

#include "tests/test_rand.h"

struct shape {
	enum hyd_kv_mode mode;
	uint32_t n_head, n_kv, dk, dv;
	uint32_t window;      /* ring mode */
	uint32_t page_tokens; /* paged mode */
	float softcap;
	uint32_t n_seqs;
	uint32_t pos[2], n_rows[2];
};

/* Runs every (row, head) task of one batch through attn_task, which dispatches tiled rows to
 * the blocked kernel when the CPU has AVX2, and through the reference, and compares. */
static void check_shape(const struct shape *c)
{
	struct hyd_attn_layer L;
	memset(&L, 0, sizeof(L));
	L.hp.struct_size = sizeof(L.hp);
	L.hp.n_head = c->n_head, L.hp.n_head_kv = c->n_kv;
	L.hp.head_dim_k = c->dk, L.hp.head_dim_v = c->dv;
	L.hp.window = c->window;
	L.hp.attn_softcap = c->softcap;
	L.mode = c->mode;
	L.q_dim = c->n_head * c->dk, L.k_dim = c->n_kv * c->dk, L.v_dim = c->n_kv * c->dv;
	L.scale = 1.0f / sqrtf((float)c->dk);

	uint32_t n = 0, max_chunk = 0, max_end = 0;
	for (uint32_t i = 0; i < c->n_seqs; i++) {
		n += c->n_rows[i];
		max_chunk = c->n_rows[i] > max_chunk ? c->n_rows[i] : max_chunk;
		max_end = c->pos[i] + c->n_rows[i] > max_end ? c->pos[i] + c->n_rows[i] : max_end;
	}
	struct hyd_state_limits lim = {
		.struct_size = sizeof(lim), .max_ctx = max_end, .max_chunk = max_chunk,
		.page_tokens = c->page_tokens ? c->page_tokens : 16,
	};
	struct hyd_mixer_seq seqs[2];
	memset(seqs, 0, sizeof(seqs));
	void *mem[2] = { NULL, NULL };
	void **pages[2] = { NULL, NULL };
	const uint64_t row_halves = (uint64_t)L.k_dim + L.v_dim;
	uint32_t row0 = 0;
	for (uint32_t i = 0; i < c->n_seqs; i++) {
		struct hyd_mixer_seq *s = &seqs[i];
		s->pos = c->pos[i], s->row0 = row0, s->n_rows = c->n_rows[i];
		row0 += c->n_rows[i];
		uint64_t halves;
		if (c->mode == HYD_KV_PAGED) {
			s->n_pages = (s->pos + s->n_rows + lim.page_tokens - 1) / lim.page_tokens;
			halves = (uint64_t)s->n_pages * lim.page_tokens * row_halves;
		} else {
			halves = (uint64_t)ring_slots(&L, &lim) * row_halves;
		}
		uint16_t *kv = hyd_malloc(halves * sizeof(uint16_t));
		ck_assert_ptr_nonnull(kv);
		for (uint64_t h = 0; h < halves; h++)
			kv[h] = hyd_fp32_to_fp16(uniform(-2.0f, 2.0f));
		mem[i] = kv;
		if (c->mode == HYD_KV_PAGED) {
			pages[i] = hyd_malloc(s->n_pages * sizeof(void *));
			for (uint32_t pg = 0; pg < s->n_pages; pg++)
				pages[i][pg] = kv + (uint64_t)pg * lim.page_tokens * row_halves;
			s->pages = pages[i];
		} else {
			s->state = kv;
		}
	}
	struct hyd_mixer_batch b = {
		.struct_size = sizeof(b), .n_seqs = c->n_seqs, .n_rows = n, .seqs = seqs, .limits = &lim,
	};
	float *q = hyd_malloc((uint64_t)n * L.q_dim * sizeof(float));
	const uint64_t o_floats = (uint64_t)n * c->n_head * c->dv;
	float *o_ref = hyd_malloc(o_floats * sizeof(float)), *o_got = hyd_malloc(o_floats * sizeof(float));
	uint16_t *acc = hyd_malloc(acc_halves(&L) * sizeof(uint16_t));
	uint32_t *row_seq = hyd_malloc(n * sizeof(uint32_t));
	uint8_t *tiled = hyd_malloc(n);
	ck_assert(q && o_ref && o_got && acc && row_seq && tiled);
	for (uint64_t i = 0; i < (uint64_t)n * L.q_dim; i++)
		q[i] = uniform(-2.0f, 2.0f);
	for (uint32_t i = 0; i < c->n_seqs; i++)
		for (uint32_t r = 0; r < seqs[i].n_rows; r++) {
			row_seq[seqs[i].row0 + r] = i;
			tiled[seqs[i].row0 + r] = 1;
		}
	struct attn_job j = {
		.L = &L, .b = &b, .acc = acc, .acc_stride = acc_halves(&L), .row_seq = row_seq, .q32 = q,
		.tiled = tiled,
	};
	memset(o_ref, 0xff, o_floats * sizeof(float));
	memset(o_got, 0xff, o_floats * sizeof(float));
	j.o = o_ref;
	for (uint32_t row = 0; row < n; row++)
		for (uint32_t h = 0; h < c->n_head; h++)
			attn_task_tiled(&j, row, h, 0);
	j.o = o_got;
	for (uint32_t t = 0; t < n * c->n_head; t++)
		attn_task(&j, t, 0);
	for (uint64_t i = 0; i < o_floats; i++) {
		uint32_t a, g;
		memcpy(&a, &o_ref[i], 4), memcpy(&g, &o_got[i], 4);
		const uint64_t row = i / ((uint64_t)c->n_head * c->dv);
		ck_assert_msg(a == g,
			      "%s, heads %u/%u, dk %u dv %u, softcap %g: row %llu head %llu element %llu is %a, the reference %a",
			      c->mode == HYD_KV_PAGED ? "paged" : "ring", c->n_head, c->n_kv, c->dk, c->dv, c->softcap,
			      (unsigned long long)row, (unsigned long long)(i / c->dv % c->n_head),
			      (unsigned long long)(i % c->dv), o_got[i], o_ref[i]);
	}
	for (uint32_t i = 0; i < c->n_seqs; i++) {
		hyd_free(mem[i]);
		hyd_free(pages[i]);
	}
	hyd_free(q), hyd_free(o_ref), hyd_free(o_got), hyd_free(acc), hyd_free(row_seq), hyd_free(tiled);
}

/* Each shape is one case; the comment says what it exercises. */
static const struct shape shapes[] = {
	/* a first prompt chunk; 70 rows: two blocks of 32 and one of 6 */
	{ .mode = HYD_KV_PAGED, .n_head = 4, .n_kv = 2, .dk = 64, .dv = 64, .page_tokens = 16, .n_seqs = 1,
	  .pos = { 0 }, .n_rows = { 70 } },
	/* a later chunk starting mid-tile, keys spread over pages of 24 (tiles cross pages), a
	 * head size that is not a multiple of 8 and V wider than K */
	{ .mode = HYD_KV_PAGED, .n_head = 3, .n_kv = 1, .dk = 36, .dv = 84, .page_tokens = 24, .n_seqs = 1,
	  .pos = { 100 }, .n_rows = { 77 } },
	/* heads of 256 (gemma-style: four 64-wide passes over V), soft-capped logits */
	{ .mode = HYD_KV_PAGED, .n_head = 2, .n_kv = 1, .dk = 256, .dv = 256, .page_tokens = 32, .n_seqs = 1,
	  .pos = { 5 }, .n_rows = { 64 }, .softcap = 30.0f },
	/* a sliding window of 100: each row's first key moves, tiles are partly outside it */
	{ .mode = HYD_KV_RING, .n_head = 4, .n_kv = 4, .dk = 32, .dv = 32, .window = 100, .n_seqs = 1,
	  .pos = { 150 }, .n_rows = { 90 } },
	/* a window smaller than a block of rows and than a tile */
	{ .mode = HYD_KV_RING, .n_head = 2, .n_kv = 1, .dk = 40, .dv = 20, .window = 9, .n_seqs = 1,
	  .pos = { 30 }, .n_rows = { 65 } },
	/* two sessions in one batch, at different positions: blocks never cross sessions */
	{ .mode = HYD_KV_PAGED, .n_head = 2, .n_kv = 2, .dk = 64, .dv = 64, .page_tokens = 16, .n_seqs = 2,
	  .pos = { 0, 37 }, .n_rows = { 67, 81 } },
};

START_TEST(test_same_bits)
{
	check_shape(&shapes[_i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("attn_tiled");
	TCase *tc = tcase_create("same bits as the reference");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_same_bits, 0, (int)(sizeof(shapes) / sizeof(shapes[0])));
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	const int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
