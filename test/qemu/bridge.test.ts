// The QEMU side of the gateway, for real: our QEMU runs the ProtoPCIem card
// on -machine x-remote with -object pciem-bridge, which connects to a
// UNIX socket where test/lib/wirepeer.ts plays the gateway: it answers
// HELLO and DEVICE, serves the card's DMA from a fake host memory, and
// drives the card with MMIO and config requests as a host driver would.
// The main suite runs twice: at version 1 (everything on the socket) and at
// version 2 with the shared-memory rings (RINGS, FENCEs), where the peer
// keeps the order the model sent in across both paths.
import { expect } from 'chai';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BAR,
  Bits,
  Cmd as CardCmd,
  Const,
  ERR_NAMES,
  PCI,
  Reg,
  type RegName,
} from '../../proto/generated/protopciem.js';
import { BarFlags, Caps, type ErrName, HEADER_SIZE, IrqKind, Limits, type Message, MsiFlags, type Region, ResetKind, Role } from '../../proto/generated/wire.js';
import { entry } from '../lib/cmdbuf.js';
import { FrameFuzzer, tally } from '../lib/fuzz.js';
import { repoRoot } from '../lib/paths.js';
import { Qmp } from '../../gateway/src/qmp.js';
import { WirePeer, WireReplyError, type PeerOptions } from '../lib/wirepeer.js';
import { until } from '../lib/until.js';

const W = Const.FB_WIDTH;
const H = Const.FB_HEIGHT;
const { DONE, ERROR, BUSY } = Bits.STATUS;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MASTER = 0x4;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_CAP_ID_MSI = 0x05;
/** The bridge's DMA_READ timeout in this suite (its timeout-ms). */
const DMA_TIMEOUT_MS = 1000;

// Where the fake host memory puts buffers: bus addresses above 4 GiB.
const HOST = 0x1_0000_0000n;
let hostNext = HOST;

/** A fresh page-aligned host buffer, mapped; a gap of unmapped pages follows. */
function hostAlloc(peer: WirePeer, data: Buffer | number): { addr: bigint; buf: Buffer } {
  const addr = hostNext;
  const buf = peer.memory.map(addr, data);
  hostNext += BigInt(Math.ceil(buf.length / 4096) * 4096 + 0x10_0000);
  return { addr, buf };
}

// ---- QEMU ------------------------------------------------------------------

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

class Qemu {
  stderr = '';
  exitCode: number | null | undefined;

  private constructor(
    readonly child: ChildProcess,
    readonly qmp: Qmp,
  ) {}

  static async start(binary: string, args: string[], qmpPath: string): Promise<Qemu> {
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let qmp: Qmp;
    try {
      qmp = await Promise.race([
        Qmp.connect({ path: qmpPath }, { timeoutMs: 20_000 }),
        exited.then((code) => {
          throw new Error(`QEMU exited with ${String(code)} at startup:\n${stderr}`);
        }),
      ]);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    const q = new Qemu(child, qmp);
    q.stderr = stderr;
    child.stderr?.on('data', (s: string) => {
      q.stderr += s;
    });
    void exited.then((code) => {
      live.delete(child);
      q.exitCode = code;
    });
    return q;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  async logged(text: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stderr.includes(text)) {
      if (Date.now() > deadline) throw new Error(`QEMU did not log '${text}'; its log:\n${this.stderr.slice(-3000)}`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.qmp.close();
    if (!this.running) return;
    const gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await Promise.race([gone, sleep(5000).then(() => this.child.kill('SIGKILL'))]);
  }
}

// ---- the card, driven through the peer ---------------------------------------

interface Args {
  data?: number;
  src?: bigint | number;
  dst?: bigint | number;
  len?: number;
}

interface Outcome {
  status: number;
  result: bigint;
  error: string | undefined;
}

class Card {
  constructor(readonly peer: WirePeer) {}

  async reg(name: RegName): Promise<number> {
    return Number(await this.peer.mmioRead(BAR.REGS.index, Reg[name], 4));
  }

  set(name: RegName, value: number): void {
    this.peer.mmioWrite(BAR.REGS.index, Reg[name], 4, value >>> 0);
  }

  submit(cmd: number, a: Args = {}): void {
    const src = BigInt(a.src ?? 0);
    const dst = BigInt(a.dst ?? 0);
    this.set('DATA', a.data ?? 0);
    this.set('DMA_SRC_LO', Number(src & 0xffff_ffffn));
    this.set('DMA_SRC_HI', Number(src >> 32n));
    this.set('DMA_DST_LO', Number(dst & 0xffff_ffffn));
    this.set('DMA_DST_HI', Number(dst >> 32n));
    this.set('DMA_LEN', a.len ?? 0);
    this.set('DMA_FLAGS', 0);
    this.set('CMD', cmd);
  }

  async waitIdle(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.reg('STATUS');
      if ((status & BUSY) === 0) return status;
      if (Date.now() > deadline) throw new Error(`card still busy after ${timeoutMs} ms`);
      await sleep(1);
    }
  }

  /** Clears STATUS and the error registers, runs one command to completion. */
  async run(cmd: number, a: Args = {}): Promise<Outcome> {
    this.set('STATUS', 0);
    this.set('ERROR_CODE', 0);
    this.submit(cmd, a);
    const status = await this.waitIdle();
    const lo = await this.reg('RESULT_LO');
    const hi = await this.reg('RESULT_HI');
    return { status, result: (BigInt(hi) << 32n) | BigInt(lo), error: ERR_NAMES[await this.reg('ERROR_CODE')] };
  }

  /** What a host's PCI core does: memory decoding and bus mastering on. */
  async enable(): Promise<void> {
    await this.peer.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }

  async msiCap(): Promise<number> {
    let ptr = (await this.peer.configRead(0x34, 1)) & 0xfc;
    while (ptr !== 0) {
      if ((await this.peer.configRead(ptr, 1)) === PCI_CAP_ID_MSI) return ptr;
      ptr = (await this.peer.configRead(ptr + 1, 1)) & 0xfc;
    }
    throw new Error('no MSI capability');
  }

  async setMsi(on: boolean): Promise<void> {
    const cap = await this.msiCap();
    const ctrl = await this.peer.configRead(cap + 2, 2);
    await this.peer.configWrite(cap + 2, 2, on ? ctrl | 1 : ctrl & ~1);
  }
}

function expectOk(o: Outcome): void {
  expect(o.error, 'ERROR_CODE').to.equal('NONE');
  expect(o.status & (DONE | ERROR), 'STATUS').to.equal(DONE);
}

// ---- frames, command buffers and images ----------------------------------------

type Rgb = readonly [number, number, number];

function setPixel(f: Buffer, x: number, y: number, [r, g, b]: Rgb): void {
  f.set([r, g, b], (y * W + x) * 3);
}

function testFrame(): Buffer {
  const f = Buffer.alloc(Const.FB_SIZE);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) setPixel(f, x, y, [x & 0xff, y & 0xff, (x ^ y) & 0xff]);
  }
  return f;
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const ppmHeader = `P6\n${W} ${H}\n255\n`;

/** The requests (not replies) with command `cmd` in `list`. */
function messagesOf<C extends Message['cmd']>(list: readonly Message[], cmd: C): Extract<Message, { cmd: C; reply: false }>[] {
  return list.filter((m): m is Extract<Message, { cmd: C; reply: false }> => m.cmd === cmd && !m.reply);
}

type Store = Extract<Message, { cmd: 'MMIO_WRITE'; reply: false }>;

/** Is `m` the model's store of the BAR0 register at `offset` (any register if omitted)? */
function isStore(m: Message, offset?: number): m is Store {
  return m.cmd === 'MMIO_WRITE' && !m.reply && (offset === undefined || m.body.offset === BigInt(offset));
}

/** The value of the last store of the BAR0 register `name` in `list`, or undefined. */
function lastStore(list: readonly Message[], name: RegName): number | undefined {
  const stores = list.filter((m): m is Store => isStore(m, Reg[name]));
  const v = stores[stores.length - 1]?.body.value;
  return v === undefined ? undefined : Number(v);
}

// ProtoPCIem's two register ranges, as the gateway's description shadows them.
const SHADOW: Region[] = [
  { bar: 0, offset: 0x0n, size: 0x40n },
  { bar: 0, offset: 0x1000n, size: 0x40n },
];
const SHADOW_OFFSETS = SHADOW.flatMap((r) => Array.from({ length: Number(r.size) / 4 }, (_, i) => Number(r.offset) + 4 * i));

/**
 * Drops the connection with the peer set to reply DEVICE with `shadow`;
 * resolves with the index in `received` of the new session's DEVICE once
 * that session is up.
 */
async function reconnectWith(peer: WirePeer, shadow: Region[]): Promise<number> {
  peer.options.shadow = shadow;
  const conns = peer.connections;
  peer.drop();
  const deadline = Date.now() + 20_000;
  while (!(peer.connections > conns && peer.isReady && peer.shadowSent === shadow)) {
    if (Date.now() > deadline) throw new Error('no new session with that shadow list in 20 s');
    await sleep(10);
  }
  return peer.received.map((m) => m.cmd === 'DEVICE' && !m.reply).lastIndexOf(true);
}

// ---- the tests ------------------------------------------------------------------

const PEER_MODES: { name: string; options: PeerOptions }[] = [
  { name: 'version 1, the socket', options: { version: 1 } },
  { name: 'version 2, the rings', options: { version: 2, rings: true } },
];

for (const mode of PEER_MODES) describe(`pciem-bridge: the QEMU side of the gateway (with a test peer; ${mode.name})`, function () {
  this.timeout(120_000);
  let workDir = '';
  let peer: WirePeer;
  let qemu: Qemu;
  let card: Card;

  before(async function () {
    ({ peer, qemu, dir: workDir } = await openBridged('card', 'protopciem,id=card0', `timeout-ms=${DMA_TIMEOUT_MS}`, mode.options));
    card = new Card(peer);
  });

  after(async function () {
    await closeBridged({ peer, qemu, dir: workDir });
  });

  afterEach(function () {
    expectRunning(qemu);
  });

  describe('session', function () {
    it('says HELLO as the model, versions 1..4, naming QEMU and the bridge', function () {
      expect(peer.hello).to.deep.equal({
        version_min: 1,
        version_max: 4,
        role: Role.MODEL,
        name: peer.hello?.name,
      });
      expect(peer.hello?.name).to.match(/^qemu-10\.0\.\d+ pciem-bridge$/);
      expect(peer.received[0]?.cmd, 'first frame').to.equal('HELLO');
      expect(peer.received[1]?.cmd, 'second frame').to.equal('DEVICE');
    });

    it('describes the card from the model: IDs, BARs, MSI, regions', function () {
      const d = peer.device;
      expect(d).to.not.equal(null);
      expect(d).to.deep.include({
        name: 'protopciem',
        vendor_id: PCI.vendorId,
        device_id: PCI.deviceId,
        class_code: (PCI.classCode << 16) | (PCI.subclass << 8) | PCI.progIf,
        revision: PCI.revision,
        interrupt_pin: PCI.interruptPin,
        msi_vectors: PCI.msiVectors,
        msi_flags: MsiFlags.ADDR64 | MsiFlags.MASKING,
        msix_vectors: 0,
        msix_bar: 0,
        msix_table_offset: 0,
        msix_pba_offset: 0,
        caps: 0,
      });
      expect(d?.bars).to.deep.equal([
        { index: 0, size: 0x10000n, flags: BarFlags.MEM64 },
        { index: 2, size: 0x100000n, flags: BarFlags.MEM64 | BarFlags.PREFETCH },
      ]);
      const whole = [
        { bar: 0, offset: 0n, size: 0x10000n },
        { bar: 2, offset: 0n, size: 0x100000n },
      ];
      expect(d?.traced).to.deep.equal(whole);
      expect(d?.read_via_model).to.deep.equal(whole);
    });

    it('takes the rings at version 2 and puts the hot path on them; at version 1 there are none', async function () {
      if (mode.options.rings !== true) {
        expect(peer.version).to.equal(1);
        expect(peer.ringsUp).to.equal(false);
        expect(peer.received.some((m) => m.cmd === 'RINGS')).to.equal(false);
        return;
      }
      expect(peer.version).to.equal(2);
      expect(peer.ringsReply).to.deep.include({ cmd: 'RINGS', reply: true, error: 'NONE' });
      expect(peer.ringsUp).to.equal(true);
      const inBefore = await qomCounter(qemu, 'ring-records-in');
      const outBefore = await qomCounter(qemu, 'ring-records-out');
      card.set('DATA', 0xfeed);
      expect(await card.reg('DATA')).to.equal(0xfeed);
      // The write and the read came in on g2m, the answer went out on m2g.
      expect(await qomCounter(qemu, 'ring-records-in') - inBefore).to.be.at.least(2);
      expect(await qomCounter(qemu, 'ring-records-out') - outBefore).to.be.at.least(1);
      expect(qemu.stderr).to.match(/the hot path rides the rings \(4096 slots of 64 bytes each way\)/);
    });

    it('answers STATS with its counters', async function () {
      const s = await peer.stats();
      expect(s.frames_out >= 2n, 'HELLO and DEVICE at least').to.equal(true);
      expect(s.frames_in >= 2n).to.equal(true);
      expect(s.timeouts).to.equal(0n);
    });
  });

  describe('MMIO and config space', function () {
    it('reads registers through the model (MMIO_READ)', async function () {
      expect(await card.reg('ID')).to.equal(0x1f0c0001);
      expect(await card.reg('VERSION')).to.equal(0x00010000);
      expect(await card.reg('FB_WIDTH')).to.equal(W);
      // A 64-bit read spans two registers, the lower address first.
      expect(await peer.mmioRead(0, Reg.ID, 8)).to.equal(0x0001_0000_1f0c_0001n);
    });

    it('writes registers through the model (MMIO_WRITE, posted and not)', async function () {
      card.set('DATA', 0x1234_5678);
      expect(await card.reg('DATA')).to.equal(0x1234_5678);
      await peer.request('MMIO_WRITE', { bar: 0, offset: BigInt(Reg.DATA), size: 4, value: 0xcafe_f00dn });
      expect(await card.reg('DATA')).to.equal(0xcafe_f00d);
    });

    it('reaches the card memory in BAR2 (a RAM BAR) at both ends', async function () {
      peer.mmioWrite(2, 0, 8, 0x0102_0304_0506_0708n);
      peer.mmioWrite(2, BAR.MEM.size - 4, 4, 0xa5a5_5a5a);
      expect(await peer.mmioRead(2, 0, 8)).to.equal(0x0102_0304_0506_0708n);
      expect(await peer.mmioRead(2, 6, 2)).to.equal(0x0102n);
      expect(await peer.mmioRead(2, BAR.MEM.size - 4, 4)).to.equal(0xa5a5_5a5an);
    });

    it('refuses MMIO outside the BARs with NO_DEVICE', async function () {
      for (const [bar, offset] of [
        [1, 0],
        [0, BAR.REGS.size],
        [2, BAR.MEM.size - 2],
      ] as const) {
        const e = await peer.request('MMIO_READ', { bar, offset: BigInt(offset), size: 4 }).catch((x: unknown) => x);
        expect(e, `bar ${bar} offset 0x${offset.toString(16)}`).to.be.instanceOf(WireReplyError);
        expect((e as WireReplyError).error).to.equal('NO_DEVICE');
      }
    });

    it('answers config reads from the model', async function () {
      expect(await peer.configRead(0x00, 4)).to.equal(((PCI.deviceId << 16) | PCI.vendorId) >>> 0);
      expect((await peer.configRead(0x08, 4)) >>> 8).to.equal((PCI.classCode << 16) | (PCI.subclass << 8) | PCI.progIf);
      expect(await peer.configRead(0x3d, 1)).to.equal(PCI.interruptPin);
    });

    it('applies the command register, not BARs, ROM or MSI address/data', async function () {
      const bar0 = await peer.configRead(0x10, 4);
      await peer.configWrite(0x10, 4, 0xfebf_0000);
      await peer.configWrite(0x14, 4, 0x1);
      await peer.configWrite(0x30, 4, 0xfffe_0000);
      expect(await peer.configRead(0x10, 4), 'BAR0').to.equal(bar0);
      expect(await peer.configRead(0x14, 4), 'BAR1').to.equal(0);
      expect(await peer.configRead(0x30, 4), 'ROM').to.equal(0);

      const cap = await card.msiCap();
      await peer.configWrite(cap + 4, 4, 0xfee0_1000);
      await peer.configWrite(cap + 8, 4, 0x1);
      await peer.configWrite(cap + 12, 2, 0x4041);
      expect(await peer.configRead(cap + 4, 4), 'MSI address').to.equal(0);
      expect(await peer.configRead(cap + 12, 2), 'MSI data').to.equal(0);

      await card.enable();
      expect(await peer.configRead(PCI_COMMAND, 2)).to.equal(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    });
  });

  describe('commands, interrupts and DMA', function () {
    before(async function () {
      card.set('CONTROL', Bits.CONTROL.RESET);
      card.set('CONTROL', Bits.CONTROL.ENABLE);
      await card.enable();
    });

    it('without MSI: INTX levels follow STATUS (assert on completion, deassert on clear)', async function () {
      await card.setMsi(false);
      const from = peer.received.length;
      const o = await card.run(CardCmd.ADD, { data: 21 });
      expectOk(o);
      expect(o.result).to.equal(42n);
      await peer.waitFor((m) => m.cmd === 'INTX' && !m.reply && m.body.level, from);
      card.set('STATUS', 0);
      await card.reg('STATUS');
      await peer.waitFor((m) => m.cmd === 'INTX' && !m.reply && !m.body.level, from);
      const intx = messagesOf(peer.received.slice(from), 'INTX').map((m) => m.body.level);
      expect(intx, 'INTX levels, only on change').to.deep.equal([true, false]);
      expect(messagesOf(peer.received.slice(from), 'MSI')).to.have.length(0);
    });

    it('with MSI enabled by a CONFIG_WRITE: one MSI {MSI, 0} per completion, no INTX', async function () {
      await card.setMsi(true);
      const from = peer.received.length;
      const results: bigint[] = [];
      for (const [cmd, data] of [
        [CardCmd.ADD, 0x8000_0000],
        [CardCmd.MULTIPLY, 0xffff_ffff],
        [CardCmd.XOR, 0x0f0f_0f0f],
      ] as const) {
        const o = await card.run(cmd, { data });
        expectOk(o);
        results.push(o.result);
      }
      expect(results).to.deep.equal([0x1_0000_0000n, 0xffff_fffe_0000_0001n, 0xf0f0_f0f0n]);
      await peer.waitFor((m) => messagesOf(peer.received.slice(from), 'MSI').length === 3 && m.cmd === 'MSI', from);
      const msis = messagesOf(peer.received.slice(from), 'MSI').map((m) => m.body);
      expect(msis).to.deep.equal([
        { kind: IrqKind.MSI, vector: 0 },
        { kind: IrqKind.MSI, vector: 0 },
        { kind: IrqKind.MSI, vector: 0 },
      ]);
      expect(messagesOf(peer.received.slice(from), 'INTX')).to.have.length(0);
    });

    it('PROCESS_BUFFER: reads host memory in bulk, writes it back, then the MSI', async function () {
      const len = 64 * 1024;
      const src = hostAlloc(peer, pattern(len, 7));
      const dst = hostAlloc(peer, len);
      const key = 0x5a5a_1234;
      const from = peer.received.length;
      const o = await card.run(CardCmd.PROCESS_BUFFER, { data: key, src: src.addr, dst: dst.addr, len });
      expectOk(o);
      let sum = 0n;
      for (let i = 0; i < len; i += 4) {
        sum += BigInt(src.buf.readUInt32LE(i));
        expect(dst.buf.readUInt32LE(i), `word ${i / 4}`).to.equal((src.buf.readUInt32LE(i) ^ key) >>> 0);
      }
      expect(o.result).to.equal(sum & 0xffff_ffff_ffff_ffffn);
      await peer.waitFor((m) => m.cmd === 'MSI', from);
      const after = peer.received.slice(from);
      const writes = messagesOf(after, 'DMA_WRITE');
      expect(writes, 'one DMA_WRITE for 64 KiB').to.have.length(1);
      expect(writes[0]?.posted).to.equal(true);
      const iWrite = after.findIndex((m) => m.cmd === 'DMA_WRITE');
      const iMsi = after.findIndex((m) => m.cmd === 'MSI');
      expect(iWrite, 'the DMA_WRITE comes before the MSI').to.be.lessThan(iMsi);
      expect(messagesOf(after, 'DMA_READ').length, 'DMA_READs for 64 KiB').to.be.at.most(2);
    });

    it('an access at the end of a mapping works: the read-ahead falls back to the page', async function () {
      const buf = hostAlloc(peer, pattern(8192, 3));
      const dst = hostAlloc(peer, 4096);
      const from = peer.received.length;
      const o = await card.run(CardCmd.PROCESS_BUFFER, { data: 0, src: buf.addr + 4096n, dst: dst.addr, len: 4096 });
      expectOk(o);
      expect(dst.buf.equals(buf.buf.subarray(4096))).to.equal(true);
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ').map((m) => m.body.len);
      expect(reads, 'read-ahead refused, then to the page end').to.deep.equal([64 * 1024, 4096]);
    });

    it('EXECUTE_CMDBUF: CLEAR, DRAW_LINE and BLIT_RECT show on the display', async function () {
      const pixels = pattern(5 * 4 * 3, 11);
      const buf = Buffer.concat([
        entry('CLEAR', { R: 10, G: 20, B: 30, A: 0xff }),
        entry('DRAW_LINE', { X0: 0, Y0: 5, X1: W - 1, Y1: 5, R: 255, G: 0, B: 0, A: 0xff }),
        entry('DRAW_LINE', { X0: 7, Y0: H - 1, X1: 7, Y1: 0, R: 0, G: 255, B: 0, A: 0xff }),
        entry('DRAW_LINE', { X0: 100, Y0: 100, X1: 200, Y1: 200, R: 0, G: 0, B: 255, A: 0xff }),
        entry('BLIT_RECT', { X: 300, Y: 200, WIDTH: 5, HEIGHT: 4 }, pixels),
      ]);
      const at = hostAlloc(peer, buf);
      const o = await card.run(CardCmd.EXECUTE_CMDBUF, { src: at.addr, len: buf.length });
      expectOk(o);
      expect(o.result, 'entries').to.equal(5n);

      const want = Buffer.alloc(Const.FB_SIZE);
      for (let i = 0; i < W * H; i++) want.set([10, 20, 30], i * 3);
      for (let x = 0; x < W; x++) setPixel(want, x, 5, [255, 0, 0]);
      for (let y = 0; y < H; y++) setPixel(want, 7, y, [0, 255, 0]);
      for (let i = 0; i <= 100; i++) setPixel(want, 100 + i, 100 + i, [0, 0, 255]);
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 5; x++) {
          const s = (y * 5 + x) * 3;
          setPixel(want, 300 + x, 200 + y, [pixels[s] ?? 0, pixels[s + 1] ?? 0, pixels[s + 2] ?? 0]);
        }
      }
      const shot = await screendump(qemu, workDir);
      expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), want])), 'screendump').to.equal(true);
    });

    it('DMA_FRAME: a 921,600-byte frame arrives byte-exact, in bulk DMA_READs', async function () {
      const frame = testFrame();
      const at = hostAlloc(peer, frame);
      const from = peer.received.length;
      const t0 = process.hrtime.bigint();
      const o = await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      expectOk(o);
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ');
      process.stderr.write(`      DMA_FRAME: ${reads.length} DMA_READ frames (${reads.map((r) => r.body.len).join(', ')}), ${ms.toFixed(1)} ms\n`);
      expect(reads.length, 'DMA_READ frames for one frame').to.be.at.most(20);
      expect(reads[0]?.body.addr).to.equal(at.addr);
      const shot = await screendump(qemu, workDir);
      expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), frame])), 'screendump').to.equal(true);
    });

    it('the read-ahead doubles while the model reads on: a frame in 64, 128, 256 and 512 KiB, served as RAM', async function () {
      const frame = testFrame();
      // The mapping goes on past the frame: no fill is refused.
      const at = hostAlloc(peer, Buffer.concat([frame, Buffer.alloc(Const.FB_SIZE)]));
      const fills = await qomCounter(qemu, 'dma-fills');
      const from = peer.received.length;
      expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ').map((m) => [Number(m.body.addr - at.addr), m.body.len]);
      const K = 1024;
      expect(reads, '[offset, len] of each DMA_READ').to.deep.equal([
        [0, 64 * K],
        [64 * K, 128 * K],
        [192 * K, 256 * K],
        [448 * K, 512 * K],
      ]);
      expect((await qomCounter(qemu, 'dma-fills')) - fills, 'qom-get dma-fills').to.equal(4);
      const shot = await screendump(qemu, workDir);
      expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), frame])), 'screendump').to.equal(true);
    });

    it('a mapping that ends inside the read-ahead, mid-page: refused, then the page, then halving; every byte right', async function () {
      // 100 KiB and 100 bytes, mapped to the byte; unmapped after.
      const len = 100 * 1024 + 100;
      const src = hostAlloc(peer, pattern(len, 17));
      const dst = hostAlloc(peer, len);
      const from = peer.received.length;
      expectOk(await card.run(CardCmd.P2P_READ, { src: src.addr, dst: 0, len }));
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ').map((m) => [Number(m.body.addr - src.addr), m.body.len]);
      process.stderr.write(`      ${reads.length} DMA_READs: ${reads.map(([o, l]) => `${String(o)}+${String(l)}`).join(' ')}\n`);
      const K = 1024;
      // 64 KiB; 128 KiB refused; the page; then halfway to where it was refused.
      expect(reads.slice(0, 3)).to.deep.equal([
        [0, 64 * K],
        [64 * K, 128 * K],
        [64 * K, 4 * K],
      ]);
      // The last page is read in the model's own accesses (<= 8 bytes each).
      const tail = reads.filter(([o]) => (o ?? 0) >= 100 * K);
      expect(tail.every(([, l]) => (l ?? 0) <= 8), 'the tail, access by access').to.equal(true);
      expect(reads.length, 'DMA_READs').to.be.at.most(40);
      expectOk(await card.run(CardCmd.P2P_WRITE, { src: 0, dst: dst.addr, len }));
      expect(dst.buf.equals(src.buf), 'host -> BAR2 -> host').to.equal(true);
    });

    it('a host write before a doorbell is seen by the DMA after it, though the model had the bytes cached', async function () {
      const len = 4096;
      // Mapped as far as the read-ahead goes: one DMA_READ per command.
      const src = hostAlloc(peer, pattern(64 * 1024, 21));
      const before = Buffer.from(src.buf);
      card.set('STATUS', 0);
      card.set('ERROR_CODE', 0);
      const from = peer.received.length;
      // The first command's reply carries the bytes as they are when it is asked for.
      peer.options.delayDmaReadsMs = 50;
      try {
        card.submit(CardCmd.P2P_READ, { src: src.addr, dst: 0x2_0000, len });
        await peer.waitFor((m) => m.cmd === 'DMA_READ' && !m.reply, from);
        // While the model holds them in its cache: the host writes, then rings again.
        src.buf.fill(0xa5);
        card.submit(CardCmd.P2P_READ, { src: src.addr, dst: 0x3_0000, len });
        await card.waitIdle();
      } finally {
        delete peer.options.delayDmaReadsMs;
      }
      expect(ERR_NAMES[await card.reg('ERROR_CODE')]).to.equal('NONE');
      for (const off of [0, 8, len - 8]) {
        expect(await peer.mmioRead(2, 0x2_0000 + off, 8), `first copy at ${off}`).to.equal(before.readBigUInt64LE(off));
        expect(await peer.mmioRead(2, 0x3_0000 + off, 8), `second copy at ${off}`).to.equal(0xa5a5_a5a5_a5a5_a5a5n);
      }
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ').filter((m) => m.body.addr === src.addr);
      expect(reads, 'the second command read the host again').to.have.length(2);
    });

    it('P2P_READ and P2P_WRITE move data between a peer address and BAR2', async function () {
      const len = 8192;
      const src = hostAlloc(peer, pattern(len, 5));
      expectOk(await card.run(CardCmd.P2P_READ, { src: src.addr, dst: 0x1000, len }));
      for (const off of [0, 8, 4096, len - 8]) {
        expect(await peer.mmioRead(2, 0x1000 + off, 8), `BAR2 0x${(0x1000 + off).toString(16)}`).to.equal(src.buf.readBigUInt64LE(off));
      }
      const dst = hostAlloc(peer, len);
      const o = await card.run(CardCmd.P2P_WRITE, { src: 0x1000, dst: dst.addr, len });
      expectOk(o);
      expect(o.result).to.equal(BigInt(len));
      expect(dst.buf.equals(src.buf)).to.equal(true);
    });

    it('a DMA_READ answered FAULT: the card reports ERR_DMA_FAULT, QEMU carries on', async function () {
      const from = peer.received.length;
      const o = await card.run(CardCmd.DMA_FRAME, { src: 0x7000_0000_0000n, len: Const.FB_SIZE });
      expect(o.status & (DONE | ERROR), 'STATUS').to.equal(DONE | ERROR);
      expect(o.error).to.equal('DMA_FAULT');
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ').map((m) => m.body.len);
      expect(reads.slice(0, 3), 'read-ahead, page, the access: all refused').to.deep.equal([64 * 1024, 4096, 8]);
      // QEMU goes on after a failed step: the refused page fails at once,
      // each page after it costs the page and the access.
      expect(reads.length, 'DMA_READs for a refused frame').to.be.at.most(3 + 2 * (Const.FB_SIZE / 4096));
      process.stderr.write(`      refused frame: ${reads.length} DMA_READ frames\n`);
      const status = await qemu.qmp.execute<{ status: string }>('query-status');
      expect(status.status).to.equal('running');
      expectOk(await card.run(CardCmd.ADD, { data: 1 }));
    });

    it('a DMA_READ with no reply fails after timeout-ms (counted), QEMU carries on', async function () {
      const at = hostAlloc(peer, testFrame());
      const before = await peer.stats();
      peer.options.holdDmaReads = true;
      const t0 = Date.now();
      let o: Outcome;
      try {
        o = await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE });
      } finally {
        peer.options.holdDmaReads = false;
      }
      expect(Date.now() - t0, 'waited about timeout-ms').to.be.at.least(DMA_TIMEOUT_MS - 50);
      expect(o.error).to.equal('DMA_FAULT');
      const after = await peer.stats();
      expect(after.timeouts - before.timeouts).to.equal(1n);
      await qemu.logged('no reply to DMA_READ');
      expectOk(await card.run(CardCmd.ADD, { data: 2 }));
    });

    it('requests that arrive while a DMA_READ waits run after the model\'s work, never inside it', async function () {
      const at = hostAlloc(peer, testFrame());
      card.set('STATUS', 0);
      peer.options.delayDmaReadsMs = 30;
      let status: number;
      const from = peer.received.length;
      try {
        card.submit(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE });
        await peer.waitFor((m) => m.cmd === 'DMA_READ' && !m.reply, from);
        // Sent while the model waits for its first DMA_READ reply.
        status = await card.reg('STATUS');
      } finally {
        delete peer.options.delayDmaReadsMs;
      }
      expect(status & (BUSY | DONE), 'answered once the command was over').to.equal(DONE);
      const after = peer.received.slice(from);
      const lastRead = after.map((m) => m.cmd === 'DMA_READ' && !m.reply).lastIndexOf(true);
      const reply = after.findIndex((m) => m.cmd === 'MMIO_READ' && m.reply);
      expect(lastRead, 'every DMA_READ of the frame').to.be.greaterThan(10);
      expect(reply, 'the MMIO_READ reply after the last DMA_READ').to.be.greaterThan(lastRead);
    });

    it('a DMA_READ reply of the wrong length: ERROR STATE, the access fails, QEMU carries on', async function () {
      const at = hostAlloc(peer, pattern(4096, 9));
      const dst = hostAlloc(peer, 4096);
      const from = peer.received.length;
      peer.options.shortDmaReads = true;
      let o: Outcome;
      try {
        o = await card.run(CardCmd.PROCESS_BUFFER, { src: at.addr, dst: dst.addr, len: 4096 });
      } finally {
        delete peer.options.shortDmaReads;
      }
      expect(o.error).to.equal('DMA_FAULT');
      const err = messagesOf(peer.received.slice(from), 'ERROR')[0];
      // The read-ahead was refused (FAULT); the page read got the short reply.
      const reads = messagesOf(peer.received.slice(from), 'DMA_READ');
      expect(reads.map((r) => r.body.len)).to.deep.equal([64 * 1024, 4096]);
      expect(err?.error).to.equal('STATE');
      expect(err?.body.ref_id).to.equal(reads[1]?.id);
      expectOk(await card.run(CardCmd.PROCESS_BUFFER, { src: at.addr, dst: dst.addr, len: 4096 }));
      expect(dst.buf.equals(at.buf)).to.equal(true);
    });

    it('the gateway going away during a DMA_READ fails the access; QEMU reconnects', async function () {
      const at = hostAlloc(peer, testFrame());
      const conns = peer.connections;
      const from = peer.received.length;
      card.set('STATUS', 0);
      card.set('ERROR_CODE', 0);
      peer.options.holdDmaReads = true;
      try {
        card.submit(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE });
        await peer.waitFor((m) => m.cmd === 'DMA_READ' && !m.reply, from);
        peer.drop();
        await qemu.logged('connection to the gateway closed');
      } finally {
        peer.options.holdDmaReads = false;
      }
      await peer.waitReady(conns + 1);
      const status = await card.waitIdle();
      expect(status & (DONE | ERROR), 'STATUS').to.equal(DONE | ERROR);
      expect(ERR_NAMES[await card.reg('ERROR_CODE')]).to.equal('DMA_FAULT');
      expect((await qemu.qmp.execute<{ status: string }>('query-status')).status).to.equal('running');
      expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    });

    it('100,000 posted MMIO_WRITEs all reach the model, in order', async function () {
      const n = 100_000;
      const before = await peer.stats();
      const t0 = process.hrtime.bigint();
      for (let i = 1; i <= n; i++) card.set('DATA', i);
      expect(await card.reg('DATA'), 'the last value').to.equal(n);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const after = await peer.stats();
      process.stderr.write(`      100,000 posted MMIO_WRITEs + 1 MMIO_READ: ${ms.toFixed(0)} ms (${((n / ms) * 1000).toFixed(0)} writes/s)\n`);
      expect(after.mmio_writes - before.mmio_writes).to.equal(BigInt(n));
      expect(after.errors_in - before.errors_in).to.equal(0n);
    });

    if (mode.options.rings === true) {
      for (const fds of [0, 3]) {
        it(`RINGS with ${fds} file descriptors: a failed reply INVALID, and the session goes on over the socket`, async function () {
          const conns = peer.connections;
          peer.options = { ...mode.options, ringsFdCount: fds };
          peer.drop();
          await peer.waitReady(conns + 1);
          expect(peer.ringsReply?.error).to.equal('INVALID');
          expect((peer.ringsReply?.body as { message: string }).message).to.match(new RegExp(`${fds} file descriptors came with it, want 5`));
          expect(peer.ringsUp).to.equal(false);
          card.set('DATA', 0x5151);
          expect(await card.reg('DATA')).to.equal(0x5151);
          expect(await qomCounter(qemu, 'ring-records-in')).to.equal(0);
          expect(qemu.stderr).to.match(/RINGS refused: .*the socket carries everything/);
          peer.options = mode.options;
          peer.drop();
          await peer.waitReady(conns + 2);
          expect(peer.ringsUp).to.equal(true);
        });
      }

      it('RINGS with a memory file not sealed against shrinking: a failed reply INVALID, the session goes on over the socket', async function () {
        const conns = peer.connections;
        peer.options = { ...mode.options, unsealed: true };
        peer.drop();
        await peer.waitReady(conns + 1);
        expect(peer.ringsReply?.error).to.equal('INVALID');
        expect((peer.ringsReply?.body as { message: string }).message).to.equal('RINGS: the memory file is not sealed against shrinking (F_SEAL_SHRINK)');
        expect(peer.ringsUp).to.equal(false);
        card.set('DATA', 0x5252);
        expect(await card.reg('DATA')).to.equal(0x5252);
        peer.options = mode.options;
        peer.drop();
        await peer.waitReady(conns + 2);
        expect(peer.ringsUp).to.equal(true);
      });

      it('a corrupt record on g2m: ERROR UNKNOWN_CMD, closed with a logged reason; QEMU runs and reconnects', async function () {
        const conns = peer.connections;
        const closes = peer.closes;
        const from = peer.received.length;
        const bad = new Uint8Array(24);
        const v = new DataView(bad.buffer);
        v.setUint32(0, 8, true);
        v.setUint32(4, peer.peekId(), true);
        v.setUint16(8, 0x7777, true);
        v.setUint16(10, 2, true);
        peer.ringRaw(bad);
        await peer.waitReady(conns + 1);
        expect(peer.closes).to.equal(closes + 1);
        const err = peer.received.slice(from).find((m) => m.cmd === 'ERROR');
        expect(err?.error).to.equal('UNKNOWN_CMD');
        expect(qemu.stderr).to.match(/a corrupt record on the gateway's ring \(UNKNOWN_CMD\); closing the connection/);
        expect(peer.ringsUp).to.equal(true);
        expect(await card.reg('ID')).to.equal(0x1f0c0001);
      });

      it('socket frames whose FENCEs never come: past 64 MiB held, closed with a logged reason; QEMU runs and reconnects', async function () {
        const conns = peer.connections;
        const closes = peer.closes;
        const from = peer.received.length;
        // Whole frames of the largest body, none announced on g2m: each is
        // held until a FENCE that never comes. The fourth passes the cap
        // (four largest bodies); the fifth is there in case it is counted late.
        const frame = Buffer.alloc(HEADER_SIZE + Limits.MAX_BODY);
        frame.writeUInt32LE(Limits.MAX_BODY, 0);
        frame.writeUInt16LE(0x0021, 8);
        frame.writeUInt16LE(0x0002, 10);
        for (let i = 0; i < 5; i++) {
          frame.writeUInt32LE(peer.peekId() + i, 4);
          peer.sendUnfenced(frame);
        }
        await qemu.logged('wait for FENCEs that do not come; closing the connection');
        await peer.waitReady(conns + 1);
        expect(peer.closes).to.equal(closes + 1);
        const err = peer.received.slice(from).find((m) => m.cmd === 'ERROR');
        expect(err?.error, 'the reason, before closing').to.equal('STATE');
        expect(qemu.running).to.equal(true);
        expect(peer.ringsUp).to.equal(true);
        expect(await card.reg('ID'), 'the new session works').to.equal(0x1f0c0001);
      });

      it('a full m2g: the bridge waits timeout-ms for room, then closes with a logged error; QEMU runs and reconnects', async function () {
        const conns = peer.connections;
        peer.options = { ...mode.options, ringSlots: 64, stallModelRing: true };
        peer.drop();
        await peer.waitReady(conns + 1);
        expect(peer.ringsUp).to.equal(true);
        const closes = peer.closes;
        // Each read's answer is a record on m2g, which nobody takes: the 65th cannot go.
        const reads = Array.from({ length: 100 }, () => peer.mmioRead(BAR.REGS.index, Reg.ID).catch((e: unknown) => e));
        const t0 = Date.now();
        while (peer.closes === closes && Date.now() - t0 < 10_000) await sleep(20);
        expect(peer.closes, 'the bridge closed the connection').to.equal(closes + 1);
        expect(Date.now() - t0).to.be.at.least(DMA_TIMEOUT_MS - 100);
        await Promise.all(reads);
        expect(qemu.stderr).to.match(/the gateway took nothing off its ring for 1000 ms/);
        expect(qemu.running).to.equal(true);
        peer.options = mode.options;
        await peer.waitReady(conns + 2);
        expect(await card.reg('ID')).to.equal(0x1f0c0001);
      });
    }

    it('RESET {FLR} resets the card and its config space, and is answered', async function () {
      card.set('FENCE_NEXT', 77);
      expect(await card.reg('FENCE_NEXT')).to.equal(77);
      const before = await peer.stats();
      await peer.request('RESET', { kind: ResetKind.FLR });
      expect(await card.reg('FENCE_NEXT')).to.equal(1);
      expect(await peer.configRead(PCI_COMMAND, 2), 'command register').to.equal(0);
      expect((await peer.stats()).resets - before.resets).to.equal(1n);
      await card.enable();
      expectOk(await card.run(CardCmd.ADD, { data: 3 }));
    });
  });


  describe('shadowed registers (the DEVICE reply names them)', function () {
    let deviceAt = 0;

    before(async function () {
      deviceAt = await reconnectWith(peer, SHADOW);
      // The session is up once DEVICE is answered; the stores that answer
      // follow it (on the ring, in version 2) and may still be on their way.
      const want = deviceAt + 1 + SHADOW_OFFSETS.length;
      await until(`${SHADOW_OFFSETS.length} messages after the DEVICE reply`, () => peer.received.length >= want, 5_000);
    });

    after(async function () {
      await reconnectWith(peer, []);
    });

    it('right after the DEVICE reply: one posted store per shadowed dword, what the model holds', async function () {
      const first = peer.received.slice(deviceAt + 1, deviceAt + 1 + SHADOW_OFFSETS.length);
      expect(first.map((m) => (isStore(m) ? `${m.body.bar}:0x${m.body.offset.toString(16)}:${m.body.size}:${String(m.posted)}` : m.cmd))).to.deep.equal(
        SHADOW_OFFSETS.map((o) => `0:0x${o.toString(16)}:4:true`),
      );
      expect(lastStore(first, 'ID')).to.equal(0x1f0c0001);
      expect(lastStore(first, 'VERSION')).to.equal(0x00010000);
      expect(lastStore(first, 'FB_WIDTH')).to.equal(W);
      expect(lastStore(first, 'FB_HEIGHT')).to.equal(H);
      expect(lastStore(first, 'FB_FORMAT')).to.equal(Const.FB_FORMAT_RGB888);
      const after = peer.received.length;
      for (const m of first as Store[]) {
        expect(await peer.mmioRead(0, Number(m.body.offset), 4), `0x${m.body.offset.toString(16)}`).to.equal(m.body.value);
      }
      // The reads changed nothing: nothing is sent again.
      expect(peer.received.slice(after).filter((m) => isStore(m))).to.have.length(0);
      const stores = await qemu.qmp.execute<number>('qom-get', { path: '/objects/br0', property: 'shadow-stores' });
      expect(stores, 'qom-get shadow-stores').to.equal(SHADOW_OFFSETS.length);
    });

    it('after a command: STATUS, RESULT and FENCE_DONE are stored before the MSI; unchanged registers are not', async function () {
      await card.enable();
      await card.setMsi(true);
      for (let round = 0; round < 2; round++) {
        const fence = await card.reg('FENCE_NEXT');
        const from = peer.received.length;
        const o = await card.run(CardCmd.ADD, { data: 0x55 });
        expectOk(o);
        expect(o.result).to.equal(0xaan);
        const msi = await peer.waitFor((m) => m.cmd === 'MSI' && !m.reply, from);
        const list = peer.received.slice(from);
        const beforeMsi = list.slice(0, list.indexOf(msi));
        expect((lastStore(beforeMsi, 'STATUS') ?? 0) & (DONE | ERROR | BUSY), 'STATUS').to.equal(DONE);
        expect(lastStore(beforeMsi, 'FENCE_DONE'), 'FENCE_DONE').to.equal(fence);
        expect(lastStore(list, 'ID'), 'ID').to.equal(undefined);
        if (round === 0) {
          expect(lastStore(beforeMsi, 'RESULT_LO'), 'RESULT_LO').to.equal(0xaa);
        } else {
          // The same command again: RESULT, which the driver does not write, is the same.
          for (const name of ['RESULT_LO', 'RESULT_HI', 'VERSION', 'ERROR_COUNT'] as const) expect(lastStore(list, name), name).to.equal(undefined);
        }
      }
      // Read from inside the model's bottom half, past its re-entrancy guard.
      expect(qemu.stderr).to.not.include('Blocked re-entrant IO');
    });

    it('DMA writes, then the stores, then the MSI (PROCESS_BUFFER)', async function () {
      const len = 4096;
      const src = hostAlloc(peer, pattern(len, 13));
      const dst = hostAlloc(peer, len);
      const fence = await card.reg('FENCE_NEXT');
      const from = peer.received.length;
      expectOk(await card.run(CardCmd.PROCESS_BUFFER, { data: 1, src: src.addr, dst: dst.addr, len }));
      await peer.waitFor((m) => m.cmd === 'MSI' && !m.reply, from);
      const list = peer.received.slice(from);
      const iWrite = list.findIndex((m) => m.cmd === 'DMA_WRITE');
      const iFence = list.findIndex((m) => isStore(m, Reg.FENCE_DONE) && Number(m.body.value) === fence);
      const iMsi = list.findIndex((m) => m.cmd === 'MSI');
      expect(iWrite, 'DMA_WRITE').to.be.at.least(0);
      expect(iFence, 'the FENCE_DONE store after the DMA_WRITE').to.be.greaterThan(iWrite);
      expect(iMsi, 'the MSI after the FENCE_DONE store').to.be.greaterThan(iFence);
    });

    it('without MSI: the STATUS store comes before INTX asserts', async function () {
      await card.setMsi(false);
      try {
        const from = peer.received.length;
        expectOk(await card.run(CardCmd.ADD, { data: 1 }));
        const intx = await peer.waitFor((m) => m.cmd === 'INTX' && !m.reply && m.body.level, from);
        const list = peer.received.slice(from);
        expect((lastStore(list.slice(0, list.indexOf(intx)), 'STATUS') ?? 0) & (DONE | BUSY)).to.equal(DONE);
        card.set('STATUS', 0);
        await peer.waitFor((m) => m.cmd === 'INTX' && !m.reply && !m.body.level, from);
      } finally {
        await card.setMsi(true);
      }
    });

    it('a write to DATA is stored after the request (posted), and before its reply (non-posted)', async function () {
      let from = peer.received.length;
      card.set('DATA', 0x1234_abcd);
      const st = await peer.waitFor((m) => isStore(m, Reg.DATA), from);
      expect(st.body).to.deep.equal({ bar: 0, offset: BigInt(Reg.DATA), size: 4, value: 0x1234_abcdn });
      expect(st.posted).to.equal(true);

      from = peer.received.length;
      await peer.request('MMIO_WRITE', { bar: 0, offset: BigInt(Reg.DATA), size: 4, value: 0x0bad_cafen });
      const list = peer.received.slice(from);
      const iStore = list.findIndex((m) => isStore(m, Reg.DATA) && m.body.value === 0x0bad_cafen);
      const iReply = list.findIndex((m) => m.cmd === 'MMIO_WRITE' && m.reply);
      expect(iStore, 'the store').to.be.at.least(0);
      expect(iStore, 'before the reply').to.be.lessThan(iReply);
    });

    it('a driver write the model does not keep is overwritten with the model\'s value', async function () {
      // STATUS is RW0C: writing ones changes nothing in the model, but the
      // host's BAR memory now holds the driver's 0xffffffff.
      const status = await card.reg('STATUS');
      const from = peer.received.length;
      card.set('STATUS', 0xffff_ffff);
      const st = await peer.waitFor((m) => isStore(m, Reg.STATUS), from);
      expect(Number((st as Store).body.value)).to.equal(status);
      // ID is read-only and never written: its first store was its last.
      card.set('ID', 0);
      const id = await peer.waitFor((m) => isStore(m, Reg.ID), from);
      expect(Number((id as Store).body.value)).to.equal(0x1f0c0001);
    });
  });

  describe('bad input from the gateway', function () {
    for (const [what, shadow, error, logged] of [
      ['a BAR the card does not have', [{ bar: 1, offset: 0n, size: 4n }], 'NO_DEVICE', 'region 0: the device has no BAR 1'],
      ['a region past the end of BAR0', [...SHADOW, { bar: 0, offset: 0xfff0n, size: 0x20n }], 'NO_DEVICE', 'region 2: 0x20 bytes at 0xfff0 leave BAR 0'],
      ['a misaligned region', [{ bar: 0, offset: 2n, size: 4n }], 'INVALID', 'region 0 (BAR 0, 0x4 bytes at 0x2) is not whole aligned dwords'],
      ['overlapping regions', [SHADOW[0], { bar: 0, offset: 0x20n, size: 0x40n }], 'INVALID', 'regions 0 and 1 overlap'],
      ['more than 64 KiB', [{ bar: 2, offset: 0n, size: 0x10004n }], 'INVALID', 'more than 65536 bytes'],
    ] as [string, Region[], ErrName, string][]) {
      it(`a shadow list with ${what}: ERROR ${error}, closed with a logged reason, QEMU runs`, async function () {
        const from = peer.received.length;
        const closes = peer.closes;
        peer.options.shadow = shadow;
        try {
          peer.drop();
          const e = await peer.waitFor((m) => m.cmd === 'ERROR' && !m.reply, from);
          expect(e.error).to.equal(error);
          await qemu.logged(`shadow list is refused: ${logged}`);
          const deadline = Date.now() + 5000;
          while (peer.closes < closes + 2) {
            if (Date.now() > deadline) throw new Error('the bridge did not close the session');
            await sleep(10);
          }
          expect((await qemu.qmp.execute<{ status: string }>('query-status')).status).to.equal('running');
        } finally {
          await reconnectWith(peer, []);
        }
        expect(await card.reg('ID'), 'the next session works').to.equal(0x1f0c0001);
      });
    }

    it('an undefined command: ERROR UNKNOWN_CMD, and the session goes on', async function () {
      const from = peer.received.length;
      const id = peer.peekId();
      peer.skipIds(1);
      const hdr = Buffer.alloc(HEADER_SIZE);
      hdr.writeUInt32LE(1, 0);
      hdr.writeUInt32LE(id, 4);
      hdr.writeUInt16LE(0x7777, 8);
      peer.sendRaw(Buffer.concat([hdr, Buffer.from([0x80])]));
      const e = await peer.waitFor((m) => m.cmd === 'ERROR' && !m.reply && m.body.ref_id === id, from);
      expect(e.error).to.equal('UNKNOWN_CMD');
      expect(await card.reg('ID')).to.equal(0x1f0c0001);
    });

    it('a body missing a field: a failed reply MISSING', async function () {
      const from = peer.received.length;
      const id = peer.peekId();
      peer.skipIds(1);
      // {bar: 0, offset: 0}: MMIO_READ without its size.
      const body = Buffer.from([0x82, 0xa3, ...Buffer.from('bar'), 0x00, 0xa6, ...Buffer.from('offset'), 0x00]);
      const hdr = Buffer.alloc(HEADER_SIZE);
      hdr.writeUInt32LE(body.length, 0);
      hdr.writeUInt32LE(id, 4);
      hdr.writeUInt16LE(0x0020, 8);
      peer.sendRaw(Buffer.concat([hdr, body]));
      const r = await peer.waitFor((m) => m.reply && m.id === id, from);
      expect(r.cmd).to.equal('MMIO_READ');
      expect(r.error).to.equal('MISSING');
    });

    it('session rules: a gateway HELLO, a model-only command and an id gap get STATE', async function () {
      const hello = await peer.request('HELLO', { version_min: 1, version_max: 1, role: Role.GATEWAY, name: 'again' }).catch((x: unknown) => x);
      expect((hello as WireReplyError).error).to.equal('STATE');
      const dma = await peer.request('DMA_READ', { addr: 0n, len: 4 }).catch((x: unknown) => x);
      expect((dma as WireReplyError).error).to.equal('STATE');
      peer.skipIds(3);
      const gap = await peer.request('MMIO_READ', { bar: 0, offset: BigInt(Reg.ID), size: 4 }).catch((x: unknown) => x);
      expect((gap as WireReplyError).error).to.equal('STATE');
      expect(await card.reg('ID'), 'in step again').to.equal(0x1f0c0001);
    });

    it('garbage bytes: the connection is closed with a log line, QEMU runs and reconnects', async function () {
      const conns = peer.connections;
      const from = peer.received.length;
      peer.sendRaw(Buffer.alloc(64, 0xff));
      await qemu.logged('closing the connection');
      await peer.waitReady(conns + 1);
      const e = messagesOf(peer.received.slice(from), 'ERROR')[0];
      expect(e?.error, 'the reason, before closing').to.equal('TOO_BIG');
      const status = await qemu.qmp.execute<{ status: string }>('query-status');
      expect(status.status).to.equal('running');
      expect(await card.reg('ID'), 'the new session works').to.equal(0x1f0c0001);
    });

    it('an oversize header: ERROR TOO_BIG, closed, QEMU runs and reconnects', async function () {
      const conns = peer.connections;
      const logs = qemu.stderr.split('closing the connection').length;
      const hdr = Buffer.alloc(HEADER_SIZE);
      hdr.writeUInt32LE(Limits.MAX_BODY + 1, 0);
      hdr.writeUInt32LE(peer.peekId(), 4);
      hdr.writeUInt16LE(0x0021, 8);
      hdr.writeUInt16LE(0x0002, 10);
      peer.sendRaw(hdr);
      await peer.waitReady(conns + 1);
      expect(qemu.stderr.split('closing the connection').length, 'logged').to.equal(logs + 1);
      const status = await qemu.qmp.execute<{ status: string }>('query-status');
      expect(status.status).to.equal('running');
      expect(await card.reg('VERSION')).to.equal(0x00010000);
    });

    it('a fuzz of 1,500 frames, most well-formed with edge values (seeded): QEMU never exits, the card works afterwards', async function () {
      const fuzz = new FrameFuzzer(Number(process.env.FUZZ_SEED ?? 0x5eed), ['MMIO_READ', 'MMIO_WRITE', 'CONFIG_READ', 'CONFIG_WRITE', 'STATS', 'RESET']);
      const takeId = (): number => {
        const id = peer.peekId();
        peer.skipIds(1);
        return id;
      };
      let sent = 0;
      let sessions = 0;
      const from = peer.received.length;
      while (sent < 1500) {
        const conns = peer.connections;
        const closes = peer.closes;
        for (let i = 0; i < 100 && peer.closes === closes; i++, sent++) peer.sendRaw(fuzz.frame(takeId));
        // Whatever the bridge made of them: QEMU runs; a closed session comes back.
        await sleep(50);
        expect((await qemu.qmp.execute<{ status: string }>('query-status')).status, `seed ${fuzz.seed}, ${sent} frames`).to.equal('running');
        if (peer.closes !== closes) {
          sessions++;
          await peer.waitReady(conns + 1);
        }
      }
      // What came back shows the frames reached the handlers, not a parser that dropped them.
      const t = tally(peer.received.slice(from));
      console.log(`      ${sent} frames, seed 0x${fuzz.seed.toString(16)}: ${t.text}, ${sessions} sessions closed and reopened`);
      expect(t.ok, 'well-formed requests were carried out').to.be.greaterThan(sent / 10);
      expect(t.refused, 'bad ones were refused').to.be.greaterThan(sent / 10);
      // A new session, the card reset: it answers as before.
      const conns = peer.connections;
      peer.drop();
      await peer.waitReady(conns + 1);
      await peer.request('RESET', { kind: ResetKind.FLR });
      expect(await card.reg('ID'), `seed ${fuzz.seed}`).to.equal(0x1f0c0001);
      expect(qemu.running).to.equal(true);
    });
  });
});

/**
 * A peer listening in `dir`, and QEMU with `device` (as id card0 or nic0)
 * and a bridge to the peer that reconnects after 200 ms; resolves once
 * HELLO and DEVICE are through.
 */
async function startBridged(binary: string, dir: string, name: string, device: string, props: string, options: PeerOptions = {}): Promise<{ peer: WirePeer; qemu: Qemu }> {
  const sock = join(dir, `${name}-gw.sock`);
  const qmpPath = join(dir, `${name}-qmp.sock`);
  const peer = await WirePeer.listen(sock, options);
  const id = /id=([^,]+)/.exec(device)?.[1] ?? '';
  let qemu: Qemu;
  try {
    qemu = await Qemu.start(
      binary,
      [
        '-machine', 'x-remote,vfio-user=off',
        '-nodefaults',
        '-display', 'none',
        '-qmp', `unix:${qmpPath},server=on,wait=off`,
        '-d', 'guest_errors',
        '-device', device,
        '-chardev', `socket,id=gw,path=${sock},reconnect-ms=200`,
        '-object', `pciem-bridge,id=br0,device=${id},chardev=gw${props !== '' ? `,${props}` : ''}`,
      ],
      qmpPath,
    );
  } catch (e) {
    await peer.close();
    throw e;
  }
  await peer.waitReady(1);
  return { peer, qemu };
}

/**
 * A suite's QEMU and peer: builds QEMU if needed (a build that fails fails
 * the suite with the reason), makes a work folder, then startBridged there.
 */
async function openBridged(name: string, device: string, props: string, options: PeerOptions = {}): Promise<{ peer: WirePeer; qemu: Qemu; dir: string }> {
  const binary = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const dir = mkdtempSync(join(tmpdir(), `pciem-bridge-${name}-`));
  try {
    return { dir, ...(await startBridged(binary, dir, name, device, props, options)) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** openBridged with ProtoPCIem, the card reset, enabled and its memory and bus mastering on. */
async function openCard(name: string, props: string, options: PeerOptions = {}): Promise<{ peer: WirePeer; qemu: Qemu; dir: string; card: Card }> {
  const o = await openBridged(name, 'protopciem,id=card0', props, options);
  const card = new Card(o.peer);
  card.set('CONTROL', Bits.CONTROL.RESET);
  card.set('CONTROL', Bits.CONTROL.ENABLE);
  await card.enable();
  return { ...o, card };
}

/** Stops what openBridged started (whatever of it there is) and removes its folder. */
async function closeBridged(b: { peer?: WirePeer; qemu?: Qemu; dir: string }): Promise<void> {
  await b.qemu?.stop();
  await b.peer?.close();
  if (b.dir !== '') rmSync(b.dir, { recursive: true, force: true });
}

/** After each test: the test did not take QEMU down. */
function expectRunning(qemu: Qemu): void {
  expect(qemu.running, `QEMU died:\n${qemu.stderr.slice(-3000)}`).to.equal(true);
}

async function qomCounter(qemu: Qemu, name: string): Promise<number> {
  return qemu.qmp.execute<number>('qom-get', { path: '/objects/br0', property: name });
}

async function screendump(qemu: Qemu, dir: string): Promise<Buffer> {
  const file = join(dir, 'screen.ppm');
  rmSync(file, { force: true });
  await qemu.qmp.execute('screendump', { filename: file, device: 'card0', format: 'ppm' });
  return readFileSync(file);
}

describe('pciem-bridge with direct-reads=off, read-ahead=8192, read-ahead-max=32768', function () {
  this.timeout(120_000);
  let workDir = '';
  let peer: WirePeer;
  let qemu: Qemu;
  let card: Card;

  before(async function () {
    ({ peer, qemu, dir: workDir, card } = await openCard('io', 'direct-reads=off,read-ahead=8192,read-ahead-max=32768'));
  });

  after(async function () {
    await closeBridged({ peer, qemu, dir: workDir });
  });

  afterEach(function () {
    expectRunning(qemu);
  });

  it('takes the properties (qom-get)', async function () {
    const get = (property: string): Promise<unknown> => qemu.qmp.execute('qom-get', { path: '/objects/br0', property });
    expect(await get('direct-reads')).to.equal(false);
    expect(await get('read-ahead')).to.equal(8192);
    expect(await get('read-ahead-max')).to.equal(32768);
  });

  it('refuses a read-ahead-max below read-ahead or above MAX_DMA', async function () {
    for (const [ra, max] of [
      [65536, 4096],
      [65536, Limits.MAX_DMA + 1],
    ]) {
      const e = await qemu.qmp
        .execute('object-add', { 'qom-type': 'pciem-bridge', id: 'br1', device: 'card0', chardev: 'gw', 'read-ahead': ra, 'read-ahead-max': max })
        .catch((x: unknown) => x);
      expect(String(e)).to.include('read-ahead-max must be');
    }
  });

  it('a frame through the I/O region: the read-ahead doubles up to read-ahead-max, byte-exact', async function () {
    const frame = testFrame();
    const at = hostAlloc(peer, Buffer.concat([frame, Buffer.alloc(64 * 1024)]));
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    // Version 3 on, with no bulk area: the read-aheads are DMA_READ_AHEADs.
    expect(peer.version).to.be.at.least(3);
    expect(messagesOf(peer.received.slice(from), 'DMA_READ')).to.have.length(0);
    const lens = messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD').map((m) => m.body.len);
    const K = 1024;
    expect(lens.slice(0, 5)).to.deep.equal([8 * K, 16 * K, 32 * K, 32 * K, 32 * K]);
    expect(lens.every((l) => l <= 32 * K)).to.equal(true);
    expect(lens.length).to.equal(3 + Math.ceil((Const.FB_SIZE - 56 * K) / (32 * K)));
    const shot = await screendump(qemu, workDir);
    expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), frame])), 'screendump').to.equal(true);
  });

  it('a mapping that ends mid-page, and a true fault, as with direct reads', async function () {
    const len = 20 * 1024 + 100;
    const src = hostAlloc(peer, pattern(len, 23));
    const dst = hostAlloc(peer, len);
    expectOk(await card.run(CardCmd.P2P_READ, { src: src.addr, dst: 0, len }));
    expectOk(await card.run(CardCmd.P2P_WRITE, { src: 0, dst: dst.addr, len }));
    expect(dst.buf.equals(src.buf)).to.equal(true);
    const o = await card.run(CardCmd.PROCESS_BUFFER, { src: 0x7000_0000_0000n, dst: dst.addr, len: 4096 });
    expect(o.error).to.equal('DMA_FAULT');
  });
});

describe('pciem-bridge at version 3: read-aheads as DMA_READ_AHEAD (with a test peer, the rings)', function () {
  this.timeout(120_000);
  let workDir = '';
  let peer: WirePeer;
  let qemu: Qemu;
  let card: Card;

  before(async function () {
    ({ peer, qemu, dir: workDir, card } = await openCard('v3', `timeout-ms=${DMA_TIMEOUT_MS}`, { version: 3, rings: true }));
  });

  after(async function () {
    await closeBridged({ peer, qemu, dir: workDir });
  });

  afterEach(function () {
    expectRunning(qemu);
  });

  it('a frame whose mapping ends with it: the last read-ahead comes back short, no refused read, byte-exact', async function () {
    expect(peer.version).to.equal(3);
    const frame = testFrame();
    const at = hostAlloc(peer, frame);
    const faults = peer.dmaFaults;
    const fills = await qomCounter(qemu, 'dma-fills');
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    expect(peer.dmaFaults - faults, 'DMA reads refused').to.equal(0);
    expect(messagesOf(peer.received.slice(from), 'DMA_READ'), 'exact DMA_READs').to.have.length(0);
    expect(messagesOf(peer.received.slice(from), 'ERROR'), 'ERRORs').to.have.length(0);
    const reads = messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD').map((m) => [Number(m.body.addr - at.addr), m.body.len]);
    const K = 1024;
    // The fourth asks 512 KiB and gets the 452 KiB the mapping still has.
    expect(reads, '[offset, len] of each DMA_READ_AHEAD').to.deep.equal([
      [0, 64 * K],
      [64 * K, 128 * K],
      [192 * K, 256 * K],
      [448 * K, 512 * K],
    ]);
    expect((await qomCounter(qemu, 'dma-fills')) - fills, 'qom-get dma-fills').to.equal(4);
    const shot = await screendump(qemu, workDir);
    expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), frame])), 'screendump').to.equal(true);
    // Again: the same four, still no refusal.
    const again = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    expect(messagesOf(peer.received.slice(again), 'DMA_READ_AHEAD')).to.have.length(4);
    expect(peer.dmaFaults - faults, 'DMA reads refused').to.equal(0);
  });

  it('a mapping that ends inside the read-ahead, mid-page: two read-aheads, the second short; every byte right', async function () {
    const len = 100 * 1024 + 100;
    const src = hostAlloc(peer, pattern(len, 17));
    const dst = hostAlloc(peer, len);
    const faults = peer.dmaFaults;
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.P2P_READ, { src: src.addr, dst: 0, len }));
    const K = 1024;
    const reads = messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD').map((m) => [Number(m.body.addr - src.addr), m.body.len]);
    expect(reads).to.deep.equal([
      [0, 64 * K],
      [64 * K, 128 * K],
    ]);
    expect(messagesOf(peer.received.slice(from), 'DMA_READ'), 'exact DMA_READs').to.have.length(0);
    expect(peer.dmaFaults - faults, 'DMA reads refused').to.equal(0);
    expectOk(await card.run(CardCmd.P2P_WRITE, { src: 0, dst: dst.addr, len }));
    expect(dst.buf.equals(src.buf), 'host -> BAR2 -> host').to.equal(true);
  });

  it('an unmapped address: one DMA_READ_AHEAD refused (FAULT), the card reports ERR_DMA_FAULT, QEMU carries on', async function () {
    const faults = peer.dmaFaults;
    const from = peer.received.length;
    const o = await card.run(CardCmd.DMA_FRAME, { src: 0x7000_0000_0000n, len: Const.FB_SIZE });
    expect(o.error).to.equal('DMA_FAULT');
    const aheads = messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD');
    expect(aheads[0]?.body).to.deep.equal({ addr: 0x7000_0000_0000n, len: 64 * 1024 });
    // No shorter retries at the refused address: its page fails at once.
    expect(messagesOf(peer.received.slice(from), 'DMA_READ').filter((m) => m.body.addr === 0x7000_0000_0000n)).to.have.length(0);
    expect(peer.dmaFaults - faults).to.equal(aheads.length + messagesOf(peer.received.slice(from), 'DMA_READ').length);
    expect(aheads.length, 'read-aheads for a refused frame').to.be.at.most(1 + Const.FB_SIZE / 4096);
    expectOk(await card.run(CardCmd.ADD, { data: 1 }));
  });

  it('a DMA_READ_AHEAD reply longer than len: ERROR STATE, the access fails, QEMU carries on', async function () {
    const at = hostAlloc(peer, pattern(4096, 9));
    const dst = hostAlloc(peer, 4096);
    const from = peer.received.length;
    peer.options.shortDmaReads = true;
    let o: Outcome;
    try {
      o = await card.run(CardCmd.PROCESS_BUFFER, { src: at.addr, dst: dst.addr, len: 4096 });
    } finally {
      delete peer.options.shortDmaReads;
    }
    expect(o.error).to.equal('DMA_FAULT');
    const reads = messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD');
    const err = messagesOf(peer.received.slice(from), 'ERROR')[0];
    expect(err?.error).to.equal('STATE');
    expect(err?.body.ref_id).to.equal(reads[0]?.id);
    expectOk(await card.run(CardCmd.PROCESS_BUFFER, { src: at.addr, dst: dst.addr, len: 4096 }));
    expect(dst.buf.equals(at.buf)).to.equal(true);
  });
});

describe('pciem-bridge with a stock QEMU model (e1000e): MSI-X, PCIe, an I/O BAR', function () {
  this.timeout(120_000);
  const MSIX_BAR = 3;
  const PBA = 0x2000;
  let workDir = '';
  let peer: WirePeer;
  let qemu: Qemu;

  before(async function () {
    ({ peer, qemu, dir: workDir } = await openBridged('nic', 'e1000e,id=nic0,romfile=', ''));
  });

  after(async function () {
    await closeBridged({ peer, qemu, dir: workDir });
  });

  afterEach(function () {
    expectRunning(qemu);
  });

  it('describes it from the model: MSI-X in BAR3, table and PBA left to the host', function () {
    const d = peer.device;
    expect(d).to.deep.include({
      name: 'e1000e',
      vendor_id: 0x8086,
      device_id: 0x10d3,
      msi_vectors: 1,
      msi_flags: MsiFlags.ADDR64,
      msix_vectors: 5,
      msix_bar: MSIX_BAR,
      msix_table_offset: 0,
      msix_pba_offset: PBA,
      caps: Caps.PM | Caps.PCIE,
    });
    expect(d?.bars).to.deep.equal([
      { index: 0, size: 0x20000n, flags: 0 },
      { index: 1, size: 0x20000n, flags: 0 },
      { index: 2, size: 0x20n, flags: BarFlags.IO },
      { index: 3, size: 0x4000n, flags: 0 },
    ]);
    const regions = [
      { bar: 0, offset: 0n, size: 0x20000n },
      { bar: 1, offset: 0n, size: 0x20000n },
      { bar: 2, offset: 0n, size: 0x20n },
      // The 5 x 16-byte table at 0 and the 8-byte PBA at 0x2000 are cut out.
      { bar: 3, offset: 0x50n, size: BigInt(PBA - 0x50) },
      { bar: 3, offset: BigInt(PBA + 8), size: BigInt(0x4000 - PBA - 8) },
    ];
    expect(d?.traced).to.deep.equal(regions);
    expect(d?.read_via_model).to.deep.equal(regions);
  });

  it('refuses MMIO to the MSI-X table and PBA, serves the rest of the BARs', async function () {
    for (const offset of [0, 0x40, PBA]) {
      const e = await peer.request('MMIO_READ', { bar: MSIX_BAR, offset: BigInt(offset), size: 4 }).catch((x: unknown) => x);
      expect((e as WireReplyError).error, `BAR3 0x${offset.toString(16)}`).to.equal('NO_DEVICE');
    }
    // STATUS (0x8) in BAR0: link up, full duplex at least.
    expect(Number(await peer.mmioRead(0, 0x8, 4)) & 0x3).to.not.equal(0);
  });

  it('an MSI-X vector the model raises arrives as MSI {MSIX, n}: the bridge unmasked its table', async function () {
    const E1000_ICS = 0xc8;
    const E1000_IMS = 0xd0;
    const E1000_IVAR = 0xe4;
    const ICR_OTHER = 0x0100_0000;
    const ICR_LSC = 0x4;
    let ptr = (await peer.configRead(0x34, 1)) & 0xfc;
    while (ptr !== 0 && (await peer.configRead(ptr, 1)) !== 0x11) ptr = (await peer.configRead(ptr + 1, 1)) & 0xfc;
    expect(ptr, 'MSI-X capability').to.not.equal(0);
    await peer.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    await peer.configWrite(ptr + 2, 2, 0x8000);
    // "Other" causes on vector 3 (valid bit 0x8), then raise one.
    peer.mmioWrite(0, E1000_IVAR, 4, (0x8 | 3) << 16);
    peer.mmioWrite(0, E1000_IMS, 4, ICR_OTHER | ICR_LSC);
    const from = peer.received.length;
    peer.mmioWrite(0, E1000_ICS, 4, ICR_OTHER | ICR_LSC);
    const m = await peer.waitFor((x) => x.cmd === 'MSI' && !x.reply, from);
    expect(m.body).to.deep.equal({ kind: IrqKind.MSIX, vector: 3 });
  });
});

describe('pciem-bridge at version 4: DMA reads through the bulk area (with a test peer, the rings)', function () {
  this.timeout(120_000);
  let workDir = '';
  let peer: WirePeer;
  let qemu: Qemu;
  let card: Card;
  const K = 1024;

  /**
   * Each fill lands in the area (mapped over the bridge's read window) at
   * its address's offset modulo 64 KiB, wholly inside the area, each after
   * the one before it until the end comes near (fills take turns).
   */
  function expectTurns(fills: { body: { addr: bigint; len: number; offset: number } }[]): void {
    let last = -1;
    for (const f of fills) {
      expect(f.body.offset % (64 * K), 'offset modulo 64 KiB').to.equal(Number(f.body.addr % BigInt(64 * K)));
      expect(f.body.offset + f.body.len).to.be.at.most(4096 * K);
      if (f.body.offset < last) expect(f.body.offset, 'back at the start').to.be.below(64 * K);
      else expect(f.body.offset).to.be.greaterThan(last);
      last = f.body.offset;
    }
  }

  before(async function () {
    ({ peer, qemu, dir: workDir, card } = await openCard('v4', `timeout-ms=${DMA_TIMEOUT_MS}`, { version: 4, rings: true, bulk: 4096 * K }));
  });

  after(async function () {
    await closeBridged({ peer, qemu, dir: workDir });
  });

  afterEach(function () {
    expectRunning(qemu);
  });

  it('BULK is answered; a frame comes in DMA_READ_BULK read-aheads, each at its turn in the area, none of its bytes on the socket, byte-exact', async function () {
    expect(peer.version).to.equal(4);
    expect(peer.bulkReply?.error).to.equal('NONE');
    const frame = testFrame();
    const at = hostAlloc(peer, frame);
    const fills = await qomCounter(qemu, 'bulk-fills');
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    const got = peer.received.slice(from);
    expect(messagesOf(got, 'DMA_READ'), 'DMA_READs').to.have.length(0);
    expect(messagesOf(got, 'DMA_READ_AHEAD'), 'DMA_READ_AHEADs').to.have.length(0);
    const bulk = messagesOf(got, 'DMA_READ_BULK');
    const reads = bulk.map((m) => [Number(m.body.addr - at.addr), m.body.len, m.body.ahead]);
    // The read-ahead grows as before; the fourth gets the 452 KiB the mapping still has.
    expect(reads, '[addr - frame, len, ahead] of each DMA_READ_BULK').to.deep.equal([
      [0, 64 * K, true],
      [64 * K, 128 * K, true],
      [192 * K, 256 * K, true],
      [448 * K, 512 * K, true],
    ]);
    expectTurns(bulk);
    expect((await qomCounter(qemu, 'bulk-fills')) - fills, 'qom-get bulk-fills').to.equal(4);
    const shot = await screendump(qemu, workDir);
    expect(shot.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), frame])), 'screendump').to.equal(true);

    // The next frame's run starts at the length of the last run: one fill.
    const next = testFrame().reverse();
    const at2 = hostAlloc(peer, next);
    const again = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at2.addr, len: Const.FB_SIZE }));
    const one = messagesOf(peer.received.slice(again), 'DMA_READ_BULK');
    expect(one.map((m) => [m.body.addr - at2.addr, m.body.len])).to.deep.equal([[0n, Const.FB_SIZE]]);
    expectTurns([...bulk, ...one]);
    const shot2 = await screendump(qemu, workDir);
    expect(shot2.equals(Buffer.concat([Buffer.from(ppmHeader, 'latin1'), next])), 'screendump of the next frame').to.equal(true);
  });

  it('a short read after the frames asks the remembered length, gets the mapping, and is right', async function () {
    const len = 3000;
    const src = hostAlloc(peer, pattern(len, 41));
    const dst = hostAlloc(peer, len);
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.P2P_READ, { src: src.addr, dst: 0, len }));
    expect(messagesOf(peer.received.slice(from), 'DMA_READ_BULK').map((m) => m.body.len)).to.deep.equal([Const.FB_SIZE]);
    expectOk(await card.run(CardCmd.P2P_WRITE, { src: 0, dst: dst.addr, len }));
    expect(dst.buf.equals(src.buf), 'host -> BAR2 -> host').to.equal(true);
  });

  it('an unmapped address: the DMA_READ_BULK is refused (FAULT), the card reports DMA_FAULT, QEMU carries on', async function () {
    const from = peer.received.length;
    const o = await card.run(CardCmd.DMA_FRAME, { src: 0x7000_0000_0000n, len: Const.FB_SIZE });
    expect(o.error).to.equal('DMA_FAULT');
    // The remembered run halves with each shorter one: the frames, then the 3000-byte read.
    const first = messagesOf(peer.received.slice(from), 'DMA_READ_BULK')[0];
    expect(first?.body).to.deep.include({ addr: 0x7000_0000_0000n, len: Const.FB_SIZE / 2, ahead: true });
    expectTurns(first ? [first] : []);
    expectOk(await card.run(CardCmd.ADD, { data: 5 }));
  });
});

describe('pciem-bridge at version 4 with a broken gateway: a bad BULK or DMA_READ_BULK reply never stops QEMU', function () {
  this.timeout(120_000);
  let b: { peer?: WirePeer; qemu?: Qemu; dir: string } = { dir: '' };

  afterEach(async function () {
    if (b.qemu) expectRunning(b.qemu);
    await closeBridged(b);
    b = { dir: '' };
  });

  async function open(name: string, options: PeerOptions): Promise<{ peer: WirePeer; qemu: Qemu; card: Card }> {
    const o = await openCard(name, `timeout-ms=${DMA_TIMEOUT_MS}`, { version: 4, rings: true, bulk: 1024 * 1024, ...options });
    b = o;
    return o;
  }

  async function frameThroughSocket(peer: WirePeer, card: Card): Promise<void> {
    const frame = testFrame();
    const at = hostAlloc(peer, frame);
    const from = peer.received.length;
    expectOk(await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE }));
    expect(messagesOf(peer.received.slice(from), 'DMA_READ_BULK')).to.have.length(0);
    expect(messagesOf(peer.received.slice(from), 'DMA_READ_AHEAD').length).to.be.at.least(1);
  }

  it('BULK with no descriptor: refused (INVALID, the count named), DMA reads stay on the socket', async function () {
    const { peer, qemu, card } = await open('bulk-nofd', { bulkNoFd: true });
    expect(peer.bulkReply?.error).to.equal('INVALID');
    expect((peer.bulkReply?.body as { message: string }).message).to.equal('BULK: 0 file descriptors, want 1');
    await frameThroughSocket(peer, card);
    expect(await qomCounter(qemu, 'bulk-fills')).to.equal(0);
  });

  it('a memfd smaller than BULK says, or one not sealed against shrinking: refused (INVALID), DMA reads stay on the socket', async function () {
    let { peer, card } = await open('bulk-small', { bulkFileBytes: 4096 });
    expect(peer.bulkReply?.error).to.equal('INVALID');
    expect((peer.bulkReply?.body as { message: string }).message).to.equal('BULK: the memory file holds less than the 0x100000 bytes it should');
    await frameThroughSocket(peer, card);
    await closeBridged(b);
    ({ peer, card } = await open('bulk-unsealed', { unsealed: true, rings: false }));
    expect(peer.bulkReply?.error).to.equal('INVALID');
    expect((peer.bulkReply?.body as { message: string }).message).to.equal('BULK: the memory file is not sealed against shrinking (F_SEAL_SHRINK)');
    await frameThroughSocket(peer, card);
  });

  it('a DMA_READ_BULK reply that claims more than was asked: the read fails, the card reports it, the next command works', async function () {
    const { peer, card } = await open('bulk-long', { longBulkReplies: true });
    expect(peer.bulkReply?.error).to.equal('NONE');
    const at = hostAlloc(peer, testFrame());
    const o = await card.run(CardCmd.DMA_FRAME, { src: at.addr, len: Const.FB_SIZE });
    expect(o.error).to.equal('DMA_FAULT');
    expect(o.status & ERROR, 'STATUS.ERROR').to.equal(ERROR);
    expect(messagesOf(peer.received, 'DMA_READ_BULK').length).to.be.at.least(1);
    expectOk(await card.run(CardCmd.ADD, { data: 9 }));
  });
});
