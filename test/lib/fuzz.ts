// Seeded fuzzing of wire frames, for the tests that throw bad input at a
// peer (the QEMU bridge, the gateway's session). Most frames are built from
// the protocol's own schema (proto/generated/wire.ts PROTOCOL): a request of
// one of the given commands with every field, values mostly at the edges of
// their range, sometimes outside it or of another type; the rest are
// anything at all. FUZZ_SEED in a test replays a run.
import { Packr } from 'msgpackr';
import type { FieldDesc, StructDesc } from '../../gateway/src/proto/codec.js';
import { Flag, HEADER_SIZE, type Message, PROTOCOL } from '../../proto/generated/wire.js';

/** A seeded PRNG (xorshift32): unsigned 32-bit numbers, so a failing fuzz case can be replayed. */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export class FrameFuzzer {
  private readonly rnd: () => number;
  private readonly packr = new Packr({ useRecords: false, variableMapSize: true });
  private readonly commands;

  /** `commands`: the names whose well-formed requests the peer under test takes. */
  constructor(readonly seed: number, commands: readonly string[]) {
    const next = xorshift32(seed);
    this.rnd = () => next() / 0x1_0000_0000;
    this.commands = PROTOCOL.commands.filter((c) => commands.includes(c.name));
    if (this.commands.length !== commands.length) throw new Error(`FrameFuzzer: unknown command in ${commands.join(', ')}`);
  }

  /** One frame, header and body; `takeId` gives the sender's next request id. */
  frame(takeId: () => number): Buffer {
    let cmd: number;
    let flags = 0;
    let body: Buffer;
    if (this.rnd() < 0.85) {
      const c = this.pick(this.commands);
      cmd = c.value;
      if (c.reply === 'none' || (c.reply === 'optional' && this.rnd() < 0.5)) flags = Flag.POSTED;
      body = this.packr.pack(this.struct(c.request, 0));
    } else {
      // Anything at all: any command number, any flags, a body of any bytes.
      cmd = this.rnd() < 0.5 ? this.pick(PROTOCOL.commands).value : this.int(0x10000);
      flags = this.pick([0, Flag.POSTED, Flag.REPLY, Flag.REPLY | Flag.POSTED, 0x8000]);
      body = this.rnd() < 0.5
        ? this.packr.pack({ [this.pick(['bar', 'offset', 'addr', 'x'])]: this.junk() })
        : Buffer.from(Array.from({ length: this.int(48) }, () => this.int(256)));
    }
    const hdr = Buffer.alloc(HEADER_SIZE);
    hdr.writeUInt32LE(body.length, 0);
    hdr.writeUInt32LE(flags & Flag.REPLY ? this.int(0x1_0000_0000) : takeId(), 4);
    hdr.writeUInt16LE(cmd, 8);
    hdr.writeUInt16LE(flags, 10);
    return Buffer.concat([hdr, body]);
  }

  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  private junk(): unknown {
    return this.pick<unknown>([null, true, 'x', -1, 1.5, Buffer.alloc(3), [1], { a: 1 }]);
  }

  /** A value for a field: mostly edges inside its range, sometimes outside it or of another type. */
  private value(f: FieldDesc, depth: number): unknown {
    if (this.rnd() < 0.1) return this.junk();
    switch (f.kind) {
      case 'uint':
        return this.rnd() < 0.9
          ? this.pick([f.min, f.max, ...(f.oneOf ?? []), 0, 1, 2, 4, 8, 0xff, 0xffff, this.int(f.max + 1)].filter((v) => v >= f.min && v <= f.max))
          : this.pick([f.max + 1, -1, 2 ** 32]);
      case 'u64':
        return this.pick([f.min, f.max, 0n, 2n, 4n, 0x10n, 0x3cn, 0xfffcn, 0x10000n, 0xffffn, 0x100000n, 1n << 32n, BigInt(this.int(0x10000))]
          .filter((v) => v >= f.min && v <= f.max));
      case 'bool':
        return this.rnd() < 0.5;
      case 'str':
        return 'x'.repeat(this.int(f.maxLen + 2));
      case 'bytes':
        return Buffer.alloc(this.int(Math.min(f.maxLen, 4096) + 1), this.int(256));
      case 'array':
        return depth < 2 ? Array.from({ length: this.int(f.maxLen + 2) }, () => this.struct(f.item, depth + 1)) : [];
    }
  }

  private struct(d: StructDesc, depth: number): Record<string, unknown> {
    const b: Record<string, unknown> = {};
    for (const f of d.fields) if (this.rnd() < 0.95) b[f.key] = this.value(f, depth);
    if (this.rnd() < 0.05) b.extra = this.junk();
    return b;
  }
}

/** What a peer sent back to a fuzz: replies carried out, and the rest by command and error code. */
export function tally(back: readonly Message[]): { ok: number; refused: number; text: string } {
  const ok = back.filter((m) => m.reply && m.error === 'NONE').length;
  const codes = new Map<string, number>();
  for (const m of back) if (m.error !== 'NONE') codes.set(`${m.cmd} ${m.error}`, (codes.get(`${m.cmd} ${m.error}`) ?? 0) + 1);
  const top = [...codes].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => `${k} x${n}`).join(', ');
  return { ok, refused: back.length - ok, text: `${ok} answered, ${back.length - ok} refused (${top})` };
}
