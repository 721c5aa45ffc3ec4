// SPDX-License-Identifier: GPL-2.0
/*
 * protopciem.ko against the minimal card (protopciem_card.c, run from the
 * same folder in a given mode): probe, arithmetic, command buffers, frames,
 * timeout, card error, surprise removal, bad arguments.
 */
#include "selftest_lib.h"
#include <linux/protopciem.h>
#include "../../proto/generated/protopciem_regs.h"

#define DEVNODE "/dev/protopciem"

static char card_path[512];
static pid_t card_pid = -1;
static char card_bdf[32];
static const char *card_log = "/tmp/protopciem_card.log";

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static int card_stop(void)
{
	int st;

	if (card_pid > 0) {
		kill(card_pid, SIGTERM);
		waitpid(card_pid, &st, 0);
		card_pid = -1;
	}
	CHECK(wait_path(DEVNODE, false, 5) == 0, DEVNODE " still there after the card stopped");
	return 0;
}

/* Starts the card in @mode (with @arg, may be NULL) and waits for /dev/protopciem. */
static int card_start(const char *mode, const char *arg)
{
	char line[256];
	double end;
	FILE *f;

	if (card_pid > 0)
		card_stop();	/* left over by a failed test */
	card_bdf[0] = 0;
	card_pid = fork();
	CHECK(card_pid >= 0, "fork: %s", strerror(errno));
	if (!card_pid) {
		int fd = open(card_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		execl(card_path, card_path, mode, arg, (char *)NULL);
		_exit(127);
	}
	CHECK(wait_path(DEVNODE, true, 5) == 0, DEVNODE " did not appear (card %s)", mode);
	end = now_s() + 5;
	while (!card_bdf[0] && now_s() < end) {
		f = fopen(card_log, "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "ready %31s", card_bdf) == 1)
				break;
		if (f)
			fclose(f);
		usleep(10000);
	}
	CHECK(card_bdf[0], "the card never said ready");
	return 0;
}

/* The last line of the card's log starting with @prefix, into @out. */
static int card_said(const char *prefix, char *out, size_t len)
{
	char line[256];
	FILE *f = fopen(card_log, "r");
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, prefix, strlen(prefix))) {
			snprintf(out, len, "%s", line);
			found = 1;
		}
	fclose(f);
	return found;
}

static long long stat_of(const char *name)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/stats/%s", card_bdf, name);
	if (sysfs_read(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtoll(buf, NULL, 0);
}

static int arith(int fd, uint32_t op, uint32_t operand, uint64_t *result)
{
	struct protopciem_arith a = { .argsz = sizeof(a), .op = op, .operand = operand };

	if (ioctl(fd, PROTOPCIEM_IOCTL_ARITH, &a))
		return -errno;
	*result = a.result;
	return 0;
}

static int t_probe(void)
{
	char path[256], buf[64];
	int fd;

	if (card_start("normal", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	close(fd);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/stats/irq_mode", card_bdf);
	CHECK(sysfs_read(path, buf, sizeof(buf)) > 0 && !strcmp(buf, "msi\n"), "irq_mode '%s'", buf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", card_bdf);
	CHECK(access(path, F_OK) == 0, "no driver bound to %s", card_bdf);
	CHECK(stat_of("operations") == 0 && stat_of("interrupts") == 0, "stats not zero");
	return card_stop();
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
	uint64_t r = 0;
	size_t i;
	int fd, ret;

	if (card_start("normal", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ret = arith(fd, cases[i].op, cases[i].in, &r);
		CHECK(ret == 0 && r == cases[i].out, "op %u(%#x): %d, %#llx, want %#llx", cases[i].op,
		      cases[i].in, ret, (unsigned long long)r, (unsigned long long)cases[i].out);
	}
	CHECK(arith(fd, 4, 1, &r) == -EINVAL, "op 4 accepted");
	CHECK(stat_of("operations") == 6 && stat_of("interrupts") == 6, "ops %lld irqs %lld",
	      stat_of("operations"), stat_of("interrupts"));
	close(fd);
	return card_stop();
}

static int t_cmdbuf(void)
{
	/* docs/protopciem.md, programming sequence: CLEAR then a red diagonal. */
	static const uint8_t cb[32] = {
		0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0xff,
		0x02, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0x02, 0xdf, 0x01, 0xff, 0, 0, 0xff,
	};
	char line[256], want[256];
	uint8_t *big;
	size_t i, n;
	int fd;

	if (card_start("normal", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(write(fd, cb, sizeof(cb)) == (ssize_t)sizeof(cb), "write: %s", strerror(errno));
	snprintf(want, sizeof(want), "cmdbuf len=32 entries=2 fnv=%08x\n", fnv1a(cb, sizeof(cb)));
	CHECK(card_said("cmdbuf", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
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
	CHECK(card_said("cmdbuf", line, sizeof(line)) && !strcmp(line, want), "card said '%s', want '%s'",
	      line, want);
	/* A bad entry: the card reports ERR_CMDBUF_LENGTH, write() -EIO. */
	{
		uint8_t badcb[8] = { 0x01, 0, 0, 0, 0x08, 0, 0, 0 };

		CHECK(write(fd, badcb, 8) == -1 && errno == EIO, "bad cmdbuf: %s", strerror(errno));
	}
	CHECK(write(fd, cb, 0) == -1 && errno == EINVAL, "empty write: %s", strerror(errno));
	CHECK(stat_of("errors") == 1, "errors %lld", stat_of("errors"));
	close(fd);
	return card_stop();
}

static int t_frame(void)
{
	size_t len = PROTOPCIEM_FRAMES * PROTOPCIEM_FRAME_BYTES;
	struct protopciem_submit_frame sf = { .argsz = sizeof(sf) };
	char line[256], want[256];
	uint8_t *fb;
	size_t i;
	int fd, b;

	if (card_start("normal", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	fb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(fb != MAP_FAILED, "mmap: %s", strerror(errno));
	for (b = 0; b < PROTOPCIEM_FRAMES; b++) {
		uint8_t *f = fb + (size_t)b * PROTOPCIEM_FRAME_BYTES;

		for (i = 0; i < PROTOPCIEM_FRAME_BYTES; i++)
			f[i] = (uint8_t)(i * 7 + i / 1920 + b * 91);
		sf.buffer = b;
		CHECK(ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf) == 0, "SUBMIT_FRAME %d: %s", b,
		      strerror(errno));
		snprintf(want, sizeof(want), "frame fnv=%08x\n", fnv1a(f, PROTOPCIEM_FRAME_BYTES));
		CHECK(card_said("frame", line, sizeof(line)) && !strcmp(line, want),
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
	return card_stop();
}

static int t_timeout(void)
{
	uint64_t r = 0;
	double t0, dt;
	int fd, ret;

	if (card_start("silent", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	t0 = now_s();
	ret = arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r);
	dt = now_s() - t0;
	CHECK(ret == -ETIMEDOUT, "silent card: %d", ret);
	CHECK(dt >= 1.9 && dt < 3.0, "timed out after %.2f s", dt);
	CHECK(stat_of("timeouts") == 1, "timeouts %lld", stat_of("timeouts"));
	close(fd);
	return card_stop();
}

static int t_error(void)
{
	uint8_t nop[8] = { 0, 0, 0, 0, 8, 0, 0, 0 };
	uint64_t r = 0;
	int fd;

	if (card_start("error", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(write(fd, nop, 8) == -1 && errno == EIO, "write on an erring card: %s", strerror(errno));
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r) == -EIO, "ADD on an erring card");
	CHECK(stat_of("errors") == 2, "errors %lld", stat_of("errors"));
	close(fd);
	return card_stop();
}

static int t_surprise_removal(void)
{
	uint8_t nop[8] = { 0, 0, 0, 0, 8, 0, 0, 0 };
	uint64_t r = 0;
	double t0;
	int fd, st;
	ssize_t n;

	if (card_start("die-after", "1"))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 2, &r) == 0 && r == 4, "first command");
	t0 = now_s();
	n = write(fd, nop, 8);
	CHECK(n == -1 && (errno == ENODEV || errno == ETIMEDOUT), "write during removal: %zd %s", n,
	      strerror(errno));
	diag("write during removal: %s after %.2f s", strerror(errno), now_s() - t0);
	waitpid(card_pid, &st, 0);
	card_pid = -1;
	CHECK(wait_path(DEVNODE, false, 5) == 0, DEVNODE " still there");
	CHECK(write(fd, nop, 8) == -1 && errno == ENODEV, "write after removal: %s", strerror(errno));
	CHECK(arith(fd, PROTOPCIEM_ARITH_ADD, 1, &r) == -ENODEV, "ioctl after removal");
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == ENODEV,
	      "mmap after removal");
	close(fd);
	return 0;
}

static int t_removal_with_mmap(void)
{
	volatile uint8_t *fb;
	int fd;

	if (card_start("normal", NULL))
		return -1;
	fd = open(DEVNODE, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	fb = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(fb != MAP_FAILED, "mmap: %s", strerror(errno));
	fb[0] = 1;
	if (card_stop())
		return -1;
	/* The mapping is gone with the card (touching it would be SIGBUS); closing is clean. */
	munmap((void *)fb, 4096);
	close(fd);
	return 0;
}

static const struct test tests[] = {
	{ "probe", t_probe, true },
	{ "arith", t_arith, true },
	{ "cmdbuf", t_cmdbuf, true },
	{ "frame", t_frame, true },
	{ "timeout", t_timeout, true },
	{ "error", t_error, true },
	{ "surprise_removal", t_surprise_removal, true },
	{ "removal_with_mmap", t_removal_with_mmap, true },
};

int main(int argc, char **argv)
{
	const char *card = getenv("PROTOPCIEM_CARD");

	snprintf(card_path, sizeof(card_path), "%s", card ? card : "./protopciem_card");
	signal(SIGPIPE, SIG_IGN);
	return selftest_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
