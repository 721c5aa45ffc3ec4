// The gateway <-> QEMU wire protocol's codec (docs/protocol.md), driven by
// the tables that proto/gen/wire.ts generates from proto/wire.json into
// proto/generated/wire.ts, which wraps this module with the protocol's types.
//
// This is the one module that holds msgpackr's options: both ends of the
// protocol depend on them (plain maps, never the records extension; 64-bit
// integers as bigint). Every refusal is a PciemError with a
// PCIEM_ERR_PROTO_* code; nothing else is thrown for bad input.
import { FLOAT32_OPTIONS, Packr, Unpackr } from 'msgpackr';
import { PciemError } from '../errors.js';

/** The decode-side wire errors, as PCIEM_ERR_PROTO_<name>. */
export type ProtoErrorName =
  | 'TRUNCATED'
  | 'TOO_BIG'
  | 'MALFORMED'
  | 'TYPE'
  | 'MISSING'
  | 'EXTRA'
  | 'RANGE'
  | 'UNKNOWN_CMD'
  | 'HEADER'
  | 'VERSION'
  | 'STATE';

export function protoError(name: ProtoErrorName, message: string): PciemError {
  return new PciemError(`PCIEM_ERR_PROTO_${name}`, message);
}

// ---- the tables the generator writes ----------------------------------------

export type FieldDesc =
  | {
      readonly key: string;
      readonly kind: 'uint';
      /** Width of the wire type: u8, u16 or u32. */
      readonly bits: 8 | 16 | 32;
      readonly min: number;
      readonly max: number;
      /** The only values allowed (an enum, or a list such as access sizes). */
      readonly oneOf: readonly number[] | null;
      /** The bits that may be set (a bit set). */
      readonly mask: number | null;
    }
  | { readonly key: string; readonly kind: 'u64'; readonly min: bigint; readonly max: bigint }
  | { readonly key: string; readonly kind: 'bool' }
  | { readonly key: string; readonly kind: 'str'; readonly maxLen: number }
  | { readonly key: string; readonly kind: 'bytes'; readonly minLen: number; readonly maxLen: number }
  | { readonly key: string; readonly kind: 'array'; readonly maxLen: number; readonly item: StructDesc };

/** Rules between fields of one body; each refuses with RANGE (see docs/protocol.md). */
export type RuleDesc =
  | { readonly rule: 'le'; readonly a: string; readonly b: string }
  | { readonly rule: 'fits'; readonly value: string; readonly bytes: string }
  | { readonly rule: 'aligned'; readonly value: string; readonly to: string | number }
  | { readonly rule: 'end'; readonly start: string; readonly len: string }
  | { readonly rule: 'max_if'; readonly field: string; readonly max: number; readonly if: string; readonly equals: number }
  | { readonly rule: 'unique'; readonly array: string; readonly key: string }
  | { readonly rule: 'within_bar'; readonly regions: string; readonly bars: string }
  | { readonly rule: 'bar_exists'; readonly field: string; readonly bars: string; readonly when: string }
  | { readonly rule: 'pow2'; readonly field: string }
  | { readonly rule: 'zero_unless'; readonly field: string; readonly when: string };

export interface StructDesc {
  readonly name: string;
  readonly fields: readonly FieldDesc[];
  readonly rules: readonly RuleDesc[];
}

export type ReplyPolicy = 'required' | 'optional' | 'none';

export interface CommandDesc {
  readonly name: string;
  readonly value: number;
  readonly reply: ReplyPolicy;
  readonly request: StructDesc;
  /** null when the command has no reply. */
  readonly response: StructDesc | null;
}

export interface ProtocolDesc {
  readonly limits: {
    readonly maxBody: number;
    readonly maxDepth: number;
    readonly maxObjects: number;
    readonly maxMapEntries: number;
  };
  readonly commands: readonly CommandDesc[];
  /** Wire error codes by name; NONE is 0. */
  readonly errors: Readonly<Record<string, number>>;
  /** The body of a reply whose header carries an error. */
  readonly errorReply: StructDesc;
  /** The command whose requests carry an error code in the header. */
  readonly errorCommand: string;
}

// ---- frames ------------------------------------------------------------------

/** The fixed header: its layout is checked by the generator against proto/wire.json. */
export const HEADER_SIZE = 16;
export const FLAG_REPLY = 0x0001;
export const FLAG_POSTED = 0x0002;
const FLAGS_KNOWN = FLAG_REPLY | FLAG_POSTED;

export interface RawHeader {
  size: number;
  id: number;
  cmd: number;
  flags: number;
  error: number;
}

/** A message as the codec handles it; proto/generated/wire.ts narrows it per command. */
export interface WireMessage {
  cmd: string;
  id: number;
  reply: boolean;
  posted: boolean;
  error: string;
  body: object;
}

// ---- msgpack, pinned -------------------------------------------------------------

// Plain maps with string keys, minimal integer and length forms; no records,
// no bundled strings, no extensions of any kind, never a float.
const packr = new Packr({
  useRecords: false,
  variableMapSize: true,
  useFloat32: FLOAT32_OPTIONS.NEVER,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  useToJSON: false,
  encodeUndefinedAsNil: false,
  largeBigIntToFloat: false,
  largeBigIntToString: false,
  useBigIntExtension: false,
  useTimestamp32: false,
  coercibleKeyAsNumber: false,
});

// Maps as Map (wire order kept, no prototype to pollute); 64-bit integers as
// bigint so no address loses bits; bin as views into the frame (no copy).
// The body walker below has already refused everything these options do
// not cover (ext types, which msgpackr would otherwise interpret).
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: false,
  int64AsType: 'bigint',
  copyBuffers: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  sequential: false,
});

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * Checks the body grammar (docs/protocol.md, "Body rules") in byte order
 * and stops at the first violation, exactly as the C decoder's walker does,
 * so both ends refuse the same frame with the same code. `onInt64` is also
 * told the position of every 0xd3 marker (the encoder's fix-up).
 */
function walkBody(
  body: Uint8Array,
  limits: ProtocolDesc['limits'],
  onInt64?: (pos: number) => void,
): void {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length;
  let pos = 0;
  let objects = 0;

  const malformed = (why: string): PciemError => protoError('MALFORMED', `body byte ${pos}: ${why}`);
  const need = (n: number): void => {
    if (end - pos < n) throw malformed('cut short');
  };
  const count = (): void => {
    if (pos >= end) throw malformed('cut short');
    if (++objects > limits.maxObjects) throw malformed(`more than ${limits.maxObjects} objects`);
  };
  const len = (bytes: 1 | 2 | 4): number => {
    need(bytes);
    const n = bytes === 1 ? view.getUint8(pos) : bytes === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += bytes;
    return n;
  };
  const str = (n: number): void => {
    need(n);
    for (let i = pos; i < pos + n; i++) {
      const c = body[i] as number;
      if (c < 0x20 || c > 0x7e) throw protoError('RANGE', `body byte ${i}: string byte 0x${c.toString(16)} is not printable ASCII`);
    }
    pos += n;
  };
  const skip = (n: number): void => {
    need(n);
    pos += n;
  };
  const container = (depth: number): void => {
    if (depth > limits.maxDepth) throw malformed(`nested deeper than ${limits.maxDepth}`);
  };

  const key = (seen: (readonly [number, number])[]): void => {
    count();
    const m = body[pos++] as number;
    let n: number;
    if (m >= 0xa0 && m <= 0xbf) n = m & 0x1f;
    else if (m === 0xd9) n = len(1);
    else if (m === 0xda) n = len(2);
    else if (m === 0xdb) n = len(4);
    else throw malformed('a map key that is not a string');
    const start = pos;
    str(n);
    for (const [s, l] of seen) {
      if (l === n && Buffer.compare(body.subarray(s, s + l), body.subarray(start, start + n)) === 0) {
        throw malformed(`key '${Buffer.from(body.subarray(start, start + n)).toString('latin1')}' twice in one map`);
      }
    }
    seen.push([start, n]);
  };

  const map = (n: number, depth: number): void => {
    container(depth);
    if (n > limits.maxMapEntries) throw malformed(`a map of ${n} entries (at most ${limits.maxMapEntries})`);
    const seen: (readonly [number, number])[] = [];
    for (let i = 0; i < n; i++) {
      key(seen);
      value(depth + 1);
    }
  };

  const array = (n: number, depth: number): void => {
    container(depth);
    for (let i = 0; i < n; i++) value(depth + 1);
  };

  const value = (depth: number): void => {
    count();
    const m = body[pos++] as number;
    if (m <= 0x7f || m >= 0xe0) return;
    if (m <= 0x8f) return map(m & 0x0f, depth);
    if (m <= 0x9f) return array(m & 0x0f, depth);
    if (m <= 0xbf) return str(m & 0x1f);
    switch (m) {
      case 0xc0:
        throw protoError('TYPE', `body byte ${pos - 1}: nil is not used by this protocol`);
      case 0xc1:
        throw malformed('0xc1 is never used by msgpack');
      case 0xc2:
      case 0xc3:
        return;
      case 0xc4:
        return skip(len(1));
      case 0xc5:
        return skip(len(2));
      case 0xc6:
        return skip(len(4));
      case 0xc7:
      case 0xc8:
      case 0xc9:
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        throw protoError('TYPE', `body byte ${pos - 1}: msgpack extensions are not used by this protocol`);
      case 0xca:
      case 0xcb:
        throw protoError('TYPE', `body byte ${pos - 1}: floats are not used by this protocol`);
      case 0xcc:
      case 0xd0:
        return skip(1);
      case 0xcd:
      case 0xd1:
        return skip(2);
      case 0xce:
      case 0xd2:
        return skip(4);
      case 0xd3:
        onInt64?.(pos - 1);
        return skip(8);
      case 0xcf:
        return skip(8);
      case 0xd9:
        return str(len(1));
      case 0xda:
        return str(len(2));
      case 0xdb:
        return str(len(4));
      case 0xdc:
        return array(len(2), depth);
      case 0xdd:
        return array(len(4), depth);
      case 0xde:
        return map(len(2), depth);
      default: // 0xdf
        return map(len(4), depth);
    }
  };

  value(1);
  if (pos !== end) throw malformed(`${end - pos} bytes after the body's value`);
}

// ---- values ------------------------------------------------------------------------

const uintMax = (bits: 8 | 16 | 32): number => 2 ** bits - 1;

function isPrintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

function big(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  if (v instanceof Uint8Array) return BigInt(v.length);
  return 0n;
}

type Obj = Record<string, unknown>;

const fieldIndex = new WeakMap<StructDesc, Map<string, FieldDesc>>();
function fieldsByKey(desc: StructDesc): Map<string, FieldDesc> {
  let m = fieldIndex.get(desc);
  if (m === undefined) {
    m = new Map(desc.fields.map((f) => [f.key, f]));
    fieldIndex.set(desc, m);
  }
  return m;
}

/**
 * Shape pass of a decoded body, in wire order: unknown keys, msgpack types,
 * integers that do not fit their type, over-long strings, bytes and arrays;
 * then missing fields. Returns the fields in schema order, as the typed
 * message has them (u64 as bigint).
 */
function shape(desc: StructDesc, v: unknown, where: string): Obj {
  if (!(v instanceof Map)) throw protoError('TYPE', `${where}: not a map`);
  const fields = fieldsByKey(desc);
  const got = new Map<string, unknown>();
  for (const [k, raw] of v as Map<string, unknown>) {
    const f = fields.get(k);
    if (f === undefined) throw protoError('EXTRA', `${where}: no field '${k}'`);
    got.set(k, shapeField(f, raw, `${where}.${k}`));
  }
  const out: Obj = {};
  for (const f of desc.fields) {
    if (!got.has(f.key)) throw protoError('MISSING', `${where}: no '${f.key}'`);
    out[f.key] = got.get(f.key);
  }
  return out;
}

function shapeField(f: FieldDesc, v: unknown, where: string): unknown {
  switch (f.kind) {
    case 'uint': {
      if (typeof v !== 'number' && typeof v !== 'bigint') throw protoError('TYPE', `${where}: not an integer`);
      if (typeof v === 'number' && !Number.isInteger(v)) throw protoError('TYPE', `${where}: not an integer`);
      if (v < 0 || v > uintMax(f.bits)) throw protoError('RANGE', `${where}: ${v} does not fit u${f.bits}`);
      return Number(v);
    }
    case 'u64':
      if (typeof v !== 'number' && typeof v !== 'bigint') throw protoError('TYPE', `${where}: not an integer`);
      if (typeof v === 'number' && !Number.isInteger(v)) throw protoError('TYPE', `${where}: not an integer`);
      if (v < 0) throw protoError('RANGE', `${where}: ${v} is negative`);
      return BigInt(v);
    case 'bool':
      if (typeof v !== 'boolean') throw protoError('TYPE', `${where}: not true or false`);
      return v;
    case 'str':
      if (typeof v !== 'string') throw protoError('TYPE', `${where}: not a string`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} characters (at most ${f.maxLen})`);
      return v;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw protoError('TYPE', `${where}: not bin`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} bytes (at most ${f.maxLen})`);
      return v;
    case 'array': {
      if (!Array.isArray(v)) throw protoError('TYPE', `${where}: not an array`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} items (at most ${f.maxLen})`);
      return (v as unknown[]).map((item, i) => shape(f.item, item, `${where}[${i}]`));
    }
  }
}

/**
 * Value pass, in schema order, on a body the shape pass made or a caller
 * built: types (for callers), limits, allowed values and bits; then the
 * body's rules. The same checks as the C side's, in the same order.
 */
function check(desc: StructDesc, v: unknown, where: string): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map) throw protoError('TYPE', `${where}: not an object`);
  const o = v as Obj;
  for (const f of desc.fields) {
    if (!Object.hasOwn(o, f.key) || o[f.key] === undefined) throw protoError('MISSING', `${where}: no '${f.key}'`);
    checkField(f, o[f.key], `${where}.${f.key}`);
  }
  const keys = fieldsByKey(desc);
  for (const k of Object.keys(o)) {
    if (!keys.has(k)) throw protoError('EXTRA', `${where}: no field '${k}'`);
  }
  for (const r of desc.rules) checkRule(r, o, where);
}

function checkField(f: FieldDesc, v: unknown, where: string): void {
  switch (f.kind) {
    case 'uint':
      if (typeof v !== 'number' || !Number.isInteger(v)) throw protoError('TYPE', `${where}: not an integer number`);
      if (v < 0 || v > uintMax(f.bits)) throw protoError('RANGE', `${where}: ${v} does not fit u${f.bits}`);
      if (v < f.min || v > f.max) throw protoError('RANGE', `${where}: ${v} is outside ${f.min}..${f.max}`);
      if (f.oneOf !== null && !f.oneOf.includes(v)) throw protoError('RANGE', `${where}: ${v} is not one of ${f.oneOf.join(', ')}`);
      if (f.mask !== null && (v & ~f.mask) !== 0) throw protoError('RANGE', `${where}: unknown bits 0x${((v & ~f.mask) >>> 0).toString(16)}`);
      return;
    case 'u64':
      if (typeof v !== 'bigint') throw protoError('TYPE', `${where}: not a bigint`);
      if (v < 0n || v > U64_MAX) throw protoError('RANGE', `${where}: ${v} does not fit u64`);
      if (v < f.min || v > f.max) throw protoError('RANGE', `${where}: ${v} is outside ${f.min}..${f.max}`);
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw protoError('TYPE', `${where}: not true or false`);
      return;
    case 'str':
      if (typeof v !== 'string') throw protoError('TYPE', `${where}: not a string`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} characters (at most ${f.maxLen})`);
      if (!isPrintable(v)) throw protoError('RANGE', `${where}: not printable ASCII`);
      return;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw protoError('TYPE', `${where}: not a Uint8Array`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} bytes (at most ${f.maxLen})`);
      if (v.length < f.minLen) throw protoError('RANGE', `${where}: ${v.length} bytes (at least ${f.minLen})`);
      return;
    case 'array':
      if (!Array.isArray(v)) throw protoError('TYPE', `${where}: not an array`);
      if (v.length > f.maxLen) throw protoError('TOO_BIG', `${where}: ${v.length} items (at most ${f.maxLen})`);
      (v as unknown[]).forEach((item, i) => check(f.item, item, `${where}[${i}]`));
      return;
  }
}

function checkRule(r: RuleDesc, o: Obj, where: string): void {
  const fail = (why: string): never => {
    throw protoError('RANGE', `${where}: ${why}`);
  };
  switch (r.rule) {
    case 'le':
      if (big(o[r.a]) > big(o[r.b])) fail(`${r.a} is above ${r.b}`);
      return;
    case 'fits': {
      const bytes = big(o[r.bytes]);
      if (bytes < 8n && big(o[r.value]) >> (8n * bytes) !== 0n) fail(`${r.value} does not fit in ${bytes} bytes`);
      return;
    }
    case 'aligned': {
      const to = typeof r.to === 'number' ? BigInt(r.to) : big(o[r.to]);
      if (big(o[r.value]) % to !== 0n) fail(`${r.value} is not a multiple of ${to}`);
      return;
    }
    case 'end':
      if (big(o[r.start]) + big(o[r.len]) > U64_MAX + 1n) fail(`${r.start} + ${r.len} is beyond 2^64`);
      return;
    case 'max_if':
      if (o[r.if] === r.equals && big(o[r.field]) > BigInt(r.max)) fail(`${r.field} is above ${r.max} when ${r.if} is ${r.equals}`);
      return;
    case 'unique': {
      const seen = new Set<unknown>();
      for (const item of o[r.array] as Obj[]) {
        if (seen.has(item[r.key])) fail(`${r.array}: ${r.key} ${String(item[r.key])} twice`);
        seen.add(item[r.key]);
      }
      return;
    }
    case 'within_bar': {
      const bars = o[r.bars] as Obj[];
      (o[r.regions] as Obj[]).forEach((reg, i) => {
        const bar = bars.find((b) => b.index === reg.bar);
        if (bar === undefined) fail(`${r.regions}[${i}]: BAR ${String(reg.bar)} is not described`);
        else if (big(reg.offset) + big(reg.size) > big(bar.size)) fail(`${r.regions}[${i}]: ends beyond BAR ${String(reg.bar)}`);
      });
      return;
    }
    case 'bar_exists':
      if (big(o[r.when]) !== 0n && !(o[r.bars] as Obj[]).some((b) => b.index === o[r.field])) {
        fail(`${r.field}: BAR ${String(o[r.field])} is not described`);
      }
      return;
    case 'pow2': {
      const v = big(o[r.field]);
      if (v === 0n || (v & (v - 1n)) !== 0n) fail(`${r.field} is not a power of two`);
      return;
    }
    case 'zero_unless':
      if (big(o[r.when]) === 0n && big(o[r.field]) !== 0n) fail(`${r.field} must be 0 when ${r.when} is 0`);
      return;
  }
}

/** The body as msgpackr should write it: schema order, u64 in its smallest form. */
function toWire(desc: StructDesc, o: Obj): Obj {
  const out: Obj = {};
  for (const f of desc.fields) {
    const v = o[f.key];
    if (f.kind === 'u64') out[f.key] = (v as bigint) <= 0xffff_ffffn ? Number(v) : v;
    else if (f.kind === 'array') out[f.key] = (v as Obj[]).map((item) => toWire(f.item, item));
    else out[f.key] = v;
  }
  return out;
}

// ---- JSON form (test vectors, logs): u64 as "0x..." strings, bytes as hex ----

function bodyToJson(desc: StructDesc, o: Obj): Obj {
  const out: Obj = {};
  for (const f of desc.fields) {
    const v = o[f.key];
    if (f.kind === 'u64') out[f.key] = `0x${(v as bigint).toString(16)}`;
    else if (f.kind === 'bytes') out[f.key] = Buffer.from(v as Uint8Array).toString('hex');
    else if (f.kind === 'array') out[f.key] = (v as Obj[]).map((item) => bodyToJson(f.item, item));
    else out[f.key] = v;
  }
  return out;
}

function bodyFromJson(desc: StructDesc, v: unknown, where: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw protoError('TYPE', `${where}: not an object`);
  const out: Obj = { ...(v as Obj) };
  for (const f of desc.fields) {
    const x = out[f.key];
    if (f.kind === 'u64' && (typeof x === 'string' || typeof x === 'number')) {
      try {
        out[f.key] = BigInt(x);
      } catch {
        throw protoError('TYPE', `${where}.${f.key}: not an integer`);
      }
    } else if (f.kind === 'bytes' && typeof x === 'string') {
      if (!/^([0-9a-f]{2})*$/i.test(x)) throw protoError('TYPE', `${where}.${f.key}: not hex`);
      out[f.key] = Buffer.from(x, 'hex');
    } else if (f.kind === 'array' && Array.isArray(x)) {
      out[f.key] = x.map((item, i) => bodyFromJson(f.item, item, `${where}.${f.key}[${i}]`));
    }
  }
  return out;
}

// ---- the codec -------------------------------------------------------------------------

export class WireCodec {
  private readonly byValue = new Map<number, CommandDesc>();
  private readonly byName = new Map<string, CommandDesc>();
  private readonly errorNames = new Map<number, string>();

  constructor(readonly desc: ProtocolDesc) {
    for (const c of desc.commands) {
      this.byValue.set(c.value, c);
      this.byName.set(c.name, c);
    }
    for (const [name, value] of Object.entries(desc.errors)) this.errorNames.set(value, name);
  }

  /** The header at `offset`, unchecked; TRUNCATED with fewer than HEADER_SIZE bytes. */
  readHeader(buf: Uint8Array, offset = 0): RawHeader {
    if (buf.length - offset < HEADER_SIZE) throw protoError('TRUNCATED', `${buf.length - offset} bytes, a header is ${HEADER_SIZE}`);
    const v = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_SIZE);
    return { size: v.getUint32(0, true), id: v.getUint32(4, true), cmd: v.getUint16(8, true), flags: v.getUint16(10, true), error: v.getUint32(12, true) };
  }

  /** The header rules (docs/protocol.md, "Header"), in order: TOO_BIG, UNKNOWN_CMD, HEADER. */
  checkHeader(h: RawHeader): CommandDesc {
    if (h.size > this.desc.limits.maxBody) throw protoError('TOO_BIG', `body of ${h.size} bytes (at most ${this.desc.limits.maxBody})`);
    const cmd = this.byValue.get(h.cmd);
    if (cmd === undefined) throw protoError('UNKNOWN_CMD', `command 0x${h.cmd.toString(16)}`);
    const bad = (why: string): PciemError => protoError('HEADER', `${cmd.name} id ${h.id}: ${why}`);
    if ((h.flags & ~FLAGS_KNOWN) !== 0) throw bad(`unknown flag bits 0x${(h.flags & ~FLAGS_KNOWN).toString(16)}`);
    const reply = (h.flags & FLAG_REPLY) !== 0;
    const posted = (h.flags & FLAG_POSTED) !== 0;
    if (reply && posted) throw bad('REPLY and POSTED together');
    if (h.id === 0) throw bad('id 0');
    if (reply) {
      if (cmd.reply === 'none') throw bad('this command has no reply');
      if (!this.errorNames.has(h.error)) throw bad(`unknown error code ${h.error}`);
    } else {
      if (posted && cmd.reply === 'required') throw bad('POSTED, but this command needs its reply');
      if (!posted && cmd.reply === 'none') throw bad('not POSTED, but this command has no reply');
      if (cmd.name === this.desc.errorCommand) {
        if (h.error === 0 || !this.errorNames.has(h.error)) throw bad(`error code ${h.error} is not one to report`);
      } else if (h.error !== 0) {
        throw bad(`error code ${h.error} in a request`);
      }
    }
    return cmd;
  }

  private bodyDesc(cmd: CommandDesc, reply: boolean, error: number): StructDesc {
    if (!reply) return cmd.request;
    if (error !== 0 || cmd.response === null) return this.desc.errorReply;
    return cmd.response;
  }

  /** Decodes the body of a frame whose header is `h`; `body` is exactly h.size bytes. */
  decodeBody(h: RawHeader, body: Uint8Array): WireMessage {
    const cmd = this.checkHeader(h);
    if (body.length < h.size) throw protoError('TRUNCATED', `${cmd.name}: body of ${body.length} bytes, the header says ${h.size}`);
    if (body.length > h.size) throw protoError('MALFORMED', `${cmd.name}: body of ${body.length} bytes, the header says ${h.size}`);
    walkBody(body, this.desc.limits);
    let value: unknown;
    try {
      value = unpackr.unpack(body);
    } catch (e) {
      // The walker has vetted the body; msgpackr refusing it anyway is still a refusal.
      throw protoError('MALFORMED', `${cmd.name}: ${(e as Error).message}`);
    }
    const reply = (h.flags & FLAG_REPLY) !== 0;
    const desc = this.bodyDesc(cmd, reply, h.error);
    const where = `${cmd.name}${reply ? ' reply' : ''}`;
    const fields = shape(desc, value, where);
    check(desc, fields, where);
    return {
      cmd: cmd.name,
      id: h.id,
      reply,
      posted: (h.flags & FLAG_POSTED) !== 0,
      error: this.errorNames.get(h.error) as string,
      body: fields,
    };
  }

  /** Decodes one whole frame: header and exactly the body it announces. */
  decodeFrame(frame: Uint8Array): WireMessage {
    const h = this.readHeader(frame);
    this.checkHeader(h);
    if (frame.length - HEADER_SIZE < h.size) throw protoError('TRUNCATED', `frame of ${frame.length} bytes, the header says ${HEADER_SIZE + h.size}`);
    if (frame.length - HEADER_SIZE > h.size) throw protoError('MALFORMED', `frame of ${frame.length} bytes, the header says ${HEADER_SIZE + h.size}`);
    return this.decodeBody(h, frame.subarray(HEADER_SIZE));
  }

  /** The header a message gets, after the same header rules a decoder applies. */
  private headerOf(m: WireMessage): { h: RawHeader; cmd: CommandDesc } {
    const cmd = typeof m.cmd === 'string' ? this.byName.get(m.cmd) : undefined;
    if (cmd === undefined) throw protoError('UNKNOWN_CMD', `command ${String(m.cmd)}`);
    if (!Number.isInteger(m.id) || m.id < 0 || m.id > 0xffff_ffff) throw protoError('HEADER', `${cmd.name}: id ${String(m.id)}`);
    if (typeof m.reply !== 'boolean' || typeof m.posted !== 'boolean') throw protoError('HEADER', `${cmd.name}: reply and posted must be booleans`);
    const error = this.desc.errors[m.error];
    if (error === undefined) throw protoError('HEADER', `${cmd.name}: unknown error ${String(m.error)}`);
    const h = { size: 0, id: m.id, cmd: cmd.value, flags: (m.reply ? FLAG_REPLY : 0) | (m.posted ? FLAG_POSTED : 0), error };
    this.checkHeader(h);
    return { h, cmd };
  }

  /** One frame for `m`, after checking it as a decoder would. */
  encodeFrame(m: WireMessage): Buffer {
    if (typeof m !== 'object' || m === null) throw protoError('TYPE', 'a message is an object');
    const { h, cmd } = this.headerOf(m);
    const desc = this.bodyDesc(cmd, m.reply, h.error);
    check(desc, m.body, `${cmd.name}${m.reply ? ' reply' : ''}`);
    const packed = packr.pack(toWire(desc, m.body as Obj));
    if (packed.length > this.desc.limits.maxBody) throw protoError('TOO_BIG', `${cmd.name}: body of ${packed.length} bytes`);
    const frame = Buffer.allocUnsafe(HEADER_SIZE + packed.length);
    frame.writeUInt32LE(packed.length, 0);
    frame.writeUInt32LE(h.id, 4);
    frame.writeUInt16LE(h.cmd, 8);
    frame.writeUInt16LE(h.flags, 10);
    frame.writeUInt32LE(h.error, 12);
    packed.copy(frame, HEADER_SIZE);
    // msgpackr writes a bigint below 2^63 as int64 (0xd3); the canonical form of
    // a non-negative integer, and msgpack-c's, is uint64 (0xcf): same 8 bytes.
    const body = frame.subarray(HEADER_SIZE);
    walkBody(body, this.desc.limits, (pos) => {
      body[pos] = 0xcf;
    });
    return frame;
  }

  /** The message in JSON form: u64 fields as "0x..." strings, bytes as hex strings. */
  toJson(m: WireMessage): Obj {
    const { h, cmd } = this.headerOf(m);
    const desc = this.bodyDesc(cmd, m.reply, h.error);
    return { cmd: m.cmd, id: m.id, reply: m.reply, posted: m.posted, error: m.error, body: bodyToJson(desc, m.body as Obj) };
  }

  /** The inverse of toJson; the result is checked only when it is encoded. */
  fromJson(j: unknown): WireMessage {
    if (typeof j !== 'object' || j === null || Array.isArray(j)) throw protoError('TYPE', 'a message is an object');
    const m = j as WireMessage;
    const { h, cmd } = this.headerOf(m);
    const desc = this.bodyDesc(cmd, m.reply, h.error);
    return { cmd: m.cmd, id: m.id, reply: m.reply, posted: m.posted, error: m.error, body: bodyFromJson(desc, m.body, cmd.name) };
  }
}
