/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pciem_config: the 4 KiB configuration space of one synthetic PCIe function.
 *
 * pciem describes a function with the builder calls (set_ids, add_bar,
 * add_cap, then finalize), in the order the /dev/pciem ioctls arrive, and
 * then serves the PCI core's config accesses (its struct pci_ops) from
 * pciem_cfg_read() and pciem_cfg_write(). pciem_config.c lists, register by
 * register, what the host may write.
 *
 * Nothing here sleeps, allocates or locks: the caller serialises every call
 * on one struct pciem_cfg (pciem holds the function's lock around them).
 *
 * The same source builds in userspace for kernel/tests/config_test.c; the
 * include switch below is the only difference.
 */
#ifndef PCIEM_CONFIG_H
#define PCIEM_CONFIG_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/pci_regs.h>
#include <linux/types.h>
#include <uapi/linux/pciem.h>
#else
#include "tests/kshim.h"
#include "include/uapi/linux/pciem.h"
#endif

#define PCIEM_CFG_SIZE		PCI_CFG_SPACE_EXP_SIZE

/* Where the builder places capabilities. */
#define PCIEM_CFG_STD_CAP_START	0x40
#define PCIEM_CFG_EXT_CAP_START	PCI_CFG_SPACE_SIZE

/* The vendor-specific header of every VSEC pciem builds. */
#define PCIEM_CFG_VSEC_ID	0x0001
#define PCIEM_CFG_VSEC_REV	1
#define PCIEM_CFG_VSEC_BODY	16	/* bytes: pciem_cap_config.raw */
#define PCIEM_CFG_VSEC_LEN	(PCI_VNDR_HEADER + 4 + PCIEM_CFG_VSEC_BODY)

struct pciem_cfg {
	u8 data[PCIEM_CFG_SIZE];	/* what the host reads, little endian */
	u8 wmask[PCIEM_CFG_SIZE];	/* bits the host may write */
	u8 w1cmask[PCIEM_CFG_SIZE];	/* bits cleared by writing 1 */
	u64 bar_size[PCIEM_NUM_BARS];	/* 0 = no BAR; the upper half of a 64-bit BAR is 0 */
	u32 bar_flags[PCIEM_NUM_BARS];	/* PCI_BASE_ADDRESS_* bits as given */
	u8 msi_cap, msix_cap, pm_cap, pcie_cap;	/* offsets, 0 = absent */
	u16 pasid_ecap, vsec_ecap;	/* offsets, 0 = absent; vsec_ecap: the first VSEC */
	/* Builder state. */
	u16 std_next;			/* next free offset in the standard area */
	u16 ext_next;			/* next free offset in the extended area */
	u8 std_last;			/* last standard capability, 0 = none */
	u16 ext_last;			/* last extended capability, 0 = none */
	bool finalized;			/* the description is complete */
};

/*
 * The builder. Each call returns 0 or:
 *   -EINVAL    a bad value (see each struct in the uAPI header), a non-zero
 *              reserved field, an unknown capability type;
 *   -EBUSY     the BAR slot (or the upper slot a 64-bit BAR needs) is taken;
 *   -EEXIST    the capability is already there (VSEC may repeat);
 *   -ENOSPC    no room left in the standard (0x40..0xff) or extended
 *              (0x100..0xfff) capability area;
 *   -EALREADY  pciem_cfg_finalize() has already run.
 * A call that fails leaves the config space as it was. The func fields of the
 * uAPI structs are pciem's business (it picks the struct pciem_cfg) and are
 * not looked at here.
 */

/* An empty type-0 header: all zeros but the interrupt pin (INTA). */
void pciem_cfg_init(struct pciem_cfg *c);
int pciem_cfg_set_ids(struct pciem_cfg *c, const struct pciem_config_space *ids);
int pciem_cfg_add_bar(struct pciem_cfg *c, const struct pciem_bar_config *bar);
int pciem_cfg_add_cap(struct pciem_cfg *c, const struct pciem_cap_config *cap);
/*
 * After the description is complete: checks that IDs were set (-EINVAL) and
 * that the MSI-X table and PBA lie inside their BAR without overlapping
 * (-EINVAL), adds a PCIe capability if none was added (the device must be
 * PCIe so that the core uses the 4 KiB space; -ENOSPC if it does not fit),
 * sets the multi-function bit if asked.
 */
int pciem_cfg_finalize(struct pciem_cfg *c, bool multifunction);

/*
 * Host accesses: size 1, 2 or 4, size-aligned, inside the 4 KiB. Anything
 * else reads all-ones (of the access width; 0xffffffff for a bad size) and
 * is not written; pciem's pci_ops answer PCIBIOS_BAD_REGISTER_NUMBER for it.
 */
bool pciem_cfg_access_ok(unsigned int where, unsigned int size);
u32 pciem_cfg_read(const struct pciem_cfg *c, unsigned int where, unsigned int size);
/* Applies RO/RW/W1C semantics. Returns true if any byte's value changed. */
bool pciem_cfg_write(struct pciem_cfg *c, unsigned int where, unsigned int size, u32 val);
/*
 * True if this host write sets Initiate Function Level Reset. The bit always
 * reads 0, so pciem_cfg_write() does not report it as a change: pciem asks
 * this first and then runs the reset (pciem_cfg_reset() among it).
 */
bool pciem_cfg_write_is_flr(const struct pciem_cfg *c, unsigned int where,
			    unsigned int size, u32 val);
/*
 * Function Level Reset of the config space: every host-writable and W1C bit
 * goes back to its power-on value (command, BAR addresses, MSI/MSI-X/PASID
 * enables, power state D0, PCIe control registers), MSI pending bits clear.
 * Kept: the interrupt line (software's scratch byte) and the INTx status,
 * which follows the device's line (pciem_cfg_set_intx_status()).
 */
void pciem_cfg_reset(struct pciem_cfg *c);

/* The device's side. */
bool pciem_cfg_mem_enabled(const struct pciem_cfg *c);	/* PCI_COMMAND_MEMORY */
bool pciem_cfg_bus_master(const struct pciem_cfg *c);	/* PCI_COMMAND_MASTER */
bool pciem_cfg_intx_disabled(const struct pciem_cfg *c);	/* PCI_COMMAND_INTX_DISABLE */
/* PCI_STATUS_INTERRUPT, read-only to the host. */
void pciem_cfg_set_intx_status(struct pciem_cfg *c, bool asserted);
/*
 * Sets W1C status bits (PCI_STATUS error bits, PCI_EXP_DEVSTA error bits), as
 * the device reports an error; bits that are not W1C are left alone. An
 * access pciem_cfg_access_ok() refuses does nothing.
 */
void pciem_cfg_set_w1c(struct pciem_cfg *c, unsigned int where, unsigned int size, u32 bits);
/* The address the host programmed into a BAR (0 for no BAR). */
u64 pciem_cfg_bar_addr(const struct pciem_cfg *c, unsigned int bar);

bool pciem_cfg_msi_enabled(const struct pciem_cfg *c);
/* Vectors the host allocated (Multiple Message Enable): 1..32, 0 without MSI. */
unsigned int pciem_cfg_msi_vectors(const struct pciem_cfg *c);
/*
 * The message for an MSI vector: the programmed address, and the data with
 * its low bits replaced by the vector. -ENODEV without MSI, -EINVAL for a
 * vector beyond pciem_cfg_msi_vectors().
 */
int pciem_cfg_msi_message(const struct pciem_cfg *c, unsigned int vector,
			  u64 *addr, u32 *data);
/* Per-vector mask bit; false without per-vector masking. */
bool pciem_cfg_msi_masked(const struct pciem_cfg *c, unsigned int vector);
/* Per-vector pending bit (read-only to the host); ignored without masking. */
void pciem_cfg_set_msi_pending(struct pciem_cfg *c, unsigned int vector, bool pending);
bool pciem_cfg_msix_enabled(const struct pciem_cfg *c);
/* The MSI-X Function Mask bit. */
bool pciem_cfg_msix_masked(const struct pciem_cfg *c);

#endif /* PCIEM_CONFIG_H */
