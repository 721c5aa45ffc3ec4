// Runs inside the VM: the whole chain for the ProtoPCIem card (guests/demo/chain.ts),
// then the driver's paths through all of it (ppctl): arithmetic, a command
// buffer, a frame checked in a QMP screendump. Prints one JSON line of
// results; test/vm/e2e.test.ts checks them.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, PPCTL (paths).
import { readFileSync, writeFileSync } from 'node:fs';
import type { Qmp } from '../../../gateway/src/qmp.js';
import { cardInSysfs, drv, env, sh, startChain, step, stopChain } from '../../../guests/demo/chain.js';
import { reportResult } from '../../lib/vm-result.js';

const result: Record<string, unknown> = {};
const ppctl = async (...args: string[]): Promise<string> => (await drv(env('PPCTL'), args)).trim();

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  const c = await startChain();
  try {
    result.bdf = c.bdf;
    result.irqMode = readFileSync(`/sys/bus/pci/devices/${c.bdf}/stats/irq_mode`, 'utf8').trim();

    result.add = await ppctl('arith', 'add', '20');
    result.mul = await ppctl('arith', 'mul', '7');
    result.xor = await ppctl('arith', 'xor', '0x0f0f0f0f');
    step('arithmetic done');

    // A command buffer: CLEAR to a colour (docs/protopciem.md, "Command buffers").
    writeFileSync('/tmp/clear.bin', Buffer.from([0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0x12, 0x34, 0x56, 0xff]));
    await ppctl('cmdbuf', '/tmp/clear.bin');
    result.clearOk = (await screen(c.qmp)).every((b, i) => b === [0x12, 0x34, 0x56][i % 3]);
    step('command buffer done');

    writeFileSync('/tmp/frame.rgb', await drv(env('PPCTL'), ['pattern', '7']), 'latin1');
    const frame = readFileSync('/tmp/frame.rgb');
    const t = Date.now();
    await ppctl('frame', '/tmp/frame.rgb', '1');
    result.frameMs = Date.now() - t;
    result.frameBytes = frame.length;
    result.frameExact = (await screen(c.qmp)).equals(frame);
    step(`frame submitted in ${String(result.frameMs)} ms, exact: ${String(result.frameExact)}`);

    result.operations = Number(readFileSync(`/sys/bus/pci/devices/${c.bdf}/stats/operations`, 'utf8').trim());
    result.gateway = Object.fromEntries(Object.entries(c.session.counters).map(([k, v]) => [k, Number(v)]));
    result.model = Object.fromEntries(Object.entries(await c.session.modelStats()).map(([k, v]) => [k, Number(v)]));
  } finally {
    await stopChain(c);
  }
  result.removed = cardInSysfs() === null;
  result.qemuExit = c.qemuExit();
  sh('rmmod', ['pciem']);
}

/** The card's display now: its pixels, 640x480 RGB888. */
async function screen(qmp: Qmp): Promise<Buffer> {
  const s = await qmp.screenPixels('/tmp/shot.ppm');
  if (s.width !== 640 || s.height !== 480) throw new Error(`screendump: ${s.width}x${s.height}, not the card's 640x480`);
  return s.pixels;
}

reportResult(main, result);
