/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * ProtoPCIem 2D engine: the command-buffer interpreter and rasteriser
 * behind EXECUTE_CMDBUF (docs/protopciem.md, "Command buffers").
 *
 * It works on a plain RGB888 framebuffer of PROTOPCIEM_FB_WIDTH x
 * PROTOPCIEM_FB_HEIGHT pixels and knows nothing of the device around it.
 */

#ifndef HW_PCIEM_PROTOPCIEM_2D_H
#define HW_PCIEM_PROTOPCIEM_2D_H

typedef struct ProtoPCIem2DResult {
    uint32_t error;         /* PROTOPCIEM_ERR_*; ERR_NONE if all entries ran */
    uint32_t entries;       /* entries executed */
    uint32_t error_offset;  /* byte offset of the failing entry */
    bool drawn;             /* the framebuffer may have changed */
} ProtoPCIem2DResult;

/* Fills the whole framebuffer with one colour. */
void protopciem_2d_clear(uint8_t *fb, uint8_t r, uint8_t g, uint8_t b);

/*
 * Executes the command buffer of @len bytes at @buf on @fb, stopping at
 * the first bad entry (which draws nothing); reports the outcome in @res.
 * Every error is logged as a guest error.
 */
void protopciem_2d_execute(uint8_t *fb, const uint8_t *buf, uint32_t len,
                           ProtoPCIem2DResult *res);

#endif /* HW_PCIEM_PROTOPCIEM_2D_H */
