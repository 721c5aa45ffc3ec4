/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pciem_ring_records.h - the messages the rings carry, in their fixed
 * binary form (docs/protocol.md, "Ring records"): the 16-byte wire header
 * (size = the body's bytes, the same id, cmd, flags and error as on the
 * socket) and a little-endian body of fixed layout, no msgpack. Decoded
 * into and encoded from the same struct pciem_wire_msg as the socket's
 * codec (proto/generated/wire.h), so a message means the same on either
 * path. The TypeScript twin is gateway/src/proto/ring-records.ts; both are
 * checked against proto/vectors/ring-records.json.
 *
 * Only these go on a ring: MMIO_WRITE (posted request), MMIO_READ (request
 * and reply; a failed reply has its error set and no body), MSI, INTX
 * (posted) and FENCE (posted, ring only). Which side may send which is the
 * session's business, not the codec's.
 */
#ifndef PCIEM_RING_RECORDS_H
#define PCIEM_RING_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

/* Body bytes of each record form. */
#define PCIEM_RECORD_MMIO_WRITE_SIZE 24u /* offset u64, value u64, bar u8, size u8, 6 zero */
#define PCIEM_RECORD_MMIO_READ_SIZE 16u /* offset u64, bar u8, size u8, 6 zero */
#define PCIEM_RECORD_MMIO_READ_REPLY_SIZE 8u /* value u64; a failed reply: 0 */
#define PCIEM_RECORD_IRQ_SIZE 8u /* MSI: vector u16, kind u8, 5 zero; INTX: level u8, 7 zero */
#define PCIEM_RECORD_FENCE_SIZE 8u /* count u32, 4 zero */
#define PCIEM_RECORD_MAX (PCIEM_WIRE_HEADER_SIZE + PCIEM_RECORD_MMIO_WRITE_SIZE)

static inline uint64_t pciem_record_ld(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void pciem_record_st(uint8_t *p, unsigned n, uint64_t v)
{
	unsigned i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline bool pciem_record_zero(const uint8_t *p, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static inline bool pciem_record_access_ok(uint8_t bar, uint64_t offset, uint8_t size)
{
	return bar <= 5 && (size == 1 || size == 2 || size == 4 || size == 8) && offset <= UINT64_MAX - size + 1;
}

static inline bool pciem_record_fits(uint64_t value, uint8_t size)
{
	return size >= 8 || value >> (8 * size) == 0;
}

/*
 * The form a header announces: its body size, or -PCIEM_WIRE_ERR_UNKNOWN_CMD
 * (a command that never goes on a ring) or -PCIEM_WIRE_ERR_HEADER (flags,
 * id or error that do not go together, as for a frame).
 */
static inline int pciem_record_form(const struct pciem_wire_header *h)
{
	bool reply = h->flags & PCIEM_WIRE_FLAG_REPLY;
	bool posted = h->flags & PCIEM_WIRE_FLAG_POSTED;

	switch (h->cmd) {
	case PCIEM_WIRE_CMD_MMIO_WRITE:
	case PCIEM_WIRE_CMD_MMIO_READ:
	case PCIEM_WIRE_CMD_MSI:
	case PCIEM_WIRE_CMD_INTX:
	case PCIEM_WIRE_CMD_FENCE:
		break;
	default:
		return -PCIEM_WIRE_ERR_UNKNOWN_CMD;
	}
	if ((h->flags & ~(PCIEM_WIRE_FLAG_REPLY | PCIEM_WIRE_FLAG_POSTED)) || h->id == 0)
		return -PCIEM_WIRE_ERR_HEADER;
	if (reply) {
		/* Only MMIO_READ is answered on a ring. */
		if (h->cmd != PCIEM_WIRE_CMD_MMIO_READ || posted ||
		    (h->error && pciem_wire_err_name(h->error) == NULL))
			return -PCIEM_WIRE_ERR_HEADER;
		return h->error ? 0 : (int)PCIEM_RECORD_MMIO_READ_REPLY_SIZE;
	}
	if (h->error || posted != (h->cmd != PCIEM_WIRE_CMD_MMIO_READ))
		return -PCIEM_WIRE_ERR_HEADER;
	switch (h->cmd) {
	case PCIEM_WIRE_CMD_MMIO_WRITE:
		return PCIEM_RECORD_MMIO_WRITE_SIZE;
	case PCIEM_WIRE_CMD_MMIO_READ:
		return PCIEM_RECORD_MMIO_READ_SIZE;
	case PCIEM_WIRE_CMD_FENCE:
		return PCIEM_RECORD_FENCE_SIZE;
	default:
		return PCIEM_RECORD_IRQ_SIZE;
	}
}

/*
 * Decodes the record in @rec (@len bytes available, e.g. a slot) into @m.
 * Returns the record's length, or a negative PCIEM_WIRE_ERR_ code:
 * TRUNCATED (shorter than its header or its size), UNKNOWN_CMD, HEADER,
 * MALFORMED (a size that is not the form's, reserved bytes not zero),
 * RANGE (a value outside what the field allows, as in the msgpack body).
 */
static inline int pciem_record_decode(const void *rec, size_t len, struct pciem_wire_msg *m)
{
	const uint8_t *p = (const uint8_t *)rec;
	const uint8_t *b = p + PCIEM_WIRE_HEADER_SIZE;
	int want;

	memset(m, 0, sizeof(*m));
	if (len < PCIEM_WIRE_HEADER_SIZE)
		return -PCIEM_WIRE_ERR_TRUNCATED;
	m->hdr.size = (uint32_t)pciem_record_ld(p, 4);
	m->hdr.id = (uint32_t)pciem_record_ld(p + 4, 4);
	m->hdr.cmd = (uint16_t)pciem_record_ld(p + 8, 2);
	m->hdr.flags = (uint16_t)pciem_record_ld(p + 10, 2);
	m->hdr.error = (uint32_t)pciem_record_ld(p + 12, 4);
	want = pciem_record_form(&m->hdr);
	if (want < 0)
		return want;
	if (m->hdr.size != (uint32_t)want)
		return -PCIEM_WIRE_ERR_MALFORMED;
	if (len - PCIEM_WIRE_HEADER_SIZE < m->hdr.size)
		return -PCIEM_WIRE_ERR_TRUNCATED;
	if (m->hdr.flags & PCIEM_WIRE_FLAG_REPLY) {
		m->body.mmio_read_reply.value = want ? pciem_record_ld(b, 8) : 0;
		return (int)(PCIEM_WIRE_HEADER_SIZE + m->hdr.size);
	}
	switch (m->hdr.cmd) {
	case PCIEM_WIRE_CMD_MMIO_WRITE: {
		struct pciem_wire_mmio_write *w = &m->body.mmio_write;

		if (!pciem_record_zero(b + 18, 6))
			return -PCIEM_WIRE_ERR_MALFORMED;
		w->offset = pciem_record_ld(b, 8);
		w->value = pciem_record_ld(b + 8, 8);
		w->bar = b[16];
		w->size = b[17];
		if (!pciem_record_access_ok(w->bar, w->offset, w->size) || !pciem_record_fits(w->value, w->size))
			return -PCIEM_WIRE_ERR_RANGE;
		break;
	}
	case PCIEM_WIRE_CMD_MMIO_READ: {
		struct pciem_wire_mmio_read *r = &m->body.mmio_read;

		if (!pciem_record_zero(b + 10, 6))
			return -PCIEM_WIRE_ERR_MALFORMED;
		r->offset = pciem_record_ld(b, 8);
		r->bar = b[8];
		r->size = b[9];
		if (!pciem_record_access_ok(r->bar, r->offset, r->size))
			return -PCIEM_WIRE_ERR_RANGE;
		break;
	}
	case PCIEM_WIRE_CMD_MSI: {
		struct pciem_wire_msi *s = &m->body.msi;

		if (!pciem_record_zero(b + 3, 5))
			return -PCIEM_WIRE_ERR_MALFORMED;
		s->vector = (uint16_t)pciem_record_ld(b, 2);
		s->kind = b[2];
		if ((s->kind != PCIEM_WIRE_IRQ_KIND_MSI && s->kind != PCIEM_WIRE_IRQ_KIND_MSIX) || s->vector > 2047 ||
		    (s->kind == PCIEM_WIRE_IRQ_KIND_MSI && s->vector > 31))
			return -PCIEM_WIRE_ERR_RANGE;
		break;
	}
	case PCIEM_WIRE_CMD_INTX:
		if (!pciem_record_zero(b + 1, 7))
			return -PCIEM_WIRE_ERR_MALFORMED;
		if (b[0] > 1)
			return -PCIEM_WIRE_ERR_RANGE;
		m->body.intx.level = b[0];
		break;
	default: /* FENCE */
		if (!pciem_record_zero(b + 4, 4))
			return -PCIEM_WIRE_ERR_MALFORMED;
		m->body.fence.count = (uint32_t)pciem_record_ld(b, 4);
		if (!m->body.fence.count)
			return -PCIEM_WIRE_ERR_RANGE;
		break;
	}
	return (int)(PCIEM_WIRE_HEADER_SIZE + m->hdr.size);
}

/*
 * Encodes @m (its hdr.size is ignored: the form sets it) into @rec, @cap
 * bytes. Returns the record's length, or the negative code a decoder would
 * refuse it with (nothing useful is written then), or
 * -PCIEM_WIRE_ERR_TOO_BIG when @cap is too small.
 */
static inline int pciem_record_encode(const struct pciem_wire_msg *m, void *rec, size_t cap)
{
	uint8_t *p = (uint8_t *)rec;
	uint8_t *b = p + PCIEM_WIRE_HEADER_SIZE;
	struct pciem_wire_header h = m->hdr;
	int size = pciem_record_form(&h);

	if (size < 0)
		return size;
	if (cap < PCIEM_WIRE_HEADER_SIZE + (size_t)size)
		return -PCIEM_WIRE_ERR_TOO_BIG;
	memset(p, 0, PCIEM_WIRE_HEADER_SIZE + (size_t)size);
	pciem_record_st(p, 4, (uint32_t)size);
	pciem_record_st(p + 4, 4, h.id);
	pciem_record_st(p + 8, 2, h.cmd);
	pciem_record_st(p + 10, 2, h.flags);
	pciem_record_st(p + 12, 4, h.error);
	if (h.flags & PCIEM_WIRE_FLAG_REPLY) {
		if (size)
			pciem_record_st(b, 8, m->body.mmio_read_reply.value);
		return (int)PCIEM_WIRE_HEADER_SIZE + size;
	}
	switch (h.cmd) {
	case PCIEM_WIRE_CMD_MMIO_WRITE: {
		const struct pciem_wire_mmio_write *w = &m->body.mmio_write;

		if (!pciem_record_access_ok(w->bar, w->offset, w->size) || !pciem_record_fits(w->value, w->size))
			return -PCIEM_WIRE_ERR_RANGE;
		pciem_record_st(b, 8, w->offset);
		pciem_record_st(b + 8, 8, w->value);
		b[16] = w->bar;
		b[17] = w->size;
		break;
	}
	case PCIEM_WIRE_CMD_MMIO_READ: {
		const struct pciem_wire_mmio_read *r = &m->body.mmio_read;

		if (!pciem_record_access_ok(r->bar, r->offset, r->size))
			return -PCIEM_WIRE_ERR_RANGE;
		pciem_record_st(b, 8, r->offset);
		b[8] = r->bar;
		b[9] = r->size;
		break;
	}
	case PCIEM_WIRE_CMD_MSI: {
		const struct pciem_wire_msi *s = &m->body.msi;

		if ((s->kind != PCIEM_WIRE_IRQ_KIND_MSI && s->kind != PCIEM_WIRE_IRQ_KIND_MSIX) || s->vector > 2047 ||
		    (s->kind == PCIEM_WIRE_IRQ_KIND_MSI && s->vector > 31))
			return -PCIEM_WIRE_ERR_RANGE;
		pciem_record_st(b, 2, s->vector);
		b[2] = s->kind;
		break;
	}
	case PCIEM_WIRE_CMD_INTX:
		b[0] = m->body.intx.level ? 1 : 0;
		break;
	default: /* FENCE */
		if (!m->body.fence.count)
			return -PCIEM_WIRE_ERR_RANGE;
		pciem_record_st(b, 4, m->body.fence.count);
		break;
	}
	return (int)PCIEM_WIRE_HEADER_SIZE + size;
}

#endif /* PCIEM_RING_RECORDS_H */
