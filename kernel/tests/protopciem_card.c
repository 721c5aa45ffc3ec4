// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal ProtoPCIem card (docs/protopciem.md) on /dev/pciem, for the
 * protopciem.ko tests: 1f0c:0001, class 0b4000, BAR0 64 KiB (writes
 * traced), BAR2 1 MiB of card memory, one MSI vector (or none: INTx). It
 * answers ADD, MULTIPLY, XOR, PROCESS_BUFFER (DMA-reads the words, DMA-writes
 * them XOR DATA), EXECUTE_CMDBUF (DMA-reads the buffer, walks its entries),
 * DMA_FRAME (DMA-reads the frame) and P2P_READ / P2P_WRITE (pciem's P2P
 * between BAR2 and the peer address), sets STATUS and interrupts.
 *
 *   protopciem_card [-x] [-P] [-s SEED] [MODE [N]]
 *
 * -x: no MSI capability, so the driver falls back to INTx: the card asserts
 * INTA with DONE / ERROR and deasserts it when the host has cleared both.
 * -P: CAPS without P2P. -s: BAR2 starts as card_mem_byte(SEED, i).
 * MODE: normal; silent never completes a command; error fails every command
 * with ERR_DMA_FAULT; die-after N completes N commands and exits on the next
 * (a surprise removal with a command in flight); dead: BAR0 reads all-ones
 * from the start; dead-after N / dead-silent-after N complete N commands
 * and on the next one go dead (BAR0 all-ones, host writes dropped), with /
 * without a last interrupt. Signals: SIGUSR1 logs BAR2's checksum, SIGUSR2
 * goes dead now (no interrupt), SIGTERM/SIGINT exit.
 *
 * stdout, one line per event: "ready BDF", "cmd NAME ...", "cmdbuf len=L
 * entries=E fnv=H", "frame fnv=H" (FNV-1a 32 of the bytes DMA-read),
 * "process len=L key=K sum=S", "p2p read|write peer=A off=O len=L",
 * "mem N fnv=H" (the Nth SIGUSR1: BAR2's checksum), "dead".
 */
#include "selftest_lib.h"
#include "protopciem_card.h"
#include "../../proto/generated/protopciem_regs.h"

enum mode { M_NORMAL, M_SILENT, M_ERROR, M_DIE_AFTER, M_DEAD, M_DEAD_AFTER, M_DEAD_SILENT_AFTER };

static volatile sig_atomic_t stop, dump_asked, death_asked;
static struct card card;
static volatile uint32_t *regs;
static uint8_t *mem;		/* BAR2 */
static uint8_t *dmabuf;
static bool intx, dead;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump_asked = 1;
	else if (sig == SIGUSR2)
		death_asked = 1;
	else
		stop = 1;
}

static int make_card(bool no_p2p, unsigned int seed)
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
	size_t i;

	memset(c, 0, sizeof(*c));
	c->fd = c->inst = -1;
	c->fd = open("/dev/pciem", O_RDWR);
	CHECK(c->fd >= 0, "open /dev/pciem: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_SET_CONFIG, &cfg) == 0, "SET_CONFIG: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b0) == 0, "ADD_BAR 0: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b2) == 0, "ADD_BAR 2: %s", strerror(errno));
	if (!intx)
		CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_CAPABILITY, &msi) == 0, "MSI cap: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_TRACE_BAR, &t) == 0, "TRACE_BAR: %s", strerror(errno));
	c->inst = ioctl(c->fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(c->inst >= 0, "REGISTER: %s", strerror(errno));
	c->bar_size[0] = b0.size;
	c->bar_size[2] = b2.size;
	c->ring = mmap(NULL, sizeof(*c->ring), PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	CHECK(c->ring != MAP_FAILED, "mmap ring: %s", strerror(errno));
	c->bar[0] = mmap(NULL, c->bar_size[0], PROT_READ | PROT_WRITE, MAP_SHARED, c->inst, 0);
	CHECK(c->bar[0] != MAP_FAILED, "mmap BAR0: %s", strerror(errno));
	c->bar[2] = mmap(NULL, c->bar_size[2], PROT_READ | PROT_WRITE, MAP_SHARED, c->inst,
			 PROTOPCIEM_BAR_MEM * 4096);
	CHECK(c->bar[2] != MAP_FAILED, "mmap BAR2: %s", strerror(errno));
	mem = c->bar[2];
	for (i = 0; i < PROTOPCIEM_BAR_MEM_SIZE; i++)
		mem[i] = card_mem_byte(seed, i);
	regs = c->bar[0];
	regs[PROTOPCIEM_REG_ID / 4] = PROTOPCIEM_ID_VALUE;
	regs[PROTOPCIEM_REG_VERSION / 4] = PROTOPCIEM_VERSION_VALUE;
	regs[PROTOPCIEM_REG_CAPS / 4] = PROTOPCIEM_CAPS_FENCE | PROTOPCIEM_CAPS_ERROR_INFO |
					(no_p2p ? 0 : PROTOPCIEM_CAPS_P2P);
	regs[PROTOPCIEM_REG_QUEUE_DEPTH / 4] = 1;
	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = 1;
	regs[PROTOPCIEM_REG_FB_WIDTH / 4] = PROTOPCIEM_FB_WIDTH_VALUE;
	regs[PROTOPCIEM_REG_FB_HEIGHT / 4] = PROTOPCIEM_FB_HEIGHT_VALUE;
	regs[PROTOPCIEM_REG_FB_FORMAT / 4] = PROTOPCIEM_FB_FORMAT_VALUE;
	CHECK(ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO: %s", strerror(errno));
	return 0;
}

static int start_card(void)
{
	struct pciem_bar_info_query q = { .bar_index = 0 };
	struct card *c = &card;

	CHECK(ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_START) == 0, "START: %s", strerror(errno));
	CHECK(find_bdf_by_phys(q.phys_addr, c->bdf, sizeof(c->bdf)), "no PCI device with BAR0 at %llx",
	      (unsigned long long)q.phys_addr);
	return 0;
}

static void set_intx(uint8_t level)
{
	struct pciem_intx l = { .argsz = sizeof(l), .level = level };

	if (ioctl(card.fd, PCIEM_IOCTL_SET_INTX, &l))
		printf("SET_INTX %u failed: %s\n", level, strerror(errno));
}

/* An MSI message, or INTA asserted until the host clears DONE and ERROR. */
static void raise_irq(void)
{
	struct pciem_irq_inject irq = { .vector = 0 };

	if (intx)
		set_intx(1);
	else if (ioctl(card.fd, PCIEM_IOCTL_INJECT_IRQ, &irq))
		printf("inject failed: %s\n", strerror(errno));
}

/* BAR0 reads all-ones from now on and the host's writes are dropped, as on a dead link. */
static void go_dead(bool last_irq)
{
	struct pciem_trace_bar t = { .bar_index = 0,
				     .flags = PCIEM_TRACE_WRITES | PCIEM_TRACE_STOP_WRITES };

	if (ioctl(card.fd, PCIEM_IOCTL_TRACE_BAR, &t))
		printf("TRACE_BAR failed: %s\n", strerror(errno));
	memset((void *)regs, 0xff, PROTOPCIEM_BAR_REGS_SIZE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	dead = true;
	printf("dead\n");
	if (last_irq)
		raise_irq();
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

	for (i = 0; i < ARRAY_SIZE(zero); i++)
		regs[zero[i] / 4] = 0;
	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = 1;
	if (intx)
		set_intx(0);
}

/* Host memory <-> @buf: pciem's DMA (@flags PCIEM_DMA_FLAG_READ or _WRITE). */
static int dma(uint64_t iova, void *buf, uint32_t len, uint32_t flags)
{
	struct pciem_dma_op op = { .guest_iova = iova, .user_addr = (uintptr_t)buf, .length = len,
				   .flags = flags };

	return ioctl(card.fd, PCIEM_IOCTL_DMA, &op) ? -errno : 0;
}

static int dma_read(uint64_t iova, void *dst, uint32_t len)
{
	return dma(iova, dst, len, PCIEM_DMA_FLAG_READ);
}

/* RESULT, the ERROR_* registers, FENCE_DONE, then STATUS, then the interrupt. */
static void complete(uint32_t fence, uint32_t err, uint32_t info, uint64_t result)
{
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
	raise_irq();
}

/* PROCESS_BUFFER: 0 (*@sum set) or ERR_*. */
static uint32_t do_process(uint64_t src, uint64_t dst, uint32_t len, uint32_t key, uint64_t *sum)
{
	uint32_t i, w;

	if (len < 4 || len % 4 || len > PROTOPCIEM_PROCESS_MAX)
		return PROTOPCIEM_ERR_DMA_LENGTH;
	if (dma_read(src, dmabuf, len))
		return PROTOPCIEM_ERR_DMA_FAULT;
	*sum = 0;
	for (i = 0; i < len; i += 4) {
		memcpy(&w, dmabuf + i, 4);
		*sum += w;
		w ^= key;
		memcpy(dmabuf + i, &w, 4);
	}
	if (dma(dst, dmabuf, len, PCIEM_DMA_FLAG_WRITE))
		return PROTOPCIEM_ERR_DMA_FAULT;
	printf("process len=%u key=%#x sum=%#llx\n", len, key, (unsigned long long)*sum);
	return 0;
}

/* P2P_READ (peer @src -> BAR2 offset @dst) or P2P_WRITE (BAR2 offset @src -> peer @dst): 0 or ERR_*. */
static uint32_t do_p2p(uint32_t cmd, uint64_t src, uint64_t dst, uint32_t len)
{
	bool rd = cmd == PROTOPCIEM_CMD_P2P_READ;
	uint64_t off = rd ? dst : src, peer = rd ? src : dst;
	struct pciem_p2p_op_user op = { .target_phys_addr = peer, .length = len,
					.flags = rd ? PCIEM_DMA_FLAG_READ : PCIEM_DMA_FLAG_WRITE };

	if (!(regs[PROTOPCIEM_REG_CAPS / 4] & PROTOPCIEM_CAPS_P2P))
		return PROTOPCIEM_ERR_BAD_COMMAND;
	if (!len || len > PROTOPCIEM_P2P_MAX)
		return PROTOPCIEM_ERR_DMA_LENGTH;
	if (off > PROTOPCIEM_BAR_MEM_SIZE || len > PROTOPCIEM_BAR_MEM_SIZE - off || peer + len - 1 < peer)
		return PROTOPCIEM_ERR_DMA_ADDRESS;
	op.user_addr = (uintptr_t)(mem + off);
	if (ioctl(card.fd, PCIEM_IOCTL_P2P, &op)) {
		printf("p2p refused: %s\n", strerror(errno));
		return PROTOPCIEM_ERR_DMA_FAULT;
	}
	printf("p2p %s peer=%#llx off=%#llx len=%u\n", rd ? "read" : "write", (unsigned long long)peer,
	       (unsigned long long)off, len);
	return 0;
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

static void command(uint32_t cmd, enum mode mode)
{
	uint32_t fence = regs[PROTOPCIEM_REG_FENCE_NEXT / 4];
	uint32_t data = regs[PROTOPCIEM_REG_DATA / 4];
	uint32_t len = regs[PROTOPCIEM_REG_DMA_LEN / 4];
	uint64_t src = regs[PROTOPCIEM_REG_DMA_SRC_LO / 4] | (uint64_t)regs[PROTOPCIEM_REG_DMA_SRC_HI / 4] << 32;
	uint64_t dst = regs[PROTOPCIEM_REG_DMA_DST_LO / 4] | (uint64_t)regs[PROTOPCIEM_REG_DMA_DST_HI / 4] << 32;
	uint32_t bad = 0, err;
	uint64_t sum = 0;
	int n;

	regs[PROTOPCIEM_REG_FENCE_NEXT / 4] = fence + 1;
	regs[PROTOPCIEM_REG_QUEUE_LEVEL / 4] = 1;
	printf("cmd %u data=%u len=%u\n", cmd, data, len);
	if (mode == M_SILENT)
		return;
	if (mode == M_ERROR) {
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
	case PROTOPCIEM_CMD_PROCESS_BUFFER:
		err = do_process(src, dst, len, data, &sum);
		complete(fence, err, 0, err ? 0 : sum);
		break;
	case PROTOPCIEM_CMD_P2P_READ:
	case PROTOPCIEM_CMD_P2P_WRITE:
		err = do_p2p(cmd, src, dst, len);
		complete(fence, err, 0, err ? 0 : len);
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

static void bad_usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-x] [-P] [-s SEED] [normal | silent | error | die-after N | dead |\n"
		"       dead-after N | dead-silent-after N]\n", argv0);
	exit(2);
}

static void dump_mem(void)
{
	static long dumps;

	printf("mem %ld fnv=%08x\n", ++dumps, fnv1a(mem, PROTOPCIEM_BAR_MEM_SIZE));
}

int main(int argc, char **argv)
{
	static const char * const names[] = {
		[M_NORMAL] = "normal", [M_SILENT] = "silent", [M_ERROR] = "error",
		[M_DIE_AFTER] = "die-after", [M_DEAD] = "dead", [M_DEAD_AFTER] = "dead-after",
		[M_DEAD_SILENT_AFTER] = "dead-silent-after",
	};
	enum mode mode = M_NORMAL;
	bool no_p2p = false, found = false;
	unsigned int seed = 0;
	long after = -1, done = 0;
	struct pciem_event ev;
	size_t m;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "xPs:")) != -1) {
		if (opt == 'x')
			intx = true;
		else if (opt == 'P')
			no_p2p = true;
		else if (opt == 's')
			seed = strtoul(optarg, NULL, 0);
		else
			bad_usage(argv[0]);
	}
	if (optind < argc) {
		for (m = 0; m < ARRAY_SIZE(names) && !found; m++)
			if (!strcmp(argv[optind], names[m])) {
				mode = m;
				found = true;
			}
		if (!found)
			bad_usage(argv[0]);
		if (mode == M_DIE_AFTER || mode == M_DEAD_AFTER || mode == M_DEAD_SILENT_AFTER)
			after = optind + 1 < argc ? strtol(argv[optind + 1], NULL, 0) : 0;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGUSR1, on_signal);
	signal(SIGUSR2, on_signal);
	dmabuf = malloc(PROTOPCIEM_CMDBUF_MAX);
	if (!dmabuf || make_card(no_p2p, seed))
		return 1;
	if (mode == M_DEAD)
		go_dead(false);
	if (start_card())
		return 1;
	printf("ready %s\n", card.bdf);
	while (!stop) {
		uint32_t off;

		if (dump_asked) {
			dump_asked = 0;
			dump_mem();
		}
		if (death_asked && !dead)
			go_dead(false);
		if (!ring_pop(&card, &ev)) {
			usleep(100);
			continue;
		}
		if (dead || ev.type != PCIEM_EVENT_MMIO_WRITE || ev.bar != 0 ||
		    ev.offset >= PROTOPCIEM_BAR_REGS_SIZE)
			continue;
		off = (uint32_t)ev.offset;
		if (off == PROTOPCIEM_REG_CONTROL && (ev.data & PROTOPCIEM_CONTROL_RESET)) {
			reg_reset();
			regs[PROTOPCIEM_REG_CONTROL / 4] = ev.data & PROTOPCIEM_CONTROL_ENABLE;
		} else if (off == PROTOPCIEM_REG_STATUS && intx &&
			   !(regs[PROTOPCIEM_REG_STATUS / 4] &
			     (PROTOPCIEM_STATUS_DONE | PROTOPCIEM_STATUS_ERROR))) {
			/* Level-triggered: down once the host has cleared both. */
			set_intx(0);
		} else if (off == PROTOPCIEM_REG_ERROR_CODE) {
			regs[PROTOPCIEM_REG_ERROR_CODE / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_FENCE / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_INFO / 4] = 0;
			regs[PROTOPCIEM_REG_ERROR_COUNT / 4] = 0;
		} else if (off == PROTOPCIEM_REG_CMD && ev.data) {
			if (after >= 0 && done == after) {
				printf("command %u in flight\n", (unsigned int)ev.data);
				if (mode == M_DIE_AFTER)
					_exit(0);
				go_dead(mode == M_DEAD_AFTER);
				continue;
			}
			command((uint32_t)ev.data, mode);
			done++;
		}
	}
	printf("stopping\n");
	card_close(&card);
	return 0;
}
