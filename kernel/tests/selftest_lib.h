/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared parts of the pciem selftest programs (kselftest shape): output
 * helpers, a card written against the compatible ABI, sysfs and config
 * space access, the debugfs interface of a test driver, and the runner.
 * Each program includes this once and defines its test table, then calls
 * selftest_main(). A program whose tests use a test driver sets
 * testdrv_device and testdrv_root before running them.
 */
#ifndef PCIEM_SELFTEST_LIB_H
#define PCIEM_SELFTEST_LIB_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/pciem.h>



#define FAIL(...) do { diag(__VA_ARGS__); return -1; } while (0)
#define CHECK(cond, ...) do { if (!(cond)) { diag("%s:%d: check '%s' failed", __FILE__, __LINE__, #cond); FAIL(__VA_ARGS__); } } while (0)

static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a card written against the compatible ABI ---- */

struct card {
	int fd;
	int inst;
	struct pciem_shared_ring *ring;
	void *bar[PCIEM_NUM_BARS];
	uint64_t bar_size[PCIEM_NUM_BARS];
	char bdf[32];
};

struct card_desc {
	uint16_t device;
	uint8_t class_code[3];
	uint8_t revision;
	int nfuncs;			/* 1..8, function f gets device + f */
	uint64_t bar0_size;		/* 64-bit, non-prefetchable */
	uint64_t bar2_size;		/* 64-bit, prefetchable; 0: none */
	uint32_t bar0_trace;
	bool start;
};

static inline int card_close(struct card *c)
{
	int b;

	for (b = 0; b < PCIEM_NUM_BARS; b++)
		if (c->bar[b])
			munmap(c->bar[b], c->bar_size[b]);
	if (c->ring)
		munmap(c->ring, sizeof(*c->ring));
	if (c->inst >= 0)
		close(c->inst);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = c->inst = -1;
	return 0;
}

/* The pciem device (domain >= 0x10000) whose BAR0 is at @phys. */
static inline int find_bdf_by_phys(uint64_t phys, char *bdf, size_t len)
{
	DIR *d;
	struct dirent *e;
	int found = 0;

	if (!phys)
		return 0;
	d = opendir("/sys/bus/pci/devices");
	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char path[512];
		unsigned long long start;
		FILE *f;

		if (e->d_name[0] == '.' || strtoul(e->d_name, NULL, 16) < 0x10000)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%llx", &start) == 1 && start == phys) {
			snprintf(bdf, len, "%.31s", e->d_name);
			found = 1;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static inline int card_make(struct card *c, const struct card_desc *d)
{
	struct pciem_bar_info_query q = { .bar_index = 0 };
	int f;

	memset(c, 0, sizeof(*c));
	c->fd = c->inst = -1;
	c->fd = open("/dev/pciem", O_RDWR);
	CHECK(c->fd >= 0, "open /dev/pciem: %s", strerror(errno));

	for (f = 0; f < (d->nfuncs ?: 1); f++) {
		struct pciem_create_device cr = { .func = f };
		struct pciem_config_space cfg = {
			.func = f, .vendor_id = 0x1f0c, .device_id = d->device + f,
			.subsys_vendor_id = 0x1f0c, .subsys_device_id = 0x1234,
			.revision = d->revision,
		};
		struct pciem_bar_config b0 = {
			.bar_index = 0, .func = f, .size = d->bar0_size ?: 0x10000,
			.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64,
		};
		struct pciem_bar_config b2 = {
			.bar_index = 2, .func = f, .size = d->bar2_size,
			.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 |
				 PCI_BASE_ADDRESS_MEM_PREFETCH,
		};

		memcpy(cfg.class_code, d->class_code, 3);
		CHECK(ioctl(c->fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE %d: %s", f, strerror(errno));
		CHECK(ioctl(c->fd, PCIEM_IOCTL_SET_CONFIG, &cfg) == 0, "SET_CONFIG: %s", strerror(errno));
		CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b0) == 0, "ADD_BAR 0: %s", strerror(errno));
		if (d->bar2_size)
			CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b2) == 0, "ADD_BAR 2: %s", strerror(errno));
		if (f == 0) {
			c->bar_size[0] = b0.size;
			c->bar_size[2] = d->bar2_size;
		}
	}
	if (d->bar0_trace) {
		struct pciem_trace_bar t = { .bar_index = 0, .flags = d->bar0_trace };

		CHECK(ioctl(c->fd, PCIEM_IOCTL_TRACE_BAR, &t) == 0, "TRACE_BAR: %s", strerror(errno));
	}
	c->inst = ioctl(c->fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(c->inst >= 0, "REGISTER: %s", strerror(errno));
	c->ring = mmap(NULL, sizeof(*c->ring), PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	CHECK(c->ring != MAP_FAILED, "mmap ring: %s", strerror(errno));
	c->bar[0] = mmap(NULL, c->bar_size[0], PROT_READ | PROT_WRITE, MAP_SHARED, c->inst, 0);
	CHECK(c->bar[0] != MAP_FAILED, "mmap BAR0: %s", strerror(errno));
	if (c->bar_size[2]) {
		c->bar[2] = mmap(NULL, c->bar_size[2], PROT_READ | PROT_WRITE, MAP_SHARED, c->inst, 2 * 4096);
		CHECK(c->bar[2] != MAP_FAILED, "mmap BAR2: %s", strerror(errno));
	}
	CHECK(ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO: %s", strerror(errno));
	CHECK(q.size == c->bar_size[0] && q.phys_addr, "BAR0 info: size %llu phys %llx",
	      (unsigned long long)q.size, (unsigned long long)q.phys_addr);
	if (d->start)
		CHECK(ioctl(c->fd, PCIEM_IOCTL_START) == 0, "START: %s", strerror(errno));
	CHECK(find_bdf_by_phys(q.phys_addr, c->bdf, sizeof(c->bdf)), "no PCI device with BAR0 at %llx",
	      (unsigned long long)q.phys_addr);
	return 0;
}

static inline int ring_pop(struct card *c, struct pciem_event *ev)
{
	int head = c->ring->head;
	int tail = __atomic_load_n(&c->ring->tail, __ATOMIC_ACQUIRE);

	if (head == tail)
		return 0;
	*ev = c->ring->events[head];
	__atomic_store_n(&c->ring->head, (head + 1) % PCIEM_RING_SIZE, __ATOMIC_RELEASE);
	return 1;
}

static inline int sysfs_write(const char *path, const char *fmt, ...)
{
	char buf[128];
	va_list ap;
	int fd, n, ret = 0;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, n) != n)
		ret = -errno;
	close(fd);
	return ret;
}

static inline int sysfs_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY), n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return n;
}

static inline int wait_path(const char *path, bool exists, double timeout)
{
	double end = now_s() + timeout;

	while (now_s() < end) {
		if ((access(path, F_OK) == 0) == exists)
			return 0;
		usleep(10000);
	}
	return -1;
}


/* The test driver the current tests use: its PCI device ID and debugfs folder. */
static uint16_t testdrv_device __attribute__((unused)) = 0xfff0;
static const char *testdrv_root __attribute__((unused)) = "/sys/kernel/debug/pciem_testdrv";

static inline int cfg_rw(const char *bdf, int where, int size, uint32_t *val, bool wr)
{
	char path[256];
	int fd, ret;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	*val &= size == 4 ? 0xffffffff : (1u << (size * 8)) - 1;
	ret = wr ? pwrite(fd, val, size, where) : pread(fd, val, size, where);
	close(fd);
	return ret == size ? 0 : -1;
}

static inline uint32_t cfg_get(const char *bdf, int where, int size)
{
	uint32_t v = 0;

	if (cfg_rw(bdf, where, size, &v, false))
		return 0xdeadbeef;
	return v;
}

static inline void cfg_put(const char *bdf, int where, int size, uint32_t v)
{
	cfg_rw(bdf, where, size, &v, true);
}

static inline int testdrv_cmd(const char *bdf, const char *file, const char *fmt, ...)
{
	char path[256], buf[128];
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s/%s", testdrv_root, bdf, file);
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sysfs_write(path, "%s", buf);
}

static inline uint64_t testdrv_read(const char *bdf, uint64_t off, int size)
{
	char path[256], buf[64];

	if (testdrv_cmd(bdf, "read", "%llu %d", (unsigned long long)off, size))
		return 0xbad0bad0bad0ULL;
	snprintf(path, sizeof(path), "%s/%s/read", testdrv_root, bdf);
	if (sysfs_read(path, buf, sizeof(buf)) <= 0)
		return 0xbad0bad0bad0ULL;
	return strtoull(buf, NULL, 16);
}

/* A card the test driver (testdrv_device, testdrv_root) binds to. */
static inline int card_for_testdrv(struct card *c, uint32_t trace)
{
	struct card_desc d = { .device = testdrv_device, .class_code = { 0, 0x80, 0xff },
			       .bar0_trace = trace, .start = true };
	char path[256];

	if (card_make(c, &d))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", testdrv_root, c->bdf);
	CHECK(wait_path(path, true, 5) == 0, "pciem_testdrv did not bind to %s", c->bdf);
	return 0;
}

struct test {
	const char *name;
	int (*fn)(void);
	bool in_default;
};

/*
 *   PROGRAM [NAME...]   run the named tests (default: those in_default)
 *   PROGRAM --list
 * Prints "ok N - name" / "not ok N - name" and "selftest: P passed, F failed".
 */
static inline int selftest_main(int argc, char **argv, const struct test *tests, int ntests)
{
	int i, j, n = 0, passed = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < ntests; i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	for (i = 0; i < ntests; i++) {
		bool run = argc == 1 && tests[i].in_default;
		double t0;
		int r;

		for (j = 1; j < argc; j++)
			run |= !strcmp(argv[j], tests[i].name);
		if (!run)
			continue;
		t0 = now_s();
		r = tests[i].fn();
		n++;
		printf("%s %d - %s (%.1f s)\n", r ? "not ok" : "ok", n, tests[i].name, now_s() - t0);
		if (r)
			failed++;
		else
			passed++;
	}
	for (j = 1; j < argc; j++) {
		bool known = false;

		for (i = 0; i < ntests; i++)
			known |= !strcmp(argv[j], tests[i].name);
		if (!known) {
			printf("not ok - unknown test '%s'\n", argv[j]);
			failed++;
		}
	}
	printf("selftest: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#endif /* PCIEM_SELFTEST_LIB_H */
