// SPDX-License-Identifier: GPL-2.0
/*
 * pciem selftests, run as root inside the test VM with pciem.ko loaded (and
 * pciem_testdrv.ko for the tests that need a driver). One behaviour per
 * test; output in the kselftest shape:
 *   ok N - name / not ok N - name (with "# " lines saying why)
 *   selftest: P passed, F failed
 *
 *   pciem_selftest [NAME...]      run the named tests (default: all)
 *   pciem_selftest --list
 * Cards are written only against the compatible ABI unless a test is about
 * an extension.
 */
#define _GNU_SOURCE
#include "selftest_lib.h"

static unsigned long fuzz_calls = 100000;
static unsigned long cycles = 1000;

/* ---- tests ---- */

static int t_lspci(void)
{
	struct card_desc d = { .device = 0x0001, .class_code = { 0x00, 0x40, 0x0b }, .revision = 2,
			       .bar2_size = 1 << 20, .start = true };
	struct card c;
	char cmd[128], out[8192] = "";
	size_t n;
	FILE *p;
	unsigned int domain;

	if (card_make(&c, &d))
		return -1;
	snprintf(cmd, sizeof(cmd), "lspci -D -nn -vv -s %s 2>&1", c.bdf);
	p = popen(cmd, "r");
	CHECK(p, "popen lspci");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	pclose(p);
	diag("%s", strtok(out, "\n") ?: "");
	out[strlen(out)] = '\n';
	CHECK(sscanf(c.bdf, "%x:", &domain) == 1 && domain >= 0x10000, "domain of %s", c.bdf);
	CHECK(strstr(out, "[0b40]: Device [1f0c:0001] (rev 02)"), "IDs/class/rev in:\n%s", out);
	CHECK(strstr(out, "Subsystem: Device [1f0c:1234]"), "subsystem in:\n%s", out);
	/* No driver has enabled memory decoding: lspci adds "[disabled]". */
	CHECK(strstr(out, "Region 0: Memory at") && strstr(out, "(64-bit, non-prefetchable) [disabled] [size=64K]"),
	      "BAR0 in:\n%s", out);
	CHECK(strstr(out, "Region 2: Memory at") && strstr(out, "(64-bit, prefetchable) [disabled] [size=1M]"),
	      "BAR2 in:\n%s", out);
	return card_close(&c);
}

static int t_config_masks(void)
{
	struct card_desc d = { .device = 0x0002, .class_code = { 0, 0x80, 0xff }, .start = true };
	struct card c;
	uint32_t bar0, bar1, cmd;

	if (card_make(&c, &d))
		return -1;
	cfg_put(c.bdf, PCI_VENDOR_ID, 2, 0x1234);
	CHECK(cfg_get(c.bdf, PCI_VENDOR_ID, 2) == 0x1f0c, "vendor ID must be read-only");
	cfg_put(c.bdf, PCI_DEVICE_ID, 2, 0x5678);
	CHECK(cfg_get(c.bdf, PCI_DEVICE_ID, 2) == 0x0002, "device ID must be read-only");
	cfg_put(c.bdf, PCI_CLASS_REVISION, 4, 0);
	CHECK(cfg_get(c.bdf, PCI_CLASS_REVISION, 4) >> 8 == 0xff8000, "class must be read-only");

	cmd = cfg_get(c.bdf, PCI_COMMAND, 2);
	cfg_put(c.bdf, PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	CHECK((cfg_get(c.bdf, PCI_COMMAND, 2) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) ==
	      (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), "command MEMORY|MASTER must be writable");
	cfg_put(c.bdf, PCI_COMMAND, 2, cmd);

	cfg_put(c.bdf, PCI_INTERRUPT_LINE, 1, 0x5a);
	CHECK(cfg_get(c.bdf, PCI_INTERRUPT_LINE, 1) == 0x5a, "interrupt line must be writable");

	/* BAR sizing the way the PCI core does it. */
	bar0 = cfg_get(c.bdf, PCI_BASE_ADDRESS_0, 4);
	bar1 = cfg_get(c.bdf, PCI_BASE_ADDRESS_1, 4);
	CHECK((bar0 & 0xf) == PCI_BASE_ADDRESS_MEM_TYPE_64, "BAR0 flags %#x", bar0 & 0xf);
	cfg_put(c.bdf, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
	cfg_put(c.bdf, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
	CHECK(cfg_get(c.bdf, PCI_BASE_ADDRESS_0, 4) == (0xffff0000 | PCI_BASE_ADDRESS_MEM_TYPE_64),
	      "BAR0 sizing reads %#x", cfg_get(c.bdf, PCI_BASE_ADDRESS_0, 4));
	CHECK(cfg_get(c.bdf, PCI_BASE_ADDRESS_1, 4) == 0xffffffff, "BAR1 (upper half) sizing");
	cfg_put(c.bdf, PCI_BASE_ADDRESS_0, 4, bar0);
	cfg_put(c.bdf, PCI_BASE_ADDRESS_1, 4, bar1);
	CHECK(cfg_get(c.bdf, PCI_BASE_ADDRESS_0, 4) == bar0, "BAR0 restore");

	cfg_put(c.bdf, PCI_BASE_ADDRESS_4, 4, 0xffffffff);
	CHECK(cfg_get(c.bdf, PCI_BASE_ADDRESS_4, 4) == 0, "unused BAR4 must read 0");
	cfg_put(c.bdf, PCI_CAPABILITY_LIST, 1, 0x00);
	CHECK(cfg_get(c.bdf, PCI_CAPABILITY_LIST, 1) != 0, "capability pointer must be read-only");
	return card_close(&c);
}

static int t_multifunction(void)
{
	struct card_desc d = { .device = 0x0010, .class_code = { 0, 0x80, 0xff }, .nfuncs = 4,
			       .bar0_size = 4096, .start = true };
	struct card c;
	char path[256], buf[64], base[32];
	int f;

	if (card_make(&c, &d))
		return -1;
	snprintf(base, sizeof(base), "%.*s", (int)(strlen(c.bdf) - 1), c.bdf);	/* "DDDDD:BB:SS." */
	CHECK(c.bdf[strlen(c.bdf) - 1] == '0', "function 0 first: %s", c.bdf);
	for (f = 0; f < 4; f++) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s%d/device", base, f);
		CHECK(sysfs_read(path, buf, sizeof(buf)) > 0, "function %d missing (%s)", f, path);
		CHECK(strtoul(buf, NULL, 16) == 0x0010u + f, "function %d device %s", f, buf);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s%d", base, 4);
	CHECK(access(path, F_OK) != 0, "function 4 must not exist");
	CHECK(cfg_get(c.bdf, PCI_HEADER_TYPE, 1) == 0x80, "function 0 header type %#x", cfg_get(c.bdf, PCI_HEADER_TYPE, 1));
	return card_close(&c);
}

struct consumer {
	struct card *c;
	volatile bool stop;
	uint64_t expect, count, bad;
	uint64_t last_seq;
	bool answer_sync;
	uint64_t sync_answered;
	char why[256];
};

static void *consume(void *arg)
{
	struct consumer *k = arg;
	struct pciem_event ev;

	while (!k->stop) {
		if (!ring_pop(k->c, &ev)) {
			continue;
		}
		if (ev.type == PCIEM_EVENT_MMIO_READ_SYNC) {
			struct pciem_read_reply r = { .argsz = sizeof(r), .seq = ev.seq,
						      .data = ev.offset * 3 + 7 };

			if (k->answer_sync && ioctl(k->c->fd, PCIEM_IOCTL_COMPLETE_READ, &r) == 0)
				k->sync_answered++;
			continue;
		}
		if (ev.type != PCIEM_EVENT_MMIO_WRITE)
			continue;
		if (k->count && ev.seq != k->last_seq + 1 && !k->bad++)
			snprintf(k->why, sizeof(k->why), "seq %llu after %llu",
				 (unsigned long long)ev.seq, (unsigned long long)k->last_seq);
		if ((ev.data != k->expect || ev.size != 4 || ev.offset != 16 || ev.bar != 0) && !k->bad++)
			snprintf(k->why, sizeof(k->why), "event %llu: bar %u off %llu size %u data %llu, expected data %llu",
				 (unsigned long long)k->count, ev.bar, (unsigned long long)ev.offset, ev.size,
				 (unsigned long long)ev.data, (unsigned long long)k->expect);
		k->last_seq = ev.seq;
		k->expect++;
		k->count++;
	}
	return NULL;
}

static int set_lossless(struct card *c)
{
	struct pciem_ring_mode m = { .argsz = sizeof(m), .flags = PCIEM_RING_FLAG_LOSSLESS,
				     .timeout_us = 5000000 };

	CHECK(ioctl(c->fd, PCIEM_IOCTL_SET_RING_MODE, &m) == 0, "SET_RING_MODE: %s", strerror(errno));
	return 0;
}

static int t_writes_100k(void)
{
	struct card c;
	struct consumer k = { .c = &c };
	struct pciem_stats_query st = { .argsz = sizeof(st) };
	pthread_t th;
	double t0, dt;

	if (card_for_testdrv(&c, PCIEM_TRACE_WRITES) || set_lossless(&c))
		return -1;
	pthread_create(&th, NULL, consume, &k);
	t0 = now_s();
	CHECK(testdrv_cmd(c.bdf, "writes", "100000 16") == 0, "driver writes failed");
	dt = now_s() - t0;
	while (k.count < 100000 && now_s() - t0 < 30)
		usleep(1000);
	k.stop = true;
	pthread_join(th, NULL);
	CHECK(ioctl(c.fd, PCIEM_IOCTL_GET_STATS, &st) == 0, "GET_STATS: %s", strerror(errno));
	diag("100000 writel() in %.2f s (%.0f ns each, TCG); ring stalls %llu", dt, dt * 1e9 / 100000,
	     (unsigned long long)st.ring_stalls);
	CHECK(!k.bad, "%llu bad events; first: %s", (unsigned long long)k.bad, k.why);
	CHECK(k.count == 100000, "%llu events arrived, 100000 written", (unsigned long long)k.count);
	CHECK(st.mmio_writes == 100000 && st.ring_drops == 0, "stats: writes %llu drops %llu",
	      (unsigned long long)st.mmio_writes, (unsigned long long)st.ring_drops);
	CHECK(*(volatile uint32_t *)((char *)c.bar[0] + 16) == 99999, "BAR memory holds the last write");
	return card_close(&c);
}

static int t_reads_shared_memory(void)
{
	struct card c;
	struct pciem_event ev;
	int seen = 0;

	if (card_for_testdrv(&c, PCIEM_TRACE_WRITES))
		return -1;
	*(volatile uint32_t *)((char *)c.bar[0] + 0x20) = 0xdeadbeef;
	*(volatile uint64_t *)((char *)c.bar[0] + 0x28) = 0x0123456789abcdefULL;
	CHECK(testdrv_read(c.bdf, 0x20, 4) == 0xdeadbeef, "readl sees the card's value");
	CHECK(testdrv_read(c.bdf, 0x21, 1) == 0xbe, "readb at an odd offset");
	CHECK(testdrv_read(c.bdf, 0x28, 8) == 0x0123456789abcdefULL, "readq");
	CHECK(testdrv_read(c.bdf, 0x2a, 2) == 0x89ab, "readw (bytes 0x2a..0x2b of the little-endian quad)");
	CHECK(testdrv_cmd(c.bdf, "wbyte", "64 171") == 0, "writeb");
	CHECK(*(volatile uint8_t *)((char *)c.bar[0] + 64) == 171, "the card's BAR memory has the byte");
	while (ring_pop(&c, &ev))
		if (ev.type == PCIEM_EVENT_MMIO_WRITE && ev.offset == 64 && ev.size == 1 && ev.data == 171)
			seen++;
	CHECK(seen == 1, "one write event for the writeb, saw %d", seen);
	return card_close(&c);
}

static int t_sync_read(void)
{
	struct card c;
	struct consumer k = { .c = &c, .answer_sync = true };
	struct pciem_read_region r = { .argsz = sizeof(r), .bar = 0, .offset = 0x100, .length = 0x100,
				       .timeout_us = 200000 };
	struct pciem_stats_query st = { .argsz = sizeof(st) };
	pthread_t th;
	uint64_t v;
	double t0;

	if (card_for_testdrv(&c, 0) || set_lossless(&c))
		return -1;
	CHECK(ioctl(c.fd, PCIEM_IOCTL_SET_READ_REGION, &r) == 0, "SET_READ_REGION: %s", strerror(errno));
	pthread_create(&th, NULL, consume, &k);
	v = testdrv_read(c.bdf, 0x104, 4);
	CHECK(v == 0x104 * 3 + 7, "the model's answer: got %#llx", (unsigned long long)v);
	v = testdrv_read(c.bdf, 0x1f8, 8);
	CHECK(v == 0x1f8 * 3 + 7, "the model's 8-byte answer: got %#llx", (unsigned long long)v);
	k.answer_sync = false;
	t0 = now_s();
	v = testdrv_read(c.bdf, 0x108, 4);
	t0 = now_s() - t0;
	CHECK(v == 0xffffffff, "no answer: all-ones, got %#llx", (unsigned long long)v);
	/* The wait is bounded by the 200 ms asked for, not by anything else. */
	CHECK(t0 < 2.0, "the unanswered read took %.1f s, its timeout is 0.2 s", t0);
	*(volatile uint32_t *)((char *)c.bar[0] + 0x40) = 77;
	CHECK(testdrv_read(c.bdf, 0x40, 4) == 77, "outside the region: shared memory");
	k.stop = true;
	pthread_join(th, NULL);
	CHECK(ioctl(c.fd, PCIEM_IOCTL_GET_STATS, &st) == 0, "GET_STATS");
	CHECK(st.sync_reads == 2 && st.sync_read_timeouts == 1, "stats: sync %llu timeouts %llu",
	      (unsigned long long)st.sync_reads, (unsigned long long)st.sync_read_timeouts);
	return card_close(&c);
}

static int t_owner_killed(void)
{
	int pfd[2];
	char bdf[32] = "", path[256];
	pid_t pid;
	int st;

	CHECK(pipe(pfd) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		struct card c;

		close(pfd[0]);
		if (card_for_testdrv(&c, PCIEM_TRACE_WRITES))
			_exit(1);
		if (write(pfd[1], c.bdf, strlen(c.bdf)) < 0)
			_exit(1);
		close(pfd[1]);
		for (;;)
			pause();
	}
	close(pfd[1]);
	CHECK(read(pfd[0], bdf, sizeof(bdf) - 1) > 0, "child made no card");
	close(pfd[0]);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	CHECK(access(path, F_OK) == 0, "%s present while the owner lives", bdf);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	CHECK(wait_path(path, false, 10) == 0, "%s still present 10 s after kill -9 of its owner", bdf);
	return 0;
}

static int count_pciem(void)
{
	char line[256];
	FILE *f = fopen("/proc/iomem", "r");
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += !!strstr(line, " : pciem");
	fclose(f);
	return n;
}

static int t_create_destroy(void)
{
	unsigned long i;
	double t0 = now_s();

	CHECK(count_pciem() == 0, "pciem windows present before the test");
	for (i = 0; i < cycles; i++) {
		struct pciem_create_device cr = { 0 };
		struct pciem_bar_config b = { .bar_index = 0, .size = 0x10000,
					      .flags = PCI_BASE_ADDRESS_MEM_TYPE_64 };
		struct pciem_config_space cfg = { .vendor_id = 0x1f0c, .device_id = 0x0abc };
		int fd = open("/dev/pciem", O_RDWR), inst;

		CHECK(fd >= 0, "cycle %lu: open: %s", i, strerror(errno));
		CHECK(!ioctl(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) && !ioctl(fd, PCIEM_IOCTL_SET_CONFIG, &cfg) &&
		      !ioctl(fd, PCIEM_IOCTL_ADD_BAR, &b), "cycle %lu: describe: %s", i, strerror(errno));
		inst = ioctl(fd, PCIEM_IOCTL_REGISTER, 0);
		CHECK(inst >= 0, "cycle %lu: REGISTER: %s", i, strerror(errno));
		CHECK(ioctl(fd, PCIEM_IOCTL_START) == 0, "cycle %lu: START: %s", i, strerror(errno));
		close(inst);
		close(fd);
	}
	diag("%lu create/destroy cycles in %.1f s", cycles, now_s() - t0);
	CHECK(count_pciem() == 0, "%d pciem windows left in /proc/iomem", count_pciem());
	return 0;
}

static int t_uio_generic(void)
{
	struct card_desc d = { .device = 0x0abd, .class_code = { 0, 0x80, 0xff }, .start = true };
	struct card c;
	char path[256], link[256];
	ssize_t n;
	int ret = -1;

	if (card_make(&c, &d))
		return -1;
	if (system("modprobe uio_pci_generic") != 0)
		FAIL("modprobe uio_pci_generic failed");
	sysfs_write("/sys/bus/pci/drivers/uio_pci_generic/new_id", "1f0c 0abd");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", c.bdf);
	if (wait_path(path, true, 5)) {
		diag("uio_pci_generic did not bind");
		goto out;
	}
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (!strstr(link, "uio_pci_generic")) {
		diag("bound to %s", link);
		goto out;
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/uio", c.bdf);
	if (access(path, F_OK)) {
		diag("no uio device under %s", c.bdf);
		goto out;
	}
	/* What uio_pci_generic offers userspace: config space through it. */
	if (cfg_get(c.bdf, PCI_DEVICE_ID, 2) != 0x0abd) {
		diag("config read through the bound device failed");
		goto out;
	}
	ret = 0;
out:
	sysfs_write("/sys/bus/pci/drivers/uio_pci_generic/remove_id", "1f0c 0abd");
	card_close(&c);
	return ret;
}

static int expect_errno(int fd, unsigned long cmd, void *arg, int want, const char *what)
{
	int r = ioctl(fd, cmd, arg);

	if (r != -1 || errno != want) {
		diag("%s: returned %d errno %s, expected %s", what, r, r == -1 ? strerror(errno) : "-",
		     strerror(want));
		return -1;
	}
	return 0;
}

static int t_errors(void)
{
	int fd = open("/dev/pciem", O_RDWR), bad = 0, inst;
	struct pciem_create_device cr = { 0 }, cr1 = { .func = 1 }, crx = { .func = 8 },
		crflags = { .flags = 0x80 }, crattach = { .flags = PCIEM_CREATE_FLAG_BUS_MODE_ATTACH },
		crres = { .reserved = { 1 } };
	struct pciem_bar_config b = { .bar_index = 0, .size = 0x10000 };
	struct pciem_bar_config b5 = { .bar_index = 5, .size = 0x1000, .flags = PCI_BASE_ADDRESS_MEM_TYPE_64 };
	struct pciem_bar_config bbig = { .bar_index = 0, .size = 1ULL << 30, .flags = PCI_BASE_ADDRESS_MEM_TYPE_64 };
	struct pciem_bar_config bnp2 = { .bar_index = 1, .size = 0x3000 };
	struct pciem_config_space ids = { .vendor_id = 0x1f0c, .device_id = 0x0abe };
	struct pciem_info info = { .argsz = 8 };
	struct pciem_ring_mode rm = { .argsz = sizeof(rm), .flags = 0x100 };
	struct pciem_trace_bar tb = { .bar_index = 3, .flags = PCIEM_TRACE_WRITES };

	CHECK(fd >= 0, "open");
	bad |= expect_errno(fd, _IO(PCIEM_IOCTL_MAGIC, 99), NULL, ENOTTY, "unknown ioctl");
	bad |= expect_errno(fd, _IOW('x', 11, struct pciem_bar_config), &b, ENOTTY, "foreign magic");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &b, ENODEV, "ADD_BAR before CREATE_DEVICE");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr1, ENODEV, "function 1 before function 0");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &crx, EINVAL, "function 8");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &crflags, EINVAL, "unknown create flag");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &crres, EINVAL, "non-zero reserved");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &crattach, EOPNOTSUPP, "attach bus mode");
	bad |= expect_errno(fd, PCIEM_IOCTL_REGISTER, NULL, ENODEV, "REGISTER with no function");
	bad |= expect_errno(fd, PCIEM_IOCTL_START, NULL, EBUSY, "START before REGISTER");
	CHECK(ioctl(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE");
	bad |= expect_errno(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr, EEXIST, "function 0 twice");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &b5, EINVAL, "64-bit BAR at index 5");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &bbig, E2BIG, "1 GiB BAR");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &bnp2, EINVAL, "size not a power of two");
	CHECK(ioctl(fd, PCIEM_IOCTL_ADD_BAR, &b) == 0, "ADD_BAR");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &b, EBUSY, "BAR 0 twice");
	bad |= expect_errno(fd, PCIEM_IOCTL_REGISTER, NULL, EINVAL, "REGISTER before SET_CONFIG");
	CHECK(ioctl(fd, PCIEM_IOCTL_SET_CONFIG, &ids) == 0, "SET_CONFIG");
	bad |= expect_errno(fd, PCIEM_IOCTL_TRACE_BAR, &tb, ENODEV, "tracing a BAR that does not exist");
	bad |= expect_errno(fd, PCIEM_IOCTL_GET_INFO, &info, EINVAL, "GET_INFO with a short argsz");
	bad |= expect_errno(fd, PCIEM_IOCTL_SET_RING_MODE, &rm, EINVAL, "unknown ring flag");
	bad |= expect_errno(fd, PCIEM_IOCTL_INJECT_IRQ, &cr, EBUSY, "INJECT_IRQ before REGISTER");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, (void *)16, EFAULT, "bad pointer");
	inst = ioctl(fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(inst >= 0, "REGISTER: %s", strerror(errno));
	bad |= expect_errno(fd, PCIEM_IOCTL_REGISTER, NULL, EBUSY, "REGISTER twice");
	bad |= expect_errno(fd, PCIEM_IOCTL_ADD_BAR, &b, EBUSY, "ADD_BAR after REGISTER");
	CHECK(ioctl(fd, PCIEM_IOCTL_START) == 0, "START");
	bad |= expect_errno(fd, PCIEM_IOCTL_START, NULL, EALREADY, "START twice");
	info.argsz = sizeof(info);
	CHECK(ioctl(fd, PCIEM_IOCTL_GET_INFO, &info) == 0 && info.api_version == PCIEM_API_VERSION &&
	      info.max_functions == 8 && info.ring_size == PCIEM_RING_SIZE, "GET_INFO");
	close(inst);
	close(fd);
	return bad ? -1 : 0;
}

static int t_fuzz(void)
{
	static const unsigned long cmds[] = {
		PCIEM_IOCTL_CREATE_DEVICE, PCIEM_IOCTL_ADD_BAR, PCIEM_IOCTL_ADD_CAPABILITY,
		PCIEM_IOCTL_SET_CONFIG, PCIEM_IOCTL_REGISTER, PCIEM_IOCTL_INJECT_IRQ, PCIEM_IOCTL_DMA,
		PCIEM_IOCTL_DMA_ATOMIC, PCIEM_IOCTL_P2P, PCIEM_IOCTL_GET_BAR_INFO, PCIEM_IOCTL_SET_EVENTFD,
		PCIEM_IOCTL_SET_IRQFD, PCIEM_IOCTL_DMA_INDIRECT, PCIEM_IOCTL_TRACE_BAR, PCIEM_IOCTL_START,
		PCIEM_IOCTL_GET_INFO, PCIEM_IOCTL_SET_RING_MODE, PCIEM_IOCTL_SET_READ_REGION,
		PCIEM_IOCTL_COMPLETE_READ, PCIEM_IOCTL_GET_STATS,
	};
	unsigned char buf[256];
	unsigned long i, ok = 0;
	int fd = -1, inst = -1;
	unsigned int seed = 12345;
	double t0 = now_s();

	for (i = 0; i < fuzz_calls; i++) {
		unsigned long cmd;
		size_t k;
		int r;

		if (i % 500 == 0) {
			if (inst >= 0)
				close(inst);
			if (fd >= 0)
				close(fd);
			inst = -1;
			fd = open("/dev/pciem", O_RDWR);
			CHECK(fd >= 0, "open: %s", strerror(errno));
		}
		for (k = 0; k < sizeof(buf); k++)
			buf[k] = rand_r(&seed);
		/* Mostly real commands with small fields, so some get past the checks. */
		switch (rand_r(&seed) % 4) {
		case 0:
			cmd = rand_r(&seed);
			break;
		case 1:
			cmd = _IOC(rand_r(&seed) % 4, PCIEM_IOCTL_MAGIC, rand_r(&seed) % 64, rand_r(&seed) % 128);
			break;
		default:
			cmd = cmds[rand_r(&seed) % (sizeof(cmds) / sizeof(cmds[0]))];
			for (k = 0; k < sizeof(buf); k++)
				if (rand_r(&seed) % 3)
					buf[k] = rand_r(&seed) % 3 == 0 ? 0xff : rand_r(&seed) % 4;
			if (rand_r(&seed) % 2)
				memset(buf + 4, 0, sizeof(buf) - 4);
		}
		if (rand_r(&seed) % 64 == 0)
			r = ioctl(fd, cmd, (void *)(uintptr_t)rand_r(&seed));
		else
			r = ioctl(fd, cmd, buf);
		if (r >= 0) {
			ok++;
			if (cmd == PCIEM_IOCTL_REGISTER) {
				if (inst >= 0)
					close(inst);
				inst = r;
			}
		}
	}
	if (inst >= 0)
		close(inst);
	close(fd);
	diag("%lu ioctls in %.1f s, %lu accepted", fuzz_calls, now_s() - t0, ok);
	return 0;
}

/* Run as an unprivileged user (the test harness drops privileges). */
static int t_unprivileged(void)
{
	int i;

	CHECK(geteuid() != 0, "must run unprivileged");
	for (i = 0; i < 1000; i++) {
		int fd = open("/dev/pciem", O_RDWR);

		CHECK(fd < 0 && errno == EPERM, "open as uid %d: %s", geteuid(), fd < 0 ? strerror(errno) : "succeeded");
	}
	return 0;
}

/* Waits up to @timeout s for an event of @type; 0 when found. */
static int wait_event_type(struct card *c, uint32_t type, struct pciem_event *out, double timeout)
{
	double end = now_s() + timeout;

	while (now_s() < end) {
		if (ring_pop(c, out)) {
			if (out->type == type)
				return 0;
			continue;
		}
		usleep(1000);
	}
	return -1;
}

static int t_config_events(void)
{
	struct card_desc d = { .device = 0x0abf, .class_code = { 0, 0x80, 0xff } };
	struct pciem_cap_config pm = { .cap_type = PCIEM_CAP_PM };
	struct pciem_ring_mode m = { .argsz = sizeof(m), .flags = PCIEM_RING_FLAG_CONFIG_EVENTS };
	struct pciem_event ev;
	struct card c;
	char path[256];
	int fd;

	memset(&c, 0, sizeof(c));
	c.fd = c.inst = -1;
	/* card_make() registers at once: describe this one by hand to add PM. */
	fd = open("/dev/pciem", O_RDWR);
	CHECK(fd >= 0, "open");
	{
		struct pciem_create_device cr = { 0 };
		struct pciem_config_space cfg = { .vendor_id = 0x1f0c, .device_id = d.device,
						  .class_code = { 0, 0x80, 0xff } };
		struct pciem_bar_config b = { .bar_index = 0, .size = 0x1000 };
		struct pciem_bar_info_query q = { .bar_index = 0 };

		CHECK(!ioctl(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) && !ioctl(fd, PCIEM_IOCTL_SET_CONFIG, &cfg) &&
		      !ioctl(fd, PCIEM_IOCTL_ADD_BAR, &b) && !ioctl(fd, PCIEM_IOCTL_ADD_CAPABILITY, &pm),
		      "describe: %s", strerror(errno));
		CHECK(ioctl(fd, PCIEM_IOCTL_SET_RING_MODE, &m) == 0, "SET_RING_MODE: %s", strerror(errno));
		c.fd = fd;
		c.inst = ioctl(fd, PCIEM_IOCTL_REGISTER, 0);
		CHECK(c.inst >= 0, "REGISTER: %s", strerror(errno));
		c.ring = mmap(NULL, sizeof(*c.ring), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(c.ring != MAP_FAILED, "mmap ring");
		CHECK(ioctl(fd, PCIEM_IOCTL_START) == 0, "START");
		CHECK(ioctl(fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO");
		CHECK(find_bdf_by_phys(q.phys_addr, c.bdf, sizeof(c.bdf)), "device not found");
	}
	/* Enumeration wrote config space too: start from an empty ring. */
	while (ring_pop(&c, &ev))
		;
	cfg_put(c.bdf, PCI_INTERRUPT_LINE, 1, 0x11);
	if (wait_event_type(&c, PCIEM_EVENT_CONFIG_WRITE, &ev, 2)) {
		struct pciem_stats_query st = { .argsz = sizeof(st) };

		ioctl(c.fd, PCIEM_IOCTL_GET_STATS, &st);
		FAIL("no CONFIG_WRITE event (head %d tail %d, drops %llu; line reads %#x; %s)", c.ring->head, c.ring->tail,
		     (unsigned long long)st.ring_drops, cfg_get(c.bdf, PCI_INTERRUPT_LINE, 1), c.bdf);
	}
	CHECK(ev.offset == PCI_INTERRUPT_LINE && ev.size == 1 && ev.data == 0x11 && ev.bar == 0,
	      "CONFIG_WRITE off %llu size %u data %llu", (unsigned long long)ev.offset, ev.size,
	      (unsigned long long)ev.data);

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/power_state", c.bdf);
	{
		int pmoff = cfg_get(c.bdf, PCI_CAPABILITY_LIST, 1);

		while (pmoff && cfg_get(c.bdf, pmoff, 1) != PCI_CAP_ID_PM)
			pmoff = cfg_get(c.bdf, pmoff + 1, 1);
		CHECK(pmoff, "no PM capability in the chain");
		cfg_put(c.bdf, pmoff + PCI_PM_CTRL, 2, 3);
		CHECK(wait_event_type(&c, PCIEM_EVENT_POWER, &ev, 2) == 0 && ev.data == 3, "no POWER D3 event");
		cfg_put(c.bdf, pmoff + PCI_PM_CTRL, 2, 0);
		CHECK(wait_event_type(&c, PCIEM_EVENT_POWER, &ev, 2) == 0 && ev.data == 0, "no POWER D0 event");
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset_method", c.bdf);
	CHECK(sysfs_write(path, "flr") == 0, "reset_method flr: the device must offer FLR");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset", c.bdf);
	CHECK(sysfs_write(path, "1") == 0, "reset: %s", strerror(errno));
	CHECK(wait_event_type(&c, PCIEM_EVENT_RESET, &ev, 2) == 0 && ev.data == PCIEM_RESET_FLR, "no RESET (FLR) event");
	return card_close(&c);
}

/*
 * A card that follows the original ABI's example flow to the letter:
 * create, BARs, trace, MSI capability, config, REGISTER, BAR and ring
 * mmaps, eventfd, START; then it sleeps in select() on the eventfd and
 * consumes the ring as the driver writes.
 */
static int t_compat_card(void)
{
	struct pciem_create_device create = { 0 };
	struct pciem_bar_config bar0 = { .bar_index = 0, .size = 64 * 1024,
		.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 };
	struct pciem_bar_config bar2 = { .bar_index = 2, .size = 1024 * 1024,
		.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH };
	struct pciem_config_space cfg = { .vendor_id = 0x1f0c, .device_id = 0xfff0,
					  .class_code = { 0x00, 0x00, 0x0b } };
	struct pciem_cap_config cap = { .cap_type = PCIEM_CAP_MSI, .msi = { .has_64bit = 1, .has_masking = 1 } };
	struct pciem_trace_bar trace = { .bar_index = 0, .flags = PCIEM_TRACE_WRITES };
	struct pciem_eventfd_config efd_cfg = { 0 };
	struct pciem_bar_info_query q = { .bar_index = 0 };
	struct card c = { .fd = -1, .inst = -1 };
	char path[256];
	int got = 0, wakeups = 0, efd;
	double end;

	c.fd = open("/dev/pciem", O_RDWR);
	CHECK(c.fd >= 0, "open");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_CREATE_DEVICE, &create) == 0, "CREATE_DEVICE");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_ADD_BAR, &bar0) == 0, "ADD_BAR 0");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_ADD_BAR, &bar2) == 0, "ADD_BAR 2");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_TRACE_BAR, &trace) == 0, "TRACE_BAR");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_ADD_CAPABILITY, &cap) == 0, "ADD_CAPABILITY MSI: %s", strerror(errno));
	CHECK(ioctl(c.fd, PCIEM_IOCTL_SET_CONFIG, &cfg) == 0, "SET_CONFIG");
	c.inst = ioctl(c.fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(c.inst >= 0, "REGISTER: %s", strerror(errno));
	c.bar_size[0] = bar0.size;
	c.bar_size[2] = bar2.size;
	c.bar[0] = mmap(NULL, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.inst, 0 * 4096);
	c.bar[2] = mmap(NULL, bar2.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.inst, 2 * 4096);
	c.ring = mmap(NULL, sizeof(struct pciem_shared_ring), PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	CHECK(c.bar[0] != MAP_FAILED && c.bar[2] != MAP_FAILED && c.ring != MAP_FAILED, "mmaps");
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	efd_cfg.eventfd = efd;
	CHECK(ioctl(c.fd, PCIEM_IOCTL_SET_EVENTFD, &efd_cfg) == 0, "SET_EVENTFD");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_START) == 0, "START");
	CHECK(ioctl(c.fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0 && find_bdf_by_phys(q.phys_addr, c.bdf, sizeof(c.bdf)),
	      "device not found");
	snprintf(path, sizeof(path), "%s/%s", testdrv_root, c.bdf);
	CHECK(wait_path(path, true, 5) == 0, "driver did not bind");
	CHECK(testdrv_cmd(c.bdf, "writes", "100 16") == 0, "driver writes");

	end = now_s() + 5;
	while (got < 100 && now_s() < end) {
		struct timeval tv = { .tv_sec = 1 };
		struct pciem_event ev;
		uint64_t n;
		fd_set rfds;

		FD_ZERO(&rfds);
		FD_SET(efd, &rfds);
		if (select(efd + 1, &rfds, NULL, NULL, &tv) > 0 && read(efd, &n, sizeof(n)) == sizeof(n))
			wakeups++;
		while (ring_pop(&c, &ev))
			if (ev.type == PCIEM_EVENT_MMIO_WRITE && ev.bar == 0 && ev.offset == 16 && ev.data == (uint64_t)got)
				got++;
	}
	close(efd);
	CHECK(got == 100, "%d of 100 writes seen in order", got);
	CHECK(wakeups > 0, "the eventfd never woke the card");
	return card_close(&c);
}

static int t_several_devices(void)
{
	struct card_desc d = { .device = 0x0ac0, .class_code = { 0, 0x80, 0xff }, .start = true };
	struct card c[3];
	unsigned int dom[3];
	int i, j;

	for (i = 0; i < 3; i++) {
		d.device = 0x0ac0 + i;
		if (card_make(&c[i], &d))
			return -1;
		CHECK(sscanf(c[i].bdf, "%x:", &dom[i]) == 1 && dom[i] >= 0x10000, "domain of %s", c[i].bdf);
		for (j = 0; j < i; j++)
			CHECK(dom[i] != dom[j], "devices %d and %d share domain %x", i, j, dom[i]);
	}
	for (i = 0; i < 3; i++)
		CHECK(cfg_get(c[i].bdf, PCI_DEVICE_ID, 2) == 0x0ac0u + i, "device %d answers for itself", i);
	for (i = 0; i < 3; i++)
		card_close(&c[i]);
	return 0;
}

static int t_bar32(void)
{
	struct pciem_create_device cr = { 0 };
	struct pciem_config_space cfg = { .vendor_id = 0x1f0c, .device_id = 0x0ac8, .class_code = { 0, 0x80, 0xff } };
	struct pciem_bar_config b = { .bar_index = 1, .size = 0x2000, .flags = PCI_BASE_ADDRESS_SPACE_MEMORY };
	struct pciem_bar_info_query q = { .bar_index = 1 };
	char bdf[32], cmd[128], out[4096] = "";
	int fd = open("/dev/pciem", O_RDWR), inst;
	FILE *p;
	size_t n;

	CHECK(fd >= 0, "open");
	CHECK(!ioctl(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) && !ioctl(fd, PCIEM_IOCTL_SET_CONFIG, &cfg) &&
	      !ioctl(fd, PCIEM_IOCTL_ADD_BAR, &b), "describe: %s", strerror(errno));
	inst = ioctl(fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(inst >= 0 && ioctl(fd, PCIEM_IOCTL_START) == 0, "REGISTER/START: %s", strerror(errno));
	CHECK(ioctl(fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0 && q.phys_addr && q.phys_addr + 0x2000 <= (1ULL << 32),
	      "a 32-bit BAR1 must get an address below 4 GiB: %#llx", (unsigned long long)q.phys_addr);
	snprintf(cmd, sizeof(cmd), "lspci -vv -d 1f0c:0ac8 2>&1");
	p = popen(cmd, "r");
	CHECK(p, "popen");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	pclose(p);
	(void)bdf;
	CHECK(strstr(out, "Region 1: Memory at") && strstr(out, "(32-bit, non-prefetchable) [disabled] [size=8K]"),
	      "32-bit BAR1 in:\n%s", out);
	close(inst);
	close(fd);
	return 0;
}

static const struct test tests[] = {
	{ "lspci", t_lspci, true },
	{ "config_masks", t_config_masks, true },
	{ "multifunction", t_multifunction, true },
	{ "reads_shared_memory", t_reads_shared_memory, true },
	{ "writes_100k_in_order", t_writes_100k, true },
	{ "sync_read", t_sync_read, true },
	{ "owner_killed", t_owner_killed, true },
	{ "uio_generic", t_uio_generic, true },
	{ "errors", t_errors, true },
	{ "config_events", t_config_events, true },
	{ "compat_card", t_compat_card, true },
	{ "several_devices", t_several_devices, true },
	{ "bar32", t_bar32, true },
	{ "create_destroy", t_create_destroy, true },
	{ "fuzz", t_fuzz, true },
	{ "unprivileged", t_unprivileged, false },
};

int main(int argc, char **argv)
{
	if (getenv("PCIEM_FUZZ_CALLS"))
		fuzz_calls = strtoul(getenv("PCIEM_FUZZ_CALLS"), NULL, 0);
	if (getenv("PCIEM_CYCLES"))
		cycles = strtoul(getenv("PCIEM_CYCLES"), NULL, 0);
	return selftest_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
