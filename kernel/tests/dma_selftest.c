// SPDX-License-Identifier: GPL-2.0
/*
 * pciem DMA selftests, run as root inside the test VM with pciem.ko and
 * pciem_dmadrv.ko loaded. The driver (kernel/tests/dma_testdrv.c) maps
 * buffers the ordinary way when told to through debugfs; the card here
 * reaches them with DMA, DMA_ATOMIC, DMA_INDIRECT, DMA_SGL and P2P. One
 * behaviour per test, kselftest output (see selftest_lib.h):
 *
 *   dma_selftest [NAME...]      run the named tests (default: all)
 *   dma_selftest --list
 *
 * Environment: PCIEM_DMA_FUZZ_CALLS (default 100000); PCIEM_P2P_RANGE,
 * START+SIZE of physical memory that is not System RAM (boot the VM with
 * memmap=SIZE$START), for p2p_whitelist. iommu_on_no_group needs an IOMMU
 * (guests/vm/run --iommu) and runs only when named.
 */
#define _GNU_SOURCE
#include "selftest_lib.h"

#define MIB		(1u << 20)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define DRV_RESULT	8192
#define MAX_SEGS	256

static unsigned long fuzz_calls = 100000;

/* The extension structs' layouts (argsz first, sizes a multiple of 8). */
_Static_assert(sizeof(struct pciem_dma_mapping) == 24, "pciem_dma_mapping");
_Static_assert(sizeof(struct pciem_dma_mappings) == 40, "pciem_dma_mappings");
_Static_assert(sizeof(struct pciem_dma_sg_entry) == 16, "pciem_dma_sg_entry");
_Static_assert(sizeof(struct pciem_dma_sgl) == 56, "pciem_dma_sgl");
_Static_assert(sizeof(struct pciem_dma_stats) == 168, "pciem_dma_stats");
_Static_assert(PCIEM_IOCTL_DMA_MAPPINGS == 0xc028af38, "DMA_MAPPINGS");
_Static_assert(PCIEM_IOCTL_DMA_SGL == 0x4038af39, "DMA_SGL");
_Static_assert(PCIEM_IOCTL_DMA_STATS == 0xc0a8af3a, "DMA_STATS");

/* ---- the driver's debugfs interface ---- */

struct buf {
	int id;
	int nseg;
	uint64_t iova[MAX_SEGS];
	uint64_t len[MAX_SEGS];
	uint64_t size;			/* all segments */
};

static char drv_result[DRV_RESULT];

/* Runs a driver command; its result line lands in drv_result. Returns 0 or -errno. */
static int drv(const struct card *c, const char *fmt, ...)
{
	char path[256], line[128];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s/cmd", testdrv_root, c->bdf);
	ret = sysfs_write(path, "%s", line);
	drv_result[0] = 0;
	if (sysfs_read(path, drv_result, sizeof(drv_result)) < 0)
		return -EIO;
	return ret;
}

/* A buffer the driver maps: "ID IOVA LEN [IOVA LEN...]". */
static int drv_buf(const struct card *c, struct buf *b, const char *fmt, ...)
{
	char line[128], *p, *end;
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	memset(b, 0, sizeof(*b));
	ret = drv(c, "%s", line);
	if (ret) {
		diag("driver command '%s': %s", line, strerror(-ret));
		return ret;
	}
	b->id = strtol(drv_result, &p, 10);
	while (b->nseg < MAX_SEGS) {
		b->iova[b->nseg] = strtoull(p, &end, 0);
		if (end == p)
			break;
		b->len[b->nseg] = strtoull(end, &p, 0);
		b->size += b->len[b->nseg++];
	}
	if (!b->nseg) {
		diag("driver command '%s' answered '%s'", line, drv_result);
		return -EIO;
	}
	return 0;
}

/* Reads or writes bytes of a buffer as the CPU sees them (sg: entries back to back). */
static int drv_data(const struct card *c, const struct buf *b, uint64_t off, void *p, size_t len,
		    bool write)
{
	char path[256];
	ssize_t n;
	int fd;

	if (drv(c, "select %d", b->id))
		return -1;
	snprintf(path, sizeof(path), "%s/%s/data", testdrv_root, c->bdf);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	while (len) {
		n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);
		if (n <= 0)
			break;
		p = (char *)p + n;
		off += n;
		len -= n;
	}
	close(fd);
	return len ? -1 : 0;
}

/* ---- the card's side ---- */

static int dma_op(const struct card *c, uint64_t iova, void *p, uint32_t len, bool write)
{
	struct pciem_dma_op op = {
		.guest_iova = iova, .user_addr = (uintptr_t)p, .length = len,
		.flags = write ? PCIEM_DMA_FLAG_WRITE : PCIEM_DMA_FLAG_READ,
	};

	return ioctl(c->fd, PCIEM_IOCTL_DMA, &op) ? -errno : 0;
}

static int atomic_op(const struct card *c, uint64_t iova, uint32_t type, uint64_t operand,
		     uint64_t compare, uint64_t *result)
{
	struct pciem_dma_atomic a = { .guest_iova = iova, .operand = operand, .compare = compare,
				      .op_type = type };

	if (ioctl(c->fd, PCIEM_IOCTL_DMA_ATOMIC, &a))
		return -errno;
	*result = a.result;
	return 0;
}

static int prp_op(const struct card *c, uint64_t prp1, uint64_t prp2, void *p, uint32_t len,
		  uint32_t page_size, bool write)
{
	struct pciem_dma_indirect in = {
		.prp1 = prp1, .prp2 = prp2, .user_addr = (uintptr_t)p, .length = len,
		.page_size = page_size, .flags = write ? PCIEM_DMA_FLAG_WRITE : PCIEM_DMA_FLAG_READ,
	};

	return ioctl(c->fd, PCIEM_IOCTL_DMA_INDIRECT, &in) ? -errno : 0;
}

static int sgl_op(const struct card *c, const struct pciem_dma_sg_entry *e, uint32_t n, void *p,
		  uint64_t len, bool write)
{
	struct pciem_dma_sgl s = {
		.argsz = sizeof(s), .flags = write ? PCIEM_DMA_FLAG_WRITE : PCIEM_DMA_FLAG_READ,
		.nentries = n, .entries = (uintptr_t)e, .user_addr = (uintptr_t)p, .length = len,
	};

	return ioctl(c->fd, PCIEM_IOCTL_DMA_SGL, &s) ? -errno : 0;
}

static int p2p_op(const struct card *c, uint64_t target, void *p, uint32_t len, bool write)
{
	struct pciem_p2p_op_user op = {
		.target_phys_addr = target, .user_addr = (uintptr_t)p, .length = len,
		.flags = write ? PCIEM_DMA_FLAG_WRITE : PCIEM_DMA_FLAG_READ,
	};

	return ioctl(c->fd, PCIEM_IOCTL_P2P, &op) ? -errno : 0;
}

static struct pciem_dma_stats dma_stats(const struct card *c)
{
	struct pciem_dma_stats st = { .argsz = sizeof(st) };

	if (ioctl(c->fd, PCIEM_IOCTL_DMA_STATS, &st))
		diag("DMA_STATS: %s", strerror(errno));
	return st;
}

static void fill_random(void *p, size_t len, uint32_t seed)
{
	uint8_t *b = p;
	size_t i;

	seed |= 1;
	for (i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		b[i] = seed;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

/* First differing byte of two buffers, or -1. */
static long first_diff(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
	size_t i;

	for (i = 0; i < n; i++)
		if (x[i] != y[i])
			return i;
	return -1;
}

/* ---- fixture: one card with the DMA test driver bound ---- */

static int with_card(int (*body)(struct card *c))
{
	struct card c;
	int r;

	if (card_for_testdrv(&c, 0))
		return -1;
	r = body(&c);
	card_close(&c);
	return r;
}

#define DMA_TEST(name)						\
	static int body_##name(struct card *c);			\
	static int t_##name(void) { return with_card(body_##name); }	\
	static int body_##name(struct card *c)

/* Offsets and lengths from 1 byte to 4 MiB, aligned and not, inside 4 MiB. */
static const struct { uint32_t off, len; } spans[] = {
	{ 0, 1 }, { 1, 1 }, { 4095, 2 }, { 7, 100 }, { 4093, 8192 + 5 }, { 0, 4096 },
	{ 65535, 65537 }, { 123457, MIB }, { 3 * MIB + 17, MIB - 17 }, { 4097, 4 * MIB - 4097 },
	{ 4 * MIB - 1, 1 }, { 0, 4 * MIB },
};

/* The card reads [off, off + len) of a buffer the driver filled: byte for byte. */
static int check_reads(struct card *c, const struct buf *b, uint64_t iova, uint64_t size)
{
	uint8_t *want = xmalloc(size), *got = xmalloc(size);
	size_t i;
	long d;

	fill_random(want, size, b->id + 11);
	CHECK(drv_data(c, b, 0, want, size, true) == 0, "driver data write");
	for (i = 0; i < ARRAY_SIZE(spans); i++) {
		if (spans[i].off + spans[i].len > size)
			continue;
		memset(got, 0xa5, spans[i].len);
		CHECK(dma_op(c, iova + spans[i].off, got, spans[i].len, false) == 0,
		      "DMA read %u bytes at +%u: %s", spans[i].len, spans[i].off, strerror(errno));
		d = first_diff(got, want + spans[i].off, spans[i].len);
		CHECK(d < 0, "DMA read %u bytes at +%u differs at byte %ld", spans[i].len,
		      spans[i].off, d);
	}
	free(want);
	free(got);
	return 0;
}

/* The card writes [off, off + len): exactly those bytes change. */
static int check_writes(struct card *c, const struct buf *b, uint64_t iova, uint64_t size)
{
	uint8_t *before = xmalloc(size), *data = xmalloc(size), *after = xmalloc(size);
	size_t i;
	long d;

	for (i = 0; i < ARRAY_SIZE(spans); i++) {
		uint32_t off = spans[i].off, len = spans[i].len;

		if (off + len > size)
			continue;
		fill_random(before, size, i + 1);
		CHECK(drv_data(c, b, 0, before, size, true) == 0, "driver data write");
		fill_random(data, len, i + 1000);
		CHECK(dma_op(c, iova + off, data, len, true) == 0, "DMA write %u bytes at +%u: %s",
		      len, off, strerror(errno));
		CHECK(drv_data(c, b, 0, after, size, false) == 0, "driver data read");
		d = first_diff(after + off, data, len);
		CHECK(d < 0, "DMA write %u bytes at +%u: byte %ld differs", len, off, d);
		memcpy(before + off, data, len);
		d = first_diff(after, before, size);
		CHECK(d < 0, "DMA write %u bytes at +%u changed byte %ld outside", len, off, d);
	}
	free(before);
	free(data);
	free(after);
	return 0;
}

/* ---- tests ---- */

DMA_TEST(read_coherent)
{
	struct buf b;

	CHECK(drv_buf(c, &b, "coherent %u", 4 * MIB) == 0, "coherent");
	return check_reads(c, &b, b.iova[0], b.size);
}

DMA_TEST(write_coherent)
{
	struct buf b;

	CHECK(drv_buf(c, &b, "coherent %u", 4 * MIB) == 0, "coherent");
	return check_writes(c, &b, b.iova[0], b.size);
}

DMA_TEST(read_write_streaming)
{
	struct buf b, u;

	/* dma_map_single of 4 MiB, and of an unaligned buffer. */
	CHECK(drv_buf(c, &b, "single %u 0 bidi 1", 4 * MIB) == 0, "single");
	if (check_reads(c, &b, b.iova[0], b.size) || check_writes(c, &b, b.iova[0], b.size))
		return -1;
	CHECK(drv_buf(c, &u, "single %u 13 bidi 1", MIB + 3) == 0, "unaligned single");
	CHECK(u.iova[0] % 4096 == 13, "iova %" PRIx64 " of a buffer at page offset 13", u.iova[0]);
	if (check_reads(c, &u, u.iova[0], u.size) || check_writes(c, &u, u.iova[0], u.size))
		return -1;
	return 0;
}

DMA_TEST(read_write_sg)
{
	uint8_t *want, *got;
	struct buf b, p;
	uint64_t off = 0;
	int i;

	/* Seven separate chunks; the card reaches each DMA segment on its own. */
	CHECK(drv_buf(c, &b, "sg %u 7 bidi", MIB + 13) == 0, "sg");
	CHECK(b.nseg == 7 && b.size == MIB + 13, "%d segments, %" PRIu64 " bytes", b.nseg, b.size);
	want = xmalloc(b.size);
	got = xmalloc(b.size);
	fill_random(want, b.size, 77);
	for (i = 0; i < b.nseg; i++) {
		CHECK(dma_op(c, b.iova[i], want + off, b.len[i], true) == 0, "DMA write segment %d: %s",
		      i, strerror(errno));
		off += b.len[i];
	}
	CHECK(drv_data(c, &b, 0, got, b.size, false) == 0, "driver data read");
	CHECK(first_diff(got, want, b.size) < 0, "the driver sees other bytes");
	fill_random(want, b.size, 78);
	CHECK(drv_data(c, &b, 0, want, b.size, true) == 0, "driver data write");
	for (i = 0, off = 0; i < b.nseg; i++) {
		CHECK(dma_op(c, b.iova[i] + 1, got, b.len[i] - 1, false) == 0, "DMA read segment %d",
		      i);
		CHECK(first_diff(got, want + off + 1, b.len[i] - 1) < 0, "segment %d differs", i);
		off += b.len[i];
	}
	/* dma_alloc_noncoherent memory too. */
	CHECK(drv_buf(c, &p, "pages %u bidi", 65536) == 0, "pages");
	if (check_reads(c, &p, p.iova[0], p.size) || check_writes(c, &p, p.iova[0], p.size))
		return -1;
	free(want);
	free(got);
	return 0;
}

DMA_TEST(crossing_mappings)
{
	uint8_t data[8192], back[8192], tail[4096], tail2[4096];
	struct buf b;

	/* One allocation mapped by two dma_map_single calls: adjacent IOVAs. */
	CHECK(drv_buf(c, &b, "single %u 0 bidi 2", 131072) == 0, "single in 2 parts");
	CHECK(b.nseg == 2 && b.iova[1] == b.iova[0] + 65536, "parts at %" PRIx64 " and %" PRIx64,
	      b.iova[0], b.iova[1]);
	fill_random(data, sizeof(data), 5);
	CHECK(dma_op(c, b.iova[1] - 4096, data, 8192, true) == 0, "write across: %s", strerror(errno));
	CHECK(dma_op(c, b.iova[1] - 4096, back, 8192, false) == 0, "read across: %s", strerror(errno));
	CHECK(!memcmp(data, back, 8192), "bytes across the two mappings");
	/* Past the end of the second: refused, and nothing moves. */
	CHECK(drv_data(c, &b, 131072 - 4096, tail, 4096, false) == 0, "driver data read");
	memset(data, 0x77, sizeof(data));
	CHECK(dma_op(c, b.iova[1] + 65536 - 4096, data, 8192, true) == -EFAULT, "write past the end");
	CHECK(drv_data(c, &b, 131072 - 4096, tail2, 4096, false) == 0, "driver data read");
	CHECK(!memcmp(tail, tail2, 4096), "the refused write changed bytes");
	/* The second part unmapped: the same span is no longer covered. */
	CHECK(drv(c, "unmap %d 1", b.id) == 0, "unmap part 1");
	CHECK(dma_op(c, b.iova[1] - 4096, back, 8192, false) == -EFAULT, "read across a hole");
	CHECK(dma_op(c, b.iova[1] - 4096, back, 4096, false) == 0, "read of the part still mapped");
	return 0;
}

DMA_TEST(unmapped_refused)
{
	struct pciem_dma_stats s0, s1;
	uint8_t p[4096], before[4096], after[4096];
	struct buf b;

	CHECK(drv_buf(c, &b, "coherent %u", 8192) == 0, "coherent");
	fill_random(before, sizeof(before), 9);
	CHECK(drv_data(c, &b, 4096, before, 4096, true) == 0, "driver data write");
	s0 = dma_stats(c);
	CHECK(dma_op(c, b.iova[0] + 8192, p, 1, false) == -EFAULT, "the byte after the buffer");
	CHECK(dma_op(c, b.iova[0] - 1, p, 1, false) == -EFAULT, "the byte before");
	CHECK(dma_op(c, 0x1000, p, 16, false) == -EFAULT, "low memory");
	CHECK(dma_op(c, 0xfffffffffffff000ull, p, 4096, false) == -EFAULT, "top of the IOVA space");
	/* Starts inside, ends outside: refused whole, nothing written. */
	memset(p, 0x5a, sizeof(p));
	CHECK(dma_op(c, b.iova[0] + 4096 + 1, p, 4096, true) == -EFAULT, "write running past the end");
	CHECK(drv_data(c, &b, 4096, after, 4096, false) == 0, "driver data read");
	CHECK(!memcmp(before, after, 4096), "a refused write changed host memory");
	s1 = dma_stats(c);
	CHECK(s1.refused_unmapped == s0.refused_unmapped + 5, "refused_unmapped %llu -> %llu",
	      s0.refused_unmapped, s1.refused_unmapped);
	CHECK(s1.reads == s0.reads && s1.writes == s0.writes, "refusals counted as transfers");
	return 0;
}

DMA_TEST(direction_enforced)
{
	struct buf to, from;
	uint8_t p[256];
	uint64_t r;

	CHECK(drv_buf(c, &to, "single 4096 0 to 1") == 0, "TO_DEVICE single");
	CHECK(drv_buf(c, &from, "single 4096 0 from 1") == 0, "FROM_DEVICE single");
	CHECK(dma_op(c, to.iova[0], p, sizeof(p), false) == 0, "read of a TO_DEVICE mapping");
	CHECK(dma_op(c, to.iova[0], p, sizeof(p), true) == -EFAULT, "write to a TO_DEVICE mapping");
	CHECK(atomic_op(c, to.iova[0], PCIEM_ATOMIC_FETCH_ADD, 1, 0, &r) == -EFAULT,
	      "atomic on a TO_DEVICE mapping");
	CHECK(dma_op(c, from.iova[0], p, sizeof(p), true) == 0, "write to a FROM_DEVICE mapping");
	CHECK(dma_op(c, from.iova[0], p, sizeof(p), false) == 0, "read of a FROM_DEVICE mapping");
	return 0;
}

DMA_TEST(bus_master_off)
{
	struct pciem_dma_sg_entry e;
	struct pciem_dma_stats s0, s1;
	uint8_t p[64];
	uint64_t r;
	struct buf b;

	CHECK(drv_buf(c, &b, "coherent 8192") == 0, "coherent");
	e.iova = b.iova[0];
	e.len = sizeof(p);
	CHECK(dma_op(c, b.iova[0], p, sizeof(p), false) == 0, "DMA with bus mastering on");
	CHECK(drv(c, "master 0") == 0, "master 0");
	CHECK(!(cfg_get(c->bdf, PCI_COMMAND, 2) & PCI_COMMAND_MASTER), "Bus Master Enable still set");
	s0 = dma_stats(c);
	CHECK(dma_op(c, b.iova[0], p, sizeof(p), false) == -EPERM, "DMA read");
	CHECK(dma_op(c, b.iova[0], p, sizeof(p), true) == -EPERM, "DMA write");
	CHECK(atomic_op(c, b.iova[0], PCIEM_ATOMIC_FETCH_ADD, 1, 0, &r) == -EPERM, "atomic");
	CHECK(prp_op(c, b.iova[0], 0, p, sizeof(p), 4096, false) == -EPERM, "PRP");
	CHECK(sgl_op(c, &e, 1, p, sizeof(p), false) == -EPERM, "SGL");
	CHECK(p2p_op(c, 0x1000, p, sizeof(p), false) == -EPERM, "P2P");
	s1 = dma_stats(c);
	CHECK(s1.refused_master == s0.refused_master + 6, "refused_master %llu -> %llu",
	      s0.refused_master, s1.refused_master);
	CHECK(drv(c, "master 1") == 0, "master 1");
	CHECK(dma_op(c, b.iova[0], p, sizeof(p), false) == 0, "DMA with bus mastering back on");
	return 0;
}

DMA_TEST(freed_refused)
{
	struct buf co, si, sg;
	uint8_t p[64];

	CHECK(drv_buf(c, &co, "coherent 4096") == 0, "coherent");
	CHECK(drv_buf(c, &si, "single 4096 0 bidi 1") == 0, "single");
	CHECK(drv_buf(c, &sg, "sg 8192 2 bidi") == 0, "sg");
	CHECK(dma_op(c, co.iova[0], p, sizeof(p), true) == 0, "coherent while mapped");
	CHECK(dma_op(c, si.iova[0], p, sizeof(p), true) == 0, "single while mapped");
	CHECK(dma_op(c, sg.iova[1], p, sizeof(p), true) == 0, "sg while mapped");
	CHECK(drv(c, "free %d", co.id) == 0 && drv(c, "free %d", si.id) == 0 &&
	      drv(c, "free %d", sg.id) == 0, "free");
	CHECK(dma_op(c, co.iova[0], p, sizeof(p), true) == -EFAULT, "coherent after dma_free_coherent");
	CHECK(dma_op(c, si.iova[0], p, sizeof(p), false) == -EFAULT, "single after dma_unmap_single");
	CHECK(dma_op(c, sg.iova[0], p, sizeof(p), false) == -EFAULT, "sg segment 0 after dma_unmap_sgtable");
	CHECK(dma_op(c, sg.iova[1], p, sizeof(p), false) == -EFAULT, "sg segment 1 after dma_unmap_sgtable");
	return 0;
}

static int list_mappings(const struct card *c, struct pciem_dma_mapping *e, uint32_t room)
{
	struct pciem_dma_mappings q = { .argsz = sizeof(q), .count = room, .entries = (uintptr_t)e };

	if (ioctl(c->fd, PCIEM_IOCTL_DMA_MAPPINGS, &q))
		return -errno;
	return q.count;
}

/* Is [iova, iova + size) of this kind and direction in the list? */
static bool listed(const struct pciem_dma_mapping *e, int n, uint64_t iova, uint64_t size,
		   uint32_t kind, uint32_t dir)
{
	int i;

	for (i = 0; i < n; i++)
		if (e[i].iova == iova && e[i].size == size && e[i].kind == kind && e[i].dir == dir)
			return true;
	return false;
}

DMA_TEST(mappings_list)
{
	struct pciem_dma_mapping e[64];
	struct buf co, si, sg, pg;
	int n, i;

	CHECK(list_mappings(c, e, 64) == 0, "a new driver maps nothing");
	CHECK(drv_buf(c, &co, "coherent 8192") == 0, "coherent");
	CHECK(drv_buf(c, &si, "single 12288 100 to 3") == 0, "single");
	CHECK(drv_buf(c, &sg, "sg 20000 5 from") == 0, "sg");
	CHECK(drv_buf(c, &pg, "pages 16384 bidi") == 0, "pages");
	n = list_mappings(c, e, 64);
	CHECK(n == 1 + 3 + 5 + 1, "%d mappings listed", n);
	CHECK(list_mappings(c, NULL, 0) == n, "count-only query");
	CHECK(list_mappings(c, e, 2) == n, "a short buffer still gets the count");
	n = list_mappings(c, e, 64);
	for (i = 1; i < n; i++)
		CHECK(e[i].iova >= e[i - 1].iova, "not sorted by IOVA");
	CHECK(listed(e, n, co.iova[0], 8192, PCIEM_DMA_MAP_COHERENT, PCIEM_DMA_DIR_BIDIRECTIONAL),
	      "coherent");
	for (i = 0; i < 3; i++)
		CHECK(listed(e, n, si.iova[i], 4096, PCIEM_DMA_MAP_SINGLE, PCIEM_DMA_DIR_TO_DEVICE),
		      "single part %d", i);
	for (i = 0; i < 5; i++)
		CHECK(listed(e, n, sg.iova[i], sg.len[i], PCIEM_DMA_MAP_SG, PCIEM_DMA_DIR_FROM_DEVICE),
		      "sg segment %d", i);
	CHECK(listed(e, n, pg.iova[0], 16384, PCIEM_DMA_MAP_PAGES, PCIEM_DMA_DIR_BIDIRECTIONAL),
	      "pages");
	CHECK(drv(c, "free %d", sg.id) == 0 && drv(c, "unmap %d 1", si.id) == 0, "free");
	n = list_mappings(c, e, 64);
	CHECK(n == 1 + 2 + 1, "%d mappings after unmapping 6", n);
	CHECK(!listed(e, n, si.iova[1], 4096, PCIEM_DMA_MAP_SINGLE, PCIEM_DMA_DIR_TO_DEVICE),
	      "the unmapped part is still listed");
	CHECK(dma_stats(c).mappings == 4, "DMA_STATS mappings");
	return 0;
}

static uint64_t drv_u64(struct card *c, const struct buf *b, uint64_t off)
{
	uint64_t v = 0xdeaddeaddeaddeadull;

	drv_data(c, b, off, &v, 8, false);
	return v;
}

DMA_TEST(atomic_ops)
{
	static const struct {
		uint32_t op;
		uint64_t init, operand, compare, final;
	} t[] = {
		{ PCIEM_ATOMIC_FETCH_ADD, 40, 2, 0, 42 },
		{ PCIEM_ATOMIC_FETCH_ADD, ~0ull, 1, 0, 0 },
		{ PCIEM_ATOMIC_FETCH_SUB, 42, 50, 0, (uint64_t)-8 },
		{ PCIEM_ATOMIC_SWAP, 7, 0x1122334455667788ull, 0, 0x1122334455667788ull },
		{ PCIEM_ATOMIC_CAS, 5, 9, 5, 9 },
		{ PCIEM_ATOMIC_CAS, 5, 9, 6, 5 },
		{ PCIEM_ATOMIC_FETCH_AND, 0xff00ff00ff00ff00ull, 0x0ff00ff00ff00ff0ull, 0,
		  0x0f000f000f000f00ull },
		{ PCIEM_ATOMIC_FETCH_OR, 0xf0, 0x0f, 0, 0xff },
		{ PCIEM_ATOMIC_FETCH_XOR, 0xaaaa, 0xffff, 0, 0x5555 },
	};
	uint64_t r, v;
	struct buf b;
	size_t i;

	CHECK(drv_buf(c, &b, "coherent 4096") == 0, "coherent");
	for (i = 0; i < ARRAY_SIZE(t); i++) {
		v = t[i].init;
		CHECK(drv_data(c, &b, 4088, &v, 8, true) == 0, "driver data write");
		r = 0xbad;
		CHECK(atomic_op(c, b.iova[0] + 4088, t[i].op, t[i].operand, t[i].compare, &r) == 0,
		      "op %u: %s", t[i].op, strerror(errno));
		CHECK(r == t[i].init, "op %u returned %" PRIx64 ", not the old %" PRIx64, t[i].op, r,
		      t[i].init);
		v = drv_u64(c, &b, 4088);
		CHECK(v == t[i].final, "op %u left %" PRIx64 ", not %" PRIx64, t[i].op, v, t[i].final);
	}
	/* Errors are errnos, never results. */
	CHECK(atomic_op(c, b.iova[0] + 4, PCIEM_ATOMIC_FETCH_ADD, 1, 0, &r) == -EINVAL, "misaligned");
	CHECK(atomic_op(c, b.iova[0], 0, 1, 0, &r) == -EOPNOTSUPP, "op 0");
	CHECK(atomic_op(c, b.iova[0], 8, 1, 0, &r) == -EOPNOTSUPP, "op 8");
	CHECK(atomic_op(c, b.iova[0] + 4096, PCIEM_ATOMIC_SWAP, 1, 0, &r) == -EFAULT, "unmapped");
	CHECK(drv_u64(c, &b, 4088) == 0x5555, "an error changed memory");
	return 0;
}

struct race_arg {
	const struct card *c;
	uint64_t iova;
	int n;
	int bad;
};

static void *race_card(void *p)
{
	struct race_arg *a = p;
	uint64_t r = 0, last = 0;
	int i;

	for (i = 0; i < a->n; i++) {
		if (atomic_op(a->c, a->iova, PCIEM_ATOMIC_FETCH_ADD, 1, 0, &r) || (i && r <= last))
			a->bad++;
		last = r;
	}
	return NULL;
}

DMA_TEST(atomic_race)
{
	struct race_arg a[2];
	pthread_t th[2];
	uint64_t zero = 0, v;
	const int threads = 2, iters = 200000, card_ops = 20000;
	struct buf b;
	int i;

	CHECK(drv_buf(c, &b, "coherent 4096") == 0, "coherent");
	CHECK(drv_data(c, &b, 64, &zero, 8, true) == 0, "driver data write");
	/* Driver threads atomic64_inc() the same u64 the card fetch-adds. */
	CHECK(drv(c, "race %d 64 %d %d", b.id, threads, iters) == 0, "race: %s", drv_result);
	for (i = 0; i < 2; i++) {
		a[i] = (struct race_arg){ .c = c, .iova = b.iova[0] + 64, .n = card_ops / 2 };
		pthread_create(&th[i], NULL, race_card, &a[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(drv(c, "racewait") == 0, "racewait");
	CHECK(!a[0].bad && !a[1].bad, "%d + %d fetch-adds failed or went backwards", a[0].bad, a[1].bad);
	v = drv_u64(c, &b, 64);
	CHECK(v == (uint64_t)threads * iters + card_ops, "final %" PRIu64 ", expected %" PRIu64, v,
	      (uint64_t)threads * iters + card_ops);
	diag("final value %" PRIu64 " = %d x %d driver increments + %d card fetch-adds", v, threads,
	     iters, card_ops);
	return 0;
}

/* ---- PRP ---- */

/* A data buffer of npages pages and a list buffer the card fills with PRP entries. */
struct prp_rig {
	struct buf data, list;
	uint32_t ps;
	int npages;
	uint64_t page[1024];		/* the data pages, in the order the transfer uses */
};

static int prp_rig(struct card *c, struct prp_rig *r, uint32_t ps, int npages)
{
	int i, j;

	r->ps = ps;
	r->npages = npages;
	CHECK(drv_buf(c, &r->data, "coherent %u", ps * npages) == 0, "data buffer");
	CHECK(drv_buf(c, &r->list, "coherent %u", 4 * ps) == 0, "list buffer");
	CHECK(r->data.iova[0] % ps == 0 && r->list.iova[0] % ps == 0,
	      "coherent buffers not aligned to %u", ps);
	/* The transfer visits the pages in a scrambled order. */
	for (i = 0; i < npages; i++)
		r->page[i] = r->data.iova[0] + (uint64_t)i * ps;
	for (i = npages - 1; i > 0; i--) {
		uint64_t t;

		j = (i * 7919 + 13) % (i + 1);
		t = r->page[i];
		r->page[i] = r->page[j];
		r->page[j] = t;
	}
	return 0;
}

/* What the data buffer holds after bytes go to the pages in r->page order. */
static void prp_scatter(const struct prp_rig *r, uint8_t *host, const uint8_t *bytes,
			uint32_t first_off, uint32_t len)
{
	uint32_t done = 0, n, off = first_off;
	int i;

	for (i = 0; done < len; i++, off = 0) {
		n = r->ps - off;
		if (n > len - done)
			n = len - done;
		memcpy(host + (r->page[i] - r->data.iova[0]) + off, bytes + done, n);
		done += n;
	}
}

/* Writes to the host through PRPs and reads back; checks every byte of the data buffer. */
static int prp_roundtrip(struct card *c, struct prp_rig *r, uint64_t prp2, uint32_t first_off,
			 uint32_t len)
{
	size_t size = (size_t)r->ps * r->npages;
	uint8_t *host = xmalloc(size), *bytes = xmalloc(len), *back = xmalloc(len), *got = xmalloc(size);
	long d;

	fill_random(host, size, len);
	CHECK(drv_data(c, &r->data, 0, host, size, true) == 0, "driver data write");
	fill_random(bytes, len, len + 1);
	CHECK(prp_op(c, r->page[0] + first_off, prp2, bytes, len, r->ps, true) == 0,
	      "PRP write of %u bytes: %s", len, strerror(errno));
	prp_scatter(r, host, bytes, first_off, len);
	CHECK(drv_data(c, &r->data, 0, got, size, false) == 0, "driver data read");
	d = first_diff(got, host, size);
	CHECK(d < 0, "PRP write of %u bytes: host byte %ld differs", len, d);
	CHECK(prp_op(c, r->page[0] + first_off, prp2, back, len, r->ps, false) == 0,
	      "PRP read of %u bytes: %s", len, strerror(errno));
	d = first_diff(back, bytes, len);
	CHECK(d < 0, "PRP read of %u bytes: byte %ld differs", len, d);
	free(host);
	free(bytes);
	free(back);
	free(got);
	return 0;
}

/* Writes PRP list entries into the list buffer at byte offset off. */
static int prp_list_put(struct card *c, struct prp_rig *r, uint64_t off, const uint64_t *e, int n)
{
	return drv_data(c, &r->list, off, (void *)e, n * 8, true);
}

DMA_TEST(prp_one_page)
{
	struct prp_rig r;

	if (prp_rig(c, &r, 4096, 4))
		return -1;
	if (prp_roundtrip(c, &r, 0, 0, 4096) || prp_roundtrip(c, &r, 0, 100, 3996) ||
	    prp_roundtrip(c, &r, 0, 4095, 1))
		return -1;
	/* PRP2 is not looked at: garbage there is fine. */
	return prp_roundtrip(c, &r, 0xdead0001, 10, 50);
}

DMA_TEST(prp_two_pages)
{
	struct prp_rig r;

	if (prp_rig(c, &r, 4096, 4))
		return -1;
	if (prp_roundtrip(c, &r, r.page[1], 0, 8192) || prp_roundtrip(c, &r, r.page[1], 1000, 4000))
		return -1;
	if (prp_rig(c, &r, 16384, 2))
		return -1;
	return prp_roundtrip(c, &r, r.page[1], 5, 16384 + 100);
}

DMA_TEST(prp_list)
{
	struct prp_rig r;
	int n = 40;

	/* PRP1 and a list of n - 1 entries, at an 8-byte aligned offset in the list page. */
	if (prp_rig(c, &r, 4096, n))
		return -1;
	CHECK(prp_list_put(c, &r, 64, r.page + 1, n - 1) == 0, "list");
	if (prp_roundtrip(c, &r, r.list.iova[0] + 64, 0, n * 4096) ||
	    prp_roundtrip(c, &r, r.list.iova[0] + 64, 17, (n - 1) * 4096))
		return -1;
	/* 16 KiB pages. */
	if (prp_rig(c, &r, 16384, 9))
		return -1;
	CHECK(prp_list_put(c, &r, 0, r.page + 1, 8) == 0, "list");
	return prp_roundtrip(c, &r, r.list.iova[0], 3, 8 * 16384 + 1);
}

DMA_TEST(prp_chained)
{
	uint64_t e[520];
	struct prp_rig r;
	int n = 600, i;

	/*
	 * The first list sits 24 bytes before the end of its page: two data
	 * entries and a pointer to the second list, whose last entry points
	 * to a third: 1 + 2 + 511 + 86 pages.
	 */
	if (prp_rig(c, &r, 4096, n))
		return -1;
	e[0] = r.page[1];
	e[1] = r.page[2];
	e[2] = r.list.iova[0] + 4096;
	CHECK(prp_list_put(c, &r, 4096 - 24, e, 3) == 0, "list 1");
	for (i = 0; i < 511; i++)
		e[i] = r.page[3 + i];
	e[511] = r.list.iova[0] + 3 * 4096;
	CHECK(prp_list_put(c, &r, 4096, e, 512) == 0, "list 2");
	for (i = 0; i < n - 514; i++)
		e[i] = r.page[514 + i];
	CHECK(prp_list_put(c, &r, 3 * 4096, e, n - 514) == 0, "list 3");
	return prp_roundtrip(c, &r, r.list.iova[0] + 4096 - 24, 0, n * 4096);
}

DMA_TEST(prp_errors)
{
	uint8_t *p = xmalloc(65536), before[4096], after[4096];
	struct prp_rig r;
	uint64_t e[4];

	if (prp_rig(c, &r, 4096, 8))
		return -1;
	CHECK(prp_op(c, r.page[0], 0, p, 100, 2048, false) == -EINVAL, "page size 2 KiB");
	CHECK(prp_op(c, r.page[0], 0, p, 100, 12288, false) == -EINVAL, "page size 12 KiB");
	CHECK(prp_op(c, r.page[0], 0, p, 100, 131072, false) == -EINVAL, "page size 128 KiB");
	CHECK(prp_op(c, r.page[0], 0, p, 0, 4096, false) == 0, "an empty transfer");
	CHECK(prp_op(c, r.page[0], r.page[1] + 8, p, 8192, 4096, false) == -EINVAL,
	      "PRP2 data pointer with an offset");
	CHECK(prp_op(c, r.page[0], r.list.iova[0] + 4, p, 4 * 4096, 4096, false) == -EINVAL,
	      "list pointer not 8-byte aligned");
	e[0] = r.page[1];
	e[1] = r.page[2] + 512;
	e[2] = r.page[3];
	CHECK(prp_list_put(c, &r, 0, e, 3) == 0, "list");
	CHECK(prp_op(c, r.page[0], r.list.iova[0], p, 4 * 4096, 4096, false) == -EINVAL,
	      "list entry with an offset");
	e[1] = 0x7000;
	CHECK(prp_list_put(c, &r, 0, e, 3) == 0, "list");
	/* A data page outside the mappings: refused before any byte moves. */
	fill_random(before, 4096, 3);
	CHECK(drv_data(c, &r.data, r.page[0] - r.data.iova[0], before, 4096, true) == 0, "data");
	memset(p, 0x33, 65536);
	CHECK(prp_op(c, r.page[0], r.list.iova[0], p, 4 * 4096, 4096, true) == -EFAULT,
	      "unmapped data page");
	CHECK(drv_data(c, &r.data, r.page[0] - r.data.iova[0], after, 4096, false) == 0, "data");
	CHECK(!memcmp(before, after, 4096), "the refused PRP write moved bytes");
	CHECK(prp_op(c, r.page[0], r.list.iova[0] + 16 * 4096, p, 4 * 4096, 4096, false) == -EFAULT,
	      "list outside the mappings");
	free(p);
	return 0;
}

DMA_TEST(sgl)
{
	struct pciem_dma_sg_entry e[16];
	uint8_t *want, *got, *host;
	struct buf b;
	uint64_t total = 0, off[16];
	int i, n;

	CHECK(drv_buf(c, &b, "sg %u 9 bidi", 9 * 8192 + 100) == 0, "sg");
	n = b.nseg;
	/* Every segment but a few bytes at each end, in reverse order. */
	for (i = 0; i < n; i++) {
		e[i].iova = b.iova[n - 1 - i] + 3;
		e[i].len = b.len[n - 1 - i] - 5;
		total += e[i].len;
	}
	for (i = 0, off[0] = 0; i < n - 1; i++)
		off[i + 1] = off[i] + b.len[i];
	want = xmalloc(total);
	got = xmalloc(total);
	host = xmalloc(b.size);
	CHECK(drv_data(c, &b, 0, host, b.size, false) == 0, "driver data read");
	fill_random(want, total, 21);
	CHECK(sgl_op(c, e, n, want, total, true) == 0, "SGL write: %s", strerror(errno));
	for (i = 0, total = 0; i < n; i++) {
		memcpy(host + off[n - 1 - i] + 3, want + total, e[i].len);
		total += e[i].len;
	}
	free(got);
	got = xmalloc(b.size + 8);
	CHECK(drv_data(c, &b, 0, got, b.size, false) == 0, "driver data read");
	CHECK(first_diff(got, host, b.size) < 0, "host bytes after SGL write");
	memset(got, 0, total);
	CHECK(sgl_op(c, e, n, got, total, false) == 0, "SGL read: %s", strerror(errno));
	CHECK(first_diff(got, want, total) < 0, "SGL read back");
	/* Refusals. */
	CHECK(sgl_op(c, e, n, got, total - 1, false) == -EINVAL, "length short of the entries");
	CHECK(sgl_op(c, e, n, got, total + 1, false) == -EINVAL, "length beyond the entries");
	CHECK(sgl_op(c, e, 0, got, total, false) == -EINVAL, "no entries");
	/* The last entry runs past its segment: refused before any byte moves. */
	e[n - 1].len += 8;
	memset(got, 0x66, total + 8);
	CHECK(sgl_op(c, e, n, got, total + 8, true) == -EFAULT, "an entry past its segment");
	CHECK(drv_data(c, &b, 0, got, b.size, false) == 0, "driver data read");
	CHECK(first_diff(got, host, b.size) < 0, "the refused SGL write moved bytes");
	free(want);
	free(got);
	free(host);
	return 0;
}

/* ---- P2P ---- */

static uint64_t bar_phys(const struct card *c, int bar)
{
	struct pciem_bar_info_query q = { .bar_index = bar };

	return ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) ? 0 : q.phys_addr;
}

static int t_p2p_devices(void)
{
	struct card a, b;
	uint8_t data[8192], back[8192];
	struct pciem_dma_stats s0, s1;
	uint64_t phys;
	int ret = -1;

	if (card_for_testdrv(&a, 0))
		return -1;
	if (card_for_testdrv(&b, 0)) {
		card_close(&a);
		return -1;
	}
	phys = bar_phys(&b, 0);
	if (!phys) {
		diag("no BAR0 address for the peer");
		goto out;
	}
	fill_random(data, sizeof(data), 8);
	if (p2p_op(&a, phys + 4096, data, sizeof(data), true)) {
		diag("P2P write into the peer's BAR0: %s", strerror(errno));
		goto out;
	}
	if (memcmp((uint8_t *)b.bar[0] + 4096, data, sizeof(data))) {
		diag("the peer's BAR0 memory does not hold the bytes");
		goto out;
	}
	fill_random((uint8_t *)b.bar[0] + 100, 5000, 9);
	if (p2p_op(&a, phys + 100, back, 5000, false) || memcmp(back, (uint8_t *)b.bar[0] + 100, 5000)) {
		diag("P2P read of the peer's BAR0");
		goto out;
	}
	s0 = dma_stats(&a);
	if (p2p_op(&a, phys + 65536 - 100, data, 200, true) != -ENXIO) {
		diag("P2P running past the end of the peer's BAR0 not refused with ENXIO");
		goto out;
	}
	if (p2p_op(&a, 0x100000, data, 64, false) != -ENXIO ||
	    p2p_op(&a, 0xfed00000, data, 64, true) != -ENXIO) {
		diag("P2P to RAM or to a device that is not whitelisted not refused with ENXIO");
		goto out;
	}
	s1 = dma_stats(&a);
	if (s1.refused_p2p != s0.refused_p2p + 3 || s1.p2p != s0.p2p) {
		diag("refused_p2p %llu -> %llu", s0.refused_p2p, s1.refused_p2p);
		goto out;
	}
	ret = 0;
out:
	card_close(&b);
	card_close(&a);
	return ret;
}

/*
 * A P2P write into a peer that traces its BAR's writes: the peer's card
 * sees the bytes as its bus takes them, naturally aligned writes of up to
 * 8 bytes, in address order, one event each, as it sees its driver's.
 */
static int t_p2p_write_events(void)
{
	const uint32_t off = 4099, len = 1021;	/* unaligned at both ends */
	uint8_t data[1021];
	struct pciem_event ev;
	struct card a, b;
	uint64_t phys, at = off, seq = 0, val;
	unsigned int n = 0, want = 0, size;
	int ret = -1;

	if (card_for_testdrv(&a, 0))
		return -1;
	if (card_for_testdrv(&b, PCIEM_TRACE_WRITES)) {
		card_close(&a);
		return -1;
	}
	phys = bar_phys(&b, 0);
	while (ring_pop(&b, &ev))
		;
	fill_random(data, sizeof(data), 12);
	if (!phys || p2p_op(&a, phys + off, data, len, true)) {
		diag("P2P write into the traced BAR0: %s", strerror(errno));
		goto out;
	}
	for (size = 8; at < off + len; at += size, want++)
		for (size = 8; size > off + len - at || at % size; size >>= 1)
			;
	for (at = off; ring_pop(&b, &ev);) {
		if (ev.type != PCIEM_EVENT_MMIO_WRITE)
			continue;
		val = 0;
		if (ev.size <= 8 && at + ev.size <= off + len)
			memcpy(&val, data + (at - off), ev.size);
		if (ev.bar != 0 || ev.offset != at || !ev.size || ev.size > 8 || at % ev.size ||
		    at + ev.size > off + len || ev.data != val || (n && ev.seq != seq + 1)) {
			diag("write event %u: bar %u offset %llu size %u data %#llx seq %llu; want offset %llu data %#llx after seq %llu",
			     n, ev.bar, (unsigned long long)ev.offset, ev.size, (unsigned long long)ev.data,
			     (unsigned long long)ev.seq, (unsigned long long)at, (unsigned long long)val,
			     (unsigned long long)seq);
			goto out;
		}
		seq = ev.seq;
		at += ev.size;
		n++;
	}
	if (n != want || at != off + len) {
		diag("%u write events up to offset %llu, want %u up to %u", n, (unsigned long long)at, want,
		     off + len);
		goto out;
	}
	if (memcmp((uint8_t *)b.bar[0] + off, data, len)) {
		diag("the peer's BAR0 memory does not hold the bytes");
		goto out;
	}
	diag("a %u-byte P2P write at BAR0 + %u: %u write events, in order", len, off, n);
	ret = 0;
out:
	card_close(&b);
	card_close(&a);
	return ret;
}

#define WHITELIST "/sys/module/pciem/parameters/p2p_whitelist"

DMA_TEST(p2p_whitelist)
{
	const char *range = getenv("PCIEM_P2P_RANGE");
	unsigned long long start, size;
	uint8_t data[4096], back[4096];
	char line[128];

	CHECK(range && sscanf(range, "%lli+%lli", &start, &size) == 2 && size >= 8192,
	      "PCIEM_P2P_RANGE=START+SIZE (memory that is not System RAM) is needed");
	fill_random(data, sizeof(data), 1);
	CHECK(sysfs_write(WHITELIST, "\n") == 0, "clearing the whitelist");
	CHECK(p2p_op(c, start, data, sizeof(data), true) == -ENXIO, "P2P before whitelisting");
	CHECK(sysfs_write(WHITELIST, "0x%llx+0x%llx", start, size) == 0, "whitelisting %s", range);
	CHECK(sysfs_read(WHITELIST, line, sizeof(line)) > 0 && strtoull(line, NULL, 0) == start,
	      "the whitelist reads '%s'", line);
	CHECK(p2p_op(c, start + 4096, data, sizeof(data), true) == 0, "P2P write: %s", strerror(errno));
	CHECK(p2p_op(c, start + 4096, back, sizeof(back), false) == 0, "P2P read: %s", strerror(errno));
	CHECK(!memcmp(data, back, sizeof(data)), "the whitelisted range did not keep the bytes");
	CHECK(p2p_op(c, start + size - 100, back, 200, false) == -ENXIO, "P2P past the range's end");
	/* System RAM is never accepted. */
	CHECK(sysfs_write(WHITELIST, "0x100000+0x1000") == -EINVAL, "whitelisting RAM");
	CHECK(sysfs_write(WHITELIST, "\n") == 0, "clearing the whitelist");
	CHECK(p2p_op(c, start, data, sizeof(data), false) == -ENXIO, "P2P after clearing");
	return 0;
}

/* ---- removal, fuzz, errors, throughput ---- */

static long meminfo_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return v;
}

/* Pages on the per-CPU free lists: free, but not in MemFree. */
static long pcp_kb(void)
{
	char line[256];
	long n, kb = 0;
	FILE *f = fopen("/proc/zoneinfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " count: %ld", &n) == 1)
			kb += n * (getpagesize() / 1024);
	fclose(f);
	return kb;
}

static long free_kb(void)
{
	sync();
	sysfs_write("/proc/sys/vm/drop_caches", "3");
	return meminfo_kb("MemFree:") + pcp_kb();
}

/* The card: maps 3 MiB through the driver, then DMAs until it is killed. */
static void removal_child(int wfd)
{
	struct card c;
	struct buf co, si, sg;
	uint8_t *p = xmalloc(MIB);
	int i;

	if (card_for_testdrv(&c, 0) || drv_buf(&c, &co, "coherent %u", MIB) ||
	    drv_buf(&c, &si, "single %u 0 bidi 4", MIB) || drv_buf(&c, &sg, "sg %u 16 bidi", MIB))
		_exit(1);
	if (write(wfd, c.bdf, sizeof(c.bdf)) != sizeof(c.bdf))
		_exit(1);
	for (i = 0;; i++) {
		dma_op(&c, co.iova[0], p, MIB, i & 1);
		dma_op(&c, si.iova[0], p, MIB, !(i & 1));
		dma_op(&c, sg.iova[i % sg.nseg], p, sg.len[i % sg.nseg], i & 1);
	}
}

static int t_removal_with_mappings(void)
{
	long before, after;
	char bdf[32], path[256];
	int round, fds[2], st;
	pid_t pid;

	/*
	 * Three rounds warm up, ten are measured. Free memory counts the
	 * per-CPU free lists (they fill up once, by ~18 MB); measured so, it
	 * varies by tens of kB: one card's 3 MiB left behind would show.
	 */
	before = 0;
	for (round = 0; round < 13; round++) {
		if (round == 3)
			before = free_kb();
		CHECK(pipe(fds) == 0, "pipe");
		pid = fork();
		CHECK(pid >= 0, "fork");
		if (!pid) {
			close(fds[0]);
			removal_child(fds[1]);
		}
		close(fds[1]);
		st = read(fds[0], bdf, sizeof(bdf)) == sizeof(bdf);
		close(fds[0]);
		if (!st) {
			waitpid(pid, NULL, 0);
			FAIL("round %d: the card did not come up", round);
		}
		usleep(20000 + round * 10000);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
		CHECK(wait_path(path, false, 10) == 0, "round %d: %s still there", round, bdf);
	}
	after = free_kb();
	diag("free memory %ld kB before, %ld kB after 10 cards killed with 3 MiB mapped each", before,
	     after);
	CHECK(before - after < 2048, "%ld kB gone", before - after);
	return 0;
}

/* Fuzz inputs: mostly plausible, sometimes not. */
struct fuzz {
	unsigned int seed;
	const struct buf *bufs;
	int nbufs;
	uint8_t *scratch;		/* scratch_size bytes, then an unmapped page */
	size_t scratch_size;
	uint64_t bar0;
};

static unsigned int fz(struct fuzz *f, unsigned int n)
{
	return rand_r(&f->seed) % n;
}

static uint64_t fz_u64(struct fuzz *f)
{
	return (uint64_t)rand_r(&f->seed) << 40 ^ (uint64_t)rand_r(&f->seed) << 20 ^
	       rand_r(&f->seed);
}

static uint64_t fz_iova(struct fuzz *f)
{
	const struct buf *b = &f->bufs[fz(f, f->nbufs)];
	int s = fz(f, b->nseg);

	switch (fz(f, 8)) {
	case 0:
		return fz_u64(f);
	case 1:
		return fz(f, 1 << 20) * 4096ull;
	default:	/* in a mapping or just around it */
		return b->iova[s] + fz(f, b->len[s] + 8192) - 4096;
	}
}

static uint32_t fz_len(struct fuzz *f)
{
	switch (fz(f, 16)) {
	case 0:
		return 0;
	case 1:
		return fz(f, 4 * MIB) + 1;
	case 2:
	case 3:
		return fz(f, 65536) + 1;
	default:
		return fz(f, 512) + 1;
	}
}

static uint64_t fz_uaddr(struct fuzz *f, uint64_t len)
{
	switch (fz(f, 16)) {
	case 0:
		return fz(f, 2) ? 8 : 0xffff888000000000ull;
	case 1:		/* runs into the unmapped page */
		return (uintptr_t)f->scratch + f->scratch_size - fz(f, 4096);
	default:
		if (len > f->scratch_size)
			return (uintptr_t)f->scratch;
		return (uintptr_t)f->scratch + fz(f, f->scratch_size - len + 1);
	}
}

static uint32_t fz_flags(struct fuzz *f)
{
	return fz(f, 16) ? 1 + fz(f, 2) : fz(f, 8);
}

static uint8_t fz_func(struct fuzz *f)
{
	return fz(f, 16) ? 0 : fz(f, 10);
}

static unsigned long fz_arg(struct fuzz *f, uint8_t *arg)
{
	static const unsigned long cmds[] = {
		PCIEM_IOCTL_DMA, PCIEM_IOCTL_DMA_ATOMIC, PCIEM_IOCTL_P2P, PCIEM_IOCTL_DMA_INDIRECT,
		PCIEM_IOCTL_DMA_MAPPINGS, PCIEM_IOCTL_DMA_SGL, PCIEM_IOCTL_DMA_STATS,
	};
	unsigned long cmd = cmds[fz(f, ARRAY_SIZE(cmds))];
	int i;

	memset(arg, 0, 256);
	switch (cmd) {
	case PCIEM_IOCTL_DMA: {
		struct pciem_dma_op *o = (void *)arg;

		o->guest_iova = fz_iova(f);
		o->length = fz_len(f);
		o->user_addr = fz_uaddr(f, o->length);
		o->flags = fz_flags(f);
		o->func = fz_func(f);
		o->pasid = fz(f, 32) ? 0 : fz(f, 4);
		break;
	}
	case PCIEM_IOCTL_DMA_ATOMIC: {
		struct pciem_dma_atomic *a = (void *)arg;

		a->guest_iova = fz(f, 8) ? fz_iova(f) & ~7ull : fz_iova(f);
		a->operand = fz_u64(f);
		a->compare = fz(f, 2) ? 0 : fz_u64(f);
		a->op_type = fz(f, 16) ? 1 + fz(f, 7) : fz(f, 12);
		a->func = fz_func(f);
		break;
	}
	case PCIEM_IOCTL_P2P: {
		struct pciem_p2p_op_user *o = (void *)arg;

		o->target_phys_addr = fz(f, 4) ? f->bar0 + fz(f, 70000) : fz_u64(f);
		o->length = fz_len(f);
		o->user_addr = fz_uaddr(f, o->length);
		o->flags = fz_flags(f);
		o->func = fz_func(f);
		break;
	}
	case PCIEM_IOCTL_DMA_INDIRECT: {
		struct pciem_dma_indirect *in = (void *)arg;

		in->prp1 = fz_iova(f);
		in->prp2 = fz(f, 2) ? fz_iova(f) & ~4095ull : fz_iova(f) & ~7ull;
		in->length = fz_len(f);
		in->user_addr = fz_uaddr(f, in->length);
		in->page_size = fz(f, 8) ? 4096u << fz(f, 5) : fz(f, 100000);
		in->flags = fz_flags(f);
		in->func = fz_func(f);
		break;
	}
	case PCIEM_IOCTL_DMA_MAPPINGS: {
		struct pciem_dma_mappings *m = (void *)arg;

		m->argsz = fz(f, 8) ? sizeof(*m) : fz(f, 100);
		m->count = fz(f, 8) ? fz(f, 64) : fz_u64(f);
		m->entries = fz_uaddr(f, (uint64_t)m->count * sizeof(struct pciem_dma_mapping));
		m->func = fz_func(f);
		break;
	}
	case PCIEM_IOCTL_DMA_SGL: {
		struct pciem_dma_sgl *s = (void *)arg;
		struct pciem_dma_sg_entry *e = (void *)(f->scratch + f->scratch_size - 65536);
		uint32_t n = fz(f, 16) ? 1 + fz(f, 16) : fz(f, 70000), k;

		s->argsz = fz(f, 8) ? sizeof(*s) : fz(f, 100);
		s->nentries = n;
		s->entries = (uintptr_t)e;
		for (k = 0; k < n && k < 4096; k++) {
			e[k].iova = fz_iova(f);
			e[k].len = fz(f, 8) ? fz(f, 600) + 1 : fz_u64(f);
			s->length += e[k].len;
		}
		if (!fz(f, 8))
			s->length = fz_u64(f);
		s->user_addr = fz_uaddr(f, s->length + 65536);
		s->flags = fz_flags(f);
		s->func = fz_func(f);
		break;
	}
	default: {
		struct pciem_dma_stats *st = (void *)arg;

		st->argsz = fz(f, 8) ? sizeof(*st) : fz(f, 200);
	}
	}
	/* Now and then a byte or two of garbage, anywhere. */
	for (i = fz(f, 4) ? 0 : 1 + fz(f, 2); i > 0; i--)
		arg[fz(f, 64)] = fz(f, 256);
	if (!fz(f, 16))
		cmd = _IOC(fz(f, 4), PCIEM_IOCTL_MAGIC, 56 + fz(f, 8), fz(f, 200));
	return cmd;
}

DMA_TEST(fuzz)
{
	struct buf bufs[4];
	struct fuzz f = { .seed = 4242, .bufs = bufs, .nbufs = 4, .scratch_size = 8 * MIB };
	unsigned long i, ok = 0;
	uint8_t arg[256];
	double t0 = now_s();

	CHECK(drv_buf(c, &bufs[0], "coherent %u", 65536) == 0, "coherent");
	CHECK(drv_buf(c, &bufs[1], "single 65536 5 to 2") == 0, "single");
	CHECK(drv_buf(c, &bufs[2], "sg 65536 8 from") == 0, "sg");
	CHECK(drv_buf(c, &bufs[3], "pages 16384 bidi") == 0, "pages");
	f.bar0 = bar_phys(c, 0);
	f.scratch = mmap(NULL, f.scratch_size + 4096, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(f.scratch != MAP_FAILED, "mmap");
	/* The page after the scratch buffer stays unmapped: buffers running into it fault. */
	munmap(f.scratch + f.scratch_size, 4096);
	for (i = 0; i < fuzz_calls; i++) {
		unsigned long cmd = fz_arg(&f, arg);

		if (ioctl(c->fd, cmd, fz(&f, 64) ? (void *)arg : (void *)8) == 0)
			ok++;
		if (!fz(&f, 2000))
			drv(c, "master %d", fz(&f, 4) != 0);
	}
	diag("%lu DMA ioctls in %.1f s, %lu accepted", fuzz_calls, now_s() - t0, ok);
	munmap(f.scratch, f.scratch_size);
	CHECK(ok > fuzz_calls / 5, "too few calls got past the checks to mean anything");
	/* The device still works. */
	CHECK(drv(c, "master 1") == 0, "master 1");
	return check_reads(c, &bufs[0], bufs[0].iova[0], 65536);
}

static int expect(int got, int want, const char *what)
{
	if (got == -want)
		return 0;
	diag("%s: got %s, want %s", what, got ? strerror(-got) : "success", strerror(want));
	return 1;
}

static int ioctl_err(const struct card *c, unsigned long cmd, void *arg)
{
	return ioctl(c->fd, cmd, arg) ? -errno : 0;
}

DMA_TEST(errors)
{
	struct pciem_dma_op op = { .length = 4, .flags = PCIEM_DMA_FLAG_READ };
	struct pciem_dma_indirect in = { .length = 4, .page_size = 4096,
					 .flags = PCIEM_DMA_FLAG_READ };
	struct pciem_dma_mappings m = { .argsz = sizeof(m) };
	struct {
		struct pciem_dma_stats st;
		uint64_t extra;
	} big = { .st.argsz = sizeof(big) };
	struct pciem_dma_stats st = { .argsz = 8 };
	uint8_t p[8];
	struct buf b;
	int bad = 0, fd;

	CHECK(drv_buf(c, &b, "coherent 4096") == 0, "coherent");
	op.guest_iova = in.prp1 = b.iova[0];
	op.user_addr = in.user_addr = (uintptr_t)p;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), 0, "a good DMA");
	op.flags = 0;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EINVAL, "no direction");
	op.flags = PCIEM_DMA_FLAG_READ | PCIEM_DMA_FLAG_WRITE;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EINVAL, "both directions");
	op.flags = PCIEM_DMA_FLAG_READ;
	op.reserved[1] = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EINVAL, "reserved != 0");
	op.reserved[1] = 0;
	op.length = 0;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EINVAL, "length 0");
	op.length = 4;
	op.func = 8;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EINVAL, "function 8");
	op.func = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), ENODEV, "function 1 (absent)");
	op.func = 0;
	op.pasid = 3;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EOPNOTSUPP, "a PASID");
	op.pasid = 0;
	op.user_addr = 8;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EFAULT, "a bad card buffer");
	op.user_addr = 0xffff888000000000ull;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, &op), EFAULT, "a kernel address as card buffer");
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA, (void *)16), EFAULT, "a bad argument pointer");
	in.reserved2[0] = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_INDIRECT, &in), EINVAL, "indirect reserved2");
	in.reserved2[0] = 0;
	in.flags = 4;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_INDIRECT, &in), EINVAL, "indirect flags");
	m.argsz = 8;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_MAPPINGS, &m), EINVAL, "short argsz");
	m.argsz = sizeof(m);
	m.flags = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_MAPPINGS, &m), EINVAL, "unknown flags");
	m.flags = 0;
	m.reserved2[1] = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_MAPPINGS, &m), EINVAL, "reserved2 != 0");
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_STATS, &st), EINVAL, "stats argsz 8");
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_STATS, &big), 0, "a bigger argsz, zero tail");
	big.st.argsz = sizeof(big);	/* the kernel wrote back the size it knows */
	big.extra = 1;
	bad |= expect(ioctl_err(c, PCIEM_IOCTL_DMA_STATS, &big), E2BIG, "a bigger argsz, non-zero tail");
	bad |= expect(ioctl_err(c, _IOWR(PCIEM_IOCTL_MAGIC, 59, struct pciem_dma_stats), &st), ENOTTY,
		      "ioctl 59");
	/* Before REGISTER there is no function on a bus. */
	fd = open("/dev/pciem", O_RDWR);
	CHECK(fd >= 0, "open");
	op.user_addr = (uintptr_t)p;
	bad |= expect(ioctl(fd, PCIEM_IOCTL_DMA, &op) ? -errno : 0, ENODEV, "DMA before REGISTER");
	close(fd);
	return bad ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * With an IOMMU on (boot with intel_iommu=on: guests/vm/run --iommu), it
 * translates the machine's own devices, yet none ever claims a pciem
 * function: IOMMUs are found by ACPI's 16-bit PCI segment, and pciem's
 * domains start at 0x10000. The function has no iommu group, its DMA API
 * goes through pciem's dma_map_ops, and confined DMA works as without one.
 */
DMA_TEST(iommu_on_no_group)
{
	uint8_t data[65536], back[65536];
	char path[256];
	struct buf b;
	DIR *d;
	struct dirent *e;
	int units = 0;

	d = opendir("/sys/class/iommu");
	while (d && (e = readdir(d)))
		units += e->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK(units > 0, "no IOMMU in /sys/class/iommu: boot the VM with --iommu");
	CHECK(access("/sys/bus/pci/devices/0000:00:00.0/iommu_group", F_OK) == 0,
	      "the host bridge 0000:00:00.0 is in no iommu group: the IOMMU translates nothing");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", c->bdf);
	CHECK(access(path, F_OK) != 0, "%s is in an iommu group", c->bdf);
	CHECK(drv_buf(c, &b, "coherent %zu", sizeof(data)) == 0, "coherent");
	fill_random(data, sizeof(data), 31);
	CHECK(dma_op(c, b.iova[0], data, sizeof(data), true) == 0, "DMA write: %s", strerror(errno));
	CHECK(drv_data(c, &b, 0, back, sizeof(back), false) == 0, "driver data read");
	CHECK(first_diff(back, data, sizeof(data)) < 0, "the driver sees other bytes");
	CHECK(dma_op(c, b.iova[0] + sizeof(data), data, 1, false) == -EFAULT, "the byte after the buffer");
	diag("%d IOMMU unit(s) on; %s has no iommu group; DMA through its mappings works", units, c->bdf);
	return 0;
}

DMA_TEST(throughput)
{
	const int runs = 9;
	double t[9], rd, wr, mc;
	uint8_t *p = xmalloc(4 * MIB), *q = xmalloc(4 * MIB);
	struct buf b;
	int i;

	CHECK(drv_buf(c, &b, "coherent %u", 4 * MIB) == 0, "coherent");
	memset(p, 1, 4 * MIB);
	memset(q, 2, 4 * MIB);
	for (i = 0; i < runs; i++) {
		t[i] = now_s();
		CHECK(dma_op(c, b.iova[0], p, 4 * MIB, false) == 0, "DMA read");
		t[i] = now_s() - t[i];
	}
	qsort(t, runs, sizeof(t[0]), cmp_double);
	rd = t[runs / 2];
	for (i = 0; i < runs; i++) {
		t[i] = now_s();
		CHECK(dma_op(c, b.iova[0], p, 4 * MIB, true) == 0, "DMA write");
		t[i] = now_s() - t[i];
	}
	qsort(t, runs, sizeof(t[0]), cmp_double);
	wr = t[runs / 2];
	for (i = 0; i < runs; i++) {
		t[i] = now_s();
		memcpy(q, p, 4 * MIB);
		__asm__ __volatile__("" : : "r"(q) : "memory");
		t[i] = now_s() - t[i];
	}
	qsort(t, runs, sizeof(t[0]), cmp_double);
	mc = t[runs / 2];
	diag("4 MiB DMA, p50 of %d: read %.2f ms (%.0f MB/s), write %.2f ms (%.0f MB/s); memcpy %.2f ms (%.0f MB/s)",
	     runs, rd * 1e3, 4.194304 / rd, wr * 1e3, 4.194304 / wr, mc * 1e3, 4.194304 / mc);
	free(p);
	free(q);
	return 0;
}

static const struct test tests[] = {
	{ "read_coherent", t_read_coherent, true },
	{ "write_coherent", t_write_coherent, true },
	{ "read_write_streaming", t_read_write_streaming, true },
	{ "read_write_sg", t_read_write_sg, true },
	{ "crossing_mappings", t_crossing_mappings, true },
	{ "unmapped_refused", t_unmapped_refused, true },
	{ "direction_enforced", t_direction_enforced, true },
	{ "bus_master_off", t_bus_master_off, true },
	{ "freed_refused", t_freed_refused, true },
	{ "mappings_list", t_mappings_list, true },
	{ "atomic_ops", t_atomic_ops, true },
	{ "atomic_race", t_atomic_race, true },
	{ "prp_one_page", t_prp_one_page, true },
	{ "prp_two_pages", t_prp_two_pages, true },
	{ "prp_list", t_prp_list, true },
	{ "prp_chained", t_prp_chained, true },
	{ "prp_errors", t_prp_errors, true },
	{ "sgl", t_sgl, true },
	{ "p2p_devices", t_p2p_devices, true },
	{ "p2p_write_events", t_p2p_write_events, true },
	{ "p2p_whitelist", t_p2p_whitelist, true },
	{ "removal_with_mappings", t_removal_with_mappings, true },
	{ "errors", t_errors, true },
	{ "throughput", t_throughput, true },
	{ "iommu_on_no_group", t_iommu_on_no_group, false },
	{ "fuzz", t_fuzz, true },
};

int main(int argc, char **argv)
{
	testdrv_device = 0xfff2;
	testdrv_root = "/sys/kernel/debug/pciem_dmadrv";
	if (getenv("PCIEM_DMA_FUZZ_CALLS"))
		fuzz_calls = strtoul(getenv("PCIEM_DMA_FUZZ_CALLS"), NULL, 0);
	return selftest_main(argc, argv, tests, ARRAY_SIZE(tests));
}
