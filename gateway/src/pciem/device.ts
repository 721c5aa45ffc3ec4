// A synthetic PCIe device described and served through /dev/pciem.
//
//   const d = PciemDevice.open();
//   d.createFunction(0); d.setConfig(0, {...}); d.addBar(0, 0, 0x10000, { is64: true });
//   d.traceBar(0, 0, TRACE.WRITES); d.register(); const bar0 = d.mapBar(0, 0);
//   d.onEvents((events) => ...); d.start();
//   ... d.close();   // surprise removal for the host
import { PciemError, fromSysError } from '../errors.js';
import { native } from '../native.js';
import { CAP, DMA_FLAG, DMA_MAP, EVENT, IOCTL, RING, RING_FLAG, S, encode, field, offsetOf, type StructDef, type Values } from './uapi.js';

export interface PciemEvent {
  seq: bigint;
  type: number;
  /** BAR index, plus func << 8 for functions other than 0. */
  bar: number;
  offset: bigint;
  size: number;
  data: bigint;
  timestamp: bigint;
}

export interface FunctionConfig {
  vendorId: number;
  deviceId: number;
  subsysVendorId?: number;
  subsysDeviceId?: number;
  revision?: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | prog-if. */
  classCode: number;
}

export interface BarOptions {
  is64?: boolean;
  prefetch?: boolean;
}

export interface PciemInfo {
  apiVersion: number;
  features: number;
  maxFunctions: number;
  ringSize: number;
}

export type PciemStats = Record<
  'mmio_reads' | 'mmio_writes' | 'unclaimed' | 'after_removal' | 'ring_drops' | 'ring_stalls' | 'ring_timeouts' | 'sync_reads' | 'sync_read_timeouts',
  bigint
>;

/** One host memory range the function's driver mapped for the card (DMA_MAPPINGS). */
export interface DmaMapping {
  iova: bigint;
  size: bigint;
  /** DMA_MAP.* */
  kind: number;
  /** DMA_DIR.* */
  dir: number;
}

export class PciemDevice {
  private instanceFd = -1;
  private ring: DataView | null = null;
  private ringInts: Int32Array | null = null;
  private eventFd = -1;
  private readonly maps: ArrayBuffer[] = [];
  private poller: { close(): void } | null = null;
  private closed = false;
  private paused = false;
  private handler: ((events: PciemEvent[]) => void) | null = null;

  private constructor(private readonly fd: number) {}

  /** Opens /dev/pciem: one open describes one device. */
  static open(path = '/dev/pciem'): PciemDevice {
    try {
      return new PciemDevice(native.open(path, native.O_RDWR));
    } catch (e) {
      const err = fromSysError(e, `opening ${path}`);
      if (err.errno === 'ENOENT') throw new PciemError('PCIEM_ERR_NOT_LOADED', `${path} does not exist: is pciem.ko loaded?`, 'ENOENT');
      throw err;
    }
  }

  private call(request: number, what: string, arg?: Uint8Array): number {
    if (this.closed) throw new PciemError('PCIEM_ERR_NO_DEVICE', `${what}: the device is closed`);
    try {
      return native.ioctl(this.fd, request, arg ?? null);
    } catch (e) {
      throw fromSysError(e, what);
    }
  }

  private ext(s: StructDef, request: number, what: string, values: Values = {}): Uint8Array {
    const buf = encode(s, { argsz: s.size, ...values });
    this.call(request, what, buf);
    return buf;
  }

  info(): PciemInfo {
    const b = this.ext(S.info, IOCTL.GET_INFO, 'GET_INFO');
    return {
      apiVersion: Number(field(S.info, b, 'api_version')),
      features: Number(field(S.info, b, 'features')),
      maxFunctions: Number(field(S.info, b, 'max_functions')),
      ringSize: Number(field(S.info, b, 'ring_size')),
    };
  }

  createFunction(func: number): void {
    this.call(IOCTL.CREATE_DEVICE, `CREATE_DEVICE function ${func}`, encode(S.create_device, { func }));
  }

  setConfig(func: number, c: FunctionConfig): void {
    this.call(IOCTL.SET_CONFIG, `SET_CONFIG function ${func}`, encode(S.config_space, {
      func,
      vendor_id: c.vendorId,
      device_id: c.deviceId,
      subsys_vendor_id: c.subsysVendorId ?? 0,
      subsys_device_id: c.subsysDeviceId ?? 0,
      revision: c.revision ?? 0,
      class_code: [c.classCode & 0xff, (c.classCode >> 8) & 0xff, (c.classCode >> 16) & 0xff],
    }));
  }

  addBar(func: number, bar: number, size: number | bigint, opts: BarOptions = {}): void {
    const flags = (opts.is64 ? 0x4 : 0) | (opts.prefetch ? 0x8 : 0);
    this.call(IOCTL.ADD_BAR, `ADD_BAR ${func}.${bar}`, encode(S.bar_config, { func, bar_index: bar, size: BigInt(size), flags }));
  }

  addMsi(func: number, vectorsLog2: number, opts: { is64?: boolean; masking?: boolean } = {}): void {
    this.call(IOCTL.ADD_CAPABILITY, `ADD_CAPABILITY MSI ${func}`, encode(S.cap_config, {
      cap_type: 0, func, 'msi.num_vectors_log2': vectorsLog2, 'msi.has_64bit': opts.is64 ? 1 : 0, 'msi.has_masking': opts.masking ? 1 : 0,
    }));
  }

  /** An MSI-X capability whose table and PBA live in BAR `bar` (pciem serves them). */
  addMsix(func: number, bar: number, vectors: number, tableOffset: number, pbaOffset: number): void {
    this.call(IOCTL.ADD_CAPABILITY, `ADD_CAPABILITY MSI-X ${func}`, encode(S.cap_config, {
      cap_type: CAP.MSIX, func, 'msix.bar_index': bar, 'msix.table_offset': tableOffset, 'msix.pba_offset': pbaOffset, 'msix.table_size': vectors,
    }));
  }

  /** A capability without parameters: power management or PCI Express. */
  addCapability(func: number, cap: 'PM' | 'PCIE'): void {
    this.call(IOCTL.ADD_CAPABILITY, `ADD_CAPABILITY ${cap} ${func}`, encode(S.cap_config, { cap_type: CAP[cap], func }));
  }

  traceBar(func: number, bar: number, flags: number): void {
    this.call(IOCTL.TRACE_BAR, `TRACE_BAR ${func}.${bar}`, encode(S.trace_bar, { func, bar_index: bar, flags }));
  }

  setRingMode(opts: { lossless?: boolean; configEvents?: boolean; timeoutUs?: number }): void {
    const flags = (opts.lossless ? RING_FLAG.LOSSLESS : 0) | (opts.configEvents ? RING_FLAG.CONFIG_EVENTS : 0);
    this.ext(S.ring_mode, IOCTL.SET_RING_MODE, 'SET_RING_MODE', { flags, timeout_us: opts.timeoutUs ?? 0 });
  }

  /** Driver reads in [offset, offset + length) of the BAR are answered with completeRead(). */
  setReadRegion(func: number, bar: number, offset: number, length: number, timeoutUs = 0): void {
    this.ext(S.read_region, IOCTL.SET_READ_REGION, `SET_READ_REGION ${func}.${bar}`, {
      func, bar, offset: BigInt(offset), length: BigInt(length), timeout_us: timeoutUs,
    });
  }

  completeRead(seq: bigint, data: bigint): void {
    this.ext(S.read_reply, IOCTL.COMPLETE_READ, `COMPLETE_READ ${seq}`, { seq, data });
  }

  /** One interrupt: MSI-X/MSI vector, or an INTx pulse, as the host set the function up. */
  injectIrq(func: number, vector: number): void {
    this.call(IOCTL.INJECT_IRQ, `INJECT_IRQ ${func}/${vector}`, encode(S.irq_inject, { vector, func }));
  }

  /**
   * injectIrq() on a worker thread: the driver's handler runs on the CPU
   * that injects, in hard irq context, and may wait for this process (a
   * read the card answers) — so the event loop must not be that thread.
   */
  injectIrqAsync(func: number, vector: number): Promise<void> {
    return this.callAsync(IOCTL.INJECT_IRQ, `INJECT_IRQ ${func}/${vector}`, encode(S.irq_inject, { vector, func }));
  }

  /** setIntx() on a worker thread, for the same reason as injectIrqAsync(). */
  setIntxAsync(func: number, level: boolean): Promise<void> {
    return this.callAsync(IOCTL.SET_INTX, `SET_INTX ${func} ${level ? 'assert' : 'deassert'}`, encode(S.intx, { argsz: S.intx.size, func, level: level ? 1 : 0 }));
  }

  private callAsync(request: number, what: string, arg: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new PciemError('PCIEM_ERR_NO_DEVICE', `${what}: the device is closed`));
    return new Promise((resolve, reject) => {
      native.ioctlAsync(this.fd, request, arg, (err) => {
        if (err) reject(fromSysError(err, what));
        else resolve();
      });
    });
  }

  /** Drives the function's INTx line as a level. */
  setIntx(func: number, level: boolean): void {
    this.ext(S.intx, IOCTL.SET_INTX, `SET_INTX ${func} ${level ? 'assert' : 'deassert'}`, { func, level: level ? 1 : 0 });
  }

  /**
   * The card reads `length` bytes of host memory at bus address `iova`
   * (confined to the driver's mappings), into the start of `into` when
   * given (the kernel writes there: no copy here), else a new array.
   */
  dmaRead(func: number, iova: bigint, length: number, into?: Uint8Array): Uint8Array {
    if (into && into.length < length) throw new PciemError('PCIEM_ERR_INVALID', `DMA read of ${length} bytes into ${into.length}`);
    const data = into ? into.subarray(0, length) : new Uint8Array(length);
    this.dma(func, iova, data, DMA_FLAG.READ);
    return data;
  }

  /** The card writes `data` to host memory at bus address `iova`; visible to the host when this returns. */
  dmaWrite(func: number, iova: bigint, data: Uint8Array): void {
    this.dma(func, iova, data, DMA_FLAG.WRITE);
  }

  /** The host memory the function's driver has mapped for the card now, by IOVA. */
  dmaMappings(func: number): DmaMapping[] {
    if (this.closed) throw new PciemError('PCIEM_ERR_NO_DEVICE', 'DMA_MAPPINGS: the device is closed');
    const one = S.dma_mapping.size;
    // The count can grow between two calls: ask again with room for what was reported.
    for (let room = 64; ;) {
      const entries = new Uint8Array(room * one);
      const arg = encode(S.dma_mappings, { argsz: S.dma_mappings.size, func, count: room });
      try {
        native.ioctlPtr(this.fd, IOCTL.DMA_MAPPINGS, arg, offsetOf(S.dma_mappings, 'entries'), entries);
      } catch (e) {
        throw fromSysError(e, `DMA_MAPPINGS function ${func}`);
      }
      const count = Number(field(S.dma_mappings, arg, 'count'));
      if (count > room) {
        room = count;
        continue;
      }
      const out: DmaMapping[] = [];
      for (let i = 0; i < count; i++) {
        const e = entries.subarray(i * one, (i + 1) * one);
        out.push({
          iova: field(S.dma_mapping, e, 'iova') as bigint,
          size: field(S.dma_mapping, e, 'size') as bigint,
          kind: Number(field(S.dma_mapping, e, 'kind')),
          dir: Number(field(S.dma_mapping, e, 'dir')),
        });
      }
      return out;
    }
  }

  /**
   * How many bytes from `iova` on, at most `length`, the card can read
   * through `mappings` (pciem's rule: mappings that follow each other count
   * as one range; dma_map_resource ones are not host memory): 0 when
   * `iova` is not mapped.
   */
  static dmaReadable(mappings: readonly DmaMapping[], iova: bigint, length: number): number {
    const want = iova + BigInt(length);
    let at = iova;
    for (;;) {
      let end = at;
      for (const m of mappings) {
        if (m.kind === DMA_MAP.RESOURCE) continue;
        if (at >= m.iova && at < m.iova + m.size && m.iova + m.size > end) end = m.iova + m.size;
      }
      if (end === at) break;
      at = end;
      if (at >= want) return length;
    }
    return Number(at - iova);
  }

  private dma(func: number, iova: bigint, data: Uint8Array, flags: number): void {
    const what = `DMA ${flags === DMA_FLAG.READ ? 'read' : 'write'} of ${data.length} bytes at 0x${iova.toString(16)}`;
    if (this.closed) throw new PciemError('PCIEM_ERR_NO_DEVICE', `${what}: the device is closed`);
    if (data.length === 0) return;
    const arg = encode(S.dma_op, { guest_iova: iova, length: data.length, flags, func });
    try {
      native.ioctlPtr(this.fd, IOCTL.DMA, arg, offsetOf(S.dma_op, 'user_addr'), data);
    } catch (e) {
      throw fromSysError(e, what);
    }
  }

  stats(): PciemStats {
    const b = this.ext(S.stats_query, IOCTL.GET_STATS, 'GET_STATS');
    const out: Record<string, bigint> = {};
    for (const k of Object.keys(S.stats_query.fields)) if (k !== 'argsz' && k !== 'flags') out[k] = field(S.stats_query, b, k) as bigint;
    return out as PciemStats;
  }

  barInfo(func: number, bar: number): { physAddr: bigint; size: bigint; flags: number } {
    const b = encode(S.bar_info_query, { func, bar_index: bar });
    this.call(IOCTL.GET_BAR_INFO, `GET_BAR_INFO ${func}.${bar}`, b);
    return {
      physAddr: field(S.bar_info_query, b, 'phys_addr') as bigint,
      size: field(S.bar_info_query, b, 'size') as bigint,
      flags: Number(field(S.bar_info_query, b, 'flags')),
    };
  }

  /** Puts the device on the bus (drivers do not bind yet) and maps the event ring. */
  register(): void {
    this.instanceFd = this.call(IOCTL.REGISTER, 'REGISTER');
    try {
      const ab = native.mmap(this.fd, RING.size, 0);
      this.maps.push(ab);
      this.ring = new DataView(ab);
      this.ringInts = new Int32Array(ab, 0, RING.tail / 4 + 1);
    } catch (e) {
      throw fromSysError(e, 'mapping the event ring');
    }
  }

  /** The BAR's memory, shared with the kernel: what the driver reads. */
  mapBar(func: number, bar: number): Uint8Array {
    if (this.instanceFd < 0) throw new PciemError('PCIEM_ERR_BUSY', 'mapBar: register() first');
    const { size } = this.barInfo(func, bar);
    try {
      const ab = native.mmap(this.instanceFd, Number(size), (func * 8 + bar) * 4096);
      this.maps.push(ab);
      return new Uint8Array(ab);
    } catch (e) {
      throw fromSysError(e, `mapping BAR ${func}.${bar}`);
    }
  }

  /** Lets drivers bind. */
  start(): void {
    this.call(IOCTL.START, 'START');
  }

  /** Takes every event now in the ring, in order. */
  drain(): PciemEvent[] {
    const ring = this.ring;
    const ints = this.ringInts;
    if (!ring || !ints) return [];
    const out: PciemEvent[] = [];
    let head = Atomics.load(ints, RING.head / 4);
    const tail = Atomics.load(ints, RING.tail / 4);
    while (head !== tail) {
      const o = RING.events + head * S.event.size;
      out.push({
        seq: ring.getBigUint64(o, true),
        type: ring.getUint32(o + 8, true),
        bar: ring.getUint32(o + 12, true),
        offset: ring.getBigUint64(o + 16, true),
        size: ring.getUint32(o + 24, true),
        data: ring.getBigUint64(o + 32, true),
        timestamp: ring.getBigUint64(o + 40, true),
      });
      head = (head + 1) % RING.entries;
    }
    Atomics.store(ints, RING.head / 4, head);
    return out;
  }

  /**
   * Calls `handler` on the event loop with each batch of events, woken by
   * the kernel's eventfd (no polling while idle).
   */
  onEvents(handler: (events: PciemEvent[]) => void, onError: (e: PciemError) => void = (e) => { throw e; }): void {
    if (this.poller) throw new PciemError('PCIEM_ERR_BUSY', 'onEvents: already listening');
    this.eventFd = native.eventfd(0);
    this.call(IOCTL.SET_EVENTFD, 'SET_EVENTFD', encode(S.eventfd_config, { eventfd: this.eventFd }));
    this.poller = new native.Poller(this.eventFd, (err) => {
      if (err) {
        onError(fromSysError(err, 'waiting for events'));
        return;
      }
      native.readEventFd(this.eventFd);
      if (this.paused) return;
      const events = this.drain();
      if (events.length) handler(events);
    });
    this.handler = handler;
    // Events may have arrived before the eventfd was attached.
    const early = this.drain();
    if (early.length) queueMicrotask(() => handler(early));
  }

  /**
   * Backpressure: while paused, events stay in the ring (a lossless ring
   * then makes the driver wait); resume() delivers what arrived meanwhile.
   */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const handler = this.handler;
    if (!handler || this.closed) return;
    const events = this.drain();
    if (events.length) handler(events);
  }

  /**
   * Closing is a surprise removal for the host side. The ring and BAR
   * mappings go first (they hold the files open); views of them read as
   * empty afterwards.
   */
  close(): void {
    if (this.closed) return;
    this.poller?.close();
    this.poller = null;
    this.ring = null;
    this.ringInts = null;
    for (const ab of this.maps.splice(0)) native.munmap(ab);
    for (const fd of [this.eventFd, this.instanceFd, this.fd]) if (fd >= 0) native.close(fd);
    this.closed = true;
  }
}

export { EVENT };
