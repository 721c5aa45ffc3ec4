// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_insn: a decoder and emulator for x86-64 MMIO moves (see pciem_insn.h).
 *
 * Emulated, in 64-bit mode:
 *   88/89      mov reg -> r/m        (8 bit; 16/32/64 by 0x66/REX.W)
 *   8A/8B      mov r/m -> reg
 *   C6 /0      mov imm8 -> r/m8
 *   C7 /0      mov imm16/imm32 -> r/m (REX.W: imm32 sign-extended to 64)
 *   A0..A3     mov between AL/rAX and a 64-bit absolute address (moffs;
 *              4-byte offset with 0x67)
 *   0F B6/B7   movzx r/m8, r/m16 -> reg16/32/64
 *   0F BE/BF   movsx r/m8, r/m16 -> reg16/32/64
 *   REX.W 63   movsxd r/m32 -> reg64
 * with any mix of 0x66, 0x67, segment prefixes and a REX right before the
 * opcode. Segment prefixes and address computation are ignored: the fault
 * reports the linear address, so only the instruction's length matters.
 */
#include "pciem_insn.h"

/* Legacy prefixes that change how an opcode is handled. */
#define PCIEM_PFX_OPSIZE	0x01	/* 0x66 */
#define PCIEM_PFX_ADDRSIZE	0x02	/* 0x67 */
#define PCIEM_PFX_LOCK		0x04	/* 0xf0 */
#define PCIEM_PFX_REP		0x08	/* 0xf2, 0xf3 */

/* REX.X and REX.B only pick address registers, which the fault reports. */
#define PCIEM_REX_R		0x04
#define PCIEM_REX_W		0x08

/* What follows an opcode, and what becomes of it. */
enum pciem_insn_form {
	PCIEM_FORM_INVALID,	/* no memory operand, or undefined */
	PCIEM_FORM_REFUSED,	/* a memory access we do not emulate */
	PCIEM_FORM_REFUSED_MODRM, /* the same, unless ModRM names a register */
	PCIEM_FORM_MODRM_REG,	/* mov/movzx/movsx between memory and a reg */
	PCIEM_FORM_MODRM_IMM,	/* mov of an immediate to memory */
	PCIEM_FORM_MOFFS,	/* mov between rAX and an absolute address */
};

/* The bytes consumed so far; buflen may exceed the architectural limit. */
struct pciem_insn_cursor {
	const u8 *buf;
	unsigned int buflen;
	unsigned int pos;
};

static int pciem_insn_need(const struct pciem_insn_cursor *c, unsigned int n)
{
	if (c->pos + n > PCIEM_INSN_MAX_LEN)
		return -EINVAL;
	if (c->pos + n > c->buflen)
		return -E2BIG;
	return 0;
}

static int pciem_insn_byte(struct pciem_insn_cursor *c, u8 *byte)
{
	int err = pciem_insn_need(c, 1);

	if (err)
		return err;
	*byte = c->buf[c->pos++];
	return 0;
}

static int pciem_insn_skip(struct pciem_insn_cursor *c, unsigned int n)
{
	int err = pciem_insn_need(c, n);

	if (err)
		return err;
	c->pos += n;
	return 0;
}

/* An n-byte little-endian immediate, n <= 8. */
static int pciem_insn_le(struct pciem_insn_cursor *c, unsigned int n, u64 *val)
{
	unsigned int i;
	int err = pciem_insn_need(c, n);

	if (err)
		return err;
	*val = 0;
	for (i = 0; i < n; i++)
		*val |= (u64)c->buf[c->pos + i] << (8 * i);
	c->pos += n;
	return 0;
}

static u64 pciem_insn_truncate(u64 val, unsigned int bytes)
{
	return bytes >= 8 ? val : val & ((1ULL << (8 * bytes)) - 1);
}

/* val must already be truncated to bytes. */
static u64 pciem_insn_sign_extend(u64 val, unsigned int bytes)
{
	u64 sign = 1ULL << (8 * bytes - 1);

	return (val ^ sign) - sign;
}

/*
 * Consumes legacy and REX prefixes and returns the first opcode byte. A REX
 * counts only right before the opcode; one followed by another prefix is
 * ignored, as the CPU does. The 15-byte limit bounds the loop.
 */
static int pciem_insn_prefixes(struct pciem_insn_cursor *c,
			       unsigned int *prefixes, u8 *rex, u8 *op)
{
	int err;

	for (;;) {
		err = pciem_insn_byte(c, op);
		if (err)
			return err;
		if ((*op & 0xf0) == 0x40) {
			*rex = *op;
			continue;
		}
		switch (*op) {
		case 0x66:
			*prefixes |= PCIEM_PFX_OPSIZE;
			break;
		case 0x67:
			*prefixes |= PCIEM_PFX_ADDRSIZE;
			break;
		case 0xf0:
			*prefixes |= PCIEM_PFX_LOCK;
			break;
		case 0xf2:
		case 0xf3:
			*prefixes |= PCIEM_PFX_REP;
			break;
		case 0x26:
		case 0x2e:
		case 0x36:
		case 0x3e:
		case 0x64:
		case 0x65:
			break;
		default:
			return 0;
		}
		*rex = 0;
	}
}

/*
 * Consumes ModRM and the SIB and displacement it implies. 0x67 changes the
 * registers an address uses, not these lengths; neither does REX.B, so
 * r12 still needs a SIB and r13 a displacement.
 */
static int pciem_insn_modrm(struct pciem_insn_cursor *c, u8 *modrm)
{
	u8 mod, rm, sib;
	int err;

	err = pciem_insn_byte(c, modrm);
	if (err)
		return err;
	mod = *modrm >> 6;
	rm = *modrm & 7;
	if (mod == 3)
		return -EINVAL;		/* a register operand: no memory access */
	if (rm == 4) {
		err = pciem_insn_byte(c, &sib);
		if (err)
			return err;
		if (mod == 0 && (sib & 7) == 5)
			return pciem_insn_skip(c, 4);	/* no base: disp32 */
	} else if (mod == 0 && rm == 5) {
		return pciem_insn_skip(c, 4);		/* RIP-relative */
	}
	if (mod == 1)
		return pciem_insn_skip(c, 1);
	if (mod == 2)
		return pciem_insn_skip(c, 4);
	return 0;
}

/* The 0x0F map: movzx/movsx, and the memory forms worth refusing by name. */
static int pciem_insn_classify_0f(struct pciem_insn_cursor *c, u8 opsize,
				  struct pciem_insn *insn,
				  enum pciem_insn_form *form)
{
	u8 op, op3;
	int err;

	err = pciem_insn_byte(c, &op);
	if (err)
		return err;
	switch (op) {
	case 0xb6:
	case 0xb7:
	case 0xbe:
	case 0xbf:
		insn->kind = PCIEM_INSN_READ;
		insn->size = op & 1 ? 2 : 1;
		insn->dst_size = opsize;
		insn->ext = op & 8 ? PCIEM_EXT_SIGN : PCIEM_EXT_ZERO;
		*form = PCIEM_FORM_MODRM_REG;
		return 0;
	case 0x38:	/* SSSE3/SSE4 maps, movbe, crc32: opcode then ModRM */
	case 0x3a:
		err = pciem_insn_byte(c, &op3);
		if (err)
			return err;
		*form = PCIEM_FORM_REFUSED_MODRM;
		return 0;
	case 0x0f:		/* 3DNow! */
	case 0x10 ... 0x17:	/* SSE moves */
	case 0x28 ... 0x2f:
	case 0x40 ... 0x4f:	/* cmov */
	case 0x50 ... 0x76:	/* SSE/MMX arithmetic and moves */
	case 0x78 ... 0x79:	/* vmread, vmwrite */
	case 0x7c ... 0x7f:
	case 0x90 ... 0x9f:	/* setcc */
	case 0xa3 ... 0xa5:	/* bt, shld */
	case 0xab ... 0xaf:	/* bts, shrd, fxsave/clflush group, imul */
	case 0xb0 ... 0xb1:	/* cmpxchg */
	case 0xb3:
	case 0xb8:		/* popcnt */
	case 0xba ... 0xbd:	/* bt group, bsf, bsr */
	case 0xc0 ... 0xc7:	/* xadd, movnti, cmpxchg8b/16b... */
	case 0xd0 ... 0xfe:	/* MMX/SSE, movq, movntdq... */
		*form = PCIEM_FORM_REFUSED_MODRM;
		return 0;
	default:
		*form = PCIEM_FORM_INVALID;
		return 0;
	}
}

/* A mov: reads land in a register as wide as the access. */
static void pciem_insn_mov(struct pciem_insn *insn, bool read, u8 size)
{
	insn->size = size;
	if (!read) {
		insn->kind = PCIEM_INSN_WRITE;
		return;
	}
	insn->kind = PCIEM_INSN_READ;
	insn->dst_size = size;
	insn->ext = size == 4 ? PCIEM_EXT_ZERO : PCIEM_EXT_NONE;
}

/* Fills in kind, size, dst_size and ext for op and says what follows it. */
static int pciem_insn_classify(struct pciem_insn_cursor *c, u8 op, u8 rex,
			       unsigned int prefixes, struct pciem_insn *insn,
			       enum pciem_insn_form *form)
{
	u8 opsize;

	if (rex & PCIEM_REX_W)
		opsize = 8;
	else
		opsize = prefixes & PCIEM_PFX_OPSIZE ? 2 : 4;

	switch (op) {
	case 0x88 ... 0x8b:
		pciem_insn_mov(insn, op & 2, op & 1 ? opsize : 1);
		*form = PCIEM_FORM_MODRM_REG;
		break;
	case 0xc6 ... 0xc7:
		pciem_insn_mov(insn, false, op & 1 ? opsize : 1);
		*form = PCIEM_FORM_MODRM_IMM;
		break;
	case 0xa0 ... 0xa3:
		pciem_insn_mov(insn, !(op & 2), op & 1 ? opsize : 1);
		*form = PCIEM_FORM_MOFFS;
		break;
	case 0x63:
		/* Without REX.W this is a plain 32/16-bit move nobody emits. */
		if (!(rex & PCIEM_REX_W)) {
			*form = PCIEM_FORM_REFUSED_MODRM;
			break;
		}
		insn->kind = PCIEM_INSN_READ;
		insn->size = 4;
		insn->dst_size = 8;
		insn->ext = PCIEM_EXT_SIGN;
		*form = PCIEM_FORM_MODRM_REG;
		break;
	case 0x0f:
		return pciem_insn_classify_0f(c, opsize, insn, form);
	case 0x62:		/* EVEX */
	case 0xc4 ... 0xc5:	/* VEX */
	case 0x6c ... 0x6f:	/* ins, outs */
	case 0xa4 ... 0xa7:	/* movs, cmps */
	case 0xaa ... 0xaf:	/* stos, lods, scas */
		*form = PCIEM_FORM_REFUSED;
		break;
	case 0x00 ... 0x03:	/* add, or, adc, sbb, and, sub, xor, cmp */
	case 0x08 ... 0x0b:
	case 0x10 ... 0x13:
	case 0x18 ... 0x1b:
	case 0x20 ... 0x23:
	case 0x28 ... 0x2b:
	case 0x30 ... 0x33:
	case 0x38 ... 0x3b:
	case 0x69:		/* imul */
	case 0x6b:
	case 0x80 ... 0x87:	/* arithmetic with imm, test, xchg */
	case 0x8c:		/* mov to/from a segment register, pop */
	case 0x8e ... 0x8f:
	case 0xc0 ... 0xc1:	/* shifts */
	case 0xd0 ... 0xd3:
	case 0xd8 ... 0xdf:	/* x87 */
	case 0xf6 ... 0xf7:	/* test, not, neg, mul, div */
	case 0xfe ... 0xff:	/* inc, dec, call, jmp, push */
		*form = PCIEM_FORM_REFUSED_MODRM;
		break;
	default:
		*form = PCIEM_FORM_INVALID;
		break;
	}
	return 0;
}

int pciem_insn_decode(const u8 *buf, unsigned int buflen,
		      struct pciem_insn *insn)
{
	struct pciem_insn_cursor c = { .buf = buf, .buflen = buflen };
	enum pciem_insn_form form;
	unsigned int prefixes = 0;
	u8 rex = 0, op, modrm;
	u8 reg_width;
	int err;

	*insn = (struct pciem_insn){};
	err = pciem_insn_prefixes(&c, &prefixes, &rex, &op);
	if (err)
		return err;
	err = pciem_insn_classify(&c, op, rex, prefixes, insn, &form);
	if (err)
		return err;

	switch (form) {
	case PCIEM_FORM_INVALID:
		return -EINVAL;
	case PCIEM_FORM_REFUSED:
		return -EOPNOTSUPP;
	case PCIEM_FORM_REFUSED_MODRM:
		err = pciem_insn_modrm(&c, &modrm);
		return err ? err : -EOPNOTSUPP;
	case PCIEM_FORM_MODRM_REG:
		err = pciem_insn_modrm(&c, &modrm);
		if (err)
			return err;
		insn->reg = (modrm >> 3 & 7) | (rex & PCIEM_REX_R ? 8 : 0);
		break;
	case PCIEM_FORM_MODRM_IMM:
		err = pciem_insn_modrm(&c, &modrm);
		if (err)
			return err;
		if (modrm >> 3 & 7)
			return -EINVAL;	/* C6/C7 /1../7: undefined for memory */
		/* The immediate is at most 32 bits, sign-extended for REX.W. */
		err = pciem_insn_le(&c, insn->size < 4 ? insn->size : 4,
				    &insn->imm);
		if (err)
			return err;
		if (insn->size == 8)
			insn->imm = pciem_insn_sign_extend(insn->imm, 4);
		insn->has_imm = true;
		break;
	case PCIEM_FORM_MOFFS:
		err = pciem_insn_skip(&c, prefixes & PCIEM_PFX_ADDRSIZE ? 4 : 8);
		if (err)
			return err;
		break;
	}

	/*
	 * lock mov is #UD; F2/F3 before a mov are HLE hints (xacquire,
	 * xrelease) or reserved. No driver means either.
	 */
	if (prefixes & (PCIEM_PFX_LOCK | PCIEM_PFX_REP))
		return -EOPNOTSUPP;

	/* Without any REX, byte registers 4..7 are AH, CH, DH, BH. */
	reg_width = insn->kind == PCIEM_INSN_READ ? insn->dst_size : insn->size;
	if (!insn->has_imm && reg_width == 1 && !rex && insn->reg >= 4) {
		insn->reg -= 4;
		insn->high_byte = true;
	}
	insn->len = c.pos;
	return 0;
}

/* pt_regs in x86 register-number order. */
static const unsigned short pciem_insn_reg_offset[16] = {
	offsetof(struct pt_regs, ax),
	offsetof(struct pt_regs, cx),
	offsetof(struct pt_regs, dx),
	offsetof(struct pt_regs, bx),
	offsetof(struct pt_regs, sp),
	offsetof(struct pt_regs, bp),
	offsetof(struct pt_regs, si),
	offsetof(struct pt_regs, di),
	offsetof(struct pt_regs, r8),
	offsetof(struct pt_regs, r9),
	offsetof(struct pt_regs, r10),
	offsetof(struct pt_regs, r11),
	offsetof(struct pt_regs, r12),
	offsetof(struct pt_regs, r13),
	offsetof(struct pt_regs, r14),
	offsetof(struct pt_regs, r15),
};

static unsigned long *pciem_insn_reg(struct pt_regs *regs, u8 reg)
{
	return (unsigned long *)((char *)regs +
				 pciem_insn_reg_offset[reg & 15]);
}

static unsigned long pciem_insn_reg_value(const struct pt_regs *regs, u8 reg)
{
	return *(const unsigned long *)((const char *)regs +
					pciem_insn_reg_offset[reg & 15]);
}

u64 pciem_insn_write_value(const struct pciem_insn *insn,
			   const struct pt_regs *regs)
{
	u64 val;

	if (insn->has_imm)
		val = insn->imm;
	else if (insn->high_byte)
		val = pciem_insn_reg_value(regs, insn->reg) >> 8;
	else
		val = pciem_insn_reg_value(regs, insn->reg);
	return pciem_insn_truncate(val, insn->size);
}

void pciem_insn_complete_read(const struct pciem_insn *insn,
			      struct pt_regs *regs, u64 val)
{
	unsigned long *dst = pciem_insn_reg(regs, insn->reg);

	if (insn->kind != PCIEM_INSN_READ)
		return;
	val = pciem_insn_truncate(val, insn->size);
	if (insn->ext == PCIEM_EXT_SIGN)
		val = pciem_insn_sign_extend(val, insn->size);

	switch (insn->dst_size) {
	case 1:
		if (insn->high_byte)
			*dst = (*dst & ~0xff00UL) | (unsigned long)(val & 0xff) << 8;
		else
			*dst = (*dst & ~0xffUL) | (val & 0xff);
		break;
	case 2:
		*dst = (*dst & ~0xffffUL) | (val & 0xffff);
		break;
	case 4:
		/* Writing a 32-bit register clears bits 32..63. */
		*dst = (u32)val;
		break;
	default:
		*dst = val;
		break;
	}
}
