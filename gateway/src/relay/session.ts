// One model connection, seen from the gateway (docs/protocol.md, "A
// session"): the HELLO and DEVICE handshake, the session rules (STATE),
// request/reply matching with timeouts, and the relay itself — the host's
// driver accesses out to the model in program order, the model's DMA,
// interrupts and BAR stores into the host, in the order they arrive.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { PciemError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { FrameReader, type FrameResult } from '../proto/frames.js';
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

const CMD_NAMES = new Map<number, CmdName>(Object.entries(Cmd).map(([k, v]) => [v, k as CmdName]));
/** Requests only the model sends to the gateway. */
const FROM_MODEL = new Set<CmdName>(['DEVICE', 'INTX', 'MSI', 'DMA_READ', 'DMA_WRITE']);
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
  private blocked = false;
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

  /** Ends the session: the host device is removed (surprise removal for its driver). */
  close(reason: string, error?: { code: FailureName; refId: number }): void {
    if (this.state === 'closed') return;
    if (error) this.sendError(error.code, error.refId, reason);
    this.state = 'closed';
    this.log.info('model session closed', { reason, model: this.modelName, device: this.deviceName });
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PciemError('PCIEM_ERR_NO_DEVICE', `session closed: ${reason}`));
    }
    this.pending.clear();
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
    if (!this.socket.write(frame) && !this.blocked) {
      // Backpressure: stop taking the driver's accesses until the socket drains.
      this.blocked = true;
      this.host?.pause();
    }
  }

  private onDrain(): void {
    if (!this.blocked) return;
    this.blocked = false;
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
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.counters.timeouts++;
        reject(new PciemError('PCIEM_ERR_TIMEOUT', `${cmd} ${id}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { cmd, resolve, reject, timer });
      this.send({ cmd, id, reply: false, posted: false, error: 'NONE', body } as Message);
    });
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
      this.onResult(r);
      if (this.closed) return;
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
    const m = r.message;
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
      case 'DMA_READ': {
        const data = this.hostCall(m, () => host.dmaRead(m.body.addr, m.body.len));
        if (data === undefined) return;
        this.counters.dma_reads++;
        this.counters.dma_bytes += BigInt(data.length);
        if (this.tracer) this.trace({ kind: 'dma_read', addr: m.body.addr, len: m.body.len });
        this.reply(m, { data });
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
      // A refused DMA read is often the bridge's read-ahead running past a
      // mapping (it retries shorter); the model reports real faults itself.
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

  /** The host's accesses, relayed to the model in the order they come. */
  private sink(): HostSink {
    return {
      write: (bar, offset, size, value) => {
        this.counters.mmio_writes++;
        if (this.tracer) this.trace({ kind: 'mmio_write', bar, offset, size, value });
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
