// The host side of a relayed card, as the relay sees it: something that
// puts a described PCI function on a host and reports the driver's
// accesses, and on which the model's DMA and interrupts act. pciem-host.ts
// is the real one (/dev/pciem); fake-host.ts stands in for it where there
// is no kernel (model development, tests).
import type { DeviceRequest, IrqKind, ResetKind } from '../../../proto/generated/wire.js';

/** What the host reports, in the order the driver did it. */
export interface HostSink {
  /** A driver write in a traced region (posted). */
  write(bar: number, offset: bigint, size: number, value: bigint): void;
  /** A driver read the model must answer: call HostDevice.completeRead(token, value). */
  read(token: bigint, bar: number, offset: bigint, size: number): void;
  /** A config-space write the host made (after the host applied it). */
  configWrite(offset: number, size: number, value: number): void;
  /** The host reset the function. */
  reset(kind: ResetKind): void;
}

export interface HostDevice {
  /** Where the host put it, for logs ("10000:00:00.0", "fake"). */
  readonly address: string;
  /** Starts reporting accesses to the sink; drivers may bind from now on. */
  start(sink: HostSink): void;
  /** Stops taking the driver's accesses until resume() (backpressure: nothing is dropped). */
  pause(): void;
  resume(): void;
  /** Completes the read `token` with `value` (all-ones if the model failed). */
  completeRead(token: bigint, value: bigint): void;
  /** A store into the BAR memory that plain driver reads return. */
  store(bar: number, offset: bigint, size: number, value: bigint): void;
  /**
   * Reads host memory the driver mapped for the device, into the first
   * `len` bytes of `into` when given (else a new array); returns the bytes
   * read. Throws PciemError (FAULT, NO_DEVICE).
   */
  dmaRead(addr: bigint, len: number, into?: Uint8Array): Uint8Array;
  /**
   * How many bytes from `addr` on, at most `len`, one dmaRead would read
   * now: 0 when `addr` itself is not mapped. Asked after a dmaRead was
   * refused, so it may cost a look at the host's current mappings.
   */
  dmaReadable(addr: bigint, len: number): number;
  /** Writes host memory; visible to the host when it returns. */
  dmaWrite(addr: bigint, data: Uint8Array): void;
  /**
   * One MSI/MSI-X message; the INTx line's level. Either may complete later
   * (a promise), in the order they were called; a failure rejects.
   */
  msi(kind: IrqKind, vector: number): void | Promise<void>;
  intx(level: boolean): void | Promise<void>;
  /**
   * Where the host put each capability in its config space (capability ID ->
   * offset), to translate the host's config writes into the model's layout;
   * null when the host's offsets already are the model's. Known once start()
   * has returned.
   */
  capabilities(): Map<number, number> | null;
  /** Host-side counters, for STATS and the dashboard. */
  stats(): Record<string, bigint>;
  /** Removes the device (a surprise removal for the driver). */
  close(): void;
}

export interface HostBackend {
  /** Puts the function on the host; throws PciemError (INVALID, ...) when the host refuses it. */
  create(desc: DeviceRequest): HostDevice;
}

const SIZE_MASKS = [0n, 0xffn, 0xffffn, 0xff_ffffn, 0xffff_ffffn, 0xff_ffff_ffffn, 0xffff_ffff_ffffn, 0xff_ffff_ffff_ffffn, 0xffff_ffff_ffff_ffffn];

/** MMIO value masks by access size. */
export function sizeMask(size: number): bigint {
  return SIZE_MASKS[size] ?? (size >= 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n);
}

/** Whether [offset, offset + size) of `bar` lies inside one of the regions. */
export function inRegions(regions: readonly { bar: number; offset: bigint; size: bigint }[], bar: number, offset: bigint, size: number): boolean {
  return regions.some((r) => r.bar === bar && offset >= r.offset && offset + BigInt(size) <= r.offset + r.size);
}

/** The capability list of a config space: ID -> offset (the first of each ID). */
export function capabilityList(read8: (offset: number) => number): Map<number, number> {
  const caps = new Map<number, number>();
  const status = read8(0x06) | (read8(0x07) << 8);
  if (!(status & 0x10)) return caps;
  let off = read8(0x34) & 0xfc;
  for (let n = 0; off >= 0x40 && off < 0x100 && n < 48; n++) {
    const id = read8(off);
    if (!caps.has(id)) caps.set(id, off);
    off = read8(off + 1) & 0xfc;
  }
  return caps;
}

/**
 * The model's offset for a host config write at `offset`: the header
 * (below 0x40) is the same on both; inside a capability, the same place in
 * the model's capability of that ID; null where the model has no such place.
 */
export function translateConfig(offset: number, size: number, host: Map<number, number>, model: Map<number, number>): number | null {
  if (offset + size <= 0x40) return offset;
  const starts = [...host.entries()].sort((a, b) => a[1] - b[1]);
  for (let i = 0; i < starts.length; i++) {
    const [id, at] = starts[i] as [number, number];
    const end = i + 1 < starts.length ? (starts[i + 1] as [number, number])[1] : 0x100;
    if (offset >= at && offset + size <= end) {
      const m = model.get(id);
      return m === undefined ? null : m + (offset - at);
    }
  }
  return null;
}
