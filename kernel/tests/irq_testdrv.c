// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_irqdrv: a plain PCI driver for the interrupt tests. It binds to
 * 1f0c:fff1 through the PCI core, takes its vectors with
 * pci_alloc_irq_vectors() and request_irq(), and knows nothing of pciem.
 * Tests drive it through debugfs, one folder per bound device:
 *   /sys/kernel/debug/pciem_irqdrv/DDDDD:BB:SS.F/
 *     mode       write "intx", "msi N", "msix N" or "none" (frees the
 *                vectors held, then allocates N and requests each);
 *                read "MODE N"
 *     counts     read: handler runs per vector, space separated
 *     none       read: INTx handler runs that found no cause (IRQ_NONE)
 *     irqs       read: the Linux irq of each vector
 *     reset      write anything: all counts to 0
 *     mask       write "V": disable_irq() of vector V, with
 *                IRQ_DISABLE_UNLAZY so the mask reaches the device at once
 *     mask_lazy  write "V": disable_irq() as drivers get it by default
 *     unmask     write "V": enable_irq()
 *     ack        write 0 or 1: whether the INTx handler clears the cause
 *     touch      write 0 or 1: whether every handler run also reads SCRATCH
 *     ioremap    write "N HEX": N times, from the writer's context, map
 *                the first page of BAR0 afresh (ioremap), read SCRATCH
 *                there and unmap it; -EIO unless every read gave HEX
 * BAR0 registers:
 *   0x00 CAUSE    the card sets it non-zero with INTx; the INTx handler
 *                 reads it (0: not this device, IRQ_NONE) and, with ack 1,
 *                 writes 0 to clear it
 *   0x04 SCRATCH  read by the handlers (touch) and the ioremap loop
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/irq.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX PCI_IRQ_LEGACY
#endif

#define IRQDRV_VENDOR	0x1f0c
#define IRQDRV_DEVICE	0xfff1
#define IRQDRV_CAUSE	0x00
#define IRQDRV_SCRATCH	0x04
#define IRQDRV_MAX_VEC	64

enum irqdrv_mode { IRQDRV_NONE, IRQDRV_INTX, IRQDRV_MSI, IRQDRV_MSIX };

static const char * const irqdrv_mode_names[] = { "none", "intx", "msi", "msix" };

struct irqdrv;

struct irqdrv_vec {
	struct irqdrv *drv;
	unsigned int irq;
	bool requested;
	bool masked;		/* by the mask knobs: enable_irq() owed */
	atomic64_t count;
};

struct irqdrv {
	struct pci_dev *pdev;
	void __iomem *bar0;
	struct dentry *dir;
	struct mutex lock;	/* mode, nvec, vec[] allocation, masks */
	enum irqdrv_mode mode;
	unsigned int nvec;
	struct irqdrv_vec *vec;
	atomic64_t none;
	bool ack;		/* READ_ONCE in the handler */
	bool touch;		/* READ_ONCE in the handler */
	char name[32];
};

static struct dentry *irqdrv_root;

static irqreturn_t irqdrv_handler(int irq, void *data)
{
	struct irqdrv_vec *v = data;
	struct irqdrv *d = v->drv;

	if (v == &d->vec[0] && READ_ONCE(d->mode) == IRQDRV_INTX) {
		u32 cause = readl(d->bar0 + IRQDRV_CAUSE);

		/* INTx may be shared: no cause (or a dead card) is not ours. */
		if (!cause || cause == ~0U) {
			atomic64_inc(&d->none);
			return IRQ_NONE;
		}
		if (READ_ONCE(d->ack))
			writel(0, d->bar0 + IRQDRV_CAUSE);
	}
	if (READ_ONCE(d->touch))
		readl(d->bar0 + IRQDRV_SCRATCH);
	atomic64_inc(&v->count);
	return IRQ_HANDLED;
}

static void irqdrv_free_vectors(struct irqdrv *d)
{
	unsigned int i;

	lockdep_assert_held(&d->lock);
	for (i = 0; i < d->nvec; i++) {
		struct irqdrv_vec *v = &d->vec[i];

		if (!v->requested)
			continue;
		if (v->masked)
			enable_irq(v->irq);
		free_irq(v->irq, v);
	}
	if (d->mode != IRQDRV_NONE)
		pci_free_irq_vectors(d->pdev);
	kfree(d->vec);
	d->vec = NULL;
	d->nvec = 0;
	WRITE_ONCE(d->mode, IRQDRV_NONE);
}

static int irqdrv_set_mode(struct irqdrv *d, enum irqdrv_mode mode, unsigned int n)
{
	static const unsigned int types[] = {
		[IRQDRV_INTX] = PCI_IRQ_INTX, [IRQDRV_MSI] = PCI_IRQ_MSI, [IRQDRV_MSIX] = PCI_IRQ_MSIX,
	};
	unsigned int i;
	int ret;

	lockdep_assert_held(&d->lock);
	irqdrv_free_vectors(d);
	if (mode == IRQDRV_NONE)
		return 0;
	if (mode == IRQDRV_INTX)
		n = 1;
	if (!n || n > IRQDRV_MAX_VEC)
		return -EINVAL;
	d->vec = kcalloc(n, sizeof(*d->vec), GFP_KERNEL);
	if (!d->vec)
		return -ENOMEM;
	ret = pci_alloc_irq_vectors(d->pdev, n, n, types[mode]);
	if (ret < 0) {
		kfree(d->vec);
		d->vec = NULL;
		return ret;
	}
	d->nvec = n;
	WRITE_ONCE(d->mode, mode);
	for (i = 0; i < n; i++) {
		struct irqdrv_vec *v = &d->vec[i];

		v->drv = d;
		v->irq = pci_irq_vector(d->pdev, i);
		ret = request_irq(v->irq, irqdrv_handler, mode == IRQDRV_INTX ? IRQF_SHARED : 0,
				  d->name, v);
		if (ret) {
			irqdrv_free_vectors(d);
			return ret;
		}
		v->requested = true;
	}
	return 0;
}

static ssize_t irqdrv_copy_cmd(char *buf, size_t size, const char __user *ubuf, size_t len)
{
	if (len >= size)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	return 0;
}

static ssize_t irqdrv_mode_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;
	char buf[32], name[8];
	unsigned int n = 1, m;
	ssize_t ret;

	ret = irqdrv_copy_cmd(buf, sizeof(buf), ubuf, len);
	if (ret)
		return ret;
	if (sscanf(buf, "%7s %u", name, &n) < 1)
		return -EINVAL;
	for (m = 0; m < ARRAY_SIZE(irqdrv_mode_names); m++)
		if (!strcmp(name, irqdrv_mode_names[m]))
			break;
	if (m == ARRAY_SIZE(irqdrv_mode_names))
		return -EINVAL;
	mutex_lock(&d->lock);
	ret = irqdrv_set_mode(d, m, n);
	mutex_unlock(&d->lock);
	return ret ?: len;
}

static ssize_t irqdrv_mode_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;
	char buf[32];
	int n;

	mutex_lock(&d->lock);
	n = scnprintf(buf, sizeof(buf), "%s %u\n", irqdrv_mode_names[d->mode], d->nvec);
	mutex_unlock(&d->lock);
	return simple_read_from_buffer(ubuf, len, pos, buf, n);
}

/* counts, irqs: one number per vector. */
static ssize_t irqdrv_list_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos,
				bool irqs)
{
	struct irqdrv *d = f->private_data;
	size_t size = IRQDRV_MAX_VEC * 24 + 2;
	unsigned int i;
	ssize_t ret;
	char *buf;
	int n = 0;

	buf = kmalloc(size, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	mutex_lock(&d->lock);
	for (i = 0; i < d->nvec; i++)
		n += scnprintf(buf + n, size - n, i ? " %llu" : "%llu",
			       irqs ? (unsigned long long)d->vec[i].irq :
				      (unsigned long long)atomic64_read(&d->vec[i].count));
	mutex_unlock(&d->lock);
	n += scnprintf(buf + n, size - n, "\n");
	ret = simple_read_from_buffer(ubuf, len, pos, buf, n);
	kfree(buf);
	return ret;
}

static ssize_t irqdrv_counts_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	return irqdrv_list_read(f, ubuf, len, pos, false);
}

static ssize_t irqdrv_irqs_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	return irqdrv_list_read(f, ubuf, len, pos, true);
}

static ssize_t irqdrv_none_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;
	char buf[24];
	int n;

	n = scnprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)atomic64_read(&d->none));
	return simple_read_from_buffer(ubuf, len, pos, buf, n);
}

static ssize_t irqdrv_reset_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;
	unsigned int i;

	mutex_lock(&d->lock);
	for (i = 0; i < d->nvec; i++)
		atomic64_set(&d->vec[i].count, 0);
	atomic64_set(&d->none, 0);
	mutex_unlock(&d->lock);
	return len;
}

enum irqdrv_mask_op { IRQDRV_MASK, IRQDRV_MASK_LAZY, IRQDRV_UNMASK };

static ssize_t irqdrv_mask_op(struct file *f, const char __user *ubuf, size_t len,
			      enum irqdrv_mask_op op)
{
	struct irqdrv *d = f->private_data;
	struct irqdrv_vec *v;
	unsigned int i;
	char buf[16];
	ssize_t ret;

	ret = irqdrv_copy_cmd(buf, sizeof(buf), ubuf, len);
	if (ret)
		return ret;
	if (kstrtouint(strim(buf), 0, &i))
		return -EINVAL;
	mutex_lock(&d->lock);
	if (i >= d->nvec) {
		ret = -EINVAL;
		goto out;
	}
	v = &d->vec[i];
	/* Unbalanced disable/enable would WARN: the knobs only toggle. */
	if (op == IRQDRV_UNMASK && v->masked) {
		enable_irq(v->irq);
		irq_clear_status_flags(v->irq, IRQ_DISABLE_UNLAZY);
		v->masked = false;
	} else if (op != IRQDRV_UNMASK && !v->masked) {
		if (op == IRQDRV_MASK)
			irq_set_status_flags(v->irq, IRQ_DISABLE_UNLAZY);
		disable_irq(v->irq);
		v->masked = true;
	}
out:
	mutex_unlock(&d->lock);
	return ret ?: len;
}

static ssize_t irqdrv_mask_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	return irqdrv_mask_op(f, ubuf, len, IRQDRV_MASK);
}

static ssize_t irqdrv_mask_lazy_write(struct file *f, const char __user *ubuf, size_t len,
				      loff_t *pos)
{
	return irqdrv_mask_op(f, ubuf, len, IRQDRV_MASK_LAZY);
}

static ssize_t irqdrv_unmask_write(struct file *f, const char __user *ubuf, size_t len,
				   loff_t *pos)
{
	return irqdrv_mask_op(f, ubuf, len, IRQDRV_UNMASK);
}

static ssize_t irqdrv_bool_write(const char __user *ubuf, size_t len, bool *knob)
{
	bool val;
	int ret;

	ret = kstrtobool_from_user(ubuf, len, &val);
	if (ret)
		return ret;
	WRITE_ONCE(*knob, val);
	return len;
}

static ssize_t irqdrv_ack_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;

	return irqdrv_bool_write(ubuf, len, &d->ack);
}

static ssize_t irqdrv_touch_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct irqdrv *d = f->private_data;

	return irqdrv_bool_write(ubuf, len, &d->touch);
}

/*
 * Fresh mappings of BAR0 in a loop, as drivers make them at probe and in
 * their error paths, while interrupts (whose handlers read the BAR) keep
 * arriving on this CPU.
 */
static ssize_t irqdrv_ioremap_write(struct file *f, const char __user *ubuf, size_t len,
				    loff_t *pos)
{
	struct irqdrv *d = f->private_data;
	unsigned int n, want, bad = 0;
	void __iomem *p;
	char buf[32];
	ssize_t ret;

	ret = irqdrv_copy_cmd(buf, sizeof(buf), ubuf, len);
	if (ret)
		return ret;
	if (sscanf(buf, "%u %x", &n, &want) != 2)
		return -EINVAL;
	while (n--) {
		p = ioremap(pci_resource_start(d->pdev, 0), PAGE_SIZE);
		if (!p)
			return -ENOMEM;
		bad += readl(p + IRQDRV_SCRATCH) != want;
		iounmap(p);
		cond_resched();
	}
	return bad ? -EIO : len;
}

#define IRQDRV_FOPS(_name, _read, _write)		\
static const struct file_operations _name = {		\
	.owner = THIS_MODULE,				\
	.open = simple_open,				\
	.read = _read,					\
	.write = _write,				\
}

IRQDRV_FOPS(irqdrv_mode_fops, irqdrv_mode_read, irqdrv_mode_write);
IRQDRV_FOPS(irqdrv_counts_fops, irqdrv_counts_read, NULL);
IRQDRV_FOPS(irqdrv_irqs_fops, irqdrv_irqs_read, NULL);
IRQDRV_FOPS(irqdrv_none_fops, irqdrv_none_read, NULL);
IRQDRV_FOPS(irqdrv_reset_fops, NULL, irqdrv_reset_write);
IRQDRV_FOPS(irqdrv_mask_fops, NULL, irqdrv_mask_write);
IRQDRV_FOPS(irqdrv_mask_lazy_fops, NULL, irqdrv_mask_lazy_write);
IRQDRV_FOPS(irqdrv_unmask_fops, NULL, irqdrv_unmask_write);
IRQDRV_FOPS(irqdrv_ack_fops, NULL, irqdrv_ack_write);
IRQDRV_FOPS(irqdrv_touch_fops, NULL, irqdrv_touch_write);
IRQDRV_FOPS(irqdrv_ioremap_fops, NULL, irqdrv_ioremap_write);

static int irqdrv_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct irqdrv *d;
	int ret;

	d = devm_kzalloc(&pdev->dev, sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	mutex_init(&d->lock);
	d->pdev = pdev;
	snprintf(d->name, sizeof(d->name), "pciem_irqdrv@%s", pci_name(pdev));
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	d->bar0 = pcim_iomap(pdev, 0, 0);
	if (!d->bar0)
		return -ENOMEM;
	/* MSI and MSI-X are memory writes: the function must master the bus. */
	pci_set_master(pdev);

	d->dir = debugfs_create_dir(pci_name(pdev), irqdrv_root);
	debugfs_create_file("mode", 0600, d->dir, d, &irqdrv_mode_fops);
	debugfs_create_file("counts", 0400, d->dir, d, &irqdrv_counts_fops);
	debugfs_create_file("irqs", 0400, d->dir, d, &irqdrv_irqs_fops);
	debugfs_create_file("none", 0400, d->dir, d, &irqdrv_none_fops);
	debugfs_create_file("reset", 0200, d->dir, d, &irqdrv_reset_fops);
	debugfs_create_file("mask", 0200, d->dir, d, &irqdrv_mask_fops);
	debugfs_create_file("mask_lazy", 0200, d->dir, d, &irqdrv_mask_lazy_fops);
	debugfs_create_file("unmask", 0200, d->dir, d, &irqdrv_unmask_fops);
	debugfs_create_file("ack", 0200, d->dir, d, &irqdrv_ack_fops);
	debugfs_create_file("touch", 0200, d->dir, d, &irqdrv_touch_fops);
	debugfs_create_file("ioremap", 0200, d->dir, d, &irqdrv_ioremap_fops);
	pci_set_drvdata(pdev, d);
	dev_info(&pdev->dev, "bound, INTx irq %u\n", pdev->irq);
	return 0;
}

static void irqdrv_remove(struct pci_dev *pdev)
{
	struct irqdrv *d = pci_get_drvdata(pdev);

	/* No debugfs call runs after this: the vectors can go. */
	debugfs_remove_recursive(d->dir);
	mutex_lock(&d->lock);
	irqdrv_free_vectors(d);
	mutex_unlock(&d->lock);
	dev_info(&pdev->dev, "removed\n");
}

static const struct pci_device_id irqdrv_ids[] = {
	{ PCI_DEVICE(IRQDRV_VENDOR, IRQDRV_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, irqdrv_ids);

static struct pci_driver irqdrv_driver = {
	.name = "pciem_irqdrv",
	.id_table = irqdrv_ids,
	.probe = irqdrv_probe,
	.remove = irqdrv_remove,
};

static int __init irqdrv_init(void)
{
	int ret;

	irqdrv_root = debugfs_create_dir("pciem_irqdrv", NULL);
	ret = pci_register_driver(&irqdrv_driver);
	if (ret)
		debugfs_remove_recursive(irqdrv_root);
	return ret;
}

static void __exit irqdrv_exit(void)
{
	pci_unregister_driver(&irqdrv_driver);
	debugfs_remove_recursive(irqdrv_root);
}

module_init(irqdrv_init);
module_exit(irqdrv_exit);
MODULE_DESCRIPTION("pciem test driver: a plain PCI driver taking INTx, MSI or MSI-X vectors");
MODULE_LICENSE("GPL");
