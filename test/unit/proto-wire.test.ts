// The gateway <-> QEMU wire protocol (docs/protocol.md): proto/wire.json is
// the one source and the generated files are current; both codecs (the
// TypeScript one on msgpackr, the C one on msgpack-c) meet every shared
// vector in proto/vectors/wire.json byte for byte and refuse the same
// frames with the same codes; bad input of any kind gives a coded error
// and nothing else; the frame reader copes with any split of the stream.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PciemError, type PciemErrorCode } from '../../gateway/src/errors.js';
import { FrameReader, type FrameResult } from '../../gateway/src/proto/frames.js';
import {
  frameBytes,
  loadSpec,
  loadVectors,
  outputs,
  parseSpec,
  renderSource,
  type Spec,
  SpecError,
  specPath,
  type Vectors,
} from '../../proto/gen/wire.js';
import {
  Cmd,
  decodeFrame,
  encodeFrame,
  Err,
  ERR_CODES,
  type FailureName,
  HEADER_SIZE,
  Limits,
  type Message,
  messageFromJson,
  messageToJson,
  PROTOCOL,
  wireError,
} from '../../proto/generated/wire.js';
import { cTestSuite, compileC } from '../lib/ctest.js';
import { xorshift32 } from '../lib/fuzz.js';
import { repoRoot } from '../lib/paths.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The PciemError code `f` throws, or 'accepted'; anything else thrown fails the test. */
function outcome(f: () => unknown): PciemErrorCode | 'accepted' {
  try {
    f();
    return 'accepted';
  } catch (e) {
    if (e instanceof PciemError) return e.code;
    throw e;
  }
}

const protoCode = (name: string): PciemErrorCode => `PCIEM_ERR_PROTO_${name}` as PciemErrorCode;

const marks = [0x00, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xc0, 0xc1, 0xc3, 0xc4, 0xc6, 0xca, 0xcb, 0xcc, 0xcf, 0xd3, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff];

/** A frame derived from `seed` by one to four random edits. */
function mutate(seed: Buffer, next: () => number): Buffer {
  const b = [...seed];
  const edits = 1 + (next() % 4);
  for (let i = 0; i < edits; i++) {
    const pos = b.length > 0 ? next() % b.length : 0;
    switch (next() % 8) {
      case 0:
        if (b.length > 0) b[pos] = (b[pos] as number) ^ (1 << (next() % 8));
        break;
      case 1:
        if (b.length > 0) b[pos] = next() & 0xff;
        break;
      case 2:
        if (b.length > 0) b[pos] = marks[next() % marks.length] as number;
        break;
      case 3:
        b.length = pos;
        break;
      case 4:
        b.splice(pos, 0, next() & 0xff);
        break;
      case 5:
        b.splice(pos, 1);
        break;
      case 6: {
        // Random bytes after a header of a known command.
        const cmds = Object.values(Cmd);
        const out = Buffer.alloc(HEADER_SIZE + (next() % 40));
        for (let j = HEADER_SIZE; j < out.length; j++) out[j] = next() & 0xff;
        out.writeUInt32LE(out.length - HEADER_SIZE, 0);
        out.writeUInt32LE(1 + (next() % 100), 4);
        out.writeUInt16LE(cmds[next() % cmds.length] as number, 8);
        out.writeUInt16LE(next() % 4, 10);
        return out;
      }
      default:
        // Make the header's size agree with the length, so the body gets read.
        if (b.length >= HEADER_SIZE) {
          const n = b.length - HEADER_SIZE;
          b.splice(0, 4, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
        }
    }
  }
  return Buffer.from(b);
}

const cBuild = {
  sources: ['proto/tests/wire_test.c', 'proto/generated/wire.c'],
  libs: ['-lmsgpackc'],
  includes: ['proto/generated', 'proto/tests'],
  // Plain C99, and every byte the decoder reads is checked by the sanitizers.
  flags: ['-std=c99', '-pedantic', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all'],
};

describe('proto/wire.json and its generated outputs', function () {
  let spec: Spec;
  let vectors: Vectors;

  before(function () {
    spec = loadSpec();
    vectors = loadVectors();
  });

  it('the committed outputs are the generator\'s (run: tsx proto/gen/wire.ts)', function () {
    for (const o of outputs(spec, vectors)) {
      expect(readFileSync(o.path, 'utf8') === o.content, `${relative(repoRoot, o.path)} is out of date`).to.equal(true);
    }
  });

  it('the generator\'s --check agrees', function () {
    this.timeout(30_000);
    const r = spawnSync(join(repoRoot, 'node_modules', '.bin', 'tsx'), ['proto/gen/wire.ts', '--check'], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
  });

  it('command numbers and error codes are unique, and every wire error has a PciemError code', function () {
    const cmds = Object.values(Cmd);
    expect(new Set(cmds).size).to.equal(cmds.length);
    const errs = Object.values(Err);
    expect(new Set(errs).size).to.equal(errs.length);
    expect(Object.keys(ERR_CODES).sort()).to.deep.equal(Object.keys(Err).filter((e) => e !== 'NONE').sort());
    for (const [name, code] of Object.entries(ERR_CODES)) expect(wireError(code), code).to.equal(name);
    expect(wireError('PCIEM_ERR_EXISTS'), 'a code with no wire error of its own').to.equal('IO');
  });

  it('the vectors cover every message: each request, each reply, a failed reply, each decode error', function () {
    const msgs = vectors.valid.map((v) => v.message as { cmd: string; reply: boolean; posted: boolean; error: string });
    for (const c of spec.commands) {
      expect(msgs.some((m) => m.cmd === c.name && !m.reply), `${c.name} request`).to.equal(true);
      if (c.response !== null) expect(msgs.some((m) => m.cmd === c.name && m.reply && m.error === 'NONE'), `${c.name} reply`).to.equal(true);
      if (c.reply === 'optional') {
        expect(msgs.some((m) => m.cmd === c.name && !m.reply && m.posted), `${c.name} posted`).to.equal(true);
        expect(msgs.some((m) => m.cmd === c.name && !m.reply && !m.posted), `${c.name} non-posted`).to.equal(true);
      }
    }
    expect(msgs.some((m) => m.reply && m.error !== 'NONE'), 'a failed reply').to.equal(true);
    const decodeErrors = spec.errors.filter((e) => e.class === 'decode').map((e) => e.name);
    expect([...new Set(vectors.invalid.map((v) => v.error))].sort()).to.deep.equal([...decodeErrors].sort());
  });

  describe('the generator refuses a broken schema', function () {
    const raw = (): Record<string, unknown> => JSON.parse(readFileSync(specPath, 'utf8')) as Record<string, unknown>;
    type Row = Record<string, unknown>;
    const cmds = (s: Row): Row[] => s.commands as Row[];
    const cmd = (s: Row, name: string): Row => cmds(s).find((c) => c.name === name) as Row;
    const fields = (body: unknown): Row[] => (body as Row).fields as Row[];
    const limit = (s: Row, name: string): Row => (s.limits as Row[]).find((l) => l.name === name) as Row;
    const cases: [string, (s: Row) => void, RegExp][] = [
      ['two commands with one number', (s) => void (cmd(s, 'RESET').value = '0x0010'), /duplicate command number/],
      ['a retired number in use', (s) => void (s.retired = [0x20]), /retired/],
      ['command 0', (s) => void (cmd(s, 'RESET').value = 0), /not 1\.\.0xffff/],
      ['a field of an unknown type', (s) => void ((fields(cmd(s, 'MMIO_READ').request)[0] as Row).type = 'u128'), /is not one of/],
      ['two fields with one name', (s) => void fields(cmd(s, 'MMIO_READ').request).push({ name: 'bar', type: 'u8', summary: '' }), /duplicate field name/],
      ['a rule on a missing field', (s) => void ((cmd(s, 'MMIO_READ').request as Row).rules = [{ le: ['bar', 'nope'] }]), /has no field nope/],
      ['an unknown rule', (s) => void ((cmd(s, 'MMIO_READ').request as Row).rules = [{ odd: 'bar' }]), /unknown rule/],
      ['fits on a size that may be 9', (s) => void ((fields(cmd(s, 'MMIO_WRITE').request)[2] as Row).one_of = [1, 9]), /sizes 1\.\.8/],
      ['a reference to an unknown limit', (s) => void ((fields(cmd(s, 'ERROR').request)[1] as Row).max_len = 'NO_SUCH'), /no limit named/],
      ['a body deeper than MAX_DEPTH', (s) => void (limit(s, 'MAX_DEPTH').value = 2), /MAX_DEPTH/],
      ['a body with more objects than MAX_OBJECTS', (s) => void (limit(s, 'MAX_OBJECTS').value = 100), /MAX_OBJECTS/],
      ['a DMA larger than MAX_BODY allows', (s) => void (limit(s, 'MAX_BODY').value = '0x1000000'), /MAX_BODY/],
      ['a header the codecs do not know', (s) => void ((s.header as Row).fields as Row[]).reverse(), /header\.fields/],
      ['a third flag', (s) => void (s.flags as Row[]).push({ name: 'MORE', bit: 2, summary: '' }), /flags/],
      ['a decode error the codecs do not know', (s) => void (s.errors as Row[]).push({ name: 'ODD', value: 12, class: 'decode', summary: '' }), /decode and session errors/],
      ['an enum with value 0', (s) => void (((s.enums as Row[])[0] as Row).values as Row[]).push({ name: 'NONE', value: 0, summary: '' }), /0 is not an enum value/],
      ['a command without reply given a reply body', (s) => void (cmd(s, 'INTX').response = { fields: [] }), /without reply/],
    ];
    for (const [what, mutate, message] of cases) {
      it(what, function () {
        const s = raw();
        mutate(s);
        expect(() => renderSource(parseSpec(JSON.stringify(s)))).to.throw(SpecError, message);
      });
    }
  });
});

describe('wire protocol: the TypeScript codec against the shared vectors', function () {
  const vectors = loadVectors();

  describe('valid: encode gives exactly the frame, decode gives exactly the message', function () {
    for (const v of vectors.valid) {
      it(v.name, function () {
        const m = messageFromJson(v.message);
        expect(hex(encodeFrame(m))).to.equal(hex(frameBytes(v.frame)));
        expect(messageToJson(decodeFrame(frameBytes(v.frame)))).to.deep.equal(v.message);
      });
    }
  });

  describe('non-canonical: decoded as the message, which encodes canonically', function () {
    for (const v of vectors.noncanonical) {
      it(v.name, function () {
        expect(messageToJson(decodeFrame(frameBytes(v.frame)))).to.deep.equal(v.message);
        expect(hex(encodeFrame(messageFromJson(v.message)))).to.equal(hex(frameBytes(v.canonical)));
      });
    }
  });

  describe('invalid: refused with the expected code', function () {
    for (const v of vectors.invalid) {
      it(`${v.name}: ${v.error}`, function () {
        expect(outcome(() => decodeFrame(frameBytes(v.frame)))).to.equal(protoCode(v.error));
      });
    }
  });
});

cTestSuite('wire protocol: the C codec (proto/generated/wire.c) against the shared vectors, under ASan and UBSan', cBuild, 'wire', 250);

describe('wire protocol: the TypeScript and C decoders agree on 20,000 mutated frames', function () {
  this.timeout(300_000);
  let dir = '';
  let binary = '';

  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-wire-'));
    binary = join(dir, 'wire_test');
    compileC(cBuild, binary);
  });

  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('same code for every frame, and the same bytes when re-encoding the ones accepted', function () {
    const seeds = loadVectors().valid.map((v) => frameBytes(v.frame));
    const next = xorshift32(0x5eed);
    const frames: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) frames.push(mutate(seeds[next() % seeds.length] as Buffer, next));
    const input = Buffer.concat(frames.flatMap((f) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(f.length, 0);
      return [len, f];
    }));
    const r = spawnSync(binary, ['--diff'], { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).to.have.length(frames.length);
    let accepted = 0;
    const codeOf = new Map(Object.entries(ERR_CODES).map(([n, c]) => [c, Err[n as FailureName]]));
    frames.forEach((f, i) => {
      let ts: string;
      try {
        const m = decodeFrame(f);
        ts = `0 0 ${hex(encodeFrame(m))}`;
        accepted++;
      } catch (e) {
        if (!(e instanceof PciemError)) throw e;
        ts = String(-(codeOf.get(e.code) as number));
      }
      expect(lines[i], `frame ${i}: ${hex(f)}`).to.equal(ts);
    });
    expect(accepted, 'some mutated frames are still valid').to.be.above(100);
  });
});

describe('wire protocol: bad input gives a coded error and nothing else', function () {
  it('100,000 random and mutated frames: only PCIEM_ERR_PROTO_* out; each accepted one re-encodes to the same message', function () {
    this.timeout(300_000);
    const vectors = loadVectors();
    const seeds = [...vectors.valid, ...vectors.noncanonical, ...vectors.invalid].map((v) => frameBytes(v.frame));
    const next = xorshift32(0xc0ffee);
    const codes = new Map<string, number>();
    for (let i = 0; i < 100_000; i++) {
      let frame: Buffer;
      if (i % 10 === 0) {
        frame = Buffer.alloc(next() % 64);
        for (let j = 0; j < frame.length; j++) frame[j] = next() & 0xff;
      } else {
        frame = mutate(seeds[next() % seeds.length] as Buffer, next);
      }
      let m: Message;
      try {
        m = decodeFrame(frame);
      } catch (e) {
        expect(e, `frame ${i}: ${hex(frame)}`).to.be.instanceOf(PciemError);
        const code = (e as PciemError).code;
        expect(code, `frame ${i}: ${hex(frame)}`).to.match(/^PCIEM_ERR_PROTO_(TRUNCATED|TOO_BIG|MALFORMED|TYPE|MISSING|EXTRA|RANGE|UNKNOWN_CMD|HEADER)$/);
        codes.set(code, (codes.get(code) ?? 0) + 1);
        continue;
      }
      codes.set('accepted', (codes.get('accepted') ?? 0) + 1);
      expect(messageToJson(decodeFrame(encodeFrame(m))), `frame ${i}: ${hex(frame)}`).to.deep.equal(messageToJson(m));
    }
    // The mutations reach every layer of the decoder.
    for (const c of ['accepted', 'TRUNCATED', 'TOO_BIG', 'MALFORMED', 'TYPE', 'MISSING', 'EXTRA', 'RANGE', 'UNKNOWN_CMD', 'HEADER']) {
      expect(codes.get(c === 'accepted' ? c : protoCode(c)) ?? 0, c).to.be.above(0);
    }
  });

  const read: Message = { cmd: 'MMIO_READ', id: 7, reply: false, posted: false, error: 'NONE', body: { bar: 0, offset: 0x1000n, size: 4 } };
  const cases: [string, unknown, string][] = [
    ['bar 6', { ...read, body: { ...read.body, bar: 6 } }, 'RANGE'],
    ['size 3', { ...read, body: { ...read.body, size: 3 } }, 'RANGE'],
    ['a negative offset', { ...read, body: { ...read.body, offset: -1n } }, 'RANGE'],
    ['an offset above 2^64', { ...read, body: { ...read.body, offset: 1n << 64n } }, 'RANGE'],
    ['a number where a bigint belongs', { ...read, body: { ...read.body, offset: 4096 } }, 'TYPE'],
    ['a fraction', { ...read, body: { ...read.body, size: 1.5 } }, 'TYPE'],
    ['a string for an integer', { ...read, body: { ...read.body, bar: '0' } }, 'TYPE'],
    ['a field missing', { ...read, body: { bar: 0, offset: 0n } }, 'MISSING'],
    ['an extra field', { ...read, body: { ...read.body, posted: true } }, 'EXTRA'],
    ['a body that is not an object', { ...read, body: [0, 1, 2] }, 'TYPE'],
    ['an unknown command', { ...read, cmd: 'NOPE' }, 'UNKNOWN_CMD'],
    ['id 0', { ...read, id: 0 }, 'HEADER'],
    ['id 2^32', { ...read, id: 2 ** 32 }, 'HEADER'],
    ['POSTED on MMIO_READ', { ...read, posted: true }, 'HEADER'],
    ['an INTX that is not posted', { cmd: 'INTX', id: 1, reply: false, posted: false, error: 'NONE', body: { level: true } }, 'HEADER'],
    ['an error code in a request', { ...read, error: 'RANGE' }, 'HEADER'],
    ['an unknown error name', { ...read, reply: true, error: 'OOPS', body: { message: 'x' } }, 'HEADER'],
    ['a non-printable message', { ...read, reply: true, error: 'IO', body: { message: 'caf\u00e9' } }, 'RANGE'],
    ['a message of 257 characters', { ...read, reply: true, error: 'IO', body: { message: 'x'.repeat(257) } }, 'TOO_BIG'],
    ['DMA data of MAX_DMA + 1 bytes', { cmd: 'DMA_WRITE', id: 1, reply: false, posted: true, error: 'NONE', body: { addr: 0n, data: new Uint8Array(Limits.MAX_DMA + 1) } }, 'TOO_BIG'],
    ['empty DMA data', { cmd: 'DMA_WRITE', id: 1, reply: false, posted: true, error: 'NONE', body: { addr: 0n, data: new Uint8Array(0) } }, 'RANGE'],
    ['DMA data as an array', { cmd: 'DMA_WRITE', id: 1, reply: false, posted: true, error: 'NONE', body: { addr: 0n, data: [1, 2] } }, 'TYPE'],
    ['not an object at all', null, 'TYPE'],
  ];
  for (const [what, m, code] of cases) {
    it(`the encoder refuses ${what}: ${code}`, function () {
      expect(outcome(() => encodeFrame(m as Message))).to.equal(protoCode(code));
    });
  }

  it('a DMA of MAX_DMA bytes round-trips; the decoded bytes are a view into the frame', function () {
    this.timeout(30_000);
    const data = Buffer.alloc(Limits.MAX_DMA, 0xa5);
    const frame = encodeFrame({ cmd: 'DMA_WRITE', id: 1, reply: false, posted: true, error: 'NONE', body: { addr: 0x1000n, data } });
    expect(frame.length).to.be.at.most(HEADER_SIZE + Limits.MAX_BODY);
    const m = decodeFrame(frame);
    expect(m.cmd === 'DMA_WRITE' && !m.reply && m.body.data.length === Limits.MAX_DMA && m.body.data.buffer === frame.buffer).to.equal(true);
  });

  it('the codec tables hold no records or extension settings: plain maps only', function () {
    expect(JSON.stringify(PROTOCOL, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).to.not.match(/record|structure|extension/i);
  });
});

describe('wire protocol: the frame reader', function () {
  const vectors = loadVectors();
  const frames = vectors.valid.map((v) => frameBytes(v.frame));
  const stream = Buffer.concat(frames);
  const summary = (rs: FrameResult[]): string[] => rs.map((r) => (r.ok ? JSON.stringify(messageToJson(r.message)) : `${r.error.code}${r.fatal ? ' fatal' : ''}`));
  const expected = vectors.valid.map((v) => JSON.stringify(v.message));

  it(`reads ${frames.length} frames from one chunk`, function () {
    const r = new FrameReader();
    expect(summary(r.push(stream))).to.deep.equal(expected);
    expect(r.buffered).to.equal(0);
    expect(r.end()).to.equal(null);
  });

  it(`reads them whatever the split: at each of the ${stream.length + 1} byte boundaries`, function () {
    for (let k = 0; k <= stream.length; k++) {
      const r = new FrameReader();
      const got = [...r.push(stream.subarray(0, k)), ...r.push(stream.subarray(k))];
      expect(summary(got), `split at ${k}`).to.deep.equal(expected);
    }
  });

  it('reads them one byte at a time', function () {
    const r = new FrameReader();
    const got: FrameResult[] = [];
    for (let k = 0; k < stream.length; k++) got.push(...r.push(stream.subarray(k, k + 1)));
    expect(summary(got)).to.deep.equal(expected);
  });

  it('a refused frame whose size is sound costs nothing else: the next frames still come', function () {
    // The invalid vectors that are whole frames: refused for what they say, not for their length.
    const bad = vectors.invalid.map((v) => frameBytes(v.frame)).filter((b) => b.length >= HEADER_SIZE && b.length === HEADER_SIZE + b.readUInt32LE(0));
    expect(bad.length).to.be.above(60);
    const mixed = Buffer.concat([frames[0] as Buffer, ...bad.flatMap((b) => [b, frames[1] as Buffer])]);
    const r = new FrameReader();
    const got = r.push(mixed);
    expect(got).to.have.length(1 + 2 * bad.length);
    expect(got.filter((x) => x.ok)).to.have.length(1 + bad.length);
    expect(got.filter((x) => !x.ok).every((x) => !x.ok && !x.fatal && x.header !== null)).to.equal(true);
  });

  it('a size above MAX_BODY is refused at the header, before any of the body is held', function () {
    const h = Buffer.alloc(HEADER_SIZE);
    h.writeUInt32LE(Limits.MAX_BODY + 1, 0);
    h.writeUInt32LE(1, 4);
    h.writeUInt16LE(Cmd.DMA_WRITE, 8);
    h.writeUInt16LE(2, 10);
    const r = new FrameReader();
    const got = r.push(Buffer.concat([frames[0] as Buffer, h, Buffer.alloc(1000)]));
    expect(summary(got)).to.deep.equal([expected[0], 'PCIEM_ERR_PROTO_TOO_BIG fatal']);
    expect(r.buffered).to.equal(0);
    expect(r.failed).to.equal(true);
    expect(r.push(frames[0] as Buffer)).to.deep.equal([]);
  });

  it('a stream that ends inside a frame ends with TRUNCATED', function () {
    const r = new FrameReader();
    expect(summary(r.push(stream.subarray(0, stream.length - 1)))).to.deep.equal(expected.slice(0, -1));
    const last = r.end();
    expect(last !== null && !last.ok && last.fatal && last.error.code).to.equal('PCIEM_ERR_PROTO_TRUNCATED');
  });
});
