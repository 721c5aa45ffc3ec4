/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/protopciem: the userspace interface of protopciem.ko, the driver of
 * the ProtoPCIem card (docs/protopciem.md).
 *
 *   write(fd, buf, len)   runs buf (1..PROTOPCIEM_CMDBUF_BYTES bytes) as a
 *                         command buffer (EXECUTE_CMDBUF); returns len.
 *   mmap(fd, 0, len)      the two frames, PROTOPCIEM_FRAME_BYTES each,
 *                         back to back (len <= 2 frames, page-rounded).
 *   SUBMIT_FRAME          shows one of them (DMA_FRAME).
 *   ARITH                 ADD, MULTIPLY or XOR of an operand on the card.
 *   PROCESS               PROCESS_BUFFER: words XOR a key, through the
 *                         command buffer (src in its first MiB, dst in the
 *                         second), and their sum.
 *   P2P                   P2P_READ / P2P_WRITE between the card's memory
 *                         (BAR2) and a peer's bus address (CAP_SYS_RAWIO).
 *
 * Errors of every call that reaches the card: EIO the card reported an
 * error (ERROR_CODE in the kernel log), ETIMEDOUT no completion within the
 * driver's timeout_ms, ENODEV the card is gone, or dead (its registers read
 * all-ones: every later call fails the same way, until the card is
 * removed), EINTR a signal. Bad arguments: EINVAL (E2BIG for non-zero bytes
 * beyond a known argsz), EFAULT a bad pointer, ENOTTY an unknown ioctl.
 */
#ifndef _UAPI_LINUX_PROTOPCIEM_H
#define _UAPI_LINUX_PROTOPCIEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define PROTOPCIEM_CMDBUF_BYTES		0x400000	/* largest write() */
#define PROTOPCIEM_FRAME_BYTES		921600		/* 640 x 480 x 3 (RGB888) */
#define PROTOPCIEM_FRAMES		2

/* SUBMIT_FRAME: argsz = sizeof, flags = 0, buffer < PROTOPCIEM_FRAMES. */
struct protopciem_submit_frame {
	__u32 argsz;
	__u32 flags;
	__u32 buffer;
	__u32 reserved;
};

/* ARITH ops: the card's command numbers. */
#define PROTOPCIEM_ARITH_ADD		1	/* result = operand + operand */
#define PROTOPCIEM_ARITH_MULTIPLY	2	/* result = operand * operand */
#define PROTOPCIEM_ARITH_XOR		3	/* result = operand ^ 0xffffffff */

/* ARITH: in argsz, flags = 0, op, operand; out result (64-bit). */
struct protopciem_arith {
	__u32 argsz;
	__u32 flags;
	__u32 op;
	__u32 operand;
	__u64 result;
};

/*
 * PROCESS: in argsz, flags = 0, key, len (a multiple of 4 in
 * 4..PROTOPCIEM_PROCESS_BYTES), src and dst (user pointers to len bytes; may
 * be the same); the card writes each little-endian word of src XOR key to
 * dst. Out: sum, the 64-bit sum of the words of src.
 */
#define PROTOPCIEM_PROCESS_BYTES	0x100000	/* largest len */

struct protopciem_process {
	__u32 argsz;
	__u32 flags;
	__u32 key;
	__u32 len;
	__u64 src;
	__u64 dst;
	__u64 sum;
};

/* P2P ops: the card's command numbers. */
#define PROTOPCIEM_P2P_READ		7	/* peer_addr -> card memory at card_offset */
#define PROTOPCIEM_P2P_WRITE		8	/* card memory at card_offset -> peer_addr */
#define PROTOPCIEM_P2P_BYTES		0x100000	/* largest len: the card memory (BAR2) */

/*
 * P2P: argsz, flags = 0, op, len (1..PROTOPCIEM_P2P_BYTES), card_offset
 * (card_offset + len within BAR2), peer_addr (a bus address, typically a
 * peer device's BAR; the range must not wrap). Needs CAP_SYS_RAWIO (EPERM):
 * the card's DMA goes wherever peer_addr points. EOPNOTSUPP: the card has no
 * P2P (CAPS). EIO: the card could not reach the peer (ERR_DMA_FAULT).
 */
struct protopciem_p2p {
	__u32 argsz;
	__u32 flags;
	__u32 op;
	__u32 len;
	__u64 card_offset;
	__u64 peer_addr;
};

#define PROTOPCIEM_IOCTL_MAGIC		0xB7
#define PROTOPCIEM_IOCTL_SUBMIT_FRAME	_IOW(PROTOPCIEM_IOCTL_MAGIC, 1, struct protopciem_submit_frame)
#define PROTOPCIEM_IOCTL_ARITH		_IOWR(PROTOPCIEM_IOCTL_MAGIC, 2, struct protopciem_arith)
#define PROTOPCIEM_IOCTL_PROCESS	_IOWR(PROTOPCIEM_IOCTL_MAGIC, 3, struct protopciem_process)
#define PROTOPCIEM_IOCTL_P2P		_IOW(PROTOPCIEM_IOCTL_MAGIC, 4, struct protopciem_p2p)

#endif /* _UAPI_LINUX_PROTOPCIEM_H */
