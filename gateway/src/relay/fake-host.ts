// A host with no kernel: the card's BARs, the driver's DMA mappings and its
// interrupt lines live in this process, and a program plays the driver
// through the driver* methods. For developing a model without pciem.ko and
// for the relay's own tests; it applies the same rules the real host does
// (traced and read-via-model regions, DMA confined to mappings, reads that
// the model does not answer in time read all-ones).
import { EventEmitter } from 'node:events';
import { PciemError } from '../errors.js';
import { IrqKind, ResetKind, type DeviceRequest } from '../../../proto/generated/wire.js';
import { inRegions, sizeMask, type HostBackend, type HostDevice, type HostSink } from './host.js';

export interface FakeInterrupt {
  kind: 'msi' | 'intx';
  /** IRQ_KIND for msi, 0 for intx. */
  irqKind: number;
  /** MSI vector, or the INTx level (1/0). */
  vector: number;
}

interface Mapping {
  addr: bigint;
  bytes: Uint8Array;
}

type Pending = { kind: 'write'; bar: number; offset: bigint; size: number; value: bigint }
  | { kind: 'read'; token: bigint; bar: number; offset: bigint; size: number }
  | { kind: 'config'; offset: number; size: number; value: number }
  | { kind: 'reset' };

export class FakeHost extends EventEmitter implements HostDevice {
  readonly address = 'fake';
  readonly bars = new Map<number, Uint8Array>();
  readonly interrupts: FakeInterrupt[] = [];
  intxLevel = false;
  private readonly mappings: Mapping[] = [];
  private sink: HostSink | null = null;
  private paused = false;
  private queue: Pending[] = [];
  private queueHead = 0;
  private readonly reads = new Map<bigint, { resolve: (v: bigint) => void; timer: NodeJS.Timeout }>();
  private nextToken = 1n;
  private closed = false;
  /** Driver writes, kept as a number: the relay benchmark goes through here millions of times. */
  private driverWrites = 0;
  private readonly counters = { driver_writes: 0n, driver_reads: 0n, model_reads: 0n, read_timeouts: 0n, dma_reads: 0n, dma_writes: 0n, dma_bytes: 0n, dma_faults: 0n, interrupts: 0n };

  constructor(readonly desc: DeviceRequest, private readonly readTimeoutMs = 1000) {
    super();
    for (const b of desc.bars) {
      if (b.size > 0x1000_0000n) throw new PciemError('PCIEM_ERR_TOO_BIG', `BAR${b.index}: ${b.size} bytes; the fake host holds at most 256 MiB per BAR`);
      this.bars.set(b.index, new Uint8Array(Number(b.size)));
    }
  }

  // ---- the host side, driven by the relay

  start(sink: HostSink): void {
    this.sink = sink;
    this.flush();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.flush();
  }

  completeRead(token: bigint, value: bigint): void {
    const r = this.reads.get(token);
    if (!r) return; // timed out already: the driver read all-ones
    this.reads.delete(token);
    clearTimeout(r.timer);
    r.resolve(value);
  }

  store(bar: number, offset: bigint, size: number, value: bigint): void {
    const mem = this.barRange(bar, offset, size);
    const v = new DataView(mem.buffer, mem.byteOffset, size);
    if (size === 4) v.setUint32(0, Number(value & 0xffff_ffffn), true);
    else if (size === 8) v.setBigUint64(0, value & 0xffff_ffff_ffff_ffffn, true);
    else if (size === 2) v.setUint16(0, Number(value & 0xffffn), true);
    else for (let i = 0; i < size; i++) mem[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }

  dmaRead(addr: bigint, len: number, into?: Uint8Array): Uint8Array {
    const src = this.resolve(addr, len, 'read');
    this.counters.dma_reads++;
    this.counters.dma_bytes += BigInt(len);
    if (!into) return src.slice();
    into.set(src);
    return into.subarray(0, len);
  }

  dmaReadable(addr: bigint, len: number): number {
    if (this.closed) return 0;
    let best = 0;
    for (const m of this.mappings) {
      const end = m.addr + BigInt(m.bytes.length);
      if (addr >= m.addr && addr < end) best = Math.max(best, Math.min(len, Number(end - addr)));
    }
    return best;
  }

  dmaWrite(addr: bigint, data: Uint8Array): void {
    this.resolve(addr, data.length, 'write').set(data);
    this.counters.dma_writes++;
    this.counters.dma_bytes += BigInt(data.length);
  }

  msi(kind: IrqKind, vector: number): void {
    this.counters.interrupts++;
    const irq: FakeInterrupt = { kind: 'msi', irqKind: kind, vector };
    this.interrupts.push(irq);
    this.emit('interrupt', irq);
  }

  intx(level: boolean): void {
    this.intxLevel = level;
    const irq: FakeInterrupt = { kind: 'intx', irqKind: 0, vector: level ? 1 : 0 };
    this.interrupts.push(irq);
    this.emit('interrupt', irq);
  }

  capabilities(): Map<number, number> | null {
    return null; // the program playing the driver writes in the model's layout
  }

  stats(): Record<string, bigint> {
    return { ...this.counters, driver_writes: BigInt(this.driverWrites) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sink = null;
    for (const [, r] of this.reads) {
      clearTimeout(r.timer);
      r.resolve(sizeMask(8));
    }
    this.reads.clear();
    this.emit('close');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- the driver side, played by a program

  /** The driver maps `size` bytes of host memory for the device at bus address `addr`; returns the memory. */
  map(addr: bigint, size: number): Uint8Array {
    const bytes = new Uint8Array(size);
    this.mappings.push({ addr, bytes });
    return bytes;
  }

  unmap(addr: bigint): void {
    const i = this.mappings.findIndex((m) => m.addr === addr);
    if (i >= 0) this.mappings.splice(i, 1);
  }

  driverWrite(bar: number, offset: bigint | number, size: number, value: bigint | number): void {
    const off = typeof offset === 'bigint' ? offset : BigInt(offset);
    const v = (typeof value === 'bigint' ? value : BigInt(value)) & sizeMask(size);
    this.store(bar, off, size, v);
    this.driverWrites++;
    if (!inRegions(this.desc.traced, bar, off, size)) return;
    // Nothing queued in front: straight to the relay, in order all the same.
    if (this.sink && !this.paused && !this.closed && this.queueHead === this.queue.length) this.sink.write(bar, off, size, v);
    else this.post({ kind: 'write', bar, offset: off, size, value: v });
  }

  driverRead(bar: number, offset: bigint | number, size: number): Promise<bigint> {
    const off = BigInt(offset);
    this.counters.driver_reads++;
    if (!inRegions(this.desc.read_via_model, bar, off, size)) {
      const mem = this.barRange(bar, off, size);
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(mem[i] ?? 0);
      return Promise.resolve(v);
    }
    this.counters.model_reads++;
    const token = this.nextToken++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.reads.delete(token);
        this.counters.read_timeouts++;
        resolve(sizeMask(size));
      }, this.readTimeoutMs);
      this.reads.set(token, { resolve: (v) => resolve(v & sizeMask(size)), timer });
      this.post({ kind: 'read', token, bar, offset: off, size });
    });
  }

  driverConfigWrite(offset: number, size: number, value: number): void {
    this.post({ kind: 'config', offset, size, value });
  }

  driverReset(): void {
    this.post({ kind: 'reset' });
  }

  /** Resolves with the next interrupt (or rejects after `timeoutMs`). */
  nextInterrupt(timeoutMs = 5000): Promise<FakeInterrupt> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('interrupt', on);
        reject(new PciemError('PCIEM_ERR_TIMEOUT', `no interrupt within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (irq: FakeInterrupt): void => {
        clearTimeout(timer);
        resolve(irq);
      };
      this.once('interrupt', on);
    });
  }

  private post(p: Pending): void {
    if (this.closed) return;
    this.queue.push(p);
    if (!this.paused) this.flush();
  }

  private flush(): void {
    const sink = this.sink;
    if (!sink) return;
    while (!this.paused && this.queueHead < this.queue.length) {
      const p = this.queue[this.queueHead++] as Pending;
      switch (p.kind) {
        case 'write': sink.write(p.bar, p.offset, p.size, p.value); break;
        case 'read': sink.read(p.token, p.bar, p.offset, p.size); break;
        case 'config': sink.configWrite(p.offset, p.size, p.value); break;
        case 'reset': sink.reset(ResetKind.FLR); break;
      }
    }
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
  }

  private barRange(bar: number, offset: bigint, size: number): Uint8Array {
    const mem = this.bars.get(bar);
    if (!mem || offset < 0n || offset + BigInt(size) > BigInt(mem.length)) {
      throw new PciemError('PCIEM_ERR_NO_DEVICE', `BAR${bar}+0x${offset.toString(16)} (${size} bytes): no such BAR range`);
    }
    return mem.subarray(Number(offset), Number(offset) + size);
  }

  private resolve(addr: bigint, len: number, what: string): Uint8Array {
    if (this.closed) throw new PciemError('PCIEM_ERR_NO_DEVICE', `DMA ${what}: the device was removed`);
    for (const m of this.mappings) {
      if (addr >= m.addr && addr + BigInt(len) <= m.addr + BigInt(m.bytes.length)) {
        const o = Number(addr - m.addr);
        return m.bytes.subarray(o, o + len);
      }
    }
    this.counters.dma_faults++;
    throw new PciemError('PCIEM_ERR_FAULT', `DMA ${what} of ${len} bytes at 0x${addr.toString(16)}: not in memory the driver mapped for the device`);
  }
}

/** Makes FakeHosts; each one created is announced with the 'device' event. */
export class FakeBackend extends EventEmitter implements HostBackend {
  readonly devices: FakeHost[] = [];

  constructor(private readonly readTimeoutMs = 1000) {
    super();
  }

  create(desc: DeviceRequest): HostDevice {
    const host = new FakeHost(desc, this.readTimeoutMs);
    this.devices.push(host);
    this.emit('device', host);
    return host;
  }

  /** The next device created (or one already made and not yet taken). */
  nextDevice(timeoutMs = 30_000): Promise<FakeHost> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('device', on);
        reject(new PciemError('PCIEM_ERR_TIMEOUT', `no model described a device within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (h: FakeHost): void => {
        clearTimeout(timer);
        resolve(h);
      };
      this.once('device', on);
    });
  }
}
