// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_trace_test: pciem_trace (../pciem_trace.h) against real mappings.
 *
 * The framework's sources are compiled into this module, so it needs no
 * pciem.ko - and must never be loaded next to it: both would hook the same
 * kernel functions. On load it reserves unbacked physical address space,
 * traces parts of it with ops that record writes and answer reads from
 * tt_pattern(), maps them every way a driver can and checks each access.
 * One kernel log line per check, then a summary:
 *
 *   pciem_trace_test: ok N - what
 *   pciem_trace_test: not ok N - what
 *   pciem_trace_test: N passed, M failed
 *
 * Lines starting "pciem_trace_test: # " are details and timings. A failed
 * check fails the load with -EINVAL, so insmod exits non-zero. Once loaded,
 * one range is left registered on purpose: rmmod shows that
 * pciem_trace_exit() removes what its user forgot.
 */
#include "../pciem_trace.c"
#include "../pciem_insn.c"

#undef pr_fmt
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/kprobes.h>
#include <linux/kthread.h>
#include <linux/pci.h>
#include <linux/sched.h>
#include <linux/timekeeping.h>
#include <linux/vmalloc.h>
#include <asm/pgtable.h>

/* Where the ranges sit in the reserved window. */
#define TT_A		0x000000	/* most checks */
#define TT_A_LEN	0x3f00		/* not whole pages: the tail is refused */
#define TT_A_SPAN	0x4000
#define TT_B		0x010000	/* surprise removal */
#define TT_C		0x020000	/* removal while another CPU writes */
#define TT_D		0x030000	/* left registered for pciem_trace_exit() */
#define TT_UNTRACED	0x100000	/* never traced */
#define TT_WINDOW	0x200000

#define TT_SEQ_WRITES	100000
#define TT_CPU_WRITES	25000
#define TT_LOG_CAP	(TT_SEQ_WRITES + 64)

struct tt_event {
	u64 off;
	u64 val;
	u32 size;
	u32 cpu;
};

/* A device model: records writes, answers reads. */
struct tt_dev {
	spinlock_t lock;		/* n, lost and the log */
	struct tt_event *log;
	unsigned int n, cap, lost;
	atomic_t writes;
	bool removed;			/* set once pciem_trace_remove() returned */
	atomic_t late;			/* ops run after that */
};

static struct tt_dev tt_a, tt_b, tt_c, tt_d;
static struct pciem_trace_range *tt_ra, *tt_rb, *tt_rc, *tt_rd;
static struct resource *tt_window;
static phys_addr_t tt_base;
static unsigned int tt_passed, tt_failed;
static int tt_refs;		/* module_refcount() with nothing mapped */

static u8 tt_byte(u64 off)
{
	return (u8)(off * 37 + 11);
}

/* What the device holds: byte x of the range is tt_byte(x), little endian. */
static u64 tt_pattern(u64 off, unsigned int size)
{
	u64 v = 0;
	unsigned int i;

	for (i = 0; i < size; i++)
		v |= (u64)tt_byte(off + i) << (8 * i);
	return v;
}

static u64 tt_read(void *priv, u64 off, unsigned int size)
{
	struct tt_dev *d = priv;

	if (READ_ONCE(d->removed))
		atomic_inc(&d->late);
	return tt_pattern(off, size);
}

static void tt_write(void *priv, u64 off, unsigned int size, u64 val)
{
	struct tt_dev *d = priv;
	unsigned long flags;

	if (READ_ONCE(d->removed))
		atomic_inc(&d->late);
	atomic_inc(&d->writes);
	spin_lock_irqsave(&d->lock, flags);
	if (d->n < d->cap)
		d->log[d->n++] = (struct tt_event){
			.off = off, .val = val, .size = size,
			.cpu = raw_smp_processor_id(),
		};
	else
		d->lost++;
	spin_unlock_irqrestore(&d->lock, flags);
}

static const struct pciem_trace_ops tt_ops = {
	.read = tt_read,
	.write = tt_write,
};

static int tt_dev_init(struct tt_dev *d, unsigned int cap)
{
	spin_lock_init(&d->lock);
	d->cap = cap;
	d->log = cap ? vmalloc(array_size(cap, sizeof(*d->log))) : NULL;
	return cap && !d->log ? -ENOMEM : 0;
}

static void tt_log_reset(struct tt_dev *d)
{
	unsigned long flags;

	spin_lock_irqsave(&d->lock, flags);
	d->n = 0;
	d->lost = 0;
	spin_unlock_irqrestore(&d->lock, flags);
}

static __printf(2, 3) bool tt_check(bool ok, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	if (ok) {
		tt_passed++;
		pr_info("ok %u - %pV\n", tt_passed + tt_failed, &vaf);
	} else {
		tt_failed++;
		pr_err("not ok %u - %pV\n", tt_passed + tt_failed, &vaf);
	}
	va_end(args);
	return ok;
}

static void tt_skip(const char *what, const char *why)
{
	tt_passed++;
	pr_info("ok %u - %s # SKIP %s\n", tt_passed + tt_failed, what, why);
}

struct tt_expect {
	u64 off;
	unsigned int size;
	u64 val;
};

/* The log holds exactly e[0..n), in that order. */
static bool tt_log_is(struct tt_dev *d, const struct tt_expect *e,
		      unsigned int n)
{
	unsigned int i;

	if (d->n != n || d->lost) {
		pr_info("# %u writes logged (%u lost), expected %u\n",
			d->n, d->lost, n);
		return false;
	}
	for (i = 0; i < n; i++) {
		const struct tt_event *ev = &d->log[i];

		if (ev->off != e[i].off || ev->size != e[i].size ||
		    ev->val != e[i].val) {
			pr_info("# write %u: offset %#llx size %u value %#llx, expected %#llx %u %#llx\n",
				i, ev->off, ev->size, ev->val,
				e[i].off, e[i].size, e[i].val);
			return false;
		}
	}
	return true;
}

static struct pciem_trace_stats tt_stats(void)
{
	struct pciem_trace_stats st;

	pciem_trace_get_stats(&st);
	return st;
}

/* A traced mapping has no page table entry at all. */
static bool tt_unmapped(const volatile void __iomem *p)
{
	unsigned int level;
	pte_t *pte = lookup_address((unsigned long)p, &level);

	return !pte || !pte_present(*pte);
}

static bool tt_holds_refs(int n)
{
	int now = module_refcount(THIS_MODULE);

	if (now == tt_refs + n)
		return true;
	pr_info("# module refcount %d, expected %d\n", now, tt_refs + n);
	return false;
}

/* --- add ------------------------------------------------------------- */

static void tt_add_checks(void)
{
	struct pciem_trace_ops no_write = { .read = tt_read };
	struct pciem_trace_range *r[5];
	unsigned int i;
	bool ok;

	r[0] = pciem_trace_add(tt_base + TT_D + 0x10, 0x10, &tt_ops, &tt_d);
	r[1] = pciem_trace_add(tt_base + TT_D, 0, &tt_ops, &tt_d);
	r[2] = pciem_trace_add(tt_base + TT_D, 0x1000, NULL, &tt_d);
	r[3] = pciem_trace_add(tt_base + TT_D, 0x1000, &no_write, &tt_d);
	r[4] = pciem_trace_add(tt_base + TT_A + 0x1000, 0x1000, &tt_ops, &tt_d);
	ok = PTR_ERR(r[0]) == -EINVAL && PTR_ERR(r[1]) == -EINVAL &&
	     PTR_ERR(r[2]) == -EINVAL && PTR_ERR(r[3]) == -EINVAL &&
	     PTR_ERR(r[4]) == -EBUSY;
	for (i = 0; i < ARRAY_SIZE(r); i++)
		pciem_trace_remove(r[i]);
	tt_check(ok, "pciem_trace_add refuses an unaligned start, len 0, missing ops (-EINVAL) and an overlap (-EBUSY)");
}

/* --- accessors on one ioremap of A ---------------------------------- */

static void tt_accessor_checks(void __iomem *base)
{
	static const struct tt_expect aligned[] = {
		{ 0x1, 1, 0x12 }, { 0x2, 2, 0x3456 }, { 0x4, 4, 0x789abcde },
		{ 0x8, 8, 0x0123456789abcdefULL },
	};
	static const struct tt_expect unaligned[] = {
		{ 0x101, 2, 0xbeef }, { 0x203, 4, 0xcafef00d },
		{ 0x305, 8, 0x1122334455667788ULL },
		{ 0xffd, 8, 0x8877665544332211ULL },	/* across two pages */
	};
	static const struct tt_expect io[] = {
		{ 0x401, 1, 0x5a }, { 0x402, 2, 0xa55a }, { 0x404, 4, 0x12345678 },
		{ 0x408, 4, 0x78563412 }, { 0x40c, 2, 0x3412 },
	};
	static const struct tt_expect raw[] = {
		{ 0x501, 1, 0x7e }, { 0x502, 2, 0x7e7e }, { 0x504, 4, 0x7e7e7e7e },
		{ 0x508, 8, 0x7e7e7e7e7e7e7e7eULL }, { 0x510, 4, 0x1 },
		{ 0x518, 8, 0x2 },
	};
	struct pciem_trace_stats st0 = tt_stats(), st1;
	bool ok;

	tt_log_reset(&tt_a);
	writeb(0x12, base + 0x1);
	writew(0x3456, base + 0x2);
	writel(0x789abcde, base + 0x4);
	writeq(0x0123456789abcdefULL, base + 0x8);
	tt_check(tt_log_is(&tt_a, aligned, ARRAY_SIZE(aligned)),
		 "aligned writeb/writew/writel/writeq reach the write op with offset, size and value");

	ok = readb(base + 0x7) == tt_pattern(0x7, 1) &&
	     readw(base + 0x12) == tt_pattern(0x12, 2) &&
	     readl(base + 0x24) == tt_pattern(0x24, 4) &&
	     readq(base + 0x38) == tt_pattern(0x38, 8);
	tt_check(ok, "aligned readb/readw/readl/readq return the read op's value");

	tt_log_reset(&tt_a);
	writew(0xbeef, base + 0x101);
	writel(0xcafef00d, base + 0x203);
	writeq(0x1122334455667788ULL, base + 0x305);
	writeq(0x8877665544332211ULL, base + 0xffd);
	tt_check(tt_log_is(&tt_a, unaligned, ARRAY_SIZE(unaligned)),
		 "unaligned writes, one across a page boundary, arrive as issued");

	ok = readw(base + 0x133) == tt_pattern(0x133, 2) &&
	     readl(base + 0x245) == tt_pattern(0x245, 4) &&
	     readq(base + 0x357) == tt_pattern(0x357, 8) &&
	     readq(base + 0xffc) == tt_pattern(0xffc, 8);
	tt_check(ok, "unaligned reads, one across a page boundary, return the read op's value");

	tt_log_reset(&tt_a);
	iowrite8(0x5a, base + 0x401);
	iowrite16(0xa55a, base + 0x402);
	iowrite32(0x12345678, base + 0x404);
	iowrite32be(0x12345678, base + 0x408);
	iowrite16be(0x1234, base + 0x40c);
	ok = tt_log_is(&tt_a, io, ARRAY_SIZE(io)) &&
	     ioread8(base + 0x411) == tt_pattern(0x411, 1) &&
	     ioread16(base + 0x412) == tt_pattern(0x412, 2) &&
	     ioread32(base + 0x414) == tt_pattern(0x414, 4) &&
	     ioread32be(base + 0x418) == swab32(tt_pattern(0x418, 4));
	tt_check(ok, "ioread8/16/32(be) and iowrite8/16/32(be) are traced");

	tt_log_reset(&tt_a);
	__raw_writeb(0x7e, base + 0x501);
	__raw_writew(0x7e7e, base + 0x502);
	__raw_writel(0x7e7e7e7e, base + 0x504);
	__raw_writeq(0x7e7e7e7e7e7e7e7eULL, base + 0x508);
	writel_relaxed(0x1, base + 0x510);
	writeq_relaxed(0x2, base + 0x518);
	ok = tt_log_is(&tt_a, raw, ARRAY_SIZE(raw)) &&
	     __raw_readl(base + 0x520) == tt_pattern(0x520, 4) &&
	     readl_relaxed(base + 0x524) == tt_pattern(0x524, 4) &&
	     readq_relaxed(base + 0x528) == tt_pattern(0x528, 8);
	tt_check(ok, "__raw_ and _relaxed accessors are traced");

	st1 = tt_stats();
	ok = st1.writes - st0.writes == 19 && st1.reads - st0.reads == 15 &&
	     st1.refused == st0.refused && st1.orphaned == st0.orphaned;
	if (!ok)
		pr_info("# counted %llu writes, %llu reads, %llu refused, %llu orphaned; expected 19, 15, 0, 0\n",
			st1.writes - st0.writes, st1.reads - st0.reads,
			st1.refused - st0.refused, st1.orphaned - st0.orphaned);
	tt_check(ok, "pciem_trace_get_stats counts each emulated read and write once");
}

/* --- ordering -------------------------------------------------------- */

static void tt_sequence_check(void __iomem *base)
{
	u32 word;
	void __iomem *ram = (void __iomem __force *)&word;
	u64 t0, t1, t2, t3;
	unsigned int i, bad = 0;
	u32 v;

	tt_log_reset(&tt_a);
	t0 = ktime_get_ns();
	for (i = 0; i < TT_SEQ_WRITES; i++) {
		writel(i, base + 0x10);
		if (!(i % 4096))
			cond_resched();
	}
	t1 = ktime_get_ns();
	for (i = 0; i < TT_SEQ_WRITES / 10; i++) {
		v = readl(base + 0x20);
		if (v != tt_pattern(0x20, 4))
			bad++;
	}
	t2 = ktime_get_ns();
	/* The same loop into RAM, for scale. */
	for (i = 0; i < TT_SEQ_WRITES; i++)
		writel(i, ram);
	t3 = ktime_get_ns();
	pr_info("# emulated writel: %llu ns each (%u in a row); readl: %llu ns each; writel to RAM: %llu ns\n",
		div_u64(t1 - t0, TT_SEQ_WRITES), TT_SEQ_WRITES,
		div_u64(t2 - t1, TT_SEQ_WRITES / 10),
		div_u64(t3 - t2, TT_SEQ_WRITES));

	if (tt_a.n != TT_SEQ_WRITES || tt_a.lost) {
		pr_info("# %u writes logged, %u lost\n", tt_a.n, tt_a.lost);
		bad++;
	}
	for (i = 0; i < tt_a.n && !bad; i++) {
		const struct tt_event *ev = &tt_a.log[i];

		if (ev->off != 0x10 || ev->size != 4 || ev->val != i) {
			pr_info("# write %u: offset %#llx size %u value %llu\n",
				i, ev->off, ev->size, ev->val);
			bad++;
		}
	}
	tt_check(!bad, "%u writel from one CPU reach the op once each, in program order",
		 TT_SEQ_WRITES);
}

struct tt_writer {
	void __iomem *reg;
	unsigned int id;
	unsigned int cpu;
	atomic_t *waiting;		/* start barrier */
	struct completion done;
};

/* Parks a finished thread until kthread_stop(). */
static void tt_park(void)
{
	set_current_state(TASK_INTERRUPTIBLE);
	while (!kthread_should_stop()) {
		schedule();
		set_current_state(TASK_INTERRUPTIBLE);
	}
	__set_current_state(TASK_RUNNING);
}

static int tt_writer_fn(void *arg)
{
	struct tt_writer *w = arg;
	unsigned int i;

	atomic_dec(w->waiting);
	while (atomic_read(w->waiting))
		cpu_relax();
	for (i = 0; i < TT_CPU_WRITES; i++)
		writel(w->id << 24 | i, w->reg);
	complete(&w->done);
	tt_park();
	return 0;
}

static void tt_concurrent_check(void __iomem *base)
{
	const char *what = "writes from two CPUs at once: none lost or duplicated, each CPU's in its program order, each op on the writing CPU";
	unsigned int cpu0, cpu1, i, next[2] = { 0, 0 }, bad = 0, switches = 0;
	struct task_struct *t[2];
	struct tt_writer w[2];
	atomic_t waiting;

	cpu0 = cpumask_first(cpu_online_mask);
	cpu1 = cpumask_next(cpu0, cpu_online_mask);
	if (cpu1 >= nr_cpu_ids) {
		tt_skip(what, "one CPU online");
		return;
	}

	tt_log_reset(&tt_a);
	atomic_set(&waiting, 2);
	for (i = 0; i < 2; i++) {
		w[i] = (struct tt_writer){
			.reg = base + 0x40, .id = i, .cpu = i ? cpu1 : cpu0,
			.waiting = &waiting,
		};
		init_completion(&w[i].done);
		t[i] = kthread_create(tt_writer_fn, &w[i], "pciem_tt_w%u", i);
		if (IS_ERR(t[i])) {
			if (i)
				kthread_stop(t[0]);
			tt_check(false, "%s (kthread_create: %ld)", what,
				 PTR_ERR(t[i]));
			return;
		}
		kthread_bind(t[i], w[i].cpu);
	}
	wake_up_process(t[0]);
	wake_up_process(t[1]);
	for (i = 0; i < 2; i++) {
		wait_for_completion(&w[i].done);
		kthread_stop(t[i]);
	}

	if (tt_a.n != 2 * TT_CPU_WRITES || tt_a.lost) {
		pr_info("# %u writes logged, %u lost\n", tt_a.n, tt_a.lost);
		bad++;
	}
	for (i = 0; i < tt_a.n && !bad; i++) {
		const struct tt_event *ev = &tt_a.log[i];
		unsigned int id = ev->val >> 24;

		if (id > 1 || ev->off != 0x40 || ev->size != 4 ||
		    (ev->val & 0xffffff) != next[id] || ev->cpu != w[id].cpu) {
			pr_info("# write %u: value %#llx on CPU %u\n",
				i, ev->val, ev->cpu);
			bad++;
			break;
		}
		next[id]++;
		if (i && (tt_a.log[i - 1].val >> 24) != id)
			switches++;
	}
	pr_info("# CPUs %u and %u: %u switches between writers in the arrival order\n",
		cpu0, cpu1, switches);
	tt_check(!bad, "%s", what);
}

struct tt_ipi {
	void __iomem *base;
	u32 val;
	unsigned int cpu;
};

static void tt_ipi_fn(void *arg)
{
	struct tt_ipi *x = arg;

	writel(0xa11ce, x->base + 0x48);
	x->val = readl(x->base + 0x4c);
	x->cpu = smp_processor_id();
}

/*
 * The fault path takes no lock and may run anywhere: with IRQs off, in
 * hard-IRQ context, and while the framework's own lock is held - here by
 * the CPU that faults and by the one that sent the IPI.
 */
static void tt_context_check(void __iomem *base)
{
	static const struct tt_expect e[] = {
		{ 0x44, 4, 0x10ff }, { 0x48, 4, 0xa11ce },
	};
	struct tt_ipi x = { .base = base };
	unsigned int target;
	unsigned long flags;
	bool ok;
	u32 v;
	int ret;

	tt_log_reset(&tt_a);
	spin_lock(&pciem_trace_lock);
	local_irq_save(flags);
	writel(0x10ff, base + 0x44);
	v = readl(base + 0x40);
	local_irq_restore(flags);
	target = cpumask_any_but(cpu_online_mask, smp_processor_id());
	if (target >= nr_cpu_ids)
		target = smp_processor_id();
	ret = smp_call_function_single(target, tt_ipi_fn, &x, 1);
	spin_unlock(&pciem_trace_lock);
	ok = !ret && v == tt_pattern(0x40, 4) &&
	     x.val == tt_pattern(0x4c, 4) && tt_log_is(&tt_a, e, ARRAY_SIZE(e));
	tt_check(ok, "accesses with IRQs off, in an IPI on CPU %u and under the framework's own lock are emulated",
		 x.cpu);
}

/*
 * An interrupt that arrives while a kprobe handler runs on its CPU runs
 * nested in it, as far as kprobes can tell (kprobe_running() is set).
 * Accesses made there must still be emulated: kprobes would drop a fault
 * hook of theirs as a missed nested hit, the reason the hooks are ftrace
 * ops. Here the accesses come from the kprobe handler itself.
 */
struct tt_kp {
	struct kprobe kp;
	void __iomem *base;
	u32 val;
	bool ran;
};

static int tt_kp_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct tt_kp *x = container_of(kp, struct tt_kp, kp);

	x->ran = true;
	writel(0xb0b, x->base + 0x50);
	x->val = readl(x->base + 0x54);
	return 0;
}

/* What the check's kprobe sits on. */
static noinline void tt_kprobed(void)
{
	barrier();
}

static void tt_kprobe_check(void __iomem *base)
{
	static const struct tt_expect e[] = { { 0x50, 4, 0xb0b } };
	struct tt_kp x = {
		.kp = { .addr = (kprobe_opcode_t *)tt_kprobed, .pre_handler = tt_kp_pre },
		.base = base,
	};
	int ret;

	tt_log_reset(&tt_a);
	ret = register_kprobe(&x.kp);
	if (!ret) {
		tt_kprobed();
		unregister_kprobe(&x.kp);
	}
	tt_check(!ret && x.ran && x.val == tt_pattern(0x54, 4) &&
		 tt_log_is(&tt_a, e, ARRAY_SIZE(e)),
		 "accesses made while a kprobe handler runs on the CPU are emulated (register_kprobe %d, handler ran %d)",
		 ret, x.ran);
}

/* --- refusals -------------------------------------------------------- */

static void tt_range_end_check(void __iomem *base)
{
	struct pciem_trace_stats st0 = tt_stats(), st1;
	bool ok;

	tt_log_reset(&tt_a);
	ok = readl(base + TT_A_LEN - 2) == 0xffffffff;
	writel(0x1234, base + TT_A_LEN - 2);
	ok = ok && readb(base + TT_A_LEN + 0x80) == 0xff;
	writeb(0x56, base + TT_A_LEN + 0x80);
	ok = ok && readq(base + TT_A_SPAN - 4) == ~0ULL;
	st1 = tt_stats();
	ok = ok && tt_log_is(&tt_a, NULL, 0) &&
	     st1.refused - st0.refused == 5 && st1.reads == st0.reads &&
	     st1.writes == st0.writes;
	tt_check(ok, "accesses straddling the end of a range or past it in its last page: reads give all-ones, writes are dropped, counted refused");
}

static void tt_refusal_checks(void __iomem *base)
{
	struct pciem_trace_stats st0, st1;
	u8 src[16], dst[16];
	void __iomem *d;
	const u8 *s;
	unsigned long c;
	bool ok;

	memset(src, 0x3c, sizeof(src));
	tt_log_reset(&tt_a);
	st0 = tt_stats();
	memcpy_toio(base + 0x800, src, sizeof(src));
	st1 = tt_stats();
	ok = tt_log_is(&tt_a, NULL, 0) && st1.refused > st0.refused &&
	     st1.writes == st0.writes;
	tt_check(ok, "memcpy_toio (string moves) is refused and counted, nothing reaches the write op");

	memset(dst, 0, sizeof(dst));
	st0 = tt_stats();
	memcpy_fromio(dst, base + 0x800, sizeof(dst));
	st1 = tt_stats();
	ok = memchr_inv(dst, 0xff, sizeof(dst)) == NULL &&
	     st1.refused > st0.refused && st1.reads == st0.reads;
	tt_check(ok, "memcpy_fromio (string moves) is refused and counted, the destination reads all-ones");

	d = base + 0x900;
	s = src;
	c = 7;
	st0 = tt_stats();
	asm volatile("rep movsb" : "+D" (d), "+S" (s), "+c" (c) : : "memory");
	st1 = tt_stats();
	ok = c == 0 && d == base + 0x907 && s == src + 7 &&
	     tt_log_is(&tt_a, NULL, 0) && st1.refused - st0.refused == 1;
	tt_check(ok, "rep movsb is refused once and skipped whole: rdi, rsi advanced, rcx zero");

	st0 = tt_stats();
	c = 41;
	asm volatile("orl $0x10, %0\n\t"
		     "addq $1, %1"
		     : "+m" (*(u32 __force *)(base + 0xa00)), "+r" (c));
	st1 = tt_stats();
	ok = c == 42 && tt_log_is(&tt_a, NULL, 0) &&
	     st1.refused - st0.refused == 1;
	tt_check(ok, "orl to MMIO (read-modify-write) is refused and skipped, the next instruction runs");
}

/*
 * The refusal path must know the length of any instruction it skips
 * (pciem_insn_decode() was also run, on the host, over every instruction
 * of Debian's 6.1 and 6.12 kernel text and x86 crypto modules). Encodings
 * from GNU as.
 */
static void tt_shape_check(void)
{
	static const struct {
		u8 len;
		bool mem;
		const char *bytes;
	} t[] = {
		{ 7, true, "\x83\x8b\x00\x0a\x00\x00\x10" },	/* orl $0x10,0xa00(%rbx) */
		{ 4, true, "\xf0\x83\x08\x10" },		/* lock orl $0x10,(%rax) */
		{ 3, true, "\xf3\x48\xa5" },			/* rep movsq */
		{ 2, true, "\x66\xa5" },			/* movsw */
		{ 1, true, "\xac" },				/* lodsb */
		{ 2, true, "\x87\x02" },			/* xchg %eax,(%rdx) */
		{ 5, true, "\xf0\x48\x0f\xc7\x0f" },	/* lock cmpxchg16b (%rdi) */
		{ 6, true, "\xf3\x0f\x7f\x4c\x98\x10" },	/* movdqu %xmm1,0x10(%rax,%rbx,4) */
		{ 8, true, "\xc5\xfe\x7f\x8f\x00\x01\x00\x00" }, /* vmovdqu %ymm1,0x100(%rdi) */
		{ 5, true, "\xc5\xfd\x70\x00\x1b" },	/* vpshufd $0x1b,(%rax),%ymm0 */
		{ 6, true, "\xc4\xe3\x75\x02\x10\x01" },	/* vpblendd $1,(%rax),%ymm1,%ymm2 */
		{ 7, true, "\x62\xf1\xfe\x48\x7f\x40\x01" }, /* vmovdqu64 %zmm0,0x40(%rax) */
		{ 6, true, "\xf7\x00\x78\x56\x34\x12" },	/* testl $0x12345678,(%rax) */
		{ 2, true, "\xf7\x10" },			/* notl (%rax) */
		{ 6, true, "\xff\x05\x78\x56\x34\x12" },	/* incl 0x12345678(%rip) */
		{ 9, true, "\xa0\x88\x77\x66\x55\x44\x33\x22\x11" }, /* movabs 0x1122334455667788,%al */
		{ 6, true, "\x66\x0f\x3a\x16\x00\x01" },	/* pextrd $1,%xmm0,(%rax) */
		{ 5, true, "\xf2\x0f\x38\xf1\x00" },	/* crc32l (%rax),%eax */
		{ 4, true, "\x0f\xa4\x02\x04" },		/* shld $4,%eax,(%rdx) */
		{ 4, true, "\x66\x6b\x00\x05" },		/* imul $5,(%rax),%ax */
		{ 9, true, "\x48\x83\x24\xcd\x44\x33\x22\x11\xfe" }, /* andq $-2,0x11223344(,%rcx,8) */
		{ 1, false, "\xcc" },				/* int3 (a probe on the insn) */
		{ 2, false, "\x89\xc3" },			/* mov %eax,%ebx */
	};
	struct pciem_insn insn;
	unsigned int i, bad = 0;
	u8 buf[PCIEM_INSN_MAX_LEN];
	bool mem;
	int ret;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		memset(buf, 0x90, sizeof(buf));
		memcpy(buf, t[i].bytes, t[i].len);
		ret = pciem_insn_decode(buf, sizeof(buf), &insn);
		mem = !ret || ret == -EOPNOTSUPP;
		if (mem != t[i].mem || (mem && insn.len != t[i].len)) {
			pr_info("# %*ph: %d, length %u\n", t[i].len,
				t[i].bytes, ret, insn.len);
			bad++;
		}
	}
	tt_check(!bad, "the refusal path sizes %zu refused encodings (legacy, 0F38, 0F3A, VEX, EVEX) and knows an int3 is no memory access",
		 ARRAY_SIZE(t));
}

/* --- every way to map ------------------------------------------------ */

typedef void (*tt_unmap_fn)(void __iomem *p, void *ctx);

static void tt_iounmap(void __iomem *p, void *ctx)
{
	iounmap(p);
}

static void tt_memunmap(void __iomem *p, void *ctx)
{
	memunmap((void __force *)p);
}

static void tt_pci_iounmap(void __iomem *p, void *ctx)
{
	pci_iounmap(ctx, p);
}

static void tt_root_unregister(void __iomem *p, void *ctx)
{
	root_device_unregister(ctx);
}

/*
 * p maps A from offset off. One write at p + at and one 2-byte read at
 * p + at + 6 must reach the ops; plain pointers (memremap) use C stores
 * and loads, which compile to mov with an immediate.
 */
static void tt_mapping_check(const char *how, void __iomem *p, u64 off,
			     unsigned int at, bool plain, tt_unmap_fn unmap,
			     void *ctx)
{
	const struct tt_expect e = { off + at, 4, 0xdeadbeef };
	bool ok, traced;
	u16 v;

	if (!p) {
		tt_check(false, "%s: traced, a write and a read reach the ops, unmapping drops the reference (mapping failed)",
			 how);
		return;
	}
	traced = tt_unmapped(p) && tt_holds_refs(1);
	tt_log_reset(&tt_a);
	if (plain) {
		*(volatile u32 __force *)(p + at) = 0xdeadbeef;
		v = *(volatile u16 __force *)(p + at + 6);
	} else {
		writel(0xdeadbeef, p + at);
		v = readw(p + at + 6);
	}
	ok = traced && tt_log_is(&tt_a, &e, 1) &&
	     v == tt_pattern(off + at + 6, 2);
	unmap(p, ctx);
	ok = ok && tt_holds_refs(0);
	tt_check(ok, "%s: traced, a write and a read reach the ops, unmapping drops the reference",
		 how);
}

static void tt_mapping_checks(void)
{
	phys_addr_t a = tt_base + TT_A;
	struct pci_dev *pdev;
	struct device *dev;
	void __iomem *p;

	tt_mapping_check("ioremap_wc", ioremap_wc(a, TT_A_SPAN), 0, 0x60,
			 false, tt_iounmap, NULL);
	tt_mapping_check("ioremap_uc", ioremap_uc(a, TT_A_SPAN), 0, 0x60,
			 false, tt_iounmap, NULL);
	tt_mapping_check("ioremap_cache", ioremap_cache(a, TT_A_SPAN), 0, 0x60,
			 false, tt_iounmap, NULL);
	tt_mapping_check("memremap(MEMREMAP_WC)",
			 (void __iomem __force *)memremap(a, TT_A_SPAN, MEMREMAP_WC),
			 0, 0x60, true, tt_memunmap, NULL);
	tt_mapping_check("memremap(MEMREMAP_WT)",
			 (void __iomem __force *)memremap(a, TT_A_SPAN, MEMREMAP_WT),
			 0, 0x60, true, tt_memunmap, NULL);
	tt_mapping_check("memremap(MEMREMAP_WB)",
			 (void __iomem __force *)memremap(a, TT_A_SPAN, MEMREMAP_WB),
			 0, 0x60, true, tt_memunmap, NULL);

	dev = root_device_register("pciem_trace_test");
	if (IS_ERR(dev)) {
		tt_check(false, "devm_ioremap (root_device_register: %ld)",
			 PTR_ERR(dev));
	} else {
		tt_mapping_check("devm_ioremap, released by devres",
				 devm_ioremap(dev, a, TT_A_SPAN), 0, 0x60,
				 false, tt_root_unregister, dev);
	}
	dev = root_device_register("pciem_trace_test");
	if (IS_ERR(dev)) {
		tt_check(false, "devm_ioremap_wc (root_device_register: %ld)",
			 PTR_ERR(dev));
	} else {
		tt_mapping_check("devm_ioremap_wc, released by devres",
				 devm_ioremap_wc(dev, a, TT_A_SPAN), 0, 0x60,
				 false, tt_root_unregister, dev);
	}

	/* pci_iomap() reads only the BAR's resource: a bare pci_dev will do. */
	pdev = kzalloc(sizeof(*pdev), GFP_KERNEL);
	if (!pdev) {
		tt_check(false, "pci_iomap (out of memory)");
		tt_check(false, "pci_iomap_wc (out of memory)");
	} else {
		pdev->resource[0].start = a;
		pdev->resource[0].end = a + TT_A_SPAN - 1;
		pdev->resource[0].flags = IORESOURCE_MEM;
		tt_mapping_check("pci_iomap", pci_iomap(pdev, 0, 0), 0, 0x60,
				 false, tt_pci_iounmap, pdev);
		tt_mapping_check("pci_iomap_wc", pci_iomap_wc(pdev, 0, 0), 0,
				 0x60, false, tt_pci_iounmap, pdev);
		kfree(pdev);
	}

	tt_mapping_check("partial ioremap at offset 0x1010",
			 ioremap(a + 0x1010, 0x80), 0x1010, 0x20, false,
			 tt_iounmap, NULL);
	/* The write straddles the two pages of this mapping. */
	tt_mapping_check("partial ioremap at offset 0xff0 across a page boundary",
			 ioremap(a + 0xff0, 0x20), 0xff0, 0xe, false,
			 tt_iounmap, NULL);

	p = ioremap(tt_base + TT_UNTRACED, PAGE_SIZE);
	tt_check(p && !tt_unmapped(p) && tt_holds_refs(0),
		 "an ioremap outside every traced range is mapped as usual");
	if (p)
		iounmap(p);
}

/* --- removal --------------------------------------------------------- */

static void tt_surprise_removal_checks(void)
{
	static const struct tt_expect before = { 0x4, 4, 0x1 };
	struct pciem_trace_stats st0, st1;
	void __iomem *p;
	bool ok;

	p = ioremap(tt_base + TT_B, PAGE_SIZE);
	if (!p) {
		tt_check(false, "surprise removal (ioremap failed)");
		return;
	}
	writel(0x1, p + 0x4);
	ok = tt_log_is(&tt_b, &before, 1) &&
	     readl(p + 0x8) == tt_pattern(0x8, 4);
	tt_check(ok, "a second range answers through its own ops");

	st0 = tt_stats();
	pciem_trace_remove(tt_rb);
	tt_rb = NULL;
	ok = readl(p + 0x8) == 0xffffffff && readb(p + 0x1) == 0xff &&
	     readq(p + 0x10) == ~0ULL;
	writel(0x2, p + 0x4);
	writeb(0x3, p);
	st1 = tt_stats();
	ok = ok && tt_log_is(&tt_b, &before, 1) &&
	     !atomic_read(&tt_b.late) && st1.orphaned - st0.orphaned == 5 &&
	     st1.reads == st0.reads && st1.writes == st0.writes;
	tt_check(ok, "after pciem_trace_remove a still-mapped range reads all-ones, drops writes, counts them orphaned");

	iounmap(p);
	tt_check(tt_holds_refs(0), "iounmap of an orphaned mapping is clean and drops the reference");
}

static int tt_hammer_fn(void *arg)
{
	void __iomem *reg = arg;
	unsigned int i = 0;

	while (!kthread_should_stop()) {
		writel(i++, reg);
		if (!(i % 256))
			cond_resched();
	}
	return 0;
}

static void tt_remove_sync_check(void)
{
	const char *what = "pciem_trace_remove waits for ops in flight: none runs after it returns while another CPU keeps writing";
	struct pciem_trace_stats st0, st1;
	struct task_struct *t;
	unsigned int cpu, waited;
	void __iomem *p;
	bool ok;

	if (num_online_cpus() < 2) {
		tt_skip(what, "one CPU online");
		return;
	}
	p = ioremap(tt_base + TT_C, PAGE_SIZE);
	if (!p) {
		tt_check(false, "%s (ioremap failed)", what);
		return;
	}
	t = kthread_create(tt_hammer_fn, (void __force *)p, "pciem_tt_hammer");
	if (IS_ERR(t)) {
		iounmap(p);
		tt_check(false, "%s (kthread_create: %ld)", what, PTR_ERR(t));
		return;
	}
	cpu = cpumask_last(cpu_online_mask);
	kthread_bind(t, cpu);
	wake_up_process(t);
	for (waited = 0; atomic_read(&tt_c.writes) < 2000 && waited < 10000; waited++)
		msleep(1);

	st0 = tt_stats();
	pciem_trace_remove(tt_rc);
	tt_rc = NULL;
	WRITE_ONCE(tt_c.removed, true);
	st1 = tt_stats();
	for (waited = 0; tt_stats().orphaned - st1.orphaned < 2000 && waited < 10000; waited++)
		msleep(1);
	kthread_stop(t);
	st1 = tt_stats();
	iounmap(p);

	pr_info("# CPU %u: %d writes before removal, %llu orphaned after, %d ops late\n",
		cpu, atomic_read(&tt_c.writes), st1.orphaned - st0.orphaned,
		atomic_read(&tt_c.late));
	ok = atomic_read(&tt_c.writes) >= 2000 && !atomic_read(&tt_c.late) &&
	     st1.orphaned - st0.orphaned >= 2000 && tt_holds_refs(0);
	tt_check(ok, "%s", what);
}

/* --- module ---------------------------------------------------------- */

static void tt_cleanup(void)
{
	pciem_trace_remove(tt_ra);
	pciem_trace_remove(tt_rb);
	pciem_trace_remove(tt_rc);
	pciem_trace_remove(tt_rd);
	pciem_trace_exit();
	if (tt_window)
		release_mem_region(tt_window->start, resource_size(tt_window));
	vfree(tt_a.log);
	vfree(tt_b.log);
}

static int tt_add_ranges(void)
{
	tt_ra = pciem_trace_add(tt_base + TT_A, TT_A_LEN, &tt_ops, &tt_a);
	tt_rb = pciem_trace_add(tt_base + TT_B, PAGE_SIZE, &tt_ops, &tt_b);
	tt_rc = pciem_trace_add(tt_base + TT_C, PAGE_SIZE, &tt_ops, &tt_c);
	tt_rd = pciem_trace_add(tt_base + TT_D, PAGE_SIZE, &tt_ops, &tt_d);
	if (IS_ERR(tt_ra) || IS_ERR(tt_rb) || IS_ERR(tt_rc) || IS_ERR(tt_rd)) {
		pr_info("# pciem_trace_add: %ld %ld %ld %ld\n", PTR_ERR(tt_ra),
			PTR_ERR(tt_rb), PTR_ERR(tt_rc), PTR_ERR(tt_rd));
		return -EINVAL;
	}
	return 0;
}

static int __init tt_init(void)
{
	void __iomem *base;
	int ret;

	tt_refs = module_refcount(THIS_MODULE);
	ret = tt_dev_init(&tt_a, TT_LOG_CAP) ?: tt_dev_init(&tt_b, 16) ?:
	      tt_dev_init(&tt_c, 0) ?: tt_dev_init(&tt_d, 0);
	if (ret)
		goto out;

	tt_window = request_free_mem_region(&iomem_resource, TT_WINDOW,
					    KBUILD_MODNAME);
	if (IS_ERR(tt_window)) {
		pr_info("# request_free_mem_region: %ld\n", PTR_ERR(tt_window));
		tt_window = NULL;
	}
	if (!tt_check(tt_window, "a window of unbacked physical address space is reserved"))
		goto out;
	tt_base = tt_window->start;
	pr_info("# window %pR\n", tt_window);

	ret = pciem_trace_init();
	if (!tt_check(!ret, "pciem_trace_init registers its probes (%d)", ret))
		goto out;
	if (!tt_check(!tt_add_ranges(), "pciem_trace_add registers four ranges"))
		goto out;
	tt_add_checks();

	base = ioremap(tt_base + TT_A, TT_A_SPAN);
	if (!tt_check(base && tt_unmapped(base) && tt_holds_refs(1),
		      "ioremap of a traced range has no page table entry and holds a module reference"))
		goto out_unmap;
	tt_accessor_checks(base);
	tt_sequence_check(base);
	tt_concurrent_check(base);
	tt_context_check(base);
	tt_kprobe_check(base);
	tt_range_end_check(base);
	tt_refusal_checks(base);
out_unmap:
	if (base)
		iounmap(base);
	tt_check(tt_holds_refs(0), "iounmap drops the module reference");

	tt_mapping_checks();
	tt_surprise_removal_checks();
	tt_remove_sync_check();
	tt_shape_check();
	tt_check(list_empty(&pciem_trace_maps) && tt_holds_refs(0),
		 "no traced mapping is left in the bookkeeping");
out:
	pr_info("%u passed, %u failed\n", tt_passed, tt_failed);
	if (ret || tt_failed) {
		tt_cleanup();
		return -EINVAL;
	}
	/* tt_rd stays registered: unloading shows pciem_trace_exit() removes it. */
	pciem_trace_remove(tt_ra);
	tt_ra = NULL;
	return 0;
}

static void __exit tt_exit(void)
{
	tt_rd = NULL;		/* pciem_trace_exit() frees it */
	tt_cleanup();
}

module_init(tt_init);
module_exit(tt_exit);

MODULE_DESCRIPTION("pciem_trace checks, in the VM");
MODULE_LICENSE("GPL");
