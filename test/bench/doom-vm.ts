// Inside the VM (`make bench`): chocolate-doom's `-timedemo demo1` frames
// per second, first in file mode (frames converted, no card: the
// baseline), then through the whole chain (guests/demo/chain.ts). Same VM,
// same run, no hashing on either side. The hook measures frames/s in real
// time (its virtual clock keeps the frames the same at any speed). Prints
// one JSON line: {"file": fps, "card": fps, "frames": N}.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, DOOM_RUN.
import { drv, env, sh, startChain, step, stopChain } from '../../guests/demo/chain.js';

const parse = (out: string): { frames: number; fps: number } => {
  const m = /frames: (\d+) \(([\d.]+) frames\/s/.exec(out);
  return { frames: Number(m?.[1] ?? NaN), fps: Number(m?.[2] ?? NaN) };
};

async function main(): Promise<void> {
  const doom = async (mode: string): Promise<{ frames: number; fps: number }> =>
    parse(await drv(env('DOOM_RUN'), ['--mode', mode, '--clock', 'virtual', '--timedemo', 'demo1']));
  const file = await doom('file');
  step(`file mode: ${file.fps} frames/s`);
  sh('insmod', [env('PCIEM_KO')]);
  const c = await startChain();
  let card: { frames: number; fps: number };
  try {
    card = await doom('card');
  } finally {
    await stopChain(c);
  }
  step(`through the card: ${card.fps} frames/s`);
  console.log(JSON.stringify({ file: file.fps, card: card.fps, frames: card.frames, fileFrames: file.frames }));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.log(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
    process.exit(1);
  },
);
