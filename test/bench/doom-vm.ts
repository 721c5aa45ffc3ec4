// Inside the VM (`make bench`): chocolate-doom's `-timedemo demo1` frames
// per second, first in file mode (frames converted, no card: the
// baseline), then through the whole chain (guests/demo/chain.ts). Same VM,
// same run, no hashing on either side. The hook measures frames/s in real
// time (its virtual clock keeps the frames the same at any speed). The card
// run also times every frame from submission (the hook's --times) to the
// display (the model's frame log, hashing off): latency p50/p99. Prints one
// JSON line: {"file": fps, "card": fps, "frames": N, "latency_p50_ms", ...}.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, DOOM_RUN.
import { readFileSync } from 'node:fs';
import { drv, env, sh, startChain, step, stopChain } from '../../guests/demo/chain.js';

const parse = (out: string): { frames: number; fps: number } => {
  const m = /frames: (\d+) \(([\d.]+) frames\/s/.exec(out);
  return { frames: Number(m?.[1] ?? NaN), fps: Number(m?.[2] ?? NaN) };
};

async function main(): Promise<void> {
  const doom = async (mode: string, extra: string[] = []): Promise<{ frames: number; fps: number }> =>
    parse(await drv(env('DOOM_RUN'), ['--mode', mode, '--clock', 'virtual', '--timedemo', 'demo1', ...extra]));
  const file = await doom('file');
  step(`file mode: ${file.fps} frames/s`);
  sh('insmod', [env('PCIEM_KO')]);
  const c = await startChain({ qemuArgs: ['-chardev', 'file,id=fl,path=/tmp/shown.log'], deviceProps: { 'frame-log': 'fl', 'frame-log-hash': false } });
  let card: { frames: number; fps: number };
  try {
    card = await doom('card', ['--times', '/tmp/submitted.log']);
  } finally {
    await stopChain(c);
  }
  const col = (file: string, i: number): number[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split(' ')[i]));
  const sub = col('/tmp/submitted.log', 1);
  const shown = col('/tmp/shown.log', 2);
  if (sub.length !== shown.length) throw new Error(`${sub.length} frames submitted, ${shown.length} shown`);
  const lat = sub.map((t, i) => ((shown[i] ?? NaN) - t) / 1000).sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor((lat.length * p) / 100))] ?? NaN;
  step(`through the card: ${card.fps} frames/s`);
  console.log(JSON.stringify({ file: file.fps, card: card.fps, frames: card.frames, fileFrames: file.frames, latency_p50_ms: pct(50), latency_p99_ms: pct(99) }));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.log(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
    process.exit(1);
  },
);
