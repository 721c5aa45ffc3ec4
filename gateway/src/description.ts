// Device descriptions: the JSON a user hands the gateway to say which card
// a model must announce (IDs, class, BARs, capabilities) and how the host
// relays it (traced and read-via-model regions), plus how to start its
// QEMU model. The fields are DEVICE's (docs/protocol.md), checked by the
// same codec rules, with readable defaults; gateway/devices/ has examples.
import { readFileSync } from 'node:fs';
import { PciemError } from './errors.js';
import { encodeFrame, messageFromJson, type DeviceRequest, type Region } from '../../proto/generated/wire.js';

export interface QemuModel {
  /** The QEMU device type (-device TYPE). */
  device: string;
  /** Its properties (-device TYPE,key=value,...). */
  properties: Record<string, string | number | boolean>;
}

export interface Description {
  device: DeviceRequest;
  /**
   * Registers the model keeps current in the host's BAR memory (sent to it
   * in the DEVICE reply): driver reads there are served at once, never
   * waiting for the model — what an interrupt handler's status reads need.
   * Only registers a read has no side effect on belong here.
   */
  shadow: Region[];
  qemu: QemuModel | null;
  /** Where it came from, for messages. */
  source: string;
}

const DEFAULTS: Record<string, unknown> = {
  subsystem_vendor_id: 0, subsystem_id: 0, revision: 0, interrupt_pin: 1, msi_vectors: 0, msi_flags: 0,
  msix_vectors: 0, msix_bar: 0, msix_table_offset: 0, msix_pba_offset: 0, caps: 0, traced: [], read_via_model: [],
};
const REQUIRED = ['name', 'vendor_id', 'device_id', 'class_code', 'bars'];
/** Fields that are u64 on the wire: their JSON form is a "0x..." string (numbers are accepted too). */
const U64 = new Set(['size', 'offset']);

function bad(source: string, why: string): PciemError {
  return new PciemError('PCIEM_ERR_INVALID', `${source}: ${why}`);
}

/** "0x1f0c" -> 0x1f0c for the narrow integer fields; u64 fields get the wire's string form. */
function normalise(v: unknown, key: string): unknown {
  if (Array.isArray(v)) return v.map((x) => normalise(x, key));
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x, k)]));
  }
  if (U64.has(key)) {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return `0x${v.toString(16)}`;
    return v;
  }
  if (typeof v === 'string' && /^0x[0-9a-f]+$/i.test(v) && key !== 'name') return Number.parseInt(v, 16);
  return v;
}

/** Checks a description object (parsed JSON). */
export function parseDescription(json: unknown, source = 'description'): Description {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(source, 'must be a JSON object');
  const { qemu, shadow, $comment, ...rest } = json as Record<string, unknown>;
  void $comment;
  for (const k of REQUIRED) if (!(k in rest)) throw bad(source, `'${k}' is missing (required: ${REQUIRED.join(', ')})`);
  const body = normalise({ ...DEFAULTS, ...rest }, '') as Record<string, unknown>;
  let device: DeviceRequest;
  try {
    const m = messageFromJson({ cmd: 'DEVICE', id: 1, reply: false, posted: false, error: 'NONE', body });
    encodeFrame(m); // applies every rule of DEVICE
    device = m.body as DeviceRequest;
  } catch (e) {
    if (e instanceof PciemError) throw bad(source, e.message.replace(/^DEVICE[.:] ?/, ''));
    throw e;
  }
  // The wire allows an empty name; a user's card needs one its logs and status can show.
  if (device.name.trim() === '') throw bad(source, "'name' is empty (the model's QEMU device type, e.g. \"protopciem\")");
  const shadowed = parseShadow(shadow, device, source);
  let model: QemuModel | null = null;
  if (qemu !== undefined) {
    if (typeof qemu !== 'object' || qemu === null || Array.isArray(qemu)) throw bad(source, "'qemu' must be an object: { \"device\": TYPE, \"properties\": {...} }");
    const q = qemu as Record<string, unknown>;
    for (const k of Object.keys(q)) if (k !== 'device' && k !== 'properties') throw bad(source, `qemu: no field '${k}' (fields: device, properties)`);
    if (typeof q.device !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/i.test(q.device)) throw bad(source, 'qemu.device must be a QEMU device type name');
    const props = q.properties ?? {};
    if (typeof props !== 'object' || props === null || Array.isArray(props)) throw bad(source, 'qemu.properties must be an object');
    for (const [k, v] of Object.entries(props)) {
      if (!/^[a-z0-9][a-z0-9._-]*$/i.test(k)) throw bad(source, `qemu.properties: '${k}' is not a property name`);
      if (!['string', 'number', 'boolean'].includes(typeof v) || (typeof v === 'string' && /[,=]/.test(v))) {
        throw bad(source, `qemu.properties.${k}: a string without ',' or '=', a number or a boolean`);
      }
    }
    model = { device: q.device, properties: props as QemuModel['properties'] };
  }
  return { device, shadow: shadowed, qemu: model, source };
}

function num(v: unknown): bigint | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^0x[0-9a-f]+$/i.test(v)) return BigInt(v);
  return null;
}

/** The shadow list: whole dwords inside described BARs, apart from what the model answers itself. */
function parseShadow(v: unknown, device: DeviceRequest, source: string): Region[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad(source, "'shadow' must be an array of { bar, offset, size }");
  if (v.length > 16) throw bad(source, `shadow: ${v.length} regions; at most 16`);
  return v.map((r: unknown, i): Region => {
    const where = `shadow[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw bad(source, `${where}: must be { bar, offset, size }`);
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['bar', 'offset', 'size'].includes(k)) throw bad(source, `${where}: no field '${k}'`);
    const bar = num(o.bar);
    const offset = num(o.offset);
    const size = num(o.size);
    if (bar === null || offset === null || size === null) throw bad(source, `${where}: bar, offset and size are whole numbers (or "0x..." strings)`);
    const b = device.bars.find((x) => BigInt(x.index) === bar);
    if (!b) throw bad(source, `${where}: BAR ${bar} is not described`);
    if (offset % 4n || size % 4n || size === 0n) throw bad(source, `${where}: offset and size must be multiples of 4 (whole registers), size at least 4`);
    if (offset + size > b.size) throw bad(source, `${where}: ends at 0x${(offset + size).toString(16)}, past BAR ${bar}'s 0x${b.size.toString(16)} bytes`);
    const region = { bar: Number(bar), offset, size };
    const clash = device.read_via_model.find((x) => x.bar === region.bar && x.offset < offset + size && offset < x.offset + x.size);
    if (clash) throw bad(source, `${where}: overlaps a read_via_model region (a register is either answered by the model or shadowed, not both)`);
    return region;
  });
}

/** Reads and checks a description file. */
export function loadDescription(path: string): Description {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PciemError('PCIEM_ERR_INVALID', `${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(path, `not valid JSON: ${(e as Error).message}`);
  }
  return parseDescription(json, path);
}

/**
 * Whether the model announces the card the description describes: the
 * identity and BAR layout must agree (what the driver binds to and maps).
 * Returns the reason they differ, or null.
 */
export function mismatch(desc: DeviceRequest, model: DeviceRequest): string | null {
  const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  for (const k of ['vendor_id', 'device_id', 'subsystem_vendor_id', 'subsystem_id', 'class_code', 'revision'] as const) {
    if (desc[k] !== model[k]) return `the model announces ${k} 0x${hex(model[k], 4)}, the description says 0x${hex(desc[k], 4)}`;
  }
  const bars = (d: DeviceRequest): string => d.bars.map((b) => `BAR${b.index}:${b.size}:${b.flags}`).sort().join(' ');
  if (bars(desc) !== bars(model)) return `the model's BARs (${bars(model)}) are not the description's (${bars(desc)})`;
  if (desc.msi_vectors !== model.msi_vectors || desc.msix_vectors !== model.msix_vectors) {
    return `the model has ${model.msi_vectors} MSI / ${model.msix_vectors} MSI-X vectors, the description ${desc.msi_vectors} / ${desc.msix_vectors}`;
  }
  return null;
}
