/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * ProtoPCIem 2D engine: the command-buffer interpreter and rasteriser
 * behind EXECUTE_CMDBUF. The entry layout and the pixels each entry sets
 * are defined in docs/protopciem.md; the offsets come from the generated
 * protopciem_regs.h. Fields are read with the little-endian load helpers,
 * so entries need no alignment.
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/log.h"
#include "protopciem_regs.h"
#include "protopciem-2d.h"
#include "trace.h"

#define FB_W ((int)PROTOPCIEM_FB_WIDTH)
#define FB_H ((int)PROTOPCIEM_FB_HEIGHT)

static inline uint8_t *pixel(uint8_t *fb, int x, int y)
{
    return fb + ((size_t)y * PROTOPCIEM_FB_WIDTH + x) * PROTOPCIEM_FB_BPP;
}

void protopciem_2d_clear(uint8_t *fb, uint8_t r, uint8_t g, uint8_t b)
{
    int x, y;

    /* One line by pixel, then copy it: the rest is bulk memcpy. */
    for (x = 0; x < FB_W; x++) {
        uint8_t *p = pixel(fb, x, 0);

        p[0] = r;
        p[1] = g;
        p[2] = b;
    }
    for (y = 1; y < FB_H; y++) {
        memcpy(pixel(fb, 0, y), fb, PROTOPCIEM_FB_PITCH);
    }
}

/*
 * The pixels of the spec's DRAW_LINE: along the major axis every step
 * i = 0..major sets one pixel whose minor coordinate is
 * j = floor((2 * i * minor + major) / (2 * major)). Computed incrementally:
 * d = 2 * i * minor + major - 2 * major * (j + 1) stays in [-2 * major, 0)
 * and j advances whenever it reaches 0.
 */
static void line(uint8_t *fb, int x0, int y0, int x1, int y1,
                 const uint8_t *rgb)
{
    int adx = abs(x1 - x0), ady = abs(y1 - y0);
    int sx = x1 < x0 ? -1 : 1, sy = y1 < y0 ? -1 : 1;
    bool x_major = adx >= ady;
    int major = x_major ? adx : ady, minor = x_major ? ady : adx;
    int d = -major;
    int x = x0, y = y0, i;

    for (i = 0; i <= major; i++) {
        memcpy(pixel(fb, x, y), rgb, PROTOPCIEM_FB_BPP);
        d += 2 * minor;
        if (d >= 0) {
            d -= 2 * major;
            if (x_major) {
                y += sy;
            } else {
                x += sx;
            }
        }
        if (x_major) {
            x += sx;
        } else {
            y += sy;
        }
    }
}

static void blit(uint8_t *fb, int x, int y, int w, int h,
                 const uint8_t *pixels)
{
    size_t row = (size_t)w * PROTOPCIEM_FB_BPP;
    int j;

    for (j = 0; j < h; j++) {
        memcpy(pixel(fb, x, y + j), pixels + j * row, row);
    }
}

static bool in_fb(uint32_t x, uint32_t y)
{
    return x < PROTOPCIEM_FB_WIDTH && y < PROTOPCIEM_FB_HEIGHT;
}

/*
 * Checks and runs the entry at @e (@length bytes, already known to lie in
 * the buffer). Returns PROTOPCIEM_ERR_NONE or the error; draws nothing on
 * error.
 */
static uint32_t run_entry(uint8_t *fb, const uint8_t *e, uint32_t offset,
                          uint32_t opcode, uint32_t length, bool *drawn)
{
    uint32_t x0, y0, x1, y1, w, h;
    uint64_t need;

    switch (opcode) {
    case PROTOPCIEM_OP_NOP:
        return PROTOPCIEM_ERR_NONE;

    case PROTOPCIEM_OP_CLEAR:
        if (length < PROTOPCIEM_CB_CLEAR_SIZE) {
            break;
        }
        protopciem_2d_clear(fb, e[PROTOPCIEM_CB_CLEAR_R],
                            e[PROTOPCIEM_CB_CLEAR_G],
                            e[PROTOPCIEM_CB_CLEAR_B]);
        *drawn = true;
        return PROTOPCIEM_ERR_NONE;

    case PROTOPCIEM_OP_DRAW_LINE:
        if (length < PROTOPCIEM_CB_DRAW_LINE_SIZE) {
            break;
        }
        x0 = lduw_le_p(e + PROTOPCIEM_CB_DRAW_LINE_X0);
        y0 = lduw_le_p(e + PROTOPCIEM_CB_DRAW_LINE_Y0);
        x1 = lduw_le_p(e + PROTOPCIEM_CB_DRAW_LINE_X1);
        y1 = lduw_le_p(e + PROTOPCIEM_CB_DRAW_LINE_Y1);
        if (!in_fb(x0, y0) || !in_fb(x1, y1)) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: DRAW_LINE (%u,%u)-(%u,%u) leaves "
                          "the %ux%u framebuffer\n", offset, x0, y0, x1, y1,
                          PROTOPCIEM_FB_WIDTH, PROTOPCIEM_FB_HEIGHT);
            return PROTOPCIEM_ERR_COORDS;
        }
        line(fb, x0, y0, x1, y1, e + PROTOPCIEM_CB_DRAW_LINE_R);
        *drawn = true;
        return PROTOPCIEM_ERR_NONE;

    case PROTOPCIEM_OP_BLIT_RECT:
        if (length < PROTOPCIEM_CB_BLIT_RECT_SIZE) {
            break;
        }
        x0 = lduw_le_p(e + PROTOPCIEM_CB_BLIT_RECT_X);
        y0 = lduw_le_p(e + PROTOPCIEM_CB_BLIT_RECT_Y);
        w = lduw_le_p(e + PROTOPCIEM_CB_BLIT_RECT_WIDTH);
        h = lduw_le_p(e + PROTOPCIEM_CB_BLIT_RECT_HEIGHT);
        /* Up to 65535 x 65535 x 3: does not fit 32 bits. */
        need = PROTOPCIEM_CB_BLIT_RECT_PIXELS +
               (uint64_t)w * h * PROTOPCIEM_FB_BPP;
        if (length < need) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: BLIT_RECT of %ux%u needs %" PRIu64
                          " bytes, LENGTH is %u\n", offset, w, h, need,
                          length);
            return PROTOPCIEM_ERR_CMDBUF_LENGTH;
        }
        if (x0 + w > PROTOPCIEM_FB_WIDTH || y0 + h > PROTOPCIEM_FB_HEIGHT) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: BLIT_RECT %ux%u at (%u,%u) leaves "
                          "the %ux%u framebuffer\n", offset, w, h, x0, y0,
                          PROTOPCIEM_FB_WIDTH, PROTOPCIEM_FB_HEIGHT);
            return PROTOPCIEM_ERR_COORDS;
        }
        blit(fb, x0, y0, w, h, e + PROTOPCIEM_CB_BLIT_RECT_PIXELS);
        *drawn = *drawn || (w && h);
        return PROTOPCIEM_ERR_NONE;

    default:
        qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer entry "
                      "at 0x%x: unknown opcode 0x%x\n", offset, opcode);
        return PROTOPCIEM_ERR_CMDBUF_OPCODE;
    }

    qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer entry at "
                  "0x%x: LENGTH %u is too short for opcode 0x%x\n",
                  offset, length, opcode);
    return PROTOPCIEM_ERR_CMDBUF_LENGTH;
}

void protopciem_2d_execute(uint8_t *fb, const uint8_t *buf, uint32_t len,
                           ProtoPCIem2DResult *res)
{
    uint32_t offset = 0;

    memset(res, 0, sizeof(*res));
    while (offset < len) {
        uint32_t left = len - offset, opcode, length;

        if (left < PROTOPCIEM_CB_HDR_SIZE) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: only %u bytes left for an %u-byte "
                          "header\n", offset, left, PROTOPCIEM_CB_HDR_SIZE);
            res->error = PROTOPCIEM_ERR_CMDBUF_TRUNCATED;
            break;
        }
        opcode = lduw_le_p(buf + offset + PROTOPCIEM_CB_HDR_OPCODE);
        length = ldl_le_p(buf + offset + PROTOPCIEM_CB_HDR_LENGTH);
        trace_protopciem_2d_entry(offset, opcode, length);
        if (length < PROTOPCIEM_CB_HDR_SIZE) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: LENGTH %u is shorter than its "
                          "header\n", offset, length);
            res->error = PROTOPCIEM_ERR_CMDBUF_LENGTH;
            break;
        }
        if (length > left) {
            qemu_log_mask(LOG_GUEST_ERROR, "protopciem: command buffer "
                          "entry at 0x%x: LENGTH %u runs past the end of the "
                          "%u-byte buffer\n", offset, length, len);
            res->error = PROTOPCIEM_ERR_CMDBUF_TRUNCATED;
            break;
        }
        res->error = run_entry(fb, buf + offset, offset, opcode, length,
                               &res->drawn);
        if (res->error != PROTOPCIEM_ERR_NONE) {
            break;
        }
        res->entries++;
        offset += length;
    }
    if (res->error != PROTOPCIEM_ERR_NONE) {
        res->error_offset = offset;
    }
}
