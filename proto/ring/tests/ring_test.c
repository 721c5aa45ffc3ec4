// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tests of proto/ring/pciem_ring.h, run by test/unit/ring.test.ts:
 * geometry checks, full/empty, counters wrapping past 2^32, two threads
 * passing 10 million sequenced messages through a 64-slot ring, and the
 * eventfd wake-ups (only when the peer is flagged asleep).
 */
#define _GNU_SOURCE
#include "pciem_ring.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>

static int passed, failed;

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			printf("not ok %s: %s (line %d)\n", __func__, #cond, __LINE__); \
			failed++;                                                \
			return;                                                  \
		}                                                                \
	} while (0)

#define PASS() (printf("ok %s\n", __func__), passed++)

struct msg {
	uint32_t size, id;
	uint16_t cmd, flags;
	uint32_t error;
	uint64_t seq, check;
};

static void make(struct msg *m, uint64_t seq)
{
	m->size = 16;
	m->id = (uint32_t)seq;
	m->cmd = 0x21;
	m->flags = 2;
	m->error = 0;
	m->seq = seq;
	m->check = seq * 0x9e3779b97f4a7c15ull;
}

static _Alignas(64) uint8_t mem[PCIEM_RING_HDR_SIZE + 64 * 4096];

static void test_geometry(void)
{
	struct pciem_ring r;

	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 48, 0) == -EINVAL);
	CHECK(pciem_ring_format(mem, sizeof(mem), 40, 64, 0) == -EINVAL);
	CHECK(pciem_ring_format(mem, sizeof(mem), 16, 64, 0) == -EINVAL);
	CHECK(pciem_ring_format(mem, 1000, 64, 64, 0) == -ENOSPC);
	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 64, 0) == 0);
	CHECK(pciem_ring_attach(&r, mem, 200, PCIEM_RING_CONSUMER, -1, -1) == -EPROTO);
	CHECK(pciem_ring_attach(&r, mem, pciem_ring_bytes(64, 64) - 1, PCIEM_RING_CONSUMER, -1, -1) == -EPROTO);
	CHECK(pciem_ring_attach(&r, mem, sizeof(mem), PCIEM_RING_CONSUMER, -1, -1) == 0);
	((struct pciem_ring_shared *)mem)->magic ^= 1;
	CHECK(pciem_ring_attach(&r, mem, sizeof(mem), PCIEM_RING_CONSUMER, -1, -1) == -EPROTO);
	PASS();
}

static void test_full_empty(void)
{
	struct pciem_ring p, c;
	struct msg m, out;
	uint8_t big[128] = { 0 };
	int i;

	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 8, 0) == 0);
	CHECK(pciem_ring_attach(&p, mem, sizeof(mem), PCIEM_RING_PRODUCER, -1, -1) == 0);
	CHECK(pciem_ring_attach(&c, mem, sizeof(mem), PCIEM_RING_CONSUMER, -1, -1) == 0);
	CHECK(pciem_ring_empty(&c) && !pciem_ring_full(&p));
	CHECK(pciem_ring_try_pop(&c, &out, sizeof(out)) == -EAGAIN);
	CHECK(pciem_ring_try_push(&p, big, 65) == -EMSGSIZE);
	CHECK(pciem_ring_try_push(&p, big, 15) == -EMSGSIZE);
	for (i = 0; i < 8; i++) {
		make(&m, (uint64_t)i);
		CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	}
	CHECK(pciem_ring_full(&p) && !pciem_ring_empty(&c));
	make(&m, 8);
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == -EAGAIN);
	CHECK(pciem_ring_try_pop(&c, &out, 20) == -EMSGSIZE);
	for (i = 0; i < 8; i++) {
		CHECK(pciem_ring_try_pop(&c, &out, sizeof(out)) == (int)sizeof(out));
		CHECK(out.seq == (uint64_t)i && out.id == (uint32_t)i);
	}
	CHECK(pciem_ring_empty(&c));
	/* a slot whose header says more body than a slot holds is refused, not read past */
	make(&m, 9);
	m.size = 64;
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	CHECK(pciem_ring_try_pop(&c, &out, sizeof(out)) == -EPROTO);
	PASS();
}

static void test_corrupt_counter(void)
{
	struct pciem_ring c;
	struct msg out;

	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 8, 0) == 0);
	CHECK(pciem_ring_attach(&c, mem, sizeof(mem), PCIEM_RING_CONSUMER, -1, -1) == 0);
	atomic_store(&((struct pciem_ring_shared *)mem)->prod, 9);
	CHECK(pciem_ring_try_pop(&c, &out, sizeof(out)) == -EPROTO);
	CHECK(pciem_ring_pop_wait(&c, &out, sizeof(out), 10) == -EPROTO);
	PASS();
}

static void test_wrap(void)
{
	struct pciem_ring p, c;
	struct msg m, out;
	uint64_t seq = 0, got = 0;
	int round, k;

	/* 0xfffffff0: both counters cross 2^32 after 16 slots */
	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 8, 0xfffffff0u) == 0);
	CHECK(pciem_ring_attach(&p, mem, sizeof(mem), PCIEM_RING_PRODUCER, -1, -1) == 0);
	CHECK(pciem_ring_attach(&c, mem, sizeof(mem), PCIEM_RING_CONSUMER, -1, -1) == 0);
	for (round = 0; round < 10; round++) {
		for (k = 0; k < 8; k++) {
			make(&m, seq++);
			CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
		}
		CHECK(pciem_ring_full(&p));
		for (k = 0; k < 8; k++) {
			CHECK(pciem_ring_try_pop(&c, &out, sizeof(out)) == (int)sizeof(out));
			CHECK(out.seq == got++);
		}
		CHECK(pciem_ring_empty(&c));
	}
	CHECK(atomic_load(&((struct pciem_ring_shared *)mem)->prod) == 64u);
	CHECK(atomic_load(&((struct pciem_ring_shared *)mem)->cons) == 64u);
	PASS();
}

#define THREAD_MSGS 10000000ull

struct pair {
	struct pciem_ring p, c;
	uint64_t errors, bad_seq;
};

static void *producer(void *arg)
{
	struct pair *x = arg;
	struct msg m;
	uint64_t i;

	for (i = 0; i < THREAD_MSGS; i++) {
		make(&m, i);
		if (pciem_ring_push_wait(&x->p, &m, sizeof(m), 10000) != 0) {
			x->errors++;
			break;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct pair x = { .errors = 0 };
	pthread_t t;
	struct msg out;
	struct timespec a, b;
	uint64_t i;
	int data = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), space = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	double s;
	struct pciem_ring_shared *sh = (struct pciem_ring_shared *)mem;

	CHECK(data >= 0 && space >= 0);
	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 64, 0xffff0000u) == 0);
	CHECK(pciem_ring_attach(&x.p, mem, sizeof(mem), PCIEM_RING_PRODUCER, data, space) == 0);
	CHECK(pciem_ring_attach(&x.c, mem, sizeof(mem), PCIEM_RING_CONSUMER, data, space) == 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK(pthread_create(&t, NULL, producer, &x) == 0);
	for (i = 0; i < THREAD_MSGS; i++) {
		if (pciem_ring_pop_wait(&x.c, &out, sizeof(out), 10000) != (int)sizeof(out)) {
			x.errors++;
			break;
		}
		if (out.seq != i || out.id != (uint32_t)i || out.check != i * 0x9e3779b97f4a7c15ull) {
			x.bad_seq++;
			break;
		}
	}
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	CHECK(x.errors == 0 && x.bad_seq == 0 && i == THREAD_MSGS);
	CHECK(pciem_ring_empty(&x.c));
	printf("  %llu messages through 64 slots in %.2f s: %.2f M/s; full waits %llu, consumer sleeps %llu, data wakes %llu, space wakes %llu\n",
	       THREAD_MSGS, s, (double)THREAD_MSGS / s / 1e6, (unsigned long long)sh->full_waits,
	       (unsigned long long)sh->consumer_sleeps, (unsigned long long)sh->data_wakes,
	       (unsigned long long)sh->space_wakes);
	CHECK(sh->full_timeouts == 0);
	close(data);
	close(space);
	PASS();
}

struct waiter {
	struct pciem_ring *r;
	struct msg m;
	int rc;
};

static void *pop_waiter(void *arg)
{
	struct waiter *w = arg;

	w->rc = pciem_ring_pop_wait(w->r, &w->m, sizeof(w->m), 5000);
	return NULL;
}

static void *push_waiter(void *arg)
{
	struct waiter *w = arg;

	w->rc = pciem_ring_push_wait(w->r, &w->m, sizeof(w->m), 5000);
	return NULL;
}

static void test_wakeups(void)
{
	struct pciem_ring p, c;
	struct pciem_ring_shared *sh = (struct pciem_ring_shared *)mem;
	struct waiter w;
	struct msg m;
	pthread_t t;
	uint64_t v;
	int i, data = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), space = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	CHECK(data >= 0 && space >= 0);
	CHECK(pciem_ring_format(mem, sizeof(mem), 64, 4, 0) == 0);
	CHECK(pciem_ring_attach(&p, mem, sizeof(mem), PCIEM_RING_PRODUCER, data, space) == 0);
	CHECK(pciem_ring_attach(&c, mem, sizeof(mem), PCIEM_RING_CONSUMER, data, space) == 0);

	/* consumer awake: a push writes no eventfd */
	make(&m, 1);
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	CHECK(read(data, &v, sizeof(v)) < 0 && errno == EAGAIN);
	CHECK(sh->data_wakes == 0);
	CHECK(pciem_ring_try_pop(&c, &m, sizeof(m)) == (int)sizeof(m));

	/* consumer flagged asleep: one push kicks once and clears the flag */
	atomic_store(&sh->cons_sleeping, 1);
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	CHECK(read(data, &v, sizeof(v)) == sizeof(v) && v == 1);
	CHECK(atomic_load(&sh->cons_sleeping) == 0 && sh->data_wakes == 1);
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	CHECK(read(data, &v, sizeof(v)) < 0 && errno == EAGAIN);
	CHECK(pciem_ring_try_pop(&c, &m, sizeof(m)) > 0 && pciem_ring_try_pop(&c, &m, sizeof(m)) > 0);

	/* quiet commits: no eventfd write however many, then one notify kicks once */
	atomic_store(&sh->cons_sleeping, 1);
	for (i = 0; i < 2; i++) {
		void *slot = pciem_ring_reserve(&p);

		CHECK(slot != NULL);
		make(&m, 50 + (uint64_t)i);
		memcpy(slot, &m, sizeof(m));
		pciem_ring_commit_quiet(&p);
	}
	CHECK(read(data, &v, sizeof(v)) < 0 && errno == EAGAIN);
	CHECK(atomic_load(&sh->cons_sleeping) == 1 && sh->data_wakes == 1);
	pciem_ring_notify(&p);
	CHECK(read(data, &v, sizeof(v)) == sizeof(v) && v == 1);
	CHECK(atomic_load(&sh->cons_sleeping) == 0 && sh->data_wakes == 2);
	pciem_ring_notify(&p);
	CHECK(read(data, &v, sizeof(v)) < 0 && errno == EAGAIN);
	for (i = 0; i < 2; i++)
		CHECK(pciem_ring_try_pop(&c, &m, sizeof(m)) > 0 && m.seq == 50 + (uint64_t)i);

	/* a real sleeper: pop_wait blocks, sets the flag, and the next push wakes it */
	w.r = &c;
	w.rc = 1;
	CHECK(pthread_create(&t, NULL, pop_waiter, &w) == 0);
	for (i = 0; i < 500 && !atomic_load(&sh->cons_sleeping); i++)
		usleep(1000);
	CHECK(atomic_load(&sh->cons_sleeping) == 1);
	CHECK(w.rc == 1);
	make(&m, 42);
	CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	pthread_join(t, NULL);
	CHECK(w.rc == (int)sizeof(m) && w.m.seq == 42);
	CHECK(sh->data_wakes == 3 && sh->consumer_sleeps == 1);

	/* a full ring: push_wait sleeps (counted), one pop wakes it, nothing dropped */
	for (i = 0; i < 4; i++) {
		make(&m, 100 + (uint64_t)i);
		CHECK(pciem_ring_try_push(&p, &m, sizeof(m)) == 0);
	}
	make(&w.m, 104);
	w.r = &p;
	w.rc = 1;
	CHECK(pthread_create(&t, NULL, push_waiter, &w) == 0);
	for (i = 0; i < 500 && !atomic_load(&sh->prod_waiting); i++)
		usleep(1000);
	CHECK(atomic_load(&sh->prod_waiting) == 1 && w.rc == 1);
	CHECK(pciem_ring_try_pop(&c, &m, sizeof(m)) > 0 && m.seq == 100);
	pthread_join(t, NULL);
	CHECK(w.rc == 0 && sh->full_waits == 1 && sh->space_wakes == 1);

	/* bounded: a push that times out is counted and leaves the ring as it was */
	make(&m, 105);
	CHECK(pciem_ring_push_wait(&p, &m, sizeof(m), 20) == -ETIMEDOUT);
	CHECK(sh->full_waits == 2 && sh->full_timeouts == 1);
	for (i = 1; i <= 4; i++)
		CHECK(pciem_ring_try_pop(&c, &m, sizeof(m)) > 0 && m.seq == 100 + (uint64_t)i);
	CHECK(pciem_ring_pop_wait(&c, &m, sizeof(m), 20) == -ETIMEDOUT);
	close(data);
	close(space);
	PASS();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_geometry();
	test_full_empty();
	test_corrupt_counter();
	test_wrap();
	test_threads();
	test_wakeups();
	printf("ring: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
