// Generator for the ProtoPCIem card's constants. proto/protopciem.json is
// the one source; from it this writes
//   proto/generated/protopciem_regs.h  plain C for the QEMU model and the Linux driver
//   proto/generated/protopciem.ts      the same constants for TypeScript
//   docs/protopciem.md                 the tables between its "generated" markers
//
//   node_modules/.bin/tsx proto/gen/protopciem.ts           write what is out of date
//   node_modules/.bin/tsx proto/gen/protopciem.ts --check   exit 1 if anything is
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SpecError, applyDocBlocks, arr, cDefiner, obj, repoRoot, str, syncOutputs, table, wrap, type Output } from './common.js';

export const specPath = join(repoRoot, 'proto', 'protopciem.json');
export const headerPath = join(repoRoot, 'proto', 'generated', 'protopciem_regs.h');
export const tsPath = join(repoRoot, 'proto', 'generated', 'protopciem.ts');
export const docPath = join(repoRoot, 'docs', 'protopciem.md');
const generator = 'proto/gen/protopciem.ts';
const source = 'proto/protopciem.json';

// ---- the spec, as read and checked -------------------------------------

export type Access = 'RW' | 'RO' | 'W' | 'RW0C' | 'RWC';
const accesses: readonly Access[] = ['RW', 'RO', 'W', 'RW0C', 'RWC'];
export type FieldType = 'u8' | 'u16' | 'u32';
const fieldSizes: Readonly<Record<FieldType, number>> = { u8: 1, u16: 2, u32: 4 };

/** A number as the spec wrote it: hex strings stay hex in the outputs. */
export interface Num {
  value: number;
  hex: boolean;
}

export interface Constant {
  name: string;
  value: Num;
  summary: string;
  upstream: boolean;
}

export interface Bit {
  name: string;
  bit: number;
  access: Access;
  summary: string;
  upstream: boolean;
}

export interface Register {
  name: string;
  offset: number;
  access: Access;
  reset: number;
  /** The constant the reset value is, if the spec named one. */
  resetName: string | null;
  /** The register always reads its reset value. */
  constant: boolean;
  upstream: boolean;
  summary: string;
  bits: Bit[];
}

export interface Command {
  name: string;
  value: number;
  upstream: boolean;
  dma: boolean;
  summary: string;
}

export interface Field {
  name: string;
  type: FieldType;
  offset: number;
  summary: string;
}

export interface Entry {
  name: string;
  opcode: number;
  upstream: boolean;
  summary: string;
  fields: Field[];
  /** Bytes of the fixed part, header included. */
  size: number;
  trailer: { name: string; offset: number; summary: string } | null;
}

export interface ErrorCode {
  name: string;
  value: number;
  summary: string;
}

export interface Bar {
  name: string;
  index: number;
  size: Num;
  prefetchable: boolean;
  summary: string;
}

export interface Spec {
  device: string;
  prefix: string;
  version: { major: number; minor: number };
  upstream: string;
  pci: {
    vendorId: number;
    deviceId: number;
    classCode: number;
    subclass: number;
    progIf: number;
    revision: number;
    interruptPin: number;
    msiVectors: number;
  };
  bars: Bar[];
  constants: Constant[];
  registers: Register[];
  commands: Command[];
  header: { size: number; summary: string; fields: Field[] };
  entries: Entry[];
  errors: ErrorCode[];
}

function optStr(v: unknown, where: string): string {
  return v === undefined ? '' : str(v, where);
}

function bool(v: unknown, where: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new SpecError(`${where}: expected true or false`);
  return v;
}

function ident(v: unknown, where: string): string {
  const s = str(v, where);
  if (!/^[A-Z][A-Z0-9_]*$/.test(s)) throw new SpecError(`${where}: '${s}' is not an UPPER_CASE name`);
  return s;
}

/** A non-negative integer below 2^32, as a JSON number or a "0x..." string. */
function num(v: unknown, where: string): Num {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return { value: v, hex: false };
  if (typeof v === 'string' && /^0x[0-9a-f]{1,8}$/.test(v)) return { value: Number.parseInt(v, 16), hex: true };
  throw new SpecError(`${where}: expected an integer 0..0xffffffff (number or lower-case "0x..." string)`);
}

function unique<T>(items: readonly T[], key: (t: T) => string | number, what: string): void {
  const seen = new Map<string | number, T>();
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) throw new SpecError(`duplicate ${what}: ${typeof k === 'number' ? hex(k) : k}`);
    seen.set(k, item);
  }
}

function parseFields(list: unknown, where: string, start: number): { fields: Field[]; end: number } {
  let offset = start;
  const fields = arr(list, where).map((raw, i) => {
    const f = obj(raw, `${where}[${i}]`);
    const name = ident(f.name, `${where}[${i}].name`);
    const type = str(f.type, `${where}.${name}.type`);
    if (!(type in fieldSizes)) throw new SpecError(`${where}.${name}.type: '${type}' is not u8, u16 or u32`);
    const t = type as FieldType;
    // Fields are naturally aligned within their entry, so a C struct of
    // fixed-width types has the same layout with or without packing.
    if (offset % fieldSizes[t] !== 0) throw new SpecError(`${where}.${name}: not naturally aligned at offset ${offset}`);
    const field = { name, type: t, offset, summary: optStr(f.summary, `${where}.${name}.summary`) };
    offset += fieldSizes[t];
    return field;
  });
  unique(fields, (f) => f.name, `field name in ${where}`);
  return { fields, end: offset };
}

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
  const pci = obj(raw.pci, 'pci');

  const bars = arr(raw.bars, 'bars').map((b, i): Bar => {
    const o = obj(b, `bars[${i}]`);
    return {
      name: ident(o.name, `bars[${i}].name`),
      index: num(o.index, `bars[${i}].index`).value,
      size: num(o.size, `bars[${i}].size`),
      prefetchable: bool(o.prefetchable, `bars[${i}].prefetchable`),
      summary: optStr(o.summary, `bars[${i}].summary`),
    };
  });
  unique(bars, (b) => b.index, 'BAR index');
  unique(bars, (b) => b.name, 'BAR name');

  const constants = arr(raw.constants, 'constants').map((c, i): Constant => {
    const o = obj(c, `constants[${i}]`);
    const name = ident(o.name, `constants[${i}].name`);
    return { name, value: num(o.value, `constants.${name}.value`), summary: str(o.summary, `constants.${name}.summary`), upstream: bool(o.upstream, `constants.${name}.upstream`) };
  });
  unique(constants, (c) => c.name, 'constant name');
  const constValue = (name: string, where: string): number => {
    const c = constants.find((k) => k.name === name);
    if (c === undefined) throw new SpecError(`${where}: no constant named ${name}`);
    return c.value.value;
  };

  const registers = arr(raw.registers, 'registers').map((r, i): Register => {
    const o = obj(r, `registers[${i}]`);
    const name = ident(o.name, `registers[${i}].name`);
    const where = `registers.${name}`;
    const access = str(o.access, `${where}.access`) as Access;
    if (!accesses.includes(access)) throw new SpecError(`${where}.access: '${access}' is not one of ${accesses.join(', ')}`);
    const resetName = typeof o.reset === 'string' && /^[A-Z]/.test(o.reset) ? o.reset : null;
    const reset = resetName !== null ? constValue(resetName, `${where}.reset`) : num(o.reset, `${where}.reset`).value;
    const bits = o.bits === undefined ? [] : arr(o.bits, `${where}.bits`).map((b, j): Bit => {
      const bo = obj(b, `${where}.bits[${j}]`);
      const bname = ident(bo.name, `${where}.bits[${j}].name`);
      const bit = num(bo.bit, `${where}.${bname}.bit`).value;
      if (bit > 31) throw new SpecError(`${where}.${bname}.bit: ${bit} is not 0..31`);
      const baccess = str(bo.access, `${where}.${bname}.access`) as Access;
      if (!accesses.includes(baccess)) throw new SpecError(`${where}.${bname}.access: '${baccess}' is not one of ${accesses.join(', ')}`);
      return { name: bname, bit, access: baccess, summary: str(bo.summary, `${where}.${bname}.summary`), upstream: bool(bo.upstream, `${where}.${bname}.upstream`) };
    });
    unique(bits, (b) => b.name, `bit name in ${name}`);
    unique(bits, (b) => b.bit, `bit number in ${name}`);
    return {
      name,
      offset: num(o.offset, `${where}.offset`).value,
      access,
      reset,
      resetName,
      constant: bool(o.constant, `${where}.constant`),
      upstream: bool(o.upstream, `${where}.upstream`),
      summary: str(o.summary, `${where}.summary`),
      bits,
    };
  });
  unique(registers, (r) => r.name, 'register name');
  unique(registers, (r) => r.offset, 'register offset');

  const commands = arr(raw.commands, 'commands').map((c, i): Command => {
    const o = obj(c, `commands[${i}]`);
    const name = ident(o.name, `commands[${i}].name`);
    const value = num(o.value, `commands.${name}.value`).value;
    // CMD = 0 is upstream's acknowledge write, never a command.
    if (value === 0) throw new SpecError(`commands.${name}.value: 0 is not a command number`);
    return { name, value, upstream: bool(o.upstream, `commands.${name}.upstream`), dma: bool(o.dma, `commands.${name}.dma`), summary: str(o.summary, `commands.${name}.summary`) };
  });
  unique(commands, (c) => c.name, 'command name');
  unique(commands, (c) => c.value, 'command number');

  const cmdbuf = obj(raw.cmdbuf, 'cmdbuf');
  const hdr = obj(cmdbuf.header, 'cmdbuf.header');
  const hdrFields = parseFields(hdr.fields, 'cmdbuf.header.fields', 0);
  const header = { size: hdrFields.end, summary: optStr(hdr.summary, 'cmdbuf.header.summary'), fields: hdrFields.fields };
  for (const need of ['OPCODE', 'LENGTH']) {
    if (!header.fields.some((f) => f.name === need)) throw new SpecError(`cmdbuf.header: no ${need} field`);
  }
  const entries = arr(cmdbuf.entries, 'cmdbuf.entries').map((e, i): Entry => {
    const o = obj(e, `cmdbuf.entries[${i}]`);
    const name = ident(o.name, `cmdbuf.entries[${i}].name`);
    const where = `cmdbuf.entries.${name}`;
    const { fields, end } = parseFields(o.fields, `${where}.fields`, header.size);
    let trailer: Entry['trailer'] = null;
    if (o.trailer !== undefined) {
      const t = obj(o.trailer, `${where}.trailer`);
      trailer = { name: ident(t.name, `${where}.trailer.name`), offset: end, summary: str(t.summary, `${where}.trailer.summary`) };
    }
    return { name, opcode: num(o.opcode, `${where}.opcode`).value, upstream: bool(o.upstream, `${where}.upstream`), summary: str(o.summary, `${where}.summary`), fields, size: end, trailer };
  });
  unique(entries, (e) => e.name, 'command-buffer entry name');
  unique(entries, (e) => e.opcode, 'command-buffer opcode');

  const errors = arr(raw.errors, 'errors').map((e, i): ErrorCode => {
    const o = obj(e, `errors[${i}]`);
    const name = ident(o.name, `errors[${i}].name`);
    return { name, value: num(o.value, `errors.${name}.value`).value, summary: str(o.summary, `errors.${name}.summary`) };
  });
  unique(errors, (e) => e.name, 'error name');
  unique(errors, (e) => e.value, 'error code');
  if (errors.find((e) => e.value === 0)?.name !== 'NONE') throw new SpecError('errors: code 0 must be NONE');

  const spec: Spec = {
    device: str(raw.device, 'device'),
    prefix: ident(raw.prefix, 'prefix'),
    version: { major: num(version.major, 'version.major').value, minor: num(version.minor, 'version.minor').value },
    upstream: str(raw.upstream, 'upstream'),
    pci: {
      vendorId: num(pci.vendor_id, 'pci.vendor_id').value,
      deviceId: num(pci.device_id, 'pci.device_id').value,
      classCode: num(pci.class, 'pci.class').value,
      subclass: num(pci.subclass, 'pci.subclass').value,
      progIf: num(pci.prog_if, 'pci.prog_if').value,
      revision: num(pci.revision, 'pci.revision').value,
      interruptPin: num(pci.interrupt_pin, 'pci.interrupt_pin').value,
      msiVectors: num(pci.msi_vectors, 'pci.msi_vectors').value,
    },
    bars,
    constants,
    registers,
    commands,
    header,
    entries,
    errors,
  };
  checkConsistency(spec);
  return spec;
}

/** Cross-checks: what one part of the spec says about another. */
function checkConsistency(spec: Spec): void {
  if (spec.version.major > 0xffff || spec.version.minor > 0xffff) throw new SpecError('version: major and minor must fit 16 bits');
  const regsBar = spec.bars.find((b) => b.index === 0);
  if (regsBar === undefined) throw new SpecError('bars: no BAR0 for the registers');
  const ext = spec.constants.find((c) => c.name === 'EXT_BASE')?.value.value;
  if (ext === undefined) throw new SpecError('constants: no EXT_BASE');
  for (const r of spec.registers) {
    if (r.offset % 4 !== 0) throw new SpecError(`registers.${r.name}: offset ${hex(r.offset)} is not 32-bit aligned`);
    if (r.offset + 4 > regsBar.size.value) throw new SpecError(`registers.${r.name}: offset ${hex(r.offset)} is outside BAR0`);
    // Upstream's map may grow below EXT_BASE; ours must never land there.
    if (!r.upstream && r.offset < ext) throw new SpecError(`registers.${r.name}: an extension register below EXT_BASE`);
    if (r.upstream && r.offset >= ext) throw new SpecError(`registers.${r.name}: an upstream register inside the extension block`);
    if (r.constant && r.access !== 'RO') throw new SpecError(`registers.${r.name}: a constant register must be RO`);
    const mask = r.bits.reduce((m, b) => (m | (1 << b.bit)) >>> 0, 0);
    if (r.constant && r.bits.length > 0 && r.reset !== mask) {
      throw new SpecError(`registers.${r.name}: reset ${hex(r.reset)} is not the OR of its bits (${hex(mask)})`);
    }
  }
  const reg = (name: string): Register => {
    const r = spec.registers.find((x) => x.name === name);
    if (r === undefined) throw new SpecError(`registers: no ${name}`);
    return r;
  };
  const id = ((spec.pci.vendorId << 16) | spec.pci.deviceId) >>> 0;
  if (reg('ID').reset !== id) throw new SpecError(`registers.ID: reset ${hex(reg('ID').reset)} is not vendor << 16 | device (${hex(id)})`);
  const ver = ((spec.version.major << 16) | spec.version.minor) >>> 0;
  if (reg('VERSION').reset !== ver) throw new SpecError(`registers.VERSION: reset ${hex(reg('VERSION').reset)} is not the spec version (${hex(ver)})`);
  for (const e of spec.entries) {
    if (e.opcode > 0xffff) throw new SpecError(`cmdbuf.entries.${e.name}: opcode does not fit the u16 OPCODE field`);
  }
}

export function loadSpec(path = specPath): Spec {
  return parseSpec(readFileSync(path, 'utf8'));
}

// ---- formatting helpers -------------------------------------------------

function hex(v: number, digits = 0): string {
  return `0x${v.toString(16).padStart(digits, '0')}`;
}

function numText(n: Num): string {
  return n.hex ? hex(n.value) : String(n.value);
}

function versionText(spec: Spec): string {
  return `${spec.version.major}.${spec.version.minor}`;
}

// ---- C header ---------------------------------------------------------------

const C_NAME_WIDTH = 40;

/** Renders proto/generated/protopciem_regs.h. */
export function renderC(spec: Spec): string {
  const P = spec.prefix;
  const out: string[] = [];
  const define = cDefiner(P, C_NAME_WIDTH, out);
  const comment = (text: string, indent = ''): void => {
    const lines = wrap(text, 74 - indent.length);
    if (lines.length === 1) {
      out.push(`${indent}/* ${lines[0]} */`);
    } else {
      out.push(`${indent}/*`, ...lines.map((l) => `${indent} * ${l}`), `${indent} */`);
    }
  };
  const u = (v: number, digits = 0): string => `${hex(v, digits)}u`;
  const guard = `${P}_REGS_H`;

  out.push(
    '/* SPDX-License-Identifier: MIT */',
    '/*',
    ` * ProtoPCIem card, spec version ${versionText(spec)} (docs/protopciem.md): register`,
    ' * map, commands, command-buffer layout and error codes.',
    ' *',
    ` * GENERATED by ${generator} from ${source}: do not edit;`,
    ' * change the JSON and run the generator.',
    ' *',
    ' * Plain C with no includes, for the QEMU model and the Linux driver alike:',
    ' * integer constants only. Every multi-byte value is little-endian.',
    ' */',
    `#ifndef ${guard}`,
    `#define ${guard}`,
    '',
  );

  comment('Spec version, as the VERSION register reports it: major << 16 | minor.');
  define('SPEC_VERSION_MAJOR', `${spec.version.major}u`);
  define('SPEC_VERSION_MINOR', `${spec.version.minor}u`);
  define('SPEC_VERSION', u(((spec.version.major << 16) | spec.version.minor) >>> 0, 8));
  out.push('');

  comment('PCI identity (config space).');
  define('PCI_VENDOR_ID', u(spec.pci.vendorId, 4));
  define('PCI_DEVICE_ID', u(spec.pci.deviceId, 4));
  define('PCI_CLASS', u(spec.pci.classCode, 2));
  define('PCI_SUBCLASS', u(spec.pci.subclass, 2));
  define('PCI_PROG_IF', u(spec.pci.progIf, 2));
  define('PCI_REVISION', u(spec.pci.revision, 2));
  define('PCI_INTERRUPT_PIN', `${spec.pci.interruptPin}u`);
  define('PCI_MSI_VECTORS', `${spec.pci.msiVectors}u`);
  out.push('');

  comment('BARs: both 64-bit memory BARs.');
  for (const b of spec.bars) {
    comment(`BAR${b.index}: ${b.summary}${b.prefetchable ? ', prefetchable' : ''}`);
    define(`BAR_${b.name}`, `${b.index}u`);
    define(`BAR_${b.name}_SIZE`, `${numText(b.size)}u`);
  }
  out.push('');

  comment('Limits and formats.');
  for (const c of spec.constants) {
    comment(c.summary);
    define(c.name, `${numText(c.value)}u`);
  }
  out.push('');

  comment('Registers in BAR0: offsets, then each register\'s bits. Access: RW read/write, RO read-only, W write-only (reads 0), RW0C writing 0 clears, RWC any write clears.');
  for (const r of spec.registers) {
    out.push('');
    comment(`${r.access}, reset ${hex(r.reset, 8)}: ${r.summary}`);
    define(`REG_${r.name}`, u(r.offset, 4));
    if (r.constant) define(`${r.name}_VALUE`, u(r.reset, 8));
    for (const b of r.bits) {
      define(`${r.name}_${b.name}`, `(1u << ${b.bit})`);
    }
    if (r.bits.length > 0) {
      const mask = r.bits.reduce((m, b) => (m | (1 << b.bit)) >>> 0, 0);
      define(`${r.name}_MASK`, u(mask, 8));
    }
  }
  out.push('');

  comment('Commands: the values written to REG_CMD.');
  for (const c of spec.commands) define(`CMD_${c.name}`, u(c.value, 2));
  comment('An initializer for a table of command names, indexed by command.');
  define('CMD_NAMES', `{ \\\n${spec.commands.map((c) => `    [${P}_CMD_${c.name}] = "${c.name}",`).join(' \\\n')} \\\n}`);
  out.push('');

  comment('Command buffers (EXECUTE_CMDBUF): a sequence of entries, each a header and its fields. _SIZE is the size of the fixed part, header included; the other names are byte offsets from the start of the entry.');
  define('CB_HDR_SIZE', `${spec.header.size}u`);
  for (const f of spec.header.fields) define(`CB_HDR_${f.name}`, `${f.offset}u`);
  for (const e of spec.entries) {
    out.push('');
    comment(`${e.name}: ${e.summary}`);
    define(`OP_${e.name}`, u(e.opcode, 2));
    define(`CB_${e.name}_SIZE`, `${e.size}u`);
    for (const f of e.fields) define(`CB_${e.name}_${f.name}`, `${f.offset}u`);
    if (e.trailer !== null) define(`CB_${e.name}_${e.trailer.name}`, `${e.trailer.offset}u`);
  }
  out.push('');

  comment('Error codes, as ERROR_CODE reports them.');
  for (const e of spec.errors) define(`ERR_${e.name}`, `${e.value}u`);
  out.push('', `#endif /* ${guard} */`, '');
  return out.join('\n');
}

// ---- TypeScript module ---------------------------------------------------------

function tsObject(entries: readonly [string, string][], indent = '  '): string {
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${indent}${k}: ${v},`).join('\n')}\n${indent.slice(2)}}`;
}

function tsString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Renders proto/generated/protopciem.ts. */
export function renderTs(spec: Spec): string {
  const out: string[] = [
    `// ProtoPCIem card, spec version ${versionText(spec)} (docs/protopciem.md): register map,`,
    '// commands, command-buffer layout and error codes.',
    '//',
    `// GENERATED by ${generator} from ${source}: do not edit;`,
    '// change the JSON and run the generator. Every multi-byte value is little-endian.',
    '',
    `export const SPEC_VERSION = { major: ${spec.version.major}, minor: ${spec.version.minor} } as const;`,
    `/** As the VERSION register reports it: major << 16 | minor. */`,
    `export const SPEC_VERSION_VALUE = ${hex(((spec.version.major << 16) | spec.version.minor) >>> 0, 8)};`,
    '',
    `export const PCI = ${tsObject([
      ['vendorId', hex(spec.pci.vendorId, 4)],
      ['deviceId', hex(spec.pci.deviceId, 4)],
      ['classCode', hex(spec.pci.classCode, 2)],
      ['subclass', hex(spec.pci.subclass, 2)],
      ['progIf', hex(spec.pci.progIf, 2)],
      ['revision', hex(spec.pci.revision, 2)],
      ['interruptPin', String(spec.pci.interruptPin)],
      ['msiVectors', String(spec.pci.msiVectors)],
    ])} as const;`,
    '',
    `export const BAR = ${tsObject(spec.bars.map((b) => [b.name, `{ index: ${b.index}, size: ${numText(b.size)}, prefetchable: ${String(b.prefetchable)} }`]))} as const;`,
    '',
    '/** Limits and formats. */',
    `export const Const = ${tsObject(spec.constants.map((c) => [c.name, numText(c.value)]))} as const;`,
    '',
    '/** Register offsets in BAR0. */',
    `export const Reg = ${tsObject(spec.registers.map((r) => [r.name, hex(r.offset, 4)]))} as const;`,
    'export type RegName = keyof typeof Reg;',
    '',
    "/** RW read/write, RO read-only, W write-only (reads 0), RW0C writing 0 clears, RWC any write clears. */",
    "export type Access = 'RW' | 'RO' | 'W' | 'RW0C' | 'RWC';",
    '',
    'export interface RegisterInfo {',
    '  readonly name: RegName;',
    '  readonly offset: number;',
    '  readonly access: Access;',
    '  readonly reset: number;',
    '  /** Always reads its reset value. */',
    '  readonly constant: boolean;',
    "  /** Part of upstream's register map. */",
    '  readonly upstream: boolean;',
    '}',
    '',
    `export const REGISTERS: readonly RegisterInfo[] = [\n${spec.registers
      .map((r) => `  { name: '${r.name}', offset: ${hex(r.offset, 4)}, access: '${r.access}', reset: ${hex(r.reset, 8)}, constant: ${String(r.constant)}, upstream: ${String(r.upstream)} },`)
      .join('\n')}\n];`,
    '',
    '/** The bits of the registers that have them, as masks. */',
    `export const Bits = ${tsObject(
      spec.registers.filter((r) => r.bits.length > 0).map((r) => [r.name, tsObject(r.bits.map((b) => [b.name, hex((1 << b.bit) >>> 0, 8)]), '    ')]),
    )} as const;`,
    '',
    '/** Command numbers, written to CMD. */',
    `export const Cmd = ${tsObject(spec.commands.map((c) => [c.name, hex(c.value, 2)]))} as const;`,
    'export type CmdName = keyof typeof Cmd;',
    '',
    '/** Command-buffer entry opcodes. */',
    `export const Op = ${tsObject(spec.entries.map((e) => [e.name, hex(e.opcode, 2)]))} as const;`,
    'export type OpName = keyof typeof Op;',
    '',
    '/** Error codes, as ERROR_CODE reports them. */',
    `export const Err = ${tsObject(spec.errors.map((e) => [e.name, String(e.value)]))} as const;`,
    'export type ErrName = keyof typeof Err;',
    `export const ERR_NAMES: Readonly<Record<number, ErrName>> = ${tsObject(spec.errors.map((e) => [String(e.value), tsString(e.name)]))};`,
    '',
    "export type FieldType = 'u8' | 'u16' | 'u32';",
    'export interface FieldInfo {',
    '  /** Byte offset from the start of the entry. */',
    '  readonly offset: number;',
    '  readonly type: FieldType;',
    '}',
    '',
    '/** The header every command-buffer entry starts with. */',
    `export const CmdbufHeader = {\n  size: ${spec.header.size},\n  fields: ${tsObject(
      spec.header.fields.map((f) => [f.name, `{ offset: ${f.offset}, type: '${f.type}' }`]),
      '    ',
    )},\n} as const;`,
    '',
    '/** Command-buffer entries: opcode, size of the fixed part (header included), fields, and what follows. */',
    `export const CmdbufEntry = ${tsObject(
      spec.entries.map((e) => [
        e.name,
        `{\n    opcode: ${hex(e.opcode, 2)},\n    size: ${e.size},\n    fields: ${tsObject(
          e.fields.map((f) => [f.name, `{ offset: ${f.offset}, type: '${f.type}' }`]),
          '      ',
        )},\n    trailer: ${e.trailer === null ? 'null' : `{ name: '${e.trailer.name}', offset: ${e.trailer.offset} }`},\n  }`,
      ]),
    )} as const;`,
    '',
  ];
  return out.join('\n');
}

// ---- the tables in docs/protopciem.md ----------------------------------------------

const up = (upstream: boolean): string => (upstream ? 'upstream' : 'ext');

/** The generated blocks of the document, by marker name. */
export function renderDocBlocks(spec: Spec): Record<string, string> {
  const resetText = (r: Register): string => (r.resetName !== null ? `${r.reset} (\`${r.resetName}\`)` : hex(r.reset, 8));
  return {
    version: `Spec version **${versionText(spec)}**: the \`VERSION\` register reads \`${hex(((spec.version.major << 16) | spec.version.minor) >>> 0, 8)}\`.`,
    constants: table(
      ['name', 'value', 'meaning'],
      spec.constants.map((c) => [`\`${c.name}\``, c.value.hex ? `${numText(c.value)} (${c.value.value})` : numText(c.value), c.summary]),
    ),
    registers: table(
      ['offset', 'name', 'access', 'reset', 'from', 'meaning'],
      spec.registers.map((r) => [`\`${hex(r.offset, 4)}\``, `\`${r.name}\``, r.access, resetText(r), up(r.upstream), r.summary]),
    ),
    bits: table(
      ['register', 'bit', 'name', 'access', 'from', 'meaning'],
      spec.registers.flatMap((r) => r.bits.map((b) => [`\`${r.name}\``, String(b.bit), `\`${b.name}\``, b.access, up(b.upstream), b.summary])),
    ),
    commands: table(
      ['CMD', 'name', 'DMA', 'from', 'effect'],
      spec.commands.map((c) => [`\`${hex(c.value, 2)}\``, `\`${c.name}\``, c.dma ? 'yes' : 'no', up(c.upstream), c.summary]),
    ),
    cmdbuf: [
      `Header (${spec.header.size} bytes, ${spec.header.summary}):`,
      '',
      table(['offset', 'field', 'type', 'meaning'], spec.header.fields.map((f) => [String(f.offset), `\`${f.name}\``, f.type, f.summary])),
      '',
      'Entries (offsets from the start of the entry; `size` is the fixed part, header included):',
      '',
      table(
        ['opcode', 'entry', 'size', 'fields after the header', 'from', 'effect'],
        spec.entries.map((e) => [
          `\`${hex(e.opcode, 2)}\``,
          `\`${e.name}\``,
          e.trailer === null ? String(e.size) : `${e.size} + ${e.trailer.name}`,
          [
            ...e.fields.map((f) => `${f.offset}: \`${f.name}\` ${f.type}${f.summary !== '' ? ` (${f.summary})` : ''}`),
            ...(e.trailer === null ? [] : [`${e.trailer.offset}: \`${e.trailer.name}\` (${e.trailer.summary})`]),
          ].join('; ') || '—',
          up(e.upstream),
          e.summary,
        ]),
      ),
    ].join('\n'),
    errors: table(
      ['code', 'name', 'meaning'],
      spec.errors.map((e) => [String(e.value), `\`ERR_${e.name}\``, e.summary]),
    ),
  };
}

// ---- driver ----------------------------------------------------------------------

/** Every file the generator owns, with the content it should have now. */
export function outputs(spec: Spec = loadSpec()): Output[] {
  return [
    { path: headerPath, content: renderC(spec) },
    { path: tsPath, content: renderTs(spec) },
    { path: docPath, content: applyDocBlocks(readFileSync(docPath, 'utf8'), renderDocBlocks(spec)) },
  ];
}

function main(argv: readonly string[]): number {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: tsx ${generator} [--check]\n`);
    return 2;
  }
  return syncOutputs(() => outputs(), { check, source, generator });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}

export { SpecError, applyDocBlocks, repoRoot, type Output };
