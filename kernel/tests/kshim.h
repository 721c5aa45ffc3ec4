/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What kernel/pciem_config.h takes from the kernel, for its userspace build
 * (kernel/tests/config_test.c): the fixed-width types, the errno values,
 * memset/memcpy, and the PCI register definitions, which come from the
 * system's <linux/pci_regs.h> (linux-libc-dev) exactly as the kernel build
 * gets them from the kernel's uapi copy.
 */
#ifndef PCIEM_KSHIM_H
#define PCIEM_KSHIM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/pci_regs.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#endif /* PCIEM_KSHIM_H */
