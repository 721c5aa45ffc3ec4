/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * pciem-bridge: connects one QEMU PCI device model to the pciem gateway.
 *
 *   qemu-system-x86_64 -machine x-remote,vfio-user=off -nodefaults \
 *       -device protopciem,id=card0 \
 *       -chardev socket,id=gw,path=/run/pciem.sock,reconnect-ms=1000 \
 *       -object pciem-bridge,id=br0,device=card0,chardev=gw
 *
 * The gateway owns the host side (/dev/pciem); this object speaks versions
 * 1 to 3 of its wire protocol (docs/protocol.md) over the chardev, codec
 * generated from proto/wire.json (wire.c, wire.h). The model does not know
 * about the bridge:
 *
 *   - Session: on CHR_EVENT_OPENED it sends HELLO, then DEVICE, which it
 *     reads from the model (config space, io_regions, MSI/MSI-X
 *     capabilities). Every BAR is traced and read through the model, less
 *     the MSI-X table and PBA, which the host side owns.
 *   - Requests from the gateway (MMIO, config, reset, stats) are handled one
 *     after the other in arrival order, from the chardev's read handler.
 *   - Shadowed registers (the DEVICE reply's list): the host serves driver
 *     reads there from its BAR memory; the bridge stores every dword that
 *     changed there (posted MMIO_WRITE) before each reply and interrupt,
 *     after requests and after the model's own work.
 *   - Interrupts: the device's MSI hooks and the root bus's INTx line become
 *     MSI and INTX messages.
 *   - DMA: a lowest-priority IOMMU region under the whole of the
 *     machine's system memory (x-remote has no RAM) routes the model's
 *     bus-master accesses. Reads come from a read-ahead cache filled by one
 *     DMA_READ per miss (growing while the model reads on), held in a RAM
 *     window, so QEMU copies a whole transfer with memcpy; from version 3
 *     the read-ahead is a DMA_READ_AHEAD, which the gateway answers up to
 *     the end of the driver's mapping instead of refusing it; writes (and what
 *     the cache cannot serve) go to an I/O region, where they are gathered
 *     into contiguous runs sent as one posted DMA_WRITE. Pending writes are
 *     sent before anything else goes out, so the PCIe ordering rules
 *     (invariant 3) hold on the wire.
 *
 * Rings (version 2): the gateway's RINGS request, right after its DEVICE
 * reply, carries a memfd and four eventfds (SCM_RIGHTS, which a UNIX
 * socket chardev passes as it is; the bridge takes them off every read).
 * From its reply on, the hot messages ride two shared-memory rings
 * (proto/ring/pciem_ring.h, records in pciem_ring_records.h): driver writes
 * and reads come in on g2m, consumed from an fd handler on its data eventfd
 * and the bottom half; the model's stores, read answers and interrupts go
 * out on m2g. Every other frame each way follows a FENCE on its sender's
 * ring, so both sides take the two paths in the order they were sent
 * (docs/protocol.md, "The rings in a session").
 *
 * A DMA read waits for its reply synchronously (memory callbacks run under
 * the BQL): the socket is polled with a deadline, and what the gateway sends
 * meanwhile is queued, never handed to the model re-entrantly. Nothing the
 * gateway sends can stop QEMU: bad frames get failed replies or ERRORs, an
 * unreadable stream closes the connection, a missing reply fails the access
 * after timeout-ms.
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include "qemu/bitops.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "qemu/module.h"
#include "qemu/queue.h"
#include "qemu/range.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qom/object_interfaces.h"
#include "chardev/char-fe.h"
#include "chardev/char-socket.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "hw/boards.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pci_host.h"
#include "hw/qdev-core.h"
#include "hw/remote/machine.h"
#include "system/system.h"
#include "wire.h"
#include "pciem_ring.h"
#include "pciem_ring_records.h"
#include "trace.h"

#define TYPE_PCIEM_BRIDGE "pciem-bridge"
OBJECT_DECLARE_SIMPLE_TYPE(PCIemBridge, PCIEM_BRIDGE)
#define TYPE_PCIEM_BRIDGE_IOMMU "pciem-bridge-iommu-memory-region"

#define BRIDGE_NAME "qemu-" QEMU_VERSION " pciem-bridge"

#define BRIDGE_TIMEOUT_MS_DEFAULT     5000
#define BRIDGE_TIMEOUT_MS_MAX         3600000
#define BRIDGE_READ_AHEAD_DEFAULT     (64 * KiB)
#define BRIDGE_READ_AHEAD_MAX_DEFAULT (4 * MiB)
/*
 * Fills of the read cache take turns in a RAM window this many times the
 * largest, so a pointer a model got from dma_memory_map() keeps its bytes
 * for that many fills after its own.
 */
#define BRIDGE_RWIN_FILLS             8
/*
 * A fill sits in the window at its bus address modulo this, so one IOMMU
 * translation can cover an aligned block of up to this many bytes.
 */
#define BRIDGE_RWIN_ALIGN             (64 * KiB)
#define BRIDGE_WRITE_COMBINE_DEFAULT  (1 * MiB)
/* The smallest range the host can map for DMA. */
#define BRIDGE_PAGE_SIZE              4096
/* Below pci_memory (-1): BARs the host places win over DMA. */
#define BRIDGE_DMA_PRIORITY           INT_MIN
/* Bytes of the gateway's frames held while a DMA read waits. */
#define BRIDGE_QUEUE_MAX              (4 * PCIEM_WIRE_MAX_BODY)
/* DMA reads that timed out, whose replies may still come. */
#define BRIDGE_STALE_IDS              16
/* Most bytes of registers the gateway may ask the bridge to keep current. */
#define BRIDGE_SHADOW_MAX             (64 * KiB)
#define BRIDGE_SHADOW_DWORDS          (BRIDGE_SHADOW_MAX / 4)

/* Descriptors a RINGS request carries: memfd, g2m data/space, m2g data/space */
#define BRIDGE_RING_FDS               5
/* g2m records taken per run before the main loop gets a turn */
#define BRIDGE_RING_BUDGET            4096

/* MSIMessage.address carries the kind, data the vector. */
#define BRIDGE_MSG_MSI                PCIEM_WIRE_IRQ_KIND_MSI
#define BRIDGE_MSG_MSIX               PCIEM_WIRE_IRQ_KIND_MSIX

typedef enum BridgeState {
    BRIDGE_DOWN,        /* no connection */
    BRIDGE_HELLO,       /* HELLO sent, waiting for its reply */
    BRIDGE_DEVICE,      /* DEVICE sent, waiting for its reply */
    BRIDGE_READY,       /* the host has the device: requests flow */
} BridgeState;

static const char *const bridge_state_names[] = {
    [BRIDGE_DOWN] = "down",
    [BRIDGE_HELLO] = "hello",
    [BRIDGE_DEVICE] = "device",
    [BRIDGE_READY] = "ready",
};

/* A frame from the gateway, waiting to be handled. */
typedef struct BridgeFrame {
    QSIMPLEQ_ENTRY(BridgeFrame) next;
    struct pciem_wire_header hdr;
    /* 0, or the negative code the frame is refused with */
    int rc;
    /* Its number among the gateway's frames on this connection, from 1 */
    uint32_t seq;
    uint8_t body[];
} BridgeFrame;

/* A byte range [start, start + size). */
typedef struct BridgeRange {
    uint64_t start;
    uint64_t size;
} BridgeRange;

struct PCIemBridge {
    Object parent_obj;

    /* Properties */
    char *device;
    char *chardev;
    uint32_t timeout_ms;
    uint32_t read_ahead;
    uint32_t read_ahead_max;
    uint32_t write_combine;
    bool direct_reads;

    bool complete;
    bool set_up;
    Notifier machine_done;
    PCIDevice *pdev;
    CharBackend chr;
    Error *unplug_blocker;
    QEMUBH *bh;
    bool bh_scheduled;  /* bh queued and not run yet: no second notify */
    MemReentrancyGuard bh_guard;

    /* The card, as DEVICE describes it */
    struct pciem_wire_device desc;
    /* MSI-X table and PBA in BAR desc.msix_bar: the host side's */
    BridgeRange msix_table;
    BridgeRange msix_pba;
    /* One address space per BAR, so any MemoryRegion layout works */
    MemoryRegion bar_alias[PCI_ROM_SLOT];
    AddressSpace bar_as[PCI_ROM_SLOT];

    /* Interrupts */
    MSITriggerFunc *saved_msi_trigger;
    MSIPrepareMessageFunc *saved_msi_prepare_message;
    MSIxPrepareMessageFunc *saved_msix_prepare_message;
    PCIBus *irq_bus;
    pci_set_irq_fn saved_set_irq;
    void *saved_irq_opaque;
    int irq_num;
    bool intx_level;
    bool intx_sent;

    /*
     * DMA: the IOMMU region in system memory sends a read the cache holds
     * to the RAM window (rwin_as), everything else to the I/O region
     * (dma_io_as), whose callbacks see <= 8 bytes at a time.
     */
    IOMMUMemoryRegion dma;
    MemoryRegion dma_io;
    AddressSpace dma_io_as;
    MemoryRegion rwin;
    AddressSpace rwin_as;
    uint8_t *rwin_ptr;
    uint64_t rwin_size;
    /* Where the next fill may start in the window (BRIDGE_RWIN_ALIGN) */
    uint64_t rwin_next;
    /* The cache: rcache_len bytes at bus address rcache_addr, at rcache */
    uint8_t *rcache;
    uint64_t rcache_off;
    uint64_t rcache_addr;
    uint32_t rcache_len;
    /* The fill in flight: its place in the window */
    uint64_t fill_off;
    /*
     * Read-ahead: ra_next bytes for the next miss; it doubles (up to
     * read-ahead-max) each time the model reads on where the last fill
     * ended (ra_end), goes back to read-ahead on any other miss, and
     * stops growing after a fill the gateway refused. A run is the fills
     * from such a miss (at ra_run_start) on. With the bulk area up, where
     * a long read-ahead costs a copy and no more, a new run starts at
     * ra_remember instead, if that is more: the longest recent run (the
     * last one, or half the one remembered before it), so a model that
     * reads whole frames again and again reads each in one fill.
     */
    uint32_t ra_next;
    uint64_t ra_end;
    bool ra_end_valid;
    bool ra_capped;
    uint64_t ra_run_start;
    uint32_t ra_remember;
    /* Reading up to here was refused: the mapping ends before it */
    uint64_t ra_limit;
    bool ra_limit_valid;
    /*
     * Version 3, until the model's work is over: a DMA_READ_AHEAD reply
     * ended here, short of its len (the mapping ends), so read-aheads
     * that start before it stop at it.
     */
    uint64_t ra_stop;
    bool ra_stop_valid;
    /* Fills: DMA_READs that filled the cache, and bytes they brought */
    uint64_t dma_fills;
    uint64_t dma_fill_bytes;
    /*
     * Until the model's current work is over (the bottom half): QEMU goes
     * on with an access after one of its <= 8-byte steps failed, so a
     * refused page, or a gateway that stopped answering, fails the rest
     * at once instead of costing a round trip (or a timeout) per step.
     */
    bool fault_valid;
    uint64_t fault_page;
    /* The page where read-ahead and page fills were refused */
    bool bulk_refused_valid;
    uint64_t bulk_refused_page;
    bool dma_failed;
    uint8_t *wc;
    uint64_t wc_addr;
    uint32_t wc_len;

    /*
     * Shadowed registers (the DEVICE reply): the host serves driver reads
     * there from its BAR memory, which the bridge keeps current with
     * posted MMIO_WRITE stores. Per dword, in list order: what was last
     * sent, what the model holds now, and whether the host's copy is
     * unknown (never sent, or the driver wrote it since), so it is sent
     * even if the model's value did not change (BRIDGE_SHADOW_DWORDS each).
     */
    uint32_t *shadow_sent;
    uint32_t *shadow_now;
    unsigned long *shadow_stale;
    /* The stores of one push, written to the socket at once */
    msgpack_sbuffer shadow_out;

    /* Session: everything below is reset when a connection opens */
    BridgeState state;
    unsigned generation;
    int fd;
    uint32_t next_id;
    uint32_t peer_id;
    uint32_t hello_id;
    uint32_t device_id;
    uint32_t dma_wait_id;
    bool dma_waiting;
    /* DMA_READ, DMA_READ_AHEAD or DMA_READ_BULK */
    uint32_t dma_wait_cmd;
    /* The read waited for is a read-ahead: its reply brings 1..len bytes */
    bool dma_wait_ahead;
    int dma_wait_rc;
    uint64_t dma_wait_addr;
    uint32_t dma_wait_len;
    uint32_t stale_ids[BRIDGE_STALE_IDS];
    unsigned stale_next;
    GByteArray *in;
    QSIMPLEQ_HEAD(, BridgeFrame) queue;
    size_t queued_bytes;
    bool busy;
    /* A frame header that cannot be read: the reason, sent before closing */
    int fatal_rc;
    uint32_t fatal_ref;
    msgpack_sbuffer out;
    struct pciem_wire_stats_reply stats;
    struct pciem_wire_region shadow[PCIEM_WIRE_REGIONS_MAX];
    /* The index of each region's first dword in the per-dword arrays */
    uint32_t shadow_base[PCIEM_WIRE_REGIONS_MAX];
    unsigned n_shadow;
    bool shadow_busy;
    /* Pushes (reads of the model) and stores sent, for qom-get */
    uint64_t shadow_pushes;
    uint64_t shadow_stores;

    /* The version HELLO picked */
    uint32_t version;
    /* Descriptors the socket brought, kept for RINGS (-1: none) */
    int ring_fds[BRIDGE_RING_FDS];
    unsigned n_ring_fds;
    /* Frames of the gateway parsed on this connection; the one being handled */
    uint32_t rx_seq;
    uint32_t cur_seq;
    /*
     * The rings, once RINGS is answered: g2m (we consume), m2g (we
     * produce), in one shared mapping. ring_base is the RINGS request's
     * number: the gateway's frame ring_base + k follows its FENCE(k).
     */
    bool rings_up;
    void *ring_map;
    /*
     * The bulk area (version 4), once BULK is answered: mapped over the
     * first bulk_len bytes of the RAM window (0: none), so the bytes of a
     * DMA_READ_BULK land where the cache serves them from, uncopied.
     */
    size_t bulk_len;
    uint64_t bulk_fills;
    /* Mapping the area failed and so did giving the window memory back */
    bool rwin_lost;
    size_t ring_map_len;
    int ring_evfd[4];
    struct pciem_ring g2m;
    struct pciem_ring m2g;
    uint32_t ring_base;
    /* The last FENCE taken off g2m; FENCEs (socket frames) we sent */
    uint32_t ring_fence;
    uint32_t ring_sent;
    /*
     * Shadow stores go on m2g quietly (no wake-up per store); the gateway
     * is woken once for them, or, in front of a reply or an interrupt, by
     * that message's own push (ring_defer_notify).
     */
    bool ring_quiet;
    bool ring_defer_notify;
    /* For qom-get: records each way, and pushes that found m2g full */
    uint64_t ring_records_in;
    uint64_t ring_records_out;
    uint64_t ring_full_waits;
};

/* DMA goes through the machine's one system memory: one bridge per QEMU. */
static PCIemBridge *bridge_instance;

static const char *bridge_id(PCIemBridge *b)
{
    const char *id = object_get_canonical_path_component(OBJECT(b));

    return id ? id : TYPE_PCIEM_BRIDGE;
}

static const char *bridge_cmd_name(unsigned int cmd)
{
    const char *name = pciem_wire_cmd_name(cmd);

    return name ? name : "unknown";
}

static const char *bridge_err_name(unsigned int err)
{
    const char *name = pciem_wire_err_name(err);

    return name ? name : "unknown";
}

static void bridge_set_state(PCIemBridge *b, BridgeState state)
{
    b->state = state;
    trace_pciem_bridge_state(bridge_id(b), bridge_state_names[state]);
}

/* Request ids run 1..0xffffffff, then 1 again. */
static uint32_t bridge_id_after(uint32_t id)
{
    return id == UINT32_MAX ? 1 : id + 1;
}

static int64_t bridge_deadline(PCIemBridge *b)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
           (int64_t)b->timeout_ms * SCALE_MS;
}

/* ---- the connection: bounded reads and writes ---- */

static void bridge_parse(PCIemBridge *b);

typedef enum BridgePoll {
    BRIDGE_POLL_OK,
    BRIDGE_POLL_TIMEOUT,
    BRIDGE_POLL_GONE,
} BridgePoll;

/*
 * Reads what the socket holds now into b->in. The chardev's own read is
 * used (qemu_chr_fe_read_all), for no more than FIONREAD says is there, so
 * it never blocks; a readable socket with nothing in it is at its end,
 * which that read reports (and the chardev then closes the connection).
 */
static void bridge_take_fds(PCIemBridge *b);
static void bridge_bulk_down(PCIemBridge *b);

/* One of the model's DMA reads, whose reply the bridge waits for. */
static bool bridge_is_dma_read(uint16_t cmd)
{
    return cmd == PCIEM_WIRE_CMD_DMA_READ ||
           cmd == PCIEM_WIRE_CMD_DMA_READ_AHEAD ||
           cmd == PCIEM_WIRE_CMD_DMA_READ_BULK;
}
static void bridge_handle_bulk(PCIemBridge *b, const struct pciem_wire_msg *m);

static bool bridge_read_ready(PCIemBridge *b)
{
    unsigned gen = b->generation;
    int avail = 0;
    guint old = b->in->len;
    int n;

    if (ioctl(b->fd, FIONREAD, &avail) < 0 || avail < 0) {
        avail = 0;
    }
    n = MAX(avail, 1);
    g_byte_array_set_size(b->in, old + n);
    n = qemu_chr_fe_read_all(&b->chr, b->in->data + old, n);
    g_byte_array_set_size(b->in, old + MAX(n, 0));
    bridge_take_fds(b);
    if (b->generation != gen) {
        /* The chardev closed the connection (at its end, n == 0). */
        return false;
    }
    if (n <= 0) {
        qemu_chr_fe_disconnect(&b->chr);
        return false;
    }
    b->stats.bytes_in += n;
    return true;
}

/*
 * Waits until @deadline (QEMU_CLOCK_REALTIME ns) for the socket to have
 * input, or with @want_out room for output; input is read and parsed
 * (requests are queued, never handled here).
 */

/*
 * Runs the bottom half once the current model work is over. Called on
 * every DMA access: scheduling an already queued bh would still wake the
 * main loop (an eventfd write per 8-byte access), so only the first call
 * of a run schedules it.
 */
static void bridge_kick(PCIemBridge *b)
{
    if (!b->bh_scheduled) {
        b->bh_scheduled = true;
        qemu_bh_schedule(b->bh);
    }
}

static BridgePoll bridge_poll(PCIemBridge *b, bool want_out, int64_t deadline)
{
    unsigned gen = b->generation;
    GPollFD pfd = { .fd = b->fd };
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int r;

    if (b->state == BRIDGE_DOWN || b->fd < 0) {
        return BRIDGE_POLL_GONE;
    }
    if (now >= deadline) {
        return BRIDGE_POLL_TIMEOUT;
    }
    /* Past the limit, the gateway's frames wait in the socket. */
    if (b->queued_bytes + b->in->len < BRIDGE_QUEUE_MAX) {
        pfd.events |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    }
    if (want_out) {
        pfd.events |= G_IO_OUT;
    }
    r = qemu_poll_ns(&pfd, 1, deadline - now);
    if (r < 0) {
        return errno == EINTR ? BRIDGE_POLL_OK : BRIDGE_POLL_GONE;
    }
    if (r == 0) {
        return BRIDGE_POLL_TIMEOUT;
    }
    if (pfd.revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        if (!bridge_read_ready(b)) {
            return BRIDGE_POLL_GONE;
        }
        bridge_parse(b);
        /* Whatever got queued runs once the current access is over. */
        bridge_kick(b);
    }
    return b->generation == gen ? BRIDGE_POLL_OK : BRIDGE_POLL_GONE;
}

/*
 * Writes @len bytes. While the socket is full, what the gateway sends is
 * read and queued, so neither side can block the other; if the gateway
 * takes nothing for timeout-ms, the connection is closed.
 */
static bool bridge_write(PCIemBridge *b, const uint8_t *buf, size_t len)
{
    unsigned gen = b->generation;
    int64_t deadline = bridge_deadline(b);
    int n;

    while (len) {
        if (b->generation != gen || b->state == BRIDGE_DOWN) {
            return false;
        }
        n = qemu_chr_fe_write(&b->chr, buf, MIN(len, INT_MAX));
        if (n > 0) {
            buf += n;
            len -= n;
            b->stats.bytes_out += n;
            deadline = bridge_deadline(b);
            continue;
        }
        if (n < 0 && errno != EAGAIN) {
            return false;
        }
        switch (bridge_poll(b, true, deadline)) {
        case BRIDGE_POLL_OK:
            break;
        case BRIDGE_POLL_TIMEOUT:
            error_report("%s: the gateway took no data for %u ms; closing "
                         "the connection", bridge_id(b), b->timeout_ms);
            b->stats.timeouts++;
            qemu_chr_fe_disconnect(&b->chr);
            return false;
        case BRIDGE_POLL_GONE:
            return false;
        }
    }
    return true;
}

static bool bridge_flush_writes(PCIemBridge *b);

/*
 * Encodes @m at the end of @sb; a request gets the next id first. What we
 * send comes from the model and our own state, so a failure is ours.
 */
static bool bridge_encode(PCIemBridge *b, struct pciem_wire_msg *m,
                          msgpack_sbuffer *sb)
{
    size_t start = sb->size;
    int rc;

    if (!(m->hdr.flags & PCIEM_WIRE_FLAG_REPLY)) {
        m->hdr.id = b->next_id;
        b->next_id = bridge_id_after(b->next_id);
        if (bridge_is_dma_read(m->hdr.cmd)) {
            /* Set before writing: the reply may be parsed while we write. */
            b->dma_wait_id = m->hdr.id;
            b->dma_wait_cmd = m->hdr.cmd;
            b->dma_waiting = true;
        }
    }
    rc = pciem_wire_encode(m, sb);
    if (rc) {
        error_report("%s: cannot encode %s: %s", bridge_id(b),
                     bridge_cmd_name(m->hdr.cmd), bridge_err_name(-rc));
        b->dma_waiting = false;
        return false;
    }
    trace_pciem_bridge_tx(m->hdr.id, bridge_cmd_name(m->hdr.cmd),
                          m->hdr.flags, m->hdr.error,
                          (uint32_t)(sb->size - start -
                                     PCIEM_WIRE_HEADER_SIZE));
    if (m->hdr.error) {
        b->stats.errors_out++;
    }
    return true;
}

static void bridge_shadow_push(PCIemBridge *b, const char *why);
static void bridge_shadow_written(PCIemBridge *b, uint8_t bar,
                                  uint64_t offset, uint64_t size);

/* Is @m one of the hot messages that go on m2g once the rings are up? */
static bool bridge_on_ring(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    if (!b->rings_up) {
        return false;
    }
    switch (m->hdr.cmd) {
    case PCIEM_WIRE_CMD_MSI:
    case PCIEM_WIRE_CMD_INTX:
        return true;
    case PCIEM_WIRE_CMD_MMIO_WRITE:
        return m->hdr.flags & PCIEM_WIRE_FLAG_POSTED;
    case PCIEM_WIRE_CMD_MMIO_READ:
        return m->hdr.flags & PCIEM_WIRE_FLAG_REPLY;
    default:
        return false;
    }
}

/*
 * Puts @m on m2g as a record; a request takes the next id first (a FENCE
 * carries its count instead: it is not a request of the id sequence). A
 * full ring waits for the gateway to make room, at most timeout-ms; then
 * the connection is closed, so nothing is lost without a trace.
 */
static bool bridge_ring_push(PCIemBridge *b, struct pciem_wire_msg *m)
{
    uint8_t rec[PCIEM_RECORD_MAX];
    int n, rc;

    if (m->hdr.cmd != PCIEM_WIRE_CMD_FENCE &&
        !(m->hdr.flags & PCIEM_WIRE_FLAG_REPLY)) {
        m->hdr.id = b->next_id;
        b->next_id = bridge_id_after(b->next_id);
    }
    n = pciem_record_encode(m, rec, sizeof(rec));
    if (n < 0) {
        error_report("%s: cannot put %s on the ring: %s", bridge_id(b),
                     bridge_cmd_name(m->hdr.cmd), bridge_err_name(-n));
        return false;
    }
    if (b->ring_quiet) {
        void *slot = pciem_ring_reserve(&b->m2g);

        if (slot) {
            memcpy(slot, rec, n);
            pciem_ring_commit_quiet(&b->m2g);
            goto pushed;
        }
        /* Full: the gateway hears of what is there before we wait for it. */
        pciem_ring_notify(&b->m2g);
    }
    if (pciem_ring_full(&b->m2g)) {
        b->ring_full_waits++;
    }
    rc = pciem_ring_push_wait(&b->m2g, rec, n, b->timeout_ms);
    if (rc) {
        error_report("%s: the gateway took nothing off its ring for %u ms "
                     "(%s); closing the connection", bridge_id(b),
                     b->timeout_ms, strerror(-rc));
        b->stats.timeouts++;
        qemu_chr_fe_disconnect(&b->chr);
        return false;
    }
pushed:
    trace_pciem_bridge_tx(m->hdr.id, bridge_cmd_name(m->hdr.cmd),
                          m->hdr.flags, m->hdr.error,
                          n - PCIEM_WIRE_HEADER_SIZE);
    b->ring_records_out++;
    b->stats.frames_out++;
    b->stats.bytes_out += n;
    if (m->hdr.error) {
        b->stats.errors_out++;
    }
    return true;
}

/* The FENCE in front of our next socket frame, on m2g. */
static bool bridge_ring_fence(PCIemBridge *b)
{
    struct pciem_wire_msg f;

    memset(&f, 0, sizeof(f));
    f.hdr.cmd = PCIEM_WIRE_CMD_FENCE;
    f.hdr.flags = PCIEM_WIRE_FLAG_POSTED;
    f.hdr.id = f.body.fence.count = ++b->ring_sent;
    return bridge_ring_push(b, &f);
}

/* Encodes and sends @m. */
static bool bridge_send(PCIemBridge *b, struct pciem_wire_msg *m)
{
    if (b->state == BRIDGE_DOWN) {
        return false;
    }
    /* Invariant 3: the model's writes land before anything after them. */
    if (m->hdr.cmd != PCIEM_WIRE_CMD_DMA_WRITE && !bridge_flush_writes(b)) {
        return false;
    }
    /*
     * The host serves shadowed registers from its BAR memory: it is
     * current before anything the driver acts upon, a reply (the effect of
     * its request) or an interrupt.
     */
    if ((m->hdr.flags & PCIEM_WIRE_FLAG_REPLY) ||
        m->hdr.cmd == PCIEM_WIRE_CMD_MSI || m->hdr.cmd == PCIEM_WIRE_CMD_INTX) {
        /* @m's own push (or its FENCE's) wakes the gateway for the stores. */
        b->ring_defer_notify = true;
        bridge_shadow_push(b, bridge_cmd_name(m->hdr.cmd));
        b->ring_defer_notify = false;
    }
    if (b->state == BRIDGE_DOWN) {
        return false;
    }
    if (bridge_on_ring(b, m)) {
        return bridge_ring_push(b, m);
    }
    /* Our socket frames follow their FENCE on m2g (invariant 3). */
    if (b->rings_up && !bridge_ring_fence(b)) {
        return false;
    }
    b->out.size = 0;
    if (!bridge_encode(b, m, &b->out)) {
        return false;
    }
    if (!bridge_write(b, (const uint8_t *)b->out.data, b->out.size)) {
        b->dma_waiting = false;
        return false;
    }
    b->stats.frames_out++;
    return true;
}

/* A request from the bridge with no fields set but cmd and flags. */
static void bridge_msg_init(struct pciem_wire_msg *m, unsigned int cmd,
                            unsigned int flags)
{
    memset(m, 0, sizeof(*m));
    m->hdr.cmd = cmd;
    m->hdr.flags = flags;
}

/* The reply to request @hdr, with no fields set. */
static void bridge_reply_init(struct pciem_wire_msg *m,
                              const struct pciem_wire_header *hdr)
{
    bridge_msg_init(m, hdr->cmd, PCIEM_WIRE_FLAG_REPLY);
    m->hdr.id = hdr->id;
}

static void G_GNUC_PRINTF(4, 5)
bridge_send_error(PCIemBridge *b, uint32_t ref_id, int err,
                  const char *fmt, ...)
{
    struct pciem_wire_msg m;
    va_list ap;

    bridge_msg_init(&m, PCIEM_WIRE_CMD_ERROR, PCIEM_WIRE_FLAG_POSTED);
    m.hdr.error = err;
    m.body.error.ref_id = ref_id;
    va_start(ap, fmt);
    vsnprintf(m.body.error.message, sizeof(m.body.error.message), fmt, ap);
    va_end(ap);
    bridge_send(b, &m);
}

/*
 * Refuses frame @hdr with @err: a failed reply if it is a request that
 * expects one (and such a reply can be sent), else an ERROR about it.
 */
static void G_GNUC_PRINTF(4, 5)
bridge_refuse(PCIemBridge *b, const struct pciem_wire_header *hdr, int err,
              const char *fmt, ...)
{
    struct pciem_wire_msg m;
    char msg[PCIEM_WIRE_MESSAGE_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    trace_pciem_bridge_refused(hdr->id, bridge_cmd_name(hdr->cmd),
                               bridge_err_name(err), msg);

    if (!(hdr->flags & (PCIEM_WIRE_FLAG_REPLY | PCIEM_WIRE_FLAG_POSTED)) &&
        hdr->id) {
        bridge_reply_init(&m, hdr);
        m.hdr.error = err;
        pstrcpy(m.body.error_reply.message,
                sizeof(m.body.error_reply.message), msg);
        b->out.size = 0;
        /* Not every header can be answered (an undefined command). */
        if (pciem_wire_encode(&m, &b->out) == 0) {
            bridge_send(b, &m);
            return;
        }
    }
    bridge_send_error(b, hdr->id, err, "%s", msg);
}

/* ---- DMA: read-ahead cache and write combining ---- */

static void bridge_cache_invalidate(PCIemBridge *b)
{
    b->rcache_len = 0;
}

static bool bridge_cache_hit(PCIemBridge *b, uint64_t addr, unsigned size)
{
    return b->rcache_len && addr >= b->rcache_addr &&
           addr - b->rcache_addr <= b->rcache_len - size;
}

/* Sends the gathered writes as one posted DMA_WRITE. */
static bool bridge_flush_writes(PCIemBridge *b)
{
    struct pciem_wire_msg m;
    uint32_t len = b->wc_len;

    if (!len) {
        return true;
    }
    bridge_msg_init(&m, PCIEM_WIRE_CMD_DMA_WRITE, PCIEM_WIRE_FLAG_POSTED);
    m.body.dma_write.addr = b->wc_addr;
    m.body.dma_write.data.data = b->wc;
    m.body.dma_write.data.len = len;
    /* Cleared first: bridge_send() flushes, and must find nothing. */
    b->wc_len = 0;
    trace_pciem_bridge_dma_write(b->wc_addr, len);
    if (!bridge_send(b, &m)) {
        return false;
    }
    b->stats.dma_writes++;
    b->stats.dma_bytes += len;
    return true;
}

static bool bridge_is_stale(PCIemBridge *b, uint32_t id)
{
    unsigned i;

    for (i = 0; i < BRIDGE_STALE_IDS; i++) {
        if (b->stale_ids[i] == id) {
            b->stale_ids[i] = 0;
            return true;
        }
    }
    return false;
}

/*
 * The longest fill the bulk area takes wherever it starts (a fill keeps
 * its address's offset in BRIDGE_RWIN_ALIGN), 0 without the area.
 */
static uint64_t bridge_bulk_room(PCIemBridge *b)
{
    return b->bulk_len > BRIDGE_RWIN_ALIGN ? b->bulk_len - BRIDGE_RWIN_ALIGN
                                           : 0;
}

/*
 * One DMA_READ of @len bytes at @addr into the cache, or with @ahead one
 * DMA_READ_AHEAD (the cache then holds 1..@len bytes: rcache_len), waiting
 * at most timeout-ms for the reply. Returns 0 or the wire error (FAULT,
 * TIMEOUT, IO when the connection went away, or the reply's own).
 */
static int bridge_dma_fetch(PCIemBridge *b, uint64_t addr, uint32_t len,
                            bool ahead)
{
    struct pciem_wire_msg m;
    unsigned gen = b->generation;
    int64_t deadline;
    bool bulk;

    bridge_cache_invalidate(b);
    /*
     * The fill's place in the window: the slot after the last fill, at
     * @addr's offset modulo the alignment, from the start when it would
     * run past the end.
     */
    bulk = len <= bridge_bulk_room(b);
    b->fill_off = b->rwin_next + (addr & (BRIDGE_RWIN_ALIGN - 1));
    if (b->fill_off + len > (bulk ? b->bulk_len : b->rwin_size)) {
        b->fill_off = addr & (BRIDGE_RWIN_ALIGN - 1);
    }
    if (bulk) {
        /* The gateway puts the bytes in the window, not on the socket. */
        bridge_msg_init(&m, PCIEM_WIRE_CMD_DMA_READ_BULK, 0);
        m.body.dma_read_bulk.addr = addr;
        m.body.dma_read_bulk.len = len;
        m.body.dma_read_bulk.offset = b->fill_off;
        m.body.dma_read_bulk.ahead = ahead;
    } else if (ahead) {
        bridge_msg_init(&m, PCIEM_WIRE_CMD_DMA_READ_AHEAD, 0);
        m.body.dma_read_ahead.addr = addr;
        m.body.dma_read_ahead.len = len;
    } else {
        bridge_msg_init(&m, PCIEM_WIRE_CMD_DMA_READ, 0);
        m.body.dma_read.addr = addr;
        m.body.dma_read.len = len;
    }
    b->dma_wait_addr = addr;
    b->dma_wait_len = len;
    b->dma_wait_ahead = ahead;
    b->dma_wait_rc = PCIEM_WIRE_ERR_IO;
    if (!bridge_send(b, &m)) {
        return PCIEM_WIRE_ERR_IO;
    }
    b->stats.dma_reads++;
    deadline = bridge_deadline(b);
    while (b->dma_waiting) {
        if (b->generation != gen || b->fatal_rc) {
            b->dma_waiting = false;
            return PCIEM_WIRE_ERR_IO;
        }
        switch (bridge_poll(b, false, deadline)) {
        case BRIDGE_POLL_OK:
            break;
        case BRIDGE_POLL_TIMEOUT:
            error_report("%s: no reply to %s %u (0x%x bytes at 0x%"
                         PRIx64 ") in %u ms; the access fails",
                         bridge_id(b), bridge_cmd_name(m.hdr.cmd), m.hdr.id,
                         len, addr, b->timeout_ms);
            b->stats.timeouts++;
            b->dma_waiting = false;
            b->stale_ids[b->stale_next++ % BRIDGE_STALE_IDS] = m.hdr.id;
            return PCIEM_WIRE_ERR_TIMEOUT;
        case BRIDGE_POLL_GONE:
            b->dma_waiting = false;
            return PCIEM_WIRE_ERR_IO;
        }
    }
    if (!b->dma_wait_rc) {
        b->stats.dma_bytes += b->rcache_len;
    }
    return b->dma_wait_rc;
}

/*
 * The next length to try at @addr when reading up to @limit is known to be
 * refused (the mapping ends before it): about half way, on a page
 * boundary, at least to the end of @addr's page; 0 when the mapping ends
 * within that page.
 */
static uint64_t bridge_ra_probe(uint64_t addr, uint64_t limit)
{
    uint64_t page_end = (addr | (BRIDGE_PAGE_SIZE - 1)) + 1;
    uint64_t mid;

    if (limit <= page_end) {
        return 0;
    }
    mid = addr + (limit - addr) / 2;
    return MAX(page_end, mid & ~(uint64_t)(BRIDGE_PAGE_SIZE - 1)) - addr;
}

/*
 * Version 3: the read-ahead of @len bytes at @addr as one DMA_READ_AHEAD,
 * which the gateway answers with what is mapped from @addr on. A short
 * reply is where the mapping ends: the read-ahead stops growing, and later
 * ones of this run stop there. FAULT means @addr itself is not mapped, so
 * the access (and its page, as after a refused DMA_READ) fails at once; so
 * does an access that runs past the end of the mapping.
 */
static MemTxResult bridge_dma_fill_ahead(PCIemBridge *b, uint64_t addr,
                                         unsigned size, uint64_t len)
{
    uint64_t page = addr & ~(uint64_t)(BRIDGE_PAGE_SIZE - 1);
    int rc;

    if (b->ra_stop_valid && addr < b->ra_stop) {
        len = MIN(len, b->ra_stop - addr);
    }
    rc = bridge_dma_fetch(b, addr, len, true);
    trace_pciem_bridge_dma_read(addr, rc ? len : b->rcache_len,
                                bridge_err_name(rc));
    if (rc && rc != PCIEM_WIRE_ERR_FAULT) {
        b->dma_failed = true;
        return MEMTX_ERROR;
    }
    if (!rc) {
        if (b->rcache_len < len) {
            b->ra_stop = addr + b->rcache_len;
            b->ra_stop_valid = true;
            b->ra_capped = true;
        } else if (!b->ra_capped) {
            b->ra_next = MIN((uint64_t)b->ra_next * 2, b->read_ahead_max);
        }
        b->ra_end = addr + b->rcache_len;
        b->ra_end_valid = true;
        if (b->rcache_len >= size) {
            return MEMTX_OK;
        }
    }
    b->fault_valid = true;
    b->fault_page = page;
    return MEMTX_DECODE_ERROR;
}

/* The run that ended at ra_end goes into ra_remember. */
static void bridge_ra_run_over(PCIemBridge *b)
{
    if (b->ra_end_valid && b->ra_end > b->ra_run_start) {
        uint64_t run = b->ra_end - b->ra_run_start;

        b->ra_remember = MIN(MAX(run, b->ra_remember / 2),
                             (uint64_t)b->read_ahead_max);
    }
    b->ra_end_valid = false;
}

/* The first read-ahead of a run: read-ahead, or what was remembered. */
static uint32_t bridge_ra_first(PCIemBridge *b)
{
    if (!bridge_bulk_room(b) || b->ra_remember <= b->read_ahead) {
        return b->read_ahead;
    }
    return MIN(b->ra_remember, bridge_bulk_room(b));
}

/*
 * Fills the cache for an access of @size bytes at @addr. The first try is
 * the read-ahead; if the gateway refuses it (FAULT: it runs past what the
 * driver mapped), the end of the page, then just the access. Reading on
 * after such a refusal, the tries halve the distance to where it was
 * refused, so the tail of a mapping costs few round trips (from version 3
 * the read-ahead is not refused: bridge_dma_fill_ahead()). @size 0 (the
 * IOMMU, which does not know the access) stops before the access and
 * leaves that page to the I/O region's exact accesses.
 */
static MemTxResult bridge_dma_fill(PCIemBridge *b, uint64_t addr,
                                   unsigned size)
{
    /* Bytes from addr to 2^64, saturated. */
    uint64_t room = addr ? -addr : UINT64_MAX;
    uint64_t page = addr & ~(uint64_t)(BRIDGE_PAGE_SIZE - 1);
    uint64_t page_len = MIN(BRIDGE_PAGE_SIZE - (addr - page), room);
    bool ahead = false;
    uint64_t len;
    int rc;

    if (b->dma_failed || b->rwin_lost) {
        return MEMTX_ERROR;
    }
    if (b->fault_valid && ranges_overlap(addr, MAX(size, 1), b->fault_page,
                                         BRIDGE_PAGE_SIZE)) {
        return MEMTX_DECODE_ERROR;
    }
    if (!b->ra_end_valid || addr != b->ra_end) {
        /* Not where the last fill ended: a new run, small again. */
        bridge_ra_run_over(b);
        b->ra_run_start = addr;
        b->ra_next = bridge_ra_first(b);
        b->ra_capped = false;
        b->ra_limit_valid = false;
    }
    if (b->ra_limit_valid && addr >= b->ra_limit) {
        b->ra_limit_valid = false;
    }
    if (b->bulk_refused_valid && page == b->bulk_refused_page) {
        len = 0;
    } else if (b->fault_valid && page == b->fault_page + BRIDGE_PAGE_SIZE) {
        /* Right after a refused page, the read-ahead would be refused too. */
        len = page_len;
    } else if (b->ra_limit_valid) {
        len = bridge_ra_probe(addr, b->ra_limit);
    } else {
        len = MIN(b->ra_next, room);
        ahead = true;
    }
    if (ahead && b->version >= 3) {
        return bridge_dma_fill_ahead(b, addr, size, len);
    }
    while (len >= MAX(size, 1)) {
        rc = bridge_dma_fetch(b, addr, len, false);
        trace_pciem_bridge_dma_read(addr, len, bridge_err_name(rc));
        if (!rc) {
            if (ahead && !b->ra_capped) {
                b->ra_next = MIN((uint64_t)b->ra_next * 2, b->read_ahead_max);
            }
            b->ra_end = addr + len;
            b->ra_end_valid = true;
            return MEMTX_OK;
        }
        if (rc != PCIEM_WIRE_ERR_FAULT) {
            b->dma_failed = true;
            return MEMTX_ERROR;
        }
        if (len <= page_len) {
            break;
        }
        /* The mapping ends before addr + len: no more growth. */
        b->ra_limit = addr + len;
        b->ra_limit_valid = true;
        b->ra_capped = true;
        len = ahead ? page_len : bridge_ra_probe(addr, b->ra_limit);
        ahead = false;
    }
    if (!size) {
        b->bulk_refused_valid = true;
        b->bulk_refused_page = page;
        return MEMTX_DECODE_ERROR;
    }
    if (size < page_len || len < size) {
        rc = bridge_dma_fetch(b, addr, size, false);
        trace_pciem_bridge_dma_read(addr, size, bridge_err_name(rc));
        if (!rc) {
            b->ra_end = addr + size;
            b->ra_end_valid = true;
            return MEMTX_OK;
        }
        if (rc != PCIEM_WIRE_ERR_FAULT) {
            b->dma_failed = true;
            return MEMTX_ERROR;
        }
    }
    b->fault_valid = true;
    b->fault_page = page;
    return MEMTX_DECODE_ERROR;
}

static MemTxResult bridge_dma_read(void *opaque, hwaddr addr, uint64_t *data,
                                   unsigned size, MemTxAttrs attrs)
{
    PCIemBridge *b = opaque;
    MemTxResult r;

    /* The cache, and what failed, live until the model's work is over. */
    bridge_kick(b);
    if (!bridge_cache_hit(b, addr, size)) {
        /* Invariant 3: the host sees the model's writes before its reads. */
        if (!bridge_flush_writes(b)) {
            return MEMTX_ERROR;
        }
        r = bridge_dma_fill(b, addr, size);
        if (r != MEMTX_OK) {
            *data = 0;
            return r;
        }
    }
    *data = ldn_le_p(b->rcache + (addr - b->rcache_addr), size);
    return MEMTX_OK;
}

static MemTxResult bridge_dma_write(void *opaque, hwaddr addr, uint64_t data,
                                    unsigned size, MemTxAttrs attrs)
{
    PCIemBridge *b = opaque;
    uint64_t end = b->wc_addr + b->wc_len;

    if (b->wc_len &&
        (addr != end || !end || b->wc_len + size > b->write_combine)) {
        if (!bridge_flush_writes(b)) {
            return MEMTX_ERROR;
        }
    }
    if (!b->wc_len) {
        b->wc_addr = addr;
    }
    stn_le_p(b->wc + b->wc_len, size, data);
    b->wc_len += size;
    if (bridge_cache_hit(b, addr, size)) {
        stn_le_p(b->rcache + (addr - b->rcache_addr), size, data);
    } else if (b->rcache_len) {
        /* Partly inside, or not at all: not worth the arithmetic. */
        bridge_cache_invalidate(b);
    }
    /* Writes never linger: they go out when the model's work is over. */
    bridge_kick(b);
    return MEMTX_OK;
}

/*
 * The IOMMU's translation of bus address @addr. A read the cache holds
 * (or can be filled for) goes to the cache in the RAM window: the largest
 * aligned block around @addr inside the cache, so that QEMU copies it in
 * one memcpy. Everything else goes, one page at a time, to the I/O region
 * (at the same address), whose callbacks gather writes and give reads at
 * a mapping's edge, faults and failures their exact answers.
 *
 * Nothing here outlives the call: address_space_rw() translates every
 * piece of an access again, so a cache dropped (at a gateway request) or
 * refilled is never read through an old translation. The exception is a
 * pointer from dma_memory_map(), which keeps its bytes because fills take
 * turns in the window (BRIDGE_RWIN_FILLS).
 */
static IOMMUTLBEntry bridge_dma_translate(IOMMUMemoryRegion *iommu,
                                         hwaddr addr, IOMMUAccessFlags flag,
                                         int iommu_idx)
{
    PCIemBridge *b = container_of(iommu, PCIemBridge, dma);
    IOMMUTLBEntry e = {
        .target_as = &b->dma_io_as,
        .iova = addr & ~(hwaddr)(BRIDGE_PAGE_SIZE - 1),
        .translated_addr = addr & ~(hwaddr)(BRIDGE_PAGE_SIZE - 1),
        .addr_mask = BRIDGE_PAGE_SIZE - 1,
        .perm = IOMMU_RW,
    };
    uint64_t mask, end;

    /*
     * Only the model's own reads, under the BQL like the I/O region's
     * callbacks (an iothread's access takes that path, which locks).
     */
    if (flag != IOMMU_RO || !bql_locked() || b->state != BRIDGE_READY) {
        return e;
    }
    bridge_kick(b);
    if (!bridge_cache_hit(b, addr, 1)) {
        if (!bridge_flush_writes(b) || bridge_dma_fill(b, addr, 0)) {
            return e;
        }
    }
    /* The largest aligned block around addr inside the cache. */
    end = b->rcache_addr + b->rcache_len - 1;
    for (mask = BRIDGE_RWIN_ALIGN - 1; mask; mask >>= 1) {
        if ((addr & ~mask) >= b->rcache_addr && (addr | mask) <= end) {
            break;
        }
    }
    e.target_as = &b->rwin_as;
    e.iova = addr & ~mask;
    e.translated_addr = b->rcache_off + (e.iova - b->rcache_addr);
    e.addr_mask = mask;
    e.perm = IOMMU_RO;
    return e;
}

/* DMA works while the gateway has the device. */
static bool bridge_dma_accepts(void *opaque, hwaddr addr, unsigned size,
                               bool is_write, MemTxAttrs attrs)
{
    PCIemBridge *b = opaque;

    return b->state == BRIDGE_READY;
}

/*
 * QEMU splits every access to an I/O region into <= 8-byte calls; the
 * cache and the write buffer turn those back into bulk transfers.
 */
static const MemoryRegionOps bridge_dma_ops = {
    .read_with_attrs = bridge_dma_read,
    .write_with_attrs = bridge_dma_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
        .accepts = bridge_dma_accepts,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
};

/* ---- interrupts ---- */

static MSIMessage bridge_msi_prepare_message(PCIDevice *pdev,
                                             unsigned int vector)
{
    return (MSIMessage) { .address = BRIDGE_MSG_MSI, .data = vector };
}

static MSIMessage bridge_msix_prepare_message(PCIDevice *pdev,
                                              unsigned int vector)
{
    return (MSIMessage) { .address = BRIDGE_MSG_MSIX, .data = vector };
}

static void bridge_msi_trigger(PCIDevice *pdev, MSIMessage msg)
{
    PCIemBridge *b = bridge_instance;
    struct pciem_wire_msg m;

    trace_pciem_bridge_msi(msg.address, msg.data);
    if (!b || b->state != BRIDGE_READY) {
        return;
    }
    /* The model may go on changing registers after the interrupt. */
    bridge_kick(b);
    bridge_msg_init(&m, PCIEM_WIRE_CMD_MSI, PCIEM_WIRE_FLAG_POSTED);
    m.body.msi.kind = msg.address;
    m.body.msi.vector = msg.data;
    if (bridge_send(b, &m)) {
        b->stats.interrupts++;
    }
}

static void bridge_send_intx(PCIemBridge *b)
{
    struct pciem_wire_msg m;

    bridge_msg_init(&m, PCIEM_WIRE_CMD_INTX, PCIEM_WIRE_FLAG_POSTED);
    m.body.intx.level = b->intx_level;
    if (bridge_send(b, &m)) {
        b->intx_sent = b->intx_level;
        b->stats.interrupts++;
    }
}

/* The root bus's set_irq: our line goes to the gateway, others on. */
static void bridge_set_irq(void *opaque, int irq_num, int level)
{
    PCIemBridge *b = opaque;

    if (irq_num != b->irq_num) {
        if (b->saved_set_irq) {
            b->saved_set_irq(b->saved_irq_opaque, irq_num, level);
        }
        return;
    }
    trace_pciem_bridge_intx(level);
    b->intx_level = level;
    if (b->state == BRIDGE_READY && b->intx_sent != b->intx_level) {
        bridge_kick(b);
        bridge_send_intx(b);
    }
}

/* pciem on the host applies the real masks; the model's stay open. */
static void bridge_unmask_msix(PCIemBridge *b)
{
    int v;

    for (v = 0; v < b->pdev->msix_entries_nr; v++) {
        msix_set_mask(b->pdev, v, false);
    }
}

/* ---- the gateway's requests ---- */

/* Is this byte of config space the host's (not applied to the model)? */
static const char *bridge_config_owner(PCIemBridge *b, uint32_t addr)
{
    PCIDevice *pdev = b->pdev;
    uint8_t cap = pdev->msi_cap;

    if (addr >= PCI_BASE_ADDRESS_0 && addr < PCI_BASE_ADDRESS_5 + 4) {
        return "BAR";
    }
    if (addr >= PCI_ROM_ADDRESS && addr < PCI_ROM_ADDRESS + 4) {
        return "expansion ROM";
    }
    if (msi_present(pdev)) {
        bool is64 = pci_get_word(pdev->config + cap + PCI_MSI_FLAGS) &
                    PCI_MSI_FLAGS_64BIT;
        uint32_t data = cap + (is64 ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32);

        if (addr >= cap + PCI_MSI_ADDRESS_LO && addr < data + 2) {
            return "MSI address/data";
        }
    }
    return NULL;
}

static bool bridge_config_is_models(PCIemBridge *b, uint32_t addr,
                                    uint32_t n)
{
    uint32_t k;

    for (k = 0; k < n; k++) {
        if (bridge_config_owner(b, addr + k)) {
            return false;
        }
    }
    return true;
}

/*
 * Applies a config write through the device's config_write, less the
 * bytes the host owns (BARs, ROM, MSI address and data: the host places
 * and routes the device, the model must not see those).
 */
static void bridge_config_write(PCIemBridge *b, uint32_t addr, uint32_t size,
                                uint32_t val)
{
    uint32_t limit = pci_config_size(b->pdev);
    uint32_t i = 0, applied = 0, n;
    const char *owner;

    if (addr + size > limit) {
        trace_pciem_bridge_config_skip(addr, size, val, "beyond config space");
        return;
    }
    while (i < size) {
        owner = bridge_config_owner(b, addr + i);
        if (owner) {
            trace_pciem_bridge_config_skip(addr + i, 1,
                                           extract32(val, 8 * i, 8), owner);
            i++;
            continue;
        }
        /* The longest aligned 4, 2 or 1 byte piece the host does not own. */
        for (n = 4; n > 1; n /= 2) {
            if (i + n <= size && !((addr + i) % n) &&
                bridge_config_is_models(b, addr + i, n)) {
                break;
            }
        }
        pci_host_config_write_common(b->pdev, addr + i, limit,
                                     extract32(val, 8 * i, 8 * n), n);
        applied |= MAKE_64BIT_MASK(i, n);
        i += n;
    }
    trace_pciem_bridge_config_write(addr, size, val, applied);
}

/* Where an MMIO access may go: a BAR, outside the MSI-X structures. */
static int bridge_check_mmio(PCIemBridge *b, uint8_t bar, uint64_t offset,
                             uint64_t size, char *why, size_t why_len)
{
    PCIIORegion *r;
    BridgeRange ranges[2] = { b->msix_table, b->msix_pba };
    unsigned i;

    if (bar >= PCI_ROM_SLOT || !b->pdev->io_regions[bar].size) {
        snprintf(why, why_len, "the device has no BAR %u", bar);
        return PCIEM_WIRE_ERR_NO_DEVICE;
    }
    r = &b->pdev->io_regions[bar];
    if (offset >= r->size || size > r->size - offset) {
        snprintf(why, why_len, "0x%" PRIx64 " bytes at 0x%" PRIx64 " leave "
                 "BAR %u (0x%" PRIx64 " bytes)", size, offset, bar, r->size);
        return PCIEM_WIRE_ERR_NO_DEVICE;
    }
    for (i = 0; b->desc.msix_vectors && bar == b->desc.msix_bar &&
         i < ARRAY_SIZE(ranges); i++) {
        if (ranges_overlap(offset, size, ranges[i].start, ranges[i].size)) {
            snprintf(why, why_len, "0x%" PRIx64 " in BAR %u is the MSI-X "
                     "table or PBA, which the host owns", offset, bar);
            return PCIEM_WIRE_ERR_NO_DEVICE;
        }
    }
    return 0;
}

static void bridge_mmio_write(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    const struct pciem_wire_mmio_write *w = &m->body.mmio_write;
    char why[PCIEM_WIRE_MESSAGE_MAX];
    struct pciem_wire_msg reply;
    uint8_t buf[8];
    MemTxResult r;
    int err;

    err = bridge_check_mmio(b, w->bar, w->offset, w->size, why, sizeof(why));
    if (err) {
        bridge_refuse(b, &m->hdr, err, "MMIO_WRITE: %s", why);
        return;
    }
    bridge_shadow_written(b, w->bar, w->offset, w->size);
    stq_le_p(buf, w->value);
    r = address_space_write(&b->bar_as[w->bar], w->offset,
                            MEMTXATTRS_UNSPECIFIED, buf, w->size);
    trace_pciem_bridge_mmio_write(w->bar, w->offset, w->size, w->value, r);
    b->stats.mmio_writes++;
    if (r != MEMTX_OK) {
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_INVALID, "MMIO_WRITE: the "
                      "model refused %u bytes at 0x%" PRIx64 " in BAR %u",
                      w->size, w->offset, w->bar);
        return;
    }
    if (!(m->hdr.flags & PCIEM_WIRE_FLAG_POSTED)) {
        bridge_reply_init(&reply, &m->hdr);
        bridge_send(b, &reply);
    }
}

static void bridge_mmio_read(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    const struct pciem_wire_mmio_read *rd = &m->body.mmio_read;
    char why[PCIEM_WIRE_MESSAGE_MAX];
    struct pciem_wire_msg reply;
    uint8_t buf[8] = { 0 };
    MemTxResult r;
    int err;

    err = bridge_check_mmio(b, rd->bar, rd->offset, rd->size, why,
                            sizeof(why));
    if (err) {
        bridge_refuse(b, &m->hdr, err, "MMIO_READ: %s", why);
        return;
    }
    r = address_space_read(&b->bar_as[rd->bar], rd->offset,
                           MEMTXATTRS_UNSPECIFIED, buf, rd->size);
    trace_pciem_bridge_mmio_read(rd->bar, rd->offset, rd->size,
                                 ldq_le_p(buf), r);
    b->stats.mmio_reads++;
    if (r != MEMTX_OK) {
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_INVALID, "MMIO_READ: the "
                      "model refused %u bytes at 0x%" PRIx64 " in BAR %u",
                      rd->size, rd->offset, rd->bar);
        return;
    }
    bridge_reply_init(&reply, &m->hdr);
    reply.body.mmio_read_reply.value = ldq_le_p(buf);
    bridge_send(b, &reply);
}

static void bridge_handle_config_read(PCIemBridge *b,
                                      const struct pciem_wire_msg *m)
{
    const struct pciem_wire_config_read *rd = &m->body.config_read;
    struct pciem_wire_msg reply;
    uint32_t val;

    val = pci_host_config_read_common(b->pdev, rd->offset,
                                      pci_config_size(b->pdev), rd->size);
    val = extract32(val, 0, 8 * rd->size);
    trace_pciem_bridge_config_read(rd->offset, rd->size, val);
    b->stats.config_reads++;
    bridge_reply_init(&reply, &m->hdr);
    reply.body.config_read_reply.value = val;
    bridge_send(b, &reply);
}

static void bridge_handle_config_write(PCIemBridge *b,
                                       const struct pciem_wire_msg *m)
{
    const struct pciem_wire_config_write *w = &m->body.config_write;
    struct pciem_wire_msg reply;

    bridge_config_write(b, w->offset, w->size, w->value);
    b->stats.config_writes++;
    bridge_reply_init(&reply, &m->hdr);
    bridge_send(b, &reply);
}

static void bridge_handle_reset(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    struct pciem_wire_msg reply;

    trace_pciem_bridge_reset(m->body.reset.kind == PCIEM_WIRE_RESET_KIND_FLR ?
                             "FLR" : "bus");
    /* What the model wrote before the reset still lands. */
    bridge_flush_writes(b);
    /* FLR and a bus reset look the same from inside the function. */
    pci_device_reset(b->pdev);
    bridge_cache_invalidate(b);
    bridge_unmask_msix(b);
    b->stats.resets++;
    bridge_reply_init(&reply, &m->hdr);
    bridge_send(b, &reply);
}

static void bridge_handle_stats(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    struct pciem_wire_msg reply;

    bridge_flush_writes(b);
    bridge_reply_init(&reply, &m->hdr);
    reply.body.stats_reply = b->stats;
    trace_pciem_bridge_stats(b->stats.mmio_writes, b->stats.dma_reads);
    bridge_send(b, &reply);
}

static void bridge_handle_error(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    b->stats.errors_in++;
    trace_pciem_bridge_error_rx(m->body.error.ref_id,
                                bridge_err_name(m->hdr.error),
                                m->body.error.message);
    error_report("%s: the gateway reports %s about frame %u: %s",
                 bridge_id(b), bridge_err_name(m->hdr.error),
                 m->body.error.ref_id, m->body.error.message);
}

static void bridge_handle_rings(PCIemBridge *b,
                                const struct pciem_wire_msg *m);

/* A well-formed request from the gateway, in its turn. */
static void bridge_handle_request(PCIemBridge *b,
                                  const struct pciem_wire_msg *m)
{
    const struct pciem_wire_header *hdr = &m->hdr;

    /* A doorbell may follow host writes the cache does not have. */
    bridge_cache_invalidate(b);

    switch (hdr->cmd) {
    case PCIEM_WIRE_CMD_ERROR:
        bridge_handle_error(b, m);
        return;
    case PCIEM_WIRE_CMD_HELLO:
    case PCIEM_WIRE_CMD_DEVICE:
    case PCIEM_WIRE_CMD_INTX:
    case PCIEM_WIRE_CMD_MSI:
    case PCIEM_WIRE_CMD_DMA_READ:
    case PCIEM_WIRE_CMD_DMA_READ_AHEAD:
    case PCIEM_WIRE_CMD_DMA_READ_BULK:
    case PCIEM_WIRE_CMD_DMA_WRITE:
        bridge_refuse(b, hdr, PCIEM_WIRE_ERR_STATE, "%s is the model's to "
                      "send", bridge_cmd_name(hdr->cmd));
        return;
    }
    if (hdr->cmd == PCIEM_WIRE_CMD_FENCE) {
        bridge_refuse(b, hdr, PCIEM_WIRE_ERR_STATE, "FENCE goes on a ring, "
                      "never on the socket");
        return;
    }
    if (b->state == BRIDGE_HELLO) {
        bridge_refuse(b, hdr, PCIEM_WIRE_ERR_STATE, "%s before the HELLO "
                      "reply", bridge_cmd_name(hdr->cmd));
        return;
    }
    if (hdr->cmd == PCIEM_WIRE_CMD_STATS) {
        bridge_handle_stats(b, m);
        return;
    }
    if (b->state != BRIDGE_READY) {
        bridge_refuse(b, hdr, PCIEM_WIRE_ERR_STATE, "%s before the DEVICE "
                      "reply", bridge_cmd_name(hdr->cmd));
        return;
    }
    switch (hdr->cmd) {
    case PCIEM_WIRE_CMD_MMIO_WRITE:
        bridge_mmio_write(b, m);
        break;
    case PCIEM_WIRE_CMD_MMIO_READ:
        bridge_mmio_read(b, m);
        break;
    case PCIEM_WIRE_CMD_CONFIG_READ:
        bridge_handle_config_read(b, m);
        break;
    case PCIEM_WIRE_CMD_CONFIG_WRITE:
        bridge_handle_config_write(b, m);
        break;
    case PCIEM_WIRE_CMD_RESET:
        bridge_handle_reset(b, m);
        break;
    case PCIEM_WIRE_CMD_RINGS:
        bridge_handle_rings(b, m);
        break;
    case PCIEM_WIRE_CMD_BULK:
        bridge_handle_bulk(b, m);
        break;
    default:
        bridge_refuse(b, hdr, PCIEM_WIRE_ERR_UNSUPPORTED, "%s is not "
                      "implemented", bridge_cmd_name(hdr->cmd));
        break;
    }
}

/* ---- the rings (version 2) ---- */

/*
 * Keeps the descriptors the socket brought with what was just read: the
 * RINGS frame's (they come with its first byte). Any kept before are
 * closed: descriptors belong to the latest frame that carried some. The
 * chardev made them blocking (it does so for every descriptor it takes);
 * the eventfds are shared with the gateway, whose reads must not block.
 */
static void bridge_take_fds(PCIemBridge *b)
{
    int fds[16];
    int n = qemu_chr_fe_get_msgfds(&b->chr, fds, ARRAY_SIZE(fds));
    int i;

    if (n <= 0) {
        return;
    }
    for (i = 0; i < MIN(b->n_ring_fds, BRIDGE_RING_FDS); i++) {
        close(b->ring_fds[i]);
    }
    b->n_ring_fds = n;
    for (i = 0; i < n; i++) {
        if (i < BRIDGE_RING_FDS) {
            b->ring_fds[i] = fds[i];
            fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        } else {
            close(fds[i]);
        }
    }
}

static void bridge_close_kept_fds(PCIemBridge *b)
{
    unsigned i;

    for (i = 0; i < MIN(b->n_ring_fds, BRIDGE_RING_FDS); i++) {
        close(b->ring_fds[i]);
        b->ring_fds[i] = -1;
    }
    b->n_ring_fds = 0;
}

static void bridge_rings_down(PCIemBridge *b)
{
    int i;

    if (b->rings_up) {
        qemu_set_fd_handler(b->ring_evfd[0], NULL, NULL, NULL);
        b->rings_up = false;
    }
    if (b->ring_map) {
        munmap(b->ring_map, b->ring_map_len);
        b->ring_map = NULL;
    }
    for (i = 0; i < ARRAY_SIZE(b->ring_evfd); i++) {
        if (b->ring_evfd[i] >= 0) {
            close(b->ring_evfd[i]);
            b->ring_evfd[i] = -1;
        }
    }
    bridge_close_kept_fds(b);
}

static void bridge_process(PCIemBridge *b);

/* The gateway published g2m records while we said we were idle. */
static void bridge_ring_readable(void *opaque)
{
    PCIemBridge *b = opaque;

    pciem_ring_drain(b->ring_evfd[0]);
    if (b->busy) {
        bridge_kick(b);
        return;
    }
    bridge_process(b);
}

/*
 * Whether the memory file @fd holds at least @bytes and can never hold
 * fewer: a file the gateway could shrink would turn our next access to
 * the mapping into SIGBUS. The reason for a no goes into @why.
 */
static bool bridge_memfd_ok(int fd, uint64_t bytes, char *why, size_t why_len)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);

    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < bytes) {
        snprintf(why, why_len, "the memory file holds less than the 0x%"
                 PRIx64 " bytes it should", bytes);
        return false;
    }
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        snprintf(why, why_len, "the memory file is not sealed against "
                 "shrinking (F_SEAL_SHRINK)");
        return false;
    }
    return true;
}

/*
 * Maps the memfd and attaches g2m (we consume) and m2g (we produce) as the
 * request describes. Returns 0, or the wire error with the reason in @why.
 */
static int bridge_rings_attach(PCIemBridge *b, const struct pciem_wire_rings *r,
                               char *why, size_t why_len)
{
    size_t bytes;
    uint64_t end;
    void *map;
    int i;

    if (b->n_ring_fds != BRIDGE_RING_FDS) {
        snprintf(why, why_len, "%u file descriptors came with it, want %u",
                 b->n_ring_fds, BRIDGE_RING_FDS);
        return PCIEM_WIRE_ERR_INVALID;
    }
    if (!pciem_ring_geometry_ok(r->slot_size, r->slot_count) ||
        r->slot_size < PCIEM_RECORD_MAX) {
        snprintf(why, why_len, "rings of %u slots of %u bytes",
                 r->slot_count, r->slot_size);
        return PCIEM_WIRE_ERR_INVALID;
    }
    bytes = pciem_ring_bytes(r->slot_size, r->slot_count);
    end = MAX(r->g2m_offset, r->m2g_offset) + bytes;
    if (r->g2m_offset > SIZE_MAX - bytes || r->m2g_offset > SIZE_MAX - bytes ||
        ranges_overlap(r->g2m_offset, bytes, r->m2g_offset, bytes)) {
        snprintf(why, why_len, "rings at 0x%" PRIx64 " and 0x%" PRIx64
                 " (0x%zx bytes each) overlap", r->g2m_offset, r->m2g_offset,
                 bytes);
        return PCIEM_WIRE_ERR_INVALID;
    }
    if (!bridge_memfd_ok(b->ring_fds[0], end, why, why_len)) {
        return PCIEM_WIRE_ERR_INVALID;
    }
    map = mmap(NULL, end, PROT_READ | PROT_WRITE, MAP_SHARED, b->ring_fds[0],
               0);
    if (map == MAP_FAILED) {
        snprintf(why, why_len, "mmap: %s", strerror(errno));
        return PCIEM_WIRE_ERR_IO;
    }
    if (pciem_ring_attach(&b->g2m, (uint8_t *)map + r->g2m_offset, bytes,
                          PCIEM_RING_CONSUMER, b->ring_fds[1],
                          b->ring_fds[2]) ||
        pciem_ring_attach(&b->m2g, (uint8_t *)map + r->m2g_offset, bytes,
                          PCIEM_RING_PRODUCER, b->ring_fds[3],
                          b->ring_fds[4]) ||
        b->g2m.slot_size != r->slot_size ||
        b->m2g.slot_size != r->slot_size ||
        b->g2m.slot_count != r->slot_count ||
        b->m2g.slot_count != r->slot_count) {
        munmap(map, end);
        snprintf(why, why_len, "a ring header is not what RINGS says");
        return PCIEM_WIRE_ERR_INVALID;
    }
    b->ring_map = map;
    b->ring_map_len = end;
    close(b->ring_fds[0]);
    for (i = 0; i < ARRAY_SIZE(b->ring_evfd); i++) {
        b->ring_evfd[i] = b->ring_fds[i + 1];
        b->ring_fds[i + 1] = -1;
    }
    b->ring_fds[0] = -1;
    b->n_ring_fds = 0;
    return 0;
}

/*
 * RINGS: attach, answer on the socket, and from then on the hot path is on
 * the rings; the gateway's frames after this one follow their FENCEs. A
 * refusal leaves everything on the socket.
 */
static void bridge_handle_rings(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    const struct pciem_wire_rings *r = &m->body.rings;
    char why[PCIEM_WIRE_MESSAGE_MAX];
    struct pciem_wire_msg reply;
    int err;

    if (b->rings_up || b->version < 2) {
        bridge_close_kept_fds(b);
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_STATE, b->rings_up ?
                      "a second RINGS" : "RINGS at version %u", b->version);
        return;
    }
    err = bridge_rings_attach(b, r, why, sizeof(why));
    if (err) {
        bridge_close_kept_fds(b);
        warn_report("%s: RINGS refused: %s; the socket carries everything",
                    bridge_id(b), why);
        bridge_refuse(b, &m->hdr, err, "RINGS: %s", why);
        return;
    }
    bridge_reply_init(&reply, &m->hdr);
    if (!bridge_send(b, &reply)) {
        bridge_rings_down(b);
        return;
    }
    b->rings_up = true;
    b->ring_base = b->cur_seq;
    b->ring_fence = 0;
    b->ring_sent = 0;
    qemu_set_fd_handler(b->ring_evfd[0], bridge_ring_readable, NULL, b);
    trace_pciem_bridge_rings(r->slot_count, r->slot_size);
    info_report("%s: the hot path rides the rings (%u slots of %u bytes each "
                "way)", bridge_id(b), r->slot_count, r->slot_size);
}

/* ---- the bulk area (version 4) ---- */

/*
 * Gives the window's first @len bytes private memory again (they were the
 * bulk area, or a failed try at mapping it). Returns false if that failed.
 */
static bool bridge_rwin_private(PCIemBridge *b, size_t len)
{
    return mmap(b->rwin_ptr, len, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED;
}

static void bridge_bulk_down(PCIemBridge *b)
{
    if (b->bulk_len) {
        if (!bridge_rwin_private(b, b->bulk_len)) {
            /* The window keeps the gateway's pages: harmless, and rare. */
            warn_report("%s: the read window keeps the bulk area: %s",
                        bridge_id(b), strerror(errno));
        }
        b->bulk_len = 0;
    }
}

/*
 * BULK: map the memfd it carries over the start of the RAM window (the
 * gateway writes it, QEMU copies from it as from the cache) and answer;
 * from then on DMA reads that fit go as DMA_READ_BULK. A refusal leaves
 * them on the socket.
 */
static void bridge_handle_bulk(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    uint32_t size = m->body.bulk.size;
    char why[PCIEM_WIRE_MESSAGE_MAX];
    struct pciem_wire_msg reply;
    size_t len;

    if (b->bulk_len || b->version < 4) {
        bridge_close_kept_fds(b);
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_STATE, b->bulk_len ?
                      "a second BULK" : "BULK at version %u", b->version);
        return;
    }
    if (b->n_ring_fds != 1) {
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_INVALID, "BULK: %u file "
                      "descriptors, want 1", b->n_ring_fds);
        bridge_close_kept_fds(b);
        return;
    }
    if (!bridge_memfd_ok(b->ring_fds[0], size, why, sizeof(why))) {
        bridge_close_kept_fds(b);
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_INVALID, "BULK: %s", why);
        return;
    }
    /* The window is at least read-ahead-max: what it holds is enough. */
    len = MIN(size, b->rwin_size);
    bridge_cache_invalidate(b);
    if (mmap(b->rwin_ptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             b->ring_fds[0], 0) == MAP_FAILED) {
        int err = errno;

        bridge_close_kept_fds(b);
        if (!bridge_rwin_private(b, len)) {
            error_report("%s: the read window is lost (%s); DMA reads fail "
                         "from now on", bridge_id(b), strerror(errno));
            b->rwin_lost = true;
        }
        bridge_refuse(b, &m->hdr, PCIEM_WIRE_ERR_IO, "BULK: mmap: %s",
                      strerror(err));
        return;
    }
    bridge_close_kept_fds(b);
    b->bulk_len = len;
    bridge_reply_init(&reply, &m->hdr);
    if (!bridge_send(b, &reply)) {
        bridge_bulk_down(b);
        return;
    }
    trace_pciem_bridge_bulk(len);
}

/* May the gateway's frame @f be handled: is its FENCE, if any, taken? */
static bool bridge_frame_due(PCIemBridge *b, const BridgeFrame *f)
{
    return !b->rings_up ||
           (uint64_t)f->seq <= (uint64_t)b->ring_base + b->ring_fence;
}

/* Is it g2m's turn: every socket frame up to the last FENCE arrived? */
static bool bridge_ring_turn(PCIemBridge *b)
{
    return b->rings_up &&
           (uint64_t)b->rx_seq >= (uint64_t)b->ring_base + b->ring_fence;
}

/*
 * g2m is empty: says so (the gateway then writes the data eventfd for its
 * next record, and the fd handler runs), after one more look.
 */
static bool bridge_ring_idle(PCIemBridge *b)
{
    struct pciem_ring_shared *sh = b->g2m.sh;

    atomic_store_explicit(&sh->cons_sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (pciem_ring_available(&b->g2m) != 0) {
        atomic_store_explicit(&sh->cons_sleeping, 0, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&sh->consumer_sleeps, 1, memory_order_relaxed);
    return true;
}

/*
 * One g2m record, in its turn: a FENCE lets the socket frames up to its
 * count go next; a request is handled like one off the socket, in the
 * same id sequence. Something that cannot be a record closes the
 * connection (fatal_rc). Returns whether it was a request.
 */
static bool bridge_take_record(PCIemBridge *b, const uint8_t *rec, size_t len)
{
    struct pciem_wire_msg m;
    int n = pciem_record_decode(rec, len, &m);

    if (n < 0) {
        error_report("%s: a corrupt record on the gateway's ring (%s); "
                     "closing the connection", bridge_id(b),
                     bridge_err_name(-n));
        b->stats.errors_in++;
        b->fatal_rc = -n;
        b->fatal_ref = m.hdr.id;
        return false;
    }
    trace_pciem_bridge_rx(m.hdr.id, bridge_cmd_name(m.hdr.cmd), m.hdr.flags,
                          m.hdr.error, m.hdr.size);
    b->ring_records_in++;
    b->stats.frames_in++;
    b->stats.bytes_in += n;
    if (m.hdr.cmd == PCIEM_WIRE_CMD_FENCE) {
        if (m.body.fence.count != b->ring_fence + 1) {
            error_report("%s: FENCE %u on the gateway's ring after %u; "
                         "closing the connection", bridge_id(b),
                         m.body.fence.count, b->ring_fence);
            b->stats.errors_in++;
            b->fatal_rc = PCIEM_WIRE_ERR_STATE;
            b->fatal_ref = m.hdr.id;
            return false;
        }
        trace_pciem_bridge_fence(m.body.fence.count);
        b->ring_fence = m.body.fence.count;
        return false;
    }
    if (m.hdr.flags & PCIEM_WIRE_FLAG_REPLY) {
        b->stats.errors_in++;
        bridge_refuse(b, &m.hdr, PCIEM_WIRE_ERR_STATE, "a %s reply on the "
                      "ring: the bridge asks nothing there",
                      bridge_cmd_name(m.hdr.cmd));
        return false;
    }
    if (m.hdr.id != b->peer_id) {
        b->stats.errors_in++;
        bridge_refuse(b, &m.hdr, PCIEM_WIRE_ERR_STATE, "request id %u, "
                      "expected %u", m.hdr.id, b->peer_id);
        b->peer_id = bridge_id_after(m.hdr.id);
        return true;
    }
    b->peer_id = bridge_id_after(m.hdr.id);
    bridge_handle_request(b, &m);
    return true;
}

/* ---- shadowed registers ---- */

/*
 * Takes the gateway's shadow list (the DEVICE reply): whole dwords inside
 * the device's BARs, clear of the MSI-X structures and of each other, at
 * most BRIDGE_SHADOW_MAX bytes in all. Returns 0, or the wire error with
 * the reason in @why.
 */
static int bridge_take_shadow(PCIemBridge *b,
                              const struct pciem_wire_device_reply *r,
                              char *why, size_t why_len)
{
    uint64_t total = 0;
    unsigned i, j;
    int err;

    for (i = 0; i < r->n_shadow; i++) {
        const struct pciem_wire_region *s = &r->shadow[i];
        size_t n = MIN(snprintf(why, why_len, "region %u: ", i), why_len);

        err = bridge_check_mmio(b, s->bar, s->offset, s->size, why + n,
                                why_len - n);
        if (err) {
            return err;
        }
        if ((s->offset | s->size) % 4) {
            snprintf(why, why_len, "region %u (BAR %u, 0x%" PRIx64 " bytes "
                     "at 0x%" PRIx64 ") is not whole aligned dwords", i,
                     s->bar, s->size, s->offset);
            return PCIEM_WIRE_ERR_INVALID;
        }
        for (j = 0; j < i; j++) {
            if (r->shadow[j].bar == s->bar &&
                ranges_overlap(s->offset, s->size, r->shadow[j].offset,
                               r->shadow[j].size)) {
                snprintf(why, why_len, "regions %u and %u overlap", j, i);
                return PCIEM_WIRE_ERR_INVALID;
            }
        }
        b->shadow_base[i] = total / 4;
        total += s->size;
        if (total > BRIDGE_SHADOW_MAX) {
            snprintf(why, why_len, "more than %u bytes of registers",
                     (unsigned)BRIDGE_SHADOW_MAX);
            return PCIEM_WIRE_ERR_INVALID;
        }
    }
    memcpy(b->shadow, r->shadow, r->n_shadow * sizeof(r->shadow[0]));
    b->n_shadow = r->n_shadow;
    /* The host's BAR memory holds whatever it held: all of it, once. */
    bitmap_zero(b->shadow_stale, BRIDGE_SHADOW_DWORDS);
    bitmap_set(b->shadow_stale, 0, total / 4);
    trace_pciem_bridge_shadow(b->n_shadow, total / 4);
    return 0;
}

/*
 * The driver wrote @size bytes at @offset of @bar: that value is in the
 * host's BAR memory now, whatever the model made of it (a write-1-to-clear
 * bit, a self-clearing command), so the shadowed dwords it touched are
 * sent at the next push even if the model's value did not change.
 */
static void bridge_shadow_written(PCIemBridge *b, uint8_t bar,
                                  uint64_t offset, uint64_t size)
{
    uint64_t first, end;
    unsigned i;

    for (i = 0; i < b->n_shadow; i++) {
        const struct pciem_wire_region *s = &b->shadow[i];

        if (s->bar != bar ||
            !ranges_overlap(offset, size, s->offset, s->size)) {
            continue;
        }
        first = MAX(offset, s->offset) - s->offset;
        end = MIN(offset + size, s->offset + s->size) - s->offset;
        bitmap_set(b->shadow_stale, b->shadow_base[i] + first / 4,
                   DIV_ROUND_UP(end, 4) - first / 4);
    }
}

/*
 * Reads every shadowed dword from the model, 4 bytes little-endian through
 * its BAR as MMIO_READ does, into shadow_now.
 *
 * The model may be inside its own I/O here (an interrupt raised from its
 * bottom half or an MMIO handler), where its re-entrancy guard would
 * refuse the reads. The guard stops DMA loops into a device's registers;
 * these are plain registers that read without side effects (the gateway's
 * promise), read as the driver's interrupt handler is about to, so it is
 * lifted for them.
 */
static void bridge_shadow_read(PCIemBridge *b)
{
    MemReentrancyGuard *guard = &DEVICE(b->pdev)->mem_reentrancy_guard;
    bool engaged = guard->engaged_in_io;
    uint32_t k = 0;
    uint64_t off;
    uint8_t buf[4];
    MemTxResult r;
    unsigned i;

    guard->engaged_in_io = false;
    for (i = 0; i < b->n_shadow; i++) {
        const struct pciem_wire_region *s = &b->shadow[i];

        for (off = s->offset; off < s->offset + s->size; off += 4, k++) {
            r = address_space_read(&b->bar_as[s->bar], off,
                                   MEMTXATTRS_UNSPECIFIED, buf, 4);
            if (r != MEMTX_OK) {
                /* Nothing to store: the host keeps the last value. */
                trace_pciem_bridge_shadow_read_failed(s->bar, off, r);
                b->shadow_now[k] = b->shadow_sent[k];
                continue;
            }
            b->shadow_now[k] = ldl_le_p(buf);
        }
    }
    guard->engaged_in_io = engaged;
}

/*
 * Brings the host's copy of the shadowed registers up to date: a posted
 * MMIO_WRITE for every dword that changed since it was last sent, or
 * whose copy the host may not have (shadow_stale), all written at once.
 * The reads come first: whatever the model sends while being read goes
 * out whole, before the stores take their ids.
 */
static void bridge_shadow_push(PCIemBridge *b, const char *why)
{
    struct pciem_wire_msg m;
    uint32_t k = 0, stores = 0;
    uint64_t off;
    unsigned i;

    if (b->state != BRIDGE_READY || !b->n_shadow || b->shadow_busy) {
        return;
    }
    /* Stores follow the model's earlier DMA writes, as on the bus. */
    if (!bridge_flush_writes(b)) {
        return;
    }
    b->shadow_busy = true;
    b->ring_quiet = true;
    bridge_shadow_read(b);
    b->shadow_pushes++;
    b->shadow_out.size = 0;
    for (i = 0; i < b->n_shadow; i++) {
        const struct pciem_wire_region *s = &b->shadow[i];

        for (off = s->offset; off < s->offset + s->size; off += 4, k++) {
            if (b->shadow_now[k] == b->shadow_sent[k] &&
                !test_bit(k, b->shadow_stale)) {
                continue;
            }
            bridge_msg_init(&m, PCIEM_WIRE_CMD_MMIO_WRITE,
                            PCIEM_WIRE_FLAG_POSTED);
            m.body.mmio_write.bar = s->bar;
            m.body.mmio_write.offset = off;
            m.body.mmio_write.size = 4;
            m.body.mmio_write.value = b->shadow_now[k];
            if (b->rings_up) {
                if (!bridge_ring_push(b, &m)) {
                    goto out;
                }
                b->shadow_stores++;
            } else if (!bridge_encode(b, &m, &b->shadow_out)) {
                goto out;
            }
            trace_pciem_bridge_shadow_store(s->bar, off, b->shadow_now[k]);
            b->shadow_sent[k] = b->shadow_now[k];
            clear_bit(k, b->shadow_stale);
            stores++;
        }
    }
out:
    b->ring_quiet = false;
    if (b->rings_up && stores && !b->ring_defer_notify) {
        pciem_ring_notify(&b->m2g);
    }
    trace_pciem_bridge_shadow_push(why, stores);
    if (stores && !b->rings_up &&
        bridge_write(b, (const uint8_t *)b->shadow_out.data,
                     b->shadow_out.size)) {
        b->stats.frames_out += stores;
        b->shadow_stores += stores;
    }
    b->shadow_busy = false;
}

static void bridge_send_device(PCIemBridge *b)
{
    struct pciem_wire_msg m;

    bridge_msg_init(&m, PCIEM_WIRE_CMD_DEVICE, 0);
    m.body.device = b->desc;
    bridge_set_state(b, BRIDGE_DEVICE);
    if (bridge_send(b, &m)) {
        b->device_id = m.hdr.id;
    }
}

static void bridge_became_ready(PCIemBridge *b)
{
    bridge_set_state(b, BRIDGE_READY);
    info_report("%s: the gateway has %s (%04x:%04x)", bridge_id(b),
                b->desc.name, b->desc.vendor_id, b->desc.device_id);
    bridge_unmask_msix(b);
    bridge_shadow_push(b, "DEVICE");
    if (b->intx_level != b->intx_sent) {
        bridge_send_intx(b);
    }
}

/* A reply to one of our requests (not the DMA_READ being waited for). */
static void bridge_handle_reply(PCIemBridge *b, const struct pciem_wire_msg *m)
{
    const struct pciem_wire_header *hdr = &m->hdr;

    if (hdr->error) {
        b->stats.errors_in++;
    }
    if (b->state == BRIDGE_HELLO && hdr->cmd == PCIEM_WIRE_CMD_HELLO &&
        hdr->id == b->hello_id) {
        const struct pciem_wire_hello_reply *h = &m->body.hello_reply;

        if (hdr->error) {
            error_report("%s: the gateway refused HELLO: %s: %s; closing",
                         bridge_id(b), bridge_err_name(hdr->error),
                         m->body.error_reply.message);
            qemu_chr_fe_disconnect(&b->chr);
        } else if (h->version < PCIEM_WIRE_VERSION_MIN ||
                   h->version > PCIEM_WIRE_VERSION_MAX ||
                   h->role != PCIEM_WIRE_ROLE_GATEWAY) {
            error_report("%s: the HELLO reply picks version %u, role %u; "
                         "closing", bridge_id(b), h->version, h->role);
            bridge_send_error(b, hdr->id, PCIEM_WIRE_ERR_STATE,
                              "version %u role %u: want version %u..%u, "
                              "role GATEWAY", h->version, h->role,
                              PCIEM_WIRE_VERSION_MIN, PCIEM_WIRE_VERSION_MAX);
            qemu_chr_fe_disconnect(&b->chr);
        } else {
            trace_pciem_bridge_hello(h->version, h->name);
            b->version = h->version;
            bridge_send_device(b);
        }
        return;
    }
    if (b->state == BRIDGE_DEVICE && hdr->cmd == PCIEM_WIRE_CMD_DEVICE &&
        hdr->id == b->device_id) {
        char why[PCIEM_WIRE_MESSAGE_MAX];
        int err;

        if (hdr->error) {
            error_report("%s: the gateway refused the device: %s: %s; "
                         "closing", bridge_id(b), bridge_err_name(hdr->error),
                         m->body.error_reply.message);
            qemu_chr_fe_disconnect(&b->chr);
            return;
        }
        err = bridge_take_shadow(b, &m->body.device_reply, why, sizeof(why));
        if (err) {
            error_report("%s: the DEVICE reply's shadow list is refused: "
                         "%s; closing", bridge_id(b), why);
            bridge_send_error(b, hdr->id, err, "shadow list refused: %s",
                              why);
            qemu_chr_fe_disconnect(&b->chr);
            return;
        }
        bridge_became_ready(b);
        return;
    }
    if (bridge_is_dma_read(hdr->cmd) && bridge_is_stale(b, hdr->id)) {
        trace_pciem_bridge_stale_reply(hdr->id);
        return;
    }
    bridge_send_error(b, hdr->id, PCIEM_WIRE_ERR_STATE, "a %s reply to no "
                      "request of ours", bridge_cmd_name(hdr->cmd));
}

/* Is @hdr the reply the session waits for, to HELLO or to DEVICE? */
static bool bridge_is_session_reply(PCIemBridge *b,
                                    const struct pciem_wire_header *hdr)
{
    return (b->state == BRIDGE_HELLO && hdr->cmd == PCIEM_WIRE_CMD_HELLO &&
            hdr->id == b->hello_id) ||
           (b->state == BRIDGE_DEVICE && hdr->cmd == PCIEM_WIRE_CMD_DEVICE &&
            hdr->id == b->device_id);
}

/* Checks a frame from the queue and handles it. */
static void bridge_handle_frame(PCIemBridge *b, BridgeFrame *f)
{
    struct pciem_wire_msg m;
    bool request = !(f->hdr.flags & PCIEM_WIRE_FLAG_REPLY);
    int rc = f->rc;

    trace_pciem_bridge_rx(f->hdr.id, bridge_cmd_name(f->hdr.cmd), f->hdr.flags,
                          f->hdr.error, f->hdr.size);
    b->stats.frames_in++;
    b->cur_seq = f->seq;
    /* The gateway numbers its requests 1, 2, 3...: a gap is an error. */
    if (request && f->hdr.id) {
        if (!rc && f->hdr.id != b->peer_id) {
            b->stats.errors_in++;
            bridge_refuse(b, &f->hdr, PCIEM_WIRE_ERR_STATE, "request id %u, "
                          "expected %u", f->hdr.id, b->peer_id);
            b->peer_id = bridge_id_after(f->hdr.id);
            return;
        }
        b->peer_id = bridge_id_after(f->hdr.id);
    }
    if (!rc) {
        rc = pciem_wire_body_decode(&f->hdr, f->body, f->hdr.size, &m);
    }
    if (rc) {
        b->stats.errors_in++;
        bridge_refuse(b, &f->hdr, -rc, "%s frame %u refused: %s",
                      bridge_cmd_name(f->hdr.cmd), f->hdr.id,
                      bridge_err_name(-rc));
        /* Nothing can follow a HELLO or DEVICE reply that does not decode. */
        if (!request && bridge_is_session_reply(b, &f->hdr)) {
            error_report("%s: the %s reply does not decode (%s); closing",
                         bridge_id(b), bridge_cmd_name(f->hdr.cmd),
                         bridge_err_name(-rc));
            qemu_chr_fe_disconnect(&b->chr);
        }
        return;
    }
    if (request) {
        bridge_handle_request(b, &m);
    } else {
        bridge_handle_reply(b, &m);
    }
}

/*
 * The DMA_READ (or DMA_READ_AHEAD, or DMA_READ_BULK) reply being waited
 * for: its data (in the bulk area for DMA_READ_BULK) into the cache.
 * Returns 0 when it is taken, or the negative code it is refused with (it
 * is then queued like any refused frame, and the wait fails). A read
 * brings exactly len bytes, a read-ahead 1..len (the decoder has seen to
 * the 1).
 */
static int bridge_take_dma_reply(PCIemBridge *b,
                                 const struct pciem_wire_header *hdr,
                                 const uint8_t *body)
{
    bool bulk = hdr->cmd == PCIEM_WIRE_CMD_DMA_READ_BULK;
    bool ahead = b->dma_wait_ahead;
    struct pciem_wire_msg m;
    const uint8_t *data = NULL;
    uint32_t len = 0;
    int rc;

    rc = pciem_wire_body_decode(hdr, body, hdr->size, &m);
    if (!rc && !hdr->error) {
        if (bulk) {
            /* Already where the cache is: fill_off in the window. */
            len = m.body.dma_read_bulk_reply.len;
        } else if (ahead) {
            data = m.body.dma_read_ahead_reply.data.data;
            len = m.body.dma_read_ahead_reply.data.len;
        } else {
            data = m.body.dma_read_reply.data.data;
            len = m.body.dma_read_reply.data.len;
        }
        if (ahead ? len > b->dma_wait_len : len != b->dma_wait_len) {
            rc = -PCIEM_WIRE_ERR_STATE;
        }
    }
    if (rc) {
        b->dma_wait_rc = -rc;
        return rc;
    }
    trace_pciem_bridge_rx(hdr->id, bridge_cmd_name(hdr->cmd), hdr->flags,
                          hdr->error, hdr->size);
    b->stats.frames_in++;
    if (hdr->error) {
        b->stats.errors_in++;
        b->dma_wait_rc = hdr->error;
        trace_pciem_bridge_dma_refused(b->dma_wait_addr, b->dma_wait_len,
                                       bridge_err_name(hdr->error),
                                       m.body.error_reply.message);
        return 0;
    }
    b->rcache_off = b->fill_off;
    b->rcache = b->rwin_ptr + b->fill_off;
    if (data) {
        memcpy(b->rcache, data, len);
    }
    b->rcache_addr = b->dma_wait_addr;
    b->rcache_len = len;
    b->rwin_next = ROUND_UP(b->fill_off + len, BRIDGE_RWIN_ALIGN);
    b->dma_fills++;
    b->dma_fill_bytes += len;
    b->bulk_fills += bulk;
    b->dma_wait_rc = 0;
    return 0;
}

/*
 * Takes the complete frames out of b->in: the awaited DMA_READ reply is
 * consumed at once, everything else is queued in arrival order for
 * bridge_process(). Never calls into the model and never sends.
 */
static void bridge_parse(PCIemBridge *b)
{
    struct pciem_wire_header hdr;
    size_t off = 0, avail, len;
    BridgeFrame *f;
    int rc;

    while (!b->fatal_rc) {
        avail = b->in->len - off;
        rc = pciem_wire_header_decode(b->in->data + off, avail, &hdr);
        if (rc == -PCIEM_WIRE_ERR_TRUNCATED) {
            break;
        }
        if (rc == -PCIEM_WIRE_ERR_TOO_BIG) {
            /* The stream cannot be followed past this header. */
            b->fatal_rc = PCIEM_WIRE_ERR_TOO_BIG;
            b->fatal_ref = hdr.id;
            b->stats.errors_in++;
            error_report("%s: frame header with a %u-byte body (at most %u): "
                         "closing the connection", bridge_id(b), hdr.size,
                         PCIEM_WIRE_MAX_BODY);
            bridge_kick(b);
            break;
        }
        len = PCIEM_WIRE_HEADER_SIZE + (size_t)hdr.size;
        if (avail < len) {
            break;
        }
        /* Every frame has its number, the ones taken at once too (FENCE). */
        b->rx_seq++;
        if (!rc && b->dma_waiting && (hdr.flags & PCIEM_WIRE_FLAG_REPLY) &&
            hdr.cmd == b->dma_wait_cmd && hdr.id == b->dma_wait_id) {
            b->dma_waiting = false;
            rc = bridge_take_dma_reply(b, &hdr, b->in->data + off +
                                       PCIEM_WIRE_HEADER_SIZE);
            if (!rc) {
                off += len;
                continue;
            }
            /* Refused: queued, so that the ERROR goes out in order. */
        }
        f = g_malloc(sizeof(*f) + hdr.size);
        f->hdr = hdr;
        f->rc = rc;
        f->seq = b->rx_seq;
        memcpy(f->body, b->in->data + off + PCIEM_WIRE_HEADER_SIZE, hdr.size);
        QSIMPLEQ_INSERT_TAIL(&b->queue, f, next);
        b->queued_bytes += len;
        off += len;
    }
    g_byte_array_remove_range(b->in, 0, off);
}

static void bridge_drop_session(PCIemBridge *b)
{
    BridgeFrame *f;

    while ((f = QSIMPLEQ_FIRST(&b->queue))) {
        QSIMPLEQ_REMOVE_HEAD(&b->queue, next);
        g_free(f);
    }
    b->queued_bytes = 0;
    g_byte_array_set_size(b->in, 0);
    b->wc_len = 0;
    bridge_cache_invalidate(b);
    b->dma_waiting = false;
    b->fatal_rc = 0;
    bridge_rings_down(b);
    bridge_bulk_down(b);
}

/* Handles the queued frames in order; never re-entered. */
static void bridge_process(PCIemBridge *b)
{
    unsigned gen = b->generation;
    unsigned budget = BRIDGE_RING_BUDGET;
    bool requests = false;
    uint8_t rec[64];
    const void *slot;
    BridgeFrame *f;
    size_t len;

    if (b->busy) {
        return;
    }
    b->busy = true;
    for (;;) {
        /*
         * Frames before an unreadable header are handled, then it closes.
         * With the rings up, a frame waits for its FENCE on g2m.
         */
        while (b->generation == gen && (f = QSIMPLEQ_FIRST(&b->queue)) &&
               bridge_frame_due(b, f)) {
            QSIMPLEQ_REMOVE_HEAD(&b->queue, next);
            b->queued_bytes -= PCIEM_WIRE_HEADER_SIZE + f->hdr.size;
            requests |= !(f->hdr.flags & PCIEM_WIRE_FLAG_REPLY);
            bridge_handle_frame(b, f);
            g_free(f);
        }
        /* A gateway that sends socket frames without their FENCEs. */
        if (f && b->generation == gen &&
            b->queued_bytes > BRIDGE_QUEUE_MAX) {
            error_report("%s: %zu bytes of the gateway's frames wait for "
                         "FENCEs that do not come; closing the connection",
                         bridge_id(b), b->queued_bytes);
            b->fatal_rc = PCIEM_WIRE_ERR_STATE;
            b->fatal_ref = 0;
        }
        if (b->generation != gen || b->fatal_rc || !bridge_ring_turn(b)) {
            break;
        }
        /* g2m's turn, up to its next FENCE. */
        slot = pciem_ring_peek(&b->g2m);
        if (!slot) {
            if (pciem_ring_available(&b->g2m) < 0) {
                error_report("%s: the gateway's ring has an impossible "
                             "index; closing the connection", bridge_id(b));
                b->fatal_rc = PCIEM_WIRE_ERR_RANGE;
                b->fatal_ref = 0;
                break;
            }
            if (bridge_ring_idle(b)) {
                break;
            }
            continue;
        }
        if (!budget--) {
            /* The main loop's turn; the bottom half goes on. */
            bridge_kick(b);
            break;
        }
        len = MIN(b->g2m.slot_size, sizeof(rec));
        memcpy(rec, slot, len);
        pciem_ring_release(&b->g2m);
        requests |= bridge_take_record(b, rec, len);
    }
    /*
     * Replies push before they go; what posted requests changed goes out
     * once for the run of them, before anything the host could act upon.
     */
    if (requests && b->generation == gen) {
        bridge_shadow_push(b, "requests");
    }
    b->busy = false;
    if (b->fatal_rc && b->state != BRIDGE_DOWN) {
        bridge_send_error(b, b->fatal_ref, b->fatal_rc, "frame header "
                          "refused (%s): closing the connection",
                          bridge_err_name(b->fatal_rc));
        qemu_chr_fe_disconnect(&b->chr);
    }
    if (b->state == BRIDGE_DOWN) {
        bridge_drop_session(b);
    }
}

/*
 * After the model's current work (DMA, interrupts): send its gathered
 * writes and what it changed in the shadowed registers, forget what was
 * read ahead, and handle what the gateway sent meanwhile.
 */
static void bridge_bh(void *opaque)
{
    PCIemBridge *b = opaque;

    b->bh_scheduled = false;
    if (b->state != BRIDGE_DOWN) {
        bridge_flush_writes(b);
        bridge_shadow_push(b, "model");
    }
    bridge_cache_invalidate(b);
    bridge_ra_run_over(b);
    b->ra_next = b->read_ahead;
    b->ra_capped = false;
    b->ra_limit_valid = false;
    b->ra_stop_valid = false;
    b->fault_valid = false;
    b->bulk_refused_valid = false;
    b->dma_failed = false;
    bridge_process(b);
}

/* ---- chardev handlers ---- */

static int bridge_can_read(void *opaque)
{
    PCIemBridge *b = opaque;

    return b->state == BRIDGE_DOWN ? 0 : 64 * KiB;
}

static void bridge_chr_read(void *opaque, const uint8_t *buf, int size)
{
    PCIemBridge *b = opaque;

    b->stats.bytes_in += size;
    bridge_take_fds(b);
    g_byte_array_append(b->in, buf, size);
    bridge_parse(b);
    bridge_process(b);
}

static void bridge_connected(PCIemBridge *b)
{
    Chardev *chr = qemu_chr_fe_get_driver(&b->chr);
    SocketChardev *sc = SOCKET_CHARDEV(chr);
    struct pciem_wire_msg m;

    bridge_drop_session(b);
    b->generation++;
    b->fd = sc->sioc ? sc->sioc->fd : -1;
    b->next_id = 1;
    b->peer_id = 1;
    b->version = 0;
    b->rx_seq = 0;
    b->ring_records_in = 0;
    b->ring_records_out = 0;
    b->ring_full_waits = 0;
    b->hello_id = 0;
    b->device_id = 0;
    b->intx_sent = false;
    b->ra_next = b->read_ahead;
    b->ra_end_valid = false;
    b->ra_remember = 0;
    b->dma_fills = 0;
    b->dma_fill_bytes = 0;
    b->bulk_fills = 0;
    memset(&b->stats, 0, sizeof(b->stats));
    memset(b->stale_ids, 0, sizeof(b->stale_ids));
    b->n_shadow = 0;
    b->shadow_pushes = 0;
    b->shadow_stores = 0;
    if (b->fd < 0) {
        error_report("%s: chardev '%s' is open with no socket", bridge_id(b),
                     b->chardev);
        return;
    }
    bridge_set_state(b, BRIDGE_HELLO);

    bridge_msg_init(&m, PCIEM_WIRE_CMD_HELLO, 0);
    m.body.hello.version_min = PCIEM_WIRE_VERSION_MIN;
    m.body.hello.version_max = PCIEM_WIRE_VERSION_MAX;
    m.body.hello.role = PCIEM_WIRE_ROLE_MODEL;
    pstrcpy(m.body.hello.name, sizeof(m.body.hello.name), BRIDGE_NAME);
    if (bridge_send(b, &m)) {
        b->hello_id = m.hdr.id;
    }
}

static void bridge_chr_event(void *opaque, QEMUChrEvent event)
{
    PCIemBridge *b = opaque;

    switch (event) {
    case CHR_EVENT_OPENED:
        bridge_connected(b);
        break;
    case CHR_EVENT_CLOSED:
        if (b->state == BRIDGE_DOWN) {
            break;
        }
        /*
         * This may run inside a read or write of ours: only say so here;
         * the session's buffers are dropped once nothing uses them.
         */
        warn_report("%s: connection to the gateway closed; waiting for it "
                    "to come back", bridge_id(b));
        bridge_set_state(b, BRIDGE_DOWN);
        b->generation++;
        b->fd = -1;
        bridge_kick(b);
        break;
    default:
        break;
    }
}

/* ---- setup: reading the device, installing the hooks ---- */

/*
 * Adds [0, @size) of @bar less @holes (at most two, either may be empty) to
 * both region lists.
 */
static bool bridge_add_regions(struct pciem_wire_device *d, uint8_t bar,
                               uint64_t size, BridgeRange *holes,
                               unsigned n_holes, Error **errp)
{
    uint64_t at = 0, end;
    unsigned i;

    if (n_holes == 2 && holes[1].start < holes[0].start) {
        BridgeRange t = holes[0];

        holes[0] = holes[1];
        holes[1] = t;
    }
    for (i = 0; i <= n_holes; i++) {
        end = i < n_holes ? MIN(holes[i].start, size) : size;
        if (end > at) {
            if (d->n_traced >= PCIEM_WIRE_REGIONS_MAX) {
                error_setg(errp, "the BARs need more than %u regions",
                           PCIEM_WIRE_REGIONS_MAX);
                return false;
            }
            d->traced[d->n_traced++] = (struct pciem_wire_region) {
                .bar = bar, .offset = at, .size = end - at,
            };
            d->read_via_model[d->n_read_via_model++] =
                d->traced[d->n_traced - 1];
        }
        if (i < n_holes) {
            at = MAX(at, holes[i].start + holes[i].size);
        }
    }
    return true;
}

/* DEVICE, from the model's own config space and BARs. */
static bool bridge_describe(PCIemBridge *b, Error **errp)
{
    PCIDevice *pdev = b->pdev;
    struct pciem_wire_device *d = &b->desc;
    const uint8_t *c = pdev->config;
    struct pciem_wire_msg m;
    msgpack_sbuffer sb;
    int i, rc;

    memset(d, 0, sizeof(*d));
    pstrcpy(d->name, sizeof(d->name), object_get_typename(OBJECT(pdev)));
    d->vendor_id = pci_get_word(c + PCI_VENDOR_ID);
    d->device_id = pci_get_word(c + PCI_DEVICE_ID);
    d->subsystem_vendor_id = pci_get_word(c + PCI_SUBSYSTEM_VENDOR_ID);
    d->subsystem_id = pci_get_word(c + PCI_SUBSYSTEM_ID);
    d->class_code = pci_get_long(c + PCI_CLASS_REVISION) >> 8;
    d->revision = c[PCI_REVISION_ID];
    d->interrupt_pin = c[PCI_INTERRUPT_PIN];

    if (msi_present(pdev)) {
        uint16_t flags = pci_get_word(c + pdev->msi_cap + PCI_MSI_FLAGS);

        d->msi_vectors = 1 << ((flags & PCI_MSI_FLAGS_QMASK) >> 1);
        d->msi_flags =
            (flags & PCI_MSI_FLAGS_64BIT ? PCIEM_WIRE_MSI_FLAGS_ADDR64 : 0) |
            (flags & PCI_MSI_FLAGS_MASKBIT ? PCIEM_WIRE_MSI_FLAGS_MASKING : 0);
    }
    if (msix_present(pdev)) {
        uint32_t table = pci_get_long(c + pdev->msix_cap + PCI_MSIX_TABLE);
        uint32_t pba = pci_get_long(c + pdev->msix_cap + PCI_MSIX_PBA);
        unsigned n = pdev->msix_entries_nr;

        if ((table & PCI_MSIX_FLAGS_BIRMASK) !=
            (pba & PCI_MSIX_FLAGS_BIRMASK)) {
            error_setg(errp, "'%s' has its MSI-X table and PBA in two BARs, "
                       "which the protocol cannot describe", b->device);
            return false;
        }
        d->msix_vectors = n;
        d->msix_bar = table & PCI_MSIX_FLAGS_BIRMASK;
        d->msix_table_offset = table & ~PCI_MSIX_FLAGS_BIRMASK;
        d->msix_pba_offset = pba & ~PCI_MSIX_FLAGS_BIRMASK;
        b->msix_table = (BridgeRange) {
            d->msix_table_offset, (uint64_t)n * PCI_MSIX_ENTRY_SIZE,
        };
        b->msix_pba = (BridgeRange) {
            d->msix_pba_offset, DIV_ROUND_UP(n, 64) * 8,
        };
    }
    if (pci_find_capability(pdev, PCI_CAP_ID_PM)) {
        d->caps |= PCIEM_WIRE_CAPS_PM;
    }
    if (pci_is_express(pdev)) {
        d->caps |= PCIEM_WIRE_CAPS_PCIE;
    }

    for (i = 0; i < PCI_ROM_SLOT; i++) {
        const PCIIORegion *r = &pdev->io_regions[i];
        BridgeRange holes[2] = { b->msix_table, b->msix_pba };
        struct pciem_wire_bar *bar;

        if (!r->size) {
            continue;
        }
        bar = &d->bars[d->n_bars++];
        bar->index = i;
        bar->size = r->size;
        if (r->type & PCI_BASE_ADDRESS_SPACE_IO) {
            bar->flags = PCIEM_WIRE_BAR_FLAGS_IO;
        } else {
            bar->flags =
                (r->type & PCI_BASE_ADDRESS_MEM_TYPE_64 ?
                 PCIEM_WIRE_BAR_FLAGS_MEM64 : 0) |
                (r->type & PCI_BASE_ADDRESS_MEM_PREFETCH ?
                 PCIEM_WIRE_BAR_FLAGS_PREFETCH : 0);
        }
        if (!bridge_add_regions(d, i, r->size, holes,
                                d->msix_vectors && i == d->msix_bar ? 2 : 0,
                                errp)) {
            return false;
        }
    }

    /* What the gateway's decoder would refuse is a setup error here. */
    bridge_msg_init(&m, PCIEM_WIRE_CMD_DEVICE, 0);
    m.hdr.id = 1;
    m.body.device = *d;
    msgpack_sbuffer_init(&sb);
    rc = pciem_wire_encode(&m, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        error_setg(errp, "'%s' cannot be described in protocol version %u: "
                   "%s", b->device, PCIEM_WIRE_VERSION_MAX,
                   bridge_err_name(-rc));
        return false;
    }
    return true;
}

/* The root bus line our INTx pin ends on, as pci_change_irq_level maps it. */
static PCIBus *bridge_intx_route(PCIDevice *pdev, int pin, int *irq_num)
{
    PCIBus *bus;

    for (;;) {
        bus = pci_get_bus(pdev);
        if (!bus->map_irq) {
            return NULL;
        }
        pin = bus->map_irq(pdev, pin);
        if (bus->set_irq) {
            *irq_num = pin;
            return bus;
        }
        pdev = bus->parent_dev;
    }
}

static void bridge_setup(PCIemBridge *b, Error **errp)
{
    DeviceState *dev;
    Chardev *chr;
    PCIDevice *pdev;
    int i;

    if (!object_dynamic_cast(OBJECT(current_machine), TYPE_REMOTE_MACHINE) ||
        object_property_get_bool(OBJECT(current_machine), "vfio-user",
                                 NULL)) {
        error_setg(errp, "%s needs -machine x-remote,vfio-user=off",
                   TYPE_PCIEM_BRIDGE);
        return;
    }
    dev = qdev_find_recursive(sysbus_get_default(), b->device);
    if (!dev) {
        error_setg(errp, "no device with id '%s'", b->device);
        return;
    }
    if (!object_dynamic_cast(OBJECT(dev), TYPE_PCI_DEVICE)) {
        error_setg(errp, "'%s' is not a PCI device", b->device);
        return;
    }
    pdev = PCI_DEVICE(dev);
    chr = qemu_chr_find(b->chardev);
    if (!chr) {
        error_setg(errp, "no chardev with id '%s'", b->chardev);
        return;
    }
    if (!object_dynamic_cast(OBJECT(chr), TYPE_CHARDEV_SOCKET)) {
        error_setg(errp, "chardev '%s' must be a socket", b->chardev);
        return;
    }
    if (SOCKET_CHARDEV(chr)->is_listen || SOCKET_CHARDEV(chr)->tls_creds ||
        SOCKET_CHARDEV(chr)->is_websock) {
        error_setg(errp, "chardev '%s' must connect to the gateway "
                   "(server=off), without TLS or websocket", b->chardev);
        return;
    }
    /* Pages are touched only as fills reach them. */
    b->rwin_size = ROUND_UP((uint64_t)b->read_ahead_max * BRIDGE_RWIN_FILLS,
                            BRIDGE_RWIN_ALIGN) + BRIDGE_RWIN_ALIGN;
    /* A mapping of its own: the bulk area is mapped over its start. */
    b->rwin_ptr = mmap(NULL, b->rwin_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->rwin_ptr == MAP_FAILED) {
        b->rwin_ptr = NULL;
        error_setg_errno(errp, errno, "cannot map a %" PRIu64 "-byte read "
                         "window", b->rwin_size);
        return;
    }
    b->pdev = pdev;
    if (!bridge_describe(b, errp)) {
        b->pdev = NULL;
        return;
    }
    if (!qemu_chr_fe_init(&b->chr, chr, errp)) {
        b->pdev = NULL;
        return;
    }
    object_ref(OBJECT(pdev));
    error_setg(&b->unplug_blocker, "%s '%s' must be deleted before '%s' "
               "can be unplugged", TYPE_PCIEM_BRIDGE, bridge_id(b), b->device);
    qdev_add_unplug_blocker(dev, b->unplug_blocker);

    for (i = 0; i < PCI_ROM_SLOT; i++) {
        g_autofree char *name = NULL;

        if (!pdev->io_regions[i].size) {
            continue;
        }
        name = g_strdup_printf("%s-bar%d", TYPE_PCIEM_BRIDGE, i);
        memory_region_init_alias(&b->bar_alias[i], OBJECT(b), name,
                                 pdev->io_regions[i].memory, 0,
                                 pdev->io_regions[i].size);
        address_space_init(&b->bar_as[i], &b->bar_alias[i], name);
    }

    b->rcache = b->rwin_ptr;
    b->wc = g_malloc(b->write_combine);
    b->shadow_sent = g_new0(uint32_t, BRIDGE_SHADOW_DWORDS);
    b->shadow_now = g_new0(uint32_t, BRIDGE_SHADOW_DWORDS);
    b->shadow_stale = bitmap_new(BRIDGE_SHADOW_DWORDS);
    b->in = g_byte_array_new();
    QSIMPLEQ_INIT(&b->queue);
    msgpack_sbuffer_init(&b->out);
    msgpack_sbuffer_init(&b->shadow_out);
    b->fd = -1;
    /* The bridge owns no device I/O: the guard is its own. */
    b->bh = qemu_bh_new_guarded(bridge_bh, b, &b->bh_guard);
    memory_region_init_io(&b->dma_io, OBJECT(b), &bridge_dma_ops, b,
                          TYPE_PCIEM_BRIDGE "-dma-io", UINT64_MAX);
    if (b->direct_reads) {
        address_space_init(&b->dma_io_as, &b->dma_io,
                           TYPE_PCIEM_BRIDGE "-dma-io");
        memory_region_init_ram_ptr(&b->rwin, OBJECT(b),
                                   TYPE_PCIEM_BRIDGE "-read-cache",
                                   b->rwin_size, b->rwin_ptr);
        address_space_init(&b->rwin_as, &b->rwin,
                           TYPE_PCIEM_BRIDGE "-read-cache");
        memory_region_init_iommu(&b->dma, sizeof(b->dma),
                                 TYPE_PCIEM_BRIDGE_IOMMU, OBJECT(b),
                                 TYPE_PCIEM_BRIDGE "-dma", UINT64_MAX);
        memory_region_add_subregion_overlap(get_system_memory(), 0,
                                            MEMORY_REGION(&b->dma),
                                            BRIDGE_DMA_PRIORITY);
    } else {
        /* Without the RAM path, no translation per piece either. */
        memory_region_add_subregion_overlap(get_system_memory(), 0,
                                            &b->dma_io, BRIDGE_DMA_PRIORITY);
    }

    b->saved_msi_trigger = pdev->msi_trigger;
    b->saved_msi_prepare_message = pdev->msi_prepare_message;
    b->saved_msix_prepare_message = pdev->msix_prepare_message;
    pdev->msi_trigger = bridge_msi_trigger;
    pdev->msi_prepare_message = bridge_msi_prepare_message;
    pdev->msix_prepare_message = bridge_msix_prepare_message;

    b->irq_num = -1;
    if (b->desc.interrupt_pin) {
        b->irq_bus = bridge_intx_route(pdev, b->desc.interrupt_pin - 1,
                                       &b->irq_num);
    }
    if (b->irq_bus) {
        b->saved_set_irq = b->irq_bus->set_irq;
        b->saved_irq_opaque = b->irq_bus->irq_opaque;
        pci_bus_irqs(b->irq_bus, bridge_set_irq, b, b->irq_bus->nirq);
    }

    b->set_up = true;
    qemu_chr_fe_set_handlers(&b->chr, bridge_can_read, bridge_chr_read,
                             bridge_chr_event, NULL, b, NULL, true);
}

static void bridge_machine_done(Notifier *notifier, void *data)
{
    PCIemBridge *b = container_of(notifier, PCIemBridge, machine_done);

    /* A command-line configuration error: QEMU does not start. */
    bridge_setup(b, &error_fatal);
}

static void bridge_complete(UserCreatable *uc, Error **errp)
{
    PCIemBridge *b = PCIEM_BRIDGE(uc);

    if (!b->device || !b->chardev) {
        error_setg(errp, "%s needs the properties 'device' and 'chardev'",
                   TYPE_PCIEM_BRIDGE);
        return;
    }
    if (!b->timeout_ms || b->timeout_ms > BRIDGE_TIMEOUT_MS_MAX) {
        error_setg(errp, "timeout-ms must be 1 to %u, not %u",
                   BRIDGE_TIMEOUT_MS_MAX, b->timeout_ms);
        return;
    }
    if (b->read_ahead < BRIDGE_PAGE_SIZE ||
        b->read_ahead > PCIEM_WIRE_MAX_DMA) {
        error_setg(errp, "read-ahead must be %u to %u bytes, not %u",
                   BRIDGE_PAGE_SIZE, PCIEM_WIRE_MAX_DMA, b->read_ahead);
        return;
    }
    if (b->read_ahead_max < b->read_ahead ||
        b->read_ahead_max > PCIEM_WIRE_MAX_DMA) {
        error_setg(errp, "read-ahead-max must be read-ahead (%u) to %u bytes, "
                   "not %u", b->read_ahead, PCIEM_WIRE_MAX_DMA,
                   b->read_ahead_max);
        return;
    }
    if (b->write_combine < 8 || b->write_combine > PCIEM_WIRE_MAX_DMA) {
        error_setg(errp, "write-combine must be 8 to %u bytes, not %u",
                   PCIEM_WIRE_MAX_DMA, b->write_combine);
        return;
    }
    if (bridge_instance) {
        error_setg(errp, "only one %s per QEMU: DMA goes through the "
                   "machine's system memory", TYPE_PCIEM_BRIDGE);
        return;
    }
    bridge_instance = b;
    b->complete = true;
    /*
     * The bridge delivers MSI and MSI-X (as messages to the gateway), so
     * models may offer them; x-remote sets this only for vfio-user.
     * Objects are complete before -device models are realized.
     */
    msi_nonbroken = true;
    if (phase_check(PHASE_MACHINE_READY)) {
        bridge_setup(b, errp);
        if (!b->set_up) {
            bridge_instance = NULL;
            b->complete = false;
        }
        return;
    }
    b->machine_done.notify = bridge_machine_done;
    qemu_add_machine_init_done_notifier(&b->machine_done);
}

/*
 * object-del: undone here, not in finalize, because the bridge's own
 * memory regions (in system memory, roots of the BAR address spaces) hold
 * references to it until they are gone. The regions themselves are
 * children of the bridge and go with it.
 */
static void bridge_unparent(Object *obj)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);
    PCIDevice *pdev = b->pdev;
    int i;

    if (!b->set_up) {
        return;
    }
    b->set_up = false;
    qemu_chr_fe_deinit(&b->chr, false);
    if (b->irq_bus && b->irq_bus->set_irq == bridge_set_irq &&
        b->irq_bus->irq_opaque == b) {
        pci_bus_irqs(b->irq_bus, b->saved_set_irq, b->saved_irq_opaque,
                     b->irq_bus->nirq);
    }
    pdev->msi_trigger = b->saved_msi_trigger;
    pdev->msi_prepare_message = b->saved_msi_prepare_message;
    pdev->msix_prepare_message = b->saved_msix_prepare_message;
    if (b->direct_reads) {
        memory_region_del_subregion(get_system_memory(),
                                    MEMORY_REGION(&b->dma));
        address_space_destroy(&b->dma_io_as);
        address_space_destroy(&b->rwin_as);
    } else {
        memory_region_del_subregion(get_system_memory(), &b->dma_io);
    }
    for (i = 0; i < PCI_ROM_SLOT; i++) {
        if (pdev->io_regions[i].size) {
            address_space_destroy(&b->bar_as[i]);
        }
    }
    qdev_del_unplug_blocker(DEVICE(pdev), b->unplug_blocker);
    error_free(b->unplug_blocker);
    b->unplug_blocker = NULL;
    bridge_drop_session(b);
    qemu_bh_delete(b->bh);
    b->bh = NULL;
    g_byte_array_free(b->in, true);
    b->in = NULL;
    msgpack_sbuffer_destroy(&b->out);
    msgpack_sbuffer_destroy(&b->shadow_out);
    g_free(b->shadow_sent);
    b->shadow_sent = NULL;
    g_free(b->shadow_now);
    b->shadow_now = NULL;
    g_free(b->shadow_stale);
    b->shadow_stale = NULL;
    /*
     * The window stays: the RAM region that points at it goes only when
     * the bridge is finalized, after the address spaces let go of it.
     */
    b->rcache = NULL;
    g_free(b->wc);
    b->wc = NULL;
    object_unref(OBJECT(pdev));
    b->pdev = NULL;
    if (bridge_instance == b) {
        bridge_instance = NULL;
    }
}

static void bridge_finalize(Object *obj)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);

    if (b->machine_done.notify) {
        qemu_remove_machine_init_done_notifier(&b->machine_done);
    }
    if (bridge_instance == b) {
        bridge_instance = NULL;
    }
    g_free(b->device);
    g_free(b->chardev);
    if (b->rwin_ptr) {
        munmap(b->rwin_ptr, b->rwin_size);
    }
}

/* ---- properties ---- */

static char *bridge_get_device(Object *obj, Error **errp)
{
    return g_strdup(PCIEM_BRIDGE(obj)->device);
}

static char *bridge_get_chardev(Object *obj, Error **errp)
{
    return g_strdup(PCIEM_BRIDGE(obj)->chardev);
}

static bool bridge_check_settable(PCIemBridge *b, const char *name,
                                  Error **errp)
{
    if (b->complete) {
        error_setg(errp, "'%s' cannot change once %s is created", name,
                   TYPE_PCIEM_BRIDGE);
        return false;
    }
    return true;
}

static void bridge_set_device(Object *obj, const char *value, Error **errp)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);

    if (bridge_check_settable(b, "device", errp)) {
        g_free(b->device);
        b->device = g_strdup(value);
    }
}

static void bridge_set_chardev(Object *obj, const char *value, Error **errp)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);

    if (bridge_check_settable(b, "chardev", errp)) {
        g_free(b->chardev);
        b->chardev = g_strdup(value);
    }
}

static bool bridge_get_direct_reads(Object *obj, Error **errp)
{
    return PCIEM_BRIDGE(obj)->direct_reads;
}

static void bridge_set_direct_reads(Object *obj, bool value, Error **errp)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);

    if (bridge_check_settable(b, "direct-reads", errp)) {
        b->direct_reads = value;
    }
}

/* uint32 properties; @opaque is the field's offset in PCIemBridge. */
static void bridge_get_u32(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    uint32_t *field = (uint32_t *)((char *)obj + (uintptr_t)opaque);

    visit_type_uint32(v, name, field, errp);
}

static void bridge_set_u32(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    uint32_t *field = (uint32_t *)((char *)obj + (uintptr_t)opaque);
    uint32_t value;

    if (bridge_check_settable(PCIEM_BRIDGE(obj), name, errp) &&
        visit_type_uint32(v, name, &value, errp)) {
        *field = value;
    }
}

/* Read-only uint64 counters; @opaque is the field's offset. */
static void bridge_get_u64(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    uint64_t value = *(uint64_t *)((char *)obj + (uintptr_t)opaque);

    visit_type_uint64(v, name, &value, errp);
}

static void bridge_add_counter(ObjectClass *klass, const char *name,
                               size_t offset, const char *desc)
{
    object_class_property_add(klass, name, "uint64", bridge_get_u64, NULL,
                              NULL, (void *)offset);
    object_class_property_set_description(klass, name, desc);
}

static void bridge_add_u32(ObjectClass *klass, const char *name,
                           size_t offset, const char *desc)
{
    object_class_property_add(klass, name, "uint32", bridge_get_u32,
                              bridge_set_u32, NULL, (void *)offset);
    object_class_property_set_description(klass, name, desc);
}

static void bridge_instance_init(Object *obj)
{
    PCIemBridge *b = PCIEM_BRIDGE(obj);

    b->timeout_ms = BRIDGE_TIMEOUT_MS_DEFAULT;
    b->read_ahead = BRIDGE_READ_AHEAD_DEFAULT;
    b->read_ahead_max = BRIDGE_READ_AHEAD_MAX_DEFAULT;
    b->direct_reads = true;
    b->write_combine = BRIDGE_WRITE_COMBINE_DEFAULT;
    memset(b->ring_fds, -1, sizeof(b->ring_fds));
    memset(b->ring_evfd, -1, sizeof(b->ring_evfd));
}

static void bridge_class_init(ObjectClass *klass, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(klass);

    ucc->complete = bridge_complete;
    klass->unparent = bridge_unparent;

    object_class_property_add_str(klass, "device", bridge_get_device,
                                  bridge_set_device);
    object_class_property_set_description(klass, "device",
                                          "id of the PCI device to connect");
    object_class_property_add_str(klass, "chardev", bridge_get_chardev,
                                  bridge_set_chardev);
    object_class_property_set_description(klass, "chardev",
                                          "id of the socket chardev that "
                                          "connects to the gateway");
    bridge_add_u32(klass, "timeout-ms", offsetof(PCIemBridge, timeout_ms),
                   "how long to wait for a DMA_READ reply, or for the "
                   "gateway to take data");
    bridge_add_u32(klass, "read-ahead", offsetof(PCIemBridge, read_ahead),
                   "bytes the first DMA_READ fetches for a model read that "
                   "misses the cache");
    bridge_add_u32(klass, "read-ahead-max",
                   offsetof(PCIemBridge, read_ahead_max),
                   "most bytes one DMA_READ fetches as the model reads on "
                   "(the read-ahead doubles up to this)");
    object_class_property_add_bool(klass, "direct-reads",
                                   bridge_get_direct_reads,
                                   bridge_set_direct_reads);
    object_class_property_set_description(klass, "direct-reads",
                                          "serve the model's reads from the "
                                          "cache as RAM (memcpy), not 8 "
                                          "bytes per callback");
    bridge_add_u32(klass, "write-combine",
                   offsetof(PCIemBridge, write_combine),
                   "most bytes of contiguous model writes sent as one "
                   "DMA_WRITE");
    bridge_add_counter(klass, "dma-fills", offsetof(PCIemBridge, dma_fills),
                       "DMA_READs that filled the read cache since the "
                       "connection opened");
    bridge_add_counter(klass, "dma-fill-bytes",
                       offsetof(PCIemBridge, dma_fill_bytes),
                       "bytes those brought");
    bridge_add_counter(klass, "bulk-fills", offsetof(PCIemBridge, bulk_fills),
                       "of those, DMA_READ_BULKs: fills through the bulk "
                       "area (version 4)");
    bridge_add_counter(klass, "shadow-pushes",
                       offsetof(PCIemBridge, shadow_pushes),
                       "times the shadowed registers were read from the "
                       "model since the connection opened");
    bridge_add_counter(klass, "shadow-stores",
                       offsetof(PCIemBridge, shadow_stores),
                       "MMIO_WRITE stores of shadowed registers sent since "
                       "the connection opened");
    bridge_add_counter(klass, "ring-records-in",
                       offsetof(PCIemBridge, ring_records_in),
                       "records taken off the gateway's ring (g2m) since "
                       "the connection opened");
    bridge_add_counter(klass, "ring-records-out",
                       offsetof(PCIemBridge, ring_records_out),
                       "records put on the bridge's ring (m2g) since the "
                       "connection opened");
    bridge_add_counter(klass, "ring-full-waits",
                       offsetof(PCIemBridge, ring_full_waits),
                       "records that found m2g full and waited for room");
}

/*
 * Translations change at every fill and drop of the cache, with no
 * notification: nothing may cache them (vhost's or vfio's IOTLB).
 */
static int bridge_iommu_notify_flag_changed(IOMMUMemoryRegion *iommu,
                                            IOMMUNotifierFlag old_flags,
                                            IOMMUNotifierFlag new_flags,
                                            Error **errp)
{
    if (new_flags != IOMMU_NOTIFIER_NONE) {
        error_setg(errp, "%s: DMA translations cannot be watched",
                   TYPE_PCIEM_BRIDGE);
        return -EINVAL;
    }
    return 0;
}

/* Nothing to replay (the default would walk all 2^64 bytes). */
static void bridge_iommu_replay(IOMMUMemoryRegion *iommu, IOMMUNotifier *n)
{
}

static void bridge_iommu_class_init(ObjectClass *klass, void *data)
{
    IOMMUMemoryRegionClass *imrc = IOMMU_MEMORY_REGION_CLASS(klass);

    imrc->translate = bridge_dma_translate;
    imrc->notify_flag_changed = bridge_iommu_notify_flag_changed;
    imrc->replay = bridge_iommu_replay;
}

static const TypeInfo bridge_iommu_info = {
    .name = TYPE_PCIEM_BRIDGE_IOMMU,
    .parent = TYPE_IOMMU_MEMORY_REGION,
    .class_init = bridge_iommu_class_init,
};

static const TypeInfo bridge_info = {
    .name = TYPE_PCIEM_BRIDGE,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(PCIemBridge),
    .instance_init = bridge_instance_init,
    .instance_finalize = bridge_finalize,
    .class_init = bridge_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void bridge_register_types(void)
{
    type_register_static(&bridge_info);
    type_register_static(&bridge_iommu_info);
}

type_init(bridge_register_types)
