// On this machine, no kernel (`make bench`): the gateway relaying the
// ProtoPCIem card between the FakeHost and the real QEMU model
// (test/lib/card-rig.ts). Measures the posted-write relay rate (driver
// writes -> gateway -> g2m ring -> bridge -> model register), the frame DMA
// (DMA_FRAME: doorbell -> 921,600 bytes read by the model -> MSI) and the
// ADD round trip (doorbell on g2m, MSI on m2g), p50/p99. Prints one JSON
// line. A million writes by default: the rate of a warm relay, not of V8
// compiling the fake driver.
import { Cmd, Const, Reg } from '../../proto/generated/protopciem.js';
import { startRig } from '../lib/card-rig.js';
import { FRAMES_IOVA } from '../lib/proto-driver.js';

const WRITES = Number(process.env.WRITES ?? 1_000_000);
const FRAMES = Number(process.env.FRAMES ?? 40);
const ADDS = Number(process.env.ADDS ?? 2000);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] ?? NaN;
}

async function main(): Promise<void> {
  const rig = await startRig();
  try {
    const { drv, session } = rig;
    if (!session.ringsUp) throw new Error('the session is not on the rings: the bridge refused RINGS or spoke version 1');
    // Posted writes: every one reaches the model (its STATS count), in order (the register ends at the last).
    const s0 = (await session.modelStats()).mmio_writes;
    const t0 = process.hrtime.bigint();
    for (let i = 1; i <= WRITES; i++) drv.write(Reg.DATA, i);
    for (;;) {
      const s = (await session.modelStats()).mmio_writes;
      if (s - s0 >= BigInt(WRITES)) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if ((await drv.read(Reg.DATA)) !== WRITES) throw new Error('the last write is not what the register holds');

    for (let i = 0; i < drv.frames.length; i++) drv.frames[i] = i & 0xff;
    const frame: number[] = [];
    for (let i = 0; i < FRAMES; i++) {
      const c = await drv.command(Cmd.DMA_FRAME, { src: FRAMES_IOVA + BigInt((i & 1) * Const.FB_SIZE), len: Const.FB_SIZE });
      if (c.errorCode) throw new Error(`DMA_FRAME failed: ${c.errorCode}`);
      frame.push(c.us);
    }
    const add: number[] = [];
    for (let i = 0; i < ADDS; i++) add.push((await drv.arith('ADD', i)).us);
    const g2m = session.ringStats()?.g2m;
    console.log(JSON.stringify({
      writes: WRITES, writes_per_s: Math.round(WRITES / secs),
      ring_full_waits: session.ringFullWaits, g2m_data_wakes: Number(g2m?.dataWakes ?? 0), g2m_full_timeouts: Number(g2m?.fullTimeouts ?? 0),
      frame_bytes: Const.FB_SIZE, frame_p50_us: pct(frame, 50), frame_p99_us: pct(frame, 99),
      add_p50_us: pct(add, 50), add_p99_us: pct(add, 99),
    }));
  } finally {
    await rig.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
