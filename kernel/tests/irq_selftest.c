// SPDX-License-Identifier: GPL-2.0
/*
 * pciem interrupt selftests (kselftest shape), written against the uAPI
 * only. The card is this program; the driver is pciem_irqdrv.ko (1f0c:fff1,
 * tests/irq_testdrv.c), which takes INTx, MSI or MSI-X vectors the
 * ordinary way and counts its handler runs in debugfs.
 *
 *   irq_selftest [NAME...]    run the named tests (default: all but none)
 *   irq_selftest --list
 * Environment: PCIEM_IRQ_BURST (injections per burst test, 10000),
 * PCIEM_FUZZ_CALLS (100000), PCIEM_STORM_SECONDS (ioremap_storm, 5).
 */
#include "selftest_lib.h"

#define IRQ_DEVICE	0xfff1
#define IRQ_BAR0_SIZE	0x10000
#define IRQ_MSIX_TABLE	0x8000
#define IRQ_MSIX_PBA	0x9000
#define IRQ_MSIX_VECS	8
#define IRQ_MSI_LOG2	2		/* 4 vectors */
#define IRQ_REG_CAUSE	0x00		/* pciem_irqdrv's INTx cause register */
#define IRQ_MAX_VECS	64
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

static unsigned long burst = 10000;
static unsigned long fuzz_calls = 100000;

/* ---- the card ---- */

struct irq_card {
	struct card c;
	int nfuncs;
	uint32_t *bar0[PCIEM_MAX_FUNCTIONS];	/* each function's BAR0, shared with the host */
	char bdf[PCIEM_MAX_FUNCTIONS][32];
};

struct irq_card_desc {
	int nfuncs;
	bool msi;
	bool msix;
	bool msi_plain;		/* MSI: 32-bit address, no per-vector masking */
};

static void irq_card_close(struct irq_card *ic)
{
	int f;

	for (f = 1; f < ic->nfuncs; f++)
		if (ic->bar0[f])
			munmap(ic->bar0[f], IRQ_BAR0_SIZE);
	card_close(&ic->c);
	memset(ic, 0, sizeof(*ic));
	ic->c.fd = ic->c.inst = -1;
}

/*
 * A card pciem_irqdrv binds to: per function a 64 KiB BAR0 and, as asked,
 * MSI (4 vectors, 64-bit, per-vector masking) and MSI-X (8 vectors, table
 * and PBA in BAR0). card_make() registers at once, so describe it by hand.
 */
static int irq_card_setup(struct irq_card *ic, const struct irq_card_desc *d, bool bind)
{
	struct pciem_bar_info_query q = { .bar_index = 0 };
	struct card *c = &ic->c;
	char path[256];
	int f;

	memset(ic, 0, sizeof(*ic));
	c->fd = c->inst = -1;
	ic->nfuncs = d->nfuncs ?: 1;
	c->fd = open("/dev/pciem", O_RDWR);
	CHECK(c->fd >= 0, "open /dev/pciem: %s", strerror(errno));
	for (f = 0; f < ic->nfuncs; f++) {
		struct pciem_create_device cr = { .func = f };
		struct pciem_config_space cfg = {
			.func = f, .vendor_id = 0x1f0c, .device_id = testdrv_device,
			.subsys_vendor_id = 0x1f0c, .subsys_device_id = 0x1234,
			.class_code = { 0, 0x80, 0xff },
		};
		struct pciem_bar_config b0 = {
			.bar_index = 0, .func = f, .size = IRQ_BAR0_SIZE,
			.flags = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64,
		};
		struct pciem_cap_config msi = { .cap_type = PCIEM_CAP_MSI, .func = f,
			.msi = { .num_vectors_log2 = IRQ_MSI_LOG2, .has_64bit = !d->msi_plain,
				 .has_masking = !d->msi_plain } };
		struct pciem_cap_config msix = { .cap_type = PCIEM_CAP_MSIX, .func = f,
			.msix = { .bar_index = 0, .table_offset = IRQ_MSIX_TABLE,
				  .pba_offset = IRQ_MSIX_PBA, .table_size = IRQ_MSIX_VECS } };

		CHECK(ioctl(c->fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE %d: %s", f, strerror(errno));
		CHECK(ioctl(c->fd, PCIEM_IOCTL_SET_CONFIG, &cfg) == 0, "SET_CONFIG: %s", strerror(errno));
		CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_BAR, &b0) == 0, "ADD_BAR: %s", strerror(errno));
		if (d->msi)
			CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_CAPABILITY, &msi) == 0, "MSI cap: %s", strerror(errno));
		if (d->msix)
			CHECK(ioctl(c->fd, PCIEM_IOCTL_ADD_CAPABILITY, &msix) == 0, "MSI-X cap: %s", strerror(errno));
	}
	c->bar_size[0] = IRQ_BAR0_SIZE;
	c->inst = ioctl(c->fd, PCIEM_IOCTL_REGISTER, 0);
	CHECK(c->inst >= 0, "REGISTER: %s", strerror(errno));
	c->ring = mmap(NULL, sizeof(*c->ring), PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	CHECK(c->ring != MAP_FAILED, "mmap ring: %s", strerror(errno));
	for (f = 0; f < ic->nfuncs; f++) {
		void *p = mmap(NULL, IRQ_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c->inst,
			       (off_t)f * 8 * 4096);

		CHECK(p != MAP_FAILED, "mmap BAR0 of function %d: %s", f, strerror(errno));
		ic->bar0[f] = p;
	}
	c->bar[0] = ic->bar0[0];
	CHECK(ioctl(c->fd, PCIEM_IOCTL_START) == 0, "START: %s", strerror(errno));
	CHECK(ioctl(c->fd, PCIEM_IOCTL_GET_BAR_INFO, &q) == 0, "GET_BAR_INFO: %s", strerror(errno));
	CHECK(find_bdf_by_phys(q.phys_addr, c->bdf, sizeof(c->bdf)), "no PCI device with BAR0 at %llx",
	      (unsigned long long)q.phys_addr);
	for (f = 0; f < ic->nfuncs; f++) {
		/* DDDDD:BB:SS.F: the functions differ in the last digit. */
		snprintf(ic->bdf[f], sizeof(ic->bdf[f]), "%s", c->bdf);
		ic->bdf[f][strlen(ic->bdf[f]) - 1] = '0' + f;
		if (!bind)
			continue;
		snprintf(path, sizeof(path), "%s/%s", testdrv_root, ic->bdf[f]);
		CHECK(wait_path(path, true, 5) == 0, "pciem_irqdrv did not bind to %s", ic->bdf[f]);
	}
	return 0;
}

static int irq_card_make(struct irq_card *ic, const struct irq_card_desc *d)
{
	return irq_card_setup(ic, d, true);
}

/* The same card, for a driver other than pciem_irqdrv. */
static int irq_card_make_nodrv(struct irq_card *ic, const struct irq_card_desc *d)
{
	return irq_card_setup(ic, d, false);
}

static int irq_card_default(struct irq_card *ic)
{
	struct irq_card_desc d = { .nfuncs = 1, .msi = true, .msix = true };

	return irq_card_make(ic, &d);
}

/* The card sets pciem_irqdrv's INTx cause register. */
static void set_cause(struct irq_card *ic, int func, uint32_t cause)
{
	__atomic_store_n(&ic->bar0[func][IRQ_REG_CAUSE / 4], cause, __ATOMIC_RELEASE);
}

static int inject(struct irq_card *ic, int func, uint32_t vector)
{
	struct pciem_irq_inject a = { .vector = vector, .func = func };

	return ioctl(ic->c.fd, PCIEM_IOCTL_INJECT_IRQ, &a) ? -errno : 0;
}

static int set_intx(struct irq_card *ic, int func, int level)
{
	struct pciem_intx a = { .argsz = sizeof(a), .func = func, .level = level };

	return ioctl(ic->c.fd, PCIEM_IOCTL_SET_INTX, &a) ? -errno : 0;
}

static int irq_status(struct irq_card *ic, int func, struct pciem_irq_status *st)
{
	memset(st, 0, sizeof(*st));
	st->argsz = sizeof(*st);
	st->func = func;
	return ioctl(ic->c.fd, PCIEM_IOCTL_GET_IRQ_STATUS, st) ? -errno : 0;
}

static int irqfd(struct irq_card *ic, int efd, int func, uint32_t vector, uint32_t flags)
{
	struct pciem_irqfd_config a = { .eventfd = efd, .vector = vector, .flags = flags, .func = func };

	return ioctl(ic->c.fd, PCIEM_IOCTL_SET_IRQFD, &a) ? -errno : 0;
}

static int signal_fd(int efd)
{
	uint64_t one = 1;

	return write(efd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

/* ---- the driver ---- */

static int drv(const char *bdf, const char *file, const char *fmt, ...)
{
	char path[256], buf[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s/%s", testdrv_root, bdf, file);
	return sysfs_write(path, "%s", buf);
}

/* Per-vector handler runs; returns how many vectors, or -1. */
static int drv_counts(const char *bdf, uint64_t *cnt, int max)
{
	char path[256], buf[IRQ_MAX_VECS * 24], *p, *end;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s/counts", testdrv_root, bdf);
	if (sysfs_read(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; n < max; p = end) {
		unsigned long long v = strtoull(p, &end, 10);

		if (end == p)
			break;
		cnt[n++] = v;
	}
	return n;
}

static uint64_t drv_count(const char *bdf, int vec)
{
	uint64_t cnt[IRQ_MAX_VECS], sum = 0;
	int i, n = drv_counts(bdf, cnt, IRQ_MAX_VECS);

	if (vec >= 0)
		return vec < n ? cnt[vec] : 0;
	for (i = 0; i < n; i++)
		sum += cnt[i];
	return sum;
}

static uint64_t drv_none(const char *bdf)
{
	char path[256], buf[32];

	snprintf(path, sizeof(path), "%s/%s/none", testdrv_root, bdf);
	return sysfs_read(path, buf, sizeof(buf)) > 0 ? strtoull(buf, NULL, 10) : 0;
}

/* Waits until vector @vec (-1: all) has counted @want; returns the count then. */
static uint64_t wait_count(const char *bdf, int vec, uint64_t want, double timeout)
{
	double end = now_s() + timeout;
	uint64_t n;

	while ((n = drv_count(bdf, vec)) < want && now_s() < end)
		usleep(1000);
	return n;
}

/* The count of @vec after it stayed unchanged for @quiet seconds. */
static uint64_t settle_count(const char *bdf, int vec, double quiet)
{
	uint64_t n = drv_count(bdf, vec), m;

	for (;;) {
		usleep(quiet * 1e6);
		m = drv_count(bdf, vec);
		if (m == n)
			return n;
		n = m;
	}
}

static int find_cap(const char *bdf, int id)
{
	int pos = cfg_get(bdf, PCI_CAPABILITY_LIST, 1), guard = 48;

	while (pos && guard--) {
		if ((int)cfg_get(bdf, pos, 1) == id)
			return pos;
		pos = cfg_get(bdf, pos + 1, 1);
	}
	return 0;
}

/* ---- bursts: N injections, N handler runs ---- */

static int burst_test(const char *mode, int nvec, uint8_t want_mode)
{
	struct irq_card ic;
	struct pciem_irq_status st;
	uint64_t cnt[IRQ_MAX_VECS], total;
	unsigned long i;
	double t0, t1;
	int v;

	if (irq_card_default(&ic))
		return -1;
	if (want_mode == PCIEM_IRQ_MODE_INTX) {
		/* A cause that stays: every pulse is the driver's. */
		set_cause(&ic, 0, 1);
		CHECK(drv(ic.bdf[0], "ack", "0") == 0, "ack 0");
	}
	CHECK(drv(ic.bdf[0], "mode", "%s %d", mode, nvec) == 0, "driver mode %s %d: %s", mode, nvec,
	      strerror(errno));
	CHECK(irq_status(&ic, 0, &st) == 0 && st.mode == want_mode && (int)st.vectors == nvec,
	      "status: mode %u vectors %u", st.mode, st.vectors);
	t0 = now_s();
	for (i = 0; i < burst; i++) {
		int r = inject(&ic, 0, i % nvec);

		CHECK(r == 0, "injection %lu: %s", i, strerror(-r));
	}
	t1 = now_s();
	total = wait_count(ic.bdf[0], -1, burst, 120);
	diag("%lu %s injections: issued in %.2f s, all handled %.2f s after the first", burst, mode,
	     t1 - t0, now_s() - t0);
	total = settle_count(ic.bdf[0], -1, 0.3);
	CHECK(total == burst, "the driver counted %llu handler runs for %lu injections",
	      (unsigned long long)total, burst);
	CHECK(drv_counts(ic.bdf[0], cnt, IRQ_MAX_VECS) == nvec, "counts");
	for (v = 0; v < nvec; v++)
		CHECK(cnt[v] == burst / nvec + ((unsigned long)v < burst % nvec),
		      "vector %d: %llu runs", v, (unsigned long long)cnt[v]);
	CHECK(irq_status(&ic, 0, &st) == 0 && st.injected == burst && st.delivered == burst &&
	      !st.pended && !st.dropped, "status: injected %llu delivered %llu pended %llu dropped %llu",
	      (unsigned long long)st.injected, (unsigned long long)st.delivered,
	      (unsigned long long)st.pended, (unsigned long long)st.dropped);
	if (want_mode == PCIEM_IRQ_MODE_INTX)
		CHECK(drv_none(ic.bdf[0]) == 0 && !st.intx_line, "INTx: %llu runs without cause, line %u",
		      (unsigned long long)drv_none(ic.bdf[0]), st.intx_line);
	irq_card_close(&ic);
	return 0;
}

static int t_msi_burst(void)
{
	return burst_test("msi", 1 << IRQ_MSI_LOG2, PCIEM_IRQ_MODE_MSI);
}

static int t_msix_burst(void)
{
	return burst_test("msix", IRQ_MSIX_VECS, PCIEM_IRQ_MODE_MSIX);
}

static int t_intx_burst(void)
{
	return burst_test("intx", 1, PCIEM_IRQ_MODE_INTX);
}

/* Two threads and an irqfd on one vector at once: no run is merged into another. */
struct inject_thread {
	struct irq_card *ic;
	unsigned long n;
	int efd;
	int err;
};

static void *inject_thread(void *arg)
{
	struct inject_thread *t = arg;
	unsigned long i;

	for (i = 0; i < t->n && !t->err; i++)
		t->err = t->efd >= 0 ? signal_fd(t->efd) : inject(t->ic, 0, 0);
	return NULL;
}

static int t_concurrent(void)
{
	struct inject_thread th[3];
	pthread_t tid[3];
	struct irq_card ic;
	uint64_t total;
	double t0;
	int i, efd;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8: %s", strerror(errno));
	efd = eventfd(0, EFD_CLOEXEC);
	CHECK(efd >= 0 && irqfd(&ic, efd, 0, 0, 0) == 0, "irqfd: %s", strerror(errno));
	t0 = now_s();
	for (i = 0; i < 3; i++) {
		th[i] = (struct inject_thread){ .ic = &ic, .n = burst / 2, .efd = i == 2 ? efd : -1 };
		CHECK(pthread_create(&tid[i], NULL, inject_thread, &th[i]) == 0, "pthread_create");
	}
	for (i = 0; i < 3; i++) {
		pthread_join(tid[i], NULL);
		CHECK(!th[i].err, "thread %d: %s", i, strerror(-th[i].err));
	}
	wait_count(ic.bdf[0], 0, 3 * (burst / 2), 120);
	total = settle_count(ic.bdf[0], 0, 0.3);
	diag("3 x %lu injections on vector 0 from two threads and an irqfd: %.2f s", burst / 2, now_s() - t0);
	CHECK(total == 3 * (burst / 2), "vector 0 ran %llu times for %lu injections",
	      (unsigned long long)total, 3 * (burst / 2));
	close(efd);
	irq_card_close(&ic);
	return 0;
}

/* ---- masking and pending bits ---- */

static int t_msi_mask(void)
{
	struct pciem_irq_status st;
	struct irq_card ic;
	int cap, i;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msi 4") == 0, "mode msi 4: %s", strerror(errno));
	cap = find_cap(ic.bdf[0], PCI_CAP_ID_MSI);
	CHECK(cap, "no MSI capability");
	CHECK(!(cfg_get(ic.bdf[0], cap + PCI_MSI_MASK_64, 4) & 2), "vector 1 masked before the test");
	CHECK(drv(ic.bdf[0], "mask", "1") == 0, "mask 1");
	CHECK(cfg_get(ic.bdf[0], cap + PCI_MSI_MASK_64, 4) & 2, "the driver's mask did not reach the mask register");
	for (i = 0; i < 3; i++)
		CHECK(inject(&ic, 0, 1) == 0, "inject");
	CHECK(inject(&ic, 0, 0) == 0, "inject vector 0");
	CHECK(wait_count(ic.bdf[0], 0, 1, 5) == 1, "vector 0 (unmasked) was not delivered");
	CHECK(settle_count(ic.bdf[0], 1, 0.2) == 0, "masked vector 1 ran");
	CHECK(cfg_get(ic.bdf[0], cap + PCI_MSI_PENDING_64, 4) == 2, "pending register %#x, want bit 1",
	      cfg_get(ic.bdf[0], cap + PCI_MSI_PENDING_64, 4));
	CHECK(irq_status(&ic, 0, &st) == 0 && st.pended == 3, "pended %llu", (unsigned long long)st.pended);
	CHECK(drv(ic.bdf[0], "unmask", "1") == 0, "unmask 1");
	CHECK(wait_count(ic.bdf[0], 1, 1, 5) >= 1, "unmasking did not deliver the pending interrupt");
	CHECK(settle_count(ic.bdf[0], 1, 0.3) == 1, "vector 1 ran %llu times, want exactly once",
	      (unsigned long long)drv_count(ic.bdf[0], 1));
	CHECK(cfg_get(ic.bdf[0], cap + PCI_MSI_PENDING_64, 4) == 0, "pending bit not cleared");
	irq_card_close(&ic);
	return 0;
}

/* BAR memory changes under us (the host writes it): read it once, now. */
static uint32_t msix_ctrl(struct irq_card *ic, int v)
{
	return __atomic_load_n(&ic->bar0[0][(IRQ_MSIX_TABLE + v * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL) / 4],
			       __ATOMIC_ACQUIRE);
}

static uint64_t msix_pba(struct irq_card *ic)
{
	return __atomic_load_n((uint64_t *)&ic->bar0[0][IRQ_MSIX_PBA / 4], __ATOMIC_ACQUIRE);
}


static int t_msix_mask(void)
{
	struct irq_card ic;
	int i;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8: %s", strerror(errno));
	CHECK(!(msix_ctrl(&ic, 3) & PCI_MSIX_ENTRY_CTRL_MASKBIT), "entry 3 masked before the test");
	CHECK(drv(ic.bdf[0], "mask", "3") == 0, "mask 3");
	CHECK(msix_ctrl(&ic, 3) & PCI_MSIX_ENTRY_CTRL_MASKBIT, "the driver's mask did not reach the table");
	for (i = 0; i < 3; i++)
		CHECK(inject(&ic, 0, 3) == 0, "inject");
	CHECK(settle_count(ic.bdf[0], 3, 0.2) == 0, "masked vector 3 ran");
	CHECK(msix_pba(&ic) == 1 << 3, "PBA %#llx, want bit 3", (unsigned long long)msix_pba(&ic));
	CHECK(drv(ic.bdf[0], "unmask", "3") == 0, "unmask 3");
	CHECK(wait_count(ic.bdf[0], 3, 1, 5) >= 1, "unmasking did not deliver the pending interrupt");
	CHECK(settle_count(ic.bdf[0], 3, 0.3) == 1, "vector 3 ran %llu times, want exactly once",
	      (unsigned long long)drv_count(ic.bdf[0], 3));
	CHECK(msix_pba(&ic) == 0, "PBA %#llx after unmask", (unsigned long long)msix_pba(&ic));
	irq_card_close(&ic);
	return 0;
}

/* The MSI-X Function Mask holds every vector; clearing it sends each pending one once. */
static int t_msix_function_mask(void)
{
	struct irq_card ic;
	int cap;
	uint16_t ctrl;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8: %s", strerror(errno));
	cap = find_cap(ic.bdf[0], PCI_CAP_ID_MSIX);
	CHECK(cap, "no MSI-X capability");
	ctrl = cfg_get(ic.bdf[0], cap + PCI_MSIX_FLAGS, 2);
	cfg_put(ic.bdf[0], cap + PCI_MSIX_FLAGS, 2, ctrl | PCI_MSIX_FLAGS_MASKALL);
	CHECK(inject(&ic, 0, 0) == 0 && inject(&ic, 0, 5) == 0 && inject(&ic, 0, 5) == 0, "inject");
	CHECK(settle_count(ic.bdf[0], -1, 0.2) == 0, "an interrupt ran under the function mask");
	CHECK(msix_pba(&ic) == (1 << 0 | 1 << 5), "PBA %#llx, want bits 0 and 5", (unsigned long long)msix_pba(&ic));
	cfg_put(ic.bdf[0], cap + PCI_MSIX_FLAGS, 2, ctrl);
	wait_count(ic.bdf[0], -1, 2, 5);
	CHECK(settle_count(ic.bdf[0], -1, 0.3) == 2 && drv_count(ic.bdf[0], 0) == 1 && drv_count(ic.bdf[0], 5) == 1,
	      "after the function mask: vector 0 ran %llu, vector 5 %llu times",
	      (unsigned long long)drv_count(ic.bdf[0], 0), (unsigned long long)drv_count(ic.bdf[0], 5));
	CHECK(msix_pba(&ic) == 0, "PBA %#llx", (unsigned long long)msix_pba(&ic));
	irq_card_close(&ic);
	return 0;
}

/*
 * disable_irq() as drivers get it by default is lazy: the first interrupt
 * masks the vector and the irq core keeps it; the next sets the pending
 * bit. enable_irq() then runs the handler once for each.
 */
static int t_lazy_disable(void)
{
	struct irq_card ic;
	int cap;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msi 4") == 0, "mode msi 4: %s", strerror(errno));
	cap = find_cap(ic.bdf[0], PCI_CAP_ID_MSI);
	CHECK(drv(ic.bdf[0], "mask_lazy", "2") == 0, "mask_lazy 2");
	CHECK(!(cfg_get(ic.bdf[0], cap + PCI_MSI_MASK_64, 4) & 4), "a lazy disable masked the device");
	CHECK(inject(&ic, 0, 2) == 0, "inject");
	CHECK(settle_count(ic.bdf[0], 2, 0.2) == 0, "disabled vector 2 ran");
	CHECK(cfg_get(ic.bdf[0], cap + PCI_MSI_MASK_64, 4) & 4, "the irq core did not mask vector 2");
	CHECK(inject(&ic, 0, 2) == 0, "inject");
	CHECK(cfg_get(ic.bdf[0], cap + PCI_MSI_PENDING_64, 4) == 4, "pending register %#x",
	      cfg_get(ic.bdf[0], cap + PCI_MSI_PENDING_64, 4));
	CHECK(drv(ic.bdf[0], "unmask", "2") == 0, "unmask 2");
	wait_count(ic.bdf[0], 2, 2, 5);
	CHECK(settle_count(ic.bdf[0], 2, 0.3) == 2, "vector 2 ran %llu times after enable_irq, want 2",
	      (unsigned long long)drv_count(ic.bdf[0], 2));
	irq_card_close(&ic);
	return 0;
}

/* The other MSI layout: 32-bit address, no per-vector masking. */
static int t_msi_plain(void)
{
	struct irq_card_desc d = { .nfuncs = 1, .msi = true, .msi_plain = true };
	struct irq_card ic;
	unsigned long i;
	int cap;

	if (irq_card_make(&ic, &d))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msi 4") == 0, "mode msi 4: %s", strerror(errno));
	cap = find_cap(ic.bdf[0], PCI_CAP_ID_MSI);
	CHECK(cap && !(cfg_get(ic.bdf[0], cap + PCI_MSI_FLAGS, 2) & (PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT)),
	      "MSI flags %#x", cfg_get(ic.bdf[0], cap + PCI_MSI_FLAGS, 2));
	for (i = 0; i < 1000; i++)
		CHECK(inject(&ic, 0, i % 4) == 0, "inject");
	wait_count(ic.bdf[0], -1, 1000, 30);
	CHECK(settle_count(ic.bdf[0], -1, 0.3) == 1000 && drv_count(ic.bdf[0], 3) == 250,
	      "%llu runs for 1000 injections (vector 3: %llu)", (unsigned long long)drv_count(ic.bdf[0], -1),
	      (unsigned long long)drv_count(ic.bdf[0], 3));
	irq_card_close(&ic);
	return 0;
}

/*
 * A function level reset clears MSI-X in config space; the PCI core
 * restores it (and the table) afterwards: interrupts work again.
 */
static int t_flr(void)
{
	struct irq_card ic;
	char path[256];

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8: %s", strerror(errno));
	CHECK(inject(&ic, 0, 6) == 0 && wait_count(ic.bdf[0], 6, 1, 5) == 1, "before the reset");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset_method", ic.bdf[0]);
	CHECK(sysfs_write(path, "flr") == 0, "reset_method flr");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset", ic.bdf[0]);
	CHECK(sysfs_write(path, "1") == 0, "reset: %s", strerror(errno));
	CHECK(inject(&ic, 0, 6) == 0, "inject after the reset: %s", strerror(errno));
	CHECK(wait_count(ic.bdf[0], 6, 2, 5) == 2 && settle_count(ic.bdf[0], -1, 0.2) == 2,
	      "after the reset: %llu runs", (unsigned long long)drv_count(ic.bdf[0], -1));
	irq_card_close(&ic);
	return 0;
}

/* ---- INTx as a level ---- */

/* Waits for the driver's write of @val to BAR0 + @off on the ring. */
static int wait_bar_write(struct irq_card *ic, uint64_t off, uint64_t val, double timeout)
{
	double end = now_s() + timeout;
	struct pciem_event ev;

	while (now_s() < end) {
		if (!ring_pop(&ic->c, &ev)) {
			usleep(200);
			continue;
		}
		if (ev.type == PCIEM_EVENT_MMIO_WRITE && ev.bar == 0 && ev.offset == off && ev.data == val)
			return 0;
	}
	return -1;
}

static int trace_writes(struct irq_card *ic)
{
	struct pciem_trace_bar t = { .bar_index = 0, .flags = PCIEM_TRACE_WRITES };

	return ioctl(ic->c.fd, PCIEM_IOCTL_TRACE_BAR, &t);
}

static int t_intx_level(void)
{
	struct pciem_irq_status st;
	struct irq_card ic;
	uint64_t n, after;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "intx") == 0, "mode intx: %s", strerror(errno));
	CHECK(drv(ic.bdf[0], "ack", "0") == 0, "ack 0");
	CHECK(trace_writes(&ic) == 0, "TRACE_BAR");
	set_cause(&ic, 0, 1);
	CHECK(set_intx(&ic, 0, 1) == 0, "assert: %s", strerror(errno));
	/* Nobody clears the cause: the handler sees it again and again. */
	n = wait_count(ic.bdf[0], 0, 8, 10);
	CHECK(n >= 8, "the handler ran %llu times for a level nobody cleared", (unsigned long long)n);
	CHECK(cfg_get(ic.bdf[0], PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, "Interrupt Status not set");
	CHECK(irq_status(&ic, 0, &st) == 0 && st.intx_line && st.intx_refires, "status: line %u refires %llu",
	      st.intx_line, (unsigned long long)st.intx_refires);
	/* Now the handler clears the cause; the card sees it and deasserts. */
	CHECK(drv(ic.bdf[0], "ack", "1") == 0, "ack 1");
	CHECK(wait_bar_write(&ic, IRQ_REG_CAUSE, 0, 10) == 0, "the driver never cleared the cause");
	CHECK(set_intx(&ic, 0, 0) == 0, "deassert: %s", strerror(errno));
	n = settle_count(ic.bdf[0], 0, 0.3);
	usleep(300000);
	after = drv_count(ic.bdf[0], 0);
	diag("%llu handler runs while asserted, %llu of them re-fires; %llu without cause before the deassert",
	     (unsigned long long)n, (unsigned long long)st.intx_refires, (unsigned long long)drv_none(ic.bdf[0]));
	CHECK(after == n, "the handler ran after the deassert (%llu -> %llu)", (unsigned long long)n,
	      (unsigned long long)after);
	CHECK(!(cfg_get(ic.bdf[0], PCI_STATUS, 2) & PCI_STATUS_INTERRUPT), "Interrupt Status still set");
	CHECK(irq_status(&ic, 0, &st) == 0 && !st.intx_line, "line still up");
	irq_card_close(&ic);
	return 0;
}

/* Interrupt Disable holds the line back (status still shows it) until cleared. */
static int t_intx_disable(void)
{
	struct pciem_irq_status st;
	struct irq_card ic;
	uint16_t cmd;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "intx") == 0, "mode intx: %s", strerror(errno));
	CHECK(drv(ic.bdf[0], "ack", "1") == 0, "ack 1");
	cmd = cfg_get(ic.bdf[0], PCI_COMMAND, 2);
	CHECK(!(cmd & PCI_COMMAND_INTX_DISABLE), "INTx disabled after pci_alloc_irq_vectors(INTX)");
	cfg_put(ic.bdf[0], PCI_COMMAND, 2, cmd | PCI_COMMAND_INTX_DISABLE);
	set_cause(&ic, 0, 1);
	CHECK(set_intx(&ic, 0, 1) == 0, "assert: %s", strerror(errno));
	CHECK(irq_status(&ic, 0, &st) == 0 && st.mode == PCIEM_IRQ_MODE_NONE && st.intx_line,
	      "status: mode %u line %u", st.mode, st.intx_line);
	CHECK(cfg_get(ic.bdf[0], PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, "Interrupt Status not set while disabled");
	CHECK(settle_count(ic.bdf[0], 0, 0.3) == 0 && drv_none(ic.bdf[0]) == 0,
	      "the handler ran with Interrupt Disable set");
	CHECK(inject(&ic, 0, 0) == 0, "a pulse while disabled is held");
	cfg_put(ic.bdf[0], PCI_COMMAND, 2, cmd);
	CHECK(wait_count(ic.bdf[0], 0, 1, 5) == 1, "clearing Interrupt Disable did not deliver");
	CHECK(set_intx(&ic, 0, 0) == 0, "deassert");
	CHECK(settle_count(ic.bdf[0], 0, 0.3) == 1, "the handler found the cause %llu times, want once",
	      (unsigned long long)drv_count(ic.bdf[0], 0));
	irq_card_close(&ic);
	return 0;
}

/* ---- irqfds ---- */

static int t_irqfd(void)
{
	struct pciem_irq_status st;
	struct irq_card ic;
	unsigned long i;
	int efd, up, down;
	double t0;

	if (irq_card_default(&ic))
		return -1;
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8: %s", strerror(errno));
	efd = eventfd(0, EFD_CLOEXEC);
	CHECK(efd >= 0, "eventfd");
	CHECK(irqfd(&ic, efd, 0, 2, 0) == 0, "SET_IRQFD: %s", strerror(errno));
	t0 = now_s();
	for (i = 0; i < burst; i++)
		CHECK(signal_fd(efd) == 0, "eventfd write");
	wait_count(ic.bdf[0], 2, burst, 120);
	CHECK(settle_count(ic.bdf[0], 2, 0.3) == burst, "vector 2 ran %llu times for %lu signals",
	      (unsigned long long)drv_count(ic.bdf[0], 2), burst);
	diag("%lu irqfd signals delivered in %.2f s", burst, now_s() - t0);
	CHECK(irqfd(&ic, -1, 0, 2, 0) == 0, "detach: %s", strerror(errno));
	CHECK(signal_fd(efd) == 0, "eventfd write");
	CHECK(settle_count(ic.bdf[0], 2, 0.2) == burst, "a detached irqfd still injects");
	close(efd);

	/* INTx as a level, driven by two eventfds. */
	CHECK(drv(ic.bdf[0], "mode", "intx") == 0, "mode intx: %s", strerror(errno));
	CHECK(drv(ic.bdf[0], "ack", "1") == 0, "ack 1");
	up = eventfd(0, EFD_CLOEXEC);
	down = eventfd(0, EFD_CLOEXEC);
	CHECK(up >= 0 && down >= 0, "eventfd");
	CHECK(irqfd(&ic, up, 0, 0, PCIEM_IRQFD_FLAG_LEVEL) == 0, "LEVEL irqfd: %s", strerror(errno));
	CHECK(irqfd(&ic, down, 0, 0, PCIEM_IRQFD_FLAG_LEVEL | PCIEM_IRQFD_FLAG_DEASSERT) == 0,
	      "DEASSERT irqfd: %s", strerror(errno));
	set_cause(&ic, 0, 1);
	CHECK(signal_fd(up) == 0, "assert");
	CHECK(wait_count(ic.bdf[0], 0, 1, 5) == 1, "asserting through the irqfd did not run the handler");
	CHECK(irq_status(&ic, 0, &st) == 0 && st.intx_line, "line not up");
	CHECK(signal_fd(down) == 0, "deassert");
	CHECK(irq_status(&ic, 0, &st) == 0 && !st.intx_line, "line still up after the DEASSERT irqfd");
	CHECK(settle_count(ic.bdf[0], 0, 0.3) == 1, "handled %llu times", (unsigned long long)drv_count(ic.bdf[0], 0));
	close(up);
	close(down);
	irq_card_close(&ic);
	return 0;
}

/* ---- removal with vectors allocated ---- */

static void *pound_thread(void *arg)
{
	struct irq_card *ic = arg;
	unsigned long i;

	for (i = 0;; i++)
		inject(ic, 0, i % 4);
	return NULL;
}

/* The child: a card that injects from two threads and an irqfd until killed. */
static void removal_child(const char *mode, int pipefd)
{
	struct irq_card ic;
	pthread_t tid;
	int efd;

	if (irq_card_default(&ic))
		_exit(1);
	set_cause(&ic, 0, 1);
	if (drv(ic.bdf[0], "mode", "%s", mode))
		_exit(2);
	efd = eventfd(0, 0);
	if (efd < 0 || irqfd(&ic, efd, 0, 0, 0))
		_exit(3);
	if (write(pipefd, ic.bdf[0], sizeof(ic.bdf[0])) != sizeof(ic.bdf[0]))
		_exit(4);
	pthread_create(&tid, NULL, pound_thread, &ic);
	for (;;)
		signal_fd(efd);
}

static int t_remove(void)
{
	static const char * const modes[] = { "msix 8", "msi 4", "intx" };
	unsigned int m;

	for (m = 0; m < ARRAY_SIZE(modes); m++) {
		char bdf[32] = "", path[256];
		int p[2], status;
		uint64_t n;
		pid_t pid;

		CHECK(pipe(p) == 0, "pipe");
		pid = fork();
		CHECK(pid >= 0, "fork");
		if (pid == 0) {
			close(p[0]);
			removal_child(modes[m], p[1]);
		}
		close(p[1]);
		CHECK(read(p[0], bdf, sizeof(bdf)) == sizeof(bdf), "the child's card did not come up (%s)", modes[m]);
		close(p[0]);
		n = wait_count(bdf, -1, 20000, 30);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		snprintf(path, sizeof(path), "%s/%s", testdrv_root, bdf);
		CHECK(wait_path(path, false, 10) == 0, "the driver was not removed from %s", bdf);
		CHECK(n >= 20000, "%s: only %llu interrupts before the kill", modes[m], (unsigned long long)n);
		diag("%s: killed the card after %llu interrupts, with vectors allocated and injections running",
		     modes[m], (unsigned long long)n);
	}
	return 0;
}

/*
 * The driver keeps switching between MSI-X, MSI and INTx (freeing and
 * allocating vectors, masking) and unbinding, while two threads and an
 * irqfd inject as fast as they can: no handler may run on a freed vector.
 */
struct fire {
	struct irq_card *ic;
	int efd;
	int stop;
	unsigned long sent;
};

static void *fire_thread(void *arg)
{
	struct fire *fi = arg;
	unsigned int seed = 77;

	while (!__atomic_load_n(&fi->stop, __ATOMIC_RELAXED)) {
		if (fi->efd >= 0)
			signal_fd(fi->efd);
		else
			inject(fi->ic, 0, rand_r(&seed) % IRQ_MSIX_VECS);
		fi->sent++;
	}
	return NULL;
}

static int under_fire(bool unbind)
{
	static const char * const modes[] = { "msix 8", "msi 4", "intx", "msix 3", "none", "msi 1" };
	struct fire fi[2];
	pthread_t tid[2];
	struct irq_card ic;
	char path[256];
	int i, efd;

	if (irq_card_default(&ic))
		return -1;
	set_cause(&ic, 0, 1);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(efd >= 0 && irqfd(&ic, efd, 0, 1, 0) == 0, "irqfd: %s", strerror(errno));
	for (i = 0; i < 2; i++) {
		fi[i] = (struct fire){ .ic = &ic, .efd = i ? efd : -1 };
		CHECK(pthread_create(&tid[i], NULL, fire_thread, &fi[i]) == 0, "pthread_create");
	}
	for (i = 0; i < 300; i++) {
		if (unbind && i % 10 == 9) {
			snprintf(path, sizeof(path), "%s/%s", testdrv_root, ic.bdf[0]);
			sysfs_write("/sys/bus/pci/drivers/pciem_irqdrv/unbind", "%s", ic.bdf[0]);
			sysfs_write("/sys/bus/pci/drivers/pciem_irqdrv/bind", "%s", ic.bdf[0]);
			CHECK(wait_path(path, true, 5) == 0, "pciem_irqdrv did not bind again");
			drv(ic.bdf[0], "ack", "0");
		}
		drv(ic.bdf[0], "mode", "%s", modes[i % 6]);
		drv(ic.bdf[0], i % 2 ? "mask" : "mask_lazy", "%d", i % 3);
		if (i % 3)
			drv(ic.bdf[0], "unmask", "%d", i % 3);
	}
	for (i = 0; i < 2; i++) {
		__atomic_store_n(&fi[i].stop, 1, __ATOMIC_RELAXED);
		pthread_join(tid[i], NULL);
	}
	diag("300 %s under %lu injections and %lu irqfd signals", unbind ? "mode changes and 30 rebinds" :
	     "mode changes", fi[0].sent, fi[1].sent);
	/* Still sound: a fresh mode, one injection, one run. */
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0 && drv(ic.bdf[0], "reset", "1") == 0, "mode msix 8");
	CHECK(inject(&ic, 0, 4) == 0, "inject");
	CHECK(wait_count(ic.bdf[0], 4, 1, 5) == 1 && settle_count(ic.bdf[0], -1, 0.2) == 1,
	      "after the storm one injection ran %llu handlers", (unsigned long long)drv_count(ic.bdf[0], -1));
	close(efd);
	irq_card_close(&ic);
	return 0;
}

static int t_switch_under_fire(void)
{
	return under_fire(false);
}

static int t_rebind_under_fire(void)
{
	return under_fire(true);
}

/*
 * Interrupts arriving while a driver maps and unmaps BAR memory: the case
 * that once oopsed, when pciem's ioremap hook was a kprobe and an
 * interrupt whose handler read a BAR landed in it. On every CPU the driver
 * ioremaps, reads and iounmaps BAR0 of function 0 in a loop; function 0's
 * INTx stays asserted with nobody clearing the cause, so its handler (which
 * reads the BAR) keeps coming back from pciem's re-fire timer, at any
 * instant of the loops; function 1 takes a stream of MSI-X injections from
 * another thread, each handler reading the BAR too. None may be lost.
 */
#define IRQ_SCRATCH	0x04
#define IRQ_SCRATCH_VAL	0x5eed1234

static double storm_seconds = 5;

struct storm_loop {
	const char *bdf;
	int cpu;
	unsigned long maps;
	int err;
	double end;
};

static void *storm_loop(void *arg)
{
	struct storm_loop *l = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(l->cpu, &set);
	l->err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	while (!l->err && now_s() < l->end) {
		l->err = drv(l->bdf, "ioremap", "200 %x", IRQ_SCRATCH_VAL);
		l->maps += 200;
	}
	return NULL;
}

struct storm_fire {
	struct irq_card *ic;
	int stop;
	unsigned long sent;
	int err;
};

static void *storm_fire(void *arg)
{
	struct storm_fire *fi = arg;

	while (!fi->err && !__atomic_load_n(&fi->stop, __ATOMIC_RELAXED)) {
		fi->err = inject(fi->ic, 1, fi->sent % IRQ_MSIX_VECS);
		fi->sent += !fi->err;
	}
	return NULL;
}

static int t_ioremap_storm(void)
{
	struct irq_card_desc d = { .nfuncs = 2, .msi = true, .msix = true };
	int ncpu = sysconf(_SC_NPROCESSORS_ONLN), i;
	struct storm_loop loops[16];
	pthread_t tid[16], ftid;
	struct pciem_irq_status st0;
	struct storm_fire fi = { 0 };
	struct irq_card ic;
	unsigned long maps = 0;
	uint64_t intx, msix;
	double t0;

	if (ncpu > 16)
		ncpu = 16;
	if (irq_card_make(&ic, &d))
		return -1;
	fi.ic = &ic;
	for (i = 0; i < 2; i++)
		ic.bar0[i][IRQ_SCRATCH / 4] = IRQ_SCRATCH_VAL;
	CHECK(drv(ic.bdf[0], "mode", "intx") == 0 && drv(ic.bdf[0], "ack", "0") == 0,
	      "function 0: intx: %s", strerror(errno));
	CHECK(drv(ic.bdf[1], "mode", "msix 8") == 0 && drv(ic.bdf[1], "touch", "1") == 0,
	      "function 1: msix 8: %s", strerror(errno));
	set_cause(&ic, 0, 1);
	CHECK(set_intx(&ic, 0, 1) == 0, "assert INTx: %s", strerror(errno));
	t0 = now_s();
	CHECK(pthread_create(&ftid, NULL, storm_fire, &fi) == 0, "pthread_create");
	for (i = 0; i < ncpu; i++) {
		loops[i] = (struct storm_loop){ .bdf = ic.bdf[0], .cpu = i, .end = t0 + storm_seconds };
		CHECK(pthread_create(&tid[i], NULL, storm_loop, &loops[i]) == 0, "pthread_create");
	}
	for (i = 0; i < ncpu; i++) {
		pthread_join(tid[i], NULL);
		CHECK(!loops[i].err, "ioremap loop on CPU %d: %s", i, strerror(-loops[i].err));
		maps += loops[i].maps;
	}
	__atomic_store_n(&fi.stop, 1, __ATOMIC_RELAXED);
	pthread_join(ftid, NULL);
	CHECK(!fi.err, "MSI-X injection: %s", strerror(-fi.err));
	CHECK(set_intx(&ic, 0, 0) == 0, "deassert INTx");
	CHECK(irq_status(&ic, 0, &st0) == 0, "status");
	intx = settle_count(ic.bdf[0], 0, 0.3);
	wait_count(ic.bdf[1], -1, fi.sent, 30);
	msix = settle_count(ic.bdf[1], -1, 0.3);
	diag("%lu ioremaps on %d CPUs in %.1f s, under %llu INTx runs (%llu re-fires) and %lu MSI-X injections",
	     maps, ncpu, storm_seconds, (unsigned long long)intx, (unsigned long long)st0.intx_refires, fi.sent);
	CHECK(intx >= 100, "only %llu INTx handler runs during the loops", (unsigned long long)intx);
	CHECK(msix == fi.sent, "%llu MSI-X handler runs for %lu injections", (unsigned long long)msix, fi.sent);
	irq_card_close(&ic);
	return 0;
}

/*
 * A stock driver: uio_pci_generic handles INTx by setting Interrupt
 * Disable (pci_check_and_mask_intx()) and reporting the event; userspace
 * clears it to take the next one.
 */
static int t_uio_intx(void)
{
	struct irq_card_desc d = { .nfuncs = 1 };
	struct irq_card ic;
	char path[320], name[64] = "";
	struct dirent *e;
	uint32_t events;
	uint16_t cmd;
	DIR *dir;
	int ufd, ret = -1;

	testdrv_device = 0xfff2;	/* not pciem_irqdrv's: nothing binds it */
	if (irq_card_make_nodrv(&ic, &d))
		return -1;
	CHECK(system("modprobe uio_pci_generic") == 0, "modprobe uio_pci_generic");
	sysfs_write("/sys/bus/pci/drivers/uio_pci_generic/new_id", "1f0c fff2");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/uio", ic.c.bdf);
	if (wait_path(path, true, 5)) {
		diag("uio_pci_generic did not bind to %s", ic.c.bdf);
		goto out;
	}
	dir = opendir(path);
	while (dir && (e = readdir(dir)))
		if (!strncmp(e->d_name, "uio", 3))
			snprintf(name, sizeof(name), "/dev/%.50s", e->d_name);
	if (dir)
		closedir(dir);
	ufd = open(name, O_RDWR);
	if (ufd < 0) {
		diag("open %s: %s", name, strerror(errno));
		goto out;
	}
	if (inject(&ic, 0, 0) || read(ufd, &events, 4) != 4 || events != 1) {
		diag("no uio event for an INTx pulse");
		goto out_ufd;
	}
	cmd = cfg_get(ic.c.bdf, PCI_COMMAND, 2);
	if (!(cmd & PCI_COMMAND_INTX_DISABLE)) {
		diag("uio_pci_generic's handler did not mask INTx (command %#x)", cmd);
		goto out_ufd;
	}
	/* Masked: the next pulse waits for userspace to clear Interrupt Disable. */
	if (inject(&ic, 0, 0)) {
		diag("second pulse: %s", strerror(errno));
		goto out_ufd;
	}
	{
		fd_set rfds;
		struct timeval tv = { .tv_usec = 200000 };

		FD_ZERO(&rfds);
		FD_SET(ufd, &rfds);
		if (select(ufd + 1, &rfds, NULL, NULL, &tv) != 0) {
			diag("an event came through Interrupt Disable");
			goto out_ufd;
		}
	}
	cfg_put(ic.c.bdf, PCI_COMMAND, 2, cmd & ~PCI_COMMAND_INTX_DISABLE);
	if (read(ufd, &events, 4) != 4 || events != 2) {
		diag("clearing Interrupt Disable did not deliver the held pulse");
		goto out_ufd;
	}
	ret = 0;
out_ufd:
	close(ufd);
out:
	sysfs_write("/sys/bus/pci/drivers/uio_pci_generic/remove_id", "1f0c fff2");
	testdrv_device = IRQ_DEVICE;
	irq_card_close(&ic);
	return ret;
}

/* ---- bad input ---- */

static int expect_err(int r, int want, const char *what)
{
	if (r == -want)
		return 0;
	diag("%s: got %s, want %s", what, r ? strerror(-r) : "success", strerror(want));
	return 1;
}

static int raw_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static int t_errors(void)
{
	struct pciem_irq_inject inj = { 0 };
	struct pciem_irqfd_config ifd = { .eventfd = -1 };
	struct pciem_intx ix = { .argsz = sizeof(ix) };
	struct pciem_irq_status st = { .argsz = sizeof(st) };
	struct pciem_create_device cr = { 0 };
	struct irq_card ic;
	int fd, bad = 0, efd, efds[PCIEM_MAX_IRQFDS], pfd[2], i;
	unsigned char big[sizeof(ix) + 8];

	/* Before REGISTER there is no bus to interrupt. */
	fd = open("/dev/pciem", O_RDWR);
	CHECK(fd >= 0, "open");
	CHECK(ioctl(fd, PCIEM_IOCTL_CREATE_DEVICE, &cr) == 0, "CREATE_DEVICE");
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_INJECT_IRQ, &inj), EBUSY, "INJECT_IRQ before REGISTER");
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EBUSY, "SET_INTX before REGISTER");
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_GET_IRQ_STATUS, &st), EBUSY, "GET_IRQ_STATUS before REGISTER");
	efd = eventfd(0, EFD_CLOEXEC);
	ifd.eventfd = efd;
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EBUSY, "SET_IRQFD before REGISTER");
	close(fd);

	if (irq_card_default(&ic))
		return -1;
	fd = ic.c.fd;
	/* INJECT_IRQ */
	inj = (struct pciem_irq_inject){ .reserved = { 1 } };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_INJECT_IRQ, &inj), EINVAL, "INJECT_IRQ reserved != 0");
	inj = (struct pciem_irq_inject){ .func = 8 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_INJECT_IRQ, &inj), EINVAL, "INJECT_IRQ func 8");
	inj = (struct pciem_irq_inject){ .func = 1 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_INJECT_IRQ, &inj), ENODEV, "INJECT_IRQ to a missing function");
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_INJECT_IRQ, (void *)16), EFAULT, "INJECT_IRQ bad pointer");
	bad |= expect_err(inject(&ic, 0, 1), EINVAL, "INTx pulse on vector 1");
	CHECK(drv(ic.bdf[0], "mode", "msi 2") == 0, "mode msi 2");
	bad |= expect_err(inject(&ic, 0, 2), EINVAL, "MSI vector 2 of 2");
	bad |= expect_err(inject(&ic, 0, 1), 0, "MSI vector 1 of 2");
	cfg_put(ic.bdf[0], PCI_COMMAND, 2, cfg_get(ic.bdf[0], PCI_COMMAND, 2) & ~PCI_COMMAND_MASTER);
	bad |= expect_err(inject(&ic, 0, 0), EIO, "MSI with bus mastering off");
	cfg_put(ic.bdf[0], PCI_COMMAND, 2, cfg_get(ic.bdf[0], PCI_COMMAND, 2) | PCI_COMMAND_MASTER);
	CHECK(drv(ic.bdf[0], "mode", "msix 8") == 0, "mode msix 8");
	bad |= expect_err(inject(&ic, 0, 8), EINVAL, "MSI-X vector 8 of 8");
	bad |= expect_err(inject(&ic, 0, 0xffffffff), EINVAL, "MSI-X vector 0xffffffff");

	/* SET_IRQFD */
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .flags = 4 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD unknown flag");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .flags = PCIEM_IRQFD_FLAG_DEASSERT };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD DEASSERT without LEVEL");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .vector = 1, .flags = PCIEM_IRQFD_FLAG_LEVEL };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD LEVEL on vector 1");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .vector = IRQ_MSIX_VECS };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD vector beyond the function");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .reserved = { 0, 0, 1 } };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD reserved != 0");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .func = 8 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD func 8");
	ifd = (struct pciem_irqfd_config){ .eventfd = efd, .func = 3 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), ENODEV, "SET_IRQFD missing function");
	ifd = (struct pciem_irqfd_config){ .eventfd = -7 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EBADF, "SET_IRQFD eventfd -7");
	ifd = (struct pciem_irqfd_config){ .eventfd = 1000 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EBADF, "SET_IRQFD closed fd");
	CHECK(pipe(pfd) == 0, "pipe");
	ifd = (struct pciem_irqfd_config){ .eventfd = pfd[0] };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), EINVAL, "SET_IRQFD on a pipe");
	close(pfd[0]);
	close(pfd[1]);
	ifd = (struct pciem_irqfd_config){ .eventfd = -1, .vector = 5 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_IRQFD, &ifd), ENOENT, "detach with nothing attached");
	bad |= expect_err(irqfd(&ic, efd, 0, 5, 0), 0, "SET_IRQFD");
	bad |= expect_err(irqfd(&ic, efd, 0, 6, 0), EEXIST, "the same eventfd twice");
	for (i = 0; i < PCIEM_MAX_IRQFDS; i++) {
		efds[i] = eventfd(0, EFD_CLOEXEC);
		if (i < PCIEM_MAX_IRQFDS - 1)
			bad |= expect_err(irqfd(&ic, efds[i], 0, i % IRQ_MSIX_VECS, 0), 0, "irqfd slot");
	}
	bad |= expect_err(irqfd(&ic, efds[PCIEM_MAX_IRQFDS - 1], 0, 0, 0), ENOSPC, "irqfd 33");
	close(efds[0]);		/* the closed eventfd's slot comes back */
	bad |= expect_err(irqfd(&ic, efds[PCIEM_MAX_IRQFDS - 1], 0, 0, 0), 0, "irqfd after closing one");
	bad |= expect_err(irqfd(&ic, -1, 0, 5, 0), 0, "detach by eventfd -1");
	bad |= expect_err(irqfd(&ic, -1, 0, 5, 0), ENOENT, "detach twice");
	for (i = 1; i < PCIEM_MAX_IRQFDS; i++)
		close(efds[i]);

	/* SET_INTX */
	ix = (struct pciem_intx){ .argsz = 8 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EINVAL, "SET_INTX argsz 8");
	ix = (struct pciem_intx){ .argsz = sizeof(ix), .flags = 1 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EINVAL, "SET_INTX flags");
	ix = (struct pciem_intx){ .argsz = sizeof(ix), .level = 2 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EINVAL, "SET_INTX level 2");
	ix = (struct pciem_intx){ .argsz = sizeof(ix), .reserved = { 0, 1 } };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EINVAL, "SET_INTX reserved");
	ix = (struct pciem_intx){ .argsz = sizeof(ix), .func = 8 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), EINVAL, "SET_INTX func 8");
	ix = (struct pciem_intx){ .argsz = sizeof(ix), .func = 2 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, &ix), ENODEV, "SET_INTX missing function");
	memset(big, 0, sizeof(big));
	ix = (struct pciem_intx){ .argsz = sizeof(big) };
	memcpy(big, &ix, sizeof(ix));
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, big), 0, "SET_INTX longer argsz, zero tail");
	big[sizeof(ix) + 3] = 1;
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, big), E2BIG, "SET_INTX longer argsz, tail != 0");
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_SET_INTX, (void *)8), EFAULT, "SET_INTX bad pointer");

	/* GET_IRQ_STATUS */
	st = (struct pciem_irq_status){ .argsz = sizeof(st), .flags = 2 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_GET_IRQ_STATUS, &st), EINVAL, "GET_IRQ_STATUS flags");
	st = (struct pciem_irq_status){ .argsz = sizeof(st), .reserved2 = { 0, 0, 1 } };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_GET_IRQ_STATUS, &st), EINVAL, "GET_IRQ_STATUS reserved");
	st = (struct pciem_irq_status){ .argsz = sizeof(st), .func = 1 };
	bad |= expect_err(raw_ioctl(fd, PCIEM_IOCTL_GET_IRQ_STATUS, &st), ENODEV, "GET_IRQ_STATUS missing function");
	bad |= expect_err(irq_status(&ic, 0, &st), 0, "GET_IRQ_STATUS");
	if (st.mode != PCIEM_IRQ_MODE_MSIX || st.vectors != IRQ_MSIX_VECS || st.argsz != sizeof(st)) {
		diag("GET_IRQ_STATUS: mode %u vectors %u argsz %u", st.mode, st.vectors, st.argsz);
		bad = 1;
	}

	/* Unknown commands in the interrupt range. */
	bad |= expect_err(raw_ioctl(fd, _IOW(PCIEM_IOCTL_MAGIC, 50, uint64_t), &st), ENOTTY, "ioctl 50");
	bad |= expect_err(raw_ioctl(fd, _IOWR(PCIEM_IOCTL_MAGIC, 48, struct pciem_irq_status), &st), ENOTTY,
			  "SET_INTX's number with another size");
	close(efd);
	irq_card_close(&ic);
	return bad ? -1 : 0;
}

/*
 * 100,000 interrupt ioctls with random vectors, functions, flags and
 * eventfds against a two-function card whose driver keeps changing mode.
 */
static int t_fuzz(void)
{
	static const char * const modes[] = { "msix 8", "msi 4", "intx", "none", "msi 1", "msix 3" };
	static const unsigned long cmds[] = {
		PCIEM_IOCTL_INJECT_IRQ, PCIEM_IOCTL_SET_IRQFD, PCIEM_IOCTL_SET_INTX,
		PCIEM_IOCTL_GET_IRQ_STATUS,
	};
	struct irq_card_desc d = { .nfuncs = 2, .msi = true, .msix = true };
	unsigned int seed = 4242, i, ok = 0;
	struct irq_card ic;
	unsigned char buf[128];
	int efds[4], f;
	double t0 = now_s();
	uint64_t before;

	if (irq_card_make(&ic, &d))
		return -1;
	for (f = 0; f < 2; f++) {
		/* A cause that stays: every interrupt is the driver's, never "nobody cared". */
		set_cause(&ic, f, 1);
		CHECK(drv(ic.bdf[f], "ack", "0") == 0, "ack");
	}
	for (i = 0; i < 4; i++)
		efds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (i = 0; i < fuzz_calls; i++) {
		unsigned long cmd;
		size_t k;
		int r;

		if (i % 5000 == 0) {
			f = rand_r(&seed) % 2;
			drv(ic.bdf[f], "mode", "%s", modes[rand_r(&seed) % 6]);
		}
		if (i % 997 == 0)
			drv(ic.bdf[rand_r(&seed) % 2], rand_r(&seed) % 2 ? "mask" : "unmask", "%d", rand_r(&seed) % 8);
		if (i % 1009 == 0) {
			/* An eventfd closes under its irqfd; a new one takes its place. */
			k = rand_r(&seed) % 4;
			close(efds[k]);
			efds[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		}
		for (k = 0; k < sizeof(buf); k++)
			buf[k] = rand_r(&seed) % 3 ? rand_r(&seed) % 4 : rand_r(&seed);
		switch (rand_r(&seed) % 10) {
		case 0:
			cmd = _IOC(rand_r(&seed) % 4, PCIEM_IOCTL_MAGIC, 48 + rand_r(&seed) % 8, rand_r(&seed) % 128);
			break;
		case 1: {
			struct pciem_irqfd_config *a = (void *)buf;

			cmd = PCIEM_IOCTL_SET_IRQFD;
			a->eventfd = rand_r(&seed) % 3 ? efds[rand_r(&seed) % 4] : (int)(rand_r(&seed) % 40) - 2;
			a->vector = rand_r(&seed) % 4 ? (uint32_t)rand_r(&seed) % 10 : (uint32_t)rand_r(&seed);
			a->flags = rand_r(&seed) % 4 ? (uint32_t)rand_r(&seed) % 4 : (uint32_t)rand_r(&seed);
			a->func = rand_r(&seed) % 3;
			if (rand_r(&seed) % 8)
				memset(a->reserved, 0, sizeof(a->reserved));
			break;
		}
		case 2:
			/* An irqfd fires from this thread's write. */
			signal_fd(efds[rand_r(&seed) % 4]);
			continue;
		case 3:
		case 4:
		case 5: {
			/* Plausible injections: they get delivered, held or dropped. */
			struct pciem_irq_inject *a = (void *)buf;

			cmd = PCIEM_IOCTL_INJECT_IRQ;
			a->vector = rand_r(&seed) % 8 ? (uint32_t)rand_r(&seed) % 10 : (uint32_t)rand_r(&seed);
			a->func = rand_r(&seed) % 3;
			if (rand_r(&seed) % 8)
				memset(a->reserved, 0, sizeof(a->reserved));
			break;
		}
		case 6:
		case 7: {
			struct pciem_intx *a = (void *)buf;
			struct pciem_irq_status *st = (void *)buf;
			bool intx = rand_r(&seed) % 2;

			cmd = intx ? PCIEM_IOCTL_SET_INTX : PCIEM_IOCTL_GET_IRQ_STATUS;
			if (rand_r(&seed) % 8)
				memset(buf, 0, sizeof(buf));
			a->argsz = rand_r(&seed) % 8 ? (intx ? sizeof(*a) : sizeof(*st)) : (uint32_t)rand_r(&seed) % 160;
			a->func = rand_r(&seed) % 3;
			if (intx)
				a->level = rand_r(&seed) % 3;
			break;
		}
		default:
			cmd = cmds[rand_r(&seed) % 4];
		}
		if (rand_r(&seed) % 64 == 0)
			r = ioctl(ic.c.fd, cmd, (void *)(uintptr_t)rand_r(&seed));
		else
			r = ioctl(ic.c.fd, cmd, buf);
		ok += r == 0;
	}
	for (i = 0; i < 4; i++)
		close(efds[i]);
	diag("%lu interrupt ioctls in %.1f s, %u accepted", fuzz_calls, now_s() - t0, ok);
	for (f = 0; f < 2; f++) {
		struct pciem_irq_status st;

		CHECK(irq_status(&ic, f, &st) == 0, "GET_IRQ_STATUS after the fuzz");
		diag("function %d: %llu injected, %llu delivered, %llu pended, %llu dropped, %llu INTx re-fires", f,
		     (unsigned long long)st.injected, (unsigned long long)st.delivered,
		     (unsigned long long)st.pended, (unsigned long long)st.dropped,
		     (unsigned long long)st.intx_refires);
	}
	/* Still working: a fresh mode, an injection, one handler run. */
	for (f = 0; f < 2; f++) {
		CHECK(drv(ic.bdf[f], "mode", "msix 8") == 0, "mode msix 8 after the fuzz: %s", strerror(errno));
		CHECK(drv(ic.bdf[f], "reset", "1") == 0, "reset");
		before = drv_count(ic.bdf[f], 1);
		CHECK(inject(&ic, f, 1) == 0, "inject after the fuzz");
		CHECK(wait_count(ic.bdf[f], 1, before + 1, 5) == before + 1, "no interrupt after the fuzz");
	}
	irq_card_close(&ic);
	return 0;
}

static const struct test tests[] = {
	{ "msi_burst", t_msi_burst, true },
	{ "msix_burst", t_msix_burst, true },
	{ "intx_burst", t_intx_burst, true },
	{ "concurrent", t_concurrent, true },
	{ "msi_mask", t_msi_mask, true },
	{ "msix_mask", t_msix_mask, true },
	{ "msix_function_mask", t_msix_function_mask, true },
	{ "lazy_disable", t_lazy_disable, true },
	{ "msi_plain", t_msi_plain, true },
	{ "flr", t_flr, true },
	{ "intx_level", t_intx_level, true },
	{ "intx_disable", t_intx_disable, true },
	{ "irqfd", t_irqfd, true },
	{ "switch_under_fire", t_switch_under_fire, true },
	{ "rebind_under_fire", t_rebind_under_fire, true },
	{ "ioremap_storm", t_ioremap_storm, true },
	{ "uio_intx", t_uio_intx, true },
	{ "errors", t_errors, true },
	{ "remove", t_remove, true },
	{ "fuzz", t_fuzz, true },
};

int main(int argc, char **argv)
{
	if (getenv("PCIEM_IRQ_BURST"))
		burst = strtoul(getenv("PCIEM_IRQ_BURST"), NULL, 0);
	if (getenv("PCIEM_FUZZ_CALLS"))
		fuzz_calls = strtoul(getenv("PCIEM_FUZZ_CALLS"), NULL, 0);
	if (getenv("PCIEM_STORM_SECONDS"))
		storm_seconds = strtod(getenv("PCIEM_STORM_SECONDS"), NULL);
	testdrv_device = IRQ_DEVICE;
	testdrv_root = "/sys/kernel/debug/pciem_irqdrv";
	return selftest_main(argc, argv, tests, ARRAY_SIZE(tests));
}
