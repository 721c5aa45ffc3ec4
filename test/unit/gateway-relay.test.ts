// The gateway's relay (gateway/src/relay) with no kernel and no QEMU: a
// model peer written here speaks the wire protocol to a real GatewayServer
// on a UNIX socket; the host is the FakeHost, played as the driver. Covers
// the session rules of docs/protocol.md ("A session"), the relay in both
// directions, ordering (invariants 2 and 3), backpressure and bad input;
// and, at version 2, the rings: a model peer that takes the memfd and
// eventfds off the socket (SCM_RIGHTS) and speaks on the rings with FENCEs.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeBackend, type FakeHost } from '../../gateway/src/relay/fake-host.js';
import { capabilityList, translateConfig } from '../../gateway/src/relay/host.js';
import { GatewayServer } from '../../gateway/src/relay/server.js';
import type { ModelSession } from '../../gateway/src/relay/session.js';
import { FrameReader, type FrameResult } from '../../gateway/src/proto/frames.js';
import { decodeRecord, encodeRecord, type RecordMessage } from '../../gateway/src/proto/ring-records.js';
import { native } from '../../gateway/src/native.js';
import { RingConsumer, RingProducer } from '../../gateway/src/ring.js';
import type { Logger } from '../../gateway/src/log.js';
import type { TraceEvent } from '../../gateway/src/relay/trace.js';
import { FrameFuzzer, tally } from '../lib/fuzz.js';
import {
  BarFlags, IrqKind, MsiFlags, Role, encodeFrame,
  type DeviceRequest, type Message, type RingsRequest,
} from '../../proto/generated/wire.js';

const CARD: DeviceRequest = {
  name: 'test-card', vendor_id: 0x1f0c, device_id: 0x0001, subsystem_vendor_id: 0, subsystem_id: 0,
  class_code: 0x038000, revision: 1, interrupt_pin: 1, msi_vectors: 1, msi_flags: MsiFlags.ADDR64 | MsiFlags.MASKING,
  msix_vectors: 0, msix_bar: 0, msix_table_offset: 0, msix_pba_offset: 0, caps: 0,
  bars: [{ index: 0, size: 0x10000n, flags: BarFlags.MEM64 }, { index: 2, size: 0x100000n, flags: BarFlags.MEM64 | BarFlags.PREFETCH }],
  traced: [{ bar: 0, offset: 0n, size: 0x1000n }],
  read_via_model: [{ bar: 0, offset: 0x800n, size: 0x800n }],
};

/** The model end of a connection: sends frames, collects what the gateway sends. */
class ModelPeer {
  readonly received: Message[] = [];
  readonly refused: string[] = [];
  private readonly reader = new FrameReader();
  private waiters: (() => void)[] = [];
  private nextId = 1;
  ended = false;
  configReads = 0;

  /** The model's config space, as CONFIG_READ sees it: an MSI capability at 0x50. */
  readonly config = new Uint8Array(256);

  constructor(readonly sock: Socket) {
    this.config[0x06] = 0x10;
    this.config[0x34] = 0x50;
    this.config[0x50] = 0x05;
    sock.on('data', (c: Buffer) => {
      for (const r of this.reader.push(c)) {
        if (r.ok && r.message.cmd === 'CONFIG_READ' && !r.message.reply) {
          const { offset, size } = r.message.body;
          let value = 0;
          for (let i = size - 1; i >= 0; i--) value = value * 256 + (this.config[offset + i] ?? 0);
          this.send({ cmd: 'CONFIG_READ', id: r.message.id, reply: true, posted: false, error: 'NONE', body: { value } });
          this.configReads++;
        } else if (r.ok) this.received.push(r.message);
        else this.refused.push(r.error.code);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  static connect(path: string): Promise<ModelPeer> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new ModelPeer(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  id(): number {
    return this.nextId++;
  }

  send(m: Message): void {
    this.sock.write(encodeFrame(m));
  }

  raw(b: Uint8Array): void {
    this.sock.write(b);
  }

  /** Waits until a received message matches; returns it (and removes it from `received`). */
  async take(pred: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex(pred);
      if (i >= 0) return this.received.splice(i, 1)[0] as Message;
      if (this.ended) throw new Error(`connection closed; got ${this.received.map((m) => m.cmd).join(',')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${this.received.map((m) => `${m.cmd}${m.reply ? '/r' : ''}`).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async closed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('the gateway did not close the connection');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async hello(versionMin = 1, versionMax = 1): Promise<Message> {
    const id = this.id();
    this.send({ cmd: 'HELLO', id, reply: false, posted: false, error: 'NONE', body: { version_min: versionMin, version_max: versionMax, role: Role.MODEL, name: 'model-peer' } });
    return this.take((m) => m.cmd === 'HELLO' && m.id === id);
  }

  async device(desc: DeviceRequest = CARD): Promise<Message> {
    const id = this.id();
    this.send({ cmd: 'DEVICE', id, reply: false, posted: false, error: 'NONE', body: desc });
    return this.take((m) => m.cmd === 'DEVICE' && m.id === id);
  }
}

describe('gateway relay (FakeHost, no kernel, no QEMU)', function () {
  this.timeout(60_000);
  let dir: string;
  let backend: FakeBackend;
  let server: GatewayServer;
  let peer: ModelPeer;

  beforeEach(async function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-relay-'));
    backend = new FakeBackend(300);
    server = new GatewayServer({ backend, name: 'gateway-under-test', requestTimeoutMs: 2000 });
    await server.listen(join(dir, 'gw.sock'));
    peer = await ModelPeer.connect(join(dir, 'gw.sock'));
  });

  afterEach(async function () {
    peer.sock.destroy();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** HELLO + DEVICE; the FakeHost the gateway made. */
  async function attach(desc: DeviceRequest = CARD): Promise<{ host: FakeHost; session: ModelSession }> {
    const made = backend.nextDevice();
    const sessionReady = server.nextDevice();
    const h = await peer.hello();
    expect(h.reply && h.error).to.equal('NONE');
    const d = await peer.device(desc);
    expect(d.error).to.equal('NONE');
    return { host: await made, session: await sessionReady };
  }

  describe('session rules', function () {
    it('HELLO picks the highest common version and names the gateway', async function () {
      const r = await peer.hello(1, 7);
      expect(r).to.deep.include({ reply: true, error: 'NONE' });
      expect(r.body).to.deep.equal({ version_min: 1, version_max: 4, version: 4, role: Role.GATEWAY, name: 'gateway-under-test' });
    });

    it('refuses versions it does not speak with VERSION, then closes', async function () {
      const r = await peer.hello(5, 6);
      expect(r.error).to.equal('VERSION');
      expect((r.body as { message: string }).message).to.match(/5\.\.6.*1\.\.4/);
      await peer.closed();
    });

    it('refuses DEVICE before HELLO, a second HELLO and a second DEVICE with STATE', async function () {
      expect((await peer.device()).error).to.equal('STATE');
      await peer.hello();
      expect((await peer.hello()).error).to.equal('STATE');
      expect((await peer.device()).error).to.equal('NONE');
      expect((await peer.device()).error).to.equal('STATE');
      expect(backend.devices).to.have.length(1);
    });

    it('refuses model requests before DEVICE and gateway-only commands from the model', async function () {
      await peer.hello();
      let id = peer.id();
      peer.send({ cmd: 'DMA_READ', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x1000n, len: 4 } });
      expect((await peer.take((m) => m.id === id && m.reply)).error).to.equal('STATE');
      await peer.device();
      id = peer.id();
      peer.send({ cmd: 'MMIO_READ', id, reply: false, posted: false, error: 'NONE', body: { bar: 0, offset: 0n, size: 4 } });
      const r = await peer.take((m) => m.id === id && m.reply);
      expect(r.error).to.equal('STATE');
      expect((r.body as { message: string }).message).to.match(/sent by the gateway/);
    });

    it('answers a reply to no request with ERROR STATE and goes on', async function () {
      await attach();
      peer.send({ cmd: 'MMIO_READ', id: 4242, reply: true, posted: false, error: 'NONE', body: { value: 1n } });
      const e = await peer.take((m) => m.cmd === 'ERROR');
      expect(e.error).to.equal('STATE');
      expect(e.body).to.deep.include({ ref_id: 4242 });
      const s = await statsOf();
      expect(s.errors_in).to.equal(1n);
    });

    it('a host that refuses the description gets INVALID with its reason, and DEVICE may be retried', async function () {
      await peer.hello();
      const bad: DeviceRequest = { ...CARD, bars: [{ index: 0, size: 0x4000_0000n, flags: BarFlags.MEM64 }], traced: [], read_via_model: [] };
      const r = await peer.device(bad);
      expect(r.error).to.equal('INVALID');
      expect((r.body as { message: string }).message).to.match(/BAR0/);
      expect((await peer.device()).error).to.equal('NONE');
    });
  });

  it('with a description, a model that is not the described card is refused (INVALID); the described regions apply and the reply carries the shadow list', async function () {
    const described = new GatewayServer({ backend, description: { device: { ...CARD, traced: [{ bar: 0, offset: 0n, size: 0x10n }] }, shadow: [{ bar: 0, offset: 0x10n, size: 0x20n }] } });
    const path = join(dir, 'described.sock');
    await described.listen(path);
    const other = await ModelPeer.connect(path);
    try {
      await other.hello();
      const r = await other.device({ ...CARD, device_id: 0x0002 });
      expect(r.error).to.equal('INVALID');
      expect((r.body as { message: string }).message).to.match(/device_id 0x0002, the description says 0x0001/);
      const made = backend.nextDevice();
      const ok = await other.device();
      expect(ok.error).to.equal('NONE');
      expect(ok.body).to.deep.equal({ shadow: [{ bar: 0, offset: 0x10n, size: 0x20n }] });
      const host = await made;
      expect(host.desc.traced).to.deep.equal([{ bar: 0, offset: 0n, size: 0x10n }]);
    } finally {
      other.sock.destroy();
      await described.close();
    }
  });

  async function statsOf(): Promise<Record<string, bigint>> {
    const id = peer.id();
    peer.send({ cmd: 'STATS', id, reply: false, posted: false, error: 'NONE', body: {} });
    return (await peer.take((m) => m.cmd === 'STATS' && m.id === id)).body as Record<string, bigint>;
  }

  describe('config space', function () {
    it("walks the model's capability list before the host starts", async function () {
      await attach();
      expect(peer.configReads).to.equal(5); // status, its high byte, the pointer, the MSI capability's ID and next
    });

    it('puts host config writes where the model has the same capability', function () {
      const cfg = new Uint8Array(256);
      cfg[0x06] = 0x10;
      cfg[0x34] = 0x40;
      Object.assign(cfg, { 0x40: 0x01, 0x41: 0x48, 0x48: 0x05, 0x49: 0x60, 0x60: 0x10, 0x61: 0x00 });
      const host = capabilityList((o) => cfg[o] ?? 0);
      expect([...host]).to.deep.equal([[0x01, 0x40], [0x05, 0x48], [0x10, 0x60]]);
      const model = new Map([[0x05, 0x50], [0x01, 0x80]]);
      expect(translateConfig(0x04, 2, host, model)).to.equal(0x04); // the header is shared
      expect(translateConfig(0x4a, 2, host, model)).to.equal(0x52); // MSI control
      expect(translateConfig(0x44, 2, host, model)).to.equal(0x84); // PM control/status
      expect(translateConfig(0x62, 2, host, model)).to.equal(null); // PCIe: the model has none
      expect(translateConfig(0x3e, 4, host, model)).to.equal(null); // across the header's end
    });
  });

  describe('host -> model', function () {
    it('relays 10,000 traced writes posted, in program order, with size and value; untraced writes stay on the host', async function () {
      const { host } = await attach();
      const N = 10_000;
      for (let i = 0; i < N; i++) host.driverWrite(0, (i % 64) * 4, 4, i * 7);
      host.driverWrite(0, 0x2000, 4, 0xdead); // outside the traced region
      host.driverWrite(0, 0x10, 1, 0x1ab); // masked to the size
      const got: Message[] = [];
      while (got.length < N + 1) got.push(await peer.take((m) => m.cmd === 'MMIO_WRITE'));
      let prevId = 0;
      got.forEach((m, i) => {
        expect(m.posted).to.equal(true);
        expect(m.id).to.be.greaterThan(prevId);
        prevId = m.id;
        const b = m.body as { bar: number; offset: bigint; size: number; value: bigint };
        if (i < N) expect(b).to.deep.equal({ bar: 0, offset: BigInt((i % 64) * 4), size: 4, value: BigInt(i * 7) });
        else expect(b).to.deep.equal({ bar: 0, offset: 0x10n, size: 1, value: 0xabn });
      });
      expect(await host.driverRead(0, 0x2000, 4)).to.equal(0xdeadn);
      expect((await statsOf()).mmio_writes).to.equal(BigInt(N + 1));
    });

    it('a read in a read_via_model region is answered by the model, after the writes before it', async function () {
      const { host } = await attach();
      host.driverWrite(0, 0x100, 4, 5);
      const value = host.driverRead(0, 0x804, 4);
      const w = await peer.take((m) => m.cmd === 'MMIO_WRITE');
      const r = await peer.take((m) => m.cmd === 'MMIO_READ');
      expect(r.id).to.be.greaterThan(w.id);
      expect(r.body).to.deep.equal({ bar: 0, offset: 0x804n, size: 4 });
      peer.send({ cmd: 'MMIO_READ', id: r.id, reply: true, posted: false, error: 'NONE', body: { value: 0x1234_5678n } });
      expect(await value).to.equal(0x1234_5678n);
      // Plain reads come from BAR memory, which the model's stores keep current.
      peer.send({ cmd: 'MMIO_WRITE', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { bar: 2, offset: 0x40n, size: 8, value: 0x1122_3344_5566_7788n } });
      await statsOf();
      expect(await host.driverRead(2, 0x40, 8)).to.equal(0x1122_3344_5566_7788n);
      expect(await host.driverRead(2, 0x44, 2)).to.equal(0x3344n);
    });

    it('a read the model fails or never answers reads all-ones (like a dead card)', async function () {
      const { host } = await attach();
      const failed = host.driverRead(0, 0x800, 4);
      const r = await peer.take((m) => m.cmd === 'MMIO_READ');
      peer.send({ cmd: 'MMIO_READ', id: r.id, reply: true, posted: false, error: 'IO', body: { message: 'model broke' } });
      expect(await failed).to.equal(0xffff_ffffn);
      const t0 = Date.now();
      expect(await host.driverRead(0, 0x808, 2)).to.equal(0xffffn);
      expect(Date.now() - t0).to.be.within(250, 2000);
      expect(host.stats().read_timeouts).to.equal(1n);
    });

    it('config writes and resets reach the model as requests', async function () {
      const { host } = await attach();
      host.driverConfigWrite(0x04, 2, 0x0006);
      const c = await peer.take((m) => m.cmd === 'CONFIG_WRITE');
      expect(c.body).to.deep.equal({ offset: 4, size: 2, value: 6 });
      peer.send({ cmd: 'CONFIG_WRITE', id: c.id, reply: true, posted: false, error: 'NONE', body: {} });
      host.driverReset();
      const r = await peer.take((m) => m.cmd === 'RESET');
      expect(r.body).to.deep.equal({ kind: 1 });
    });
  });

  describe('model -> host', function () {
    it('DMA reads and writes mapped memory byte-exact, and refuses the rest with FAULT', async function () {
      const { host } = await attach();
      const mem = host.map(0x1_0000_0000n, 1 << 20);
      for (let i = 0; i < mem.length; i++) mem[i] = (i * 31 + 7) & 0xff;
      let id = peer.id();
      peer.send({ cmd: 'DMA_READ', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x1_0000_0003n, len: 921_600 } });
      const r = await peer.take((m) => m.cmd === 'DMA_READ' && m.id === id);
      expect(r.error).to.equal('NONE');
      expect(Buffer.from((r.body as { data: Uint8Array }).data).equals(Buffer.from(mem.subarray(3, 3 + 921_600)))).to.equal(true);

      id = peer.id();
      peer.send({ cmd: 'DMA_READ', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x1_0000_0000n + BigInt((1 << 20) - 2), len: 4 } });
      const f = await peer.take((m) => m.cmd === 'DMA_READ' && m.id === id);
      expect(f.error).to.equal('FAULT');
      expect((f.body as { message: string }).message).to.match(/not in memory the driver mapped/);

      const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
      peer.send({ cmd: 'DMA_WRITE', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { addr: 0x1_0000_1001n, data } });
      id = peer.id();
      peer.send({ cmd: 'DMA_WRITE', id, reply: false, posted: true, error: 'NONE', body: { addr: 0x9000n, data } });
      const e = await peer.take((m) => m.cmd === 'ERROR');
      expect(e.error).to.equal('FAULT');
      expect(e.body).to.deep.include({ ref_id: id });
      expect(Buffer.from(mem.subarray(0x1001, 0x1001 + 5000)).equals(Buffer.from(data))).to.equal(true);
      expect(host.stats().dma_faults).to.equal(2n);
    });

    it('an interrupt after a DMA write finds the write already in host memory', async function () {
      const { host } = await attach();
      const mem = host.map(0x2000n, 4096);
      const seen: number[] = [];
      host.on('interrupt', () => seen.push(mem[0] ?? -1));
      for (let i = 1; i <= 100; i++) {
        peer.send({ cmd: 'DMA_WRITE', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { addr: 0x2000n, data: Uint8Array.of(i) } });
        peer.send({ cmd: 'MSI', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { kind: IrqKind.MSI, vector: 0 } });
      }
      peer.send({ cmd: 'INTX', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { level: true } });
      await statsOf();
      expect(seen).to.deep.equal([...Array.from({ length: 100 }, (_, i) => i + 1), 100]);
      expect(host.interrupts.filter((i) => i.kind === 'msi')).to.have.length(100);
      expect(host.intxLevel).to.equal(true);
    });
  });

  describe('bad input and ends', function () {
    it('a malformed request gets a coded failed reply and the session goes on', async function () {
      await attach();
      // A DMA_READ whose body is a msgpack map with a string where a number belongs.
      const body = Buffer.from([0x82, 0xa4, ...Buffer.from('addr'), 0xa1, 0x78, 0xa3, ...Buffer.from('len'), 0x04]);
      const h = Buffer.alloc(16);
      h.writeUInt32LE(body.length, 0);
      h.writeUInt32LE(77, 4);
      h.writeUInt16LE(0x0040, 8);
      peer.raw(Buffer.concat([h, body]));
      const r = await peer.take((m) => m.id === 77 && m.reply);
      expect(r.error).to.equal('TYPE');
      expect((await statsOf()).errors_in).to.equal(1n);
    });

    it('garbage closes the connection with an ERROR and removes the device from the host', async function () {
      const { host } = await attach();
      const junk = Buffer.alloc(16, 0xff); // a header whose size is far above MAX_BODY
      peer.raw(junk);
      const e = await peer.take((m) => m.cmd === 'ERROR');
      expect(e.error).to.equal('TOO_BIG');
      await peer.closed();
      expect(host.isClosed).to.equal(true);
      expect(server.sessions.size).to.equal(0);
    });

    it('a fuzz of 1,500 model frames, most well-formed with edge values (seeded): nothing throws, the device works afterwards', async function () {
      const fuzz = new FrameFuzzer(Number(process.env.FUZZ_SEED ?? 0x5eed), ['DMA_READ', 'DMA_WRITE', 'MSI', 'INTX', 'MMIO_WRITE', 'STATS']);
      let { host } = await attach();
      host.map(0n, 0x20000); // some DMA lands
      const back: Message[] = [];
      let sent = 0;
      let sessions = 0;
      while (sent < 1500) {
        for (let i = 0; i < 100 && !peer.ended; i++, sent++) peer.raw(fuzz.frame(() => peer.id()));
        // A STATS round trip: everything before it was handled (or the session ended).
        await statsOf().catch(() => undefined);
        back.push(...peer.received.splice(0));
        if (peer.ended) {
          // Closed by the gateway (with its reason sent first): the device left the host; a new session works.
          sessions++;
          expect(host.isClosed, `seed ${fuzz.seed}, ${sent} frames`).to.equal(true);
          peer.sock.destroy();
          peer = await ModelPeer.connect(join(dir, 'gw.sock'));
          ({ host } = await attach());
          host.map(0n, 0x20000);
        }
      }
      const t = tally(back.filter((m) => m.cmd !== 'STATS'));
      console.log(`      ${sent} frames, seed 0x${fuzz.seed.toString(16)}: ${t.text}, ${sessions} sessions closed and reopened`);
      expect(t.ok, 'well-formed requests were carried out').to.be.greaterThan(sent / 20);
      expect(t.refused, 'bad ones were refused').to.be.greaterThan(sent / 10);
      // The session (or its successor) still relays: a driver write reaches the model.
      host.driverWrite(0, 0x10, 4, 0x5eed);
      const w = await peer.take((m) => m.cmd === 'MMIO_WRITE' && (m.body as { value: bigint }).value === 0x5eedn);
      expect(w.posted).to.equal(true);
    });

    it('the model going away removes the device; a driver read then reads all-ones', async function () {
      const { host } = await attach();
      const pending = host.driverRead(0, 0x800, 4);
      await peer.take((m) => m.cmd === 'MMIO_READ');
      peer.sock.destroy();
      expect(await pending).to.equal(0xffff_ffff_ffff_ffffn & 0xffff_ffffn);
      expect(host.isClosed).to.equal(true);
    });

    it('backpressure: a model that stops reading pauses the host; nothing is dropped or reordered', async function () {
      const { host } = await attach();
      peer.sock.pause();
      const N = 200_000;
      let paused = 0;
      const origPause = host.pause.bind(host);
      host.pause = () => {
        paused++;
        origPause();
      };
      for (let i = 0; i < N; i++) host.driverWrite(0, 0x0, 4, i);
      // Let the socket fill up.
      await new Promise((r) => setTimeout(r, 200));
      expect(paused).to.be.greaterThan(0);
      peer.sock.resume();
      const deadline = Date.now() + 30_000;
      while (peer.received.length < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const writes = peer.received.splice(0);
      expect(writes).to.have.length(N);
      writes.forEach((m, i) => {
        if (m.cmd !== 'MMIO_WRITE' || m.reply || m.body.value !== BigInt(i)) expect.fail(`write ${i}: ${m.cmd} ${String((m.body as { value?: bigint }).value)}`);
      });
      expect((await statsOf()).mmio_writes).to.equal(BigInt(N));
    });
  });
});

/** A message as the model took it: off the socket or off the g2m ring, in the order the FENCEs give. */
interface Arrived {
  m: Message;
  path: 'socket' | 'ring';
}

/**
 * A version-2 model: reads its socket itself (native.recvFds) to take the
 * RINGS frame's descriptors, attaches g2m as consumer and m2g as producer,
 * and keeps the FENCE rule both ways (docs/protocol.md, "The rings in a
 * session"). It answers the capability walk and MMIO_READs like ModelPeer.
 */
class RingModelPeer {
  /** Everything the gateway sent, in the order the FENCE rule puts it (FENCEs left out). */
  readonly arrived: Arrived[] = [];
  /** Every g2m record in ring order, FENCEs included. */
  readonly records: RecordMessage[] = [];
  /** Descriptors that came with the RINGS frame. */
  fdsReceived = 0;
  rings: RingsRequest | null = null;
  refuseRings = false;
  /** The bulk area (version 4) once BULK was answered; refuseBulk says no to it. */
  bulk: Uint8Array | null = null;
  refuseBulk = false;
  /** Requests this peer leaves unanswered, as a hung model would. */
  readonly ignore = new Set<string>();
  /** false: leave g2m alone until startConsuming() (backpressure). */
  consuming = true;
  readValue = 0x5a5an;
  ended = false;
  mmioWrites = 0;
  readonly config = new Uint8Array(256);
  private readonly fd: number;
  private readonly poller: { close(): void };
  private readonly reader = new FrameReader();
  private nextId = 1;
  private fds: number[] = [];
  private g2m: RingConsumer | null = null;
  private m2g: RingProducer | null = null;
  private maps: ArrayBuffer[] = [];
  private ringFds: number[] = [];
  private sent = 0;
  private received = 0;
  private handled = 0;
  private fence = 0;
  private held: Message[] = [];
  private waiting = false;
  private pendingRecords: RecordMessage[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly sock: Socket) {
    this.config[0x06] = 0x10;
    this.config[0x34] = 0x50;
    this.config[0x50] = 0x05;
    this.fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    this.poller = new native.Poller(this.fd, () => this.onReadable());
  }

  /**
   * Connects, paused before it connects: Node never reads this socket, we
   * do (a poller on its fd). That poller takes the fd's place in libuv, so a
   * write Node cannot finish at once never finishes: write in few, small
   * pieces.
   */
  static connect(path: string): Promise<RingModelPeer> {
    return new Promise((resolve, reject) => {
      const s = new Socket();
      s.pause();
      s.once('error', reject);
      s.connect(path, () => resolve(new RingModelPeer(s)));
    });
  }

  private onReadable(): void {
    for (;;) {
      const r = native.recvFds(this.fd, 1 << 16);
      if (r === null) break;
      this.fds.push(...r.fds);
      this.fdsReceived += r.fds.length;
      if (r.bytes.length === 0) {
        this.ended = true;
        this.poller.close();
        break;
      }
      for (const f of this.reader.push(r.bytes)) this.onSocket(f);
    }
    this.wake();
  }

  private onSocket(f: FrameResult): void {
    if (!f.ok) throw new Error(`the gateway sent a frame the codec refuses: ${f.error.code}`);
    if (this.m2g === null) {
      this.take(f.message, 'socket');
      return;
    }
    this.received++;
    this.held.push(f.message);
    this.release();
    if (this.waiting && this.handled >= this.fence) {
      this.waiting = false;
      while (!this.waiting && this.pendingRecords.length > 0) this.takeRecord(this.pendingRecords.shift() as RecordMessage);
    }
  }

  private release(): void {
    while (this.handled < this.fence && this.held.length > 0) {
      this.handled++;
      this.take(this.held.shift() as Message, 'socket');
    }
  }

  private takeRecord(m: RecordMessage): void {
    if (this.waiting) {
      this.pendingRecords.push(m);
      return;
    }
    if (m.cmd !== 'FENCE') {
      this.take(m, 'ring');
      return;
    }
    expect(m.body.count, 'FENCE counts run 1, 2, 3...').to.equal(this.fence + 1);
    this.fence = m.body.count;
    this.release();
    if (this.handled < this.fence) this.waiting = true;
  }

  /** A message in its turn: kept, and answered where the model answers. */
  private take(m: Message, path: 'socket' | 'ring'): void {
    this.arrived.push({ m, path });
    if (m.cmd === 'MMIO_WRITE') this.mmioWrites++;
    if (m.reply || this.ignore.has(m.cmd)) return;
    if (m.cmd === 'RINGS') this.onRings(m.id, m.body);
    else if (m.cmd === 'BULK') this.onBulk(m.id, m.body.size);
    else if (m.cmd === 'CONFIG_READ') {
      let value = 0;
      for (let i = m.body.size - 1; i >= 0; i--) value = value * 256 + (this.config[m.body.offset + i] ?? 0);
      this.send({ cmd: 'CONFIG_READ', id: m.id, reply: true, posted: false, error: 'NONE', body: { value } });
    } else if (m.cmd === 'MMIO_READ') {
      this.send({ cmd: 'MMIO_READ', id: m.id, reply: true, posted: false, error: 'NONE', body: { value: this.readValue & ((1n << BigInt(8 * m.body.size)) - 1n) } });
    }
  }

  private onRings(id: number, b: RingsRequest): void {
    this.rings = b;
    const fds = this.fds.splice(0);
    if (this.refuseRings || fds.length !== 5) {
      for (const fd of fds) native.close(fd);
      this.send({ cmd: 'RINGS', id, reply: true, posted: false, error: 'INVALID', body: { message: `refused (${fds.length} descriptors)` } });
      return;
    }
    const [memfd, g2mData, g2mSpace, m2gData, m2gSpace] = fds as [number, number, number, number, number];
    const span = Math.ceil((256 + b.slot_size * b.slot_count) / 4096) * 4096;
    this.maps.push(native.mmap(memfd, span, Number(b.g2m_offset)), native.mmap(memfd, span, Number(b.m2g_offset)));
    native.close(memfd);
    this.ringFds = [g2mData, g2mSpace, m2gData, m2gSpace];
    this.g2m = new RingConsumer(this.maps[this.maps.length - 2] as ArrayBuffer, g2mData, g2mSpace);
    this.send({ cmd: 'RINGS', id, reply: true, posted: false, error: 'NONE', body: {} });
    // From the reply on: the producer side is up, and the gateway's socket frames are counted.
    this.m2g = new RingProducer(this.maps[this.maps.length - 1] as ArrayBuffer, m2gData, m2gSpace);
    if (this.consuming) this.startConsuming();
  }

  private onBulk(id: number, size: number): void {
    const fds = this.fds.splice(0);
    if (this.refuseBulk || fds.length !== 1) {
      for (const fd of fds) native.close(fd);
      this.send({ cmd: 'BULK', id, reply: true, posted: false, error: 'INVALID', body: { message: `refused (${fds.length} descriptors)` } });
      return;
    }
    const map = native.mmap(fds[0] as number, size, 0);
    native.close(fds[0] as number);
    this.maps.push(map);
    this.bulk = new Uint8Array(map);
    this.send({ cmd: 'BULK', id, reply: true, posted: false, error: 'NONE', body: {} });
  }

  startConsuming(): void {
    this.consuming = true;
    const g2m = this.g2m;
    if (g2m === null) return;
    const out = new Uint8Array(64 * 256);
    g2m.start(out, (o, n) => {
      for (let i = 0; i < n; i++) {
        const m = decodeRecord(new DataView(o.buffer, o.byteOffset + i * 64, 64), 0, 64);
        this.records.push(m);
        this.takeRecord(m);
      }
      this.wake();
    }, (e) => {
      throw e;
    });
  }

  get ringsUp(): boolean {
    return this.m2g !== null;
  }

  id(): number {
    return this.nextId++;
  }

  /** A message the proper way: hot ones on m2g, the rest on the socket after a FENCE. */
  send(m: Message): void {
    const ringable = m.cmd === 'MSI' || m.cmd === 'INTX' || (m.cmd === 'MMIO_WRITE' && !m.reply) || (m.cmd === 'MMIO_READ' && m.reply);
    if (this.m2g !== null && ringable) {
      this.ringPush(m as RecordMessage);
      return;
    }
    if (this.m2g !== null) this.fenceNext();
    this.socketWrite(m);
  }

  /** The FENCE of the next socket frame, on m2g. */
  fenceNext(commit = true): void {
    this.sent++;
    this.ringPush({ cmd: 'FENCE', id: this.sent, reply: false, posted: true, error: 'NONE', body: { count: this.sent } }, commit);
  }

  ringPush(m: RecordMessage, commit = true): void {
    const p = this.m2g as RingProducer;
    const at = p.reserve();
    if (at < 0) throw new Error('m2g full');
    encodeRecord(p.view, at, m);
    if (commit) p.commit();
  }

  /** Raw bytes into the next m2g slot, published. */
  ringRaw(bytes: Uint8Array): void {
    const p = this.m2g as RingProducer;
    const at = p.reserve();
    p.bytes.set(bytes, at);
    p.commit();
  }

  ringCommit(): void {
    this.m2g?.commit();
  }

  socketWrite(m: Message): void {
    this.sock.write(encodeFrame(m));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until a message arrived that matches; returns it. */
  async waitFor(pred: (a: Arrived) => boolean, timeoutMs = 10_000): Promise<Arrived> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = this.arrived.find(pred);
      if (a) return a;
      // After the end, what the rule still holds back may come off the ring.
      if (this.ended && this.m2g === null) throw new Error(`connection closed; got ${this.arrived.map((x) => x.m.cmd).join(',')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${this.arrived.slice(-5).map((x) => `${x.m.cmd}${x.m.reply ? '/r' : ''}`).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async hello(versionMin = 1, versionMax = 2): Promise<Message> {
    const id = this.id();
    this.socketWrite({ cmd: 'HELLO', id, reply: false, posted: false, error: 'NONE', body: { version_min: versionMin, version_max: versionMax, role: Role.MODEL, name: 'ring-model-peer' } });
    return (await this.waitFor((a) => a.m.cmd === 'HELLO' && a.m.id === id)).m;
  }

  async device(desc: DeviceRequest = CARD): Promise<Message> {
    const id = this.id();
    this.socketWrite({ cmd: 'DEVICE', id, reply: false, posted: false, error: 'NONE', body: desc });
    return (await this.waitFor((a) => a.m.cmd === 'DEVICE' && a.m.id === id)).m;
  }

  destroy(): void {
    this.g2m?.stop();
    this.m2g?.close();
    this.poller.close();
    this.sock.destroy();
    setImmediate(() => {
      for (const b of this.maps) native.munmap(b);
      for (const fd of [...this.ringFds, ...this.fds]) native.close(fd);
      this.maps = [];
      this.ringFds = [];
      this.fds = [];
    });
  }
}

/** A logger that keeps what it is told. */
function keptLog(): { log: Logger; lines: { level: string; msg: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const log: Logger = {
    debug: (msg, fields) => lines.push({ level: 'debug', msg, fields: fields ?? {} }),
    info: (msg, fields) => lines.push({ level: 'info', msg, fields: fields ?? {} }),
    warn: (msg, fields) => lines.push({ level: 'warn', msg, fields: fields ?? {} }),
    error: (msg, fields) => lines.push({ level: 'error', msg, fields: fields ?? {} }),
    child: () => log,
  };
  return { log, lines };
}

describe('gateway relay at version 2: the rings (FakeHost, a model peer on the real memfd and eventfds)', function () {
  this.timeout(60_000);
  let dir: string;
  let backend: FakeBackend;
  let server: GatewayServer;
  let peer: RingModelPeer;
  let kept: ReturnType<typeof keptLog>;

  async function start(opts: { rings?: boolean; ringSlots?: number; bulkBytes?: number } = {}): Promise<void> {
    kept = keptLog();
    server = new GatewayServer({ backend, name: 'gateway-under-test', requestTimeoutMs: 2000, log: kept.log, ...opts });
    await server.listen(join(dir, 'gw2.sock'));
    peer = await RingModelPeer.connect(join(dir, 'gw2.sock'));
  }

  async function attach(versionMax = 2): Promise<{ host: FakeHost; session: ModelSession }> {
    const made = backend.nextDevice();
    const sessionReady = server.nextDevice();
    expect((await peer.hello(1, versionMax)).error).to.equal('NONE');
    expect((await peer.device()).error).to.equal('NONE');
    return { host: await made, session: await sessionReady };
  }

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-rings-'));
    backend = new FakeBackend(1000);
  });

  afterEach(async function () {
    peer?.destroy();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('RINGS right after the DEVICE reply, before the capability walk: five descriptors, both rings formatted, then the hot path is on them', async function () {
    await start();
    const { host, session } = await attach();
    expect(session.version).to.equal(2);
    expect(session.ringsUp).to.equal(true);
    expect(peer.fdsReceived).to.equal(5);
    expect(peer.rings).to.deep.equal({ slot_size: 64, slot_count: 4096, g2m_offset: 0n, m2g_offset: BigInt(Math.ceil((256 + 64 * 4096) / 4096) * 4096) });
    const cmds = peer.arrived.map((a) => a.m.cmd);
    expect(cmds.slice(0, 3)).to.deep.equal(['HELLO', 'DEVICE', 'RINGS']);
    expect(cmds.slice(3).every((c) => c === 'CONFIG_READ')).to.equal(true);
    // The walk went over the socket after the rings came up: each frame behind its FENCE.
    expect(peer.records.filter((r) => r.cmd === 'FENCE').length).to.equal(5);
    host.driverWrite(0, 0x40, 4, 0x1234);
    const w = await peer.waitFor((a) => a.m.cmd === 'MMIO_WRITE');
    expect(w.path).to.equal('ring');
    expect(w.m.body).to.deep.equal({ bar: 0, offset: 0x40n, size: 4, value: 0x1234n });
    // A driver read goes out on the ring and its answer comes back on the ring.
    expect(await host.driverRead(0, 0x800, 4)).to.equal(0x5a5an);
    expect(peer.arrived.find((a) => a.m.cmd === 'MMIO_READ')?.path).to.equal('ring');
    expect(kept.lines.some((l) => l.msg === 'the hot path rides the rings')).to.equal(true);
  });

  it('a model that refuses RINGS, a version-1 model and rings: false all stay on the socket', async function () {
    await start();
    peer.refuseRings = true;
    let { host, session } = await attach();
    expect(session.ringsUp).to.equal(false);
    expect(kept.lines.some((l) => l.level === 'warn' && /refused the rings/.test(l.msg))).to.equal(true);
    host.driverWrite(0, 0x40, 4, 7);
    expect((await peer.waitFor((a) => a.m.cmd === 'MMIO_WRITE')).path).to.equal('socket');
    expect(await host.driverRead(0, 0x800, 4)).to.equal(0x5a5an);
    peer.destroy();
    await server.close();

    await start();
    ({ host, session } = await attach(1));
    expect(session.version).to.equal(1);
    expect(session.ringsUp).to.equal(false);
    expect(peer.arrived.some((a) => a.m.cmd === 'RINGS')).to.equal(false);
    expect(peer.fdsReceived).to.equal(0);
    host.driverWrite(0, 0x40, 4, 8);
    expect((await peer.waitFor((a) => a.m.cmd === 'MMIO_WRITE')).path).to.equal('socket');
    peer.destroy();
    await server.close();

    await start({ rings: false });
    ({ session } = await attach());
    expect(session.version).to.equal(2);
    expect(session.ringsUp).to.equal(false);
    expect(peer.arrived.some((a) => a.m.cmd === 'RINGS')).to.equal(false);
  });

  it('100,000 posted writes reach the model through the ring, in program order, with consecutive ids', async function () {
    await start();
    const { host, session } = await attach();
    const N = 100_000;
    const before = peer.arrived.length;
    for (let i = 0; i < N; i++) host.driverWrite(0, (i % 64) * 4, 4, i);
    await peer.waitFor(() => peer.arrived.length - before >= N, 30_000);
    const got = peer.arrived.slice(before);
    expect(got).to.have.length(N);
    const first = got[0]?.m.id ?? 0;
    got.forEach((a, i) => {
      const b = a.m.body as { offset: bigint; value: bigint };
      if (a.path !== 'ring' || a.m.cmd !== 'MMIO_WRITE' || a.m.id !== first + i || b.value !== BigInt(i) || b.offset !== BigInt((i % 64) * 4))
        expect.fail(`write ${i}: ${a.path} ${a.m.cmd} id ${a.m.id} value ${String(b.value)}`);
    });
    expect(session.counters.mmio_writes).to.equal(BigInt(N));
    expect(session.ringStats()?.g2m.fullTimeouts).to.equal(0n);
  });

  it('a full g2m ring pauses the host (counted); nothing is dropped or reordered when the model drains it', async function () {
    await start({ ringSlots: 64 });
    peer.consuming = false;
    // The capability walk needs the model to read g2m (its FENCEs): it times out, and the host starts without it.
    const { host, session } = await attach();
    let paused = 0;
    const origPause = host.pause.bind(host);
    host.pause = () => {
      paused++;
      origPause();
    };
    const N = 20_000;
    for (let i = 0; i < N; i++) host.driverWrite(0, 0x0, 4, i);
    await new Promise((r) => setTimeout(r, 200));
    expect(paused).to.be.greaterThan(0);
    expect(session.ringFullWaits).to.be.greaterThan(0);
    expect(Number(session.ringStats()?.g2m.fullWaits)).to.be.greaterThan(0);
    peer.startConsuming();
    // (one test per wake-up: counting with filter() there would be quadratic)
    await peer.waitFor(() => peer.mmioWrites >= N, 30_000);
    const writes = peer.arrived.filter((a) => a.m.cmd === 'MMIO_WRITE');
    expect(writes).to.have.length(N);
    writes.forEach((a, i) => {
      if (a.path !== 'ring' || (a.m.body as { value: bigint }).value !== BigInt(i)) expect.fail(`write ${i}: ${a.path} ${String((a.m.body as { value: bigint }).value)}`);
    });
    expect(session.closed).to.equal(false);
  });

  it('model -> gateway: a socket frame after ring records waits for them, and ring records after a FENCE wait for its frame', async function () {
    await start();
    const { host, session } = await attach();
    const events: string[] = [];
    session.tracer = (ev: TraceEvent) => events.push(ev.kind === 'msi' ? `msi${ev.vector}` : ev.kind);
    host.map(0x10000n, 4096);
    const dmaWrite = (v: number): Message => ({ cmd: 'DMA_WRITE', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { addr: 0x10000n, data: Uint8Array.from([v]) } });
    const msi = (vector: number): RecordMessage => ({ cmd: 'MSI', id: peer.id(), reply: false, posted: true, error: 'NONE', body: { kind: IrqKind.MSI, vector } });
    // 1. MSI 1 and MSI 2 on the ring, published only after the DMA_WRITE behind them is on the socket.
    peer.ringPush(msi(1), false);
    peer.ringPush(msi(2), false);
    peer.fenceNext(false);
    peer.socketWrite(dmaWrite(0xaa));
    await new Promise((r) => setTimeout(r, 50));
    expect(events, 'the socket frame waits for its FENCE').to.deep.equal([]);
    peer.ringCommit();
    // 2. FENCE and MSI 3 on the ring first; the DMA_WRITE comes 50 ms later: MSI 3 waits for it.
    peer.fenceNext();
    peer.ringPush(msi(3));
    await new Promise((r) => setTimeout(r, 50));
    expect(events).to.deep.equal(['msi1', 'msi2', 'dma_write']);
    peer.socketWrite(dmaWrite(0xbb));
    const irq = host.nextInterrupt();
    await new Promise((r) => setTimeout(r, 50));
    expect(events).to.deep.equal(['msi1', 'msi2', 'dma_write', 'dma_write', 'msi3']);
    await irq.catch(() => undefined);
    // The interrupt after the DMA write found it in host memory.
    expect(host.dmaRead(0x10000n, 1)[0]).to.equal(0xbb);
  });

  it('gateway -> model: a driver write on the ring comes before the DMA_READ reply that followed it on the socket', async function () {
    await start();
    peer.consuming = false;
    const { host } = await attach().catch(() => ({ host: null, session: null }));
    // (with g2m untouched the capability walk timed out; the device still came up)
    expect(host).to.not.equal(null);
    const h = host as FakeHost;
    h.map(0x20000n, 16).set([1, 2, 3, 4]);
    const fencesBefore = peer.records.length;
    h.driverWrite(0, 0x44, 4, 0xd00b);
    const id = peer.id();
    peer.send({ cmd: 'DMA_READ', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x20000n, len: 4 } });
    await new Promise((r) => setTimeout(r, 100));
    // The reply is on the socket, unread by the rule: its FENCE is behind the write on g2m.
    expect(peer.arrived.some((a) => a.m.cmd === 'DMA_READ')).to.equal(false);
    peer.startConsuming();
    const reply = await peer.waitFor((a) => a.m.cmd === 'DMA_READ' && a.m.reply);
    const iw = peer.arrived.findIndex((a) => a.m.cmd === 'MMIO_WRITE');
    expect(iw).to.be.greaterThan(-1);
    expect(iw).to.be.lessThan(peer.arrived.indexOf(reply));
    expect(reply.m.body).to.deep.equal({ data: Uint8Array.from([1, 2, 3, 4]) });
    const tail = peer.records.slice(fencesBefore).map((r) => r.cmd);
    expect(tail.slice(-2)).to.deep.equal(['MMIO_WRITE', 'FENCE']);
  });

  it('version 3: DMA_READ_AHEAD reads up to the end of the mapping and FAULTs only an unmapped addr; DMA_READ past the end still FAULTs', async function () {
    await start();
    const { host, session } = await attach(3);
    expect(session.version).to.equal(3);
    expect(session.ringsUp).to.equal(true);
    const base = 0x1_0000_0000n;
    const mem = host.map(base, 3 * 4096 + 100);
    for (let i = 0; i < mem.length; i++) mem[i] = (i * 13 + 5) & 0xff;
    async function ask(cmd: 'DMA_READ' | 'DMA_READ_AHEAD', addr: bigint, len: number): Promise<Message> {
      const id = peer.id();
      peer.send({ cmd, id, reply: false, posted: false, error: 'NONE', body: { addr, len } });
      return (await peer.waitFor((a) => a.m.cmd === cmd && a.m.reply && a.m.id === id)).m;
    }

    // Past the end: exactly the bytes up to it.
    let r = await ask('DMA_READ_AHEAD', base + 5n, 65_536);
    expect(r.error).to.equal('NONE');
    const clamped = (r.body as { data: Uint8Array }).data;
    expect(clamped.length).to.equal(mem.length - 5);
    expect(Buffer.from(clamped).equals(Buffer.from(mem.subarray(5)))).to.equal(true);
    // Inside the mapping: len bytes; the last mapped byte alone: 1 byte.
    r = await ask('DMA_READ_AHEAD', base + 4096n, 16);
    expect(Buffer.from((r.body as { data: Uint8Array }).data).equals(Buffer.from(mem.subarray(4096, 4112)))).to.equal(true);
    r = await ask('DMA_READ_AHEAD', base + BigInt(mem.length - 1), 4096);
    expect((r.body as { data: Uint8Array }).data).to.deep.equal(mem.subarray(mem.length - 1));
    expect(session.counters.errors_out).to.equal(0n);
    expect(session.counters.dma_reads).to.equal(3n);
    expect(session.counters.dma_bytes).to.equal(BigInt(mem.length - 5 + 16 + 1));

    // addr itself unmapped: FAULT, as is a DMA_READ that runs past the end.
    r = await ask('DMA_READ_AHEAD', base + BigInt(mem.length), 4096);
    expect(r.error).to.equal('FAULT');
    r = await ask('DMA_READ_AHEAD', 0x9000n, 1);
    expect(r.error).to.equal('FAULT');
    r = await ask('DMA_READ', base + 5n, 65_536);
    expect(r.error).to.equal('FAULT');
    expect(session.counters.errors_out).to.equal(3n);
    expect(session.counters.dma_reads).to.equal(3n);
  });

  it('version 4: BULK (one descriptor) before RINGS; DMA_READ_BULK puts the bytes in the area at offset and replies with their count', async function () {
    await start({ bulkBytes: 64 * 1024 });
    const { host, session } = await attach(4);
    expect(session.version).to.equal(4);
    expect(session.bulkBytes).to.equal(64 * 1024);
    expect(session.ringsUp).to.equal(true);
    expect(peer.fdsReceived).to.equal(1 + 5);
    expect(peer.arrived.map((a) => a.m.cmd).slice(0, 4)).to.deep.equal(['HELLO', 'DEVICE', 'BULK', 'RINGS']);
    expect(peer.arrived[2]?.m.body).to.deep.equal({ size: 64 * 1024 });
    const area = peer.bulk as Uint8Array;
    expect(area.length).to.equal(64 * 1024);
    const base = 0x2_0000_0000n;
    const mem = host.map(base, 2 * 4096 + 10);
    for (let i = 0; i < mem.length; i++) mem[i] = (i * 31 + 7) & 0xff;
    async function ask(addr: bigint, len: number, offset: number, ahead: boolean): Promise<Message> {
      const id = peer.id();
      peer.send({ cmd: 'DMA_READ_BULK', id, reply: false, posted: false, error: 'NONE', body: { addr, len, offset, ahead } });
      return (await peer.waitFor((a) => a.m.cmd === 'DMA_READ_BULK' && a.m.reply && a.m.id === id)).m;
    }
    const at = (offset: number, n: number): Buffer => Buffer.from(area.subarray(offset, offset + n));

    let r = await ask(base + 3n, 5000, 100, false);
    expect(r.error).to.equal('NONE');
    expect(r.body).to.deep.equal({ len: 5000 });
    expect(at(100, 5000).equals(Buffer.from(mem.subarray(3, 5003)))).to.equal(true);
    // A read-ahead past the end of the mapping: what is mapped, and its count.
    r = await ask(base + 4096n, 65_536 - 8192, 8192, true);
    expect(r.body).to.deep.equal({ len: 4096 + 10 });
    expect(at(8192, 4106).equals(Buffer.from(mem.subarray(4096)))).to.equal(true);
    expect(session.counters.dma_reads).to.equal(2n);
    expect(session.counters.dma_bytes).to.equal(BigInt(5000 + 4106));

    // Refused, and nothing written into the area: past its end (INVALID), unmapped (FAULT), a plain read past the mapping (FAULT).
    area.fill(0xee, 0, 16);
    r = await ask(base, 4096, 64 * 1024 - 4095, false);
    expect(r.error).to.equal('INVALID');
    expect((r.body as { message: string }).message).to.match(/bulk area holds 65536/);
    r = await ask(0x9000n, 16, 0, true);
    expect(r.error).to.equal('FAULT');
    r = await ask(base, mem.length + 1, 0, false);
    expect(r.error).to.equal('FAULT');
    expect([...area.subarray(0, 16)].every((b) => b === 0xee)).to.equal(true);
    expect(session.counters.dma_reads).to.equal(2n);
    expect(session.counters.errors_out).to.equal(3n);
  });

  it('version 4 with the bulk area refused, or none offered: no bulk area, DMA_READ_BULK is STATE; version 3: STATE, no BULK sent', async function () {
    await start();
    peer.refuseBulk = true;
    let { host, session } = await attach(4);
    expect(session.bulkBytes).to.equal(0);
    expect(session.ringsUp).to.equal(true);
    expect(kept.lines.some((l) => l.level === 'warn' && /refused the bulk area/.test(l.msg))).to.equal(true);
    host.map(0x4000n, 4096);
    const askBulk = async (): Promise<Message> => {
      const id = peer.id();
      peer.send({ cmd: 'DMA_READ_BULK', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x4000n, len: 16, offset: 0, ahead: false } });
      return (await peer.waitFor((a) => a.m.cmd === 'DMA_READ_BULK' && a.m.reply && a.m.id === id)).m;
    };
    let r = await askBulk();
    expect(r.error).to.equal('STATE');
    expect((r.body as { message: string }).message).to.match(/BULK was not answered/);
    peer.destroy();
    await server.close();

    await start({ bulkBytes: 0 });
    expect((await attach(4)).session.bulkBytes).to.equal(0);
    expect(peer.arrived.some((a) => a.m.cmd === 'BULK')).to.equal(false);
    peer.destroy();
    await server.close();

    await start();
    ({ host, session } = await attach(3));
    expect(session.version).to.equal(3);
    expect(peer.arrived.some((a) => a.m.cmd === 'BULK')).to.equal(false);
    expect(peer.fdsReceived).to.equal(5);
    host.map(0x4000n, 4096);
    r = await askBulk();
    expect(r.error).to.equal('STATE');
    expect((r.body as { message: string }).message).to.match(/version 4/);
    expect(host.stats().dma_reads).to.equal(0n);
  });

  for (const cmd of ['BULK', 'RINGS'] as const) {
    it(`a model that never answers ${cmd}: the session closes after the request timeout with the reason, the device leaves the host`, async function () {
      await start();
      peer.ignore.add(cmd);
      const made = backend.nextDevice();
      expect((await peer.hello(1, 4)).error).to.equal('NONE');
      const session = [...server.sessions][0] as ModelSession;
      const closed = new Promise<string>((resolve) => session.once('close', resolve));
      expect((await peer.device()).error).to.equal('NONE');
      const host = await made;
      const t0 = Date.now();
      expect(await closed).to.equal(`the model did not answer ${cmd}`);
      expect(Date.now() - t0).to.be.within(1500, 4000);
      expect(host.isClosed).to.equal(true);
      const err = await peer.waitFor((a) => a.m.cmd === 'ERROR');
      expect(err.m.error).to.equal('TIMEOUT');
    });
  }

  it('version 2: DMA_READ_AHEAD is refused with STATE and reads nothing', async function () {
    await start();
    const { host, session } = await attach(2);
    expect(session.version).to.equal(2);
    host.map(0x4000n, 4096);
    const id = peer.id();
    peer.send({ cmd: 'DMA_READ_AHEAD', id, reply: false, posted: false, error: 'NONE', body: { addr: 0x4000n, len: 16 } });
    const r = (await peer.waitFor((a) => a.m.cmd === 'DMA_READ_AHEAD' && a.m.reply && a.m.id === id)).m;
    expect(r.error).to.equal('STATE');
    expect((r.body as { message: string }).message).to.match(/version 3/);
    expect(host.stats().dma_reads).to.equal(0n);
    expect(session.counters.dma_reads).to.equal(0n);
  });

  it('socket frames that never get their FENCE are not buffered without end: the session closes (STATE)', async function () {
    await start();
    const { host, session } = await attach();
    const closed = new Promise<string>((resolve) => session.once('close', resolve));
    // One write: the peer's poller owns its socket's fd in libuv, so a write Node has to queue would never go.
    peer.sock.write(Buffer.concat(Array.from({ length: 5000 }, () => encodeFrame({ cmd: 'STATS', id: peer.id(), reply: false, posted: false, error: 'NONE', body: {} }))));
    expect(await closed).to.match(/socket frames wait for a FENCE/);
    expect(kept.lines.some((l) => l.level === 'error' && /without their FENCE/.test(l.msg))).to.equal(true);
    expect(host.isClosed).to.equal(true);
  });

  it('a corrupt record on m2g closes the session with a logged reason; the device leaves the host, nothing crashes', async function () {
    await start();
    const { host, session } = await attach();
    const closed = new Promise<string>((resolve) => session.once('close', resolve));
    const bad = new Uint8Array(64);
    new DataView(bad.buffer).setUint32(0, 8, true);
    new DataView(bad.buffer).setUint32(4, 1, true);
    new DataView(bad.buffer).setUint16(8, 0x7777, true);
    peer.ringRaw(bad);
    expect(await closed).to.match(/corrupt ring record/);
    expect(kept.lines.some((l) => l.level === 'error' && /corrupt record/.test(l.msg))).to.equal(true);
    expect(host.isClosed).to.equal(true);
    expect(session.ringsUp).to.equal(false);
    // The peer gets the reason as an ERROR before the close.
    const e = await peer.waitFor((a) => a.m.cmd === 'ERROR');
    expect(e.m.error).to.equal('UNKNOWN_CMD');
  });
});
