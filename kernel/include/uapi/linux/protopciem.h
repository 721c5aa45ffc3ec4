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
 *
 * Errors of every call that reaches the card: EIO the card reported an
 * error (ERROR_CODE in the kernel log), ETIMEDOUT no completion within the
 * driver's timeout_ms, ENODEV the card is gone or dead, EINTR a signal.
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

#define PROTOPCIEM_IOCTL_MAGIC		0xB7
#define PROTOPCIEM_IOCTL_SUBMIT_FRAME	_IOW(PROTOPCIEM_IOCTL_MAGIC, 1, struct protopciem_submit_frame)
#define PROTOPCIEM_IOCTL_ARITH		_IOWR(PROTOPCIEM_IOCTL_MAGIC, 2, struct protopciem_arith)

#endif /* _UAPI_LINUX_PROTOPCIEM_H */
