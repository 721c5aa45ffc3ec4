// SPDX-License-Identifier: GPL-2.0-only
/*
 * For test/unit/doom.test.ts: preloaded in front of libdoomhook, makes each
 * of the first SLOW_FRAMES presentations take longer than a DOOM tic (as they
 * do in a TCG VM), with a sleep SDL does not see.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

#include <SDL.h>

#define SLOW_FRAMES	60
#define SLOW_NS		40000000L	/* 40 ms; a tic is 1/35 s */

void SDL_RenderPresent(SDL_Renderer *renderer)
{
	static void (*next)(SDL_Renderer *);
	static int presents;
	struct timespec ts = { 0, SLOW_NS };

	if (!next)
		next = (void (*)(SDL_Renderer *))dlsym(RTLD_NEXT, "SDL_RenderPresent");
	if (presents++ < SLOW_FRAMES)
		nanosleep(&ts, NULL);
	next(renderer);
}
