// SPDX-License-Identifier: GPL-2.0
/*
 * protopciem.ko: driver of the ProtoPCIem card (docs/protopciem.md), a plain
 * PCI driver: BAR0 registers, one MSI vector (INTx fallback), a 4 MiB
 * coherent command buffer and two coherent frames. One command at a time,
 * completed by the interrupt. /dev/protopciem (protopciemN for the second
 * card on) is its interface (include/uapi/linux/protopciem.h). Each card is
 * independent: its own lock, buffers, interrupt and statistics.
 *
 * A card whose STATUS reads all-ones is taken for dead (link down, or the
 * model behind it gone while the function stays on the bus): every later
 * call fails with -ENODEV without touching it, until it is removed.
 */
#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <uapi/linux/protopciem.h>
#include "protopciem_regs.h"

#define PPC_NAME	"protopciem"
#define PPC_FB_BYTES	(PROTOPCIEM_FRAMES * PROTOPCIEM_FB_SIZE)
#define PPC_ALL_ONES	0xffffffff

/* PROCESS_BUFFER reads the first PROCESS_MAX bytes of the command buffer, writes the next. */
#define PPC_PROCESS_SRC	0
#define PPC_PROCESS_DST	PROTOPCIEM_PROCESS_MAX

/* The uAPI spells the spec's numbers out (it cannot include the generated header). */
static_assert(PROTOPCIEM_FRAME_BYTES == PROTOPCIEM_FB_SIZE);
static_assert(PROTOPCIEM_CMDBUF_BYTES == PROTOPCIEM_CMDBUF_MAX);
static_assert(PROTOPCIEM_PROCESS_BYTES == PROTOPCIEM_PROCESS_MAX);
static_assert(PPC_PROCESS_DST + PROTOPCIEM_PROCESS_MAX <= PROTOPCIEM_CMDBUF_MAX);
static_assert(PROTOPCIEM_P2P_BYTES == PROTOPCIEM_P2P_MAX);
static_assert(PROTOPCIEM_ARITH_ADD == PROTOPCIEM_CMD_ADD);
static_assert(PROTOPCIEM_ARITH_MULTIPLY == PROTOPCIEM_CMD_MULTIPLY);
static_assert(PROTOPCIEM_ARITH_XOR == PROTOPCIEM_CMD_XOR);
static_assert(PROTOPCIEM_P2P_READ == PROTOPCIEM_CMD_P2P_READ);
static_assert(PROTOPCIEM_P2P_WRITE == PROTOPCIEM_CMD_P2P_WRITE);

static unsigned int timeout_ms = 2000;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms, "how long a command may take before -ETIMEDOUT (ms, default 2000)");

static DEFINE_IDA(ppc_ida);

struct ppc_dev {
	struct pci_dev *pdev;
	void __iomem *regs;
	struct miscdevice misc;
	char name[24];
	int index;
	int irq;
	bool ext;			/* the card has the extension block */
	u32 caps;			/* CAPS (0 on upstream's card) */
	u64 mem_size;			/* BAR2, the card memory P2P reaches */
	struct kref ref;		/* probe + each open file */

	/* lock serializes commands, mmap and removal: one command in flight. */
	struct mutex lock;
	bool gone;			/* removed: nothing touches the card */
	void *cmdbuf;
	dma_addr_t cmdbuf_dma;
	void *fb;
	dma_addr_t fb_dma;
	struct address_space *mapping;	/* of the device node, to zap mmaps */

	/* Written by the IRQ handler, read by the waiter after the wake-up. */
	wait_queue_head_t wq;
	atomic_t completions;
	u32 irq_status;
	u64 irq_result;
	u32 irq_error;
	unsigned long flags;		/* PPC_DEAD, set once by whoever reads all-ones first */

	/* Statistics (sysfs stats/). */
	atomic64_t st_ops, st_irqs, st_errors, st_timeouts;
};

#define PPC_DEAD	0

static u32 ppc_rd(struct ppc_dev *p, u32 reg)
{
	return readl(p->regs + reg);
}

static void ppc_wr(struct ppc_dev *p, u32 reg, u32 val)
{
	writel(val, p->regs + reg);
}

static bool ppc_dead(struct ppc_dev *p)
{
	return test_bit(PPC_DEAD, &p->flags);
}

/* Takes the card for dead (any context) and wakes a waiter; logs once. */
static void ppc_set_dead(struct ppc_dev *p)
{
	if (test_and_set_bit(PPC_DEAD, &p->flags))
		return;
	dev_err(&p->pdev->dev, "card reads all-ones: taken for dead\n");
	wake_up(&p->wq);
}

/* STATUS, or all-ones having taken the card for dead. */
static u32 ppc_status(struct ppc_dev *p)
{
	u32 status = ppc_rd(p, PROTOPCIEM_REG_STATUS);

	if (status == PPC_ALL_ONES)
		ppc_set_dead(p);
	return status;
}

static void ppc_release(struct kref *ref)
{
	struct ppc_dev *p = container_of(ref, struct ppc_dev, ref);

	pci_dev_put(p->pdev);
	kfree(p);
}

static irqreturn_t ppc_irq(int irq, void *data)
{
	struct ppc_dev *p = data;
	bool was_dead = ppc_dead(p);
	u32 status = ppc_status(p);

	/* The first all-ones interrupt is the card's last word; later ones are not ours. */
	if (status == PPC_ALL_ONES)
		return was_dead ? IRQ_NONE : IRQ_HANDLED;
	if (!(status & (PROTOPCIEM_STATUS_DONE | PROTOPCIEM_STATUS_ERROR)))
		return IRQ_NONE;
	ppc_wr(p, PROTOPCIEM_REG_STATUS, 0);
	atomic64_inc(&p->st_irqs);
	p->irq_status = status;
	p->irq_result = ppc_rd(p, PROTOPCIEM_REG_RESULT_LO) |
			(u64)ppc_rd(p, PROTOPCIEM_REG_RESULT_HI) << 32;
	p->irq_error = 0;
	if ((status & PROTOPCIEM_STATUS_ERROR) && p->ext) {
		p->irq_error = ppc_rd(p, PROTOPCIEM_REG_ERROR_CODE);
		ppc_wr(p, PROTOPCIEM_REG_ERROR_CODE, 0);
	}
	/* Pairs with smp_rmb() in ppc_run(): the fields, then the count. */
	smp_wmb();
	atomic_inc(&p->completions);
	wake_up(&p->wq);
	return IRQ_HANDLED;
}

static void ppc_reset(struct ppc_dev *p)
{
	ppc_wr(p, PROTOPCIEM_REG_CONTROL, PROTOPCIEM_CONTROL_RESET);
	ppc_wr(p, PROTOPCIEM_REG_CONTROL, PROTOPCIEM_CONTROL_ENABLE);
	if (p->ext)
		ppc_wr(p, PROTOPCIEM_REG_ERROR_CODE, 0);
}

/*
 * Submits @cmd with the argument registers already written and waits for
 * its interrupt. Returns 0 (result in *@result), -EIO, -ETIMEDOUT, -ENODEV
 * or -EINTR.
 */
static int ppc_run(struct ppc_dev *p, u32 cmd, u64 *result)
{
	static const char * const names[] = PROTOPCIEM_CMD_NAMES;
	int seen = atomic_read(&p->completions);
	long left;

	lockdep_assert_held(&p->lock);
	if (p->gone || ppc_dead(p) || ppc_status(p) == PPC_ALL_ONES)
		return -ENODEV;
	atomic64_inc(&p->st_ops);
	ppc_wr(p, PROTOPCIEM_REG_CMD, cmd);
	left = wait_event_interruptible_timeout(p->wq,
						atomic_read(&p->completions) != seen ||
						READ_ONCE(p->gone) || ppc_dead(p),
						msecs_to_jiffies(timeout_ms));
	if (READ_ONCE(p->gone) || ppc_dead(p))
		return -ENODEV;
	if (left <= 0) {
		/* A card that died silently is told from a slow one here. */
		if (ppc_status(p) == PPC_ALL_ONES)
			return -ENODEV;
		/* Drop the abandoned command so its completion cannot be taken for the next one's. */
		ppc_reset(p);
		if (left < 0)
			return -EINTR;
		atomic64_inc(&p->st_timeouts);
		dev_warn(&p->pdev->dev, "%s timed out after %u ms\n", names[cmd], timeout_ms);
		return -ETIMEDOUT;
	}
	/* Pairs with smp_wmb() in ppc_irq(). */
	smp_rmb();
	if (p->irq_status & PROTOPCIEM_STATUS_ERROR) {
		atomic64_inc(&p->st_errors);
		dev_err(&p->pdev->dev, "%s failed: error code %u\n", names[cmd], p->irq_error);
		return -EIO;
	}
	if (result)
		*result = p->irq_result;
	return 0;
}

/* The DMA argument registers: bus addresses, or BAR2 offsets for P2P. */
static void ppc_set_dma(struct ppc_dev *p, u64 src, u64 dst, u32 len)
{
	ppc_wr(p, PROTOPCIEM_REG_DMA_SRC_LO, lower_32_bits(src));
	ppc_wr(p, PROTOPCIEM_REG_DMA_SRC_HI, upper_32_bits(src));
	ppc_wr(p, PROTOPCIEM_REG_DMA_DST_LO, lower_32_bits(dst));
	ppc_wr(p, PROTOPCIEM_REG_DMA_DST_HI, upper_32_bits(dst));
	ppc_wr(p, PROTOPCIEM_REG_DMA_LEN, len);
	ppc_wr(p, PROTOPCIEM_REG_DMA_FLAGS, 0);
}

/* ---- /dev/protopciem ---- */

static int ppc_open(struct inode *inode, struct file *file)
{
	/* misc_open holds misc_mtx: remove() cannot deregister meanwhile. */
	struct ppc_dev *p = container_of(file->private_data, struct ppc_dev, misc);

	kref_get(&p->ref);
	file->private_data = p;
	mutex_lock(&p->lock);
	p->mapping = file->f_mapping;
	mutex_unlock(&p->lock);
	return 0;
}

static int ppc_file_release(struct inode *inode, struct file *file)
{
	struct ppc_dev *p = file->private_data;

	kref_put(&p->ref, ppc_release);
	return 0;
}

static ssize_t ppc_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	struct ppc_dev *p = file->private_data;
	int ret;

	if (!len || len > PROTOPCIEM_CMDBUF_MAX)
		return -EINVAL;
	ret = mutex_lock_interruptible(&p->lock);
	if (ret)
		return ret;
	if (p->gone || ppc_dead(p)) {
		ret = -ENODEV;
		goto out;
	}
	if (copy_from_user(p->cmdbuf, buf, len)) {
		ret = -EFAULT;
		goto out;
	}
	ppc_set_dma(p, p->cmdbuf_dma, 0, len);
	ret = ppc_run(p, PROTOPCIEM_CMD_EXECUTE_CMDBUF, NULL);
out:
	mutex_unlock(&p->lock);
	return ret ? ret : len;
}

/*
 * Copies in an ioctl's argument struct, whose first field is argsz: argsz
 * covers at least the struct this driver knows; a newer userspace's larger
 * struct is accepted only if the bytes beyond are zero.
 */
static int __ppc_copy_args(void *karg, const void __user *uarg, size_t ksize)
{
	u32 argsz;
	int ret;

	if (copy_from_user(karg, uarg, ksize))
		return -EFAULT;
	argsz = *(u32 *)karg;
	if (argsz < ksize)
		return -EINVAL;
	if (argsz == ksize)
		return 0;
	ret = check_zeroed_user(uarg + ksize, argsz - ksize);
	if (ret < 0)
		return ret;
	return ret ? 0 : -E2BIG;
}

#define ppc_copy_args(a, uarg)                                     \
	({                                                          \
		BUILD_BUG_ON(offsetof(typeof(a), argsz) != 0);      \
		__ppc_copy_args(&(a), (uarg), sizeof(a));           \
	})

static long ppc_submit_frame(struct ppc_dev *p, void __user *uarg)
{
	struct protopciem_submit_frame a;
	int ret;

	ret = ppc_copy_args(a, uarg);
	if (ret)
		return ret;
	if (a.flags || a.reserved || a.buffer >= PROTOPCIEM_FRAMES)
		return -EINVAL;
	ppc_set_dma(p, p->fb_dma + (dma_addr_t)a.buffer * PROTOPCIEM_FB_SIZE, 0, PROTOPCIEM_FB_SIZE);
	return ppc_run(p, PROTOPCIEM_CMD_DMA_FRAME, NULL);
}

static long ppc_arith(struct ppc_dev *p, void __user *uarg)
{
	struct protopciem_arith a;
	int ret;

	ret = ppc_copy_args(a, uarg);
	if (ret)
		return ret;
	if (a.flags)
		return -EINVAL;
	if (a.op != PROTOPCIEM_CMD_ADD && a.op != PROTOPCIEM_CMD_MULTIPLY &&
	    a.op != PROTOPCIEM_CMD_XOR)
		return -EINVAL;
	ppc_wr(p, PROTOPCIEM_REG_DATA, a.operand);
	ret = ppc_run(p, a.op, &a.result);
	if (ret)
		return ret;
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

/* PROCESS_BUFFER from the command buffer's first MiB into its second. */
static long ppc_process(struct ppc_dev *p, void __user *uarg)
{
	struct protopciem_process a;
	int ret;

	ret = ppc_copy_args(a, uarg);
	if (ret)
		return ret;
	if (a.flags || !a.len || a.len % 4 || a.len > PROTOPCIEM_PROCESS_MAX)
		return -EINVAL;
	if (copy_from_user(p->cmdbuf + PPC_PROCESS_SRC, u64_to_user_ptr(a.src), a.len))
		return -EFAULT;
	ppc_wr(p, PROTOPCIEM_REG_DATA, a.key);
	ppc_set_dma(p, p->cmdbuf_dma + PPC_PROCESS_SRC, p->cmdbuf_dma + PPC_PROCESS_DST, a.len);
	ret = ppc_run(p, PROTOPCIEM_CMD_PROCESS_BUFFER, &a.sum);
	if (ret)
		return ret;
	if (copy_to_user(u64_to_user_ptr(a.dst), p->cmdbuf + PPC_PROCESS_DST, a.len))
		return -EFAULT;
	return copy_to_user(uarg, &a, sizeof(a)) ? -EFAULT : 0;
}

/* P2P_READ / P2P_WRITE between BAR2 and a bus address userspace names. */
static long ppc_p2p(struct ppc_dev *p, void __user *uarg)
{
	struct protopciem_p2p a;
	bool read;
	int ret;

	ret = ppc_copy_args(a, uarg);
	if (ret)
		return ret;
	if (a.flags || (a.op != PROTOPCIEM_CMD_P2P_READ && a.op != PROTOPCIEM_CMD_P2P_WRITE) ||
	    !a.len || a.len > PROTOPCIEM_P2P_MAX || a.peer_addr + a.len - 1 < a.peer_addr)
		return -EINVAL;
	/* The card DMAs wherever peer_addr points: as trusted as /dev/mem. */
	if (!capable(CAP_SYS_RAWIO))
		return -EPERM;
	if (!(p->caps & PROTOPCIEM_CAPS_P2P) || !p->mem_size)
		return -EOPNOTSUPP;
	if (a.card_offset > p->mem_size || a.len > p->mem_size - a.card_offset)
		return -EINVAL;
	read = a.op == PROTOPCIEM_CMD_P2P_READ;
	ppc_set_dma(p, read ? a.peer_addr : a.card_offset, read ? a.card_offset : a.peer_addr, a.len);
	return ppc_run(p, a.op, NULL);
}

static long ppc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	long (*fn)(struct ppc_dev *p, void __user *uarg);
	struct ppc_dev *p = file->private_data;
	long ret;

	switch (cmd) {
	case PROTOPCIEM_IOCTL_SUBMIT_FRAME:
		fn = ppc_submit_frame;
		break;
	case PROTOPCIEM_IOCTL_ARITH:
		fn = ppc_arith;
		break;
	case PROTOPCIEM_IOCTL_PROCESS:
		fn = ppc_process;
		break;
	case PROTOPCIEM_IOCTL_P2P:
		fn = ppc_p2p;
		break;
	default:
		return -ENOTTY;
	}
	ret = mutex_lock_interruptible(&p->lock);
	if (ret)
		return ret;
	ret = p->gone || ppc_dead(p) ? -ENODEV : fn(p, (void __user *)arg);
	mutex_unlock(&p->lock);
	return ret;
}

static int ppc_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct ppc_dev *p = file->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	int ret;

	if (vma->vm_pgoff || len > PAGE_ALIGN(PPC_FB_BYTES))
		return -EINVAL;
	mutex_lock(&p->lock);
	if (p->gone || ppc_dead(p))
		ret = -ENODEV;
	else
		ret = dma_mmap_coherent(&p->pdev->dev, vma, p->fb, p->fb_dma, len);
	mutex_unlock(&p->lock);
	return ret;
}

static const struct file_operations ppc_fops = {
	.owner = THIS_MODULE,
	.open = ppc_open,
	.release = ppc_file_release,
	.write = ppc_write,
	.unlocked_ioctl = ppc_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = ppc_mmap,
	.llseek = noop_llseek,
};

/* ---- sysfs: stats/ ---- */

#define PPC_STAT_ATTR(_name, _field)						\
static ssize_t _name##_show(struct device *dev, struct device_attribute *attr,	\
			    char *buf)						\
{										\
	struct ppc_dev *p = pci_get_drvdata(to_pci_dev(dev));			\
										\
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&p->_field));	\
}										\
static DEVICE_ATTR_RO(_name)

PPC_STAT_ATTR(operations, st_ops);
PPC_STAT_ATTR(interrupts, st_irqs);
PPC_STAT_ATTR(errors, st_errors);
PPC_STAT_ATTR(timeouts, st_timeouts);

static ssize_t irq_mode_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct pci_dev *pdev = to_pci_dev(dev);

	return sysfs_emit(buf, "%s\n", pdev->msi_enabled ? "msi" : "intx");
}
static DEVICE_ATTR_RO(irq_mode);

static struct attribute *ppc_stats_attrs[] = {
	&dev_attr_operations.attr,
	&dev_attr_interrupts.attr,
	&dev_attr_errors.attr,
	&dev_attr_timeouts.attr,
	&dev_attr_irq_mode.attr,
	NULL,
};

static const struct attribute_group ppc_stats_group = {
	.name = "stats",
	.attrs = ppc_stats_attrs,
};

static const struct attribute_group *ppc_groups[] = {
	&ppc_stats_group,
	NULL,
};

/* ---- probe / remove ---- */

#ifdef PCI_IRQ_INTX
#define PPC_IRQ_TYPES	(PCI_IRQ_MSI | PCI_IRQ_INTX)
#else
#define PPC_IRQ_TYPES	(PCI_IRQ_MSI | PCI_IRQ_LEGACY)
#endif

static int ppc_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct ppc_dev *p;
	u32 ver;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	if (pci_resource_len(pdev, PROTOPCIEM_BAR_REGS) < PROTOPCIEM_BAR_REGS_SIZE)
		return -ENODEV;
	ret = pcim_iomap_regions(pdev, BIT(PROTOPCIEM_BAR_REGS), PPC_NAME);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	pci_set_master(pdev);

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	kref_init(&p->ref);
	p->pdev = pci_dev_get(pdev);
	p->regs = pcim_iomap_table(pdev)[PROTOPCIEM_BAR_REGS];
	mutex_init(&p->lock);
	init_waitqueue_head(&p->wq);
	pci_set_drvdata(pdev, p);

	/* A card dead from the start is not bound: it would fail every call. */
	if (ppc_rd(p, PROTOPCIEM_REG_STATUS) == PPC_ALL_ONES) {
		dev_err(dev, "card reads all-ones: not binding\n");
		ret = -ENODEV;
		goto err_put;
	}
	p->ext = ppc_rd(p, PROTOPCIEM_REG_ID) == PROTOPCIEM_ID_VALUE;
	if (p->ext) {
		ver = ppc_rd(p, PROTOPCIEM_REG_VERSION);
		if (ver >> 16 != PROTOPCIEM_SPEC_VERSION_MAJOR) {
			dev_err(dev, "spec version %u.%u not supported\n", ver >> 16, ver & 0xffff);
			ret = -ENODEV;
			goto err_put;
		}
		p->caps = ppc_rd(p, PROTOPCIEM_REG_CAPS);
	}
	p->mem_size = pci_resource_len(pdev, PROTOPCIEM_BAR_MEM);

	p->cmdbuf = dma_alloc_coherent(dev, PROTOPCIEM_CMDBUF_MAX, &p->cmdbuf_dma, GFP_KERNEL);
	if (!p->cmdbuf) {
		ret = -ENOMEM;
		goto err_put;
	}
	p->fb = dma_alloc_coherent(dev, PPC_FB_BYTES, &p->fb_dma, GFP_KERNEL);
	if (!p->fb) {
		ret = -ENOMEM;
		goto err_free_cmdbuf;
	}

	ret = pci_alloc_irq_vectors(pdev, 1, 1, PPC_IRQ_TYPES);
	if (ret < 0)
		goto err_free_fb;
	p->irq = pci_irq_vector(pdev, 0);
	ppc_reset(p);
	ret = request_irq(p->irq, ppc_irq, pdev->msi_enabled ? 0 : IRQF_SHARED, PPC_NAME, p);
	if (ret)
		goto err_free_vectors;

	p->index = ida_alloc(&ppc_ida, GFP_KERNEL);
	if (p->index < 0) {
		ret = p->index;
		goto err_free_irq;
	}
	if (p->index)
		snprintf(p->name, sizeof(p->name), PPC_NAME "%d", p->index);
	else
		strscpy(p->name, PPC_NAME, sizeof(p->name));
	p->misc.minor = MISC_DYNAMIC_MINOR;
	p->misc.name = p->name;
	p->misc.fops = &ppc_fops;
	p->misc.parent = dev;
	ret = misc_register(&p->misc);
	if (ret)
		goto err_free_index;

	dev_info(dev, "bound: /dev/%s, %s irq %d, spec %s, cmdbuf %u KiB, frames 2 x %u\n",
		 p->name, pdev->msi_enabled ? "MSI" : "INTx", p->irq,
		 p->ext ? "1.x" : "upstream", PROTOPCIEM_CMDBUF_MAX / 1024, PROTOPCIEM_FB_SIZE);
	return 0;

err_free_index:
	ida_free(&ppc_ida, p->index);
err_free_irq:
	free_irq(p->irq, p);
err_free_vectors:
	pci_free_irq_vectors(pdev);
err_free_fb:
	dma_free_coherent(dev, PPC_FB_BYTES, p->fb, p->fb_dma);
err_free_cmdbuf:
	dma_free_coherent(dev, PROTOPCIEM_CMDBUF_MAX, p->cmdbuf, p->cmdbuf_dma);
err_put:
	pci_set_drvdata(pdev, NULL);
	kref_put(&p->ref, ppc_release);
	return ret;
}

static void ppc_remove(struct pci_dev *pdev)
{
	struct ppc_dev *p = pci_get_drvdata(pdev);
	struct device *dev = &pdev->dev;

	/* Wake a waiter first: it returns -ENODEV and lets go of the lock. */
	WRITE_ONCE(p->gone, true);
	wake_up_all(&p->wq);
	misc_deregister(&p->misc);
	mutex_lock(&p->lock);
	/* No user mapping may outlive the frames. */
	if (p->mapping)
		unmap_mapping_range(p->mapping, 0, 0, 1);
	mutex_unlock(&p->lock);
	ida_free(&ppc_ida, p->index);
	free_irq(p->irq, p);
	pci_free_irq_vectors(pdev);
	dma_free_coherent(dev, PPC_FB_BYTES, p->fb, p->fb_dma);
	dma_free_coherent(dev, PROTOPCIEM_CMDBUF_MAX, p->cmdbuf, p->cmdbuf_dma);
	pci_set_drvdata(pdev, NULL);
	dev_info(dev, "removed\n");
	kref_put(&p->ref, ppc_release);
}

static const struct pci_device_id ppc_ids[] = {
	{ PCI_DEVICE(PROTOPCIEM_PCI_VENDOR_ID, PROTOPCIEM_PCI_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ppc_ids);

static struct pci_driver ppc_driver = {
	.name = PPC_NAME,
	.id_table = ppc_ids,
	.probe = ppc_probe,
	.remove = ppc_remove,
	.dev_groups = ppc_groups,
};
module_pci_driver(ppc_driver);

MODULE_DESCRIPTION("ProtoPCIem card driver");
MODULE_LICENSE("GPL");
