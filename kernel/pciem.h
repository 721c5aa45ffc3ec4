/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pciem internals: one struct pciem_dev per /dev/pciem open, holding up to
 * eight functions of one slot on a PCI host bridge of its own.
 *
 * Lifecycle: DESCRIBING (CREATE_DEVICE, SET_CONFIG, ADD_BAR, ...) ->
 * REGISTERED (REGISTER: bus scanned, BARs assigned, instance fd handed out)
 * -> STARTED (START: devices added, drivers bind) -> REMOVED (the /dev/pciem
 * fd is released: surprise removal). The struct lives on, through its
 * kref, while the instance fd or a BAR mapping holds it.
 */
#ifndef PCIEM_H
#define PCIEM_H

#include <linux/eventfd.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/spinlock.h>
#include <uapi/linux/pciem.h>

#include "pciem_config.h"
#include "pciem_trace.h"

/* BAR contents live in vmalloc'd memory: keep one device within reason. */
#define PCIEM_MAX_BAR_SIZE	(256ULL << 20)
#define PCIEM_MAX_DEV_BARS_SIZE	(512ULL << 20)

/* Domains start above what firmware hands out, so they never collide. */
#define PCIEM_DOMAIN_FIRST	0x10000
#define PCIEM_DOMAIN_LAST	0x1ffff

enum pciem_state {
	PCIEM_DESCRIBING,
	PCIEM_REGISTERED,
	PCIEM_STARTED,
	PCIEM_REMOVED,
};

struct pciem_bar {
	void *mem;		/* the BAR's contents; mmap'd by the card */
	u64 size;		/* 0: no BAR at this index */
	u32 trace;		/* PCIEM_TRACE_*; read in the fault path */
	/* Read-via-model region (pciem_dev.cfg_lock); sync_len 0: none. */
	u64 sync_off;
	u64 sync_len;
	u32 sync_timeout_us;
};

struct pciem_func {
	bool present;
	struct pciem_cfg cfg;			/* pciem_dev.cfg_lock */
	struct pciem_bar bar[PCIEM_NUM_BARS];
};

struct pciem_stats {
	atomic64_t mmio_reads;
	atomic64_t mmio_writes;
	atomic64_t unclaimed;		/* accesses that hit no enabled BAR */
	atomic64_t after_removal;	/* accesses after the owner went away */
	atomic64_t ring_drops;		/* ring full, event dropped */
	atomic64_t ring_stalls;		/* ring full, lossless: waited */
	atomic64_t ring_timeouts;	/* waited too long: card taken for dead */
	atomic64_t sync_reads;
	atomic64_t sync_read_timeouts;
};

/*
 * Physical address space for BARs, trapped as a whole. Nothing decodes it:
 * [0] serves 64-bit BARs, from the upper half of what the CPU addresses;
 * [1] serves 32-bit BARs, carved from the root bus's 32-bit window (only
 * when the device has 32-bit BARs).
 */
struct pciem_window {
	struct pciem_dev *dev;
	struct resource res;		/* res.parent: allocated */
	struct pciem_trace_range *trace;
};

struct pciem_irq;
struct pciem_dma;

struct pciem_dev {
	/* Must stay first: x86 finds the domain through bus->sysdata. */
	struct pci_sysdata sysdata;

	struct kref ref;
	struct mutex lock;		/* state, description, bus objects */
	enum pciem_state state;
	struct pciem_func func[PCIEM_MAX_FUNCTIONS];
	/* Every func[].cfg: pci_ops and the fault path run in atomic context. */
	spinlock_t cfg_lock;

	/* From REGISTER until removal (lock). */
	int domain;
	struct pci_host_bridge *bridge;
	struct pci_bus *bus;
	struct pciem_window win[2];
	struct resource busn;
	bool gone;			/* READ_ONCE: owner gone, reads all-ones */

	/* The compatible event ring. */
	struct pciem_shared_ring *ring;	/* mmap'd at offset 0 of /dev/pciem */
	spinlock_t ring_lock;		/* ring producer side, seq, evfd */
	u32 ring_tail;			/* ours; userspace may scribble on ring->tail */
	u64 seq;
	struct eventfd_ctx *evfd;
	bool config_events;
	bool lossless;			/* READ_ONCE: wait for room, never drop */
	u32 ring_timeout_us;

	/*
	 * Read-via-model. sync_lock serialises the reads in flight (one at a
	 * time); the reply side uses only reply_lock, which the waiter never
	 * holds while it waits. sync_waiting is seq + 1 of the read waiting
	 * for its answer (0: none), set when its event is queued.
	 */
	spinlock_t sync_lock;
	spinlock_t reply_lock;
	u64 sync_waiting;
	u64 sync_reply_seq;		/* seq + 1 of the last answer */
	u64 sync_reply_data;

	struct pciem_stats stats;

	struct pciem_irq *irq;		/* pciem_irq.c's state */
	struct pciem_dma *dma;		/* pciem_dma.c's state */
};

/* pciem_main.c: copies in an extension ioctl's argsz-prefixed argument. */
int pciem_copy_ext_arg(void *karg, size_t ksize, const void __user *uarg);

/* pciem_dev.c */
struct pciem_dev *pciem_dev_alloc(void);
void pciem_dev_get(struct pciem_dev *dev);
void pciem_dev_put(struct pciem_dev *dev);
int pciem_dev_create_func(struct pciem_dev *dev, const struct pciem_create_device *arg);
int pciem_dev_set_config(struct pciem_dev *dev, const struct pciem_config_space *arg);
int pciem_dev_add_bar(struct pciem_dev *dev, const struct pciem_bar_config *arg);
int pciem_dev_add_cap(struct pciem_dev *dev, const struct pciem_cap_config *arg);
int pciem_dev_trace_bar(struct pciem_dev *dev, const struct pciem_trace_bar *arg);
int pciem_dev_bar_info(struct pciem_dev *dev, struct pciem_bar_info_query *arg);
int pciem_dev_set_eventfd(struct pciem_dev *dev, int fd);
int pciem_dev_register(struct pciem_dev *dev);
int pciem_dev_start(struct pciem_dev *dev);
void pciem_dev_remove(struct pciem_dev *dev);
#define PCIEM_NO_EVENT U64_MAX
u64 pciem_dev_event(struct pciem_dev *dev, u32 type, u32 bar, u64 offset,
		    u32 size, u64 data);
int pciem_dev_set_ring_mode(struct pciem_dev *dev, const struct pciem_ring_mode *arg);
int pciem_dev_set_read_region(struct pciem_dev *dev, const struct pciem_read_region *arg);
int pciem_dev_complete_read(struct pciem_dev *dev, const struct pciem_read_reply *arg);
u64 pciem_dev_sync_read(struct pciem_dev *dev, u32 tag, u64 off, u32 size, u32 timeout_us);
void pciem_dev_get_stats(struct pciem_dev *dev, struct pciem_stats_query *st);

/*
 * pciem_irq.c: INTx, MSI and MSI-X delivery.
 *   bus_init:  before the slot is scanned (the bridge exists, no devices yet)
 *   bus_exit:  after the devices and the root bus are gone
 *   ioctl:     INJECT_IRQ, SET_IRQFD and the interrupt extensions (48..55)
 *   config_written: after a config write to @func was applied (any context,
 *              cfg_lock not held); bar_written: after a BAR write was applied
 *   release:   at the last reference
 */
int pciem_irq_bus_init(struct pciem_dev *dev, struct pci_host_bridge *bridge);
void pciem_irq_bus_exit(struct pciem_dev *dev);
long pciem_irq_ioctl(struct pciem_dev *dev, unsigned int cmd, void __user *uarg);
void pciem_irq_config_written(struct pciem_dev *dev, unsigned int func,
			      unsigned int where, unsigned int size);
void pciem_irq_bar_written(struct pciem_dev *dev, unsigned int func,
			   unsigned int bar, u64 off, unsigned int size);
void pciem_irq_release(struct pciem_dev *dev);

/*
 * pciem_dma.c: DMA, atomics, scatter-gather and P2P on the device's behalf.
 *   bus_init:  after the slot is scanned, before START (drivers not bound)
 *   bus_exit:  after the devices are gone
 *   ioctl:     DMA, DMA_ATOMIC, P2P, DMA_INDIRECT and the DMA extensions (56..63)
 *   release:   at the last reference
 */
int pciem_dma_bus_init(struct pciem_dev *dev);
void pciem_dma_bus_exit(struct pciem_dev *dev);
long pciem_dma_ioctl(struct pciem_dev *dev, unsigned int cmd, void __user *uarg);
void pciem_dma_release(struct pciem_dev *dev);

/* pciem_bus.c */
int pciem_bus_create(struct pciem_dev *dev);
int pciem_bus_start(struct pciem_dev *dev);
void pciem_bus_destroy(struct pciem_dev *dev);
void pciem_bus_p2p_write(struct pciem_dev *dev, u64 phys, const void *buf, size_t len);

#endif /* PCIEM_H */
