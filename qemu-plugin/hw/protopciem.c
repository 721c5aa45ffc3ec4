/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * ProtoPCIem card model, spec version 1.0 (docs/protopciem.md).
 *
 * The card keeps the register map and commands of upstream PCIem's
 * ProtoPCIem sample (vendor 0x1f0c, device 0x0001, BAR0 64 KiB of
 * registers, BAR2 1 MiB of card memory), so a host driver can talk to this
 * model or to upstream's card alike, and adds an extension block at 0x1000
 * (ID, VERSION, a command queue with fences, error registers).
 *
 *   BAR0  registers. A CMD write queues a command; a bottom half runs the
 *         queue one command per run, DMAs with pci_dma_read/pci_dma_write
 *         in bulk, and signals each completion with MSI or INTx.
 *   BAR2  1 MiB of RAM; the card side of P2P_READ / P2P_WRITE.
 *   A 640x480 RGB888 framebuffer, fed by DMA_FRAME and by command buffers
 *   (protopciem-2d.c), shown on a graphic console.
 *
 * Every constant comes from protopciem_regs.h, generated from
 * proto/protopciem.json. Nothing the host does can stop QEMU: bad input
 * sets STATUS.ERROR and ERROR_CODE and is logged with LOG_GUEST_ERROR.
 */

#include "qemu/osdep.h"
#include "qemu/bitops.h"
#include "qemu/bswap.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "chardev/char-fe.h"
#include "hw/qdev-properties-system.h"
#include "hw/pci/msi.h"
#include "hw/pci/pci_device.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "qom/object.h"
#include "system/dma.h"
#include "ui/console.h"
#include "ui/pixel_ops.h"
#include "protopciem_regs.h"
#include "protopciem-2d.h"
#include "trace.h"

#define TYPE_PROTOPCIEM "protopciem"
OBJECT_DECLARE_SIMPLE_TYPE(ProtoPCIemState, PROTOPCIEM)

/* The STATUS bits the card stores; BUSY and QUEUE_FULL are computed. */
#define STATUS_STICKY (PROTOPCIEM_STATUS_DONE | PROTOPCIEM_STATUS_ERROR)

/* One staging buffer serves every command's DMA. */
#define SCRATCH_SIZE PROTOPCIEM_CMDBUF_MAX
QEMU_BUILD_BUG_ON(PROTOPCIEM_FB_SIZE > SCRATCH_SIZE);
QEMU_BUILD_BUG_ON(PROTOPCIEM_PROCESS_MAX > SCRATCH_SIZE);
QEMU_BUILD_BUG_ON(PROTOPCIEM_P2P_MAX > SCRATCH_SIZE);
QEMU_BUILD_BUG_ON(PROTOPCIEM_P2P_MAX > PROTOPCIEM_BAR_MEM_SIZE);
QEMU_BUILD_BUG_ON(PROTOPCIEM_FB_SIZE != PROTOPCIEM_FB_PITCH *
                  PROTOPCIEM_FB_HEIGHT);

/* A submitted command: CMD and the argument registers, as written. */
typedef struct ProtoPCIemCommand {
    uint32_t cmd;
    uint32_t data;
    uint64_t dma_src;
    uint64_t dma_dst;
    uint32_t dma_len;
    uint32_t dma_flags;
    uint32_t fence;
} ProtoPCIemCommand;

struct ProtoPCIemState {
    PCIDevice parent_obj;

    /* Properties */
    uint32_t queue_depth;
    OnOffAuto msi;
    CharBackend frame_log;      /* one line per DMA_FRAME shown */
    bool frame_log_hash;        /* hash each frame in the log (else "-") */

    MemoryRegion regs;
    MemoryRegion mem;

    /* Registers (STATUS holds only DONE and ERROR) */
    uint32_t control;
    uint32_t status;
    uint32_t cmd;
    uint32_t data;
    uint64_t result;
    uint64_t dma_src;
    uint64_t dma_dst;
    uint32_t dma_len;
    uint32_t dma_flags;
    uint32_t fence_next;
    uint32_t fence_done;
    uint32_t error_code;
    uint32_t error_fence;
    uint32_t error_info;
    uint32_t error_count;

    /* Command queue: a ring of queue_len entries from queue_head */
    ProtoPCIemCommand queue[PROTOPCIEM_QUEUE_DEPTH_MAX];
    uint32_t queue_head;
    uint32_t queue_len;

    /*
     * The framebuffer, and the one DMA_FRAME reads the next frame into:
     * the two trade places when a frame arrived whole, so a frame costs
     * one copy here and a failed read leaves the shown one as it was.
     */
    uint8_t *fb;
    uint8_t *fb_next;

    /* Runtime state */
    QEMUBH *bh;
    QemuConsole *con;
    bool fb_dirty;
    uint8_t *scratch;
    uint64_t frames_shown;
};

static const char *const protopciem_cmd_names[] = PROTOPCIEM_CMD_NAMES;

static const char *protopciem_cmd_name(uint32_t cmd)
{
    return cmd < ARRAY_SIZE(protopciem_cmd_names) ?
           protopciem_cmd_names[cmd] : NULL;
}

/* Logs a guest error about command @c, naming the command and its fence. */
static void G_GNUC_PRINTF(2, 3)
protopciem_cmd_error(const ProtoPCIemCommand *c, const char *fmt, ...)
{
    const char *name = protopciem_cmd_name(c->cmd);
    g_autofree char *msg = NULL;
    va_list ap;

    if (!qemu_loglevel_mask(LOG_GUEST_ERROR)) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (name) {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: %s (fence %u): %s\n",
                      TYPE_PROTOPCIEM, name, c->fence, msg);
    } else {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: command 0x%x (fence %u): %s\n",
                      TYPE_PROTOPCIEM, c->cmd, c->fence, msg);
    }
}

/* ---- interrupts ---- */

/* INTx follows DONE | ERROR while MSI is off. */
static void protopciem_update_intx(ProtoPCIemState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    int level = !msi_enabled(pdev) && (s->status & STATUS_STICKY);

    trace_protopciem_intx(level);
    pci_set_irq(pdev, level);
}

/* A completion or a refused submission: one MSI, or INTx by level. */
static void protopciem_interrupt(ProtoPCIemState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    if (msi_enabled(pdev)) {
        trace_protopciem_msi(s->status);
        msi_notify(pdev, 0);
    }
    protopciem_update_intx(s);
}

/* First-error capture, as ERROR_CODE is specified. */
static void protopciem_record_error(ProtoPCIemState *s, uint32_t code,
                                    uint32_t fence, uint32_t info)
{
    if (s->error_code == PROTOPCIEM_ERR_NONE) {
        s->error_code = code;
        s->error_fence = fence;
        s->error_info = info;
    }
    if (s->error_count != UINT32_MAX) {
        s->error_count++;
    }
}

/* ---- display ---- */

static void protopciem_fb_changed(ProtoPCIemState *s)
{
    s->fb_dirty = true;
}

static void protopciem_gfx_update(void *opaque)
{
    ProtoPCIemState *s = opaque;
    DisplaySurface *surface = qemu_console_surface(s->con);
    int x, y;

    if (!s->fb_dirty) {
        return;
    }
    if (!surface || surface_width(surface) != PROTOPCIEM_FB_WIDTH ||
        surface_height(surface) != PROTOPCIEM_FB_HEIGHT ||
        surface_bits_per_pixel(surface) != 32) {
        qemu_console_resize(s->con, PROTOPCIEM_FB_WIDTH,
                            PROTOPCIEM_FB_HEIGHT);
        surface = qemu_console_surface(s->con);
    }
    for (y = 0; y < PROTOPCIEM_FB_HEIGHT; y++) {
        uint32_t *dst = (uint32_t *)((uint8_t *)surface_data(surface) +
                                     y * surface_stride(surface));
        const uint8_t *src = s->fb + y * PROTOPCIEM_FB_PITCH;

        for (x = 0; x < PROTOPCIEM_FB_WIDTH; x++, src += PROTOPCIEM_FB_BPP) {
            dst[x] = rgb_to_pixel32(src[0], src[1], src[2]);
        }
    }
    trace_protopciem_display_update();
    dpy_gfx_update(s->con, 0, 0, PROTOPCIEM_FB_WIDTH, PROTOPCIEM_FB_HEIGHT);
    s->fb_dirty = false;
}

static void protopciem_gfx_invalidate(void *opaque)
{
    protopciem_fb_changed(opaque);
}

static const GraphicHwOps protopciem_gfx_ops = {
    .invalidate = protopciem_gfx_invalidate,
    .gfx_update = protopciem_gfx_update,
};

/* ---- DMA ---- */

/*
 * The checks every DMA command starts with: DMA_FLAGS, then DMA_LEN in
 * [@min, @max] and a multiple of @align.
 */
static uint32_t protopciem_check_dma(const ProtoPCIemCommand *c, uint32_t min,
                                     uint32_t max, uint32_t align)
{
    if (c->dma_flags) {
        protopciem_cmd_error(c, "DMA_FLAGS 0x%x: no flag is defined",
                             c->dma_flags);
        return PROTOPCIEM_ERR_DMA_FLAGS;
    }
    if (c->dma_len < min || c->dma_len > max) {
        protopciem_cmd_error(c, "DMA_LEN 0x%x is outside 0x%x..0x%x",
                             c->dma_len, min, max);
        return PROTOPCIEM_ERR_DMA_LENGTH;
    }
    if (c->dma_len % align) {
        protopciem_cmd_error(c, "DMA_LEN 0x%x is not a multiple of %u",
                             c->dma_len, align);
        return PROTOPCIEM_ERR_DMA_LENGTH;
    }
    return PROTOPCIEM_ERR_NONE;
}

/* A bus range of @len (> 0) bytes at @addr must not wrap past 2^64. */
static uint32_t protopciem_check_bus_range(const ProtoPCIemCommand *c,
                                           uint64_t addr, uint32_t len)
{
    if (addr + len - 1 < addr) {
        protopciem_cmd_error(c, "DMA range 0x%" PRIx64 "+0x%x wraps past "
                             "2^64", addr, len);
        return PROTOPCIEM_ERR_DMA_ADDRESS;
    }
    return PROTOPCIEM_ERR_NONE;
}

/* A range of @len bytes at offset @off in BAR2 must stay in BAR2. */
static uint32_t protopciem_check_mem_range(const ProtoPCIemCommand *c,
                                           uint64_t off, uint32_t len)
{
    if (off > PROTOPCIEM_BAR_MEM_SIZE - len) {
        protopciem_cmd_error(c, "BAR2 range 0x%" PRIx64 "+0x%x leaves the "
                             "0x%x-byte card memory", off, len,
                             PROTOPCIEM_BAR_MEM_SIZE);
        return PROTOPCIEM_ERR_DMA_ADDRESS;
    }
    return PROTOPCIEM_ERR_NONE;
}

static uint32_t protopciem_dma_read(ProtoPCIemState *s,
                                    const ProtoPCIemCommand *c,
                                    uint64_t addr, void *buf, uint32_t len)
{
    MemTxResult r = pci_dma_read(PCI_DEVICE(s), addr, buf, len);

    trace_protopciem_dma_read(addr, len, r);
    if (r != MEMTX_OK) {
        protopciem_cmd_error(c, "DMA read of 0x%x bytes at 0x%" PRIx64
                             " failed", len, addr);
        return PROTOPCIEM_ERR_DMA_FAULT;
    }
    return PROTOPCIEM_ERR_NONE;
}

/* Checks the whole destination first, so a refused write writes nothing. */
static uint32_t protopciem_dma_write(ProtoPCIemState *s,
                                     const ProtoPCIemCommand *c,
                                     uint64_t addr, const void *buf,
                                     uint32_t len)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    MemTxResult r = MEMTX_DECODE_ERROR;

    if (dma_memory_valid(pci_get_address_space(pdev), addr, len,
                         DMA_DIRECTION_FROM_DEVICE, MEMTXATTRS_UNSPECIFIED)) {
        r = pci_dma_write(pdev, addr, buf, len);
    }
    trace_protopciem_dma_write(addr, len, r);
    if (r != MEMTX_OK) {
        protopciem_cmd_error(c, "DMA write of 0x%x bytes at 0x%" PRIx64
                             " failed", len, addr);
        return PROTOPCIEM_ERR_DMA_FAULT;
    }
    return PROTOPCIEM_ERR_NONE;
}

/* ---- commands ---- */

static uint32_t protopciem_process_buffer(ProtoPCIemState *s,
                                          const ProtoPCIemCommand *c,
                                          uint64_t *result)
{
    uint64_t sum = 0;
    uint32_t err, i;

    err = protopciem_check_dma(c, 4, PROTOPCIEM_PROCESS_MAX, 4);
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_src, c->dma_len);
    }
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_dst, c->dma_len);
    }
    if (!err) {
        err = protopciem_dma_read(s, c, c->dma_src, s->scratch, c->dma_len);
    }
    if (err) {
        return err;
    }
    for (i = 0; i < c->dma_len; i += 4) {
        uint32_t word = ldl_le_p(s->scratch + i);

        sum += word;
        stl_le_p(s->scratch + i, word ^ c->data);
    }
    err = protopciem_dma_write(s, c, c->dma_dst, s->scratch, c->dma_len);
    if (!err) {
        *result = sum;
    }
    return err;
}

static uint32_t protopciem_execute_cmdbuf(ProtoPCIemState *s,
                                          const ProtoPCIemCommand *c,
                                          uint64_t *result, uint32_t *info)
{
    ProtoPCIem2DResult res;
    uint32_t err;

    err = protopciem_check_dma(c, 1, PROTOPCIEM_CMDBUF_MAX, 1);
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_src, c->dma_len);
    }
    if (!err) {
        err = protopciem_dma_read(s, c, c->dma_src, s->scratch, c->dma_len);
    }
    if (err) {
        return err;
    }
    protopciem_2d_execute(s->fb, s->scratch, c->dma_len, &res);
    if (res.drawn) {
        protopciem_fb_changed(s);
    }
    *result = res.entries;
    *info = res.error_offset;
    return res.error;
}

/*
 * With the frame-log property: "N HASH TIME" per frame DMA_FRAME put on the
 * display (N from 0, HASH the FNV-1a 64 of its 921,600 bytes in 16 hex
 * digits, or "-" with frame-log-hash=off; TIME the wall clock in
 * microseconds), so a test can check every frame that reached the display
 * and a benchmark can time it.
 */
static void protopciem_log_frame(ProtoPCIemState *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char line[64];
    size_t i;
    int n;

    if (!qemu_chr_fe_backend_connected(&s->frame_log)) {
        return;
    }
    if (s->frame_log_hash) {
        for (i = 0; i < PROTOPCIEM_FB_SIZE; i++) {
            h = (h ^ s->fb[i]) * 0x100000001b3ULL;
        }
        n = snprintf(line, sizeof(line), "%" PRIu64 " %016" PRIx64 " %" PRId64 "\n",
                     s->frames_shown++, h, g_get_real_time());
    } else {
        n = snprintf(line, sizeof(line), "%" PRIu64 " - %" PRId64 "\n",
                     s->frames_shown++, g_get_real_time());
    }
    qemu_chr_fe_write_all(&s->frame_log, (const uint8_t *)line, n);
}

static uint32_t protopciem_dma_frame(ProtoPCIemState *s,
                                     const ProtoPCIemCommand *c)
{
    uint32_t err;

    err = protopciem_check_dma(c, PROTOPCIEM_FB_SIZE, PROTOPCIEM_FB_SIZE, 1);
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_src, c->dma_len);
    }
    if (!err) {
        err = protopciem_dma_read(s, c, c->dma_src, s->fb_next, c->dma_len);
    }
    if (!err) {
        uint8_t *shown = s->fb;

        s->fb = s->fb_next;
        s->fb_next = shown;
        protopciem_fb_changed(s);
        protopciem_log_frame(s);
    }
    return err;
}

static uint32_t protopciem_p2p_read(ProtoPCIemState *s,
                                    const ProtoPCIemCommand *c,
                                    uint64_t *result)
{
    uint32_t err;

    err = protopciem_check_dma(c, 1, PROTOPCIEM_P2P_MAX, 1);
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_src, c->dma_len);
    }
    if (!err) {
        err = protopciem_check_mem_range(c, c->dma_dst, c->dma_len);
    }
    /* Staged: the peer may be this card's own BAR2. */
    if (!err) {
        err = protopciem_dma_read(s, c, c->dma_src, s->scratch, c->dma_len);
    }
    if (!err) {
        memcpy((uint8_t *)memory_region_get_ram_ptr(&s->mem) + c->dma_dst,
               s->scratch, c->dma_len);
        memory_region_set_dirty(&s->mem, c->dma_dst, c->dma_len);
        *result = c->dma_len;
    }
    return err;
}

static uint32_t protopciem_p2p_write(ProtoPCIemState *s,
                                     const ProtoPCIemCommand *c,
                                     uint64_t *result)
{
    uint32_t err;

    err = protopciem_check_dma(c, 1, PROTOPCIEM_P2P_MAX, 1);
    if (!err) {
        err = protopciem_check_mem_range(c, c->dma_src, c->dma_len);
    }
    if (!err) {
        err = protopciem_check_bus_range(c, c->dma_dst, c->dma_len);
    }
    if (err) {
        return err;
    }
    memcpy(s->scratch,
           (uint8_t *)memory_region_get_ram_ptr(&s->mem) + c->dma_src,
           c->dma_len);
    err = protopciem_dma_write(s, c, c->dma_dst, s->scratch, c->dma_len);
    if (!err) {
        *result = c->dma_len;
    }
    return err;
}

/*
 * Runs command @c. Returns PROTOPCIEM_ERR_NONE or the error code; sets
 * *@result (0 unless the command says otherwise) and *@info (ERROR_INFO).
 */
static uint32_t protopciem_execute(ProtoPCIemState *s,
                                   const ProtoPCIemCommand *c,
                                   uint64_t *result, uint32_t *info)
{
    switch (c->cmd) {
    case PROTOPCIEM_CMD_ADD:
        *result = (uint64_t)c->data + c->data;
        return PROTOPCIEM_ERR_NONE;
    case PROTOPCIEM_CMD_MULTIPLY:
        *result = (uint64_t)c->data * c->data;
        return PROTOPCIEM_ERR_NONE;
    case PROTOPCIEM_CMD_XOR:
        *result = c->data ^ UINT32_MAX;
        return PROTOPCIEM_ERR_NONE;
    case PROTOPCIEM_CMD_PROCESS_BUFFER:
        return protopciem_process_buffer(s, c, result);
    case PROTOPCIEM_CMD_EXECUTE_CMDBUF:
        return protopciem_execute_cmdbuf(s, c, result, info);
    case PROTOPCIEM_CMD_DMA_FRAME:
        return protopciem_dma_frame(s, c);
    case PROTOPCIEM_CMD_P2P_READ:
        return protopciem_p2p_read(s, c, result);
    case PROTOPCIEM_CMD_P2P_WRITE:
        return protopciem_p2p_write(s, c, result);
    default:
        protopciem_cmd_error(c, "not a command");
        return PROTOPCIEM_ERR_BAD_COMMAND;
    }
}

/* The bottom half: completes the oldest queued command. */
static void protopciem_run(void *opaque)
{
    ProtoPCIemState *s = opaque;
    ProtoPCIemCommand c;
    uint64_t result = 0;
    uint32_t info = 0, err;

    if (!s->queue_len) {
        return;
    }
    c = s->queue[s->queue_head];
    trace_protopciem_cmd_start(c.cmd, c.fence, c.data, c.dma_src, c.dma_dst,
                               c.dma_len);
    err = protopciem_execute(s, &c, &result, &info);

    s->queue_head = (s->queue_head + 1) % PROTOPCIEM_QUEUE_DEPTH_MAX;
    s->queue_len--;
    if (err != PROTOPCIEM_ERR_NONE) {
        /* Only EXECUTE_CMDBUF reports partial progress. */
        if (c.cmd != PROTOPCIEM_CMD_EXECUTE_CMDBUF) {
            result = 0;
        }
        protopciem_record_error(s, err, c.fence, info);
    }
    s->result = result;
    s->fence_done = c.fence;
    if (!s->queue_len) {
        s->cmd = 0;
    }
    s->status |= PROTOPCIEM_STATUS_DONE |
                 (err != PROTOPCIEM_ERR_NONE ? PROTOPCIEM_STATUS_ERROR : 0);
    trace_protopciem_cmd_done(c.cmd, c.fence, err, result);
    protopciem_interrupt(s);

    if (s->queue_len) {
        qemu_bh_schedule(s->bh);
    }
}

/* A non-zero CMD write: queue the command, or refuse it if full. */
static void protopciem_submit(ProtoPCIemState *s, uint32_t cmd)
{
    ProtoPCIemCommand *c;

    if (s->queue_len >= s->queue_depth) {
        qemu_log_mask(LOG_GUEST_ERROR, "%s: command 0x%x refused: the queue "
                      "holds %u commands already\n", TYPE_PROTOPCIEM, cmd,
                      s->queue_len);
        trace_protopciem_submit_refused(cmd, s->queue_len);
        protopciem_record_error(s, PROTOPCIEM_ERR_QUEUE_FULL, 0, cmd);
        s->status |= PROTOPCIEM_STATUS_ERROR;
        protopciem_interrupt(s);
        return;
    }
    c = &s->queue[(s->queue_head + s->queue_len) %
                  PROTOPCIEM_QUEUE_DEPTH_MAX];
    *c = (ProtoPCIemCommand) {
        .cmd = cmd,
        .data = s->data,
        .dma_src = s->dma_src,
        .dma_dst = s->dma_dst,
        .dma_len = s->dma_len,
        .dma_flags = s->dma_flags,
        .fence = s->fence_next++,
    };
    s->queue_len++;
    trace_protopciem_submit(cmd, c->fence, s->queue_len);
    qemu_bh_schedule(s->bh);
}

/* ---- reset ---- */

static void protopciem_reset_regs(ProtoPCIemState *s)
{
    s->control = 0;
    s->status = 0;
    s->cmd = 0;
    s->data = 0;
    s->result = 0;
    s->dma_src = 0;
    s->dma_dst = 0;
    s->dma_len = 0;
    s->dma_flags = 0;
    s->fence_next = 1;
    s->fence_done = 0;
    s->error_code = PROTOPCIEM_ERR_NONE;
    s->error_fence = 0;
    s->error_info = 0;
    s->error_count = 0;
    s->queue_head = 0;
    s->queue_len = 0;
    protopciem_2d_clear(s->fb, 0, 0, 0);
    s->fb_dirty = true;
}

/* CONTROL.RESET and PCI reset: queued commands are dropped. */
static void protopciem_reset(ProtoPCIemState *s)
{
    trace_protopciem_reset(s->queue_len);
    qemu_bh_cancel(s->bh);
    protopciem_reset_regs(s);
    protopciem_update_intx(s);
}

/* ---- BAR0 ---- */

static uint64_t protopciem_regs_read(void *opaque, hwaddr addr, unsigned size)
{
    ProtoPCIemState *s = opaque;
    uint64_t val;

    switch (addr) {
    case PROTOPCIEM_REG_CONTROL:
        val = s->control;
        break;
    case PROTOPCIEM_REG_STATUS:
        val = s->status;
        if (s->queue_len) {
            val |= PROTOPCIEM_STATUS_BUSY;
        }
        if (s->queue_len >= s->queue_depth) {
            val |= PROTOPCIEM_STATUS_QUEUE_FULL;
        }
        break;
    case PROTOPCIEM_REG_CMD:
        val = s->cmd;
        break;
    case PROTOPCIEM_REG_DATA:
        val = s->data;
        break;
    case PROTOPCIEM_REG_RESULT_LO:
        val = extract64(s->result, 0, 32);
        break;
    case PROTOPCIEM_REG_RESULT_HI:
        val = extract64(s->result, 32, 32);
        break;
    case PROTOPCIEM_REG_DMA_SRC_LO:
        val = extract64(s->dma_src, 0, 32);
        break;
    case PROTOPCIEM_REG_DMA_SRC_HI:
        val = extract64(s->dma_src, 32, 32);
        break;
    case PROTOPCIEM_REG_DMA_DST_LO:
        val = extract64(s->dma_dst, 0, 32);
        break;
    case PROTOPCIEM_REG_DMA_DST_HI:
        val = extract64(s->dma_dst, 32, 32);
        break;
    case PROTOPCIEM_REG_DMA_LEN:
        val = s->dma_len;
        break;
    case PROTOPCIEM_REG_DMA_FLAGS:
        val = s->dma_flags;
        break;
    case PROTOPCIEM_REG_ID:
        val = PROTOPCIEM_ID_VALUE;
        break;
    case PROTOPCIEM_REG_VERSION:
        val = PROTOPCIEM_VERSION_VALUE;
        break;
    case PROTOPCIEM_REG_CAPS:
        val = PROTOPCIEM_CAPS_VALUE;
        break;
    case PROTOPCIEM_REG_QUEUE_DEPTH:
        val = s->queue_depth;
        break;
    case PROTOPCIEM_REG_QUEUE_LEVEL:
        val = s->queue_len;
        break;
    case PROTOPCIEM_REG_FENCE_NEXT:
        val = s->fence_next;
        break;
    case PROTOPCIEM_REG_FENCE_DONE:
        val = s->fence_done;
        break;
    case PROTOPCIEM_REG_ERROR_CODE:
        val = s->error_code;
        break;
    case PROTOPCIEM_REG_ERROR_FENCE:
        val = s->error_fence;
        break;
    case PROTOPCIEM_REG_ERROR_INFO:
        val = s->error_info;
        break;
    case PROTOPCIEM_REG_ERROR_COUNT:
        val = s->error_count;
        break;
    case PROTOPCIEM_REG_FB_WIDTH:
        val = PROTOPCIEM_FB_WIDTH_VALUE;
        break;
    case PROTOPCIEM_REG_FB_HEIGHT:
        val = PROTOPCIEM_FB_HEIGHT_VALUE;
        break;
    case PROTOPCIEM_REG_FB_FORMAT:
        val = PROTOPCIEM_FB_FORMAT_VALUE;
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "%s: read of undefined register 0x%"
                      HWADDR_PRIx "\n", TYPE_PROTOPCIEM, addr);
        val = 0;
        break;
    }

    trace_protopciem_regs_read(addr, size, val);
    return val;
}

static void protopciem_regs_write(void *opaque, hwaddr addr, uint64_t val64,
                                  unsigned size)
{
    ProtoPCIemState *s = opaque;
    uint32_t val = val64;

    trace_protopciem_regs_write(addr, size, val64);

    switch (addr) {
    case PROTOPCIEM_REG_CONTROL:
        if (val & PROTOPCIEM_CONTROL_RESET) {
            protopciem_reset(s);
        }
        s->control = val & PROTOPCIEM_CONTROL_ENABLE;
        break;
    case PROTOPCIEM_REG_STATUS:
        /* RW0C: a 0 clears DONE / ERROR, a 1 leaves them. */
        s->status &= val | ~STATUS_STICKY;
        protopciem_update_intx(s);
        break;
    case PROTOPCIEM_REG_CMD:
        s->cmd = val;
        if (val) {
            protopciem_submit(s, val);
        }
        break;
    case PROTOPCIEM_REG_DATA:
        s->data = val;
        break;
    case PROTOPCIEM_REG_DMA_SRC_LO:
        s->dma_src = deposit64(s->dma_src, 0, 32, val);
        break;
    case PROTOPCIEM_REG_DMA_SRC_HI:
        s->dma_src = deposit64(s->dma_src, 32, 32, val);
        break;
    case PROTOPCIEM_REG_DMA_DST_LO:
        s->dma_dst = deposit64(s->dma_dst, 0, 32, val);
        break;
    case PROTOPCIEM_REG_DMA_DST_HI:
        s->dma_dst = deposit64(s->dma_dst, 32, 32, val);
        break;
    case PROTOPCIEM_REG_DMA_LEN:
        s->dma_len = val;
        break;
    case PROTOPCIEM_REG_DMA_FLAGS:
        s->dma_flags = val;
        break;
    case PROTOPCIEM_REG_FENCE_NEXT:
        s->fence_next = val;
        break;
    case PROTOPCIEM_REG_ERROR_CODE:
        s->error_code = PROTOPCIEM_ERR_NONE;
        s->error_fence = 0;
        s->error_info = 0;
        s->error_count = 0;
        break;
    case PROTOPCIEM_REG_RESULT_LO:
    case PROTOPCIEM_REG_RESULT_HI:
    case PROTOPCIEM_REG_ID:
    case PROTOPCIEM_REG_VERSION:
    case PROTOPCIEM_REG_CAPS:
    case PROTOPCIEM_REG_QUEUE_DEPTH:
    case PROTOPCIEM_REG_QUEUE_LEVEL:
    case PROTOPCIEM_REG_FENCE_DONE:
    case PROTOPCIEM_REG_ERROR_FENCE:
    case PROTOPCIEM_REG_ERROR_INFO:
    case PROTOPCIEM_REG_ERROR_COUNT:
    case PROTOPCIEM_REG_FB_WIDTH:
    case PROTOPCIEM_REG_FB_HEIGHT:
    case PROTOPCIEM_REG_FB_FORMAT:
        qemu_log_mask(LOG_GUEST_ERROR, "%s: write of 0x%x to read-only "
                      "register 0x%" HWADDR_PRIx "\n", TYPE_PROTOPCIEM, val,
                      addr);
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "%s: write of 0x%x to undefined "
                      "register 0x%" HWADDR_PRIx "\n", TYPE_PROTOPCIEM, val,
                      addr);
        break;
    }
}

/*
 * Registers are 32 bits wide, as upstream's driver accesses them. Aligned
 * 64-bit accesses are split into two 32-bit ones by the memory core, the
 * lower address first; narrower or misaligned accesses are refused before
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

/* ---- PCI glue ---- */

static void protopciem_config_write(PCIDevice *pdev, uint32_t addr,
                                    uint32_t val, int len)
{
    pci_default_write_config(pdev, addr, val, len);
    /* Turning MSI on or off moves a pending interrupt between the two. */
    protopciem_update_intx(PROTOPCIEM(pdev));
}

static void protopciem_realize(PCIDevice *pdev, Error **errp)
{
    ProtoPCIemState *s = PROTOPCIEM(pdev);
    Error *err = NULL;

    if (s->queue_depth < 1 || s->queue_depth > PROTOPCIEM_QUEUE_DEPTH_MAX) {
        error_setg(errp, "queue-depth must be 1 to %u, not %" PRIu32,
                   PROTOPCIEM_QUEUE_DEPTH_MAX, s->queue_depth);
        return;
    }

    pci_config_set_prog_interface(pdev->config, PROTOPCIEM_PCI_PROG_IF);
    pci_config_set_interrupt_pin(pdev->config, PROTOPCIEM_PCI_INTERRUPT_PIN);

    /* 64-bit addresses and per-vector masking, as on upstream's card. */
    if (s->msi != ON_OFF_AUTO_OFF &&
        msi_init(pdev, 0, PROTOPCIEM_PCI_MSI_VECTORS, true, true, &err)) {
        if (s->msi == ON_OFF_AUTO_ON) {
            error_append_hint(&err, "Use msi=auto or msi=off with this "
                              "machine type.\n");
            error_propagate(errp, err);
            return;
        }
        /* msi=auto: INTx only, on machines without working MSI. */
        error_free(err);
    }

    if (!memory_region_init_ram(&s->mem, OBJECT(s), "protopciem-mem",
                                PROTOPCIEM_BAR_MEM_SIZE, errp)) {
        msi_uninit(pdev);
        return;
    }
    memory_region_init_io(&s->regs, OBJECT(s), &protopciem_regs_ops, s,
                          "protopciem-regs", PROTOPCIEM_BAR_REGS_SIZE);
    pci_register_bar(pdev, PROTOPCIEM_BAR_REGS,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64, &s->regs);
    pci_register_bar(pdev, PROTOPCIEM_BAR_MEM,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->mem);

    s->scratch = g_malloc(SCRATCH_SIZE);
    s->fb = g_malloc0(PROTOPCIEM_FB_SIZE);
    s->fb_next = g_malloc0(PROTOPCIEM_FB_SIZE);
    /* The guard turns DMA into our own BAR0 into a failed access. */
    s->bh = qemu_bh_new_guarded(protopciem_run, s,
                                &DEVICE(s)->mem_reentrancy_guard);
    s->con = graphic_console_init(DEVICE(pdev), 0, &protopciem_gfx_ops, s);
    qemu_console_resize(s->con, PROTOPCIEM_FB_WIDTH, PROTOPCIEM_FB_HEIGHT);
    protopciem_reset_regs(s);
}

static void protopciem_exit(PCIDevice *pdev)
{
    ProtoPCIemState *s = PROTOPCIEM(pdev);

    graphic_console_close(s->con);
    qemu_bh_delete(s->bh);
    g_free(s->scratch);
    g_free(s->fb);
    g_free(s->fb_next);
    msi_uninit(pdev);
}

static void protopciem_reset_hold(Object *obj, ResetType type)
{
    protopciem_reset(PROTOPCIEM(obj));
}

static int protopciem_post_load(void *opaque, int version_id)
{
    ProtoPCIemState *s = opaque;

    if (s->queue_head >= PROTOPCIEM_QUEUE_DEPTH_MAX ||
        s->queue_len > s->queue_depth) {
        return -EINVAL;
    }
    s->status &= STATUS_STICKY;
    protopciem_fb_changed(s);
    if (s->queue_len) {
        qemu_bh_schedule(s->bh);
    }
    return 0;
}

static const VMStateDescription vmstate_protopciem_command = {
    .name = TYPE_PROTOPCIEM "/command",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(cmd, ProtoPCIemCommand),
        VMSTATE_UINT32(data, ProtoPCIemCommand),
        VMSTATE_UINT64(dma_src, ProtoPCIemCommand),
        VMSTATE_UINT64(dma_dst, ProtoPCIemCommand),
        VMSTATE_UINT32(dma_len, ProtoPCIemCommand),
        VMSTATE_UINT32(dma_flags, ProtoPCIemCommand),
        VMSTATE_UINT32(fence, ProtoPCIemCommand),
        VMSTATE_END_OF_LIST()
    },
};

/* Version 1 was the first increment, with no register state. */
static const VMStateDescription vmstate_protopciem = {
    .name = TYPE_PROTOPCIEM,
    .version_id = 2,
    .minimum_version_id = 2,
    .post_load = protopciem_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, ProtoPCIemState),
        VMSTATE_UINT32(control, ProtoPCIemState),
        VMSTATE_UINT32(status, ProtoPCIemState),
        VMSTATE_UINT32(cmd, ProtoPCIemState),
        VMSTATE_UINT32(data, ProtoPCIemState),
        VMSTATE_UINT64(result, ProtoPCIemState),
        VMSTATE_UINT64(dma_src, ProtoPCIemState),
        VMSTATE_UINT64(dma_dst, ProtoPCIemState),
        VMSTATE_UINT32(dma_len, ProtoPCIemState),
        VMSTATE_UINT32(dma_flags, ProtoPCIemState),
        VMSTATE_UINT32(fence_next, ProtoPCIemState),
        VMSTATE_UINT32(fence_done, ProtoPCIemState),
        VMSTATE_UINT32(error_code, ProtoPCIemState),
        VMSTATE_UINT32(error_fence, ProtoPCIemState),
        VMSTATE_UINT32(error_info, ProtoPCIemState),
        VMSTATE_UINT32(error_count, ProtoPCIemState),
        VMSTATE_STRUCT_ARRAY(queue, ProtoPCIemState,
                             PROTOPCIEM_QUEUE_DEPTH_MAX, 1,
                             vmstate_protopciem_command, ProtoPCIemCommand),
        VMSTATE_UINT32(queue_head, ProtoPCIemState),
        VMSTATE_UINT32(queue_len, ProtoPCIemState),
        VMSTATE_BUFFER_POINTER_UNSAFE(fb, ProtoPCIemState, 0,
                                      PROTOPCIEM_FB_SIZE),
        VMSTATE_END_OF_LIST()
    },
};

static const Property protopciem_properties[] = {
    DEFINE_PROP_UINT32("queue-depth", ProtoPCIemState, queue_depth,
                       PROTOPCIEM_QUEUE_DEPTH_DEFAULT),
    DEFINE_PROP_ON_OFF_AUTO("msi", ProtoPCIemState, msi, ON_OFF_AUTO_AUTO),
    DEFINE_PROP_CHR("frame-log", ProtoPCIemState, frame_log),
    DEFINE_PROP_BOOL("frame-log-hash", ProtoPCIemState, frame_log_hash, true),
};

static void protopciem_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    k->realize = protopciem_realize;
    k->exit = protopciem_exit;
    k->config_write = protopciem_config_write;
    k->vendor_id = PROTOPCIEM_PCI_VENDOR_ID;
    k->device_id = PROTOPCIEM_PCI_DEVICE_ID;
    k->revision = PROTOPCIEM_PCI_REVISION;
    k->class_id = (PROTOPCIEM_PCI_CLASS << 8) | PROTOPCIEM_PCI_SUBCLASS;
    rc->phases.hold = protopciem_reset_hold;
    dc->desc = "ProtoPCIem card";
    dc->vmsd = &vmstate_protopciem;
    device_class_set_props(dc, protopciem_properties);
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
