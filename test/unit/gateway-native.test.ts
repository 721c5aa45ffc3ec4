// The native addon on the host, without pciem.ko: argument checks, coded
// errors, and event-loop wake-ups through an eventfd (libuv, no busy loop).
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PciemError } from '../../gateway/src/errors.js';
import { native } from '../../gateway/src/native.js';
import { PciemDevice } from '../../gateway/src/pciem/device.js';
import { IOCTL } from '../../gateway/src/pciem/uapi.js';
import { repoRoot } from '../lib/paths.js';

describe('gateway native addon (host)', function () {
  it('refuses bad arguments synchronously with TypeError/RangeError', function () {
    expect(() => native.open(42 as unknown as string, 0)).to.throw(TypeError, /path/);
    expect(() => native.ioctl(-1, 0)).to.throw(RangeError, /fd/);
    expect(() => native.ioctl(0, IOCTL.ADD_BAR, new Uint8Array(3))).to.throw(RangeError, /size does not match/);
    expect(() => native.ioctl(0, IOCTL.ADD_BAR)).to.throw(TypeError, /needs an argument buffer/);
    expect(() => native.mmap(0, 4096, 123)).to.throw(RangeError, /page aligned/);
    expect(() => new native.Poller(0, 7 as unknown as () => void)).to.throw(TypeError, /function/);
  });

  it('reports failed system calls with the errno name', function () {
    let err: unknown;
    try {
      native.ioctl(987654, IOCTL.START);
    } catch (e) {
      err = e;
    }
    expect(err).to.include({ errno: 'EBADF', syscall: 'ioctl' });
  });

  it('ioctlPtr and ioctlAsync check their arguments and report errno the same way', async function () {
    const dma = new Uint8Array(32);
    expect(() => native.ioctlPtr(0, IOCTL.DMA, new Uint8Array(8), 8, new Uint8Array(4))).to.throw(RangeError, /size does not match/);
    expect(() => native.ioctlPtr(0, IOCTL.DMA, dma, 28, new Uint8Array(4))).to.throw(RangeError, /outside arg/);
    expect(() => native.ioctlPtr(987654, IOCTL.DMA, dma, 8, new Uint8Array(4))).to.throw(Error, /Bad file descriptor/);
    // The pointer was stored into the struct before the call.
    expect(new DataView(dma.buffer).getBigUint64(8, true)).to.not.equal(0n);
    expect(() => native.ioctlAsync(0, IOCTL.INJECT_IRQ, new Uint8Array(3), () => undefined)).to.throw(RangeError, /size does not match/);
    expect(() => native.ioctlAsync(0, IOCTL.INJECT_IRQ, new Uint8Array(8), 5 as unknown as () => void)).to.throw(TypeError);
    const err = await new Promise<unknown>((resolve) => native.ioctlAsync(987654, IOCTL.INJECT_IRQ, new Uint8Array(8), (e) => resolve(e)));
    expect(err).to.include({ errno: 'EBADF', syscall: 'ioctl' });
  });

  it('says pciem.ko is not loaded when /dev/pciem is missing (coded error)', function () {
    let err: unknown;
    try {
      PciemDevice.open('/nonexistent/pciem');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(PciemError);
    expect(err).to.include({ code: 'PCIEM_ERR_NOT_LOADED', errno: 'ENOENT' });
  });

  it('maps other open failures to their own codes', function () {
    let err: unknown;
    try {
      PciemDevice.open('/proc/self/status/x');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(PciemError);
    expect((err as PciemError).code).to.equal('PCIEM_ERR_IO');
    expect((err as PciemError).errno).to.equal('ENOTDIR');
  });

  it('wakes the event loop when an eventfd is signalled, once per signal batch, and stops on close', async function () {
    const fd = native.eventfd(0);
    let wakeups = 0;
    let total = 0n;
    const poller = new native.Poller(fd, () => {
      wakeups++;
      total += native.readEventFd(fd);
    });
    native.writeEventFd(fd, 3);
    await new Promise((r) => setTimeout(r, 50));
    native.writeEventFd(fd, 4);
    await new Promise((r) => setTimeout(r, 50));
    expect(total).to.equal(7n);
    expect(wakeups).to.equal(2);
    poller.close();
    native.writeEventFd(fd, 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(wakeups).to.equal(2);
    expect(native.readEventFd(fd)).to.equal(1n);
    expect(native.readEventFd(fd)).to.equal(0n);
    native.close(fd);
  });

  it('a poller callback that throws is an uncaught exception with its stack, not an abort', function () {
    // In a child: the exception ends that process.
    const script = `
      import { native } from './gateway/src/native.ts';
      process.on('uncaughtException', (e) => { console.log('uncaught: ' + e.message); process.exit(7); });
      const fd = native.eventfd(0);
      new native.Poller(fd, () => { native.readEventFd(fd); throw new Error('COMPLETE_READ went wrong'); });
      native.writeEventFd(fd, 1);
      setTimeout(() => process.exit(0), 5000);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 30_000 });
    expect(r.signal, r.stderr).to.equal(null);
    expect(r.status, r.stderr).to.equal(7);
    expect(r.stdout).to.contain('uncaught: COMPLETE_READ went wrong');
  });

  it('maps a file shared, and munmap() detaches the buffer so nothing can reach it afterwards', function () {
    const dir = mkdtempSync(join(tmpdir(), 'pciem-mmap-'));
    try {
      const file = join(dir, 'f');
      writeFileSync(file, Buffer.alloc(8192));
      const fd = native.open(file, native.O_RDWR);
      const ab = native.mmap(fd, 8192, 4096);
      const view = new Uint8Array(ab);
      view[0] = 0xab;
      view[4095] = 0xcd;
      expect(readFileSync(file)[4096]).to.equal(0xab);
      expect(readFileSync(file)[8191]).to.equal(0xcd);
      native.munmap(ab);
      expect(view.length).to.equal(0);
      expect(ab.byteLength).to.equal(0);
      native.munmap(ab);
      expect(() => native.munmap(new ArrayBuffer(8))).to.throw(TypeError, /not a mapping/);
      native.close(fd);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sendFds/recvFds: bytes and descriptors across a UNIX socket, in stream order', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'pciem-fds-'));
    const path = join(dir, 's');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    // The receiving end reads the socket itself: Node must never start reading it.
    const rx = createConnection({ path });
    rx.pause();
    const tx = await accepted;
    const fdOf = (s: Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
    const memfd = native.memfdCreate('pciem-fds-test', 4096);
    const ev = native.eventfd(0);
    try {
      await new Promise((r) => setTimeout(r, 20));
      tx.write(Buffer.from('before|'));
      await new Promise((r) => setTimeout(r, 20));
      expect(tx.writableLength).to.equal(0);
      expect(native.sendFds(fdOf(tx), Buffer.from('with|'), [memfd, ev])).to.equal(5);
      tx.write(Buffer.from('after'));
      await new Promise((r) => setTimeout(r, 20));
      const got: Buffer[] = [];
      const fds: number[] = [];
      for (let r = native.recvFds(fdOf(rx), 4096); r !== null; r = native.recvFds(fdOf(rx), 4096)) {
        got.push(r.bytes);
        fds.push(...r.fds);
        if (r.bytes.length === 0) break;
      }
      expect(Buffer.concat(got).toString()).to.equal('before|with|after');
      expect(fds).to.have.length(2);
      // They are the same files: the memfd's bytes and the eventfd's counter are shared.
      const a = new Uint8Array(native.mmap(memfd, 4096, 0));
      const b = new Uint8Array(native.mmap(fds[0]!, 4096, 0));
      a[100] = 0x5a;
      expect(b[100]).to.equal(0x5a);
      native.writeEventFd(ev, 3);
      expect(native.readEventFd(fds[1]!)).to.equal(3n);
      native.munmap(a.buffer);
      native.munmap(b.buffer);
      for (const fd of fds) native.close(fd);
      expect(native.recvFds(fdOf(rx), 16)).to.equal(null);
      expect(() => native.sendFds(fdOf(tx), Buffer.alloc(0), [ev])).to.throw(RangeError);
      expect(() => native.sendFds(fdOf(tx), Buffer.alloc(1), [])).to.throw(RangeError);
      expect(() => native.sendFds(fdOf(tx), Buffer.alloc(1), [-1])).to.throw(RangeError);
      expect(() => native.sendFds(fdOf(tx), Buffer.alloc(1), [987654])).to.throw(Error).with.property('errno', 'EBADF');
    } finally {
      native.close(memfd);
      native.close(ev);
      rx.destroy();
      tx.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
