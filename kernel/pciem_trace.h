/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pciem_trace: every CPU access to a synthetic BAR reaches pciem.
 *
 * A pciem BAR sits at physical addresses nothing decodes. When a driver maps
 * part of a traced range (ioremap, ioremap_wc/uc/cache/prot, pci_iomap,
 * pci_iomap_wc, devm_ioremap*, memremap of non-RAM: they all end in
 * ioremap_page_range()), the mapping is created without page table entries.
 * Every access then page-faults; the fault handler decodes the instruction,
 * calls the range's read or write op and resumes after the instruction. The
 * entries are never filled in, not even for a single step, so no CPU ever
 * reaches the physical address and each access reaches the ops exactly once,
 * in the order its CPU issues it.
 *
 * What is and is not traced:
 * - Mappings created after pciem_trace_add() returns, whole or partial, at
 *   any offset. Mappings created before it, or after pciem_trace_remove(),
 *   are not traced (they reach the bare physical address): add the range
 *   before the device is visible to drivers, remove it after they are gone.
 * - A mapping that overlaps a range is trapped whole; an access to a part of
 *   it outside the range, or one that straddles the end of the range, is
 *   refused like an unsupported instruction (below).
 * - Userspace mappings (sysfs resourceN, /dev/mem) are not traced.
 * - Accesses are caught in any context but NMI: with IRQs off, in hard and
 *   soft interrupts, inside kprobe handlers (and in interrupts that arrive
 *   while one runs). Not caught, and oopsing as any access to
 *   unmapped memory would: accesses from the ops themselves (they run in
 *   the fault hook: they must not touch traced mappings), and an access by
 *   an instruction that a kprobe has replaced with int3.
 *
 * Instructions the decoder (pciem_insn.h) does not emulate - string moves
 * (memcpy_toio, memcpy_fromio), read-modify-write, SIMD - are refused: the
 * instruction is skipped, writes are dropped, string reads fill their
 * destination with all-ones, a ratelimited warning names the instruction
 * and the access is counted as refused. Other register effects of a refused
 * instruction (flags, a register loaded by an arithmetic op) are not
 * emulated.
 *
 * While any traced mapping exists the module holding this code cannot be
 * unloaded (each mapping holds a module reference until its iounmap).
 */
#ifndef PCIEM_TRACE_H
#define PCIEM_TRACE_H

#include <linux/types.h>

struct pciem_trace_ops {
	/*
	 * Both run in the faulting context: atomic, may have IRQs off; must
	 * not sleep. They may run concurrently on several CPUs; each CPU's
	 * calls come in its program order. offset is relative to the range's
	 * start; size is 1, 2, 4 or 8; an access never crosses the range's end.
	 */
	u64 (*read)(void *priv, u64 offset, unsigned int size);
	void (*write)(void *priv, u64 offset, unsigned int size, u64 value);
};

struct pciem_trace_range;

/*
 * Registers the hooks; module init, process context. 0, -EBUSY if already
 * done, or the -errno of the hook that could not be registered (logged).
 */
int pciem_trace_init(void);

/*
 * Module exit: unregisters the hooks. Ranges still registered are removed
 * (with a warning) so nothing dangles.
 */
void pciem_trace_exit(void);

/*
 * Traces [start, start + len): start must be page aligned, len > 0, ops and
 * both its callbacks non-NULL; ops and priv must outlive the range. The
 * pages [start, start + PAGE_ALIGN(len)) are trapped and must not overlap
 * another range's. Process context. Returns the range, or ERR_PTR(-EINVAL),
 * -EBUSY (overlap), -ENODEV (pciem_trace_init() not done), -ENOMEM.
 */
struct pciem_trace_range *pciem_trace_add(phys_addr_t start, u64 len,
					  const struct pciem_trace_ops *ops,
					  void *priv);

/*
 * Stops tracing r and frees it; sleeps (process context only, never from
 * an op). When it returns, no op of r runs or will run on any CPU. Mappings
 * of r that still exist keep trapping: reads return all-ones, writes are
 * dropped, and both count as orphaned, until the driver unmaps them.
 * NULL and ERR_PTR values are ignored.
 */
void pciem_trace_remove(struct pciem_trace_range *r);

/*
 * Counters since the module loaded, for tests and debugfs: accesses
 * emulated, accesses refused (unsupported instruction, outside the range),
 * accesses to removed ranges.
 */
struct pciem_trace_stats {
	u64 reads, writes, refused, orphaned;
};

void pciem_trace_get_stats(struct pciem_trace_stats *st);

#endif /* PCIEM_TRACE_H */
