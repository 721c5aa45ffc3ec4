// SPDX-License-Identifier: GPL-2.0-only
/*
 * The baselines `make bench` measures the gateway against, in the same run:
 *
 *   baseline ring N        N posted-write-sized messages through a raw C
 *                          SPSC ring (proto/ring/pciem_ring.h) from one
 *                          process to another: {"ring_msgs_per_s": ...}
 *   baseline memcpy SIZE K K copies of SIZE bytes between two buffers:
 *                          {"memcpy_p50_us": ..., "memcpy_p99_us": ...}
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pciem_ring.h"

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* An MMIO_WRITE as a ring slot carries it: the 16-byte header and a 24-byte body. */
struct msg {
	uint32_t size, id;
	uint16_t cmd, flags;
	uint32_t error;
	uint8_t bar, len, pad[6];
	uint64_t offset, value;
};

static int bench_ring(uint64_t n)
{
	const uint32_t slot = 64, count = 4096;
	size_t bytes = pciem_ring_bytes(slot, count);
	int mfd = memfd_create("bench-ring", MFD_CLOEXEC);
	int data = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), space = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct pciem_ring r;
	uint64_t t0, t1, i;
	struct msg m = { 0 };
	void *mem;
	pid_t pid;
	int st;

	if (mfd < 0 || data < 0 || space < 0 || ftruncate(mfd, bytes)) {
		perror("ring setup");
		return 1;
	}
	mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED || pciem_ring_format(mem, bytes, slot, count, 0)) {
		perror("ring format");
		return 1;
	}
	t0 = now_ns();
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		if (pciem_ring_attach(&r, mem, bytes, PCIEM_RING_CONSUMER, data, space))
			_exit(3);
		for (i = 0; i < n; i++) {
			if (pciem_ring_pop_wait(&r, &m, sizeof(m), 10000) != (int)sizeof(m) || m.value != i)
				_exit(4);
		}
		_exit(0);
	}
	if (pciem_ring_attach(&r, mem, bytes, PCIEM_RING_PRODUCER, data, space)) {
		fprintf(stderr, "attach failed\n");
		return 1;
	}
	m.size = 24;
	m.cmd = 0x21;
	m.flags = 2;
	m.len = 4;
	for (i = 0; i < n; i++) {
		m.id = (uint32_t)i + 1;
		m.value = i;
		if (pciem_ring_push_wait(&r, &m, sizeof(m), 10000)) {
			fprintf(stderr, "push %llu failed\n", (unsigned long long)i);
			return 1;
		}
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "consumer failed (%d)\n", st);
		return 1;
	}
	t1 = now_ns();
	printf("{\"ring_msgs\": %llu, \"ring_msgs_per_s\": %.0f}\n", (unsigned long long)n, n / ((t1 - t0) / 1e9));
	return 0;
}

static int bench_memcpy(size_t size, unsigned int k)
{
	uint8_t *a = malloc(size), *b = malloc(size);
	uint64_t *t = calloc(k, sizeof(*t));
	unsigned int i;

	if (!a || !b || !t) {
		perror("malloc");
		return 1;
	}
	memset(a, 0x5a, size);
	memset(b, 0, size);
	for (i = 0; i < k; i++) {
		uint64_t t0 = now_ns();

		memcpy(i & 1 ? a : b, i & 1 ? b : a, size);
		__asm__ volatile("" ::: "memory");
		t[i] = now_ns() - t0;
	}
	qsort(t, k, sizeof(*t), cmp_u64);
	printf("{\"memcpy_bytes\": %zu, \"memcpy_p50_us\": %.1f, \"memcpy_p99_us\": %.1f}\n", size,
	       t[k / 2] / 1e3, t[(k * 99) / 100] / 1e3);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "ring"))
		return bench_ring(strtoull(argv[2], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "memcpy"))
		return bench_memcpy(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	fprintf(stderr, "usage: baseline ring N | baseline memcpy SIZE K\n");
	return 2;
}
