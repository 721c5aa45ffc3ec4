// SPDX-License-Identifier: GPL-2.0
/*
 * pciem's PCI side: each device gets a host bridge in a PCI domain of its
 * own (from 0x10000 up, beyond what firmware assigns), whose config space
 * is pciem_config.c's emulation and whose memory window is a stretch of
 * physical address space that nothing decodes. Every access a driver makes
 * through a mapping of that window traps (pciem_trace.c) and lands here,
 * where it is routed the way a real device decodes it: through the BAR
 * registers as the host programmed them, only while memory decoding is on.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/idr.h>
#include <linux/ioport.h>
#include <linux/log2.h>
#include <linux/pci.h>

#include "pciem.h"

static DEFINE_IDA(pciem_domain_ida);

static struct pciem_dev *pciem_bus_dev(struct pci_bus *bus)
{
	return container_of(bus->sysdata, struct pciem_dev, sysdata);
}

static struct pciem_func *pciem_bus_func(struct pciem_dev *dev, unsigned int devfn)
{
	if (PCI_SLOT(devfn) != 0 || !dev->func[PCI_FUNC(devfn)].present)
		return NULL;
	return &dev->func[PCI_FUNC(devfn)];
}

static int pciem_pci_read(struct pci_bus *bus, unsigned int devfn, int where,
			  int size, u32 *val)
{
	struct pciem_dev *dev = pciem_bus_dev(bus);
	struct pciem_func *fn = pciem_bus_func(dev, devfn);
	unsigned long flags;

	if (!fn || READ_ONCE(dev->gone)) {
		PCI_SET_ERROR_RESPONSE(val);
		return PCIBIOS_DEVICE_NOT_FOUND;
	}
	if (!pciem_cfg_access_ok(where, size)) {
		PCI_SET_ERROR_RESPONSE(val);
		return PCIBIOS_BAD_REGISTER_NUMBER;
	}
	spin_lock_irqsave(&dev->cfg_lock, flags);
	*val = pciem_cfg_read(&fn->cfg, where, size);
	spin_unlock_irqrestore(&dev->cfg_lock, flags);
	return PCIBIOS_SUCCESSFUL;
}

/* The D state a function is in (0 without a PM capability). */
static u32 pciem_bus_power_state(const struct pciem_cfg *cfg)
{
	if (!cfg->pm_cap)
		return 0;
	return pciem_cfg_read(cfg, cfg->pm_cap + PCI_PM_CTRL, 2) & PCI_PM_CTRL_STATE_MASK;
}

static int pciem_pci_write(struct pci_bus *bus, unsigned int devfn, int where,
			   int size, u32 val)
{
	struct pciem_dev *dev = pciem_bus_dev(bus);
	struct pciem_func *fn = pciem_bus_func(dev, devfn);
	u32 func = PCI_FUNC(devfn), d_old, d_new;
	unsigned long flags;
	bool flr;

	if (!fn || READ_ONCE(dev->gone))
		return PCIBIOS_DEVICE_NOT_FOUND;
	if (!pciem_cfg_access_ok(where, size))
		return PCIBIOS_BAD_REGISTER_NUMBER;
	spin_lock_irqsave(&dev->cfg_lock, flags);
	d_old = pciem_bus_power_state(&fn->cfg);
	flr = pciem_cfg_write_is_flr(&fn->cfg, where, size, val);
	pciem_cfg_write(&fn->cfg, where, size, val);
	if (flr)
		pciem_cfg_reset(&fn->cfg);
	d_new = pciem_bus_power_state(&fn->cfg);
	spin_unlock_irqrestore(&dev->cfg_lock, flags);

	pciem_irq_config_written(dev, func, where, size);
	if (READ_ONCE(dev->config_events)) {
		pciem_dev_event(dev, PCIEM_EVENT_CONFIG_WRITE, func, where, size, val);
		if (flr)
			pciem_dev_event(dev, PCIEM_EVENT_RESET, func, 0, 0, PCIEM_RESET_FLR);
		if (d_new != d_old)
			pciem_dev_event(dev, PCIEM_EVENT_POWER, func, 0, 0, d_new);
	}
	return PCIBIOS_SUCCESSFUL;
}

static struct pci_ops pciem_pci_ops = {
	.read = pciem_pci_read,
	.write = pciem_pci_write,
};

/*
 * Finds the BAR an access at physical address @phys falls in. Returns the
 * BAR and its offset, with the event tag (func << 8 | bar; plain bar for
 * function 0, as the original ABI has it), or NULL.
 */
static struct pciem_bar *pciem_bus_route(struct pciem_dev *dev, u64 phys,
					 unsigned int size, u64 *off, u32 *tag,
					 u32 *sync_timeout_us)
{
	struct pciem_bar *hit = NULL;
	unsigned long flags;
	int f, b;

	spin_lock_irqsave(&dev->cfg_lock, flags);
	for (f = 0; f < PCIEM_MAX_FUNCTIONS && !hit; f++) {
		struct pciem_func *fn = &dev->func[f];

		if (!fn->present || !pciem_cfg_mem_enabled(&fn->cfg))
			continue;
		for (b = 0; b < PCIEM_NUM_BARS; b++) {
			u64 base, bsize = fn->bar[b].size;

			if (!bsize)
				continue;
			base = pciem_cfg_bar_addr(&fn->cfg, b);
			if (!base || phys < base || phys + size > base + bsize)
				continue;
			hit = &fn->bar[b];
			*off = phys - base;
			*tag = f << 8 | b;
			*sync_timeout_us = 0;
			if (hit->sync_len && *off >= hit->sync_off &&
			    *off + size <= hit->sync_off + hit->sync_len)
				*sync_timeout_us = hit->sync_timeout_us;
			break;
		}
	}
	spin_unlock_irqrestore(&dev->cfg_lock, flags);
	return hit;
}

static u64 pciem_bus_mmio_read(void *priv, u64 woff, unsigned int size)
{
	struct pciem_window *win = priv;
	struct pciem_dev *dev = win->dev;
	struct pciem_bar *bar;
	void *p;
	u64 off, val;
	u32 tag, sync_us;

	if (READ_ONCE(dev->gone)) {
		atomic64_inc(&dev->stats.after_removal);
		return ~0ULL;
	}
	bar = pciem_bus_route(dev, win->res.start + woff, size, &off, &tag, &sync_us);
	if (!bar) {
		/* Nothing claims it: a master abort reads all-ones. */
		atomic64_inc(&dev->stats.unclaimed);
		return ~0ULL;
	}
	if (sync_us)
		return pciem_dev_sync_read(dev, tag, off, size, sync_us);
	p = bar->mem + off;
	switch (size) {
	case 1:
		val = READ_ONCE(*(u8 *)p);
		break;
	case 2:
		val = READ_ONCE(*(u16 *)p);
		break;
	case 4:
		val = READ_ONCE(*(u32 *)p);
		break;
	default:
		val = READ_ONCE(*(u64 *)p);
		break;
	}
	atomic64_inc(&dev->stats.mmio_reads);
	if (READ_ONCE(bar->trace) & PCIEM_TRACE_READS)
		pciem_dev_event(dev, PCIEM_EVENT_MMIO_READ, tag, off, size, val);
	return val;
}

/* A write of @size bytes at physical address @phys reaches the device. */
static void pciem_bus_write(struct pciem_dev *dev, u64 phys, unsigned int size, u64 val)
{
	struct pciem_bar *bar;
	u32 tag, trace, sync_us;
	void *p;
	u64 off;

	if (READ_ONCE(dev->gone)) {
		atomic64_inc(&dev->stats.after_removal);
		return;
	}
	bar = pciem_bus_route(dev, phys, size, &off, &tag, &sync_us);
	if (!bar) {
		atomic64_inc(&dev->stats.unclaimed);
		return;
	}
	trace = READ_ONCE(bar->trace);
	if (!(trace & PCIEM_TRACE_STOP_WRITES)) {
		p = bar->mem + off;
		switch (size) {
		case 1:
			WRITE_ONCE(*(u8 *)p, val);
			break;
		case 2:
			WRITE_ONCE(*(u16 *)p, val);
			break;
		case 4:
			WRITE_ONCE(*(u32 *)p, val);
			break;
		default:
			WRITE_ONCE(*(u64 *)p, val);
			break;
		}
	}
	atomic64_inc(&dev->stats.mmio_writes);
	if (!(trace & PCIEM_TRACE_STOP_WRITES))
		pciem_irq_bar_written(dev, tag >> 8, tag & 0xff, off, size);
	if (trace & PCIEM_TRACE_WRITES)
		pciem_dev_event(dev, PCIEM_EVENT_MMIO_WRITE, tag, off, size, val);
}

static void pciem_bus_mmio_write(void *priv, u64 woff, unsigned int size, u64 val)
{
	struct pciem_window *win = priv;

	pciem_bus_write(win->dev, win->res.start + woff, size, val);
}

/*
 * A peer's DMA write into this device's BARs (P2P): the bytes arrive as
 * the naturally aligned writes of at most 8 bytes that a CPU's stores
 * would make, in ascending address order, each handled as a trapped
 * driver write: BAR memory, MSI-X table effects, statistics and, when the
 * BAR traces writes, one event each. Any context that may spin with IRQs
 * off (a full lossless ring waits, bounded).
 */
void pciem_bus_p2p_write(struct pciem_dev *dev, u64 phys, const void *buf, size_t len)
{
	const u8 *p = buf;
	unsigned int size;
	u64 val;

	while (len) {
		for (size = 8; size > len || !IS_ALIGNED(phys, size); size >>= 1)
			;
		val = 0;
		memcpy(&val, p, size);	/* x86: little endian, as the bus */
		pciem_bus_write(dev, phys, size, val);
		phys += size;
		p += size;
		len -= size;
	}
}

static const struct pciem_trace_ops pciem_bus_trace_ops = {
	.read = pciem_bus_mmio_read,
	.write = pciem_bus_mmio_write,
};

/* Bytes of address space the device's 64-bit (or 32-bit) BARs need. */
static u64 pciem_bus_bars_size(struct pciem_dev *dev, bool bits64)
{
	u64 need = 0, size;
	int f, b;

	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++) {
		for (b = 0; b < PCIEM_NUM_BARS; b++) {
			size = dev->func[f].bar[b].size;
			if (!size || bits64 != ((dev->func[f].cfg.bar_flags[b] &
						 PCI_BASE_ADDRESS_MEM_TYPE_MASK) ==
						PCI_BASE_ADDRESS_MEM_TYPE_64))
				continue;
			need = ALIGN(need, size) + size;
		}
	}
	return need ? roundup_pow_of_two(need) : 0;
}

/*
 * x86 never lets a BAR sit below 1 MiB (ISA space), and the PCI core lets a
 * window's own start override the minimum we ask for: align past it here.
 */
static resource_size_t pciem_bus_align_above_1m(void *data, const struct resource *res,
						resource_size_t size, resource_size_t align)
{
	return ALIGN(max_t(resource_size_t, res->start, SZ_1M), align);
}

/*
 * Claims the address windows, naturally aligned powers of two. The 64-bit
 * one sits in the upper half of what the CPU addresses, above any RAM or
 * device a machine of this size has there; the 32-bit one comes from the
 * root bus's own window below 4 GiB, the only place 32-bit BARs can live.
 * Since no page-table entry ever points into either, borrowing the root
 * bus's space cannot reach its devices.
 */
static int pciem_bus_alloc_windows(struct pciem_dev *dev)
{
	u64 size64 = pciem_bus_bars_size(dev, true);
	u64 size32 = pciem_bus_bars_size(dev, false);
	struct pci_bus *root;
	int ret;

	if (size64) {
		struct resource *res = &dev->win[0].res;
		u64 hi = (1ULL << boot_cpu_data.x86_phys_bits) - 1;
		u64 lo = 1ULL << (boot_cpu_data.x86_phys_bits - 1);

		res->name = "pciem";
		res->flags = IORESOURCE_MEM | IORESOURCE_MEM_64;
		size64 = max_t(u64, size64, SZ_1M);
		ret = allocate_resource(&iomem_resource, res, size64, lo, hi, size64, NULL, NULL);
		if (ret)
			return ret;
	}
	if (size32) {
		struct resource *res = &dev->win[1].res;

		root = pci_find_bus(0, 0);
		if (!root)
			return -ENOSPC;
		res->name = "pciem";
		res->flags = IORESOURCE_MEM;
		ret = pci_bus_alloc_resource(root, res, size32, size32, 0, IORESOURCE_MEM,
					     pciem_bus_align_above_1m, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

static int pciem_bus_trap_windows(struct pciem_dev *dev)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(dev->win); i++) {
		struct pciem_window *win = &dev->win[i];

		win->dev = dev;
		if (!win->res.parent)
			continue;
		win->trace = pciem_trace_add(win->res.start, resource_size(&win->res),
					     &pciem_bus_trace_ops, win);
		if (IS_ERR(win->trace)) {
			int ret = PTR_ERR(win->trace);

			win->trace = NULL;
			return ret;
		}
	}
	return 0;
}

/* Undoes pciem_bus_trap_windows() and pciem_bus_alloc_windows(). */
static void pciem_bus_free_windows(struct pciem_dev *dev)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(dev->win); i++) {
		struct pciem_window *win = &dev->win[i];

		if (win->trace)
			pciem_trace_remove(win->trace);
		win->trace = NULL;
		if (win->res.parent)
			release_resource(&win->res);
	}
}

int pciem_bus_create(struct pciem_dev *dev)
{
	struct pci_host_bridge *bridge;
	int i, ret;

	lockdep_assert_held(&dev->lock);

	ret = pciem_bus_alloc_windows(dev);
	if (ret) {
		pr_err("no physical address space for the BARs: %d\n", ret);
		goto err_windows;
	}
	ret = pciem_bus_trap_windows(dev);
	if (ret)
		goto err_windows;

	ret = ida_alloc_range(&pciem_domain_ida, PCIEM_DOMAIN_FIRST,
			      PCIEM_DOMAIN_LAST, GFP_KERNEL);
	if (ret < 0)
		goto err_windows;
	dev->domain = ret;
	dev->sysdata.domain = dev->domain;
	dev->sysdata.node = NUMA_NO_NODE;

	bridge = pci_alloc_host_bridge(0);
	if (!bridge) {
		ret = -ENOMEM;
		goto err_domain;
	}
	dev->busn.name = "pciem bus";
	dev->busn.start = 0;
	dev->busn.end = 0;
	dev->busn.flags = IORESOURCE_BUS;
	for (i = 0; i < ARRAY_SIZE(dev->win); i++)
		if (dev->win[i].res.parent)
			pci_add_resource(&bridge->windows, &dev->win[i].res);
	pci_add_resource(&bridge->windows, &dev->busn);
	bridge->sysdata = &dev->sysdata;
	bridge->busnr = 0;
	bridge->ops = &pciem_pci_ops;
	ret = pciem_irq_bus_init(dev, bridge);
	if (ret) {
		pci_free_host_bridge(bridge);
		goto err_domain;
	}

	pci_lock_rescan_remove();
	ret = pci_scan_root_bus_bridge(bridge);
	if (!ret) {
		dev->bus = bridge->bus;
		pci_bus_assign_resources(dev->bus);
	}
	pci_unlock_rescan_remove();
	if (ret) {
		pr_err("scanning domain %04x failed: %d\n", dev->domain, ret);
		pci_free_host_bridge(bridge);
		goto err_irq;
	}
	dev->bridge = bridge;
	ret = pciem_dma_bus_init(dev);
	if (ret)
		goto err_bus;
	pr_info("device registered in domain %04x\n", dev->domain);
	return 0;

err_bus:
	pci_lock_rescan_remove();
	pci_stop_root_bus(dev->bus);
	pci_remove_root_bus(dev->bus);
	pci_unlock_rescan_remove();
	pci_free_host_bridge(dev->bridge);
	dev->bus = NULL;
	dev->bridge = NULL;
err_irq:
	pciem_irq_bus_exit(dev);
err_domain:
	ida_free(&pciem_domain_ida, dev->domain);
	dev->domain = -1;
err_windows:
	pciem_bus_free_windows(dev);
	return ret;
}

int pciem_bus_start(struct pciem_dev *dev)
{
	lockdep_assert_held(&dev->lock);
	pci_lock_rescan_remove();
	pci_bus_add_devices(dev->bus);
	pci_unlock_rescan_remove();
	return 0;
}

/*
 * Surprise removal: from here on config reads fail and BAR reads return
 * all-ones, while the drivers' remove callbacks run. Then the bridge, the
 * trap and the window go, in the reverse order of their creation.
 */
void pciem_bus_destroy(struct pciem_dev *dev)
{
	lockdep_assert_held(&dev->lock);

	WRITE_ONCE(dev->gone, true);
	pci_lock_rescan_remove();
	pci_stop_root_bus(dev->bus);
	pci_remove_root_bus(dev->bus);
	pci_unlock_rescan_remove();
	/* pci_remove_root_bus() only unregisters the bridge: drop our reference. */
	pci_free_host_bridge(dev->bridge);
	dev->bus = NULL;
	dev->bridge = NULL;
	pciem_dma_bus_exit(dev);
	pciem_irq_bus_exit(dev);

	pciem_bus_free_windows(dev);
	ida_free(&pciem_domain_ida, dev->domain);
	dev->domain = -1;
	pr_info("device removed\n");
}
