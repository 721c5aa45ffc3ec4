// guests/doom with no card: libdoomhook's capture and conversion, file mode
// over chocolate-doom's whole -timedemo demo1 (the reference the card runs
// are compared with), the card mode's failures, and run-doom's command line.
import { expect } from 'chai';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileC } from '../lib/ctest.js';
import { repoRoot } from '../lib/paths.js';
import { fnv1a64 } from '../lib/fnv.js';

const DOOM = '/usr/games/chocolate-doom';
const IWAD = '/usr/share/games/doom/freedoom1.wad';
const RUN_DOOM = join(repoRoot, 'guests', 'doom', 'run-doom');
const FB_W = 640;
const FB_H = 480;
const FB_BYTES = FB_W * FB_H * 3;
// demo1's timedemo opens with DOOM's screen melt: 40 frames at one tic each.
const MELT_FRAMES = 40;

/** The pixels of a 640x480 P6 PPM as doomhook writes them. */
function readPpm(path: string): Buffer {
  const data = readFileSync(path);
  const header = `P6\n${FB_W} ${FB_H}\n255\n`;
  expect(data.subarray(0, header.length).toString('latin1'), `${path} header`).to.equal(header);
  expect(data.length, `${path} size`).to.equal(header.length + FB_BYTES);
  return data.subarray(header.length);
}

/** Hash lines "N HASH", checked to be numbered 1, 2, 3, ... */
function readHashes(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  expect(lines.pop(), 'the file ends with a newline').to.equal('');
  return lines.map((line, i) => {
    const m = /^(\d+) ([0-9a-f]{16})$/.exec(line);
    expect(m, `line ${i + 1}: ${line}`).to.not.equal(null);
    expect(Number(m?.[1]), `line ${i + 1}'s frame number`).to.equal(i + 1);
    return m?.[2] ?? '';
  });
}

function counters(stderr: string): Record<string, string> {
  const line = stderr.split('\n').find((l) => l.startsWith('doomhook: mode='));
  expect(line, 'doomhook prints its counters at exit').to.not.equal(undefined);
  return Object.fromEntries((line ?? '').slice('doomhook: '.length).split(' ').map((kv) => kv.split('=') as [string, string]));
}

describe('guests/doom: libdoomhook and run-doom, no card', function () {
  this.timeout(60_000);
  let dir = '';
  let lib = '';
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, DOOMHOOK_LIB: lib });

  function runDoom(args: string[], extraEnv: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
    const r = spawnSync(RUN_DOOM, args, { env: { ...env(), ...extraEnv }, encoding: 'utf8', timeout: 50_000 });
    expect(r.error, 'run-doom did not run').to.equal(undefined);
    return r;
  }

  /** chocolate-doom's timedemo with the given preloads and settings, not through run-doom. */
  function doomDirect(preload: string[], doomEnv: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
    const home = mkdtempSync(join(dir, 'home-'));
    const r = spawnSync(DOOM, ['-iwad', IWAD, '-nosound', '-nogui', '-timedemo', 'demo1'], {
      cwd: home,
      env: {
        ...process.env, HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home,
        SDL_VIDEODRIVER: 'offscreen', SDL_AUDIODRIVER: 'dummy', LD_PRELOAD: preload.join(' '), ...doomEnv,
      },
      encoding: 'utf8',
      timeout: 50_000,
    });
    expect(r.error, 'chocolate-doom did not run').to.equal(undefined);
    return r;
  }

  before(function () {
    expect(existsSync(DOOM), `${DOOM} (Debian's chocolate-doom; make deps)`).to.equal(true);
    expect(existsSync(IWAD), `${IWAD} (Debian's freedoom; make deps)`).to.equal(true);
    dir = mkdtempSync(join(tmpdir(), 'pciem-doom-'));
    lib = join(dir, 'libdoomhook.so');
  });

  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds with gcc -Wall -Wextra -Werror (make doom)', function () {
    const r = spawnSync('make', ['--no-print-directory', '-C', join(repoRoot, 'guests', 'doom'), `BUILD=${dir}`], { encoding: 'utf8' });
    expect(r.stderr, 'make printed diagnostics').to.equal('');
    expect(r.status, r.stdout).to.equal(0);
    expect(existsSync(lib)).to.equal(true);
  });

  describe('capture and conversion, on synthetic frames', function () {
    let synth = '';

    before(function () {
      const sdl = spawnSync('pkg-config', ['--cflags', 'sdl2'], { encoding: 'utf8' });
      expect(sdl.status, 'pkg-config sdl2 (libsdl2-dev; make deps)').to.equal(0);
      synth = join(dir, 'synth');
      compileC({ sources: ['guests/doom/tests/synth.c'], flags: sdl.stdout.trim().split(/\s+/), libs: ['-lSDL2'] }, synth);
    });

    // The source pixel synth.c puts at (x, y) of frame f, as bytes R, G, B.
    const source = (x: number, y: number, f: number): [number, number, number] => [x & 0xff, y & 0xff, (f << 4) | ((x >> 8) << 2) | (y >> 8)];

    for (const [format, w, h] of [['RGB888', 320, 200], ['ABGR8888', 320, 200], ['ARGB8888', 640, 480], ['BGR888', 123, 77]] as const) {
      it(`${format} ${w}x${h}: every output pixel is the source pixel it maps to; hash lines hash the frames`, function () {
        const out = join(dir, `synth-${format}-${w}x${h}`);
        mkdirSync(out);
        const hashes = join(out, 'hashes');
        const r = spawnSync(synth, [format, String(w), String(h)], {
          env: {
            ...process.env, SDL_VIDEODRIVER: 'offscreen', LD_PRELOAD: lib, DOOMHOOK_MODE: 'file',
            DOOMHOOK_HASHES: hashes, DOOMHOOK_DUMP_DIR: out, DOOMHOOK_DUMP_EVERY: '1',
          },
          encoding: 'utf8',
        });
        expect(r.status, r.stderr).to.equal(0);
        expect(counters(r.stderr)).to.include({ mode: 'file', frames: '2', submit_errors: '0' });
        const lines = readHashes(hashes);
        expect(lines).to.have.length(2);
        for (const f of [1, 2]) {
          const px = readPpm(join(out, `frame-00000${f}.ppm`));
          const bad: string[] = [];
          for (let y = 0; y < FB_H && bad.length < 5; y++) {
            // Nearest neighbour, aspect as chocolate-doom's: 320x200 -> 2x across, 2.4x down.
            const sy = Math.floor((y * h) / FB_H);
            // Frame 2 uploaded only its lower half.
            const sf = f === 2 && sy < Math.floor(h / 2) ? 1 : f;
            for (let x = 0; x < FB_W; x++) {
              const want = source(Math.floor((x * w) / FB_W), sy, sf);
              const at = (y * FB_W + x) * 3;
              if (px[at] !== want[0] || px[at + 1] !== want[1] || px[at + 2] !== want[2]) {
                bad.push(`frame ${f} (${x},${y}): ${px[at]},${px[at + 1]},${px[at + 2]} != ${want.join(',')}`);
                break;
              }
            }
          }
          expect(bad, 'wrong pixels').to.deep.equal([]);
          expect(lines[f - 1], `frame ${f}'s hash`).to.equal(fnv1a64(px));
        }
        expect(readPpm(join(out, 'last.ppm')).equals(readPpm(join(out, 'frame-000002.ppm'))), 'last.ppm is the last frame').to.equal(true);
      });
    }

    it('leaves a texture larger than the card alone, and says so', function () {
      const r = spawnSync(synth, ['RGB888', '800', '600'], {
        env: { ...process.env, SDL_VIDEODRIVER: 'offscreen', LD_PRELOAD: lib, DOOMHOOK_MODE: 'file' },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stderr).to.contain('not taking frames from a 800x600 streaming texture');
      expect(r.stderr).to.not.contain('doomhook: mode=');
    });
  });

  describe('file mode over -timedemo demo1', function () {
    let first: string[] = [];
    let gametics = 0;
    const dumps = (): string => join(dir, 'dumps');

    it(`one hash line per frame: frames = gametics - 1 + ${MELT_FRAMES} (melt)`, function () {
      const hashes = join(dir, 'run1.hashes');
      const times = join(dir, 'run1.times');
      const t0 = Date.now() * 1000;
      const r = runDoom(['--mode', 'file', '--clock', 'virtual', '--hashes', hashes, '--times', times]);
      expect(r.status, r.stderr).to.equal(0);
      const m = /^timed (\d+) gametics in \d+ realtics/m.exec(r.stdout);
      expect(m, r.stdout).to.not.equal(null);
      gametics = Number(m?.[1]);
      expect(gametics).to.equal(1531);
      first = readHashes(hashes);
      // The tic that starts the melt is shown only through it; every other
      // tic is one frame; the run ends inside the last tic's ticker.
      expect(first).to.have.length(gametics - 1 + MELT_FRAMES);
      expect(r.stdout).to.match(new RegExp(`^frames: ${first.length} \\(`, 'm'));
      expect(new Set(first).size, 'distinct frames').to.be.above(1000);
      // --times: one "N MICROSECONDS" line per frame, numbered like the hashes, wall clock, in order.
      const t = readFileSync(times, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').map(Number));
      expect(t.map(([n]) => n)).to.deep.equal(first.map((_, i) => i + 1));
      const us = t.map(([, v]) => v ?? NaN);
      expect(us[0]).to.be.within(t0, Date.now() * 1000);
      expect([...us].sort((a, b) => a - b)).to.deep.equal(us);
    });

    it('is deterministic: a second run gives the same hashes; dumps hash the same', function () {
      expect(first, 'the first run').to.not.deep.equal([]);
      const hashes = join(dir, 'run2.hashes');
      mkdirSync(dumps());
      const r = runDoom(['--mode', 'file', '--clock', 'virtual', '--hashes', hashes, '--dump-dir', dumps(), '--dump-every', '500']);
      expect(r.status, r.stderr).to.equal(0);
      expect(readHashes(hashes)).to.deep.equal(first);
      expect(readdirSync(dumps()).sort()).to.deep.equal(['frame-000500.ppm', 'frame-001000.ppm', 'frame-001500.ppm', 'last.ppm']);
      expect(fnv1a64(readPpm(join(dumps(), 'frame-001000.ppm')))).to.equal(first[999]);
      expect(fnv1a64(readPpm(join(dumps(), 'last.ppm')))).to.equal(first[first.length - 1]);
    });

    it('the virtual clock keeps the melt frames when presenting is slower than a tic; the real clock does not', function () {
      expect(first, 'the first run').to.not.deep.equal([]);
      const slow = join(dir, 'slow-present.so');
      const sdl = spawnSync('pkg-config', ['--cflags', 'sdl2'], { encoding: 'utf8' }).stdout.trim().split(/\s+/);
      compileC({ sources: ['guests/doom/tests/slow-present.c'], flags: ['-shared', '-fPIC', ...sdl], libs: ['-ldl'] }, slow);
      const run = (clock: string): string[] => {
        const hashes = join(dir, `slow-${clock}.hashes`);
        const r = doomDirect([slow, lib], { DOOMHOOK_MODE: 'file', DOOMHOOK_CLOCK: clock, DOOMHOOK_HASHES: hashes });
        expect(r.stderr).to.match(/^timed 1531 gametics/m);
        return readHashes(hashes);
      };
      expect(run('virtual')).to.deep.equal(first);
      const real = run('real');
      expect(real.length, 'fewer melt frames').to.be.below(first.length);
      expect(real.slice(-1000), 'the game itself is the same').to.deep.equal(first.slice(-1000));
    });
  });

  describe('card mode without a card', function () {
    it('fails fast, with a clear message and exit status 3, when the device is missing', function () {
      const t0 = Date.now();
      const r = runDoom(['--mode', 'card', '--device', join(dir, 'no-protopciem')]);
      expect(r.status).to.equal(3);
      expect(r.stderr).to.contain(`doomhook: ${join(dir, 'no-protopciem')}: No such file or directory`).and.contain('protopciem.ko');
      expect(Date.now() - t0, 'ms').to.be.below(10_000);
    });

    if (!existsSync('/dev/protopciem')) {
      it('fails the same way by default (no /dev/protopciem on this machine)', function () {
        const r = runDoom([]);
        expect(r.status).to.equal(3);
        expect(r.stderr).to.contain('doomhook: /dev/protopciem: No such file or directory');
      });
    }

    it('refuses a node that is not a character device', function () {
      const r = runDoom(['--device', lib]);
      expect(r.status).to.equal(3);
      expect(r.stderr).to.contain('not a character device');
    });

    it('stops at the first SUBMIT_FRAME error, says so once, exits 3 (a node that is not the card: /dev/zero)', function () {
      const r = runDoom(['--device', '/dev/zero']);
      expect(r.status).to.equal(3);
      expect(r.stderr.match(/SUBMIT_FRAME/g), r.stderr).to.have.length(1);
      expect(r.stderr).to.contain('doomhook: /dev/zero: SUBMIT_FRAME of frame 1 (buffer 0) failed: Inappropriate ioctl for device');
      expect(counters(r.stderr)).to.include({ mode: 'card', frames: '1', submit_errors: '1' });
    });
  });

  describe('settings', function () {
    it('run-doom --help prints the usage and exits 0', function () {
      const r = runDoom(['--help']);
      expect(r.status).to.equal(0);
      expect(r.stdout).to.match(/^usage: guests\/doom\/run-doom/).and.contain('--mode card|file');
    });

    for (const [args, message] of [
      [['--frobnicate'], "unknown option '--frobnicate'"],
      [['--mode', 'gpu'], "--mode 'gpu' is not card or file"],
      [['--hashes'], '--hashes needs a value'],
      [['--dump-every', '0', '--dump-dir', '/tmp'], "--dump-every '0' is not a positive number"],
      [['--dump-every', '5'], '--dump-every needs --dump-dir'],
      [['--clock', 'fast'], "--clock 'fast' is not real or virtual"],
    ] as const) {
      it(`run-doom ${args.join(' ')}: exit 2, "${message}"`, function () {
        const r = runDoom([...args]);
        expect(r.status).to.equal(2);
        expect(r.stderr).to.contain(`run-doom: ${message}`);
      });
    }

    it('run-doom names the missing hook library and the command that builds it', function () {
      const r = runDoom(['--mode', 'file'], { DOOMHOOK_LIB: join(dir, 'nowhere.so') });
      expect(r.status).to.equal(2);
      expect(r.stderr).to.contain("is not built ('make doom')");
    });

    for (const [name, value, message] of [
      ['DOOMHOOK_MODE', 'gpu', "DOOMHOOK_MODE 'gpu' is not 'card' or 'file'"],
      ['DOOMHOOK_CLOCK', 'fast', "DOOMHOOK_CLOCK 'fast' is not 'real' or 'virtual'"],
      ['DOOMHOOK_DUMP_EVERY', 'x', "DOOMHOOK_DUMP_EVERY 'x' is not a positive number"],
    ] as const) {
      it(`the hook refuses ${name}=${value} as soon as it is loaded (exit 2)`, function () {
        const r = spawnSync('true', [], { env: { ...process.env, LD_PRELOAD: lib, [name]: value, DOOMHOOK_DUMP_DIR: dir }, encoding: 'utf8' });
        expect(r.status).to.equal(2);
        expect(r.stderr).to.contain(`doomhook: ${message}`);
      });
    }
  });
});
