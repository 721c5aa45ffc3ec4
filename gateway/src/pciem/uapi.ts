// The /dev/pciem uAPI in TypeScript: struct layouts and ioctl numbers of
// kernel/include/uapi/linux/pciem.h. test/unit/gateway-uapi.test.ts compiles
// a C program against that header and checks every size, offset and
// number here, so the two cannot drift apart.

export type FieldType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';
export interface Field {
  type: FieldType;
  offset: number;
  /** For arrays: the element count. */
  count?: number;
}
export interface StructDef {
  name: string;
  size: number;
  fields: Record<string, Field>;
}

const SIZES: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

function def(name: string, size: number, fields: Record<string, [FieldType, number] | [FieldType, number, number]>): StructDef {
  const out: Record<string, Field> = {};
  for (const [k, [type, offset, count]] of Object.entries(fields)) out[k] = count === undefined ? { type, offset } : { type, offset, count };
  return { name, size, fields: out };
}

export const S = {
  create_device: def('pciem_create_device', 8, { flags: ['u32', 0], func: ['u8', 4] }),
  bar_config: def('pciem_bar_config', 24, { bar_index: ['u32', 0], flags: ['u32', 4], size: ['u64', 8], func: ['u8', 16] }),
  cap_config: def('pciem_cap_config', 24, {
    cap_type: ['u32', 0], func: ['u8', 4],
    'msi.num_vectors_log2': ['u8', 8], 'msi.has_64bit': ['u8', 9], 'msi.has_masking': ['u8', 10],
    'msix.bar_index': ['u8', 8], 'msix.table_offset': ['u32', 12], 'msix.pba_offset': ['u32', 16], 'msix.table_size': ['u16', 20],
  }),
  config_space: def('pciem_config_space', 24, {
    func: ['u8', 0], vendor_id: ['u16', 4], device_id: ['u16', 6], subsys_vendor_id: ['u16', 8], subsys_device_id: ['u16', 10],
    revision: ['u8', 12], class_code: ['u8', 13, 3], header_type: ['u8', 16],
  }),
  event: def('pciem_event', 48, {
    seq: ['u64', 0], type: ['u32', 8], bar: ['u32', 12], offset: ['u64', 16], size: ['u32', 24], data: ['u64', 32], timestamp: ['u64', 40],
  }),
  irq_inject: def('pciem_irq_inject', 8, { vector: ['u32', 0], func: ['u8', 4] }),
  dma_op: def('pciem_dma_op', 32, {
    guest_iova: ['u64', 0], user_addr: ['u64', 8], length: ['u32', 16], pasid: ['u32', 20], flags: ['u32', 24], func: ['u8', 28],
  }),
  p2p_op_user: def('pciem_p2p_op_user', 32, {
    target_phys_addr: ['u64', 0], user_addr: ['u64', 8], length: ['u32', 16], flags: ['u32', 20], func: ['u8', 24],
  }),
  intx: def('pciem_intx', 16, { argsz: ['u32', 0], flags: ['u32', 4], func: ['u8', 8], level: ['u8', 9] }),
  trace_bar: def('pciem_trace_bar', 12, { bar_index: ['u32', 0], flags: ['u32', 4], func: ['u8', 8] }),
  eventfd_config: def('pciem_eventfd_config', 8, { eventfd: ['s32', 0] }),
  bar_info_query: def('pciem_bar_info_query', 32, { bar_index: ['u32', 0], phys_addr: ['u64', 8], size: ['u64', 16], flags: ['u32', 24], func: ['u8', 28] }),
  info: def('pciem_info', 56, {
    argsz: ['u32', 0], flags: ['u32', 4], api_version: ['u32', 8], features: ['u32', 12], max_functions: ['u32', 16], ring_size: ['u32', 20],
  }),
  ring_mode: def('pciem_ring_mode', 32, { argsz: ['u32', 0], flags: ['u32', 4], timeout_us: ['u32', 8] }),
  read_region: def('pciem_read_region', 48, {
    argsz: ['u32', 0], flags: ['u32', 4], func: ['u8', 8], bar: ['u8', 9], timeout_us: ['u32', 12], offset: ['u64', 16], length: ['u64', 24],
  }),
  read_reply: def('pciem_read_reply', 40, { argsz: ['u32', 0], flags: ['u32', 4], seq: ['u64', 8], data: ['u64', 16] }),
  stats_query: def('pciem_stats_query', 136, {
    argsz: ['u32', 0], flags: ['u32', 4], mmio_reads: ['u64', 8], mmio_writes: ['u64', 16], unclaimed: ['u64', 24],
    after_removal: ['u64', 32], ring_drops: ['u64', 40], ring_stalls: ['u64', 48], ring_timeouts: ['u64', 56],
    sync_reads: ['u64', 64], sync_read_timeouts: ['u64', 72],
  }),
  dma_mapping: def('pciem_dma_mapping', 24, { iova: ['u64', 0], size: ['u64', 8], kind: ['u32', 16], dir: ['u32', 20] }),
  dma_mappings: def('pciem_dma_mappings', 40, {
    argsz: ['u32', 0], flags: ['u32', 4], func: ['u8', 8], count: ['u32', 12], entries: ['u64', 16],
  }),
} as const;

/** The compatible ring: head (card's read index), tail (kernel's), 256 events. */
export const RING = { head: 0, tail: 64, events: 128, entries: 256, size: 12416 } as const;

export const MAGIC = 0xaf;
const NONE = 0;
const WRITE = 1; // userspace -> kernel
const READ = 2; // kernel -> userspace
function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (MAGIC << 8) | nr) >>> 0;
}

export const IOCTL = {
  CREATE_DEVICE: ioc(READ | WRITE, 10, S.create_device.size),
  ADD_BAR: ioc(WRITE, 11, S.bar_config.size),
  ADD_CAPABILITY: ioc(WRITE, 12, S.cap_config.size),
  SET_CONFIG: ioc(WRITE, 13, S.config_space.size),
  REGISTER: ioc(NONE, 14, 0),
  INJECT_IRQ: ioc(WRITE, 15, S.irq_inject.size),
  DMA: ioc(READ | WRITE, 16, S.dma_op.size),
  P2P: ioc(READ | WRITE, 18, S.p2p_op_user.size),
  GET_BAR_INFO: ioc(READ | WRITE, 19, S.bar_info_query.size),
  SET_EVENTFD: ioc(WRITE, 21, S.eventfd_config.size),
  TRACE_BAR: ioc(READ | WRITE, 25, S.trace_bar.size),
  START: ioc(NONE, 26, 0),
  GET_INFO: ioc(READ | WRITE, 40, S.info.size),
  SET_RING_MODE: ioc(WRITE, 41, S.ring_mode.size),
  SET_READ_REGION: ioc(WRITE, 42, S.read_region.size),
  COMPLETE_READ: ioc(WRITE, 43, S.read_reply.size),
  GET_STATS: ioc(READ | WRITE, 44, S.stats_query.size),
  SET_INTX: ioc(WRITE, 48, S.intx.size),
  DMA_MAPPINGS: ioc(READ | WRITE, 56, S.dma_mappings.size),
} as const;

export const EVENT = { MMIO_READ: 1, MMIO_WRITE: 2, CONFIG_WRITE: 4, RESET: 6, MMIO_READ_SYNC: 7, POWER: 8 } as const;
export const TRACE = { READS: 1, WRITES: 2, STOP_WRITES: 4 } as const;
export const DMA_FLAG = { READ: 1, WRITE: 2 } as const;
export const DMA_MAP = { COHERENT: 1, PAGES: 2, SINGLE: 3, SG: 4, RESOURCE: 5 } as const;
export const DMA_DIR = { BIDIRECTIONAL: 0, TO_DEVICE: 1, FROM_DEVICE: 2 } as const;
export const RING_FLAG = { LOSSLESS: 1, CONFIG_EVENTS: 2 } as const;
export const CAP = { MSI: 0, MSIX: 1, PM: 2, PCIE: 3, VSEC: 4, PASID: 5 } as const;
export const BAR_FLAG = { MEM_64: 0x4, PREFETCH: 0x8 } as const;

export type Values = Record<string, number | bigint | readonly number[]>;

/** A zeroed buffer of the struct with the given fields set. */
export function encode(s: StructDef, values: Values = {}): Uint8Array {
  const buf = new Uint8Array(s.size);
  const dv = new DataView(buf.buffer);
  for (const [name, value] of Object.entries(values)) {
    const f = s.fields[name];
    if (!f) throw new TypeError(`${s.name} has no field ${name}`);
    const items = Array.isArray(value) ? (value as readonly number[]) : [value as number | bigint];
    if (items.length > (f.count ?? 1)) throw new RangeError(`${s.name}.${name} holds ${f.count ?? 1} values`);
    items.forEach((v, i) => put(dv, f.type, f.offset + i * SIZES[f.type], v));
  }
  return buf;
}

/** A field's byte offset in its struct. */
export function offsetOf(s: StructDef, name: string): number {
  const f = s.fields[name];
  if (!f) throw new TypeError(`${s.name} has no field ${name}`);
  return f.offset;
}

/** Reads one field (bigint for u64). */
export function field(s: StructDef, buf: Uint8Array, name: string): number | bigint {
  const f = s.fields[name];
  if (!f) throw new TypeError(`${s.name} has no field ${name}`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return get(dv, f.type, f.offset);
}

function put(dv: DataView, t: FieldType, off: number, v: number | bigint): void {
  switch (t) {
    case 'u8': dv.setUint8(off, Number(v)); break;
    case 'u16': dv.setUint16(off, Number(v), true); break;
    case 'u32': dv.setUint32(off, Number(v), true); break;
    case 's32': dv.setInt32(off, Number(v), true); break;
    case 'u64': dv.setBigUint64(off, BigInt(v), true); break;
  }
}

function get(dv: DataView, t: FieldType, off: number): number | bigint {
  switch (t) {
    case 'u8': return dv.getUint8(off);
    case 'u16': return dv.getUint16(off, true);
    case 'u32': return dv.getUint32(off, true);
    case 's32': return dv.getInt32(off, true);
    case 'u64': return dv.getBigUint64(off, true);
  }
}
