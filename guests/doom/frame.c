// SPDX-License-Identifier: GPL-2.0-only
/*
 * Frame conversion and hash for libdoomhook (frame.h).
 */
#include <string.h>

#include "frame.h"

int doomhook_scale(const void *src, unsigned int w, unsigned int h, size_t pitch,
		   enum doomhook_order order, uint8_t *dst)
{
	unsigned int rshift = order == DOOMHOOK_XRGB ? 16 : 0;
	unsigned int bshift = 16 - rshift;
	unsigned int sx[DOOMHOOK_FB_WIDTH];
	unsigned int x, y, last = ~0u;
	uint8_t *prev = NULL;

	if (!w || !h || w > DOOMHOOK_FB_WIDTH || h > DOOMHOOK_FB_HEIGHT || pitch < (size_t)w * 4 || pitch % 4)
		return -1;
	for (x = 0; x < DOOMHOOK_FB_WIDTH; x++)
		sx[x] = x * w / DOOMHOOK_FB_WIDTH;

	for (y = 0; y < DOOMHOOK_FB_HEIGHT; y++) {
		unsigned int sy = y * h / DOOMHOOK_FB_HEIGHT;
		uint8_t *out = dst + (size_t)y * DOOMHOOK_FB_PITCH;
		const uint32_t *in;

		/* A source line shown again: copy the line just made. */
		if (sy == last) {
			memcpy(out, prev, DOOMHOOK_FB_PITCH);
			continue;
		}
		in = (const uint32_t *)((const uint8_t *)src + (size_t)sy * pitch);
		for (x = 0; x < DOOMHOOK_FB_WIDTH; x++) {
			uint32_t p = in[sx[x]];

			out[3 * x] = p >> rshift;
			out[3 * x + 1] = p >> 8;
			out[3 * x + 2] = p >> bshift;
		}
		last = sy;
		prev = out;
	}
	return 0;
}

uint64_t doomhook_fnv1a64(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}
