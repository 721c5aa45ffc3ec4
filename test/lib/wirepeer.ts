// A test-only gateway for the QEMU bridge's tests: it listens on a UNIX
// socket, speaks the wire protocol (docs/protocol.md) with the generated
// codec, and stands in for the host: a fake host memory serves the model's
// DMA, and every frame the model sends is kept in order, so tests can check
// what arrived and in which order. The real gateway lives in gateway/.
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameReader } from '../../gateway/src/proto/frames.js';
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
  /** Hold DMA_READ replies back (the model's wait then times out). */
  holdDmaReads?: boolean;
  /** Answer DMA_READs this late. */
  delayDmaReadsMs?: number;
  /** Answer DMA_READs with one byte less than asked for. */
  shortDmaReads?: boolean;
  /** The registers the DEVICE reply asks the model to keep current (default none). */
  shadow?: Region[];
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

  private sock: Socket | null = null;
  private reader = new FrameReader();
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private ready = false;

  private constructor(private readonly server: Server) {
    server.on('connection', (s) => this.accept(s));
  }

  static async listen(path: string): Promise<WirePeer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return new WirePeer(server);
  }

  /** Connected, HELLO and DEVICE answered: requests may go. */
  get isReady(): boolean {
    return this.ready && this.sock !== null;
  }

  private accept(s: Socket): void {
    this.sock?.destroy();
    this.sock = s;
    this.reader = new FrameReader();
    this.nextId = 1;
    this.ready = false;
    this.shadowSent = null;
    this.connections++;
    s.on('data', (chunk: Buffer) => this.onData(s, chunk));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.sock !== s) return;
      this.sock = null;
      this.ready = false;
      this.closes++;
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  private onData(s: Socket, chunk: Buffer): void {
    if (s !== this.sock) return;
    for (const r of this.reader.push(chunk)) {
      if (!r.ok) {
        this.refused.push({ code: r.error.code, fatal: r.fatal });
        continue;
      }
      this.received.push(r.message);
      this.handle(r.message);
    }
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
        this.write({
          cmd: 'HELLO',
          id: m.id,
          reply: true,
          posted: false,
          error: 'NONE',
          body: { version_min: VERSION_MIN, version_max: VERSION_MAX, version: VERSION_MAX, role: Role.GATEWAY, name: 'wirepeer' },
        });
        break;
      case 'DEVICE':
        this.device = m.body;
        this.shadowSent = this.options.shadow ?? [];
        this.write({ cmd: 'DEVICE', id: m.id, reply: true, posted: false, error: 'NONE', body: { shadow: this.shadowSent } });
        this.ready = true;
        break;
      case 'DMA_READ': {
        if (this.options.holdDmaReads === true) break;
        const data = this.memory.read(m.body.addr, m.body.len);
        const reply = (): void => {
          if (data === null) this.fail(m, 'FAULT', `0x${m.body.addr.toString(16)}+0x${m.body.len.toString(16)} is not mapped`);
          else this.write({ cmd: 'DMA_READ', id: m.id, reply: true, posted: false, error: 'NONE', body: { data: this.options.shortDmaReads === true ? data.subarray(1) : data } });
        };
        if (this.options.delayDmaReadsMs !== undefined) setTimeout(reply, this.options.delayDmaReadsMs);
        else reply();
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

  private fail(m: Message, error: FailureName, message: string): void {
    this.write({ cmd: m.cmd, id: m.id, reply: true, posted: false, error, body: { message } } as Message);
  }

  private write(m: Message): void {
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

  /** Raw bytes, as they are. */
  sendRaw(bytes: Uint8Array): void {
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
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
