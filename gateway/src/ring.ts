// The hot path's single-producer/single-consumer rings (docs/protocol.md,
// "Rings"): the TypeScript side of proto/ring/pciem_ring.h, over an
// ArrayBuffer that the addon mmap()ed from a memfd shared with the peer.
//
// Memory model. The indices and flags are read and written only with
// Atomics on an Int32Array; slot contents with plain typed-array/DataView
// accesses. On x86-64 (the only target: see DESIGN.md) V8 compiles
// Atomics.load to a plain mov and Atomics.store/exchange to xchg, the same
// instructions C11 uses for acquire loads and seq_cst stores, and x86's TSO
// keeps plain stores in program order and plain loads in program order. So
// "write the slot, then Atomics.store(prod)" is a release, "Atomics.load(prod),
// then read the slot" is an acquire, and Atomics.store of a flag (xchg: a
// full barrier) followed by Atomics.load of the peer's index is the
// store-load order the sleep protocol needs; the C side uses a seq_cst fence
// there. What we rely on beyond the ECMAScript spec: Atomics on a non-shared
// ArrayBuffer (the addon's external buffer cannot be a SharedArrayBuffer)
// are still real memory accesses that V8 neither caches nor reorders, which
// holds because V8 lowers them the same way whatever the buffer's kind.
//
// Nothing here allocates per message: popBatch() copies into the caller's
// reused buffer, reserve()/commit() fill slots in place through `view`.
import { PciemError } from './errors.js';
import { native } from './native.js';

export const RING_MAGIC = 0x474e5250; // "PRNG" in memory order
export const RING_VERSION = 1;
export const RING_HDR_SIZE = 256;
export const RING_MSG_HDR = 16;
export const RING_SLOT_MIN = 32;
export const RING_SLOT_MAX = 4096;
export const RING_SLOTS_MAX = 1 << 20;

// Int32Array indices (byte offset / 4) and BigInt64Array indices (/ 8) of the header's fields.
const I32 = { magic: 0, version: 1, slotSize: 2, slotCount: 3, prod: 16, prodWaiting: 17, cons: 32, consSleeping: 33 };
const I64 = { fullWaits: 9, fullTimeouts: 10, dataWakes: 11, consumerSleeps: 17, spaceWakes: 18 };

export interface RingStats {
  fullWaits: bigint;
  fullTimeouts: bigint;
  dataWakes: bigint;
  consumerSleeps: bigint;
  spaceWakes: bigint;
}

/** Bytes of shared memory a ring needs. */
export function ringBytes(slotSize: number, slotCount: number): number {
  return RING_HDR_SIZE + slotSize * slotCount;
}

function geometryOk(slotSize: number, slotCount: number): boolean {
  return (
    Number.isInteger(slotSize) &&
    Number.isInteger(slotCount) &&
    slotSize >= RING_SLOT_MIN &&
    slotSize <= RING_SLOT_MAX &&
    slotSize % 16 === 0 &&
    slotCount >= 2 &&
    slotCount <= RING_SLOTS_MAX &&
    (slotCount & (slotCount - 1)) === 0
  );
}

/**
 * Writes an empty ring into `buffer`: both counters at `start` (0 normally;
 * tests start near 2^32). Done by the side that creates the memory, before
 * the peer attaches.
 */
export function formatRing(buffer: ArrayBuffer, slotSize: number, slotCount: number, start = 0): void {
  if (!geometryOk(slotSize, slotCount))
    throw new PciemError('PCIEM_ERR_INVALID', `ring geometry ${slotSize} x ${slotCount}: slot size 32..4096 in 16s, count a power of two 2..2^20`);
  if (buffer.byteLength < ringBytes(slotSize, slotCount))
    throw new PciemError('PCIEM_ERR_NO_SPACE', `a ${slotSize} x ${slotCount} ring needs ${ringBytes(slotSize, slotCount)} bytes`);
  new Uint8Array(buffer, 0, ringBytes(slotSize, slotCount)).fill(0);
  const h = new Int32Array(buffer, 0, RING_HDR_SIZE / 4);
  h[I32.version] = RING_VERSION;
  h[I32.slotSize] = slotSize;
  h[I32.slotCount] = slotCount;
  Atomics.store(h, I32.prod, start | 0);
  Atomics.store(h, I32.cons, start | 0);
  Atomics.store(h, I32.magic, RING_MAGIC);
}

/** What both sides share: the views, the geometry, the counters. */
abstract class RingSide {
  /** The whole mapping, for filling or reading slots in place. */
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly slotSize: number;
  readonly slotCount: number;
  protected readonly h: Int32Array;
  protected readonly h64: BigInt64Array;
  protected readonly mask: number;
  /** Own counter (u32, kept as a non-negative number). */
  protected head: number;
  /** Last seen value of the peer's counter. */
  protected peer: number;

  protected constructor(
    buffer: ArrayBuffer,
    own: number,
    other: number,
    protected readonly dataFd: number,
    protected readonly spaceFd: number,
  ) {
    if (buffer.byteLength < RING_HDR_SIZE) throw new PciemError('PCIEM_ERR_PROTO_RANGE', 'ring: shorter than its header');
    this.h = new Int32Array(buffer, 0, RING_HDR_SIZE / 4);
    this.h64 = new BigInt64Array(buffer, 0, RING_HDR_SIZE / 8);
    if (Atomics.load(this.h, I32.magic) !== RING_MAGIC || this.h[I32.version] !== RING_VERSION)
      throw new PciemError('PCIEM_ERR_PROTO_RANGE', 'ring: bad magic or version');
    const slotSize = this.h[I32.slotSize] ?? 0;
    const slotCount = this.h[I32.slotCount] ?? 0;
    if (!geometryOk(slotSize, slotCount) || buffer.byteLength < ringBytes(slotSize, slotCount))
      throw new PciemError('PCIEM_ERR_PROTO_RANGE', `ring: geometry ${slotSize} x ${slotCount} does not fit ${buffer.byteLength} bytes`);
    this.slotSize = slotSize;
    this.slotCount = slotCount;
    this.mask = slotCount - 1;
    this.bytes = new Uint8Array(buffer, 0, ringBytes(slotSize, slotCount));
    this.view = new DataView(buffer, 0, ringBytes(slotSize, slotCount));
    this.head = Atomics.load(this.h, own) >>> 0;
    this.peer = Atomics.load(this.h, other) >>> 0;
    const ahead = own === I32.prod ? this.head - this.peer : this.peer - this.head;
    if (ahead >>> 0 > slotCount)
      throw new PciemError('PCIEM_ERR_PROTO_RANGE', 'ring: counters further apart than the ring is long');
  }

  /** Byte offset of slot number `index` (a free-running counter) in `bytes`/`view`. */
  protected slotOffset(index: number): number {
    return RING_HDR_SIZE + (index & this.mask) * this.slotSize;
  }

  stats(): RingStats {
    return {
      fullWaits: Atomics.load(this.h64, I64.fullWaits),
      fullTimeouts: Atomics.load(this.h64, I64.fullTimeouts),
      dataWakes: Atomics.load(this.h64, I64.dataWakes),
      consumerSleeps: Atomics.load(this.h64, I64.consumerSleeps),
      spaceWakes: Atomics.load(this.h64, I64.spaceWakes),
    };
  }
}

/**
 * The consuming side. Either drive it yourself (popBatch, prepareSleep) or
 * let start() drive it on the event loop: woken through the data eventfd
 * only when it said it sleeps.
 */
export class RingConsumer extends RingSide {
  private poller: { close(): void } | null = null;

  constructor(buffer: ArrayBuffer, dataFd: number, spaceFd: number) {
    super(buffer, I32.cons, I32.prod, dataFd, spaceFd);
  }

  /** Published slots not yet consumed; throws PROTO_RANGE when the producer's counter is impossible. */
  available(): number {
    const prod = Atomics.load(this.h, I32.prod) >>> 0;
    const n = (prod - this.head) >>> 0;
    if (n > this.slotCount) throw new PciemError('PCIEM_ERR_PROTO_RANGE', `ring: producer index ${prod} is ${n} slots ahead of ${this.head}`);
    this.peer = prod;
    return n;
  }

  /**
   * Copies up to out.length / slotSize messages, whole slots back to back
   * (each: 16-byte header, then its body), into `out`; releases their slots
   * and wakes the producer if it waits for space. Returns how many.
   */
  popBatch(out: Uint8Array): number {
    let n = (this.peer - this.head) >>> 0;
    if (n === 0) n = this.available();
    n = Math.min(n, Math.floor(out.length / this.slotSize));
    if (n === 0) return 0;
    const first = this.head & this.mask;
    const run = Math.min(n, this.slotCount - first);
    out.set(this.bytes.subarray(this.slotOffset(first), this.slotOffset(first) + run * this.slotSize), 0);
    if (run < n) out.set(this.bytes.subarray(RING_HDR_SIZE, RING_HDR_SIZE + (n - run) * this.slotSize), run * this.slotSize);
    const maxBody = this.slotSize - RING_MSG_HDR;
    for (let i = 0; i < n; i++) {
      const size = out[i * this.slotSize]! | (out[i * this.slotSize + 1]! << 8) | (out[i * this.slotSize + 2]! << 16) | (out[i * this.slotSize + 3]! << 24);
      if (size >>> 0 > maxBody) throw new PciemError('PCIEM_ERR_PROTO_RANGE', `ring: a slot says ${size >>> 0} body bytes, a slot holds ${maxBody}`);
    }
    this.head = (this.head + n) >>> 0;
    // A seq_cst store (xchg): ordered before the load of prod_waiting below.
    Atomics.store(this.h, I32.cons, this.head | 0);
    if (Atomics.load(this.h, I32.prodWaiting) !== 0 && Atomics.exchange(this.h, I32.prodWaiting, 0) !== 0) {
      Atomics.add(this.h64, I64.spaceWakes, 1n);
      native.writeEventFd(this.spaceFd, 1);
    }
    return n;
  }

  /**
   * Says "consumer sleeping", then re-checks: true when the ring is still
   * empty (the producer will write the data eventfd for the next message),
   * false when a message arrived in between (the flag is withdrawn).
   */
  prepareSleep(): boolean {
    Atomics.store(this.h, I32.consSleeping, 1);
    if (this.available() !== 0) {
      Atomics.store(this.h, I32.consSleeping, 0);
      return false;
    }
    Atomics.add(this.h64, I64.consumerSleeps, 1n);
    return true;
  }

  /**
   * Drains the ring on the event loop into `out`, calling onBatch(out, n) for
   * each batch (out is reused: copy what you keep), and sleeps on the data
   * eventfd when empty. At most `budget` batches run before yielding to the
   * event loop. onError gets a corrupt ring; the consumer stops then.
   */
  start(out: Uint8Array, onBatch: (out: Uint8Array, n: number) => void, onError: (e: Error) => void, budget = 64): void {
    if (this.poller) throw new PciemError('PCIEM_ERR_BUSY', 'ring consumer already started');
    const drain = (): void => {
      if (!this.poller) return;
      try {
        native.readEventFd(this.dataFd);
        for (let i = 0; i < budget; i++) {
          const n = this.popBatch(out);
          if (n > 0) onBatch(out, n);
          else if (this.prepareSleep()) return;
        }
        setImmediate(drain);
      } catch (e) {
        this.stop();
        onError(e as Error);
      }
    };
    this.poller = new native.Poller(this.dataFd, drain);
    setImmediate(drain);
  }

  stop(): void {
    this.poller?.close();
    this.poller = null;
  }
}

/**
 * The producing side: reserve() a slot, fill it through `view` at the
 * returned offset, commit(); or tryPush() a whole message. A full ring is
 * backpressure: waitForSpace() waits (bounded, counted), nothing is dropped.
 */
export class RingProducer extends RingSide {
  private pending = 0;
  private poller: { close(): void } | null = null;
  private wake: (() => void) | null = null;
  private abort: (() => void) | null = null;
  private closed = false;

  constructor(buffer: ArrayBuffer, dataFd: number, spaceFd: number) {
    super(buffer, I32.prod, I32.cons, dataFd, spaceFd);
  }

  full(): boolean {
    const used = (this.head + this.pending - this.peer) >>> 0;
    if (used < this.slotCount) return false;
    this.peer = Atomics.load(this.h, I32.cons) >>> 0;
    return ((this.head + this.pending - this.peer) >>> 0) >= this.slotCount;
  }

  /** Byte offset in `bytes`/`view` of the next free slot, or -1 when full. Published by commit(). */
  reserve(): number {
    if (this.full()) return -1;
    return this.slotOffset(this.head + this.pending++);
  }

  /** Publishes every reserved slot, and wakes the consumer if it sleeps. */
  commit(): void {
    if (this.pending === 0) return;
    this.head = (this.head + this.pending) >>> 0;
    this.pending = 0;
    Atomics.store(this.h, I32.prod, this.head | 0);
    if (Atomics.load(this.h, I32.consSleeping) !== 0 && Atomics.exchange(this.h, I32.consSleeping, 0) !== 0) {
      Atomics.add(this.h64, I64.dataWakes, 1n);
      native.writeEventFd(this.dataFd, 1);
    }
  }

  /** Copies one message (16-byte header + body, at most slotSize bytes) in and publishes it; false when full. */
  tryPush(msg: Uint8Array): boolean {
    if (msg.length < RING_MSG_HDR || msg.length > this.slotSize)
      throw new PciemError('PCIEM_ERR_PROTO_TOO_BIG', `ring: a message of ${msg.length} bytes in ${this.slotSize}-byte slots`);
    const off = this.reserve();
    if (off < 0) return false;
    this.bytes.set(msg, off);
    this.commit();
    return true;
  }

  /**
   * Resolves when the ring has room (at once if it has): sets "producer
   * waiting", re-checks, and waits for the consumer's space eventfd. Counted
   * in fullWaits; after timeoutMs it rejects with PCIEM_ERR_TIMEOUT (counted
   * in fullTimeouts) and nothing has been dropped: the caller still holds
   * its message.
   */
  waitForSpace(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new PciemError('PCIEM_ERR_NO_DEVICE', 'ring closed'));
    if (!this.full()) return Promise.resolve();
    this.commit();
    Atomics.add(this.h64, I64.fullWaits, 1n);
    this.poller ??= new native.Poller(this.spaceFd, () => {
      native.readEventFd(this.spaceFd);
      this.wake?.();
    });
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        Atomics.store(this.h, I32.prodWaiting, 1);
        if (!this.full()) {
          Atomics.store(this.h, I32.prodWaiting, 0);
          clearTimeout(timer);
          this.wake = null;
          this.abort = null;
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.wake = null;
        this.abort = null;
        Atomics.store(this.h, I32.prodWaiting, 0);
        if (!this.full()) return resolve();
        Atomics.add(this.h64, I64.fullTimeouts, 1n);
        reject(new PciemError('PCIEM_ERR_TIMEOUT', `ring full for ${timeoutMs} ms: the consumer is not draining`));
      }, timeoutMs);
      this.abort = () => {
        clearTimeout(timer);
        this.wake = null;
        this.abort = null;
        reject(new PciemError('PCIEM_ERR_NO_DEVICE', 'ring closed'));
      };
      this.wake = check;
      check();
    });
  }

  /**
   * Stops listening for space (call when done with the ring, before
   * unmapping it): a wait in progress rejects with PCIEM_ERR_NO_DEVICE.
   */
  close(): void {
    this.closed = true;
    this.poller?.close();
    this.poller = null;
    this.abort?.();
  }
}
