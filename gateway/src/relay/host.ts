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
  /** Reads host memory the driver mapped for the device; throws PciemError (FAULT, NO_DEVICE). */
  dmaRead(addr: bigint, len: number): Uint8Array;
  /** Writes host memory; visible to the host when it returns. */
  dmaWrite(addr: bigint, data: Uint8Array): void;
  /** One MSI/MSI-X message. */
  msi(kind: IrqKind, vector: number): void;
  /** The INTx line's level. */
  intx(level: boolean): void;
  /** Host-side counters, for STATS and the dashboard. */
  stats(): Record<string, bigint>;
  /** Removes the device (a surprise removal for the driver). */
  close(): void;
}

export interface HostBackend {
  /** Puts the function on the host; throws PciemError (INVALID, ...) when the host refuses it. */
  create(desc: DeviceRequest): HostDevice;
}

/** MMIO value masks by access size. */
export function sizeMask(size: number): bigint {
  return size >= 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n;
}

/** Whether [offset, offset + size) of `bar` lies inside one of the regions. */
export function inRegions(regions: readonly { bar: number; offset: bigint; size: bigint }[], bar: number, offset: bigint, size: number): boolean {
  return regions.some((r) => r.bar === bar && offset >= r.offset && offset + BigInt(size) <= r.offset + r.size);
}
