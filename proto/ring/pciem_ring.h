/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pciem_ring.h - the hot path's single-producer/single-consumer ring in
 * shared memory (docs/protocol.md, "Rings"). Header-only, plain C11 with
 * <stdatomic.h>, no QEMU or Linux-kernel include: the QEMU bridge, the test
 * programs and anything else in C include it as is. The TypeScript side is
 * gateway/src/ring.ts; both follow the same layout and the same wake-up
 * protocol.
 *
 * One ring carries one direction. Exactly one thread produces and exactly one
 * consumes; each attaches its own struct pciem_ring to the shared memory.
 * Slots are fixed-size and hold a 16-byte wire header (docs/protocol.md,
 * "Frames") followed by a fixed binary body of `size` bytes.
 *
 * Backpressure: a full ring makes pciem_ring_push_wait() wait (bounded by its
 * timeout, counted in full_waits/full_timeouts); nothing is ever dropped. A
 * timed-out push leaves the message with the caller.
 */
#ifndef PCIEM_RING_H
#define PCIEM_RING_H

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PCIEM_RING_MAGIC 0x474e5250u /* "PRNG" in memory order */
#define PCIEM_RING_VERSION 1u
#define PCIEM_RING_HDR_SIZE 256u /* slots start here */
#define PCIEM_RING_MSG_HDR 16u /* the wire protocol's frame header */
#define PCIEM_RING_SLOT_MIN 32u
#define PCIEM_RING_SLOT_MAX 4096u
#define PCIEM_RING_SLOTS_MAX (1u << 20)
#define PCIEM_RING_SPIN 256u /* polls of the peer's index before sleeping */

#if defined(__x86_64__) || defined(__i386__)
#define pciem_ring_relax() __builtin_ia32_pause()
#else
#define pciem_ring_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

/* The shared header; every field little-endian (x86-64 only, see the doc). */
struct pciem_ring_shared {
	/* 0: written once by pciem_ring_format(), read-only afterwards */
	uint32_t magic;
	uint32_t version;
	uint32_t slot_size; /* bytes per slot: multiple of 16, 32..4096 */
	uint32_t slot_count; /* power of two, 2..2^20 */
	uint32_t reserved0[12];
	/* 64: the producer's cache line */
	_Atomic uint32_t prod; /* slots published, free-running */
	_Atomic uint32_t prod_waiting; /* producer sleeps on space_fd */
	_Atomic uint64_t full_waits; /* pushes that found the ring full */
	_Atomic uint64_t full_timeouts; /* of those, gave up at the timeout */
	_Atomic uint64_t data_wakes; /* writes to data_fd */
	uint8_t pad1[32];
	/* 128: the consumer's cache line */
	_Atomic uint32_t cons; /* slots consumed, free-running */
	_Atomic uint32_t cons_sleeping; /* consumer sleeps on data_fd */
	_Atomic uint64_t consumer_sleeps; /* times the consumer slept */
	_Atomic uint64_t space_wakes; /* writes to space_fd */
	uint8_t pad2[40];
	/* 192: reserved, zero */
	uint8_t reserved3[64];
};

_Static_assert(sizeof(struct pciem_ring_shared) == PCIEM_RING_HDR_SIZE, "ring header is 256 bytes");
_Static_assert(offsetof(struct pciem_ring_shared, prod) == 64, "producer line at 64");
_Static_assert(offsetof(struct pciem_ring_shared, cons) == 128, "consumer line at 128");
_Static_assert(offsetof(struct pciem_ring_shared, data_wakes) == 88, "data_wakes at 88");
_Static_assert(offsetof(struct pciem_ring_shared, space_wakes) == 144, "space_wakes at 144");

/* One side's private view of a ring (not shared). */
struct pciem_ring {
	struct pciem_ring_shared *sh;
	uint8_t *slots;
	uint32_t slot_size;
	uint32_t slot_count;
	uint32_t mask;
	uint32_t head; /* own counter: next slot to fill (producer) or read (consumer) */
	uint32_t peer; /* last value seen of the peer's counter */
	int data_fd; /* eventfd: the producer writes, the consumer sleeps on it */
	int space_fd; /* eventfd: the consumer writes, the producer sleeps on it */
};

/* Bytes of shared memory a ring needs. */
static inline size_t pciem_ring_bytes(uint32_t slot_size, uint32_t slot_count)
{
	return PCIEM_RING_HDR_SIZE + (size_t)slot_size * slot_count;
}

static inline bool pciem_ring_geometry_ok(uint32_t slot_size, uint32_t slot_count)
{
	return slot_size >= PCIEM_RING_SLOT_MIN && slot_size <= PCIEM_RING_SLOT_MAX && slot_size % 16 == 0 &&
	       slot_count >= 2 && slot_count <= PCIEM_RING_SLOTS_MAX && (slot_count & (slot_count - 1)) == 0;
}

/*
 * Writes an empty ring into `mem` (zeroed first). Both counters start at
 * `start` (0 normally; tests start near 2^32 to cross the wrap). Done by the
 * side that creates the memory, before the peer attaches.
 */
static inline int pciem_ring_format(void *mem, size_t len, uint32_t slot_size, uint32_t slot_count, uint32_t start)
{
	struct pciem_ring_shared *sh = (struct pciem_ring_shared *)mem;

	if (!pciem_ring_geometry_ok(slot_size, slot_count))
		return -EINVAL;
	if (len < pciem_ring_bytes(slot_size, slot_count))
		return -ENOSPC;
	memset(mem, 0, pciem_ring_bytes(slot_size, slot_count));
	sh->version = PCIEM_RING_VERSION;
	sh->slot_size = slot_size;
	sh->slot_count = slot_count;
	atomic_store_explicit(&sh->prod, start, memory_order_relaxed);
	atomic_store_explicit(&sh->cons, start, memory_order_relaxed);
	/* magic last: a peer that sees it sees the rest */
	atomic_thread_fence(memory_order_release);
	sh->magic = PCIEM_RING_MAGIC;
	return 0;
}

enum pciem_ring_role { PCIEM_RING_PRODUCER, PCIEM_RING_CONSUMER };

/*
 * Attaches one side to a formatted ring of `len` bytes. The eventfds may be
 * -1 for a side that only uses the try_ calls. Refuses (-EPROTO) a header
 * it cannot trust: bad magic, version or geometry, a size that does not fit.
 */
static inline int pciem_ring_attach(struct pciem_ring *r, void *mem, size_t len, enum pciem_ring_role role,
				    int data_fd, int space_fd)
{
	struct pciem_ring_shared *sh = (struct pciem_ring_shared *)mem;
	uint32_t prod, cons;

	if (len < PCIEM_RING_HDR_SIZE || sh->magic != PCIEM_RING_MAGIC || sh->version != PCIEM_RING_VERSION)
		return -EPROTO;
	atomic_thread_fence(memory_order_acquire);
	if (!pciem_ring_geometry_ok(sh->slot_size, sh->slot_count) ||
	    len < pciem_ring_bytes(sh->slot_size, sh->slot_count))
		return -EPROTO;
	prod = atomic_load_explicit(&sh->prod, memory_order_acquire);
	cons = atomic_load_explicit(&sh->cons, memory_order_acquire);
	if (prod - cons > sh->slot_count)
		return -EPROTO;
	r->sh = sh;
	r->slots = (uint8_t *)mem + PCIEM_RING_HDR_SIZE;
	r->slot_size = sh->slot_size;
	r->slot_count = sh->slot_count;
	r->mask = sh->slot_count - 1;
	r->head = role == PCIEM_RING_PRODUCER ? prod : cons;
	r->peer = role == PCIEM_RING_PRODUCER ? cons : prod;
	r->data_fd = data_fd;
	r->space_fd = space_fd;
	return 0;
}

static inline void pciem_ring_kick(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the peer will wake */
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

static inline void pciem_ring_drain(int fd)
{
	uint64_t v;

	if (fd >= 0 && read(fd, &v, sizeof(v)) < 0)
		return; /* EAGAIN: a spurious wake-up, harmless */
}

/* Waits until fd is readable or the deadline (CLOCK_MONOTONIC ns; 0: none) passes. */
static inline int pciem_ring_sleep(int fd, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int ms = -1, n;

	if (deadline) {
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		if (now >= deadline)
			return -ETIMEDOUT;
		ms = (int)((deadline - now + 999999) / 1000000);
	}
	n = poll(&p, 1, ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ETIMEDOUT;
	pciem_ring_drain(fd);
	return 0;
}

static inline uint64_t pciem_ring_deadline(int timeout_ms)
{
	struct timespec ts;

	if (timeout_ms < 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (uint64_t)timeout_ms * 1000000u + 1;
}

/* ---- producer ---- */

static inline bool pciem_ring_full(struct pciem_ring *r)
{
	if (r->head - r->peer < r->slot_count)
		return false;
	r->peer = atomic_load_explicit(&r->sh->cons, memory_order_acquire);
	return r->head - r->peer >= r->slot_count;
}

/*
 * The next free slot (slot_size bytes) to fill in place, or NULL when the
 * ring is full. Publish it with pciem_ring_commit().
 */
static inline void *pciem_ring_reserve(struct pciem_ring *r)
{
	if (pciem_ring_full(r))
		return NULL;
	return r->slots + (size_t)(r->head & r->mask) * r->slot_size;
}

/*
 * Publishes the reserved slot without looking at cons_sleeping: for
 * batches, with one pciem_ring_notify() after the last slot. A producer
 * that publishes quietly must notify before it waits or goes idle.
 */
static inline void pciem_ring_commit_quiet(struct pciem_ring *r)
{
	r->head++;
	atomic_store_explicit(&r->sh->prod, r->head, memory_order_release);
}

/*
 * Wakes the consumer if it sleeps. The seq_cst fence orders every earlier
 * store of prod before the load of cons_sleeping (store-load): with the
 * consumer's "set flag, fence, re-check prod", one of the two sees the
 * other, so a consumer never sleeps on a slot nobody will tell it about.
 */
static inline void pciem_ring_notify(struct pciem_ring *r)
{
	struct pciem_ring_shared *sh = r->sh;

	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&sh->cons_sleeping, memory_order_relaxed) &&
	    atomic_exchange_explicit(&sh->cons_sleeping, 0, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&sh->data_wakes, 1, memory_order_relaxed);
		pciem_ring_kick(r->data_fd);
	}
}

/* Publishes the reserved slot and wakes the consumer if it sleeps. */
static inline void pciem_ring_commit(struct pciem_ring *r)
{
	pciem_ring_commit_quiet(r);
	pciem_ring_notify(r);
}

/* Copies one message (16-byte header + body, len <= slot_size) in: 0, -EAGAIN (full) or -EMSGSIZE. */
static inline int pciem_ring_try_push(struct pciem_ring *r, const void *msg, size_t len)
{
	void *slot;

	if (len < PCIEM_RING_MSG_HDR || len > r->slot_size)
		return -EMSGSIZE;
	slot = pciem_ring_reserve(r);
	if (!slot)
		return -EAGAIN;
	memcpy(slot, msg, len);
	pciem_ring_commit(r);
	return 0;
}

/*
 * try_push, waiting while the ring is full: spins briefly, then sets
 * prod_waiting, re-checks, and sleeps on space_fd. timeout_ms < 0 waits for
 * ever. Returns 0, -ETIMEDOUT (the message was not queued: nothing dropped),
 * -EMSGSIZE or another -errno from poll().
 */
static inline int pciem_ring_push_wait(struct pciem_ring *r, const void *msg, size_t len, int timeout_ms)
{
	struct pciem_ring_shared *sh = r->sh;
	uint64_t deadline = 0;
	bool counted = false;
	int rc;

	for (;;) {
		unsigned int i;

		rc = pciem_ring_try_push(r, msg, len);
		if (rc != -EAGAIN)
			return rc;
		if (!counted) {
			atomic_fetch_add_explicit(&sh->full_waits, 1, memory_order_relaxed);
			deadline = pciem_ring_deadline(timeout_ms);
			counted = true;
		}
		for (i = 0; i < PCIEM_RING_SPIN && pciem_ring_full(r); i++)
			pciem_ring_relax();
		if (!pciem_ring_full(r))
			continue;
		atomic_store_explicit(&sh->prod_waiting, 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_seq_cst); /* flag before re-check: pairs with release() */
		if (!pciem_ring_full(r)) {
			atomic_store_explicit(&sh->prod_waiting, 0, memory_order_relaxed);
			continue;
		}
		rc = pciem_ring_sleep(r->space_fd, deadline);
		atomic_store_explicit(&sh->prod_waiting, 0, memory_order_relaxed);
		if (rc == -ETIMEDOUT && pciem_ring_full(r)) {
			atomic_fetch_add_explicit(&sh->full_timeouts, 1, memory_order_relaxed);
			return rc;
		}
		if (rc < 0 && rc != -ETIMEDOUT)
			return rc;
	}
}

/* ---- consumer ---- */

/*
 * Number of published slots not yet consumed, or -EPROTO when the peer's
 * counter is impossible (more than slot_count ahead): shared memory is
 * input, and bad input must not send the consumer past the ring.
 */
static inline int64_t pciem_ring_available(struct pciem_ring *r)
{
	uint32_t prod = atomic_load_explicit(&r->sh->prod, memory_order_acquire);

	if (prod - r->head > r->slot_count)
		return -EPROTO;
	r->peer = prod;
	return prod - r->head;
}

static inline bool pciem_ring_empty(struct pciem_ring *r)
{
	return r->head == r->peer && pciem_ring_available(r) == 0;
}

/* The oldest unconsumed slot, in place, or NULL when the ring is empty (or corrupt). */
static inline const void *pciem_ring_peek(struct pciem_ring *r)
{
	if (r->head == r->peer && pciem_ring_available(r) <= 0)
		return NULL;
	return r->slots + (size_t)(r->head & r->mask) * r->slot_size;
}

/* Releases the peeked slot to the producer; wakes it if it sleeps (same fence as commit). */
static inline void pciem_ring_release(struct pciem_ring *r)
{
	struct pciem_ring_shared *sh = r->sh;

	r->head++;
	atomic_store_explicit(&sh->cons, r->head, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&sh->prod_waiting, memory_order_relaxed) &&
	    atomic_exchange_explicit(&sh->prod_waiting, 0, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&sh->space_wakes, 1, memory_order_relaxed);
		pciem_ring_kick(r->space_fd);
	}
}

/*
 * Copies the oldest message out (16 + its header's size bytes) and releases
 * its slot. Returns the message's length, -EAGAIN (empty), -EMSGSIZE (cap
 * too small; the message stays) or -EPROTO (a size that does not fit a
 * slot, or a corrupt counter).
 */
static inline int pciem_ring_try_pop(struct pciem_ring *r, void *msg, size_t cap)
{
	const uint8_t *slot;
	uint32_t body;

	if (r->head == r->peer) {
		int64_t n = pciem_ring_available(r);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EAGAIN;
	}
	slot = r->slots + (size_t)(r->head & r->mask) * r->slot_size;
	memcpy(&body, slot, sizeof(body));
	if (body > r->slot_size - PCIEM_RING_MSG_HDR)
		return -EPROTO;
	if (PCIEM_RING_MSG_HDR + body > cap)
		return -EMSGSIZE;
	memcpy(msg, slot, PCIEM_RING_MSG_HDR + body);
	pciem_ring_release(r);
	return (int)(PCIEM_RING_MSG_HDR + body);
}

/*
 * try_pop, sleeping while the ring is empty: spins briefly, then sets
 * cons_sleeping, re-checks prod, and sleeps on data_fd. timeout_ms < 0 waits
 * for ever. Returns what try_pop returns, or -ETIMEDOUT.
 */
static inline int pciem_ring_pop_wait(struct pciem_ring *r, void *msg, size_t cap, int timeout_ms)
{
	struct pciem_ring_shared *sh = r->sh;
	uint64_t deadline = pciem_ring_deadline(timeout_ms);
	int rc;

	for (;;) {
		unsigned int i;

		rc = pciem_ring_try_pop(r, msg, cap);
		if (rc != -EAGAIN)
			return rc;
		for (i = 0; i < PCIEM_RING_SPIN && pciem_ring_available(r) == 0; i++)
			pciem_ring_relax();
		if (pciem_ring_available(r) != 0)
			continue;
		atomic_store_explicit(&sh->cons_sleeping, 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_seq_cst); /* flag before re-check: pairs with commit() */
		if (pciem_ring_available(r) != 0) {
			atomic_store_explicit(&sh->cons_sleeping, 0, memory_order_relaxed);
			continue;
		}
		atomic_fetch_add_explicit(&sh->consumer_sleeps, 1, memory_order_relaxed);
		rc = pciem_ring_sleep(r->data_fd, deadline);
		atomic_store_explicit(&sh->cons_sleeping, 0, memory_order_relaxed);
		if (rc == -ETIMEDOUT && pciem_ring_available(r) == 0)
			return rc;
		if (rc < 0 && rc != -ETIMEDOUT)
			return rc;
	}
}

#endif /* PCIEM_RING_H */
