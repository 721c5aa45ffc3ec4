// SPDX-License-Identifier: GPL-2.0-only
/*
 * records_test.c - the C ring-record codec (pciem_ring_records.h) against
 * the shared vectors (proto/vectors/ring-records.json, turned into
 * records_vectors.h by test/unit/ring.test.ts), plus 200,000 mutated
 * records: the decoder never reads past what it is given, refuses with a
 * defined code, and what it accepts encodes back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "pciem_ring_records.h"
#include "records_vectors.h"

static int passed, failed;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			printf("not ok %s: ", __func__);                      \
			printf(__VA_ARGS__);                                  \
			printf(" (line %d)\n", __LINE__);                     \
			failed++;                                             \
			return;                                               \
		}                                                             \
	} while (0)
#define PASS() (printf("ok %s\n", __func__), passed++)

static void test_valid(void)
{
	uint8_t slot[64], out[64];
	struct pciem_wire_msg m;
	size_t i;
	int n;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct record_vector *v = &valid[i];

		n = pciem_record_encode(&v->msg, out, sizeof(out));
		CHECK(n == (int)v->len, "%s: encode gave %d, want %zu", v->name, n, v->len);
		CHECK(!memcmp(out, v->rec, v->len), "%s: encoded bytes differ", v->name);
		/* exactly its bytes, and the same in a whole slot with junk after it */
		n = pciem_record_decode(v->rec, v->len, &m);
		CHECK(n == (int)v->len, "%s: decode gave %d", v->name, n);
		memset(slot, 0xa5, sizeof(slot));
		memcpy(slot, v->rec, v->len);
		n = pciem_record_decode(slot, sizeof(slot), &m);
		CHECK(n == (int)v->len, "%s: decode in a slot gave %d", v->name, n);
		n = pciem_record_encode(&m, out, sizeof(out));
		CHECK(n == (int)v->len && !memcmp(out, v->rec, v->len), "%s: decoded message encodes differently", v->name);
		CHECK(m.hdr.id == v->msg.hdr.id && m.hdr.cmd == v->msg.hdr.cmd && m.hdr.flags == v->msg.hdr.flags &&
			      m.hdr.error == v->msg.hdr.error,
		      "%s: header differs", v->name);
		CHECK(pciem_record_encode(&v->msg, out, v->len - 1) == -PCIEM_WIRE_ERR_TOO_BIG, "%s: fits one byte short",
		      v->name);
	}
	PASS();
}

static void test_invalid(void)
{
	struct pciem_wire_msg m;
	size_t i;
	int n;

	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const struct record_invalid *v = &invalid[i];

		n = pciem_record_decode(v->rec, v->len, &m);
		CHECK(n == -v->error, "%s: decode gave %d, want %d", v->name, n, -v->error);
	}
	PASS();
}

static void test_encoder_refuses(void)
{
	struct pciem_wire_msg m = { .hdr = { .id = 1, .cmd = PCIEM_WIRE_CMD_MMIO_WRITE, .flags = PCIEM_WIRE_FLAG_POSTED } };
	uint8_t out[64];

	m.body.mmio_write = (struct pciem_wire_mmio_write){ .bar = 0, .offset = 0, .size = 2, .value = 0x10000 };
	CHECK(pciem_record_encode(&m, out, sizeof(out)) == -PCIEM_WIRE_ERR_RANGE, "a value wider than its size");
	m.hdr.cmd = PCIEM_WIRE_CMD_DMA_WRITE;
	CHECK(pciem_record_encode(&m, out, sizeof(out)) == -PCIEM_WIRE_ERR_UNKNOWN_CMD, "DMA_WRITE on a ring");
	m.hdr.cmd = PCIEM_WIRE_CMD_FENCE;
	m.body.fence.count = 0;
	CHECK(pciem_record_encode(&m, out, sizeof(out)) == -PCIEM_WIRE_ERR_RANGE, "FENCE 0");
	PASS();
}

static void test_mutations(void)
{
	uint8_t slot[64], out[64];
	struct pciem_wire_msg m;
	unsigned seed = 12345, i, k, accepted = 0;
	int n;

	for (i = 0; i < 200000; i++) {
		const struct record_vector *v = &valid[i % (sizeof(valid) / sizeof(valid[0]))];
		size_t len;

		memset(slot, 0, sizeof(slot));
		memcpy(slot, v->rec, v->len);
		for (k = 0; k < 1 + (i & 3); k++) {
			seed = seed * 1103515245u + 12345u;
			slot[(seed >> 8) % 40] ^= (uint8_t)(1u << ((seed >> 20) & 7));
		}
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % 4 == 0 ? (seed >> 4) % 41 : sizeof(slot);
		n = pciem_record_decode(slot, len, &m);
		if (n < 0) {
			CHECK(n >= -PCIEM_WIRE_ERR_HEADER && n <= -PCIEM_WIRE_ERR_TRUNCATED, "decode gave %d", n);
			continue;
		}
		accepted++;
		CHECK((size_t)n <= len, "a %d-byte record in %zu bytes", n, len);
		CHECK(pciem_record_encode(&m, out, sizeof(out)) == n && !memcmp(out, slot, (size_t)n),
		      "an accepted record does not encode back to its bytes");
	}
	printf("  %u of 200000 mutated records accepted\n", accepted);
	PASS();
}

int main(void)
{
	test_valid();
	test_invalid();
	test_encoder_refuses();
	test_mutations();
	printf("records: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
