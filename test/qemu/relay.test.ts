// Integration with no kernel (issue 6): the real gateway (GatewayServer with
// the FakeHost standing in for /dev/pciem, and the shipped protopciem
// description) and the real QEMU with the ProtoPCIem model behind the
// pciem-bridge (test/lib/card-rig.ts). A TypeScript driver
// (test/lib/proto-driver.ts) programs the card through the fake host: every
// command round-trips, 100,000 posted writes arrive in order, a
// 921,600-byte frame arrives byte-exact on the display as bulk DMA. Both
// speak version 4: the hot path rides the shared-memory rings (the socket-
// only path is covered against the same bridge in bridge.test.ts), and the
// bridge's DMA reads are DMA_READ_BULKs, whose bytes the gateway puts in the
// shared bulk area; its read-aheads are answered up to the end of the
// mapping instead of refused. With no bulk area (the last describe), the
// reads are DMA_READ_AHEADs, their bytes on the socket.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Bits, Cmd, Const, Err, Reg } from '../../proto/generated/protopciem.js';
import { BULK_BYTES_DEFAULT } from '../../gateway/src/relay/session.js';
import { startRig, type CardRig } from '../lib/card-rig.js';
import { entry } from '../lib/cmdbuf.js';
import { fnv1a64 } from '../lib/fnv.js';
import { PROCESS_IOVA } from '../lib/proto-driver.js';
import type { TraceKind } from '../../gateway/src/relay/trace.js';

describe('gateway + QEMU card model, no kernel (FakeHost)', function () {
  this.timeout(120_000);
  let rig: CardRig;

  let frameLog = '';

  before(async function () {
    frameLog = join(mkdtempSync(join(tmpdir(), 'pciem-framelog-')), 'frames.log');
    rig = await startRig({ frameLog });
  });

  after(async function () {
    await rig?.close();
    rmSync(dirname(frameLog), { recursive: true, force: true });
  });

  const screen = (): Promise<Buffer> => rig.screen();

  it('the model announces the described card (the gateway accepted its DEVICE)', async function () {
    expect(rig.session.deviceName).to.equal('protopciem');
    expect(await rig.drv.read(Reg.ID)).to.equal(0x1f0c0001);
    expect(rig.session.modelCapabilities.has(0x05)).to.equal(true);
  });

  it('the gateway and the bridge put the hot path on the rings (version 4, BULK and RINGS answered)', async function () {
    expect(rig.session.version).to.equal(4);
    expect(rig.session.bulkBytes).to.equal(BULK_BYTES_DEFAULT);
    expect(rig.log()).to.not.match(/refused the bulk area/);
    expect(rig.session.ringsUp).to.equal(true);
    expect(rig.log()).to.match(/the hot path rides the rings/);
    const inBefore = await ringCounter('ring-records-in');
    const outBefore = await ringCounter('ring-records-out');
    expect(await rig.drv.read(Reg.ID)).to.equal(0x1f0c0001);
    expect((await rig.drv.arith('ADD', 1)).result).to.equal(2n);
    expect(await ringCounter('ring-records-in')).to.be.greaterThan(inBefore);
    expect(await ringCounter('ring-records-out')).to.be.greaterThan(outBefore);
  });

  const ringCounter = (name: string): Promise<number> => rig.qmp.execute<number>('qom-get', { path: '/objects/br0', property: name });

  it('ADD, MULTIPLY and XOR round-trip, completed by MSI', async function () {
    expect((await rig.drv.arith('ADD', 20)).result).to.equal(40n);
    expect((await rig.drv.arith('MULTIPLY', 0x10000)).result).to.equal(0x1_0000_0000n);
    const x = await rig.drv.arith('XOR', 0x0f0f0f0f);
    expect(x.result).to.equal(0xf0f0f0f0n);
    expect(x.status & Bits.STATUS.DONE).to.equal(Bits.STATUS.DONE);
    expect(rig.host.interrupts.filter((i) => i.kind === 'msi').length).to.be.at.least(3);
  });

  it('PROCESS_BUFFER of 1 MiB: read, XORed and written back byte-exact; its DMA writes (socket) land before its MSI (ring)', async function () {
    const events: TraceKind[] = [];
    rig.session.tracer = (ev) => {
      if (ev.kind === 'dma_write' || ev.kind === 'msi') events.push(ev.kind);
    };
    const n = Const.PROCESS_MAX;
    const src = rig.drv.process.subarray(0, n);
    const dv = new DataView(src.buffer, src.byteOffset, n);
    let sum = 0n;
    for (let i = 0; i < n; i += 4) {
      const w = (Math.imul(i, 2654435761) >>> 0) ^ 0x5a5a5a5a;
      dv.setUint32(i, w >>> 0, true);
      sum += BigInt(w >>> 0);
    }
    const c = await rig.drv.command(Cmd.PROCESS_BUFFER, { data: 0x12345678, src: PROCESS_IOVA, dst: PROCESS_IOVA + BigInt(n), len: n });
    expect(c.errorCode).to.equal(0);
    expect(c.result).to.equal(sum & 0xffff_ffff_ffff_ffffn);
    const out = new DataView(rig.drv.process.buffer, rig.drv.process.byteOffset + n, n);
    for (let i = 0; i < n; i += 4) {
      if (out.getUint32(i, true) !== ((dv.getUint32(i, true) ^ 0x12345678) >>> 0)) expect.fail(`word at ${i}`);
    }
    rig.session.tracer = null;
    expect(events.filter((k) => k === 'dma_write').length).to.be.greaterThan(0);
    expect(events.at(-1)).to.equal('msi');
    expect(events.indexOf('msi')).to.equal(events.length - 1);
  });

  it('EXECUTE_CMDBUF: CLEAR, DRAW_LINE and BLIT_RECT reach the display', async function () {
    const clear = entry('CLEAR', { R: 0x10, G: 0x20, B: 0x30, A: 0xff });
    const line = entry('DRAW_LINE', { X0: 0, Y0: 10, X1: 99, Y1: 10, R: 0xff, G: 0, B: 0, A: 0xff });
    const blit = entry('BLIT_RECT', { X: 600, Y: 400, WIDTH: 2, HEIGHT: 2 }, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    const c = await rig.drv.executeCmdbuf(Buffer.concat([clear, line, blit]));
    expect(c.errorCode).to.equal(0);
    expect(c.result).to.equal(3n);
    const px = await screen();
    const at = (x: number, y: number): number[] => [...px.subarray((y * 640 + x) * 3, (y * 640 + x) * 3 + 3)];
    expect(at(0, 0)).to.deep.equal([0x10, 0x20, 0x30]);
    expect(at(639, 479)).to.deep.equal([0x10, 0x20, 0x30]);
    for (const x of [0, 50, 99]) expect(at(x, 10)).to.deep.equal([0xff, 0, 0]);
    expect(at(100, 10)).to.deep.equal([0x10, 0x20, 0x30]);
    expect([...at(600, 400), ...at(601, 400), ...at(600, 401), ...at(601, 401)]).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it('DMA_FRAME: a 921,600-byte frame arrives byte-exact on the display, as bulk DMA through the bulk area', async function () {
    const frame = rig.drv.frames.subarray(Const.FB_SIZE, 2 * Const.FB_SIZE);
    for (let i = 0; i < frame.length; i++) frame[i] = (i * 7 + (i >> 11)) & 0xff;
    const before = rig.session.counters.dma_reads;
    const bytesOut = rig.session.counters.bytes_out;
    const fills = await ringCounter('bulk-fills');
    const c = await rig.drv.showFrame(1);
    expect(c.errorCode).to.equal(0);
    const reads = Number(rig.session.counters.dma_reads - before);
    const sent = Number(rig.session.counters.bytes_out - bytesOut);
    console.log(`      frame: ${reads} DMA_READ_BULK frames, ${sent} bytes sent to the model, doorbell -> MSI ${(c.us / 1000).toFixed(1)} ms`);
    expect(reads).to.be.within(1, 20);
    // Every fill came through the bulk area: what the gateway sent the model was replies with counts, and MMIO records.
    expect((await ringCounter('bulk-fills')) - fills).to.equal(reads);
    expect(sent).to.be.below(16 * 1024);
    expect((await screen()).equals(Buffer.from(frame))).to.equal(true);
  });

  it('frames that end their mapping (the second of two): no refused DMA read, errors_out stays 0, each frame byte-exact', async function () {
    const traced: { addr: bigint; len: number }[] = [];
    rig.session.tracer = (ev) => {
      if (ev.kind === 'dma_read') traced.push({ addr: ev.addr, len: ev.len });
    };
    const errors = rig.session.counters.errors_out;
    const N = 10;
    try {
      for (let k = 0; k < N; k++) {
        const which = (k & 1) as 0 | 1;
        const frame = rig.drv.frames.subarray(which * Const.FB_SIZE, (which + 1) * Const.FB_SIZE);
        for (let i = 0; i < frame.length; i += 1) frame[i] = (i * 3 + k * 11 + (i >> 9)) & 0xff;
        const c = await rig.drv.showFrame(which);
        expect(c.errorCode, `frame ${k}`).to.equal(0);
        expect((await screen()).equals(Buffer.from(frame)), `frame ${k} on the display`).to.equal(true);
      }
    } finally {
      rig.session.tracer = null;
    }
    expect(rig.session.counters.errors_out - errors, 'errors_out over the frames').to.equal(0n);
    const bytes = traced.reduce((n, r) => n + r.len, 0);
    console.log(`      ${N} frames: ${traced.length} DMA reads, ${bytes} bytes, errors_out +0`);
    // Each frame in a few bulk reads; nothing read twice.
    expect(traced.length).to.be.at.most(N * 6);
    expect(bytes).to.be.at.most(N * (Const.FB_SIZE + 512 * 1024));
  });

  it('the frame-log property logs every frame DMA_FRAME shows: its number, FNV-1a 64 hash and display time', async function () {
    const before = readFileSync(frameLog, 'utf8').split('\n').filter(Boolean).length;
    const want: string[] = [];
    for (let k = 0; k < 3; k++) {
      const f = rig.drv.frames.subarray(0, Const.FB_SIZE);
      for (let i = 0; i < f.length; i += 997) f[i] = (k * 31 + i) & 0xff;
      expect((await rig.drv.showFrame(0)).errorCode).to.equal(0);
      want.push(`${before + k} ${fnv1a64(f)}`);
    }
    const lines = readFileSync(frameLog, 'utf8').split('\n').filter(Boolean).slice(before);
    expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).to.deep.equal(want);
    // The third column is when the frame reached the display: wall-clock microseconds, in order.
    const times = lines.map((l) => Number(l.split(' ')[2]));
    for (const t of times) expect(Math.abs(t / 1000 - Date.now())).to.be.below(60_000);
    expect([...times].sort((a, b) => a - b)).to.deep.equal(times);
  });

  it('P2P_READ and P2P_WRITE move bytes between host memory and the card memory (BAR2)', async function () {
    const peer = rig.host.map(0x4_0000_0000n, 8192);
    for (let i = 0; i < 4096; i++) peer[i] = (i * 13) & 0xff;
    let c = await rig.drv.command(Cmd.P2P_READ, { src: 0x4_0000_0000n, dst: 0x100n, len: 4096 });
    expect(c.errorCode).to.equal(0);
    expect(c.result).to.equal(4096n);
    expect(await rig.host.driverRead(2, 0x100, 4)).to.equal(BigInt(peer[0] ?? 0) | (BigInt(peer[1] ?? 0) << 8n) | (BigInt(peer[2] ?? 0) << 16n) | (BigInt(peer[3] ?? 0) << 24n));
    c = await rig.drv.command(Cmd.P2P_WRITE, { src: 0x100n, dst: 0x4_0000_1000n, len: 4096 });
    expect(c.errorCode).to.equal(0);
    expect(Buffer.from(peer.subarray(4096)).equals(Buffer.from(peer.subarray(0, 4096)))).to.equal(true);
  });

  it('100,000 posted writes arrive in order through the ring: the model counted them all and holds the last', async function () {
    const r0 = await ringCounter('ring-records-in');
    const s0 = (await rig.session.modelStats()).mmio_writes;
    const t0 = Date.now();
    for (let i = 1; i <= 100_000; i++) rig.drv.write(Reg.DATA, i);
    // DATA is a shadowed register (served from BAR memory): wait for the model's own count.
    const count = async (): Promise<bigint> => (await rig.session.modelStats()).mmio_writes - s0;
    let n = await count();
    while (n < 100_000n && Date.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 5));
      n = await count();
    }
    const ms = Date.now() - t0;
    console.log(`      100,000 posted writes: ${ms} ms (${Math.round(100_000 / (ms / 1000))} writes/s over the ring)`);
    expect(n).to.equal(100_000n);
    expect(await ringCounter('ring-records-in') - r0).to.be.at.least(100_000);
    expect(rig.session.ringStats()?.g2m.fullTimeouts).to.equal(0n);
    // The model's register holds the last write; its shadow store says so in BAR memory.
    expect(await rig.drv.read(Reg.DATA)).to.equal(100_000);
    const ids = rig.session.counters.mmio_writes;
    expect(ids >= 100_000n).to.equal(true);
  });

  it('a DMA the host refuses: the card reports DMA_FAULT, the model keeps running', async function () {
    const c = await rig.drv.command(Cmd.DMA_FRAME, { src: 0x7_0000_0000n, len: Const.FB_SIZE });
    expect(c.status & Bits.STATUS.ERROR).to.equal(Bits.STATUS.ERROR);
    expect(c.errorCode).to.equal(Err.DMA_FAULT);
    expect((await rig.qmp.execute<{ status: string }>('query-status')).status).to.equal('running');
    expect((await rig.drv.arith('ADD', 1)).result).to.equal(2n);
    expect(rig.log()).to.not.match(/Assertion|Segmentation/);
  });
});

describe('gateway + QEMU card model, no kernel, no bulk area (bulkBytes 0)', function () {
  this.timeout(120_000);
  let rig: CardRig;

  before(async function () {
    rig = await startRig({ bulkBytes: 0 });
  });

  after(async function () {
    await rig?.close();
  });

  it('DMA_FRAME: the frame arrives byte-exact, its bytes on the socket (DMA_READ_AHEAD replies)', async function () {
    expect(rig.session.version).to.equal(4);
    expect(rig.session.bulkBytes).to.equal(0);
    const frame = rig.drv.frames.subarray(0, Const.FB_SIZE);
    for (let i = 0; i < frame.length; i++) frame[i] = (i * 13 + (i >> 10)) & 0xff;
    const bytesOut = rig.session.counters.bytes_out;
    const c = await rig.drv.showFrame(0);
    expect(c.errorCode).to.equal(0);
    expect(await rig.qmp.execute<number>('qom-get', { path: '/objects/br0', property: 'bulk-fills' })).to.equal(0);
    expect(Number(rig.session.counters.bytes_out - bytesOut)).to.be.at.least(Const.FB_SIZE);
    expect((await rig.screen()).equals(Buffer.from(frame))).to.equal(true);
  });
});
