// One model connection, seen from the gateway (docs/protocol.md, "A
// session"): the HELLO and DEVICE handshake, the session rules (STATE),
// request/reply matching with timeouts, and the relay itself — the host's
// driver accesses out to the model in program order, the model's DMA,
// interrupts and BAR stores into the host, in the order they arrive.
//
// From version 2 the hot messages ride two shared-memory rings (RINGS,
// docs/protocol.md "The rings in a session"): driver writes and reads out on
// g2m, the model's stores, read answers and interrupts in on m2g. Each side
// marks its socket frames on its own ring (FENCE), so a receiver takes both
// paths in the one order they were sent.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { PciemError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { FrameReader, type FrameResult } from '../proto/frames.js';
import { decodeRecord, encodeRecord, RECORD_HDR, RECORD_MAX, writeMmioWriteRecord, type RecordMessage } from '../proto/ring-records.js';
import { native } from '../native.js';
import { formatRing, ringBytes, RingConsumer, RingProducer, type RingStats } from '../ring.js';
import {
  Cmd, ERR_CODES, Flag, Role, VERSION_MAX, VERSION_MIN, encodeFrame, wireError,
  type CmdName, type DeviceRequest, type FailureName, type Region, type Message, type MessageOf, type RawHeader, type ResetKind, type StatsReply,
} from '../../../proto/generated/wire.js';
import { mismatch } from '../description.js';
import { capabilityList, sizeMask, translateConfig, type HostBackend, type HostDevice, type HostSink } from './host.js';
import type { TraceEvent, Tracer } from './trace.js';

export type SessionState = 'hello' | 'device' | 'running' | 'closed';

export interface SessionOptions {
  backend: HostBackend;
  log?: Logger;
  /** This side's name in HELLO. */
  name?: string;
  /** How long a request to the model may go unanswered. */
  requestTimeoutMs?: number;
  /**
   * The card the model must announce (a device description): a model whose
   * identity or BARs differ is refused (INVALID); the description's traced
   * and read-via-model regions replace the model's.
   */
  description?: DeviceDescription;
  /**
   * Offer the model the shared-memory rings when it speaks version 2
   * (default true); false keeps every message on the socket.
   */
  rings?: boolean;
  /** Slots per ring (a power of two; default 4096). */
  ringSlots?: number;
  /**
   * Bytes of the bulk area offered to a model that speaks version 4 (a
   * multiple of 4096, at most 16 MiB; default 8 MiB, room for the bridge's
   * longest read-ahead and turns between shorter ones): the model's DMA
   * reads land there instead of crossing the socket. 0 offers none.
   */
  bulkBytes?: number;
}

/**
 * What a device description gives a session: the card (DEVICE's fields)
 * and the registers the model keeps current in BAR memory (the DEVICE
 * reply's shadow list).
 */
export interface DeviceDescription {
  device: DeviceRequest;
  shadow: Region[];
}

type Request = Extract<Message, { reply: false }>;
type Counters = { -readonly [K in keyof StatsReply]: bigint };

interface PendingRequest {
  cmd: CmdName;
  resolve: (m: Message) => void;
  reject: (e: PciemError) => void;
  timer: NodeJS.Timeout;
}

/** Bytes per ring slot: the longest record (40 bytes) fits. */
export const RING_SLOT_SIZE = 64;
export const RING_SLOTS_DEFAULT = 4096;
const PAGE = 4096;
/** Records published at once at most: the model starts on a long run before it ends. */
const COMMIT_EVERY = 64;
/**
 * Most socket frames that may wait for their FENCE, and most m2g records
 * that may wait for a socket frame: a model that never sends what it
 * announced is closed, not buffered without end.
 */
const HELD_FRAMES_MAX = 4096;
const HELD_RECORDS_MAX = 1 << 16;

/** Messages that go on a ring once the rings are up (the rest go on the socket, each after a FENCE). */
function onRing(m: Message): m is RecordMessage {
  switch (m.cmd) {
    case 'MMIO_WRITE':
      return !m.reply && m.posted;
    case 'MMIO_READ':
      return true;
    default:
      return false;
  }
}

/** The fd under a net.Socket (null for other streams). */
function socketFd(socket: Duplex): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/**
 * A session's rings, once the model attached them: g2m (the gateway
 * produces) and m2g (the gateway consumes), and where each path stands.
 */
interface RingPath {
  g2mMap: ArrayBuffer;
  m2gMap: ArrayBuffer;
  /** g2m data, g2m space, m2g data, m2g space. */
  eventfds: number[];
  g2m: RingProducer;
  m2g: RingConsumer;
  /** The consumer's batch buffer, and one for taking records when a socket frame waits for its FENCE. */
  batch: Uint8Array;
  pullBatch: Uint8Array;
  /** Records reserved and not yet published; of those, hot-path writes not yet counted (frames_out, bytes_out). */
  uncommitted: number;
  hot: number;
  commitQueued: boolean;
  /** g2m records that found the ring full, in order (backlogHead: the next to go). */
  backlog: Uint8Array[];
  backlogHead: number;
  full: boolean;
  /** Socket frames this side sent since the rings came up (the last FENCE count). */
  sent: number;
  /** The model's socket frames: received, and handled, since its RINGS reply; the last FENCE count taken from m2g. */
  received: number;
  handled: number;
  fence: number;
  /** Socket frames whose FENCE has not been reached yet. */
  held: FrameResult[];
  /** Stopped at FENCE(fence) until that socket frame arrives; m2g records taken meanwhile. */
  waiting: boolean;
  records: Uint8Array[];
}

const CMD_NAMES = new Map<number, CmdName>(Object.entries(Cmd).map(([k, v]) => [v, k as CmdName]));
/** Requests only the model sends to the gateway. */
const FROM_MODEL = new Set<CmdName>(['DEVICE', 'INTX', 'MSI', 'DMA_READ', 'DMA_READ_AHEAD', 'DMA_READ_BULK', 'DMA_WRITE']);

/** Commands a protocol version added: refused in a session that picked an older one. */
const SINCE_VERSION = new Map<CmdName, number>([['DMA_READ_AHEAD', 3], ['DMA_READ_BULK', 4]]);

/** The bulk area a version 4 session offers unless told otherwise. */
export const BULK_BYTES_DEFAULT = 8 << 20;
/** Requests a session may take before its device exists. */
const BEFORE_DEVICE = new Set<CmdName>(['STATS', 'ERROR']);

/** A wire message string: printable ASCII, at most 256 bytes. */
function wireText(s: string): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > 256 ? `${t.slice(0, 253)}...` : t;
}

function asPciemError(e: unknown): PciemError {
  return e instanceof PciemError ? e : new PciemError('PCIEM_ERR_IO', e instanceof Error ? e.message : String(e));
}

/*
 * DMA_READ_AHEAD: the whole read when it is mapped; when the host refuses
 * it (FAULT), what is mapped from addr on. A read-ahead running past the
 * end of a mapping is the model's normal business, not a fault.
 */
function readAhead(host: HostDevice, addr: bigint, len: number, into?: Uint8Array): Uint8Array {
  try {
    return host.dmaRead(addr, len, into);
  } catch (e) {
    if (!(e instanceof PciemError) || e.code !== 'PCIEM_ERR_FAULT') throw e;
    const readable = host.dmaReadable(addr, len);
    if (readable <= 0 || readable >= len) throw e;
    return host.dmaRead(addr, readable, into);
  }
}

export class ModelSession extends EventEmitter {
  state: SessionState = 'hello';
  host: HostDevice | null = null;
  /** The model's HELLO name and DEVICE name, once known. */
  modelName = '';
  deviceName = '';
  readonly counters: Counters = {
    frames_in: 0n, frames_out: 0n, bytes_in: 0n, bytes_out: 0n, errors_in: 0n, errors_out: 0n,
    mmio_reads: 0n, mmio_writes: 0n, config_reads: 0n, config_writes: 0n, dma_reads: 0n, dma_writes: 0n,
    dma_bytes: 0n, interrupts: 0n, resets: 0n, timeouts: 0n,
  };
  private readonly reader = new FrameReader();
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 1;
  private corked = false;
  /** Why the host is paused (backpressure: 'socket', 'ring'); resumed when none is left. */
  private readonly pauses = new Set<string>();
  /** The protocol version HELLO picked. */
  version = 0;
  /** The rings, once up; while RINGS is unanswered, what the session sends waits in ringsHeld. */
  private ring: RingPath | null = null;
  private ringsPending = false;
  private ringsHeld: Message[] = [];
  /** Times a full g2m ring paused the host. */
  ringFullWaits = 0;
  /** The bulk area (version 4), mapped here, once the model answered BULK. */
  private bulk: ArrayBuffer | null = null;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  /** Capability layouts (ID -> offset): the host's (null: same as the model's) and the model's. */
  private hostCaps: Map<number, number> | null = null;
  private modelCaps = new Map<number, number>();

  /** Gets every access that crosses the relay while set (the dashboard's event trace). */
  tracer: Tracer | null = null;

  private trace(ev: TraceEvent): void {
    this.tracer?.(ev, process.hrtime.bigint());
  }

  /** The model's capability layout (ID -> config offset), once the device is up. */
  get modelCapabilities(): ReadonlyMap<number, number> {
    return this.modelCaps;
  }

  constructor(private readonly socket: Duplex, private readonly opts: SessionOptions) {
    super();
    this.log = opts.log ?? silentLogger;
    this.timeoutMs = opts.requestTimeoutMs ?? 5000;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('end', () => {
      const r = this.reader.end();
      if (r) this.onResult(r);
      this.close('the model closed the connection');
    });
    socket.on('close', () => this.close('the connection closed'));
    socket.on('error', (e: Error) => this.close(`socket error: ${e.message}`));
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Whether the hot path rides the rings. */
  get ringsUp(): boolean {
    return this.ring !== null;
  }

  /** Bytes of the bulk area, 0 while there is none. */
  get bulkBytes(): number {
    return this.bulk?.byteLength ?? 0;
  }

  /** The rings' shared counters (full waits, wake-ups), while they are up. */
  ringStats(): { g2m: RingStats; m2g: RingStats } | null {
    return this.ring ? { g2m: this.ring.g2m.stats(), m2g: this.ring.m2g.stats() } : null;
  }

  /** Ends the session: the host device is removed (surprise removal for its driver). */
  close(reason: string, error?: { code: FailureName; refId: number }): void {
    if (this.state === 'closed') return;
    // The reason goes out even while RINGS waits for its reply: nothing is counted after this.
    this.ringsPending = false;
    if (error) this.sendError(error.code, error.refId, reason);
    this.state = 'closed';
    this.log.info('model session closed', { reason, model: this.modelName, device: this.deviceName });
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PciemError('PCIEM_ERR_NO_DEVICE', `session closed: ${reason}`));
    }
    this.pending.clear();
    this.dropRings();
    this.dropBulk();
    const host = this.host;
    this.host = null;
    try {
      host?.close();
    } catch (e) {
      this.log.warn('removing the host device failed', { error: asPciemError(e).message });
    }
    if (this.corked) this.socket.uncork();
    this.socket.end();
    this.socket.destroy();
    this.emit('close', reason);
  }

  /** Asks the model for its counters. */
  async modelStats(): Promise<StatsReply> {
    const r = await this.request('STATS', {});
    return r.body as StatsReply;
  }

  // ---- sending

  private takeId(): number {
    const id = this.nextId;
    this.nextId = this.nextId === 0xffff_ffff ? 1 : this.nextId + 1;
    return id;
  }

  private send(m: Message): void {
    if (this.state === 'closed') return;
    if (this.ringsPending) {
      // Nothing goes between RINGS and its reply: the model counts frames from there.
      this.ringsHeld.push(m);
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
    this.writeFrame(m);
  }

  private writeFrame(m: Message): void {
    const frame = encodeFrame(m);
    this.counters.frames_out++;
    this.counters.bytes_out += BigInt(frame.length);
    if (m.error !== 'NONE') this.counters.errors_out++;
    // Writes made in one turn of the event loop leave in one system call.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    // Backpressure: stop taking the driver's accesses until the socket drains.
    if (!this.socket.write(frame)) this.pauseHost('socket');
  }

  private onDrain(): void {
    this.resumeHost('socket');
  }

  private pauseHost(why: string): void {
    if (this.pauses.size === 0) this.host?.pause();
    this.pauses.add(why);
  }

  private resumeHost(why: string): void {
    if (!this.pauses.delete(why) || this.pauses.size > 0) return;
    this.host?.resume();
  }

  private post<C extends CmdName>(cmd: C, body: MessageOf<C>['body']): void {
    this.send({ cmd, id: this.takeId(), reply: false, posted: true, error: 'NONE', body } as Message);
  }

  /** A request to the model; resolves with its reply (a failed reply or a timeout rejects). */
  private request<C extends CmdName>(cmd: C, body: Extract<Request, { cmd: C }>['body'], timeoutMs = this.timeoutMs): Promise<Message> {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed') {
        reject(new PciemError('PCIEM_ERR_NO_DEVICE', 'session closed'));
        return;
      }
      const id = this.takeId();
      this.expect(cmd, id, resolve, reject, timeoutMs);
      this.send({ cmd, id, reply: false, posted: false, error: 'NONE', body } as Message);
    });
  }

  /** Waits for the reply to request `id`; `resolve` runs as the reply is handled, before the frames after it. */
  private expect(cmd: CmdName, id: number, resolve: (m: Message) => void, reject: (e: PciemError) => void, timeoutMs = this.timeoutMs): void {
    const timer = setTimeout(() => {
      this.pending.delete(id);
      this.counters.timeouts++;
      reject(new PciemError('PCIEM_ERR_TIMEOUT', `${cmd} ${id}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    this.pending.set(id, { cmd, resolve, reject, timer });
  }

  private reply<C extends CmdName>(req: { cmd: C; id: number }, body: MessageOf<C>['body']): void {
    this.send({ cmd: req.cmd, id: req.id, reply: true, posted: false, error: 'NONE', body } as Message);
  }

  private fail(h: { cmd: CmdName; id: number; posted: boolean }, code: FailureName, message: string): void {
    if (h.posted || h.cmd === 'ERROR') this.sendError(code, h.id, message);
    else this.send({ cmd: h.cmd, id: h.id, reply: true, posted: false, error: code, body: { message: wireText(message) } } as Message);
  }

  private sendError(code: FailureName, refId: number, message: string): void {
    this.send({ cmd: 'ERROR', id: this.takeId(), reply: false, posted: true, error: code, body: { ref_id: refId, message: wireText(message) } });
  }

  // ---- receiving

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    for (const r of this.reader.push(chunk)) {
      this.onFrame(r);
      if (this.closed) return;
    }
  }

  /** A frame off the socket: handled now, or once the ring reaches its FENCE. */
  private onFrame(r: FrameResult): void {
    const ring = this.ring;
    if (ring === null) {
      this.onResult(r);
      return;
    }
    if (!r.ok && (r.fatal || r.header === null)) {
      // Nothing after it can be read: no order to keep.
      this.onResult(r);
      return;
    }
    ring.received++;
    ring.held.push(r);
    this.releaseHeld(ring);
    // Its FENCE is on the ring already (the model puts it there first): go and take it.
    if (ring.held.length > 0 && !ring.waiting) this.pullRing(ring);
    if (ring.held.length > HELD_FRAMES_MAX) {
      this.log.error('the model sends socket frames without their FENCE: closing', { held: ring.held.length });
      this.close(`${ring.held.length} socket frames wait for a FENCE`, { code: 'STATE', refId: 0 });
      return;
    }
    if (ring.waiting && ring.handled >= ring.fence) {
      ring.waiting = false;
      this.resumeRecords(ring);
    }
  }

  private onResult(r: FrameResult): void {
    if (!r.ok) {
      this.counters.errors_in++;
      this.refuse(r.error, r.header, r.fatal);
      return;
    }
    this.counters.frames_in++;
    this.counters.bytes_in += BigInt(r.bytes);
    this.handle(r.message);
  }

  /** A message that decoded, off either path. */
  private handle(m: Message): void {
    try {
      if (m.reply) this.onReply(m);
      else this.onRequest(m);
    } catch (e) {
      const err = asPciemError(e);
      this.log.error('handling a model message failed', { cmd: m.cmd, id: m.id, error: err.message });
      if (!m.reply) this.fail(m, wireError(err.code), err.message);
    }
  }

  /** A frame that could not be decoded. */
  private refuse(error: PciemError, h: RawHeader | null, fatal: boolean): void {
    const code = wireError(error.code);
    this.log.warn('refused a frame from the model', { code: error.code, error: error.message, fatal });
    if (fatal || h === null) {
      this.close(`unreadable stream: ${error.message}`, { code, refId: h?.id ?? 0 });
      return;
    }
    const cmd = CMD_NAMES.get(h.cmd);
    const isReply = (h.flags & Flag.REPLY) !== 0;
    if (isReply) {
      // A reply we cannot read still answers its request: fail that one.
      const p = this.pending.get(h.id);
      if (p && p.cmd === cmd) {
        this.pending.delete(h.id);
        clearTimeout(p.timer);
        p.reject(new PciemError(error.code, `unreadable ${p.cmd} reply: ${error.message}`));
      }
      this.sendError(code, h.id, error.message);
    } else if (cmd !== undefined && cmd !== 'ERROR' && (h.flags & Flag.POSTED) === 0 && code !== 'HEADER') {
      this.fail({ cmd, id: h.id, posted: false }, code, error.message);
    } else {
      this.sendError(code, h.id, error.message);
    }
  }

  private onReply(m: Message): void {
    const p = this.pending.get(m.id);
    if (!p || p.cmd !== m.cmd) {
      this.counters.errors_in++;
      this.sendError('STATE', m.id, `a ${m.cmd} reply to no request of this session`);
      return;
    }
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error !== 'NONE') {
      this.counters.errors_in++;
      p.reject(new PciemError(ERR_CODES[m.error], `${m.cmd} failed in the model: ${(m.body).message}`));
    } else {
      p.resolve(m);
    }
  }

  private onRequest(m: Request): void {
    if (m.cmd === 'HELLO') {
      this.onHello(m);
      return;
    }
    if (this.state === 'hello') {
      this.fail(m, 'STATE', `${m.cmd} before HELLO`);
      return;
    }
    if (m.cmd === 'ERROR') {
      this.counters.errors_in++;
      this.log.warn('the model reported an error', { code: m.error, ref_id: m.body.ref_id, message: m.body.message });
      return;
    }
    if (m.cmd === 'STATS') {
      this.reply(m, { ...this.counters });
      return;
    }
    if (m.cmd === 'FENCE') {
      this.fail(m, 'STATE', 'FENCE goes on a ring, never on the socket');
      return;
    }
    const since = SINCE_VERSION.get(m.cmd);
    if (since !== undefined && this.version < since) {
      this.fail(m, 'STATE', `${m.cmd} is version ${since}; this session speaks version ${this.version}`);
      return;
    }
    if (!FROM_MODEL.has(m.cmd) && m.cmd !== 'MMIO_WRITE') {
      this.fail(m, 'STATE', `${m.cmd} is sent by the gateway, not the model`);
      return;
    }
    if (m.cmd === 'DEVICE') {
      this.onDevice(m);
      return;
    }
    const host = this.host;
    if (this.state !== 'running' || !host) {
      if (!BEFORE_DEVICE.has(m.cmd)) this.fail(m, 'STATE', `${m.cmd} before DEVICE`);
      return;
    }
    switch (m.cmd) {
      case 'MMIO_WRITE': {
        const b = m.body;
        host.store(b.bar, b.offset, b.size, b.value);
        if (this.tracer) this.trace({ kind: 'bar_store', bar: b.bar, offset: b.offset, size: b.size, value: b.value });
        if (!m.posted) this.reply(m, {});
        return;
      }
      case 'DMA_READ':
      case 'DMA_READ_AHEAD':
      case 'DMA_READ_BULK': {
        const { addr, len } = m.body;
        // DMA_READ_BULK: the host writes the bytes into the bulk area; only their count crosses the socket.
        const into = m.cmd === 'DMA_READ_BULK' ? this.bulkView(m) : undefined;
        if (into === null) return;
        // A read-ahead may come back short, at the end of the host's mapping.
        const ahead = m.cmd === 'DMA_READ_AHEAD' || (m.cmd === 'DMA_READ_BULK' && m.body.ahead);
        const data = this.hostCall(m, () => (ahead ? readAhead(host, addr, len, into) : host.dmaRead(addr, len, into)));
        if (data === undefined) return;
        this.counters.dma_reads++;
        this.counters.dma_bytes += BigInt(data.length);
        if (this.tracer) this.trace({ kind: 'dma_read', addr, len: data.length });
        if (m.cmd === 'DMA_READ_BULK') this.reply(m, { len: data.length });
        else this.reply(m, { data });
        return;
      }
      case 'DMA_WRITE': {
        const ok = this.hostCall(m, () => {
          host.dmaWrite(m.body.addr, m.body.data);
          return true;
        });
        if (!ok) return;
        this.counters.dma_writes++;
        this.counters.dma_bytes += BigInt(m.body.data.length);
        if (this.tracer) this.trace({ kind: 'dma_write', addr: m.body.addr, len: m.body.data.length });
        if (!m.posted) this.reply(m, {});
        return;
      }
      case 'MSI':
        this.counters.interrupts++;
        if (this.tracer) this.trace({ kind: 'msi', irq: m.body.kind, vector: m.body.vector });
        this.hostAsync(m, this.hostCall(m, () => host.msi(m.body.kind, m.body.vector)));
        return;
      case 'INTX':
        this.counters.interrupts++;
        if (this.tracer) this.trace({ kind: 'intx', level: m.body.level });
        this.hostAsync(m, this.hostCall(m, () => host.intx(m.body.level)));
        return;
      default:
        this.fail(m, 'STATE', `unexpected ${m.cmd}`);
    }
  }

  /** A posted request the host completes later: a failure becomes an ERROR then. */
  private hostAsync(m: Request, done: void | Promise<void> | undefined): void {
    if (!(done instanceof Promise)) return;
    done.catch((e: unknown) => {
      const err = asPciemError(e);
      this.log.warn('the host refused a model request', { cmd: m.cmd, id: m.id, code: err.code, error: err.message });
      this.fail(m, wireError(err.code), err.message);
    });
  }

  /** Runs a host operation for a model request; a failure becomes its error reply (or ERROR). */
  private hostCall<T>(m: Message, f: () => T): T | undefined {
    try {
      return f();
    } catch (e) {
      const err = asPciemError(e);
      // A refused DMA_READ is often a version 2 bridge's read-ahead running
      // past a mapping (it retries shorter); the model reports real faults itself.
      const level = m.cmd === 'DMA_READ' && err.code === 'PCIEM_ERR_FAULT' ? 'debug' : 'warn';
      this.log[level]('the host refused a model request', { cmd: m.cmd, id: m.id, code: err.code, error: err.message });
      this.fail(m, wireError(err.code), err.message);
      return undefined;
    }
  }

  private onHello(m: Extract<Request, { cmd: 'HELLO' }>): void {
    if (this.state !== 'hello') {
      this.fail(m, 'STATE', 'a second HELLO');
      return;
    }
    const b = m.body;
    if (b.role !== Role.MODEL) {
      this.fail(m, 'STATE', `HELLO from role ${b.role}: the gateway talks to models (role ${Role.MODEL})`);
      return;
    }
    const lo = Math.max(b.version_min, VERSION_MIN);
    const hi = Math.min(b.version_max, VERSION_MAX);
    if (lo > hi) {
      this.fail(m, 'VERSION', `the model speaks versions ${b.version_min}..${b.version_max}, the gateway ${VERSION_MIN}..${VERSION_MAX}`);
      this.close('no protocol version in common');
      return;
    }
    this.modelName = b.name;
    this.version = hi;
    this.reply(m, { version_min: VERSION_MIN, version_max: VERSION_MAX, version: hi, role: Role.GATEWAY, name: wireText(this.opts.name ?? 'pciem-gateway') });
    this.state = 'device';
    this.log.info('model connected', { model: b.name, version: hi });
  }

  private onDevice(m: Extract<Request, { cmd: 'DEVICE' }>): void {
    if (this.state !== 'device') {
      this.fail(m, 'STATE', 'a second DEVICE');
      return;
    }
    let want = m.body;
    const desc = this.opts.description?.device;
    if (desc) {
      const why = mismatch(desc, m.body);
      if (why !== null) {
        this.log.warn('the model is not the described card', { device: m.body.name, error: why });
        this.fail(m, 'INVALID', why);
        return;
      }
      want = { ...m.body, traced: desc.traced, read_via_model: desc.read_via_model };
    }
    let host: HostDevice;
    try {
      host = this.opts.backend.create(want);
    } catch (e) {
      const err = asPciemError(e);
      this.log.warn('the host refused the device', { device: m.body.name, code: err.code, error: err.message });
      // Whatever the host's reason (too big, no room, not allowed), the description is what it could not take.
      const code = wireError(err.code);
      this.fail(m, code === 'IO' && err.code !== 'PCIEM_ERR_IO' ? 'INVALID' : code, err.message);
      return;
    }
    this.host = host;
    this.deviceName = m.body.name;
    this.state = 'running';
    this.reply(m, { shadow: this.opts.description?.shadow ?? [] });
    void this.startHost(host);
  }

  /**
   * Learns the model's capability layout (so the host's config writes can be
   * put where the model has them), then lets the host's driver bind.
   */
  private async startHost(host: HostDevice): Promise<void> {
    await this.offerBulk();
    if (this.host !== host) return; // closed meanwhile
    await this.offerRings();
    if (this.host !== host) return; // closed meanwhile
    let modelCaps = new Map<number, number>();
    try {
      const bytes = new Uint8Array(0x100);
      const read8 = async (o: number): Promise<number> => {
        const r = await this.request('CONFIG_READ', { offset: o, size: 1 });
        return (r.body as { value: number }).value & 0xff;
      };
      // The walk needs only the bytes it visits: fetch them as it goes.
      for (const o of [0x06, 0x07, 0x34]) bytes[o] = await read8(o);
      const seen = new Set<number>();
      let off = (bytes[0x34] ?? 0) & 0xfc;
      while ((bytes[0x06] ?? 0) & 0x10 && off >= 0x40 && off < 0x100 && !seen.has(off)) {
        seen.add(off);
        bytes[off] = await read8(off);
        bytes[off + 1] = await read8(off + 1);
        off = (bytes[off + 1] ?? 0) & 0xfc;
      }
      modelCaps = capabilityList((o) => bytes[o] ?? 0);
    } catch (e) {
      this.log.warn("could not read the model's capabilities: config writes beyond the header will not reach it", { error: asPciemError(e).message });
    }
    if (this.host !== host) return; // closed meanwhile
    this.modelCaps = modelCaps;
    try {
      host.start(this.sink());
    } catch (e) {
      const err = asPciemError(e);
      this.log.error('the host could not start the device', { code: err.code, error: err.message });
      this.close(`the host could not start the device: ${err.message}`, { code: wireError(err.code), refId: 0 });
      return;
    }
    this.hostCaps = host.capabilities();
    this.log.info('device on the host', { device: this.deviceName, at: host.address });
    this.emit('device', host);
  }

  // ---- the bulk area (version 4)

  /**
   * Offers the model the bulk area (BULK, with its memfd as SCM_RIGHTS),
   * right after the DEVICE reply, and waits for the answer: from a good
   * reply on, the model may ask DMA_READ_BULK. A failed reply leaves DMA
   * reads on the socket; no reply in time closes the session.
   */
  private async offerBulk(): Promise<void> {
    const fd = socketFd(this.socket);
    const size = this.opts.bulkBytes ?? BULK_BYTES_DEFAULT;
    if (size === 0 || this.version < 4 || fd === null || this.closed) return;
    let memfd = -1;
    let map: ArrayBuffer;
    try {
      memfd = native.memfdCreate('pciem-bulk', size);
      map = native.mmap(memfd, size, 0);
    } catch (e) {
      if (memfd >= 0) native.close(memfd);
      this.log.warn('could not make the bulk area: DMA reads cross the socket', { error: asPciemError(e).message });
      return;
    }
    const taken = await this.offerWithFds(fd, 'BULK', { size }, [memfd], 'the model refused the bulk area: DMA reads cross the socket', (ok) => {
      if (!ok) return;
      this.bulk = map;
      this.log.info('DMA reads land in the bulk area', { bytes: size });
    });
    if (!taken || this.closed) {
      if (this.bulk === map) this.bulk = null;
      native.munmap(map);
    }
  }

  /** Where a DMA_READ_BULK's bytes go in the bulk area; null (and its failed reply sent) when they cannot. */
  private bulkView(m: Extract<Request, { cmd: 'DMA_READ_BULK' }>): Uint8Array | null {
    const { len, offset } = m.body;
    const bulk = this.bulk;
    if (!bulk) {
      this.fail(m, 'STATE', 'DMA_READ_BULK with no bulk area: BULK was not answered');
      return null;
    }
    if (offset + len > bulk.byteLength) {
      this.fail(m, 'INVALID', `DMA_READ_BULK of ${len} bytes at offset ${offset}: the bulk area holds ${bulk.byteLength}`);
      return null;
    }
    return new Uint8Array(bulk, offset, len);
  }

  private dropBulk(): void {
    const bulk = this.bulk;
    this.bulk = null;
    if (bulk) native.munmap(bulk);
  }

  // ---- the rings (version 2)

  /**
   * Offers the model the rings (RINGS, with the memory and eventfds as
   * SCM_RIGHTS), right after the DEVICE reply and before anything else. The
   * rings are up from the reply on; a failed reply leaves the session on
   * the socket; no reply in time closes it (the model's state is unknown).
   */
  private async offerRings(): Promise<void> {
    const fd = socketFd(this.socket);
    if (this.opts.rings === false || this.version < 2 || fd === null || this.closed) return;
    let ring: RingPath;
    let memfd: number;
    try {
      ({ ring, memfd } = this.makeRings());
    } catch (e) {
      this.log.warn('could not make the rings: the socket carries everything', { error: asPciemError(e).message });
      return;
    }
    const slots = ring.g2m.slotCount;
    const span = ring.g2mMap.byteLength;
    this.ringsPending = true;
    const body = { slot_size: RING_SLOT_SIZE, slot_count: slots, g2m_offset: 0n, m2g_offset: BigInt(span) };
    const taken = await this.offerWithFds(fd, 'RINGS', body, [memfd, ...ring.eventfds], 'the model refused the rings: the socket carries everything', (ok) => {
      if (ok) {
        this.ring = ring;
        ring.m2g.start(ring.batch, (out, n) => this.takeRecords(ring, out, n), (e) => this.ringBroken(ring, e));
        this.log.info('the hot path rides the rings', { slots, slot_size: RING_SLOT_SIZE });
      }
      this.releaseRingsHeld();
    });
    if (!taken) this.freeRings(ring);
  }

  /**
   * Sends the offer `cmd` (BULK or RINGS) with `fds` attached, the first of
   * them a memfd closed here once the frame went, and waits for the
   * model's answer. `answered(ok)` runs synchronously on the reply, before
   * the frame after it is looked at (a RINGS reply starts the count); a
   * refusal is logged as `refused`; no reply in time, or a send that
   * failed, closes the session. Resolves with whether the model took it.
   */
  private async offerWithFds<C extends 'BULK' | 'RINGS'>(fd: number, cmd: C, body: MessageOf<C>['body'], fds: number[], refused: string, answered: (ok: boolean) => void): Promise<boolean> {
    const id = this.takeId();
    const frame = encodeFrame({ cmd, id, reply: false, posted: false, error: 'NONE', body } as Message);
    const taken = new Promise<boolean>((resolve) => {
      this.expect(cmd, id, () => {
        answered(true);
        resolve(true);
      }, (e) => {
        if (e.code === 'PCIEM_ERR_TIMEOUT') this.close(`the model did not answer ${cmd}`, { code: 'TIMEOUT', refId: id });
        else this.log.warn(refused, { code: e.code, error: e.message });
        answered(false);
        resolve(false);
      });
    });
    try {
      await this.sendWithFds(fd, frame, fds);
    } catch (e) {
      this.close(`could not send ${cmd}: ${asPciemError(e).message}`);
    } finally {
      native.close(fds[0] as number);
    }
    return taken;
  }

  /** RINGS is answered: what waited for it goes, in order, on whichever path is now up. */
  private releaseRingsHeld(): void {
    this.ringsPending = false;
    const held = this.ringsHeld;
    this.ringsHeld = [];
    for (const m of held) this.send(m);
  }

  /** One memfd (for the model: closed once RINGS went out), two formatted rings in it, four eventfds; mapped here. */
  private makeRings(): { ring: RingPath; memfd: number } {
    const slots = this.opts.ringSlots ?? RING_SLOTS_DEFAULT;
    const span = Math.ceil(ringBytes(RING_SLOT_SIZE, slots) / PAGE) * PAGE;
    const memfd = native.memfdCreate('pciem-rings', 2 * span);
    const eventfds: number[] = [];
    try {
      const g2mMap = native.mmap(memfd, span, 0);
      const m2gMap = native.mmap(memfd, span, span);
      formatRing(g2mMap, RING_SLOT_SIZE, slots);
      formatRing(m2gMap, RING_SLOT_SIZE, slots);
      for (let i = 0; i < 4; i++) eventfds.push(native.eventfd(0));
      const [g2mData, g2mSpace, m2gData, m2gSpace] = eventfds as [number, number, number, number];
      const ring: RingPath = {
        g2mMap, m2gMap, eventfds,
        g2m: new RingProducer(g2mMap, g2mData, g2mSpace),
        m2g: new RingConsumer(m2gMap, m2gData, m2gSpace),
        batch: new Uint8Array(RING_SLOT_SIZE * 64),
        pullBatch: new Uint8Array(RING_SLOT_SIZE * 64),
        uncommitted: 0, hot: 0, commitQueued: false, backlog: [], backlogHead: 0, full: false,
        sent: 0, received: 0, handled: 0, fence: 0, held: [], waiting: false, records: [],
      };
      return { ring, memfd };
    } catch (e) {
      for (const fd of eventfds) native.close(fd);
      native.close(memfd);
      throw e;
    }
  }

  /**
   * Sends `frame` with `fds` attached: one sendmsg() on the socket's fd, when
   * nothing of ours is queued in front of it (so the stream keeps its
   * order); what that call did not take follows through the socket.
   */
  private async sendWithFds(fd: number, frame: Uint8Array, fds: number[]): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      if (this.closed) throw new PciemError('PCIEM_ERR_NO_DEVICE', 'session closed');
      if (!this.corked && this.socket.writableLength === 0 && this.socket.writableCorked === 0) {
        const n = native.sendFds(fd, frame, fds);
        if (n > 0) {
          if (n < frame.length) this.socket.write(frame.subarray(n));
          this.counters.frames_out++;
          this.counters.bytes_out += BigInt(frame.length);
          return;
        }
      }
      if (Date.now() > deadline) throw new PciemError('PCIEM_ERR_TIMEOUT', `the socket took nothing for ${this.timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Publishes at the end of this turn of the event loop, or now after a long run. */
  private queueCommit(ring: RingPath): void {
    if (++ring.uncommitted >= COMMIT_EVERY) {
      this.commitRing(ring);
      return;
    }
    if (ring.commitQueued) return;
    ring.commitQueued = true;
    process.nextTick(() => {
      ring.commitQueued = false;
      if (this.ring === ring) this.commitRing(ring);
    });
  }

  private commitRing(ring: RingPath): void {
    ring.uncommitted = 0;
    ring.g2m.commit();
    if (ring.hot > 0) {
      // Counted per batch: a bigint per write each way would cost the hot path more than the ring.
      this.counters.frames_out += BigInt(ring.hot);
      this.counters.bytes_out += BigInt(ring.hot * 40);
      ring.hot = 0;
    }
  }

  /** One message onto g2m; behind the backlog while the ring is (or was) full: never dropped. */
  private pushRecord(ring: RingPath, m: RecordMessage): void {
    this.counters.frames_out++;
    if (m.error !== 'NONE') this.counters.errors_out++;
    if (ring.backlog.length === 0) {
      const at = ring.g2m.reserve();
      if (at >= 0) {
        this.counters.bytes_out += BigInt(encodeRecord(ring.g2m.view, at, m));
        this.queueCommit(ring);
        return;
      }
    }
    const rec = new Uint8Array(RECORD_MAX);
    this.counters.bytes_out += BigInt(encodeRecord(new DataView(rec.buffer), 0, m));
    ring.backlog.push(rec);
    if (!ring.full) void this.drainBacklog(ring);
  }

  /** Backpressure: the host waits while g2m is full, and the backlog goes in as the model makes room. */
  private async drainBacklog(ring: RingPath): Promise<void> {
    ring.full = true;
    this.ringFullWaits++;
    this.pauseHost('ring');
    while (this.ring === ring && ring.backlogHead < ring.backlog.length) {
      try {
        await ring.g2m.waitForSpace(this.timeoutMs);
      } catch (e) {
        if (this.ring !== ring) return;
        this.log.warn('the model has taken nothing off its ring: the host waits', { ms: this.timeoutMs, error: asPciemError(e).message });
        continue;
      }
      for (let at = ring.g2m.reserve(); at >= 0; at = ring.g2m.reserve()) {
        ring.g2m.bytes.set(ring.backlog[ring.backlogHead++] as Uint8Array, at);
        if (ring.backlogHead === ring.backlog.length) break;
      }
      this.commitRing(ring);
    }
    ring.backlog = [];
    ring.backlogHead = 0;
    ring.full = false;
    this.resumeHost('ring');
  }

  /** Records off m2g, in order; stops taking them at a FENCE whose socket frame has not come. */
  private takeRecords(ring: RingPath, out: Uint8Array, n: number): void {
    const size = ring.m2g.slotSize;
    for (let i = 0; i < n; i++) {
      if (this.ring !== ring) return;
      if (ring.waiting) {
        for (; i < n; i++) ring.records.push(out.slice(i * size, (i + 1) * size));
        if (ring.records.length > HELD_RECORDS_MAX) {
          this.log.error('the model announced a socket frame that does not come: closing', { fence: ring.fence, records: ring.records.length });
          this.close(`socket frame ${ring.fence} announced, not sent`, { code: 'STATE', refId: 0 });
        }
        return;
      }
      this.takeRecord(ring, new DataView(out.buffer, out.byteOffset + i * size, size));
    }
  }

  private takeRecord(ring: RingPath, v: DataView): void {
    let m: RecordMessage;
    try {
      m = decodeRecord(v, 0, v.byteLength);
    } catch (e) {
      const err = asPciemError(e);
      this.counters.errors_in++;
      this.log.error('a corrupt record on the ring from the model: closing', { code: err.code, error: err.message });
      this.close(`corrupt ring record: ${err.message}`, { code: wireError(err.code), refId: v.getUint32(4, true) });
      return;
    }
    this.counters.frames_in++;
    this.counters.bytes_in += BigInt(RECORD_HDR + v.getUint32(0, true));
    if (m.cmd === 'FENCE') this.onFence(ring, m.body.count);
    else this.handle(m);
  }

  /** FENCE(k): the model's socket frames up to number k come here, in the ring's order. */
  private onFence(ring: RingPath, count: number): void {
    if (count !== ring.fence + 1) {
      this.counters.errors_in++;
      this.log.error('a FENCE out of sequence from the model: closing', { count, expected: ring.fence + 1 });
      this.close(`FENCE ${count} after ${ring.fence}`, { code: 'STATE', refId: count });
      return;
    }
    ring.fence = count;
    this.releaseHeld(ring);
    if (ring.handled < ring.fence) ring.waiting = true;
  }

  private releaseHeld(ring: RingPath): void {
    while (ring.handled < ring.fence && ring.held.length > 0 && this.ring === ring) {
      ring.handled++;
      this.onResult(ring.held.shift() as FrameResult);
    }
  }

  /** Takes what m2g holds now (a socket frame waits for its FENCE, which is there already). */
  private pullRing(ring: RingPath): void {
    while (this.ring === ring && !ring.waiting && ring.held.length > 0) {
      let n: number;
      try {
        n = ring.m2g.popBatch(ring.pullBatch);
      } catch (e) {
        this.ringBroken(ring, e as Error);
        return;
      }
      if (n === 0) return;
      this.takeRecords(ring, ring.pullBatch, n);
    }
  }

  private resumeRecords(ring: RingPath): void {
    while (!ring.waiting && ring.records.length > 0 && this.ring === ring) {
      const r = ring.records.shift() as Uint8Array;
      this.takeRecord(ring, new DataView(r.buffer, r.byteOffset, r.byteLength));
    }
  }

  private ringBroken(ring: RingPath, e: Error): void {
    if (this.ring !== ring) return;
    const err = asPciemError(e);
    this.counters.errors_in++;
    this.log.error('the model\'s ring is corrupt: closing', { code: err.code, error: err.message });
    this.close(`corrupt ring: ${err.message}`, { code: wireError(err.code), refId: 0 });
  }

  /** Takes the rings down (session closing). */
  private dropRings(): void {
    const ring = this.ring;
    this.ring = null;
    this.ringsPending = false;
    if (ring) this.freeRings(ring);
  }

  private freeRings(ring: RingPath): void {
    // What was reserved goes out (the ERROR of a close has its FENCE there).
    this.commitRing(ring);
    ring.m2g.stop();
    ring.g2m.close();
    // A drain of the consumer may be on the stack: unmap once it is over.
    setImmediate(() => {
      native.munmap(ring.g2mMap);
      native.munmap(ring.m2gMap);
      for (const fd of ring.eventfds) native.close(fd);
    });
  }

  /** The host's accesses, relayed to the model in the order they come. */
  private sink(): HostSink {
    return {
      write: (bar, offset, size, value) => {
        this.counters.mmio_writes++;
        if (this.tracer) this.trace({ kind: 'mmio_write', bar, offset, size, value });
        const ring = this.ring;
        if (ring !== null && ring.backlog.length === 0) {
          // The hot path: straight into a slot.
          const at = ring.g2m.reserve();
          if (at >= 0) {
            writeMmioWriteRecord(ring.g2m.view, at, this.takeId(), bar, offset, size, value);
            ring.hot++;
            this.queueCommit(ring);
            return;
          }
        }
        this.post('MMIO_WRITE', { bar, offset, size, value });
      },
      read: (token, bar, offset, size) => {
        this.counters.mmio_reads++;
        const done = (value: bigint): void => {
          this.host?.completeRead(token, value);
          if (this.tracer) this.trace({ kind: 'mmio_read', bar, offset, size, value });
        };
        this.request('MMIO_READ', { bar, offset, size }).then(
          (r) => done((r.body as { value: bigint }).value & sizeMask(size)),
          (e: PciemError) => {
            this.log.warn('a driver read got no answer from the model: all-ones', { bar, offset, size, error: e.message });
            done(sizeMask(size));
          },
        );
      },
      configWrite: (hostOffset, size, value) => {
        const offset = this.hostCaps === null ? hostOffset : translateConfig(hostOffset, size, this.hostCaps, this.modelCaps);
        if (offset === null) {
          this.log.debug('a config write the model has no place for', { offset: hostOffset, size, value });
          return;
        }
        this.counters.config_writes++;
        if (this.tracer) this.trace({ kind: 'config_write', offset, size, value });
        this.request('CONFIG_WRITE', { offset, size, value }).catch((e: PciemError) => {
          this.log.warn('the model did not apply a config write', { offset, size, value, error: e.message });
        });
      },
      reset: (kind: ResetKind) => {
        this.counters.resets++;
        if (this.tracer) this.trace({ kind: 'reset', reset: kind });
        this.request('RESET', { kind }).catch((e: PciemError) => {
          this.log.warn('the model did not reset', { kind, error: e.message });
        });
      },
    };
  }
}
