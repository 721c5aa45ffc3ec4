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

static int pciem_pci_write(struct pci_bus *bus, unsigned int devfn, int where,
			   int size, u32 val)
{
	struct pciem_dev *dev = pciem_bus_dev(bus);
	struct pciem_func *fn = pciem_bus_func(dev, devfn);
	unsigned long flags;

	if (!fn || READ_ONCE(dev->gone))
		return PCIBIOS_DEVICE_NOT_FOUND;
	if (!pciem_cfg_access_ok(where, size))
		return PCIBIOS_BAD_REGISTER_NUMBER;
	spin_lock_irqsave(&dev->cfg_lock, flags);
	pciem_cfg_write(&fn->cfg, where, size, val);
	spin_unlock_irqrestore(&dev->cfg_lock, flags);
	if (READ_ONCE(dev->config_events))
		pciem_dev_event(dev, PCIEM_EVENT_CONFIG_WRITE, PCI_FUNC(devfn),
				where, size, val);
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
	struct pciem_dev *dev = priv;
	struct pciem_bar *bar;
	void *p;
	u64 off, val;
	u32 tag, sync_us;

	if (READ_ONCE(dev->gone)) {
		atomic64_inc(&dev->stats.after_removal);
		return ~0ULL;
	}
	bar = pciem_bus_route(dev, dev->window.start + woff, size, &off, &tag, &sync_us);
	if (!bar) {
		/* Nothing claims it: a master abort reads all-ones. */
		atomic64_inc(&dev->stats.unclaimed);
		return ~0ULL;
	}
	if (sync_us)
		return pciem_dev_sync_read(dev, tag, off, size, sync_us);
	p = bar->mem + off;
	switch (size) {
	case 1: val = READ_ONCE(*(u8 *)p); break;
	case 2: val = READ_ONCE(*(u16 *)p); break;
	case 4: val = READ_ONCE(*(u32 *)p); break;
	default: val = READ_ONCE(*(u64 *)p); break;
	}
	atomic64_inc(&dev->stats.mmio_reads);
	if (READ_ONCE(bar->trace) & PCIEM_TRACE_READS)
		pciem_dev_event(dev, PCIEM_EVENT_MMIO_READ, tag, off, size, val);
	return val;
}

static void pciem_bus_mmio_write(void *priv, u64 woff, unsigned int size, u64 val)
{
	struct pciem_dev *dev = priv;
	struct pciem_bar *bar;
	u32 tag, trace, sync_us;
	void *p;
	u64 off;

	if (READ_ONCE(dev->gone)) {
		atomic64_inc(&dev->stats.after_removal);
		return;
	}
	bar = pciem_bus_route(dev, dev->window.start + woff, size, &off, &tag, &sync_us);
	if (!bar) {
		atomic64_inc(&dev->stats.unclaimed);
		return;
	}
	trace = READ_ONCE(bar->trace);
	if (!(trace & PCIEM_TRACE_STOP_WRITES)) {
		p = bar->mem + off;
		switch (size) {
		case 1: WRITE_ONCE(*(u8 *)p, val); break;
		case 2: WRITE_ONCE(*(u16 *)p, val); break;
		case 4: WRITE_ONCE(*(u32 *)p, val); break;
		default: WRITE_ONCE(*(u64 *)p, val); break;
		}
	}
	atomic64_inc(&dev->stats.mmio_writes);
	if (trace & PCIEM_TRACE_WRITES)
		pciem_dev_event(dev, PCIEM_EVENT_MMIO_WRITE, tag, off, size, val);
}

static const struct pciem_trace_ops pciem_bus_trace_ops = {
	.read = pciem_bus_mmio_read,
	.write = pciem_bus_mmio_write,
};

/*
 * Claims physical address space for the BARs: a naturally aligned,
 * power-of-two window in the upper half of what the CPU can address,
 * above any RAM or device a real machine of this size has there.
 */
static int pciem_bus_alloc_window(struct pciem_dev *dev)
{
	u64 need = 0, size, lo, hi;
	int f, b;

	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		for (b = 0; b < PCIEM_NUM_BARS; b++)
			if (dev->func[f].bar[b].size)
				need = ALIGN(need, dev->func[f].bar[b].size) +
				       dev->func[f].bar[b].size;
	size = roundup_pow_of_two(max_t(u64, need, SZ_1M));
	hi = (1ULL << boot_cpu_data.x86_phys_bits) - 1;
	lo = 1ULL << (boot_cpu_data.x86_phys_bits - 1);

	dev->window.name = "pciem";
	dev->window.flags = IORESOURCE_MEM;
	return allocate_resource(&iomem_resource, &dev->window, size, lo, hi,
				 size, NULL, NULL);
}

int pciem_bus_create(struct pciem_dev *dev)
{
	struct pci_host_bridge *bridge;
	int ret;

	lockdep_assert_held(&dev->lock);

	ret = pciem_bus_alloc_window(dev);
	if (ret) {
		pr_err("no physical address space for the BARs: %d\n", ret);
		return ret;
	}
	dev->trace = pciem_trace_add(dev->window.start, resource_size(&dev->window),
				     &pciem_bus_trace_ops, dev);
	if (IS_ERR(dev->trace)) {
		ret = PTR_ERR(dev->trace);
		dev->trace = NULL;
		goto err_window;
	}

	ret = ida_alloc_range(&pciem_domain_ida, PCIEM_DOMAIN_FIRST,
			      PCIEM_DOMAIN_LAST, GFP_KERNEL);
	if (ret < 0)
		goto err_trace;
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
	pci_add_resource(&bridge->windows, &dev->window);
	pci_add_resource(&bridge->windows, &dev->busn);
	bridge->sysdata = &dev->sysdata;
	bridge->busnr = 0;
	bridge->ops = &pciem_pci_ops;

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
		goto err_domain;
	}
	dev->bridge = bridge;
	pr_info("device registered in domain %04x, BAR window %pR\n",
		dev->domain, &dev->window);
	return 0;

err_domain:
	ida_free(&pciem_domain_ida, dev->domain);
	dev->domain = -1;
err_trace:
	pciem_trace_remove(dev->trace);
	dev->trace = NULL;
err_window:
	release_resource(&dev->window);
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

	pciem_trace_remove(dev->trace);
	dev->trace = NULL;
	ida_free(&pciem_domain_ida, dev->domain);
	dev->domain = -1;
	release_resource(&dev->window);
	pr_info("device removed\n");
}
