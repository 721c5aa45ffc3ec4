// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_insn: the x86-64 decoder of the fault path, and an emulator for the
 * MMIO moves among what it decodes (see pciem_insn.h).
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
 *
 * Every other instruction that can touch memory through a data operand is
 * decoded as far as its length, so that the fault path can skip it: ModRM
 * forms in the one-byte, 0F, 0F 38 and 0F 3A maps and under VEX and EVEX,
 * string instructions and xlat. Instructions that cannot fault on a data
 * access are not measured: those without a memory operand, and those whose
 * ModRM never reaches memory (lea, prefetches and hint nops, moves to and
 * from control and debug registers, ud0/ud1).
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

/* How an opcode accesses memory, and what becomes of it. */
enum pciem_insn_form {
	PCIEM_FORM_INVALID,	/* no memory access, or undefined */
	PCIEM_FORM_IMPLICIT,	/* string ops, xlat: no ModRM; refused */
	PCIEM_FORM_REFUSED,	/* a ModRM access we do not emulate */
	PCIEM_FORM_MOV_REG,	/* mov/movzx/movsx between memory and a reg */
	PCIEM_FORM_MOV_IMM,	/* mov of an immediate to memory */
	PCIEM_FORM_MOFFS,	/* mov between rAX and an absolute address */
};

/* What comes after the opcode and any ModRM, SIB and displacement. */
enum pciem_insn_tail {
	PCIEM_TAIL_NONE,
	PCIEM_TAIL_IMM8,
	PCIEM_TAIL_IMMZ,	/* 2 bytes with 0x66, else 4 (also for REX.W) */
	PCIEM_TAIL_GRP3,	/* F6/F7: imm8 or immz for /0 and /1 (test) */
	PCIEM_TAIL_MOFFS,	/* an 8-byte address, 4 bytes with 0x67 */
};

/*
 * An instruction being decoded: the bytes consumed so far and what they
 * said. buflen may exceed the architectural limit.
 */
struct pciem_insn_decoder {
	const u8 *buf;
	unsigned int buflen;
	unsigned int pos;
	unsigned int prefixes;	/* PCIEM_PFX_* */
	u8 rex;			/* the REX right before the opcode, or 0 */
	u8 opsize;		/* 2, 4 or 8 by 0x66 and REX.W */
	bool vex;		/* VEX (C4, C5) or EVEX (62) */
	u8 map;			/* 0: one byte, 1: 0F, 2: 0F 38, 3: 0F 3A;
				 * under (E)VEX, the map it names
				 */
	u8 op;			/* the opcode byte within the map */
	u8 modrm;
	enum pciem_insn_form form;
	enum pciem_insn_tail tail;
};

static int pciem_insn_need(const struct pciem_insn_decoder *d, unsigned int n)
{
	if (d->pos + n > PCIEM_INSN_MAX_LEN)
		return -EINVAL;
	if (d->pos + n > d->buflen)
		return -E2BIG;
	return 0;
}

static int pciem_insn_byte(struct pciem_insn_decoder *d, u8 *byte)
{
	int err = pciem_insn_need(d, 1);

	if (err)
		return err;
	*byte = d->buf[d->pos++];
	return 0;
}

static int pciem_insn_skip(struct pciem_insn_decoder *d, unsigned int n)
{
	int err = pciem_insn_need(d, n);

	if (err)
		return err;
	d->pos += n;
	return 0;
}

/* An n-byte little-endian immediate, n <= 8. */
static int pciem_insn_le(struct pciem_insn_decoder *d, unsigned int n,
			 u64 *val)
{
	unsigned int i;
	int err = pciem_insn_need(d, n);

	if (err)
		return err;
	*val = 0;
	for (i = 0; i < n; i++)
		*val |= (u64)d->buf[d->pos + i] << (8 * i);
	d->pos += n;
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
static int pciem_insn_prefixes(struct pciem_insn_decoder *d, u8 *op)
{
	int err;

	for (;;) {
		err = pciem_insn_byte(d, op);
		if (err)
			return err;
		if ((*op & 0xf0) == 0x40) {
			d->rex = *op;
			continue;
		}
		switch (*op) {
		case 0x66:
			d->prefixes |= PCIEM_PFX_OPSIZE;
			break;
		case 0x67:
			d->prefixes |= PCIEM_PFX_ADDRSIZE;
			break;
		case 0xf0:
			d->prefixes |= PCIEM_PFX_LOCK;
			break;
		case 0xf2:
		case 0xf3:
			d->prefixes |= PCIEM_PFX_REP;
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
		d->rex = 0;
	}
}

/*
 * Consumes the rest of the opcode, first being its first byte, and finds
 * the map it belongs to. In 64-bit mode C4, C5 and 62 always start VEX and
 * EVEX, whose payload names the map (VEX2: always 0F).
 */
static int pciem_insn_opcode(struct pciem_insn_decoder *d, u8 first)
{
	u8 payload;
	int err;

	switch (first) {
	case 0x0f:
		err = pciem_insn_byte(d, &d->op);
		if (err)
			return err;
		if (d->op != 0x38 && d->op != 0x3a) {
			d->map = 1;
			return 0;
		}
		d->map = d->op == 0x38 ? 2 : 3;
		return pciem_insn_byte(d, &d->op);
	case 0xc5:		/* VEX, one payload byte */
		d->vex = true;
		d->map = 1;
		err = pciem_insn_skip(d, 1);
		break;
	case 0xc4:		/* VEX, two payload bytes: map in bits 0..4 */
	case 0x62:		/* EVEX, three payload bytes: map in bits 0..2 */
		d->vex = true;
		err = pciem_insn_byte(d, &payload);
		if (err)
			return err;
		d->map = payload & (first == 0xc4 ? 0x1f : 0x07);
		err = pciem_insn_skip(d, first == 0xc4 ? 1 : 2);
		break;
	default:
		d->op = first;
		d->map = 0;
		return 0;
	}
	if (err)
		return err;
	return pciem_insn_byte(d, &d->op);
}

/*
 * Consumes ModRM and the SIB and displacement it implies. 0x67 changes the
 * registers an address uses, not these lengths; neither does REX.B, so
 * r12 still needs a SIB and r13 a displacement. The same holds under VEX
 * and EVEX (EVEX scales disp8, which does not change its length).
 */
static int pciem_insn_modrm(struct pciem_insn_decoder *d)
{
	u8 mod, rm, sib;
	int err;

	err = pciem_insn_byte(d, &d->modrm);
	if (err)
		return err;
	mod = d->modrm >> 6;
	rm = d->modrm & 7;
	if (mod == 3)
		return -EINVAL;		/* a register operand: no memory access */
	if (rm == 4) {
		err = pciem_insn_byte(d, &sib);
		if (err)
			return err;
		if (mod == 0 && (sib & 7) == 5)
			return pciem_insn_skip(d, 4);	/* no base: disp32 */
	} else if (mod == 0 && rm == 5) {
		return pciem_insn_skip(d, 4);		/* RIP-relative */
	}
	if (mod == 1)
		return pciem_insn_skip(d, 1);
	if (mod == 2)
		return pciem_insn_skip(d, 4);
	return 0;
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

static void pciem_insn_refused(struct pciem_insn_decoder *d,
			       enum pciem_insn_tail tail)
{
	d->form = PCIEM_FORM_REFUSED;
	d->tail = tail;
}

/* The one-byte map: the moves, and every other memory form. */
static void pciem_insn_classify_map0(struct pciem_insn_decoder *d,
				     struct pciem_insn *insn)
{
	u8 op = d->op;

	switch (op) {
	case 0x88 ... 0x8b:
		pciem_insn_mov(insn, op & 2, op & 1 ? d->opsize : 1);
		d->form = PCIEM_FORM_MOV_REG;
		break;
	case 0xc6 ... 0xc7:
		pciem_insn_mov(insn, false, op & 1 ? d->opsize : 1);
		d->form = PCIEM_FORM_MOV_IMM;
		d->tail = op & 1 ? PCIEM_TAIL_IMMZ : PCIEM_TAIL_IMM8;
		break;
	case 0xa0 ... 0xa3:
		pciem_insn_mov(insn, !(op & 2), op & 1 ? d->opsize : 1);
		d->form = PCIEM_FORM_MOFFS;
		d->tail = PCIEM_TAIL_MOFFS;
		break;
	case 0x63:
		/* Without REX.W this is a plain 32/16-bit move nobody emits. */
		if (!(d->rex & PCIEM_REX_W)) {
			pciem_insn_refused(d, PCIEM_TAIL_NONE);
			break;
		}
		insn->kind = PCIEM_INSN_READ;
		insn->size = 4;
		insn->dst_size = 8;
		insn->ext = PCIEM_EXT_SIGN;
		d->form = PCIEM_FORM_MOV_REG;
		break;
	case 0x6c ... 0x6f:	/* ins, outs */
	case 0xa4 ... 0xa7:	/* movs, cmps */
	case 0xaa ... 0xaf:	/* stos, lods, scas */
	case 0xd7:		/* xlat */
		d->form = PCIEM_FORM_IMPLICIT;
		break;
	case 0x00 ... 0x3f:	/* add, or, adc, sbb, and, sub, xor, cmp */
		if ((op & 7) < 4)
			pciem_insn_refused(d, PCIEM_TAIL_NONE);
		break;
	case 0x69:		/* imul */
	case 0x81:		/* arithmetic with imm */
		pciem_insn_refused(d, PCIEM_TAIL_IMMZ);
		break;
	case 0x6b:
	case 0x80:
	case 0x83:
	case 0xc0 ... 0xc1:	/* shifts by imm8 */
		pciem_insn_refused(d, PCIEM_TAIL_IMM8);
		break;
	case 0xf6 ... 0xf7:	/* test, not, neg, mul, div */
		pciem_insn_refused(d, PCIEM_TAIL_GRP3);
		break;
	case 0x84 ... 0x87:	/* test, xchg */
	case 0x8c:		/* mov to/from a segment register, pop */
	case 0x8e ... 0x8f:
	case 0xd0 ... 0xd3:	/* shifts by 1 and cl */
	case 0xd8 ... 0xdf:	/* x87 */
	case 0xfe ... 0xff:	/* inc, dec, call, jmp, push */
		pciem_insn_refused(d, PCIEM_TAIL_NONE);
		break;
	default:		/* no memory operand, lea, or undefined */
		break;
	}
}

/*
 * The 0F map, also map 1 of VEX and EVEX: every memory form is refused.
 * 0D and 18..1F (prefetches, hint nops), 20..23 (the ModRM always names
 * registers), B9 and FF (ud1, ud0) never access memory.
 */
static void pciem_insn_classify_0f(struct pciem_insn_decoder *d)
{
	switch (d->op) {
	case 0x0f:		/* 3DNow!: the operation comes as an imm8 */
	case 0x70 ... 0x73:	/* pshuf*, MMX/SSE shifts */
	case 0xa4:		/* shld, shrd */
	case 0xac:
	case 0xba:		/* bt group */
	case 0xc2:		/* cmpps */
	case 0xc4 ... 0xc6:	/* pinsrw, pextrw, shufps */
		pciem_insn_refused(d, PCIEM_TAIL_IMM8);
		break;
	case 0x00 ... 0x03:	/* sldt.., sgdt.., lar, lsl */
	case 0x10 ... 0x17:	/* SSE moves */
	case 0x28 ... 0x2f:
	case 0x40 ... 0x6f:	/* cmov, SSE/MMX arithmetic and moves */
	case 0x74 ... 0x76:
	case 0x78 ... 0x79:	/* vmread, vmwrite */
	case 0x7c ... 0x7f:
	case 0x90 ... 0x9f:	/* setcc */
	case 0xa3:		/* bt, shld, bts, shrd */
	case 0xa5:
	case 0xab:
	case 0xad ... 0xb8:	/* fxsave.., imul, cmpxchg, lss, btr, movzx */
	case 0xbb ... 0xc1:	/* btc, bsf, bsr, movsx, xadd */
	case 0xc3:		/* movnti */
	case 0xc7:		/* cmpxchg8b/16b, vmptrld.. */
	case 0xd0 ... 0xfe:	/* MMX/SSE, movq, movntdq.. */
		pciem_insn_refused(d, PCIEM_TAIL_NONE);
		break;
	default:
		break;
	}
}

/* Sets d->form and d->tail, and for a mov the access in insn. */
static void pciem_insn_classify(struct pciem_insn_decoder *d,
				struct pciem_insn *insn)
{
	u8 op = d->op;

	switch (d->map) {
	case 0:			/* not a map (E)VEX can name */
		if (!d->vex)
			pciem_insn_classify_map0(d, insn);
		break;
	case 1:
		if (!d->vex && (op == 0xb6 || op == 0xb7 ||
				op == 0xbe || op == 0xbf)) {
			insn->kind = PCIEM_INSN_READ;
			insn->size = op & 1 ? 2 : 1;
			insn->dst_size = d->opsize;
			insn->ext = op & 8 ? PCIEM_EXT_SIGN : PCIEM_EXT_ZERO;
			d->form = PCIEM_FORM_MOV_REG;
			break;
		}
		pciem_insn_classify_0f(d);
		break;
	case 2:			/* 0F 38; EVEX 5 and 6 (FP16) */
	case 5:
	case 6:
		pciem_insn_refused(d, PCIEM_TAIL_NONE);
		break;
	case 3:			/* 0F 3A */
		pciem_insn_refused(d, PCIEM_TAIL_IMM8);
		break;
	default:
		break;
	}
}

/* Consumes what follows ModRM or the opcode; keeps a mov's immediate. */
static int pciem_insn_immediate(struct pciem_insn_decoder *d,
				struct pciem_insn *insn)
{
	unsigned int immz = d->opsize == 2 ? 2 : 4;
	unsigned int n;
	int err;

	switch (d->tail) {
	case PCIEM_TAIL_IMM8:
		n = 1;
		break;
	case PCIEM_TAIL_IMMZ:
		n = immz;
		break;
	case PCIEM_TAIL_GRP3:
		if ((d->modrm >> 3 & 7) >= 2)
			return 0;
		n = d->op & 1 ? immz : 1;
		break;
	case PCIEM_TAIL_MOFFS:
		n = d->prefixes & PCIEM_PFX_ADDRSIZE ? 4 : 8;
		break;
	default:
		return 0;
	}
	if (d->form != PCIEM_FORM_MOV_IMM)
		return pciem_insn_skip(d, n);

	/* The immediate is at most 32 bits, sign-extended for REX.W. */
	err = pciem_insn_le(d, n, &insn->imm);
	if (err)
		return err;
	if (insn->size == 8)
		insn->imm = pciem_insn_sign_extend(insn->imm, 4);
	insn->has_imm = true;
	return 0;
}

/* A string instruction by its opcode; PCIEM_STRING_NONE for anything else. */
static enum pciem_insn_string pciem_insn_string(u8 op)
{
	switch (op & ~1) {
	case 0x6c:
		return PCIEM_STRING_INS;
	case 0x6e:
		return PCIEM_STRING_OUTS;
	case 0xa4:
		return PCIEM_STRING_MOVS;
	case 0xa6:
		return PCIEM_STRING_CMPS;
	case 0xaa:
		return PCIEM_STRING_STOS;
	case 0xac:
		return PCIEM_STRING_LODS;
	case 0xae:
		return PCIEM_STRING_SCAS;
	default:
		return PCIEM_STRING_NONE;
	}
}

/*
 * The result for a memory access that is not emulated: its length and, for
 * a string instruction, what the fault path needs to skip it.
 */
static int pciem_insn_refuse(const struct pciem_insn_decoder *d,
			     struct pciem_insn *insn)
{
	*insn = (struct pciem_insn){ .len = d->pos };
	if (d->form != PCIEM_FORM_IMPLICIT)
		return -EOPNOTSUPP;
	insn->string = pciem_insn_string(d->op);
	if (insn->string == PCIEM_STRING_NONE)
		return -EOPNOTSUPP;	/* xlat */
	/* ins and outs move at most 4 bytes, whatever REX.W says. */
	if (!(d->op & 1))
		insn->size = 1;
	else if (insn->string == PCIEM_STRING_INS ||
		 insn->string == PCIEM_STRING_OUTS)
		insn->size = d->opsize < 4 ? d->opsize : 4;
	else
		insn->size = d->opsize;
	insn->rep = d->prefixes & PCIEM_PFX_REP;
	insn->addr32 = d->prefixes & PCIEM_PFX_ADDRSIZE;
	return -EOPNOTSUPP;
}

int pciem_insn_decode(const u8 *buf, unsigned int buflen,
		      struct pciem_insn *insn)
{
	struct pciem_insn_decoder d = { .buf = buf, .buflen = buflen };
	u8 first, reg_width;
	int err;

	*insn = (struct pciem_insn){};
	err = pciem_insn_prefixes(&d, &first);
	if (err)
		return err;
	if (d.rex & PCIEM_REX_W)
		d.opsize = 8;
	else
		d.opsize = d.prefixes & PCIEM_PFX_OPSIZE ? 2 : 4;
	err = pciem_insn_opcode(&d, first);
	if (err)
		return err;
	pciem_insn_classify(&d, insn);

	switch (d.form) {
	case PCIEM_FORM_INVALID:
		return -EINVAL;
	case PCIEM_FORM_IMPLICIT:
	case PCIEM_FORM_MOFFS:
		break;
	default:
		err = pciem_insn_modrm(&d);
		if (err)
			return err;
		break;
	}
	if (d.form == PCIEM_FORM_MOV_REG)
		insn->reg = (d.modrm >> 3 & 7) | (d.rex & PCIEM_REX_R ? 8 : 0);
	if (d.form == PCIEM_FORM_MOV_IMM && (d.modrm >> 3 & 7))
		return -EINVAL;	/* C6/C7 /1../7: undefined for memory */
	err = pciem_insn_immediate(&d, insn);
	if (err)
		return err;

	if (d.form == PCIEM_FORM_IMPLICIT || d.form == PCIEM_FORM_REFUSED)
		return pciem_insn_refuse(&d, insn);
	/*
	 * lock mov is #UD; F2/F3 before a mov are HLE hints (xacquire,
	 * xrelease) or reserved. No driver means either.
	 */
	if (d.prefixes & (PCIEM_PFX_LOCK | PCIEM_PFX_REP))
		return pciem_insn_refuse(&d, insn);

	/* Without any REX, byte registers 4..7 are AH, CH, DH, BH. */
	reg_width = insn->kind == PCIEM_INSN_READ ? insn->dst_size : insn->size;
	if (!insn->has_imm && reg_width == 1 && !d.rex && insn->reg >= 4) {
		insn->reg -= 4;
		insn->high_byte = true;
	}
	insn->len = d.pos;
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
