/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/pciem: synthetic PCIe devices driven from userspace.
 *
 * Two parts:
 *  - the compatible ABI (ioctls 10..26 on magic 0xAF, struct layouts, the
 *    instance fd returned by REGISTER, BAR mmap page offset func * 8 + bar,
 *    the 256 x 48-byte event ring at offset 0 of the /dev/pciem fd), kept
 *    byte for byte so existing PCIem userspace cards run unmodified. Its
 *    structs keep their original sizes: padding that the original left to
 *    the compiler is spelled out here as reserved fields, which must be 0.
 *  - extensions (ioctls 40 and up), which follow the kernel's rules for new
 *    ioctls: argsz + flags first, unknown flags and non-zero reserved
 *    fields rejected with -EINVAL.
 * docs/uapi.md describes every ioctl: arguments, order, errors.
 */
#ifndef _UAPI_LINUX_PCIEM_H
#define _UAPI_LINUX_PCIEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define PCIEM_MAX_FUNCTIONS		8
#define PCIEM_NUM_BARS			6

/* --- Device description (on the /dev/pciem fd, before REGISTER) --- */

#define PCIEM_CREATE_FLAG_BUS_MODE_MASK		0x00000003
#define PCIEM_CREATE_FLAG_BUS_MODE_VIRTUAL	0x00000000
#define PCIEM_CREATE_FLAG_BUS_MODE_ATTACH	0x00000001

struct pciem_create_device {
	__u32 flags;		/* PCIEM_CREATE_FLAG_* */
	__u8 func;		/* 0 first; 1..7 after it, for multi-function */
	__u8 reserved[3];
};

/*
 * flags: PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 |
 * PCI_BASE_ADDRESS_MEM_PREFETCH, as in the BAR register itself.
 */
struct pciem_bar_config {
	__u32 bar_index;	/* 0..5; a 64-bit BAR also takes bar_index + 1 */
	__u32 flags;
	__u64 size;		/* power of two, >= 4096 */
	__u8 func;
	__u8 reserved[3];
	__u8 reserved2[4];
};

struct pciem_cap_msi_userspace {
	__u8 num_vectors_log2;	/* 0..5: 1..32 vectors */
	__u8 has_64bit;
	__u8 has_masking;	/* per-vector mask and pending bits */
	__u8 reserved;
};

struct pciem_cap_msix_userspace {
	__u8 bar_index;		/* BAR holding the table and the PBA */
	__u8 reserved[3];
	__u32 table_offset;	/* 8-byte aligned */
	__u32 pba_offset;	/* 8-byte aligned */
	__u16 table_size;	/* number of vectors, 1..2048 */
	__u16 reserved2;
};

struct pciem_cap_pasid_userspace {
	__u8 max_pasid_width;	/* 0..20 */
	__u8 execute_permission;
	__u8 privileged_mode;
	__u8 reserved;
};

#define PCIEM_CAP_MSI		0
#define PCIEM_CAP_MSIX		1
#define PCIEM_CAP_PM		2
#define PCIEM_CAP_PCIE		3
#define PCIEM_CAP_VSEC		4
#define PCIEM_CAP_PASID		5

struct pciem_cap_config {
	__u32 cap_type;		/* PCIEM_CAP_* */
	__u8 func;
	__u8 reserved[3];
	union {
		struct pciem_cap_msi_userspace msi;
		struct pciem_cap_msix_userspace msix;
		struct pciem_cap_pasid_userspace pasid;
		__u8 raw[16];
	};
};

struct pciem_config_space {
	__u8 func;
	__u8 reserved_func[3];
	__u16 vendor_id;
	__u16 device_id;
	__u16 subsys_vendor_id;
	__u16 subsys_device_id;
	__u8 revision;
	__u8 class_code[3];	/* [0] prog-if, [1] subclass, [2] base class */
	__u8 header_type;	/* 0; the multi-function bit is set by pciem */
	__u8 reserved[7];
};

/* --- Events (the compatible ring) --- */

struct pciem_event {
	__u64 seq;
	__u32 type;		/* PCIEM_EVENT_* */
	__u32 bar;
	__u64 offset;
	__u32 size;
	__u32 reserved;
	__u64 data;
	__u64 timestamp;	/* ktime_get_ns() */
};

#define PCIEM_EVENT_MMIO_READ		1
#define PCIEM_EVENT_MMIO_WRITE		2
#define PCIEM_EVENT_CONFIG_READ		3
#define PCIEM_EVENT_CONFIG_WRITE	4
#define PCIEM_EVENT_MSI_ACK		5
#define PCIEM_EVENT_RESET		6

struct pciem_response {
	__u64 seq;
	__u64 data;
	__s32 status;
	__u32 reserved;
};

/* --- Interrupts, DMA, P2P (instance work) --- */

struct pciem_irq_inject {
	__u32 vector;
	__u8 func;
	__u8 reserved[3];
};

#define PCIEM_DMA_FLAG_READ		0x1	/* host memory -> user_addr */
#define PCIEM_DMA_FLAG_WRITE		0x2	/* user_addr -> host memory */

struct pciem_dma_op {
	__u64 guest_iova;
	__u64 user_addr;
	__u32 length;
	__u32 pasid;
	__u32 flags;
	__u8 func;
	__u8 reserved[3];
};

#define PCIEM_ATOMIC_FETCH_ADD		1
#define PCIEM_ATOMIC_FETCH_SUB		2
#define PCIEM_ATOMIC_SWAP		3
#define PCIEM_ATOMIC_CAS		4
#define PCIEM_ATOMIC_FETCH_AND		5
#define PCIEM_ATOMIC_FETCH_OR		6
#define PCIEM_ATOMIC_FETCH_XOR		7

struct pciem_dma_atomic {
	__u64 guest_iova;
	__u64 operand;
	__u64 compare;
	__u32 op_type;
	__u32 pasid;
	__u64 result;
	__u8 func;
	__u8 reserved[7];
};

struct pciem_p2p_op_user {
	__u64 target_phys_addr;
	__u64 user_addr;
	__u32 length;
	__u32 flags;
	__u8 func;
	__u8 reserved[7];
};

struct pciem_bar_info_query {
	__u32 bar_index;
	__u32 reserved0;
	__u64 phys_addr;	/* out */
	__u64 size;		/* out */
	__u32 flags;		/* out */
	__u8 func;
	__u8 reserved[3];
};

#define PCIEM_WP_FLAG_BAR_KPROBES	(1 << 0)
#define PCIEM_WP_FLAG_BAR_MANUAL	(1 << 1)

struct pciem_eventfd_config {
	__s32 eventfd;		/* -1 to detach */
	__u32 reserved;
};

#define PCIEM_IRQFD_FLAG_LEVEL		(1 << 0)
#define PCIEM_IRQFD_FLAG_DEASSERT	(1 << 1)

struct pciem_irqfd_config {
	__s32 eventfd;
	__u32 vector;
	__u32 flags;
	__u8 func;
	__u8 reserved[3];
};

struct pciem_dma_indirect {
	__u64 prp1;
	__u64 prp2;
	__u64 user_addr;
	__u32 length;
	__u32 page_size;
	__u32 pasid;
	__u32 flags;
	__u8 func;
	__u8 reserved[3];
	__u8 reserved2[4];
};

#define PCIEM_TRACE_READS		(1 << 0)
#define PCIEM_TRACE_WRITES		(1 << 1)
/* Writes are reported but not applied to the BAR's memory. */
#define PCIEM_TRACE_STOP_WRITES		(1 << 2)

/* 12 bytes, as in the original ABI (its size is part of the ioctl number). */
struct pciem_trace_bar {
	__u32 bar_index;
	__u32 flags;		/* PCIEM_TRACE_* */
	__u8 func;
	__u8 reserved[3];
};

#define PCIEM_IOCTL_MAGIC	0xAF

#define PCIEM_IOCTL_CREATE_DEVICE	_IOWR(PCIEM_IOCTL_MAGIC, 10, struct pciem_create_device)
#define PCIEM_IOCTL_ADD_BAR		_IOW(PCIEM_IOCTL_MAGIC, 11, struct pciem_bar_config)
#define PCIEM_IOCTL_ADD_CAPABILITY	_IOW(PCIEM_IOCTL_MAGIC, 12, struct pciem_cap_config)
#define PCIEM_IOCTL_SET_CONFIG		_IOW(PCIEM_IOCTL_MAGIC, 13, struct pciem_config_space)
#define PCIEM_IOCTL_REGISTER		_IO(PCIEM_IOCTL_MAGIC, 14)
#define PCIEM_IOCTL_INJECT_IRQ		_IOW(PCIEM_IOCTL_MAGIC, 15, struct pciem_irq_inject)
#define PCIEM_IOCTL_DMA			_IOWR(PCIEM_IOCTL_MAGIC, 16, struct pciem_dma_op)
#define PCIEM_IOCTL_DMA_ATOMIC		_IOWR(PCIEM_IOCTL_MAGIC, 17, struct pciem_dma_atomic)
#define PCIEM_IOCTL_P2P			_IOWR(PCIEM_IOCTL_MAGIC, 18, struct pciem_p2p_op_user)
#define PCIEM_IOCTL_GET_BAR_INFO	_IOWR(PCIEM_IOCTL_MAGIC, 19, struct pciem_bar_info_query)
#define PCIEM_IOCTL_SET_EVENTFD		_IOW(PCIEM_IOCTL_MAGIC, 21, struct pciem_eventfd_config)
#define PCIEM_IOCTL_SET_IRQFD		_IOW(PCIEM_IOCTL_MAGIC, 22, struct pciem_irqfd_config)
#define PCIEM_IOCTL_DMA_INDIRECT	_IOWR(PCIEM_IOCTL_MAGIC, 24, struct pciem_dma_indirect)
#define PCIEM_IOCTL_TRACE_BAR		_IOWR(PCIEM_IOCTL_MAGIC, 25, struct pciem_trace_bar)
#define PCIEM_IOCTL_START		_IO(PCIEM_IOCTL_MAGIC, 26)

/*
 * The compatible event ring, mmap'd read-write at offset 0 of the
 * /dev/pciem fd. pciem writes events[tail] and then advances tail (release);
 * userspace reads events[head] and then advances head. Full when
 * (tail + 1) % PCIEM_RING_SIZE == head. Indices are ints in 0..255.
 */
#define PCIEM_RING_SIZE		256
#define PCIEM_MAX_IRQFDS	32

struct pciem_shared_ring {
	__s32 head;		/* read index, advanced by userspace */
	__u8 pad1[60];
	__s32 tail;		/* write index, advanced by pciem */
	__u8 pad2[60];
	struct pciem_event events[PCIEM_RING_SIZE];
};

/* --- Extensions --- */

#define PCIEM_API_VERSION	1

/* features */
#define PCIEM_FEATURE_COMPAT_RING	(1 << 0)
#define PCIEM_FEATURE_LOSSLESS_RING	(1 << 1)
#define PCIEM_FEATURE_SYNC_READ		(1 << 2)
#define PCIEM_FEATURE_STATS		(1 << 3)
#define PCIEM_FEATURE_CONFIG_EVENTS	(1 << 4)
#define PCIEM_FEATURE_IRQ		(1 << 5)	/* INTx, MSI, MSI-X delivery */
#define PCIEM_FEATURE_DMA		(1 << 6)	/* confined DMA, atomics, PRP/SGL, P2P */

struct pciem_info {
	__u32 argsz;		/* in: sizeof(struct pciem_info) */
	__u32 flags;		/* in: 0 */
	__u32 api_version;	/* out: PCIEM_API_VERSION */
	__u32 features;		/* out: PCIEM_FEATURE_* */
	__u32 max_functions;	/* out */
	__u32 ring_size;	/* out: entries of the compatible ring */
	__u64 reserved[4];	/* out: 0 */
};

#define PCIEM_IOCTL_GET_INFO		_IOWR(PCIEM_IOCTL_MAGIC, 40, struct pciem_info)

/*
 * How the ring behaves when it is full. By default (flags 0) an event that
 * finds it full is dropped and counted, as in the original ABI. Lossless:
 * the access that produces the event waits until the card makes room, up
 * to timeout_us; a card that stays stuck that long is taken for dead: the
 * device then reads all-ones, as when its card goes away.
 */
#define PCIEM_RING_FLAG_LOSSLESS	(1 << 0)
/*
 * Also report config space: every config write the host makes
 * (PCIEM_EVENT_CONFIG_WRITE), function level resets (PCIEM_EVENT_RESET,
 * data PCIEM_RESET_FLR) and power state changes (PCIEM_EVENT_POWER, data
 * the new D state, 0 or 3). bar carries the function number.
 */
#define PCIEM_RING_FLAG_CONFIG_EVENTS	(1 << 1)
#define PCIEM_EVENT_POWER		8
#define PCIEM_RESET_FLR			1
#define PCIEM_RING_DEFAULT_TIMEOUT_US	1000000

struct pciem_ring_mode {
	__u32 argsz;
	__u32 flags;		/* PCIEM_RING_FLAG_* */
	__u32 timeout_us;	/* 0: PCIEM_RING_DEFAULT_TIMEOUT_US */
	__u32 reserved;
	__u64 reserved2[2];
};

#define PCIEM_IOCTL_SET_RING_MODE	_IOW(PCIEM_IOCTL_MAGIC, 41, struct pciem_ring_mode)

/*
 * Read-via-model: driver reads inside [offset, offset + length) of a BAR
 * are answered by the card. Each produces a PCIEM_EVENT_MMIO_READ_SYNC
 * event (bar, offset, size; data 0) whose seq the card answers with
 * COMPLETE_READ. Without an answer within timeout_us the read returns
 * all-ones, like a dead card, and is counted. length 0 turns it off.
 * One region per BAR.
 */
#define PCIEM_EVENT_MMIO_READ_SYNC	7
#define PCIEM_SYNC_READ_DEFAULT_TIMEOUT_US	100000

struct pciem_read_region {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u8 func;
	__u8 bar;
	__u8 reserved[2];
	__u32 timeout_us;	/* 0: PCIEM_SYNC_READ_DEFAULT_TIMEOUT_US */
	__u64 offset;
	__u64 length;
	__u64 reserved2[2];
};

struct pciem_read_reply {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u64 seq;		/* of the PCIEM_EVENT_MMIO_READ_SYNC event */
	__u64 data;
	__u64 reserved[2];
};

#define PCIEM_IOCTL_SET_READ_REGION	_IOW(PCIEM_IOCTL_MAGIC, 42, struct pciem_read_region)
#define PCIEM_IOCTL_COMPLETE_READ	_IOW(PCIEM_IOCTL_MAGIC, 43, struct pciem_read_reply)

struct pciem_stats_query {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u64 mmio_reads;	/* driver reads served */
	__u64 mmio_writes;	/* driver writes taken */
	__u64 unclaimed;	/* accesses no enabled BAR decoded */
	__u64 after_removal;	/* accesses after the card went away */
	__u64 ring_drops;	/* ring full, event dropped (default mode) */
	__u64 ring_stalls;	/* ring full, access waited (lossless mode) */
	__u64 ring_timeouts;	/* waited too long: card taken for dead */
	__u64 sync_reads;	/* reads answered by the card */
	__u64 sync_read_timeouts;	/* reads the card did not answer in time */
	__u64 reserved[7];
};

#define PCIEM_IOCTL_GET_STATS		_IOWR(PCIEM_IOCTL_MAGIC, 44, struct pciem_stats_query)

/* --- Interrupt extensions: ioctls 48..55 (pciem_irq.c) --- */

/*
 * INJECT_IRQ sends one interrupt the way the function signals now: an
 * MSI-X message if the host enabled MSI-X, else MSI, else an INTx pulse
 * (the line is asserted until one handler run, then drops; vector 0).
 * SET_IRQFD: each signal of the eventfd is one INJECT_IRQ, or with
 * PCIEM_IRQFD_FLAG_LEVEL one SET_INTX assert (with _DEASSERT: deassert);
 * eventfd -1 detaches the irqfds bound to that func, vector and flags.
 *
 * SET_INTX drives a function's INTx line as a level (PCIe Assert_INTx /
 * Deassert_INTx): while it is asserted, Interrupt Status is set and,
 * unless Interrupt Disable is set or MSI/MSI-X is on, the driver's
 * handler runs again each time the line is unmasked, until the card
 * deasserts it. Deasserting also cancels pulses not yet delivered.
 */
struct pciem_intx {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u8 func;
	__u8 level;		/* 1: assert, 0: deassert */
	__u8 reserved[6];
};

#define PCIEM_IOCTL_SET_INTX		_IOW(PCIEM_IOCTL_MAGIC, 48, struct pciem_intx)

/* How a function signals now, from its config space as the host set it. */
#define PCIEM_IRQ_MODE_NONE	0	/* INTx, but Interrupt Disable is set */
#define PCIEM_IRQ_MODE_INTX	1
#define PCIEM_IRQ_MODE_MSI	2
#define PCIEM_IRQ_MODE_MSIX	3

struct pciem_irq_status {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u8 func;		/* in */
	__u8 mode;		/* out: PCIEM_IRQ_MODE_* */
	__u8 intx_line;		/* out: 1 while INTx is asserted (level or pulse) */
	__u8 reserved;
	__u32 vectors;		/* out: MSI vectors enabled, MSI-X table size, 1 for INTx */
	__u64 injected;		/* out: interrupts accepted (INJECT_IRQ, irqfds) */
	__u64 delivered;	/* out: runs of the driver's interrupt flow handler */
	__u64 pended;		/* out: injections held in a pending bit (vector masked) */
	__u64 dropped;		/* out: injections that could not be delivered */
	__u64 intx_refires;	/* out: INTx deliveries again for a level still asserted */
	__u64 reserved2[3];
};

#define PCIEM_IOCTL_GET_IRQ_STATUS	_IOWR(PCIEM_IOCTL_MAGIC, 49, struct pciem_irq_status)

/* --- DMA extensions: ioctls 56..63 (pciem_dma.c) --- */

/*
 * The card reaches only host memory that the function's driver mapped for
 * it (dma_alloc_coherent, dma_map_single/page/sg, dma_alloc_pages...):
 * pciem records every such mapping. DMA_MAPPINGS lists them, by IOVA.
 */
#define PCIEM_DMA_MAP_COHERENT		1	/* dma_alloc_coherent / dma_alloc_attrs */
#define PCIEM_DMA_MAP_PAGES		2	/* dma_alloc_pages / _noncoherent / _noncontiguous */
#define PCIEM_DMA_MAP_SINGLE		3	/* dma_map_single / dma_map_page */
#define PCIEM_DMA_MAP_SG		4	/* one DMA segment of dma_map_sg / dma_map_sgtable */
#define PCIEM_DMA_MAP_RESOURCE		5	/* dma_map_resource: listed, not reachable by DMA */

/* The direction the driver gave (enum dma_data_direction). */
#define PCIEM_DMA_DIR_BIDIRECTIONAL	0
#define PCIEM_DMA_DIR_TO_DEVICE		1	/* the card may read it, not write it */
#define PCIEM_DMA_DIR_FROM_DEVICE	2

struct pciem_dma_mapping {
	__u64 iova;
	__u64 size;
	__u32 kind;		/* PCIEM_DMA_MAP_* */
	__u32 dir;		/* PCIEM_DMA_DIR_* */
};

#define PCIEM_DMA_MAPPINGS_MAX		65536	/* entries returned per call */

struct pciem_dma_mappings {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u8 func;
	__u8 reserved[3];
	__u32 count;		/* in: room at entries; out: mappings the function has */
	__u64 entries;		/* pointer to struct pciem_dma_mapping[count] */
	__u64 reserved2[2];
};

/*
 * Scatter-gather: host memory in pieces, the card's buffer contiguous (the
 * pieces' bytes back to back, length in all).
 */
struct pciem_dma_sg_entry {
	__u64 iova;
	__u64 len;		/* > 0 */
};

#define PCIEM_DMA_SGL_MAX_ENTRIES	65536

struct pciem_dma_sgl {
	__u32 argsz;
	__u32 flags;		/* PCIEM_DMA_FLAG_READ or PCIEM_DMA_FLAG_WRITE */
	__u8 func;
	__u8 reserved[3];
	__u32 nentries;		/* 1..PCIEM_DMA_SGL_MAX_ENTRIES */
	__u64 entries;		/* pointer to struct pciem_dma_sg_entry[nentries] */
	__u64 user_addr;	/* the card's buffer */
	__u64 length;		/* its size: the sum of the entries' len */
	__u64 reserved2[2];
};

/* Counters of the device (all functions) since REGISTER. */
struct pciem_dma_stats {
	__u32 argsz;
	__u32 flags;		/* 0 */
	__u64 reads;		/* DMA, DMA_INDIRECT, DMA_SGL done: card reads host memory */
	__u64 writes;		/* ... card writes host memory */
	__u64 read_bytes;
	__u64 write_bytes;
	__u64 atomics;		/* DMA_ATOMIC done */
	__u64 p2p;		/* P2P done */
	__u64 p2p_bytes;
	__u64 refused_unmapped;	/* EFAULT: host memory outside the driver's mappings */
	__u64 refused_master;	/* EPERM: Bus Master Enable clear */
	__u64 refused_p2p;	/* ENXIO: P2P target neither a pciem BAR nor whitelisted */
	__u64 user_faults;	/* EFAULT: the card's own buffer */
	__u64 maps;		/* mappings the drivers made */
	__u64 unmaps;		/* mappings the drivers tore down */
	__u64 map_failures;	/* mappings refused: no memory to record them */
	__u64 mappings;		/* recorded now */
	__u64 reserved[5];
};

#define PCIEM_IOCTL_DMA_MAPPINGS	_IOWR(PCIEM_IOCTL_MAGIC, 56, struct pciem_dma_mappings)
#define PCIEM_IOCTL_DMA_SGL		_IOW(PCIEM_IOCTL_MAGIC, 57, struct pciem_dma_sgl)
#define PCIEM_IOCTL_DMA_STATS		_IOWR(PCIEM_IOCTL_MAGIC, 58, struct pciem_dma_stats)

#endif /* _UAPI_LINUX_PCIEM_H */
