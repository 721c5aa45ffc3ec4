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
 * encoding (8B for a register mov, B0/B8 for mov $imm, /0 for F6/F7 /1 test,
 * 0x67 before 0x66) or cannot express one (ignored REX, 13 0x66 prefixes, a
 * second segment prefix, lock or rep before mov, movsxd without REX.W,
 * undefined encodings), objdump's reading of the bytes is what the line says.
 *
 * Every case is decoded from the very end of a page followed by a PROT_NONE
 * page, so a read past buflen crashes the test. A decoded instruction, and
 * a refused one (-EOPNOTSUPP, whose length the fault path needs to skip it),
 * must also give -E2BIG for every shorter buffer and the same result with
 * trailing bytes. The refused cases cover what the fault path meets besides
 * moves: every ModRM, SIB, displacement and immediate form, the 0F, 0F 38,
 * 0F 3A, VEX and EVEX maps, and string instructions, whose element size,
 * rep and 0x67 the decoder reports.
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
	u8 string;	/* refused string instructions: what the decoder reports */
	bool rep, addr32;
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
/* A refused memory access: its length is all the decoder reports. */
#define REFUSED(t, b)	FAILS(t, b, -EOPNOTSUPP)
/* A refused string instruction: element size, F2/F3, 0x67 too. */
#define STRING(t, b, op, sz, r, a32) \
	{ .text = t, BYTES(b), .ret = -EOPNOTSUPP, \
	  .string = PCIEM_STRING_##op, .size = sz, .rep = r, .addr32 = a32 }

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
	STORE("addr32 mov %ax,0x20001000", "\x66\x67\xa3\x00\x10\x00\x20", 2, RAX, false, 0x0100, ABS),

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
	LOAD("addr32 mov 0x20001000,%al", "\x67\xa0\x00\x10\x00\x20", 1, NONE, 1, RAX, false, 0x99, 0x0706050403020199, ABS),
	LOAD("addr32 mov 0x20001000,%rax", "\x67\x48\xa1\x00\x10\x00\x20", 8, NONE, 8, RAX, false, 0x8877665544332211, 0x8877665544332211, ABS),

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

	/* Memory accesses that are not emulated: refused, with their length */
	STRING("rep movsb %ds:(%rsi),%es:(%rdi)", "\xf3\xa4", MOVS, 1, true, false),
	STRING("movsb %ds:(%rsi),%es:(%rdi)", "\xa4", MOVS, 1, false, false),
	STRING("movsq %ds:(%rsi),%es:(%rdi)", "\x48\xa5", MOVS, 8, false, false),
	STRING("rep stos %eax,%es:(%rdi)", "\xf3\xab", STOS, 4, true, false),
	STRING("stos %eax,%es:(%rdi)", "\xab", STOS, 4, false, false),
	STRING("lods %ds:(%rsi),%al", "\xac", LODS, 1, false, false),
	STRING("outsl %ds:(%rsi),(%dx)", "\x6f", OUTS, 4, false, false),
	REFUSED("movups (%rdi),%xmm0", "\x0f\x10\x07"),
	REFUSED("movdqu (%rdi),%xmm0", "\xf3\x0f\x6f\x07"),
	REFUSED("movdqa %xmm1,(%rdi)", "\x66\x0f\x7f\x0f"),
	REFUSED("movd (%rdi),%xmm0", "\x66\x0f\x6e\x07"),
	REFUSED("movd %xmm0,(%rdi)", "\x66\x0f\x7e\x07"),
	REFUSED("movq %xmm0,(%rdi)", "\x66\x0f\xd6\x07"),
	REFUSED("movntdq %xmm0,(%rdi)", "\x66\x0f\xe7\x07"),
	REFUSED("movnti %eax,(%rdi)", "\x0f\xc3\x07"),
	REFUSED("movntdqa (%rdi),%xmm0", "\x66\x0f\x38\x2a\x07"),
	REFUSED("vmovdqu (%rdi),%ymm0", "\xc5\xfe\x6f\x07"),
	REFUSED("vmovdqu (%r8),%ymm0", "\xc4\xc1\x7e\x6f\x00"),
	REFUSED("vmovdqu64 (%rdi),%zmm0", "\x62\xf1\xfe\x48\x6f\x07"),
	REFUSED("lock mov %eax,(%rdi)", "\xf0\x89\x07"),
	REFUSED("xrelease mov %eax,(%rdi) (F3 before mov)", "\xf3\x89\x07"),
	REFUSED("repnz mov (%rdi),%eax", "\xf2\x8b\x07"),
	REFUSED("lock addl $0x1,(%rdi)", "\xf0\x83\x07\x01"),
	REFUSED("orl $0x1,(%rdi)", "\x83\x0f\x01"),
	REFUSED("add (%rdi),%eax", "\x03\x07"),
	REFUSED("cmpb $0x0,(%rdi)", "\x80\x3f\x00"),
	REFUSED("testl $0x1,(%rdi)", "\xf7\x07\x01\x00\x00\x00"),
	REFUSED("incl (%rdi)", "\xff\x07"),
	REFUSED("xchg %eax,(%rdi)", "\x87\x07"),
	REFUSED("lock cmpxchg %ecx,(%rdi)", "\xf0\x0f\xb1\x0f"),
	REFUSED("lock xadd %eax,(%rdi)", "\xf0\x0f\xc1\x07"),
	REFUSED("flds (%rdi)", "\xd9\x07"),
	REFUSED("pfadd (%rdi),%mm0 (3DNow!)", "\x0f\x0f\x07\x9e"),
	REFUSED("movbe (%rdi),%eax", "\x0f\x38\xf0\x07"),
	REFUSED("clflush (%rdi)", "\x0f\xae\x3f"),
	REFUSED("mov %es,(%rdi)", "\x8c\x07"),
	REFUSED("movsxd (%rdi),%eax (no REX.W)", "\x63\x07"),

	/* ALU read-modify-write: every ModRM, SIB and displacement form */
	REFUSED("add %eax,(%rdi)", "\x01\x07"),
	REFUSED("add %eax,0x8(%rdi)", "\x01\x47\x08"),
	REFUSED("add %eax,-0x80(%rdi)", "\x01\x47\x80"),
	REFUSED("add %eax,0x100(%rdi)", "\x01\x87\x00\x01\x00\x00"),
	REFUSED("add %eax,(%rsp)", "\x01\x04\x24"),
	REFUSED("add %eax,0x8(%rsp)", "\x01\x44\x24\x08"),
	REFUSED("add %eax,0x100(%rsp)", "\x01\x84\x24\x00\x01\x00\x00"),
	REFUSED("add %eax,0x0(%rbp)", "\x01\x45\x00"),
	REFUSED("add %eax,(%r12)", "\x41\x01\x04\x24"),
	REFUSED("add %eax,0x0(%r13)", "\x41\x01\x45\x00"),
	REFUSED("add %eax,(%rax,%rcx,4)", "\x01\x04\x88"),
	REFUSED("add %eax,0x10(%rax,%rcx,8)", "\x01\x44\xc8\x10"),
	REFUSED("add %eax,0x1000(%rax,%r15,2)", "\x42\x01\x84\x78\x00\x10\x00\x00"),
	REFUSED("add %eax,0x0(%rbp,%rcx,1)", "\x01\x44\x0d\x00"),
	REFUSED("add %eax,0x12345678(%rbp,%rcx,1)", "\x01\x84\x0d\x78\x56\x34\x12"),
	REFUSED("add %eax,0x12345678(,%rcx,4)", "\x01\x04\x8d\x78\x56\x34\x12"),
	REFUSED("add %eax,0x0(%r13,%rax,1)", "\x41\x01\x44\x05\x00"),
	REFUSED("add %eax,0x1000(%rip)", "\x01\x05\x00\x10\x00\x00"),
	REFUSED("add %eax,0x20001000", "\x01\x04\x25\x00\x10\x00\x20"),
	REFUSED("add %eax,(%edi)", "\x67\x01\x07"),
	REFUSED("add %eax,%gs:0x10(%rdi)", "\x65\x01\x47\x10"),
	REFUSED("or %al,(%rdi)", "\x08\x07"),
	REFUSED("adc (%rdi),%cl", "\x12\x0f"),
	REFUSED("sbb %rax,(%rdi)", "\x48\x19\x07"),
	REFUSED("and (%rdi),%r9", "\x4c\x23\x0f"),
	REFUSED("sub %cx,(%rdi)", "\x66\x29\x0f"),
	REFUSED("xor (%rdi),%dl", "\x32\x17"),
	REFUSED("cmp %eax,(%rdi)", "\x39\x07"),
	REFUSED("cmp (%rdi),%r15", "\x4c\x3b\x3f"),
	REFUSED("lock add %eax,(%rdi)", "\xf0\x01\x07"),
	REFUSED("lock and %rax,0x10(%rsp)", "\xf0\x48\x21\x44\x24\x10"),

	/* ALU with immediates, up to the 15-byte limit */
	REFUSED("addb $0x1,(%rdi)", "\x80\x07\x01"),
	REFUSED("addb $0x1,0x12345678(%rax,%rbx,8)", "\x80\x84\xd8\x78\x56\x34\x12\x01"),
	REFUSED("addw $0x1234,(%rdi)", "\x66\x81\x07\x34\x12"),
	REFUSED("addw $0x1,(%rdi)", "\x66\x83\x07\x01"),
	REFUSED("addl $0x12345678,(%rdi)", "\x81\x07\x78\x56\x34\x12"),
	REFUSED("addl $0x1,(%rdi)", "\x83\x07\x01"),
	REFUSED("addq $0x12345678,(%rdi)", "\x48\x81\x07\x78\x56\x34\x12"),
	REFUSED("addq $0xffffffffffffffff,(%rdi)", "\x48\x83\x07\xff"),
	REFUSED("orl $0x12345678,0x12345678(%rax,%rbx,8)", "\x81\x8c\xd8\x78\x56\x34\x12\x78\x56\x34\x12"),
	REFUSED("andl $0x1,0x1000(%rip)", "\x83\x25\x00\x10\x00\x00\x01"),
	REFUSED("andl $0x12345678,0x1000(%rip)", "\x81\x25\x00\x10\x00\x00\x78\x56\x34\x12"),
	REFUSED("xorw $0x1234,0x10(%rdi)", "\x66\x81\x77\x10\x34\x12"),
	REFUSED("cmpq $0xffffffffffffffff,(%rsp)", "\x48\x83\x3c\x24\xff"),
	REFUSED("subl $0x12345678,0x20001000", "\x81\x2c\x25\x00\x10\x00\x20\x78\x56\x34\x12"),
	REFUSED("adcb $0x80,(%r12)", "\x41\x80\x14\x24\x80"),
	REFUSED("sbbw $0x1,0x0(%r13)", "\x66\x41\x83\x5d\x00\x01"),
	REFUSED("lock orl $0x12345678,%fs:0x12345678(%r8,%r9,8)", "\x64\xf0\x43\x81\x8c\xc8\x78\x56\x34\x12\x78\x56\x34\x12"),
	REFUSED("fs lock orl $0x12345678,%fs:0x12345678(%r8,%r9,8) (and 0x2e: 15 bytes)", "\x64\xf0\x2e\x43\x81\x8c\xc8\x78\x56\x34\x12\x78\x56\x34\x12"),
	FAILS("(bad) the same with another 0x2e: 16 bytes", "\x64\xf0\x2e\x2e\x43\x81\x8c\xc8\x78\x56\x34\x12\x78\x56\x34\x12", -EINVAL),

	/* test, xchg; F6/F7 /1 is an alias of test */
	REFUSED("test %eax,(%rdi)", "\x85\x07"),
	REFUSED("test %cl,0x10(%rsi)", "\x84\x4e\x10"),
	REFUSED("test %r8,(%rax,%rbx,1)", "\x4c\x85\x04\x18"),
	REFUSED("testb $0x1,(%rdi)", "\xf6\x07\x01"),
	REFUSED("testw $0x1234,(%rdi)", "\x66\xf7\x07\x34\x12"),
	REFUSED("testl $0x12345678,0x8(%rsp)", "\xf7\x44\x24\x08\x78\x56\x34\x12"),
	REFUSED("testq $0x1,(%rdi)", "\x48\xf7\x07\x01\x00\x00\x00"),
	REFUSED("testl $0x1,0x1000(%rip)", "\xf7\x05\x00\x10\x00\x00\x01\x00\x00\x00"),
	REFUSED("testb $0x1,(%rdi) (F6 /1)", "\xf6\x0f\x01"),
	REFUSED("testl $0x1,(%rdi) (F7 /1)", "\xf7\x0f\x01\x00\x00\x00"),
	REFUSED("testw $0x1234,0x10(%rdi) (F7 /1)", "\x66\xf7\x4f\x10\x34\x12"),
	REFUSED("xchg %cl,(%rdi)", "\x86\x0f"),
	REFUSED("xchg %ax,(%rdi)", "\x66\x87\x07"),
	REFUSED("xchg %r8,0x10(%rax)", "\x4c\x87\x40\x10"),

	/* cmpxchg, xadd */
	REFUSED("cmpxchg %cl,(%rdi)", "\x0f\xb0\x0f"),
	REFUSED("cmpxchg %ax,(%rdi)", "\x66\x0f\xb1\x07"),
	REFUSED("lock cmpxchg %rcx,0x8(%rdi)", "\xf0\x48\x0f\xb1\x4f\x08"),
	REFUSED("lock cmpxchg8b (%rdi)", "\xf0\x0f\xc7\x0f"),
	REFUSED("lock cmpxchg16b (%rdi)", "\xf0\x48\x0f\xc7\x0f"),
	REFUSED("xadd %al,(%rdi)", "\x0f\xc0\x07"),
	REFUSED("lock xadd %rax,0x100(%rdi)", "\xf0\x48\x0f\xc1\x87\x00\x01\x00\x00"),
	REFUSED("lock xadd %cx,0x1000(%rip)", "\x66\xf0\x0f\xc1\x0d\x00\x10\x00\x00"),

	/* setcc, bt* */
	REFUSED("sete (%rdi)", "\x0f\x94\x07"),
	REFUSED("setne 0x10(%rsp)", "\x0f\x95\x44\x24\x10"),
	REFUSED("setg 0x12345678(%rip)", "\x0f\x9f\x05\x78\x56\x34\x12"),
	REFUSED("bt %eax,(%rdi)", "\x0f\xa3\x07"),
	REFUSED("bts %rax,(%rdi)", "\x48\x0f\xab\x07"),
	REFUSED("btr %ecx,0x8(%rdi)", "\x0f\xb3\x4f\x08"),
	REFUSED("btc %eax,(%rdi)", "\x0f\xbb\x07"),
	REFUSED("btl $0x3,(%rdi)", "\x0f\xba\x27\x03"),
	REFUSED("btsq $0x3f,0x8(%rsp)", "\x48\x0f\xba\x6c\x24\x08\x3f"),
	REFUSED("lock btrl $0x1,(%rdi)", "\xf0\x0f\xba\x37\x01"),
	REFUSED("btcw $0x1,0x1000(%rip)", "\x66\x0f\xba\x3d\x00\x10\x00\x00\x01"),

	/* Shifts and rotates (group 2), shld, shrd */
	REFUSED("shlb (%rdi)", "\xd0\x27"),
	REFUSED("shll (%rdi)", "\xd1\x27"),
	REFUSED("shrb (%rdi)", "\xd0\x2f"),
	REFUSED("sarl %cl,(%rdi)", "\xd3\x3f"),
	REFUSED("rolw %cl,(%rdi)", "\x66\xd3\x07"),
	REFUSED("shlq %cl,0x8(%rsp)", "\x48\xd3\x64\x24\x08"),
	REFUSED("shll $0x4,(%rdi)", "\xc1\x27\x04"),
	REFUSED("shrq $0x3,0x10(%rdi)", "\x48\xc1\x6f\x10\x03"),
	REFUSED("rolb $0x2,(%rdi)", "\xc0\x07\x02"),
	REFUSED("rorw $0x2,0x12345678(%rip)", "\x66\xc1\x0d\x78\x56\x34\x12\x02"),
	REFUSED("rcll $0x2,(%rdi)", "\xc1\x17\x02"),
	REFUSED("shld $0x4,%eax,(%rdi)", "\x0f\xa4\x07\x04"),
	REFUSED("shld %cl,%eax,(%rdi)", "\x0f\xa5\x07"),
	REFUSED("shrd $0x4,%rax,0x8(%rdi)", "\x48\x0f\xac\x47\x08\x04"),
	REFUSED("shrd %cl,%ax,(%rdi)", "\x66\x0f\xad\x07"),

	/* Group 3: F6/F7 /2../7 have no immediate */
	REFUSED("notb (%rdi)", "\xf6\x17"),
	REFUSED("negb (%rdi)", "\xf6\x1f"),
	REFUSED("mulb (%rdi)", "\xf6\x27"),
	REFUSED("imulb (%rdi)", "\xf6\x2f"),
	REFUSED("divb (%rdi)", "\xf6\x37"),
	REFUSED("idivb (%rdi)", "\xf6\x3f"),
	REFUSED("notl (%rdi)", "\xf7\x17"),
	REFUSED("negq 0x8(%rdi)", "\x48\xf7\x5f\x08"),
	REFUSED("mull (%rdi)", "\xf7\x27"),
	REFUSED("imulw (%rdi)", "\x66\xf7\x2f"),
	REFUSED("divl 0x12345678(%rip)", "\xf7\x35\x78\x56\x34\x12"),
	REFUSED("idivq (%rsp)", "\x48\xf7\x3c\x24"),
	REFUSED("lock notl (%rdi)", "\xf0\xf7\x17"),

	/* imul, inc, dec, call, jmp, push, pop, segment moves */
	REFUSED("imul (%rdi),%eax", "\x0f\xaf\x07"),
	REFUSED("imul $0x12345678,(%rdi),%eax", "\x69\x07\x78\x56\x34\x12"),
	REFUSED("imul $0x10,(%rdi),%ecx", "\x6b\x0f\x10"),
	REFUSED("imul $0x1234,(%rdi),%ax", "\x66\x69\x07\x34\x12"),
	REFUSED("imul $0x10,0x12345678(%rip),%rax", "\x48\x6b\x05\x78\x56\x34\x12\x10"),
	REFUSED("incb (%rdi)", "\xfe\x07"),
	REFUSED("decq 0x8(%rdi)", "\x48\xff\x4f\x08"),
	REFUSED("lock incl (%rdi)", "\xf0\xff\x07"),
	REFUSED("call *(%rdi)", "\xff\x17"),
	REFUSED("jmp *0x10(%rax)", "\xff\x60\x10"),
	REFUSED("jmp *0x12345678(%rip)", "\xff\x25\x78\x56\x34\x12"),
	REFUSED("push 0x8(%rdi)", "\xff\x77\x08"),
	REFUSED("pop (%rdi)", "\x8f\x07"),
	REFUSED("lcall *(%rdi)", "\xff\x1f"),
	REFUSED("mov (%rdi),%ds", "\x8e\x1f"),

	/* x87 */
	REFUSED("flds 0x8(%rdi)", "\xd9\x47\x08"),
	REFUSED("fldl 0x8(%rdi)", "\xdd\x47\x08"),
	REFUSED("fldt (%rdi)", "\xdb\x2f"),
	REFUSED("fadds (%rdi)", "\xd8\x07"),
	REFUSED("fimull 0x12345678(%rip)", "\xda\x0d\x78\x56\x34\x12"),
	REFUSED("fistpll (%rdi)", "\xdf\x3f"),
	REFUSED("fnstcw (%rdi)", "\xd9\x3f"),
	REFUSED("fnstsw (%rdi)", "\xdd\x3f"),
	REFUSED("fnsave (%rdi)", "\xdd\x37"),
	REFUSED("frstor (%rsp)", "\xdd\x24\x24"),
	FAILS("fadd %st(1),%st", "\xd8\xc1", -EINVAL),
	FAILS("fninit", "\xdb\xe3", -EINVAL),

	/* System instructions with memory operands, xlat */
	REFUSED("sldt (%rdi)", "\x0f\x00\x07"),
	REFUSED("verw (%rdi)", "\x0f\x00\x2f"),
	REFUSED("verw 0x12345678(%rip)", "\x0f\x00\x2d\x78\x56\x34\x12"),
	REFUSED("sgdt (%rdi)", "\x0f\x01\x07"),
	REFUSED("lgdt (%rax)", "\x0f\x01\x10"),
	REFUSED("invlpg (%rdi)", "\x0f\x01\x3f"),
	REFUSED("lar (%rdi),%eax", "\x0f\x02\x07"),
	REFUSED("lsl (%rdi),%eax", "\x0f\x03\x07"),
	REFUSED("lss (%rdi),%eax", "\x0f\xb2\x07"),
	REFUSED("lfs (%rdi),%eax", "\x0f\xb4\x07"),
	REFUSED("lgs (%rdi),%eax", "\x0f\xb5\x07"),
	REFUSED("xlat %ds:(%rbx)", "\xd7"),
	REFUSED("xlat %ds:(%ebx)", "\x67\xd7"),

	/* SIMD and others in the 0F map, legacy encodings */
	REFUSED("movups %xmm1,0x10(%rdi)", "\x0f\x11\x4f\x10"),
	REFUSED("movaps (%rdi),%xmm0", "\x0f\x28\x07"),
	REFUSED("movaps %xmm0,(%rdi)", "\x0f\x29\x07"),
	REFUSED("movntps %xmm0,(%rdi)", "\x0f\x2b\x07"),
	REFUSED("movsd (%rdi),%xmm0", "\xf2\x0f\x10\x07"),
	REFUSED("movss %xmm0,(%rdi)", "\xf3\x0f\x11\x07"),
	REFUSED("movq (%rdi),%mm0", "\x0f\x6f\x07"),
	REFUSED("movq %mm0,(%rdi)", "\x0f\x7f\x07"),
	REFUSED("movdqu %xmm8,0x10(%rdi)", "\xf3\x44\x0f\x7f\x47\x10"),
	REFUSED("movntq %mm0,(%rdi)", "\x0f\xe7\x07"),
	REFUSED("movnti %rax,(%rdi)", "\x48\x0f\xc3\x07"),
	REFUSED("movq (%rdi),%xmm0", "\xf3\x0f\x7e\x07"),
	REFUSED("cmpltps (%rdi),%xmm0", "\x0f\xc2\x07\x01"),
	REFUSED("shufps $0x1b,(%rdi),%xmm0", "\x0f\xc6\x07\x1b"),
	REFUSED("pshufd $0x1b,(%rdi),%xmm0", "\x66\x0f\x70\x07\x1b"),
	REFUSED("pshufw $0x1b,(%rdi),%mm0", "\x0f\x70\x07\x1b"),
	REFUSED("pinsrw $0x2,(%rdi),%xmm0", "\x66\x0f\xc4\x07\x02"),
	REFUSED("pxor (%rdi),%xmm0", "\x66\x0f\xef\x07"),
	REFUSED("paddd 0x12345678(%rip),%xmm15", "\x66\x44\x0f\xfe\x3d\x78\x56\x34\x12"),
	REFUSED("cmovne (%rdi),%eax", "\x0f\x45\x07"),
	REFUSED("popcnt (%rdi),%eax", "\xf3\x0f\xb8\x07"),
	REFUSED("bsf (%rdi),%eax", "\x0f\xbc\x07"),
	REFUSED("lzcnt (%rdi),%rax", "\xf3\x48\x0f\xbd\x07"),
	REFUSED("vmread %rax,(%rdi)", "\x0f\x78\x07"),
	REFUSED("fxsave (%rdi)", "\x0f\xae\x07"),
	REFUSED("fxrstor64 (%rdi)", "\x48\x0f\xae\x0f"),
	REFUSED("ldmxcsr (%rdi)", "\x0f\xae\x17"),
	REFUSED("xsave (%rdi)", "\x0f\xae\x27"),
	REFUSED("xsaves64 (%rdi)", "\x48\x0f\xc7\x2f"),
	REFUSED("clflushopt (%rdi)", "\x66\x0f\xae\x3f"),
	REFUSED("clwb 0x40(%rdi)", "\x66\x0f\xae\x77\x40"),
	REFUSED("vmptrld (%rdi)", "\x0f\xc7\x37"),
	REFUSED("pfmul 0x10(%rdi),%mm1", "\x0f\x0f\x4f\x10\xb4"),

	/* The 0F 38 and 0F 3A maps (0F 3A: an imm8) */
	REFUSED("pshufb (%rdi),%xmm0", "\x66\x0f\x38\x00\x07"),
	REFUSED("pshufb 0x10(%rdi),%mm1", "\x0f\x38\x00\x4f\x10"),
	REFUSED("pmovzxbw (%rdi),%xmm0", "\x66\x0f\x38\x30\x07"),
	REFUSED("aesenc (%rdi),%xmm0", "\x66\x0f\x38\xdc\x07"),
	REFUSED("sha1msg1 (%rdi),%xmm0", "\x0f\x38\xc9\x07"),
	REFUSED("movbe %eax,(%rdi)", "\x0f\x38\xf1\x07"),
	REFUSED("movbe 0x8(%rsp),%rax", "\x48\x0f\x38\xf0\x44\x24\x08"),
	REFUSED("crc32b (%rdi),%eax", "\xf2\x0f\x38\xf0\x07"),
	REFUSED("crc32q (%rdi),%rax", "\xf2\x48\x0f\x38\xf1\x07"),
	REFUSED("invpcid (%rdi),%rax", "\x66\x0f\x38\x82\x07"),
	REFUSED("movdiri %eax,(%rdi)", "\x0f\x38\xf9\x07"),
	REFUSED("movdir64b (%rdi),%rax", "\x66\x0f\x38\xf8\x07"),
	REFUSED("enqcmds (%rdi),%rax", "\xf3\x0f\x38\xf8\x07"),
	REFUSED("palignr $0x4,(%rdi),%xmm0", "\x66\x0f\x3a\x0f\x07\x04"),
	REFUSED("pextrd $0x1,%xmm0,(%rdi)", "\x66\x0f\x3a\x16\x07\x01"),
	REFUSED("pinsrq $0x1,0x8(%rdi),%xmm0", "\x66\x48\x0f\x3a\x22\x47\x08\x01"),
	REFUSED("roundss $0x4,0x12345678(%rip),%xmm1", "\x66\x0f\x3a\x0a\x0d\x78\x56\x34\x12\x04"),
	REFUSED("pclmullqlqdq (%rdi),%xmm0", "\x66\x0f\x3a\x44\x07\x00"),
	REFUSED("palignr $0x4,(%rdi),%mm0", "\x0f\x3a\x0f\x07\x04"),
	FAILS("pshufb %xmm1,%xmm0", "\x66\x0f\x38\x00\xc1", -EINVAL),
	FAILS("palignr $0x4,%xmm1,%xmm0", "\x66\x0f\x3a\x0f\xc1\x04", -EINVAL),

	/* VEX, two bytes (C5): map 0F */
	REFUSED("vmovdqu %ymm0,(%rdi)", "\xc5\xfe\x7f\x07"),
	REFUSED("vmovups 0x20(%rdi),%xmm1", "\xc5\xf8\x10\x4f\x20"),
	REFUSED("vmovaps %ymm2,0x100(%rsp)", "\xc5\xfc\x29\x94\x24\x00\x01\x00\x00"),
	REFUSED("vmovdqu 0x12345678(%rip),%ymm8", "\xc5\x7e\x6f\x05\x78\x56\x34\x12"),
	REFUSED("vpshufd $0x1b,(%rdi),%ymm0", "\xc5\xfd\x70\x07\x1b"),
	REFUSED("vmovntdq %ymm0,(%rdi)", "\xc5\xfd\xe7\x07"),
	REFUSED("vpxor (%rdi),%xmm1,%xmm2", "\xc5\xf1\xef\x17"),
	REFUSED("vmovd %xmm0,(%rdi)", "\xc5\xf9\x7e\x07"),
	REFUSED("vpinsrw $0x1,(%rdi),%xmm1,%xmm0", "\xc5\xf1\xc4\x07\x01"),
	REFUSED("vcmpltps (%rdi),%ymm1,%ymm0", "\xc5\xf4\xc2\x07\x01"),
	REFUSED("vldmxcsr (%rdi)", "\xc5\xf8\xae\x17"),
	REFUSED("kmovw (%rdi),%k1", "\xc5\xf8\x90\x0f"),
	FAILS("vzeroupper", "\xc5\xf8\x77", -EINVAL),
	FAILS("vpxor %ymm0,%ymm0,%ymm0", "\xc5\xfd\xef\xc0", -EINVAL),
	FAILS("vpshufd $0x1b,%ymm1,%ymm0", "\xc5\xfd\x70\xc1\x1b", -EINVAL),

	/* VEX, three bytes (C4): maps 0F, 0F 38, 0F 3A */
	REFUSED("vmovdqu (%rax,%r9,4),%ymm0", "\xc4\xa1\x7e\x6f\x04\x88"),
	REFUSED("vmovdqu %ymm8,(%r15)", "\xc4\x41\x7e\x7f\x07"),
	REFUSED("vpbroadcastd (%rdi),%ymm0", "\xc4\xe2\x7d\x58\x07"),
	REFUSED("vpmaskmovd %ymm0,%ymm1,(%rdi)", "\xc4\xe2\x75\x8e\x07"),
	REFUSED("vpgatherdd %ymm2,(%rax,%ymm1,4),%ymm0", "\xc4\xe2\x6d\x90\x04\x88"),
	REFUSED("andn (%rdi),%eax,%ecx", "\xc4\xe2\x78\xf2\x0f"),
	REFUSED("shlx %eax,(%rdi),%ecx", "\xc4\xe2\x79\xf7\x0f"),
	REFUSED("bzhi %rax,0x8(%rdi),%rcx", "\xc4\xe2\xf8\xf5\x4f\x08"),
	REFUSED("tileloadd (%rax,%rbx,1),%tmm0", "\xc4\xe2\x7b\x4b\x04\x18"),
	REFUSED("vpermq $0x1b,(%rdi),%ymm0", "\xc4\xe3\xfd\x00\x07\x1b"),
	REFUSED("vinserti128 $0x1,(%rdi),%ymm1,%ymm0", "\xc4\xe3\x75\x38\x07\x01"),
	REFUSED("vpextrq $0x1,%xmm0,(%rdi)", "\xc4\xe3\xf9\x16\x07\x01"),
	REFUSED("rorx $0x3,(%rdi),%eax", "\xc4\xe3\x7b\xf0\x07\x03"),
	REFUSED("vpalignr $0x4,0x12345678(%rip),%ymm1,%ymm0", "\xc4\xe3\x75\x0f\x05\x78\x56\x34\x12\x04"),
	REFUSED("kmovq (%rdi),%k1", "\xc4\xe1\xf8\x90\x0f"),
	FAILS("shrx %rax,%rdx,%rdx", "\xc4\xe2\xfb\xf7\xd2", -EINVAL),
	FAILS("tilerelease", "\xc4\xe2\x78\x49\xc0", -EINVAL),
	FAILS("rorx $0x3,%eax,%eax", "\xc4\xe3\x7b\xf0\xc0\x03", -EINVAL),
	FAILS("(bad) VEX map 0", "\xc4\xe0\x78\x10\x07", -EINVAL),
	FAILS("(bad) VEX map 4", "\xc4\xe4\x78\x10\x07", -EINVAL),

	/* EVEX (62): disp8 is scaled, its length is not */
	REFUSED("vmovdqu64 0x40(%rdi),%zmm0", "\x62\xf1\xfe\x48\x6f\x47\x01"),
	REFUSED("vmovdqu64 0x48(%rdi),%zmm0", "\x62\xf1\xfe\x48\x6f\x87\x48\x00\x00\x00"),
	REFUSED("vmovdqa32 %zmm1,(%rsp)", "\x62\xf1\x7d\x48\x7f\x0c\x24"),
	REFUSED("vmovdqu8 (%rdi),%zmm0{%k1}{z}", "\x62\xf1\x7f\xc9\x6f\x07"),
	REFUSED("vmovdqu64 (%rdi),%xmm16", "\x62\xe1\xfe\x08\x6f\x07"),
	REFUSED("vmovdqu64 0x12345678(%rip),%zmm31", "\x62\x61\xfe\x48\x6f\x3d\x78\x56\x34\x12"),
	REFUSED("vpaddd (%rdi){1to16},%zmm1,%zmm0", "\x62\xf1\x75\x58\xfe\x07"),
	REFUSED("vprord $0x10,(%rdi),%xmm3", "\x62\xf1\x65\x08\x72\x07\x10"),
	REFUSED("vpbroadcastd (%rdi),%zmm0", "\x62\xf2\x7d\x48\x58\x07"),
	REFUSED("vpternlogd $0xff,(%rdi),%zmm1,%zmm0", "\x62\xf3\x75\x48\x25\x07\xff"),
	REFUSED("vaddph (%rdi),%zmm1,%zmm0", "\x62\xf5\x74\x48\x58\x07"),
	REFUSED("vfmadd132ph 0x40(%rdi),%zmm1,%zmm0", "\x62\xf6\x75\x48\x98\x47\x01"),
	REFUSED("vpscatterdd %zmm0,(%rax,%zmm1,4){%k1}", "\x62\xf2\x7d\x49\xa0\x04\x88"),
	FAILS("vpaddd %zmm2,%zmm1,%zmm0", "\x62\xf1\x75\x48\xfe\xc2", -EINVAL),
	FAILS("vprord $0x10,%xmm3,%xmm3", "\x62\xf1\x65\x08\x72\xc3\x10", -EINVAL),
	FAILS("(bad) EVEX map 0", "\x62\xf0\x7c\x48\x10\x07", -EINVAL),
	FAILS("(bad) EVEX map 4", "\x62\xf4\x7c\x48\x10\x07", -EINVAL),
	FAILS("(bad) EVEX map 7", "\x62\xf7\x7c\x48\x10\x07", -EINVAL),

	/* String instructions: element size, F2/F3, 0x67 */
	STRING("movsw %ds:(%rsi),%es:(%rdi)", "\x66\xa5", MOVS, 2, false, false),
	STRING("movsl %ds:(%rsi),%es:(%rdi)", "\xa5", MOVS, 4, false, false),
	STRING("rep movsq %ds:(%rsi),%es:(%rdi)", "\xf3\x48\xa5", MOVS, 8, true, false),
	STRING("rep movsl %ds:(%esi),%es:(%edi)", "\x67\xf3\xa5", MOVS, 4, true, true),
	STRING("rep movsw %ds:(%rsi),%es:(%rdi)", "\x66\xf3\xa5", MOVS, 2, true, false),
	STRING("data16 movsq %ds:(%rsi),%es:(%rdi)", "\x66\x48\xa5", MOVS, 8, false, false),
	STRING("rex.W movsw %ds:(%rsi),%es:(%rdi) (REX before 0x66 is ignored)", "\x48\x66\xa5", MOVS, 2, false, false),
	STRING("movsb %fs:(%rsi),%es:(%rdi)", "\x64\xa4", MOVS, 1, false, false),
	STRING("cmpsb %es:(%rdi),%ds:(%rsi)", "\xa6", CMPS, 1, false, false),
	STRING("cmpsw %es:(%rdi),%ds:(%rsi)", "\x66\xa7", CMPS, 2, false, false),
	STRING("repz cmpsl %es:(%rdi),%ds:(%rsi)", "\xf3\xa7", CMPS, 4, true, false),
	STRING("stos %al,%es:(%rdi)", "\xaa", STOS, 1, false, false),
	STRING("stos %ax,%es:(%rdi)", "\x66\xab", STOS, 2, false, false),
	STRING("rep stos %rax,%es:(%rdi)", "\xf3\x48\xab", STOS, 8, true, false),
	STRING("stos %al,%es:(%edi)", "\x67\xaa", STOS, 1, false, true),
	STRING("lods %ds:(%rsi),%ax", "\x66\xad", LODS, 2, false, false),
	STRING("lods %ds:(%rsi),%eax", "\xad", LODS, 4, false, false),
	STRING("lods %ds:(%rsi),%rax", "\x48\xad", LODS, 8, false, false),
	STRING("rep lods %ds:(%rsi),%al", "\xf3\xac", LODS, 1, true, false),
	STRING("scas %es:(%rdi),%al", "\xae", SCAS, 1, false, false),
	STRING("repnz scas %es:(%rdi),%al", "\xf2\xae", SCAS, 1, true, false),
	STRING("repz scas %es:(%rdi),%rax", "\xf3\x48\xaf", SCAS, 8, true, false),
	STRING("insb (%dx),%es:(%rdi)", "\x6c", INS, 1, false, false),
	STRING("insw (%dx),%es:(%rdi)", "\x66\x6d", INS, 2, false, false),
	STRING("insl (%dx),%es:(%rdi)", "\x6d", INS, 4, false, false),
	STRING("rep insw (%dx),%es:(%rdi)", "\x66\xf3\x6d", INS, 2, true, false),
	STRING("rex.W insl (%dx),%es:(%rdi)", "\x48\x6d", INS, 4, false, false),
	STRING("outsb %ds:(%rsi),(%dx)", "\x6e", OUTS, 1, false, false),
	STRING("outsw %ds:(%rsi),(%dx)", "\x66\x6f", OUTS, 2, false, false),
	STRING("rep outsl %ds:(%rsi),(%dx)", "\xf3\x6f", OUTS, 4, true, false),
	STRING("rex.W outsl %ds:(%rsi),(%dx)", "\x48\x6f", OUTS, 4, false, false),
	STRING("rep outsb %ds:(%esi),(%dx)", "\x67\xf3\x6e", OUTS, 1, true, true),

	/* moffs: refused with F2/F3 or lock */
	REFUSED("repz movabs 0x20001000,%eax", "\xf3\xa1\x00\x10\x00\x20\x00\x00\x00\x00"),
	REFUSED("repz addr32 mov 0x20001000,%eax", "\xf3\x67\xa1\x00\x10\x00\x20"),
	REFUSED("lock movabs %rax,0x20001000", "\xf0\x48\xa3\x00\x10\x00\x20\x00\x00\x00\x00"),
	REFUSED("repnz addr32 mov %al,0x20001000", "\xf2\x67\xa2\x00\x10\x00\x20"),

	/* No memory operand, or one that is never accessed */
	FAILS("lea (%rax,%rbx,4),%rcx", "\x48\x8d\x0c\x98", -EINVAL),
	FAILS("prefetchw (%rdi)", "\x0f\x0d\x0f", -EINVAL),
	FAILS("prefetcht0 (%rdi)", "\x0f\x18\x0f", -EINVAL),
	FAILS("prefetchnta 0x40(%rdi)", "\x0f\x18\x47\x40", -EINVAL),
	FAILS("nopw (%rax,%rax,1)", "\x66\x0f\x1f\x04\x00", -EINVAL),
	FAILS("nopl 0x12345678(%rip)", "\x0f\x1f\x05\x78\x56\x34\x12", -EINVAL),
	FAILS("mov %cr0,%rax", "\x0f\x20\xc0", -EINVAL),
	FAILS("mov %cr0,%rdi", "\x0f\x20\x07", -EINVAL),
	FAILS("mov %rax,%db7", "\x0f\x23\xf8", -EINVAL),
	FAILS("ud1 (%rdi),%eax", "\x0f\xb9\x07", -EINVAL),
	FAILS("ud0 (%rdi),%eax", "\x0f\xff\x07", -EINVAL),
	FAILS("endbr64", "\xf3\x0f\x1e\xfa", -EINVAL),
	FAILS("(bad) C7 /1 (undefined)", "\xc7\x4f\x08\x01\x00\x00\x00", -EINVAL),
	FAILS("(bad) C6 /7 (undefined)", "\xc6\x3f\x01", -EINVAL),
	FAILS("(bad) 82 (invalid in 64-bit mode)", "\x82\x07\x01", -EINVAL),
	FAILS("push $0x12345678", "\x68\x78\x56\x34\x12", -EINVAL),
	FAILS("call 0x5", "\xe8\x00\x00\x00\x00", -EINVAL),
	FAILS("movabs $0x123456789,%rax", "\x48\xb8\x89\x67\x45\x23\x01\x00\x00\x00", -EINVAL),
	FAILS("in (%dx),%al", "\xec", -EINVAL),
	FAILS("out %eax,$0x80", "\xe7\x80", -EINVAL),
	FAILS("cpuid", "\x0f\xa2", -EINVAL),
	FAILS("lfence", "\x0f\xae\xe8", -EINVAL),
	FAILS("rdrand %eax", "\x0f\xc7\xf0", -EINVAL),
	FAILS("xchg %eax,%ecx", "\x91", -EINVAL),
	FAILS("test $0x1,%al", "\xa8\x01", -EINVAL),
	FAILS("add $0x12345678,%eax", "\x05\x78\x56\x34\x12", -EINVAL),
	FAILS("shl $0x4,%eax", "\xc1\xe0\x04", -EINVAL),
	FAILS("not %eax", "\xf7\xd0", -EINVAL),
	FAILS("sete %al", "\x0f\x94\xc0", -EINVAL),
	FAILS("bsf %eax,%ecx", "\x0f\xbc\xc8", -EINVAL),

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
	FAILS("lone VEX C5", "\xc5", -E2BIG),
	FAILS("EVEX without its opcode", "\x62\xf1\xfe\x48", -E2BIG),
	FAILS("3DNow! without its imm8", "\x0f\x0f\x07", -E2BIG),
	FAILS("testl $imm32 missing its last byte", "\xf7\x07\x01\x00\x00", -E2BIG),
	FAILS("addr32 moffs missing its last byte", "\x67\xa1\x00\x10\x00", -E2BIG),
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
	       a->has_imm == b->has_imm && a->imm == b->imm &&
	       a->string == b->string && a->rep == b->rep &&
	       a->addr32 == b->addr32;
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

/* Shorter buffers give -E2BIG, trailing bytes change nothing. */
static void check_prefixes_and_trailing(const struct insn_case *tc,
					const struct pciem_insn *insn, int want)
{
	struct pciem_insn again;
	u8 padded[32];
	unsigned int n;
	int ret;

	for (n = 0; n < tc->nbytes; n++) {
		ret = decode_at_guard(tc->bytes, n, &again);
		if (ret != -E2BIG)
			complain("the first %u bytes gave %d, expected -E2BIG", n, ret);
	}
	memset(padded, 0xcc, sizeof(padded));
	memcpy(padded, tc->bytes, tc->nbytes);
	ret = pciem_insn_decode(padded, sizeof(padded), &again);
	if (ret != want || !same_insn(insn, &again))
		complain("trailing bytes changed the result (%d, len %u)", ret, again.len);
}

/* A refused access: its length, string facts for string ops, zeros else. */
static void check_refused(const struct insn_case *tc,
			  const struct pciem_insn *insn)
{
	struct pciem_insn want = {
		.len = tc->nbytes, .size = tc->size, .string = tc->string,
		.rep = tc->rep, .addr32 = tc->addr32,
	};

	if (!same_insn(insn, &want))
		complain("refused as len %u string %u size %u rep %d addr32 %d, expected len %u string %u size %u rep %d addr32 %d",
			 insn->len, insn->string, insn->size, insn->rep, insn->addr32,
			 want.len, want.string, want.size, want.rep, want.addr32);
	check_prefixes_and_trailing(tc, insn, -EOPNOTSUPP);
}

static void check_case(const struct insn_case *tc)
{
	struct pciem_insn insn;
	struct pt_regs regs = { 0 };
	int ret, i;

	ret = decode_at_guard(tc->bytes, tc->nbytes, &insn);
	if (ret != tc->ret) {
		complain("decode returned %d, expected %d", ret, tc->ret);
		return;
	}
	if (ret == -EOPNOTSUPP) {
		check_refused(tc, &insn);
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

	check_prefixes_and_trailing(tc, &insn, 0);

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
 * anything but -E2BIG, and a success or refusal must fit in the bytes given.
 */
static void check_fuzz(void)
{
	static const u8 likely[] = {
		0x66, 0x67, 0x65, 0x64, 0x2e, 0xf0, 0xf2, 0xf3, 0x40, 0x41,
		0x44, 0x48, 0x4c, 0x4f, 0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7,
		0xa0, 0xa1, 0xa2, 0xa3, 0x63, 0x0f, 0xb6, 0xb7, 0xbe, 0xbf,
		0x04, 0x05, 0x07, 0x24, 0x25, 0x44, 0x45, 0x84, 0x85, 0xc0,
		0xc4, 0xc5, 0x62, 0x38, 0x3a, 0xf6, 0xf7, 0x81, 0x83, 0xa4,
		0xa5, 0xab, 0xd7,
	};
	u64 seed = 0x9e3779b97f4a7c15ULL;
	unsigned int iter, n, k, decoded = 0, refused = 0;
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
		if (ret_full == -EOPNOTSUPP) {
			refused++;
			if (!full.len || full.len > sizeof(buf) ||
			    (full.string && full.size != 1 && full.size != 2 &&
			     full.size != 4 && full.size != 8))
				complain("implausible refusal, len %u size %u",
					 full.len, full.size);
		}
		for (n = 0; n < sizeof(buf); n++) {
			ret = decode_at_guard(buf, n, &part);
			if (ret == -E2BIG)
				continue;
			if (ret != ret_full ||
			    ((!ret || ret == -EOPNOTSUPP) && !same_insn(&full, &part)))
				complain("%u bytes gave %d, 15 gave %d", n, ret, ret_full);
		}
		if (why[0]) {
			for (k = 0; k < sizeof(buf); k++)
				complain("byte %u: 0x%02x", k, (u8)buf[k]);
		}
	}
	if (decoded < 1000 || refused < 1000)
		complain("only %u of the random buffers decoded, %u refused",
			 decoded, refused);
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
