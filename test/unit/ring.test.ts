// The hot path's SPSC rings (proto/ring/pciem_ring.h, gateway/src/ring.ts):
// the C tests, then a C process and this node process on one memfd ring each
// way, 1,000,000 sequenced messages, wrapping past 2^32, full and empty
// under concurrency. Rates are printed, never asserted (benchmarks are `make bench`).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PciemError } from '../../gateway/src/errors.js';
import { native } from '../../gateway/src/native.js';
import { formatRing, RING_HDR_SIZE, ringBytes, RingConsumer, RingProducer } from '../../gateway/src/ring.js';
import { compileC, cTestSuite } from '../lib/ctest.js';

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
