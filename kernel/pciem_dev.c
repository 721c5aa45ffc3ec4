// SPDX-License-Identifier: GPL-2.0
/*
 * pciem device description, lifecycle and the compatible event ring.
 *
 * Description ioctls are accepted only while DESCRIBING; every argument is
 * checked here (indices, sizes, state) or by pciem_config.c (values), and
 * each failure has its own errno: -EINVAL bad value, -ENODEV function not
 * created, -EEXIST created twice, -EBUSY wrong state, -E2BIG over a size
 * limit, -EOPNOTSUPP a mode pciem does not offer.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/version.h>
#include <linux/vmalloc.h>

#include "pciem.h"

struct pciem_dev *pciem_dev_alloc(void)
{
	struct pciem_dev *dev;

	/* Eight functions of 12 KiB config state each: not a job for kmalloc. */
	dev = kvzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return NULL;
	dev->ring = vmalloc_user(sizeof(*dev->ring));
	if (!dev->ring) {
		kvfree(dev);
		return NULL;
	}
	kref_init(&dev->ref);
	mutex_init(&dev->lock);
	spin_lock_init(&dev->cfg_lock);
	spin_lock_init(&dev->ring_lock);
	spin_lock_init(&dev->sync_lock);
	spin_lock_init(&dev->reply_lock);
	dev->ring_timeout_us = PCIEM_RING_DEFAULT_TIMEOUT_US;
	dev->state = PCIEM_DESCRIBING;
	dev->domain = -1;
	return dev;
}

static void pciem_dev_release(struct kref *ref)
{
	struct pciem_dev *dev = container_of(ref, struct pciem_dev, ref);
	int f, b;

	pciem_irq_release(dev);
	pciem_dma_release(dev);
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		for (b = 0; b < PCIEM_NUM_BARS; b++)
			vfree(dev->func[f].bar[b].mem);
	if (dev->evfd)
		eventfd_ctx_put(dev->evfd);
	vfree(dev->ring);
	kvfree(dev);
}

void pciem_dev_get(struct pciem_dev *dev)
{
	kref_get(&dev->ref);
}

void pciem_dev_put(struct pciem_dev *dev)
{
	kref_put(&dev->ref, pciem_dev_release);
}

static bool pciem_zeroed(const void *p, size_t n)
{
	return !memchr_inv(p, 0, n);
}

/* The function a description ioctl names, or an ERR_PTR. */
static struct pciem_func *pciem_dev_func(struct pciem_dev *dev, u8 func)
{
	lockdep_assert_held(&dev->lock);
	if (dev->state != PCIEM_DESCRIBING)
		return ERR_PTR(-EBUSY);
	if (func >= PCIEM_MAX_FUNCTIONS)
		return ERR_PTR(-EINVAL);
	if (!dev->func[func].present)
		return ERR_PTR(-ENODEV);
	return &dev->func[func];
}

int pciem_dev_create_func(struct pciem_dev *dev, const struct pciem_create_device *arg)
{
	struct pciem_func *fn;
	int ret = 0;

	if (!pciem_zeroed(arg->reserved, sizeof(arg->reserved)) ||
	    (arg->flags & ~PCIEM_CREATE_FLAG_BUS_MODE_MASK) ||
	    arg->func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	/* Attaching to a real bus would let a card squat on a real slot. */
	if ((arg->flags & PCIEM_CREATE_FLAG_BUS_MODE_MASK) != PCIEM_CREATE_FLAG_BUS_MODE_VIRTUAL)
		return -EOPNOTSUPP;

	mutex_lock(&dev->lock);
	fn = &dev->func[arg->func];
	if (dev->state != PCIEM_DESCRIBING)
		ret = -EBUSY;
	else if (fn->present)
		ret = -EEXIST;
	else if (arg->func && !dev->func[0].present)
		ret = -ENODEV;		/* function 0 comes first */
	else {
		pciem_cfg_init(&fn->cfg);
		fn->present = true;
	}
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_set_config(struct pciem_dev *dev, const struct pciem_config_space *arg)
{
	struct pciem_func *fn;
	int ret;

	mutex_lock(&dev->lock);
	fn = pciem_dev_func(dev, arg->func);
	ret = IS_ERR(fn) ? PTR_ERR(fn) : pciem_cfg_set_ids(&fn->cfg, arg);
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_add_bar(struct pciem_dev *dev, const struct pciem_bar_config *arg)
{
	struct pciem_func *fn;
	u64 total = 0;
	int f, b, ret;

	if (arg->size > PCIEM_MAX_BAR_SIZE)
		return -E2BIG;

	mutex_lock(&dev->lock);
	fn = pciem_dev_func(dev, arg->func);
	if (IS_ERR(fn)) {
		ret = PTR_ERR(fn);
		goto out;
	}
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		for (b = 0; b < PCIEM_NUM_BARS; b++)
			total += dev->func[f].bar[b].size;
	if (total + arg->size > PCIEM_MAX_DEV_BARS_SIZE) {
		ret = -E2BIG;
		goto out;
	}
	ret = pciem_cfg_add_bar(&fn->cfg, arg);
	if (!ret)
		fn->bar[arg->bar_index].size = arg->size;
out:
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_add_cap(struct pciem_dev *dev, const struct pciem_cap_config *arg)
{
	struct pciem_func *fn;
	int ret;

	mutex_lock(&dev->lock);
	fn = pciem_dev_func(dev, arg->func);
	ret = IS_ERR(fn) ? PTR_ERR(fn) : pciem_cfg_add_cap(&fn->cfg, arg);
	mutex_unlock(&dev->lock);
	return ret;
}

#define PCIEM_TRACE_ALL (PCIEM_TRACE_READS | PCIEM_TRACE_WRITES | PCIEM_TRACE_STOP_WRITES)

int pciem_dev_trace_bar(struct pciem_dev *dev, const struct pciem_trace_bar *arg)
{
	struct pciem_func *fn;
	int ret = 0;

	if (!pciem_zeroed(arg->reserved, sizeof(arg->reserved)) ||
	    (arg->flags & ~PCIEM_TRACE_ALL) || arg->bar_index >= PCIEM_NUM_BARS ||
	    arg->func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;

	mutex_lock(&dev->lock);
	fn = &dev->func[arg->func];
	/* Tracing can change while the card runs; the fault path reads it once. */
	if (dev->state == PCIEM_REMOVED)
		ret = -ENODEV;
	else if (!fn->present || !fn->bar[arg->bar_index].size)
		ret = -ENODEV;
	else
		WRITE_ONCE(fn->bar[arg->bar_index].trace, arg->flags);
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_bar_info(struct pciem_dev *dev, struct pciem_bar_info_query *arg)
{
	struct pciem_func *fn;
	struct pci_dev *pdev;
	int ret = 0;

	if (arg->reserved0 || !pciem_zeroed(arg->reserved, sizeof(arg->reserved)) ||
	    arg->bar_index >= PCIEM_NUM_BARS || arg->func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;

	mutex_lock(&dev->lock);
	fn = &dev->func[arg->func];
	if (!fn->present || !fn->bar[arg->bar_index].size) {
		ret = -ENODEV;
		goto out;
	}
	arg->size = fn->bar[arg->bar_index].size;
	arg->flags = fn->cfg.bar_flags[arg->bar_index];
	arg->phys_addr = 0;
	if (dev->state == PCIEM_REGISTERED || dev->state == PCIEM_STARTED) {
		pdev = pci_get_slot(dev->bus, PCI_DEVFN(0, arg->func));
		if (pdev) {
			arg->phys_addr = pci_resource_start(pdev, arg->bar_index);
			pci_dev_put(pdev);
		}
	}
out:
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_set_eventfd(struct pciem_dev *dev, int fd)
{
	struct eventfd_ctx *ctx = NULL, *old;
	unsigned long flags;

	if (fd >= 0) {
		ctx = eventfd_ctx_fdget(fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	} else if (fd != -1) {
		return -EBADF;
	}
	spin_lock_irqsave(&dev->ring_lock, flags);
	old = dev->evfd;
	dev->evfd = ctx;
	spin_unlock_irqrestore(&dev->ring_lock, flags);
	if (old)
		eventfd_ctx_put(old);
	return 0;
}

static void pciem_eventfd_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/*
 * Appends one event to the ring and returns its seq, or PCIEM_NO_EVENT.
 * Runs in any context (the fault path included). When the ring is full:
 * in the default mode the event is dropped and counted, as in the original
 * ABI; in lossless mode this waits (IRQs off, bounded) for the card to make
 * room, and a card that does not is taken for dead. Waits are timed with
 * ktime_get_mono_fast_ns(): it reads the clocksource itself, so it runs on
 * while this CPU spins with IRQs off (local_clock() was seen not to, under
 * TCG on 6.1, stretching a 200 ms wait to 21 s).
 */
u64 pciem_dev_event(struct pciem_dev *dev, u32 type, u32 bar, u64 offset,
		    u32 size, u64 data)
{
	struct pciem_shared_ring *ring = dev->ring;
	struct pciem_event *ev;
	unsigned long flags;
	u64 seq = PCIEM_NO_EVENT, deadline;
	u32 tail, next;

	spin_lock_irqsave(&dev->ring_lock, flags);
	tail = dev->ring_tail;
	next = (tail + 1) % PCIEM_RING_SIZE;
	/* head is the card's to write: any value must be harmless. */
	if (next == (u32)READ_ONCE(ring->head) % PCIEM_RING_SIZE) {
		if (!READ_ONCE(dev->lossless)) {
			atomic64_inc(&dev->stats.ring_drops);
			goto out;
		}
		atomic64_inc(&dev->stats.ring_stalls);
		deadline = ktime_get_mono_fast_ns() + (u64)READ_ONCE(dev->ring_timeout_us) * NSEC_PER_USEC;
		while (next == (u32)READ_ONCE(ring->head) % PCIEM_RING_SIZE) {
			if (READ_ONCE(dev->gone) || ktime_get_mono_fast_ns() > deadline) {
				atomic64_inc(&dev->stats.ring_timeouts);
				WRITE_ONCE(dev->gone, true);
				pr_warn_ratelimited("event ring stuck for %u us: card taken for dead\n",
						    dev->ring_timeout_us);
				goto out;
			}
			cpu_relax();
		}
		/* Pairs with the card's release store of head: it is done with the slot. */
		smp_rmb();
	}
	seq = dev->seq++;
	ev = &ring->events[tail];
	ev->seq = seq;
	ev->type = type;
	ev->bar = bar;
	ev->offset = offset;
	ev->size = size;
	ev->reserved = 0;
	ev->data = data;
	ev->timestamp = ktime_get_ns();
	if (type == PCIEM_EVENT_MMIO_READ_SYNC)
		WRITE_ONCE(dev->sync_waiting, seq + 1);
	dev->ring_tail = next;
	/* The event is complete before the card can see the new tail. */
	smp_store_release(&ring->tail, next);
	if (dev->evfd)
		pciem_eventfd_signal(dev->evfd);
out:
	spin_unlock_irqrestore(&dev->ring_lock, flags);
	return seq;
}

/*
 * A driver read answered by the card: queue the request, then wait
 * (bounded, IRQs off: the fault path cannot sleep) for COMPLETE_READ.
 */
u64 pciem_dev_sync_read(struct pciem_dev *dev, u32 tag, u64 off, u32 size, u32 timeout_us)
{
	unsigned long flags, rflags;
	u64 seq, deadline, val = ~0ULL;
	bool answered;

	spin_lock_irqsave(&dev->sync_lock, flags);
	seq = pciem_dev_event(dev, PCIEM_EVENT_MMIO_READ_SYNC, tag, off, size, 0);
	if (seq == PCIEM_NO_EVENT) {
		atomic64_inc(&dev->stats.sync_read_timeouts);
		goto out;
	}
	deadline = ktime_get_mono_fast_ns() + (u64)timeout_us * NSEC_PER_USEC;
	/* Pairs with the release in pciem_dev_complete_read(): data before seq. */
	while (smp_load_acquire(&dev->sync_reply_seq) != seq + 1 &&
	       !READ_ONCE(dev->gone) && ktime_get_mono_fast_ns() < deadline)
		cpu_relax();

	spin_lock_irqsave(&dev->reply_lock, rflags);
	answered = dev->sync_reply_seq == seq + 1;
	if (answered)
		val = dev->sync_reply_data;
	dev->sync_waiting = 0;
	spin_unlock_irqrestore(&dev->reply_lock, rflags);

	if (answered)
		atomic64_inc(&dev->stats.sync_reads);
	else
		atomic64_inc(&dev->stats.sync_read_timeouts);
out:
	spin_unlock_irqrestore(&dev->sync_lock, flags);
	return val;
}

int pciem_dev_complete_read(struct pciem_dev *dev, const struct pciem_read_reply *arg)
{
	unsigned long flags;
	int ret = -ESTALE;	/* no read waits for this seq (any more) */

	if (arg->flags || !pciem_zeroed(arg->reserved, sizeof(arg->reserved)) ||
	    arg->seq == U64_MAX)
		return -EINVAL;
	spin_lock_irqsave(&dev->reply_lock, flags);
	if (READ_ONCE(dev->sync_waiting) == arg->seq + 1 &&
	    dev->sync_reply_seq != arg->seq + 1) {
		dev->sync_reply_data = arg->data;
		/* The waiter reads the data after it sees its seq. */
		smp_store_release(&dev->sync_reply_seq, arg->seq + 1);
		ret = 0;
	}
	spin_unlock_irqrestore(&dev->reply_lock, flags);
	return ret;
}

int pciem_dev_set_ring_mode(struct pciem_dev *dev, const struct pciem_ring_mode *arg)
{
	if ((arg->flags & ~(PCIEM_RING_FLAG_LOSSLESS | PCIEM_RING_FLAG_CONFIG_EVENTS)) || arg->reserved ||
	    !pciem_zeroed(arg->reserved2, sizeof(arg->reserved2)))
		return -EINVAL;
	mutex_lock(&dev->lock);
	WRITE_ONCE(dev->ring_timeout_us, arg->timeout_us ?: PCIEM_RING_DEFAULT_TIMEOUT_US);
	WRITE_ONCE(dev->lossless, !!(arg->flags & PCIEM_RING_FLAG_LOSSLESS));
	WRITE_ONCE(dev->config_events, !!(arg->flags & PCIEM_RING_FLAG_CONFIG_EVENTS));
	mutex_unlock(&dev->lock);
	return 0;
}

int pciem_dev_set_read_region(struct pciem_dev *dev, const struct pciem_read_region *arg)
{
	struct pciem_bar *bar;
	unsigned long flags;
	int ret = 0;

	if (arg->flags || !pciem_zeroed(arg->reserved, sizeof(arg->reserved)) ||
	    !pciem_zeroed(arg->reserved2, sizeof(arg->reserved2)) ||
	    arg->func >= PCIEM_MAX_FUNCTIONS || arg->bar >= PCIEM_NUM_BARS)
		return -EINVAL;

	mutex_lock(&dev->lock);
	bar = &dev->func[arg->func].bar[arg->bar];
	if (dev->state == PCIEM_REMOVED || !dev->func[arg->func].present || !bar->size) {
		ret = -ENODEV;
	} else if (arg->offset >= bar->size || arg->length > bar->size - arg->offset) {
		ret = -EINVAL;
	} else {
		spin_lock_irqsave(&dev->cfg_lock, flags);
		bar->sync_off = arg->offset;
		bar->sync_len = arg->length;
		bar->sync_timeout_us = arg->timeout_us ?: PCIEM_SYNC_READ_DEFAULT_TIMEOUT_US;
		spin_unlock_irqrestore(&dev->cfg_lock, flags);
	}
	mutex_unlock(&dev->lock);
	return ret;
}

void pciem_dev_get_stats(struct pciem_dev *dev, struct pciem_stats_query *st)
{
	st->mmio_reads = atomic64_read(&dev->stats.mmio_reads);
	st->mmio_writes = atomic64_read(&dev->stats.mmio_writes);
	st->unclaimed = atomic64_read(&dev->stats.unclaimed);
	st->after_removal = atomic64_read(&dev->stats.after_removal);
	st->ring_drops = atomic64_read(&dev->stats.ring_drops);
	st->ring_stalls = atomic64_read(&dev->stats.ring_stalls);
	st->ring_timeouts = atomic64_read(&dev->stats.ring_timeouts);
	st->sync_reads = atomic64_read(&dev->stats.sync_reads);
	st->sync_read_timeouts = atomic64_read(&dev->stats.sync_read_timeouts);
}

int pciem_dev_register(struct pciem_dev *dev)
{
	struct pciem_func *fn;
	int nfuncs = 0, f, b, ret;

	mutex_lock(&dev->lock);
	if (dev->state != PCIEM_DESCRIBING) {
		ret = -EBUSY;
		goto out;
	}
	if (!dev->func[0].present) {
		ret = -ENODEV;
		goto out;
	}
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		nfuncs += dev->func[f].present;

	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++) {
		fn = &dev->func[f];
		if (!fn->present)
			continue;
		ret = pciem_cfg_finalize(&fn->cfg, nfuncs > 1);
		if (ret)
			goto out;
		/* The PCI core leaves "classless" (pre-2.0) devices' BARs alone. */
		if (!(pciem_cfg_read(&fn->cfg, PCI_CLASS_REVISION, 4) >> 8))
			pr_warn("function %d has class 0: the PCI core will not assign its BARs\n", f);
		for (b = 0; b < PCIEM_NUM_BARS; b++) {
			if (!fn->bar[b].size || fn->bar[b].mem)
				continue;
			fn->bar[b].mem = vmalloc_user(fn->bar[b].size);
			if (!fn->bar[b].mem) {
				ret = -ENOMEM;
				goto out;
			}
		}
	}

	ret = pciem_bus_create(dev);
	if (!ret)
		dev->state = PCIEM_REGISTERED;
out:
	mutex_unlock(&dev->lock);
	return ret;
}

int pciem_dev_start(struct pciem_dev *dev)
{
	int ret;

	mutex_lock(&dev->lock);
	if (dev->state == PCIEM_STARTED)
		ret = -EALREADY;
	else if (dev->state != PCIEM_REGISTERED)
		ret = -EBUSY;
	else
		ret = pciem_bus_start(dev);
	if (!ret)
		dev->state = PCIEM_STARTED;
	mutex_unlock(&dev->lock);
	return ret;
}

/* The owner is gone: the device leaves the bus as in a surprise removal. */
void pciem_dev_remove(struct pciem_dev *dev)
{
	mutex_lock(&dev->lock);
	if (dev->state == PCIEM_REGISTERED || dev->state == PCIEM_STARTED)
		pciem_bus_destroy(dev);
	dev->state = PCIEM_REMOVED;
	mutex_unlock(&dev->lock);
}
