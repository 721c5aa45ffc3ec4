// The messages the rings carry, in their fixed binary form
// (docs/protocol.md, "Ring records"): the 16-byte wire header (size = the
// body's bytes; the same id, cmd, flags and error as on the socket) and a
// little-endian body of fixed layout, no msgpack. The C twin is
// proto/ring/pciem_ring_records.h; both are checked against
// proto/vectors/ring-records.json. Messages are the socket codec's own
// (proto/generated/wire.ts), so a message means the same on either path.
//
// Only these go on a ring: MMIO_WRITE (posted request), MMIO_READ (request
// and reply; a failed reply has its error set and no body), MSI, INTX
// (posted) and FENCE (posted, ring only). Which side may send which is the
// session's business.
import { PciemError, type PciemErrorCode } from '../errors.js';
import { Cmd, Err, Flag, IrqKind, type ErrName, type ErrorReply, type FailureName, type Message } from '../../../proto/generated/wire.js';

export const RECORD_HDR = 16;
export const RECORD_MMIO_WRITE_SIZE = 24;
export const RECORD_MMIO_READ_SIZE = 16;
export const RECORD_MMIO_READ_REPLY_SIZE = 8;
export const RECORD_IRQ_SIZE = 8;
export const RECORD_FENCE_SIZE = 8;
/** The longest record: 16 + 24 bytes. */
export const RECORD_MAX = RECORD_HDR + RECORD_MMIO_WRITE_SIZE;

/** The messages a ring carries. */
export type RecordMessage =
  | Extract<Message, { cmd: 'MMIO_WRITE'; reply: false } | { cmd: 'MMIO_READ'; error: 'NONE' } | { cmd: 'MSI' } | { cmd: 'INTX' } | { cmd: 'FENCE' }>
  | { cmd: 'MMIO_READ'; id: number; reply: true; posted: false; error: FailureName; body: ErrorReply };

const ERR_NAMES = new Map<number, ErrName>(Object.entries(Err).map(([k, v]) => [v, k as ErrName]));
const U64 = 0xffff_ffff_ffff_ffffn;

function refuse(code: PciemErrorCode, why: string): never {
  throw new PciemError(code, `ring record: ${why}`);
}

function accessOk(bar: number, offset: bigint, size: number): boolean {
  return bar >= 0 && bar <= 5 && (size === 1 || size === 2 || size === 4 || size === 8) && offset >= 0n && offset <= U64 - BigInt(size) + 1n;
}

function fits(value: bigint, size: number): boolean {
  return value >= 0n && (size >= 8 ? value <= U64 : value >> BigInt(8 * size) === 0n);
}

function irqOk(kind: number, vector: number): boolean {
  return (kind === IrqKind.MSI || kind === IrqKind.MSIX) && Number.isInteger(vector) && vector >= 0 && vector <= (kind === IrqKind.MSI ? 31 : 2047);
}

/** The body size a header announces; refuses (UNKNOWN_CMD, HEADER) what never goes on a ring. */
function form(cmd: number, id: number, flags: number, error: number): number {
  if (cmd !== Cmd.MMIO_WRITE && cmd !== Cmd.MMIO_READ && cmd !== Cmd.MSI && cmd !== Cmd.INTX && cmd !== Cmd.FENCE)
    refuse('PCIEM_ERR_PROTO_UNKNOWN_CMD', `command 0x${cmd.toString(16)} does not go on a ring`);
  if ((flags & ~(Flag.REPLY | Flag.POSTED)) !== 0 || id === 0) refuse('PCIEM_ERR_PROTO_HEADER', `flags 0x${flags.toString(16)}, id ${id}`);
  const reply = (flags & Flag.REPLY) !== 0;
  const posted = (flags & Flag.POSTED) !== 0;
  if (reply) {
    if (cmd !== Cmd.MMIO_READ || posted || (error !== 0 && !ERR_NAMES.has(error)))
      refuse('PCIEM_ERR_PROTO_HEADER', `a reply with flags 0x${flags.toString(16)}, error ${error}`);
    return error !== 0 ? 0 : RECORD_MMIO_READ_REPLY_SIZE;
  }
  if (error !== 0 || posted !== (cmd !== Cmd.MMIO_READ))
    refuse('PCIEM_ERR_PROTO_HEADER', `a request with flags 0x${flags.toString(16)}, error ${error}`);
  if (cmd === Cmd.MMIO_WRITE) return RECORD_MMIO_WRITE_SIZE;
  if (cmd === Cmd.MMIO_READ) return RECORD_MMIO_READ_SIZE;
  return cmd === Cmd.FENCE ? RECORD_FENCE_SIZE : RECORD_IRQ_SIZE;
}

function zero(v: DataView, at: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (v.getUint8(at + i) !== 0) return false;
  return true;
}

/**
 * The record at byte `at` of `v` (at most `len` bytes available, e.g. a
 * slot). Throws PciemError with PCIEM_ERR_PROTO_*: TRUNCATED, UNKNOWN_CMD,
 * HEADER, MALFORMED (a size that is not the form's, reserved bytes not
 * zero), RANGE — in the same order as the C decoder.
 */
export function decodeRecord(v: DataView, at: number, len: number): RecordMessage {
  if (len < RECORD_HDR) refuse('PCIEM_ERR_PROTO_TRUNCATED', `${len} bytes`);
  const size = v.getUint32(at, true);
  const id = v.getUint32(at + 4, true);
  const cmd = v.getUint16(at + 8, true);
  const flags = v.getUint16(at + 10, true);
  const error = v.getUint32(at + 12, true);
  const want = form(cmd, id, flags, error);
  if (size !== want) refuse('PCIEM_ERR_PROTO_MALFORMED', `size ${size}, the form has ${want}`);
  if (len - RECORD_HDR < size) refuse('PCIEM_ERR_PROTO_TRUNCATED', `${len} bytes for a ${size}-byte body`);
  const b = at + RECORD_HDR;
  if ((flags & Flag.REPLY) !== 0) {
    if (error !== 0) return { cmd: 'MMIO_READ', id, reply: true, posted: false, error: ERR_NAMES.get(error) as FailureName, body: { message: '' } };
    return { cmd: 'MMIO_READ', id, reply: true, posted: false, error: 'NONE', body: { value: v.getBigUint64(b, true) } };
  }
  switch (cmd) {
    case Cmd.MMIO_WRITE: {
      if (!zero(v, b + 18, 6)) refuse('PCIEM_ERR_PROTO_MALFORMED', 'MMIO_WRITE: reserved bytes not zero');
      const offset = v.getBigUint64(b, true);
      const value = v.getBigUint64(b + 8, true);
      const bar = v.getUint8(b + 16);
      const sz = v.getUint8(b + 17);
      if (!accessOk(bar, offset, sz) || !fits(value, sz)) refuse('PCIEM_ERR_PROTO_RANGE', `MMIO_WRITE bar ${bar} size ${sz}`);
      return { cmd: 'MMIO_WRITE', id, reply: false, posted: true, error: 'NONE', body: { bar, offset, size: sz, value } };
    }
    case Cmd.MMIO_READ: {
      if (!zero(v, b + 10, 6)) refuse('PCIEM_ERR_PROTO_MALFORMED', 'MMIO_READ: reserved bytes not zero');
      const offset = v.getBigUint64(b, true);
      const bar = v.getUint8(b + 8);
      const sz = v.getUint8(b + 9);
      if (!accessOk(bar, offset, sz)) refuse('PCIEM_ERR_PROTO_RANGE', `MMIO_READ bar ${bar} size ${sz}`);
      return { cmd: 'MMIO_READ', id, reply: false, posted: false, error: 'NONE', body: { bar, offset, size: sz } };
    }
    case Cmd.MSI: {
      if (!zero(v, b + 3, 5)) refuse('PCIEM_ERR_PROTO_MALFORMED', 'MSI: reserved bytes not zero');
      const vector = v.getUint16(b, true);
      const kind = v.getUint8(b + 2);
      if (!irqOk(kind, vector)) refuse('PCIEM_ERR_PROTO_RANGE', `MSI kind ${kind} vector ${vector}`);
      return { cmd: 'MSI', id, reply: false, posted: true, error: 'NONE', body: { kind: kind as IrqKind, vector } };
    }
    case Cmd.INTX: {
      if (!zero(v, b + 1, 7)) refuse('PCIEM_ERR_PROTO_MALFORMED', 'INTX: reserved bytes not zero');
      const level = v.getUint8(b);
      if (level > 1) refuse('PCIEM_ERR_PROTO_RANGE', `INTX level ${level}`);
      return { cmd: 'INTX', id, reply: false, posted: true, error: 'NONE', body: { level: level === 1 } };
    }
    default: {
      if (!zero(v, b + 4, 4)) refuse('PCIEM_ERR_PROTO_MALFORMED', 'FENCE: reserved bytes not zero');
      const count = v.getUint32(b, true);
      if (count === 0) refuse('PCIEM_ERR_PROTO_RANGE', 'FENCE count 0');
      return { cmd: 'FENCE', id, reply: false, posted: true, error: 'NONE', body: { count } };
    }
  }
}

function header(v: DataView, at: number, size: number, id: number, cmd: number, flags: number, error: number): void {
  v.setUint32(at, size, true);
  v.setUint32(at + 4, id, true);
  v.setUint16(at + 8, cmd, true);
  v.setUint16(at + 10, flags, true);
  v.setUint32(at + 12, error, true);
}

/**
 * The hot path's own encoder: a posted MMIO_WRITE at byte `at` of `v`,
 * unchecked (the caller's values come from the host, which checked them).
 */
export function writeMmioWriteRecord(v: DataView, at: number, id: number, bar: number, offset: bigint, size: number, value: bigint): void {
  header(v, at, RECORD_MMIO_WRITE_SIZE, id, Cmd.MMIO_WRITE, Flag.POSTED, 0);
  v.setBigUint64(at + 16, offset, true);
  v.setBigUint64(at + 24, value, true);
  v.setUint32(at + 32, bar | (size << 8), true);
  v.setUint32(at + 36, 0, true);
}

/**
 * Writes `m` as a record at byte `at` of `v` (room for RECORD_MAX bytes);
 * returns its length. Refuses (the decoder's codes) what a decoder would.
 */
export function encodeRecord(v: DataView, at: number, m: RecordMessage): number {
  const flags = (m.reply ? Flag.REPLY : 0) | (m.posted ? Flag.POSTED : 0);
  const error = Err[m.error];
  const size = form(Cmd[m.cmd], m.id, flags, error);
  for (let i = 0; i < RECORD_HDR + size; i++) v.setUint8(at + i, 0);
  header(v, at, size, m.id, Cmd[m.cmd], flags, error);
  const b = at + RECORD_HDR;
  if (m.cmd === 'MMIO_READ' && m.reply) {
    if (m.error === 'NONE') {
      const value = m.body.value;
      if (value < 0n || value > U64) refuse('PCIEM_ERR_PROTO_RANGE', 'MMIO_READ reply value');
      v.setBigUint64(b, value, true);
    }
    return RECORD_HDR + size;
  }
  switch (m.cmd) {
    case 'MMIO_WRITE': {
      const w = m.body;
      if (!accessOk(w.bar, w.offset, w.size) || !fits(w.value, w.size)) refuse('PCIEM_ERR_PROTO_RANGE', `MMIO_WRITE bar ${w.bar} size ${w.size}`);
      v.setBigUint64(b, w.offset, true);
      v.setBigUint64(b + 8, w.value, true);
      v.setUint8(b + 16, w.bar);
      v.setUint8(b + 17, w.size);
      break;
    }
    case 'MMIO_READ': {
      const r = m.body;
      if (!accessOk(r.bar, r.offset, r.size)) refuse('PCIEM_ERR_PROTO_RANGE', `MMIO_READ bar ${r.bar} size ${r.size}`);
      v.setBigUint64(b, r.offset, true);
      v.setUint8(b + 8, r.bar);
      v.setUint8(b + 9, r.size);
      break;
    }
    case 'MSI':
      if (!irqOk(m.body.kind, m.body.vector)) refuse('PCIEM_ERR_PROTO_RANGE', `MSI kind ${m.body.kind} vector ${m.body.vector}`);
      v.setUint16(b, m.body.vector, true);
      v.setUint8(b + 2, m.body.kind);
      break;
    case 'INTX':
      v.setUint8(b, m.body.level ? 1 : 0);
      break;
    case 'FENCE':
      if (!Number.isInteger(m.body.count) || m.body.count < 1 || m.body.count > 0xffff_ffff) refuse('PCIEM_ERR_PROTO_RANGE', `FENCE count ${m.body.count}`);
      v.setUint32(b, m.body.count, true);
      break;
  }
  return RECORD_HDR + size;
}
