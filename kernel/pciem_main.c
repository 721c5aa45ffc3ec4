// SPDX-License-Identifier: GPL-2.0
/*
 * pciem: synthetic PCIe devices driven from userspace.
 *
 * Entry points and the file interface. Opening /dev/pciem requires
 * CAP_SYS_ADMIN: whoever holds the fd makes devices appear on the host's
 * PCI bus and answers a driver's accesses. One open describes one device
 * (a slot of up to eight functions); REGISTER hands out an instance fd on
 * which the card maps the BARs; closing the /dev/pciem fd removes the
 * device. The ioctls and their errors are documented in docs/uapi.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "pciem.h"

#define PCIEM_VERSION "0.2.0"

static int pciem_open(struct inode *inode, struct file *file)
{
	struct pciem_dev *dev;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	dev = pciem_dev_alloc();
	if (!dev)
		return -ENOMEM;
	file->private_data = dev;
	return 0;
}

static int pciem_release(struct inode *inode, struct file *file)
{
	struct pciem_dev *dev = file->private_data;

	pciem_dev_remove(dev);
	pciem_dev_put(dev);
	return 0;
}

/* The ring is the only thing at offset 0 of the /dev/pciem fd. */
static int pciem_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct pciem_dev *dev = file->private_data;

	if (vma->vm_pgoff != 0)
		return -EINVAL;
	return remap_vmalloc_range(vma, dev->ring, 0);
}

/* BARs at page offset func * 8 + bar of the instance fd. */
static int pciem_instance_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct pciem_dev *dev = file->private_data;
	unsigned long func = vma->vm_pgoff >> 3, b = vma->vm_pgoff & 7;
	struct pciem_bar *bar;

	if (func >= PCIEM_MAX_FUNCTIONS || b >= PCIEM_NUM_BARS)
		return -EINVAL;
	bar = &dev->func[func].bar[b];
	/* mem is set at REGISTER, before this fd exists, and freed at the last put. */
	if (!dev->func[func].present || !bar->mem)
		return -ENODEV;
	if (vma->vm_end - vma->vm_start > PAGE_ALIGN(bar->size))
		return -EINVAL;
	return remap_vmalloc_range(vma, bar->mem, 0);
}

static int pciem_instance_release(struct inode *inode, struct file *file)
{
	pciem_dev_put(file->private_data);
	return 0;
}

static const struct file_operations pciem_instance_fops = {
	.owner = THIS_MODULE,
	.mmap = pciem_instance_mmap,
	.release = pciem_instance_release,
	.llseek = noop_llseek,
};

static long pciem_ioctl_register(struct pciem_dev *dev)
{
	struct file *file;
	int fd, ret;

	fd = get_unused_fd_flags(O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fd;
	pciem_dev_get(dev);
	file = anon_inode_getfile("pciem-instance", &pciem_instance_fops, dev,
				  O_RDWR | O_CLOEXEC);
	if (IS_ERR(file)) {
		pciem_dev_put(dev);
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	ret = pciem_dev_register(dev);
	if (ret) {
		fput(file);		/* drops the reference taken above */
		put_unused_fd(fd);
		return ret;
	}
	fd_install(fd, file);
	return fd;
}

static long pciem_ioctl_get_info(void __user *uarg)
{
	struct pciem_info info;
	u32 argsz, flags;

	if (get_user(argsz, (u32 __user *)uarg) ||
	    get_user(flags, (u32 __user *)uarg + 1))
		return -EFAULT;
	if (argsz < sizeof(info) || flags)
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.argsz = sizeof(info);
	info.api_version = PCIEM_API_VERSION;
	info.features = PCIEM_FEATURE_COMPAT_RING | PCIEM_FEATURE_LOSSLESS_RING |
			PCIEM_FEATURE_SYNC_READ | PCIEM_FEATURE_STATS |
			PCIEM_FEATURE_CONFIG_EVENTS | PCIEM_FEATURE_IRQ |
			PCIEM_FEATURE_DMA;
	info.max_functions = PCIEM_MAX_FUNCTIONS;
	info.ring_size = PCIEM_RING_SIZE;
	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

/*
 * Copies in an extension ioctl's argument: argsz must cover the struct
 * this kernel knows; a larger argsz (a newer userspace) is accepted only
 * if the bytes beyond are zero.
 */
int pciem_copy_ext_arg(void *karg, size_t ksize, const void __user *uarg)
{
	u32 argsz;
	int ret;

	if (get_user(argsz, (const u32 __user *)uarg))
		return -EFAULT;
	if (argsz < ksize)
		return -EINVAL;
	if (argsz > ksize) {
		ret = check_zeroed_user(uarg + ksize, argsz - ksize);
		if (ret <= 0)
			return ret ?: -E2BIG;
	}
	return copy_from_user(karg, uarg, ksize) ? -EFAULT : 0;
}

static long pciem_ioctl_ext(struct pciem_dev *dev, unsigned int cmd, void __user *uarg)
{
	union {
		struct pciem_ring_mode ring;
		struct pciem_read_region region;
		struct pciem_read_reply reply;
		struct pciem_stats_query stats;
	} a;
	int ret;

	ret = pciem_copy_ext_arg(&a, _IOC_SIZE(cmd), uarg);
	if (ret)
		return ret;
	switch (cmd) {
	case PCIEM_IOCTL_SET_RING_MODE:
		return pciem_dev_set_ring_mode(dev, &a.ring);
	case PCIEM_IOCTL_SET_READ_REGION:
		return pciem_dev_set_read_region(dev, &a.region);
	case PCIEM_IOCTL_COMPLETE_READ:
		return pciem_dev_complete_read(dev, &a.reply);
	case PCIEM_IOCTL_GET_STATS:
		if (a.stats.flags || memchr_inv(a.stats.reserved, 0, sizeof(a.stats.reserved)))
			return -EINVAL;
		pciem_dev_get_stats(dev, &a.stats);
		return copy_to_user(uarg, &a.stats, sizeof(a.stats)) ? -EFAULT : 0;
	}
	return -ENOTTY;
}

/* Room for the largest argument of the compatible ioctls. */
union pciem_ioctl_arg {
	struct pciem_create_device create;
	struct pciem_bar_config bar;
	struct pciem_cap_config cap;
	struct pciem_config_space config;
	struct pciem_bar_info_query bar_info;
	struct pciem_eventfd_config eventfd;
	struct pciem_trace_bar trace;
};

static long pciem_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct pciem_dev *dev = file->private_data;
	void __user *uarg = (void __user *)arg;
	union pciem_ioctl_arg a;
	long ret;

	switch (cmd) {
	case PCIEM_IOCTL_REGISTER:
		return pciem_ioctl_register(dev);
	case PCIEM_IOCTL_START:
		return pciem_dev_start(dev);
	case PCIEM_IOCTL_GET_INFO:
		return pciem_ioctl_get_info(uarg);
	case PCIEM_IOCTL_SET_RING_MODE:
	case PCIEM_IOCTL_SET_READ_REGION:
	case PCIEM_IOCTL_COMPLETE_READ:
	case PCIEM_IOCTL_GET_STATS:
		return pciem_ioctl_ext(dev, cmd, uarg);
	case PCIEM_IOCTL_CREATE_DEVICE:
	case PCIEM_IOCTL_ADD_BAR:
	case PCIEM_IOCTL_ADD_CAPABILITY:
	case PCIEM_IOCTL_SET_CONFIG:
	case PCIEM_IOCTL_GET_BAR_INFO:
	case PCIEM_IOCTL_SET_EVENTFD:
	case PCIEM_IOCTL_TRACE_BAR:
		break;
	case PCIEM_IOCTL_INJECT_IRQ:
	case PCIEM_IOCTL_SET_IRQFD:
		return pciem_irq_ioctl(dev, cmd, uarg);
	case PCIEM_IOCTL_DMA:
	case PCIEM_IOCTL_DMA_ATOMIC:
	case PCIEM_IOCTL_P2P:
	case PCIEM_IOCTL_DMA_INDIRECT:
		return pciem_dma_ioctl(dev, cmd, uarg);
	default:
		/* Extension ranges: 48..55 interrupts, 56..63 DMA. */
		if (_IOC_TYPE(cmd) == PCIEM_IOCTL_MAGIC && _IOC_NR(cmd) >= 48 && _IOC_NR(cmd) <= 55)
			return pciem_irq_ioctl(dev, cmd, uarg);
		if (_IOC_TYPE(cmd) == PCIEM_IOCTL_MAGIC && _IOC_NR(cmd) >= 56 && _IOC_NR(cmd) <= 63)
			return pciem_dma_ioctl(dev, cmd, uarg);
		return -ENOTTY;
	}

	/* Each command number encodes its argument's size. */
	BUILD_BUG_ON(sizeof(a) > 64);
	if (copy_from_user(&a, uarg, _IOC_SIZE(cmd)))
		return -EFAULT;

	switch (cmd) {
	case PCIEM_IOCTL_CREATE_DEVICE:
		return pciem_dev_create_func(dev, &a.create);
	case PCIEM_IOCTL_ADD_BAR:
		return pciem_dev_add_bar(dev, &a.bar);
	case PCIEM_IOCTL_ADD_CAPABILITY:
		return pciem_dev_add_cap(dev, &a.cap);
	case PCIEM_IOCTL_SET_CONFIG:
		return pciem_dev_set_config(dev, &a.config);
	case PCIEM_IOCTL_SET_EVENTFD:
		if (a.eventfd.reserved)
			return -EINVAL;
		return pciem_dev_set_eventfd(dev, a.eventfd.eventfd);
	case PCIEM_IOCTL_TRACE_BAR:
		ret = pciem_dev_trace_bar(dev, &a.trace);
		break;
	case PCIEM_IOCTL_GET_BAR_INFO:
		ret = pciem_dev_bar_info(dev, &a.bar_info);
		if (!ret && copy_to_user(uarg, &a.bar_info, sizeof(a.bar_info)))
			ret = -EFAULT;
		break;
	default:
		ret = -ENOTTY;
	}
	return ret;
}

static const struct file_operations pciem_fops = {
	.owner = THIS_MODULE,
	.open = pciem_open,
	.release = pciem_release,
	.mmap = pciem_mmap,
	.unlocked_ioctl = pciem_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice pciem_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "pciem",
	.fops = &pciem_fops,
	.mode = 0600,
};

static int __init pciem_init(void)
{
	int ret;

	ret = pciem_trace_init();
	if (ret) {
		pr_err("cannot set up MMIO tracing: %d\n", ret);
		return ret;
	}
	ret = misc_register(&pciem_miscdev);
	if (ret) {
		pr_err("cannot register /dev/pciem: %d\n", ret);
		goto err_trace;
	}
	pr_info("version " PCIEM_VERSION " loaded\n");
	return 0;

err_trace:
	pciem_trace_exit();
	return ret;
}

static void __exit pciem_exit(void)
{
	misc_deregister(&pciem_miscdev);
	pciem_trace_exit();
}

module_init(pciem_init);
module_exit(pciem_exit);

MODULE_DESCRIPTION("Synthetic PCIe devices driven from userspace");
MODULE_VERSION(PCIEM_VERSION);
MODULE_LICENSE("GPL");
