// SPDX-License-Identifier: GPL-2.0
/*
 * protopciem.ko against the minimal card (protopciem_card.c, run from the
 * same folder, one process per card, in the mode a test needs): probe,
 * arithmetic, command buffers, frames, PROCESS_BUFFER, P2P between two
 * cards, timeout, card error, surprise removal, the INTx fallback, several
 * cards at once, a dead card, bad arguments.
 */
#include "selftest_lib.h"
#include <linux/protopciem.h>
#include "protopciem_card.h"
#include "../../proto/generated/protopciem_regs.h"

#define NCARDS		3
#define TIMEOUT_PARAM	"/sys/module/protopciem/parameters/timeout_ms"

/* One card process and what the driver made of it. */
struct tcard {
	pid_t pid;
	char bdf[32];
	char node[64];		/* /dev/protopciem[N]; empty when the driver did not bind */
	char log[64];
};

static char card_path[512];
static struct tcard cards[NCARDS];

static int card_stop(struct tcard *c)
{
	int st;

	if (c->pid > 0) {
		kill(c->pid, SIGTERM);
		waitpid(c->pid, &st, 0);
		c->pid = -1;
	}
	if (c->node[0])
		CHECK(wait_path(c->node, false, 5) == 0, "%s still there after the card stopped", c->node);
	return 0;
}

/* The last line of @c's log starting with @prefix, into @out; how many there are. */
static int card_said(const struct tcard *c, const char *prefix, char *out, size_t len)
{
	char line[256];
	FILE *f = fopen(c->log, "r");
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, prefix, strlen(prefix))) {
			if (out)
				snprintf(out, len, "%s", line);
			found++;
		}
	fclose(f);
	return found;
}

/* The misc device the driver registered under @bdf, as /dev/NAME. */
static bool node_of(const char *bdf, char *node, size_t len)
{
	char path[256];
	struct dirent *e;
	DIR *d;
	bool found = false;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/misc", bdf);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(node, len, "/dev/%.48s", e->d_name);
			found = true;
		}
	closedir(d);
	return found;
}

/*
 * Starts card @c with the card's arguments (NULL-terminated) and waits for
 * its "ready"; if @bind, for the driver's device node too.
 */
static int card_start(struct tcard *c, bool bind, ...)
{
	const char *argv[12] = { card_path };
	char line[256];
	double end;
	va_list ap;
	int n = 1;

	if (c->pid > 0)
		card_stop(c);	/* left over by a failed test */
	va_start(ap, bind);
	while (n < 11 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	snprintf(c->log, sizeof(c->log), "/tmp/protopciem_card%d.log", (int)(c - cards));
	c->bdf[0] = c->node[0] = 0;
	/* Not the last card's "ready": the child may not have opened the log yet. */
	unlink(c->log);
	c->pid = fork();
	CHECK(c->pid >= 0, "fork: %s", strerror(errno));
	if (!c->pid) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		execv(card_path, (char **)argv);
		_exit(127);
	}
	end = now_s() + 5;
	while (!c->bdf[0] && now_s() < end) {
		if (card_said(c, "ready ", line, sizeof(line)))
			sscanf(line, "ready %31s", c->bdf);
		else
			usleep(10000);
	}
	CHECK(c->bdf[0], "card %d never said ready", (int)(c - cards));
	if (!bind)
		return 0;
	while (!node_of(c->bdf, c->node, sizeof(c->node)) && now_s() < end)
		usleep(10000);
	CHECK(c->node[0], "protopciem did not bind to %s", c->bdf);
	CHECK(wait_path(c->node, true, 5) == 0, "%s did not appear", c->node);
	return 0;
}

static int card_open(struct tcard *c)
{
	int fd = open(c->node, O_RDWR);

	if (fd < 0)
		diag("open %s: %s", c->node, strerror(errno));
	return fd;
}

static long long stat_of(const struct tcard *c, const char *name)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/stats/%s", c->bdf, name);
	if (sysfs_read(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtoll(buf, NULL, 0);
}

/* BAR @bar's bus address, from sysfs (no offset between CPU and bus here). */
static uint64_t bar_addr(const struct tcard *c, int bar)
{
	unsigned long long start = 0, end, flags;
	char path[256];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", c->bdf);
	f = fopen(path, "r");
	if (!f)
		return 0;
	for (i = 0; i <= bar; i++)
		if (fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3)
			start = 0;
	fclose(f);
	return start;
}

/* The checksum of @c's memory (BAR2), which the card logs on SIGUSR1. */
static int card_mem_fnv(struct tcard *c, uint32_t *fnv)
{
	int before = card_said(c, "mem ", NULL, 0);
	char line[256];
	double end = now_s() + 5;

	kill(c->pid, SIGUSR1);
	while (card_said(c, "mem ", line, sizeof(line)) == before && now_s() < end)
		usleep(5000);
	CHECK(card_said(c, "mem ", line, sizeof(line)) > before, "card %d did not log its memory",
	      (int)(c - cards));
	CHECK(sscanf(line, "mem %*d fnv=%x", fnv) == 1, "bad line '%s'", line);
	return 0;
}

static int arith(int fd, uint32_t op, uint32_t operand, uint64_t *result)
{
	struct protopciem_arith a = { .argsz = sizeof(a), .op = op, .operand = operand };

	if (ioctl(fd, PROTOPCIEM_IOCTL_ARITH, &a))
		return -errno;
	*result = a.result;
	return 0;
}

static int process(int fd, uint32_t key, const void *src, void *dst, uint32_t len, uint64_t *sum)
{
	struct protopciem_process a = { .argsz = sizeof(a), .key = key, .len = len,
					.src = (uintptr_t)src, .dst = (uintptr_t)dst };

	if (ioctl(fd, PROTOPCIEM_IOCTL_PROCESS, &a))
		return -errno;
	*sum = a.sum;
	return 0;
}

static int p2p(int fd, uint32_t op, uint64_t card_offset, uint64_t peer, uint32_t len)
{
	struct protopciem_p2p a = { .argsz = sizeof(a), .op = op, .len = len,
				    .card_offset = card_offset, .peer_addr = peer };

	return ioctl(fd, PROTOPCIEM_IOCTL_P2P, &a) ? -errno : 0;
}

static int submit_frame(int fd, uint32_t buffer)
{
	struct protopciem_submit_frame sf = { .argsz = sizeof(sf), .buffer = buffer };

	return ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf) ? -errno : 0;
}

static const uint8_t nop[8] = { 0, 0, 0, 0, 8, 0, 0, 0 };

static int t_probe(void)
{
	struct tcard *c = &cards[0];
	char path[256], buf[64];
	int fd;

	if (card_start(c, true, "normal", NULL))
		return -1;
	CHECK(!strcmp(c->node, "/dev/protopciem"), "the first card is %s", c->node);
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	close(fd);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/stats/irq_mode", c->bdf);
	CHECK(sysfs_read(path, buf, sizeof(buf)) > 0 && !strcmp(buf, "msi\n"), "irq_mode '%s'", buf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", c->bdf);
	CHECK(access(path, F_OK) == 0, "no driver bound to %s", c->bdf);
	CHECK(stat_of(c, "operations") == 0 && stat_of(c, "interrupts") == 0, "stats not zero");
	return card_stop(c);
}

static int t_arith(void)
{
	static const struct { uint32_t op, in; uint64_t out; } cases[] = {
		{ PROTOPCIEM_ARITH_ADD, 21, 42 },
		{ PROTOPCIEM_ARITH_ADD, 0xffffffff, 0x1fffffffeull },
		{ PROTOPCIEM_ARITH_MULTIPLY, 12345, 12345ull * 12345 },
		{ PROTOPCIEM_ARITH_MULTIPLY, 0xffffffff, 0xfffffffe00000001ull },
		{ PROTOPCIEM_ARITH_XOR, 0x12345678, 0xedcba987 },
		{ PROTOPCIEM_ARITH_XOR, 0, 0xffffffff },
	};
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	size_t i;
	int fd, ret;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		ret = arith(fd, cases[i].op, cases[i].in, &r);
		CHECK(ret == 0 && r == cases[i].out, "op %u(%#x): %d, %#llx, want %#llx", cases[i].op,
		      cases[i].in, ret, (unsigned long long)r, (unsigned long long)cases[i].out);
	}
	CHECK(arith(fd, 4, 1, &r) == -EINVAL, "op 4 accepted");
	CHECK(stat_of(c, "operations") == 6 && stat_of(c, "interrupts") == 6, "ops %lld irqs %lld",
	      stat_of(c, "operations"), stat_of(c, "interrupts"));
	close(fd);
	return card_stop(c);
}

static int t_cmdbuf(void)
{
	/* docs/protopciem.md, programming sequence: CLEAR then a red diagonal. */
	static const uint8_t cb[32] = {
		0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0xff,
		0x02, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0x02, 0xdf, 0x01, 0xff, 0, 0, 0xff,
	};
	uint8_t badcb[8] = { 0x01, 0, 0, 0, 0x08, 0, 0, 0 };
	struct tcard *c = &cards[0];
	char line[256], want[256];
	uint8_t *big;
	size_t i, n;
	int fd;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(write(fd, cb, sizeof(cb)) == (ssize_t)sizeof(cb), "write: %s", strerror(errno));
	snprintf(want, sizeof(want), "cmdbuf len=32 entries=2 fnv=%08x\n", fnv1a(cb, sizeof(cb)));
	CHECK(card_said(c, "cmdbuf", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
	      line, want);
	/* 4 MiB of NOPs, 8 bytes each, the whole buffer. */
	n = PROTOPCIEM_CMDBUF_BYTES;
	big = calloc(1, n);
	CHECK(big, "no memory");
	for (i = 0; i < n; i += 8)
		big[i + 4] = 8;
	big[10] = 0x55;		/* a reserved byte: shows the bytes arrive as written */
	CHECK(write(fd, big, n) == (ssize_t)n, "4 MiB write: %s", strerror(errno));
	snprintf(want, sizeof(want), "cmdbuf len=%zu entries=%zu fnv=%08x\n", n, n / 8, fnv1a(big, n));
	free(big);
	CHECK(card_said(c, "cmdbuf", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
	      line, want);
	/* A bad entry: the card reports ERR_CMDBUF_LENGTH, write() -EIO. */
	CHECK(write(fd, badcb, 8) == -1 && errno == EIO, "bad cmdbuf: %s", strerror(errno));
	CHECK(write(fd, cb, 0) == -1 && errno == EINVAL, "empty write: %s", strerror(errno));
	CHECK(stat_of(c, "errors") == 1, "errors %lld", stat_of(c, "errors"));
	close(fd);
	return card_stop(c);
}

static int t_frame(void)
{
	size_t len = PROTOPCIEM_FRAMES * PROTOPCIEM_FRAME_BYTES;
	struct protopciem_submit_frame sf = { .argsz = sizeof(sf) };
	struct tcard *c = &cards[0];
	char line[256], want[256];
	uint8_t *fb;
	size_t i;
	int fd, b;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	fb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(fb != MAP_FAILED, "mmap: %s", strerror(errno));
	for (b = 0; b < PROTOPCIEM_FRAMES; b++) {
		uint8_t *f = fb + (size_t)b * PROTOPCIEM_FRAME_BYTES;

		for (i = 0; i < PROTOPCIEM_FRAME_BYTES; i++)
			f[i] = (uint8_t)(i * 7 + i / 1920 + b * 91);
		CHECK(submit_frame(fd, b) == 0, "SUBMIT_FRAME %d: %s", b, strerror(errno));
		snprintf(want, sizeof(want), "frame fnv=%08x\n", fnv1a(f, PROTOPCIEM_FRAME_BYTES));
		CHECK(card_said(c, "frame", line, sizeof(line)) && !strcmp(line, want),
		      "frame %d: card said '%s', want '%s'", b, line, want);
	}
	sf.buffer = 2;
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf) == -1 && errno == EINVAL, "buffer 2 accepted");
	sf.buffer = 0;
	sf.flags = 1;
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf) == -1 && errno == EINVAL, "flags accepted");
	sf.flags = 0;
	sf.argsz = 8;
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf) == -1 && errno == EINVAL, "argsz 8 accepted");
	CHECK(ioctl(fd, _IO(PROTOPCIEM_IOCTL_MAGIC, 9), 0) == -1 && errno == ENOTTY, "unknown ioctl");
	CHECK(mmap(NULL, len + 65536, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED, "oversized mmap");
	munmap(fb, len);
	close(fd);
	return card_stop(c);
}

/* Checks one PROCESS of @len bytes: dst = src ^ key word by word, sum, the card's log. */
static int process_case(struct tcard *c, int fd, uint32_t key, uint32_t *src, uint32_t *dst, uint32_t len)
{
	uint32_t *orig = malloc(len), i;
	char line[256], want[256];
	uint64_t sum = 0, want_sum = 0;
	int ret;

	CHECK(orig, "no memory");
	memcpy(orig, src, len);
	for (i = 0; i < len / 4; i++)
		want_sum += orig[i];
	ret = process(fd, key, src, dst, len, &sum);
	for (i = 0; !ret && i < len / 4 && dst[i] == (orig[i] ^ key); i++)
		;
	free(orig);
	CHECK(ret == 0, "PROCESS %u bytes: %s", len, strerror(-ret));
	CHECK(i == len / 4, "PROCESS %u bytes: word %u wrong", len, i);
	CHECK(sum == want_sum, "sum %#llx, want %#llx", (unsigned long long)sum, (unsigned long long)want_sum);
	snprintf(want, sizeof(want), "process len=%u key=%#x sum=%#llx\n", len, key, (unsigned long long)sum);
	CHECK(card_said(c, "process", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
	      line, want);
	return 0;
}

static int t_process(void)
{
	size_t n = PROTOPCIEM_PROCESS_BYTES + 64;
	struct tcard *c = &cards[0];
	struct {
		struct protopciem_process a;
		uint64_t more;
	} big = { .a = { .argsz = sizeof(big), .len = 4 }, .more = 1 };
	uint32_t *src = malloc(n), *dst = malloc(n), x = 2463534242u, i;
	uint64_t sum = 0;
	int fd;

	CHECK(src && dst, "no memory");
	for (i = 0; i < n / 4; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		src[i] = x;
	}
	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	if (process_case(c, fd, 0x5a5a5a5a, src, dst, 4) ||
	    process_case(c, fd, 0xdeadbeef, src + 3, dst + 1, 4096 + 12) ||
	    process_case(c, fd, 0x01020304, src, dst, PROTOPCIEM_PROCESS_BYTES) ||
	    process_case(c, fd, 0xffffffff, src, src, 65536))
		return -1;
	CHECK(process(fd, 1, src, dst, 0, &sum) == -EINVAL, "len 0 accepted");
	CHECK(process(fd, 1, src, dst, 6, &sum) == -EINVAL, "len 6 accepted");
	CHECK(process(fd, 1, src, dst, PROTOPCIEM_PROCESS_BYTES + 4, &sum) == -EINVAL, "len > max accepted");
	CHECK(process(fd, 1, (void *)8, dst, 4, &sum) == -EFAULT, "bad src accepted");
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_PROCESS, &big) == -1 && errno == E2BIG, "non-zero tail: %s",
	      strerror(errno));
	big.a.argsz = 8;
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_PROCESS, &big) == -1 && errno == EINVAL, "argsz 8 accepted");
	CHECK(stat_of(c, "operations") == 4, "operations %lld: refused calls reached the card",
	      stat_of(c, "operations"));
	free(src);
	free(dst);
	close(fd);
	return card_stop(c);
}

/* Card memory as the test expects it, in step with the cards' P2P. */
static uint8_t *model_mem(unsigned int seed)
{
	uint8_t *m = malloc(PROTOPCIEM_BAR_MEM_SIZE);
	size_t i;

	for (i = 0; m && i < PROTOPCIEM_BAR_MEM_SIZE; i++)
		m[i] = card_mem_byte(seed, i);
	return m;
}

static int expect_mem(struct tcard *c, const uint8_t *model, const char *what)
{
	uint32_t got = 0, want = fnv1a(model, PROTOPCIEM_BAR_MEM_SIZE);

	if (card_mem_fnv(c, &got))
		return -1;
	CHECK(got == want, "%s: card %d memory fnv %08x, want %08x", what, (int)(c - cards), got, want);
	return 0;
}

static int t_p2p(void)
{
	struct tcard *a = &cards[0], *b = &cards[1];
	uint8_t *ma = model_mem(1), *mb = model_mem(2);
	uint64_t a2, b2;
	char line[256], want[256];
	int fa, fb;

	CHECK(ma && mb, "no memory");
	if (card_start(a, true, "-s", "1", "normal", NULL) || card_start(b, true, "-s", "2", "normal", NULL))
		return -1;
	a2 = bar_addr(a, PROTOPCIEM_BAR_MEM);
	b2 = bar_addr(b, PROTOPCIEM_BAR_MEM);
	CHECK(a2 && b2, "BAR2 addresses %#llx %#llx", (unsigned long long)a2, (unsigned long long)b2);
	fa = card_open(a);
	fb = card_open(b);
	CHECK(fa >= 0 && fb >= 0, "open");
	if (expect_mem(a, ma, "at start") || expect_mem(b, mb, "at start"))
		return -1;

	/* Peer to card: B's memory into A's. */
	CHECK(p2p(fa, PROTOPCIEM_P2P_READ, 0x10000, b2 + 0x1000, 0x3000) == 0, "P2P_READ: %s", strerror(errno));
	memcpy(ma + 0x10000, mb + 0x1000, 0x3000);
	snprintf(want, sizeof(want), "p2p read peer=%#llx off=0x10000 len=12288\n",
		 (unsigned long long)(b2 + 0x1000));
	CHECK(card_said(a, "p2p", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
	      line, want);
	if (expect_mem(a, ma, "P2P_READ"))
		return -1;
	/* Card to peer, odd length and peer offset. */
	CHECK(p2p(fa, PROTOPCIEM_P2P_WRITE, 0x20000, b2 + 0x80001, 0x2345) == 0, "P2P_WRITE: %s",
	      strerror(errno));
	memcpy(mb + 0x80001, ma + 0x20000, 0x2345);
	if (expect_mem(b, mb, "P2P_WRITE") || expect_mem(a, ma, "P2P_WRITE source"))
		return -1;
	/* The other card issuing, up to the end of the peer's BAR2. */
	CHECK(p2p(fb, PROTOPCIEM_P2P_WRITE, 0x40000, a2 + PROTOPCIEM_P2P_BYTES - 0x1000, 0x1000) == 0,
	      "P2P_WRITE from B: %s", strerror(errno));
	memcpy(ma + PROTOPCIEM_P2P_BYTES - 0x1000, mb + 0x40000, 0x1000);
	if (expect_mem(a, ma, "P2P_WRITE from B"))
		return -1;
	/* All of it: P2P_MAX bytes. */
	CHECK(p2p(fa, PROTOPCIEM_P2P_READ, 0, b2, PROTOPCIEM_P2P_BYTES) == 0, "1 MiB P2P_READ: %s",
	      strerror(errno));
	if (expect_mem(a, mb, "1 MiB P2P_READ"))
		return -1;
	CHECK(stat_of(a, "operations") == 3 && stat_of(b, "operations") == 1 && stat_of(a, "errors") == 0,
	      "operations %lld / %lld", stat_of(a, "operations"), stat_of(b, "operations"));
	free(ma);
	free(mb);
	close(fa);
	close(fb);
	return card_stop(a) || card_stop(b);
}

static int t_p2p_refused(void)
{
	struct protopciem_p2p bad = { .argsz = sizeof(bad), .flags = 1, .op = PROTOPCIEM_P2P_READ, .len = 4 };
	struct tcard *c = &cards[0];
	char line[256];
	pid_t pid;
	int fd, st;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_P2P, &bad) == -1 && errno == EINVAL, "flags accepted");
	CHECK(p2p(fd, 5, 0, 0x1000, 4) == -EINVAL, "op 5 accepted");
	CHECK(p2p(fd, PROTOPCIEM_P2P_READ, 0, 0x1000, 0) == -EINVAL, "len 0 accepted");
	CHECK(p2p(fd, PROTOPCIEM_P2P_READ, 0, 0x1000, PROTOPCIEM_P2P_BYTES + 1) == -EINVAL, "len > max accepted");
	CHECK(p2p(fd, PROTOPCIEM_P2P_READ, PROTOPCIEM_P2P_BYTES, 0x1000, 1) == -EINVAL, "offset at the end");
	CHECK(p2p(fd, PROTOPCIEM_P2P_WRITE, 0xff000, 0x1000, 0x1001) == -EINVAL, "past BAR2's end");
	CHECK(p2p(fd, PROTOPCIEM_P2P_WRITE, 1ull << 63, 0x1000, 1) == -EINVAL, "huge offset");
	CHECK(p2p(fd, PROTOPCIEM_P2P_READ, 0, ~0ull - 10, 100) == -EINVAL, "wrapping peer accepted");
	CHECK(stat_of(c, "operations") == 0, "a refused call reached the card");
	/* A peer pciem does not let the card reach (RAM): the card reports ERR_DMA_FAULT. */
	CHECK(p2p(fd, PROTOPCIEM_P2P_WRITE, 0, 0x1000, 16) == -EIO, "unreachable peer: %s", strerror(errno));
	CHECK(card_said(c, "p2p refused", line, sizeof(line)), "the card's P2P was not refused");
	CHECK(stat_of(c, "errors") == 1, "errors %lld", stat_of(c, "errors"));
	/* Without CAP_SYS_RAWIO. */
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (!pid)
		_exit(setresuid(65534, 65534, 65534) ? 2 :
		      p2p(fd, PROTOPCIEM_P2P_READ, 0, 0x1000, 4) == -EPERM ? 0 : 1);
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "an unprivileged P2P was not refused with EPERM (%d)", st);
	close(fd);
	if (card_stop(c))
		return -1;
	/* A card whose CAPS has no P2P. */
	if (card_start(c, true, "-P", "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(p2p(fd, PROTOPCIEM_P2P_READ, 0, 0x1000, 4) == -EOPNOTSUPP, "P2P on a card without it: %s",
	      strerror(errno));
	close(fd);
	return card_stop(c);
}

static int t_timeout(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	double t0, dt;
	int fd, ret;

	if (card_start(c, true, "silent", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	t0 = now_s();
	ret = arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r);
	dt = now_s() - t0;
	CHECK(ret == -ETIMEDOUT, "silent card: %d", ret);
	CHECK(dt >= 1.9 && dt < 3.0, "timed out after %.2f s", dt);
	CHECK(stat_of(c, "timeouts") == 1, "timeouts %lld", stat_of(c, "timeouts"));
	close(fd);
	return card_stop(c);
}

static int t_error(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	int fd;

	if (card_start(c, true, "error", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(write(fd, nop, 8) == -1 && errno == EIO, "write on an erring card: %s", strerror(errno));
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r) == -EIO, "ADD on an erring card");
	CHECK(stat_of(c, "errors") == 2, "errors %lld", stat_of(c, "errors"));
	close(fd);
	return card_stop(c);
}

static int t_surprise_removal(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	double t0;
	int fd, st;
	ssize_t n;

	if (card_start(c, true, "die-after", "1", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 2, &r) == 0 && r == 4, "first command");
	t0 = now_s();
	n = write(fd, nop, 8);
	CHECK(n == -1 && (errno == ENODEV || errno == ETIMEDOUT), "write during removal: %zd %s", n,
	      strerror(errno));
	diag("write during removal: %s after %.2f s", strerror(errno), now_s() - t0);
	waitpid(c->pid, &st, 0);
	c->pid = -1;
	CHECK(wait_path(c->node, false, 5) == 0, "%s still there", c->node);
	CHECK(write(fd, nop, 8) == -1 && errno == ENODEV, "write after removal: %s", strerror(errno));
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r) == -ENODEV, "ioctl after removal");
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == ENODEV,
	      "mmap after removal");
	close(fd);
	return 0;
}

static int t_removal_with_mmap(void)
{
	struct tcard *c = &cards[0];
	volatile uint8_t *fb;
	int fd;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	fb = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(fb != MAP_FAILED, "mmap: %s", strerror(errno));
	fb[0] = 1;
	if (card_stop(c))
		return -1;
	/* The mapping is gone with the card (touching it would be SIGBUS); closing is clean. */
	munmap((void *)fb, 4096);
	close(fd);
	return 0;
}

static bool has_cap(const char *bdf, uint8_t id)
{
	uint32_t pos;
	int n;

	if (!(cfg_get(bdf, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return false;
	pos = cfg_get(bdf, PCI_CAPABILITY_LIST, 1);
	for (n = 0; pos >= 0x40 && pos < 0x100 && n < 48; n++) {
		if (cfg_get(bdf, pos, 1) == id)
			return true;
		pos = cfg_get(bdf, pos + 1, 1);
	}
	return false;
}

/* A card without MSI: INTx, level-triggered; one handled interrupt per command. */
static int t_intx(void)
{
	struct tcard *c = &cards[0];
	char path[256], buf[64];
	uint32_t words[64], out[64];
	uint8_t badcb[8] = { 0x01, 0, 0, 0, 0x08, 0, 0, 0 };
	uint64_t r = 0, sum = 0;
	double end;
	int fd, i;

	if (card_start(c, true, "-x", "normal", NULL))
		return -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/stats/irq_mode", c->bdf);
	CHECK(sysfs_read(path, buf, sizeof(buf)) > 0 && !strcmp(buf, "intx\n"), "irq_mode '%s'", buf);
	CHECK(!has_cap(c->bdf, PCI_CAP_ID_MSI), "the card has MSI");
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	for (i = 0; i < 200; i++)
		CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, i, &r) == 0 && r == 2ull * i, "ADD %d: %llu", i,
		      (unsigned long long)r);
	CHECK(write(fd, nop, 8) == 8, "write: %s", strerror(errno));
	CHECK(submit_frame(fd, 1) == 0, "SUBMIT_FRAME: %s", strerror(errno));
	for (i = 0; i < 64; i++)
		words[i] = i * 0x01010101u;
	CHECK(process(fd, 0xff, words, out, sizeof(words), &sum) == 0 && out[5] == (words[5] ^ 0xff),
	      "PROCESS: %s", strerror(errno));
	CHECK(write(fd, badcb, 8) == -1 && errno == EIO, "bad cmdbuf: %s", strerror(errno));
	CHECK(stat_of(c, "operations") == 204 && stat_of(c, "interrupts") == 204 && stat_of(c, "errors") == 1,
	      "operations %lld interrupts %lld errors %lld", stat_of(c, "operations"),
	      stat_of(c, "interrupts"), stat_of(c, "errors"));
	/* The line went down once the driver acknowledged: Interrupt Status clear. */
	end = now_s() + 2;
	while ((cfg_get(c->bdf, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT) && now_s() < end)
		usleep(10000);
	CHECK(!(cfg_get(c->bdf, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT), "INTx still asserted");
	close(fd);
	return card_stop(c);
}

struct worker {
	struct tcard *c;
	int fd;
	uint32_t base;
	int ret;
};

#define WORKER_OPS	100
#define WORKER_WRITES	5

/* ADDs whose operands say which card they are for, command buffers and a PROCESS. */
static void *work(void *arg)
{
	struct worker *w = arg;
	uint32_t words[256], out[256], i;
	uint64_t r = 0, sum = 0;
	int k;

	w->ret = -1;
	for (k = 0; k < WORKER_OPS; k++)
		if (arith(w->fd, PROTOPCIEM_ARITH_ADD, w->base + k, &r) || r != 2ull * (w->base + k)) {
			diag("%s: ADD %u: %llu", w->c->node, w->base + k, (unsigned long long)r);
			return NULL;
		}
	for (k = 0; k < WORKER_WRITES; k++)
		if (write(w->fd, nop, 8) != 8) {
			diag("%s: write: %s", w->c->node, strerror(errno));
			return NULL;
		}
	for (i = 0; i < 256; i++)
		words[i] = w->base + i;
	if (process(w->fd, w->base, words, out, sizeof(words), &sum) || out[255] != ((w->base + 255) ^ w->base)) {
		diag("%s: PROCESS: %s", w->c->node, strerror(errno));
		return NULL;
	}
	w->ret = 0;
	return NULL;
}

/* Every ADD card @k saw had one of its own operands: no command crossed over. */
static int only_own_adds(struct tcard *c, uint32_t base)
{
	char line[256];
	unsigned int data, n = 0;
	FILE *f = fopen(c->log, "r");

	CHECK(f, "no log");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "cmd 1 data=%u", &data) == 1) {
			if (data / 1000 != base / 1000) {
				fclose(f);
				FAIL("%s saw ADD %u", c->node, data);
			}
			n++;
		}
	fclose(f);
	CHECK(n >= WORKER_OPS, "%s saw %u ADDs", c->node, n);
	return 0;
}

static int t_several_cards(void)
{
	static const char * const want[NCARDS] = { "/dev/protopciem", "/dev/protopciem1", "/dev/protopciem2" };
	struct worker w[NCARDS];
	pthread_t th[NCARDS];
	uint64_t r = 0;
	int i, fd;

	for (i = 0; i < NCARDS; i++) {
		char seed[8];

		snprintf(seed, sizeof(seed), "%d", i + 1);
		if (card_start(&cards[i], true, "-s", seed, "normal", NULL))
			return -1;
		CHECK(!strcmp(cards[i].node, want[i]), "card %d is %s, want %s", i, cards[i].node, want[i]);
		w[i] = (struct worker){ .c = &cards[i], .fd = card_open(&cards[i]), .base = 1000 * (i + 1) };
		CHECK(w[i].fd >= 0, "open");
	}
	CHECK(strcmp(cards[0].bdf, cards[1].bdf) && strcmp(cards[1].bdf, cards[2].bdf), "one BDF twice");
	/* All at once, each card on its own thread. */
	for (i = 0; i < NCARDS; i++)
		CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0, "pthread_create");
	for (i = 0; i < NCARDS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < NCARDS; i++)
		CHECK(w[i].ret == 0, "card %d failed under load", i);
	/* Interleaved from one thread. */
	for (i = 0; i < 10 * NCARDS; i++)
		CHECK(arith(w[i % NCARDS].fd, PROTOPCIEM_ARITH_ADD, w[i % NCARDS].base + 500 + i, &r) == 0 &&
		      r == 2ull * (w[i % NCARDS].base + 500 + i), "interleaved ADD %d", i);
	for (i = 0; i < NCARDS; i++) {
		long long ops = WORKER_OPS + WORKER_WRITES + 1 + 10;

		CHECK(stat_of(&cards[i], "operations") == ops && stat_of(&cards[i], "interrupts") == ops,
		      "card %d: operations %lld interrupts %lld, want %lld", i,
		      stat_of(&cards[i], "operations"), stat_of(&cards[i], "interrupts"), ops);
		if (only_own_adds(&cards[i], w[i].base))
			return -1;
	}
	/* The middle card goes; the others carry on; a new card takes its number. */
	close(w[1].fd);
	if (card_stop(&cards[1]))
		return -1;
	CHECK(arith(w[0].fd, PROTOPCIEM_ARITH_ADD, 7, &r) == 0 && r == 14, "card 0 after card 1 went");
	CHECK(arith(w[2].fd, PROTOPCIEM_ARITH_ADD, 8, &r) == 0 && r == 16, "card 2 after card 1 went");
	if (card_start(&cards[1], true, "normal", NULL))
		return -1;
	CHECK(!strcmp(cards[1].node, want[1]), "the new card is %s", cards[1].node);
	fd = card_open(&cards[1]);
	CHECK(fd >= 0, "open");
	CHECK(arith(fd, PROTOPCIEM_ARITH_MULTIPLY, 9, &r) == 0 && r == 81, "the new card");
	CHECK(stat_of(&cards[1], "operations") == 1, "the new card's stats are not its own");
	close(fd);
	close(w[0].fd);
	close(w[2].fd);
	for (i = 0; i < NCARDS; i++)
		if (card_stop(&cards[i]))
			return -1;
	return 0;
}

/* Every call fails with ENODEV, at once, and reaches nothing; @cmds: commands the card saw. */
static int expect_dead(struct tcard *c, int fd, int cmds)
{
	struct protopciem_p2p p = { .argsz = sizeof(p), .op = PROTOPCIEM_P2P_READ, .len = 4 };
	uint32_t word = 1, out;
	uint64_t r = 0;
	double t0 = now_s();

	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r) == -ENODEV, "ADD on a dead card");
	CHECK(write(fd, nop, 8) == -1 && errno == ENODEV, "write on a dead card: %s", strerror(errno));
	CHECK(submit_frame(fd, 0) == -ENODEV, "SUBMIT_FRAME on a dead card");
	CHECK(process(fd, 1, &word, &out, 4, &r) == -ENODEV, "PROCESS on a dead card");
	CHECK(ioctl(fd, PROTOPCIEM_IOCTL_P2P, &p) == -1 && errno == ENODEV, "P2P on a dead card");
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == ENODEV,
	      "mmap on a dead card");
	CHECK(now_s() - t0 < 0.5, "calls on a dead card took %.2f s", now_s() - t0);
	CHECK(card_said(c, "cmd ", NULL, 0) == cmds, "the dead card saw %d commands, want %d",
	      card_said(c, "cmd ", NULL, 0), cmds);
	return 0;
}

/* Dead between commands: the next call finds STATUS all-ones before submitting. */
static int t_dead_idle(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	double end;
	int fd;

	if (card_start(c, true, "normal", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 3, &r) == 0 && r == 6, "ADD before death");
	kill(c->pid, SIGUSR2);
	end = now_s() + 5;
	while (!card_said(c, "dead", NULL, 0) && now_s() < end)
		usleep(5000);
	CHECK(card_said(c, "dead", NULL, 0), "the card did not die");
	if (expect_dead(c, fd, 1))
		return -1;
	CHECK(stat_of(c, "operations") == 1 && stat_of(c, "errors") == 0, "stats");
	close(fd);
	return card_stop(c);
}

/* Dead with a command in flight, raising a last interrupt: -ENODEV at once, no timeout. */
static int t_dead_in_flight(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	double t0;
	int fd, ret;

	if (card_start(c, true, "dead-after", "1", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 3, &r) == 0 && r == 6, "ADD before death");
	t0 = now_s();
	ret = arith(fd, PROTOPCIEM_ARITH_ADD, 4, &r);
	CHECK(ret == -ENODEV, "ADD as the card dies: %d", ret);
	CHECK(now_s() - t0 < 1.0, "took %.2f s", now_s() - t0);
	if (expect_dead(c, fd, 1))
		return -1;
	CHECK(stat_of(c, "timeouts") == 0, "timeouts %lld", stat_of(c, "timeouts"));
	close(fd);
	return card_stop(c);
}

/* Dead with a command in flight and no interrupt: -ENODEV after timeout_ms, not -ETIMEDOUT. */
static int t_dead_silent(void)
{
	struct tcard *c = &cards[0];
	uint64_t r = 0;
	double t0, dt;
	int fd, ret;

	if (card_start(c, true, "dead-silent-after", "1", NULL))
		return -1;
	fd = card_open(c);
	CHECK(fd >= 0, "open");
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 3, &r) == 0 && r == 6, "ADD before death");
	CHECK(sysfs_write(TIMEOUT_PARAM, "300") == 0, "timeout_ms");
	t0 = now_s();
	ret = arith(fd, PROTOPCIEM_ARITH_ADD, 4, &r);
	dt = now_s() - t0;
	sysfs_write(TIMEOUT_PARAM, "2000");
	CHECK(ret == -ENODEV, "ADD as the card dies silently: %d", ret);
	CHECK(dt >= 0.25 && dt < 1.5, "took %.2f s for a 0.3 s bound", dt);
	if (expect_dead(c, fd, 1))
		return -1;
	CHECK(stat_of(c, "timeouts") == 0, "counted as a timeout");
	close(fd);
	return card_stop(c);
}

/* Dead before the driver came: it does not bind. */
static int t_dead_at_probe(void)
{
	struct tcard *c = &cards[0];
	char path[256], node[64];

	if (card_start(c, false, "dead", NULL))
		return -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", c->bdf);
	CHECK(access(path, F_OK) != 0, "a driver bound to a dead card");
	CHECK(!node_of(c->bdf, node, sizeof(node)), "%s for a dead card", node);
	return card_stop(c);
}

static const struct test tests[] = {
	{ "probe", t_probe, true },
	{ "arith", t_arith, true },
	{ "cmdbuf", t_cmdbuf, true },
	{ "frame", t_frame, true },
	{ "process", t_process, true },
	{ "p2p", t_p2p, true },
	{ "p2p_refused", t_p2p_refused, true },
	{ "timeout", t_timeout, true },
	{ "error", t_error, true },
	{ "surprise_removal", t_surprise_removal, true },
	{ "removal_with_mmap", t_removal_with_mmap, true },
	{ "intx", t_intx, true },
	{ "several_cards", t_several_cards, true },
	{ "dead_idle", t_dead_idle, true },
	{ "dead_in_flight", t_dead_in_flight, true },
	{ "dead_silent", t_dead_silent, true },
	{ "dead_at_probe", t_dead_at_probe, true },
};

static void stop_all(void)
{
	int i;

	for (i = 0; i < NCARDS; i++)
		card_stop(&cards[i]);
}

int main(int argc, char **argv)
{
	const char *card = getenv("PROTOPCIEM_CARD");
	int i, ret;

	for (i = 0; i < NCARDS; i++)
		cards[i].pid = -1;
	snprintf(card_path, sizeof(card_path), "%s", card ? card : "./protopciem_card");
	signal(SIGPIPE, SIG_IGN);
	ret = selftest_main(argc, argv, tests, ARRAY_SIZE(tests));
	stop_all();
	return ret;
}
