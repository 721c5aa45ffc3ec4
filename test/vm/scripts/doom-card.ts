// Inside the VM: chocolate-doom's `-timedemo demo1` twice — first in file
// mode (the reference: one hash per frame, no card), then through the
// whole chain (guests/demo/chain.ts) with the card model logging the hash
// of every frame it put on the display (the frame-log property). Prints
// one JSON line; test/vm/doom.test.ts compares the sequences.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, DOOM_RUN.
import { readFileSync } from 'node:fs';
import { fnv1a64 } from '../../lib/fnv.js';
import type { Qmp } from '../../../gateway/src/qmp.js';
import { drv, env, sh, startChain, step, stopChain } from '../../../guests/demo/chain.js';
import { reportResult } from '../../lib/vm-result.js';

const result: Record<string, unknown> = {};

const hashes = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[1] ?? '');
// With the virtual clock the timedemo's own fps is meaningless; run-doom's
// "frames: N (F frames/s ...)" line is measured by the hook in real time.
const fps = (out: string): number => Number(/frames: \d+ \(([\d.]+) frames\/s/.exec(out)?.[1] ?? NaN);

/** The hash of what the card displays now. */
async function screenHash(qmp: Qmp): Promise<string> {
  return fnv1a64((await qmp.screenPixels('/tmp/last.ppm')).pixels);
}

async function main(): Promise<void> {
  const doom = (mode: string, file?: string): Promise<string> =>
    drv(env('DOOM_RUN'), ['--mode', mode, '--clock', 'virtual', ...(file ? ['--hashes', file] : []), '--timedemo', 'demo1']);
  let t = Date.now();
  const ref = await doom('file', '/tmp/ref.hashes');
  result.fileSeconds = (Date.now() - t) / 1000;
  result.fpsFile = fps(ref);
  step(`reference: ${String(result.fpsFile)} fps`);

  sh('insmod', [env('PCIEM_KO')]);
  const c = await startChain({ qemuArgs: ['-chardev', 'file,id=fl,path=/tmp/card.hashes'], deviceProps: { 'frame-log': 'fl' } });
  try {
    t = Date.now();
    // What counts is what the card displayed (its frame log); hashing the
    // submitted frames too would only cost time under TCG.
    const card = await doom('card');
    result.cardSeconds = (Date.now() - t) / 1000;
    result.fpsCard = fps(card);
    step(`through the card: ${String(result.fpsCard)} fps`);
    result.lastShown = await screenHash(c.qmp);
    result.gateway = Object.fromEntries(Object.entries(c.session.counters).map(([k, v]) => [k, Number(v)]));
  } finally {
    await stopChain(c);
  }
  const r = hashes('/tmp/ref.hashes');
  const shown = hashes('/tmp/card.hashes');
  result.refFrames = r.length;
  result.shown = shown.length;
  const firstDiff = (a: string[], b: string[]): number => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return i;
    return -1;
  };
  result.shownVsRef = firstDiff(shown, r);
  result.lastRef = r[r.length - 1];
  sh('rmmod', ['pciem']);
}

reportResult(main, result);
