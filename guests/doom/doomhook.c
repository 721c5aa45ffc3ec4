// SPDX-License-Identifier: GPL-2.0-only
/*
 * libdoomhook: takes an SDL2 program's finished frames (chocolate-doom's,
 * unmodified) to the ProtoPCIem card, with LD_PRELOAD.
 *
 * chocolate-doom presents a frame like this (src/i_video.c, I_FinishUpdate):
 * its 8-bit screen is blitted to a 320x200 32-bit surface in the window's
 * pixel format (RGB888 under SDL's offscreen driver), uploaded with
 * SDL_UpdateTexture into a streaming texture of that format, scaled with SDL_RenderCopy
 * (twice, through an upscaled target texture) and shown with
 * SDL_RenderPresent. The hook adopts the streaming 32-bit texture when it is
 * created, keeps a copy of every upload to it, and on SDL_RenderPresent of
 * its renderer converts that copy to the card's 640x480 RGB888 and sends it
 * out. The renderer's own work (upload, clear, copies, target switches,
 * present) becomes a no-op: SDL draws nothing at all.
 *
 * Environment (guests/doom/README.md):
 *   DOOMHOOK_MODE        card (default): every frame to the card, through
 *                        /dev/protopciem (mmap'd double buffer + SUBMIT_FRAME)
 *                        file: no card; the reference
 *   DOOMHOOK_DEVICE      the card's node (default /dev/protopciem)
 *   DOOMHOOK_HASHES      write "N FNV1A64" per frame to this file
 *   DOOMHOOK_TIMES       write "N MICROSECONDS" per frame, the wall clock as
 *                        the frame is submitted (for latency measurements)
 *   DOOMHOOK_DUMP_DIR    with DOOMHOOK_DUMP_EVERY=K: every Kth frame as
 *                        frame-NNNNNN.ppm, and the last one as last.ppm
 *   DOOMHOOK_CLOCK       real (default) or virtual: SDL_GetTicks advances only
 *                        by what the program asks SDL_Delay to sleep
 *
 * Exit status: a card that cannot be opened or mapped, or a SUBMIT_FRAME that
 * fails, ends the program at once with status 3; bad settings or output
 * files with status 2.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <SDL.h>
#include <linux/protopciem.h>

#include "frame.h"

#define DH_EXIT_USAGE	2
#define DH_EXIT_CARD	3

_Static_assert(DOOMHOOK_FB_BYTES == PROTOPCIEM_FRAME_BYTES, "the card's frame is 640x480 RGB888");

enum dh_mode { DH_MODE_CARD, DH_MODE_FILE };

static struct {
	/* Settings, from the environment at load time. */
	enum dh_mode mode;
	const char *device;
	const char *hashes_path;
	const char *times_path;
	const char *dump_dir;
	unsigned long dump_every;
	bool virtual_clock;

	/* The adopted frame texture, its renderer and the last upload to it. */
	SDL_Texture *texture;
	SDL_Renderer *renderer;
	unsigned int w, h;
	enum doomhook_order order;
	uint32_t *shadow;
	bool dirty;

	/* Outputs, set up when the first frame texture is adopted. */
	bool active;
	FILE *hashes;
	FILE *times;		/* "N MICROSECONDS" per frame, taken as it is submitted */
	uint8_t *file_frame;	/* file mode: the one output frame */
	int fd;			/* card mode: the device and its two frames */
	uint8_t *fb;
	unsigned int next_buffer;
	const uint8_t *last_frame;

	/* Counters. */
	unsigned long frames;
	unsigned long submit_errors;
	struct timespec first, last;
} dh = { .fd = -1 };

static uint32_t dh_clock_ms = 1000;	/* virtual clock; never 0 (DOOM's "unset") */

static void *dh_real(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		fprintf(stderr, "doomhook: %s is not in any later library: %s\n", name, dlerror());
		exit(DH_EXIT_USAGE);
	}
	return p;
}

/* The next definition of SDL function fn (the real SDL), looked up once. */
#define DH_REAL(fn) ({						\
	static __typeof__(&fn) real_##fn;			\
	if (!real_##fn)						\
		real_##fn = (__typeof__(&fn))dh_real(#fn);	\
	real_##fn;						\
})

static __attribute__((format(printf, 2, 3), noreturn)) void dh_die(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("doomhook: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(status);
}

static double dh_seconds(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) + (b->tv_nsec - a->tv_nsec) / 1e9;
}

static void dh_open_card(void)
{
	size_t len = (size_t)PROTOPCIEM_FRAME_BYTES * PROTOPCIEM_FRAMES;
	struct stat st;
	void *fb;

	dh.fd = open(dh.device, O_RDWR | O_CLOEXEC);
	if (dh.fd < 0)
		dh_die(DH_EXIT_CARD, "%s: %s%s", dh.device, strerror(errno),
		       errno == ENOENT ? " (is protopciem.ko loaded and a card bound? "
					 "DOOMHOOK_MODE=file runs without a card)" : "");
	if (fstat(dh.fd, &st) || !S_ISCHR(st.st_mode))
		dh_die(DH_EXIT_CARD, "%s: not a character device (the card's node is /dev/protopciem)",
		       dh.device);
	fb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dh.fd, 0);
	if (fb == MAP_FAILED)
		dh_die(DH_EXIT_CARD, "%s: mmap of the two frame buffers (%zu bytes): %s",
		       dh.device, len, strerror(errno));
	dh.fb = fb;
}

/* Sets up the outputs, once: a program that never shows a frame gets none. */
static void dh_activate(void)
{
	struct stat st;

	if (dh.active)
		return;
	if (dh.mode == DH_MODE_CARD) {
		dh_open_card();
	} else {
		dh.file_frame = malloc(DOOMHOOK_FB_BYTES);
		if (!dh.file_frame)
			dh_die(DH_EXIT_USAGE, "out of memory");
	}
	if (dh.hashes_path) {
		dh.hashes = fopen(dh.hashes_path, "we");
		if (!dh.hashes)
			dh_die(DH_EXIT_USAGE, "DOOMHOOK_HASHES %s: %s", dh.hashes_path, strerror(errno));
		/* Line by line, so that a run that dies keeps what it showed. */
		setvbuf(dh.hashes, NULL, _IOLBF, 0);
	}
	if (dh.times_path) {
		dh.times = fopen(dh.times_path, "we");
		if (!dh.times)
			dh_die(DH_EXIT_USAGE, "DOOMHOOK_TIMES %s: %s", dh.times_path, strerror(errno));
	}
	if (dh.dump_dir && (stat(dh.dump_dir, &st) || !S_ISDIR(st.st_mode)))
		dh_die(DH_EXIT_USAGE, "DOOMHOOK_DUMP_DIR %s: not a directory", dh.dump_dir);
	dh.active = true;
}

/* Writes one frame as DIR/name; false (with errno) when it could not. */
static bool dh_write_ppm(const char *name, const uint8_t *frame, char *path, size_t size)
{
	FILE *f;
	bool ok;

	snprintf(path, size, "%s/%s", dh.dump_dir, name);
	f = fopen(path, "we");
	if (!f)
		return false;
	ok = fprintf(f, "P6\n%d %d\n255\n", DOOMHOOK_FB_WIDTH, DOOMHOOK_FB_HEIGHT) > 0 &&
	     fwrite(frame, DOOMHOOK_FB_BYTES, 1, f) == 1;
	return !fclose(f) && ok;
}

static void dh_submit(unsigned int buffer)
{
	struct protopciem_submit_frame sf = { .argsz = sizeof(sf), .buffer = buffer };

	if (!ioctl(dh.fd, PROTOPCIEM_IOCTL_SUBMIT_FRAME, &sf))
		return;
	dh.submit_errors++;
	dh_die(DH_EXIT_CARD, "%s: SUBMIT_FRAME of frame %lu (buffer %u) failed: %s",
	       dh.device, dh.frames, buffer, strerror(errno));
}

/* One finished frame: convert it once, then hash, dump and show it. */
static void dh_emit(void)
{
	uint8_t *out = dh.mode == DH_MODE_CARD ?
		dh.fb + (size_t)dh.next_buffer * PROTOPCIEM_FRAME_BYTES : dh.file_frame;

	doomhook_scale(dh.shadow, dh.w, dh.h, (size_t)dh.w * 4, dh.order, out);
	dh.frames++;
	dh.dirty = false;
	if (dh.hashes &&
	    fprintf(dh.hashes, "%lu %016" PRIx64 "\n", dh.frames,
		    doomhook_fnv1a64(out, DOOMHOOK_FB_BYTES)) < 0)
		dh_die(DH_EXIT_USAGE, "writing %s: %s", dh.hashes_path, strerror(errno));
	if (dh.dump_dir && dh.dump_every && dh.frames % dh.dump_every == 0) {
		char name[64], path[4096];

		snprintf(name, sizeof(name), "frame-%06lu.ppm", dh.frames);
		if (!dh_write_ppm(name, out, path, sizeof(path)))
			dh_die(DH_EXIT_USAGE, "writing %s: %s", path, strerror(errno));
	}
	if (dh.times) {
		struct timespec now;

		/* Wall clock: the card model logs its display time on the same one. */
		clock_gettime(CLOCK_REALTIME, &now);
		fprintf(dh.times, "%lu %lld\n", dh.frames,
			(long long)now.tv_sec * 1000000 + now.tv_nsec / 1000);
	}
	if (dh.mode == DH_MODE_CARD) {
		dh_submit(dh.next_buffer);
		dh.next_buffer ^= 1;
	}
	dh.last_frame = out;
	clock_gettime(CLOCK_MONOTONIC, &dh.last);
	if (dh.frames == 1)
		dh.first = dh.last;
}

static unsigned long dh_env_count(const char *name)
{
	const char *v = getenv(name);
	unsigned long n;
	char *end;

	if (!v || !*v)
		return 0;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n == 0 || *v == '-')
		dh_die(DH_EXIT_USAGE, "%s '%s' is not a positive number", name, v);
	return n;
}

static const char *dh_env_path(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static __attribute__((constructor)) void dh_init(void)
{
	const char *mode = getenv("DOOMHOOK_MODE");
	const char *clock = getenv("DOOMHOOK_CLOCK");

	if (!mode || !*mode || !strcmp(mode, "card"))
		dh.mode = DH_MODE_CARD;
	else if (!strcmp(mode, "file"))
		dh.mode = DH_MODE_FILE;
	else
		dh_die(DH_EXIT_USAGE, "DOOMHOOK_MODE '%s' is not 'card' or 'file'", mode);
	if (clock && *clock && strcmp(clock, "real")) {
		if (strcmp(clock, "virtual"))
			dh_die(DH_EXIT_USAGE, "DOOMHOOK_CLOCK '%s' is not 'real' or 'virtual'", clock);
		dh.virtual_clock = true;
	}
	dh.device = dh_env_path("DOOMHOOK_DEVICE") ?: "/dev/protopciem";
	dh.hashes_path = dh_env_path("DOOMHOOK_HASHES");
	dh.times_path = dh_env_path("DOOMHOOK_TIMES");
	dh.dump_dir = dh_env_path("DOOMHOOK_DUMP_DIR");
	dh.dump_every = dh_env_count("DOOMHOOK_DUMP_EVERY");
	if (dh.dump_every && !dh.dump_dir)
		dh_die(DH_EXIT_USAGE, "DOOMHOOK_DUMP_EVERY needs DOOMHOOK_DUMP_DIR");
	/*
	 * Nothing is drawn, so SDL's GPU renderers (Mesa's llvmpipe under the
	 * offscreen driver) would only cost start-up time.
	 */
	setenv("SDL_RENDER_DRIVER", "software", 0);
}

static __attribute__((destructor)) void dh_fini(void)
{
	char path[4096];
	double s;

	if (!dh.active)
		return;
	/* Already exiting: a failure is reported, not another exit(). */
	if (dh.dump_dir && dh.last_frame && !dh_write_ppm("last.ppm", dh.last_frame, path, sizeof(path)))
		fprintf(stderr, "doomhook: writing %s: %s\n", path, strerror(errno));
	if (dh.hashes)
		fclose(dh.hashes);
	if (dh.times)
		fclose(dh.times);
	s = dh.frames > 1 ? dh_seconds(&dh.first, &dh.last) : 0;
	fprintf(stderr, "doomhook: mode=%s frames=%lu submit_errors=%lu seconds=%.3f fps=%.1f\n",
		dh.mode == DH_MODE_CARD ? "card" : "file", dh.frames, dh.submit_errors, s,
		s > 0 ? (dh.frames - 1) / s : 0.0);
}

/* --- The interposed SDL2 calls --- */

/* The layout of a pixel format the scaler reads; false for any other. */
static bool dh_order(Uint32 format, enum doomhook_order *order)
{
	switch (format) {
	case SDL_PIXELFORMAT_ARGB8888:
	case SDL_PIXELFORMAT_RGB888:
		*order = DOOMHOOK_XRGB;
		return true;
	case SDL_PIXELFORMAT_ABGR8888:
	case SDL_PIXELFORMAT_BGR888:
		*order = DOOMHOOK_XBGR;
		return true;
	default:
		return false;
	}
}

SDL_Texture *SDL_CreateTexture(SDL_Renderer *renderer, Uint32 format, int access, int w, int h)
{
	SDL_Texture *t = DH_REAL(SDL_CreateTexture)(renderer, format, access, w, h);
	enum doomhook_order order;
	uint32_t *shadow;

	if (!t || access != SDL_TEXTUREACCESS_STREAMING)
		return t;
	if (!dh_order(format, &order) || w < 1 || h < 1 || w > DOOMHOOK_FB_WIDTH ||
	    h > DOOMHOOK_FB_HEIGHT) {
		fprintf(stderr, "doomhook: not taking frames from a %dx%d streaming texture of format %#x "
			"(the hook takes 32-bit RGB frames of up to %dx%d)\n",
			w, h, format, DOOMHOOK_FB_WIDTH, DOOMHOOK_FB_HEIGHT);
		return t;
	}
	shadow = calloc((size_t)w * h, 4);
	if (!shadow)
		dh_die(DH_EXIT_USAGE, "out of memory");
	free(dh.shadow);
	dh.shadow = shadow;
	dh.texture = t;
	dh.renderer = renderer;
	dh.w = w;
	dh.h = h;
	dh.order = order;
	dh.dirty = false;
	dh_activate();
	return t;
}

void SDL_DestroyTexture(SDL_Texture *texture)
{
	if (texture && texture == dh.texture)
		dh.texture = NULL;
	DH_REAL(SDL_DestroyTexture)(texture);
}

int SDL_UpdateTexture(SDL_Texture *texture, const SDL_Rect *rect, const void *pixels, int pitch)
{
	SDL_Rect r = { 0, 0, dh.w, dh.h };
	int y;

	if (rect)
		r = *rect;
	/* Anything but a sane upload to the frame texture is SDL's to judge. */
	if (!texture || texture != dh.texture || !pixels || r.x < 0 || r.y < 0 || r.w < 1 ||
	    r.h < 1 || (unsigned int)(r.x + r.w) > dh.w || (unsigned int)(r.y + r.h) > dh.h ||
	    pitch < r.w * 4)
		return DH_REAL(SDL_UpdateTexture)(texture, rect, pixels, pitch);
	for (y = 0; y < r.h; y++)
		memcpy(dh.shadow + (size_t)(r.y + y) * dh.w + r.x,
		       (const uint8_t *)pixels + (size_t)y * pitch, (size_t)r.w * 4);
	dh.dirty = true;
	return 0;
}

int SDL_RenderClear(SDL_Renderer *renderer)
{
	if (renderer && renderer == dh.renderer)
		return 0;
	return DH_REAL(SDL_RenderClear)(renderer);
}

int SDL_SetRenderTarget(SDL_Renderer *renderer, SDL_Texture *texture)
{
	if (renderer && renderer == dh.renderer)
		return 0;
	return DH_REAL(SDL_SetRenderTarget)(renderer, texture);
}

int SDL_RenderCopy(SDL_Renderer *renderer, SDL_Texture *texture, const SDL_Rect *srcrect,
		   const SDL_Rect *dstrect)
{
	if (renderer && renderer == dh.renderer)
		return 0;
	return DH_REAL(SDL_RenderCopy)(renderer, texture, srcrect, dstrect);
}

void SDL_RenderPresent(SDL_Renderer *renderer)
{
	if (!renderer || renderer != dh.renderer) {
		DH_REAL(SDL_RenderPresent)(renderer);
		return;
	}
	if (dh.dirty && dh.texture)
		dh_emit();
}

/*
 * The virtual clock. DOOM's screen melt (the wipe between screens) advances
 * by the tics of real time that passed since its last frame, so on a machine
 * too slow for one melt frame per tic (a TCG VM) it shows fewer, different
 * frames. With the virtual clock, time passes only while the program sleeps:
 * every run shows the same frames, at any speed. The timedemo's "realtics"
 * then count virtual time; the frame rate is doomhook's own fps.
 */
Uint32 SDL_GetTicks(void)
{
	if (!dh.virtual_clock)
		return DH_REAL(SDL_GetTicks)();
	return __atomic_load_n(&dh_clock_ms, __ATOMIC_RELAXED);
}

Uint64 SDL_GetTicks64(void)
{
	if (!dh.virtual_clock)
		return DH_REAL(SDL_GetTicks64)();
	return __atomic_load_n(&dh_clock_ms, __ATOMIC_RELAXED);
}

void SDL_Delay(Uint32 ms)
{
	if (!dh.virtual_clock) {
		DH_REAL(SDL_Delay)(ms);
		return;
	}
	__atomic_add_fetch(&dh_clock_ms, ms, __ATOMIC_RELAXED);
}
