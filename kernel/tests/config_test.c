// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace tests for kernel/pciem_config.c, run by test/unit/config.test.ts:
 *
 *   gcc -Wall -Wextra -Werror -O2 kernel/tests/config_test.c kernel/pciem_config.c
 *
 * Output is TAP-like: "ok N - what" or "not ok N - what" with "# why"
 * lines, then "config: P passed, F failed"; the exit status is 0 only if F
 * is 0. Each case checks one behaviour, through the host's view
 * (pciem_cfg_read/pciem_cfg_write) wherever there is one. Expected register
 * values are spelled out as numbers, not rebuilt from the same macros the
 * code uses, so that a wrong constant there shows up here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pciem_config.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

static int ncase, passed, failed;

static void vreport(bool good, const char *why, const char *fmt, va_list ap)
{
	ncase++;
	if (good)
		passed++;
	else
		failed++;
	printf("%sok %d - ", good ? "" : "not ", ncase);
	vprintf(fmt, ap);
	printf("\n");
	if (!good && why)
		printf("# %s\n", why);
}

static void ok(bool good, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(good, "condition false", fmt, ap);
	va_end(ap);
}

static void eq(u64 got, u64 want, const char *fmt, ...)
{
	char why[80];
	va_list ap;

	snprintf(why, sizeof(why), "got 0x%llx, want 0x%llx",
		 (unsigned long long)got, (unsigned long long)want);
	va_start(ap, fmt);
	vreport(got == want, why, fmt, ap);
	va_end(ap);
}

/* For functions returning 0 or -errno. */
static void err_eq(int got, int want, const char *fmt, ...)
{
	char why[80];
	va_list ap;

	snprintf(why, sizeof(why), "got %d, want %d", got, want);
	va_start(ap, fmt);
	vreport(got == want, why, fmt, ap);
	va_end(ap);
}

/* A setup step that must work; a failure is a failing case of its own. */
static void must(int ret, const char *what)
{
	if (ret)
		err_eq(ret, 0, "setup: %s", what);
}

static u32 rd(const struct pciem_cfg *c, unsigned int where, unsigned int size)
{
	return pciem_cfg_read(c, where, size);
}

static bool wr(struct pciem_cfg *c, unsigned int where, unsigned int size, u32 val)
{
	return pciem_cfg_write(c, where, size, val);
}

/* --- Descriptions --- */

static const struct pciem_config_space ids_default = {
	.vendor_id = 0x1f0c,
	.device_id = 0x0001,
	.subsys_vendor_id = 0x1f0c,
	.subsys_device_id = 0xa001,
	.revision = 0x02,
	.class_code = { 0x01, 0x80, 0x12 },
};

static struct pciem_bar_config bar_desc(u32 index, u32 flags, u64 size)
{
	struct pciem_bar_config b = { .bar_index = index, .flags = flags, .size = size };

	return b;
}

static struct pciem_cap_config cap_desc(u32 type)
{
	struct pciem_cap_config cap = { .cap_type = type };

	return cap;
}

static struct pciem_cap_config msi_desc(u8 log2, u8 is64, u8 masking)
{
	struct pciem_cap_config cap = cap_desc(PCIEM_CAP_MSI);

	cap.msi.num_vectors_log2 = log2;
	cap.msi.has_64bit = is64;
	cap.msi.has_masking = masking;
	return cap;
}

static struct pciem_cap_config msix_desc(u8 bar, u32 table, u32 pba, u16 n)
{
	struct pciem_cap_config cap = cap_desc(PCIEM_CAP_MSIX);

	cap.msix.bar_index = bar;
	cap.msix.table_offset = table;
	cap.msix.pba_offset = pba;
	cap.msix.table_size = n;
	return cap;
}

static struct pciem_cap_config pasid_desc(u8 width, u8 exec, u8 priv)
{
	struct pciem_cap_config cap = cap_desc(PCIEM_CAP_PASID);

	cap.pasid.max_pasid_width = width;
	cap.pasid.execute_permission = exec;
	cap.pasid.privileged_mode = priv;
	return cap;
}

static struct pciem_cap_config vsec_desc(u8 seed)
{
	struct pciem_cap_config cap = cap_desc(PCIEM_CAP_VSEC);
	unsigned int i;

	for (i = 0; i < sizeof(cap.raw); i++)
		cap.raw[i] = (u8)(seed + i);
	return cap;
}

/* init + IDs: the start of every description. */
static void fresh(struct pciem_cfg *c)
{
	pciem_cfg_init(c);
	must(pciem_cfg_set_ids(c, &ids_default), "set_ids");
}

static void add_bar(struct pciem_cfg *c, u32 index, u32 flags, u64 size)
{
	struct pciem_bar_config b = bar_desc(index, flags, size);

	must(pciem_cfg_add_bar(c, &b), "add_bar");
}

static void add_cap(struct pciem_cfg *c, struct pciem_cap_config cap)
{
	must(pciem_cfg_add_cap(c, &cap), "add_cap");
}

/*
 * The device most cases use:
 *   BAR0 32-bit 64 KiB, BAR2+3 64-bit prefetchable 1 MiB, BAR4 32-bit 8 KiB
 *   MSI 8 vectors, 64-bit, masking       at 0x40 (24 bytes)
 *   MSI-X 16 vectors, BAR4 0x0 / 0x1000  at 0x58
 *   PM                                   at 0x64
 *   PCIe                                 at 0x6c (0x3c bytes)
 *   VSEC                                 at 0x100 (24 bytes)
 *   PASID width 20, exec, priv           at 0x118
 */
#define MSI	0x40
#define MSIX	0x58
#define PM	0x64
#define EXP	0x6c
#define VSEC	0x100
#define PASID	0x118

static void full(struct pciem_cfg *c, bool multifunction)
{
	fresh(c);
	add_bar(c, 0, 0, 64 << 10);
	add_bar(c, 2, PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH, 1 << 20);
	add_bar(c, 4, 0, 8 << 10);
	add_cap(c, msi_desc(3, 1, 1));
	add_cap(c, msix_desc(4, 0, 0x1000, 16));
	add_cap(c, cap_desc(PCIEM_CAP_PM));
	add_cap(c, cap_desc(PCIEM_CAP_PCIE));
	add_cap(c, vsec_desc(0xa0));
	add_cap(c, pasid_desc(20, 1, 1));
	must(pciem_cfg_finalize(c, multifunction), "finalize");
}

/* Walks the standard list as pci_find_capability() does; 0 if absent. */
static unsigned int find_cap(const struct pciem_cfg *c, u8 id)
{
	unsigned int pos = rd(c, PCI_CAPABILITY_LIST, 1);
	int ttl = 48;

	while (ttl-- > 0 && pos >= 0x40) {
		pos &= ~3U;
		if (rd(c, pos, 1) == 0xff)
			break;
		if (rd(c, pos, 1) == id)
			return pos;
		pos = rd(c, pos + PCI_CAP_LIST_NEXT, 1);
	}
	return 0;
}

/* Walks the extended list as pci_find_ext_capability() does; 0 if absent. */
static unsigned int find_ext(const struct pciem_cfg *c, u16 id)
{
	unsigned int pos = PCI_CFG_SPACE_SIZE;
	int ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8;
	u32 hdr = rd(c, pos, 4);

	if (!hdr)
		return 0;
	while (ttl-- > 0) {
		if (PCI_EXT_CAP_ID(hdr) == id && pos)
			return pos;
		pos = PCI_EXT_CAP_NEXT(hdr);
		if (pos < PCI_CFG_SPACE_SIZE)
			break;
		hdr = rd(c, pos, 4);
	}
	return 0;
}

/* pci_cfg_space_size_ext(): 4096 unless 0x100 reads all-ones or aliases dword 0. */
static unsigned int cfg_space_size(const struct pciem_cfg *c)
{
	u32 header = rd(c, 0, 4);
	unsigned int pos;

	if (rd(c, PCI_CFG_SPACE_SIZE, 4) == 0xffffffff)
		return PCI_CFG_SPACE_SIZE;
	for (pos = PCI_CFG_SPACE_SIZE; pos < PCI_CFG_SPACE_EXP_SIZE; pos += PCI_CFG_SPACE_SIZE)
		if (rd(c, pos, 4) != header)
			return PCI_CFG_SPACE_EXP_SIZE;
	return PCI_CFG_SPACE_SIZE;
}

static struct pciem_cfg cfg, cfg2;

/* --- Type-0 header --- */

static void test_header(void)
{
	struct pciem_cfg *c = &cfg;

	pciem_cfg_init(c);
	eq(rd(c, PCI_INTERRUPT_PIN, 1), 1, "init: interrupt pin is INTA");
	eq(rd(c, PCI_VENDOR_ID, 4), 0, "init: IDs are 0 until set_ids");
	eq(rd(c, PCI_HEADER_TYPE, 1), 0, "init: header type 0");
	eq(rd(c, PCI_STATUS, 2), 0, "init: no capability list before a capability");

	full(c, false);
	eq(rd(c, PCI_VENDOR_ID, 4), 0x00011f0c, "vendor and device ID");
	eq(rd(c, PCI_CLASS_REVISION, 4), 0x12800102, "class code and revision");
	eq(rd(c, PCI_SUBSYSTEM_VENDOR_ID, 4), 0xa0011f0c, "subsystem vendor and ID");
	ok(!wr(c, PCI_VENDOR_ID, 4, 0xffffffff) && rd(c, PCI_VENDOR_ID, 4) == 0x00011f0c,
	   "vendor and device ID are read-only");
	ok(!wr(c, PCI_CLASS_REVISION, 4, 0) && rd(c, PCI_CLASS_REVISION, 4) == 0x12800102,
	   "class code and revision are read-only");
	ok(!wr(c, PCI_SUBSYSTEM_VENDOR_ID, 4, 0) &&
	   rd(c, PCI_SUBSYSTEM_VENDOR_ID, 4) == 0xa0011f0c,
	   "subsystem IDs are read-only");
	wr(c, PCI_HEADER_TYPE, 1, 0xff);
	eq(rd(c, PCI_HEADER_TYPE, 1), 0, "header type reads 0 and is read-only");
	wr(c, PCI_BIST, 1, 0xff);
	eq(rd(c, PCI_BIST, 1), 0, "BIST reads 0 and is read-only");
	wr(c, PCI_CACHE_LINE_SIZE, 1, 0x10);
	eq(rd(c, PCI_CACHE_LINE_SIZE, 1), 0x10, "cache line size is read-write");
	wr(c, PCI_LATENCY_TIMER, 1, 0x40);
	eq(rd(c, PCI_LATENCY_TIMER, 1), 0x40, "latency timer is read-write");
	wr(c, PCI_INTERRUPT_LINE, 1, 0x0b);
	eq(rd(c, PCI_INTERRUPT_LINE, 1), 0x0b, "interrupt line is read-write");
	wr(c, PCI_INTERRUPT_PIN, 1, 4);
	eq(rd(c, PCI_INTERRUPT_PIN, 1), 1, "interrupt pin is read-only");
	eq(rd(c, PCI_CAPABILITY_LIST, 1), MSI, "capabilities pointer: the first capability");
	wr(c, PCI_CAPABILITY_LIST, 1, 0x80);
	eq(rd(c, PCI_CAPABILITY_LIST, 1), MSI, "capabilities pointer is read-only");
	wr(c, PCI_ROM_ADDRESS, 4, 0xffffffff);
	eq(rd(c, PCI_ROM_ADDRESS, 4), 0, "expansion ROM BAR reads 0 after all-ones");
	wr(c, PCI_CARDBUS_CIS, 4, 0xffffffff);
	eq(rd(c, PCI_CARDBUS_CIS, 4), 0, "CardBus CIS reads 0 and is read-only");
	wr(c, PCI_MIN_GNT, 2, 0xffff);
	eq(rd(c, PCI_MIN_GNT, 2), 0, "min grant and max latency read 0");
	eq(rd(c, 0x38, 4), 0, "the reserved dword at 0x38 reads 0");
}

static void test_command(void)
{
	struct pciem_cfg *c = &cfg;

	full(c, false);
	eq(rd(c, PCI_COMMAND, 2), 0, "command is 0 at power-on");
	wr(c, PCI_COMMAND, 2, 0xffff);
	eq(rd(c, PCI_COMMAND, 2), 0x0546,
	   "command: only MEMORY, MASTER, PARITY, SERR and INTX_DISABLE are writable");
	wr(c, PCI_COMMAND, 2, 0);
	eq(rd(c, PCI_COMMAND, 2), 0, "command: writable bits clear again");
	wr(c, PCI_COMMAND, 2, PCI_COMMAND_IO);
	eq(rd(c, PCI_COMMAND, 2), 0, "command: IO stays 0 (no I/O BARs)");
	ok(!pciem_cfg_mem_enabled(c) && !pciem_cfg_bus_master(c) && !pciem_cfg_intx_disabled(c),
	   "helpers: all false with command 0");
	wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ok(pciem_cfg_mem_enabled(c) && !pciem_cfg_bus_master(c),
	   "pciem_cfg_mem_enabled follows PCI_COMMAND_MEMORY");
	wr(c, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
	ok(pciem_cfg_bus_master(c) && !pciem_cfg_mem_enabled(c),
	   "pciem_cfg_bus_master follows PCI_COMMAND_MASTER");
	wr(c, PCI_COMMAND + 1, 1, PCI_COMMAND_INTX_DISABLE >> 8);
	ok(pciem_cfg_intx_disabled(c) && pciem_cfg_bus_master(c),
	   "pciem_cfg_intx_disabled follows a byte write to the command's high byte");
	ok(wr(c, PCI_COMMAND, 2, 0), "write reports a change when a bit changes");
	ok(!wr(c, PCI_COMMAND, 2, 0), "write reports no change when nothing changes");
}

static void test_status(void)
{
	struct pciem_cfg *c = &cfg;

	full(c, false);
	eq(rd(c, PCI_STATUS, 2), PCI_STATUS_CAP_LIST, "status: CAP_LIST set, nothing else");
	wr(c, PCI_STATUS, 2, 0xffff);
	eq(rd(c, PCI_STATUS, 2), PCI_STATUS_CAP_LIST,
	   "status: CAP_LIST survives a write of all-ones");
	pciem_cfg_set_intx_status(c, true);
	eq(rd(c, PCI_STATUS, 2), 0x0018, "status: INTERRUPT set by the device");
	wr(c, PCI_STATUS, 2, 0xffff);
	eq(rd(c, PCI_STATUS, 2), 0x0018, "status: the host cannot clear INTERRUPT");
	pciem_cfg_set_intx_status(c, false);
	eq(rd(c, PCI_STATUS, 2), 0x0010, "status: INTERRUPT cleared by the device");
	pciem_cfg_set_w1c(c, PCI_STATUS, 2, 0xffff);
	eq(rd(c, PCI_STATUS, 2), 0xf910,
	   "status: the device sets exactly the six error bits through set_w1c");
	ok(!wr(c, PCI_STATUS, 2, 0) && rd(c, PCI_STATUS, 2) == 0xf910,
	   "status: writing 0 leaves the error bits set");
	ok(wr(c, PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT) && rd(c, PCI_STATUS, 2) == 0xd910,
	   "status: writing 1 clears only that error bit, reported as a change");
	wr(c, PCI_STATUS + 1, 1, 0x01);
	eq(rd(c, PCI_STATUS, 2), 0xd810, "status: a byte write clears PARITY");
	wr(c, PCI_COMMAND, 4, 0xffff0000 | PCI_COMMAND_MEMORY);
	eq(rd(c, PCI_COMMAND, 4), 0x00100002,
	   "status: a dword write at 0x04 sets command and clears the errors written as 1");
	pciem_cfg_set_w1c(c, PCI_STATUS, 2, PCI_STATUS_SIG_SYSTEM_ERROR);
	wr(c, PCI_COMMAND, 2, 0);
	eq(rd(c, PCI_STATUS, 2), 0x4010, "status: a word write to command leaves status alone");
	pciem_cfg_set_w1c(c, PCI_STATUS + 1, 2, 0xffff);
	eq(rd(c, PCI_STATUS, 2), 0x4010, "set_w1c: a misaligned access does nothing");
}

/* --- BARs --- */

static const char *size_name(u64 size, char *buf, size_t len)
{
	if (size >= 1ULL << 40)
		snprintf(buf, len, "%llu TiB", (unsigned long long)(size >> 40));
	else if (size >= 1ULL << 30)
		snprintf(buf, len, "%llu GiB", (unsigned long long)(size >> 30));
	else if (size >= 1ULL << 20)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(size >> 20));
	else
		snprintf(buf, len, "%llu KiB", (unsigned long long)(size >> 10));
	return buf;
}

/* The kernel's sizing: save, write all-ones, read the mask, restore. */
static void test_bar_sizing32(u64 size, u32 flags)
{
	struct pciem_cfg *c = &cfg;
	unsigned int reg = PCI_BASE_ADDRESS_0 + 4 * 1;
	u32 orig, mask, restored;
	char name[32];

	fresh(c);
	add_bar(c, 1, flags, size);
	wr(c, reg, 4, 0xc0000000);
	orig = rd(c, reg, 4);
	wr(c, reg, 4, 0xffffffff);
	mask = rd(c, reg, 4);
	wr(c, reg, 4, orig);
	restored = rd(c, reg, 4);
	ok(mask == ((u32)~(size - 1) | flags) && restored == orig &&
	   orig == ((0xc0000000 & (u32)~(size - 1)) | flags),
	   "BAR1 32-bit%s %s: all-ones reads back 0x%08x, the address is restored",
	   flags ? " prefetchable" : "", size_name(size, name, sizeof(name)),
	   (u32)~(size - 1) | flags);
}

static void test_bar_sizing64(u64 size)
{
	struct pciem_cfg *c = &cfg;
	u32 flags = PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;
	unsigned int reg = PCI_BASE_ADDRESS_2;
	u32 lo, hi, mlo, mhi;
	u64 mask = ~(size - 1), addr = 0x0000123400000000ULL & mask;
	char name[32];

	fresh(c);
	add_bar(c, 2, flags, size);
	wr(c, reg, 4, (u32)addr);
	wr(c, reg + 4, 4, (u32)(addr >> 32));
	lo = rd(c, reg, 4);
	hi = rd(c, reg + 4, 4);
	wr(c, reg, 4, 0xffffffff);
	mlo = rd(c, reg, 4);
	wr(c, reg + 4, 4, 0xffffffff);
	mhi = rd(c, reg + 4, 4);
	wr(c, reg, 4, lo);
	wr(c, reg + 4, 4, hi);
	ok(mlo == ((u32)mask | flags) && mhi == (u32)(mask >> 32) &&
	   rd(c, reg, 4) == lo && rd(c, reg + 4, 4) == hi &&
	   pciem_cfg_bar_addr(c, 2) == addr,
	   "BAR2 64-bit %s: all-ones reads back 0x%08x:%08x, the address is restored",
	   size_name(size, name, sizeof(name)), (u32)(mask >> 32), (u32)mask | flags);
}

static void test_bars(void)
{
	struct pciem_cfg *c = &cfg;
	unsigned int shift;

	for (shift = 12; shift <= 30; shift++)
		test_bar_sizing32(1ULL << shift, 0);
	test_bar_sizing32(1ULL << 31, 0);
	test_bar_sizing32(1ULL << 20, PCI_BASE_ADDRESS_MEM_PREFETCH);
	for (shift = 12; shift <= 30; shift += 6)
		test_bar_sizing64(1ULL << shift);
	test_bar_sizing64(1ULL << 32);
	test_bar_sizing64(1ULL << 34);
	test_bar_sizing64(1ULL << 40);

	full(c, false);
	eq(rd(c, PCI_BASE_ADDRESS_0, 4), 0, "BAR0 32-bit: type bits 0, address 0 at power-on");
	eq(rd(c, PCI_BASE_ADDRESS_2, 4), 0x0c, "BAR2: 64-bit and prefetchable flag bits");
	wr(c, PCI_BASE_ADDRESS_2, 4, 0);
	eq(rd(c, PCI_BASE_ADDRESS_2, 4), 0x0c, "BAR2: flag bits are read-only");
	wr(c, PCI_BASE_ADDRESS_0, 4, 0xfe001234);
	eq(rd(c, PCI_BASE_ADDRESS_0, 4), 0xfe000000, "BAR0: bits below the size read 0");
	wr(c, PCI_BASE_ADDRESS_0 + 3, 1, 0xd0);
	eq(rd(c, PCI_BASE_ADDRESS_0, 4), 0xd0000000, "BAR0: a byte write to the top byte");
	eq(pciem_cfg_bar_addr(c, 0), 0xd0000000, "bar_addr: BAR0's programmed address");
	wr(c, PCI_BASE_ADDRESS_2, 4, 0xfff00000);
	wr(c, PCI_BASE_ADDRESS_3, 4, 0x00000038);
	eq(pciem_cfg_bar_addr(c, 2), 0x38fff00000ULL, "bar_addr: a 64-bit BAR takes both dwords");
	eq(pciem_cfg_bar_addr(c, 1), 0, "bar_addr: 0 for an unused slot");
	eq(pciem_cfg_bar_addr(c, 3), 0, "bar_addr: 0 for the upper half of a 64-bit BAR");
	eq(pciem_cfg_bar_addr(c, 6), 0, "bar_addr: 0 for an index beyond 5");
	wr(c, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
	eq(rd(c, PCI_BASE_ADDRESS_1, 4), 0, "unused BAR1 reads 0 after all-ones");
	wr(c, PCI_BASE_ADDRESS_5, 4, 0xffffffff);
	eq(rd(c, PCI_BASE_ADDRESS_5, 4), 0, "unused BAR5 reads 0 after all-ones");
	ok(c->bar_size[0] == 64 << 10 && c->bar_size[2] == 1 << 20 && c->bar_size[3] == 0 &&
	   c->bar_size[4] == 8 << 10 && c->bar_size[1] == 0 && c->bar_size[5] == 0,
	   "bar_size: the sizes, 0 for unused slots and the upper half");
	eq(c->bar_flags[2], 0x0c, "bar_flags: the flags as given");
}

static void test_bar_errors(void)
{
	static const struct {
		u32 index, flags;
		u64 size;
		const char *what;
	} bad[] = {
		{ 6, 0, 4096, "index 6" },
		{ 0xffffffff, 0, 4096, "index 0xffffffff" },
		{ 0, PCI_BASE_ADDRESS_SPACE_IO, 4096, "an I/O BAR" },
		{ 0, PCI_BASE_ADDRESS_MEM_TYPE_1M, 4096, "the below-1M type" },
		{ 0, PCI_BASE_ADDRESS_MEM_TYPE_MASK, 4096, "the reserved type 3" },
		{ 0, 0x10, 4096, "an unknown flag bit" },
		{ 0, 0x80000000, 4096, "flag bit 31" },
		{ 5, PCI_BASE_ADDRESS_MEM_TYPE_64, 4096, "a 64-bit BAR at index 5" },
		{ 0, 0, 0, "size 0" },
		{ 0, 0, 2048, "size 2 KiB" },
		{ 0, 0, 4097, "size 4097" },
		{ 0, 0, 3 << 12, "size 12 KiB (not a power of two)" },
		{ 0, 0, 1ULL << 32, "a 32-bit BAR of 4 GiB" },
		{ 0, PCI_BASE_ADDRESS_MEM_TYPE_64, 1ULL << 41, "a 64-bit BAR of 2 TiB" },
		{ 0, PCI_BASE_ADDRESS_MEM_TYPE_64, 1ULL << 63, "a 64-bit BAR of 2^63" },
	};
	struct pciem_cfg *c = &cfg;
	struct pciem_bar_config b;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		fresh(c);
		b = bar_desc(bad[i].index, bad[i].flags, bad[i].size);
		err_eq(pciem_cfg_add_bar(c, &b), -EINVAL,
		       "add_bar: %s is -EINVAL", bad[i].what);
	}
	fresh(c);
	b = bar_desc(0, 0, 4096);
	b.reserved[2] = 1;
	err_eq(pciem_cfg_add_bar(c, &b), -EINVAL,
	       "add_bar: non-zero reserved is -EINVAL");
	b = bar_desc(0, 0, 4096);
	b.reserved2[3] = 1;
	err_eq(pciem_cfg_add_bar(c, &b), -EINVAL,
	       "add_bar: non-zero reserved2 is -EINVAL");
	b = bar_desc(0, 0, 4096);
	b.func = 7;
	err_eq(pciem_cfg_add_bar(c, &b), 0, "add_bar: func is not looked at");
	b = bar_desc(1, 0, 1ULL << 31);
	err_eq(pciem_cfg_add_bar(c, &b), 0, "add_bar: a 32-bit BAR of 2 GiB is accepted");
	b = bar_desc(2, PCI_BASE_ADDRESS_MEM_TYPE_64, 1ULL << 40);
	err_eq(pciem_cfg_add_bar(c, &b), 0, "add_bar: a 64-bit BAR of 1 TiB is accepted");
	b = bar_desc(0, 0, 8192);
	err_eq(pciem_cfg_add_bar(c, &b), -EBUSY,
	       "add_bar: a used slot is -EBUSY");
	b = bar_desc(3, 0, 8192);
	err_eq(pciem_cfg_add_bar(c, &b), -EBUSY,
	       "add_bar: the upper half of a 64-bit BAR is -EBUSY");
	fresh(c);
	add_bar(c, 1, 0, 4096);
	b = bar_desc(0, PCI_BASE_ADDRESS_MEM_TYPE_64, 4096);
	err_eq(pciem_cfg_add_bar(c, &b), -EBUSY,
	       "add_bar: a 64-bit BAR whose upper slot is used is -EBUSY");
	b = bar_desc(4, PCI_BASE_ADDRESS_MEM_TYPE_64, 4096);
	err_eq(pciem_cfg_add_bar(c, &b), 0, "add_bar: a 64-bit BAR at index 4 is accepted");
	must(pciem_cfg_finalize(c, false), "finalize");
	b = bar_desc(0, 0, 4096);
	err_eq(pciem_cfg_add_bar(c, &b), -EALREADY,
	       "add_bar: after finalize is -EALREADY");

	fresh(c);
	add_bar(c, 0, 0, 4096);
	cfg2 = *c;
	b = bar_desc(0, 0, 8192);
	pciem_cfg_add_bar(c, &b);
	b = bar_desc(1, 0x10, 8192);
	pciem_cfg_add_bar(c, &b);
	ok(!memcmp(c, &cfg2, sizeof(*c)),
	   "add_bar: refused calls leave the config space as it was");
}

/* --- IDs and finalize --- */

static void test_ids_errors(void)
{
	struct pciem_cfg *c = &cfg;
	struct pciem_config_space ids;

	pciem_cfg_init(c);
	ids = ids_default;
	ids.vendor_id = 0xffff;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: vendor 0xffff is -EINVAL");
	ids.vendor_id = 0;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: vendor 0x0000 is -EINVAL");
	ids = ids_default;
	ids.header_type = 0x80;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: header type 0x80 is -EINVAL (finalize sets the bit)");
	ids.header_type = 1;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: header type 1 is -EINVAL");
	ids = ids_default;
	ids.reserved_func[1] = 1;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: non-zero reserved_func is -EINVAL");
	ids = ids_default;
	ids.reserved[6] = 1;
	err_eq(pciem_cfg_set_ids(c, &ids), -EINVAL,
	       "set_ids: non-zero reserved is -EINVAL");
	eq(rd(c, PCI_VENDOR_ID, 4), 0, "set_ids: refused calls leave the IDs unset");
	ids = ids_default;
	ids.device_id = 0xffff;
	ids.func = 3;
	err_eq(pciem_cfg_set_ids(c, &ids), 0, "set_ids: device 0xffff and any func are accepted");
	pciem_cfg_init(&cfg2);
	err_eq(pciem_cfg_finalize(&cfg2, false), -EINVAL, "finalize: without IDs is -EINVAL");

	fresh(c);
	must(pciem_cfg_finalize(c, false), "finalize");
	err_eq(pciem_cfg_finalize(c, false), -EALREADY,
	       "finalize: twice is -EALREADY");
	err_eq(pciem_cfg_set_ids(c, &ids_default), -EALREADY,
	       "set_ids: after finalize is -EALREADY");
}

static void test_finalize(void)
{
	struct pciem_cfg *c = &cfg;

	fresh(c);
	must(pciem_cfg_finalize(c, false), "finalize");
	eq(rd(c, PCI_HEADER_TYPE, 1), 0x00, "finalize(false): header type 0x00");
	eq(c->pcie_cap, 0x40, "finalize: adds a PCIe capability when none was added");
	eq(rd(c, PCI_CAPABILITY_LIST, 1), 0x40, "finalize: the added PCIe cap is on the list");
	eq(rd(c, PCI_STATUS, 2), PCI_STATUS_CAP_LIST, "finalize: status has CAP_LIST");

	fresh(c);
	add_cap(c, msi_desc(0, 0, 0));
	must(pciem_cfg_finalize(c, true), "finalize");
	eq(rd(c, PCI_HEADER_TYPE, 1), 0x80, "finalize(true): the multi-function bit is set");
	wr(c, PCI_HEADER_TYPE, 1, 0);
	eq(rd(c, PCI_HEADER_TYPE, 1), 0x80, "the multi-function bit is read-only");
	eq(find_cap(c, PCI_CAP_ID_EXP), 0x4c,
	   "finalize: PCIe goes after MSI (10 bytes, aligned to 0x4c)");
	eq(rd(c, 0x40 + PCI_CAP_LIST_NEXT, 1), 0x4c, "finalize: MSI's next pointer leads to PCIe");

	full(c, false);
	ok(c->pcie_cap == EXP && find_cap(c, PCI_CAP_ID_EXP) == EXP &&
	   rd(c, EXP + PCI_CAP_LIST_NEXT, 1) == 0,
	   "finalize: keeps the PCIe capability that was added, once");
}

static void test_msix_bar_check(void)
{
	static const struct {
		u8 bar;
		u32 table, pba;
		u16 n;
		const char *what;
	} bad[] = {
		{ 1, 0, 0x1000, 4, "the table's BAR does not exist" },
		{ 3, 0, 0x1000, 4, "the table's BAR is the upper half of a 64-bit BAR" },
		{ 0, 0x1000, 0x0, 4, "the table ends beyond the BAR" },
		{ 0, 0xff8, 0x0, 1, "a table entry crosses the BAR's end" },
		{ 0, 0, 0x1000, 4, "the PBA lies beyond the BAR" },
		{ 0, 0, 0x30, 4, "the PBA inside the table" },
		{ 0, 0x40, 0x38, 65, "a 2-qword PBA (65 vectors) running into the table" },
		{ 0, 0x800, 0x800, 4, "table and PBA at the same offset" },
	};
	struct pciem_cfg *c = &cfg;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		fresh(c);
		add_bar(c, 0, 0, 4096);
		add_bar(c, 2, PCI_BASE_ADDRESS_MEM_TYPE_64, 4096);
		add_cap(c, msix_desc(bad[i].bar, bad[i].table, bad[i].pba, bad[i].n));
		err_eq(pciem_cfg_finalize(c, false), -EINVAL,
		       "finalize: MSI-X: %s is -EINVAL", bad[i].what);
	}
	fresh(c);
	add_bar(c, 0, 0, 4096);
	add_cap(c, msix_desc(0, 0, 0x40, 4));
	err_eq(pciem_cfg_finalize(c, false), 0,
	       "finalize: MSI-X PBA right after the table is accepted");
	fresh(c);
	add_bar(c, 0, 0, 1 << 16);
	add_cap(c, msix_desc(0, 0, 0x8000, 2048));
	err_eq(pciem_cfg_finalize(c, false), 0,
	       "finalize: 2048 MSI-X vectors, table and PBA in one BAR");
}

/* --- Capabilities --- */

static void test_msi_layout(u8 log2, u8 is64, u8 masking)
{
	struct pciem_cfg *c = &cfg;
	unsigned int data_reg = is64 ? 0x0c : 0x08, mask_reg = is64 ? 0x10 : 0x0c;
	unsigned int len = is64 ? (masking ? 24 : 14) : (masking ? 20 : 10);
	u32 nvec = 1U << log2, vec_mask = (u32)((1ULL << nvec) - 1);
	u16 flags = log2 << 1 | (is64 ? 0x80 : 0) | (masking ? 0x100 : 0);
	char what[64];

	snprintf(what, sizeof(what), "MSI %u vector%s%s%s", nvec, nvec > 1 ? "s" : "",
		 is64 ? ", 64-bit" : "", masking ? ", masking" : "");
	fresh(c);
	add_cap(c, msi_desc(log2, is64, masking));
	add_cap(c, cap_desc(PCIEM_CAP_PM));
	must(pciem_cfg_finalize(c, false), "finalize");

	ok(c->msi_cap == 0x40 && rd(c, 0x40, 1) == PCI_CAP_ID_MSI &&
	   rd(c, 0x41, 1) == 0x40 + ((len + 3) & ~3U),
	   "%s: ID 0x05 at 0x40, %u bytes before the next capability", what, len);
	eq(rd(c, 0x42, 2), flags, "%s: control reads 0x%04x", what, flags);
	wr(c, 0x42, 2, 0xffff);
	eq(rd(c, 0x42, 2), flags | 0x01 | (log2 << 4),
	   "%s: control all-ones: ENABLE set, QSIZE clamped to %u, the rest read-only",
	   what, log2);
	wr(c, 0x44, 4, 0xffffffff);
	eq(rd(c, 0x44, 4), 0xfffffffc, "%s: address bits 1..0 read 0", what);
	if (is64) {
		wr(c, 0x48, 4, 0xffffffff);
		eq(rd(c, 0x48, 4), 0xffffffff, "%s: upper address read-write", what);
		wr(c, 0x4c, 4, 0xffffffff);
		eq(rd(c, 0x4c, 4), 0x0000ffff, "%s: data 16 bits, the 16 above read 0", what);
	} else {
		wr(c, 0x48, 4, 0xffffffff);
		eq(rd(c, 0x48, 4), 0x0000ffff, "%s: data 16 bits, the 16 above read 0", what);
	}
	if (masking) {
		wr(c, 0x40 + mask_reg, 4, 0xffffffff);
		eq(rd(c, 0x40 + mask_reg, 4), vec_mask,
		   "%s: mask bits writable for the %u vectors only", what, nvec);
		pciem_cfg_set_msi_pending(c, nvec - 1, true);
		wr(c, 0x40 + mask_reg + 4, 4, 0);
		eq(rd(c, 0x40 + mask_reg + 4, 4), 1U << (nvec - 1),
		   "%s: pending set by the device, read-only to the host", what);
		pciem_cfg_set_msi_pending(c, nvec, true);
		eq(rd(c, 0x40 + mask_reg + 4, 4), 1U << (nvec - 1),
		   "%s: pending of a vector beyond the capable count is ignored", what);
	} else {
		ok(rd(c, 0x40 + data_reg + 2, 2) == 0 && !pciem_cfg_msi_masked(c, 0),
		   "%s: nothing after the data register, no vector masked", what);
	}
	eq(rd(c, 0x40 + ((len + 3) & ~3U), 1), PCI_CAP_ID_PM,
	   "%s: the PM capability follows at the next dword", what);
}

static void test_msi(void)
{
	struct pciem_cfg *c = &cfg;
	u64 addr;
	u32 data;

	test_msi_layout(0, 0, 0);
	test_msi_layout(0, 1, 0);
	test_msi_layout(3, 0, 1);
	test_msi_layout(3, 1, 1);
	test_msi_layout(5, 1, 1);
	test_msi_layout(5, 0, 1);

	full(c, false);
	wr(c, MSI + 2, 2, 0x0021);
	eq(rd(c, MSI + 2, 2), 0x01a7, "MSI: multiple message enable 4 of 8 is kept");
	ok(pciem_cfg_msi_enabled(c) && pciem_cfg_msi_vectors(c) == 4,
	   "MSI helpers: enabled, 4 vectors allocated");
	wr(c, MSI + 2, 1, 0x71);
	eq(rd(c, MSI + 2, 2), 0x01b7, "MSI: a byte write of QSIZE 7 is clamped to 3");
	wr(c, MSI + 2, 2, 0x0020);
	ok(!pciem_cfg_msi_enabled(c), "MSI helpers: enable follows the control register");
	wr(c, MSI + 2, 2, 0x0021);
	wr(c, MSI + 4, 4, 0xfee01000);
	wr(c, MSI + 8, 4, 0x00000001);
	wr(c, MSI + 0xc, 2, 0x4042);
	ok(!pciem_cfg_msi_message(c, 3, &addr, &data) && addr == 0x1fee01000ULL && data == 0x4043,
	   "msi_message: vector 3 of 4 replaces the data's low 2 bits");
	ok(!pciem_cfg_msi_message(c, 0, &addr, &data) && data == 0x4040,
	   "msi_message: vector 0 of 4");
	err_eq(pciem_cfg_msi_message(c, 4, &addr, &data), -EINVAL,
	       "msi_message: a vector beyond the allocated ones is -EINVAL");
	wr(c, MSI + 0x10, 4, 0x00000004);
	ok(pciem_cfg_msi_masked(c, 2) && !pciem_cfg_msi_masked(c, 1) &&
	   !pciem_cfg_msi_masked(c, 32),
	   "msi_masked follows the mask bits");
	ok(!wr(c, MSI + 0x14, 4, 0xffffffff) && rd(c, MSI + 0x14, 4) == 0,
	   "MSI: the host cannot set pending bits");
	pciem_cfg_set_msi_pending(c, 2, true);
	pciem_cfg_set_msi_pending(c, 5, true);
	pciem_cfg_set_msi_pending(c, 2, false);
	eq(rd(c, MSI + 0x14, 4), 0x20, "set_msi_pending sets and clears single bits");
	ok(rd(c, MSI, 1) == PCI_CAP_ID_MSI && !wr(c, MSI, 2, 0) && rd(c, MSI + 1, 1) == MSIX,
	   "MSI: ID and next pointer are read-only");

	fresh(c);
	must(pciem_cfg_finalize(c, false), "finalize");
	ok(!pciem_cfg_msi_enabled(c) && pciem_cfg_msi_vectors(c) == 0 &&
	   pciem_cfg_msi_message(c, 0, &addr, &data) == -ENODEV,
	   "MSI helpers without MSI: disabled, 0 vectors, -ENODEV");
	cfg2 = *c;
	pciem_cfg_set_msi_pending(c, 0, true);
	ok(!memcmp(c, &cfg2, sizeof(*c)) && !pciem_cfg_msi_masked(c, 0),
	   "set_msi_pending without MSI changes nothing");
}

static void test_msix(void)
{
	struct pciem_cfg *c = &cfg;

	full(c, false);
	ok(rd(c, MSIX, 1) == PCI_CAP_ID_MSIX && rd(c, MSIX + 1, 1) == PM,
	   "MSI-X: ID 0x11, next is PM");
	eq(rd(c, MSIX + 2, 2), 0x000f, "MSI-X: control reads table size - 1");
	wr(c, MSIX + 2, 2, 0xffff);
	eq(rd(c, MSIX + 2, 2), 0xc00f, "MSI-X: only ENABLE and MASKALL are writable");
	ok(pciem_cfg_msix_enabled(c) && pciem_cfg_msix_masked(c),
	   "MSI-X helpers: enabled and function-masked");
	wr(c, MSIX + 3, 1, 0x80);
	ok(pciem_cfg_msix_enabled(c) && !pciem_cfg_msix_masked(c),
	   "MSI-X helpers: a byte write unmasks the function");
	eq(rd(c, MSIX + 4, 4), 0x00000004, "MSI-X: table offset 0, BIR 4");
	eq(rd(c, MSIX + 8, 4), 0x00001004, "MSI-X: PBA offset 0x1000, BIR 4");
	wr(c, MSIX + 4, 4, 0xffffffff);
	wr(c, MSIX + 8, 4, 0);
	ok(rd(c, MSIX + 4, 4) == 4 && rd(c, MSIX + 8, 4) == 0x1004,
	   "MSI-X: table and PBA registers are read-only");

	fresh(c);
	add_bar(c, 5, 0, 1 << 16);
	add_cap(c, msix_desc(5, 0, 0x8000, 2048));
	must(pciem_cfg_finalize(c, false), "finalize");
	ok(rd(c, 0x42, 2) == 0x07ff && rd(c, 0x44, 4) == 0x0005 && rd(c, 0x48, 4) == 0x8005,
	   "MSI-X 2048 vectors in BAR5: size 0x7ff, table 0x0005, PBA 0x8005");
	ok(!pciem_cfg_msix_enabled(c) && !pciem_cfg_msix_masked(c),
	   "MSI-X helpers: disabled and unmasked at power-on");
	fresh(c);
	must(pciem_cfg_finalize(c, false), "finalize");
	ok(!pciem_cfg_msix_enabled(c) && !pciem_cfg_msix_masked(c),
	   "MSI-X helpers without MSI-X: false");
}

static void test_pm(void)
{
	struct pciem_cfg *c = &cfg;

	full(c, false);
	ok(rd(c, PM, 1) == PCI_CAP_ID_PM && rd(c, PM + 1, 1) == EXP, "PM: ID 0x01, next is PCIe");
	eq(rd(c, PM + 2, 2), 0x0003, "PM: PMC version 3, no D1/D2, no PME");
	wr(c, PM + 2, 2, 0xffff);
	eq(rd(c, PM + 2, 2), 0x0003, "PM: PMC is read-only");
	eq(rd(c, PM + 4, 2), 0x0008, "PM: PMCSR D0 with NO_SOFT_RESET");
	ok(wr(c, PM + 4, 2, 3) && rd(c, PM + 4, 2) == 0x000b, "PM: D3hot can be written");
	ok(!wr(c, PM + 4, 2, 1) && rd(c, PM + 4, 2) == 0x000b, "PM: a write of D1 is ignored");
	ok(!wr(c, PM + 4, 1, 2) && rd(c, PM + 4, 2) == 0x000b,
	   "PM: a byte write of D2 is ignored");
	ok(wr(c, PM + 4, 2, 0) && rd(c, PM + 4, 2) == 0x0008, "PM: D0 can be written");
	wr(c, PM + 4, 2, 0x0002);
	eq(rd(c, PM + 4, 2), 0x0008, "PM: a write of D2 from D0 keeps D0");
	wr(c, PM + 4, 4, 0xffffffff);
	eq(rd(c, PM + 4, 4), 0x0000000b,
	   "PM: all-ones gives D3hot; NO_SOFT_RESET, PME, data and bridge bits read-only");
	wr(c, PM + 4, 2, 0xfff4);
	eq(rd(c, PM + 4, 2), 0x0008, "PM: NO_SOFT_RESET cannot be cleared");
}

static void test_pcie(void)
{
	struct pciem_cfg *c = &cfg;
	unsigned int off;
	bool zero = true;

	full(c, false);
	ok(rd(c, EXP, 1) == PCI_CAP_ID_EXP && rd(c, EXP + 1, 1) == 0,
	   "PCIe: ID 0x10, last on the list");
	eq(rd(c, EXP + PCI_EXP_FLAGS, 2), 0x0002, "PCIe: flags version 2, endpoint");
	eq(rd(c, EXP + PCI_EXP_DEVCAP, 4), 0x10008fe1,
	   "PCIe: DEVCAP MPS 256, ext tags, L0s/L1 unlimited, RBER, FLR");
	wr(c, EXP + PCI_EXP_DEVCAP, 4, 0);
	wr(c, EXP + PCI_EXP_FLAGS, 2, 0xffff);
	ok(rd(c, EXP + PCI_EXP_DEVCAP, 4) == 0x10008fe1 && rd(c, EXP + PCI_EXP_FLAGS, 2) == 2,
	   "PCIe: flags and DEVCAP are read-only");
	eq(rd(c, EXP + PCI_EXP_DEVCTL, 2), 0x2810,
	   "PCIe: DEVCTL power-on: relaxed ordering, no snoop, read request 512");
	wr(c, EXP + PCI_EXP_DEVCTL, 2, 0xffff);
	eq(rd(c, EXP + PCI_EXP_DEVCTL, 2), 0x79ff,
	   "PCIe: DEVCTL writable bits; phantom, aux PM and FLR read 0");
	wr(c, EXP + PCI_EXP_DEVCTL, 2, 0x0020);
	eq(rd(c, EXP + PCI_EXP_DEVCTL, 2), 0x0020, "PCIe: DEVCTL writable bits clear again");
	eq(rd(c, EXP + PCI_EXP_DEVSTA, 2), 0, "PCIe: DEVSTA 0 at power-on");
	pciem_cfg_set_w1c(c, EXP + PCI_EXP_DEVSTA, 2, 0xffff);
	eq(rd(c, EXP + PCI_EXP_DEVSTA, 2), 0x000f, "PCIe: DEVSTA error bits set by the device");
	wr(c, EXP + PCI_EXP_DEVSTA, 2, PCI_EXP_DEVSTA_NFED | PCI_EXP_DEVSTA_URD);
	eq(rd(c, EXP + PCI_EXP_DEVSTA, 2), 0x0005, "PCIe: DEVSTA error bits are W1C");
	wr(c, EXP + PCI_EXP_DEVCTL, 4, 0x00000000);
	eq(rd(c, EXP + PCI_EXP_DEVCTL, 4), 0x00050000,
	   "PCIe: a dword write of 0 to DEVCTL leaves DEVSTA's errors");
	eq(rd(c, EXP + PCI_EXP_LNKCAP, 4), 0x00000043, "PCIe: LNKCAP 8 GT/s x4, no ASPM");
	eq(rd(c, EXP + PCI_EXP_LNKSTA, 2), 0x1043, "PCIe: LNKSTA 8 GT/s x4, slot clock");
	wr(c, EXP + PCI_EXP_LNKCAP, 4, 0);
	wr(c, EXP + PCI_EXP_LNKSTA, 2, 0xffff);
	ok(rd(c, EXP + PCI_EXP_LNKCAP, 4) == 0x43 && rd(c, EXP + PCI_EXP_LNKSTA, 2) == 0x1043,
	   "PCIe: LNKCAP and LNKSTA are read-only");
	wr(c, EXP + PCI_EXP_LNKCTL, 2, 0xffff);
	eq(rd(c, EXP + PCI_EXP_LNKCTL, 2), 0x02cb,
	   "PCIe: LNKCTL writable: ASPM control, RCB, common clock, ext synch, HAWD");
	for (off = PCI_EXP_SLTCAP; off < PCI_EXP_DEVCAP2; off += 4) {
		wr(c, EXP + off, 4, 0xffffffff);
		zero &= rd(c, EXP + off, 4) == 0;
	}
	ok(zero, "PCIe: slot and root registers read 0 and ignore writes");
	eq(rd(c, EXP + PCI_EXP_DEVCAP2, 4), 0x00000010,
	   "PCIe: DEVCAP2 completion timeout disable supported");
	wr(c, EXP + PCI_EXP_DEVCTL2, 2, 0xffff);
	eq(rd(c, EXP + PCI_EXP_DEVCTL2, 2), 0x0050,
	   "PCIe: DEVCTL2 writable: completion timeout disable, AtomicOp requester");
	eq(rd(c, EXP + PCI_EXP_DEVSTA2, 2), 0, "PCIe: DEVSTA2 reads 0");
	eq(rd(c, EXP + PCI_EXP_LNKCAP2, 4), 0x0000000e, "PCIe: LNKCAP2 2.5, 5 and 8 GT/s");
	eq(rd(c, EXP + PCI_EXP_LNKCTL2, 2), 0x0003, "PCIe: LNKCTL2 target speed 8 GT/s");
	wr(c, EXP + PCI_EXP_LNKCTL2, 2, 0xffff);
	eq(rd(c, EXP + PCI_EXP_LNKCTL2, 2), 0x000f, "PCIe: LNKCTL2 only target speed writable");
	zero = true;
	for (off = PCI_EXP_LNKSTA2; off < 0x3c; off += 2) {
		wr(c, EXP + off, 2, 0xffff);
		zero &= rd(c, EXP + off, 2) == 0;
	}
	ok(zero, "PCIe: LNKSTA2 and the slot 2 registers read 0");
	eq(rd(c, EXP + 0x3c, 4), 0, "PCIe: nothing after its 0x3c bytes");
}

static void test_flr(void)
{
	struct pciem_cfg *c = &cfg;
	unsigned int devctl = EXP + PCI_EXP_DEVCTL;

	full(c, false);
	ok(pciem_cfg_write_is_flr(c, devctl, 2, 0x8000 | 0x2810), "FLR: a word write with bit 15");
	ok(pciem_cfg_write_is_flr(c, devctl + 1, 1, 0x80),
	   "FLR: a byte write of DEVCTL's high byte");
	ok(pciem_cfg_write_is_flr(c, devctl, 4, 0x00008000), "FLR: a dword write at DEVCTL");
	ok(!pciem_cfg_write_is_flr(c, devctl, 2, 0x7fff), "FLR: not without bit 15");
	ok(!pciem_cfg_write_is_flr(c, devctl, 1, 0xffff),
	   "FLR: not with a byte write of the low byte, whatever val holds above it");
	ok(!pciem_cfg_write_is_flr(c, EXP + PCI_EXP_LNKCTL, 2, 0x8000), "FLR: not elsewhere");
	ok(!pciem_cfg_write_is_flr(c, devctl + 1, 2, 0x0080), "FLR: not for a misaligned write");
	ok(!wr(c, devctl, 2, 0x8000 | 0x2810) && rd(c, devctl, 2) == 0x2810,
	   "FLR: Initiate FLR reads 0 and is not reported as a change");
	pciem_cfg_init(c);
	ok(!pciem_cfg_write_is_flr(c, 8, 2, 0x8000), "FLR: never without a PCIe capability");
}

static void test_reset(void)
{
	struct pciem_cfg *c = &cfg;

	full(c, false);
	wr(c, PCI_COMMAND, 2, 0x0546);
	wr(c, PCI_INTERRUPT_LINE, 1, 0x0b);
	wr(c, PCI_CACHE_LINE_SIZE, 1, 0x10);
	wr(c, PCI_BASE_ADDRESS_0, 4, 0xfe000000);
	wr(c, PCI_BASE_ADDRESS_3, 4, 0x12);
	pciem_cfg_set_w1c(c, PCI_STATUS, 2, 0xffff);
	pciem_cfg_set_intx_status(c, true);
	wr(c, MSI + 2, 2, 0x0031);
	wr(c, MSI + 4, 4, 0xfee00000);
	wr(c, MSI + 0x10, 4, 0xff);
	pciem_cfg_set_msi_pending(c, 1, true);
	wr(c, MSIX + 2, 2, 0xc000);
	wr(c, PM + 4, 2, 3);
	wr(c, EXP + PCI_EXP_DEVCTL, 2, 0x00ff);
	pciem_cfg_set_w1c(c, EXP + PCI_EXP_DEVSTA, 2, 0xf);
	wr(c, EXP + PCI_EXP_LNKCTL2, 2, 1);
	wr(c, PASID + PCI_PASID_CTRL, 2, 7);
	pciem_cfg_reset(c);

	eq(rd(c, PCI_COMMAND, 4), 0x00180000,
	   "reset: command 0, status errors clear, INTx status kept");
	ok(rd(c, PCI_BASE_ADDRESS_0, 4) == 0 && rd(c, PCI_BASE_ADDRESS_2, 4) == 0x0c &&
	   rd(c, PCI_BASE_ADDRESS_3, 4) == 0,
	   "reset: BAR addresses clear, flags stay");
	eq(rd(c, PCI_INTERRUPT_LINE, 1), 0x0b, "reset: interrupt line kept");
	eq(rd(c, PCI_CACHE_LINE_SIZE, 1), 0, "reset: cache line size clear");
	ok(rd(c, MSI + 2, 2) == 0x0186 && rd(c, MSI + 4, 4) == 0 && rd(c, MSI + 0x10, 4) == 0 &&
	   rd(c, MSI + 0x14, 4) == 0,
	   "reset: MSI disabled, address, mask and pending clear");
	eq(rd(c, MSIX + 2, 2), 0x000f, "reset: MSI-X disabled and unmasked");
	eq(rd(c, PM + 4, 2), 0x0008, "reset: power state D0");
	eq(rd(c, EXP + PCI_EXP_DEVCTL, 4), 0x00002810,
	   "reset: DEVCTL power-on value, DEVSTA clear");
	eq(rd(c, EXP + PCI_EXP_LNKCTL2, 2), 0x0003, "reset: LNKCTL2 target speed 8 GT/s");
	eq(rd(c, PASID + PCI_PASID_CTRL, 2), 0, "reset: PASID disabled");
	ok(rd(c, PCI_VENDOR_ID, 4) == 0x00011f0c && rd(c, PCI_CAPABILITY_LIST, 1) == MSI &&
	   find_ext(c, PCI_EXT_CAP_ID_PASID) == PASID,
	   "reset: IDs and capability lists kept");
}

static void test_vsec(void)
{
	struct pciem_cfg *c = &cfg;
	struct pciem_cap_config cap;
	bool body = true, ro = true;
	unsigned int i;

	full(c, false);
	eq(rd(c, VSEC, 4), 0x11810000 | PCI_EXT_CAP_ID_VNDR,
	   "VSEC: header ID 0x0b, version 1, next 0x118");
	eq(rd(c, VSEC + PCI_VNDR_HEADER, 4), 0x01810001,
	   "VSEC: vendor header ID 0x0001, rev 1, length 24");
	for (i = 0; i < 16; i++)
		body &= rd(c, VSEC + 8 + i, 1) == 0xa0 + i;
	ok(body, "VSEC: body is the 16 raw bytes");
	for (i = 0; i < 24; i += 4) {
		wr(c, VSEC + i, 4, 0);
		wr(c, VSEC + i, 4, 0xffffffff);
	}
	ro = rd(c, VSEC, 4) == 0x1181000b && rd(c, VSEC + 4, 4) == 0x01810001 &&
	     rd(c, VSEC + 8, 4) == 0xa3a2a1a0 && rd(c, VSEC + 20, 4) == 0xafaeadac;
	ok(ro, "VSEC: header and body are read-only");
	eq(c->vsec_ecap, VSEC, "vsec_ecap: the VSEC's offset");

	fresh(c);
	add_cap(c, vsec_desc(0));
	cap = vsec_desc(0x10);
	err_eq(pciem_cfg_add_cap(c, &cap), 0, "VSEC: a second one is accepted");
	must(pciem_cfg_finalize(c, false), "finalize");
	ok(rd(c, 0x100, 4) == 0x1181000b && rd(c, 0x118, 4) == 0x0001000b &&
	   rd(c, 0x120, 4) == 0x13121110 && c->vsec_ecap == 0x100,
	   "VSEC: two chain at 0x100 and 0x118; vsec_ecap is the first");
	fresh(c);
	cap = vsec_desc(0);
	cap.reserved[0] = 1;
	err_eq(pciem_cfg_add_cap(c, &cap), -EINVAL,
	       "VSEC: non-zero reserved is -EINVAL");
}

static void test_pasid_layout(u8 width, u8 exec, u8 priv)
{
	struct pciem_cfg *c = &cfg;
	u16 caps = width << 8 | (exec ? 2 : 0) | (priv ? 4 : 0);
	u16 ctrl = 1 | (exec ? 2 : 0) | (priv ? 4 : 0);

	fresh(c);
	add_cap(c, pasid_desc(width, exec, priv));
	must(pciem_cfg_finalize(c, false), "finalize");
	eq(rd(c, 0x100, 4), 0x0001001b, "PASID width %u%s%s: header ID 0x1b, version 1, last",
	   width, exec ? ", exec" : "", priv ? ", priv" : "");
	wr(c, 0x104, 2, 0);
	eq(rd(c, 0x104, 2), caps, "PASID width %u%s%s: capability 0x%04x, read-only",
	   width, exec ? ", exec" : "", priv ? ", priv" : "", caps);
	wr(c, 0x106, 2, 0xffff);
	eq(rd(c, 0x106, 2), ctrl, "PASID width %u%s%s: control writable bits 0x%04x",
	   width, exec ? ", exec" : "", priv ? ", priv" : "", ctrl);
}

static void test_pasid(void)
{
	test_pasid_layout(20, 1, 1);
	test_pasid_layout(0, 0, 0);
	test_pasid_layout(16, 1, 0);
	test_pasid_layout(8, 0, 1);
	full(&cfg, false);
	eq(cfg.pasid_ecap, PASID, "pasid_ecap: the PASID capability's offset");
	eq(rd(&cfg, PASID, 4), 0x0001001b, "PASID after a VSEC: the last extended capability");
}

/* --- Chains --- */

static void test_chains(void)
{
	static const u8 std_ids[] = {
		PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_CAP_ID_PM, PCI_CAP_ID_EXP,
	};
	static const u8 std_pos[] = { MSI, MSIX, PM, EXP };
	static const unsigned int std_len[] = { 24, 12, 8, 0x3c };
	struct pciem_cfg *c = &cfg;
	struct pciem_cap_config cap;
	unsigned int pos, n, end, count;
	bool good = true;
	u32 hdr;
	int ret;

	full(c, false);
	pos = rd(c, PCI_CAPABILITY_LIST, 1);
	for (n = 0; pos && n < ARRAY_SIZE(std_ids); n++) {
		good &= pos == std_pos[n] && rd(c, pos, 1) == std_ids[n];
		pos = rd(c, pos + 1, 1);
	}
	ok(good && n == 4 && pos == 0,
	   "standard list: MSI, MSI-X, PM, PCIe in the order added, then 0");
	good = true;
	end = 0x40;
	for (n = 0; n < ARRAY_SIZE(std_pos); n++) {
		good &= std_pos[n] >= end && !(std_pos[n] & 3);
		end = std_pos[n] + std_len[n];
	}
	ok(good && end <= 0x100,
	   "standard list: dword aligned, not overlapping, inside 0x40..0xff");
	ok(c->msi_cap == MSI && c->msix_cap == MSIX && c->pm_cap == PM && c->pcie_cap == EXP,
	   "capability offsets recorded in struct pciem_cfg");
	ok(find_cap(c, PCI_CAP_ID_EXP) == EXP && find_cap(c, PCI_CAP_ID_PCIX) == 0,
	   "pci_find_capability walk: finds PCIe, not PCI-X");
	ok(find_ext(c, PCI_EXT_CAP_ID_VNDR) == VSEC && find_ext(c, PCI_EXT_CAP_ID_PASID) == PASID &&
	   find_ext(c, PCI_EXT_CAP_ID_ERR) == 0,
	   "pci_find_ext_capability walk: finds VSEC and PASID, not AER");
	hdr = rd(c, PASID, 4);
	ok(PCI_EXT_CAP_NEXT(hdr) == 0 && PCI_EXT_CAP_NEXT(rd(c, VSEC, 4)) == PASID,
	   "extended list: VSEC -> PASID -> 0");
	eq(rd(c, PASID + 8, 4), 0, "extended area: 0 after the last capability");

	fresh(c);
	add_cap(c, cap_desc(PCIEM_CAP_PCIE));
	add_cap(c, pasid_desc(4, 0, 0));
	add_cap(c, cap_desc(PCIEM_CAP_PM));
	add_cap(c, vsec_desc(1));
	must(pciem_cfg_finalize(c, false), "finalize");
	ok(rd(c, 0x34, 1) == 0x40 && rd(c, 0x40, 2) == 0x7c10 && rd(c, 0x7c, 2) == 0x0001,
	   "standard list in another order: PCIe at 0x40 -> PM at 0x7c -> 0");
	ok(rd(c, 0x100, 4) == 0x1081001b && rd(c, 0x108, 4) == 0x0001000b,
	   "extended list in another order: PASID at 0x100 -> VSEC at 0x108 -> 0");

	fresh(c);
	count = 0;
	for (;;) {
		cap = vsec_desc((u8)count);
		ret = pciem_cfg_add_cap(c, &cap);
		if (ret) {
			err_eq(ret, -ENOSPC,
			       "VSECs fill the extended area, then -ENOSPC");
			break;
		}
		count++;
	}
	eq(count, (0x1000 - 0x100) / 24, "the extended area holds 160 VSECs");
	n = 0;
	pos = 0x100;
	while (pos && n <= count) {
		n++;
		pos = PCI_EXT_CAP_NEXT(rd(c, pos, 4));
	}
	eq(n, count, "the chain of 160 VSECs walks to its end");
	cap = pasid_desc(4, 0, 0);
	err_eq(pciem_cfg_add_cap(c, &cap), -ENOSPC, "PASID in a full extended area is -ENOSPC");
	must(pciem_cfg_finalize(c, false), "finalize");
	eq(cfg_space_size(c), 4096, "a full extended area is still a 4 KiB space");

	/* White-box: the standard area cannot fill through the API (one of each). */
	fresh(c);
	c->std_next = 0xf8;
	cap = msix_desc(0, 0, 0x800, 1);
	err_eq(pciem_cfg_add_cap(c, &cap), -ENOSPC, "a capability beyond 0xff is -ENOSPC");
	add_cap(c, cap_desc(PCIEM_CAP_PM));
	ok(rd(c, 0x34, 1) == 0xf8 && rd(c, 0xf8, 1) == PCI_CAP_ID_PM,
	   "a capability ending exactly at 0x100 fits");
	err_eq(pciem_cfg_finalize(c, false), -ENOSPC,
	       "finalize: no room for the PCIe capability is -ENOSPC");
	ok(!c->finalized && c->pcie_cap == 0, "finalize: a failed finalize leaves it open");
}

/* --- Capability validation --- */

static void expect_cap_error(struct pciem_cap_config cap, int err, const char *what)
{
	struct pciem_cfg *c = &cfg;

	fresh(c);
	err_eq(pciem_cfg_add_cap(c, &cap), err, "add_cap: %s", what);
}

static void test_cap_errors(void)
{
	struct pciem_cap_config cap;
	struct pciem_cfg *c = &cfg;
	static const u32 types[] = {
		PCIEM_CAP_MSI, PCIEM_CAP_MSIX, PCIEM_CAP_PM, PCIEM_CAP_PCIE, PCIEM_CAP_PASID,
	};
	static const char *const names[] = { "MSI", "MSI-X", "PM", "PCIe", "PASID" };
	size_t i;

	expect_cap_error(cap_desc(6), -EINVAL, "unknown type 6 is -EINVAL");
	expect_cap_error(cap_desc(0xffffffff), -EINVAL, "unknown type 0xffffffff is -EINVAL");
	cap = cap_desc(PCIEM_CAP_PM);
	cap.reserved[1] = 1;
	expect_cap_error(cap, -EINVAL, "non-zero reserved is -EINVAL");
	cap = cap_desc(PCIEM_CAP_PM);
	cap.func = 5;
	expect_cap_error(cap, 0, "func is not looked at");

	expect_cap_error(msi_desc(6, 0, 0), -EINVAL, "MSI num_vectors_log2 6 is -EINVAL");
	expect_cap_error(msi_desc(0, 2, 0), -EINVAL, "MSI has_64bit 2 is -EINVAL");
	expect_cap_error(msi_desc(0, 0, 0xff), -EINVAL, "MSI has_masking 255 is -EINVAL");
	cap = msi_desc(0, 0, 0);
	cap.msi.reserved = 1;
	expect_cap_error(cap, -EINVAL, "MSI non-zero reserved is -EINVAL");
	cap = msi_desc(0, 0, 0);
	cap.raw[4] = 1;
	expect_cap_error(cap, -EINVAL, "MSI with a non-zero union tail is -EINVAL");
	cap = msi_desc(0, 0, 0);
	cap.raw[15] = 1;
	expect_cap_error(cap, -EINVAL, "MSI with the union's last byte non-zero is -EINVAL");
	expect_cap_error(msi_desc(5, 1, 1), 0, "MSI 32 vectors is accepted");

	expect_cap_error(msix_desc(0, 0, 0x800, 0), -EINVAL, "MSI-X table_size 0 is -EINVAL");
	expect_cap_error(msix_desc(0, 0, 0x800, 2049), -EINVAL, "MSI-X table_size 2049 is -EINVAL");
	expect_cap_error(msix_desc(0, 0, 0x800, 0xffff), -EINVAL,
			 "MSI-X table_size 65535 is -EINVAL");
	expect_cap_error(msix_desc(6, 0, 0x800, 1), -EINVAL, "MSI-X bar_index 6 is -EINVAL");
	expect_cap_error(msix_desc(0, 4, 0x800, 1), -EINVAL,
			 "MSI-X table_offset 4 (not 8-aligned) is -EINVAL");
	expect_cap_error(msix_desc(0, 0, 0x801, 1), -EINVAL,
			 "MSI-X pba_offset 0x801 (not 8-aligned) is -EINVAL");
	cap = msix_desc(0, 0, 0x800, 1);
	cap.msix.reserved[2] = 1;
	expect_cap_error(cap, -EINVAL, "MSI-X non-zero reserved is -EINVAL");
	cap = msix_desc(0, 0, 0x800, 1);
	cap.msix.reserved2 = 1;
	expect_cap_error(cap, -EINVAL, "MSI-X non-zero reserved2 is -EINVAL");
	expect_cap_error(msix_desc(5, 0xfffffff8, 0x800, 2048), 0,
			 "MSI-X 2048 vectors, BAR5, any aligned offset (finalize checks)");

	cap = cap_desc(PCIEM_CAP_PM);
	cap.raw[0] = 1;
	expect_cap_error(cap, -EINVAL, "PM with non-zero union bytes is -EINVAL");
	cap = cap_desc(PCIEM_CAP_PCIE);
	cap.raw[8] = 1;
	expect_cap_error(cap, -EINVAL, "PCIe with non-zero union bytes is -EINVAL");

	expect_cap_error(pasid_desc(21, 0, 0), -EINVAL, "PASID width 21 is -EINVAL");
	expect_cap_error(pasid_desc(0, 2, 0), -EINVAL, "PASID execute_permission 2 is -EINVAL");
	expect_cap_error(pasid_desc(0, 0, 2), -EINVAL, "PASID privileged_mode 2 is -EINVAL");
	cap = pasid_desc(20, 1, 1);
	cap.pasid.reserved = 1;
	expect_cap_error(cap, -EINVAL, "PASID non-zero reserved is -EINVAL");
	cap = pasid_desc(20, 1, 1);
	cap.raw[7] = 1;
	expect_cap_error(cap, -EINVAL, "PASID with a non-zero union tail is -EINVAL");

	for (i = 0; i < ARRAY_SIZE(types); i++) {
		fresh(c);
		cap = types[i] == PCIEM_CAP_MSI ? msi_desc(0, 0, 0) :
		      types[i] == PCIEM_CAP_MSIX ? msix_desc(0, 0, 0x800, 1) :
		      types[i] == PCIEM_CAP_PASID ? pasid_desc(8, 0, 0) : cap_desc(types[i]);
		must(pciem_cfg_add_cap(c, &cap), "add_cap");
		cfg2 = *c;
		err_eq(pciem_cfg_add_cap(c, &cap), -EEXIST,
		       "add_cap: %s twice is -EEXIST", names[i]);
	}
	ok(!memcmp(c, &cfg2, sizeof(*c)),
	   "add_cap: a refused call leaves the config space as it was");

	full(c, false);
	cap = vsec_desc(0);
	err_eq(pciem_cfg_add_cap(c, &cap), -EALREADY,
	       "add_cap: after finalize is -EALREADY");
	cap = cap_desc(7);
	err_eq(pciem_cfg_add_cap(c, &cap), -EINVAL,
	       "add_cap: a bad description after finalize is still -EINVAL");
}

/* --- Access sizes and ranges --- */

static void test_access(void)
{
	struct pciem_cfg *c = &cfg;
	bool zero = true, same = true;
	unsigned int off;

	full(c, false);
	ok(rd(c, 0, 1) == 0x0c && rd(c, 1, 1) == 0x1f && rd(c, 2, 1) == 0x01 && rd(c, 3, 1) == 0,
	   "byte reads of dword 0 are little endian");
	ok(rd(c, 0, 2) == 0x1f0c && rd(c, 2, 2) == 0x0001, "word reads of dword 0");
	for (off = 0; off < PCIEM_CFG_SIZE; off += 4)
		same &= rd(c, off, 4) == (rd(c, off, 2) | rd(c, off + 2, 2) << 16) &&
			rd(c, off, 2) == (rd(c, off, 1) | rd(c, off + 1, 1) << 8);
	ok(same, "dword, word and byte reads agree over the whole 4 KiB");
	eq(rd(c, 1, 2), 0xffff, "a misaligned word read returns 0xffff");
	eq(rd(c, 2, 4), 0xffffffff, "a misaligned dword read returns all-ones");
	eq(rd(c, PCI_STATUS, 4), 0xffffffff, "a dword read at 0x06 returns all-ones");
	eq(rd(c, 0, 3), 0xffffffff, "a 3-byte read returns all-ones");
	eq(rd(c, 0, 0), 0xffffffff, "a 0-byte read returns all-ones");
	eq(rd(c, 0, 8), 0xffffffff, "an 8-byte read returns all-ones");
	eq(rd(c, 4096, 1), 0xff, "a byte read at 4096 returns 0xff");
	eq(rd(c, 4096, 4), 0xffffffff, "a dword read at 4096 returns all-ones");
	eq(rd(c, 0xfffffffc, 4), 0xffffffff, "a dword read at 0xfffffffc returns all-ones");
	eq(rd(c, 0xffc, 4), 0, "the last dword reads 0");
	eq(rd(c, 0xffe, 2), 0, "the last word reads 0");
	eq(rd(c, 0xfff, 1), 0, "the last byte reads 0");
	cfg2 = *c;
	ok(!wr(c, PCI_INTERRUPT_LINE - 1, 2, 0xffff) && !wr(c, PCI_COMMAND + 2, 4, 0xffffffff) &&
	   !wr(c, PCI_COMMAND, 3, 0xffffff) && !wr(c, PCI_COMMAND, 8, 0xffffffff) &&
	   !wr(c, 4096, 1, 0xff) && !wr(c, 0xfffffffe, 2, 0xffff) &&
	   !memcmp(c, &cfg2, sizeof(*c)),
	   "misaligned, odd-sized and out-of-range writes are ignored");
	for (off = 0x200; off < PCIEM_CFG_SIZE; off += 4) {
		wr(c, off, 4, 0xffffffff);
		zero &= rd(c, off, 4) == 0;
	}
	ok(zero, "0x200..0xfff: reads 0 and ignores writes");
	zero = true;
	for (off = 0xa8; off < 0x100; off += 4) {
		wr(c, off, 4, 0xffffffff);
		zero &= rd(c, off, 4) == 0;
	}
	ok(zero, "the standard area after the last capability reads 0 and ignores writes");
	ok(pciem_cfg_access_ok(0, 1) && pciem_cfg_access_ok(0xfff, 1) &&
	   pciem_cfg_access_ok(0xffe, 2) && pciem_cfg_access_ok(0xffc, 4),
	   "access_ok: aligned accesses up to the last byte");
	ok(!pciem_cfg_access_ok(1, 2) && !pciem_cfg_access_ok(2, 4) && !pciem_cfg_access_ok(0, 3) &&
	   !pciem_cfg_access_ok(0x1000, 1) && !pciem_cfg_access_ok(0, 0),
	   "access_ok: misaligned, odd sizes and 4096 refused");
	wr(c, PCI_INTERRUPT_LINE, 2, 0xff22);
	eq(rd(c, PCI_INTERRUPT_LINE, 4), 0x00000122, "a word write to line/pin: line only");
	wr(c, PCI_INTERRUPT_LINE, 1, 0xffffff33);
	eq(rd(c, PCI_INTERRUPT_LINE, 4), 0x00000133,
	   "a byte write ignores the bits of val above its size");
	wr(c, PCI_CACHE_LINE_SIZE, 4, 0xffffffff);
	eq(rd(c, PCI_CACHE_LINE_SIZE, 4), 0x0000ffff,
	   "a dword write at 0x0c: cache line and latency timer only");
}

static void test_ext_space(void)
{
	struct pciem_cfg *c = &cfg;
	bool clean = true;
	unsigned int i;

	fresh(c);
	must(pciem_cfg_finalize(c, false), "finalize");
	eq(rd(c, 0x100, 4), 0, "0x100 reads 0 when there is no extended capability");
	wr(c, 0x100, 4, 0xffffffff);
	eq(rd(c, 0x100, 4), 0, "0x100 is read-only when there is no extended capability");
	eq(find_ext(c, PCI_EXT_CAP_ID_VNDR), 0, "an empty extended list has no capability");
	eq(cfg_space_size(c), 4096, "pci_cfg_space_size_ext: 4 KiB without extended capabilities");
	ok(find_cap(c, PCI_CAP_ID_EXP) != 0,
	   "pci_is_pcie: the PCIe capability is found, so the core asks for 4 KiB");
	full(c, false);
	eq(cfg_space_size(c), 4096, "pci_cfg_space_size_ext: 4 KiB with extended capabilities");
	for (i = 0; i < PCIEM_CFG_SIZE; i++)
		clean &= !(c->wmask[i] & c->w1cmask[i]);
	ok(clean, "no bit is both read-write and write-1-to-clear");
	clean = true;
	for (i = 0; i < 0x40; i++)
		clean &= !c->w1cmask[i] || i == PCI_STATUS || i == PCI_STATUS + 1;
	ok(clean, "in the header only status has W1C bits");
}

int main(void)
{
	test_header();
	test_command();
	test_status();
	test_bars();
	test_bar_errors();
	test_ids_errors();
	test_finalize();
	test_msix_bar_check();
	test_msi();
	test_msix();
	test_pm();
	test_pcie();
	test_flr();
	test_reset();
	test_vsec();
	test_pasid();
	test_chains();
	test_cap_errors();
	test_access();
	test_ext_space();
	printf("config: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
