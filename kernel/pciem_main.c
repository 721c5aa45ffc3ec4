// SPDX-License-Identifier: GPL-2.0
/*
 * pciem: synthetic PCIe devices driven from userspace.
 *
 * This file holds the module's entry points and the /dev/pciem character
 * device. Opening it requires CAP_SYS_ADMIN: whoever holds the fd can make
 * devices appear on the host's PCI bus and answer a driver's accesses.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

#define PCIEM_VERSION "0.1.0"

static int pciem_open(struct inode *inode, struct file *file)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	return 0;
}

static long pciem_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	/* The device-creation ioctls arrive with the core framework. */
	return -ENOTTY;
}

static const struct file_operations pciem_fops = {
	.owner = THIS_MODULE,
	.open = pciem_open,
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

	ret = misc_register(&pciem_miscdev);
	if (ret) {
		pr_err("cannot register /dev/pciem: %d\n", ret);
		return ret;
	}
	pr_info("version " PCIEM_VERSION " loaded\n");
	return 0;
}

static void __exit pciem_exit(void)
{
	misc_deregister(&pciem_miscdev);
}

module_init(pciem_init);
module_exit(pciem_exit);

MODULE_DESCRIPTION("Synthetic PCIe devices driven from userspace");
MODULE_VERSION(PCIEM_VERSION);
MODULE_LICENSE("GPL");
