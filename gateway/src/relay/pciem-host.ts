// The real host: a card on the host's PCI bus through /dev/pciem.
import { readFileSync, readdirSync } from 'node:fs';
import { PciemError } from '../errors.js';
import { BarFlags, Caps, IrqKind, MsiFlags, ResetKind, type DeviceRequest } from '../../../proto/generated/wire.js';
import { EVENT, TRACE } from '../pciem/uapi.js';
import { PciemDevice, type PciemEvent } from '../pciem/device.js';
import { capabilityList, inRegions, sizeMask, type HostBackend, type HostDevice, type HostSink } from './host.js';

export interface PciemHostOptions {
  /** The pciem device node. */
  path?: string;
  /** How long a driver read waits for the model before it reads all-ones (pciem's bound). */
  readTimeoutMs?: number;
  /** How long a driver write waits for room in the event ring before the card is taken for dead. */
  ringTimeoutMs?: number;
}

const FUNC = 0;

export class PciemBackend implements HostBackend {
  constructor(private readonly opts: PciemHostOptions = {}) {}

  create(desc: DeviceRequest): HostDevice {
    return PciemHost.create(desc, this.opts);
  }
}

function invalid(msg: string): PciemError {
  return new PciemError('PCIEM_ERR_INVALID', msg);
}

class PciemHost implements HostDevice {
  readonly address: string;
  private readonly bars = new Map<number, DataView>();
  private sink: HostSink | null = null;
  private caps: Map<number, number> = new Map();
  /** The function's PCI address on the host, once started. */
  bdf = '';

  private constructor(
    private readonly dev: PciemDevice,
    private readonly desc: DeviceRequest,
  ) {
    const b0 = desc.bars[0];
    this.address = b0 ? `pciem BAR${b0.index}@0x${dev.barInfo(FUNC, b0.index).physAddr.toString(16)}` : 'pciem';
  }

  static create(desc: DeviceRequest, opts: PciemHostOptions): PciemHost {
    // What pciem cannot do is refused with a reason before anything is made.
    for (const b of desc.bars) {
      if (b.flags & BarFlags.IO) throw invalid(`BAR${b.index}: I/O BARs are not supported by pciem (memory BARs only)`);
      if (b.size < 4096n) throw invalid(`BAR${b.index}: ${b.size} bytes; pciem BARs are at least 4096 bytes`);
    }
    const perBar = new Map<number, number>();
    for (const r of desc.read_via_model) perBar.set(r.bar, (perBar.get(r.bar) ?? 0) + 1);
    for (const [bar, n] of perBar) if (n > 1) throw invalid(`BAR${bar}: ${n} read_via_model regions; pciem answers one region per BAR`);

    const dev = PciemDevice.open(opts.path);
    try {
      dev.createFunction(FUNC);
      dev.setConfig(FUNC, {
        vendorId: desc.vendor_id,
        deviceId: desc.device_id,
        subsysVendorId: desc.subsystem_vendor_id,
        subsysDeviceId: desc.subsystem_id,
        revision: desc.revision,
        classCode: desc.class_code,
      });
      for (const b of desc.bars) dev.addBar(FUNC, b.index, b.size, { is64: (b.flags & BarFlags.MEM64) !== 0, prefetch: (b.flags & BarFlags.PREFETCH) !== 0 });
      if (desc.msi_vectors > 0) {
        dev.addMsi(FUNC, Math.log2(desc.msi_vectors), { is64: (desc.msi_flags & MsiFlags.ADDR64) !== 0, masking: (desc.msi_flags & MsiFlags.MASKING) !== 0 });
      }
      if (desc.msix_vectors > 0) dev.addMsix(FUNC, desc.msix_bar, desc.msix_vectors, desc.msix_table_offset, desc.msix_pba_offset);
      if (desc.caps & Caps.PM) dev.addCapability(FUNC, 'PM');
      if (desc.caps & Caps.PCIE) dev.addCapability(FUNC, 'PCIE');
      for (const bar of new Set(desc.traced.map((r) => r.bar))) dev.traceBar(FUNC, bar, TRACE.WRITES);
      const readUs = Math.round((opts.readTimeoutMs ?? 1000) * 1000);
      for (const r of desc.read_via_model) dev.setReadRegion(FUNC, r.bar, Number(r.offset), Number(r.size), readUs);
      dev.setRingMode({ lossless: true, configEvents: true, timeoutUs: Math.round((opts.ringTimeoutMs ?? 2000) * 1000) });
      dev.register();
      const host = new PciemHost(dev, desc);
      for (const b of desc.bars) {
        const m = dev.mapBar(FUNC, b.index);
        host.bars.set(b.index, new DataView(m.buffer, m.byteOffset, m.byteLength));
      }
      return host;
    } catch (e) {
      dev.close();
      if (e instanceof PciemError && e.code === 'PCIEM_ERR_INVALID') throw invalid(`pciem refused the description: ${e.message}`);
      throw e;
    }
  }

  start(sink: HostSink): void {
    this.sink = sink;
    // Events are delivered on later turns of the event loop, so the config
    // layout read right after START is known before the first one.
    this.dev.onEvents((events) => this.deliver(events));
    this.dev.start();
    this.caps = this.readCapabilities();
  }

  /** The host's capability layout, from the function's config space in sysfs. */
  private readCapabilities(): Map<number, number> {
    const b0 = this.desc.bars[0];
    if (!b0) return new Map();
    const phys = this.dev.barInfo(FUNC, b0.index).physAddr;
    for (const name of readdirSync('/sys/bus/pci/devices')) {
      const dir = `/sys/bus/pci/devices/${name}`;
      let resource: string;
      try {
        resource = readFileSync(`${dir}/resource`, 'utf8');
      } catch {
        continue;
      }
      const line = resource.split('\n')[b0.index] ?? '';
      if (BigInt(line.split(' ')[0] ?? '0') !== phys) continue;
      this.bdf = name;
      const config = readFileSync(`${dir}/config`);
      return capabilityList((o) => config[o] ?? 0);
    }
    throw new PciemError('PCIEM_ERR_NO_DEVICE', `the card (BAR${b0.index} at 0x${phys.toString(16)}) is not in /sys/bus/pci/devices`);
  }

  capabilities(): Map<number, number> | null {
    return this.caps;
  }

  private deliver(events: PciemEvent[]): void {
    const sink = this.sink;
    if (!sink) return;
    for (const e of events) {
      const bar = e.bar & 0xff;
      if ((e.bar >> 8) !== FUNC) continue;
      switch (e.type) {
        case EVENT.MMIO_WRITE:
          if (inRegions(this.desc.traced, bar, e.offset, e.size)) sink.write(bar, e.offset, e.size, e.data & sizeMask(e.size));
          break;
        case EVENT.MMIO_READ_SYNC:
          sink.read(e.seq, bar, e.offset, e.size);
          break;
        case EVENT.CONFIG_WRITE:
          sink.configWrite(Number(e.offset), e.size, Number(e.data & 0xffff_ffffn));
          break;
        case EVENT.RESET:
          sink.reset(ResetKind.FLR);
          break;
        default:
          break;
      }
    }
  }

  pause(): void {
    this.dev.pause();
  }

  resume(): void {
    this.dev.resume();
  }

  completeRead(token: bigint, value: bigint): void {
    try {
      this.dev.completeRead(token, value);
    } catch (e) {
      // The read already timed out on the host (it read all-ones): nothing waits for it.
      if (!(e instanceof PciemError && e.code === 'PCIEM_ERR_STALE')) throw e;
    }
  }

  store(bar: number, offset: bigint, size: number, value: bigint): void {
    const view = this.bars.get(bar);
    if (!view || offset + BigInt(size) > BigInt(view.byteLength)) {
      throw new PciemError('PCIEM_ERR_NO_DEVICE', `store to BAR${bar}+0x${offset.toString(16)}: no such BAR range`);
    }
    const o = Number(offset);
    switch (size) {
      case 1: view.setUint8(o, Number(value)); break;
      case 2: view.setUint16(o, Number(value), true); break;
      case 4: view.setUint32(o, Number(value), true); break;
      default: view.setBigUint64(o, value, true); break;
    }
  }

  dmaRead(addr: bigint, len: number, into?: Uint8Array): Uint8Array {
    return this.dev.dmaRead(FUNC, addr, len, into);
  }

  /*
   * Asked after a refused read only, so the mapping list is fetched each
   * time: the driver maps and unmaps as it goes.
   */
  dmaReadable(addr: bigint, len: number): number {
    return PciemDevice.dmaReadable(this.dev.dmaMappings(FUNC), addr, len);
  }

  dmaWrite(addr: bigint, data: Uint8Array): void {
    this.dev.dmaWrite(FUNC, addr, data);
  }

  /*
   * Interrupts go out from a worker thread, one after the other: the
   * driver's handler runs on the injecting CPU and may read a register the
   * model answers, which needs this process's event loop free. Each waits
   * for the one before it, so they reach the host in the model's order;
   * DMA writes before them were done synchronously, so they land first.
   */
  private irqChain: Promise<void> = Promise.resolve();

  private serial(f: () => Promise<void>): Promise<void> {
    const next = this.irqChain.then(f);
    this.irqChain = next.catch(() => undefined);
    return next;
  }

  msi(_kind: IrqKind, vector: number): Promise<void> {
    // pciem sends what the host enabled (MSI-X, MSI or an INTx pulse).
    return this.serial(() => this.dev.injectIrqAsync(FUNC, vector));
  }

  intx(level: boolean): Promise<void> {
    return this.serial(() => this.dev.setIntxAsync(FUNC, level));
  }

  stats(): Record<string, bigint> {
    return { ...this.dev.stats() };
  }

  close(): void {
    this.sink = null;
    this.bars.clear();
    this.dev.close();
  }
}
