// `make demo`, inside the host VM: pciem.ko, the gateway, QEMU with the
// ProtoPCIem card (VNC display on the guest's port 5900, which the host
// forwards) and protopciem.ko; then DOOM (Debian's chocolate-doom with
// freedoom, unmodified, frames through guests/doom's hook) plays its demos
// through the card, over and over, while a screendump of the card's
// display lands in the output folder every few seconds.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, DOOM_RUN (guests/doom/run-doom),
// OUT (shared with the host), SHOT_EVERY (seconds, default 5), LOOPS (0: forever).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { env, sh, sleep, startChain, step, stopChain } from './chain.js';

const out = env('OUT');
const every = Number(process.env.SHOT_EVERY ?? 5) * 1000;
const loops = Number(process.env.LOOPS ?? 0);
// When `make demo` started on the host (the guest's clock comes from the
// same machine), so the first-frame time is the user's wait.
const t0 = Number(process.env.DEMO_T0 ?? Date.now());

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  const c = await startChain({ qemuArgs: ['-vnc', '0.0.0.0:0'] });
  const frames = (): number => Number(readFileSync(`/sys/bus/pci/devices/${c.bdf}/stats/operations`, 'utf8').trim());
  let stop = false;
  let shots = 0;
  let firstFrame = false;
  const shooter = (async () => {
    while (!stop) {
      await sleep(Math.min(every, 1000));
      if (!firstFrame && frames() > 0) {
        firstFrame = true;
        step(`first frames on the card, ${((Date.now() - t0) / 1000).toFixed(0)} s after make demo started`);
      }
      if (!firstFrame || (Date.now() - t0) % every > 1000) continue;
      const file = join(out, `doom-${String(++shots).padStart(4, '0')}.ppm`);
      await c.qmp.execute('screendump', { filename: file, format: 'ppm' }).then(
        () => console.log(`screendump: ${file}`),
        (e: unknown) => console.log(`screendump failed: ${e instanceof Error ? e.message : String(e)}`),
      );
    }
  })();
  try {
    for (let i = 0; loops === 0 || i < loops; i++) {
      step(`DOOM: demo playback, round ${i + 1}`);
      const doom = spawn(env('DOOM_RUN'), ['--mode', 'card', '--playdemo', 'demo1'], { stdio: ['ignore', 'inherit', 'inherit'] });
      const code = await new Promise<number | null>((resolve) => doom.on('exit', (rc) => resolve(rc)));
      if (code !== 0) throw new Error(`DOOM exited with ${String(code)}`);
    }
  } finally {
    stop = true;
    await shooter;
    await stopChain(c);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(`demo: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
