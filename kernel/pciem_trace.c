// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_trace: trap and emulate every CPU access to a synthetic BAR (see
 * pciem_trace.h for the contract).
 *
 * Three hooks, each an ftrace_ops on one function entry (checked on Debian
 * 6.1 and 6.12: present in /proc/kallsyms under these exact names and
 * listed in available_filter_functions):
 *
 * ioremap_page_range(addr, end, phys, prot)
 *	x86's __ioremap_caller() is its only caller, and every ioremap flavour
 *	(ioremap, _wc, _uc, _wt, _cache, _prot; pci_iomap*, devm_ioremap*,
 *	memremap of non-RAM) goes through __ioremap_caller(), so this is the
 *	one choke point. When the range being mapped overlaps a traced range,
 *	the hook records the mapping and returns 0 from the function before
 *	it writes a single entry: the vm area stays allocated but unmapped.
 *	No entry is ever present, so no TLB flush is needed and no other CPU
 *	can race through a window in which the physical address is mapped.
 *
 * iounmap(addr)
 *	Every ioremap mapping ends here (pci_iounmap, devm release and
 *	memunmap included). The hook forgets the mapping. The entries are
 *	still none, which vunmap_range_noflush() tears down without a word
 *	(it warns only about entries that are neither none nor present), so
 *	there is nothing to restore and no instant at which the unbacked
 *	address becomes reachable.
 *
 * bad_area_nosemaphore(regs, error_code, address)
 *	do_kern_addr_fault() (itself not traceable) tail-calls it for a
 *	kernel-address fault that is not spurious and not a kprobe's own. The
 *	hook emulates the access and then, as livepatch redirects a function,
 *	sends the function straight to a return, so the oops path never runs.
 *	Faults it does not recognise continue as usual.
 *
 * Why ftrace_ops and not kprobes: kprobes do not nest. While any kprobe
 * handler runs on a CPU (ours on ioremap, or anyone's), a kprobe hit there
 * is dropped as "missed"; an interrupt or softirq arriving in that window
 * whose handler reads a BAR - pciem delivers its interrupts from irq_work,
 * on whichever CPU injects - would fault with nobody to emulate the access,
 * and oops. An ftrace_ops without FTRACE_OPS_FL_RECURSION is called
 * directly from its own trampoline, at every entry, in every context, so
 * the fault hook runs whatever else is running on the CPU, and the mapping
 * hooks leave no state behind that could stop it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": trace: " fmt

#include <linux/err.h>
#include <linux/ftrace.h>
#include <linux/list.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/printk.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <asm/ptrace.h>
#include <asm/trap_pf.h>

#include "pciem_insn.h"
#include "pciem_trace.h"

struct pciem_trace_range {
	struct list_head node;		/* in pciem_trace_ranges */
	phys_addr_t start;
	u64 len;
	u64 span;			/* len in whole pages: what is trapped */
	const struct pciem_trace_ops *ops;
	void *priv;
};

/* A traced mapping, from its ioremap_page_range() to its iounmap(). */
struct pciem_trace_map {
	struct list_head node;		/* in pciem_trace_maps */
	unsigned long va;		/* start of the vm area, page aligned */
	unsigned long size;		/* bytes, whole pages */
	phys_addr_t phys;		/* what va would have mapped */
	struct pciem_trace_range __rcu *range;	/* NULL once removed */
	struct rcu_head rcu;
};

/*
 * pciem_trace_lock serialises every change to the two lists, to
 * map->range and to pciem_trace_active. It is taken in process context:
 * add, remove, exit, and the ioremap/iounmap hooks (they run in their
 * caller's context; ioremap and iounmap sleep, so never in IRQ context).
 * The fault path never takes it: it walks pciem_trace_maps under RCU, so a
 * fault can be handled while any CPU holds the lock - an interrupt handler
 * reading a BAR while its CPU is in the ioremap hook included.
 * pciem_trace_remove() waits for in-flight faults with synchronize_rcu();
 * the fault hook runs with IRQs off, which that also waits for.
 */
static DEFINE_SPINLOCK(pciem_trace_lock);
static LIST_HEAD(pciem_trace_ranges);
static LIST_HEAD(pciem_trace_maps);	/* RCU readers: the fault path */
static bool pciem_trace_active;		/* the hooks are registered */

/* Per CPU, so the fault path never shares a cache line for a count. */
static DEFINE_PER_CPU(struct pciem_trace_stats, pciem_trace_counts);

/*
 * Where the hooks send a hooked function so that it returns at once: the
 * ftrace trampoline returns (never jumps) here with the stack as at the
 * function's entry, so this returns to the hooked function's caller.
 */
static noinline int pciem_trace_return_0(void)
{
	return 0;
}

static noinline int pciem_trace_return_enomem(void)
{
	return -ENOMEM;
}

static void pciem_trace_return_now(struct pt_regs *regs, int (*ret)(void))
{
	instruction_pointer_set(regs, (unsigned long)ret);
}

/* The instruction at ip; fewer bytes if the next page is unreadable. */
static unsigned int pciem_trace_fetch(unsigned long ip, u8 *buf)
{
	unsigned int first = min_t(unsigned long, PCIEM_INSN_MAX_LEN,
				   PAGE_SIZE - offset_in_page(ip));

	if (copy_from_kernel_nofault(buf, (void *)ip, first))
		return 0;
	if (first < PCIEM_INSN_MAX_LEN &&
	    !copy_from_kernel_nofault(buf + first, (void *)(ip + first),
				      PCIEM_INSN_MAX_LEN - first))
		return PCIEM_INSN_MAX_LEN;
	return first;
}

/* Pointer arithmetic as the CPU does it, in 32 bits under 0x67. */
static unsigned long pciem_trace_advance(unsigned long reg, long delta,
					 bool addr32)
{
	reg += delta;
	return addr32 ? (u32)reg : reg;
}

/* Stores all-ones over [dst, dst + len) without trusting dst. */
static void pciem_trace_fill_ones(unsigned long dst, unsigned long len)
{
	static const u64 ones = ~0ULL;
	unsigned long end = dst + len;

	/* Kernel memory only, all in the direct map or all in vmalloc space. */
	if (!len || end < dst)
		return;
	if (!(virt_addr_valid((void *)dst) && virt_addr_valid((void *)(end - 1))) &&
	    !(is_vmalloc_addr((void *)dst) && is_vmalloc_addr((void *)(end - 1))))
		return;
	pagefault_disable();
	while (dst < end) {
		if (IS_ALIGNED(dst, 8) && end - dst >= 8) {
			__put_kernel_nofault((void *)dst, &ones, u64, out);
			dst += 8;
		} else {
			__put_kernel_nofault((void *)dst, &ones, u8, out);
			dst++;
		}
	}
out:
	pagefault_enable();
}

/*
 * A refused string instruction completes as if the device were gone: the
 * pointers and the count advance over every element, writes go nowhere,
 * reads deliver all-ones (lods into rAX, movs into the destination).
 * Anything else is left alone.
 */
static void pciem_trace_skip_string(struct pt_regs *regs,
				    const struct pciem_trace_map *m,
				    const struct pciem_insn *insn)
{
	unsigned int esize = insn->size;
	unsigned long count, bytes;
	bool src, dst;
	long delta;

	switch (insn->string) {
	case PCIEM_STRING_MOVS:
	case PCIEM_STRING_CMPS:
		src = dst = true;
		break;
	case PCIEM_STRING_INS:
	case PCIEM_STRING_STOS:
	case PCIEM_STRING_SCAS:
		src = false;
		dst = true;
		break;
	case PCIEM_STRING_OUTS:
	case PCIEM_STRING_LODS:
		src = true;
		dst = false;
		break;
	default:
		return;
	}
	count = insn->rep ? regs->cx : 1;
	if (insn->addr32)
		count = (u32)count;
	bytes = count * esize;
	delta = regs->flags & X86_EFLAGS_DF ? -(long)bytes : (long)bytes;

	if (insn->string == PCIEM_STRING_LODS) {
		if (esize == 8 || esize == 4)
			regs->ax = esize == 8 ? ~0UL : 0xffffffffUL;
		else
			regs->ax |= esize == 2 ? 0xffffUL : 0xffUL;
	}
	/* movs from the device into memory: that memory reads all-ones */
	if (insn->string == PCIEM_STRING_MOVS && count &&
	    regs->di - m->va >= m->size) {
		unsigned long len = min(bytes, m->size);
		unsigned long first = regs->flags & X86_EFLAGS_DF ?
				      regs->di + esize - len : regs->di;

		pciem_trace_fill_ones(first, len);
	}
	if (src)
		regs->si = pciem_trace_advance(regs->si, delta, insn->addr32);
	if (dst)
		regs->di = pciem_trace_advance(regs->di, delta, insn->addr32);
	if (insn->rep)
		regs->cx = 0;
}

/* An access at pa that cannot be emulated but can be skipped. */
static void pciem_trace_refuse(struct pt_regs *regs,
			       const struct pciem_trace_map *m, phys_addr_t pa,
			       const struct pciem_insn *insn, const u8 *buf,
			       const char *why)
{
	pr_warn_ratelimited("%s at %pS accessing %pa (%*ph): skipped, reads give all-ones, writes are dropped\n",
			    why, (void *)regs->ip, &pa, insn->len, buf);
	pciem_trace_skip_string(regs, m, insn);
	regs->ip += insn->len;
	this_cpu_inc(pciem_trace_counts.refused);
}

/* Emulates the access at addr, which lies in m. Called under RCU. */
static bool pciem_trace_emulate(struct pt_regs *regs,
				const struct pciem_trace_map *m,
				unsigned long addr, bool write)
{
	const struct pciem_trace_range *r;
	u8 buf[PCIEM_INSN_MAX_LEN];
	struct pciem_insn insn;
	unsigned int n;
	phys_addr_t pa;
	u64 off;
	int ret;

	pa = m->phys + (addr - m->va);
	n = pciem_trace_fetch(regs->ip, buf);
	ret = pciem_insn_decode(buf, n, &insn);
	if (ret == -EOPNOTSUPP) {
		pciem_trace_refuse(regs, m, pa, &insn, buf,
				   "unsupported instruction");
		return true;
	}
	/*
	 * Not a memory access of known length: in practice, the bytes at ip
	 * were rewritten after the CPU ran them (the int3 of a kprobe
	 * placed on this very instruction). Nothing can be skipped safely,
	 * and the kernel oopses as it would have without pciem.
	 */
	if (ret) {
		pr_err_ratelimited("cannot decode the instruction at %pS accessing %pa: %*ph\n",
				   (void *)regs->ip, &pa, n, buf);
		return false;
	}
	if ((insn.kind == PCIEM_INSN_WRITE) != write) {
		pciem_trace_refuse(regs, m, pa, &insn, buf,
				   "instruction does not match the fault");
		return true;
	}

	r = rcu_dereference(m->range);
	if (!r) {
		if (insn.kind == PCIEM_INSN_READ)
			pciem_insn_complete_read(&insn, regs, ~0ULL);
		this_cpu_inc(pciem_trace_counts.orphaned);
		regs->ip += insn.len;
		return true;
	}

	off = pa - r->start;
	if (pa < r->start || off >= r->len || r->len - off < insn.size) {
		pr_warn_ratelimited("%u-byte access at offset %#llx of a %#llx-byte range, at %pS (%*ph): refused\n",
				    insn.size, (u64)(pa - r->start), r->len,
				    (void *)regs->ip, insn.len, buf);
		if (insn.kind == PCIEM_INSN_READ)
			pciem_insn_complete_read(&insn, regs, ~0ULL);
		this_cpu_inc(pciem_trace_counts.refused);
		regs->ip += insn.len;
		return true;
	}

	if (insn.kind == PCIEM_INSN_WRITE) {
		r->ops->write(r->priv, off, insn.size,
			      pciem_insn_write_value(&insn, regs));
		this_cpu_inc(pciem_trace_counts.writes);
	} else {
		pciem_insn_complete_read(&insn, regs,
					 r->ops->read(r->priv, off, insn.size));
		this_cpu_inc(pciem_trace_counts.reads);
	}
	regs->ip += insn.len;
	return true;
}

static void pciem_trace_fault_hook(struct pt_regs *pregs)
{
	struct pt_regs *regs = (struct pt_regs *)regs_get_kernel_argument(pregs, 0);
	unsigned long error_code = regs_get_kernel_argument(pregs, 1);
	unsigned long addr = regs_get_kernel_argument(pregs, 2);
	struct pciem_trace_map *m;
	bool handled = false;

	/* Ours are kernel-mode data accesses to a page that is not there. */
	if (user_mode(regs) ||
	    (error_code & (X86_PF_PROT | X86_PF_USER | X86_PF_RSVD | X86_PF_INSTR)))
		return;

	rcu_read_lock();
	list_for_each_entry_rcu(m, &pciem_trace_maps, node) {
		if (addr - m->va < m->size) {
			handled = pciem_trace_emulate(regs, m, addr,
						      error_code & X86_PF_WRITE);
			break;
		}
	}
	rcu_read_unlock();
	if (handled)
		pciem_trace_return_now(pregs, pciem_trace_return_0);
}

/* The first range whose pages overlap [phys, phys + size). */
static struct pciem_trace_range *pciem_trace_find_range(phys_addr_t phys,
							 u64 size)
{
	struct pciem_trace_range *r;

	lockdep_assert_held(&pciem_trace_lock);
	list_for_each_entry(r, &pciem_trace_ranges, node) {
		if (phys < r->start + r->span && r->start < phys + size)
			return r;
	}
	return NULL;
}

static void pciem_trace_ioremap_hook(struct pt_regs *regs)
{
	unsigned long va = regs_get_kernel_argument(regs, 0);
	unsigned long end = regs_get_kernel_argument(regs, 1);
	phys_addr_t phys = regs_get_kernel_argument(regs, 2);
	struct pciem_trace_range *r;
	struct pciem_trace_map *m = NULL;

	if (end <= va)
		return;
	spin_lock(&pciem_trace_lock);
	r = pciem_trace_find_range(phys, end - va);
	if (!r) {
		spin_unlock(&pciem_trace_lock);
		return;			/* not ours: map as usual */
	}
	m = kmalloc(sizeof(*m), GFP_ATOMIC);
	if (m && try_module_get(THIS_MODULE)) {
		m->va = va;
		m->size = end - va;
		m->phys = phys;
		RCU_INIT_POINTER(m->range, r);
		list_add_rcu(&m->node, &pciem_trace_maps);
	} else {
		kfree(m);
		m = NULL;
	}
	spin_unlock(&pciem_trace_lock);

	if (!m) {
		/* Better a failed ioremap than an untraced one. */
		pr_warn_ratelimited("cannot trace a mapping of %pa: the mapping fails\n",
				    &phys);
		pciem_trace_return_now(regs, pciem_trace_return_enomem);
		return;
	}
	/* Skip the whole function: the area keeps no entries at all. */
	pciem_trace_return_now(regs, pciem_trace_return_0);
}

static void pciem_trace_iounmap_hook(struct pt_regs *regs)
{
	unsigned long va = regs_get_kernel_argument(regs, 0) & PAGE_MASK;
	struct pciem_trace_map *m, *found = NULL;

	spin_lock(&pciem_trace_lock);
	list_for_each_entry(m, &pciem_trace_maps, node) {
		if (m->va == va) {
			list_del_rcu(&m->node);
			found = m;
			break;
		}
	}
	spin_unlock(&pciem_trace_lock);
	if (found) {
		kfree_rcu(found, rcu);
		module_put(THIS_MODULE);
	}
}

/* A hooked function: at each entry, ftrace calls fn with the full registers. */
struct pciem_trace_hook {
	struct ftrace_ops ops;
	const char *symbol;
	void (*fn)(struct pt_regs *regs);
};

static void pciem_trace_hook_entry(unsigned long ip, unsigned long parent_ip,
				   struct ftrace_ops *ops,
				   struct ftrace_regs *fregs)
{
	struct pciem_trace_hook *h = container_of(ops, struct pciem_trace_hook, ops);
	struct pt_regs *regs = ftrace_get_regs(fregs);

	/* Always there: the ops asks for SAVE_REGS, which x86-64 has. */
	if (regs)
		h->fn(regs);
}

/* In registration order: the fault hook before any mapping is trapped. */
static struct pciem_trace_hook pciem_trace_hooks[] = {
	{ .symbol = "bad_area_nosemaphore", .fn = pciem_trace_fault_hook },
	{ .symbol = "iounmap", .fn = pciem_trace_iounmap_hook },
	{ .symbol = "ioremap_page_range", .fn = pciem_trace_ioremap_hook },
};

/*
 * Hooks one function. No FTRACE_OPS_FL_RECURSION: ftrace then calls us
 * directly, never skipping a call as recursive. IPMODIFY lets us redirect
 * the function (and refuses a livepatch of it instead of racing us);
 * PERMANENT keeps sysctl ftrace_enabled=0 from switching the trap off.
 */
static int pciem_trace_hook_register(struct pciem_trace_hook *h)
{
	char name[32];
	int ret;

	/* Fresh ops: they cannot be registered again as they are left. */
	h->ops = (struct ftrace_ops){
		.func = pciem_trace_hook_entry,
		.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY |
			 FTRACE_OPS_FL_PERMANENT,
	};
	/* The filter parser may write into its buffer. */
	strscpy(name, h->symbol, sizeof(name));
	ret = ftrace_set_filter(&h->ops, name, strlen(name), 1);
	if (!ret)
		ret = register_ftrace_function(&h->ops);
	if (ret) {
		ftrace_free_filter(&h->ops);
		pr_err("cannot hook %s: %d\n", h->symbol, ret);
	}
	return ret;
}

/* When it returns, no call of the hook runs or will run. */
static void pciem_trace_hook_unregister(struct pciem_trace_hook *h)
{
	unregister_ftrace_function(&h->ops);
	ftrace_free_filter(&h->ops);
}

int pciem_trace_init(void)
{
	unsigned int i;
	bool active;
	int ret;

	spin_lock(&pciem_trace_lock);
	active = pciem_trace_active;
	spin_unlock(&pciem_trace_lock);
	if (active)
		return -EBUSY;

	for (i = 0; i < ARRAY_SIZE(pciem_trace_hooks); i++) {
		ret = pciem_trace_hook_register(&pciem_trace_hooks[i]);
		if (ret)
			goto err_unregister;
	}
	spin_lock(&pciem_trace_lock);
	pciem_trace_active = true;
	spin_unlock(&pciem_trace_lock);
	return 0;

err_unregister:
	while (i--)
		pciem_trace_hook_unregister(&pciem_trace_hooks[i]);
	return ret;
}

void pciem_trace_exit(void)
{
	struct pciem_trace_range *r, *rtmp;
	struct pciem_trace_map *m, *mtmp;
	LIST_HEAD(ranges);
	LIST_HEAD(maps);
	unsigned int i;
	bool active;

	spin_lock(&pciem_trace_lock);
	active = pciem_trace_active;
	pciem_trace_active = false;
	spin_unlock(&pciem_trace_lock);
	if (!active)
		return;

	/* Waits for every hook still running: nothing reads the lists after. */
	for (i = ARRAY_SIZE(pciem_trace_hooks); i--;)
		pciem_trace_hook_unregister(&pciem_trace_hooks[i]);

	spin_lock(&pciem_trace_lock);
	list_splice_init(&pciem_trace_ranges, &ranges);
	list_splice_init(&pciem_trace_maps, &maps);
	spin_unlock(&pciem_trace_lock);

	list_for_each_entry_safe(r, rtmp, &ranges, node) {
		pr_warn("range %pa (%#llx bytes) still registered at exit: removed\n",
			&r->start, r->len);
		kfree(r);
	}
	/* Only a forced unload gets here: every mapping holds a module ref. */
	list_for_each_entry_safe(m, mtmp, &maps, node) {
		pr_err("a mapping of %pa (%#lx bytes) still exists at unload: accessing it will oops\n",
		       &m->phys, m->size);
		kfree(m);
	}
}

struct pciem_trace_range *pciem_trace_add(phys_addr_t start, u64 len,
					  const struct pciem_trace_ops *ops,
					  void *priv)
{
	struct pciem_trace_range *r;
	int ret = 0;

	if (!PAGE_ALIGNED(start) || !len || len > U64_MAX - PAGE_SIZE ||
	    !ops || !ops->read || !ops->write)
		return ERR_PTR(-EINVAL);
	if (start + PAGE_ALIGN(len) - 1 < start)
		return ERR_PTR(-EINVAL);

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return ERR_PTR(-ENOMEM);
	r->start = start;
	r->len = len;
	r->span = PAGE_ALIGN(len);
	r->ops = ops;
	r->priv = priv;

	spin_lock(&pciem_trace_lock);
	if (!pciem_trace_active)
		ret = -ENODEV;
	else if (pciem_trace_find_range(start, r->span))
		ret = -EBUSY;
	else
		list_add_tail(&r->node, &pciem_trace_ranges);
	spin_unlock(&pciem_trace_lock);

	if (ret) {
		kfree(r);
		return ERR_PTR(ret);
	}
	return r;
}

void pciem_trace_remove(struct pciem_trace_range *r)
{
	struct pciem_trace_map *m;

	if (IS_ERR_OR_NULL(r))
		return;
	might_sleep();

	spin_lock(&pciem_trace_lock);
	list_del(&r->node);
	list_for_each_entry(m, &pciem_trace_maps, node) {
		if (rcu_access_pointer(m->range) == r)
			RCU_INIT_POINTER(m->range, NULL);
	}
	spin_unlock(&pciem_trace_lock);

	/* Faults that found r before it was unhooked finish their op here. */
	synchronize_rcu();
	kfree(r);
}

void pciem_trace_get_stats(struct pciem_trace_stats *st)
{
	int cpu;

	*st = (struct pciem_trace_stats){};
	for_each_possible_cpu(cpu) {
		const struct pciem_trace_stats *c =
			per_cpu_ptr(&pciem_trace_counts, cpu);

		st->reads += READ_ONCE(c->reads);
		st->writes += READ_ONCE(c->writes);
		st->refused += READ_ONCE(c->refused);
		st->orphaned += READ_ONCE(c->orphaned);
	}
}
