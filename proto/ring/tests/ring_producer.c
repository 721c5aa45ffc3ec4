// SPDX-License-Identifier: GPL-2.0-only
/*
 * The C end of the cross-language ring test (test/unit/ring.test.ts): a
 * process that inherits a formatted ring's memfd as fd 3 and its data and
 * space eventfds as fds 4 and 5, then
 *   ring_producer produce N   pushes N messages with ids/sequences 0..N-1
 *   ring_producer consume N   pops N messages and checks they are 0..N-1
 * Messages: the 16-byte wire header (size 8, id = seq, cmd MMIO_WRITE,
 * POSTED) and a u64 body (seq). Prints "rate N msgs/s" on success.
 */
#define _GNU_SOURCE
#include "pciem_ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

struct msg {
	uint32_t size, id;
	uint16_t cmd, flags;
	uint32_t error;
	uint64_t seq;
};

int main(int argc, char **argv)
{
	struct pciem_ring r;
	struct stat st;
	struct timespec a, b;
	struct msg m;
	uint64_t n, i;
	bool produce;
	void *mem;
	int rc;

	if (argc != 3 || (strcmp(argv[1], "produce") && strcmp(argv[1], "consume"))) {
		fprintf(stderr, "usage: ring_producer produce|consume N (ring memfd on fd 3, eventfds on 4, 5)\n");
		return 2;
	}
	produce = !strcmp(argv[1], "produce");
	n = strtoull(argv[2], NULL, 0);
	if (fstat(3, &st) < 0) {
		perror("fstat fd 3");
		return 1;
	}
	mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	rc = pciem_ring_attach(&r, mem, (size_t)st.st_size, produce ? PCIEM_RING_PRODUCER : PCIEM_RING_CONSUMER, 4, 5);
	if (rc) {
		fprintf(stderr, "attach: %s\n", strerror(-rc));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 0; i < n; i++) {
		if (produce) {
			m.size = 8;
			m.id = (uint32_t)i;
			m.cmd = 0x21;
			m.flags = 2;
			m.error = 0;
			m.seq = i;
			rc = pciem_ring_push_wait(&r, &m, sizeof(m), 10000);
			if (rc) {
				fprintf(stderr, "push %llu: %s\n", (unsigned long long)i, strerror(-rc));
				return 1;
			}
		} else {
			rc = pciem_ring_pop_wait(&r, &m, sizeof(m), 10000);
			if (rc != (int)sizeof(m)) {
				fprintf(stderr, "pop %llu: %s\n", (unsigned long long)i, rc < 0 ? strerror(-rc) : "short message");
				return 1;
			}
			if (m.seq != i || m.id != (uint32_t)i || m.size != 8 || m.cmd != 0x21) {
				fprintf(stderr, "message %llu: got seq %llu id %u\n", (unsigned long long)i,
					(unsigned long long)m.seq, m.id);
				return 1;
			}
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("rate %.0f msgs/s\n",
	       (double)n / ((double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9));
	return 0;
}
