// SPDX-License-Identifier: GPL-2.0-only
/*
 * ppctl: use a ProtoPCIem card from the shell through its driver
 * (/dev/protopciem, kernel/protopciem_drv.c): arithmetic, command buffers,
 * frames. The end-to-end tests and the demo drive the card with it.
 *
 *   ppctl arith add 20              -> 40
 *   ppctl pattern 7 > frame.rgb     a 640x480 RGB888 test frame
 *   ppctl frame frame.rgb           show it (mmap'd buffer + SUBMIT_FRAME)
 *   ppctl cmdbuf cmds.bin           run a command buffer (write())
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/protopciem.h>

static const char *dev_path = "/dev/protopciem";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ppctl [-d DEVICE] COMMAND [ARGS]\n"
		"\n"
		"  arith add|mul|xor N     run an arithmetic command; prints the result\n"
		"  frame FILE [BUFFER]     show a 640x480 RGB888 frame (921600 bytes, or a\n"
		"                          P6 PPM of that size) from frame buffer BUFFER (0/1)\n"
		"  cmdbuf FILE             submit a command buffer (docs/protopciem.md)\n"
		"  pattern SEED            write a 640x480 RGB888 test frame to stdout\n"
		"  bench N                 N ADD commands one after the other; prints the\n"
		"                          round trip (doorbell to interrupt and result) p50/p99\n"
		"\n"
		"  -d DEVICE               the card's node (default /dev/protopciem)\n"
		"  -h                      this text\n");
}

static int fail(const char *what)
{
	fprintf(stderr, "ppctl: %s: %s\n", what, strerror(errno));
	return 1;
}

static int open_card(void)
{
	int fd = open(dev_path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fprintf(stderr, "ppctl: %s: %s%s\n", dev_path, strerror(errno),
			errno == ENOENT ? " (is protopciem.ko loaded and a card bound?)" : "");
	return fd;
}

/* Reads all of FILE (at most max bytes) into buf; returns the length or -1. */
static ssize_t read_file(const char *path, uint8_t *buf, size_t max)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	size_t got = 0;

	if (fd < 0) {
		fprintf(stderr, "ppctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, max - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "ppctl: reading %s: %s\n", path, strerror(errno));
			got = (size_t)-1;
			break;
		}
		if (n == 0)
			break;
		got += n;
		if (got == max) {
			char extra;

			if (read(fd, &extra, 1) == 1) {
				fprintf(stderr, "ppctl: %s: longer than %zu bytes\n", path, max);
				got = (size_t)-1;
			}
			break;
		}
	}
	if (fd)
		close(fd);
	return (ssize_t)got;
}

static int cmd_arith(int argc, char **argv)
{
	struct protopciem_arith a = { .argsz = sizeof(a) };
	char *end;
	unsigned long v;
	int fd;

	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "add"))
		a.op = PROTOPCIEM_ARITH_ADD;
	else if (!strcmp(argv[1], "mul"))
		a.op = PROTOPCIEM_ARITH_MULTIPLY;
	else if (!strcmp(argv[1], "xor"))
		a.op = PROTOPCIEM_ARITH_XOR;
	else {
		fprintf(stderr, "ppctl: arith: '%s' is not add, mul or xor\n", argv[1]);
		return 2;
	}
	errno = 0;
	v = strtoul(argv[2], &end, 0);
	if (errno || *end || end == argv[2] || v > UINT32_MAX) {
		fprintf(stderr, "ppctl: arith: '%s' is not a 32-bit number\n", argv[2]);
		return 2;
	}
	a.operand = v;
	fd = open_card();
	if (fd < 0)
		return 1;
	if (ioctl(fd, PROTOPCIEM_IOCTL_ARITH, &a))
		return fail("ARITH");
	printf("%llu\n", (unsigned long long)a.result);
	close(fd);
	return 0;
}

static int cmd_frame(int argc, char **argv)
{
	struct protopciem_submit_frame sf = { .argsz = sizeof(sf) };
	size_t len = (size_t)PROTOPCIEM_FRAME_BYTES * PROTOPCIEM_FRAMES;
	static uint8_t file[PROTOPCIEM_FRAME_BYTES + 64];
	const uint8_t *pixels = file;
	uint8_t *fb;
	ssize_t n;
	int fd;

	if (argc < 2 || argc > 3) {
		usage(stderr);
		return 2;
	}
	if (argc == 3) {
		if (strcmp(argv[2], "0") && strcmp(argv[2], "1")) {
			fprintf(stderr, "ppctl: frame: buffer '%s' is not 0 or 1\n", argv[2]);
			return 2;
		}
		sf.buffer = argv[2][0] - '0';
	}
	n = read_file(argv[1], file, sizeof(file));
	if (n < 0)
		return 1;
	/* A P6 PPM from QEMU's screendump or netpbm: "P6\n640 480\n255\n" + pixels. */
	if (n > PROTOPCIEM_FRAME_BYTES && !memcmp(file, "P6", 2)) {
		const char hdr[] = "P6\n640 480\n255\n";

		if ((size_t)n != sizeof(hdr) - 1 + PROTOPCIEM_FRAME_BYTES ||
		    memcmp(file, hdr, sizeof(hdr) - 1)) {
			fprintf(stderr, "ppctl: %s: a PPM must be P6 640x480, maxval 255\n", argv[1]);
			return 1;
		}
		pixels = file + sizeof(hdr) - 1;
	} else if (n != PROTOPCIEM_FRAME_BYTES) {
		fprintf(stderr, "ppctl: %s: %zd bytes; a frame is %d (640x480 RGB888)\n",
			argv[1], n, PROTOPCIEM_FRAME_BYTES);
		return 1;
	}
	fd = open_card();
	if (fd < 0)
		return 1;
	fb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fb == MAP_FAILED)
		return fail("mapping the frame buffers");
	memcpy(fb + (size_t)sf.buffer * PROTOPCIEM_FRAME_BYTES, pixels, PROTOPCIEM_FRAME_BYTES);
	if (ioctl(fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf))
		return fail("SUBMIT_FRAME");
	munmap(fb, len);
	close(fd);
	return 0;
}

static int cmd_cmdbuf(int argc, char **argv)
{
	uint8_t *buf;
	ssize_t n, w;
	int fd;

	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	buf = malloc(PROTOPCIEM_CMDBUF_BYTES);
	if (!buf)
		return fail("malloc");
	n = read_file(argv[1], buf, PROTOPCIEM_CMDBUF_BYTES);
	if (n <= 0) {
		if (n == 0)
			fprintf(stderr, "ppctl: %s: empty\n", argv[1]);
		free(buf);
		return 1;
	}
	fd = open_card();
	if (fd < 0) {
		free(buf);
		return 1;
	}
	w = write(fd, buf, n);
	free(buf);
	if (w < 0)
		return fail("submitting the command buffer");
	close(fd);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* N ARITH round trips, timed one by one: {"n":N,"p50_us":...,"p99_us":...}. */
static int cmd_bench(int argc, char **argv)
{
	struct protopciem_arith a = { .argsz = sizeof(a), .op = PROTOPCIEM_ARITH_ADD };
	unsigned long n, i;
	uint64_t *t;
	char *end;
	int fd;

	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	n = strtoul(argv[1], &end, 0);
	if (*end || end == argv[1] || n < 1 || n > 10000000) {
		fprintf(stderr, "ppctl: bench: '%s' is not a count from 1 to 10000000\n", argv[1]);
		return 2;
	}
	t = calloc(n, sizeof(*t));
	if (!t)
		return fail("calloc");
	fd = open_card();
	if (fd < 0) {
		free(t);
		return 1;
	}
	for (i = 0; i < n; i++) {
		struct timespec t0, t1;

		a.operand = i;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (ioctl(fd, PROTOPCIEM_IOCTL_ARITH, &a)) {
			free(t);
			return fail("ARITH");
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (a.result != 2 * (uint64_t)i) {
			fprintf(stderr, "ppctl: bench: ADD %lu gave %llu\n", i, (unsigned long long)a.result);
			free(t);
			return 1;
		}
		t[i] = (t1.tv_sec - t0.tv_sec) * 1000000000ull + t1.tv_nsec - t0.tv_nsec;
	}
	qsort(t, n, sizeof(*t), cmp_u64);
	printf("{\"n\": %lu, \"p50_us\": %.1f, \"p99_us\": %.1f}\n", n, t[n / 2] / 1e3, t[(n * 99) / 100] / 1e3);
	free(t);
	close(fd);
	return 0;
}

/* A frame every pixel of which depends on SEED and its position. */
static int cmd_pattern(int argc, char **argv)
{
	static uint8_t px[PROTOPCIEM_FRAME_BYTES];
	unsigned int seed, x, y;
	char *end;

	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	seed = strtoul(argv[1], &end, 0);
	if (*end || end == argv[1]) {
		fprintf(stderr, "ppctl: pattern: '%s' is not a number\n", argv[1]);
		return 2;
	}
	for (y = 0; y < 480; y++) {
		for (x = 0; x < 640; x++) {
			uint8_t *p = px + (y * 640 + x) * 3;

			p[0] = x ^ seed;
			p[1] = y + seed * 3;
			p[2] = (x * y) >> 4 ^ seed >> 8;
		}
	}
	if (fwrite(px, 1, sizeof(px), stdout) != sizeof(px) || fflush(stdout))
		return fail("writing the frame");
	return 0;
}

int main(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "+d:h")) != -1) {
		switch (c) {
		case 'd':
			dev_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "arith"))
		return cmd_arith(argc, argv);
	if (!strcmp(argv[0], "frame"))
		return cmd_frame(argc, argv);
	if (!strcmp(argv[0], "cmdbuf"))
		return cmd_cmdbuf(argc, argv);
	if (!strcmp(argv[0], "pattern"))
		return cmd_pattern(argc, argv);
	if (!strcmp(argv[0], "bench"))
		return cmd_bench(argc, argv);
	fprintf(stderr, "ppctl: unknown command '%s'\n", argv[0]);
	usage(stderr);
	return 2;
}
