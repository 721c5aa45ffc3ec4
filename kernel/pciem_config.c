// SPDX-License-Identifier: GPL-2.0
/*
 * pciem_config: the config space of one synthetic function (see
 * pciem_config.h). Every byte has a value, a write mask and a W1C mask; a
 * host write keeps the bits outside the write mask, takes the written value
 * inside it and clears the W1C bits written as 1. Two registers have a rule
 * on top (marked "fixup"). RO = read-only to the host, RW = read-write,
 * W1C = write 1 to clear, 0 = reads 0 and ignores writes.
 *
 * Type-0 header
 *   00 vendor, device ID            RO  set_ids (vendor 0x0000/0xffff refused)
 *   04 command                      RW  MEMORY, MASTER, PARITY, SERR, INTX_DISABLE;
 *                                       IO is 0 (pciem has no I/O BARs), the rest 0
 *   06 status                       RO  CAP_LIST (set: there is always a PCIe cap),
 *                                       INTERRUPT (pciem_cfg_set_intx_status())
 *                                   W1C PARITY, SIG_TARGET_ABORT, REC_TARGET_ABORT,
 *                                       REC_MASTER_ABORT, SIG_SYSTEM_ERROR,
 *                                       DETECTED_PARITY (set by pciem_cfg_set_w1c())
 *   08 revision, class code         RO  set_ids
 *   0c cache line size              RW
 *   0d latency timer                RW
 *   0e header type                  RO  0x00, 0x80 with finalize(multifunction)
 *   0f BIST                         0
 *   10..27 BARs                     memory BARs only; type and prefetch bits RO;
 *                                   address bits from log2(size) up RW, so
 *                                   all-ones reads back ~(size - 1) | flags; the
 *                                   upper dword of a 64-bit BAR RW from
 *                                   log2(size) - 32 up; no BAR: 0
 *   28 CardBus CIS                  0
 *   2c subsystem vendor, ID         RO  set_ids
 *   30 expansion ROM BAR            0
 *   34 capabilities pointer         RO  first standard capability
 *   3c interrupt line               RW
 *   3d interrupt pin                RO  1 (INTA)
 *   3e min grant, max latency       0
 *
 * Standard capabilities, from 0x40, dword aligned, in the order added; the
 * last one's next pointer is 0. IDs and next pointers are RO.
 *   MSI (10, 14, 20 or 24 bytes with 64-bit address / per-vector masking)
 *     +02 control   RO  QMASK = num_vectors_log2, 64BIT, MASKBIT as requested
 *                   RW  ENABLE, QSIZE (fixup: a value above QMASK becomes QMASK)
 *     +04 address   RW  bits 31..2 (bits 1..0 are 0)
 *     +08 address hi RW (64-bit only)
 *     data          RW  16 bits; the 16 bits above it in a 64-bit cap are 0
 *     mask          RW  one bit per implemented vector (masking only)
 *     pending       RO  pciem_cfg_set_msi_pending() (masking only)
 *   MSI-X (12 bytes)
 *     +02 control   RW  ENABLE, MASKALL;  RO  table size - 1
 *     +04 table     RO  offset | BIR      +08 PBA  RO  offset | BIR
 *   Power management (8 bytes)
 *     +02 PMC       RO  version 3; D0 and D3hot only, no PME
 *     +04 PMCSR     RW  power state (fixup: a write of D1 or D2 keeps the state)
 *                   RO  NO_SOFT_RESET set; PME enable/status, data 0
 *   PCI Express, version 2, endpoint (0x3c bytes)
 *     +02 flags     RO  version 2, type endpoint
 *     +04 DEVCAP    RO  MPS 256 B, extended tags, L0s/L1 latency unlimited,
 *                       role-based errors, FLR
 *     +08 DEVCTL    RW  CERE, NFERE, FERE, URRE, RELAX_EN, PAYLOAD, EXT_TAG,
 *                       NOSNOOP_EN, READRQ; reset RELAX_EN | NOSNOOP_EN | 512 B;
 *                   0   PHANTOM, AUX_PME; BCR_FLR reads 0 (pciem_cfg_write_is_flr())
 *     +0a DEVSTA    W1C CED, NFED, FED, URD;  0  AUXPD, TRPND
 *     +0c LNKCAP    RO  8 GT/s, x4, no ASPM, port 0
 *     +10 LNKCTL    RW  ASPMC, RCB, CCC, ES, HAWD;  0  the rest
 *     +12 LNKSTA    RO  8 GT/s, x4, slot clock
 *     +14..+23      0   slot and root registers (not an endpoint's)
 *     +24 DEVCAP2   RO  completion timeout disable supported
 *     +28 DEVCTL2   RW  COMP_TMOUT_DIS, ATOMIC_REQ (pciem does AtomicOps)
 *     +2a DEVSTA2   0
 *     +2c LNKCAP2   RO  2.5, 5 and 8 GT/s
 *     +30 LNKCTL2   RW  target link speed, reset 8 GT/s;  0  the rest
 *     +32..+3b      0   LNKSTA2, slot registers 2
 *
 * Extended capabilities, from 0x100, dword aligned, in the order added; the
 * last one's next offset is 0, and 0x100 reads 0 when there is none (not
 * all-ones and not an alias of dword 0, so the core sizes the space 4 KiB).
 *   Vendor-specific (24 bytes; may repeat)
 *     +04 VSEC header RO  ID PCIEM_CFG_VSEC_ID, rev PCIEM_CFG_VSEC_REV, length 24
 *     +08 body      RO  the 16 raw bytes of pciem_cap_config
 *   PASID (8 bytes)
 *     +04 cap       RO  EXEC, PRIV, max width as requested
 *     +06 control   RW  ENABLE; EXEC and PRIV only where supported
 *
 * Everything else reads 0 and ignores writes.
 */
#ifdef __KERNEL__
#include <linux/string.h>
#endif

#include "pciem_config.h"

#define PCIEM_CFG_MSI_MAX_LOG2		5
#define PCIEM_CFG_MSIX_MAX_VECTORS	2048
#define PCIEM_CFG_PASID_MAX_WIDTH	20
#define PCIEM_CFG_BAR_MIN		4096ULL
#define PCIEM_CFG_BAR32_MAX		(1ULL << 31)
#define PCIEM_CFG_BAR64_MAX		(1ULL << 40)

/* PCI_HEADER_TYPE_MFD, which 6.1's pci_regs.h does not have yet */
#define PCIEM_CFG_HEADER_MFD		0x80

#define PCIEM_CFG_PM_VERSION		3
#define PCIEM_CFG_PM_D0			0
#define PCIEM_CFG_PM_D3HOT		3

#define PCIEM_CFG_EXP_VERSION		2
#define PCIEM_CFG_EXP_SIZEOF		0x3c
#define PCIEM_CFG_EXP_MPSS_256B		1
#define PCIEM_CFG_EXP_LINK_WIDTH	4

#define PCIEM_CFG_BAR_FLAGS	(PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH)

#define PCIEM_CFG_STATUS_W1C	(PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | \
				 PCI_STATUS_REC_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT | \
				 PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY)
#define PCIEM_CFG_COMMAND_RW	(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | \
				 PCI_COMMAND_PARITY | PCI_COMMAND_SERR | \
				 PCI_COMMAND_INTX_DISABLE)

#define PCIEM_CFG_DEVCTL_RW	(PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_NFERE | \
				 PCI_EXP_DEVCTL_FERE | PCI_EXP_DEVCTL_URRE | \
				 PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_PAYLOAD | \
				 PCI_EXP_DEVCTL_EXT_TAG | PCI_EXP_DEVCTL_NOSNOOP_EN | \
				 PCI_EXP_DEVCTL_READRQ)
#define PCIEM_CFG_DEVCTL_RESET	(PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | \
				 PCI_EXP_DEVCTL_READRQ_512B)
#define PCIEM_CFG_DEVSTA_W1C	(PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED | \
				 PCI_EXP_DEVSTA_FED | PCI_EXP_DEVSTA_URD)
#define PCIEM_CFG_LNKCTL_RW	(PCI_EXP_LNKCTL_ASPMC | PCI_EXP_LNKCTL_RCB | \
				 PCI_EXP_LNKCTL_CCC | PCI_EXP_LNKCTL_ES | \
				 PCI_EXP_LNKCTL_HAWD)
#define PCIEM_CFG_DEVCTL2_RW	(PCI_EXP_DEVCTL2_COMP_TMOUT_DIS | PCI_EXP_DEVCTL2_ATOMIC_REQ)

/* Little-endian register access to data, wmask or w1cmask. */
static u32 pciem_cfg_get(const u8 *a, unsigned int off, unsigned int size)
{
	u32 v = 0;
	unsigned int i;

	for (i = 0; i < size; i++)
		v |= (u32)a[off + i] << (8 * i);
	return v;
}

static void pciem_cfg_put(u8 *a, unsigned int off, unsigned int size, u32 v)
{
	unsigned int i;

	for (i = 0; i < size; i++)
		a[off + i] = (u8)(v >> (8 * i));
}

static bool pciem_cfg_zero(const void *p, size_t len)
{
	const u8 *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static bool pciem_cfg_covers(unsigned int where, unsigned int size, unsigned int off)
{
	return off >= where && off < where + size;
}

void pciem_cfg_init(struct pciem_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->data[PCI_INTERRUPT_PIN] = 1;
	c->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	c->wmask[PCI_LATENCY_TIMER] = 0xff;
	c->wmask[PCI_INTERRUPT_LINE] = 0xff;
	pciem_cfg_put(c->wmask, PCI_COMMAND, 2, PCIEM_CFG_COMMAND_RW);
	pciem_cfg_put(c->w1cmask, PCI_STATUS, 2, PCIEM_CFG_STATUS_W1C);
	c->std_next = PCIEM_CFG_STD_CAP_START;
	c->ext_next = PCIEM_CFG_EXT_CAP_START;
}

int pciem_cfg_set_ids(struct pciem_cfg *c, const struct pciem_config_space *ids)
{
	if (ids->vendor_id == 0x0000 || ids->vendor_id == 0xffff)
		return -EINVAL;
	if (ids->header_type != PCI_HEADER_TYPE_NORMAL)
		return -EINVAL;
	if (!pciem_cfg_zero(ids->reserved_func, sizeof(ids->reserved_func)) ||
	    !pciem_cfg_zero(ids->reserved, sizeof(ids->reserved)))
		return -EINVAL;
	if (c->finalized)
		return -EALREADY;

	pciem_cfg_put(c->data, PCI_VENDOR_ID, 2, ids->vendor_id);
	pciem_cfg_put(c->data, PCI_DEVICE_ID, 2, ids->device_id);
	c->data[PCI_REVISION_ID] = ids->revision;
	c->data[PCI_CLASS_PROG] = ids->class_code[0];
	c->data[PCI_CLASS_DEVICE] = ids->class_code[1];
	c->data[PCI_CLASS_DEVICE + 1] = ids->class_code[2];
	pciem_cfg_put(c->data, PCI_SUBSYSTEM_VENDOR_ID, 2, ids->subsys_vendor_id);
	pciem_cfg_put(c->data, PCI_SUBSYSTEM_ID, 2, ids->subsys_device_id);
	return 0;
}

/* --- BARs --- */

static unsigned int pciem_cfg_bar_reg(unsigned int bar)
{
	return PCI_BASE_ADDRESS_0 + 4 * bar;
}

static bool pciem_cfg_bar_is64(const struct pciem_cfg *c, unsigned int bar)
{
	return c->bar_size[bar] && (c->bar_flags[bar] & PCI_BASE_ADDRESS_MEM_TYPE_64);
}

/* Taken by a BAR, or by the upper half of the 64-bit BAR below it. */
static bool pciem_cfg_bar_slot_used(const struct pciem_cfg *c, unsigned int bar)
{
	return c->bar_size[bar] || (bar > 0 && pciem_cfg_bar_is64(c, bar - 1));
}

static bool pciem_cfg_bar_size_ok(u64 size, bool is64)
{
	if (size < PCIEM_CFG_BAR_MIN || (size & (size - 1)))
		return false;
	return size <= (is64 ? PCIEM_CFG_BAR64_MAX : PCIEM_CFG_BAR32_MAX);
}

int pciem_cfg_add_bar(struct pciem_cfg *c, const struct pciem_bar_config *bar)
{
	unsigned int i = bar->bar_index;
	unsigned int reg;
	u64 addr_mask;
	bool is64;

	if (bar->bar_index >= PCIEM_NUM_BARS)
		return -EINVAL;
	/* Rejects I/O BARs and the obsolete below-1M type with the unknown bits. */
	if (bar->flags & ~PCIEM_CFG_BAR_FLAGS)
		return -EINVAL;
	is64 = bar->flags & PCI_BASE_ADDRESS_MEM_TYPE_64;
	if (is64 && i == PCIEM_NUM_BARS - 1)
		return -EINVAL;
	if (!pciem_cfg_bar_size_ok(bar->size, is64))
		return -EINVAL;
	if (!pciem_cfg_zero(bar->reserved, sizeof(bar->reserved)) ||
	    !pciem_cfg_zero(bar->reserved2, sizeof(bar->reserved2)))
		return -EINVAL;
	if (c->finalized)
		return -EALREADY;
	if (pciem_cfg_bar_slot_used(c, i) || (is64 && pciem_cfg_bar_slot_used(c, i + 1)))
		return -EBUSY;

	c->bar_size[i] = bar->size;
	c->bar_flags[i] = bar->flags;
	reg = pciem_cfg_bar_reg(i);
	addr_mask = ~(bar->size - 1);
	pciem_cfg_put(c->data, reg, 4, bar->flags);
	pciem_cfg_put(c->wmask, reg, 4, (u32)addr_mask);
	if (is64)
		pciem_cfg_put(c->wmask, reg + 4, 4, (u32)(addr_mask >> 32));
	return 0;
}

u64 pciem_cfg_bar_addr(const struct pciem_cfg *c, unsigned int bar)
{
	unsigned int reg;
	u64 addr;

	if (bar >= PCIEM_NUM_BARS || !c->bar_size[bar])
		return 0;
	reg = pciem_cfg_bar_reg(bar);
	addr = pciem_cfg_get(c->data, reg, 4) & ~0xfU;
	if (pciem_cfg_bar_is64(c, bar))
		addr |= (u64)pciem_cfg_get(c->data, reg + 4, 4) << 32;
	return addr;
}

/* --- Capability placement --- */

static int pciem_cfg_alloc_std(struct pciem_cfg *c, u8 id, unsigned int len, u8 *pos)
{
	unsigned int off = c->std_next;

	if (off + len > PCI_CFG_SPACE_SIZE)
		return -ENOSPC;
	c->data[off + PCI_CAP_LIST_ID] = id;
	if (c->std_last)
		c->data[c->std_last + PCI_CAP_LIST_NEXT] = off;
	else
		c->data[PCI_CAPABILITY_LIST] = off;
	c->data[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	c->std_last = off;
	c->std_next = (off + len + 3) & ~3U;
	*pos = off;
	return 0;
}

static int pciem_cfg_alloc_ext(struct pciem_cfg *c, u16 id, u8 version,
			       unsigned int len, u16 *pos)
{
	unsigned int off = c->ext_next;
	u32 hdr;

	if (off + len > PCIEM_CFG_SIZE)
		return -ENOSPC;
	pciem_cfg_put(c->data, off, 4, id | (u32)version << 16);
	if (c->ext_last) {
		hdr = pciem_cfg_get(c->data, c->ext_last, 4);
		pciem_cfg_put(c->data, c->ext_last, 4, (hdr & 0x000fffff) | (u32)off << 20);
	}
	c->ext_last = off;
	c->ext_next = (off + len + 3) & ~3U;
	*pos = off;
	return 0;
}

/* --- Capabilities --- */

static unsigned int pciem_cfg_msi_len(const struct pciem_cap_msi_userspace *m)
{
	if (m->has_64bit)
		return m->has_masking ? PCI_MSI_PENDING_64 + 4 : PCI_MSI_DATA_64 + 2;
	return m->has_masking ? PCI_MSI_PENDING_32 + 4 : PCI_MSI_DATA_32 + 2;
}

static int pciem_cfg_check_msi(const struct pciem_cap_config *cap)
{
	const struct pciem_cap_msi_userspace *m = &cap->msi;

	if (m->num_vectors_log2 > PCIEM_CFG_MSI_MAX_LOG2 || m->has_64bit > 1 ||
	    m->has_masking > 1 || m->reserved)
		return -EINVAL;
	if (!pciem_cfg_zero(cap->raw + sizeof(*m), sizeof(cap->raw) - sizeof(*m)))
		return -EINVAL;
	return 0;
}

static int pciem_cfg_add_msi(struct pciem_cfg *c, const struct pciem_cap_msi_userspace *m)
{
	unsigned int data_reg, mask_reg;
	u16 flags;
	u8 pos;
	int ret;

	if (c->msi_cap)
		return -EEXIST;
	ret = pciem_cfg_alloc_std(c, PCI_CAP_ID_MSI, pciem_cfg_msi_len(m), &pos);
	if (ret)
		return ret;

	flags = m->num_vectors_log2 << 1;
	if (m->has_64bit)
		flags |= PCI_MSI_FLAGS_64BIT;
	if (m->has_masking)
		flags |= PCI_MSI_FLAGS_MASKBIT;
	pciem_cfg_put(c->data, pos + PCI_MSI_FLAGS, 2, flags);
	pciem_cfg_put(c->wmask, pos + PCI_MSI_FLAGS, 2,
		      PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
	pciem_cfg_put(c->wmask, pos + PCI_MSI_ADDRESS_LO, 4, 0xfffffffc);
	if (m->has_64bit) {
		pciem_cfg_put(c->wmask, pos + PCI_MSI_ADDRESS_HI, 4, 0xffffffff);
		data_reg = PCI_MSI_DATA_64;
		mask_reg = PCI_MSI_MASK_64;
	} else {
		data_reg = PCI_MSI_DATA_32;
		mask_reg = PCI_MSI_MASK_32;
	}
	pciem_cfg_put(c->wmask, pos + data_reg, 2, 0xffff);
	if (m->has_masking)
		pciem_cfg_put(c->wmask, pos + mask_reg, 4,
			      (u32)((1ULL << (1U << m->num_vectors_log2)) - 1));
	c->msi_cap = pos;
	return 0;
}

static int pciem_cfg_check_msix(const struct pciem_cap_config *cap)
{
	const struct pciem_cap_msix_userspace *x = &cap->msix;

	if (x->bar_index >= PCIEM_NUM_BARS)
		return -EINVAL;
	if ((x->table_offset & PCI_MSIX_TABLE_BIR) || (x->pba_offset & PCI_MSIX_PBA_BIR))
		return -EINVAL;
	if (x->table_size == 0 || x->table_size > PCIEM_CFG_MSIX_MAX_VECTORS)
		return -EINVAL;
	if (!pciem_cfg_zero(x->reserved, sizeof(x->reserved)) || x->reserved2)
		return -EINVAL;
	return 0;
}

static int pciem_cfg_add_msix(struct pciem_cfg *c, const struct pciem_cap_msix_userspace *x)
{
	u8 pos;
	int ret;

	if (c->msix_cap)
		return -EEXIST;
	ret = pciem_cfg_alloc_std(c, PCI_CAP_ID_MSIX, PCI_CAP_MSIX_SIZEOF, &pos);
	if (ret)
		return ret;

	pciem_cfg_put(c->data, pos + PCI_MSIX_FLAGS, 2, x->table_size - 1);
	pciem_cfg_put(c->wmask, pos + PCI_MSIX_FLAGS, 2,
		      PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pciem_cfg_put(c->data, pos + PCI_MSIX_TABLE, 4, x->table_offset | x->bar_index);
	pciem_cfg_put(c->data, pos + PCI_MSIX_PBA, 4, x->pba_offset | x->bar_index);
	c->msix_cap = pos;
	return 0;
}

static int pciem_cfg_add_pm(struct pciem_cfg *c)
{
	u8 pos;
	int ret;

	if (c->pm_cap)
		return -EEXIST;
	ret = pciem_cfg_alloc_std(c, PCI_CAP_ID_PM, PCI_PM_SIZEOF, &pos);
	if (ret)
		return ret;

	pciem_cfg_put(c->data, pos + PCI_PM_PMC, 2, PCIEM_CFG_PM_VERSION);
	pciem_cfg_put(c->data, pos + PCI_PM_CTRL, 2, PCI_PM_CTRL_NO_SOFT_RESET);
	pciem_cfg_put(c->wmask, pos + PCI_PM_CTRL, 2, PCI_PM_CTRL_STATE_MASK);
	c->pm_cap = pos;
	return 0;
}

/* Power-on values of the PCIe capability's writable registers. */
static void pciem_cfg_pcie_defaults(struct pciem_cfg *c)
{
	unsigned int pos = c->pcie_cap;

	pciem_cfg_put(c->data, pos + PCI_EXP_DEVCTL, 2, PCIEM_CFG_DEVCTL_RESET);
	pciem_cfg_put(c->data, pos + PCI_EXP_LNKCTL2, 2, PCI_EXP_LNKCTL2_TLS_8_0GT);
}

static int pciem_cfg_add_pcie(struct pciem_cfg *c)
{
	u8 pos;
	int ret;

	if (c->pcie_cap)
		return -EEXIST;
	ret = pciem_cfg_alloc_std(c, PCI_CAP_ID_EXP, PCIEM_CFG_EXP_SIZEOF, &pos);
	if (ret)
		return ret;

	pciem_cfg_put(c->data, pos + PCI_EXP_FLAGS, 2,
		      PCIEM_CFG_EXP_VERSION | PCI_EXP_TYPE_ENDPOINT << 4);
	pciem_cfg_put(c->data, pos + PCI_EXP_DEVCAP, 4,
		      PCIEM_CFG_EXP_MPSS_256B | PCI_EXP_DEVCAP_EXT_TAG |
		      PCI_EXP_DEVCAP_L0S | PCI_EXP_DEVCAP_L1 |
		      PCI_EXP_DEVCAP_RBER | PCI_EXP_DEVCAP_FLR);
	pciem_cfg_put(c->wmask, pos + PCI_EXP_DEVCTL, 2, PCIEM_CFG_DEVCTL_RW);
	pciem_cfg_put(c->w1cmask, pos + PCI_EXP_DEVSTA, 2, PCIEM_CFG_DEVSTA_W1C);
	pciem_cfg_put(c->data, pos + PCI_EXP_LNKCAP, 4,
		      PCI_EXP_LNKCAP_SLS_8_0GB | PCIEM_CFG_EXP_LINK_WIDTH << 4);
	pciem_cfg_put(c->wmask, pos + PCI_EXP_LNKCTL, 2, PCIEM_CFG_LNKCTL_RW);
	pciem_cfg_put(c->data, pos + PCI_EXP_LNKSTA, 2,
		      PCI_EXP_LNKSTA_CLS_8_0GB |
		      PCIEM_CFG_EXP_LINK_WIDTH << PCI_EXP_LNKSTA_NLW_SHIFT |
		      PCI_EXP_LNKSTA_SLC);
	pciem_cfg_put(c->data, pos + PCI_EXP_DEVCAP2, 4, PCI_EXP_DEVCAP2_COMP_TMOUT_DIS);
	pciem_cfg_put(c->wmask, pos + PCI_EXP_DEVCTL2, 2, PCIEM_CFG_DEVCTL2_RW);
	pciem_cfg_put(c->data, pos + PCI_EXP_LNKCAP2, 4,
		      PCI_EXP_LNKCAP2_SLS_2_5GB | PCI_EXP_LNKCAP2_SLS_5_0GB |
		      PCI_EXP_LNKCAP2_SLS_8_0GB);
	pciem_cfg_put(c->wmask, pos + PCI_EXP_LNKCTL2, 2, PCI_EXP_LNKCTL2_TLS);
	c->pcie_cap = pos;
	pciem_cfg_pcie_defaults(c);
	return 0;
}

static int pciem_cfg_add_vsec(struct pciem_cfg *c, const u8 *body)
{
	u16 pos;
	int ret;

	ret = pciem_cfg_alloc_ext(c, PCI_EXT_CAP_ID_VNDR, 1, PCIEM_CFG_VSEC_LEN, &pos);
	if (ret)
		return ret;

	pciem_cfg_put(c->data, pos + PCI_VNDR_HEADER, 4,
		      PCIEM_CFG_VSEC_ID | PCIEM_CFG_VSEC_REV << 16 |
		      (u32)PCIEM_CFG_VSEC_LEN << 20);
	memcpy(c->data + pos + PCI_VNDR_HEADER + 4, body, PCIEM_CFG_VSEC_BODY);
	if (!c->vsec_ecap)
		c->vsec_ecap = pos;
	return 0;
}

static int pciem_cfg_check_pasid(const struct pciem_cap_config *cap)
{
	const struct pciem_cap_pasid_userspace *p = &cap->pasid;

	if (p->max_pasid_width > PCIEM_CFG_PASID_MAX_WIDTH ||
	    p->execute_permission > 1 || p->privileged_mode > 1 || p->reserved)
		return -EINVAL;
	if (!pciem_cfg_zero(cap->raw + sizeof(*p), sizeof(cap->raw) - sizeof(*p)))
		return -EINVAL;
	return 0;
}

static int pciem_cfg_add_pasid(struct pciem_cfg *c, const struct pciem_cap_pasid_userspace *p)
{
	u16 ctrl_rw = PCI_PASID_CTRL_ENABLE;
	u16 caps = p->max_pasid_width << 8;
	u16 pos;
	int ret;

	if (c->pasid_ecap)
		return -EEXIST;
	ret = pciem_cfg_alloc_ext(c, PCI_EXT_CAP_ID_PASID, 1, PCI_EXT_CAP_PASID_SIZEOF, &pos);
	if (ret)
		return ret;

	if (p->execute_permission) {
		caps |= PCI_PASID_CAP_EXEC;
		ctrl_rw |= PCI_PASID_CTRL_EXEC;
	}
	if (p->privileged_mode) {
		caps |= PCI_PASID_CAP_PRIV;
		ctrl_rw |= PCI_PASID_CTRL_PRIV;
	}
	pciem_cfg_put(c->data, pos + PCI_PASID_CAP, 2, caps);
	pciem_cfg_put(c->wmask, pos + PCI_PASID_CTRL, 2, ctrl_rw);
	c->pasid_ecap = pos;
	return 0;
}

/* Every field of the variant checked, and the union's unused tail zero. */
static int pciem_cfg_check_cap(const struct pciem_cap_config *cap)
{
	if (!pciem_cfg_zero(cap->reserved, sizeof(cap->reserved)))
		return -EINVAL;
	switch (cap->cap_type) {
	case PCIEM_CAP_MSI:
		return pciem_cfg_check_msi(cap);
	case PCIEM_CAP_MSIX:
		return pciem_cfg_check_msix(cap);
	case PCIEM_CAP_PASID:
		return pciem_cfg_check_pasid(cap);
	case PCIEM_CAP_VSEC:
		return 0;	/* raw is the body, any bytes */
	case PCIEM_CAP_PM:
	case PCIEM_CAP_PCIE:
		return pciem_cfg_zero(cap->raw, sizeof(cap->raw)) ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

int pciem_cfg_add_cap(struct pciem_cfg *c, const struct pciem_cap_config *cap)
{
	int ret = pciem_cfg_check_cap(cap);

	if (ret)
		return ret;
	if (c->finalized)
		return -EALREADY;

	switch (cap->cap_type) {
	case PCIEM_CAP_MSI:
		return pciem_cfg_add_msi(c, &cap->msi);
	case PCIEM_CAP_MSIX:
		return pciem_cfg_add_msix(c, &cap->msix);
	case PCIEM_CAP_PM:
		return pciem_cfg_add_pm(c);
	case PCIEM_CAP_PCIE:
		return pciem_cfg_add_pcie(c);
	case PCIEM_CAP_VSEC:
		return pciem_cfg_add_vsec(c, cap->raw);
	case PCIEM_CAP_PASID:
		return pciem_cfg_add_pasid(c, &cap->pasid);
	default:
		return -EINVAL;
	}
}

/* The MSI-X table and PBA lie inside their BAR and do not overlap. */
static int pciem_cfg_check_msix_bar(const struct pciem_cfg *c)
{
	unsigned int pos = c->msix_cap;
	u32 table = pciem_cfg_get(c->data, pos + PCI_MSIX_TABLE, 4);
	u32 pba = pciem_cfg_get(c->data, pos + PCI_MSIX_PBA, 4);
	u32 n = (pciem_cfg_get(c->data, pos + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;
	u64 bar_size = c->bar_size[table & PCI_MSIX_TABLE_BIR];
	u64 table_start = table & PCI_MSIX_TABLE_OFFSET;
	u64 table_end = table_start + (u64)n * PCI_MSIX_ENTRY_SIZE;
	u64 pba_start = pba & PCI_MSIX_PBA_OFFSET;
	u64 pba_end = pba_start + (n + 63) / 64 * 8;

	if (table_end > bar_size || pba_end > bar_size)
		return -EINVAL;
	if (table_start < pba_end && pba_start < table_end)
		return -EINVAL;
	return 0;
}

int pciem_cfg_finalize(struct pciem_cfg *c, bool multifunction)
{
	int ret;

	if (c->finalized)
		return -EALREADY;
	if (!pciem_cfg_get(c->data, PCI_VENDOR_ID, 2))
		return -EINVAL;
	if (c->msix_cap) {
		ret = pciem_cfg_check_msix_bar(c);
		if (ret)
			return ret;
	}
	if (!c->pcie_cap) {
		ret = pciem_cfg_add_pcie(c);
		if (ret)
			return ret;
	}
	if (multifunction)
		c->data[PCI_HEADER_TYPE] |= PCIEM_CFG_HEADER_MFD;
	c->finalized = true;
	return 0;
}

/* --- MSI register helpers --- */

static u16 pciem_cfg_msi_flags(const struct pciem_cfg *c)
{
	return pciem_cfg_get(c->data, c->msi_cap + PCI_MSI_FLAGS, 2);
}

/* The mask register's offset, 0 without per-vector masking. */
static unsigned int pciem_cfg_msi_mask_reg(const struct pciem_cfg *c)
{
	u16 flags;

	if (!c->msi_cap)
		return 0;
	flags = pciem_cfg_msi_flags(c);
	if (!(flags & PCI_MSI_FLAGS_MASKBIT))
		return 0;
	return c->msi_cap + (flags & PCI_MSI_FLAGS_64BIT ? PCI_MSI_MASK_64 : PCI_MSI_MASK_32);
}

/* --- Host accesses --- */

bool pciem_cfg_access_ok(unsigned int where, unsigned int size)
{
	if (size != 1 && size != 2 && size != 4)
		return false;
	return where < PCIEM_CFG_SIZE && !(where & (size - 1));
}

u32 pciem_cfg_read(const struct pciem_cfg *c, unsigned int where, unsigned int size)
{
	if (!pciem_cfg_access_ok(where, size))
		return size == 1 ? 0xff : size == 2 ? 0xffff : 0xffffffff;
	return pciem_cfg_get(c->data, where, size);
}

/* Registers whose value is not a plain function of the masks. */
static void pciem_cfg_fixup(struct pciem_cfg *c, unsigned int where,
			    unsigned int size, const u8 *old)
{
	unsigned int off;
	u8 max, *b;

	if (c->msi_cap) {
		off = c->msi_cap + PCI_MSI_FLAGS;
		if (pciem_cfg_covers(where, size, off)) {
			b = &c->data[off];
			max = (*b & PCI_MSI_FLAGS_QMASK) >> 1;
			if (((*b & PCI_MSI_FLAGS_QSIZE) >> 4) > max)
				*b = (*b & ~PCI_MSI_FLAGS_QSIZE) | max << 4;
		}
	}
	if (c->pm_cap) {
		off = c->pm_cap + PCI_PM_CTRL;
		if (pciem_cfg_covers(where, size, off)) {
			b = &c->data[off];
			switch (*b & PCI_PM_CTRL_STATE_MASK) {
			case PCIEM_CFG_PM_D0:
			case PCIEM_CFG_PM_D3HOT:
				break;
			default:
				*b = (*b & ~PCI_PM_CTRL_STATE_MASK) |
				     (old[off - where] & PCI_PM_CTRL_STATE_MASK);
			}
		}
	}
}

bool pciem_cfg_write(struct pciem_cfg *c, unsigned int where, unsigned int size, u32 val)
{
	bool changed = false;
	unsigned int i, off;
	u8 old[4], b;

	if (!pciem_cfg_access_ok(where, size))
		return false;
	for (i = 0; i < size; i++) {
		off = where + i;
		b = (u8)(val >> (8 * i));
		old[i] = c->data[off];
		c->data[off] = ((old[i] & ~c->wmask[off]) | (b & c->wmask[off])) &
			       ~(b & c->w1cmask[off]);
	}
	pciem_cfg_fixup(c, where, size, old);
	for (i = 0; i < size; i++)
		changed |= c->data[where + i] != old[i];
	return changed;
}

bool pciem_cfg_write_is_flr(const struct pciem_cfg *c, unsigned int where,
			    unsigned int size, u32 val)
{
	unsigned int off = c->pcie_cap + PCI_EXP_DEVCTL + 1;

	if (!c->pcie_cap || !pciem_cfg_access_ok(where, size) ||
	    !pciem_cfg_covers(where, size, off))
		return false;
	return (val >> (8 * (off - where))) & (PCI_EXP_DEVCTL_BCR_FLR >> 8);
}

void pciem_cfg_reset(struct pciem_cfg *c)
{
	u8 line = c->data[PCI_INTERRUPT_LINE];
	unsigned int i;

	for (i = 0; i < PCIEM_CFG_SIZE; i++)
		c->data[i] &= ~(c->wmask[i] | c->w1cmask[i]);
	c->data[PCI_INTERRUPT_LINE] = line;
	if (c->pcie_cap)
		pciem_cfg_pcie_defaults(c);
	i = pciem_cfg_msi_mask_reg(c);
	if (i)
		pciem_cfg_put(c->data, i + 4, 4, 0);
}

/* --- The device's side --- */

static u16 pciem_cfg_command(const struct pciem_cfg *c)
{
	return pciem_cfg_get(c->data, PCI_COMMAND, 2);
}

bool pciem_cfg_mem_enabled(const struct pciem_cfg *c)
{
	return pciem_cfg_command(c) & PCI_COMMAND_MEMORY;
}

bool pciem_cfg_bus_master(const struct pciem_cfg *c)
{
	return pciem_cfg_command(c) & PCI_COMMAND_MASTER;
}

bool pciem_cfg_intx_disabled(const struct pciem_cfg *c)
{
	return pciem_cfg_command(c) & PCI_COMMAND_INTX_DISABLE;
}

void pciem_cfg_set_intx_status(struct pciem_cfg *c, bool asserted)
{
	if (asserted)
		c->data[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	else
		c->data[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
}

void pciem_cfg_set_w1c(struct pciem_cfg *c, unsigned int where, unsigned int size, u32 bits)
{
	unsigned int i;

	if (!pciem_cfg_access_ok(where, size))
		return;
	for (i = 0; i < size; i++)
		c->data[where + i] |= (u8)(bits >> (8 * i)) & c->w1cmask[where + i];
}

bool pciem_cfg_msi_enabled(const struct pciem_cfg *c)
{
	return c->msi_cap && (pciem_cfg_msi_flags(c) & PCI_MSI_FLAGS_ENABLE);
}

unsigned int pciem_cfg_msi_vectors(const struct pciem_cfg *c)
{
	if (!c->msi_cap)
		return 0;
	return 1U << ((pciem_cfg_msi_flags(c) & PCI_MSI_FLAGS_QSIZE) >> 4);
}

int pciem_cfg_msi_message(const struct pciem_cfg *c, unsigned int vector,
			  u64 *addr, u32 *data)
{
	unsigned int pos = c->msi_cap, nvec;
	u16 flags;
	u32 d;

	if (!pos)
		return -ENODEV;
	nvec = pciem_cfg_msi_vectors(c);
	if (vector >= nvec)
		return -EINVAL;
	flags = pciem_cfg_msi_flags(c);
	*addr = pciem_cfg_get(c->data, pos + PCI_MSI_ADDRESS_LO, 4);
	if (flags & PCI_MSI_FLAGS_64BIT) {
		*addr |= (u64)pciem_cfg_get(c->data, pos + PCI_MSI_ADDRESS_HI, 4) << 32;
		d = pciem_cfg_get(c->data, pos + PCI_MSI_DATA_64, 2);
	} else {
		d = pciem_cfg_get(c->data, pos + PCI_MSI_DATA_32, 2);
	}
	*data = (d & ~(nvec - 1)) | vector;
	return 0;
}

bool pciem_cfg_msi_masked(const struct pciem_cfg *c, unsigned int vector)
{
	unsigned int reg = pciem_cfg_msi_mask_reg(c);

	if (!reg || vector >= 32)
		return false;
	return pciem_cfg_get(c->data, reg, 4) & (1U << vector);
}

void pciem_cfg_set_msi_pending(struct pciem_cfg *c, unsigned int vector, bool pending)
{
	unsigned int reg = pciem_cfg_msi_mask_reg(c);
	u32 bits, nvec_max;

	if (!reg)
		return;
	nvec_max = 1U << ((pciem_cfg_msi_flags(c) & PCI_MSI_FLAGS_QMASK) >> 1);
	if (vector >= nvec_max)
		return;
	reg += 4;	/* the pending register follows the mask register */
	bits = pciem_cfg_get(c->data, reg, 4);
	if (pending)
		bits |= 1U << vector;
	else
		bits &= ~(1U << vector);
	pciem_cfg_put(c->data, reg, 4, bits);
}

static u16 pciem_cfg_msix_flags(const struct pciem_cfg *c)
{
	return c->msix_cap ? pciem_cfg_get(c->data, c->msix_cap + PCI_MSIX_FLAGS, 2) : 0;
}

bool pciem_cfg_msix_enabled(const struct pciem_cfg *c)
{
	return pciem_cfg_msix_flags(c) & PCI_MSIX_FLAGS_ENABLE;
}

bool pciem_cfg_msix_masked(const struct pciem_cfg *c)
{
	return pciem_cfg_msix_flags(c) & PCI_MSIX_FLAGS_MASKALL;
}
