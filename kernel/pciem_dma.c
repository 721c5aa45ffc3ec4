// SPDX-License-Identifier: GPL-2.0
/*
 * pciem DMA on the card's behalf: host memory by IOVA (DMA, PRP walks,
 * scatter-gather lists), 8-byte atomics, and peer-to-peer to other pciem
 * devices' BARs or to physical ranges the administrator whitelists.
 *
 * Confinement (docs/uapi.md, "DMA"). Before any driver binds, each
 * function's struct device gets dma_map_ops of ours, wrapping the mapping
 * layer it had: dma-direct, reached through a shadow struct device that has
 * no ops (the direct mapping's functions are not exported), or the device's
 * own ops (Xen's). Every mapping the driver makes is recorded, in an
 * interval tree of IOVA ranges per function, before the driver sees its
 * address, and forgotten before it is torn down. The card reaches host
 * memory only through IOVAs the tree covers, and writes only where the
 * driver mapped for the device to write (not DMA_TO_DEVICE). IOVAs are
 * translated by the direct mapping (dma_to_phys).
 *
 * No IOMMU ever translates for a pciem device on x86: Intel's and AMD's
 * drivers (and virtio-iommu's VIOT) find a device's IOMMU by its PCI
 * segment in ACPI tables, which are 16-bit, and pciem's domains start at
 * 0x10000 (as VMD's do; VMD's children reach an IOMMU only because x86's
 * pci_real_dma_dev() sends them to the VMD endpoint named in the bus's
 * sysdata, which pciem leaves empty). The device gets no iommu group and
 * the DMA API goes through dma_map_ops - ours - even with an IOMMU on (a
 * VM test boots with intel_iommu=on to show it). Should a future kernel
 * attach one anyway, translation and the record would no longer be ours to
 * see (6.12's dma-iommu even bypasses dma_map_ops): the function's DMA is
 * then refused, and the kernel log says why.
 *
 * Locking and contexts. Drivers map and unmap in any context, interrupts
 * included, so each function's tree has a spinlock taken with IRQs off.
 * Bytes move in chunks of PCIEM_DMA_CHUNK under that lock, after the
 * chunk's coverage is checked under the same hold: an unmap waits for at
 * most one chunk, and no byte moves through a mapping once its unmap has
 * begun. Nothing under the lock may fault or sleep, so the card's buffer
 * (user memory) has its pages pinned for the chunk beforehand and is copied
 * straight to or from host memory; when they cannot be pinned, the chunk
 * goes through a kernel bounce buffer filled or drained outside the lock.
 * A transfer is checked in full (coverage, PRP and SGL entries) before its
 * first byte moves; only a race with the driver unmapping, a fault on the
 * card's buffer or a fatal signal can stop one half way (see the doc).
 *
 * P2P needs no lock of ours across the copy: a target device is held by
 * its reference (its BAR memory lives as long), a whitelisted range is
 * ioremapped for the copy. Writes into a pciem BAR go through the target's
 * bus, as writes its card sees (events, MSI-X table); reads take its BAR
 * memory as it stands.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/interval_tree.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/moduleparam.h>
#include <linux/overflow.h>
#include <linux/scatterlist.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>

#include "pciem.h"

/* Bytes moved per hold of a function's lock (IRQs off). */
#define PCIEM_DMA_CHUNK		SZ_16K
/* PRP list entries fetched per DMA read of a list. */
#define PCIEM_DMA_PRP_BATCH	512
/* SGL entries copied in from the card per batch. */
#define PCIEM_DMA_SGL_BATCH	256
/* P2P bytes per copy out of a pciem BAR. */
#define PCIEM_DMA_P2P_CHUNK	SZ_1M
#define PCIEM_P2P_MAX_RANGES	16

/* One mapping the driver made: IOVAs [it.start, it.last]. */
struct pciem_dma_map {
	struct interval_tree_node it;
	u8 kind;			/* PCIEM_DMA_MAP_* */
	u8 dir;				/* enum dma_data_direction */
	/* SG: the list the driver mapped (first segment only), the next segment. */
	const struct scatterlist *sgl;
	struct pciem_dma_map *next;
};

/* The dma-direct stand-in: a struct device without ops, never registered. */
struct pciem_dma_shadow {
	struct device dev;
	u64 mask;			/* dev.dma_mask points here */
};

struct pciem_dma;

struct pciem_dma_fn {
	struct dma_map_ops ops;		/* the device's dma_ops point here */
	struct pciem_dma *dma;
	struct pci_dev *pdev;		/* referenced from bus_init to bus_exit */
	/* What dev->dma_ops held before us, and the layer we forward to. */
	const struct dma_map_ops *saved;
	const struct dma_map_ops *orig;	/* NULL: dma-direct through shadow */
	struct pciem_dma_shadow *shadow;
	bool wrapped;			/* our ops are installed */

	spinlock_t lock;		/* maps, nmaps; held while bytes move */
	struct rb_root_cached maps;	/* of struct pciem_dma_map */
	u32 nmaps;
};

struct pciem_dma_counters {
	atomic64_t reads, writes, read_bytes, write_bytes, atomics;
	atomic64_t p2p, p2p_bytes;
	atomic64_t refused_unmapped, refused_master, refused_p2p, user_faults;
	atomic64_t maps, unmaps, map_failures;
};

struct pciem_dma {
	struct pciem_dev *dev;
	struct list_head node;		/* in pciem_dma_registry */
	bool removed;			/* bus_exit ran */
	struct pciem_dma_fn fn[PCIEM_MAX_FUNCTIONS];
	struct pciem_dma_counters stats;
};

/* Every registered device: the peers P2P may reach. */
static LIST_HEAD(pciem_dma_registry);
static DEFINE_MUTEX(pciem_dma_registry_lock);

/* Physical ranges P2P may reach besides pciem BARs (module parameter). */
struct pciem_p2p_range {
	u64 start;
	u64 size;
};

static struct pciem_p2p_range pciem_p2p_ranges[PCIEM_P2P_MAX_RANGES];
static unsigned int pciem_p2p_nranges;
static DEFINE_MUTEX(pciem_p2p_lock);	/* pciem_p2p_ranges, pciem_p2p_nranges */

/* ---- the record of mappings ---- */

static struct pciem_dma_fn *pciem_dma_fn_of(struct device *dev)
{
	return container_of(dev->dma_ops, struct pciem_dma_fn, ops);
}

static struct pciem_dma_map *pciem_dma_map_alloc(u8 kind, enum dma_data_direction dir)
{
	/* Mappings are made in any context. */
	struct pciem_dma_map *m = kzalloc(sizeof(*m), GFP_ATOMIC);

	if (m) {
		m->kind = kind;
		m->dir = dir;
	}
	return m;
}

static void pciem_dma_map_insert(struct pciem_dma_fn *fn, struct pciem_dma_map *m,
				 dma_addr_t iova, size_t size)
{
	lockdep_assert_held(&fn->lock);
	m->it.start = iova;
	m->it.last = iova + size - 1;
	interval_tree_insert(&m->it, &fn->maps);
	fn->nmaps++;
	atomic64_inc(&fn->dma->stats.maps);
}

static void pciem_dma_map_erase(struct pciem_dma_fn *fn, struct pciem_dma_map *m)
{
	lockdep_assert_held(&fn->lock);
	interval_tree_remove(&m->it, &fn->maps);
	fn->nmaps--;
	atomic64_inc(&fn->dma->stats.unmaps);
}

/* Records [iova, iova + size) with @m, which the caller allocated. */
static void pciem_dma_record(struct pciem_dma_fn *fn, struct pciem_dma_map *m,
			     dma_addr_t iova, size_t size)
{
	unsigned long flags;

	if (!size) {
		kfree(m);	/* nothing the card could reach */
		return;
	}
	spin_lock_irqsave(&fn->lock, flags);
	pciem_dma_map_insert(fn, m, iova, size);
	spin_unlock_irqrestore(&fn->lock, flags);
}

/*
 * Forgets the mapping the driver tears down: the one starting at @iova of
 * this kind (and list), preferring the size given. A size that differs
 * from the mapping's is a driver bug; the mapping goes all the same, as
 * an IOMMU would unmap it.
 */
static void pciem_dma_forget(struct pciem_dma_fn *fn, dma_addr_t iova, size_t size,
			     u8 kind, const struct scatterlist *sgl)
{
	struct pciem_dma_map *found = NULL, *m;
	struct interval_tree_node *it;
	unsigned long flags;

	spin_lock_irqsave(&fn->lock, flags);
	for (it = interval_tree_iter_first(&fn->maps, iova, iova); it;
	     it = interval_tree_iter_next(it, iova, iova)) {
		m = container_of(it, struct pciem_dma_map, it);
		if (it->start != iova || m->kind != kind || m->sgl != sgl)
			continue;
		if (!found)
			found = m;
		if (it->last - it->start + 1 == size) {
			found = m;
			break;
		}
	}
	/* An SG list goes as a whole: its first segment leads to the others. */
	for (m = found; m; m = m->next)
		pciem_dma_map_erase(fn, m);
	spin_unlock_irqrestore(&fn->lock, flags);
	while (found) {
		m = found->next;
		kfree(found);
		found = m;
	}
}

/* Drops every record (the device is gone); returns how many there were. */
static u32 pciem_dma_forget_all(struct pciem_dma_fn *fn)
{
	struct interval_tree_node *it;
	unsigned long flags;
	u32 n = 0;

	spin_lock_irqsave(&fn->lock, flags);
	while ((it = interval_tree_iter_first(&fn->maps, 0, ULONG_MAX))) {
		pciem_dma_map_erase(fn, container_of(it, struct pciem_dma_map, it));
		kfree(container_of(it, struct pciem_dma_map, it));
		n++;
	}
	spin_unlock_irqrestore(&fn->lock, flags);
	return n;
}

/*
 * The mapping through which the card may reach @iova, reaching furthest;
 * NULL if none. A device write needs a mapping the device may write.
 */
static struct pciem_dma_map *pciem_dma_find(struct pciem_dma_fn *fn, u64 iova, bool write)
{
	struct pciem_dma_map *best = NULL, *m;
	struct interval_tree_node *it;

	lockdep_assert_held(&fn->lock);
	for (it = interval_tree_iter_first(&fn->maps, iova, iova); it;
	     it = interval_tree_iter_next(it, iova, iova)) {
		m = container_of(it, struct pciem_dma_map, it);
		/* Peer MMIO a driver maps is reached with P2P, not here. */
		if (m->kind == PCIEM_DMA_MAP_RESOURCE)
			continue;
		if (write && m->dir == DMA_TO_DEVICE)
			continue;
		if (!best || it->last > best->it.last)
			best = m;
	}
	return best;
}

/* True if mappings cover every byte of [iova, iova + len), len > 0. */
static bool pciem_dma_covered(struct pciem_dma_fn *fn, u64 iova, u64 len, bool write)
{
	struct pciem_dma_map *m;
	u64 last;

	if (!len || check_add_overflow(iova, len - 1, &last))
		return false;
	for (;;) {
		m = pciem_dma_find(fn, iova, write);
		if (!m)
			return false;
		if (m->it.last >= last)
			return true;
		iova = m->it.last + 1;
	}
}

/*
 * The kernel address of the host memory the device reaches at @iova (valid
 * to the end of its page), or NULL when that is not RAM. Undo with
 * kunmap_local().
 */
static void *pciem_dma_kaddr(struct pciem_dma_fn *fn, u64 iova)
{
	phys_addr_t phys = dma_to_phys(&fn->pdev->dev, iova);

	if (!pfn_valid(PHYS_PFN(phys)))
		return NULL;
	return kmap_local_page(pfn_to_page(PHYS_PFN(phys))) + offset_in_page(phys);
}

/*
 * Moves @len bytes between host memory at @iova and @buf, which the caller
 * checked is covered (pciem_dma_covered()) in this same hold of the lock.
 * Without DMA offsets (x86 has none) IOVAs are physical
 * addresses, and the kernel's direct map of them is contiguous (no highmem
 * on 64-bit): one memcpy per run, even across adjacent mappings.
 */
static int pciem_dma_move(struct pciem_dma_fn *fn, u64 iova,
			  void *buf, size_t len, bool write)
{
	phys_addr_t phys;
	unsigned long pfn;
	size_t n;
	void *p;

	lockdep_assert_held(&fn->lock);
	if (!fn->pdev->dev.dma_range_map && !IS_ENABLED(CONFIG_HIGHMEM)) {
		phys = dma_to_phys(&fn->pdev->dev, iova);
		for (pfn = PHYS_PFN(phys); pfn <= PHYS_PFN(phys + len - 1); pfn++)
			if (!pfn_valid(pfn))
				return -EFAULT;
		p = phys_to_virt(phys);
		if (write)
			memcpy(p, buf, len);
		else
			memcpy(buf, p, len);
		return 0;
	}
	while (len) {
		n = min_t(size_t, len, PAGE_SIZE - offset_in_page(iova));
		p = pciem_dma_kaddr(fn, iova);
		if (!p)
			return -EFAULT;
		if (write)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		kunmap_local(p);
		iova += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* ---- the layer beneath our dma_map_ops ---- */

/* The shadow device, with the real device's current DMA limits. */
static struct device *pciem_dma_shadow(struct pciem_dma_fn *fn, struct device *dev)
{
	struct device *s = &fn->shadow->dev;

	WRITE_ONCE(fn->shadow->mask, *dev->dma_mask);
	WRITE_ONCE(s->coherent_dma_mask, dev->coherent_dma_mask);
	WRITE_ONCE(s->bus_dma_limit, dev->bus_dma_limit);
	return s;
}

static void *pciem_dma_op_alloc(struct device *dev, size_t size, dma_addr_t *handle,
				gfp_t gfp, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct pciem_dma_map *m;
	void *cpu;

	m = pciem_dma_map_alloc(PCIEM_DMA_MAP_COHERENT, DMA_BIDIRECTIONAL);
	if (!m) {
		atomic64_inc(&fn->dma->stats.map_failures);
		return NULL;
	}
	if (fn->orig)
		cpu = fn->orig->alloc(dev, size, handle, gfp, attrs);
	else
		cpu = dma_alloc_attrs(pciem_dma_shadow(fn, dev), size, handle, gfp, attrs);
	if (!cpu) {
		kfree(m);
		return NULL;
	}
	pciem_dma_record(fn, m, *handle, size);
	return cpu;
}

static void pciem_dma_op_free(struct device *dev, size_t size, void *cpu, dma_addr_t handle,
			      unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	pciem_dma_forget(fn, handle, size, PCIEM_DMA_MAP_COHERENT, NULL);
	if (fn->orig)
		fn->orig->free(dev, size, cpu, handle, attrs);
	else
		dma_free_attrs(pciem_dma_shadow(fn, dev), size, cpu, handle, attrs);
}

static struct page *pciem_dma_op_alloc_pages(struct device *dev, size_t size, dma_addr_t *handle,
					     enum dma_data_direction dir, gfp_t gfp)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct pciem_dma_map *m;
	struct page *page;

	m = pciem_dma_map_alloc(PCIEM_DMA_MAP_PAGES, dir);
	if (!m) {
		atomic64_inc(&fn->dma->stats.map_failures);
		return NULL;
	}
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
	if (fn->orig)
		page = fn->orig->alloc_pages_op ?
		       fn->orig->alloc_pages_op(dev, size, handle, dir, gfp) : NULL;
#else
	if (fn->orig)
		page = fn->orig->alloc_pages ?
		       fn->orig->alloc_pages(dev, size, handle, dir, gfp) : NULL;
#endif
	else
		page = dma_alloc_pages(pciem_dma_shadow(fn, dev), size, handle, dir, gfp);
	if (!page) {
		kfree(m);
		return NULL;
	}
	pciem_dma_record(fn, m, *handle, size);
	return page;
}

static void pciem_dma_op_free_pages(struct device *dev, size_t size, struct page *page,
				    dma_addr_t handle, enum dma_data_direction dir)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	pciem_dma_forget(fn, handle, size, PCIEM_DMA_MAP_PAGES, NULL);
	if (fn->orig) {
		if (fn->orig->free_pages)
			fn->orig->free_pages(dev, size, page, handle, dir);
	} else {
		dma_free_pages(pciem_dma_shadow(fn, dev), size, page, handle, dir);
	}
}

static int pciem_dma_op_mmap(struct device *dev, struct vm_area_struct *vma, void *cpu,
			     dma_addr_t handle, size_t size, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig)
		return fn->orig->mmap ? fn->orig->mmap(dev, vma, cpu, handle, size, attrs) : -ENXIO;
	return dma_mmap_attrs(pciem_dma_shadow(fn, dev), vma, cpu, handle, size, attrs);
}

static int pciem_dma_op_get_sgtable(struct device *dev, struct sg_table *sgt, void *cpu,
				    dma_addr_t handle, size_t size, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig)
		return fn->orig->get_sgtable ?
		       fn->orig->get_sgtable(dev, sgt, cpu, handle, size, attrs) : -ENXIO;
	return dma_get_sgtable_attrs(pciem_dma_shadow(fn, dev), sgt, cpu, handle, size, attrs);
}

static void pciem_dma_lower_unmap_page(struct pciem_dma_fn *fn, struct device *dev,
				       dma_addr_t addr, size_t size,
				       enum dma_data_direction dir, unsigned long attrs)
{
	if (fn->orig)
		fn->orig->unmap_page(dev, addr, size, dir, attrs);
	else
		dma_unmap_page_attrs(pciem_dma_shadow(fn, dev), addr, size, dir, attrs);
}

static dma_addr_t pciem_dma_op_map_page(struct device *dev, struct page *page,
					unsigned long offset, size_t size,
					enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct pciem_dma_map *m;
	dma_addr_t addr;

	/* No record, no mapping: the card must never reach what we cannot see. */
	m = pciem_dma_map_alloc(PCIEM_DMA_MAP_SINGLE, dir);
	if (!m) {
		atomic64_inc(&fn->dma->stats.map_failures);
		return DMA_MAPPING_ERROR;
	}
	if (fn->orig)
		addr = fn->orig->map_page(dev, page, offset, size, dir, attrs);
	else
		addr = dma_map_page_attrs(pciem_dma_shadow(fn, dev), page, offset, size, dir, attrs);
	if (addr == DMA_MAPPING_ERROR) {
		kfree(m);
		return addr;
	}
	pciem_dma_record(fn, m, addr, size);
	return addr;
}

static void pciem_dma_op_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
				    enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	pciem_dma_forget(fn, addr, size, PCIEM_DMA_MAP_SINGLE, NULL);
	pciem_dma_lower_unmap_page(fn, dev, addr, size, dir, attrs);
}

static void pciem_dma_lower_unmap_sg(struct pciem_dma_fn *fn, struct device *dev,
				     struct scatterlist *sgl, int nents,
				     enum dma_data_direction dir, unsigned long attrs)
{
	if (fn->orig)
		fn->orig->unmap_sg(dev, sgl, nents, dir, attrs);
	else
		dma_unmap_sg_attrs(pciem_dma_shadow(fn, dev), sgl, nents, dir, attrs);
}

/* The first DMA segment of a mapped list: where its records start. */
static struct scatterlist *pciem_dma_sg_first(struct scatterlist *sgl, int nents)
{
	struct scatterlist *s;
	int i;

	for_each_sg(sgl, s, nents, i)
		if (sg_dma_len(s))
			return s;
	return NULL;
}

static int pciem_dma_op_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
			       enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct pciem_dma_map *head = NULL, **tail = &head, *m;
	struct scatterlist *s;
	unsigned long flags;
	int ents, i, ret;

	if (fn->orig) {
		ents = fn->orig->map_sg(dev, sgl, nents, dir, attrs);
	} else {
		/* dma_map_sgtable() keeps the reason of a failure; dma_map_sg() does not. */
		struct sg_table sgt = { .sgl = sgl, .orig_nents = nents };

		ret = dma_map_sgtable(pciem_dma_shadow(fn, dev), &sgt, dir, attrs);
		ents = ret ? ret : sgt.nents;
	}
	if (ents <= 0)
		return ents;

	for_each_sg(sgl, s, ents, i) {
		if (!sg_dma_len(s))
			continue;
		m = pciem_dma_map_alloc(PCIEM_DMA_MAP_SG, dir);
		if (!m)
			goto err_records;
		m->sgl = head ? NULL : sgl;
		m->it.start = sg_dma_address(s);
		m->it.last = sg_dma_address(s) + sg_dma_len(s) - 1;
		*tail = m;
		tail = &m->next;
	}
	spin_lock_irqsave(&fn->lock, flags);
	for (m = head; m; m = m->next)
		pciem_dma_map_insert(fn, m, m->it.start, m->it.last - m->it.start + 1);
	spin_unlock_irqrestore(&fn->lock, flags);
	return ents;

err_records:
	atomic64_inc(&fn->dma->stats.map_failures);
	while (head) {
		m = head->next;
		kfree(head);
		head = m;
	}
	pciem_dma_lower_unmap_sg(fn, dev, sgl, nents, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
	return -ENOMEM;
}

static void pciem_dma_op_unmap_sg(struct device *dev, struct scatterlist *sgl, int nents,
				  enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct scatterlist *first = pciem_dma_sg_first(sgl, nents);

	if (first)
		pciem_dma_forget(fn, sg_dma_address(first), sg_dma_len(first),
				 PCIEM_DMA_MAP_SG, sgl);
	pciem_dma_lower_unmap_sg(fn, dev, sgl, nents, dir, attrs);
}

static dma_addr_t pciem_dma_op_map_resource(struct device *dev, phys_addr_t phys, size_t size,
					    enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);
	struct pciem_dma_map *m;
	dma_addr_t addr;

	m = pciem_dma_map_alloc(PCIEM_DMA_MAP_RESOURCE, dir);
	if (!m) {
		atomic64_inc(&fn->dma->stats.map_failures);
		return DMA_MAPPING_ERROR;
	}
	if (fn->orig)
		addr = fn->orig->map_resource ?
		       fn->orig->map_resource(dev, phys, size, dir, attrs) : DMA_MAPPING_ERROR;
	else
		addr = dma_map_resource(pciem_dma_shadow(fn, dev), phys, size, dir, attrs);
	if (addr == DMA_MAPPING_ERROR) {
		kfree(m);
		return addr;
	}
	pciem_dma_record(fn, m, addr, size);
	return addr;
}

static void pciem_dma_op_unmap_resource(struct device *dev, dma_addr_t addr, size_t size,
					enum dma_data_direction dir, unsigned long attrs)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	pciem_dma_forget(fn, addr, size, PCIEM_DMA_MAP_RESOURCE, NULL);
	if (fn->orig) {
		if (fn->orig->unmap_resource)
			fn->orig->unmap_resource(dev, addr, size, dir, attrs);
	} else {
		dma_unmap_resource(pciem_dma_shadow(fn, dev), addr, size, dir, attrs);
	}
}

static void pciem_dma_op_sync_single_for_cpu(struct device *dev, dma_addr_t addr, size_t size,
					     enum dma_data_direction dir)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig) {
		if (fn->orig->sync_single_for_cpu)
			fn->orig->sync_single_for_cpu(dev, addr, size, dir);
	} else {
		dma_sync_single_for_cpu(pciem_dma_shadow(fn, dev), addr, size, dir);
	}
}

static void pciem_dma_op_sync_single_for_device(struct device *dev, dma_addr_t addr,
						size_t size, enum dma_data_direction dir)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig) {
		if (fn->orig->sync_single_for_device)
			fn->orig->sync_single_for_device(dev, addr, size, dir);
	} else {
		dma_sync_single_for_device(pciem_dma_shadow(fn, dev), addr, size, dir);
	}
}

static void pciem_dma_op_sync_sg_for_cpu(struct device *dev, struct scatterlist *sgl, int nents,
					 enum dma_data_direction dir)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig) {
		if (fn->orig->sync_sg_for_cpu)
			fn->orig->sync_sg_for_cpu(dev, sgl, nents, dir);
	} else {
		dma_sync_sg_for_cpu(pciem_dma_shadow(fn, dev), sgl, nents, dir);
	}
}

static void pciem_dma_op_sync_sg_for_device(struct device *dev, struct scatterlist *sgl,
					    int nents, enum dma_data_direction dir)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig) {
		if (fn->orig->sync_sg_for_device)
			fn->orig->sync_sg_for_device(dev, sgl, nents, dir);
	} else {
		dma_sync_sg_for_device(pciem_dma_shadow(fn, dev), sgl, nents, dir);
	}
}

static int pciem_dma_op_supported(struct device *dev, u64 mask)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig)
		return fn->orig->dma_supported ? fn->orig->dma_supported(dev, mask) : 1;
	/* Asks dma-direct; the shadow's masks are reloaded before each use. */
	return !dma_set_coherent_mask(pciem_dma_shadow(fn, dev), mask);
}

static u64 pciem_dma_op_get_required_mask(struct device *dev)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig)
		return fn->orig->get_required_mask ?
		       fn->orig->get_required_mask(dev) : DMA_BIT_MASK(32);
	return dma_get_required_mask(pciem_dma_shadow(fn, dev));
}

static size_t pciem_dma_op_max_mapping_size(struct device *dev)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	if (fn->orig)
		return fn->orig->max_mapping_size ? fn->orig->max_mapping_size(dev) : SIZE_MAX;
	return dma_max_mapping_size(pciem_dma_shadow(fn, dev));
}

static unsigned long pciem_dma_op_get_merge_boundary(struct device *dev)
{
	struct pciem_dma_fn *fn = pciem_dma_fn_of(dev);

	return fn->orig && fn->orig->get_merge_boundary ? fn->orig->get_merge_boundary(dev) : 0;
}

static const struct dma_map_ops pciem_dma_ops = {
	.alloc = pciem_dma_op_alloc,
	.free = pciem_dma_op_free,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
	.alloc_pages_op = pciem_dma_op_alloc_pages,
#else
	.alloc_pages = pciem_dma_op_alloc_pages,
#endif
	.free_pages = pciem_dma_op_free_pages,
	.mmap = pciem_dma_op_mmap,
	.get_sgtable = pciem_dma_op_get_sgtable,
	.map_page = pciem_dma_op_map_page,
	.unmap_page = pciem_dma_op_unmap_page,
	.map_sg = pciem_dma_op_map_sg,
	.unmap_sg = pciem_dma_op_unmap_sg,
	.map_resource = pciem_dma_op_map_resource,
	.unmap_resource = pciem_dma_op_unmap_resource,
	.sync_single_for_cpu = pciem_dma_op_sync_single_for_cpu,
	.sync_single_for_device = pciem_dma_op_sync_single_for_device,
	.sync_sg_for_cpu = pciem_dma_op_sync_sg_for_cpu,
	.sync_sg_for_device = pciem_dma_op_sync_sg_for_device,
	.dma_supported = pciem_dma_op_supported,
	.get_required_mask = pciem_dma_op_get_required_mask,
	.max_mapping_size = pciem_dma_op_max_mapping_size,
	.get_merge_boundary = pciem_dma_op_get_merge_boundary,
};

/* ---- setup and teardown ---- */

static void pciem_dma_shadow_release(struct device *dev)
{
	kfree(container_of(dev, struct pciem_dma_shadow, dev));
}

static struct pciem_dma_shadow *pciem_dma_shadow_create(struct pci_dev *pdev)
{
	struct pciem_dma_shadow *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return NULL;
	/* Initialised (swiotlb pool, DMA defaults) but never added anywhere. */
	device_initialize(&s->dev);
	s->dev.release = pciem_dma_shadow_release;
	s->dev.dma_mask = &s->mask;
	s->mask = *pdev->dev.dma_mask;
	s->dev.coherent_dma_mask = pdev->dev.coherent_dma_mask;
	set_dev_node(&s->dev, dev_to_node(&pdev->dev));
	if (dev_set_name(&s->dev, "%s-pciem-dma", pci_name(pdev))) {
		put_device(&s->dev);
		return NULL;
	}
	return s;
}

/* Puts our dma_map_ops on a function that no driver has bound to yet. */
static int pciem_dma_fn_wrap(struct pciem_dma_fn *fn, struct pci_dev *pdev)
{
	struct device *dev = &pdev->dev;

	fn->pdev = pdev;
	/* Never on x86 (see the top of this file); refused should it happen. */
	if (device_iommu_mapped(dev)) {
		pci_warn(pdev, "an IOMMU translates this function's DMA, which pciem cannot follow: the card's DMA is refused\n");
		return 0;
	}
	fn->saved = dev->dma_ops;
	fn->orig = get_dma_ops(dev);
	if (!fn->orig) {
		fn->shadow = pciem_dma_shadow_create(pdev);
		if (!fn->shadow)
			return -ENOMEM;
	}
	fn->ops = pciem_dma_ops;
	set_dma_ops(dev, &fn->ops);
	fn->wrapped = true;
	return 0;
}

static void pciem_dma_fn_unwrap(struct pciem_dma_fn *fn)
{
	u32 left;

	if (!fn->pdev)
		return;
	if (fn->wrapped)
		set_dma_ops(&fn->pdev->dev, fn->saved);
	fn->wrapped = false;
	left = pciem_dma_forget_all(fn);
	if (left)
		pci_warn(fn->pdev, "driver left %u DMA mappings behind\n", left);
	pci_dev_put(fn->pdev);
	fn->pdev = NULL;
}

int pciem_dma_bus_init(struct pciem_dev *dev)
{
	struct pciem_dma *dma;
	int f, ret;

	lockdep_assert_held(&dev->lock);
	dma = kzalloc(sizeof(*dma), GFP_KERNEL);
	if (!dma)
		return -ENOMEM;
	dma->dev = dev;
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++) {
		struct pciem_dma_fn *fn = &dma->fn[f];
		struct pci_dev *pdev;

		fn->dma = dma;
		spin_lock_init(&fn->lock);
		fn->maps = RB_ROOT_CACHED;
		if (!dev->func[f].present)
			continue;
		pdev = pci_get_slot(dev->bus, PCI_DEVFN(0, f));
		if (!pdev)
			continue;
		ret = pciem_dma_fn_wrap(fn, pdev);
		if (ret)
			goto err_wrap;
	}
	mutex_lock(&pciem_dma_registry_lock);
	list_add_tail(&dma->node, &pciem_dma_registry);
	mutex_unlock(&pciem_dma_registry_lock);
	/* DMA ioctls look at it without dev->lock. */
	smp_store_release(&dev->dma, dma);
	return 0;

err_wrap:
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++) {
		pciem_dma_fn_unwrap(&dma->fn[f]);
		if (dma->fn[f].shadow)
			put_device(&dma->fn[f].shadow->dev);
	}
	kfree(dma);
	return ret;
}

/*
 * The drivers' remove callbacks have run: a driver that freed what it
 * mapped left no record. Our ops come off the devices here; the state
 * (and the shadow devices) lives until the last reference, in case a
 * driver's late unmap still arrives through ops it had already loaded.
 */
void pciem_dma_bus_exit(struct pciem_dev *dev)
{
	struct pciem_dma *dma = dev->dma;
	int f;

	lockdep_assert_held(&dev->lock);
	if (!dma)
		return;
	mutex_lock(&pciem_dma_registry_lock);
	list_del(&dma->node);
	mutex_unlock(&pciem_dma_registry_lock);
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		pciem_dma_fn_unwrap(&dma->fn[f]);
	WRITE_ONCE(dma->removed, true);
}

void pciem_dma_release(struct pciem_dev *dev)
{
	struct pciem_dma *dma = dev->dma;
	int f;

	if (!dma)
		return;
	for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++)
		if (dma->fn[f].shadow)
			put_device(&dma->fn[f].shadow->dev);
	kfree(dma);
	dev->dma = NULL;
}

/* ---- transfers ---- */

static bool pciem_dma_flags_ok(u32 flags)
{
	return flags == PCIEM_DMA_FLAG_READ || flags == PCIEM_DMA_FLAG_WRITE;
}

/*
 * The function a card's transfer comes from: -ENODEV if it is not on the
 * bus (not registered, absent, removed, taken for dead), -EPERM while its
 * Bus Master Enable is clear.
 */
static struct pciem_dma_fn *pciem_dma_fn_get(struct pciem_dev *dev, struct pciem_dma *dma,
					     unsigned int func)
{
	unsigned long flags;
	bool master;

	if (!dma || READ_ONCE(dma->removed) || READ_ONCE(dev->gone) || !dma->fn[func].pdev)
		return ERR_PTR(-ENODEV);
	spin_lock_irqsave(&dev->cfg_lock, flags);
	master = pciem_cfg_bus_master(&dev->func[func].cfg);
	spin_unlock_irqrestore(&dev->cfg_lock, flags);
	if (!master) {
		atomic64_inc(&dma->stats.refused_master);
		return ERR_PTR(-EPERM);
	}
	return &dma->fn[func];
}

/* One transfer between host memory and the card's buffer. */
struct pciem_dma_xfer {
	struct pciem_dma_fn *fn;
	u8 __user *ubuf;		/* where the next piece's bytes are */
	bool write;			/* the device writes host memory */
	bool dry;			/* the checking pass: nothing moves */
	void *bounce;			/* PCIEM_DMA_CHUNK bytes */
	u64 *list;			/* PRP: PCIEM_DMA_PRP_BATCH entries */
};

/*
 * One chunk through pinned pages of the card's buffer: one copy, host
 * memory to user pages or back, under the lock (nothing there can fault).
 * Returns -EAGAIN when the pages cannot be pinned: the caller then goes
 * through the bounce buffer, which tells a bad buffer from a refusal.
 */
static int pciem_dma_chunk_pinned(struct pciem_dma_xfer *x, u64 iova, size_t len)
{
	struct page *pages[PCIEM_DMA_CHUNK / PAGE_SIZE + 1];
	struct pciem_dma_fn *fn = x->fn;
	unsigned long uaddr = (unsigned long)x->ubuf, flags;
	int npages = DIV_ROUND_UP(offset_in_page(uaddr) + len, PAGE_SIZE), got, i, ret;
	size_t off = offset_in_page(uaddr), n;
	void *p;

	got = pin_user_pages_fast(uaddr, npages, x->write ? 0 : FOLL_WRITE, pages);
	if (got != npages) {
		if (got > 0)
			unpin_user_pages(pages, got);
		return -EAGAIN;
	}
	spin_lock_irqsave(&fn->lock, flags);
	ret = pciem_dma_covered(fn, iova, len, x->write) ? 0 : -EFAULT;
	for (i = 0; i < npages && !ret; i++, off = 0) {
		n = min_t(size_t, len, PAGE_SIZE - off);
		p = kmap_local_page(pages[i]);
		ret = pciem_dma_move(fn, iova, p + off, n, x->write);
		kunmap_local(p);
		iova += n;
		len -= n;
	}
	spin_unlock_irqrestore(&fn->lock, flags);
	unpin_user_pages_dirty_lock(pages, npages, !x->write);
	if (ret)
		atomic64_inc(&fn->dma->stats.refused_unmapped);
	return ret;
}

/* One chunk through the kernel bounce buffer (two copies). */
static int pciem_dma_chunk_bounce(struct pciem_dma_xfer *x, u64 iova, size_t len)
{
	struct pciem_dma_fn *fn = x->fn;
	unsigned long flags;
	int ret = -EFAULT;

	if (x->write && copy_from_user(x->bounce, x->ubuf, len))
		goto err_user;
	spin_lock_irqsave(&fn->lock, flags);
	if (pciem_dma_covered(fn, iova, len, x->write))
		ret = pciem_dma_move(fn, iova, x->bounce, len, x->write);
	spin_unlock_irqrestore(&fn->lock, flags);
	if (ret) {
		atomic64_inc(&fn->dma->stats.refused_unmapped);
		return ret;
	}
	if (!x->write && copy_to_user(x->ubuf, x->bounce, len))
		goto err_user;
	return 0;

err_user:
	atomic64_inc(&fn->dma->stats.user_faults);
	return -EFAULT;
}

/*
 * Moves the next @len bytes of the card's buffer to or from host memory
 * at @iova, a chunk per hold of the lock. In the dry pass only checks that
 * mappings cover them.
 */
static int pciem_dma_piece(struct pciem_dma_xfer *x, u64 iova, u64 len)
{
	struct pciem_dma_fn *fn = x->fn;
	struct pciem_dma_counters *st = &fn->dma->stats;
	unsigned long flags;
	size_t n;
	int ret;

	if (x->dry) {
		spin_lock_irqsave(&fn->lock, flags);
		ret = pciem_dma_covered(fn, iova, len, x->write) ? 0 : -EFAULT;
		spin_unlock_irqrestore(&fn->lock, flags);
		if (ret)
			atomic64_inc(&st->refused_unmapped);
		return ret;
	}
	while (len) {
		n = min_t(u64, len, PCIEM_DMA_CHUNK);
		ret = pciem_dma_chunk_pinned(x, iova, n);
		if (ret == -EAGAIN)
			ret = pciem_dma_chunk_bounce(x, iova, n);
		if (ret)
			return ret;
		x->ubuf += n;
		iova += n;
		len -= n;
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}
	return 0;
}

/* Reads @len bytes of host memory at @iova into @buf (PRP lists), in full or not at all. */
static int pciem_dma_fetch(struct pciem_dma_xfer *x, u64 iova, void *buf, size_t len)
{
	struct pciem_dma_fn *fn = x->fn;
	unsigned long flags;
	int ret = -EFAULT;

	spin_lock_irqsave(&fn->lock, flags);
	if (pciem_dma_covered(fn, iova, len, false))
		ret = pciem_dma_move(fn, iova, buf, len, false);
	spin_unlock_irqrestore(&fn->lock, flags);
	if (ret)
		atomic64_inc(&fn->dma->stats.refused_unmapped);
	return ret;
}

struct pciem_dma_linear {
	u64 iova;
	u64 len;
};

static int pciem_dma_walk_linear(struct pciem_dma_xfer *x, const void *arg)
{
	const struct pciem_dma_linear *l = arg;

	return pciem_dma_piece(x, l->iova, l->len);
}

/*
 * An NVMe PRP walk: PRP1 is the first data pointer (any offset); PRP2 the
 * second (page aligned) when two pages end the transfer, else a PRP list
 * (8-byte aligned, running to the end of its page). Entries of a list are
 * page-aligned data pointers, except the last of a list page when more
 * than one page of data remains: that points to the next list page.
 */
static int pciem_dma_walk_prp(struct pciem_dma_xfer *x, const void *arg)
{
	const struct pciem_dma_indirect *req = arg;
	u64 ps = req->page_size, left = req->length, list_iova, e, n;
	u32 slots, batch = 0, bi = 0;
	int ret;

	n = min_t(u64, left, ps - (req->prp1 & (ps - 1)));
	ret = pciem_dma_piece(x, req->prp1, n);
	if (ret)
		return ret;
	left -= n;
	if (!left)
		return 0;
	if (left <= ps) {
		if (req->prp2 & (ps - 1))
			return -EINVAL;
		return pciem_dma_piece(x, req->prp2, left);
	}

	list_iova = req->prp2;
	if (list_iova & 7)
		return -EINVAL;
	slots = (ps - (list_iova & (ps - 1))) / 8;
	while (left) {
		if (bi == batch) {
			batch = min_t(u32, slots, PCIEM_DMA_PRP_BATCH);
			ret = pciem_dma_fetch(x, list_iova, x->list, batch * 8);
			if (ret)
				return ret;
			bi = 0;
		}
		e = le64_to_cpu((__force __le64)x->list[bi++]);
		list_iova += 8;
		if (!--slots && left > ps) {
			/* Page aligned, so each list page yields data: the walk ends. */
			if (e & (ps - 1))
				return -EINVAL;
			list_iova = e;
			slots = ps / 8;
			batch = bi = 0;
			continue;
		}
		if (e & (ps - 1))
			return -EINVAL;
		n = min(left, ps);
		ret = pciem_dma_piece(x, e, n);
		if (ret)
			return ret;
		left -= n;
	}
	return 0;
}

struct pciem_dma_sgl_walk {
	const struct pciem_dma_sg_entry __user *entries;
	u32 nentries;
	u64 length;
	struct pciem_dma_sg_entry *batch;	/* PCIEM_DMA_SGL_BATCH entries */
};

static int pciem_dma_walk_sgl(struct pciem_dma_xfer *x, const void *arg)
{
	const struct pciem_dma_sgl_walk *w = arg;
	u64 total = 0;
	u32 i, j, n;
	int ret;

	for (i = 0; i < w->nentries; i += n) {
		n = min_t(u32, w->nentries - i, PCIEM_DMA_SGL_BATCH);
		if (copy_from_user(w->batch, w->entries + i, n * sizeof(*w->batch))) {
			atomic64_inc(&x->fn->dma->stats.user_faults);
			return -EFAULT;
		}
		for (j = 0; j < n; j++) {
			u64 len = w->batch[j].len;

			if (!len || len > w->length - total)
				return -EINVAL;
			total += len;
			ret = pciem_dma_piece(x, w->batch[j].iova, len);
			if (ret)
				return ret;
		}
	}
	return total == w->length ? 0 : -EINVAL;
}

/*
 * Runs a walk twice: a dry pass that checks everything (coverage, entries)
 * and moves nothing, then the pass that moves the bytes.
 */
static int pciem_dma_run(struct pciem_dma_fn *fn, bool write, u8 __user *ubuf, u64 len,
			 int (*walk)(struct pciem_dma_xfer *x, const void *arg), const void *arg,
			 bool prp)
{
	struct pciem_dma_counters *st = &fn->dma->stats;
	struct pciem_dma_xfer x = {
		.fn = fn, .write = write, .ubuf = ubuf, .dry = true,
	};
	int ret = -ENOMEM;

	if (!access_ok(ubuf, len)) {
		atomic64_inc(&st->user_faults);
		return -EFAULT;
	}
	if (prp) {
		x.list = kmalloc_array(PCIEM_DMA_PRP_BATCH, sizeof(*x.list), GFP_KERNEL);
		if (!x.list)
			return -ENOMEM;
	}
	ret = walk(&x, arg);
	if (ret)
		goto out;
	x.bounce = kmalloc(min_t(u64, len, PCIEM_DMA_CHUNK), GFP_KERNEL);
	if (!x.bounce) {
		ret = -ENOMEM;
		goto out;
	}
	x.dry = false;
	ret = walk(&x, arg);
	if (!ret) {
		atomic64_inc(write ? &st->writes : &st->reads);
		atomic64_add(len, write ? &st->write_bytes : &st->read_bytes);
	}
out:
	kfree(x.bounce);
	kfree(x.list);
	return ret;
}

static long pciem_dma_ioctl_dma(struct pciem_dev *dev, struct pciem_dma *dma, void __user *uarg)
{
	struct pciem_dma_linear l;
	struct pciem_dma_fn *fn;
	struct pciem_dma_op op;
	bool write;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	if (!pciem_dma_flags_ok(op.flags) || memchr_inv(op.reserved, 0, sizeof(op.reserved)) ||
	    op.func >= PCIEM_MAX_FUNCTIONS || !op.length)
		return -EINVAL;
	if (op.pasid)
		return -EOPNOTSUPP;
	fn = pciem_dma_fn_get(dev, dma, op.func);
	if (IS_ERR(fn))
		return PTR_ERR(fn);
	write = op.flags == PCIEM_DMA_FLAG_WRITE;
	l.iova = op.guest_iova;
	l.len = op.length;
	return pciem_dma_run(fn, write, u64_to_user_ptr(op.user_addr), op.length,
			     pciem_dma_walk_linear, &l, false);
}

static long pciem_dma_ioctl_indirect(struct pciem_dev *dev, struct pciem_dma *dma,
				     void __user *uarg)
{
	struct pciem_dma_indirect req;
	struct pciem_dma_fn *fn;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (!pciem_dma_flags_ok(req.flags) || memchr_inv(req.reserved, 0, sizeof(req.reserved)) ||
	    memchr_inv(req.reserved2, 0, sizeof(req.reserved2)) ||
	    req.func >= PCIEM_MAX_FUNCTIONS || !is_power_of_2(req.page_size) ||
	    req.page_size < SZ_4K || req.page_size > SZ_64K)
		return -EINVAL;
	if (req.pasid)
		return -EOPNOTSUPP;
	fn = pciem_dma_fn_get(dev, dma, req.func);
	if (IS_ERR(fn))
		return PTR_ERR(fn);
	/* As in the original ABI, an empty transfer is done at once. */
	if (!req.length)
		return 0;
	return pciem_dma_run(fn, req.flags == PCIEM_DMA_FLAG_WRITE, u64_to_user_ptr(req.user_addr),
			     req.length, pciem_dma_walk_prp, &req, true);
}

static long pciem_dma_ioctl_sgl(struct pciem_dev *dev, struct pciem_dma *dma, void __user *uarg)
{
	struct pciem_dma_sgl_walk w;
	struct pciem_dma_sgl req;
	struct pciem_dma_fn *fn;
	int ret;

	ret = pciem_copy_ext_arg(&req, sizeof(req), uarg);
	if (ret)
		return ret;
	if (!pciem_dma_flags_ok(req.flags) || memchr_inv(req.reserved, 0, sizeof(req.reserved)) ||
	    memchr_inv(req.reserved2, 0, sizeof(req.reserved2)) ||
	    req.func >= PCIEM_MAX_FUNCTIONS || !req.nentries ||
	    req.nentries > PCIEM_DMA_SGL_MAX_ENTRIES || !req.length)
		return -EINVAL;
	fn = pciem_dma_fn_get(dev, dma, req.func);
	if (IS_ERR(fn))
		return PTR_ERR(fn);
	w.entries = u64_to_user_ptr(req.entries);
	w.nentries = req.nentries;
	w.length = req.length;
	w.batch = kmalloc_array(PCIEM_DMA_SGL_BATCH, sizeof(*w.batch), GFP_KERNEL);
	if (!w.batch)
		return -ENOMEM;
	ret = pciem_dma_run(fn, req.flags == PCIEM_DMA_FLAG_WRITE, u64_to_user_ptr(req.user_addr),
			    req.length, pciem_dma_walk_sgl, &w, false);
	kfree(w.batch);
	return ret;
}

static long pciem_dma_ioctl_atomic(struct pciem_dev *dev, struct pciem_dma *dma,
				   void __user *uarg)
{
	struct pciem_dma_atomic a;
	struct pciem_dma_fn *fn;
	unsigned long flags;
	atomic64_t *v;
	int ret = 0;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (memchr_inv(a.reserved, 0, sizeof(a.reserved)) || a.func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	if (a.op_type < PCIEM_ATOMIC_FETCH_ADD || a.op_type > PCIEM_ATOMIC_FETCH_XOR || a.pasid)
		return -EOPNOTSUPP;
	if (!IS_ALIGNED(a.guest_iova, 8))
		return -EINVAL;
	fn = pciem_dma_fn_get(dev, dma, a.func);
	if (IS_ERR(fn))
		return PTR_ERR(fn);

	spin_lock_irqsave(&fn->lock, flags);
	v = pciem_dma_covered(fn, a.guest_iova, 8, true) ?
	    pciem_dma_kaddr(fn, a.guest_iova) : NULL;
	if (!v) {
		ret = -EFAULT;
		goto out;
	}
	/* Locked instructions: atomic against the driver's own on any CPU. */
	switch (a.op_type) {
	case PCIEM_ATOMIC_FETCH_ADD:
		a.result = atomic64_fetch_add(a.operand, v);
		break;
	case PCIEM_ATOMIC_FETCH_SUB:
		a.result = atomic64_fetch_sub(a.operand, v);
		break;
	case PCIEM_ATOMIC_SWAP:
		a.result = atomic64_xchg(v, a.operand);
		break;
	case PCIEM_ATOMIC_CAS:
		a.result = atomic64_cmpxchg(v, a.compare, a.operand);
		break;
	case PCIEM_ATOMIC_FETCH_AND:
		a.result = atomic64_fetch_and(a.operand, v);
		break;
	case PCIEM_ATOMIC_FETCH_OR:
		a.result = atomic64_fetch_or(a.operand, v);
		break;
	case PCIEM_ATOMIC_FETCH_XOR:
		a.result = atomic64_fetch_xor(a.operand, v);
		break;
	}
	kunmap_local(v);
out:
	spin_unlock_irqrestore(&fn->lock, flags);
	if (ret) {
		atomic64_inc(&dma->stats.refused_unmapped);
		return ret;
	}
	atomic64_inc(&dma->stats.atomics);
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

/* ---- peer to peer ---- */

static bool pciem_dma_overlaps(u64 a, u64 alen, u64 b, u64 blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * The pciem BAR that holds all of [addr, addr + len): its device,
 * referenced, and the BAR memory there. NULL if none; *in_window then says
 * whether the range touches a pciem device's address space at all (such a
 * range is never reached as a whitelisted one).
 */
static struct pciem_dev *pciem_dma_p2p_bar(u64 addr, u64 len, u8 **mem, bool *in_window)
{
	struct pciem_dev *hit = NULL;
	struct pciem_dma *d;
	unsigned long flags;
	int f, b, w;

	*in_window = false;
	mutex_lock(&pciem_dma_registry_lock);
	list_for_each_entry(d, &pciem_dma_registry, node) {
		struct pciem_dev *pd = d->dev;

		for (w = 0; w < ARRAY_SIZE(pd->win); w++)
			if (pd->win[w].res.parent &&
			    pciem_dma_overlaps(addr, len, pd->win[w].res.start,
					       resource_size(&pd->win[w].res)))
				*in_window = true;
		if (READ_ONCE(pd->gone))
			continue;
		spin_lock_irqsave(&pd->cfg_lock, flags);
		for (f = 0; f < PCIEM_MAX_FUNCTIONS && !hit; f++) {
			struct pciem_func *fn = &pd->func[f];

			if (!fn->present || !pciem_cfg_mem_enabled(&fn->cfg))
				continue;
			for (b = 0; b < PCIEM_NUM_BARS && !hit; b++) {
				u64 base = pciem_cfg_bar_addr(&fn->cfg, b);

				if (!fn->bar[b].size || !base || addr < base ||
				    addr - base > fn->bar[b].size ||
				    len > fn->bar[b].size - (addr - base))
					continue;
				hit = pd;
				*mem = (u8 *)fn->bar[b].mem + (addr - base);
			}
		}
		spin_unlock_irqrestore(&pd->cfg_lock, flags);
		if (hit) {
			pciem_dev_get(hit);
			break;
		}
	}
	mutex_unlock(&pciem_dma_registry_lock);
	return hit;
}

static bool pciem_dma_p2p_whitelisted(u64 addr, u64 len)
{
	bool ok = false;
	unsigned int i;

	mutex_lock(&pciem_p2p_lock);
	for (i = 0; i < pciem_p2p_nranges && !ok; i++)
		ok = addr >= pciem_p2p_ranges[i].start &&
		     addr - pciem_p2p_ranges[i].start <= pciem_p2p_ranges[i].size &&
		     len <= pciem_p2p_ranges[i].size - (addr - pciem_p2p_ranges[i].start);
	mutex_unlock(&pciem_p2p_lock);
	return ok;
}

/* Reads a pciem BAR's memory into the card's buffer. */
static int pciem_dma_p2p_read_bar(const u8 *mem, u8 __user *ubuf, u64 len)
{
	u64 n;

	while (len) {
		n = min_t(u64, len, PCIEM_DMA_P2P_CHUNK);
		if (copy_to_user(ubuf, mem, n))
			return -EFAULT;
		mem += n;
		ubuf += n;
		len -= n;
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}
	return 0;
}

/*
 * Writes the card's buffer into a pciem BAR at @phys: the peer device
 * takes the bytes as writes on its bus, so its card sees them as events
 * (in order) where it traces writes, as it sees its driver's.
 */
static int pciem_dma_p2p_write_bar(struct pciem_dev *peer, u64 phys, const u8 __user *ubuf,
				   u64 len)
{
	void *bounce;
	int ret = 0;
	u64 n;

	bounce = kmalloc(min_t(u64, len, PCIEM_DMA_CHUNK), GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	while (len) {
		n = min_t(u64, len, PCIEM_DMA_CHUNK);
		if (copy_from_user(bounce, ubuf, n)) {
			ret = -EFAULT;
			break;
		}
		pciem_bus_p2p_write(peer, phys, bounce, n);
		phys += n;
		ubuf += n;
		len -= n;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}
	kfree(bounce);
	return ret;
}

/* Copies between a whitelisted physical range (peer MMIO) and the card's buffer. */
static int pciem_dma_p2p_copy_phys(u64 addr, u8 __user *ubuf, u64 len, bool write)
{
	void __iomem *io;
	void *bounce;
	u64 n;
	int ret = 0;

	bounce = kmalloc(min_t(u64, len, PCIEM_DMA_CHUNK), GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	while (len && !ret) {
		n = min_t(u64, len, PCIEM_DMA_CHUNK);
		if (write && copy_from_user(bounce, ubuf, n)) {
			ret = -EFAULT;
			break;
		}
		io = ioremap(addr, n);
		if (!io) {
			ret = -ENOMEM;
			break;
		}
		if (write)
			memcpy_toio(io, bounce, n);
		else
			memcpy_fromio(bounce, io, n);
		iounmap(io);
		if (!write && copy_to_user(ubuf, bounce, n))
			ret = -EFAULT;
		addr += n;
		ubuf += n;
		len -= n;
		if (!ret && fatal_signal_pending(current))
			ret = -EINTR;
		cond_resched();
	}
	kfree(bounce);
	return ret;
}

static long pciem_dma_ioctl_p2p(struct pciem_dev *dev, struct pciem_dma *dma, void __user *uarg)
{
	struct pciem_p2p_op_user op;
	struct pciem_dma_fn *fn;
	struct pciem_dev *peer;
	bool write, in_window;
	u8 __user *ubuf;
	u8 *mem = NULL;
	int ret;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	if (!pciem_dma_flags_ok(op.flags) || memchr_inv(op.reserved, 0, sizeof(op.reserved)) ||
	    op.func >= PCIEM_MAX_FUNCTIONS || !op.length)
		return -EINVAL;
	fn = pciem_dma_fn_get(dev, dma, op.func);
	if (IS_ERR(fn))
		return PTR_ERR(fn);
	write = op.flags == PCIEM_DMA_FLAG_WRITE;
	ubuf = u64_to_user_ptr(op.user_addr);
	if (!access_ok(ubuf, op.length)) {
		atomic64_inc(&dma->stats.user_faults);
		return -EFAULT;
	}

	peer = pciem_dma_p2p_bar(op.target_phys_addr, op.length, &mem, &in_window);
	if (peer) {
		ret = write ? pciem_dma_p2p_write_bar(peer, op.target_phys_addr, ubuf, op.length) :
			      pciem_dma_p2p_read_bar(mem, ubuf, op.length);
		pciem_dev_put(peer);
	} else if (!in_window && pciem_dma_p2p_whitelisted(op.target_phys_addr, op.length)) {
		ret = pciem_dma_p2p_copy_phys(op.target_phys_addr, ubuf, op.length, write);
	} else {
		atomic64_inc(&dma->stats.refused_p2p);
		return -ENXIO;
	}
	if (ret == -EFAULT)
		atomic64_inc(&dma->stats.user_faults);
	if (ret)
		return ret;
	atomic64_inc(&dma->stats.p2p);
	atomic64_add(op.length, &dma->stats.p2p_bytes);
	return 0;
}

/* ---- what the card may ask about ---- */

static long pciem_dma_ioctl_mappings(struct pciem_dma *dma, void __user *uarg)
{
	struct pciem_dma_mapping *out = NULL;
	struct pciem_dma_mappings req;
	struct interval_tree_node *it;
	struct pciem_dma_fn *fn;
	unsigned long flags;
	u32 room, n = 0;
	int ret;

	ret = pciem_copy_ext_arg(&req, sizeof(req), uarg);
	if (ret)
		return ret;
	if (req.flags || memchr_inv(req.reserved, 0, sizeof(req.reserved)) ||
	    memchr_inv(req.reserved2, 0, sizeof(req.reserved2)) || req.func >= PCIEM_MAX_FUNCTIONS)
		return -EINVAL;
	if (!dma || READ_ONCE(dma->removed) || !dma->fn[req.func].pdev)
		return -ENODEV;
	fn = &dma->fn[req.func];
	room = min_t(u32, req.count, PCIEM_DMA_MAPPINGS_MAX);
	if (room) {
		out = kvcalloc(room, sizeof(*out), GFP_KERNEL);
		if (!out)
			return -ENOMEM;
	}
	spin_lock_irqsave(&fn->lock, flags);
	for (it = interval_tree_iter_first(&fn->maps, 0, ULONG_MAX); it;
	     it = interval_tree_iter_next(it, 0, ULONG_MAX), n++) {
		struct pciem_dma_map *m = container_of(it, struct pciem_dma_map, it);

		if (n >= room)
			continue;
		out[n].iova = it->start;
		out[n].size = it->last - it->start + 1;
		out[n].kind = m->kind;
		out[n].dir = m->dir;
	}
	spin_unlock_irqrestore(&fn->lock, flags);

	ret = 0;
	if (room && copy_to_user(u64_to_user_ptr(req.entries), out,
				 min(n, room) * sizeof(*out)))
		ret = -EFAULT;
	req.count = n;
	if (!ret && copy_to_user(uarg, &req, sizeof(req)))
		ret = -EFAULT;
	kvfree(out);
	return ret;
}

static long pciem_dma_ioctl_stats(struct pciem_dma *dma, void __user *uarg)
{
	struct pciem_dma_counters *c;
	struct pciem_dma_stats st;
	unsigned long flags;
	int f, ret;

	ret = pciem_copy_ext_arg(&st, sizeof(st), uarg);
	if (ret)
		return ret;
	if (st.flags || memchr_inv(st.reserved, 0, sizeof(st.reserved)))
		return -EINVAL;
	memset(&st, 0, sizeof(st));
	st.argsz = sizeof(st);
	if (dma) {
		c = &dma->stats;
		st.reads = atomic64_read(&c->reads);
		st.writes = atomic64_read(&c->writes);
		st.read_bytes = atomic64_read(&c->read_bytes);
		st.write_bytes = atomic64_read(&c->write_bytes);
		st.atomics = atomic64_read(&c->atomics);
		st.p2p = atomic64_read(&c->p2p);
		st.p2p_bytes = atomic64_read(&c->p2p_bytes);
		st.refused_unmapped = atomic64_read(&c->refused_unmapped);
		st.refused_master = atomic64_read(&c->refused_master);
		st.refused_p2p = atomic64_read(&c->refused_p2p);
		st.user_faults = atomic64_read(&c->user_faults);
		st.maps = atomic64_read(&c->maps);
		st.unmaps = atomic64_read(&c->unmaps);
		st.map_failures = atomic64_read(&c->map_failures);
		for (f = 0; f < PCIEM_MAX_FUNCTIONS; f++) {
			spin_lock_irqsave(&dma->fn[f].lock, flags);
			st.mappings += dma->fn[f].nmaps;
			spin_unlock_irqrestore(&dma->fn[f].lock, flags);
		}
	}
	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

long pciem_dma_ioctl(struct pciem_dev *dev, unsigned int cmd, void __user *uarg)
{
	/* Published by bus_init (REGISTER); freed only at the last reference. */
	struct pciem_dma *dma = smp_load_acquire(&dev->dma);

	switch (cmd) {
	case PCIEM_IOCTL_DMA:
		return pciem_dma_ioctl_dma(dev, dma, uarg);
	case PCIEM_IOCTL_DMA_ATOMIC:
		return pciem_dma_ioctl_atomic(dev, dma, uarg);
	case PCIEM_IOCTL_P2P:
		return pciem_dma_ioctl_p2p(dev, dma, uarg);
	case PCIEM_IOCTL_DMA_INDIRECT:
		return pciem_dma_ioctl_indirect(dev, dma, uarg);
	case PCIEM_IOCTL_DMA_MAPPINGS:
		return pciem_dma_ioctl_mappings(dma, uarg);
	case PCIEM_IOCTL_DMA_SGL:
		return pciem_dma_ioctl_sgl(dev, dma, uarg);
	case PCIEM_IOCTL_DMA_STATS:
		return pciem_dma_ioctl_stats(dma, uarg);
	}
	return -ENOTTY;
}

/* ---- the P2P whitelist: module parameter p2p_whitelist ---- */

/*
 * "START+SIZE[,START+SIZE...]" (numbers in C notation; empty clears): the
 * whole list is replaced. System RAM is never accepted.
 */
static int pciem_p2p_whitelist_set(const char *val, const struct kernel_param *kp)
{
	struct pciem_p2p_range r[PCIEM_P2P_MAX_RANGES];
	char *buf, *s, *tok, *plus;
	unsigned int n = 0;
	int ret = 0;
	u64 last;

	buf = kstrdup(val, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	s = strim(buf);
	while ((tok = strsep(&s, ",")) && !ret) {
		tok = strim(tok);
		if (!*tok)
			continue;
		plus = strchr(tok, '+');
		if (!plus || n == PCIEM_P2P_MAX_RANGES) {
			ret = -EINVAL;
			break;
		}
		*plus = 0;
		ret = kstrtou64(tok, 0, &r[n].start) ?: kstrtou64(plus + 1, 0, &r[n].size);
		if (ret)
			break;
		if (!r[n].size || check_add_overflow(r[n].start, r[n].size - 1, &last) ||
		    region_intersects(r[n].start, r[n].size, IORESOURCE_SYSTEM_RAM,
				      IORES_DESC_NONE) != REGION_DISJOINT)
			ret = -EINVAL;
		n++;
	}
	kfree(buf);
	if (ret)
		return ret;
	mutex_lock(&pciem_p2p_lock);
	memcpy(pciem_p2p_ranges, r, n * sizeof(r[0]));
	pciem_p2p_nranges = n;
	mutex_unlock(&pciem_p2p_lock);
	return 0;
}

static int pciem_p2p_whitelist_get(char *buf, const struct kernel_param *kp)
{
	unsigned int i;
	int len = 0;

	mutex_lock(&pciem_p2p_lock);
	for (i = 0; i < pciem_p2p_nranges; i++)
		len += scnprintf(buf + len, PAGE_SIZE - len, "%s0x%llx+0x%llx", i ? "," : "",
				 pciem_p2p_ranges[i].start, pciem_p2p_ranges[i].size);
	mutex_unlock(&pciem_p2p_lock);
	len += scnprintf(buf + len, PAGE_SIZE - len, "\n");
	return len;
}

static const struct kernel_param_ops pciem_p2p_whitelist_ops = {
	.set = pciem_p2p_whitelist_set,
	.get = pciem_p2p_whitelist_get,
};

module_param_cb(p2p_whitelist, &pciem_p2p_whitelist_ops, NULL, 0600);
MODULE_PARM_DESC(p2p_whitelist,
		 "physical ranges P2P may reach besides pciem BARs: START+SIZE[,...] (no System RAM)");
