// SPDX-License-Identifier: MIT
/*
 * Tests of the generated C codec (proto/generated/wire.c), run by
 * test/unit/proto-wire.test.ts:
 *
 *   gcc -std=c99 -pedantic -Wall -Wextra -Werror -Iproto/generated -Iproto/tests \
 *       proto/tests/wire_test.c proto/generated/wire.c -lmsgpackc
 *
 * Every shared vector (proto/vectors/wire.json, as C in wire_vectors.h):
 * a valid message encodes to exactly its frame and its frame decodes to
 * exactly it; a non-canonical frame decodes to its message, which encodes
 * canonically; an invalid frame is refused with its code. Then the limits,
 * the encoder's refusals, and mutated frames (only codes come out, nothing
 * crashes; the mocha test builds this with ASan and UBSan).
 *
 * Output is TAP-like: "ok N - what" or "not ok N - what" with "# why" lines,
 * then "wire: P passed, F failed"; the exit status is 0 only if F is 0.
 *
 * With --diff it reads frames from stdin instead (each a little-endian u32
 * length and that many bytes) and prints one line per frame: the decoder's
 * return code and, for a frame it accepts, that message re-encoded, in hex.
 * The TypeScript test compares those lines with its own codec's answers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire_vectors.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

static int ncase, passed, failed;

static void report(bool good, const char *why, const char *fmt, ...)
{
	va_list ap;

	ncase++;
	if (good)
		passed++;
	else
		failed++;
	printf("%sok %d - ", good ? "" : "not ", ncase);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!good && why)
		printf("# %s\n", why);
}

/* A return code, as a name for messages. */
static const char *rc_name(int rc)
{
	const char *n;

	if (rc == 0)
		return "0";
	n = rc < 0 ? pciem_wire_err_name((unsigned int)-rc) : NULL;
	return n ? n : "?";
}

static void rc_is(int got, int want, const char *fmt, ...)
{
	char what[200], why[120];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(why, sizeof(why), "got %d (%s), want %d (%s)", got, rc_name(got), want, rc_name(want));
	report(got == want, why, "%s", what);
}

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (!alen || !memcmp(a, b, alen));
}

/* ---- the shared vectors ---- */

static void test_vectors(void)
{
	size_t i, cut;

	for (i = 0; i < ARRAY_SIZE(wire_vectors); i++) {
		const struct wire_vector *v = &wire_vectors[i];
		struct pciem_wire_msg got;
		msgpack_sbuffer sb;
		int rc;

		if (!v->msg) {
			rc_is(pciem_wire_frame_decode(v->frame, v->len, &got), v->error, "invalid: %s", v->name);
			continue;
		}
		rc = pciem_wire_frame_decode(v->frame, v->len, &got);
		report(rc == 0 && wire_msg_equal(&got, v->msg), rc_name(rc), "decode: %s", v->name);

		msgpack_sbuffer_init(&sb);
		rc = pciem_wire_encode(v->msg, &sb);
		if (v->canonical)
			report(rc == 0 && same_bytes(sb.data, sb.size, v->canonical, v->canonical_len),
			       rc_name(rc), "encodes canonically: %s", v->name);
		else
			report(rc == 0 && same_bytes(sb.data, sb.size, v->frame, v->len),
			       rc_name(rc), "encode: %s", v->name);
		msgpack_sbuffer_destroy(&sb);

		/* Every frame cut short is TRUNCATED, whatever the cut. */
		rc = 0;
		for (cut = 0; cut < v->len && !rc; cut++) {
			uint8_t *part = malloc(cut ? cut : 1);

			if (cut)
				memcpy(part, v->frame, cut);
			if (pciem_wire_frame_decode(part, cut, &got) != -PCIEM_WIRE_ERR_TRUNCATED)
				rc = -1;
			free(part);
		}
		report(!rc, "a prefix was not TRUNCATED", "every prefix is TRUNCATED: %s", v->name);
	}
}

/* ---- limits ---- */

static void put_le32(uint8_t *q, uint32_t v)
{
	q[0] = (uint8_t)v;
	q[1] = (uint8_t)(v >> 8);
	q[2] = (uint8_t)(v >> 16);
	q[3] = (uint8_t)(v >> 24);
}

/* A DMA_WRITE frame, written byte by byte: header, map, addr 0, bin32 of len bytes. */
static uint8_t *dma_write_frame(uint32_t len, size_t *flen)
{
	static const uint8_t body_head[] = {
		0x82, 0xa4, 'a', 'd', 'd', 'r', 0x00, 0xa4, 'd', 'a', 't', 'a', 0xc6,
	};
	size_t body = sizeof(body_head) + 4 + len;
	uint8_t *f = calloc(1, PCIEM_WIRE_HEADER_SIZE + body);

	put_le32(f, (uint32_t)body);
	put_le32(f + 4, 1);
	f[8] = PCIEM_WIRE_CMD_DMA_WRITE;
	f[10] = PCIEM_WIRE_FLAG_POSTED;
	memcpy(f + PCIEM_WIRE_HEADER_SIZE, body_head, sizeof(body_head));
	/* bin32's length is big-endian, as every msgpack length */
	f[PCIEM_WIRE_HEADER_SIZE + sizeof(body_head)] = (uint8_t)(len >> 24);
	f[PCIEM_WIRE_HEADER_SIZE + sizeof(body_head) + 1] = (uint8_t)(len >> 16);
	f[PCIEM_WIRE_HEADER_SIZE + sizeof(body_head) + 2] = (uint8_t)(len >> 8);
	f[PCIEM_WIRE_HEADER_SIZE + sizeof(body_head) + 3] = (uint8_t)len;
	*flen = PCIEM_WIRE_HEADER_SIZE + body;
	return f;
}

static void test_limits(void)
{
	struct pciem_wire_msg m, got;
	msgpack_sbuffer sb;
	uint8_t *data, *f;
	size_t flen;
	int rc;

	data = malloc(PCIEM_WIRE_MAX_DMA + 1);
	memset(data, 0xa5, PCIEM_WIRE_MAX_DMA + 1);
	memset(&m, 0, sizeof(m));
	m.hdr.id = 1;
	m.hdr.cmd = PCIEM_WIRE_CMD_DMA_WRITE;
	m.hdr.flags = PCIEM_WIRE_FLAG_POSTED;
	m.body.dma_write.data.data = data;
	m.body.dma_write.data.len = PCIEM_WIRE_MAX_DMA;

	msgpack_sbuffer_init(&sb);
	rc = pciem_wire_encode(&m, &sb);
	rc_is(rc, 0, "a DMA_WRITE of MAX_DMA bytes encodes");
	rc = rc ? rc : pciem_wire_frame_decode((const uint8_t *)sb.data, sb.size, &got);
	report(!rc && got.body.dma_write.data.len == PCIEM_WIRE_MAX_DMA &&
	       !memcmp(got.body.dma_write.data.data, data, PCIEM_WIRE_MAX_DMA),
	       rc_name(rc), "and decodes to the same bytes, without a copy");
	report(!rc && got.body.dma_write.data.data > (const uint8_t *)sb.data &&
	       got.body.dma_write.data.data < (const uint8_t *)sb.data + sb.size,
	       "data is not inside the frame", "decoded bytes point into the frame");
	msgpack_sbuffer_destroy(&sb);

	msgpack_sbuffer_init(&sb);
	m.body.dma_write.data.len = PCIEM_WIRE_MAX_DMA + 1;
	rc_is(pciem_wire_encode(&m, &sb), -PCIEM_WIRE_ERR_TOO_BIG, "a DMA_WRITE of MAX_DMA + 1 bytes is not encoded");
	report(sb.size == 0, "bytes were left in the buffer", "and nothing is written");
	msgpack_sbuffer_destroy(&sb);

	f = dma_write_frame(PCIEM_WIRE_MAX_DMA + 1, &flen);
	rc_is(pciem_wire_frame_decode(f, flen, &got), -PCIEM_WIRE_ERR_TOO_BIG, "a DMA_WRITE frame of MAX_DMA + 1 bytes is refused");
	free(f);
	f = dma_write_frame(PCIEM_WIRE_MAX_DMA, &flen);
	rc_is(pciem_wire_frame_decode(f, flen, &got), 0, "one of MAX_DMA bytes, hand-made, is accepted");
	free(f);
	free(data);
}

/* ---- what the encoder refuses ---- */

static void test_encode_refusals(void)
{
	struct pciem_wire_msg base, m;
	msgpack_sbuffer sb;
	size_t before;

	memset(&base, 0, sizeof(base));
	base.hdr.id = 7;
	base.hdr.cmd = PCIEM_WIRE_CMD_MMIO_READ;
	base.body.mmio_read.bar = 0;
	base.body.mmio_read.offset = 0x1000;
	base.body.mmio_read.size = 4;

	msgpack_sbuffer_init(&sb);
	rc_is(pciem_wire_encode(&base, &sb), 0, "encode: a valid MMIO_READ");
	before = sb.size;

#define REFUSE(want, what, change) do {					\
		m = base;						\
		change;							\
		rc_is(pciem_wire_encode(&m, &sb), want, "encode refuses %s", what); \
	} while (0)

	REFUSE(-PCIEM_WIRE_ERR_RANGE, "bar 6", m.body.mmio_read.bar = 6);
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "size 3", m.body.mmio_read.size = 3);
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "offset + size past 2^64", m.body.mmio_read.offset = UINT64_MAX - 2);
	REFUSE(-PCIEM_WIRE_ERR_UNKNOWN_CMD, "command 0x7777", m.hdr.cmd = 0x7777);
	REFUSE(-PCIEM_WIRE_ERR_HEADER, "id 0", m.hdr.id = 0);
	REFUSE(-PCIEM_WIRE_ERR_HEADER, "POSTED on MMIO_READ", m.hdr.flags = PCIEM_WIRE_FLAG_POSTED);
	REFUSE(-PCIEM_WIRE_ERR_HEADER, "an unknown flag", m.hdr.flags = 0x8);
	REFUSE(-PCIEM_WIRE_ERR_HEADER, "an error code in a request", m.hdr.error = PCIEM_WIRE_ERR_RANGE);
	REFUSE(-PCIEM_WIRE_ERR_HEADER, "a reply with an unknown error code",
	       (m.hdr.flags = PCIEM_WIRE_FLAG_REPLY, m.hdr.error = 99));
	REFUSE(-PCIEM_WIRE_ERR_TOO_BIG, "an error message without its NUL",
	       (m.hdr.flags = PCIEM_WIRE_FLAG_REPLY, m.hdr.error = PCIEM_WIRE_ERR_IO,
		memset(m.body.error_reply.message, 'x', sizeof(m.body.error_reply.message))));
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "a string with a tab",
	       (m.hdr.flags = PCIEM_WIRE_FLAG_REPLY, m.hdr.error = PCIEM_WIRE_ERR_IO,
		strcpy(m.body.error_reply.message, "a\tb")));
	REFUSE(-PCIEM_WIRE_ERR_TOO_BIG, "7 BARs",
	       (m.hdr.cmd = PCIEM_WIRE_CMD_DEVICE, memset(&m.body, 0, sizeof(m.body)), m.body.device.n_bars = 7));
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "a DEVICE with an unknown BAR flag",
	       (m.hdr.cmd = PCIEM_WIRE_CMD_DEVICE, memset(&m.body, 0, sizeof(m.body)), m.body.device.n_bars = 1,
		m.body.device.bars[0].size = 4096, m.body.device.bars[0].flags = 2));
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "an MSI vector of 32",
	       (m.hdr.cmd = PCIEM_WIRE_CMD_MSI, m.hdr.flags = PCIEM_WIRE_FLAG_POSTED,
		m.body.msi.kind = PCIEM_WIRE_IRQ_KIND_MSI, m.body.msi.vector = 32));
	REFUSE(-PCIEM_WIRE_ERR_RANGE, "an empty DMA_WRITE",
	       (m.hdr.cmd = PCIEM_WIRE_CMD_DMA_WRITE, m.hdr.flags = PCIEM_WIRE_FLAG_POSTED,
		m.body.dma_write.data.data = NULL, m.body.dma_write.data.len = 0));
#undef REFUSE
	report(sb.size == before, "refused messages left bytes", "refused messages add nothing to the buffer");
	msgpack_sbuffer_destroy(&sb);
}

static void test_names(void)
{
	report(!strcmp(pciem_wire_cmd_name(PCIEM_WIRE_CMD_MMIO_READ), "MMIO_READ"), NULL, "cmd_name(MMIO_READ)");
	report(!pciem_wire_cmd_name(0) && !pciem_wire_cmd_name(0xffff), NULL, "cmd_name of undefined numbers is NULL");
	report(!strcmp(pciem_wire_err_name(PCIEM_WIRE_ERR_RANGE), "RANGE"), NULL, "err_name(RANGE)");
	report(!pciem_wire_err_name(12), NULL, "err_name(12) is NULL");
}

/* ---- mutated frames ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Mutates src into a new buffer of *len bytes (malloc'd to exactly that, for ASan). */
static uint8_t *mutate(const uint8_t *src, size_t slen, size_t *len)
{
	size_t n = slen + 8, i, k, pos;
	uint8_t *b = malloc(n + 1);

	memcpy(b, src, slen);
	n = slen;
	k = 1 + rnd() % 4;
	for (i = 0; i < k; i++) {
		pos = n ? rnd() % n : 0;
		switch (rnd() % 7) {
		case 0:		/* flip a bit */
			if (n)
				b[pos] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1:		/* a random byte */
			if (n)
				b[pos] = (uint8_t)rnd();
			break;
		case 2:		/* an interesting byte */
			if (n) {
				static const uint8_t marks[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xc0, 0xc1, 0xc3,
					0xc4, 0xc6, 0xca, 0xcb, 0xcc, 0xcf, 0xd3, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff };
				b[pos] = marks[rnd() % sizeof(marks)];
			}
			break;
		case 3:		/* cut */
			n = pos;
			break;
		case 4:		/* insert a byte */
			if (n < slen + 8) {
				memmove(b + pos + 1, b + pos, n - pos);
				b[pos] = (uint8_t)rnd();
				n++;
			}
			break;
		case 5:		/* delete a byte */
			if (n) {
				memmove(b + pos, b + pos + 1, n - pos - 1);
				n--;
			}
			break;
		default:	/* make the header's size agree with the length */
			if (n >= PCIEM_WIRE_HEADER_SIZE)
				put_le32(b, (uint32_t)(n - PCIEM_WIRE_HEADER_SIZE));
			break;
		}
	}
	*len = n;
	return realloc(b, n ? n : 1);
}

static void test_fuzz(void)
{
	unsigned int iter, accepted = 0, bad_code = 0, bad_round = 0;
	size_t valid = 0, i;
	const struct wire_vector *seeds[ARRAY_SIZE(wire_vectors)];

	for (i = 0; i < ARRAY_SIZE(wire_vectors); i++)
		if (wire_vectors[i].len)
			seeds[valid++] = &wire_vectors[i];
	for (iter = 0; iter < 200000; iter++) {
		const struct wire_vector *v = seeds[rnd() % valid];
		struct pciem_wire_msg m, again;
		msgpack_sbuffer sb;
		size_t len;
		uint8_t *f = mutate(v->frame, v->len, &len);
		int rc = pciem_wire_frame_decode(f, len, &m);

		if (rc > 0 || rc < -PCIEM_WIRE_ERR_HEADER) {
			if (!bad_code++)
				printf("# iteration %u: code %d\n", iter, rc);
		} else if (!rc) {
			accepted++;
			msgpack_sbuffer_init(&sb);
			rc = pciem_wire_encode(&m, &sb);
			if (!rc)
				rc = pciem_wire_frame_decode((const uint8_t *)sb.data, sb.size, &again);
			/* The size differs when the mutated frame was not canonical. */
			if (!rc)
				m.hdr.size = again.hdr.size;
			if ((rc || !wire_msg_equal(&again, &m)) && !bad_round++)
				printf("# iteration %u: accepted, but re-encoding gave %d\n", iter, rc);
			msgpack_sbuffer_destroy(&sb);
		}
		free(f);
	}
	report(!bad_code, "a return code outside 0, -1..-9", "200000 mutated frames: only decode codes come out");
	report(!bad_round, "see above", "and each of the %u accepted re-encodes to the same message", accepted);
}

/* ---- --diff: decode what the TypeScript test sends ---- */

static int diff_mode(void)
{
	size_t cap = 1 << 16, len = 0, pos = 0, n;
	uint8_t *in = malloc(cap);

	while ((n = fread(in + len, 1, cap - len, stdin)) > 0) {
		len += n;
		if (len == cap)
			in = realloc(in, cap *= 2);
	}
	while (len - pos >= 4) {
		uint32_t flen = (uint32_t)in[pos] | (uint32_t)in[pos + 1] << 8 |
				(uint32_t)in[pos + 2] << 16 | (uint32_t)in[pos + 3] << 24;
		struct pciem_wire_msg m;
		uint8_t *f;
		int rc;

		pos += 4;
		if (flen > len - pos)
			break;
		/* Its own allocation, so that ASan sees any read past its end. */
		f = malloc(flen ? flen : 1);
		memcpy(f, in + pos, flen);
		pos += flen;
		rc = pciem_wire_frame_decode(f, flen, &m);
		printf("%d", rc);
		if (!rc) {
			msgpack_sbuffer sb;
			size_t i;

			msgpack_sbuffer_init(&sb);
			rc = pciem_wire_encode(&m, &sb);
			printf(" %d ", rc);
			for (i = 0; i < sb.size; i++)
				printf("%02x", (uint8_t)sb.data[i]);
			msgpack_sbuffer_destroy(&sb);
		}
		printf("\n");
		free(f);
	}
	free(in);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--diff"))
		return diff_mode();
	test_vectors();
	test_limits();
	test_encode_refusals();
	test_names();
	test_fuzz();
	printf("wire: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
