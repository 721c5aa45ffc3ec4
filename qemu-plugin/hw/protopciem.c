/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * ProtoPCIem card model (first increment).
 *
 * The card keeps the register map of upstream PCIem's ProtoPCIem sample
 * (vendor 0x1f0c, device 0x0001, BAR0 64 KiB of registers, BAR2 1 MiB),
 * so the host driver can talk to this model or to upstream's userspace
 * card alike.
 *
 * Implemented so far:
 *   BAR0  the extension block's identification registers (ID, VERSION);
 *         every other offset reads 0, ignores writes and logs LOG_UNIMP.
 *         Upstream's block (CONTROL, STATUS, CMD, ... at 0x00-0x34) is
 *         not modelled yet.
 *   BAR2  1 MiB of plain memory, as on upstream's card.
 * Not yet: commands, DMA, interrupts (no MSI capability is advertised).
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "hw/pci/pci_device.h"
#include "migration/vmstate.h"
#include "qom/object.h"
#include "trace.h"

#define TYPE_PROTOPCIEM "protopciem"
OBJECT_DECLARE_SIMPLE_TYPE(ProtoPCIemState, PROTOPCIEM)

#define PROTOPCIEM_VENDOR_ID    0x1f0c
#define PROTOPCIEM_DEVICE_ID    0x0001
/* Base class "processor", as upstream's card reports it. */
#define PROTOPCIEM_CLASS_ID     (PCI_BASE_CLASS_PROCESSOR << 8)

#define PROTOPCIEM_REGS_BAR     0
#define PROTOPCIEM_REGS_SIZE    (64 * KiB)
#define PROTOPCIEM_MEM_BAR      2
#define PROTOPCIEM_MEM_SIZE     (1 * MiB)

/*
 * Upstream's registers occupy 0x00-0x34 of BAR0, so this project's
 * additions live in an extension block of their own at 0x1000 where
 * upstream's map can never grow into them.
 */
#define PROTOPCIEM_EXT_BASE     0x1000

/*
 * REG_ID (read-only): vendor ID in bits 31:16, device ID in bits 15:0.
 * A driver reads it to tell that the extension block exists at all
 * (upstream's card reads 0 here).
 */
#define PROTOPCIEM_REG_ID       (PROTOPCIEM_EXT_BASE + 0x0)
#define PROTOPCIEM_ID_VALUE     ((PROTOPCIEM_VENDOR_ID << 16) | \
                                 PROTOPCIEM_DEVICE_ID)

/*
 * REG_VERSION (read-only): revision of the model's register interface,
 * major in bits 31:16, minor in bits 15:0.  0.1 is this first increment:
 * only REG_ID and REG_VERSION are implemented.
 */
#define PROTOPCIEM_REG_VERSION  (PROTOPCIEM_EXT_BASE + 0x4)
#define PROTOPCIEM_VERSION_MAJOR 0
#define PROTOPCIEM_VERSION_MINOR 1
#define PROTOPCIEM_VERSION_VALUE ((PROTOPCIEM_VERSION_MAJOR << 16) | \
                                  PROTOPCIEM_VERSION_MINOR)

struct ProtoPCIemState {
    PCIDevice parent_obj;

    MemoryRegion regs;
    MemoryRegion mem;
};

static uint64_t protopciem_regs_read(void *opaque, hwaddr addr, unsigned size)
{
    uint64_t val;

    switch (addr) {
    case PROTOPCIEM_REG_ID:
        val = PROTOPCIEM_ID_VALUE;
        break;
    case PROTOPCIEM_REG_VERSION:
        val = PROTOPCIEM_VERSION_VALUE;
        break;
    default:
        qemu_log_mask(LOG_UNIMP, "%s: unimplemented register read at 0x%"
                      HWADDR_PRIx "\n", TYPE_PROTOPCIEM, addr);
        val = 0;
        break;
    }

    trace_protopciem_regs_read(addr, size, val);
    return val;
}

static void protopciem_regs_write(void *opaque, hwaddr addr, uint64_t val,
                                  unsigned size)
{
    trace_protopciem_regs_write(addr, size, val);

    switch (addr) {
    case PROTOPCIEM_REG_ID:
    case PROTOPCIEM_REG_VERSION:
        qemu_log_mask(LOG_GUEST_ERROR, "%s: write of 0x%" PRIx64
                      " to read-only register 0x%" HWADDR_PRIx "\n",
                      TYPE_PROTOPCIEM, val, addr);
        break;
    default:
        qemu_log_mask(LOG_UNIMP, "%s: unimplemented register write of 0x%"
                      PRIx64 " at 0x%" HWADDR_PRIx "\n",
                      TYPE_PROTOPCIEM, val, addr);
        break;
    }
}

/*
 * Registers are 32 bits wide, as upstream's driver accesses them.  Aligned
 * 64-bit accesses are split into two 32-bit ones by the memory core;
 * narrower or misaligned accesses are refused by the memory core before
 * they reach the callbacks (visible with -d invalid_mem).
 */
static const MemoryRegionOps protopciem_regs_ops = {
    .read = protopciem_regs_read,
    .write = protopciem_regs_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 4,
        .max_access_size = 8,
    },
    .impl = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
};

static void protopciem_realize(PCIDevice *pdev, Error **errp)
{
    ProtoPCIemState *s = PROTOPCIEM(pdev);

    if (!memory_region_init_ram(&s->mem, OBJECT(s), "protopciem-mem",
                                PROTOPCIEM_MEM_SIZE, errp)) {
        return;
    }
    memory_region_init_io(&s->regs, OBJECT(s), &protopciem_regs_ops, s,
                          "protopciem-regs", PROTOPCIEM_REGS_SIZE);

    /* Both BARs are 64-bit and BAR2 prefetchable, as on upstream's card. */
    pci_register_bar(pdev, PROTOPCIEM_REGS_BAR,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64, &s->regs);
    pci_register_bar(pdev, PROTOPCIEM_MEM_BAR,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->mem);
}

static const VMStateDescription vmstate_protopciem = {
    .name = TYPE_PROTOPCIEM,
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, ProtoPCIemState),
        VMSTATE_END_OF_LIST()
    },
};

static void protopciem_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    /*
     * No exit hook yet: the BAR regions are children of the device and go
     * away with it; there are no threads, timers or backends to stop.
     */
    k->realize = protopciem_realize;
    k->vendor_id = PROTOPCIEM_VENDOR_ID;
    k->device_id = PROTOPCIEM_DEVICE_ID;
    k->revision = 0;
    k->class_id = PROTOPCIEM_CLASS_ID;
    dc->desc = "ProtoPCIem card";
    dc->vmsd = &vmstate_protopciem;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static const TypeInfo protopciem_info = {
    .name = TYPE_PROTOPCIEM,
    .parent = TYPE_PCI_DEVICE,
    .instance_size = sizeof(ProtoPCIemState),
    .class_init = protopciem_class_init,
    .interfaces = (InterfaceInfo[]) {
        { INTERFACE_CONVENTIONAL_PCI_DEVICE },
        { },
    },
};

static void protopciem_register_types(void)
{
    type_register_static(&protopciem_info);
}

type_init(protopciem_register_types)
