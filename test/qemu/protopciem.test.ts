// The ProtoPCIem model for real, with no kernel: our QEMU runs the card on
// -machine microvm,pcie=on under qtest, and this file plays the host
// driver. It places the BARs through ECAM, writes registers, puts buffers in
// guest RAM, and checks what the card did: registers, memory it wrote, the
// MSI messages it sent, the INTx line, and (through QMP screendump and
// VNC) the pixels on its display, against an independent reference
// rasteriser written here from docs/protopciem.md.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BAR,
  Bits,
  Cmd,
  CmdbufEntry,
  CmdbufHeader,
  Const,
  ERR_NAMES,
  Err,
  type ErrName,
  PCI,
  REGISTERS,
  Reg,
  type RegName,
  SPEC_VERSION_VALUE,
} from '../../proto/generated/protopciem.js';
import { entry } from '../lib/cmdbuf.js';
import { xorshift32 } from '../lib/fuzz.js';
import { repoRoot } from '../lib/paths.js';
import { Qmp } from '../../gateway/src/qmp.js';
import { QTest } from '../lib/qtest.js';

// ---- the machine: microvm with its PCIe host (hw/i386/microvm.h) ----------

const ECAM = 0xe000_0000;
const MMIO_BASE = 0xc000_0000;
const RAM_MIB = 256;
/** Where the tests put host buffers (guest RAM). */
const HEAP = 0x0100_0000;
/** Where MSI messages are pointed: plain RAM, so the test can see them. */
const MSI_ADDR = 0x00f0_0000;
/** Nothing is mapped here (between RAM and the PCIe window). */
const UNMAPPED = 0x8000_0000;

const W = Const.FB_WIDTH;
const H = Const.FB_HEIGHT;
const { DONE, ERROR, BUSY, QUEUE_FULL } = Bits.STATUS;

let qemuBinary = '';
let workDir = '';
let biosFile = '';

interface CardSpec {
  id: string;
  slot: number;
  props?: string;
}

interface Args {
  data?: number;
  src?: bigint | number;
  dst?: bigint | number;
  len?: number;
  flags?: number;
}

interface Outcome {
  status: number;
  result: bigint;
  fence: number;
  fenceDone: number;
  error: ErrName | undefined;
  errorFence: number;
  errorInfo: number;
}

class Machine {
  readonly cards = new Map<string, Card>();
  private heapNext = HEAP;

  private constructor(
    readonly name: string,
    readonly qt: QTest,
    readonly qmp: Qmp,
  ) {}

  static async start(name: string, cards: readonly CardSpec[], extra: readonly string[] = []): Promise<Machine> {
    const qmpPath = join(workDir, `${name}.qmp`);
    rmSync(qmpPath, { force: true });
    const args = [
      '-nodefaults',
      '-display', 'none',
      '-machine', 'microvm,pcie=on',
      '-m', `${RAM_MIB}M`,
      '-bios', biosFile,
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      '-d', 'guest_errors',
      '-trace', 'protopciem_msi',
      ...cards.flatMap((c) => ['-device', `protopciem,id=${c.id},addr=${c.slot}.0${c.props !== undefined ? `,${c.props}` : ''}`]),
      ...extra,
    ];
    const qt = QTest.start(qemuBinary, args);
    let qmp: Qmp;
    try {
      qmp = await Promise.race([
        Qmp.connect({ path: qmpPath }, { timeoutMs: 20_000 }),
        qt.exited.then((code) => {
          throw new Error(`QEMU exited with ${String(code)} at startup:\n${qt.stderr}`);
        }),
      ]);
    } catch (e) {
      await qt.close();
      throw e;
    }
    const m = new Machine(name, qt, qmp);
    for (const [i, c] of cards.entries()) {
      const card = new Card(m, c.id, c.slot, MMIO_BASE + i * 0x20_0000, MMIO_BASE + i * 0x20_0000 + 0x10_0000);
      await card.setup();
      m.cards.set(c.id, card);
    }
    return m;
  }

  card(id: string): Card {
    const c = this.cards.get(id);
    if (c === undefined) throw new Error(`no card ${id}`);
    return c;
  }

  /** A fresh host buffer in guest RAM, 4 KiB aligned. */
  alloc(size: number): number {
    const at = this.heapNext;
    this.heapNext += Math.ceil(size / 4096) * 4096;
    if (this.heapNext > RAM_MIB << 20) throw new Error('test heap exhausted');
    return at;
  }

  /** Puts `data` in a fresh host buffer and returns its address. */
  async put(data: Uint8Array): Promise<number> {
    const at = this.alloc(data.length);
    await this.qt.write(at, data);
    return at;
  }

  resetHeap(): void {
    this.heapNext = HEAP;
  }

  /** Waits until QEMU's stderr contains `text` (logs arrive on their own pipe). */
  async logged(text: string, since = 0): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!this.qt.stderr.slice(since).includes(text)) {
      if (Date.now() > deadline) throw new Error(`QEMU did not log '${text}'; its log since:\n${this.qt.stderr.slice(since).slice(-3000)}`);
      await sleep(20);
    }
  }

  count(text: string): number {
    return this.qt.stderr.split(text).length - 1;
  }

  async close(): Promise<void> {
    this.qmp.close();
    await this.qt.close();
  }
}

class Card {
  constructor(
    readonly m: Machine,
    readonly id: string,
    readonly slot: number,
    readonly bar0: number,
    readonly bar2: number,
  ) {}

  cfg(offset: number): number {
    return ECAM + (this.slot << 15) + offset;
  }

  /** What a host's PCI core does: place both 64-bit BARs, enable memory and bus mastering. */
  async setup(): Promise<void> {
    const qt = this.m.qt;
    await qt.writel(this.cfg(0x10), this.bar0);
    await qt.writel(this.cfg(0x14), 0);
    await qt.writel(this.cfg(0x18), this.bar2);
    await qt.writel(this.cfg(0x1c), 0);
    await this.command(0x0006);
  }

  async command(bits: number): Promise<void> {
    await this.m.qt.writew(this.cfg(0x04), bits);
  }

  /** Offset of the MSI capability in config space. */
  async msiCap(): Promise<number> {
    let ptr = (await this.m.qt.readb(this.cfg(0x34))) & 0xfc;
    while (ptr !== 0) {
      const id = await this.m.qt.readb(this.cfg(ptr));
      if (id === 0x05) return ptr;
      ptr = (await this.m.qt.readb(this.cfg(ptr + 1))) & 0xfc;
    }
    return 0;
  }

  reg(name: RegName): Promise<number> {
    return this.m.qt.readl(this.bar0 + Reg[name]);
  }

  set(name: RegName, value: number): Promise<void> {
    return this.m.qt.writel(this.bar0 + Reg[name], value);
  }

  /** The register writes of one submission, as qtest commands. */
  submitCommands(cmd: number, a: Args = {}): string[] {
    const w = (name: RegName, v: number): string => `writel 0x${(this.bar0 + Reg[name]).toString(16)} 0x${(v >>> 0).toString(16)}`;
    const src = BigInt(a.src ?? 0);
    const dst = BigInt(a.dst ?? 0);
    return [
      w('DATA', a.data ?? 0),
      w('DMA_SRC_LO', Number(src & 0xffff_ffffn)),
      w('DMA_SRC_HI', Number(src >> 32n)),
      w('DMA_DST_LO', Number(dst & 0xffff_ffffn)),
      w('DMA_DST_HI', Number(dst >> 32n)),
      w('DMA_LEN', a.len ?? 0),
      w('DMA_FLAGS', a.flags ?? 0),
      w('CMD', cmd),
    ];
  }

  /** Submits one command; returns the fence it got. */
  async submit(cmd: number, a: Args = {}): Promise<number> {
    const fence = await this.reg('FENCE_NEXT');
    await this.m.qt.batch(this.submitCommands(cmd, a));
    return fence;
  }

  async waitIdle(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.reg('STATUS');
      if ((status & BUSY) === 0) return status;
      if (Date.now() > deadline) throw new Error(`card ${this.id} still busy after ${timeoutMs} ms`);
      await sleep(1);
    }
  }

  /** Clears STATUS and the error registers, runs one command to completion. */
  async run(cmd: number, a: Args = {}): Promise<Outcome> {
    await this.set('STATUS', 0);
    await this.set('ERROR_CODE', 0);
    const fence = await this.submit(cmd, a);
    const status = await this.waitIdle();
    const lo = await this.reg('RESULT_LO');
    const hi = await this.reg('RESULT_HI');
    return {
      status,
      result: (BigInt(hi) << 32n) | BigInt(lo),
      fence,
      fenceDone: await this.reg('FENCE_DONE'),
      error: ERR_NAMES[await this.reg('ERROR_CODE')],
      errorFence: await this.reg('ERROR_FENCE'),
      errorInfo: await this.reg('ERROR_INFO'),
    };
  }

  async reset(): Promise<void> {
    await this.set('CONTROL', Bits.CONTROL.RESET);
    await this.set('CONTROL', Bits.CONTROL.ENABLE);
  }

  /** The card's display, as QMP screendump saves it (binary PPM). */
  async screendump(): Promise<Buffer> {
    const file = join(workDir, `${this.m.name}-${this.id}.ppm`);
    rmSync(file, { force: true });
    await this.m.qmp.execute('screendump', { filename: file, device: this.id, format: 'ppm' });
    return readFileSync(file);
  }

  async screen(): Promise<Buffer> {
    return parsePpm(await this.screendump());
  }

  /** Runs a command buffer. */
  async draw(...entries: Uint8Array[]): Promise<Outcome> {
    const buf = Buffer.concat(entries);
    const at = await this.m.put(buf);
    return this.run(Cmd.EXECUTE_CMDBUF, { src: at, len: buf.length });
  }
}

function parsePpm(file: Buffer): Buffer {
  const header = `P6\n${W} ${H}\n255\n`;
  expect(file.subarray(0, header.length).toString('latin1'), 'PPM header').to.equal(header);
  expect(file.length, 'PPM size').to.equal(header.length + Const.FB_SIZE);
  return file.subarray(header.length);
}

function expectOk(o: Outcome): void {
  expect(o.error, 'ERROR_CODE').to.equal('NONE');
  expect(o.status & (DONE | ERROR), 'STATUS').to.equal(DONE);
  expect(o.fenceDone, 'FENCE_DONE').to.equal(o.fence);
}

function expectError(o: Outcome, error: ErrName): void {
  expect(o.error, 'ERROR_CODE').to.equal(error);
  expect(o.status & (DONE | ERROR), 'STATUS').to.equal(DONE | ERROR);
  expect(o.errorFence, 'ERROR_FENCE').to.equal(o.fence);
  expect(o.fenceDone, 'FENCE_DONE').to.equal(o.fence);
}

/** QEMU is still there and the card still computes. */
async function expectAlive(card: Card): Promise<void> {
  expect(card.m.qt.running, 'QEMU is running').to.equal(true);
  const o = await card.run(Cmd.ADD, { data: 21 });
  expectOk(o);
  expect(o.result).to.equal(42n);
}

// ---- command buffers, encoded from the generated layout -------------------------

type Rgb = readonly [number, number, number];

const nop = (pad = 0): Buffer => entry('NOP', {}, undefined, pad);
const clear = ([R, G, B]: Rgb): Buffer => entry('CLEAR', { R, G, B, A: 0xff });
const line = (X0: number, Y0: number, X1: number, Y1: number, [R, G, B]: Rgb): Buffer =>
  entry('DRAW_LINE', { X0, Y0, X1, Y1, R, G, B, A: 0xff });
const blit = (X: number, Y: number, WIDTH: number, HEIGHT: number, pixels: Uint8Array, pad = 0): Buffer =>
  entry('BLIT_RECT', { X, Y, WIDTH, HEIGHT }, pixels, pad);

/** A header with any opcode and LENGTH, and `body` bytes after it. */
function rawEntry(opcode: number, length: number, body = 0): Buffer {
  const b = Buffer.alloc(CmdbufHeader.size + body);
  b.writeUInt16LE(opcode, CmdbufHeader.fields.OPCODE.offset);
  b.writeUInt32LE(length, CmdbufHeader.fields.LENGTH.offset);
  return b;
}

// ---- the reference rasteriser: docs/protopciem.md, "Command buffers" ------------

class Frame {
  readonly px = new Uint8Array(Const.FB_SIZE);

  clear([r, g, b]: Rgb): this {
    for (let i = 0; i < this.px.length; i += 3) {
      this.px[i] = r;
      this.px[i + 1] = g;
      this.px[i + 2] = b;
    }
    return this;
  }

  set(x: number, y: number, [r, g, b]: Rgb): void {
    const i = (y * W + x) * 3;
    this.px[i] = r;
    this.px[i + 1] = g;
    this.px[i + 2] = b;
  }

  /** The spec's closed form: the minor coordinate rounded half up from (x0, y0). */
  line(x0: number, y0: number, x1: number, y1: number, rgb: Rgb): this {
    const dx = x1 - x0;
    const dy = y1 - y0;
    const sx = dx < 0 ? -1 : 1;
    const sy = dy < 0 ? -1 : 1;
    const adx = Math.abs(dx);
    const ady = Math.abs(dy);
    if (adx >= ady) {
      for (let i = 0; i <= adx; i++) {
        const j = adx === 0 ? 0 : Math.floor((2 * i * ady + adx) / (2 * adx));
        this.set(x0 + i * sx, y0 + j * sy, rgb);
      }
    } else {
      for (let i = 0; i <= ady; i++) {
        const j = Math.floor((2 * i * adx + ady) / (2 * ady));
        this.set(x0 + j * sx, y0 + i * sy, rgb);
      }
    }
    return this;
  }

  blit(x: number, y: number, w: number, h: number, pixels: Uint8Array): this {
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        const s = (j * w + i) * 3;
        this.set(x + i, y + j, [pixels[s] ?? 0, pixels[s + 1] ?? 0, pixels[s + 2] ?? 0]);
      }
    }
    return this;
  }

  copy(): Frame {
    const f = new Frame();
    f.px.set(this.px);
    return f;
  }
}

/** Compares pixel by pixel; fails naming the first differing pixels. */
function expectPixels(actual: Uint8Array, expected: Frame, what: string): void {
  expect(actual.length, `${what}: size`).to.equal(expected.px.length);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < actual.length; i += 3) {
    if (actual[i] !== expected.px[i] || actual[i + 1] !== expected.px[i + 1] || actual[i + 2] !== expected.px[i + 2]) {
      count++;
      if (bad.length < 5) {
        const p = i / 3;
        bad.push(`(${p % W},${Math.floor(p / W)}) is ${actual.subarray(i, i + 3).join(',')}, want ${expected.px.subarray(i, i + 3).join(',')}`);
      }
    }
  }
  expect(count, `${what}: ${count} pixels differ: ${bad.join('; ')}`).to.equal(0);
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32: reproducible and not periodic at any small stride.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function testFrame(): Buffer {
  const f = Buffer.alloc(Const.FB_SIZE);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      f[i] = x & 0xff;
      f[i + 1] = y & 0xff;
      f[i + 2] = (x ^ y) & 0xff;
    }
  }
  return f;
}

// ---- the tests --------------------------------------------------------------

describe('ProtoPCIem model (qtest, no kernel)', function () {
  this.timeout(180_000);

  before(function () {
    qemuBinary = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    workDir = mkdtempSync(join(tmpdir(), 'pciem-protopciem-'));
    // microvm wants firmware; none runs under qtest, so 64 KiB of zeros do.
    biosFile = join(workDir, 'bios.bin');
    writeFileSync(biosFile, Buffer.alloc(64 * 1024));
  });

  after(function () {
    if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
  });

  describe('one machine, two cards', function () {
    let m: Machine;
    let card: Card;
    let peer: Card;

    before(async function () {
      m = await Machine.start('main', [
        { id: 'card', slot: 2 },
        { id: 'peer', slot: 3 },
      ]);
      card = m.card('card');
      peer = m.card('peer');
    });

    after(async function () {
      await m?.close();
    });

    beforeEach(async function () {
      m.resetHeap();
      await card.reset();
      await card.command(0x0006);
    });

    afterEach(function () {
      expect(m.qt.running, `QEMU died:\n${m.qt.stderr.slice(-2000)}`).to.equal(true);
    });

    describe('identity and registers', function () {
      it('has upstream ProtoPCIem\'s identity in config space', async function () {
        const qt = m.qt;
        expect(await qt.readl(card.cfg(0x00))).to.equal(((PCI.deviceId << 16) | PCI.vendorId) >>> 0);
        const classRev = await qt.readl(card.cfg(0x08));
        expect(classRev >>> 8, 'class, subclass, prog-if').to.equal((PCI.classCode << 16) | (PCI.subclass << 8) | PCI.progIf);
        expect(classRev & 0xff, 'revision').to.equal(PCI.revision);
        expect(await qt.readb(card.cfg(0x3d)), 'interrupt pin').to.equal(PCI.interruptPin);
      });

      it('has a 64 KiB BAR0 and a 1 MiB prefetchable BAR2, both 64-bit', async function () {
        const qt = m.qt;
        for (const bar of [BAR.REGS, BAR.MEM]) {
          const off = 0x10 + bar.index * 4;
          const saved = await qt.readl(card.cfg(off));
          await card.command(0);
          await qt.writel(card.cfg(off), 0xffff_ffff);
          const probed = await qt.readl(card.cfg(off));
          await qt.writel(card.cfg(off), saved);
          expect(probed & 0x7, `BAR${bar.index} type`).to.equal(0x4);
          expect((probed & 0x8) !== 0, `BAR${bar.index} prefetchable`).to.equal(bar.prefetchable);
          expect((~(probed & ~0xf) + 1) >>> 0, `BAR${bar.index} size`).to.equal(bar.size);
        }
        await card.command(0x0006);
        expect(await card.reg('ID')).to.equal(0x1f0c0001);
      });

      it('advertises one MSI vector, 64-bit, with per-vector masking', async function () {
        const cap = await card.msiCap();
        expect(cap, 'MSI capability').to.not.equal(0);
        const control = await m.qt.readw(card.cfg(cap + 2));
        expect(control & 0x80, '64-bit').to.equal(0x80);
        expect(control & 0x100, 'per-vector masking').to.equal(0x100);
        expect((control >> 1) & 0x7, 'multiple message capable').to.equal(Math.log2(PCI.msiVectors));
      });

      it('reads every register\'s reset value after a reset', async function () {
        await card.set('DATA', 0x1234);
        await card.set('DMA_LEN', 99);
        await card.set('FENCE_NEXT', 77);
        await card.run(Cmd.ADD, { data: 3 });
        await card.reset();
        for (const r of REGISTERS) {
          const want = r.name === 'CONTROL' ? Bits.CONTROL.ENABLE : r.reset;
          expect(await card.reg(r.name), r.name).to.equal(want);
        }
        expect(await card.reg('VERSION')).to.equal(SPEC_VERSION_VALUE);
      });

      it('keeps what is written to the read/write registers, 32 or 64 bits at a time', async function () {
        const values: [RegName, number][] = [
          ['DATA', 0xdeadbeef], ['DMA_SRC_LO', 0x89abcdef], ['DMA_SRC_HI', 0x01234567], ['DMA_DST_LO', 0xfedcba98],
          ['DMA_DST_HI', 0x76543210], ['DMA_LEN', 0x1000], ['DMA_FLAGS', 0x5], ['FENCE_NEXT', 0xfffffffe],
        ];
        for (const [name, v] of values) await card.set(name, v);
        for (const [name, v] of values) expect(await card.reg(name), name).to.equal(v);
        await m.qt.writeq(card.bar0 + Reg.DMA_SRC_LO, 0x1122334455667788n);
        expect(await card.reg('DMA_SRC_LO')).to.equal(0x55667788);
        expect(await card.reg('DMA_SRC_HI')).to.equal(0x11223344);
        expect(await m.qt.readq(card.bar0 + Reg.DMA_SRC_LO)).to.equal(0x1122334455667788n);
      });

      it('ignores writes to read-only registers and logs them as guest errors', async function () {
        const since = m.qt.stderr.length;
        for (const r of REGISTERS.filter((x) => x.access === 'RO')) {
          const before = await card.reg(r.name);
          await card.set(r.name, ~before >>> 0);
          expect(await card.reg(r.name), r.name).to.equal(before);
        }
        await m.logged(`protopciem: write of 0xe0f3fffe to read-only register 0x${Reg.ID.toString(16)}`, since);
      });

      it('reads 0 at undefined offsets, ignores writes there and logs both', async function () {
        const since = m.qt.stderr.length;
        for (const off of [0x18, 0x1c, 0x38, 0xffc, 0x102c, 0x103c, 0xfffc]) {
          await m.qt.writel(card.bar0 + off, 0xffffffff);
          expect(await m.qt.readl(card.bar0 + off), `0x${off.toString(16)}`).to.equal(0);
        }
        await m.logged('protopciem: write of 0xffffffff to undefined register 0x18', since);
        await m.logged('protopciem: read of undefined register 0xfffc', since);
      });

      it('CONTROL: ENABLE is stored, RESET reads 0 and resets the card and its display', async function () {
        await card.set('CONTROL', Bits.CONTROL.ENABLE);
        expect(await card.reg('CONTROL')).to.equal(Bits.CONTROL.ENABLE);
        expectOk(await card.draw(clear([200, 100, 50])));
        await card.set('DATA', 5);
        await card.set('CONTROL', Bits.CONTROL.RESET);
        expect(await card.reg('CONTROL')).to.equal(0);
        expect(await card.reg('DATA')).to.equal(0);
        expect(await card.reg('FENCE_NEXT')).to.equal(1);
        expectPixels(await card.screen(), new Frame(), 'after reset');
      });

      it('STATUS: writing 0 clears DONE and ERROR, writing 1 sets nothing', async function () {
        await card.run(Cmd.ADD, { data: 1 });
        expect(await card.reg('STATUS')).to.equal(DONE);
        await card.set('STATUS', 0xffffffff);
        expect(await card.reg('STATUS'), 'after writing ones').to.equal(DONE);
        await card.set('STATUS', ~DONE >>> 0);
        expect(await card.reg('STATUS'), 'after writing 0 to DONE').to.equal(0);
        await card.run(0x77, {});
        expect(await card.reg('STATUS')).to.equal(DONE | ERROR);
        await card.set('STATUS', 0);
        expect(await card.reg('STATUS')).to.equal(0);
      });
    });

    describe('commands', function () {
      it('ADD, MULTIPLY and XOR compute what upstream\'s card computes, in 64 bits', async function () {
        const cases: [number, number, bigint][] = [
          [Cmd.ADD, 7, 14n], [Cmd.ADD, 0xffffffff, 0x1fffffffen],
          [Cmd.MULTIPLY, 12, 144n], [Cmd.MULTIPLY, 0xffffffff, 0xfffffffe00000001n],
          [Cmd.XOR, 0, 0xffffffffn], [Cmd.XOR, 0x12345678, 0xedcba987n],
        ];
        for (const [cmd, data, want] of cases) {
          const o = await card.run(cmd, { data });
          expectOk(o);
          expect(o.result, `cmd ${cmd} data 0x${data.toString(16)}`).to.equal(want);
        }
      });

      it('numbers commands with fences and reports the last one done', async function () {
        const a = await card.run(Cmd.ADD, { data: 1 });
        const b = await card.run(Cmd.ADD, { data: 2 });
        expect(b.fence).to.equal(a.fence + 1);
        expect(b.fenceDone).to.equal(b.fence);
        await card.set('FENCE_NEXT', 0xffffffff);
        const c = await card.run(Cmd.ADD, { data: 3 });
        expect(c.fence).to.equal(0xffffffff);
        expect(await card.reg('FENCE_NEXT'), 'wraps').to.equal(0);
      });

      it('treats a CMD write of 0 as nothing (upstream\'s acknowledge)', async function () {
        const next = await card.reg('FENCE_NEXT');
        await card.set('CMD', 0);
        await sleep(20);
        expect(await card.reg('FENCE_NEXT')).to.equal(next);
        expect(await card.reg('STATUS')).to.equal(0);
        expect(await card.reg('CMD')).to.equal(0);
      });

      it('PROCESS_BUFFER XORs every word with DATA into DMA_DST and sums the words', async function () {
        const input = pattern(4096, 7);
        const src = await m.put(input);
        const dst = m.alloc(input.length);
        const key = 0xa5c3e1f0;
        const o = await card.run(Cmd.PROCESS_BUFFER, { data: key, src, dst, len: input.length });
        expectOk(o);
        let sum = 0n;
        const want = Buffer.alloc(input.length);
        for (let i = 0; i < input.length; i += 4) {
          const w = input.readUInt32LE(i);
          sum += BigInt(w);
          want.writeUInt32LE((w ^ key) >>> 0, i);
        }
        expect(o.result).to.equal(sum);
        expect((await m.qt.read(dst, input.length)).equals(want), 'output buffer').to.equal(true);
        expect((await m.qt.read(src, input.length)).equals(input), 'input untouched').to.equal(true);
      });

      it('PROCESS_BUFFER works in place, up to PROCESS_MAX bytes', async function () {
        const input = pattern(Const.PROCESS_MAX, 11);
        const at = await m.put(input);
        const o = await card.run(Cmd.PROCESS_BUFFER, { data: 0xffffffff, src: at, dst: at, len: input.length });
        expectOk(o);
        const out = await m.qt.read(at, input.length);
        for (let i = 0; i < input.length; i += 4) {
          if (out.readUInt32LE(i) !== (~input.readUInt32LE(i) >>> 0)) expect.fail(`word at ${i} not inverted`);
        }
      });

      it('DMA_FRAME shows a frame: the screendump matches it byte for byte', async function () {
        const frame = testFrame();
        const at = await m.put(frame);
        const o = await card.run(Cmd.DMA_FRAME, { src: at, len: Const.FB_SIZE });
        expectOk(o);
        expect(o.result).to.equal(0n);
        const ppm = await card.screendump();
        expect(ppm.equals(Buffer.concat([Buffer.from(`P6\n${W} ${H}\n255\n`, 'latin1'), frame])), 'screendump').to.equal(true);
      });

      it('DMA_FRAME takes the second half of a double buffer as upstream\'s driver submits it', async function () {
        const first = pattern(Const.FB_SIZE, 1);
        const second = pattern(Const.FB_SIZE, 2);
        const at = await m.put(Buffer.concat([first, second]));
        expectOk(await card.run(Cmd.DMA_FRAME, { src: at + Const.FB_SIZE, len: Const.FB_SIZE }));
        expect((await card.screen()).equals(second)).to.equal(true);
      });

      it('P2P_READ copies from a peer\'s BAR2 into the card\'s BAR2', async function () {
        const data = pattern(64 * 1024, 3);
        await m.qt.write(peer.bar2 + 0x1000, data);
        const o = await card.run(Cmd.P2P_READ, { src: peer.bar2 + 0x1000, dst: 0x8000, len: data.length });
        expectOk(o);
        expect(o.result).to.equal(BigInt(data.length));
        expect((await m.qt.read(card.bar2 + 0x8000, data.length)).equals(data)).to.equal(true);
      });

      it('P2P_WRITE copies from the card\'s BAR2 to a peer\'s BAR2, up to P2P_MAX bytes', async function () {
        const data = pattern(Const.P2P_MAX, 4);
        await m.qt.write(card.bar2, data);
        const o = await card.run(Cmd.P2P_WRITE, { src: 0, dst: peer.bar2, len: data.length });
        expectOk(o);
        expect(o.result).to.equal(BigInt(data.length));
        expect((await m.qt.read(peer.bar2, data.length)).equals(data)).to.equal(true);
      });

      it('P2P_READ and P2P_WRITE reach host RAM too, and the card\'s own BAR2', async function () {
        const data = pattern(300, 5);
        const src = await m.put(data);
        expectOk(await card.run(Cmd.P2P_READ, { src, dst: 0x100, len: data.length }));
        expectOk(await card.run(Cmd.P2P_READ, { src: card.bar2 + 0x100, dst: 0x180, len: data.length }));
        expect((await m.qt.read(card.bar2 + 0x180, data.length)).equals(data), 'overlapping copy inside BAR2').to.equal(true);
        const dst = m.alloc(data.length);
        expectOk(await card.run(Cmd.P2P_WRITE, { src: 0x180, dst, len: data.length }));
        expect((await m.qt.read(dst, data.length)).equals(data)).to.equal(true);
      });
    });

    describe('2D engine, pixel-exact against the reference rasteriser', function () {
      it('CLEAR fills the framebuffer with one colour', async function () {
        const o = await card.draw(clear([12, 34, 56]));
        expectOk(o);
        expect(o.result, 'entries').to.equal(1n);
        expectPixels(await card.screen(), new Frame().clear([12, 34, 56]), 'CLEAR');
      });

      it('DRAW_LINE in every octant, along the axes, single points and across the frame', async function () {
        const ref = new Frame().clear([0, 0, 0]);
        const entries = [clear([0, 0, 0])];
        const lines: [number, number, number, number][] = [
          [320, 240, 400, 250], [320, 240, 330, 300], [320, 240, 310, 300], [320, 240, 240, 250],
          [320, 240, 240, 230], [320, 240, 310, 180], [320, 240, 330, 180], [320, 240, 400, 230],
          [10, 10, 200, 10], [10, 20, 10, 200], [5, 5, 5, 5], [0, 0, 639, 479], [639, 0, 0, 479],
          [100, 400, 103, 401], [50, 50, 51, 52], [600, 470, 639, 479], [17, 3, 29, 11], [29, 11, 17, 3],
          [0, 479, 639, 478], [638, 1, 637, 478],
        ];
        lines.forEach(([x0, y0, x1, y1], i) => {
          const rgb: Rgb = [(i * 37) & 0xff, (i * 91 + 50) & 0xff, (255 - i * 11) & 0xff];
          entries.push(line(x0, y0, x1, y1, rgb));
          ref.line(x0, y0, x1, y1, rgb);
        });
        const o = await card.draw(...entries);
        expectOk(o);
        expect(o.result).to.equal(BigInt(entries.length));
        expectPixels(await card.screen(), ref, 'DRAW_LINE');
      });

      it('BLIT_RECT copies its pixels, at the edges and with padded entries', async function () {
        const ref = new Frame().clear([9, 9, 9]);
        const entries = [clear([9, 9, 9])];
        const rects: [number, number, number, number][] = [
          [0, 0, 16, 16], [624, 464, 16, 16], [100, 50, 200, 3], [0, 200, 640, 1], [300, 0, 1, 480], [40, 40, 0, 9], [40, 40, 9, 0],
        ];
        rects.forEach(([x, y, w, h], i) => {
          const px = pattern(w * h * 3, 100 + i);
          entries.push(blit(x, y, w, h, px, i % 3));
          ref.blit(x, y, w, h, px);
        });
        entries.push(nop(5));
        const o = await card.draw(...entries);
        expectOk(o);
        expect(o.result).to.equal(BigInt(entries.length));
        expectPixels(await card.screen(), ref, 'BLIT_RECT');
      });

      it('a long random mix of every entry matches the reference', async function () {
        const rnd = pattern(64 * 1024, 99);
        let k = 0;
        const next = (n: number): number => {
          const v = rnd.readUInt32LE(k);
          k = (k + 4) % (rnd.length - 4);
          return v % n;
        };
        const ref = new Frame();
        const entries: Buffer[] = [];
        for (let i = 0; i < 400; i++) {
          const rgb: Rgb = [next(256), next(256), next(256)];
          const kind = next(20);
          if (kind === 0) {
            entries.push(clear(rgb));
            ref.clear(rgb);
          } else if (kind < 14) {
            const c = [next(W), next(H), next(W), next(H)] as const;
            entries.push(line(...c, rgb));
            ref.line(...c, rgb);
          } else if (kind < 19) {
            const w = next(64);
            const h = next(64);
            const x = next(W - w + 1);
            const y = next(H - h + 1);
            const px = pattern(w * h * 3, i + 1);
            entries.push(blit(x, y, w, h, px));
            ref.blit(x, y, w, h, px);
          } else {
            entries.push(nop(next(8)));
          }
        }
        const o = await card.draw(...entries);
        expectOk(o);
        expectPixels(await card.screen(), ref, 'random mix');
      });

      it('accepts a command buffer of exactly CMDBUF_MAX bytes', async function () {
        const at = m.alloc(Const.CMDBUF_MAX);
        await m.qt.memset(at, Const.CMDBUF_MAX, 0);
        await m.qt.write(at, rawEntry(CmdbufEntry.NOP.opcode, Const.CMDBUF_MAX));
        const o = await card.run(Cmd.EXECUTE_CMDBUF, { src: at, len: Const.CMDBUF_MAX });
        expectOk(o);
        expect(o.result).to.equal(1n);
      });
    });

    describe('errors the host can cause: STATUS.ERROR, ERROR_CODE, and QEMU carries on', function () {
      it('an unknown command', async function () {
        for (const cmd of [0x09, 0x100, 0xffffffff]) {
          const o = await card.run(cmd, { data: 1 });
          expectError(o, 'BAD_COMMAND');
          expect(o.result).to.equal(0n);
        }
        await m.logged('protopciem: command 0xffffffff (fence ');
        await m.logged('): not a command');
        await expectAlive(card);
      });

      it('an unknown opcode stops the buffer: earlier entries drawn, later ones not', async function () {
        const before = await card.draw(clear([1, 2, 3]));
        expectOk(before);
        const first = line(0, 0, 100, 0, [255, 255, 255]);
        const o = await card.draw(first, rawEntry(0x7777, 8), clear([200, 0, 0]));
        expectError(o, 'CMDBUF_OPCODE');
        expect(o.errorInfo, 'ERROR_INFO: offset of the bad entry').to.equal(first.length);
        expect(o.result, 'RESULT: entries executed').to.equal(1n);
        expectPixels(await card.screen(), new Frame().clear([1, 2, 3]).line(0, 0, 100, 0, [255, 255, 255]), 'after the bad entry');
        await m.logged('unknown opcode 0x7777');
        await expectAlive(card);
      });

      it('a fuzz of 300 mutated command buffers (seeded): each ends DONE, with a known ERROR_CODE or none; QEMU carries on', async function () {
        const seed = Number(process.env.FUZZ_SEED ?? 0xcbf);
        const next = xorshift32(seed);
        const int = (n: number): number => next() % n;
        const edges = [0, 1, 4, 7, 8, 11, 12, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0xffffffff];
        const at = m.alloc(Const.CMDBUF_MAX + 4096);
        const codes = new Map<string, number>();
        for (let n = 0; n < 300; n++) {
          // A valid buffer of a few entries, then one to four edits: a byte, a u16 or u32 set to an edge, a cut, junk after.
          const entries: Buffer[] = [];
          for (let i = 0, k = 1 + int(6); i < k; i++) {
            const c: Rgb = [int(256), int(256), int(256)];
            const kind = int(4);
            if (kind === 0) entries.push(clear(c));
            else if (kind === 1) entries.push(line(int(W + 64), int(H + 64), int(W + 64), int(H + 64), c));
            else if (kind === 2) {
              const [w, h] = [int(24), int(24)];
              entries.push(blit(int(W), int(H), w, h, Buffer.alloc(w * h * 3, int(256))));
            }
            else entries.push(nop(int(12)));
          }
          let buf = Buffer.concat(entries);
          for (let e = 0, k = 1 + int(4); e < k && buf.length > 0; e++) {
            const pos = int(buf.length);
            switch (int(5)) {
              case 0: buf[pos] = int(256); break;
              case 1: if (pos + 2 <= buf.length) buf.writeUInt16LE(edges[int(edges.length)]! & 0xffff, pos); break;
              case 2: if (pos + 4 <= buf.length) buf.writeUInt32LE(edges[int(edges.length)]!, pos & ~3); break;
              case 3: buf = buf.subarray(0, pos); break;
              default: buf = Buffer.concat([buf, Buffer.from(Array.from({ length: int(32) }, () => int(256)))]);
            }
          }
          if (buf.length === 0 || buf.length > Const.CMDBUF_MAX) continue;
          await m.qt.write(at, buf);
          // DMA_LEN: the buffer's, or a little past it (the card reads what follows).
          const len = Math.min(Const.CMDBUF_MAX, buf.length + (int(4) === 0 ? int(64) : 0));
          const o = await card.run(Cmd.EXECUTE_CMDBUF, { src: at, len });
          expect(o.status & DONE, `seed ${seed}, buffer ${n}: DONE`).to.equal(DONE);
          expect(o.fenceDone, `seed ${seed}, buffer ${n}: FENCE_DONE`).to.equal(o.fence);
          expect(o.error, `seed ${seed}, buffer ${n}: a known ERROR_CODE`).to.be.a('string');
          codes.set(o.error!, (codes.get(o.error!) ?? 0) + 1);
        }
        console.log(`        seed 0x${seed.toString(16)}: ${[...codes].map(([k, v]) => `${k} x${v}`).join(', ')}`);
        expect(codes.get('NONE') ?? 0, 'some buffers survived their edits').to.be.greaterThan(0);
        expect(codes.size, 'and several kinds of error').to.be.greaterThan(2);
        await expectAlive(card);
        expectOk(await card.draw(clear([3, 4, 5])));
        expectPixels(await card.screen(), new Frame().clear([3, 4, 5]), 'a CLEAR after the fuzz');
      });

      it('a truncated buffer: a partial header, or an entry running past DMA_LEN', async function () {
        const good = nop();
        let o = await card.draw(good, Buffer.from([1, 0, 0, 0, 12]));
        expectError(o, 'CMDBUF_TRUNCATED');
        expect(o.errorInfo).to.equal(good.length);
        expect(o.result).to.equal(1n);
        o = await card.draw(good, good, rawEntry(CmdbufEntry.CLEAR.opcode, 12));
        expectError(o, 'CMDBUF_TRUNCATED');
        expect(o.errorInfo).to.equal(2 * good.length);
        o = await card.draw(Buffer.from([0, 0, 0]));
        expectError(o, 'CMDBUF_TRUNCATED');
        expect(o.errorInfo).to.equal(0);
        await m.logged('runs past the end');
        await expectAlive(card);
      });

      it('an entry LENGTH shorter than its header or its opcode needs', async function () {
        const cases: [Buffer, string][] = [
          [rawEntry(CmdbufEntry.NOP.opcode, 0), 'LENGTH 0'],
          [rawEntry(CmdbufEntry.NOP.opcode, 4), 'LENGTH 4'],
          [rawEntry(CmdbufEntry.CLEAR.opcode, 11, 3), 'CLEAR of 11'],
          [rawEntry(CmdbufEntry.DRAW_LINE.opcode, 10, 2), 'DRAW_LINE of 10'],
          [blit(0, 0, 4, 4, Buffer.alloc(4 * 4 * 3)).subarray(0, 40), 'BLIT_RECT short of pixels'],
        ];
        for (const [e, what] of cases) {
          if (what === 'BLIT_RECT short of pixels') e.writeUInt32LE(40, CmdbufHeader.fields.LENGTH.offset);
          const o = await card.draw(e);
          expectError(o, 'CMDBUF_LENGTH');
          expect(o.errorInfo, what).to.equal(0);
        }
        await m.logged('needs 64 bytes, LENGTH is 40');
        await expectAlive(card);
      });

      it('coordinates outside the framebuffer draw nothing', async function () {
        expectOk(await card.draw(clear([7, 7, 7])));
        const cases = [
          line(0, 0, W, 0, [255, 0, 0]),
          line(0, H, 0, 0, [255, 0, 0]),
          line(0xffff, 0, 0, 0, [255, 0, 0]),
          blit(W - 10, 0, 11, 1, Buffer.alloc(33, 0xff)),
          blit(0, H - 1, 1, 2, Buffer.alloc(6, 0xff)),
          blit(0xffff, 0xffff, 0, 0, Buffer.alloc(0)),
        ];
        for (const e of cases) {
          const o = await card.draw(nop(), e);
          expectError(o, 'COORDS');
          expect(o.errorInfo).to.equal(CmdbufHeader.size);
        }
        expectPixels(await card.screen(), new Frame().clear([7, 7, 7]), 'after refused entries');
        await m.logged('leaves the 640x480 framebuffer');
        await expectAlive(card);
      });

      it('a bad DMA length: empty or oversized command buffer, wrong frame size, unaligned or oversized PROCESS_BUFFER, P2P', async function () {
        const at = await m.put(Buffer.alloc(64));
        const cases: [number, number][] = [
          [Cmd.EXECUTE_CMDBUF, 0], [Cmd.EXECUTE_CMDBUF, Const.CMDBUF_MAX + 1], [Cmd.EXECUTE_CMDBUF, 0xffffffff],
          [Cmd.DMA_FRAME, 0], [Cmd.DMA_FRAME, Const.FB_SIZE - 1], [Cmd.DMA_FRAME, Const.FB_SIZE + 1],
          [Cmd.PROCESS_BUFFER, 0], [Cmd.PROCESS_BUFFER, 6], [Cmd.PROCESS_BUFFER, Const.PROCESS_MAX + 4],
          [Cmd.P2P_READ, 0], [Cmd.P2P_WRITE, Const.P2P_MAX + 1],
        ];
        for (const [cmd, len] of cases) {
          const o = await card.run(cmd, { src: at, dst: at, len });
          expectError(o, 'DMA_LENGTH');
        }
        await m.logged('PROCESS_BUFFER (fence ');
        await m.logged('DMA_LEN 0x6 is not a multiple of 4');
        await m.logged('DMA_LEN 0x400001 is outside 0x1..0x400000');
        await expectAlive(card);
      });

      it('DMA_FLAGS with any bit set', async function () {
        const at = await m.put(nop());
        const o = await card.run(Cmd.EXECUTE_CMDBUF, { src: at, len: 8, flags: 1 });
        expectError(o, 'DMA_FLAGS');
        await m.logged('DMA_FLAGS 0x1: no flag is defined');
        await expectAlive(card);
      });

      it('a DMA range that wraps past 2^64, or a P2P range that leaves BAR2', async function () {
        const top = 0xffff_ffff_ffff_fff0n;
        const cases: [number, Args][] = [
          [Cmd.EXECUTE_CMDBUF, { src: top, len: 32 }],
          [Cmd.DMA_FRAME, { src: top, len: Const.FB_SIZE }],
          [Cmd.PROCESS_BUFFER, { src: HEAP, dst: top, len: 32 }],
          [Cmd.P2P_READ, { src: top, dst: 0, len: 32 }],
          [Cmd.P2P_READ, { src: HEAP, dst: BAR.MEM.size - 8, len: 16 }],
          [Cmd.P2P_READ, { src: HEAP, dst: 1n << 32n, len: 1 }],
          [Cmd.P2P_WRITE, { src: BAR.MEM.size, dst: HEAP, len: 1 }],
          [Cmd.P2P_WRITE, { src: 0, dst: top, len: 32 }],
        ];
        for (const [cmd, a] of cases) expectError(await card.run(cmd, a), 'DMA_ADDRESS');
        await m.logged('wraps past 2^64');
        await m.logged('leaves the 0x100000-byte card memory');
        await expectAlive(card);
      });

      it('a DMA the bus refuses: unmapped, half-mapped, bus mastering off, the card\'s own registers', async function () {
        const frame = testFrame();
        const at = await m.put(frame);
        expectOk(await card.run(Cmd.DMA_FRAME, { src: at, len: Const.FB_SIZE }));
        const ramEnd = RAM_MIB << 20;
        const dst = m.alloc(64);
        await m.qt.memset(dst, 64, 0x5a);
        const cases: [number, Args][] = [
          [Cmd.DMA_FRAME, { src: UNMAPPED, len: Const.FB_SIZE }],
          [Cmd.DMA_FRAME, { src: ramEnd - 4096, len: Const.FB_SIZE }],
          [Cmd.EXECUTE_CMDBUF, { src: UNMAPPED, len: 8 }],
          [Cmd.PROCESS_BUFFER, { src: UNMAPPED, dst, len: 64 }],
          [Cmd.PROCESS_BUFFER, { src: at, dst: ramEnd - 32, len: 64 }],
          [Cmd.P2P_READ, { src: UNMAPPED, dst: 0, len: 64 }],
          [Cmd.P2P_WRITE, { src: 0, dst: UNMAPPED, len: 64 }],
          [Cmd.DMA_FRAME, { src: card.bar0, len: Const.FB_SIZE }],
          [Cmd.PROCESS_BUFFER, { src: at, dst: card.bar0, len: 64 }],
        ];
        for (const [cmd, a] of cases) expectError(await card.run(cmd, a), 'DMA_FAULT');
        await card.command(0x0002);
        expectError(await card.run(Cmd.PROCESS_BUFFER, { src: at, dst, len: 64 }), 'DMA_FAULT');
        await card.command(0x0006);
        expect((await m.qt.read(dst, 64)).equals(Buffer.alloc(64, 0x5a)), 'nothing written').to.equal(true);
        expect((await card.screen()).equals(frame), 'framebuffer unchanged').to.equal(true);
        await m.logged('failed');
        await expectAlive(card);
      });

      it('ERROR_CODE keeps the first failure, ERROR_COUNT counts them all, a write clears them', async function () {
        await card.set('ERROR_CODE', 0);
        const first = await card.submit(0x55);
        await card.waitIdle();
        await card.submit(Cmd.DMA_FRAME, { len: 1 });
        await card.waitIdle();
        expect(ERR_NAMES[await card.reg('ERROR_CODE')]).to.equal('BAD_COMMAND');
        expect(await card.reg('ERROR_FENCE')).to.equal(first);
        expect(await card.reg('ERROR_COUNT')).to.equal(2);
        await card.set('STATUS', 0);
        expect(await card.reg('ERROR_CODE'), 'survives clearing STATUS').to.equal(Err.BAD_COMMAND);
        await card.set('ERROR_CODE', 0x1234);
        for (const r of ['ERROR_CODE', 'ERROR_FENCE', 'ERROR_INFO', 'ERROR_COUNT'] as const) {
          expect(await card.reg(r), r).to.equal(0);
        }
      });
    });

    describe('pipelined submissions', function () {
      it('runs queued command buffers in order and retires them by fence', async function () {
        const bufs = [
          Buffer.concat([clear([0, 0, 128])]),
          Buffer.concat([line(0, 0, 639, 479, [255, 255, 0]), line(639, 0, 0, 479, [0, 255, 255])]),
          Buffer.concat([blit(300, 220, 40, 40, pattern(40 * 40 * 3, 8))]),
          Buffer.concat([clear([10, 20, 30]), blit(0, 0, 2, 2, pattern(12, 9))]),
          Buffer.concat([line(5, 470, 600, 3, [1, 2, 3])]),
        ];
        const ref = new Frame()
          .clear([10, 20, 30])
          .blit(0, 0, 2, 2, pattern(12, 9))
          .line(5, 470, 600, 3, [1, 2, 3]);
        const addrs: number[] = [];
        for (const b of bufs) addrs.push(await m.put(b));
        await card.set('STATUS', 0);
        const first = await card.reg('FENCE_NEXT');
        const commands = bufs.flatMap((b, i) => card.submitCommands(Cmd.EXECUTE_CMDBUF, { src: addrs[i] ?? 0, len: b.length }));
        const qlevel = `readl 0x${(card.bar0 + Reg.QUEUE_LEVEL).toString(16)}`;
        const status = `readl 0x${(card.bar0 + Reg.STATUS).toString(16)}`;
        const answers = await m.qt.batch([...commands, qlevel, status]);
        expect(Number(answers[commands.length]), 'QUEUE_LEVEL right after submitting').to.equal(bufs.length);
        expect(Number(answers[commands.length + 1]) & BUSY, 'BUSY').to.equal(BUSY);
        await card.waitIdle();
        expect(await card.reg('FENCE_DONE')).to.equal(first + bufs.length - 1);
        expect(await card.reg('FENCE_NEXT')).to.equal(first + bufs.length);
        expect(await card.reg('QUEUE_LEVEL')).to.equal(0);
        expect(await card.reg('CMD'), 'CMD once the queue drained').to.equal(0);
        expect(await card.reg('STATUS')).to.equal(DONE);
        expect(await card.reg('RESULT_LO'), 'entries of the last buffer').to.equal(1);
        expectPixels(await card.screen(), ref, 'after the queue');
      });

      it('a reset drops queued commands without completing them', async function () {
        await card.set('STATUS', 0);
        const control = `writel 0x${(card.bar0 + Reg.CONTROL).toString(16)} 0x${Bits.CONTROL.RESET.toString(16)}`;
        await m.qt.batch([...card.submitCommands(Cmd.ADD, { data: 1 }), ...card.submitCommands(Cmd.ADD, { data: 2 }), control]);
        await sleep(50);
        for (const r of ['STATUS', 'QUEUE_LEVEL', 'FENCE_DONE', 'RESULT_LO', 'CMD'] as const) {
          expect(await card.reg(r), r).to.equal(0);
        }
        expect(await card.reg('FENCE_NEXT')).to.equal(1);
        await expectAlive(card);
      });

      it('a failed command does not stop the queue', async function () {
        await card.set('STATUS', 0);
        await card.set('ERROR_CODE', 0);
        const first = await card.reg('FENCE_NEXT');
        await m.qt.batch([...card.submitCommands(0x99), ...card.submitCommands(Cmd.ADD, { data: 50 })]);
        await card.waitIdle();
        expect(await card.reg('STATUS')).to.equal(DONE | ERROR);
        expect(await card.reg('ERROR_FENCE')).to.equal(first);
        expect(await card.reg('FENCE_DONE')).to.equal(first + 1);
        expect(await card.reg('RESULT_LO')).to.equal(100);
      });
    });
  });

  describe('interrupts', function () {
    let m: Machine;
    let msiCard: Card;
    let intxCard: Card;

    before(async function () {
      m = await Machine.start('irq', [
        { id: 'msi', slot: 2 },
        { id: 'intx', slot: 3, props: 'msi=off' },
      ]);
      msiCard = m.card('msi');
      intxCard = m.card('intx');
      await m.qt.irqInterceptIn('/machine/ioapic');
    });

    after(async function () {
      await m?.close();
    });

    it('msi=off: no MSI capability, INTA asserted while DONE or ERROR is set', async function () {
      expect(await intxCard.msiCap()).to.equal(0);
      m.qt.irqs.length = 0;
      await intxCard.run(Cmd.ADD, { data: 1 });
      expect(await intxCard.reg('STATUS')).to.equal(DONE);
      const raised = m.qt.irqs.filter((e) => e.raised);
      expect(raised, 'one raise').to.have.length(1);
      const gsi = raised[0]?.line ?? -1;
      await intxCard.set('STATUS', 0);
      expect(m.qt.irqs.at(-1), 'lowered on clearing STATUS').to.deep.equal({ raised: false, line: gsi });
      m.qt.irqs.length = 0;
      await intxCard.run(0x42);
      expect(m.qt.irqs, 'raised on an error').to.deep.equal([{ raised: true, line: gsi }]);
      await intxCard.set('STATUS', ~ERROR >>> 0);
      expect(m.qt.irqs.length, 'DONE still set: still asserted').to.equal(1);
      await intxCard.set('STATUS', 0);
      expect(m.qt.irqs.at(-1)).to.deep.equal({ raised: false, line: gsi });
      m.qt.irqs.length = 0;
      await intxCard.run(Cmd.ADD, { data: 1 });
      await intxCard.command(0x0406);
      expect(m.qt.irqs.at(-1), 'INTx Disable in the command register').to.deep.equal({ raised: false, line: gsi });
      await intxCard.command(0x0006);
      expect(m.qt.irqs.at(-1), 'INTx enabled again').to.deep.equal({ raised: true, line: gsi });
      await intxCard.reset();
      expect(m.qt.irqs.at(-1), 'lowered on reset').to.deep.equal({ raised: false, line: gsi });
    });

    it('MSI: one message per completion, to the address the host programmed; none on INTx', async function () {
      const cap = await msiCard.msiCap();
      await m.qt.writel(msiCard.cfg(cap + 4), MSI_ADDR);
      await m.qt.writel(msiCard.cfg(cap + 8), 0);
      await m.qt.writew(msiCard.cfg(cap + 12), 0x4321);
      await m.qt.writew(msiCard.cfg(cap + 2), (await m.qt.readw(msiCard.cfg(cap + 2))) | 1);
      await m.qt.writel(MSI_ADDR, 0);
      m.qt.irqs.length = 0;
      const sent = m.count('protopciem_msi ');
      const o = await msiCard.run(Cmd.MULTIPLY, { data: 3 });
      expectOk(o);
      expect(await m.qt.readl(MSI_ADDR), 'MSI data written to the MSI address').to.equal(0x4321);
      await m.logged('protopciem_msi ');
      expect(m.count('protopciem_msi ') - sent).to.equal(1);
      expect(m.qt.irqs, 'INTx untouched').to.deep.equal([]);

      const bufs: string[] = [];
      for (let i = 0; i < 5; i++) bufs.push(...msiCard.submitCommands(Cmd.ADD, { data: i }));
      await m.qt.batch(bufs);
      await msiCard.waitIdle();
      await sleep(50);
      expect(m.count('protopciem_msi ') - sent, 'back-to-back completions, one MSI each').to.equal(6);
    });

    it('MSI: a masked vector sets its pending bit and fires when unmasked', async function () {
      const cap = await msiCard.msiCap();
      const mask = cap + 16;
      const pending = cap + 20;
      await m.qt.writel(msiCard.cfg(mask), 1);
      await m.qt.writel(MSI_ADDR, 0);
      expectOk(await msiCard.run(Cmd.ADD, { data: 1 }));
      expect(await m.qt.readl(MSI_ADDR), 'no message while masked').to.equal(0);
      expect(await m.qt.readl(msiCard.cfg(pending)), 'pending').to.equal(1);
      await m.qt.writel(msiCard.cfg(mask), 0);
      expect(await m.qt.readl(MSI_ADDR), 'delivered on unmask').to.equal(0x4321);
      expect(await m.qt.readl(msiCard.cfg(pending))).to.equal(0);
    });
  });

  describe('command queue limits', function () {
    let m: Machine;
    let card: Card;

    before(async function () {
      m = await Machine.start('queue', [{ id: 'card', slot: 2, props: 'queue-depth=2' }]);
      card = m.card('card');
    });

    after(async function () {
      await m?.close();
    });

    it('reports its queue depth and refuses a submission when full', async function () {
      expect(await card.reg('QUEUE_DEPTH')).to.equal(2);
      await card.set('STATUS', 0);
      const first = await card.reg('FENCE_NEXT');
      const status = `readl 0x${(card.bar0 + Reg.STATUS).toString(16)}`;
      const answers = await m.qt.batch([
        ...card.submitCommands(Cmd.ADD, { data: 1 }),
        ...card.submitCommands(Cmd.ADD, { data: 2 }),
        status,
        ...card.submitCommands(Cmd.XOR, { data: 3 }),
      ]);
      expect(Number(answers[16]) & (BUSY | QUEUE_FULL), 'BUSY and QUEUE_FULL').to.equal(BUSY | QUEUE_FULL);
      await card.waitIdle();
      expect(ERR_NAMES[await card.reg('ERROR_CODE')]).to.equal('QUEUE_FULL');
      expect(await card.reg('ERROR_INFO'), 'the refused command').to.equal(Cmd.XOR);
      expect(await card.reg('ERROR_FENCE')).to.equal(0);
      expect(await card.reg('FENCE_NEXT'), 'no fence used').to.equal(first + 2);
      expect(await card.reg('FENCE_DONE')).to.equal(first + 1);
      expect(await card.reg('RESULT_LO')).to.equal(4);
      expect(await card.reg('STATUS')).to.equal(DONE | ERROR);
      await m.logged('command 0x3 refused: the queue holds 2 commands already');
      await expectAlive(card);
    });
  });

  describe('display and state', function () {
    it('shows the framebuffer over VNC as a 640x480 screen with the frame\'s pixels', async function () {
      const vnc = join(workDir, 'vnc.sock');
      const m = await Machine.start('vnc', [{ id: 'card', slot: 2 }], ['-vnc', `unix:${vnc}`]);
      try {
        const card = m.card('card');
        const frame = testFrame();
        expectOk(await card.run(Cmd.DMA_FRAME, { src: await m.put(frame), len: Const.FB_SIZE }));
        const screen = await vncScreen(vnc);
        expect([screen.width, screen.height]).to.deep.equal([W, H]);
        expect(screen.rgb.equals(frame), 'VNC pixels').to.equal(true);
      } finally {
        await m.close();
      }
    });

    it('migrates every register and the framebuffer (vmstate)', async function () {
      const src = await Machine.start('mig-src', [{ id: 'card', slot: 2 }]);
      const file = join(workDir, 'migration.bin');
      const regs = new Map<RegName, number>();
      let screen: Buffer;
      try {
        const card = src.card('card');
        expectOk(await card.draw(clear([40, 50, 60]), line(1, 2, 300, 200, [250, 0, 0])));
        await card.run(0x66);
        await card.set('DATA', 0xabcdef01);
        await card.set('DMA_SRC_HI', 0x12);
        await card.set('DMA_DST_LO', 0x3456);
        await card.set('DMA_LEN', 0x789);
        await card.set('FENCE_NEXT', 0x1000);
        for (const r of REGISTERS) regs.set(r.name, await card.reg(r.name));
        screen = await card.screen();
        await src.qmp.execute('migrate', { uri: `file:${file}` });
        await waitMigration(src.qmp);
      } finally {
        await src.close();
      }
      const dst = await Machine.start('mig-dst', [{ id: 'card', slot: 2 }], ['-incoming', `file:${file}`]);
      try {
        await waitMigration(dst.qmp);
        const card = dst.card('card');
        for (const r of REGISTERS) expect(await card.reg(r.name), r.name).to.equal(regs.get(r.name));
        expect((await card.screen()).equals(screen), 'framebuffer').to.equal(true);
        await expectAlive(card);
      } finally {
        await dst.close();
      }
    });
  });

  describe('configuration errors stop QEMU at startup, with a reason', function () {
    const startFails = (args: string[]): string => {
      const r = spawnSync(qemuBinary, ['-nodefaults', '-display', 'none', ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, `QEMU should refuse ${args.join(' ')}`).to.not.equal(0);
      return r.stderr;
    };

    it('queue-depth outside 1..QUEUE_DEPTH_MAX', function () {
      for (const depth of [0, Const.QUEUE_DEPTH_MAX + 1]) {
        const err = startFails(['-machine', 'x-remote', '-device', `protopciem,queue-depth=${depth}`]);
        expect(err).to.contain(`queue-depth must be 1 to ${Const.QUEUE_DEPTH_MAX}, not ${depth}`);
      }
    });

    it('msi=on on a machine without MSI; msi=auto falls back to INTx there', async function () {
      const err = startFails(['-machine', 'x-remote', '-device', 'protopciem,msi=on']);
      expect(err).to.contain('msi=auto');
      const qmpPath = join(workDir, 'xremote.qmp');
      const qt = QTest.start(qemuBinary, ['-nodefaults', '-display', 'none', '-machine', 'x-remote', '-device', 'protopciem,id=card', '-qmp', `unix:${qmpPath},server=on,wait=off`]);
      try {
        const qmp = await Qmp.connect({ path: qmpPath }, { timeoutMs: 20_000 });
        const pci = await qmp.execute<{ devices: { qdev_id: string }[] }[]>('query-pci');
        expect(pci.flatMap((b) => b.devices).map((d) => d.qdev_id)).to.contain('card');
        qmp.close();
      } finally {
        await qt.close();
      }
    });
  });
});

async function waitMigration(qmp: Qmp): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const info = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed') throw new Error(`migration failed: ${info['error-desc'] ?? '?'}`);
    if (Date.now() > deadline) throw new Error(`migration still ${info.status ?? 'not started'}`);
    await sleep(50);
  }
}

// ---- a minimal RFB client: enough to see what the card shows ---------------------

class ByteReader {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private error: Error | null = null;

  constructor(sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    sock.on('error', (e) => {
      this.error = e;
      this.waiter?.();
    });
    sock.on('close', () => {
      this.error ??= new Error('VNC connection closed');
      this.waiter?.();
    });
  }

  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.error !== null) throw this.error;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
      this.waiter = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

/** Connects to QEMU's VNC server (RFB 3.8, no authentication) and reads the whole screen. */
async function vncScreen(path: string): Promise<{ width: number; height: number; rgb: Buffer }> {
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  const rd = new ByteReader(sock);
  try {
    expect((await rd.take(12)).toString('latin1')).to.match(/^RFB 003\.00\d\n$/);
    sock.write('RFB 003.008\n');
    const ntypes = (await rd.take(1))[0] ?? 0;
    expect([...(await rd.take(ntypes))], 'security types').to.contain(1);
    sock.write(Buffer.from([1]));
    expect((await rd.take(4)).readUInt32BE(0), 'security result').to.equal(0);
    sock.write(Buffer.from([1]));
    const init = await rd.take(24);
    const width = init.readUInt16BE(0);
    const height = init.readUInt16BE(2);
    await rd.take(init.readUInt32BE(20));
    // SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 8 bits each at 16/8/0.
    const pf = Buffer.from([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    // SetEncodings: raw only.
    const enc = Buffer.from([2, 0, 0, 1, 0, 0, 0, 0]);
    const req = Buffer.alloc(10);
    req.writeUInt8(3, 0);
    req.writeUInt8(0, 1);
    req.writeUInt16BE(width, 6);
    req.writeUInt16BE(height, 8);
    sock.write(Buffer.concat([pf, enc, req]));
    const rgb = Buffer.alloc(width * height * 3);
    let covered = 0;
    while (covered < width * height) {
      const type = (await rd.take(1))[0];
      if (type !== 0) throw new Error(`unexpected RFB message ${String(type)}`);
      const nrects = (await rd.take(3)).readUInt16BE(1);
      for (let r = 0; r < nrects; r++) {
        const h = await rd.take(12);
        const [x, y, w, hh] = [h.readUInt16BE(0), h.readUInt16BE(2), h.readUInt16BE(4), h.readUInt16BE(6)];
        expect(h.readInt32BE(8), 'raw encoding').to.equal(0);
        const px = await rd.take(w * hh * 4);
        for (let j = 0; j < hh; j++) {
          for (let i = 0; i < w; i++) {
            const s = (j * w + i) * 4;
            const d = ((y + j) * width + x + i) * 3;
            rgb[d] = px[s + 2] ?? 0;
            rgb[d + 1] = px[s + 1] ?? 0;
            rgb[d + 2] = px[s] ?? 0;
          }
        }
        covered += w * hh;
      }
    }
    return { width, height, rgb };
  } finally {
    sock.destroy();
  }
}
