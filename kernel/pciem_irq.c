// SPDX-License-Identifier: GPL-2.0
/*
 * pciem interrupts: INTx, MSI and MSI-X from the card to the driver.
 *
 * Each pciem host bridge gets two irq domains of its own:
 *  - INTx: one level-triggered Linux irq per function (hwirq = function),
 *    handed to the PCI core by bridge->map_irq. Its irq_chip masks in
 *    software; unmasking a line that is still asserted fires it again, as
 *    an I/O APIC does, so a driver that does not clear its cause sees the
 *    interrupt again.
 *  - MSI: a PCI/MSI domain without a parent (VMD builds its own the same
 *    way), set as the bridge's MSI domain so that pci_alloc_irq_vectors()
 *    takes MSI and MSI-X vectors from it. A vector's message is address
 *    PCIEM_IRQ_MSI_ADDR, data = its index; the PCI core writes it to config
 *    space (MSI) or to the MSI-X table in BAR memory, and masks there.
 *
 * Sending an interrupt is what the device would do: read the message the
 * host programmed for the vector and decode it to a Linux irq
 * (hwirq = function << 11 | data). A masked vector sets its pending bit
 * instead (MSI pending register, MSI-X PBA), and the write that unmasks it
 * sends it once.
 *
 * Delivery: injections (INJECT_IRQ, irqfds, unmasks, the irq core's
 * retriggers) are counted per vector on a ready list; one drainer per
 * device delivers them from irq_work (hard irq context, as a real
 * interrupt) one at a time. So N injections are N runs of the flow
 * handler: none is merged into another because a handler was still running
 * on another CPU. Injectors never wait for the drainer: whoever queues while
 * it runs leaves the work to it. The drainer delivers a bounded batch, then
 * lets the CPU go back to its tasks (a work item re-raises it).
 *
 * Locking: pciem_irq.lock (irqsave) protects the ready list, the INTx and
 * per-function state and the counters; it nests outside dev->cfg_lock and
 * inside the irq core's descriptor lock (the irq_chip callbacks take it).
 * It is never held while a handler runs: the handler's MMIO and config
 * accesses come back here through pciem_irq_bar_written() and
 * pciem_irq_config_written().
 *
 * Removal: the PCI core frees vectors after the host disables MSI/MSI-X (a
 * config write) or after the driver unbinds (a bus notifier, which also
 * covers a surprise removal, when config writes no longer reach us). Both
 * stop deliveries to the function and wait for one in flight, so a
 * handler never runs on a freed vector.
 */
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/hrtimer.h>
#include <linux/irq.h>
#include <linux/irq_work.h>
#include <linux/irqdomain.h>
#include <linux/msi.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "pciem.h"

/* The MSI address pciem programs; nothing decodes it but pciem itself. */
#define PCIEM_IRQ_MSI_ADDR	0xfee00000u
#define PCIEM_IRQ_VEC_BITS	11		/* MSI-X: up to 2048 vectors */
#define PCIEM_IRQ_VEC_MASK	((1u << PCIEM_IRQ_VEC_BITS) - 1)
#define PCIEM_IRQ_HWIRQ(func, vec)	((func) << PCIEM_IRQ_VEC_BITS | (vec))

/*
 * Deliveries per irq_work run (irqs stay off meanwhile). What is left then
 * goes on from a work item: the CPU gets back to its tasks, and injectors
 * elsewhere drain on their own CPU, paying for what they send.
 */
#define PCIEM_IRQ_DRAIN_BUDGET	64
/*
 * An INTx level that stays asserted with nobody clearing it fires again on
 * every unmask. After this many such re-fires without the card touching
 * the line, further ones wait PCIEM_IRQ_REFIRE_NS each: a stuck line
 * keeps interrupting, but never hogs a CPU.
 */
#define PCIEM_IRQ_REFIRE_BURST	4
#define PCIEM_IRQ_REFIRE_NS	(1 * NSEC_PER_MSEC)

#define PCIEM_IRQFD_FLAGS	(PCIEM_IRQFD_FLAG_LEVEL | PCIEM_IRQFD_FLAG_DEASSERT)

/* What waits for delivery on one vector (or the INTx line). */
struct pciem_irq_vec {
	struct list_head node;	/* on pciem_irq.ready while anything is queued */
	u32 queued;		/* injections; for INTx: 1 = a fire is requested */
	u32 replays;		/* resends asked by the irq core (MSI) */
	u16 vector;
	u8 func;
	bool intx;
};

struct pciem_irq_func {
	/* Set up at REGISTER, constant until removal. */
	bool present;
	u8 msi_cap;
	u8 msix_bar;
	u32 msix_table;		/* offsets in that BAR */
	u32 msix_pba;
	u16 msix_size;		/* 0: no MSI-X */
	u16 nvec;		/* entries of vec[] */
	unsigned int intx_virq;
	struct pciem_irq_vec *vec;

	/* Runtime state (pciem_irq.lock). */
	struct pciem_irq_vec intx;
	u8 mode;		/* PCIEM_IRQ_MODE_* as last seen in config space */
	bool quiesced;		/* no driver bound: nothing is delivered */
	bool level;		/* the INTx line as the card drives it */
	u32 pulses;		/* INJECT_IRQ in INTx mode, not yet delivered */
	bool intx_masked;	/* by the irq chip */
	bool intx_in_flow;	/* the drainer runs the flow handler */
	bool intx_flow_masked;	/* ... and it masked the line: the handler ran */
	bool intx_deferred;	/* a throttled re-fire waits for the timer */
	bool intx_tick;		/* the timer let one re-fire through */
	u32 refire_streak;	/* level-only deliveries since the card last acted */
	u64 injected, delivered, pended, dropped, refires;
};

struct pciem_irqfd {
	struct pciem_irq *irq;
	struct eventfd_ctx *ctx;	/* NULL: slot free */
	wait_queue_entry_t wait;
	wait_queue_head_t *wqh;
	poll_table pt;
	u32 vector;
	u32 flags;
	u8 func;
	bool hup;		/* the eventfd was closed: reclaim the slot */
};

struct pciem_irq {
	struct pciem_dev *dev;

	spinlock_t lock;	/* everything below but the irqfds */
	bool live;		/* the bus exists: domains and vec[] are valid */
	struct list_head ready;
	bool draining;		/* a drainer runs (on drain_cpu) */
	int drain_cpu;
	int busy_func;		/* whose handler the drainer runs now, or -1 */
	struct irq_work work;
	struct work_struct resume;	/* continues a drain out of budget */
	struct hrtimer refire_timer;
	struct pciem_irq_func func[PCIEM_MAX_FUNCTIONS];

	/* From REGISTER until removal. */
	struct fwnode_handle *intx_fwnode, *msi_fwnode;
	struct irq_domain *intx_domain, *msi_domain;
	/* The PCI core fills in the missing ops: one copy per device. */
	struct irq_chip msi_chip;
	struct msi_domain_ops msi_ops;
	struct msi_domain_info msi_info;
	struct notifier_block nb;
	bool nb_registered;

	struct mutex irqfd_lock;	/* attach and detach */
	struct pciem_irqfd irqfd[PCIEM_MAX_IRQFDS];
};

static struct pciem_irq *pciem_irq_of(struct pciem_dev *dev)
{
	/* Pairs with the release in pciem_irq_bus_init(). */
	return smp_load_acquire(&dev->irq);
}

static struct pciem_cfg *pciem_irq_cfg(struct pciem_irq *irq, unsigned int func)
{
	return &irq->dev->func[func].cfg;
}

static u8 pciem_irq_mode(const struct pciem_cfg *c)
{
	if (pciem_cfg_msix_enabled(c))
		return PCIEM_IRQ_MODE_MSIX;
	if (pciem_cfg_msi_enabled(c))
		return PCIEM_IRQ_MODE_MSI;
	return pciem_cfg_intx_disabled(c) ? PCIEM_IRQ_MODE_NONE : PCIEM_IRQ_MODE_INTX;
}

static bool pciem_irq_mode_is_msi(u8 mode)
{
	return mode == PCIEM_IRQ_MODE_MSI || mode == PCIEM_IRQ_MODE_MSIX;
}

/* ---- MSI and MSI-X registers, as the device sees them ---- */

/* The MSI pending register, 0 without per-vector masking. */
static unsigned int pciem_irq_msi_pending_reg(const struct pciem_cfg *c, u8 cap)
{
	u16 flags = pciem_cfg_read(c, cap + PCI_MSI_FLAGS, 2);

	if (!(flags & PCI_MSI_FLAGS_MASKBIT))
		return 0;
	return cap + (flags & PCI_MSI_FLAGS_64BIT ? PCI_MSI_PENDING_64 : PCI_MSI_PENDING_32);
}

static u8 *pciem_irq_msix_entry(struct pciem_irq *irq, unsigned int func, unsigned int v)
{
	struct pciem_irq_func *f = &irq->func[func];

	return (u8 *)irq->dev->func[func].bar[f->msix_bar].mem + f->msix_table +
	       v * PCI_MSIX_ENTRY_SIZE;
}

/* The PBA, in BAR memory: bit v of qword v / 64, as unsigned long bitops. */
static unsigned long *pciem_irq_msix_pba(struct pciem_irq *irq, unsigned int func)
{
	struct pciem_irq_func *f = &irq->func[func];

	return (unsigned long *)((u8 *)irq->dev->func[func].bar[f->msix_bar].mem + f->msix_pba);
}

static bool pciem_irq_msix_vec_masked(struct pciem_irq *irq, unsigned int func, unsigned int v)
{
	u8 *ent = pciem_irq_msix_entry(irq, func, v);

	return READ_ONCE(*(u32 *)(ent + PCI_MSIX_ENTRY_VECTOR_CTRL)) & PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

/*
 * The Linux irq (hwirq in the MSI domain) the host programmed for a vector:
 * the message it wrote, decoded. false for a message pciem did not compose.
 */
static bool pciem_irq_decode(struct pciem_irq *irq, unsigned int func, u8 mode,
			     unsigned int v, unsigned int *hwirq)
{
	u64 addr;
	u32 data;

	if (mode == PCIEM_IRQ_MODE_MSIX) {
		u8 *ent = pciem_irq_msix_entry(irq, func, v);

		addr = READ_ONCE(*(u32 *)(ent + PCI_MSIX_ENTRY_LOWER_ADDR)) |
		       (u64)READ_ONCE(*(u32 *)(ent + PCI_MSIX_ENTRY_UPPER_ADDR)) << 32;
		data = READ_ONCE(*(u32 *)(ent + PCI_MSIX_ENTRY_DATA));
	} else if (pciem_cfg_msi_message(pciem_irq_cfg(irq, func), v, &addr, &data)) {
		return false;
	}
	if (addr != PCIEM_IRQ_MSI_ADDR || data > PCIEM_IRQ_VEC_MASK)
		return false;
	*hwirq = PCIEM_IRQ_HWIRQ(func, data);
	return true;
}

/* ---- the ready list ---- */

static void pciem_irq_ready(struct pciem_irq *irq, struct pciem_irq_vec *v)
{
	lockdep_assert_held(&irq->lock);
	if (list_empty(&v->node))
		list_add_tail(&v->node, &irq->ready);
	/* A drainer that runs sees the list before it stops. */
	if (!irq->draining)
		irq_work_queue(&irq->work);
}

static int pciem_irq_queue(struct pciem_irq *irq, struct pciem_irq_vec *v)
{
	if (v->queued == U32_MAX)
		return -EAGAIN;
	v->queued++;
	pciem_irq_ready(irq, v);
	return 0;
}

/* Forgets what a function has queued on its vectors (its mode changed). */
static void pciem_irq_flush_vectors(struct pciem_irq *irq, unsigned int func)
{
	struct pciem_irq_func *f = &irq->func[func];
	unsigned int i;

	for (i = 0; i < f->nvec; i++) {
		struct pciem_irq_vec *v = &f->vec[i];

		if (list_empty(&v->node))
			continue;
		f->dropped += v->queued;
		v->queued = 0;
		v->replays = 0;
		list_del_init(&v->node);
	}
}

/* ---- INTx ---- */

static bool pciem_irq_intx_line(const struct pciem_irq_func *f)
{
	return f->level || f->pulses;
}

/* Interrupt Status follows the line, whatever Interrupt Disable says. */
static void pciem_irq_intx_status(struct pciem_irq *irq, unsigned int func)
{
	spin_lock(&irq->dev->cfg_lock);
	pciem_cfg_set_intx_status(pciem_irq_cfg(irq, func), pciem_irq_intx_line(&irq->func[func]));
	spin_unlock(&irq->dev->cfg_lock);
}

/* Asks the drainer to fire INTx if the line is up and reaches the CPU. */
static void pciem_irq_intx_kick(struct pciem_irq *irq, unsigned int func)
{
	struct pciem_irq_func *f = &irq->func[func];

	lockdep_assert_held(&irq->lock);
	if (!irq->live || !pciem_irq_intx_line(f) || f->mode != PCIEM_IRQ_MODE_INTX ||
	    f->intx_masked || f->quiesced || f->intx.queued)
		return;
	f->intx.queued = 1;
	pciem_irq_ready(irq, &f->intx);
}

/*
 * Masking. handle_level_irq() masks before it runs the handler: a mask
 * while the drainer delivers tells it the handler ran (and a pulse was
 * taken); a line disabled before it arrived is not masked again.
 */
static void pciem_intx_mask(struct irq_data *d)
{
	struct pciem_irq *irq = irq_data_get_irq_chip_data(d);
	struct pciem_irq_func *f = &irq->func[d->hwirq];
	unsigned long flags;

	spin_lock_irqsave(&irq->lock, flags);
	f->intx_masked = true;
	if (f->intx_in_flow)
		f->intx_flow_masked = true;
	spin_unlock_irqrestore(&irq->lock, flags);
}

/* The end of a level interrupt's handling: a line still up fires again. */
static void pciem_intx_unmask(struct irq_data *d)
{
	struct pciem_irq *irq = irq_data_get_irq_chip_data(d);
	unsigned long flags;

	spin_lock_irqsave(&irq->lock, flags);
	irq->func[d->hwirq].intx_masked = false;
	pciem_irq_intx_kick(irq, d->hwirq);
	spin_unlock_irqrestore(&irq->lock, flags);
}

/* disable_irq() masks at once (no lazy disable): a disabled line stays quiet. */
static void pciem_intx_disable(struct irq_data *d)
{
	struct pciem_irq *irq = irq_data_get_irq_chip_data(d);
	unsigned long flags;

	spin_lock_irqsave(&irq->lock, flags);
	irq->func[d->hwirq].intx_masked = true;
	spin_unlock_irqrestore(&irq->lock, flags);
}

static const struct irq_chip pciem_intx_chip = {
	.name = "pciem-INTx",
	.irq_mask = pciem_intx_mask,
	.irq_unmask = pciem_intx_unmask,
	.irq_disable = pciem_intx_disable,
	.irq_enable = pciem_intx_unmask,
};

static int pciem_intx_map(struct irq_domain *d, unsigned int virq, irq_hw_number_t hw)
{
	irq_set_chip_and_handler_name(virq, &pciem_intx_chip, handle_level_irq, "level");
	irq_set_chip_data(virq, d->host_data);
	irq_set_status_flags(virq, IRQ_LEVEL);
	return 0;
}

static const struct irq_domain_ops pciem_intx_domain_ops = {
	.map = pciem_intx_map,
};

/* bridge->map_irq: the INTx irq of a function (its own line, no sharing). */
static int pciem_irq_map_irq(const struct pci_dev *pdev, u8 slot, u8 pin)
{
	struct pciem_dev *dev = container_of(pdev->bus->sysdata, struct pciem_dev, sysdata);
	struct pciem_irq *irq = pciem_irq_of(dev);

	return irq ? irq->func[PCI_FUNC(pdev->devfn)].intx_virq : 0;
}

/* ---- the MSI domain ---- */

static void pciem_msi_compose(struct irq_data *d, struct msi_msg *msg)
{
	msg->address_hi = 0;
	msg->address_lo = PCIEM_IRQ_MSI_ADDR;
	msg->data = d->hwirq & PCIEM_IRQ_VEC_MASK;
}

/* hwirq = function << 11 | MSI-X entry (MSI: vector, from 0 up). */
static void pciem_msi_set_desc(msi_alloc_info_t *arg, struct msi_desc *desc)
{
	arg->desc = desc;
	arg->hwirq = PCIEM_IRQ_HWIRQ(PCI_FUNC(msi_desc_to_pci_dev(desc)->devfn),
				     desc->msi_index);
}

/* The irq core resends an edge it could not handle (the irq was disabled). */
static int pciem_msi_retrigger(struct irq_data *d)
{
	struct pciem_irq *irq = irq_data_get_irq_chip_data(d);
	unsigned int func = d->hwirq >> PCIEM_IRQ_VEC_BITS, v = d->hwirq & PCIEM_IRQ_VEC_MASK;
	struct pciem_irq_func *f;
	unsigned long flags;
	int ret = 0;

	spin_lock_irqsave(&irq->lock, flags);
	f = &irq->func[func % PCIEM_MAX_FUNCTIONS];
	if (irq->live && func < PCIEM_MAX_FUNCTIONS && v < f->nvec && f->vec[v].replays != U32_MAX) {
		f->vec[v].replays++;
		pciem_irq_ready(irq, &f->vec[v]);
		ret = 1;
	}
	spin_unlock_irqrestore(&irq->lock, flags);
	return ret;
}

/* Delivery runs on whichever CPU injects: affinity cannot be honoured. */
static int pciem_msi_set_affinity(struct irq_data *d, const struct cpumask *mask, bool force)
{
	return -EINVAL;
}

/* handle_edge_irq() acks every interrupt; there is nothing to ack. */
static void pciem_msi_ack(struct irq_data *d)
{
}

/* ---- delivery ---- */

/* What the drainer is about to deliver. */
struct pciem_irq_shot {
	struct irq_domain *domain;
	unsigned int hwirq;
	bool pulse;		/* INTx: consumes a pulse */
};

/*
 * Takes one delivery off @v and decides it: true with @shot filled to
 * deliver; false when it is held (masked: pending bit set), gated (INTx
 * line down or disabled) or dropped (counted).
 */
static bool pciem_irq_take(struct pciem_irq *irq, struct pciem_irq_vec *v,
			   struct pciem_irq_shot *shot)
{
	struct pciem_irq_func *f = &irq->func[v->func];
	struct pciem_cfg *c = pciem_irq_cfg(irq, v->func);
	bool replay = false, ok = false;
	u8 mode;

	if (v->intx) {
		v->queued = 0;
	} else if (v->replays) {
		v->replays--;
		replay = true;
	} else {
		v->queued--;
	}

	spin_lock(&irq->dev->cfg_lock);
	mode = pciem_irq_mode(c);
	if (v->intx) {
		if (f->quiesced || mode != PCIEM_IRQ_MODE_INTX || f->intx_masked ||
		    !pciem_irq_intx_line(f) || READ_ONCE(irq->dev->gone))
			goto out;
		if (!f->pulses && f->refire_streak >= PCIEM_IRQ_REFIRE_BURST && !f->intx_tick) {
			f->intx_deferred = true;
			if (!hrtimer_is_queued(&irq->refire_timer))
				hrtimer_start(&irq->refire_timer, ns_to_ktime(PCIEM_IRQ_REFIRE_NS),
					      HRTIMER_MODE_REL);
			goto out;
		}
		f->intx_tick = false;
		shot->domain = irq->intx_domain;
		shot->hwirq = v->func;
		shot->pulse = f->pulses;
		ok = true;
		goto out;
	}
	if (f->quiesced || !pciem_irq_mode_is_msi(mode) || !pciem_cfg_bus_master(c) ||
	    READ_ONCE(irq->dev->gone)) {
		/* Nowhere to send it, nor what waits behind it. */
		f->dropped += 1 + v->queued + v->replays;
		v->queued = 0;
		v->replays = 0;
		goto out;
	}
	if (replay) {
		shot->hwirq = PCIEM_IRQ_HWIRQ(v->func, v->vector);
	} else {
		bool masked = mode == PCIEM_IRQ_MODE_MSIX ?
			pciem_cfg_msix_masked(c) || pciem_irq_msix_vec_masked(irq, v->func, v->vector) :
			pciem_cfg_msi_masked(c, v->vector);

		if (masked) {
			/* One pending bit holds them all. */
			if (mode == PCIEM_IRQ_MODE_MSIX)
				set_bit(v->vector, pciem_irq_msix_pba(irq, v->func));
			else
				pciem_cfg_set_msi_pending(c, v->vector, true);
			f->pended += 1 + v->queued;
			v->queued = 0;
			goto out;
		}
		if (!pciem_irq_decode(irq, v->func, mode, v->vector, &shot->hwirq)) {
			f->dropped++;
			goto out;
		}
	}
	shot->domain = irq->msi_domain;
	shot->pulse = false;
	ok = true;
out:
	spin_unlock(&irq->dev->cfg_lock);
	list_del_init(&v->node);
	if (v->queued || v->replays)
		list_add_tail(&v->node, &irq->ready);	/* round robin */
	return ok;
}

/* After the flow handler returned (@ret < 0: no irq for it). */
static void pciem_irq_done(struct pciem_irq *irq, struct pciem_irq_vec *v,
			   const struct pciem_irq_shot *shot, int ret)
{
	struct pciem_irq_func *f = &irq->func[v->func];

	if (ret) {
		f->dropped++;
		return;
	}
	if (!v->intx) {
		f->delivered++;
		return;
	}
	/* Disabled meanwhile: the line stays up for enable_irq() to fire it. */
	if (!f->intx_flow_masked)
		return;
	f->delivered++;
	if (shot->pulse && f->pulses) {
		f->pulses--;
		pciem_irq_intx_status(irq, v->func);
	} else {
		if (f->refire_streak)
			f->refires++;
		f->refire_streak++;
	}
}

static void pciem_irq_drain(struct irq_work *work)
{
	struct pciem_irq *irq = container_of(work, struct pciem_irq, work);
	unsigned int budget = PCIEM_IRQ_DRAIN_BUDGET;
	unsigned long flags;

	spin_lock_irqsave(&irq->lock, flags);
	if (irq->draining)
		goto out;
	irq->draining = true;
	irq->drain_cpu = smp_processor_id();
	while (irq->live && budget && !list_empty(&irq->ready)) {
		struct pciem_irq_vec *v = list_first_entry(&irq->ready, struct pciem_irq_vec, node);
		struct pciem_irq_shot shot;
		int ret;

		budget--;
		if (!pciem_irq_take(irq, v, &shot))
			continue;
		irq->busy_func = v->func;
		irq->func[v->func].intx_in_flow = v->intx;
		irq->func[v->func].intx_flow_masked = false;
		spin_unlock_irqrestore(&irq->lock, flags);
		ret = generic_handle_domain_irq(shot.domain, shot.hwirq);
		spin_lock_irqsave(&irq->lock, flags);
		irq->busy_func = -1;
		irq->func[v->func].intx_in_flow = false;
		pciem_irq_done(irq, v, &shot, ret);
	}
	irq->draining = false;
	if (irq->live && !list_empty(&irq->ready))
		schedule_work(&irq->resume);
out:
	spin_unlock_irqrestore(&irq->lock, flags);
}

static void pciem_irq_resume(struct work_struct *w)
{
	struct pciem_irq *irq = container_of(w, struct pciem_irq, resume);

	irq_work_queue(&irq->work);
}

/* Lets a throttled INTx re-fire through. */
static enum hrtimer_restart pciem_irq_refire(struct hrtimer *t)
{
	struct pciem_irq *irq = container_of(t, struct pciem_irq, refire_timer);
	unsigned long flags;
	int i;

	spin_lock_irqsave(&irq->lock, flags);
	for (i = 0; i < PCIEM_MAX_FUNCTIONS; i++) {
		struct pciem_irq_func *f = &irq->func[i];

		if (!f->intx_deferred)
			continue;
		f->intx_deferred = false;
		f->intx_tick = true;
		pciem_irq_intx_kick(irq, i);
	}
	spin_unlock_irqrestore(&irq->lock, flags);
	return HRTIMER_NORESTART;
}

/*
 * Waits until the drainer is not running a handler of @func. Called where
 * the host takes a function's vectors away; never waits for itself (a
 * handler that triggers this runs on the drainer's own CPU).
 */
static void pciem_irq_wait_func(struct pciem_irq *irq, unsigned int func)
{
	unsigned long flags;
	bool busy;

	for (;;) {
		spin_lock_irqsave(&irq->lock, flags);
		busy = irq->busy_func == func && irq->drain_cpu != raw_smp_processor_id();
		spin_unlock_irqrestore(&irq->lock, flags);
		if (!busy)
			return;
		cpu_relax();
	}
}

/* ---- the device's side of config space and BAR writes ---- */

/*
 * Re-reads a function's interrupt registers after the host wrote them:
 * a mode change forgets what was queued for the old mode; vectors that are
 * pending and now unmasked are sent; INTx follows Interrupt Disable.
 * Returns true when MSI or MSI-X was switched off (the caller then waits
 * for a delivery in flight: the vectors are about to be freed).
 */
static bool pciem_irq_update(struct pciem_irq *irq, unsigned int func)
{
	struct pciem_irq_func *f = &irq->func[func];
	struct pciem_cfg *c = pciem_irq_cfg(irq, func);
	bool off = false;
	unsigned int v;
	u8 mode, old;

	lockdep_assert_held(&irq->lock);
	spin_lock(&irq->dev->cfg_lock);
	mode = pciem_irq_mode(c);
	old = f->mode;
	f->mode = mode;
	if (mode != old && pciem_irq_mode_is_msi(old)) {
		pciem_irq_flush_vectors(irq, func);
		off = true;
	}
	if (mode != old && pciem_irq_mode_is_msi(mode) && f->pulses) {
		/* A function that signals with messages no longer uses INTx. */
		f->dropped += f->pulses;
		f->pulses = 0;
	}
	if (mode == PCIEM_IRQ_MODE_MSI && pciem_cfg_bus_master(c)) {
		unsigned int reg = pciem_irq_msi_pending_reg(c, f->msi_cap);
		u32 pending = reg ? pciem_cfg_read(c, reg, 4) : 0;
		unsigned int nvec = pciem_cfg_msi_vectors(c);

		for (v = 0; pending && v < nvec && v < f->nvec; v++) {
			if (!(pending & BIT(v)) || pciem_cfg_msi_masked(c, v))
				continue;
			pciem_cfg_set_msi_pending(c, v, false);
			pciem_irq_queue(irq, &f->vec[v]);
		}
	}
	if (mode == PCIEM_IRQ_MODE_MSIX && pciem_cfg_bus_master(c) && !pciem_cfg_msix_masked(c)) {
		unsigned long *pba = pciem_irq_msix_pba(irq, func);

		for_each_set_bit(v, pba, f->msix_size) {
			if (pciem_irq_msix_vec_masked(irq, func, v))
				continue;
			clear_bit(v, pba);
			pciem_irq_queue(irq, &f->vec[v]);
		}
	}
	pciem_cfg_set_intx_status(c, pciem_irq_intx_line(f));
	spin_unlock(&irq->dev->cfg_lock);
	pciem_irq_intx_kick(irq, func);
	return off;
}

void pciem_irq_config_written(struct pciem_dev *dev, unsigned int func,
			      unsigned int where, unsigned int size)
{
	struct pciem_irq *irq = pciem_irq_of(dev);
	unsigned long flags;
	bool off = false;

	if (!irq)
		return;
	spin_lock_irqsave(&irq->lock, flags);
	if (irq->live && irq->func[func].present)
		off = pciem_irq_update(irq, func);
	spin_unlock_irqrestore(&irq->lock, flags);
	if (off)
		pciem_irq_wait_func(irq, func);
}

/* A write to the MSI-X table may unmask a vector whose PBA bit is set. */
void pciem_irq_bar_written(struct pciem_dev *dev, unsigned int func,
			   unsigned int bar, u64 off, unsigned int size)
{
	struct pciem_irq *irq = pciem_irq_of(dev);
	struct pciem_irq_func *f;
	struct pciem_cfg *c;
	unsigned long flags;
	u64 end, first, last, v;

	if (!irq || func >= PCIEM_MAX_FUNCTIONS)
		return;
	f = &irq->func[func];
	end = f->msix_table + (u64)f->msix_size * PCI_MSIX_ENTRY_SIZE;
	if (!f->msix_size || bar != f->msix_bar || off + size <= f->msix_table || off >= end)
		return;
	first = off < f->msix_table ? 0 : (off - f->msix_table) / PCI_MSIX_ENTRY_SIZE;
	last = min(off + size - 1, end - 1);
	last = (last - f->msix_table) / PCI_MSIX_ENTRY_SIZE;

	c = pciem_irq_cfg(irq, func);
	spin_lock_irqsave(&irq->lock, flags);
	if (!irq->live)
		goto out;
	spin_lock(&dev->cfg_lock);
	if (pciem_irq_mode(c) == PCIEM_IRQ_MODE_MSIX && !pciem_cfg_msix_masked(c) &&
	    pciem_cfg_bus_master(c)) {
		unsigned long *pba = pciem_irq_msix_pba(irq, func);

		for (v = first; v <= last; v++) {
			if (!test_bit(v, pba) || pciem_irq_msix_vec_masked(irq, func, v))
				continue;
			clear_bit(v, pba);
			pciem_irq_queue(irq, &f->vec[v]);
		}
	}
	spin_unlock(&dev->cfg_lock);
out:
	spin_unlock_irqrestore(&irq->lock, flags);
}

/* ---- the card's side ---- */

/*
 * One interrupt from the card: MSI-X if the host enabled it, else MSI,
 * else an INTx pulse. Called with irq->lock held.
 */
static int pciem_irq_inject_locked(struct pciem_irq *irq, unsigned int func, u32 vector)
{
	struct pciem_irq_func *f = &irq->func[func];
	struct pciem_cfg *c = pciem_irq_cfg(irq, func);
	int ret = 0;
	u8 mode;

	lockdep_assert_held(&irq->lock);
	if (!irq->live)
		return -EBUSY;
	if (READ_ONCE(irq->dev->gone) || !f->present)
		return -ENODEV;

	spin_lock(&irq->dev->cfg_lock);
	mode = pciem_irq_mode(c);
	switch (mode) {
	case PCIEM_IRQ_MODE_MSIX:
		if (vector >= f->msix_size) {
			ret = -EINVAL;
		} else if (!pciem_cfg_bus_master(c)) {
			ret = -EIO;
		} else if (pciem_cfg_msix_masked(c) || pciem_irq_msix_vec_masked(irq, func, vector)) {
			set_bit(vector, pciem_irq_msix_pba(irq, func));
			f->pended++;
		} else {
			ret = pciem_irq_queue(irq, &f->vec[vector]);
		}
		break;
	case PCIEM_IRQ_MODE_MSI:
		if (vector >= pciem_cfg_msi_vectors(c) || vector >= f->nvec) {
			ret = -EINVAL;
		} else if (!pciem_cfg_bus_master(c)) {
			ret = -EIO;
		} else if (pciem_cfg_msi_masked(c, vector)) {
			pciem_cfg_set_msi_pending(c, vector, true);
			f->pended++;
		} else {
			ret = pciem_irq_queue(irq, &f->vec[vector]);
		}
		break;
	default:
		/* A pulse: asserted until one delivery, held while INTx is off. */
		if (vector) {
			ret = -EINVAL;
		} else if (f->pulses == U32_MAX) {
			ret = -EAGAIN;
		} else {
			f->pulses++;
			f->refire_streak = 0;
			pciem_cfg_set_intx_status(c, true);
		}
		break;
	}
	spin_unlock(&irq->dev->cfg_lock);
	if (!ret) {
		f->injected++;
		pciem_irq_intx_kick(irq, func);
	}
	return ret;
}

/* The card drives INTx: assert or deassert (which cancels pulses too). */
static int pciem_irq_set_level_locked(struct pciem_irq *irq, unsigned int func, bool level)
{
	struct pciem_irq_func *f = &irq->func[func];

	lockdep_assert_held(&irq->lock);
	if (!irq->live)
		return -EBUSY;
	if (READ_ONCE(irq->dev->gone) || !f->present)
		return -ENODEV;
	f->level = level;
	if (!level) {
		f->dropped += f->pulses;
		f->pulses = 0;
	}
	f->refire_streak = 0;
	pciem_irq_intx_status(irq, func);
	pciem_irq_intx_kick(irq, func);
	return 0;
}

/* ---- irqfds ---- */

static void pciem_irqfd_fire(struct pciem_irqfd *fd)
{
	struct pciem_irq *irq = fd->irq;
	unsigned long flags;
	int ret;

	spin_lock_irqsave(&irq->lock, flags);
	if (fd->flags & PCIEM_IRQFD_FLAG_LEVEL)
		ret = pciem_irq_set_level_locked(irq, fd->func,
						 !(fd->flags & PCIEM_IRQFD_FLAG_DEASSERT));
	else
		ret = pciem_irq_inject_locked(irq, fd->func, fd->vector);
	/* Nobody to tell: count it. */
	if (ret && irq->live)
		irq->func[fd->func].dropped++;
	spin_unlock_irqrestore(&irq->lock, flags);
}

/*
 * Runs under the eventfd's wait queue lock, irqs off, in whatever context
 * signalled it. Each signal is one injection, whatever the counter says.
 */
static int pciem_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct pciem_irqfd *fd = container_of(wait, struct pciem_irqfd, wait);
	__poll_t events = key_to_poll(key);
	u64 cnt;

	if (events & EPOLLIN) {
		eventfd_ctx_do_read(fd->ctx, &cnt);
		if (cnt)
			pciem_irqfd_fire(fd);
	}
	if (events & EPOLLHUP) {
		/* Closed: stop listening; the slot is reclaimed later. */
		list_del_init(&wait->entry);
		WRITE_ONCE(fd->hup, true);
	}
	return 0;
}

static void pciem_irqfd_queue_proc(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct pciem_irqfd *fd = container_of(pt, struct pciem_irqfd, pt);

	fd->wqh = wqh;
	add_wait_queue(wqh, &fd->wait);
}

static void pciem_irqfd_detach(struct pciem_irqfd *fd)
{
	u64 cnt;

	lockdep_assert_held(&fd->irq->irqfd_lock);
	/* After this, the wakeup callback cannot run any more. */
	eventfd_ctx_remove_wait_queue(fd->ctx, &fd->wait, &cnt);
	eventfd_ctx_put(fd->ctx);
	fd->ctx = NULL;
}

static void pciem_irqfd_detach_all(struct pciem_irq *irq)
{
	int i;

	mutex_lock(&irq->irqfd_lock);
	for (i = 0; i < PCIEM_MAX_IRQFDS; i++)
		if (irq->irqfd[i].ctx)
			pciem_irqfd_detach(&irq->irqfd[i]);
	mutex_unlock(&irq->irqfd_lock);
}

static bool pciem_irq_live(struct pciem_irq *irq)
{
	unsigned long flags;
	bool live;

	spin_lock_irqsave(&irq->lock, flags);
	live = irq->live;
	spin_unlock_irqrestore(&irq->lock, flags);
	return live;
}

/* eventfd -1: detaches every irqfd bound to this func, vector and flags. */
static int pciem_irqfd_unbind(struct pciem_irq *irq, const struct pciem_irqfd_config *a)
{
	int i, ret = -ENOENT;

	mutex_lock(&irq->irqfd_lock);
	for (i = 0; i < PCIEM_MAX_IRQFDS; i++) {
		struct pciem_irqfd *fd = &irq->irqfd[i];

		if (fd->ctx && fd->func == a->func && fd->vector == a->vector &&
		    fd->flags == a->flags) {
			pciem_irqfd_detach(fd);
			ret = 0;
		}
	}
	mutex_unlock(&irq->irqfd_lock);
	return ret;
}

static int pciem_irqfd_bind(struct pciem_irq *irq, const struct pciem_irqfd_config *a)
{
	struct pciem_irqfd *fd = NULL;
	struct eventfd_ctx *ctx;
	struct file *file;
	unsigned long flags;
	__poll_t events;
	int i, ret = 0;
	u64 cnt = 0;

	file = eventfd_fget(a->eventfd);
	if (IS_ERR(file))
		return PTR_ERR(file);
	ctx = eventfd_ctx_fileget(file);
	if (IS_ERR(ctx)) {
		fput(file);
		return PTR_ERR(ctx);
	}

	mutex_lock(&irq->irqfd_lock);
	/* Checked under irqfd_lock: removal detaches everything after it. */
	if (!pciem_irq_live(irq)) {
		ret = -EBUSY;
		goto out;
	}
	for (i = 0; i < PCIEM_MAX_IRQFDS; i++) {
		struct pciem_irqfd *s = &irq->irqfd[i];

		if (s->ctx && READ_ONCE(s->hup))
			pciem_irqfd_detach(s);
		if (s->ctx == ctx) {
			ret = -EEXIST;
			goto out;
		}
		if (!s->ctx && !fd)
			fd = s;
	}
	if (!fd) {
		ret = -ENOSPC;
		goto out;
	}
	fd->irq = irq;
	fd->func = a->func;
	fd->vector = a->vector;
	fd->flags = a->flags;
	fd->hup = false;
	fd->ctx = ctx;
	init_waitqueue_func_entry(&fd->wait, pciem_irqfd_wakeup);
	init_poll_funcptr(&fd->pt, pciem_irqfd_queue_proc);
	events = vfs_poll(file, &fd->pt);
	/* Signalled before it was attached: that counts as one signal too. */
	if (events & EPOLLIN) {
		spin_lock_irqsave(&fd->wqh->lock, flags);
		eventfd_ctx_do_read(ctx, &cnt);
		spin_unlock_irqrestore(&fd->wqh->lock, flags);
		if (cnt)
			pciem_irqfd_fire(fd);
	}
	ctx = NULL;
out:
	mutex_unlock(&irq->irqfd_lock);
	if (ctx)
		eventfd_ctx_put(ctx);
	fput(file);
	return ret;
}

/* ---- ioctls ---- */

/* The state an interrupt ioctl may use, or why not. */
static struct pciem_irq *pciem_irq_for_ioctl(struct pciem_dev *dev, unsigned int func, int *err)
{
	struct pciem_irq *irq = pciem_irq_of(dev);

	*err = 0;
	if (!irq || !pciem_irq_live(irq))
		*err = -EBUSY;		/* not registered yet */
	else if (READ_ONCE(dev->gone) || !irq->func[func].present)
		*err = -ENODEV;
	return *err ? NULL : irq;
}

static long pciem_irq_ioctl_inject(struct pciem_dev *dev, void __user *uarg)
{
	struct pciem_irq_inject a;
	struct pciem_irq *irq;
	unsigned long flags;
	int ret;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (memchr_inv(a.reserved, 0, sizeof(a.reserved)) || a.func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	irq = pciem_irq_for_ioctl(dev, a.func, &ret);
	if (!irq)
		return ret;
	spin_lock_irqsave(&irq->lock, flags);
	ret = pciem_irq_inject_locked(irq, a.func, a.vector);
	spin_unlock_irqrestore(&irq->lock, flags);
	return ret;
}

static long pciem_irq_ioctl_irqfd(struct pciem_dev *dev, void __user *uarg)
{
	struct pciem_irqfd_config a;
	struct pciem_irq *irq;
	int ret;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (memchr_inv(a.reserved, 0, sizeof(a.reserved)) || a.func >= PCIEM_MAX_FUNCTIONS ||
	    (a.flags & ~PCIEM_IRQFD_FLAGS) ||
	    (a.flags == PCIEM_IRQFD_FLAG_DEASSERT) ||
	    ((a.flags & PCIEM_IRQFD_FLAG_LEVEL) && a.vector))
		return -EINVAL;
	if (a.eventfd < -1)
		return -EBADF;
	irq = pciem_irq_for_ioctl(dev, a.func, &ret);
	if (!irq)
		return ret;
	/* Any vector the function could ever have; the mode decides at each signal. */
	if (a.vector >= max_t(u32, irq->func[a.func].nvec, 1))
		return -EINVAL;
	if (a.eventfd == -1)
		return pciem_irqfd_unbind(irq, &a);
	return pciem_irqfd_bind(irq, &a);
}

static long pciem_irq_ioctl_intx(struct pciem_dev *dev, void __user *uarg)
{
	struct pciem_intx a;
	struct pciem_irq *irq;
	unsigned long flags;
	int ret;

	ret = pciem_copy_ext_arg(&a, sizeof(a), uarg);
	if (ret)
		return ret;
	if (a.flags || a.level > 1 || memchr_inv(a.reserved, 0, sizeof(a.reserved)) ||
	    a.func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	irq = pciem_irq_for_ioctl(dev, a.func, &ret);
	if (!irq)
		return ret;
	spin_lock_irqsave(&irq->lock, flags);
	ret = pciem_irq_set_level_locked(irq, a.func, a.level);
	spin_unlock_irqrestore(&irq->lock, flags);
	return ret;
}

static long pciem_irq_ioctl_status(struct pciem_dev *dev, void __user *uarg)
{
	struct pciem_irq_status a;
	struct pciem_irq_func *f;
	struct pciem_irq *irq;
	struct pciem_cfg *c;
	unsigned long flags;
	u8 func;
	int ret;

	ret = pciem_copy_ext_arg(&a, sizeof(a), uarg);
	if (ret)
		return ret;
	if (a.flags || a.reserved || memchr_inv(a.reserved2, 0, sizeof(a.reserved2)) ||
	    a.func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	irq = pciem_irq_for_ioctl(dev, a.func, &ret);
	if (!irq)
		return ret;
	f = &irq->func[a.func];
	c = pciem_irq_cfg(irq, a.func);
	func = a.func;
	memset(&a, 0, sizeof(a));
	a.argsz = sizeof(a);
	a.func = func;
	spin_lock_irqsave(&irq->lock, flags);
	spin_lock(&dev->cfg_lock);
	a.mode = pciem_irq_mode(c);
	if (a.mode == PCIEM_IRQ_MODE_MSIX)
		a.vectors = f->msix_size;
	else if (a.mode == PCIEM_IRQ_MODE_MSI)
		a.vectors = pciem_cfg_msi_vectors(c);
	else
		a.vectors = a.mode == PCIEM_IRQ_MODE_INTX;
	spin_unlock(&dev->cfg_lock);
	a.intx_line = pciem_irq_intx_line(f);
	a.injected = f->injected;
	a.delivered = f->delivered;
	a.pended = f->pended;
	a.dropped = f->dropped;
	a.intx_refires = f->refires;
	spin_unlock_irqrestore(&irq->lock, flags);
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

long pciem_irq_ioctl(struct pciem_dev *dev, unsigned int cmd, void __user *uarg)
{
	switch (cmd) {
	case PCIEM_IOCTL_INJECT_IRQ:
		return pciem_irq_ioctl_inject(dev, uarg);
	case PCIEM_IOCTL_SET_IRQFD:
		return pciem_irq_ioctl_irqfd(dev, uarg);
	case PCIEM_IOCTL_SET_INTX:
		return pciem_irq_ioctl_intx(dev, uarg);
	case PCIEM_IOCTL_GET_IRQ_STATUS:
		return pciem_irq_ioctl_status(dev, uarg);
	}
	return -ENOTTY;
}

/* ---- the driver's comings and goings ---- */

static int pciem_irq_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct pciem_irq *irq = container_of(nb, struct pciem_irq, nb);
	struct pci_dev *pdev = to_pci_dev(data);
	unsigned int func = PCI_FUNC(pdev->devfn);
	unsigned long flags;

	if (pdev->bus->sysdata != &irq->dev->sysdata)
		return NOTIFY_DONE;
	switch (action) {
	case BUS_NOTIFY_ADD_DEVICE:
		/*
		 * x86 asks ACPI to route every pin it sees, and ACPI's tables
		 * know nothing of this segment ("can't derive routing"): the
		 * bridge's map_irq routes INTx here, so show ACPI no pin.
		 */
		pdev->pin = 0;
		break;
	case BUS_NOTIFY_BIND_DRIVER:
		spin_lock_irqsave(&irq->lock, flags);
		irq->func[func].quiesced = false;
		pciem_irq_intx_kick(irq, func);
		spin_unlock_irqrestore(&irq->lock, flags);
		break;
	case BUS_NOTIFY_UNBIND_DRIVER:
	case BUS_NOTIFY_DRIVER_NOT_BOUND:
		/*
		 * The driver frees its vectors next, maybe on a device that is
		 * gone (its config writes then never reach us): stop now.
		 */
		spin_lock_irqsave(&irq->lock, flags);
		irq->func[func].quiesced = true;
		spin_unlock_irqrestore(&irq->lock, flags);
		pciem_irq_wait_func(irq, func);
		break;
	}
	return NOTIFY_OK;
}

/* ---- bus lifetime ---- */

static struct pciem_irq *pciem_irq_alloc(struct pciem_dev *dev)
{
	struct pciem_irq *irq = kzalloc(sizeof(*irq), GFP_KERNEL);

	if (!irq)
		return NULL;
	irq->dev = dev;
	spin_lock_init(&irq->lock);
	mutex_init(&irq->irqfd_lock);
	INIT_LIST_HEAD(&irq->ready);
	irq->busy_func = -1;
	init_irq_work(&irq->work, pciem_irq_drain);
	INIT_WORK(&irq->resume, pciem_irq_resume);
	hrtimer_init(&irq->refire_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	irq->refire_timer.function = pciem_irq_refire;
	return irq;
}

/* Reads what the description gave each function; sizes the vector tables. */
static int pciem_irq_setup_funcs(struct pciem_irq *irq)
{
	struct pciem_dev *dev = irq->dev;
	unsigned long flags;
	int i, v;

	for (i = 0; i < PCIEM_MAX_FUNCTIONS; i++) {
		struct pciem_irq_func *f = &irq->func[i];
		struct pciem_cfg *c = &dev->func[i].cfg;
		unsigned int msi_max = 0;

		memset(f, 0, sizeof(*f));
		INIT_LIST_HEAD(&f->intx.node);
		f->intx.func = i;
		f->intx.intx = true;
		f->intx_masked = true;
		f->quiesced = true;
		f->present = dev->func[i].present;
		if (!f->present)
			continue;
		spin_lock_irqsave(&dev->cfg_lock, flags);
		f->msi_cap = c->msi_cap;
		if (c->msi_cap)
			msi_max = 1U << ((pciem_cfg_read(c, c->msi_cap + PCI_MSI_FLAGS, 2) &
					  PCI_MSI_FLAGS_QMASK) >> 1);
		if (c->msix_cap) {
			u32 table = pciem_cfg_read(c, c->msix_cap + PCI_MSIX_TABLE, 4);
			u32 pba = pciem_cfg_read(c, c->msix_cap + PCI_MSIX_PBA, 4);

			f->msix_size = (pciem_cfg_read(c, c->msix_cap + PCI_MSIX_FLAGS, 2) &
					PCI_MSIX_FLAGS_QSIZE) + 1;
			f->msix_bar = table & PCI_MSIX_TABLE_BIR;
			f->msix_table = table & PCI_MSIX_TABLE_OFFSET;
			f->msix_pba = pba & PCI_MSIX_PBA_OFFSET;
		}
		f->mode = pciem_irq_mode(c);
		spin_unlock_irqrestore(&dev->cfg_lock, flags);
		/* The uAPI gives the table and the PBA the same BAR; REGISTER checked both. */
		if (f->msix_size && !dev->func[i].bar[f->msix_bar].mem)
			return -EINVAL;

		f->nvec = max_t(unsigned int, msi_max, f->msix_size);
		if (!f->nvec)
			continue;
		f->vec = kvcalloc(f->nvec, sizeof(*f->vec), GFP_KERNEL);
		if (!f->vec)
			return -ENOMEM;
		for (v = 0; v < f->nvec; v++) {
			INIT_LIST_HEAD(&f->vec[v].node);
			f->vec[v].func = i;
			f->vec[v].vector = v;
		}
	}
	return 0;
}

static int pciem_irq_setup_domains(struct pciem_irq *irq)
{
	struct pciem_dev *dev = irq->dev;
	int i;

	irq->intx_fwnode = irq_domain_alloc_named_id_fwnode("pciem-INTx", dev->domain);
	irq->msi_fwnode = irq_domain_alloc_named_id_fwnode("pciem-MSI", dev->domain);
	if (!irq->intx_fwnode || !irq->msi_fwnode)
		return -ENOMEM;

	irq->intx_domain = irq_domain_create_linear(irq->intx_fwnode, PCIEM_MAX_FUNCTIONS,
						    &pciem_intx_domain_ops, irq);
	if (!irq->intx_domain)
		return -ENOMEM;
	for (i = 0; i < PCIEM_MAX_FUNCTIONS; i++) {
		if (!irq->func[i].present)
			continue;
		irq->func[i].intx_virq = irq_create_mapping(irq->intx_domain, i);
		if (!irq->func[i].intx_virq)
			return -ENOMEM;
	}

	irq->msi_chip = (struct irq_chip) {
		.name = "pciem-MSI",
		.irq_ack = pciem_msi_ack,
		.irq_compose_msi_msg = pciem_msi_compose,
		.irq_retrigger = pciem_msi_retrigger,
		.irq_set_affinity = pciem_msi_set_affinity,
	};
	irq->msi_ops = (struct msi_domain_ops) {
		.set_desc = pciem_msi_set_desc,
	};
	irq->msi_info = (struct msi_domain_info) {
		.flags = MSI_FLAG_USE_DEF_DOM_OPS | MSI_FLAG_USE_DEF_CHIP_OPS |
			 MSI_FLAG_MULTI_PCI_MSI | MSI_FLAG_PCI_MSIX,
		.ops = &irq->msi_ops,
		.chip = &irq->msi_chip,
		.chip_data = irq,
		.handler = handle_edge_irq,
		.handler_name = "edge",
	};
	irq->msi_domain = pci_msi_create_irq_domain(irq->msi_fwnode, &irq->msi_info, NULL);
	if (!irq->msi_domain)
		return -ENOMEM;
	return 0;
}

/* Undoes pciem_irq_setup_*(): whatever of it was done. */
static void pciem_irq_teardown(struct pciem_irq *irq)
{
	int i;

	if (irq->nb_registered)
		bus_unregister_notifier(&pci_bus_type, &irq->nb);
	irq->nb_registered = false;
	if (irq->msi_domain)
		irq_domain_remove(irq->msi_domain);
	irq->msi_domain = NULL;
	for (i = 0; i < PCIEM_MAX_FUNCTIONS; i++) {
		if (irq->func[i].intx_virq)
			irq_dispose_mapping(irq->func[i].intx_virq);
		irq->func[i].intx_virq = 0;
		kvfree(irq->func[i].vec);
		irq->func[i].vec = NULL;
		irq->func[i].nvec = 0;
	}
	if (irq->intx_domain)
		irq_domain_remove(irq->intx_domain);
	irq->intx_domain = NULL;
	if (irq->msi_fwnode)
		irq_domain_free_fwnode(irq->msi_fwnode);
	if (irq->intx_fwnode)
		irq_domain_free_fwnode(irq->intx_fwnode);
	irq->msi_fwnode = NULL;
	irq->intx_fwnode = NULL;
}

int pciem_irq_bus_init(struct pciem_dev *dev, struct pci_host_bridge *bridge)
{
	struct pciem_irq *irq = dev->irq;
	unsigned long flags;
	int ret;

	lockdep_assert_held(&dev->lock);
	if (!irq) {
		irq = pciem_irq_alloc(dev);
		if (!irq)
			return -ENOMEM;
		/* Ioctls look without dev->lock: publish it whole. */
		smp_store_release(&dev->irq, irq);
	}
	ret = pciem_irq_setup_funcs(irq);
	if (!ret)
		ret = pciem_irq_setup_domains(irq);
	if (!ret) {
		irq->nb.notifier_call = pciem_irq_notify;
		ret = bus_register_notifier(&pci_bus_type, &irq->nb);
		irq->nb_registered = !ret;
	}
	if (ret) {
		pciem_irq_teardown(irq);
		return ret;
	}
	/* The root bus inherits the bridge's MSI domain, its devices the bus's. */
	dev_set_msi_domain(&bridge->dev, irq->msi_domain);
	bridge->map_irq = pciem_irq_map_irq;

	spin_lock_irqsave(&irq->lock, flags);
	irq->live = true;
	spin_unlock_irqrestore(&irq->lock, flags);
	return 0;
}

void pciem_irq_bus_exit(struct pciem_dev *dev)
{
	struct pciem_irq *irq = dev->irq;
	unsigned long flags;

	if (!irq)
		return;
	spin_lock_irqsave(&irq->lock, flags);
	irq->live = false;
	while (!list_empty(&irq->ready))
		list_del_init(irq->ready.next);
	spin_unlock_irqrestore(&irq->lock, flags);

	pciem_irqfd_detach_all(irq);
	hrtimer_cancel(&irq->refire_timer);
	cancel_work_sync(&irq->resume);
	irq_work_sync(&irq->work);
	pciem_irq_teardown(irq);
}

void pciem_irq_release(struct pciem_dev *dev)
{
	kfree(dev->irq);
	dev->irq = NULL;
}
