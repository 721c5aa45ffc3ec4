// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_dmadrv: a plain PCI driver (1f0c:fff2) that maps DMA buffers the
 * ordinary way (dma_alloc_coherent, dma_map_single, dma_map_sgtable,
 * dma_alloc_noncoherent) for the VM tests of pciem's DMA. It knows nothing
 * of pciem. Tests drive it through debugfs, one folder per bound device:
 *
 *   /sys/kernel/debug/pciem_dmadrv/DDDDD:BB:SS.F/
 *     cmd    write a command; read: the last command's result
 *     data   the bytes of the selected buffer (sg: its entries back to
 *            back); reads sync for the CPU first, writes for the device after
 *
 * Commands (DIR is bidi, to or from; results on one line):
 *   coherent SIZE                 -> "ID IOVA SIZE"
 *   pages SIZE DIR                -> "ID IOVA SIZE"   (dma_alloc_noncoherent)
 *   single SIZE OFFSET DIR PARTS  -> "ID IOVA LEN..." (PARTS dma_map_single
 *                                    calls over one allocation, at OFFSET)
 *   sg SIZE NENTS DIR             -> "ID IOVA LEN..." (NENTS separate chunks)
 *   free ID, unmap ID PART (one part of a single), select ID
 *   fill ID SEED                  bytes of a xorshift32 stream
 *   sum ID                        -> "CRC32"
 *   master 0|1                    Bus Master Enable
 *   race ID OFFSET THREADS ITERS  kernel threads atomic64_inc() the u64 there
 *   racewait                      -> "done": waits for them
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/crc32.h>
#include <linux/debugfs.h>
#include <linux/dma-mapping.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#define DMADRV_VENDOR		0x1f0c
#define DMADRV_DEVICE		0xfff2
#define DMADRV_MAX_PARTS	8
#define DMADRV_MAX_SG		256
#define DMADRV_RESULT		8192

enum dmadrv_kind { DMADRV_COHERENT, DMADRV_PAGES, DMADRV_SINGLE, DMADRV_SG };

struct dmadrv_buf {
	struct list_head node;
	int id;
	enum dmadrv_kind kind;
	enum dma_data_direction dir;
	size_t size;
	void *cpu;			/* all but sg: byte 0 */
	dma_addr_t iova;		/* coherent, pages */
	/* single: one allocation, mapped in parts of part_len bytes */
	void *alloc;
	size_t alloc_size;
	int parts;
	size_t part_len;
	dma_addr_t part_iova[DMADRV_MAX_PARTS];
	bool part_mapped[DMADRV_MAX_PARTS];
	/* sg: one allocation per entry, chunk bytes each (the last: the rest) */
	struct sg_table sgt;
	void **chunks;
	size_t chunk;
};

struct dmadrv {
	struct pci_dev *pdev;
	struct dentry *dir;
	struct mutex lock;		/* bufs, next_id, sel, result, racers */
	struct list_head bufs;
	int next_id;
	struct dmadrv_buf *sel;
	char *result;
	/* the race: threads incrementing one u64 */
	atomic64_t *race_ptr;
	atomic_t racing;
	wait_queue_head_t race_wq;
	u64 race_iters;
};

static struct dentry *dmadrv_root;

static struct dmadrv_buf *dmadrv_find(struct dmadrv *dd, int id)
{
	struct dmadrv_buf *b;

	list_for_each_entry(b, &dd->bufs, node)
		if (b->id == id)
			return b;
	return NULL;
}

static int dmadrv_dir(const char *s, enum dma_data_direction *dir)
{
	if (!strcmp(s, "bidi"))
		*dir = DMA_BIDIRECTIONAL;
	else if (!strcmp(s, "to"))
		*dir = DMA_TO_DEVICE;
	else if (!strcmp(s, "from"))
		*dir = DMA_FROM_DEVICE;
	else
		return -EINVAL;
	return 0;
}

static void dmadrv_free_buf(struct dmadrv *dd, struct dmadrv_buf *b)
{
	struct device *dev = &dd->pdev->dev;
	int i;

	switch (b->kind) {
	case DMADRV_COHERENT:
		dma_free_coherent(dev, b->size, b->cpu, b->iova);
		break;
	case DMADRV_PAGES:
		dma_free_noncoherent(dev, b->size, b->cpu, b->iova, b->dir);
		break;
	case DMADRV_SINGLE:
		for (i = 0; i < b->parts; i++)
			if (b->part_mapped[i])
				dma_unmap_single(dev, b->part_iova[i], b->part_len, b->dir);
		free_pages_exact(b->alloc, b->alloc_size);
		break;
	case DMADRV_SG:
		if (b->sgt.nents)
			dma_unmap_sgtable(dev, &b->sgt, b->dir, 0);
		for (i = 0; b->chunks && i < b->sgt.orig_nents; i++)
			free_pages_exact(b->chunks[i], PAGE_ALIGN(b->chunk));
		sg_free_table(&b->sgt);
		kfree(b->chunks);
		break;
	}
	if (dd->sel == b)
		dd->sel = NULL;
	list_del(&b->node);
	kfree(b);
}

static int dmadrv_add(struct dmadrv *dd, struct dmadrv_buf *b)
{
	int n, i;
	struct scatterlist *s;

	b->id = dd->next_id++;
	list_add_tail(&b->node, &dd->bufs);
	n = scnprintf(dd->result, DMADRV_RESULT, "%d", b->id);
	switch (b->kind) {
	case DMADRV_COHERENT:
	case DMADRV_PAGES:
		n += scnprintf(dd->result + n, DMADRV_RESULT - n, " 0x%llx %zu",
			       (u64)b->iova, b->size);
		break;
	case DMADRV_SINGLE:
		for (i = 0; i < b->parts; i++)
			n += scnprintf(dd->result + n, DMADRV_RESULT - n, " 0x%llx %zu",
				       (u64)b->part_iova[i], b->part_len);
		break;
	case DMADRV_SG:
		for_each_sgtable_dma_sg(&b->sgt, s, i)
			n += scnprintf(dd->result + n, DMADRV_RESULT - n, " 0x%llx %u",
				       (u64)sg_dma_address(s), sg_dma_len(s));
		break;
	}
	scnprintf(dd->result + n, DMADRV_RESULT - n, "\n");
	return 0;
}

static int dmadrv_coherent(struct dmadrv *dd, size_t size)
{
	struct dmadrv_buf *b = kzalloc(sizeof(*b), GFP_KERNEL);

	if (!b)
		return -ENOMEM;
	b->kind = DMADRV_COHERENT;
	b->dir = DMA_BIDIRECTIONAL;
	b->size = size;
	b->cpu = dma_alloc_coherent(&dd->pdev->dev, size, &b->iova, GFP_KERNEL);
	if (!b->cpu) {
		kfree(b);
		return -ENOMEM;
	}
	return dmadrv_add(dd, b);
}

static int dmadrv_pages(struct dmadrv *dd, size_t size, enum dma_data_direction dir)
{
	struct dmadrv_buf *b = kzalloc(sizeof(*b), GFP_KERNEL);

	if (!b)
		return -ENOMEM;
	b->kind = DMADRV_PAGES;
	b->dir = dir;
	b->size = size;
	b->cpu = dma_alloc_noncoherent(&dd->pdev->dev, size, &b->iova, dir, GFP_KERNEL);
	if (!b->cpu) {
		kfree(b);
		return -ENOMEM;
	}
	return dmadrv_add(dd, b);
}

static int dmadrv_single(struct dmadrv *dd, size_t size, size_t off,
			 enum dma_data_direction dir, int parts)
{
	struct device *dev = &dd->pdev->dev;
	struct dmadrv_buf *b;
	int i;

	if (parts < 1 || parts > DMADRV_MAX_PARTS || size % parts)
		return -EINVAL;
	b = kzalloc(sizeof(*b), GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	b->kind = DMADRV_SINGLE;
	b->dir = dir;
	b->size = size;
	b->parts = parts;
	b->part_len = size / parts;
	b->alloc_size = size + off;
	b->alloc = alloc_pages_exact(b->alloc_size, GFP_KERNEL | __GFP_ZERO);
	if (!b->alloc) {
		kfree(b);
		return -ENOMEM;
	}
	b->cpu = b->alloc + off;
	for (i = 0; i < parts; i++) {
		b->part_iova[i] = dma_map_single(dev, b->cpu + i * b->part_len, b->part_len, dir);
		if (dma_mapping_error(dev, b->part_iova[i]))
			goto err_map;
		b->part_mapped[i] = true;
	}
	return dmadrv_add(dd, b);

err_map:
	while (i--)
		dma_unmap_single(dev, b->part_iova[i], b->part_len, dir);
	free_pages_exact(b->alloc, b->alloc_size);
	kfree(b);
	return -ENOMEM;
}

static int dmadrv_sg(struct dmadrv *dd, size_t size, unsigned int nents,
		     enum dma_data_direction dir)
{
	struct dmadrv_buf *b;
	struct scatterlist *s;
	size_t len;
	int i, ret = -ENOMEM;

	if (!nents || nents > DMADRV_MAX_SG || size < nents)
		return -EINVAL;
	b = kzalloc(sizeof(*b), GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	b->kind = DMADRV_SG;
	b->dir = dir;
	b->size = size;
	b->chunk = DIV_ROUND_UP(size, nents);
	if (b->chunk * (nents - 1) >= size) {
		kfree(b);
		return -EINVAL;
	}
	b->chunks = kcalloc(nents, sizeof(*b->chunks), GFP_KERNEL);
	if (!b->chunks || sg_alloc_table(&b->sgt, nents, GFP_KERNEL))
		goto err_table;
	for_each_sgtable_sg(&b->sgt, s, i) {
		len = i == nents - 1 ? size - b->chunk * i : b->chunk;
		b->chunks[i] = alloc_pages_exact(PAGE_ALIGN(b->chunk), GFP_KERNEL | __GFP_ZERO);
		if (!b->chunks[i])
			goto err_chunks;
		sg_set_buf(s, b->chunks[i], len);
	}
	ret = dma_map_sgtable(&dd->pdev->dev, &b->sgt, dir, 0);
	if (ret)
		goto err_chunks;
	return dmadrv_add(dd, b);

err_chunks:
	for (i = 0; i < nents; i++)
		if (b->chunks[i])
			free_pages_exact(b->chunks[i], PAGE_ALIGN(b->chunk));
	sg_free_table(&b->sgt);
err_table:
	kfree(b->chunks);
	kfree(b);
	return ret;
}

/* The CPU address of byte @off of @b and how many bytes follow it contiguously. */
static void *dmadrv_at(struct dmadrv_buf *b, size_t off, size_t *run)
{
	size_t i;

	if (b->kind != DMADRV_SG) {
		*run = b->size - off;
		return b->cpu + off;
	}
	i = off / b->chunk;
	*run = min(b->size - off, b->chunk - off % b->chunk);
	return b->chunks[i] + off % b->chunk;
}

static void dmadrv_sync(struct dmadrv *dd, struct dmadrv_buf *b, bool for_cpu)
{
	struct device *dev = &dd->pdev->dev;
	int i;

	switch (b->kind) {
	case DMADRV_COHERENT:
		break;
	case DMADRV_PAGES:
		if (for_cpu)
			dma_sync_single_for_cpu(dev, b->iova, b->size, b->dir);
		else
			dma_sync_single_for_device(dev, b->iova, b->size, b->dir);
		break;
	case DMADRV_SINGLE:
		for (i = 0; i < b->parts; i++) {
			if (!b->part_mapped[i])
				continue;
			if (for_cpu)
				dma_sync_single_for_cpu(dev, b->part_iova[i], b->part_len, b->dir);
			else
				dma_sync_single_for_device(dev, b->part_iova[i], b->part_len, b->dir);
		}
		break;
	case DMADRV_SG:
		if (for_cpu)
			dma_sync_sgtable_for_cpu(dev, &b->sgt, b->dir);
		else
			dma_sync_sgtable_for_device(dev, &b->sgt, b->dir);
		break;
	}
}

static u32 xorshift32(u32 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void dmadrv_fill(struct dmadrv *dd, struct dmadrv_buf *b, u32 seed)
{
	size_t off, run, i;
	u8 *p;

	dmadrv_sync(dd, b, true);
	for (off = 0; off < b->size; off += run) {
		p = dmadrv_at(b, off, &run);
		for (i = 0; i < run; i++)
			p[i] = xorshift32(&seed);
		cond_resched();
	}
	dmadrv_sync(dd, b, false);
}

static u32 dmadrv_sum(struct dmadrv *dd, struct dmadrv_buf *b)
{
	size_t off, run;
	u32 crc = 0;
	void *p;

	dmadrv_sync(dd, b, true);
	for (off = 0; off < b->size; off += run) {
		p = dmadrv_at(b, off, &run);
		crc = crc32_le(crc, p, run);
	}
	dmadrv_sync(dd, b, false);
	return crc;
}

static int dmadrv_racer(void *arg)
{
	struct dmadrv *dd = arg;
	u64 i;

	for (i = 0; i < dd->race_iters; i++) {
		atomic64_inc(dd->race_ptr);
		if (!(i & 255))
			cond_resched();
	}
	if (atomic_dec_and_test(&dd->racing))
		wake_up(&dd->race_wq);
	return 0;
}

static int dmadrv_race(struct dmadrv *dd, struct dmadrv_buf *b, size_t off,
		       unsigned int threads, u64 iters)
{
	struct task_struct *t;
	size_t run;
	unsigned int i;

	if (atomic_read(&dd->racing) || b->kind == DMADRV_SG || !threads || threads > 16 ||
	    off % 8 || off + 8 > b->size)
		return -EINVAL;
	dd->race_ptr = dmadrv_at(b, off, &run);
	dd->race_iters = iters;
	atomic_set(&dd->racing, threads);
	for (i = 0; i < threads; i++) {
		t = kthread_run(dmadrv_racer, dd, "dmadrv-race/%u", i);
		if (IS_ERR(t)) {
			/* The ones not started count as done. */
			if (atomic_sub_and_test(threads - i, &dd->racing))
				wake_up(&dd->race_wq);
			return PTR_ERR(t);
		}
	}
	return 0;
}

static int dmadrv_racewait(struct dmadrv *dd)
{
	return wait_event_interruptible(dd->race_wq, !atomic_read(&dd->racing));
}

static int dmadrv_exec(struct dmadrv *dd, char *line)
{
	char *argv[6], *p = strim(line);
	unsigned long long a = 0, b = 0, c = 0;
	enum dma_data_direction dir;
	struct dmadrv_buf *buf = NULL;
	int argc = 0, ret;

	while (p && *p && argc < ARRAY_SIZE(argv))
		argv[argc++] = strsep(&p, " ");
	if (!argc)
		return -EINVAL;
	if (argc > 1 && kstrtoull(argv[1], 0, &a))
		return -EINVAL;
	if (argc > 2 && strcmp(argv[0], "pages") && kstrtoull(argv[2], 0, &b))
		return -EINVAL;
	if (argc > 3 && !strcmp(argv[0], "race") && kstrtoull(argv[3], 0, &c))
		return -EINVAL;
	scnprintf(dd->result, DMADRV_RESULT, "ok\n");

	if (!strcmp(argv[0], "coherent") && argc == 2)
		return dmadrv_coherent(dd, a);
	if (!strcmp(argv[0], "pages") && argc == 3)
		return dmadrv_dir(argv[2], &dir) ?: dmadrv_pages(dd, a, dir);
	if (!strcmp(argv[0], "single") && argc == 5) {
		unsigned long long parts;

		if (dmadrv_dir(argv[3], &dir) || kstrtoull(argv[4], 0, &parts))
			return -EINVAL;
		return dmadrv_single(dd, a, b, dir, parts);
	}
	if (!strcmp(argv[0], "sg") && argc == 4)
		return dmadrv_dir(argv[3], &dir) ?: dmadrv_sg(dd, a, b, dir);
	if (!strcmp(argv[0], "master") && argc == 2) {
		if (a)
			pci_set_master(dd->pdev);
		else
			pci_clear_master(dd->pdev);
		return 0;
	}
	if (!strcmp(argv[0], "racewait") && argc == 1) {
		ret = dmadrv_racewait(dd);
		if (!ret)
			scnprintf(dd->result, DMADRV_RESULT, "done\n");
		return ret;
	}

	if (argc < 2)
		return -EINVAL;
	buf = dmadrv_find(dd, a);
	if (!buf)
		return -ENOENT;
	if (!strcmp(argv[0], "free") && argc == 2) {
		if (atomic_read(&dd->racing))
			return -EBUSY;
		dmadrv_free_buf(dd, buf);
		return 0;
	}
	if (!strcmp(argv[0], "unmap") && argc == 3) {
		if (buf->kind != DMADRV_SINGLE || b >= buf->parts || !buf->part_mapped[b])
			return -EINVAL;
		dma_unmap_single(&dd->pdev->dev, buf->part_iova[b], buf->part_len, buf->dir);
		buf->part_mapped[b] = false;
		return 0;
	}
	if (!strcmp(argv[0], "select") && argc == 2) {
		dd->sel = buf;
		return 0;
	}
	if (!strcmp(argv[0], "fill") && argc == 3) {
		dmadrv_fill(dd, buf, b ?: 1);
		return 0;
	}
	if (!strcmp(argv[0], "sum") && argc == 2) {
		scnprintf(dd->result, DMADRV_RESULT, "0x%08x\n", dmadrv_sum(dd, buf));
		return 0;
	}
	if (!strcmp(argv[0], "race") && argc == 5) {
		unsigned long long iters;

		if (kstrtoull(argv[4], 0, &iters))
			return -EINVAL;
		return dmadrv_race(dd, buf, b, c, iters);
	}
	return -EINVAL;
}

static ssize_t dmadrv_cmd_write(struct file *f, const char __user *ubuf, size_t len, loff_t *pos)
{
	struct dmadrv *dd = f->private_data;
	char line[128];
	int ret;

	if (len >= sizeof(line))
		return -EINVAL;
	if (copy_from_user(line, ubuf, len))
		return -EFAULT;
	line[len] = 0;
	mutex_lock(&dd->lock);
	ret = dmadrv_exec(dd, line);
	if (ret)
		scnprintf(dd->result, DMADRV_RESULT, "error %d\n", ret);
	mutex_unlock(&dd->lock);
	return ret ?: len;
}

static ssize_t dmadrv_cmd_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	struct dmadrv *dd = f->private_data;
	ssize_t ret;

	mutex_lock(&dd->lock);
	ret = simple_read_from_buffer(ubuf, len, pos, dd->result, strlen(dd->result));
	mutex_unlock(&dd->lock);
	return ret;
}

static ssize_t dmadrv_data_rw(struct file *f, char __user *ubuf, size_t len, loff_t *pos,
			      bool write)
{
	struct dmadrv *dd = f->private_data;
	struct dmadrv_buf *b;
	size_t done = 0, run, n;
	ssize_t ret = 0;
	void *p;

	mutex_lock(&dd->lock);
	b = dd->sel;
	if (!b) {
		ret = -ENOENT;
		goto out;
	}
	if (*pos < 0 || *pos >= b->size)
		goto out;
	len = min_t(size_t, len, b->size - *pos);
	dmadrv_sync(dd, b, true);
	while (done < len) {
		p = dmadrv_at(b, *pos + done, &run);
		n = min(run, len - done);
		if (write ? copy_from_user(p, ubuf + done, n) : copy_to_user(ubuf + done, p, n)) {
			ret = -EFAULT;
			break;
		}
		done += n;
	}
	dmadrv_sync(dd, b, false);
	*pos += done;
	if (done)
		ret = done;
out:
	mutex_unlock(&dd->lock);
	return ret;
}

static ssize_t dmadrv_data_read(struct file *f, char __user *ubuf, size_t len, loff_t *pos)
{
	return dmadrv_data_rw(f, ubuf, len, pos, false);
}

static ssize_t dmadrv_data_write(struct file *f, const char __user *ubuf, size_t len,
				 loff_t *pos)
{
	return dmadrv_data_rw(f, (char __user *)ubuf, len, pos, true);
}

static const struct file_operations dmadrv_cmd_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = dmadrv_cmd_write,
	.read = dmadrv_cmd_read,
	.llseek = default_llseek,
};

static const struct file_operations dmadrv_data_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = dmadrv_data_read,
	.write = dmadrv_data_write,
	.llseek = default_llseek,
};

static int dmadrv_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct dmadrv *dd;
	int ret;

	dd = devm_kzalloc(&pdev->dev, sizeof(*dd), GFP_KERNEL);
	if (!dd)
		return -ENOMEM;
	dd->result = devm_kzalloc(&pdev->dev, DMADRV_RESULT, GFP_KERNEL);
	if (!dd->result)
		return -ENOMEM;
	mutex_init(&dd->lock);
	INIT_LIST_HEAD(&dd->bufs);
	init_waitqueue_head(&dd->race_wq);
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	pci_set_master(pdev);
	dd->pdev = pdev;
	dd->dir = debugfs_create_dir(pci_name(pdev), dmadrv_root);
	debugfs_create_file("cmd", 0600, dd->dir, dd, &dmadrv_cmd_fops);
	debugfs_create_file("data", 0600, dd->dir, dd, &dmadrv_data_fops);
	pci_set_drvdata(pdev, dd);
	dev_info(&pdev->dev, "bound\n");
	return 0;
}

static void dmadrv_remove(struct pci_dev *pdev)
{
	struct dmadrv *dd = pci_get_drvdata(pdev);
	struct dmadrv_buf *b, *tmp;
	int n = 0;

	debugfs_remove_recursive(dd->dir);
	wait_event(dd->race_wq, !atomic_read(&dd->racing));
	mutex_lock(&dd->lock);
	list_for_each_entry_safe(b, tmp, &dd->bufs, node) {
		dmadrv_free_buf(dd, b);
		n++;
	}
	mutex_unlock(&dd->lock);
	dev_info(&pdev->dev, "removed, freed %d buffers\n", n);
}

static const struct pci_device_id dmadrv_ids[] = {
	{ PCI_DEVICE(DMADRV_VENDOR, DMADRV_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, dmadrv_ids);

static struct pci_driver dmadrv_driver = {
	.name = "pciem_dmadrv",
	.id_table = dmadrv_ids,
	.probe = dmadrv_probe,
	.remove = dmadrv_remove,
};

static int __init dmadrv_init(void)
{
	int ret;

	dmadrv_root = debugfs_create_dir("pciem_dmadrv", NULL);
	ret = pci_register_driver(&dmadrv_driver);
	if (ret)
		debugfs_remove_recursive(dmadrv_root);
	return ret;
}

static void __exit dmadrv_exit(void)
{
	pci_unregister_driver(&dmadrv_driver);
	debugfs_remove_recursive(dmadrv_root);
}

module_init(dmadrv_init);
module_exit(dmadrv_exit);
MODULE_DESCRIPTION("pciem DMA test driver: maps buffers the ordinary way for the VM tests");
MODULE_LICENSE("GPL");
