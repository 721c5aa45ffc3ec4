// Integration with no kernel (issue 6): the real gateway (GatewayServer with
// the FakeHost standing in for /dev/pciem, and the shipped protopciem
// description) and the real QEMU with the ProtoPCIem model behind the
// pciem-bridge. A TypeScript driver (test/lib/proto-driver.ts) programs the
// card through the fake host: every command round-trips, 100,000 posted
// writes arrive in order, a 921,600-byte frame arrives byte-exact on the
// display as bulk DMA.
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDescription } from '../../gateway/src/description.js';
import { FakeBackend, type FakeHost } from '../../gateway/src/relay/fake-host.js';
import { GatewayServer } from '../../gateway/src/relay/server.js';
import type { ModelSession } from '../../gateway/src/relay/session.js';
import { Bits, Cmd, Const, Err, Reg } from '../../proto/generated/protopciem.js';
import { repoRoot } from '../lib/paths.js';
import { PROCESS_IOVA, ProtoDriver } from '../lib/proto-driver.js';
import { Qmp } from '../lib/qmp.js';

function entry(op: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt16LE(op, 0);
  b.writeUInt32LE(len, 4);
  return b;
}

describe('gateway + QEMU card model, no kernel (FakeHost)', function () {
  this.timeout(120_000);
  let dir: string;
  let server: GatewayServer;
  let backend: FakeBackend;
  let qemu: ChildProcess;
  let qemuLog = '';
  let qmp: Qmp;
  let session: ModelSession;
  let host: FakeHost;
  let drv: ProtoDriver;

  before(async function () {
    const binary = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    dir = mkdtempSync(join(tmpdir(), 'pciem-relay-qemu-'));
    backend = new FakeBackend(5000);
    server = new GatewayServer({ backend, description: loadDescription(join(repoRoot, 'gateway/devices/protopciem.json')).device });
    await server.listen(join(dir, 'gw.sock'));
    const ready = server.nextDevice(60_000);
    const made = backend.nextDevice(60_000);
    qemu = spawn(binary, [
      '-machine', 'x-remote,vfio-user=off', '-nodefaults', '-display', 'none',
      '-device', 'protopciem,id=card0,msi=on',
      '-chardev', `socket,id=gw,path=${join(dir, 'gw.sock')}`,
      '-object', 'pciem-bridge,id=br0,device=card0,chardev=gw',
      '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    qemu.stdout?.on('data', (b: Buffer) => (qemuLog += b.toString()));
    qemu.stderr?.on('data', (b: Buffer) => (qemuLog += b.toString()));
    session = await ready;
    host = await made;
    qmp = await Qmp.connect(join(dir, 'qmp.sock'));
    drv = new ProtoDriver(host);
    drv.init(session);
  });

  after(async function () {
    qmp?.close();
    qemu?.kill('SIGKILL');
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function screen(): Promise<Buffer> {
    const file = join(dir, 'shot.ppm');
    await qmp.execute('screendump', { filename: file, format: 'ppm' });
    const ppm = readFileSync(file);
    const hdr = 'P6\n640 480\n255\n';
    expect(ppm.subarray(0, hdr.length).toString('latin1')).to.equal(hdr);
    return ppm.subarray(hdr.length);
  }

  it('the model announces the described card (the gateway accepted its DEVICE)', async function () {
    expect(session.deviceName).to.equal('protopciem');
    expect(await drv.read(Reg.ID)).to.equal(0x1f0c0001);
    expect(session.modelCapabilities.has(0x05)).to.equal(true);
  });

  it('ADD, MULTIPLY and XOR round-trip, completed by MSI', async function () {
    expect((await drv.arith('ADD', 20)).result).to.equal(40n);
    expect((await drv.arith('MULTIPLY', 0x10000)).result).to.equal(0x1_0000_0000n);
    const x = await drv.arith('XOR', 0x0f0f0f0f);
    expect(x.result).to.equal(0xf0f0f0f0n);
    expect(x.status & Bits.STATUS.DONE).to.equal(Bits.STATUS.DONE);
    expect(host.interrupts.filter((i) => i.kind === 'msi').length).to.be.at.least(3);
  });

  it('PROCESS_BUFFER of 1 MiB: read, XORed and written back byte-exact', async function () {
    const n = Const.PROCESS_MAX;
    const src = drv.process.subarray(0, n);
    const dv = new DataView(src.buffer, src.byteOffset, n);
    let sum = 0n;
    for (let i = 0; i < n; i += 4) {
      const w = (Math.imul(i, 2654435761) >>> 0) ^ 0x5a5a5a5a;
      dv.setUint32(i, w >>> 0, true);
      sum += BigInt(w >>> 0);
    }
    const c = await drv.command(Cmd.PROCESS_BUFFER, { data: 0x12345678, src: PROCESS_IOVA, dst: PROCESS_IOVA + BigInt(n), len: n });
    expect(c.errorCode).to.equal(0);
    expect(c.result).to.equal(sum & 0xffff_ffff_ffff_ffffn);
    const out = new DataView(drv.process.buffer, drv.process.byteOffset + n, n);
    for (let i = 0; i < n; i += 4) {
      if (out.getUint32(i, true) !== ((dv.getUint32(i, true) ^ 0x12345678) >>> 0)) expect.fail(`word at ${i}`);
    }
  });

  it('EXECUTE_CMDBUF: CLEAR, DRAW_LINE and BLIT_RECT reach the display', async function () {
    const clear = entry(1, 12);
    clear.set([0x10, 0x20, 0x30, 0xff], 8);
    const line = entry(2, 20);
    line.writeUInt16LE(0, 8);
    line.writeUInt16LE(10, 10);
    line.writeUInt16LE(99, 12);
    line.writeUInt16LE(10, 14);
    line.set([0xff, 0, 0, 0xff], 16);
    const blit = entry(3, 16 + 2 * 2 * 3);
    blit.writeUInt16LE(600, 8);
    blit.writeUInt16LE(400, 10);
    blit.writeUInt16LE(2, 12);
    blit.writeUInt16LE(2, 14);
    blit.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 16);
    const c = await drv.executeCmdbuf(Buffer.concat([clear, line, blit]));
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

  it('DMA_FRAME: a 921,600-byte frame arrives byte-exact on the display, as bulk DMA', async function () {
    const frame = drv.frames.subarray(Const.FB_SIZE, 2 * Const.FB_SIZE);
    for (let i = 0; i < frame.length; i++) frame[i] = (i * 7 + (i >> 11)) & 0xff;
    const before = session.counters.dma_reads;
    const c = await drv.showFrame(1);
    expect(c.errorCode).to.equal(0);
    const reads = Number(session.counters.dma_reads - before);
    console.log(`      frame: ${reads} DMA_READ frames, doorbell -> MSI ${(c.us / 1000).toFixed(1)} ms`);
    expect(reads).to.be.within(1, 20);
    expect((await screen()).equals(Buffer.from(frame))).to.equal(true);
  });

  it('P2P_READ and P2P_WRITE move bytes between host memory and the card memory (BAR2)', async function () {
    const peer = host.map(0x4_0000_0000n, 8192);
    for (let i = 0; i < 4096; i++) peer[i] = (i * 13) & 0xff;
    let c = await drv.command(Cmd.P2P_READ, { src: 0x4_0000_0000n, dst: 0x100n, len: 4096 });
    expect(c.errorCode).to.equal(0);
    expect(c.result).to.equal(4096n);
    expect(await host.driverRead(2, 0x100, 4)).to.equal(BigInt(peer[0] ?? 0) | (BigInt(peer[1] ?? 0) << 8n) | (BigInt(peer[2] ?? 0) << 16n) | (BigInt(peer[3] ?? 0) << 24n));
    c = await drv.command(Cmd.P2P_WRITE, { src: 0x100n, dst: 0x4_0000_1000n, len: 4096 });
    expect(c.errorCode).to.equal(0);
    expect(Buffer.from(peer.subarray(4096)).equals(Buffer.from(peer.subarray(0, 4096)))).to.equal(true);
  });

  it('100,000 posted writes arrive in order: the register holds the last, the model counted them all', async function () {
    const s0 = await session.modelStats();
    const t0 = Date.now();
    for (let i = 1; i <= 100_000; i++) drv.write(Reg.DATA, i);
    expect(await drv.read(Reg.DATA)).to.equal(100_000);
    const ms = Date.now() - t0;
    const s1 = await session.modelStats();
    console.log(`      100,000 posted writes + a read: ${ms} ms (${Math.round(100_000 / (ms / 1000))} writes/s over the socket)`);
    expect(s1.mmio_writes - s0.mmio_writes).to.equal(100_000n);
  });

  it('a DMA the host refuses: the card reports DMA_FAULT, the model keeps running', async function () {
    const c = await drv.command(Cmd.DMA_FRAME, { src: 0x7_0000_0000n, len: Const.FB_SIZE });
    expect(c.status & Bits.STATUS.ERROR).to.equal(Bits.STATUS.ERROR);
    expect(c.errorCode).to.equal(Err.DMA_FAULT);
    expect((await qmp.execute<{ status: string }>('query-status')).status).to.equal('running');
    expect((await drv.arith('ADD', 1)).result).to.equal(2n);
    expect(qemuLog).to.not.match(/Assertion|Segmentation/);
  });
});
