// SPDX-License-Identifier: GPL-2.0
/*
 * A plain PCI driver for the VM tests: it binds by ID through the PCI core,
 * maps BAR0 with pcim_iomap and knows nothing of pciem. Tests drive it
 * through debugfs, one folder per bound device:
 *   /sys/kernel/debug/pciem_testdrv/DDDDD:BB:SS.F/
 *     writes   write "N OFFSET" : writel() 0..N-1 to BAR0 + OFFSET, in order
 *     read     write "OFFSET SIZE", then read: the value, as 0x%llx
 *     wbyte    write "OFFSET VALUE": one writeb()
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/uaccess.h>

#define TESTDRV_VENDOR	0x1f0c
#define TESTDRV_DEVICE	0xfff0

struct testdrv {
	struct pci_dev *pdev;
	void __iomem *bar0;
	resource_size_t bar0_len;
	struct dentry *dir;
	struct mutex lock;	/* last_read */
	u64 last_read;
};

static struct dentry *testdrv_root;

static int testdrv_parse2(const char __user *ubuf, size_t len, u64 *a, u64 *b)
{
	char buf[64];

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	return sscanf(buf, "%llu %lli", a, b) == 2 ? 0 : -EINVAL;
}

static ssize_t testdrv_writes(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct testdrv *td = f->private_data;
	u64 n, off, i;
	int ret;

	ret = testdrv_parse2(ubuf, len, &n, &off);
	if (ret)
		return ret;
	if (off + 4 > td->bar0_len)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		writel((u32)i, td->bar0 + off);
		if (!(i & 1023))
			cond_resched();
	}
	return len;
}

static ssize_t testdrv_wbyte(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct testdrv *td = f->private_data;
	u64 off, val;
	int ret;

	ret = testdrv_parse2(ubuf, len, &off, &val);
	if (ret)
		return ret;
	if (off >= td->bar0_len)
		return -EINVAL;
	writeb((u8)val, td->bar0 + off);
	return len;
}

static ssize_t testdrv_read_set(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct testdrv *td = f->private_data;
	u64 off, size, val;
	int ret;

	ret = testdrv_parse2(ubuf, len, &off, &size);
	if (ret)
		return ret;
	if (off + size > td->bar0_len)
		return -EINVAL;
	switch (size) {
	case 1:
		val = readb(td->bar0 + off);
		break;
	case 2:
		val = readw(td->bar0 + off);
		break;
	case 4:
		val = readl(td->bar0 + off);
		break;
	case 8:
		val = readq(td->bar0 + off);
		break;
	default: return -EINVAL;
	}
	mutex_lock(&td->lock);
	td->last_read = val;
	mutex_unlock(&td->lock);
	return len;
}

static ssize_t testdrv_read_get(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	struct testdrv *td = f->private_data;
	char buf[32];
	int n;

	mutex_lock(&td->lock);
	n = scnprintf(buf, sizeof(buf), "0x%llx\n", td->last_read);
	mutex_unlock(&td->lock);
	return simple_read_from_buffer(ubuf, len, pos, buf, n);
}

static const struct file_operations testdrv_writes_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = testdrv_writes,
};

static const struct file_operations testdrv_wbyte_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = testdrv_wbyte,
};

static const struct file_operations testdrv_read_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = testdrv_read_set,
	.read = testdrv_read_get,
};

static int testdrv_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct testdrv *td;
	int ret;

	td = devm_kzalloc(&pdev->dev, sizeof(*td), GFP_KERNEL);
	if (!td)
		return -ENOMEM;
	mutex_init(&td->lock);
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	td->bar0 = pcim_iomap(pdev, 0, 0);
	if (!td->bar0)
		return -ENOMEM;
	td->bar0_len = pci_resource_len(pdev, 0);
	td->pdev = pdev;
	td->dir = debugfs_create_dir(pci_name(pdev), testdrv_root);
	debugfs_create_file("writes", 0200, td->dir, td, &testdrv_writes_fops);
	debugfs_create_file("wbyte", 0200, td->dir, td, &testdrv_wbyte_fops);
	debugfs_create_file("read", 0600, td->dir, td, &testdrv_read_fops);
	pci_set_drvdata(pdev, td);
	dev_info(&pdev->dev, "bound, BAR0 %pR\n", &pdev->resource[0]);
	return 0;
}

static void testdrv_remove(struct pci_dev *pdev)
{
	struct testdrv *td = pci_get_drvdata(pdev);

	debugfs_remove_recursive(td->dir);
	/* A surprise removal reads all-ones here, never faults. */
	dev_info(&pdev->dev, "removed, BAR0[0] reads 0x%x\n", readl(td->bar0));
}

static const struct pci_device_id testdrv_ids[] = {
	{ PCI_DEVICE(TESTDRV_VENDOR, TESTDRV_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, testdrv_ids);

static struct pci_driver testdrv_driver = {
	.name = "pciem_testdrv",
	.id_table = testdrv_ids,
	.probe = testdrv_probe,
	.remove = testdrv_remove,
};

static int __init testdrv_init(void)
{
	int ret;

	testdrv_root = debugfs_create_dir("pciem_testdrv", NULL);
	ret = pci_register_driver(&testdrv_driver);
	if (ret)
		debugfs_remove_recursive(testdrv_root);
	return ret;
}

static void __exit testdrv_exit(void)
{
	pci_unregister_driver(&testdrv_driver);
	debugfs_remove_recursive(testdrv_root);
}

module_init(testdrv_init);
module_exit(testdrv_exit);
MODULE_DESCRIPTION("pciem test driver: a plain PCI driver the VM tests bind");
MODULE_LICENSE("GPL");
