// SPDX-License-Identifier: GPL-2.0
/*
 * Checks that include/uapi/linux/pciem.h keeps the compatible ABI: every
 * struct size, field offset and ioctl number that PCIem userspace cards
 * depend on. The expected numbers were taken from the original ABI once
 * and must never change; a mismatch here breaks existing cards.
 * Prints one line per fact and "uapi: N passed, M failed".
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/pciem.h>

static int passed, failed;

static void check(const char *what, unsigned long got, unsigned long want)
{
	if (got == want) {
		passed++;
		return;
	}
	failed++;
	printf("not ok - %s is %lu (0x%lx), the ABI has %lu (0x%lx)\n", what, got, got, want, want);
}

#define SIZE(t, n)	check("sizeof(struct " #t ")", sizeof(struct t), n)
#define OFF(t, f, n)	check("offsetof(" #t ", " #f ")", offsetof(struct t, f), n)
#define IOC(c, n)	check(#c, (unsigned long)(c), n)

int main(void)
{
	SIZE(pciem_create_device, 8);
	OFF(pciem_create_device, func, 4);
	SIZE(pciem_bar_config, 24);
	OFF(pciem_bar_config, size, 8);
	OFF(pciem_bar_config, func, 16);
	SIZE(pciem_cap_config, 24);
	OFF(pciem_cap_config, func, 4);
	OFF(pciem_cap_config, msi, 8);
	OFF(pciem_cap_config, msix.table_offset, 12);
	OFF(pciem_cap_config, msix.pba_offset, 16);
	OFF(pciem_cap_config, msix.table_size, 20);
	SIZE(pciem_config_space, 24);
	OFF(pciem_config_space, vendor_id, 4);
	OFF(pciem_config_space, subsys_device_id, 10);
	OFF(pciem_config_space, revision, 12);
	OFF(pciem_config_space, class_code, 13);
	OFF(pciem_config_space, header_type, 16);
	SIZE(pciem_event, 48);
	OFF(pciem_event, type, 8);
	OFF(pciem_event, bar, 12);
	OFF(pciem_event, offset, 16);
	OFF(pciem_event, size, 24);
	OFF(pciem_event, data, 32);
	OFF(pciem_event, timestamp, 40);
	SIZE(pciem_response, 24);
	SIZE(pciem_irq_inject, 8);
	OFF(pciem_irq_inject, func, 4);
	SIZE(pciem_dma_op, 32);
	OFF(pciem_dma_op, length, 16);
	OFF(pciem_dma_op, pasid, 20);
	OFF(pciem_dma_op, flags, 24);
	OFF(pciem_dma_op, func, 28);
	SIZE(pciem_dma_atomic, 48);
	OFF(pciem_dma_atomic, op_type, 24);
	OFF(pciem_dma_atomic, pasid, 28);
	OFF(pciem_dma_atomic, result, 32);
	OFF(pciem_dma_atomic, func, 40);
	SIZE(pciem_p2p_op_user, 32);
	OFF(pciem_p2p_op_user, length, 16);
	OFF(pciem_p2p_op_user, flags, 20);
	OFF(pciem_p2p_op_user, func, 24);
	SIZE(pciem_bar_info_query, 32);
	OFF(pciem_bar_info_query, phys_addr, 8);
	OFF(pciem_bar_info_query, size, 16);
	OFF(pciem_bar_info_query, flags, 24);
	OFF(pciem_bar_info_query, func, 28);
	SIZE(pciem_eventfd_config, 8);
	SIZE(pciem_irqfd_config, 16);
	OFF(pciem_irqfd_config, vector, 4);
	OFF(pciem_irqfd_config, flags, 8);
	OFF(pciem_irqfd_config, func, 12);
	SIZE(pciem_dma_indirect, 48);
	OFF(pciem_dma_indirect, length, 24);
	OFF(pciem_dma_indirect, page_size, 28);
	OFF(pciem_dma_indirect, pasid, 32);
	OFF(pciem_dma_indirect, flags, 36);
	OFF(pciem_dma_indirect, func, 40);
	SIZE(pciem_trace_bar, 12);
	OFF(pciem_trace_bar, flags, 4);
	OFF(pciem_trace_bar, func, 8);
	SIZE(pciem_shared_ring, 12416);
	OFF(pciem_shared_ring, tail, 64);
	OFF(pciem_shared_ring, events, 128);
	IOC(PCIEM_IOCTL_CREATE_DEVICE, 0xc008af0a);
	IOC(PCIEM_IOCTL_ADD_BAR, 0x4018af0b);
	IOC(PCIEM_IOCTL_ADD_CAPABILITY, 0x4018af0c);
	IOC(PCIEM_IOCTL_SET_CONFIG, 0x4018af0d);
	IOC(PCIEM_IOCTL_REGISTER, 0xaf0e);
	IOC(PCIEM_IOCTL_INJECT_IRQ, 0x4008af0f);
	IOC(PCIEM_IOCTL_DMA, 0xc020af10);
	IOC(PCIEM_IOCTL_DMA_ATOMIC, 0xc030af11);
	IOC(PCIEM_IOCTL_P2P, 0xc020af12);
	IOC(PCIEM_IOCTL_GET_BAR_INFO, 0xc020af13);
	IOC(PCIEM_IOCTL_SET_EVENTFD, 0x4008af15);
	IOC(PCIEM_IOCTL_SET_IRQFD, 0x4010af16);
	IOC(PCIEM_IOCTL_DMA_INDIRECT, 0xc030af18);
	IOC(PCIEM_IOCTL_TRACE_BAR, 0xc00caf19);
	IOC(PCIEM_IOCTL_START, 0xaf1a);
	printf("uapi: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
