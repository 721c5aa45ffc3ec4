// The hot path's SPSC rings (proto/ring/pciem_ring.h, gateway/src/ring.ts):
// the C tests, then a C process and this node process on one memfd ring each
// way, 1,000,000 sequenced messages, wrapping past 2^32, full and empty
// under concurrency; and the ring records (the messages' binary form) in both
// languages against the shared vectors. Rates are printed, never asserted
// (benchmarks are `make bench`).
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PciemError } from '../../gateway/src/errors.js';
import { native } from '../../gateway/src/native.js';
import { decodeRecord, encodeRecord, writeMmioWriteRecord, type RecordMessage } from '../../gateway/src/proto/ring-records.js';
import { formatRing, RING_HDR_SIZE, ringBytes, RingConsumer, RingProducer } from '../../gateway/src/ring.js';
import { Err, messageFromJson, messageToJson } from '../../proto/generated/wire.js';
import { compileC, cTestSuite } from '../lib/ctest.js';
import { repoRoot } from '../lib/paths.js';

cTestSuite('ring (C: pciem_ring.h)', { sources: ['proto/ring/tests/ring_test.c'], includes: ['proto/ring'], flags: ['-pthread'] }, 'ring', 6);

const N = 1_000_000;
const SLOT = 64;
const SLOTS = 256;
const START = 0xffffffff - 100_000; // the counters cross 2^32 early in each run

interface SharedRing {
  memfd: number;
  data: number;
  space: number;
  buffer: ArrayBuffer;
}

function makeRing(): SharedRing {
  const memfd = native.memfdCreate('pciem-ring-test', ringBytes(SLOT, SLOTS));
  const buffer = native.mmap(memfd, ringBytes(SLOT, SLOTS), 0);
  formatRing(buffer, SLOT, SLOTS, START);
  return { memfd, data: native.eventfd(0), space: native.eventfd(0), buffer };
}

function closeRing(r: SharedRing): void {
  native.munmap(r.buffer);
  for (const fd of [r.memfd, r.data, r.space]) native.close(fd);
}

/** Runs the C end with the ring on fds 3, 4, 5; resolves with its stdout. */
function runC(binary: string, mode: 'produce' | 'consume', r: SharedRing): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [mode, String(N)], { stdio: ['ignore', 'pipe', 'pipe', r.memfd, r.data, r.space] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`ring_producer ${mode} exited ${code}: ${err}`))));
  });
}

describe('rings across C and TypeScript (memfd, eventfds)', function () {
  this.timeout(120_000);
  let dir = '';
  let binary = '';

  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-ring-'));
    binary = join(dir, 'ring_producer');
    compileC({ sources: ['proto/ring/tests/ring_producer.c'], includes: ['proto/ring'] }, binary);
  });

  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses bad geometry and a header it cannot trust', function () {
    const buf = new ArrayBuffer(ringBytes(64, 8));
    expect(() => formatRing(buf, 64, 6)).to.throw(PciemError).with.property('code', 'PCIEM_ERR_INVALID');
    expect(() => formatRing(buf, 64, 16)).to.throw(PciemError).with.property('code', 'PCIEM_ERR_NO_SPACE');
    expect(() => new RingConsumer(buf, -1, -1)).to.throw(PciemError).with.property('code', 'PCIEM_ERR_PROTO_RANGE');
    formatRing(buf, 64, 8);
    const c = new RingConsumer(buf, -1, -1);
    new Int32Array(buf)[16] = 9; // prod 9 slots ahead of cons in an 8-slot ring
    expect(() => new RingConsumer(buf, -1, -1)).to.throw(PciemError).with.property('code', 'PCIEM_ERR_PROTO_RANGE');
    expect(() => c.popBatch(new Uint8Array(64 * 8))).to.throw(PciemError).with.property('code', 'PCIEM_ERR_PROTO_RANGE');
  });

  it('TypeScript alone: full, empty, wrap, a timed-out wait keeps everything', async function () {
    const buf = new ArrayBuffer(ringBytes(64, 4));
    formatRing(buf, 64, 4, 0xfffffffe);
    const [data, space] = [native.eventfd(0), native.eventfd(0)];
    const p = new RingProducer(buf, data, space);
    const c = new RingConsumer(buf, data, space);
    const msg = new Uint8Array(24);
    const out = new Uint8Array(64 * 4);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) {
        new DataView(msg.buffer).setUint32(0, 8, true);
        new DataView(msg.buffer).setUint32(4, round * 4 + i, true);
        expect(p.tryPush(msg)).to.equal(true);
      }
      expect(p.tryPush(msg)).to.equal(false);
      if (round === 0) {
        let err: unknown;
        await p.waitForSpace(20).catch((e: unknown) => (err = e));
        expect(err).to.be.instanceOf(PciemError).with.property('code', 'PCIEM_ERR_TIMEOUT');
        expect(p.stats()).to.include({ fullWaits: 1n, fullTimeouts: 1n });
      }
      expect(c.popBatch(out)).to.equal(4);
      for (let i = 0; i < 4; i++) expect(new DataView(out.buffer).getUint32(i * 64 + 4, true)).to.equal(round * 4 + i);
      expect(c.popBatch(out)).to.equal(0);
    }
    expect(c.prepareSleep()).to.equal(true);
    expect(p.tryPush(msg)).to.equal(true);
    expect(native.readEventFd(data)).to.equal(1n);
    expect(p.stats().dataWakes).to.equal(1n);
    p.close();
    native.close(data);
    native.close(space);
  });

  it(`C producer -> TypeScript consumer: ${N} messages in order`, async function () {
    const r = makeRing();
    const consumer = new RingConsumer(r.buffer, r.data, r.space);
    const out = new Uint8Array(SLOT * 64);
    const view = new DataView(out.buffer);
    let next = 0;
    let bad = '';
    const t0 = process.hrtime.bigint();
    const done = new Promise<void>((resolve, reject) => {
      consumer.start(
        out,
        (_o, n) => {
          for (let i = 0; i < n; i++) {
            const id = view.getUint32(i * SLOT + 4, true);
            const seq = Number(view.getBigUint64(i * SLOT + 16, true));
            if (!bad && (id !== next >>> 0 || seq !== next || view.getUint16(i * SLOT + 8, true) !== 0x21))
              bad = `message ${next}: id ${id}, seq ${seq}`;
            next++;
          }
          if (next >= N) resolve();
        },
        reject,
      );
    });
    const [cOut] = await Promise.all([runC(binary, 'produce', r), done]);
    consumer.stop();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    expect(bad).to.equal('');
    expect(next).to.equal(N);
    expect(consumer.available()).to.equal(0);
    const st = consumer.stats();
    console.log(`      C->TS: ${(N / s / 1e6).toFixed(2)} M msgs/s (C side: ${cOut.trim()}); full waits ${st.fullWaits}, consumer sleeps ${st.consumerSleeps}`);
    closeRing(r);
  });

  it(`TypeScript producer -> C consumer: ${N} messages in order`, async function () {
    const r = makeRing();
    const producer = new RingProducer(r.buffer, r.data, r.space);
    const child = runC(binary, 'consume', r);
    const t0 = process.hrtime.bigint();
    const v = producer.view;
    for (let i = 0; i < N; ) {
      const off = producer.reserve();
      if (off < 0) {
        await producer.waitForSpace(10_000);
        continue;
      }
      v.setUint32(off, 8, true);
      v.setUint32(off + 4, i >>> 0, true);
      v.setUint16(off + 8, 0x21, true);
      v.setUint16(off + 10, 2, true);
      v.setUint32(off + 12, 0, true);
      v.setBigUint64(off + 16, BigInt(i), true);
      i++;
      if ((i & 15) === 0) producer.commit();
    }
    producer.commit();
    const cOut = await child;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    producer.close();
    const st = producer.stats();
    expect(st.fullTimeouts).to.equal(0n);
    expect(Atomics.load(new Int32Array(r.buffer, 0, RING_HDR_SIZE / 4), 32) >>> 0).to.equal((START + N) >>> 0);
    console.log(`      TS->C: ${(N / s / 1e6).toFixed(2)} M msgs/s (C side: ${cOut.trim()}); full waits ${st.fullWaits}, space wakes ${st.spaceWakes}`);
    closeRing(r);
  });
});

interface RecordVectors {
  valid: { name: string; message: unknown; record: string }[];
  invalid: { name: string; record: string; error: string }[];
}

const recordVectors = JSON.parse(readFileSync(join(repoRoot, 'proto/vectors/ring-records.json'), 'utf8')) as RecordVectors;
const hexBytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/ /g, ''), 'hex'));
const cBytes = (b: Uint8Array): string => `(const uint8_t[]){ ${[...b].map((x) => `0x${x.toString(16)}`).join(', ') || '0'} }`;

/** The C initialiser of a vector's message (struct pciem_wire_msg). */
function cMessage(m: RecordMessage, size: number): string {
  const flags = (m.reply ? 1 : 0) | (m.posted ? 2 : 0);
  const hdr = `.hdr = { .size = ${size}, .id = ${m.id}u, .cmd = PCIEM_WIRE_CMD_${m.cmd}, .flags = ${flags}, .error = ${Err[m.error]} }`;
  const u64 = (v: bigint): string => `0x${v.toString(16)}ull`;
  let body = '';
  if (m.cmd === 'MMIO_READ' && m.reply) body = m.error === 'NONE' ? `.body.mmio_read_reply = { .value = ${u64(m.body.value)} }` : '';
  else if (m.cmd === 'MMIO_WRITE') body = `.body.mmio_write = { .bar = ${m.body.bar}, .offset = ${u64(m.body.offset)}, .size = ${m.body.size}, .value = ${u64(m.body.value)} }`;
  else if (m.cmd === 'MMIO_READ') body = `.body.mmio_read = { .bar = ${m.body.bar}, .offset = ${u64(m.body.offset)}, .size = ${m.body.size} }`;
  else if (m.cmd === 'MSI') body = `.body.msi = { .kind = ${m.body.kind}, .vector = ${m.body.vector} }`;
  else if (m.cmd === 'INTX') body = `.body.intx = { .level = ${m.body.level} }`;
  else if (m.cmd === 'FENCE') body = `.body.fence = { .count = ${m.body.count}u }`;
  return `{ ${[hdr, body].filter(Boolean).join(', ')} }`;
}

describe('ring records: the binary form of the hot messages (TypeScript and C, shared vectors)', function () {
  this.timeout(120_000);

  it('every valid vector: encodeRecord gives its exact bytes, decodeRecord gives its message back', function () {
    for (const v of recordVectors.valid) {
      const want = hexBytes(v.record);
      const m = messageFromJson(v.message) as RecordMessage;
      const out = new Uint8Array(64).fill(0xa5);
      const view = new DataView(out.buffer);
      expect(encodeRecord(view, 0, m), v.name).to.equal(want.length);
      expect(Buffer.from(out.subarray(0, want.length)).toString('hex'), v.name).to.equal(Buffer.from(want).toString('hex'));
      // in a whole slot, with whatever follows the record
      expect(messageToJson(decodeRecord(view, 0, 64)), v.name).to.deep.equal(messageToJson(m));
      expect(messageToJson(decodeRecord(new DataView(want.buffer), 0, want.length)), v.name).to.deep.equal(messageToJson(m));
    }
  });

  it('the hot-path MMIO_WRITE writer gives the same bytes over a dirty slot', function () {
    for (const v of recordVectors.valid.filter((x) => (x.message as { cmd: string }).cmd === 'MMIO_WRITE')) {
      const m = messageFromJson(v.message) as Extract<RecordMessage, { cmd: 'MMIO_WRITE' }>;
      const out = new Uint8Array(64).fill(0xff);
      writeMmioWriteRecord(new DataView(out.buffer), 0, m.id, m.body.bar, m.body.offset, m.body.size, m.body.value);
      expect(Buffer.from(out.subarray(0, 40)).toString('hex'), v.name).to.equal(v.record.replace(/ /g, ''));
    }
  });

  it('every invalid vector is refused with its code', function () {
    for (const v of recordVectors.invalid) {
      const b = hexBytes(v.record);
      expect(() => decodeRecord(new DataView(b.buffer), 0, b.length), v.name).to.throw(PciemError).with.property('code', `PCIEM_ERR_PROTO_${v.error}`);
    }
  });

  it('the vectors cover every record form and every error a record decoder gives', function () {
    const forms = new Set(recordVectors.valid.map((v) => {
      const m = v.message as { cmd: string; reply: boolean; error: string };
      return `${m.cmd}${m.reply ? (m.error === 'NONE' ? ' reply' : ' failed reply') : ''}`;
    }));
    expect([...forms].sort()).to.deep.equal(['FENCE', 'INTX', 'MMIO_READ', 'MMIO_READ failed reply', 'MMIO_READ reply', 'MMIO_WRITE', 'MSI']);
    expect([...new Set(recordVectors.invalid.map((v) => v.error))].sort()).to.deep.equal(['HEADER', 'MALFORMED', 'RANGE', 'TRUNCATED', 'UNKNOWN_CMD']);
  });

  it('100,000 mutated records: only PCIEM_ERR_PROTO_* refusals, and what is accepted encodes back to its bytes', function () {
    let seed = 99;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const slot = new Uint8Array(64);
    const view = new DataView(slot.buffer);
    const out = new DataView(new ArrayBuffer(64));
    let accepted = 0;
    for (let i = 0; i < 100_000; i++) {
      const v = recordVectors.valid[i % recordVectors.valid.length]!;
      slot.fill(0);
      slot.set(hexBytes(v.record));
      for (let k = 0; k <= (i & 3); k++) slot[rnd(40)]! ^= 1 << rnd(8);
      let m: RecordMessage;
      try {
        m = decodeRecord(view, 0, 64);
      } catch (e) {
        expect((e as PciemError).code).to.match(/^PCIEM_ERR_PROTO_(TRUNCATED|UNKNOWN_CMD|HEADER|MALFORMED|RANGE)$/);
        continue;
      }
      accepted++;
      const n = encodeRecord(out, 0, m);
      expect(Buffer.from(out.buffer, 0, n).equals(Buffer.from(slot.subarray(0, n)))).to.equal(true);
    }
    expect(accepted).to.be.greaterThan(1000);
  });

  describe('the C codec (pciem_ring_records.h) against the same vectors', function () {
    let dir = '';

    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'pciem-records-'));
      const valid = recordVectors.valid.map((v) => {
        const b = hexBytes(v.record);
        return `\t{ ${JSON.stringify(v.name)}, ${cBytes(b)}, ${b.length}, ${cMessage(messageFromJson(v.message) as RecordMessage, b.length - 16)} },`;
      });
      const invalid = recordVectors.invalid.map((v) => {
        const b = hexBytes(v.record);
        return `\t{ ${JSON.stringify(v.name)}, ${cBytes(b)}, ${b.length}, PCIEM_WIRE_ERR_${v.error} },`;
      });
      writeFileSync(join(dir, 'records_vectors.h'), [
        '/* Written by test/unit/ring.test.ts from proto/vectors/ring-records.json. */',
        'struct record_vector { const char *name; const uint8_t *rec; size_t len; struct pciem_wire_msg msg; };',
        'struct record_invalid { const char *name; const uint8_t *rec; size_t len; int error; };',
        'static const struct record_vector valid[] = {', ...valid, '};',
        'static const struct record_invalid invalid[] = {', ...invalid, '};', '',
      ].join('\n'));
    });

    after(function () {
      rmSync(dir, { recursive: true, force: true });
    });

    it('builds as pedantic C11 under ASan and UBSan and passes every case', function () {
      const bin = join(dir, 'records_test');
      compileC({
        sources: ['proto/ring/tests/records_test.c', 'proto/generated/wire.c'],
        includes: ['proto/ring', 'proto/generated'],
        flags: ['-std=c11', '-pedantic', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-I', dir],
        libs: ['-lmsgpackc'],
      }, bin);
      const r = spawnSync(bin, [], { encoding: 'utf8' });
      expect(r.signal, r.stdout + r.stderr).to.equal(null);
      expect(r.stdout.split('\n').filter((l) => l.startsWith('not ok')), r.stderr).to.deep.equal([]);
      expect(r.stdout).to.match(/^records: 4 passed, 0 failed$/m);
      expect(r.status).to.equal(0);
    });
  });
});
