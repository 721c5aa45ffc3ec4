// `make demo`: pciem.ko, the gateway, QEMU with the ProtoPCIem card (VNC
// display) and protopciem.ko; then DOOM (Debian's chocolate-doom with
// freedoom, unmodified, frames through guests/doom's hook) plays its demos
// through the card, over and over, while a screendump of the card's display
// lands in the output folder every few seconds, and the gateway's dashboard
// shows the display, the event trace and the counters.
//
// Runs inside the host VM (default): VNC on the guest's port 5900 and the
// dashboard on its user-net address, port 8080 — only the host's forwarded
// 127.0.0.1 ports reach them. With HOST=1 scripts/demo.sh runs it on the
// machine itself: 127.0.0.1 only, and the modules are unloaded at the end.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, DOOM_RUN (guests/doom/run-doom),
// OUT (the screendump folder), SHOT_EVERY (seconds, default 5), LOOPS (0:
// forever), DASHBOARD_TOKEN, DASHBOARD_URL (the address the user opens),
// DASHBOARD_HOST/DASHBOARD_PORT (where it listens; default 10.0.2.15:8080),
// VNC_DISPLAY (QEMU's -vnc; default 0.0.0.0:0), UNLOAD_MODULES=1 (rmmod at the end).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDashboard, type Dashboard } from '../../gateway/src/dashboard/index.js';
import { createLogger } from '../../gateway/src/log.js';
import { drv, env, sh, sleep, startChain, step, stopChain, type Chain } from './chain.js';

const out = env('OUT');
const every = Number(process.env.SHOT_EVERY ?? 5) * 1000;
const loops = Number(process.env.LOOPS ?? 0);
// When `make demo` started (a VM guest's clock comes from the same machine),
// so the first-frame time is the user's wait.
const t0 = Number(process.env.DEMO_T0 ?? Date.now());

let stopping: string | null = null;
let doom: ChildProcess | null = null;
const onSignal = (sig: NodeJS.Signals): void => {
  if (stopping !== null) return;
  stopping = sig;
  step(`${sig}: stopping`);
  doom?.kill('SIGTERM');
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

async function screendumps(c: Chain, running: () => boolean): Promise<void> {
  const frames = (): number => Number(readFileSync(`/sys/bus/pci/devices/${c.bdf}/stats/operations`, 'utf8').trim());
  // QEMU writes a screendump on its main loop, where the card model runs, a
  // row per write. Straight into OUT (the host's folder over 9p, in the VM)
  // that held the card up ~0.3 s per picture, 0.9-5.6 s with the host's
  // cores busy: long enough to time a frame out. So QEMU writes to memory, and the copy to
  // OUT happens here, off QEMU's loop.
  const scratch = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'pciem-demo-'));
  let shots = 0;
  let firstFrame = false;
  try {
    while (running()) {
      await sleep(Math.min(every, 1000));
      if (!firstFrame && frames() > 0) {
        firstFrame = true;
        step(`first frames on the card, ${((Date.now() - t0) / 1000).toFixed(0)} s after make demo started`);
      }
      if (!firstFrame || (Date.now() - t0) % every > 1000) continue;
      const name = `doom-${String(++shots).padStart(4, '0')}.ppm`;
      const [tmp, file] = [join(scratch, name), join(out, name)];
      try {
        await c.qmp.execute('screendump', { filename: tmp, format: 'ppm' });
        await copyFile(tmp, file);
        await rm(tmp);
        console.log(`screendump: ${file}`);
      } catch (e) {
        console.log(`screendump failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  let c: Chain | null = null;
  let dashboard: Dashboard | null = null;
  let done = false;
  let shooter: Promise<void> = Promise.resolve();
  try {
    c = await startChain({ qemuArgs: ['-vnc', process.env.VNC_DISPLAY ?? '0.0.0.0:0'] });
    const chain = c;
    dashboard = await startDashboard({
      server: chain.server, qmp: () => chain.qmp, token: env('DASHBOARD_TOKEN'),
      host: process.env.DASHBOARD_HOST ?? '10.0.2.15', port: Number(process.env.DASHBOARD_PORT ?? 8080),
      log: createLogger({ level: 'info' }),
    });
    step(`dashboard: ${env('DASHBOARD_URL')}`);
    shooter = screendumps(chain, () => !done);
    for (let i = 0; (loops === 0 || i < loops) && stopping === null; i++) {
      step(`DOOM: demo playback, round ${i + 1}`);
      doom = spawn(env('DOOM_RUN'), ['--mode', 'card', '--playdemo', 'demo1'], { stdio: ['ignore', 'inherit', 'inherit'] });
      const code = await new Promise<number | null>((resolve) => doom?.on('exit', (rc) => resolve(rc)));
      doom = null;
      if (code !== 0 && stopping === null) throw new Error(`DOOM exited with ${String(code)}`);
    }
  } finally {
    done = true;
    await shooter;
    await dashboard?.close();
    if (c) await stopChain(c);
    if (process.env.UNLOAD_MODULES === '1') await drv('rmmod', ['pciem']).catch((e: unknown) => console.error(`rmmod pciem: ${String(e)}`));
  }
}

main().then(
  () => process.exit(stopping === 'SIGINT' ? 130 : stopping === 'SIGTERM' ? 124 : 0),
  (e: unknown) => {
    console.error(`demo: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
