// SPDX-License-Identifier: GPL-2.0-only
/*
 * A stand-in for chocolate-doom's presentation, for test/unit/doom.test.ts:
 * presents synthetic frames the way I_FinishUpdate does (upload to a
 * streaming texture, clear, copy, present), so that libdoomhook's capture and
 * conversion can be checked pixel by pixel.
 *
 *   synth FORMAT W H     FORMAT: RGB888, ARGB8888, BGR888 or ABGR8888
 *
 * Frame 1 is uploaded whole, from lines padded by 64 bytes; frame 2 only as
 * its lower half (the upper half keeps frame 1). Source pixel (x, y) of
 * frame f has red x & 0xff, green y & 0xff, blue (f << 4) | (x >> 8) << 2 |
 * (y >> 8): every pixel of a frame differs from every other.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL.h>

static uint32_t pixel(Uint32 format, int x, int y, int f)
{
	uint32_t r = x & 0xff, g = y & 0xff, b = (f << 4) | (x >> 8) << 2 | (y >> 8);

	if (format == SDL_PIXELFORMAT_BGR888 || format == SDL_PIXELFORMAT_ABGR8888)
		return 0xff000000u | b << 16 | g << 8 | r;
	return 0xff000000u | r << 16 | g << 8 | b;
}

static int fail(const char *what)
{
	fprintf(stderr, "synth: %s: %s\n", what, SDL_GetError());
	return 1;
}

int main(int argc, char **argv)
{
	SDL_Renderer *renderer;
	SDL_Texture *texture;
	SDL_Window *window;
	Uint32 format;
	uint8_t *buf;
	int w, h, pitch, x, y, f;

	if (argc != 4) {
		fprintf(stderr, "usage: synth RGB888|ARGB8888|BGR888|ABGR8888 W H\n");
		return 2;
	}
	format = !strcmp(argv[1], "RGB888") ? SDL_PIXELFORMAT_RGB888 :
		 !strcmp(argv[1], "ARGB8888") ? SDL_PIXELFORMAT_ARGB8888 :
		 !strcmp(argv[1], "BGR888") ? SDL_PIXELFORMAT_BGR888 :
		 !strcmp(argv[1], "ABGR8888") ? SDL_PIXELFORMAT_ABGR8888 : 0;
	w = atoi(argv[2]);
	h = atoi(argv[3]);
	if (!format || w < 1 || h < 1 || w > 4096 || h > 4096) {
		fprintf(stderr, "synth: bad arguments\n");
		return 2;
	}
	if (SDL_Init(SDL_INIT_VIDEO))
		return fail("SDL_Init");
	window = SDL_CreateWindow("synth", 0, 0, w, h, 0);
	if (!window)
		return fail("SDL_CreateWindow");
	renderer = SDL_CreateRenderer(window, -1, 0);
	if (!renderer)
		return fail("SDL_CreateRenderer");
	texture = SDL_CreateTexture(renderer, format, SDL_TEXTUREACCESS_STREAMING, w, h);
	if (!texture)
		return fail("SDL_CreateTexture");
	pitch = w * 4 + 64;
	buf = calloc(h, pitch);
	if (!buf)
		return 1;

	for (f = 1; f <= 2; f++) {
		SDL_Rect lower = { 0, h / 2, w, h - h / 2 };
		const SDL_Rect *rect = f == 1 ? NULL : &lower;
		int y0 = rect ? rect->y : 0;

		for (y = y0; y < h; y++)
			for (x = 0; x < w; x++)
				memcpy(buf + (size_t)(y - y0) * pitch + 4 * x,
				       &(uint32_t){ pixel(format, x, y, f) }, 4);
		if (SDL_UpdateTexture(texture, rect, buf, pitch))
			return fail("SDL_UpdateTexture");
		SDL_RenderClear(renderer);
		SDL_RenderCopy(renderer, texture, NULL, NULL);
		SDL_RenderPresent(renderer);
	}
	SDL_DestroyTexture(texture);
	SDL_DestroyRenderer(renderer);
	SDL_DestroyWindow(window);
	SDL_Quit();
	return 0;
}
