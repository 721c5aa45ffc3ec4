// Generator for the gateway <-> QEMU wire protocol. proto/wire.json is the
// one source; from it this writes
//   proto/generated/wire.ts       types, command numbers and the codec's tables for TypeScript
//   proto/generated/wire.h, .c    C99 declarations and codec on msgpack-c, for the QEMU bridge
//   proto/tests/wire_vectors.h    proto/vectors/wire.json as C initialisers, for proto/tests/wire_test.c
//   docs/protocol.md              the tables between its "generated" markers
//
//   node_modules/.bin/tsx proto/gen/wire.ts                  write what is out of date
//   node_modules/.bin/tsx proto/gen/wire.ts --check          exit 1 if anything is
//   node_modules/.bin/tsx proto/gen/wire.ts --fill-vectors   encode the vectors whose frame is ""
//
// The TypeScript codec itself is gateway/src/proto/codec.ts, driven by the
// tables written here; the C codec is written out whole (its fixed part is
// the runtime at the end of this file).
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type CommandDesc,
  type FieldDesc,
  type ProtocolDesc,
  type ReplyPolicy,
  type RuleDesc,
  type StructDesc,
  WireCodec,
} from '../../gateway/src/proto/codec.js';
import { SpecError, applyDocBlocks, arr, cDefiner, obj, repoRoot, str, syncOutputs, table, wrap, type Output } from './common.js';

export const specPath = join(repoRoot, 'proto', 'wire.json');
export const vectorsPath = join(repoRoot, 'proto', 'vectors', 'wire.json');
export const tsPath = join(repoRoot, 'proto', 'generated', 'wire.ts');
export const headerPath = join(repoRoot, 'proto', 'generated', 'wire.h');
export const sourcePath = join(repoRoot, 'proto', 'generated', 'wire.c');
export const cVectorsPath = join(repoRoot, 'proto', 'tests', 'wire_vectors.h');
export const docPath = join(repoRoot, 'docs', 'protocol.md');
const generator = 'proto/gen/wire.ts';
const source = 'proto/wire.json';

// ---- the spec, as read and checked ------------------------------------------

export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'bool' | 'str' | 'bytes' | 'array';
const fieldTypes: readonly FieldType[] = ['u8', 'u16', 'u32', 'u64', 'bool', 'str', 'bytes', 'array'];
const uintBits = { u8: 8, u16: 16, u32: 32 } as const;

/** A number as the spec wrote it, and the limit it names if it named one. */
export interface Num {
  value: number;
  hex: boolean;
  name: string | null;
}

export interface Field {
  name: string;
  type: FieldType;
  summary: string;
  /** Integers: the allowed range (u64 as bigint). */
  min: bigint;
  max: bigint;
  maxNum: Num | null;
  minNum: Num | null;
  oneOf: number[] | null;
  enumName: string | null;
  bitsName: string | null;
  /** str, bytes, array. */
  maxLen: Num | null;
  minLen: number;
  /** array: the struct of its items. */
  of: string | null;
}

export interface Struct {
  /** BAR, REGION; or COMMAND request / COMMAND reply / error reply. */
  name: string;
  summary: string;
  /** How comments in the outputs introduce it. */
  title: string;
  fields: Field[];
  rules: RuleDesc[];
  /** As the spec wrote the rules, for the docs. */
  ruleText: string[];
}

export interface Command {
  name: string;
  value: number;
  sender: 'gateway' | 'model' | 'either';
  reply: ReplyPolicy;
  summary: string;
  request: Struct;
  response: Struct | null;
}

export interface Named {
  name: string;
  summary: string;
}
export interface EnumDef extends Named {
  values: { name: string; value: number; summary: string }[];
}
export interface BitsetDef extends Named {
  bits: { name: string; bit: number; summary: string }[];
}
export type ErrorClass = 'none' | 'decode' | 'session' | 'device';
export interface ErrorDef extends Named {
  value: number;
  class: ErrorClass;
}
export interface Limit extends Named {
  value: Num;
}

export interface Spec {
  protocol: string;
  prefix: string;
  version: { min: number; max: number };
  header: { summary: string; fields: { name: string; type: 'u16' | 'u32'; offset: number; summary: string }[] };
  flags: { name: string; bit: number; summary: string }[];
  limits: Limit[];
  enums: EnumDef[];
  bitsets: BitsetDef[];
  structs: Struct[];
  errors: ErrorDef[];
  errorReply: Struct;
  retired: number[];
  commands: Command[];
}

function upper(v: unknown, where: string): string {
  const s = str(v, where);
  if (!/^[A-Z][A-Z0-9_]*$/.test(s)) throw new SpecError(`${where}: '${s}' is not an UPPER_CASE name`);
  return s;
}

function lower(v: unknown, where: string): string {
  const s = str(v, where);
  // Keys stay short fixstrs (under 32 bytes) and valid C identifiers.
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(s)) throw new SpecError(`${where}: '${s}' is not a lower_case name of at most 31 characters`);
  return s;
}

/** A non-negative integer below 2^32, as a JSON number or a lower-case "0x..." string. */
function num(v: unknown, where: string): Num {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return { value: v, hex: false, name: null };
  if (typeof v === 'string' && /^0x[0-9a-f]{1,8}$/.test(v)) return { value: Number.parseInt(v, 16), hex: true, name: null };
  throw new SpecError(`${where}: expected an integer 0..0xffffffff (number or lower-case "0x..." string)`);
}

function unique<T>(items: readonly T[], key: (t: T) => string | number, what: string): void {
  const seen = new Set<string | number>();
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) throw new SpecError(`duplicate ${what}: ${typeof k === 'number' ? hex(k) : k}`);
    seen.add(k);
  }
}

const errorNamesOfCodec = ['TRUNCATED', 'TOO_BIG', 'MALFORMED', 'TYPE', 'MISSING', 'EXTRA', 'RANGE', 'UNKNOWN_CMD', 'HEADER', 'VERSION', 'STATE'];
const requiredLimits = ['MAX_DMA', 'MAX_BODY', 'MAX_DEPTH', 'MAX_OBJECTS', 'MAX_MAP_ENTRIES'];
// The codecs on both sides hard-code this layout and these two flags.
const headerLayout = [['size', 'u32'], ['id', 'u32'], ['cmd', 'u16'], ['flags', 'u16'], ['error', 'u32']] as const;
const flagLayout = [['REPLY', 0], ['POSTED', 1]] as const;

/** Reads and checks the spec; throws SpecError saying what is wrong. */
export function parseSpec(text: string): Spec {
  let rawAny: unknown;
  try {
    rawAny = JSON.parse(text);
  } catch (e) {
    throw new SpecError(`not JSON: ${(e as Error).message}`);
  }
  const raw = obj(rawAny, 'spec');

  const version = obj(raw.version, 'version');
  const vmin = num(version.min, 'version.min').value;
  const vmax = num(version.max, 'version.max').value;
  if (vmin < 1 || vmax < vmin || vmax > 0xffff) throw new SpecError('version: need 1 <= min <= max <= 0xffff');

  const header = obj(raw.header, 'header');
  let offset = 0;
  const headerFields = arr(header.fields, 'header.fields').map((f, i) => {
    const o = obj(f, `header.fields[${i}]`);
    const type = str(o.type, `header.fields[${i}].type`);
    const field = { name: lower(o.name, `header.fields[${i}].name`), type: type as 'u16' | 'u32', offset, summary: str(o.summary, `header.fields[${i}].summary`) };
    offset += type === 'u16' ? 2 : 4;
    return field;
  });
  if (JSON.stringify(headerFields.map((f) => [f.name, f.type])) !== JSON.stringify(headerLayout)) {
    throw new SpecError(`header.fields: the codecs need exactly ${headerLayout.map(([n, t]) => `${n} ${t}`).join(', ')}`);
  }

  const flags = arr(raw.flags, 'flags').map((f, i) => {
    const o = obj(f, `flags[${i}]`);
    return { name: upper(o.name, `flags[${i}].name`), bit: num(o.bit, `flags[${i}].bit`).value, summary: str(o.summary, `flags[${i}].summary`) };
  });
  if (JSON.stringify(flags.map((f) => [f.name, f.bit])) !== JSON.stringify(flagLayout)) {
    throw new SpecError('flags: the codecs need exactly REPLY (bit 0) and POSTED (bit 1)');
  }

  const limits = arr(raw.limits, 'limits').map((l, i): Limit => {
    const o = obj(l, `limits[${i}]`);
    const name = upper(o.name, `limits[${i}].name`);
    return { name, value: num(o.value, `limits.${name}.value`), summary: str(o.summary, `limits.${name}.summary`) };
  });
  unique(limits, (l) => l.name, 'limit name');
  for (const need of requiredLimits) {
    if (!limits.some((l) => l.name === need)) throw new SpecError(`limits: no ${need}`);
  }
  const limitNum = (v: unknown, where: string): Num => {
    if (typeof v === 'string' && /^[A-Z]/.test(v)) {
      const l = limits.find((x) => x.name === v);
      if (l === undefined) throw new SpecError(`${where}: no limit named ${v}`);
      return { ...l.value, name: l.name };
    }
    return num(v, where);
  };
  const limit = (name: string): number => (limits.find((l) => l.name === name) as Limit).value.value;

  const enums = arr(raw.enums, 'enums').map((e, i): EnumDef => {
    const o = obj(e, `enums[${i}]`);
    const name = upper(o.name, `enums[${i}].name`);
    const values = arr(o.values, `enums.${name}.values`).map((v, j) => {
      const vo = obj(v, `enums.${name}.values[${j}]`);
      const vname = upper(vo.name, `enums.${name}.values[${j}].name`);
      return { name: vname, value: num(vo.value, `enums.${name}.${vname}.value`).value, summary: str(vo.summary, `enums.${name}.${vname}.summary`) };
    });
    unique(values, (v) => v.name, `value name in ${name}`);
    unique(values, (v) => v.value, `value in ${name}`);
    // 0 stays "nothing", so a zeroed C struct is never a valid enum value by accident.
    if (values.some((v) => v.value === 0)) throw new SpecError(`enums.${name}: 0 is not an enum value`);
    return { name, summary: str(o.summary, `enums.${name}.summary`), values };
  });
  const bitsets = arr(raw.bitsets, 'bitsets').map((b, i): BitsetDef => {
    const o = obj(b, `bitsets[${i}]`);
    const name = upper(o.name, `bitsets[${i}].name`);
    const bits = arr(o.bits, `bitsets.${name}.bits`).map((v, j) => {
      const vo = obj(v, `bitsets.${name}.bits[${j}]`);
      const bname = upper(vo.name, `bitsets.${name}.bits[${j}].name`);
      const bit = num(vo.bit, `bitsets.${name}.${bname}.bit`).value;
      if (bit > 31) throw new SpecError(`bitsets.${name}.${bname}.bit: ${bit} is not 0..31`);
      return { name: bname, bit, summary: str(vo.summary, `bitsets.${name}.${bname}.summary`) };
    });
    unique(bits, (v) => v.name, `bit name in ${name}`);
    unique(bits, (v) => v.bit, `bit in ${name}`);
    return { name, summary: str(o.summary, `bitsets.${name}.summary`), bits };
  });
  unique([...enums, ...bitsets], (x) => x.name, 'enum or bitset name');

  const parseField = (f: unknown, where: string, structNames: readonly string[]): Field => {
    const o = obj(f, where);
    const name = lower(o.name, `${where}.name`);
    const at = `${where.replace(/\[\d+\]$/, '')}.${name}`;
    const type = str(o.type, `${at}.type`) as FieldType;
    if (!fieldTypes.includes(type)) throw new SpecError(`${at}.type: '${type}' is not one of ${fieldTypes.join(', ')}`);
    const known = new Set(['name', 'type', 'summary']);
    const allow = (...keys: string[]): void => keys.forEach((k) => known.add(k));
    const field: Field = {
      name, type, summary: str(o.summary, `${at}.summary`), min: 0n, max: 0n, maxNum: null, minNum: null,
      oneOf: null, enumName: null, bitsName: null, maxLen: null, minLen: 0, of: null,
    };
    if (type === 'u8' || type === 'u16' || type === 'u32' || type === 'u64') {
      allow('min', 'max');
      const top = type === 'u64' ? 0xffff_ffff_ffff_ffffn : BigInt(2 ** uintBits[type] - 1);
      field.max = top;
      if (o.min !== undefined) field.minNum = limitNum(o.min, `${at}.min`);
      if (o.max !== undefined) field.maxNum = limitNum(o.max, `${at}.max`);
      if (field.minNum !== null) field.min = BigInt(field.minNum.value);
      if (field.maxNum !== null) field.max = BigInt(field.maxNum.value);
      if (field.max > top || field.min > field.max) throw new SpecError(`${at}: range ${field.min}..${field.max} does not fit ${type}`);
      if (type !== 'u64') {
        allow('one_of', 'enum', 'bits');
        const picks = [o.one_of, o.enum, o.bits].filter((x) => x !== undefined).length;
        if (picks > 1) throw new SpecError(`${at}: one of one_of, enum, bits at most`);
        if (o.one_of !== undefined) field.oneOf = arr(o.one_of, `${at}.one_of`).map((x, j) => num(x, `${at}.one_of[${j}]`).value);
        if (o.enum !== undefined) {
          const e = enums.find((x) => x.name === o.enum);
          if (e === undefined) throw new SpecError(`${at}.enum: no enum named ${JSON.stringify(o.enum)}`);
          field.enumName = e.name;
          field.oneOf = e.values.map((v) => v.value);
        }
        if (o.bits !== undefined) {
          const b = bitsets.find((x) => x.name === o.bits);
          if (b === undefined) throw new SpecError(`${at}.bits: no bitset named ${JSON.stringify(o.bits)}`);
          field.bitsName = b.name;
        }
        for (const v of field.oneOf ?? []) {
          if (BigInt(v) < field.min || BigInt(v) > field.max) throw new SpecError(`${at}: allowed value ${v} does not fit ${type}`);
        }
      }
    } else if (type === 'str' || type === 'bytes' || type === 'array') {
      allow('max_len');
      field.maxLen = limitNum(o.max_len, `${at}.max_len`);
      if (type === 'bytes') {
        allow('min_len');
        field.minLen = o.min_len === undefined ? 0 : num(o.min_len, `${at}.min_len`).value;
        if (field.minLen > field.maxLen.value) throw new SpecError(`${at}: min_len above max_len`);
      }
      if (type === 'array') {
        allow('of');
        field.of = str(o.of, `${at}.of`);
        if (!structNames.includes(field.of)) throw new SpecError(`${at}.of: no struct named ${field.of} defined before it`);
      }
    }
    const extra = Object.keys(o).filter((k) => !known.has(k));
    if (extra.length > 0) throw new SpecError(`${at}: ${extra.join(', ')} do not apply to a ${type} field`);
    return field;
  };

  const structs: Struct[] = [];
  const parseStruct = (s: unknown, name: string, summary: string, title: string, where: string): Struct => {
    const o = obj(s, where);
    const fields = arr(o.fields, `${where}.fields`).map((f, i) => parseField(f, `${where}.fields[${i}]`, structs.map((x) => x.name)));
    unique(fields, (f) => f.name, `field name in ${where}`);
    const rawRules = o.rules === undefined ? [] : arr(o.rules, `${where}.rules`);
    const struct: Struct = { name, summary, title, fields, rules: [], ruleText: [] };
    for (const [i, r] of rawRules.entries()) {
      const [rule, text] = parseRule(r, `${where}.rules[${i}]`, struct, structs, enums);
      struct.rules.push(rule);
      struct.ruleText.push(text);
    }
    return struct;
  };

  for (const [i, s] of arr(raw.structs, 'structs').entries()) {
    const o = obj(s, `structs[${i}]`);
    const name = upper(o.name, `structs[${i}].name`);
    const summary = str(o.summary, `structs.${name}.summary`);
    structs.push(parseStruct(o, name, summary, `${name}: ${summary}`, `structs.${name}`));
  }
  unique(structs, (s) => s.name, 'struct name');

  const errors = arr(raw.errors, 'errors').map((e, i): ErrorDef => {
    const o = obj(e, `errors[${i}]`);
    const name = upper(o.name, `errors[${i}].name`);
    const cls = str(o.class, `errors.${name}.class`) as ErrorClass;
    if (!['none', 'decode', 'session', 'device'].includes(cls)) throw new SpecError(`errors.${name}.class: '${cls}' is not none, decode, session or device`);
    return { name, value: num(o.value, `errors.${name}.value`).value, class: cls, summary: str(o.summary, `errors.${name}.summary`) };
  });
  unique(errors, (e) => e.name, 'error name');
  unique(errors, (e) => e.value, 'error code');
  if (errors.find((e) => e.value === 0)?.name !== 'NONE' || errors.find((e) => e.name === 'NONE')?.class !== 'none') {
    throw new SpecError('errors: code 0 must be NONE, of class none');
  }
  const protoNames = errors.filter((e) => e.class === 'decode' || e.class === 'session').map((e) => e.name);
  if (JSON.stringify([...protoNames].sort()) !== JSON.stringify([...errorNamesOfCodec].sort())) {
    throw new SpecError(`errors: the decode and session errors must be exactly ${errorNamesOfCodec.join(', ')} (gateway/src/proto/codec.ts)`);
  }

  const er = obj(raw.error_reply, 'error_reply');
  const erSummary = str(er.summary, 'error_reply.summary');
  const errorReply = parseStruct(er, 'error reply', erSummary, `Failed reply: ${erSummary}`, 'error_reply');

  const retired = arr(raw.retired, 'retired').map((r, i) => num(r, `retired[${i}]`).value);
  const commands = arr(raw.commands, 'commands').map((c, i): Command => {
    const o = obj(c, `commands[${i}]`);
    const name = upper(o.name, `commands[${i}].name`);
    const where = `commands.${name}`;
    const value = num(o.value, `${where}.value`).value;
    if (value === 0 || value > 0xffff) throw new SpecError(`${where}.value: ${value} is not 1..0xffff`);
    if (retired.includes(value)) throw new SpecError(`${where}.value: ${hex(value, 4)} is retired; command numbers are never reused`);
    const sender = str(o.sender, `${where}.sender`) as Command['sender'];
    if (!['gateway', 'model', 'either'].includes(sender)) throw new SpecError(`${where}.sender: '${sender}' is not gateway, model or either`);
    const reply = str(o.reply, `${where}.reply`) as ReplyPolicy;
    if (!['required', 'optional', 'none'].includes(reply)) throw new SpecError(`${where}.reply: '${reply}' is not required, optional or none`);
    const summary = str(o.summary, `${where}.summary`);
    const request = parseStruct(o.request, `${name} request`, summary, `${name} request: ${summary}`, `${where}.request`);
    let response: Struct | null = null;
    if (reply === 'none') {
      if (o.response !== undefined) throw new SpecError(`${where}: a command without reply has no response`);
    } else {
      response = parseStruct(o.response, `${name} reply`, summary, `The reply to ${name}.`, `${where}.response`);
    }
    return { name, value, sender, reply, summary, request, response };
  });
  unique(commands, (c) => c.name, 'command name');
  unique(commands, (c) => c.value, 'command number');
  const errorCmd = commands.find((c) => c.name === 'ERROR');
  if (errorCmd === undefined || errorCmd.reply !== 'none') throw new SpecError('commands: ERROR must exist, with reply "none"');

  const spec: Spec = {
    protocol: str(raw.protocol, 'protocol'),
    prefix: upper(raw.prefix, 'prefix'),
    version: { min: vmin, max: vmax },
    header: { summary: str(header.summary, 'header.summary'), fields: headerFields },
    flags,
    limits,
    enums,
    bitsets,
    structs,
    errors,
    errorReply,
    retired,
    commands,
  };
  checkLimits(spec, limit);
  return spec;
}

function parseRule(r: unknown, where: string, s: Struct, structs: readonly Struct[], enums: readonly EnumDef[]): [RuleDesc, string] {
  const o = obj(r, where);
  const keys = Object.keys(o);
  if (keys.length !== 1) throw new SpecError(`${where}: a rule is an object with one key`);
  const kind = keys[0] as string;
  const args = o[kind];
  const list = (n: number): unknown[] => {
    const a = arr(args, `${where}.${kind}`);
    if (a.length !== n) throw new SpecError(`${where}.${kind}: expected ${n} arguments`);
    return a;
  };
  const field = (v: unknown, kinds: readonly FieldType[], inStruct: Struct = s): Field => {
    const name = str(v, `${where}.${kind}`);
    const f = inStruct.fields.find((x) => x.name === name);
    if (f === undefined) throw new SpecError(`${where}.${kind}: ${inStruct.name} has no field ${name}`);
    if (!kinds.includes(f.type)) throw new SpecError(`${where}.${kind}: ${name} is a ${f.type}, not ${kinds.join(' or ')}`);
    return f;
  };
  const ints: FieldType[] = ['u8', 'u16', 'u32', 'u64'];
  const uints: FieldType[] = ['u8', 'u16', 'u32'];
  const arrayOf = (v: unknown, need: readonly [string, readonly FieldType[]][]): Field => {
    const f = field(v, ['array']);
    const item = structs.find((x) => x.name === f.of) as Struct;
    for (const [n, k] of need) field(n, k, item);
    return f;
  };
  switch (kind) {
    case 'le': {
      const [a, b] = list(2).map((x) => field(x, ints)) as [Field, Field];
      return [{ rule: 'le', a: a.name, b: b.name }, `\`${a.name} <= ${b.name}\``];
    }
    case 'fits': {
      const [v, n] = list(2);
      const value = field(v, ints);
      const bytes = field(n, uints);
      if (bytes.oneOf === null || bytes.oneOf.some((x) => x < 1 || x > 8)) throw new SpecError(`${where}: ${bytes.name} must be one_of sizes 1..8`);
      return [{ rule: 'fits', value: value.name, bytes: bytes.name }, `\`${value.name}\` fits in \`${bytes.name}\` bytes`];
    }
    case 'aligned': {
      const [v, t] = list(2);
      const value = field(v, ints);
      if (typeof t === 'number') {
        if (!Number.isInteger(t) || t < 1) throw new SpecError(`${where}: alignment ${t} is not a positive integer`);
        return [{ rule: 'aligned', value: value.name, to: t }, `\`${value.name}\` is a multiple of ${t}`];
      }
      const to = field(t, uints);
      if (to.min < 1n && (to.oneOf === null || to.oneOf.includes(0))) throw new SpecError(`${where}: ${to.name} may be 0`);
      return [{ rule: 'aligned', value: value.name, to: to.name }, `\`${value.name}\` is a multiple of \`${to.name}\``];
    }
    case 'end': {
      const [a, b] = list(2);
      const start = field(a, ints);
      const len = field(b, [...ints, 'bytes']);
      return [{ rule: 'end', start: start.name, len: len.name }, `\`${start.name}\` + ${len.type === 'bytes' ? `length of \`${len.name}\`` : `\`${len.name}\``} <= 2^64`];
    }
    case 'max_if': {
      const [f, max, cond, value] = list(4);
      const target = field(f, ints);
      const m = num(max, `${where}.max_if[1]`).value;
      const c = field(cond, uints);
      const e = enums.find((x) => x.name === c.enumName);
      const v = e?.values.find((x) => x.name === value);
      if (e === undefined || v === undefined) throw new SpecError(`${where}: ${c.name} is not an enum with a value ${String(value)}`);
      return [{ rule: 'max_if', field: target.name, max: m, if: c.name, equals: v.value }, `\`${target.name} <= ${m}\` when \`${c.name}\` is ${v.name}`];
    }
    case 'unique': {
      const [a, k] = list(2);
      const f = field(a, ['array']);
      const item = structs.find((x) => x.name === f.of) as Struct;
      const key = field(k, uints, item);
      return [{ rule: 'unique', array: f.name, key: key.name }, `no two \`${f.name}\` have the same \`${key.name}\``];
    }
    case 'within_bar': {
      const [a, b] = list(2);
      const regions = arrayOf(a, [['bar', uints], ['offset', ['u64']], ['size', ['u64']]]);
      const bars = arrayOf(b, [['index', uints], ['size', ['u64']]]);
      return [{ rule: 'within_bar', regions: regions.name, bars: bars.name }, `every \`${regions.name}\` region lies inside a BAR of \`${bars.name}\``];
    }
    case 'bar_exists': {
      const [f, b, w] = list(3);
      const target = field(f, uints);
      const bars = arrayOf(b, [['index', uints]]);
      const when = field(w, ints);
      return [{ rule: 'bar_exists', field: target.name, bars: bars.name, when: when.name }, `\`${target.name}\` is a BAR of \`${bars.name}\` unless \`${when.name}\` is 0`];
    }
    case 'pow2': {
      const f = field(args, ints);
      return [{ rule: 'pow2', field: f.name }, `\`${f.name}\` is a power of two`];
    }
    case 'zero_unless': {
      const [f, w] = list(2).map((x) => field(x, ints)) as [Field, Field];
      return [{ rule: 'zero_unless', field: f.name, when: w.name }, `\`${f.name}\` is 0 when \`${w.name}\` is 0`];
    }
    default:
      throw new SpecError(`${where}: unknown rule '${kind}'`);
  }
}

/** Every body the schema allows fits the body rules both codecs enforce. */
function checkLimits(spec: Spec, limit: (name: string) => number): void {
  const structOf = (name: string): Struct => spec.structs.find((s) => s.name === name) as Struct;
  // Deepest container, objects (keys included) and encoded bytes, at most.
  const measure = (s: Struct): { depth: number; objects: number; bytes: number } => {
    if (s.fields.length > limit('MAX_MAP_ENTRIES')) throw new SpecError(`${s.name}: ${s.fields.length} fields, MAX_MAP_ENTRIES is ${limit('MAX_MAP_ENTRIES')}`);
    let depth = 1;
    let objects = 1;
    let bytes = s.fields.length < 16 ? 1 : 3;
    for (const f of s.fields) {
      objects += 2;
      bytes += 1 + f.name.length;
      const n = f.maxLen?.value ?? 0;
      switch (f.type) {
        case 'u8':
          bytes += 2;
          break;
        case 'u16':
          bytes += 3;
          break;
        case 'u32':
          bytes += 5;
          break;
        case 'u64':
          bytes += 9;
          break;
        case 'bool':
          bytes += 1;
          break;
        case 'str':
        case 'bytes':
          bytes += 5 + n;
          break;
        case 'array': {
          const item = measure(structOf(f.of as string));
          depth = Math.max(depth, 2 + item.depth);
          objects += n * item.objects;
          bytes += 5 + n * item.bytes;
          break;
        }
      }
    }
    return { depth, objects, bytes };
  };
  const bodies = [spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))];
  for (const b of bodies) {
    const m = measure(b);
    if (m.depth > limit('MAX_DEPTH')) throw new SpecError(`${b.name}: nests ${m.depth} deep, MAX_DEPTH is ${limit('MAX_DEPTH')}`);
    if (m.objects > limit('MAX_OBJECTS')) throw new SpecError(`${b.name}: up to ${m.objects} objects, MAX_OBJECTS is ${limit('MAX_OBJECTS')}`);
    if (m.bytes > limit('MAX_BODY')) throw new SpecError(`${b.name}: up to ${m.bytes} bytes, MAX_BODY is ${limit('MAX_BODY')}`);
  }
  for (const f of bodies.flatMap((b) => b.fields)) {
    if ((f.type === 'str' || f.type === 'bytes') && (f.maxLen?.value ?? 0) > limit('MAX_BODY')) throw new SpecError(`${f.name}: max_len above MAX_BODY`);
  }
}

export function loadSpec(path = specPath): Spec {
  return parseSpec(readFileSync(path, 'utf8'));
}

// ---- the codec's tables ----------------------------------------------------------------

function fieldDesc(f: Field, structs: ReadonlyMap<string, StructDesc>, spec: Spec): FieldDesc {
  switch (f.type) {
    case 'u8':
    case 'u16':
    case 'u32': {
      const b = f.bitsName === null ? null : (spec.bitsets.find((x) => x.name === f.bitsName) as BitsetDef);
      return {
        key: f.name, kind: 'uint', bits: uintBits[f.type], min: Number(f.min), max: Number(f.max),
        oneOf: f.oneOf, mask: b === null ? null : bitMask(b),
      };
    }
    case 'u64':
      return { key: f.name, kind: 'u64', min: f.min, max: f.max };
    case 'bool':
      return { key: f.name, kind: 'bool' };
    case 'str':
      return { key: f.name, kind: 'str', maxLen: (f.maxLen as Num).value };
    case 'bytes':
      return { key: f.name, kind: 'bytes', minLen: f.minLen, maxLen: (f.maxLen as Num).value };
    case 'array':
      return { key: f.name, kind: 'array', maxLen: (f.maxLen as Num).value, item: structs.get(f.of as string) as StructDesc };
  }
}

function bitMask(b: BitsetDef): number {
  return b.bits.reduce((m, x) => (m | (1 << x.bit)) >>> 0, 0);
}

/** The tables gateway/src/proto/codec.ts runs on, as objects. */
export function protocolDesc(spec: Spec): ProtocolDesc {
  const structs = new Map<string, StructDesc>();
  const toDesc = (s: Struct): StructDesc => ({ name: s.name, fields: s.fields.map((f) => fieldDesc(f, structs, spec)), rules: s.rules });
  for (const s of spec.structs) structs.set(s.name, toDesc(s));
  const limit = (name: string): number => (spec.limits.find((l) => l.name === name) as Limit).value.value;
  return {
    limits: { maxBody: limit('MAX_BODY'), maxDepth: limit('MAX_DEPTH'), maxObjects: limit('MAX_OBJECTS'), maxMapEntries: limit('MAX_MAP_ENTRIES') },
    commands: spec.commands.map((c): CommandDesc => ({
      name: c.name, value: c.value, reply: c.reply, request: toDesc(c.request), response: c.response === null ? null : toDesc(c.response),
    })),
    errors: Object.fromEntries(spec.errors.map((e) => [e.name, e.value])),
    errorReply: toDesc(spec.errorReply),
    errorCommand: 'ERROR',
  };
}

// ---- formatting helpers ------------------------------------------------------------------

function hex(v: number | bigint, digits = 0): string {
  return `0x${v.toString(16).padStart(digits, '0')}`;
}

function numText(n: Num): string {
  return n.hex ? hex(n.value) : String(n.value);
}

function pascal(s: string): string {
  return s.toLowerCase().split(/[_ ]+/).map((w) => (w[0] ?? '').toUpperCase() + w.slice(1)).join('');
}

function cComment(text: string, indent = ''): string[] {
  const lines = wrap(text.replace(/\*\//g, '* /'), 74 - indent.length);
  if (lines.length === 1) return [`${indent}/* ${lines[0]} */`];
  return [`${indent}/*`, ...lines.map((l) => `${indent} * ${l}`), `${indent} */`];
}

function tsComment(text: string, indent = ''): string[] {
  return [`${indent}/** ${text.replace(/\*\//g, '* /')} */`];
}

function tsString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function cString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

// Names of bodies in the two languages.
type BodyKind = 'request' | 'reply';
function tsBodyType(s: Struct | null): string {
  if (s === null || s.fields.length === 0) return 'EmptyBody';
  if (s.name === 'error reply') return 'ErrorReply';
  const m = /^([A-Z0-9_]+) (request|reply)$/.exec(s.name);
  return m === null ? pascal(s.name) : `${pascal(m[1] as string)}${pascal(m[2] as string)}`;
}
function cBodyName(s: Struct): string {
  if (s.name === 'error reply') return 'error_reply';
  const m = /^([A-Z0-9_]+) (request|reply)$/.exec(s.name);
  if (m === null) return s.name.toLowerCase();
  return (m[2] as BodyKind) === 'request' ? (m[1] as string).toLowerCase() : `${(m[1] as string).toLowerCase()}_reply`;
}

// ---- TypeScript module -----------------------------------------------------------------------

function tsValue(v: unknown, indent: string, names: ReadonlyMap<object, string>): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return v > 0xffffn ? `${hex(v)}n` : `${v}n`;
  if (typeof v === 'number') return v > 0xffff ? hex(v) : String(v);
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return tsString(v);
  const named = names.get(v as object);
  if (named !== undefined) return named;
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    if (v.every((x) => typeof x === 'number')) return `[${v.join(', ')}]`;
    return `[\n${v.map((x) => `${inner}${tsValue(x, inner, names)},`).join('\n')}\n${indent}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return '{}';
  const flat = entries.every(([, x]) => typeof x !== 'object' || x === null || (Array.isArray(x) && x.every((y) => typeof y === 'number')));
  const key = (k: string): string => (/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k) ? k : tsString(k));
  if (flat) {
    const line = `{ ${entries.map(([k, x]) => `${key(k)}: ${tsValue(x, inner, names)}`).join(', ')} }`;
    if (line.length + indent.length < 150) return line;
  }
  return `{\n${entries.map(([k, x]) => `${inner}${key(k)}: ${tsValue(x, inner, names)},`).join('\n')}\n${indent}}`;
}

function tsFieldType(f: Field, spec: Spec): string {
  switch (f.type) {
    case 'u8':
    case 'u16':
    case 'u32':
      return f.enumName !== null ? pascal(f.enumName) : 'number';
    case 'u64':
      return 'bigint';
    case 'bool':
      return 'boolean';
    case 'str':
      return 'string';
    case 'bytes':
      return 'Uint8Array';
    case 'array':
      return `${tsBodyType(spec.structs.find((s) => s.name === f.of) as Struct)}[]`;
  }
}

/** Renders proto/generated/wire.ts. */
export function renderTs(spec: Spec): string {
  const desc = protocolDesc(spec);
  const out: string[] = [
    `// The ${spec.protocol} protocol, versions ${spec.version.min}..${spec.version.max} (docs/protocol.md):`,
    '// constants, message types and the codec for TypeScript.',
    '//',
    `// GENERATED by ${generator} from ${source}: do not edit;`,
    '// change the JSON and run the generator. The codec is',
    '// gateway/src/proto/codec.ts (msgpackr, options pinned there), run on',
    '// the tables below.',
    "import type { PciemErrorCode } from '../../gateway/src/errors.js';",
    "import { type ProtocolDesc, type RawHeader, type StructDesc, WireCodec } from '../../gateway/src/proto/codec.js';",
    '',
    "export { HEADER_SIZE, type RawHeader } from '../../gateway/src/proto/codec.js';",
    '',
    '/** Protocol versions this side speaks (HELLO). */',
    `export const VERSION_MIN = ${spec.version.min};`,
    `export const VERSION_MAX = ${spec.version.max};`,
    '',
    '/** Limits (docs/protocol.md, "Limits"). */',
    `export const Limits = {\n${spec.limits.map((l) => `  ${l.name}: ${numText(l.value)},`).join('\n')}\n} as const;`,
    '',
    '/** Header flag bits. */',
    `export const Flag = { ${spec.flags.map((f) => `${f.name}: ${hex(1 << f.bit, 4)}`).join(', ')} } as const;`,
    '',
    '/** Command numbers. */',
    `export const Cmd = {\n${spec.commands.map((c) => `  ${c.name}: ${hex(c.value, 4)},`).join('\n')}\n} as const;`,
    'export type CmdName = keyof typeof Cmd;',
    '',
    '/** Wire error codes, as the header\'s error field carries them. */',
    `export const Err = {\n${spec.errors.map((e) => `  ${e.name}: ${e.value},`).join('\n')}\n} as const;`,
    'export type ErrName = keyof typeof Err;',
    "export type FailureName = Exclude<ErrName, 'NONE'>;",
    '',
    '/** The PciemError code of each wire error. */',
    `export const ERR_CODES: Readonly<Record<FailureName, PciemErrorCode>> = {\n${spec.errors
      .filter((e) => e.class !== 'none')
      .map((e) => `  ${e.name}: '${e.class === 'device' ? 'PCIEM_ERR_' : 'PCIEM_ERR_PROTO_'}${e.name}',`)
      .join('\n')}\n};`,
    '',
    '/** The wire error for a PciemError code (IO for codes with no wire error of their own). */',
    'export function wireError(code: PciemErrorCode): FailureName {',
    "  const name = (Object.keys(ERR_CODES) as FailureName[]).find((n) => ERR_CODES[n] === code);",
    "  return name ?? 'IO';",
    '}',
    '',
  ];
  for (const e of spec.enums) {
    const n = pascal(e.name);
    out.push(...tsComment(e.summary), `export const ${n} = ${tsValue(Object.fromEntries(e.values.map((v) => [v.name, v.value])), '', new Map())} as const;`);
    out.push(`export type ${n} = (typeof ${n})[keyof typeof ${n}];`, '');
  }
  for (const b of spec.bitsets) {
    out.push(...tsComment(`${b.summary} (bit masks)`), `export const ${pascal(b.name)} = ${tsValue(Object.fromEntries(b.bits.map((x) => [x.name, (1 << x.bit) >>> 0])), '', new Map())} as const;`, '');
  }

  out.push('// ---- message bodies: field names are the wire keys; u64 fields are bigint', '');
  out.push('/** The body of a message that carries no fields. */', 'export type EmptyBody = Record<string, never>;', '');
  const bodies: Struct[] = [...spec.structs, spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))];
  for (const s of bodies) {
    if (s.fields.length === 0) continue;
    out.push(...tsComment(s.title), `export type ${tsBodyType(s)} = {`);
    for (const f of s.fields) out.push(...tsComment(f.summary, '  '), `  ${f.name}: ${tsFieldType(f, spec)};`);
    out.push('};', '');
  }

  const replied = spec.commands.filter((c) => c.reply !== 'none').map((c) => `'${c.name}'`);
  out.push('/** Every message: a request, its reply, or a failed reply (header error set, ErrorReply body). */', 'export type Message =');
  for (const c of spec.commands) {
    const posted = c.reply === 'required' ? 'false' : c.reply === 'none' ? 'true' : 'boolean';
    const error = c.name === 'ERROR' ? 'FailureName' : "'NONE'";
    out.push(`  | { cmd: '${c.name}'; id: number; reply: false; posted: ${posted}; error: ${error}; body: ${tsBodyType(c.request)} }`);
    if (c.response !== null) out.push(`  | { cmd: '${c.name}'; id: number; reply: true; posted: false; error: 'NONE'; body: ${tsBodyType(c.response)} }`);
  }
  out.push(`  | { cmd: ${replied.join(' | ')}; id: number; reply: true; posted: false; error: FailureName; body: ErrorReply };`, '');
  out.push('export type MessageOf<C extends CmdName> = Extract<Message, { cmd: C }>;', '');

  // Struct tables: named constants so shared item structs appear once.
  const names = new Map<object, string>();
  const itemDescs = new Map<string, StructDesc>();
  const collect = (d: StructDesc): void => {
    for (const f of d.fields) {
      if (f.kind === 'array' && !itemDescs.has(f.item.name)) {
        collect(f.item);
        itemDescs.set(f.item.name, f.item);
      }
    }
  };
  for (const c of desc.commands) {
    collect(c.request);
    if (c.response !== null) collect(c.response);
  }
  out.push('// ---- the codec\'s tables', '');
  for (const [name, d] of itemDescs) {
    const n = `${name}_BODY`;
    out.push(`const ${n}: StructDesc = ${tsValue(d, '', names)};`, '');
    names.set(d, n);
  }
  out.push(`export const PROTOCOL: ProtocolDesc = ${tsValue(desc, '', names)};`, '');
  out.push(
    'const codec = new WireCodec(PROTOCOL);',
    '',
    '/** The header at `offset`, unchecked (TRUNCATED with fewer than HEADER_SIZE bytes). */',
    'export function readHeader(buf: Uint8Array, offset = 0): RawHeader {',
    '  return codec.readHeader(buf, offset);',
    '}',
    '',
    '/** Refuses a header the way a decoder does: TOO_BIG, UNKNOWN_CMD, HEADER. */',
    'export function checkHeader(h: RawHeader): void {',
    '  codec.checkHeader(h);',
    '}',
    '',
    '/** The message of a frame with header `h` and body `body` (exactly h.size bytes). bytes fields are views into `body`. */',
    'export function decodeBody(h: RawHeader, body: Uint8Array): Message {',
    '  return codec.decodeBody(h, body) as Message;',
    '}',
    '',
    '/** The message of one whole frame. bytes fields are views into `frame`. */',
    'export function decodeFrame(frame: Uint8Array): Message {',
    '  return codec.decodeFrame(frame) as Message;',
    '}',
    '',
    '/** One frame for `m`, refused (PCIEM_ERR_PROTO_*) if a decoder would refuse it. */',
    'export function encodeFrame(m: Message): Buffer {',
    '  return codec.encodeFrame(m);',
    '}',
    '',
    '/** `m` as JSON: u64 fields as "0x..." strings, bytes as hex (the test vectors\' form). */',
    'export function messageToJson(m: Message): Record<string, unknown> {',
    '  return codec.toJson(m);',
    '}',
    '',
    '/** The inverse of messageToJson; checked when encoded, not here. */',
    'export function messageFromJson(j: unknown): Message {',
    '  return codec.fromJson(j) as Message;',
    '}',
    '',
  );
  return out.join('\n');
}

// ---- C header -----------------------------------------------------------------------------

const C_WIDTH = 40;

function cType(f: Field): string {
  switch (f.type) {
    case 'u8':
      return 'uint8_t';
    case 'u16':
      return 'uint16_t';
    case 'u32':
      return 'uint32_t';
    case 'u64':
      return 'uint64_t';
    case 'bool':
      return 'bool';
    default:
      return '';
  }
}

function cLimit(P: string, n: Num): string {
  return n.name !== null ? `${P}_${n.name}` : `${numText(n)}u`;
}

/** Renders proto/generated/wire.h. */
export function renderHeader(spec: Spec): string {
  const P = spec.prefix;
  const out: string[] = [];
  const define = cDefiner(P, C_WIDTH, out);
  const p = P.toLowerCase();
  out.push(
    '/* SPDX-License-Identifier: MIT */',
    '/*',
    ` * The ${spec.protocol} protocol between the pciem gateway and QEMU, versions`,
    ` * ${spec.version.min}..${spec.version.max} (docs/protocol.md): constants, message structs, codec.`,
    ' *',
    ` * GENERATED by ${generator} from ${source}: do not edit;`,
    ' * change the JSON and run the generator.',
    ' *',
    ' * Plain C99 on msgpack-c (Debian libmsgpack-dev: <msgpack.h>, link',
    ' * -lmsgpackc); no QEMU include, so it is tested on its own',
    ' * (proto/tests/wire_test.c). Build wire.c alongside.',
    ' *',
    ' * A frame is a 16-byte little-endian header and a msgpack body of',
    ` * header.size bytes (at most ${P}_MAX_BODY). Functions return 0 or a`,
    ` * negative ${P}_ERR_* code: -${P}_ERR_TRUNCATED ... -${P}_ERR_HEADER`,
    ' * for input that is refused, in the order docs/protocol.md gives, the',
    ` * same codes the TypeScript side uses; -${P}_ERR_IO when memory runs out.`,
    ' */',
    `#ifndef ${P}_H`,
    `#define ${P}_H`,
    '',
    '#include <stdbool.h>',
    '#include <stddef.h>',
    '#include <stdint.h>',
    '',
    '#include <msgpack.h>',
    '',
  );
  out.push(...cComment('Protocol versions this side speaks (HELLO).'));
  define('VERSION_MIN', `${spec.version.min}u`);
  define('VERSION_MAX', `${spec.version.max}u`);
  out.push('');
  out.push(...cComment(`Header: ${spec.header.summary}. Field offsets:`));
  define('HEADER_SIZE', '16u');
  for (const f of spec.header.fields) define(`HDR_${f.name.toUpperCase()}`, `${f.offset}u`);
  out.push('');
  out.push(...cComment('Header flags.'));
  for (const f of spec.flags) define(`FLAG_${f.name}`, `(1u << ${f.bit})`);
  define('FLAGS_MASK', `${hex(spec.flags.reduce((m, f) => m | (1 << f.bit), 0), 4)}u`);
  out.push('');
  out.push(...cComment('Limits.'));
  for (const l of spec.limits) {
    out.push(...cComment(l.summary));
    define(l.name, `${numText(l.value)}u`);
  }
  out.push('');
  out.push(...cComment('Command numbers.'));
  for (const c of spec.commands) define(`CMD_${c.name}`, `${hex(c.value, 4)}u`);
  out.push('');
  out.push(...cComment(`Error codes, as the header's error field carries them. The functions below return the decode ones (${spec.errors.filter((e) => e.class === 'decode').map((e) => e.name).join(', ')}) negated, and -${P}_ERR_IO when memory runs out; the others are for failed replies and ERROR messages.`));
  for (const e of spec.errors) {
    out.push(...cComment(`${e.class === 'none' ? '' : `${e.class}: `}${e.summary}`));
    define(`ERR_${e.name}`, `${e.value}`);
  }
  out.push('');
  for (const e of spec.enums) {
    out.push(...cComment(`${e.name}: ${e.summary}.`));
    for (const v of e.values) define(`${e.name}_${v.name}`, `${v.value}u`);
    out.push('');
  }
  for (const b of spec.bitsets) {
    out.push(...cComment(`${b.name}: ${b.summary}.`));
    for (const x of b.bits) define(`${b.name}_${x.name}`, `(1u << ${x.bit})`);
    define(`${b.name}_MASK`, `${hex(bitMask(b), 8)}u`);
    out.push('');
  }

  out.push(
    `struct ${p}_header {`,
    ...spec.header.fields.map((f) => `\t${f.type === 'u16' ? 'uint16_t' : 'uint32_t'} ${f.name};`),
    '};',
    '',
    ...cComment('A bytes field: once decoded, it points into the frame it came from.'),
    `struct ${p}_bytes {`,
    '\tconst uint8_t *data;',
    '\tsize_t len;',
    '};',
    '',
  );
  const bodies: Struct[] = [...spec.structs, spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))];
  const cStructs = new Set<string>();
  for (const s of bodies) {
    if (s.fields.length === 0) continue;
    const name = `${p}_${cBodyName(s)}`;
    if (cStructs.has(name)) throw new SpecError(`two bodies would be struct ${name}`);
    cStructs.add(name);
    out.push(...cComment(s.title), `struct ${name} {`);
    for (const f of s.fields) {
      if (f.type === 'str') out.push(`\tchar ${f.name}[${cLimit(P, f.maxLen as Num)} + 1];`);
      else if (f.type === 'bytes') out.push(`\tstruct ${p}_bytes ${f.name};`);
      else if (f.type === 'array') {
        out.push(`\tuint32_t n_${f.name};`);
        out.push(`\tstruct ${p}_${(f.of as string).toLowerCase()} ${f.name}[${cLimit(P, f.maxLen as Num)}];`);
      } else out.push(`\t${cType(f)} ${f.name};`);
    }
    out.push('};', '');
  }
  out.push(
    ...cComment(`One message: hdr, then the body its cmd and flags select: the request body (body.<command>), the reply body (body.<command>_reply), or, for a reply whose hdr.error is not 0, body.error_reply. Commands whose body is empty have no member.`),
    `struct ${p}_msg {`,
    `\tstruct ${p}_header hdr;`,
    '\tunion {',
  );
  for (const s of [spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))]) {
    if (s.fields.length > 0) out.push(`\t\tstruct ${p}_${cBodyName(s)} ${cBodyName(s)};`);
  }
  out.push('\t} body;', '};', '');
  out.push(
    ...cComment(`The header at buf, checked (TOO_BIG, UNKNOWN_CMD, HEADER); -${P}_ERR_TRUNCATED with fewer than ${P}_HEADER_SIZE bytes. With 16 bytes or more, hdr is filled even when refused, so that a request can be answered; after TOO_BIG the stream cannot be read further. On success the body is the next hdr->size bytes.`),
    `int ${p}_header_decode(const uint8_t *buf, size_t len, struct ${p}_header *hdr);`,
    '',
    ...cComment(`Decodes a body of len bytes for hdr (from ${p}_header_decode) into msg. bytes fields point into body: keep it while msg is used.`),
    `int ${p}_body_decode(const struct ${p}_header *hdr, const uint8_t *body, size_t len, struct ${p}_msg *msg);`,
    '',
    ...cComment('Decodes one whole frame of exactly len bytes.'),
    `int ${p}_frame_decode(const uint8_t *frame, size_t len, struct ${p}_msg *msg);`,
    '',
    ...cComment(`Checks msg as a decoder would (msg->hdr.size is not looked at) and appends it to out as one frame. On error out is left as it was.`),
    `int ${p}_encode(const struct ${p}_msg *msg, msgpack_sbuffer *out);`,
    '',
    ...cComment('Names for logs: "HELLO", "RANGE"; NULL for numbers the protocol does not define.'),
    `const char *${p}_cmd_name(unsigned int cmd);`,
    `const char *${p}_err_name(unsigned int err);`,
    '',
    `#endif /* ${P}_H */`,
    '',
  );
  return out.join('\n');
}

// ---- C source ------------------------------------------------------------------------------

/** Renders proto/generated/wire.c. */
export function renderSource(spec: Spec): string {
  const P = spec.prefix;
  const p = P.toLowerCase();
  const E = (name: string): string => `-${P}_ERR_${name}`;
  const out: string[] = [
    '/* SPDX-License-Identifier: MIT */',
    '/*',
    ` * The ${spec.protocol} codec on msgpack-c (docs/protocol.md).`,
    ' *',
    ` * GENERATED by ${generator} from ${source}: do not edit;`,
    ' * change the JSON (or the runtime in the generator) and run the generator.',
    ' *',
    ' * Decoding: the header rules, then the body walker (the grammar, in byte',
    ' * order, before msgpack-c allocates anything), then msgpack-c, then a',
    ' * shape pass per body in wire order and a value pass in schema order; the',
    ' * TypeScript codec does the same in the same order, so both refuse a',
    ' * frame with the same code.',
    ' */',
    '#include <string.h>',
    '',
    '#include "wire.h"',
    '',
    cRuntime.replace(/PCIEM_WIRE/g, P).replace(/pciem_wire/g, p).trim(),
    '',
  ];
  const structByName = new Map(spec.structs.map((s) => [s.name, s]));

  const decl = (s: Struct): string => `struct ${p}_${cBodyName(s)}`;

  const genDec = (s: Struct): void => {
    const fn = `wire_dec_${cBodyName(s)}`;
    if (s.fields.length === 0) return;
    const needU = s.fields.some((f) => ['u8', 'u16', 'u32', 'u64'].includes(f.type));
    const needJ = s.fields.some((f) => f.type === 'array');
    out.push(`static int ${fn}(const msgpack_object *o, ${decl(s)} *b)`, '{');
    out.push('\tuint32_t i, seen = 0;');
    if (needJ) out.push('\tuint32_t j;');
    if (needU) out.push('\tuint64_t u;');
    out.push('\tint rc;', '');
    out.push('\tif (o->type != MSGPACK_OBJECT_MAP)', `\t\treturn ${E('TYPE')};`);
    out.push('\tfor (i = 0; i < o->via.map.size; i++) {');
    out.push('\t\tconst msgpack_object *k = &o->via.map.ptr[i].key;');
    out.push('\t\tconst msgpack_object *v = &o->via.map.ptr[i].val;', '');
    s.fields.forEach((f, idx) => {
      out.push(`\t\t${idx === 0 ? 'if' : '} else if'} (wire_key_is(k, ${cString(f.name)})) {`);
      switch (f.type) {
        case 'u8':
        case 'u16':
        case 'u32':
        case 'u64': {
          const max = { u8: 'UINT8_MAX', u16: 'UINT16_MAX', u32: 'UINT32_MAX', u64: 'UINT64_MAX' }[f.type];
          out.push(`\t\t\trc = wire_get_uint(v, ${max}, &u);`, '\t\t\tif (rc)', '\t\t\t\treturn rc;', `\t\t\tb->${f.name} = (${cType(f)})u;`);
          break;
        }
        case 'bool':
          out.push(`\t\t\trc = wire_get_bool(v, &b->${f.name});`, '\t\t\tif (rc)', '\t\t\t\treturn rc;');
          break;
        case 'str':
          out.push(`\t\t\trc = wire_get_str(v, b->${f.name}, ${cLimit(P, f.maxLen as Num)});`, '\t\t\tif (rc)', '\t\t\t\treturn rc;');
          break;
        case 'bytes':
          out.push(`\t\t\trc = wire_get_bytes(v, &b->${f.name}, ${cLimit(P, f.maxLen as Num)});`, '\t\t\tif (rc)', '\t\t\t\treturn rc;');
          break;
        case 'array': {
          const item = structByName.get(f.of as string) as Struct;
          out.push(
            '\t\t\tif (v->type != MSGPACK_OBJECT_ARRAY)',
            `\t\t\t\treturn ${E('TYPE')};`,
            `\t\t\tif (v->via.array.size > ${cLimit(P, f.maxLen as Num)})`,
            `\t\t\t\treturn ${E('TOO_BIG')};`,
            '\t\t\tfor (j = 0; j < v->via.array.size; j++) {',
            `\t\t\t\trc = wire_dec_${cBodyName(item)}(&v->via.array.ptr[j], &b->${f.name}[j]);`,
            '\t\t\t\tif (rc)',
            '\t\t\t\t\treturn rc;',
            '\t\t\t}',
            `\t\t\tb->n_${f.name} = v->via.array.size;`,
          );
          break;
        }
      }
      out.push(`\t\t\tseen |= 1u << ${idx};`);
    });
    out.push('\t\t} else {', `\t\t\treturn ${E('EXTRA')};`, '\t\t}', '\t}');
    const all = s.fields.length === 32 ? 0xffffffff : (2 ** s.fields.length - 1);
    out.push(`\tif (seen != ${hex(all)}u)`, `\t\treturn ${E('MISSING')};`, '\treturn 0;', '}', '');
  };

  const barHelpers = new Set<string>();
  const genBarHelper = (item: Struct): void => {
    if (barHelpers.has(item.name)) return;
    barHelpers.add(item.name);
    const t = decl(item);
    out.push(
      `static const ${t} *wire_find_${cBodyName(item)}(const ${t} *items, uint32_t n, uint64_t index)`,
      '{',
      '\tuint32_t i;',
      '',
      '\tfor (i = 0; i < n; i++)',
      '\t\tif (items[i].index == index)',
      '\t\t\treturn &items[i];',
      '\treturn NULL;',
      '}',
      '',
    );
  };

  const genBarHelperLater: Struct[] = [];
  const genChk = (s: Struct): void => {
    if (s.fields.length === 0) return;
    const body: string[] = [];
    let needI = false;
    let needJ = false;
    let needRc = false;
    const fieldOf = (n: string): Field => s.fields.find((f) => f.name === n) as Field;
    const u = (n: string): string => `(uint64_t)b->${n}`;
    for (const f of s.fields) {
      const v = `b->${f.name}`;
      switch (f.type) {
        case 'u8':
        case 'u16':
        case 'u32':
        case 'u64': {
          const top = f.type === 'u64' ? 0xffff_ffff_ffff_ffffn : BigInt(2 ** uintBits[f.type] - 1);
          const lim = (n: Num | null, val: bigint): string =>
            n?.name != null ? `${P}_${n.name}` : f.type === 'u64' ? `UINT64_C(${hex(val)})` : val > 0xffffn ? `${hex(val)}u` : `${val}u`;
          const conds: string[] = [];
          if (f.min > 0n) conds.push(`${v} < ${lim(f.minNum, f.min)}`);
          if (f.max < top) conds.push(`${v} > ${lim(f.maxNum, f.max)}`);
          if (conds.length > 0) body.push(`\tif (${conds.join(' || ')})`, `\t\treturn ${E('RANGE')};`);
          if (f.oneOf !== null) {
            const name = f.enumName !== null ? (x: number): string => `${P}_${f.enumName}_${(spec.enums.find((e) => e.name === f.enumName) as EnumDef).values.find((y) => y.value === x)?.name}` : (x: number): string => `${x}u`;
            body.push(`\tif (${f.oneOf.map((x) => `${v} != ${name(x)}`).join(' && ')})`, `\t\treturn ${E('RANGE')};`);
          }
          if (f.bitsName !== null) body.push(`\tif ((uint32_t)${v} & ~${P}_${f.bitsName}_MASK)`, `\t\treturn ${E('RANGE')};`);
          break;
        }
        case 'str':
          needRc = true;
          body.push(`\trc = wire_check_str(${v}, ${cLimit(P, f.maxLen as Num)});`, '\tif (rc)', '\t\treturn rc;');
          break;
        case 'bytes':
          body.push(`\tif (${v}.len > ${cLimit(P, f.maxLen as Num)})`, `\t\treturn ${E('TOO_BIG')};`);
          if (f.minLen > 0) body.push(`\tif (${v}.len < ${f.minLen}u)`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'array': {
          needI = true;
          needRc = true;
          const item = structByName.get(f.of as string) as Struct;
          body.push(
            `\tif (b->n_${f.name} > ${cLimit(P, f.maxLen as Num)})`,
            `\t\treturn ${E('TOO_BIG')};`,
            `\tfor (i = 0; i < b->n_${f.name}; i++) {`,
            `\t\trc = wire_chk_${cBodyName(item)}(&b->${f.name}[i]);`,
            '\t\tif (rc)',
            '\t\t\treturn rc;',
            '\t}',
          );
          break;
        }
        case 'bool':
          break;
      }
    }
    for (const r of s.rules) {
      switch (r.rule) {
        case 'le':
          body.push(`\tif (${u(r.a)} > ${u(r.b)})`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'fits':
          body.push(`\tif (b->${r.bytes} < 8u && ${u(r.value)} >> (8u * b->${r.bytes}) != 0u)`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'aligned':
          body.push(`\tif (${u(r.value)} % ${typeof r.to === 'number' ? `${r.to}u` : u(r.to)} != 0u)`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'end': {
          const len = fieldOf(r.len).type === 'bytes' ? `(uint64_t)b->${r.len}.len` : u(r.len);
          body.push(`\tif (${len} != 0u && ${u(r.start)} > UINT64_MAX - (${len} - 1u))`, `\t\treturn ${E('RANGE')};`);
          break;
        }
        case 'max_if':
          body.push(`\tif (${u(r.if)} == ${r.equals}u && ${u(r.field)} > ${r.max}u)`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'unique':
          needI = true;
          needJ = true;
          body.push(
            `\tfor (i = 0; i < b->n_${r.array}; i++)`,
            '\t\tfor (j = 0; j < i; j++)',
            `\t\t\tif (b->${r.array}[i].${r.key} == b->${r.array}[j].${r.key})`,
            `\t\t\t\treturn ${E('RANGE')};`,
          );
          break;
        case 'within_bar': {
          needI = true;
          const regions = structByName.get(fieldOf(r.regions).of as string) as Struct;
          const bars = structByName.get(fieldOf(r.bars).of as string) as Struct;
          genBarHelperLater.push(bars);
          body.push(
            `\tfor (i = 0; i < b->n_${r.regions}; i++) {`,
            `\t\tconst ${decl(regions)} *r = &b->${r.regions}[i];`,
            `\t\tconst ${decl(bars)} *bar = wire_find_${cBodyName(bars)}(b->${r.bars}, b->n_${r.bars}, r->bar);`,
            '',
            '\t\tif (!bar || r->size > bar->size || r->offset > bar->size - r->size)',
            `\t\t\treturn ${E('RANGE')};`,
            '\t}',
          );
          break;
        }
        case 'bar_exists': {
          const bars = structByName.get(fieldOf(r.bars).of as string) as Struct;
          genBarHelperLater.push(bars);
          body.push(`\tif (${u(r.when)} != 0u && !wire_find_${cBodyName(bars)}(b->${r.bars}, b->n_${r.bars}, b->${r.field}))`, `\t\treturn ${E('RANGE')};`);
          break;
        }
        case 'pow2':
          body.push(`\tif (${u(r.field)} == 0u || (${u(r.field)} & (${u(r.field)} - 1u)) != 0u)`, `\t\treturn ${E('RANGE')};`);
          break;
        case 'zero_unless':
          body.push(`\tif (${u(r.when)} == 0u && ${u(r.field)} != 0u)`, `\t\treturn ${E('RANGE')};`);
          break;
      }
    }
    for (const bars of genBarHelperLater.splice(0)) genBarHelper(bars);
    const vars: string[] = [];
    if (needI || needJ) vars.push(`\tuint32_t ${needJ ? 'i, j' : 'i'};`);
    if (needRc) vars.push('\tint rc;');
    out.push(`static int wire_chk_${cBodyName(s)}(const ${decl(s)} *b)`, '{', ...vars, ...(vars.length > 0 ? [''] : []));
    if (body.length === 0) out.push('\t(void)b;');
    out.push(...body, '\treturn 0;', '}', '');
  };
  const genEnc = (s: Struct): void => {
    if (s.fields.length === 0) return;
    const needI = s.fields.some((f) => f.type === 'array');
    out.push(`static int wire_enc_${cBodyName(s)}(msgpack_packer *pk, const ${decl(s)} *b)`, '{');
    if (needI) out.push('\tuint32_t i;', '');
    out.push(`\tif (msgpack_pack_map(pk, ${s.fields.length}))`, `\t\treturn ${E('IO')};`);
    for (const f of s.fields) {
      const v = `b->${f.name}`;
      out.push(`\tif (wire_put_key(pk, ${cString(f.name)}))`, `\t\treturn ${E('IO')};`);
      switch (f.type) {
        case 'u8':
        case 'u16':
        case 'u32':
        case 'u64':
          out.push(`\tif (msgpack_pack_uint64(pk, ${v}))`, `\t\treturn ${E('IO')};`);
          break;
        case 'bool':
          out.push(`\tif (${v} ? msgpack_pack_true(pk) : msgpack_pack_false(pk))`, `\t\treturn ${E('IO')};`);
          break;
        case 'str':
          out.push(`\tif (wire_put_str(pk, ${v}))`, `\t\treturn ${E('IO')};`);
          break;
        case 'bytes':
          out.push(`\tif (msgpack_pack_bin(pk, ${v}.len) || msgpack_pack_bin_body(pk, ${v}.data, ${v}.len))`, `\t\treturn ${E('IO')};`);
          break;
        case 'array': {
          const item = structByName.get(f.of as string) as Struct;
          out.push(
            `\tif (msgpack_pack_array(pk, b->n_${f.name}))`,
            `\t\treturn ${E('IO')};`,
            `\tfor (i = 0; i < b->n_${f.name}; i++)`,
            `\t\tif (wire_enc_${cBodyName(item)}(pk, &b->${f.name}[i]))`,
            `\t\t\treturn ${E('IO')};`,
          );
          break;
        }
      }
    }
    out.push('\treturn 0;', '}', '');
  };

  out.push('/* ---- bodies, from the schema ---- */', '');
  const all = [...spec.structs, spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))];
  for (const s of all) {
    genDec(s);
    genChk(s);
    genEnc(s);
  }

  // Dispatch on (cmd, reply, error): which body, for each of the three passes.
  type Pass = 'dec' | 'chk' | 'enc';
  const call = (pass: Pass, s: Struct | null): string => {
    if (s === null || s.fields.length === 0) {
      return { dec: 'return wire_dec_empty(o);', chk: 'return 0;', enc: `return msgpack_pack_map(pk, 0) ? ${E('IO')} : 0;` }[pass];
    }
    const n = cBodyName(s);
    return { dec: `return wire_dec_${n}(o, &m->body.${n});`, chk: `return wire_chk_${n}(&m->body.${n});`, enc: `return wire_enc_${n}(pk, &m->body.${n});` }[pass];
  };
  const dispatch = (pass: Pass, signature: string): void => {
    out.push(signature, '{');
    out.push(`\tif (m->hdr.flags & ${P}_FLAG_REPLY) {`, '\t\tif (m->hdr.error != 0)', `\t\t\t${call(pass, spec.errorReply)}`, '\t\tswitch (m->hdr.cmd) {');
    for (const c of spec.commands.filter((x) => x.response !== null)) {
      out.push(`\t\tcase ${P}_CMD_${c.name}:`, `\t\t\t${call(pass, c.response)}`);
    }
    out.push('\t\t}', `\t\treturn ${E('UNKNOWN_CMD')};`, '\t}', '\tswitch (m->hdr.cmd) {');
    for (const c of spec.commands) out.push(`\tcase ${P}_CMD_${c.name}:`, `\t\t${call(pass, c.request)}`);
    out.push('\t}', `\treturn ${E('UNKNOWN_CMD')};`, '}', '');
  };
  out.push('/* ---- which body a message has ---- */', '');
  dispatch('dec', `static int wire_dec_body(const msgpack_object *o, struct ${p}_msg *m)`);
  dispatch('chk', `static int wire_chk_body(const struct ${p}_msg *m)`);
  dispatch('enc', `static int wire_enc_body(msgpack_packer *pk, const struct ${p}_msg *m)`);

  out.push(
    '/* How each command is answered: WIRE_REPLY_*; -1 for numbers not defined. */',
    'static int wire_reply_policy(unsigned int cmd)',
    '{',
    '\tswitch (cmd) {',
  );
  for (const c of spec.commands) out.push(`\tcase ${P}_CMD_${c.name}:`, `\t\treturn WIRE_REPLY_${c.reply.toUpperCase()};`);
  out.push('\t}', '\treturn -1;', '}', '');
  out.push(`const char *${p}_cmd_name(unsigned int cmd)`, '{', '\tswitch (cmd) {');
  for (const c of spec.commands) out.push(`\tcase ${P}_CMD_${c.name}:`, `\t\treturn ${cString(c.name)};`);
  out.push('\t}', '\treturn NULL;', '}', '');
  out.push(`const char *${p}_err_name(unsigned int err)`, '{', '\tswitch (err) {');
  for (const e of spec.errors) out.push(`\tcase ${P}_ERR_${e.name}:`, `\t\treturn ${cString(e.name)};`);
  out.push('\t}', '\treturn NULL;', '}', '');
  out.push(cEntryPoints.replace(/PCIEM_WIRE/g, P).replace(/pciem_wire/g, p).trim(), '');
  return out.join('\n');
}

// The fixed part of wire.c: the body walker, value helpers, and the entry
// points. It mirrors gateway/src/proto/codec.ts rule for rule.
const cRuntime = String.raw`
enum { WIRE_REPLY_REQUIRED, WIRE_REPLY_OPTIONAL, WIRE_REPLY_NONE };

static int wire_reply_policy(unsigned int cmd);

/* ---- the body walker (docs/protocol.md, "Body rules") ---- */

struct wire_walk {
	const uint8_t *p;
	size_t len;
	size_t pos;
	unsigned int objects;
};

static int wire_walk_value(struct wire_walk *w, unsigned int depth);

static int wire_need(const struct wire_walk *w, size_t n)
{
	return w->len - w->pos >= n ? 0 : -PCIEM_WIRE_ERR_MALFORMED;
}

static int wire_skip(struct wire_walk *w, size_t n)
{
	if (wire_need(w, n))
		return -PCIEM_WIRE_ERR_MALFORMED;
	w->pos += n;
	return 0;
}

/* A big-endian length of 1, 2 or 4 bytes. */
static int wire_len(struct wire_walk *w, unsigned int bytes, size_t *n)
{
	const uint8_t *q = w->p + w->pos;

	if (wire_need(w, bytes))
		return -PCIEM_WIRE_ERR_MALFORMED;
	if (bytes == 1)
		*n = q[0];
	else if (bytes == 2)
		*n = (size_t)q[0] << 8 | q[1];
	else
		*n = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
	w->pos += bytes;
	return 0;
}

/* A string's bytes: all there, all printable ASCII. */
static int wire_walk_str(struct wire_walk *w, size_t n)
{
	size_t i;

	if (wire_need(w, n))
		return -PCIEM_WIRE_ERR_MALFORMED;
	for (i = 0; i < n; i++)
		if (w->p[w->pos + i] < 0x20 || w->p[w->pos + i] > 0x7e)
			return -PCIEM_WIRE_ERR_RANGE;
	w->pos += n;
	return 0;
}

static int wire_count(struct wire_walk *w)
{
	if (w->pos >= w->len)
		return -PCIEM_WIRE_ERR_MALFORMED;
	if (++w->objects > PCIEM_WIRE_MAX_OBJECTS)
		return -PCIEM_WIRE_ERR_MALFORMED;
	return 0;
}

static int wire_walk_map(struct wire_walk *w, size_t n, unsigned int depth)
{
	size_t start[PCIEM_WIRE_MAX_MAP_ENTRIES], klen[PCIEM_WIRE_MAX_MAP_ENTRIES];
	size_t i, k, len = 0;
	uint8_t m;
	int rc;

	if (depth > PCIEM_WIRE_MAX_DEPTH || n > PCIEM_WIRE_MAX_MAP_ENTRIES)
		return -PCIEM_WIRE_ERR_MALFORMED;
	for (i = 0; i < n; i++) {
		rc = wire_count(w);
		if (rc)
			return rc;
		m = w->p[w->pos++];
		if (m >= 0xa0 && m <= 0xbf)
			len = m & 0x1f;
		else if (m == 0xd9 || m == 0xda || m == 0xdb)
			rc = wire_len(w, m == 0xd9 ? 1 : m == 0xda ? 2 : 4, &len);
		else
			return -PCIEM_WIRE_ERR_MALFORMED;
		if (rc)
			return rc;
		start[i] = w->pos;
		klen[i] = len;
		rc = wire_walk_str(w, len);
		if (rc)
			return rc;
		for (k = 0; k < i; k++)
			if (klen[k] == len && !memcmp(w->p + start[k], w->p + start[i], len))
				return -PCIEM_WIRE_ERR_MALFORMED;
		rc = wire_walk_value(w, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

static int wire_walk_array(struct wire_walk *w, size_t n, unsigned int depth)
{
	size_t i;
	int rc;

	if (depth > PCIEM_WIRE_MAX_DEPTH)
		return -PCIEM_WIRE_ERR_MALFORMED;
	for (i = 0; i < n; i++) {
		rc = wire_walk_value(w, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

static int wire_walk_value(struct wire_walk *w, unsigned int depth)
{
	size_t n = 0;
	uint8_t m;
	int rc;

	rc = wire_count(w);
	if (rc)
		return rc;
	m = w->p[w->pos++];
	if (m <= 0x7f || m >= 0xe0)
		return 0;
	if (m <= 0x8f)
		return wire_walk_map(w, m & 0x0f, depth);
	if (m <= 0x9f)
		return wire_walk_array(w, m & 0x0f, depth);
	if (m <= 0xbf)
		return wire_walk_str(w, m & 0x1f);
	switch (m) {
	case 0xc0:	/* nil */
	case 0xc7: case 0xc8: case 0xc9:	/* ext */
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:	/* fixext */
	case 0xca: case 0xcb:	/* float */
		return -PCIEM_WIRE_ERR_TYPE;
	case 0xc1:
		return -PCIEM_WIRE_ERR_MALFORMED;
	case 0xc2: case 0xc3:
		return 0;
	case 0xc4: case 0xc5: case 0xc6:
		rc = wire_len(w, m == 0xc4 ? 1 : m == 0xc5 ? 2 : 4, &n);
		return rc ? rc : wire_skip(w, n);
	case 0xcc: case 0xd0:
		return wire_skip(w, 1);
	case 0xcd: case 0xd1:
		return wire_skip(w, 2);
	case 0xce: case 0xd2:
		return wire_skip(w, 4);
	case 0xcf: case 0xd3:
		return wire_skip(w, 8);
	case 0xd9: case 0xda: case 0xdb:
		rc = wire_len(w, m == 0xd9 ? 1 : m == 0xda ? 2 : 4, &n);
		return rc ? rc : wire_walk_str(w, n);
	case 0xdc: case 0xdd:
		rc = wire_len(w, m == 0xdc ? 2 : 4, &n);
		return rc ? rc : wire_walk_array(w, n, depth);
	default:	/* 0xde, 0xdf */
		rc = wire_len(w, m == 0xde ? 2 : 4, &n);
		return rc ? rc : wire_walk_map(w, n, depth);
	}
}

static int wire_walk_body(const uint8_t *body, size_t len)
{
	struct wire_walk w = { body, len, 0, 0 };
	int rc = wire_walk_value(&w, 1);

	if (rc)
		return rc;
	return w.pos == len ? 0 : -PCIEM_WIRE_ERR_MALFORMED;
}

/* ---- values ---- */

static bool wire_key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);

	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       !memcmp(k->via.str.ptr, name, n);
}

static int wire_get_uint(const msgpack_object *o, uint64_t max, uint64_t *u)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return -PCIEM_WIRE_ERR_RANGE;
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -PCIEM_WIRE_ERR_TYPE;
	if (o->via.u64 > max)
		return -PCIEM_WIRE_ERR_RANGE;
	*u = o->via.u64;
	return 0;
}

static int wire_get_bool(const msgpack_object *o, bool *b)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return -PCIEM_WIRE_ERR_TYPE;
	*b = o->via.boolean;
	return 0;
}

/* Into a char array of max + 1 bytes (the walker has checked the characters). */
static int wire_get_str(const msgpack_object *o, char *s, size_t max)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return -PCIEM_WIRE_ERR_TYPE;
	if (o->via.str.size > max)
		return -PCIEM_WIRE_ERR_TOO_BIG;
	memcpy(s, o->via.str.ptr, o->via.str.size);
	s[o->via.str.size] = '\0';
	return 0;
}

static int wire_get_bytes(const msgpack_object *o, struct pciem_wire_bytes *b, size_t max)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return -PCIEM_WIRE_ERR_TYPE;
	if (o->via.bin.size > max)
		return -PCIEM_WIRE_ERR_TOO_BIG;
	b->data = (const uint8_t *)o->via.bin.ptr;
	b->len = o->via.bin.size;
	return 0;
}

static int wire_dec_empty(const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return -PCIEM_WIRE_ERR_TYPE;
	return o->via.map.size ? -PCIEM_WIRE_ERR_EXTRA : 0;
}

/* A NUL-terminated string of at most max printable ASCII characters. */
static int wire_check_str(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		if (i == max)
			return -PCIEM_WIRE_ERR_TOO_BIG;
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return -PCIEM_WIRE_ERR_RANGE;
	}
	return 0;
}

static int wire_put_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int wire_put_key(msgpack_packer *pk, const char *key)
{
	return wire_put_str(pk, key);
}
`;

const cEntryPoints = String.raw`
/* ---- entry points ---- */

static uint32_t wire_le32(const uint8_t *q)
{
	return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

static void wire_put_le(uint8_t *q, uint32_t v, unsigned int bytes)
{
	unsigned int i;

	for (i = 0; i < bytes; i++)
		q[i] = (uint8_t)(v >> (8 * i));
}

/* The header rules, in the order the TypeScript codec applies them. */
static int wire_header_check(const struct pciem_wire_header *h)
{
	bool reply = h->flags & PCIEM_WIRE_FLAG_REPLY;
	bool posted = h->flags & PCIEM_WIRE_FLAG_POSTED;
	int policy;

	if (h->size > PCIEM_WIRE_MAX_BODY)
		return -PCIEM_WIRE_ERR_TOO_BIG;
	policy = wire_reply_policy(h->cmd);
	if (policy < 0)
		return -PCIEM_WIRE_ERR_UNKNOWN_CMD;
	if (h->flags & ~PCIEM_WIRE_FLAGS_MASK)
		return -PCIEM_WIRE_ERR_HEADER;
	if (reply && posted)
		return -PCIEM_WIRE_ERR_HEADER;
	if (h->id == 0)
		return -PCIEM_WIRE_ERR_HEADER;
	if (reply) {
		if (policy == WIRE_REPLY_NONE || !pciem_wire_err_name(h->error))
			return -PCIEM_WIRE_ERR_HEADER;
		return 0;
	}
	if (posted && policy == WIRE_REPLY_REQUIRED)
		return -PCIEM_WIRE_ERR_HEADER;
	if (!posted && policy == WIRE_REPLY_NONE)
		return -PCIEM_WIRE_ERR_HEADER;
	if (h->cmd == PCIEM_WIRE_CMD_ERROR)
		return h->error != 0 && pciem_wire_err_name(h->error) ? 0 : -PCIEM_WIRE_ERR_HEADER;
	return h->error == 0 ? 0 : -PCIEM_WIRE_ERR_HEADER;
}

int pciem_wire_header_decode(const uint8_t *buf, size_t len, struct pciem_wire_header *hdr)
{
	if (len < PCIEM_WIRE_HEADER_SIZE)
		return -PCIEM_WIRE_ERR_TRUNCATED;
	hdr->size = wire_le32(buf + PCIEM_WIRE_HDR_SIZE);
	hdr->id = wire_le32(buf + PCIEM_WIRE_HDR_ID);
	hdr->cmd = (uint16_t)(buf[PCIEM_WIRE_HDR_CMD] | buf[PCIEM_WIRE_HDR_CMD + 1] << 8);
	hdr->flags = (uint16_t)(buf[PCIEM_WIRE_HDR_FLAGS] | buf[PCIEM_WIRE_HDR_FLAGS + 1] << 8);
	hdr->error = wire_le32(buf + PCIEM_WIRE_HDR_ERROR);
	return wire_header_check(hdr);
}

int pciem_wire_body_decode(const struct pciem_wire_header *hdr, const uint8_t *body,
			   size_t len, struct pciem_wire_msg *msg)
{
	msgpack_unpacked u;
	size_t off = 0;
	int rc;

	rc = wire_header_check(hdr);
	if (rc)
		return rc;
	if (len < hdr->size)
		return -PCIEM_WIRE_ERR_TRUNCATED;
	if (len > hdr->size)
		return -PCIEM_WIRE_ERR_MALFORMED;
	/* Before msgpack-c: it would allocate for the counts a body claims. */
	rc = wire_walk_body(body, len);
	if (rc)
		return rc;
	memset(msg, 0, sizeof(*msg));
	msg->hdr = *hdr;
	msgpack_unpacked_init(&u);
	switch (msgpack_unpack_next(&u, (const char *)body, len, &off)) {
	case MSGPACK_UNPACK_SUCCESS:
		rc = off == len ? wire_dec_body(&u.data, msg) : -PCIEM_WIRE_ERR_MALFORMED;
		if (!rc)
			rc = wire_chk_body(msg);
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		rc = -PCIEM_WIRE_ERR_IO;
		break;
	default:
		rc = -PCIEM_WIRE_ERR_MALFORMED;
		break;
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

int pciem_wire_frame_decode(const uint8_t *frame, size_t len, struct pciem_wire_msg *msg)
{
	struct pciem_wire_header hdr;
	int rc;

	rc = pciem_wire_header_decode(frame, len, &hdr);
	if (rc)
		return rc;
	if (len - PCIEM_WIRE_HEADER_SIZE < hdr.size)
		return -PCIEM_WIRE_ERR_TRUNCATED;
	if (len - PCIEM_WIRE_HEADER_SIZE > hdr.size)
		return -PCIEM_WIRE_ERR_MALFORMED;
	return pciem_wire_body_decode(&hdr, frame + PCIEM_WIRE_HEADER_SIZE, hdr.size, msg);
}

int pciem_wire_encode(const struct pciem_wire_msg *msg, msgpack_sbuffer *out)
{
	static const uint8_t zero[PCIEM_WIRE_HEADER_SIZE];
	struct pciem_wire_header h = msg->hdr;
	size_t start = out->size;
	msgpack_packer pk;
	uint8_t *q;
	size_t size;
	int rc;

	h.size = 0;
	rc = wire_header_check(&h);
	if (!rc)
		rc = wire_chk_body(msg);
	if (rc)
		return rc;
	if (msgpack_sbuffer_write(out, (const char *)zero, sizeof(zero)))
		return -PCIEM_WIRE_ERR_IO;
	msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
	rc = wire_enc_body(&pk, msg);
	size = out->size - start - PCIEM_WIRE_HEADER_SIZE;
	if (!rc && size > PCIEM_WIRE_MAX_BODY)
		rc = -PCIEM_WIRE_ERR_TOO_BIG;
	if (rc) {
		out->size = start;
		return rc;
	}
	q = (uint8_t *)out->data + start;
	wire_put_le(q + PCIEM_WIRE_HDR_SIZE, (uint32_t)size, 4);
	wire_put_le(q + PCIEM_WIRE_HDR_ID, h.id, 4);
	wire_put_le(q + PCIEM_WIRE_HDR_CMD, h.cmd, 2);
	wire_put_le(q + PCIEM_WIRE_HDR_FLAGS, h.flags, 2);
	wire_put_le(q + PCIEM_WIRE_HDR_ERROR, h.error, 4);
	return 0;
}
`;

// ---- test vectors ---------------------------------------------------------------------------

export interface ValidVector {
  name: string;
  message: Record<string, unknown>;
  frame: string;
}
export interface NoncanonicalVector extends ValidVector {
  canonical: string;
}
export interface InvalidVector {
  name: string;
  frame: string;
  error: string;
}
export interface Vectors {
  valid: ValidVector[];
  noncanonical: NoncanonicalVector[];
  invalid: InvalidVector[];
}

export function loadVectors(path = vectorsPath): Vectors {
  const raw = obj(JSON.parse(readFileSync(path, 'utf8')) as unknown, 'vectors');
  const list = <T>(k: string): T[] => arr(raw[k], `vectors.${k}`) as T[];
  return { valid: list<ValidVector>('valid'), noncanonical: list<NoncanonicalVector>('noncanonical'), invalid: list<InvalidVector>('invalid') };
}

/** A frame as the vectors write it: hex, spaces allowed. */
export function frameBytes(text: string): Buffer {
  const h = text.replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/.test(h)) throw new SpecError(`not lower-case hex: ${text.slice(0, 40)}`);
  return Buffer.from(h, 'hex');
}

/** A frame in the vectors' layout: the five header fields, then the body. */
export function frameText(frame: Uint8Array): string {
  const b = Buffer.from(frame);
  if (b.length < 16) return b.toString('hex');
  const parts = [b.subarray(0, 4), b.subarray(4, 8), b.subarray(8, 10), b.subarray(10, 12), b.subarray(12, 16), b.subarray(16)];
  return parts.map((x) => x.toString('hex')).filter((x) => x !== '').join(' ');
}

function cBytes(b: Uint8Array): string {
  const rows: string[] = [];
  for (let i = 0; i < b.length; i += 12) rows.push(`\t${[...b.subarray(i, i + 12)].map((x) => `0x${x.toString(16).padStart(2, '0')},`).join(' ')}`);
  return rows.join('\n');
}

/** Renders proto/tests/wire_vectors.h from proto/vectors/wire.json. */
export function renderCVectors(spec: Spec, vectors: Vectors): string {
  const P = spec.prefix;
  const p = P.toLowerCase();
  const structByName = new Map(spec.structs.map((s) => [s.name, s]));
  const out: string[] = [
    '/* SPDX-License-Identifier: MIT */',
    '/*',
    ' * The shared test vectors, proto/vectors/wire.json, as C initialisers, and',
    ' * an equality test for decoded messages; for proto/tests/wire_test.c only.',
    ' *',
    ` * GENERATED by ${generator} from proto/vectors/wire.json and ${source}:`,
    ' * do not edit.',
    ' */',
    '#ifndef WIRE_VECTORS_H',
    '#define WIRE_VECTORS_H',
    '',
    '#include <string.h>',
    '',
    '#include "wire.h"',
    '',
    'struct wire_vector {',
    '\tconst char *name;',
    `\tconst struct ${p}_msg *msg;	/* NULL for an invalid frame */`,
    '\tconst uint8_t *frame;',
    '\tsize_t len;',
    '\tconst uint8_t *canonical;	/* what msg encodes to, when not frame */',
    '\tsize_t canonical_len;',
    '\tint error;	/* for an invalid frame: the negative code */',
    '};',
    '',
  ];
  let n = 0;
  const bodyOf = (m: Record<string, unknown>): Struct | null => {
    const c = spec.commands.find((x) => x.name === m.cmd);
    if (c === undefined) throw new SpecError(`vector message: unknown cmd ${String(m.cmd)}`);
    if (m.reply === true) return m.error !== 'NONE' ? spec.errorReply : c.response;
    return c.request;
  };
  const init = (s: Struct, v: Record<string, unknown>, pre: string, indent: string): string => {
    const parts: string[] = [];
    for (const f of s.fields) {
      const x = v[f.name];
      switch (f.type) {
        case 'u64':
          parts.push(`.${f.name} = UINT64_C(${hex(BigInt(x as string))})`);
          break;
        case 'bool':
          parts.push(`.${f.name} = ${x === true ? 'true' : 'false'}`);
          break;
        case 'str':
          parts.push(`.${f.name} = ${cString(x as string)}`);
          break;
        case 'bytes': {
          const b = Buffer.from(x as string, 'hex');
          const name = `${pre}_${f.name}`;
          out.push(`static const uint8_t ${name}[] = {`, cBytes(b), '};');
          parts.push(`.${f.name} = { ${name}, sizeof(${name}) }`);
          break;
        }
        case 'array': {
          const items = x as Record<string, unknown>[];
          const item = structByName.get(f.of as string) as Struct;
          parts.push(`.n_${f.name} = ${items.length}`);
          if (items.length > 0) {
            parts.push(`.${f.name} = {\n${items.map((it, i) => `${indent}\t\t{ ${init(item, it, `${pre}_${f.name}${i}`, `${indent}\t\t`)} },`).join('\n')}\n${indent}\t}`);
          }
          break;
        }
        default:
          parts.push(`.${f.name} = ${String(x)}u`);
      }
    }
    return parts.join(', ');
  };
  const msg = (m: Record<string, unknown>, frameLen: number): string => {
    const name = `wire_v${n}_msg`;
    const s = bodyOf(m);
    const flags = [m.reply === true ? `${P}_FLAG_REPLY` : '', m.posted === true ? `${P}_FLAG_POSTED` : ''].filter((x) => x !== '').join(' | ') || '0';
    const hdr = `.hdr = { .size = ${frameLen - 16}u, .id = ${String(m.id)}u, .cmd = ${P}_CMD_${String(m.cmd)}, .flags = ${flags}, .error = ${P}_ERR_${String(m.error)} }`;
    const bodyInit = s === null || s.fields.length === 0 ? '' : `,\n\t.body.${cBodyName(s)} = { ${init(s, m.body as Record<string, unknown>, `wire_v${n}`, '')} }`;
    out.push(`static const struct ${p}_msg ${name} = {`, `\t${hdr}${bodyInit}`, '};');
    return name;
  };
  const bytes = (b: Buffer, suffix: string): string => {
    if (b.length === 0) return 'NULL';
    const name = `wire_v${n}_${suffix}`;
    out.push(`static const uint8_t ${name}[] = {`, cBytes(b), '};');
    return name;
  };
  const rows: string[] = [];
  for (const v of vectors.valid) {
    const f = frameBytes(v.frame);
    const m = msg(v.message, f.length);
    rows.push(`\t{ ${cString(v.name)}, &${m}, ${bytes(f, 'frame')}, ${f.length}, NULL, 0, 0 },`);
    n++;
  }
  for (const v of vectors.noncanonical) {
    const f = frameBytes(v.frame);
    const c = frameBytes(v.canonical);
    const m = msg(v.message, f.length);
    rows.push(`\t{ ${cString(v.name)}, &${m}, ${bytes(f, 'frame')}, ${f.length}, ${bytes(c, 'canonical')}, ${c.length}, 0 },`);
    n++;
  }
  for (const v of vectors.invalid) {
    if (!spec.errors.some((e) => e.name === v.error && e.class === 'decode')) throw new SpecError(`vector '${v.name}': ${v.error} is not a decode error`);
    const f = frameBytes(v.frame);
    rows.push(`\t{ ${cString(v.name)}, NULL, ${bytes(f, 'frame')}, ${f.length}, NULL, 0, -${P}_ERR_${v.error} },`);
    n++;
  }
  out.push('', 'static const struct wire_vector wire_vectors[] = {', ...rows, '};', '');

  // Equality of decoded messages, body by body.
  for (const s of [...spec.structs, spec.errorReply, ...spec.commands.flatMap((c) => (c.response === null ? [c.request] : [c.request, c.response]))]) {
    if (s.fields.length === 0) continue;
    const t = `struct ${p}_${cBodyName(s)}`;
    const conds: string[] = [];
    let needI = false;
    for (const f of s.fields) {
      if (f.type === 'str') conds.push(`!strcmp(a->${f.name}, b->${f.name})`);
      else if (f.type === 'bytes') conds.push(`a->${f.name}.len == b->${f.name}.len && (!a->${f.name}.len || !memcmp(a->${f.name}.data, b->${f.name}.data, a->${f.name}.len))`);
      else if (f.type === 'array') {
        needI = true;
        conds.push(`a->n_${f.name} == b->n_${f.name}`);
      } else conds.push(`a->${f.name} == b->${f.name}`);
    }
    out.push(`static bool wire_eq_${cBodyName(s)}(const ${t} *a, const ${t} *b)`, '{');
    if (needI) out.push('\tuint32_t i;', '');
    out.push(`\tif (!(${conds.join(' &&\n\t      ')}))`, '\t\treturn false;');
    for (const f of s.fields.filter((x) => x.type === 'array')) {
      out.push(`\tfor (i = 0; i < a->n_${f.name}; i++)`, `\t\tif (!wire_eq_${(f.of as string).toLowerCase()}(&a->${f.name}[i], &b->${f.name}[i]))`, '\t\t\treturn false;');
    }
    out.push('\treturn true;', '}', '');
  }
  const eq = (s: Struct | null): string => (s === null || s.fields.length === 0 ? 'return true;' : `return wire_eq_${cBodyName(s)}(&a->body.${cBodyName(s)}, &b->body.${cBodyName(s)});`);
  out.push(`static bool wire_msg_equal(const struct ${p}_msg *a, const struct ${p}_msg *b)`, '{');
  out.push('\tif (a->hdr.size != b->hdr.size || a->hdr.id != b->hdr.id || a->hdr.cmd != b->hdr.cmd ||', '\t    a->hdr.flags != b->hdr.flags || a->hdr.error != b->hdr.error)', '\t\treturn false;');
  out.push(`\tif (a->hdr.flags & ${P}_FLAG_REPLY) {`, '\t\tif (a->hdr.error != 0)', `\t\t\t${eq(spec.errorReply)}`, '\t\tswitch (a->hdr.cmd) {');
  for (const c of spec.commands.filter((x) => x.response !== null)) out.push(`\t\tcase ${P}_CMD_${c.name}:`, `\t\t\t${eq(c.response)}`);
  out.push('\t\t}', '\t\treturn false;', '\t}', '\tswitch (a->hdr.cmd) {');
  for (const c of spec.commands) out.push(`\tcase ${P}_CMD_${c.name}:`, `\t\t${eq(c.request)}`);
  out.push('\t}', '\treturn false;', '}', '', '#endif /* WIRE_VECTORS_H */', '');
  return out.join('\n');
}

// ---- the tables in docs/protocol.md ----------------------------------------------------------

function allowed(f: Field): string {
  const lim = (n: Num | null, v: bigint): string => (n?.name != null ? `\`${n.name}\`` : v > 0xffffn ? hex(v) : String(v));
  switch (f.type) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'u64': {
      if (f.enumName !== null) return `\`${f.enumName}\``;
      if (f.bitsName !== null) return `\`${f.bitsName}\` bits`;
      if (f.oneOf !== null) return f.oneOf.join(', ');
      const top = f.type === 'u64' ? 0xffff_ffff_ffff_ffffn : BigInt(2 ** uintBits[f.type] - 1);
      if (f.min === 0n && f.max === top) return 'any';
      if (f.max === top) return `at least ${lim(f.minNum, f.min)}`;
      return `${lim(f.minNum, f.min)}..${lim(f.maxNum, f.max)}`;
    }
    case 'bool':
      return 'true, false';
    case 'str':
      return `at most ${lim(f.maxLen, BigInt((f.maxLen as Num).value))} characters`;
    case 'bytes':
      return `${f.minLen}..${lim(f.maxLen, BigInt((f.maxLen as Num).value))} bytes`;
    case 'array':
      return `at most ${lim(f.maxLen, BigInt((f.maxLen as Num).value))} \`${f.of}\``;
  }
}

function fieldTable(s: Struct): string {
  if (s.fields.length === 0) return 'An empty map (`80`).';
  const t = table(['key', 'type', 'allowed', 'meaning'], s.fields.map((f) => [`\`${f.name}\``, f.type === 'array' ? 'array' : f.type, allowed(f), f.summary]));
  return s.ruleText.length === 0 ? t : `${t}\n\nRules: ${s.ruleText.join('; ')}.`;
}

/** The generated blocks of the document, by marker name. */
export function renderDocBlocks(spec: Spec): Record<string, string> {
  const policy = (c: Command): string => ({ required: 'required', optional: 'optional (POSTED: none)', none: 'none (always POSTED)' })[c.reply];
  return {
    version: `Protocol versions **${spec.version.min}..${spec.version.max}** (\`VERSION_MIN\`..\`VERSION_MAX\`).`,
    header: table(
      ['offset', 'field', 'type', 'meaning'],
      spec.header.fields.map((f) => [String(f.offset), `\`${f.name}\``, f.type, f.summary]),
    ),
    flags: table(['mask', 'flag', 'meaning'], spec.flags.map((f) => [`\`${hex(1 << f.bit, 4)}\``, `\`${f.name}\``, f.summary])),
    limits: table(['name', 'value', 'meaning'], spec.limits.map((l) => [`\`${l.name}\``, l.value.hex ? `${numText(l.value)} (${l.value.value})` : numText(l.value), l.summary])),
    commands: table(
      ['cmd', 'name', 'sent by', 'reply', 'what'],
      spec.commands.map((c) => [`\`${hex(c.value, 4)}\``, `\`${c.name}\``, c.sender, policy(c), c.summary]),
    ),
    messages: spec.commands
      .map((c) => {
        const what = `${c.summary.charAt(0).toUpperCase()}${c.summary.slice(1)}.`;
        const parts = [`#### \`${c.name}\` (\`${hex(c.value, 4)}\`)`, '', `${what} Sent by: ${c.sender}. Reply: ${policy(c)}.`, '', 'Request body:', '', fieldTable(c.request)];
        if (c.response !== null) parts.push('', 'Reply body:', '', fieldTable(c.response));
        return parts.join('\n');
      })
      .concat([`#### Failed replies`, '', `${spec.errorReply.summary.charAt(0).toUpperCase()}${spec.errorReply.summary.slice(1)}:`, '', fieldTable(spec.errorReply)].join('\n'))
      .join('\n\n'),
    types: [
      ...spec.structs.map((s) => [`\`${s.name}\` (${s.summary}):`, '', fieldTable(s)].join('\n')),
      ...spec.enums.map((e) => [`\`${e.name}\` (${e.summary}):`, '', table(['value', 'name', 'meaning'], e.values.map((v) => [String(v.value), `\`${v.name}\``, v.summary]))].join('\n')),
      ...spec.bitsets.map((b) => [`\`${b.name}\` (${b.summary}):`, '', table(['mask', 'name', 'meaning'], b.bits.map((x) => [`\`${hex((1 << x.bit) >>> 0, 2)}\``, `\`${x.name}\``, x.summary]))].join('\n')),
    ].join('\n\n'),
    errors: table(
      ['code', 'name', 'class', 'TypeScript code', 'meaning'],
      spec.errors.map((e) => [
        String(e.value),
        `\`${e.name}\``,
        e.class,
        e.class === 'none' ? '—' : `\`PCIEM_ERR_${e.class === 'device' ? '' : 'PROTO_'}${e.name}\``,
        e.summary,
      ]),
    ),
  };
}

// ---- driver -------------------------------------------------------------------------------------

/** Every file the generator owns, with the content it should have now. */
export function outputs(spec: Spec = loadSpec(), vectors: Vectors = loadVectors()): Output[] {
  return [
    { path: tsPath, content: renderTs(spec) },
    { path: headerPath, content: renderHeader(spec) },
    { path: sourcePath, content: renderSource(spec) },
    { path: cVectorsPath, content: renderCVectors(spec, vectors) },
    { path: docPath, content: applyDocBlocks(readFileSync(docPath, 'utf8'), renderDocBlocks(spec)) },
  ];
}

/**
 * Encodes the vectors whose frame (or canonical) is still "", with the
 * codec as it is; never touches a frame already written, so a codec change
 * cannot quietly rewrite the vectors that check it.
 */
function fillVectors(spec: Spec): number {
  const codec = new WireCodec(protocolDesc(spec));
  const raw = readFileSync(vectorsPath, 'utf8');
  const doc = JSON.parse(raw) as { valid: ValidVector[]; noncanonical: NoncanonicalVector[] };
  let filled = 0;
  for (const v of doc.valid) {
    if (v.frame !== '') continue;
    v.frame = frameText(codec.encodeFrame(codec.fromJson(v.message)));
    filled++;
  }
  for (const v of doc.noncanonical) {
    if (v.canonical !== '') continue;
    v.canonical = frameText(codec.encodeFrame(codec.fromJson(v.message)));
    filled++;
  }
  if (filled > 0) writeFileSync(vectorsPath, formatVectors(doc));
  return filled;
}

/** The vectors file's layout: one line per field of a vector, messages on one line. */
export function formatVectors(doc: Record<string, unknown>): string {
  const lines = ['{'];
  const keys = Object.keys(doc);
  keys.forEach((k, i) => {
    const v = doc[k];
    const comma = i < keys.length - 1 ? ',' : '';
    if (!Array.isArray(v)) {
      lines.push(`  ${JSON.stringify(k)}: ${JSON.stringify(v)}${comma}`);
      return;
    }
    lines.push(`  ${JSON.stringify(k)}: [`);
    v.forEach((item: Record<string, unknown>, j) => {
      const fields = Object.entries(item).map(([fk, fv]) => `      ${JSON.stringify(fk)}: ${JSON.stringify(fv)}`);
      lines.push('    {', fields.join(',\n'), `    }${j < v.length - 1 ? ',' : ''}`);
    });
    lines.push(`  ]${comma}`);
  });
  lines.push('}', '');
  return lines.join('\n');
}

function main(argv: readonly string[]): number {
  const check = argv.includes('--check');
  const fill = argv.includes('--fill-vectors');
  const unknown = argv.filter((a) => a !== '--check' && a !== '--fill-vectors');
  if (unknown.length > 0 || (check && fill)) {
    process.stderr.write(`usage: tsx ${generator} [--check | --fill-vectors]\n`);
    return 2;
  }
  if (fill) {
    try {
      process.stderr.write(`filled ${fillVectors(loadSpec())} vector frames\n`);
    } catch (e) {
      if (e instanceof SpecError) {
        process.stderr.write(`${source}: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
  }
  return syncOutputs(() => outputs(), { check, source, generator });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}

export { SpecError, applyDocBlocks, repoRoot, type Output };
