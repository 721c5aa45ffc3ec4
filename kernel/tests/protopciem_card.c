// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal ProtoPCIem card (docs/protopciem.md) on /dev/pciem, for the
 * protopciem.ko tests: 1f0c:0001, class 0b4000, BAR0 64 KiB (writes
 * traced), BAR2 1 MiB, one MSI vector. It answers ADD, MULTIPLY, XOR,
 * EXECUTE_CMDBUF (DMA-reads the buffer, walks its entries) and DMA_FRAME
 * (DMA-reads the frame), sets STATUS and injects the interrupt.
 *
 *   protopciem_card [normal | silent | error | die-after N]
 *
 * silent never completes a command; error fails every command with
 * ERR_DMA_FAULT; die-after N completes N commands and exits on the next
 * (a surprise removal with a command in flight). SIGTERM/SIGINT: exit.
 *
 * stdout, one line per event: "ready BDF", "cmd NAME ...", "cmdbuf len=L
 * entries=E fnv=H", "frame fnv=H" (FNV-1a 32 of the bytes DMA-read).
 */
#include "selftest_lib.h"
#include "../../proto/generated/protopciem_regs.h"

static volatile sig_atomic_t stop;
static struct card card;
static volatile uint32_t *regs;
static uint8_t *dmabuf;

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int make_card(void)
{
	struct pciem_create_device cr = { .func = 0 };
	struct pciem_config_space cfg = {
		.vendor_id = PROTOPCIEM_PCI_VENDOR_ID, .device_id = PROTOPCIEM_PCI_DEVICE_ID,
		.subsys_vendor_id = PROTOPCIEM_PCI_VENDOR_ID, .subsys_device_id = PROTOPCIEM_PCI_DEVICE_ID,
		.revision = PROTOPCIEM_PCI_REVISION,
		.class_code = { PROTOPCIEM_PCI_PROG_IF, 0x40, PROTOPCIEM_PCI_CLASS },
	};
	struct pciem_bar_config b0 = {
		.bar_index = PROTOPCIEM_BAR_REGS, .size = PROTOPCIEM_BAR_REGS_SIZE,
		.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64,
	};
	struct pciem_bar_config b2 = {
		.bar_index = PROTOPCIEM_BAR_MEM, .size = PROTOPCIEM_BAR_MEM_SIZE,
		.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 |
			 PCI_BASE_ADDRESS_MEM_PREFETCH,
	};
	struct pciem_cap_config msi = { .cap_type = PCIEM_CAP_MSI,
		.msi = { .num_vectors_log2 = 0, .has_64bit = 1, .has_masking = 1 } };
	struct pciem_trace_bar t = { .bar_index = 0, .flags = PCIEM_TRACE_WRITES };
	struct pciem_bar_info_query q = { .bar_index = 0 };
	struct card *c = &card;

	memset(c, 0, sizeof(*c));
	c->fd = c->inst = -1;
	c->fd = open("/dev/pciem", O_RDWR);
	CHECK(c->fd >= 0, "open /dev/pciem: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_SET_CONFIG, &cfg) == 0, "SET_CONFIG: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b0) == 0, "ADD_BAR 0: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b2) == 0, "ADD_BAR 2: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_CAPABILITY, &msi) == 0, "MSI cap: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_TRACE_BAR, &t) == 0, "TRACE_BAR: %s", strerror(errno));
	c->inst = ioctl(c->fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(c->inst >= 0, "REGISTER: %s", strerror(errno));
	c->bar_size[0] = b0.size;
	c->ring = mmap(NULL, sizeof(*c->ring), PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	CHECK(c->ring != MAP_FAILED, "mmap ring: %s", strerror(errno));
	c->bar[0] = mmap(NULL, c->bar_size[0], PROT_READ | PROT_WRITE, MAP_SHARED, c->inst, 0);
	CHECK(c->bar[0] != MAP_FAILED, "mmap BAR0: %s", strerror(errno));
	regs = c->bar[0];
	regs[PROTOPCIEM_REG_ID / 4] = PROTOPCIEM_ID_VALUE;
	regs[PROTOPCIEM_REG_VERSION / 4] = PROTOPCIEM_VERSION_VALUE;
	regs[PROTOPCIEM_REG_CAPS / 4] = PROTOPCIEM_CAPS_FENCE | PROTOPCIEM_CAPS_ERROR_INFO;
	regs[PROTOPCIEM_REG_QUEUE_DEPTH / 4] = 1;
	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = 1;
	regs[PROTOPCIEM_REG_FB_WIDTH / 4] = PROTOPCIEM_FB_WIDTH_VALUE;
	regs[PROTOPCIEM_REG_FB_HEIGHT / 4] = PROTOPCIEM_FB_HEIGHT_VALUE;
	regs[PROTOPCIEM_REG_FB_FORMAT / 4] = PROTOPCIEM_FB_FORMAT_VALUE;
	CHECK(ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_START) == 0, "START: %s", strerror(errno));
	CHECK(find_bdf_by_phys(q.phys_addr, c->bdf, sizeof(c->bdf)), "no PCI device with BAR0 at %llx",
	      (unsigned long long)q.phys_addr);
	return 0;
}

static void reg_reset(void)
{
	static const uint32_t zero[] = {
		PROTOPCIEM_REG_STATUS, PROTOPCIEM_REG_CMD, PROTOPCIEM_REG_RESULT_LO,
		PROTOPCIEM_REG_RESULT_HI, PROTOPCIEM_REG_QUEUE_LEVEL, PROTOPCIEM_REG_FENCE_DONE,
		PROTOPCIEM_REG_ERROR_CODE, PROTOPCIEM_REG_ERROR_FENCE, PROTOPCIEM_REG_ERROR_INFO,
		PROTOPCIEM_REG_ERROR_COUNT,
	};
	size_t i;

	for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		regs[zero[i] / 4] = 0;
	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = 1;
}

static int dma_read(uint64_t iova, void *dst, uint32_t len)
{
	struct pciem_dma_op op = { .guest_iova = iova, .user_addr = (uintptr_t)dst, .length = len,
				   .flags = PCIEM_DMA_FLAG_READ };

	return ioctl(card.fd, PCIEM_IOCTL_DMA, &op) ? -errno : 0;
}

/* RESULT, the ERROR_* registers, FENCE_DONE, then STATUS, then the MSI. */
static void complete(uint32_t fence, uint32_t err, uint32_t info, uint64_t result)
{
	struct pciem_irq_inject irq = { .vector = 0 };

	regs[PROTOPCIEM_REG_RESULT_LO / 4] = (uint32_t)result;
	regs[PROTOPCIEM_REG_RESULT_HI / 4] = (uint32_t)(result >> 32);
	if (err) {
		if (!regs[PROTOPCIEM_REG_ERROR_CODE / 4]) {
			regs[PROTOPCIEM_REG_ERROR_CODE / 4] = err;
			regs[PROTOPCIEM_REG_ERROR_FENCE / 4] = fence;
			regs[PROTOPCIEM_REG_ERROR_INFO / 4] = info;
		}
		regs[PROTOPCIEM_REG_ERROR_COUNT / 4]++;
	}
	regs[PROTOPCIEM_REG_FENCE_DONE / 4] = fence;
	regs[PROTOPCIEM_REG_QUEUE_LEVEL / 4] = 0;
	regs[PROTOPCIEM_REG_CMD / 4] = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	regs[PROTOPCIEM_REG_STATUS / 4] = PROTOPCIEM_STATUS_DONE | (err ? PROTOPCIEM_STATUS_ERROR : 0);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (ioctl(card.fd, PCIEM_IOCTL_INJECT_IRQ, &irq))
		printf("inject failed: %s\n", strerror(errno));
}

/* Walks a command buffer: entries, or -ERR_* with *@bad the failing offset. */
static int walk_cmdbuf(const uint8_t *b, uint32_t len, uint32_t *bad)
{
	static const uint32_t need[] = {
		[PROTOPCIEM_OP_NOP] = PROTOPCIEM_CB_NOP_SIZE,
		[PROTOPCIEM_OP_CLEAR] = PROTOPCIEM_CB_CLEAR_SIZE,
		[PROTOPCIEM_OP_DRAW_LINE] = PROTOPCIEM_CB_DRAW_LINE_SIZE,
		[PROTOPCIEM_OP_BLIT_RECT] = PROTOPCIEM_CB_BLIT_RECT_SIZE,
	};
	uint32_t off = 0;
	int n = 0;

	while (off < len) {
		uint16_t op;
		uint32_t elen;

		*bad = off;
		if (len - off < PROTOPCIEM_CB_HDR_SIZE)
			return -(int)PROTOPCIEM_ERR_CMDBUF_TRUNCATED;
		memcpy(&op, b + off + PROTOPCIEM_CB_HDR_OPCODE, 2);
		memcpy(&elen, b + off + PROTOPCIEM_CB_HDR_LENGTH, 4);
		if (elen < PROTOPCIEM_CB_HDR_SIZE)
			return -(int)PROTOPCIEM_ERR_CMDBUF_LENGTH;
		if (elen > len - off)
			return -(int)PROTOPCIEM_ERR_CMDBUF_TRUNCATED;
		if (op > PROTOPCIEM_OP_BLIT_RECT)
			return -(int)PROTOPCIEM_ERR_CMDBUF_OPCODE;
		if (elen < need[op])
			return -(int)PROTOPCIEM_ERR_CMDBUF_LENGTH;
		off += elen;
		n++;
	}
	return n;
}

static void command(uint32_t cmd, const char *mode)
{
	uint32_t fence = regs[PROTOPCIEM_REG_FENCE_NEXT / 4];
	uint32_t data = regs[PROTOPCIEM_REG_DATA / 4];
	uint32_t len = regs[PROTOPCIEM_REG_DMA_LEN / 4];
	uint64_t src = regs[PROTOPCIEM_REG_DMA_SRC_LO / 4] | (uint64_t)regs[PROTOPCIEM_REG_DMA_SRC_HI / 4] << 32;
	uint32_t bad = 0;
	int n;

	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = fence + 1;
	regs[PROTOPCIEM_REG_QUEUE_LEVEL / 4] = 1;
	printf("cmd %u data=%u len=%u\n", cmd, data, len);
	if (!strcmp(mode, "silent"))
		return;
	if (!strcmp(mode, "error")) {
		complete(fence, PROTOPCIEM_ERR_DMA_FAULT, 0, 0);
		return;
	}
	if (regs[PROTOPCIEM_REG_DMA_FLAGS / 4] && cmd >= PROTOPCIEM_CMD_PROCESS_BUFFER) {
		complete(fence, PROTOPCIEM_ERR_DMA_FLAGS, 0, 0);
		return;
	}
	switch (cmd) {
	case PROTOPCIEM_CMD_ADD:
		complete(fence, 0, 0, (uint64_t)data + data);
		break;
	case PROTOPCIEM_CMD_MULTIPLY:
		complete(fence, 0, 0, (uint64_t)data * data);
		break;
	case PROTOPCIEM_CMD_XOR:
		complete(fence, 0, 0, data ^ 0xffffffffu);
		break;
	case PROTOPCIEM_CMD_EXECUTE_CMDBUF:
		if (!len || len > PROTOPCIEM_CMDBUF_MAX) {
			complete(fence, PROTOPCIEM_ERR_DMA_LENGTH, 0, 0);
			break;
		}
		if (dma_read(src, dmabuf, len)) {
			printf("cmdbuf dma failed: %s\n", strerror(errno));
			complete(fence, PROTOPCIEM_ERR_DMA_FAULT, 0, 0);
			break;
		}
		n = walk_cmdbuf(dmabuf, len, &bad);
		printf("cmdbuf len=%u entries=%d fnv=%08x\n", len, n, fnv1a(dmabuf, len));
		if (n < 0)
			complete(fence, -n, bad, 0);
		else
			complete(fence, 0, 0, n);
		break;
	case PROTOPCIEM_CMD_DMA_FRAME:
		if (len != PROTOPCIEM_FB_SIZE) {
			complete(fence, PROTOPCIEM_ERR_DMA_LENGTH, 0, 0);
			break;
		}
		if (dma_read(src, dmabuf, len)) {
			printf("frame dma failed: %s\n", strerror(errno));
			complete(fence, PROTOPCIEM_ERR_DMA_FAULT, 0, 0);
			break;
		}
		printf("frame fnv=%08x\n", fnv1a(dmabuf, len));
		complete(fence, 0, 0, 0);
		break;
	default:
		complete(fence, PROTOPCIEM_ERR_BAD_COMMAND, cmd, 0);
		break;
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "normal";
	long die_after = -1, done = 0;
	struct pciem_event ev;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "die-after"))
		die_after = argc > 2 ? strtol(argv[2], NULL, 0) : 0;
	else if (strcmp(mode, "normal") && strcmp(mode, "silent") && strcmp(mode, "error")) {
		fprintf(stderr, "usage: %s [normal | silent | error | die-after N]\n", argv[0]);
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	dmabuf = malloc(PROTOPCIEM_CMDBUF_MAX);
	if (!dmabuf || make_card())
		return 1;
	printf("ready %s\n", card.bdf);
	while (!stop) {
		uint32_t off;

		if (!ring_pop(&card, &ev)) {
			usleep(100);
			continue;
		}
		if (ev.type != PCIEM_EVENT_MMIO_WRITE || ev.bar != 0 || ev.offset >= PROTOPCIEM_BAR_REGS_SIZE)
			continue;
		off = (uint32_t)ev.offset;
		if (off == PROTOPCIEM_REG_CONTROL && (ev.data & PROTOPCIEM_CONTROL_RESET)) {
			reg_reset();
			regs[PROTOPCIEM_REG_CONTROL / 4] = ev.data & PROTOPCIEM_CONTROL_ENABLE;
		} else if (off == PROTOPCIEM_REG_ERROR_CODE) {
			regs[PROTOPCIEM_REG_ERROR_CODE / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_FENCE / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_INFO / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_COUNT / 4] = 0;
		} else if (off == PROTOPCIEM_REG_CMD && ev.data) {
			if (die_after >= 0 && done == die_after) {
				printf("dying with command %u in flight\n", (unsigned int)ev.data);
				_exit(0);
			}
			command((uint32_t)ev.data, mode);
			done++;
		}
	}
	printf("stopping\n");
	card_close(&card);
	return 0;
}
