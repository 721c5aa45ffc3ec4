// ProtoPCIem command-buffer entries (docs/protopciem.md, "Command buffers"),
// encoded from the generated layout: what the tests hand the card.
import { CmdbufEntry, CmdbufHeader, type FieldInfo, type OpName } from '../../proto/generated/protopciem.js';

/**
 * One entry: header, the named fields (0 if not given), the trailer (a
 * BLIT_RECT's pixels) and `pad` extra zero bytes counted in LENGTH.
 */
export function entry(op: OpName, fields: Record<string, number> = {}, trailer?: Uint8Array, pad = 0): Buffer {
  const e = CmdbufEntry[op];
  const length = e.size + (trailer?.length ?? 0) + pad;
  const b = Buffer.alloc(length);
  b.writeUInt16LE(e.opcode, CmdbufHeader.fields.OPCODE.offset);
  b.writeUInt32LE(length, CmdbufHeader.fields.LENGTH.offset);
  for (const [name, f] of Object.entries(e.fields as Record<string, FieldInfo>)) {
    const v = fields[name] ?? 0;
    if (f.type === 'u8') b.writeUInt8(v, f.offset);
    else if (f.type === 'u16') b.writeUInt16LE(v, f.offset);
    else b.writeUInt32LE(v, f.offset);
  }
  if (trailer !== undefined && e.trailer !== null) b.set(trailer, e.trailer.offset);
  return b;
}
