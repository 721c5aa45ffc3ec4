/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one conversion from chocolate-doom's frame to the ProtoPCIem card's,
 * shared by every output of libdoomhook (card, hash lines, PPM dumps).
 */
#ifndef DOOMHOOK_FRAME_H
#define DOOMHOOK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define DOOMHOOK_FB_WIDTH	640
#define DOOMHOOK_FB_HEIGHT	480
#define DOOMHOOK_FB_PITCH	(DOOMHOOK_FB_WIDTH * 3)
#define DOOMHOOK_FB_BYTES	(DOOMHOOK_FB_PITCH * DOOMHOOK_FB_HEIGHT)

/*
 * The 32-bit pixel layouts the scaler reads: which byte of the native word
 * holds red. SDL's ARGB8888 and RGB888 (XRGB8888) are 0x??RRGGBB, ABGR8888
 * and BGR888 (XBGR8888) are 0x??BBGGRR. chocolate-doom uses the window's
 * format: RGB888 under SDL's offscreen driver.
 */
enum doomhook_order {
	DOOMHOOK_XRGB,
	DOOMHOOK_XBGR,
};

/*
 * Scales a w x h frame of 32-bit pixels in the given order (pitch
 * bytes per line) to 640x480 RGB888 (bytes R, G, B; no padding) in dst,
 * nearest neighbour: output pixel (x, y) is source pixel
 * (x * w / 640, y * h / 480), integer division. For DOOM's 320x200 that is
 * 2x across and 2.4x down (source rows repeat 3, 2, 3, 2, 2 times), the
 * 4:3 picture chocolate-doom shows with its aspect ratio correction.
 * Returns 0, or -1 for a size it cannot scale (w, h not in 1..640, 1..480
 * pitch < w * 4 or not a multiple of 4).
 */
int doomhook_scale(const void *src, unsigned int w, unsigned int h, size_t pitch,
		   enum doomhook_order order, uint8_t *dst);

/* FNV-1a, 64 bits, over len bytes. */
uint64_t doomhook_fnv1a64(const void *buf, size_t len);

#endif /* DOOMHOOK_FRAME_H */
