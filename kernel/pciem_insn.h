/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pciem_insn: decode and emulate the x86-64 instructions that access MMIO.
 *
 * To see a driver's accesses to a BAR, the BAR's PTEs are cleared; every
 * access then page-faults, and the fault path decodes the instruction with
 * pciem_insn_decode(), performs the access on the device's behalf and skips
 * the instruction. The kernel's own decoder (insn_decode_mmio()) is not
 * exported to modules, hence this small one. It emulates the moves compilers
 * emit for readX/writeX, ioreadX/iowriteX and volatile pointers, and refuses
 * every other memory access - but still measures it, so that the fault path
 * can skip it.
 *
 * The same source builds in userspace for kernel/tests/insn_test.c; the
 * include switch below is the only difference.
 */
#ifndef PCIEM_INSN_H
#define PCIEM_INSN_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/stddef.h>
#include <linux/types.h>
#include <asm/ptrace.h>
#else
#include "tests/insn_shim.h"
#endif

/* The architectural limit: longer instructions raise #GP. */
#define PCIEM_INSN_MAX_LEN	15

enum pciem_insn_kind {
	PCIEM_INSN_READ,
	PCIEM_INSN_WRITE,
};

/* How a read's value lands in its destination register. */
enum pciem_insn_ext {
	PCIEM_EXT_NONE,	/* 8/16/64-bit mov: bits above dst_size are kept */
	PCIEM_EXT_ZERO,	/* 32-bit mov, movzx */
	PCIEM_EXT_SIGN,	/* movsx, movsxd */
};

/* String instructions: refused, but the fault path skips them. */
enum pciem_insn_string {
	PCIEM_STRING_NONE,
	PCIEM_STRING_MOVS,	/* [rsi] to [rdi] */
	PCIEM_STRING_CMPS,	/* [rsi] with [rdi] */
	PCIEM_STRING_STOS,	/* rAX to [rdi] */
	PCIEM_STRING_LODS,	/* [rsi] to rAX */
	PCIEM_STRING_SCAS,	/* rAX with [rdi] */
	PCIEM_STRING_INS,	/* port dx to [rdi] */
	PCIEM_STRING_OUTS,	/* [rsi] to port dx */
};

/*
 * A decoded memory access. Whatever the extension, a 4-byte destination
 * clears bits 32..63 of its register and a 1- or 2-byte one keeps them,
 * as on the CPU.
 *
 * For a refused access (-EOPNOTSUPP) only len is set, and for a string
 * instruction also string, size (per element), rep and addr32; the rest
 * is zero.
 */
struct pciem_insn {
	u8 len;		/* instruction length: regs->ip += len */
	u8 size;	/* bytes accessed: 1, 2, 4 or 8 */
	u8 kind;	/* enum pciem_insn_kind */
	u8 ext;		/* reads: enum pciem_insn_ext */
	u8 dst_size;	/* reads: destination width in bytes; 0 for writes */
	u8 reg;		/* the 64-bit register: 0..15 = rax, rcx, rdx, rbx,
			 * rsp, rbp, rsi, rdi, r8..r15; unused with has_imm
			 */
	bool high_byte;	/* AH/CH/DH/BH: bits 8..15 of reg (then 0..3) */
	bool has_imm;	/* a write of imm */
	u8 string;	/* enum pciem_insn_string */
	bool rep;	/* F2/F3: rcx elements (and rcx becomes 0) */
	bool addr32;	/* 0x67: esi, edi, ecx stand for rsi, rdi, rcx */
	u64 imm;	/* already sign-extended for a 64-bit store */
};

/*
 * Decodes the instruction in buf[0..buflen) and never reads past buflen.
 * Returns 0 for a supported access, -EOPNOTSUPP with insn->len for a memory
 * access this code does not emulate (string ops, SIMD, VEX/EVEX, x87,
 * read-modify-write, lock or rep prefixes), -EINVAL for anything else (no
 * memory operand, one that is never accessed as with lea or prefetch,
 * undefined, longer than PCIEM_INSN_MAX_LEN) and -E2BIG when buf ends
 * before the instruction does.
 */
int pciem_insn_decode(const u8 *buf, unsigned int buflen,
		      struct pciem_insn *insn);

/* The value a write stores, from its register or immediate, insn->size wide. */
u64 pciem_insn_write_value(const struct pciem_insn *insn,
			   const struct pt_regs *regs);

/*
 * Completes a read: puts val, of which insn->size bytes count, into the
 * destination register, extended or merged as the CPU would have done.
 */
void pciem_insn_complete_read(const struct pciem_insn *insn,
			      struct pt_regs *regs, u64 val);

#endif /* PCIEM_INSN_H */
