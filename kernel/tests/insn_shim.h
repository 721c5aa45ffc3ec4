/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What pciem_insn.h takes from the kernel, for its userspace build: the
 * fixed-width types, the errno values and an x86-64 struct pt_regs with the
 * kernel's field names (the uapi one calls them rax, rcx... instead).
 */
#ifndef PCIEM_INSN_SHIM_H
#define PCIEM_INSN_SHIM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int64_t s64;

struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};

#endif /* PCIEM_INSN_SHIM_H */
