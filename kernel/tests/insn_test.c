// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace tests for kernel/pciem_insn.c, run by test/unit/insn.test.ts:
 *
 *   gcc -Wall -Wextra -Werror -O2 kernel/tests/insn_test.c kernel/pciem_insn.c
 *
 * Output is TAP-like: "ok N - what" or "not ok N - what" with "# why"
 * lines, then "insn: P passed, F failed"; the exit status is 0 only if F is 0.
 *
 * Each line of the table below is an instruction as objdump prints it, its
 * bytes and what the decoder must make of it. The bytes were checked once by
 * assembling every instruction with `as --64` (binutils 2.40) and by
 * disassembling every byte string with `objdump -d`. Where as picks another
 * encoding (8B for a register mov, B0/B8 for mov $imm) or cannot express one
 * (ignored REX, 13 0x66 prefixes, lock mov, movsxd without REX.W), objdump's
 * reading of the bytes is what the line says.
 *
 * Every case is decoded from the very end of a page followed by a PROT_NONE
 * page, so a read past buflen crashes the test. A decoded instruction must
 * also give -E2BIG for every shorter buffer and the same result with
 * trailing bytes.
 *
 * Cases with an address (AT, ATX, ABS, ABSX) also run on the CPU: a
 * generated stub loads the registers, executes the instruction and saves the
 * registers, once against mapped memory and once against a PROT_NONE page
 * where a SIGSEGV handler emulates the access with pciem_insn_* as the
 * kernel fault path will. Registers and memory must come out the same, and
 * the CPU must agree with the table's expected values.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "../pciem_insn.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* x86 register numbers, the order pciem_insn.h uses. */
enum {
	RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
	R8, R9, R10, R11, R12, R13, R14, R15,
	NOREG = -1,
};

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#define PAGE		4096UL
/* The CPU runs: stub code in the first page, the "device" in the second. */
#define REGION		0x20000000UL
#define DATA		(REGION + PAGE)
#define INSN_END	(REGION + 0x800)	/* 0x1000(%rip) hits DATA + 0x800 */
#define BASE_VALUE	(DATA + 0x800)		/* base registers point here */
#define INDEX_VALUE	0x10UL			/* index registers hold this */

struct insn_case {
	const char *text;
	const char *bytes;
	unsigned int nbytes;
	int ret;
	u8 kind, size, ext, dst_size, reg;
	bool high_byte, has_imm;
	u64 imm;
	u64 value;	/* write: what is stored; read: what the device returns */
	u64 result;	/* read: the destination register afterwards */
	bool cpu;	/* also run on the CPU, with these address registers */
	s8 base, index;
};

#define BYTES(b)	.bytes = b, .nbytes = sizeof(b) - 1

#define STORE(t, b, sz, r, hb, v, where) \
	{ .text = t, BYTES(b), .kind = PCIEM_INSN_WRITE, .size = sz, \
	  .reg = r, .high_byte = hb, .value = v, where }
#define STORE_IMM(t, b, sz, v, where) \
	{ .text = t, BYTES(b), .kind = PCIEM_INSN_WRITE, .size = sz, \
	  .has_imm = true, .imm = v, .value = v, where }
#define LOAD(t, b, sz, x, dsz, r, hb, v, res, where) \
	{ .text = t, BYTES(b), .kind = PCIEM_INSN_READ, .size = sz, \
	  .ext = PCIEM_EXT_##x, .dst_size = dsz, .reg = r, .high_byte = hb, \
	  .value = v, .result = res, where }
#define FAILS(t, b, err) { .text = t, BYTES(b), .ret = err }

/* Where the memory operand points when the case runs on the CPU. */
#define AT(b)		.cpu = true, .base = b, .index = NOREG
#define ATX(b, i)	.cpu = true, .base = b, .index = i
#define ABS		.cpu = true, .base = NOREG, .index = NOREG
#define ABSX(i)		.cpu = true, .base = NOREG, .index = i
#define NOCPU		.cpu = false

/* Register i starts as bytes i0, i1, ... i7 (hex digits), e.g. rcx 0x1716151413121110. */
static u64 pattern(int i)
{
	u64 v = 0;
	int k;

	for (k = 0; k < 8; k++)
		v |= (u64)((i << 4) | k) << (8 * k);
	return v;
}

static const struct insn_case cases[] = {
	/* 88/89: stores from registers */
	STORE("mov %cl,(%rdi)", "\x88\x0f", 1, RCX, false, 0x10, AT(RDI)),
	STORE("mov %ah,(%rdi)", "\x88\x27", 1, RAX, true, 0x01, AT(RDI)),
	STORE("mov %bh,(%rsi)", "\x88\x3e", 1, RBX, true, 0x31, AT(RSI)),
	STORE("mov %spl,(%rdi)", "\x40\x88\x27", 1, RSP, false, 0x40, NOCPU),
	STORE("mov %dil,(%rsi)", "\x40\x88\x3e", 1, RDI, false, 0x70, AT(RSI)),
	STORE("mov %sil,(%r8)", "\x41\x88\x30", 1, RSI, false, 0x60, AT(R8)),
	STORE("mov %r9b,(%rdi)", "\x44\x88\x0f", 1, R9, false, 0x90, AT(RDI)),
	STORE("mov %r15b,0x10(%r12)", "\x45\x88\x7c\x24\x10", 1, R15, false, 0xf0, AT(R12)),
	STORE("mov %al,(%rsi,%r10,1)", "\x42\x88\x04\x16", 1, RAX, false, 0x00, ATX(RSI, R10)),
	STORE("mov %cx,(%rdi)", "\x66\x89\x0f", 2, RCX, false, 0x1110, AT(RDI)),
	STORE("mov %r10w,(%rax)", "\x66\x44\x89\x10", 2, R10, false, 0xa1a0, AT(RAX)),
	STORE("mov %ecx,(%rdi)", "\x89\x0f", 4, RCX, false, 0x13121110, AT(RDI)),
	STORE("mov %edx,0x100(%rdi)", "\x89\x97\x00\x01\x00\x00", 4, RDX, false, 0x23222120, AT(RDI)),
	STORE("mov %edx,0x0(%rbp)", "\x89\x55\x00", 4, RDX, false, 0x23222120, AT(RBP)),
	STORE("mov %r11d,-0x8(%rbp)", "\x44\x89\x5d\xf8", 4, R11, false, 0xb3b2b1b0, AT(RBP)),
	STORE("mov %eax,0x0(%r13)", "\x41\x89\x45\x00", 4, RAX, false, 0x03020100, AT(R13)),
	STORE("mov %eax,(%r12)", "\x41\x89\x04\x24", 4, RAX, false, 0x03020100, AT(R12)),
	STORE("mov %ecx,(%rsp)", "\x89\x0c\x24", 4, RCX, false, 0x13121110, NOCPU),
	STORE("mov %ecx,(%rax,%riz,1)", "\x89\x0c\x20", 4, RCX, false, 0x13121110, AT(RAX)),
	STORE("mov %esi,(%rax,%rbx,4)", "\x89\x34\x98", 4, RSI, false, 0x63626160, ATX(RAX, RBX)),
	STORE("mov %ecx,0x8(%rbp,%rdx,2)", "\x89\x4c\x55\x08", 4, RCX, false, 0x13121110, ATX(RBP, RDX)),
	STORE("mov %eax,(%rdi,%r9,1)", "\x42\x89\x04\x0f", 4, RAX, false, 0x03020100, ATX(RDI, R9)),
	STORE("mov %eax,0x1000(%rip)", "\x89\x05\x00\x10\x00\x00", 4, RAX, false, 0x03020100, ABS),
	STORE("mov %ebx,0x20001000(,%rcx,4)", "\x89\x1c\x8d\x00\x10\x00\x20", 4, RBX, false, 0x33323130, ABSX(RCX)),
	STORE("mov %ecx,0x20001000", "\x89\x0c\x25\x00\x10\x00\x20", 4, RCX, false, 0x13121110, ABS),
	STORE("mov %eax,%gs:(%rdi)", "\x65\x89\x07", 4, RAX, false, 0x03020100, AT(RDI)),
	STORE("mov %ecx,%fs:0x28", "\x64\x89\x0c\x25\x28\x00\x00\x00", 4, RCX, false, 0x13121110, NOCPU),
	STORE("mov %eax,(%edi)", "\x67\x89\x07", 4, RAX, false, 0x03020100, AT(RDI)),
	STORE("mov %rcx,(%rdi)", "\x48\x89\x0f", 8, RCX, false, 0x1716151413121110, AT(RDI)),
	STORE("mov %r8,(%r9)", "\x4d\x89\x01", 8, R8, false, 0x8786858483828180, AT(R9)),
	STORE("mov %r12,(%rbx)", "\x4c\x89\x23", 8, R12, false, 0xc7c6c5c4c3c2c1c0, AT(RBX)),
	STORE("mov %r13,0x40(%r14,%r15,8)", "\x4f\x89\x6c\xfe\x40", 8, R13, false, 0xd7d6d5d4d3d2d1d0, ATX(R14, R15)),
	STORE("mov %rdi,%gs:0x8(%rsi)", "\x65\x48\x89\x7e\x08", 8, RDI, false, 0x7776757473727170, AT(RSI)),
	STORE("data16 mov %rcx,(%rdi)", "\x66\x48\x89\x0f", 8, RCX, false, 0x1716151413121110, AT(RDI)),
	STORE("rex.W mov %cx,(%rdi) (REX before 0x66 is ignored)", "\x48\x66\x89\x0f", 2, RCX, false, 0x1110, AT(RDI)),
	STORE("data16 x13 mov %ax,(%rdi) (15 bytes)",
	      "\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x89\x07", 2, RAX, false, 0x0100, AT(RDI)),

	/* C6/C7: stores of immediates */
	STORE_IMM("movb $0x5a,(%rdi)", "\xc6\x07\x5a", 1, 0x5a, AT(RDI)),
	STORE_IMM("movb $0xff,0x7f(%rax)", "\xc6\x40\x7f\xff", 1, 0xff, AT(RAX)),
	STORE_IMM("movb $0x1,0x20001000", "\xc6\x04\x25\x00\x10\x00\x20\x01", 1, 0x01, ABS),
	STORE_IMM("movw $0x1234,(%rdi)", "\x66\xc7\x07\x34\x12", 2, 0x1234, AT(RDI)),
	STORE_IMM("movw $0xbeef,%gs:(%rdi)", "\x65\x66\xc7\x07\xef\xbe", 2, 0xbeef, AT(RDI)),
	STORE_IMM("movl $0xdeadbeef,0x10(%rdi)", "\xc7\x47\x10\xef\xbe\xad\xde", 4, 0xdeadbeef, AT(RDI)),
	STORE_IMM("movl $0x1,0x1000(%rip)", "\xc7\x05\x00\x10\x00\x00\x01\x00\x00\x00", 4, 0x01, ABS),
	STORE_IMM("movl $0x89abcdef,0x0(%r13,%r14,2)", "\x43\xc7\x44\x75\x00\xef\xcd\xab\x89", 4, 0x89abcdef, ATX(R13, R14)),
	STORE_IMM("movq $0x7fffffff,(%rdi)", "\x48\xc7\x07\xff\xff\xff\x7f", 8, 0x7fffffff, AT(RDI)),
	STORE_IMM("movq $0xffffffff80000000,(%rdi)", "\x48\xc7\x07\x00\x00\x00\x80", 8, 0xffffffff80000000, AT(RDI)),
	STORE_IMM("movq $0xffffffffffffffff,(%r8)", "\x49\xc7\x00\xff\xff\xff\xff", 8, 0xffffffffffffffff, AT(R8)),
	STORE_IMM("movq $0xfffffffffffffffe,0x8(%r12,%rcx,8)", "\x49\xc7\x44\xcc\x08\xfe\xff\xff\xff", 8, 0xfffffffffffffffe, ATX(R12, RCX)),
	STORE_IMM("rex.WR movq $0x1,(%rdi) (REX.R ignored)", "\x4c\xc7\x07\x01\x00\x00\x00", 8, 0x01, AT(RDI)),

	/* A2/A3: stores to an absolute address */
	STORE("movabs %al,0x20001000", "\xa2\x00\x10\x00\x20\x00\x00\x00\x00", 1, RAX, false, 0x00, ABS),
	STORE("movabs %ax,0x20001000", "\x66\xa3\x00\x10\x00\x20\x00\x00\x00\x00", 2, RAX, false, 0x0100, ABS),
	STORE("movabs %eax,0x20001000", "\xa3\x00\x10\x00\x20\x00\x00\x00\x00", 4, RAX, false, 0x03020100, ABS),
	STORE("movabs %rax,0x20001000", "\x48\xa3\x00\x10\x00\x20\x00\x00\x00\x00", 8, RAX, false, 0x0706050403020100, ABS),
	STORE("addr32 mov %eax,0x20001000", "\x67\xa3\x00\x10\x00\x20", 4, RAX, false, 0x03020100, ABS),

	/* 8A/8B: loads into registers */
	LOAD("mov (%rdi),%al", "\x8a\x07", 1, NONE, 1, RAX, false, 0xaa, 0x07060504030201aa, AT(RDI)),
	LOAD("mov (%rdi),%ah", "\x8a\x27", 1, NONE, 1, RAX, true, 0xaa, 0x070605040302aa00, AT(RDI)),
	LOAD("mov (%rdi),%dh", "\x8a\x37", 1, NONE, 1, RDX, true, 0xaa, 0x272625242322aa20, AT(RDI)),
	LOAD("mov (%rdi),%sil", "\x40\x8a\x37", 1, NONE, 1, RSI, false, 0xaa, 0x67666564636261aa, AT(RDI)),
	LOAD("mov (%rdi),%r12b", "\x44\x8a\x27", 1, NONE, 1, R12, false, 0xaa, 0xc7c6c5c4c3c2c1aa, AT(RDI)),
	LOAD("mov (%rdi),%al (device bits above the access ignored)", "\x8a\x07", 1, NONE, 1, RAX, false, 0xdeadbeef000000aa, 0x07060504030201aa, NOCPU),
	LOAD("mov (%rdi),%bx", "\x66\x8b\x1f", 2, NONE, 2, RBX, false, 0xbeef, 0x373635343332beef, AT(RDI)),
	LOAD("mov (%rdi),%r14w", "\x66\x44\x8b\x37", 2, NONE, 2, R14, false, 0x8001, 0xe7e6e5e4e3e28001, AT(RDI)),
	LOAD("mov (%rdi),%eax", "\x8b\x07", 4, ZERO, 4, RAX, false, 0x89abcdef, 0x89abcdef, AT(RDI)),
	LOAD("mov 0x10(%rsi),%r10d", "\x44\x8b\x56\x10", 4, ZERO, 4, R10, false, 0x12345678, 0x12345678, AT(RSI)),
	LOAD("mov 0x20001000(,%rbx,2),%ecx", "\x8b\x0c\x5d\x00\x10\x00\x20", 4, ZERO, 4, RCX, false, 0xfffffffe, 0xfffffffe, ABSX(RBX)),
	LOAD("mov %gs:0x10(%rdi),%edx", "\x65\x8b\x57\x10", 4, ZERO, 4, RDX, false, 0x80000000, 0x80000000, AT(RDI)),
	LOAD("mov (%edi),%eax", "\x67\x8b\x07", 4, ZERO, 4, RAX, false, 0x11223344, 0x11223344, AT(RDI)),
	LOAD("mov (%rdi),%rax", "\x48\x8b\x07", 8, NONE, 8, RAX, false, 0x0123456789abcdef, 0x0123456789abcdef, AT(RDI)),
	LOAD("mov 0x1000(%rip),%r15", "\x4c\x8b\x3d\x00\x10\x00\x00", 8, NONE, 8, R15, false, 0xfedcba9876543210, 0xfedcba9876543210, ABS),
	LOAD("mov (%rax,%r11,8),%r9", "\x4e\x8b\x0c\xd8", 8, NONE, 8, R9, false, 0x8000000000000001, 0x8000000000000001, ATX(RAX, R11)),
	LOAD("mov -0x80(%rbx,%rdx,1),%rsp", "\x48\x8b\x64\x13\x80", 8, NONE, 8, RSP, false, 0x1234, 0x1234, NOCPU),

	/* A0/A1: loads from an absolute address */
	LOAD("movabs 0x20001000,%al", "\xa0\x00\x10\x00\x20\x00\x00\x00\x00", 1, NONE, 1, RAX, false, 0x99, 0x0706050403020199, ABS),
	LOAD("movabs 0x20001000,%ax", "\x66\xa1\x00\x10\x00\x20\x00\x00\x00\x00", 2, NONE, 2, RAX, false, 0x9988, 0x0706050403029988, ABS),
	LOAD("movabs 0x20001000,%eax", "\xa1\x00\x10\x00\x20\x00\x00\x00\x00", 4, ZERO, 4, RAX, false, 0x99887766, 0x99887766, ABS),
	LOAD("movabs 0x20001000,%rax", "\x48\xa1\x00\x10\x00\x20\x00\x00\x00\x00", 8, NONE, 8, RAX, false, 0x9988776655443322, 0x9988776655443322, ABS),
	LOAD("rex.WB movabs 0x20001000,%rax (REX.B ignored)", "\x49\xa1\x00\x10\x00\x20\x00\x00\x00\x00", 8, NONE, 8, RAX, false, 0x1122334455667788, 0x1122334455667788, ABS),
	LOAD("movabs %gs:0x20001000,%eax", "\x65\xa1\x00\x10\x00\x20\x00\x00\x00\x00", 4, ZERO, 4, RAX, false, 0x80000001, 0x80000001, ABS),
	LOAD("addr32 mov 0x20001000,%eax", "\x67\xa1\x00\x10\x00\x20", 4, ZERO, 4, RAX, false, 0xcafef00d, 0xcafef00d, ABS),

	/* 0F B6/B7: movzx */
	LOAD("movzbl (%rdi),%eax", "\x0f\xb6\x07", 1, ZERO, 4, RAX, false, 0xfe, 0xfe, AT(RDI)),
	LOAD("movzbw (%rdi),%ax", "\x66\x0f\xb6\x07", 1, ZERO, 2, RAX, false, 0xfe, 0x07060504030200fe, AT(RDI)),
	LOAD("movzbq (%rdi),%r8", "\x4c\x0f\xb6\x07", 1, ZERO, 8, R8, false, 0xfe, 0xfe, AT(RDI)),
	LOAD("movzbl (%rdi),%r9d", "\x44\x0f\xb6\x0f", 1, ZERO, 4, R9, false, 0x80, 0x80, AT(RDI)),
	LOAD("movzwl (%rdi),%ecx", "\x0f\xb7\x0f", 2, ZERO, 4, RCX, false, 0xfffe, 0xfffe, AT(RDI)),
	LOAD("movzwq 0x4(%rdi),%rdx", "\x48\x0f\xb7\x57\x04", 2, ZERO, 8, RDX, false, 0x8000, 0x8000, AT(RDI)),
	LOAD("movzww (%rdi),%si", "\x66\x0f\xb7\x37", 2, ZERO, 2, RSI, false, 0xabcd, 0x676665646362abcd, AT(RDI)),

	/* 0F BE/BF: movsx; 63: movsxd */
	LOAD("movsbl (%rdi),%eax", "\x0f\xbe\x07", 1, SIGN, 4, RAX, false, 0x80, 0xffffff80, AT(RDI)),
	LOAD("movsbl (%rdi),%edx", "\x0f\xbe\x17", 1, SIGN, 4, RDX, false, 0x7f, 0x7f, AT(RDI)),
	LOAD("movsbw (%rdi),%cx", "\x66\x0f\xbe\x0f", 1, SIGN, 2, RCX, false, 0x80, 0x171615141312ff80, AT(RDI)),
	LOAD("movsbq (%rdi),%rdx", "\x48\x0f\xbe\x17", 1, SIGN, 8, RDX, false, 0x80, 0xffffffffffffff80, AT(RDI)),
	LOAD("movsbq (%rdi),%rdx (device bits above the access ignored)", "\x48\x0f\xbe\x17", 1, SIGN, 8, RDX, false, 0x123456789abcde80, 0xffffffffffffff80, NOCPU),
	LOAD("movswl (%rdi),%esi", "\x0f\xbf\x37", 2, SIGN, 4, RSI, false, 0x8000, 0xffff8000, AT(RDI)),
	LOAD("movswq (%rdi),%r11", "\x4c\x0f\xbf\x1f", 2, SIGN, 8, R11, false, 0x8000, 0xffffffffffff8000, AT(RDI)),
	LOAD("movsww (%rdi),%bx", "\x66\x0f\xbf\x1f", 2, SIGN, 2, RBX, false, 0x8000, 0x3736353433328000, AT(RDI)),
	LOAD("movslq (%rdi),%rax", "\x48\x63\x07", 4, SIGN, 8, RAX, false, 0x80000000, 0xffffffff80000000, AT(RDI)),
	LOAD("movslq 0x8(%rsi),%r13", "\x4c\x63\x6e\x08", 4, SIGN, 8, R13, false, 0x7fffffff, 0x7fffffff, AT(RSI)),
	LOAD("data16 movslq (%rdi),%rax", "\x66\x48\x63\x07", 4, SIGN, 8, RAX, false, 0xfffffffe, 0xfffffffffffffffe, AT(RDI)),

	/* Memory accesses that are not emulated */
	FAILS("rep movsb %ds:(%rsi),%es:(%rdi)", "\xf3\xa4", -EOPNOTSUPP),
	FAILS("movsb %ds:(%rsi),%es:(%rdi)", "\xa4", -EOPNOTSUPP),
	FAILS("movsq %ds:(%rsi),%es:(%rdi)", "\x48\xa5", -EOPNOTSUPP),
	FAILS("rep stos %eax,%es:(%rdi)", "\xf3\xab", -EOPNOTSUPP),
	FAILS("stos %eax,%es:(%rdi)", "\xab", -EOPNOTSUPP),
	FAILS("lods %ds:(%rsi),%al", "\xac", -EOPNOTSUPP),
	FAILS("outsl %ds:(%rsi),(%dx)", "\x6f", -EOPNOTSUPP),
	FAILS("movups (%rdi),%xmm0", "\x0f\x10\x07", -EOPNOTSUPP),
	FAILS("movdqu (%rdi),%xmm0", "\xf3\x0f\x6f\x07", -EOPNOTSUPP),
	FAILS("movdqa %xmm1,(%rdi)", "\x66\x0f\x7f\x0f", -EOPNOTSUPP),
	FAILS("movd (%rdi),%xmm0", "\x66\x0f\x6e\x07", -EOPNOTSUPP),
	FAILS("movd %xmm0,(%rdi)", "\x66\x0f\x7e\x07", -EOPNOTSUPP),
	FAILS("movq %xmm0,(%rdi)", "\x66\x0f\xd6\x07", -EOPNOTSUPP),
	FAILS("movntdq %xmm0,(%rdi)", "\x66\x0f\xe7\x07", -EOPNOTSUPP),
	FAILS("movnti %eax,(%rdi)", "\x0f\xc3\x07", -EOPNOTSUPP),
	FAILS("movntdqa (%rdi),%xmm0", "\x66\x0f\x38\x2a\x07", -EOPNOTSUPP),
	FAILS("vmovdqu (%rdi),%ymm0", "\xc5\xfe\x6f\x07", -EOPNOTSUPP),
	FAILS("vmovdqu (%r8),%ymm0", "\xc4\xc1\x7e\x6f\x00", -EOPNOTSUPP),
	FAILS("vmovdqu64 (%rdi),%zmm0", "\x62\xf1\xfe\x48\x6f\x07", -EOPNOTSUPP),
	FAILS("lock mov %eax,(%rdi)", "\xf0\x89\x07", -EOPNOTSUPP),
	FAILS("xrelease mov %eax,(%rdi) (F3 before mov)", "\xf3\x89\x07", -EOPNOTSUPP),
	FAILS("repnz mov (%rdi),%eax", "\xf2\x8b\x07", -EOPNOTSUPP),
	FAILS("lock addl $0x1,(%rdi)", "\xf0\x83\x07\x01", -EOPNOTSUPP),
	FAILS("orl $0x1,(%rdi)", "\x83\x0f\x01", -EOPNOTSUPP),
	FAILS("add (%rdi),%eax", "\x03\x07", -EOPNOTSUPP),
	FAILS("cmpb $0x0,(%rdi)", "\x80\x3f\x00", -EOPNOTSUPP),
	FAILS("testl $0x1,(%rdi)", "\xf7\x07\x01\x00\x00\x00", -EOPNOTSUPP),
	FAILS("incl (%rdi)", "\xff\x07", -EOPNOTSUPP),
	FAILS("xchg %eax,(%rdi)", "\x87\x07", -EOPNOTSUPP),
	FAILS("lock cmpxchg %ecx,(%rdi)", "\xf0\x0f\xb1\x0f", -EOPNOTSUPP),
	FAILS("lock xadd %eax,(%rdi)", "\xf0\x0f\xc1\x07", -EOPNOTSUPP),
	FAILS("flds (%rdi)", "\xd9\x07", -EOPNOTSUPP),
	FAILS("pfadd (%rdi),%mm0 (3DNow!)", "\x0f\x0f\x07\x9e", -EOPNOTSUPP),
	FAILS("movbe (%rdi),%eax", "\x0f\x38\xf0\x07", -EOPNOTSUPP),
	FAILS("clflush (%rdi)", "\x0f\xae\x3f", -EOPNOTSUPP),
	FAILS("mov %es,(%rdi)", "\x8c\x07", -EOPNOTSUPP),
	FAILS("movsxd (%rdi),%eax (no REX.W)", "\x63\x07", -EOPNOTSUPP),

	/* Not memory accesses, undefined, too long */
	FAILS("mov %eax,%ecx", "\x89\xc1", -EINVAL),
	FAILS("mov %ecx,%eax", "\x8b\xc1", -EINVAL),
	FAILS("mov %ah,%al", "\x88\xe0", -EINVAL),
	FAILS("mov $0x1,%al (C6 /0)", "\xc6\xc0\x01", -EINVAL),
	FAILS("mov $0x1,%eax (C7 /0)", "\xc7\xc0\x01\x00\x00\x00", -EINVAL),
	FAILS("movzbl %al,%eax", "\x0f\xb6\xc0", -EINVAL),
	FAILS("movslq %eax,%rax", "\x48\x63\xc0", -EINVAL),
	FAILS("xorps %xmm0,%xmm0", "\x0f\x57\xc0", -EINVAL),
	FAILS("add %eax,%ecx", "\x01\xc1", -EINVAL),
	FAILS("lea 0x8(%rdi),%rax", "\x48\x8d\x47\x08", -EINVAL),
	FAILS("nop", "\x90", -EINVAL),
	FAILS("nopl 0x0(%rax)", "\x0f\x1f\x40\x00", -EINVAL),
	FAILS("ret", "\xc3", -EINVAL),
	FAILS("ud2", "\x0f\x0b", -EINVAL),
	FAILS("(bad) C6 /1 (undefined)", "\xc6\x0f\x01", -EINVAL),
		FAILS("(bad) push %es, invalid in 64-bit mode", "\x06", -EINVAL),
	FAILS("rex.W nop", "\x48\x90", -EINVAL),
	FAILS("(bad) FF /7 with a register", "\xff\xff", -EINVAL),
	FAILS("14 x 0x66 then mov %ax,(%rdi): 16 bytes",
	      "\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x89\x07", -EINVAL),
	FAILS("15 prefixes and no opcode",
	      "\x66\x67\x65\x64\x2e\x3e\x26\x36\x48\x66\x67\x65\x64\x2e\x41", -EINVAL),

	/* Buffer ends first (every valid case also checks its own prefixes) */
	FAILS("empty buffer", "", -E2BIG),
	FAILS("lone 0x66", "\x66", -E2BIG),
	FAILS("lone REX.W", "\x48", -E2BIG),
	FAILS("lone 0x0f", "\x0f", -E2BIG),
	FAILS("movl $imm32 missing its last byte", "\xc7\x07\x01\x00\x00", -E2BIG),
	FAILS("movabs moffs64 missing its last byte", "\x48\xa1\x00\x10\x00\x20\x00\x00\x00", -E2BIG),
	FAILS("movdqu without ModRM", "\xf3\x0f\x6f", -E2BIG),
};

/* ---- reporting ---- */

static int test_number, passed, failed;
static char why[4096];

static void complain(const char *fmt, ...)
{
	size_t used = strlen(why);
	va_list ap;

	if (used >= sizeof(why) - 2)
		return;
	why[used++] = '#';
	why[used++] = ' ';
	va_start(ap, fmt);
	vsnprintf(why + used, sizeof(why) - used, fmt, ap);
	va_end(ap);
	used = strlen(why);
	if (used < sizeof(why) - 1) {
		why[used] = '\n';
		why[used + 1] = '\0';
	}
}

static void report(const char *prefix, const char *text)
{
	test_number++;
	if (why[0]) {
		failed++;
		printf("not ok %d - %s%s\n%s", test_number, prefix, text, why);
		why[0] = '\0';
	} else {
		passed++;
		printf("ok %d - %s%s\n", test_number, prefix, text);
	}
}

/* ---- decoding right before an unmapped page ---- */

static u8 *guard_end;	/* the first byte of a PROT_NONE page */

static int decode_at_guard(const char *bytes, unsigned int n, struct pciem_insn *insn)
{
	u8 *p = guard_end - n;

	memcpy(p, bytes, n);
	return pciem_insn_decode(p, n, insn);
}

static bool same_insn(const struct pciem_insn *a, const struct pciem_insn *b)
{
	return a->len == b->len && a->size == b->size && a->kind == b->kind &&
	       a->ext == b->ext && a->dst_size == b->dst_size &&
	       a->reg == b->reg && a->high_byte == b->high_byte &&
	       a->has_imm == b->has_imm && a->imm == b->imm;
}

static unsigned long *pt_reg(struct pt_regs *regs, int i)
{
	switch (i) {
	case RAX: return &regs->ax;
	case RCX: return &regs->cx;
	case RDX: return &regs->dx;
	case RBX: return &regs->bx;
	case RSP: return &regs->sp;
	case RBP: return &regs->bp;
	case RSI: return &regs->si;
	case RDI: return &regs->di;
	case R8: return &regs->r8;
	case R9: return &regs->r9;
	case R10: return &regs->r10;
	case R11: return &regs->r11;
	case R12: return &regs->r12;
	case R13: return &regs->r13;
	case R14: return &regs->r14;
	default: return &regs->r15;
	}
}

static void check_case(const struct insn_case *tc)
{
	struct pciem_insn insn, again;
	struct pt_regs regs = { 0 };
	u8 padded[32];
	unsigned int n;
	int ret, i;

	ret = decode_at_guard(tc->bytes, tc->nbytes, &insn);
	if (ret != tc->ret) {
		complain("decode returned %d, expected %d", ret, tc->ret);
		return;
	}
	if (ret)
		return;

	if (insn.len != tc->nbytes)
		complain("len %u, expected %u", insn.len, tc->nbytes);
	if (insn.kind != tc->kind)
		complain("kind %u, expected %u", insn.kind, tc->kind);
	if (insn.size != tc->size)
		complain("size %u, expected %u", insn.size, tc->size);
	if (insn.ext != tc->ext)
		complain("ext %u, expected %u", insn.ext, tc->ext);
	if (insn.dst_size != tc->dst_size)
		complain("dst_size %u, expected %u", insn.dst_size, tc->dst_size);
	if (!tc->has_imm && insn.reg != tc->reg)
		complain("reg %u, expected %u", insn.reg, tc->reg);
	if (insn.high_byte != tc->high_byte)
		complain("high_byte %d, expected %d", insn.high_byte, tc->high_byte);
	if (insn.has_imm != tc->has_imm || insn.imm != tc->imm)
		complain("imm %d/0x%llx, expected %d/0x%llx", insn.has_imm,
			 (unsigned long long)insn.imm, tc->has_imm,
			 (unsigned long long)tc->imm);

	for (n = 0; n < tc->nbytes; n++) {
		ret = decode_at_guard(tc->bytes, n, &again);
		if (ret != -E2BIG)
			complain("the first %u bytes gave %d, expected -E2BIG", n, ret);
	}
	memset(padded, 0xcc, sizeof(padded));
	memcpy(padded, tc->bytes, tc->nbytes);
	ret = pciem_insn_decode(padded, sizeof(padded), &again);
	if (ret || !same_insn(&insn, &again))
		complain("trailing bytes changed the result (%d, len %u)", ret, again.len);

	for (i = 0; i < 16; i++)
		*pt_reg(&regs, i) = pattern(i);
	if (tc->kind == PCIEM_INSN_WRITE) {
		u64 v = pciem_insn_write_value(&insn, &regs);

		if (v != tc->value)
			complain("write value 0x%llx, expected 0x%llx",
				 (unsigned long long)v, (unsigned long long)tc->value);
		return;
	}
	pciem_insn_complete_read(&insn, &regs, tc->value);
	for (i = 0; i < 16; i++) {
		u64 want = i == tc->reg ? tc->result : pattern(i);

		if (*pt_reg(&regs, i) != want)
			complain("register %d is 0x%llx, expected 0x%llx", i,
				 (unsigned long long)*pt_reg(&regs, i),
				 (unsigned long long)want);
	}
}

/*
 * Random bytes, biased towards prefixes and opcodes the decoder knows. The
 * result must not depend on buflen once buflen is long enough to give
 * anything but -E2BIG, and a success must fit in the bytes given.
 */
static void check_fuzz(void)
{
	static const u8 likely[] = {
		0x66, 0x67, 0x65, 0x64, 0x2e, 0xf0, 0xf2, 0xf3, 0x40, 0x41,
		0x44, 0x48, 0x4c, 0x4f, 0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7,
		0xa0, 0xa1, 0xa2, 0xa3, 0x63, 0x0f, 0xb6, 0xb7, 0xbe, 0xbf,
		0x04, 0x05, 0x07, 0x24, 0x25, 0x44, 0x45, 0x84, 0x85, 0xc0,
	};
	u64 seed = 0x9e3779b97f4a7c15ULL;
	unsigned int iter, n, k, decoded = 0;
	char buf[PCIEM_INSN_MAX_LEN];

	for (iter = 0; iter < 50000 && !why[0]; iter++) {
		struct pciem_insn full, part;
		int ret_full, ret;

		for (k = 0; k < sizeof(buf); k++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			buf[k] = seed & 0x100 ? likely[(seed >> 16) % sizeof(likely)] : (u8)(seed >> 24);
		}
		ret_full = decode_at_guard(buf, sizeof(buf), &full);
		if (ret_full != 0 && ret_full != -EINVAL && ret_full != -EOPNOTSUPP)
			complain("15 bytes gave %d", ret_full);
		if (!ret_full) {
			decoded++;
			if (!full.len || full.len > sizeof(buf) ||
			    (full.size != 1 && full.size != 2 && full.size != 4 && full.size != 8) ||
			    full.reg > 15 || (full.high_byte && full.reg > 3))
				complain("implausible decode, len %u size %u reg %u",
					 full.len, full.size, full.reg);
		}
		for (n = 0; n < sizeof(buf); n++) {
			ret = decode_at_guard(buf, n, &part);
			if (ret == -E2BIG)
				continue;
			if (ret != ret_full || (!ret && !same_insn(&full, &part)))
				complain("%u bytes gave %d, 15 gave %d", n, ret, ret_full);
		}
		if (why[0]) {
			for (k = 0; k < sizeof(buf); k++)
				complain("byte %u: 0x%02x", k, (u8)buf[k]);
		}
	}
	if (decoded < 1000)
		complain("only %u of the random buffers decoded", decoded);
}

/* ---- running the instruction on the CPU ---- */

static u64 cpu_regs[16];	/* the stub's registers, in and out */
static u8 device[PAGE];		/* the emulated run's memory */
static sigjmp_buf cpu_escape;
static enum { CPU_IDLE, CPU_PROBE, CPU_NATIVE, CPU_EMULATE } cpu_mode;
static uintptr_t cpu_addr;
static int cpu_faults;
static const char *cpu_error;

static const int greg_index[16] = {
	REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
	REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

/* What the kernel's fault path will do, with ucontext in place of pt_regs. */
static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
	uintptr_t addr = (uintptr_t)si->si_addr;
	struct pciem_insn insn;
	struct pt_regs regs = { 0 };
	u64 val = 0;
	int i;

	(void)sig;
	if (cpu_mode == CPU_IDLE) {
		/* A real crash, e.g. the decoder reading past buflen. */
		signal(SIGSEGV, SIG_DFL);
		return;
	}
	if (cpu_mode == CPU_NATIVE) {
		cpu_error = "the instruction faulted against mapped memory";
		siglongjmp(cpu_escape, 1);
	}
	if (addr < DATA || addr >= DATA + PAGE) {
		cpu_error = "fault outside the device page";
		siglongjmp(cpu_escape, 1);
	}
	cpu_addr = addr;
	if (cpu_mode == CPU_PROBE)
		siglongjmp(cpu_escape, 1);
	if (++cpu_faults > 1) {
		cpu_error = "the emulated instruction faulted twice";
		siglongjmp(cpu_escape, 1);
	}
	if (pciem_insn_decode((const u8 *)g[REG_RIP], PCIEM_INSN_MAX_LEN, &insn) ||
	    addr + insn.size > DATA + PAGE) {
		cpu_error = "the handler could not decode the instruction";
		siglongjmp(cpu_escape, 1);
	}
	for (i = 0; i < 16; i++)
		*pt_reg(&regs, i) = g[greg_index[i]];
	if (insn.kind == PCIEM_INSN_WRITE) {
		val = pciem_insn_write_value(&insn, &regs);
		memcpy(device + (addr - DATA), &val, insn.size);
	} else {
		memcpy(&val, device + (addr - DATA), insn.size);
		pciem_insn_complete_read(&insn, &regs, val);
		for (i = 0; i < 16; i++)
			g[greg_index[i]] = *pt_reg(&regs, i);
	}
	g[REG_RIP] += insn.len;
}

static u8 *emit(u8 *p, const void *bytes, size_t n)
{
	memcpy(p, bytes, n);
	return p + n;
}

/* mov disp8(%rax),%reg (load) or mov %reg,disp8(%rax) for cpu_regs[reg]. */
static u8 *emit_reg_move(u8 *p, int reg, bool load)
{
	u8 code[4] = {
		0x48 | (reg >= 8 ? 0x04 : 0), load ? 0x8b : 0x89,
		0x40 | (reg & 7) << 3, (u8)(reg * 8),
	};

	return emit(p, code, sizeof(code));
}

static u8 *emit_movabs_rax(u8 *p, u8 opcode, u64 imm)
{
	u8 code[2] = { 0x48, opcode };

	p = emit(p, code, sizeof(code));
	return emit(p, &imm, sizeof(imm));
}

/*
 * The stub: save the callee-saved registers, load every register but rsp
 * from cpu_regs, run the instruction (ending at INSN_END), store them back.
 */
static void build_stub(const struct insn_case *tc)
{
	static const u8 save[] = { 0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57 };
	static const u8 restore[] = { 0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3 };
	u8 *code = (u8 *)REGION, *p;
	int r;

	mprotect(code, PAGE, PROT_READ | PROT_WRITE);
	memset(code, 0x90, PAGE);
	p = emit(code, save, sizeof(save));
	p = emit_movabs_rax(p, 0xb8, (uintptr_t)cpu_regs);	/* movabs $cpu_regs,%rax */
	for (r = 1; r < 16; r++)
		if (r != RSP)
			p = emit_reg_move(p, r, true);
	p = emit_reg_move(p, RAX, true);
	p = emit((u8 *)INSN_END - tc->nbytes, tc->bytes, tc->nbytes);
	p = emit_movabs_rax(p, 0xa3, (uintptr_t)cpu_regs);	/* movabs %rax,cpu_regs */
	p = emit_movabs_rax(p, 0xb8, (uintptr_t)cpu_regs);
	for (r = 1; r < 16; r++)
		if (r != RSP)
			p = emit_reg_move(p, r, false);
	emit(p, restore, sizeof(restore));
	mprotect(code, PAGE, PROT_READ | PROT_EXEC);
	__builtin___clear_cache((char *)code, (char *)code + PAGE);
}

static bool run_stub(int mode)
{
	void (*stub)(void) = (void (*)(void))REGION;

	cpu_error = NULL;
	cpu_faults = 0;
	if (sigsetjmp(cpu_escape, 1)) {
		cpu_mode = CPU_IDLE;
		return false;
	}
	cpu_mode = mode;
	__asm__ __volatile__("" ::: "memory");
	stub();
	__asm__ __volatile__("" ::: "memory");
	cpu_mode = CPU_IDLE;
	return true;
}

static void fill(u8 *page)
{
	unsigned int i;

	for (i = 0; i < PAGE; i++)
		page[i] = (u8)(i * 0x9d + 0x35);
}

static void check_on_cpu(const struct insn_case *tc)
{
	u8 *data = (u8 *)DATA;
	u64 in[16], native[16];
	u8 initial[PAGE];
	size_t off;
	int i;

	for (i = 0; i < 16; i++)
		in[i] = pattern(i);
	if (tc->base != NOREG)
		in[tc->base] = BASE_VALUE;
	if (tc->index != NOREG)
		in[tc->index] = INDEX_VALUE;
	build_stub(tc);

	/* Where does it access? Fault once and look. */
	mprotect(data, PAGE, PROT_NONE);
	memcpy(cpu_regs, in, sizeof(in));
	if (run_stub(CPU_PROBE) || cpu_error) {
		complain("probe: %s", cpu_error ? cpu_error : "no fault");
		return;
	}
	off = cpu_addr - DATA;
	if (off + tc->size > PAGE) {
		complain("access at 0x%zx crosses the page", off);
		return;
	}
	fill(initial);
	if (tc->kind == PCIEM_INSN_READ)
		memcpy(initial + off, &tc->value, tc->size);

	/* Natively against memory. */
	mprotect(data, PAGE, PROT_READ | PROT_WRITE);
	memcpy(data, initial, PAGE);
	memcpy(cpu_regs, in, sizeof(in));
	if (!run_stub(CPU_NATIVE)) {
		complain("native run faulted: %s", cpu_error);
		return;
	}
	memcpy(native, cpu_regs, sizeof(native));

	/* Against a PROT_NONE page, emulated by the SIGSEGV handler. */
	memcpy(device, initial, PAGE);
	mprotect(data, PAGE, PROT_NONE);
	memcpy(cpu_regs, in, sizeof(in));
	if (!run_stub(CPU_EMULATE)) {
		complain("emulated run failed: %s", cpu_error);
		return;
	}
	if (cpu_faults != 1)
		complain("%d faults in the emulated run", cpu_faults);
	for (i = 0; i < 16; i++) {
		if (i != RSP && cpu_regs[i] != native[i])
			complain("register %d: emulated 0x%llx, CPU 0x%llx", i,
				 (unsigned long long)cpu_regs[i],
				 (unsigned long long)native[i]);
	}
	mprotect(data, PAGE, PROT_READ);
	if (memcmp(device, data, PAGE))
		complain("memory differs after the emulated run");

	/* The table's expectations hold on the CPU too. */
	if (tc->kind == PCIEM_INSN_READ && tc->reg != tc->base && tc->reg != tc->index &&
	    native[tc->reg] != tc->result)
		complain("CPU put 0x%llx in register %d, table says 0x%llx",
			 (unsigned long long)native[tc->reg], tc->reg,
			 (unsigned long long)tc->result);
	if (tc->kind == PCIEM_INSN_WRITE &&
	    (tc->has_imm || (tc->reg != tc->base && tc->reg != tc->index))) {
		u64 stored = 0;

		memcpy(&stored, data + off, tc->size);
		if (stored != tc->value)
			complain("CPU stored 0x%llx, table says 0x%llx",
				 (unsigned long long)stored,
				 (unsigned long long)tc->value);
	}
}

static bool setup(void)
{
	struct sigaction sa = { 0 };
	void *guard, *region;

	guard = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard == MAP_FAILED || mprotect((u8 *)guard + PAGE, PAGE, PROT_NONE))
		return false;
	guard_end = (u8 *)guard + PAGE;

	region = mmap((void *)REGION, 2 * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (region != (void *)REGION)
		return false;

	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGSEGV, &sa, NULL) == 0;
}

int main(void)
{
	size_t i;

	if (!setup()) {
		perror("insn: setup");
		printf("insn: 0 passed, 1 failed\n");
		return 1;
	}
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		check_case(&cases[i]);
		report("", cases[i].text);
	}
	check_fuzz();
	report("", "random bytes: the result does not depend on buflen");
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		if (!cases[i].cpu)
			continue;
		check_on_cpu(&cases[i]);
		report("cpu: ", cases[i].text);
	}
	printf("insn: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
