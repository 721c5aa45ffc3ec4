// A test-only gateway for the QEMU bridge's tests: it listens on a UNIX
// socket, speaks the wire protocol (docs/protocol.md) with the generated
// codec, and stands in for the host: a fake host memory serves the model's
// DMA, and every frame the model sends is kept in order, so tests can check
// what arrived and in which order. The real gateway lives in gateway/.
//
// With `rings` (version 2) it offers the bridge the shared-memory rings the
// way the gateway does (RINGS with the memfd and eventfds over SCM_RIGHTS),
// puts MMIO_WRITE and MMIO_READ requests on g2m, takes the model's records
// off m2g, and keeps the FENCE rule both ways: `received` is then the order
// the model sent in, whichever path each message took.
//
// From version 3 it answers DMA_READ_AHEAD with what is mapped from addr
// on, as the gateway does, and counts refused DMA reads (`dmaFaults`). At
// version 4 (the default) with `bulk` it offers a bulk area (BULK, its memfd
// over SCM_RIGHTS) and answers DMA_READ_BULK into it; without `bulk` the
// bridge's reads stay on the socket. `version: 1`, `2` or `3` keeps the
// older sessions.
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameReader, type FrameResult } from '../../gateway/src/proto/frames.js';
import { decodeRecord, encodeRecord, RECORD_MAX, type RecordMessage } from '../../gateway/src/proto/ring-records.js';
import { native } from '../../gateway/src/native.js';
import { formatRing, ringBytes, RingConsumer, RingProducer } from '../../gateway/src/ring.js';
import {
  type CmdName,
  type DeviceRequest,
  encodeFrame,
  type ErrName,
  type FailureName,
  type HelloRequest,
  type Message,
  type MessageOf,
  type Region,
  Role,
  type StatsReply,
  VERSION_MAX,
  VERSION_MIN,
} from '../../proto/generated/wire.js';

/** Host memory the "driver" mapped for the device; anything else faults. */
export class HostMemory {
  private readonly ranges: { addr: bigint; data: Buffer }[] = [];

  /** Maps `data` (or `size` zero bytes) at `addr`; returns the live buffer. */
  map(addr: bigint | number, data: Buffer | number): Buffer {
    const buf = typeof data === 'number' ? Buffer.alloc(data) : data;
    const at = BigInt(addr);
    if (this.find(at, buf.length) !== null) throw new Error(`0x${at.toString(16)} is mapped already`);
    this.ranges.push({ addr: at, data: buf });
    return buf;
  }

  unmapAll(): void {
    this.ranges.length = 0;
  }

  /** The mapping holding all of [addr, addr + len), and the offset in it. */
  private find(addr: bigint, len: number): { data: Buffer; off: number } | null {
    for (const r of this.ranges) {
      if (addr >= r.addr && addr + BigInt(len) <= r.addr + BigInt(r.data.length)) {
        return { data: r.data, off: Number(addr - r.addr) };
      }
    }
    return null;
  }

  /** What a DMA_READ_AHEAD gets: from addr up to len or the end of its mapping; null when addr is not mapped. */
  readAhead(addr: bigint, len: number): Buffer | null {
    for (const r of this.ranges) {
      const end = r.addr + BigInt(r.data.length);
      if (addr >= r.addr && addr < end) return this.read(addr, Math.min(len, Number(end - addr)));
    }
    return null;
  }

  read(addr: bigint, len: number): Buffer | null {
    const f = this.find(addr, len);
    return f === null ? null : Buffer.from(f.data.subarray(f.off, f.off + len));
  }

  write(addr: bigint, data: Uint8Array): boolean {
    const f = this.find(addr, data.length);
    if (f === null) return false;
    f.data.set(data, f.off);
    return true;
  }
}

/** A failed reply from the model: its wire error and message. */
export class WireReplyError extends Error {
  override name = 'WireReplyError';
  constructor(
    readonly error: ErrName,
    readonly reply: Message,
  ) {
    super(`${reply.cmd} failed: ${error}: ${(reply.body as { message?: string }).message ?? ''}`);
  }
}

type RequestName = Exclude<CmdName, 'ERROR'>;
type RequestBody<C extends RequestName> = Extract<MessageOf<C>, { reply: false }>['body'];
type ReplyBody<C extends RequestName> = Extract<MessageOf<C>, { reply: true; error: 'NONE' }>['body'];

interface Pending {
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
}

export interface PeerOptions {
  /** Hold DMA_READ and DMA_READ_AHEAD replies back (the model's wait then times out). */
  holdDmaReads?: boolean;
  /** Answer DMA_READs and DMA_READ_AHEADs this late. */
  delayDmaReadsMs?: number;
  /** Answer DMA_READs with one byte less than asked for, DMA_READ_AHEADs with one byte more. */
  shortDmaReads?: boolean;
  /** The registers the DEVICE reply asks the model to keep current (default none). */
  shadow?: Region[];
  /** The version the HELLO reply picks (default VERSION_MAX). */
  version?: number;
  /** At version 2, offer the rings after the DEVICE reply, as the gateway does. */
  rings?: boolean;
  /** Slots per ring (default 4096). */
  ringSlots?: number;
  /** Never take anything off m2g (the model's ring fills up). */
  stallModelRing?: boolean;
  /** Send only this many of RINGS's five descriptors (0: a plain write), as a broken gateway would. */
  ringsFdCount?: number;
  /** At version 4, offer a bulk area of this many bytes (BULK) after the DEVICE reply, before the rings, as the gateway does. */
  bulk?: number;
  /** Send BULK with no descriptor, as a broken gateway would. */
  bulkNoFd?: boolean;
  /** Make the bulk memfd this many bytes, whatever BULK says (a lying gateway). */
  bulkFileBytes?: number;
  /** Answer DMA_READ_BULKs with a count one more than asked for. */
  longBulkReplies?: boolean;
  /** Hand over memory files (rings, bulk area) whose size is not sealed, as a careless gateway would. */
  unsealed?: boolean;
}

/** One connection's rings, and where each path stands (the FENCE rule). */
interface PeerRing {
  maps: ArrayBuffer[];
  eventfds: number[];
  g2m: RingProducer;
  m2g: RingConsumer;
  /** g2m records that found the ring full, in order. */
  backlog: Uint8Array[];
  draining: boolean;
  /** Socket frames sent since the rings came up (FENCE counts). */
  sent: number;
  /** The model's socket frames since its RINGS reply: received, handled; its last FENCE. */
  received: number;
  handled: number;
  fence: number;
  held: (Message | null)[];
  waiting: boolean;
  records: RecordMessage[];
}

const SLOT = 64;

function onRing(m: Message): m is RecordMessage {
  return (m.cmd === 'MMIO_WRITE' && !m.reply && m.posted) || (m.cmd === 'MMIO_READ' && !m.reply);
}

export class WirePeer {
  readonly memory = new HostMemory();
  /** Every message the model sent, in order, across connections. */
  readonly received: Message[] = [];
  /** Frames the model sent that the codec refused, with the reason. */
  readonly refused: { code: string; fatal: boolean }[] = [];
  /** The latest HELLO and DEVICE, and the shadow list this connection's DEVICE reply sent. */
  hello: HelloRequest | null = null;
  device: DeviceRequest | null = null;
  shadowSent: Region[] | null = null;
  /** Connections accepted, and closed, so far. */
  connections = 0;
  closes = 0;
  options: PeerOptions = {};
  /** The version this connection's HELLO reply picked. */
  version = 0;
  /** DMA_READs and DMA_READ_AHEADs refused with FAULT. */
  dmaFaults = 0;

  /** This connection's RINGS reply (null before, or without rings); records each way. */
  ringsReply: Message | null = null;
  bulkReply: Message | null = null;
  /** This connection's bulk area, once the model answered BULK. */
  private bulkArea: ArrayBuffer | null = null;
  ringRecordsIn = 0;
  ringRecordsOut = 0;

  private sock: Socket | null = null;
  private reader = new FrameReader();
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private ready = false;
  private ring: PeerRing | null = null;
  private ringsPending = false;
  private heldOut: Message[] = [];

  private constructor(private readonly server: Server) {
    server.on('connection', (s) => this.accept(s));
  }

  static async listen(path: string, options: PeerOptions = {}): Promise<WirePeer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const peer = new WirePeer(server);
    peer.options = options;
    return peer;
  }

  /** Whether this connection's hot path is on the rings. */
  get ringsUp(): boolean {
    return this.ring !== null;
  }

  /** Connected, HELLO and DEVICE answered: requests may go. */
  get isReady(): boolean {
    return this.ready && this.sock !== null;
  }

  private accept(s: Socket): void {
    this.sock?.destroy();
    this.dropRings();
    this.sock = s;
    this.reader = new FrameReader();
    this.nextId = 1;
    this.ready = false;
    this.shadowSent = null;
    this.ringsReply = null;
    this.bulkReply = null;
    this.dropBulk();
    this.ringRecordsIn = 0;
    this.ringRecordsOut = 0;
    this.connections++;
    s.on('data', (chunk: Buffer) => this.onData(s, chunk));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.sock !== s) return;
      this.sock = null;
      this.ready = false;
      this.dropRings();
      this.dropBulk();
      this.closes++;
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  private onData(s: Socket, chunk: Buffer): void {
    if (s !== this.sock) return;
    for (const r of this.reader.push(chunk)) {
      if (s !== this.sock) return;
      this.onFrame(r);
    }
  }

  private onFrame(r: FrameResult): void {
    if (!r.ok) this.refused.push({ code: r.error.code, fatal: r.fatal });
    const ring = this.ring;
    if (ring === null) {
      if (r.ok) this.take(r.message);
      return;
    }
    // Handled once the model's FENCE for it is off m2g (it is there already).
    ring.received++;
    ring.held.push(r.ok ? r.message : null);
    this.release(ring);
    if (ring.held.length > 0 && !ring.waiting) this.pullRing(ring);
    if (ring.waiting && ring.handled >= ring.fence) {
      ring.waiting = false;
      while (!ring.waiting && ring.records.length > 0 && this.ring === ring) this.takeRecord(ring, ring.records.shift() as RecordMessage);
    }
  }

  private take(m: Message): void {
    this.received.push(m);
    this.handle(m);
  }

  private release(ring: PeerRing): void {
    while (ring.handled < ring.fence && ring.held.length > 0 && this.ring === ring) {
      ring.handled++;
      const m = ring.held.shift();
      if (m) this.take(m);
    }
  }

  private takeRecord(ring: PeerRing, m: RecordMessage): void {
    if (ring.waiting) {
      ring.records.push(m);
      return;
    }
    this.ringRecordsIn++;
    if (m.cmd !== 'FENCE') {
      this.take(m);
      return;
    }
    if (m.body.count !== ring.fence + 1) throw new Error(`the model's FENCE ${m.body.count} after ${ring.fence}`);
    ring.fence = m.body.count;
    this.release(ring);
    if (ring.handled < ring.fence) ring.waiting = true;
  }

  private takeBatch(ring: PeerRing, out: Uint8Array, n: number): void {
    for (let i = 0; i < n && this.ring === ring; i++) {
      let m: RecordMessage;
      try {
        m = decodeRecord(new DataView(out.buffer, out.byteOffset + i * SLOT, SLOT), 0, SLOT);
      } catch (e) {
        this.refused.push({ code: (e as { code?: string }).code ?? 'ring', fatal: true });
        continue;
      }
      this.takeRecord(ring, m);
    }
  }

  private pullRing(ring: PeerRing): void {
    const out = new Uint8Array(SLOT * 64);
    while (this.ring === ring && !ring.waiting && ring.held.length > 0) {
      const n = ring.m2g.popBatch(out);
      if (n === 0) return;
      this.takeBatch(ring, out, n);
    }
  }

  /** RINGS, the way the gateway offers it: the memfd and four eventfds ride the frame. */
  /** After the DEVICE reply: the bulk area and the rings, as the options and the version say; then ready. */
  private async afterDevice(s: Socket): Promise<void> {
    if (this.options.bulk !== undefined && this.version >= 4) await this.offerBulk(s, this.options.bulk);
    if (this.sock !== s) return;
    if (this.options.rings === true && this.version >= 2) await this.offerRings(s);
    else this.ready = true;
  }

  /** BULK with its memfd; resolves once it is answered (or the connection went). */
  private async offerBulk(s: Socket, size: number): Promise<void> {
    const memfd = native.memfdCreate('wirepeer-bulk', this.options.bulkFileBytes ?? size, this.options.unsealed !== true);
    const map = native.mmap(memfd, this.options.bulkFileBytes ?? size, 0);
    const id = this.takeId();
    const answered = new Promise<void>((resolve) => {
      this.pending.set(id, {
        resolve: (m) => {
          this.bulkReply = m;
          if (m.error === 'NONE' && this.sock === s) this.bulkArea = map;
          else native.munmap(map);
          resolve();
        },
        reject: () => {
          native.munmap(map);
          resolve();
        },
      });
    });
    await this.sendWithFds(s, encodeFrame({ cmd: 'BULK', id, reply: false, posted: false, error: 'NONE', body: { size } }), this.options.bulkNoFd === true ? [] : [memfd]);
    native.close(memfd);
    await answered;
  }

  private dropBulk(): void {
    const area = this.bulkArea;
    this.bulkArea = null;
    if (area) native.munmap(area);
  }

  /** One frame with `fds` attached (none: a plain write), once nothing is queued in front of it. */
  private async sendWithFds(s: Socket, frame: Uint8Array, fds: number[]): Promise<void> {
    const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
    if (fds.length === 0) {
      s.write(frame);
      return;
    }
    for (let tries = 0; this.sock === s && tries <= 5000; tries++) {
      if (s.writableLength === 0) {
        const n = native.sendFds(fd, frame, fds);
        if (n > 0) {
          if (n < frame.length) s.write(frame.subarray(n));
          return;
        }
      }
      await sleep(1);
    }
  }

  private async offerRings(s: Socket): Promise<void> {
    const slots = this.options.ringSlots ?? 4096;
    const span = Math.ceil(ringBytes(SLOT, slots) / 4096) * 4096;
    const memfd = native.memfdCreate('wirepeer-rings', 2 * span, this.options.unsealed !== true);
    const maps = [native.mmap(memfd, span, 0), native.mmap(memfd, span, span)] as [ArrayBuffer, ArrayBuffer];
    formatRing(maps[0], SLOT, slots);
    formatRing(maps[1], SLOT, slots);
    const eventfds = [native.eventfd(0), native.eventfd(0), native.eventfd(0), native.eventfd(0)] as [number, number, number, number];
    const ring: PeerRing = {
      maps, eventfds,
      g2m: new RingProducer(maps[0], eventfds[0], eventfds[1]),
      m2g: new RingConsumer(maps[1], eventfds[2], eventfds[3]),
      backlog: [], draining: false, sent: 0, received: 0, handled: 0, fence: 0, held: [], waiting: false, records: [],
    };
    const id = this.takeId();
    const frame = encodeFrame({ cmd: 'RINGS', id, reply: false, posted: false, error: 'NONE', body: { slot_size: SLOT, slot_count: slots, g2m_offset: 0n, m2g_offset: BigInt(span) } });
    this.ringsPending = true;
    this.pending.set(id, {
      resolve: (m) => {
        this.ringsReply = m;
        if (m.error === 'NONE' && this.sock === s) {
          this.ring = ring;
          const out = new Uint8Array(SLOT * 256);
          if (this.options.stallModelRing !== true) ring.m2g.start(out, (o, n) => this.takeBatch(ring, o, n), (e) => this.refused.push({ code: e.message, fatal: true }));
        } else this.freeRing(ring);
        this.ringsPending = false;
        for (const h of this.heldOut.splice(0)) this.write(h);
        this.ready = this.sock === s;
      },
      reject: () => this.freeRing(ring),
    });
    await this.sendWithFds(s, frame, [memfd, ...eventfds].slice(0, this.options.ringsFdCount ?? 5));
    native.close(memfd);
  }

  private freeRing(ring: PeerRing): void {
    ring.m2g.stop();
    ring.g2m.close();
    setImmediate(() => {
      for (const m of ring.maps) native.munmap(m);
      for (const fd of ring.eventfds) native.close(fd);
    });
  }

  private dropRings(): void {
    const ring = this.ring;
    this.ring = null;
    this.ringsPending = false;
    this.heldOut = [];
    if (ring) this.freeRing(ring);
  }

  /** One record onto g2m, behind the backlog while the ring is full. */
  private pushRecord(ring: PeerRing, m: RecordMessage): void {
    this.ringRecordsOut++;
    if (ring.backlog.length === 0) {
      const at = ring.g2m.reserve();
      if (at >= 0) {
        encodeRecord(ring.g2m.view, at, m);
        ring.g2m.commit();
        return;
      }
    }
    const rec = new Uint8Array(RECORD_MAX);
    encodeRecord(new DataView(rec.buffer), 0, m);
    ring.backlog.push(rec);
    if (!ring.draining) void this.drainBacklog(ring);
  }

  private async drainBacklog(ring: PeerRing): Promise<void> {
    ring.draining = true;
    let head = 0;
    while (this.ring === ring && head < ring.backlog.length) {
      try {
        await ring.g2m.waitForSpace(10_000);
      } catch {
        if (this.ring !== ring) return;
        continue;
      }
      for (let at = ring.g2m.reserve(); at >= 0; at = ring.g2m.reserve()) {
        ring.g2m.bytes.set(ring.backlog[head++] as Uint8Array, at);
        if (head === ring.backlog.length) break;
      }
      ring.g2m.commit();
    }
    ring.backlog = [];
    ring.draining = false;
  }

  private handle(m: Message): void {
    if (m.reply) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.resolve(m);
      return;
    }
    switch (m.cmd) {
      case 'HELLO':
        this.hello = m.body;
        this.version = this.options.version ?? VERSION_MAX;
        this.write({
          cmd: 'HELLO',
          id: m.id,
          reply: true,
          posted: false,
          error: 'NONE',
          body: { version_min: VERSION_MIN, version_max: VERSION_MAX, version: this.version, role: Role.GATEWAY, name: 'wirepeer' },
        });
        break;
      case 'DEVICE':
        this.device = m.body;
        this.shadowSent = this.options.shadow ?? [];
        this.write({ cmd: 'DEVICE', id: m.id, reply: true, posted: false, error: 'NONE', body: { shadow: this.shadowSent } });
        if (this.sock) void this.afterDevice(this.sock);
        break;
      case 'DMA_READ': {
        if (this.options.holdDmaReads === true) break;
        const data = this.memory.read(m.body.addr, m.body.len);
        const reply = (): void => {
          if (data === null) this.dmaFault(m, m.body.addr, m.body.len);
          else this.write({ cmd: 'DMA_READ', id: m.id, reply: true, posted: false, error: 'NONE', body: { data: this.options.shortDmaReads === true ? data.subarray(1) : data } });
        };
        if (this.options.delayDmaReadsMs !== undefined) setTimeout(reply, this.options.delayDmaReadsMs);
        else reply();
        break;
      }
      case 'DMA_READ_AHEAD': {
        if (this.version < 3) {
          this.fail(m, 'STATE', `DMA_READ_AHEAD is version 3; this connection speaks version ${this.version}`);
          break;
        }
        if (this.options.holdDmaReads === true) break;
        const data = this.memory.readAhead(m.body.addr, m.body.len);
        const reply = (): void => {
          if (data === null) this.dmaFault(m, m.body.addr, m.body.len);
          else this.write({ cmd: 'DMA_READ_AHEAD', id: m.id, reply: true, posted: false, error: 'NONE', body: { data: this.options.shortDmaReads === true ? Buffer.concat([data, Buffer.alloc(m.body.len + 1 - data.length)]) : data } });
        };
        if (this.options.delayDmaReadsMs !== undefined) setTimeout(reply, this.options.delayDmaReadsMs);
        else reply();
        break;
      }
      case 'DMA_READ_BULK': {
        const area = this.bulkArea;
        if (area === null) {
          this.fail(m, 'STATE', 'DMA_READ_BULK with no bulk area');
          break;
        }
        const { addr, len, offset, ahead } = m.body;
        if (offset + len > area.byteLength) {
          this.fail(m, 'INVALID', `DMA_READ_BULK past the end of the bulk area`);
          break;
        }
        const data = ahead ? this.memory.readAhead(addr, len) : this.memory.read(addr, len);
        if (data === null) {
          this.dmaFault(m, addr, len);
          break;
        }
        new Uint8Array(area, offset, data.length).set(data);
        this.write({ cmd: 'DMA_READ_BULK', id: m.id, reply: true, posted: false, error: 'NONE', body: { len: data.length + (this.options.longBulkReplies === true ? 1 : 0) } });
        break;
      }
      case 'DMA_WRITE': {
        const ok = this.memory.write(m.body.addr, m.body.data);
        if (!m.posted) {
          if (ok) this.write({ cmd: 'DMA_WRITE', id: m.id, reply: true, posted: false, error: 'NONE', body: {} });
          else this.fail(m, 'FAULT', 'not mapped');
        } else if (!ok) {
          this.post('ERROR', { ref_id: m.id, message: 'DMA_WRITE outside the mapped memory' }, 'FAULT');
        }
        break;
      }
      default:
        // MSI, INTX, ERROR, and what else the model sends: kept in `received`.
        break;
    }
  }

  private dmaFault(m: Message, addr: bigint, len: number): void {
    this.dmaFaults++;
    this.fail(m, 'FAULT', `0x${addr.toString(16)}+0x${len.toString(16)} is not mapped`);
  }

  private fail(m: Message, error: FailureName, message: string): void {
    this.write({ cmd: m.cmd, id: m.id, reply: true, posted: false, error, body: { message } } as Message);
  }

  private write(m: Message): void {
    if (this.ringsPending) {
      this.heldOut.push(m);
      return;
    }
    const ring = this.ring;
    if (ring !== null) {
      if (onRing(m)) {
        this.pushRecord(ring, m);
        return;
      }
      ring.sent++;
      this.pushRecord(ring, { cmd: 'FENCE', id: ring.sent, reply: false, posted: true, error: 'NONE', body: { count: ring.sent } });
    }
    this.sock?.write(encodeFrame(m));
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id === 0xffff_ffff ? 1 : id + 1;
    return id;
  }

  /** Sends a posted request (no reply). ERROR carries its code in `error`. */
  post<C extends RequestName | 'ERROR'>(cmd: C, body: C extends RequestName ? RequestBody<C> : MessageOf<'ERROR'>['body'], error: FailureName | 'NONE' = 'NONE'): void {
    this.write({ cmd, id: this.takeId(), reply: false, posted: true, error, body } as Message);
  }

  /** Sends a request and resolves with its reply; a failed reply rejects with WireReplyError. */
  async request<C extends RequestName>(cmd: C, body: RequestBody<C>, timeoutMs = 10_000): Promise<ReplyBody<C>> {
    if (this.sock === null) throw new Error(`${cmd}: not connected`);
    const id = this.takeId();
    let timer: NodeJS.Timeout | undefined;
    const reply = new Promise<Message>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${cmd} ${id} in ${timeoutMs} ms`));
      }, timeoutMs);
    });
    this.write({ cmd, id, reply: false, posted: false, error: 'NONE', body } as Message);
    const m = await reply.finally(() => clearTimeout(timer));
    if (m.error !== 'NONE') throw new WireReplyError(m.error, m);
    return m.body as ReplyBody<C>;
  }

  /** Drops the connection, as a gateway that died would. */
  drop(): void {
    this.sock?.destroy();
  }

  /** Raw bytes into the next g2m slot, published (the rings must be up). */
  ringRaw(bytes: Uint8Array): void {
    const ring = this.ring;
    if (ring === null) throw new Error('ringRaw: the rings are not up');
    const at = ring.g2m.reserve();
    if (at < 0) throw new Error('ringRaw: g2m is full');
    ring.g2m.bytes.set(bytes, at);
    ring.g2m.commit();
  }

  /** Raw bytes, as they are (one frame's worth: with the rings up, its FENCE goes first). */
  sendRaw(bytes: Uint8Array): void {
    const ring = this.ring;
    if (ring !== null) {
      ring.sent++;
      this.pushRecord(ring, { cmd: 'FENCE', id: ring.sent, reply: false, posted: true, error: 'NONE', body: { count: ring.sent } });
    }
    this.sock?.write(bytes);
  }

  /** Raw bytes with no FENCE announcing them: a gateway breaking the rings' rule. */
  sendUnfenced(bytes: Uint8Array): void {
    this.sock?.write(bytes);
  }

  /** The next request id this side will use (for frames built by hand). */
  peekId(): number {
    return this.nextId;
  }

  /** Skips ids, as a peer that lost requests would. */
  skipIds(n: number): void {
    for (let i = 0; i < n; i++) this.takeId();
  }

  // ---- conveniences -----------------------------------------------------

  mmioWrite(bar: number, offset: number, size: number, value: number | bigint): void {
    this.post('MMIO_WRITE', { bar, offset: BigInt(offset), size, value: BigInt(value) });
  }

  async mmioRead(bar: number, offset: number, size = 4): Promise<bigint> {
    return (await this.request('MMIO_READ', { bar, offset: BigInt(offset), size })).value;
  }

  async configRead(offset: number, size: number): Promise<number> {
    return (await this.request('CONFIG_READ', { offset, size })).value;
  }

  async configWrite(offset: number, size: number, value: number): Promise<void> {
    await this.request('CONFIG_WRITE', { offset, size, value });
  }

  async stats(): Promise<StatsReply> {
    return this.request('STATS', {});
  }

  /** Waits for a message from the model at index `from` or later that matches. */
  async waitFor(pred: (m: Message) => boolean, from = 0, timeoutMs = 10_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.received.length; i++) {
        const m = this.received[i] as Message;
        if (pred(m)) return m;
      }
      if (Date.now() > deadline) throw new Error(`the model sent nothing that matches in ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /** Waits until a new connection has said HELLO and DEVICE. */
  async waitReady(connections: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(this.connections >= connections && this.isReady)) {
      if (Date.now() > deadline) throw new Error(`no session ${connections} in ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  async close(): Promise<void> {
    this.sock?.destroy();
    this.dropRings();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
