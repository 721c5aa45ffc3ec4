// The gateway's QMP client (gateway/src/qmp.ts) against the QEMU we build,
// and against test-only peers for what QEMU does not do on request: never
// answering, and sending garbage.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PciemError } from '../../gateway/src/errors.js';
import { Qmp, type QmpEvent } from '../../gateway/src/qmp.js';
import { qemuBinary } from '../lib/card-rig.js';

const GREETING = `${JSON.stringify({ QMP: { version: { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }, capabilities: ['oob'] } })}\n`;

/** The rejection of `p`, which must reject. */
async function rejection(p: Promise<unknown>): Promise<PciemError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e, 'expected a rejection').to.be.instanceOf(PciemError);
  return e as PciemError;
}

interface Qemu {
  child: ChildProcess;
  exited: Promise<void>;
  stderr(): string;
}

function startQemu(binary: string, qmpArg: string, extra: string[] = []): Qemu {
  const child = spawn(binary, ['-nodefaults', '-display', 'none', ...extra, '-qmp', qmpArg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, exited, stderr: () => stderr };
}

/** A test-only QMP peer on a UNIX socket: `serve` is called with each connection. */
async function peer(path: string, serve: (s: Socket) => void): Promise<Server> {
  const server = createServer(serve);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

/** Greets, accepts qmp_capabilities, then hands each later command to `onCommand`. */
function qmpPeer(onCommand: (s: Socket, cmd: { execute: string; id: number }) => void): (s: Socket) => void {
  return (s) => {
    s.on('error', () => undefined);
    s.write(GREETING);
    let buf = '';
    s.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: number };
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities') s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
        else onCommand(s, cmd);
      }
    });
  };
}

describe('QMP client (gateway/src/qmp.ts)', function () {
  this.timeout(120_000);
  let binary = '';
  let dir = '';
  const cleanup: (() => void | Promise<void>)[] = [];

  before(function () {
    binary = qemuBinary();
  });
  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-qmp-'));
  });
  afterEach(async function () {
    for (const f of cleanup.splice(0).reverse()) await f();
    rmSync(dir, { recursive: true, force: true });
  });

  /** QEMU with its QMP on a UNIX socket in `dir`, connected. */
  async function qemuWithQmp(extra: string[] = []): Promise<{ qemu: Qemu; qmp: Qmp }> {
    const path = join(dir, `qmp${cleanup.length}.sock`);
    const qemu = startQemu(binary, `unix:${path},server=on,wait=off`, extra);
    cleanup.push(async () => {
      qemu.child.kill('SIGKILL');
      await qemu.exited;
    });
    const qmp = await Qmp.connect({ path }, { timeoutMs: 20_000 });
    cleanup.push(() => qmp.close());
    return { qemu, qmp };
  }

  describe('with QEMU', function () {
    it('negotiates: the greeting names QEMU 10.0 and commands run afterwards', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'none']);
      expect(qmp.greeting.version.qemu).to.include({ major: 10, minor: 0 });
      expect(qmp.greeting.capabilities).to.be.an('array');
      expect(qmp.closed).to.equal(false);
      // qmp_capabilities is accepted once only: QEMU says we are past negotiation.
      const e = await rejection(qmp.execute('qmp_capabilities'));
      expect(e.code).to.equal('PCIEM_ERR_QMP');
      expect(e.message).to.match(/^qmp_capabilities: CommandNotFound: /);
    });

    it('connects over TCP, retrying while QEMU is not listening yet', async function () {
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const port = (probe.address() as AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      const connecting = Qmp.connect({ host: '127.0.0.1', port }, { timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 300));
      const qemu = startQemu(binary, `tcp:127.0.0.1:${port},server=on,wait=off`, ['-machine', 'none']);
      cleanup.push(async () => {
        qemu.child.kill('SIGKILL');
        await qemu.exited;
      });
      const qmp = await connecting;
      cleanup.push(() => qmp.close());
      expect(await qmp.queryStatus()).to.deep.equal({ running: true, status: 'running' });
    });

    it('query-status: running, then paused after stop', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'none']);
      expect(await qmp.queryStatus()).to.deep.equal({ running: true, status: 'running' });
      await qmp.execute('stop');
      expect(await qmp.queryStatus()).to.deep.equal({ running: false, status: 'paused' });
    });

    it("screendump: the card's display as a 640x480 P6 PPM; PNG is asked for as PNG", async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'x-remote,vfio-user=off', '-device', 'protopciem,id=card0']);
      const ppm = join(dir, 'shot.ppm');
      await qmp.screendump(ppm, { device: 'card0', format: 'ppm' });
      const b = readFileSync(ppm);
      const hdr = 'P6\n640 480\n255\n';
      expect(b.subarray(0, hdr.length).toString('latin1')).to.equal(hdr);
      expect(b.length).to.equal(hdr.length + 640 * 480 * 3);
      const png = join(dir, 'shot.png');
      // Our build may lack libpng; then QEMU refuses by name, which shows the format reached it.
      const r = await qmp.screendump(png, { format: 'png' }).then(
        () => readFileSync(png).subarray(0, 8).toString('latin1'),
        (e: unknown) => (e instanceof PciemError && e.code === 'PCIEM_ERR_QMP' ? e.message : e),
      );
      expect(r).to.be.oneOf(['\x89PNG\r\n\x1a\n', 'screendump: GenericError: Enable PNG support with libpng for screendump']);
    });

    it('screendump of a device that does not exist: PCIEM_ERR_QMP with QEMU\'s class and desc', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'x-remote,vfio-user=off', '-device', 'protopciem,id=card0']);
      const e = await rejection(qmp.screendump(join(dir, 'x.ppm'), { device: 'nosuchcard' }));
      expect(e.code).to.equal('PCIEM_ERR_QMP');
      expect(e.message).to.match(/^screendump: (GenericError|DeviceNotFound): .*nosuchcard/);
    });

    it('qom-get: the type of the card and of the machine', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'x-remote,vfio-user=off', '-device', 'protopciem,id=card0']);
      expect(await qmp.qomGet<string>('/machine/peripheral/card0', 'type')).to.equal('protopciem');
      expect(await qmp.qomGet<string>('/machine', 'type')).to.equal('x-remote-machine');
      const e = await rejection(qmp.qomGet('/machine/peripheral/card0', 'no-such-property'));
      expect(e.code).to.equal('PCIEM_ERR_QMP');
    });

    it('query-pci: the card with its IDs and BAR0; machine none has no PCI bus', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'x-remote,vfio-user=off', '-device', 'protopciem,id=card0']);
      const buses = await qmp.queryPci();
      const card = buses.flatMap((b) => b.devices).find((d) => d.qdev_id === 'card0');
      expect(card, JSON.stringify(buses)).to.not.equal(undefined);
      expect(card?.id).to.include({ vendor: 0x1f0c, device: 0x0001 });
      expect(card?.class_info.class).to.be.a('number');
      expect(card?.regions.find((r) => r.bar === 0)).to.include({ type: 'memory', size: 64 * 1024 });
      qmp.close();
      const none = await qemuWithQmp(['-machine', 'none']);
      expect(await none.qmp.queryPci()).to.deep.equal([]);
    });

    it('events: stop and cont give STOP and RESUME; quit gives SHUTDOWN and closes', async function () {
      const { qemu, qmp } = await qemuWithQmp(['-machine', 'none']);
      const seen: string[] = [];
      qmp.on('event', (e: QmpEvent) => seen.push(e.event));
      const stop = qmp.waitEvent('STOP', 5000);
      await qmp.execute('stop');
      expect((await stop).timestamp?.seconds).to.be.a('number');
      const resume = qmp.waitEvent('RESUME', 5000);
      await qmp.execute('cont');
      await resume;
      const shutdown = qmp.waitEvent('SHUTDOWN', 5000);
      const closed = new Promise<PciemError>((resolve) => qmp.once('close', resolve));
      await qmp.quit({ timeoutMs: 10_000 });
      expect((await shutdown).data).to.include({ guest: false, reason: 'host-qmp-quit' });
      expect((await closed).code).to.equal('PCIEM_ERR_QMP_CLOSED');
      expect(seen).to.deep.equal(['STOP', 'RESUME', 'SHUTDOWN']);
      expect(qmp.closed).to.equal(true);
      expect((await rejection(qmp.queryStatus())).code).to.equal('PCIEM_ERR_QMP_CLOSED');
      await qemu.exited;
    });

    it('waitEvent times out with PCIEM_ERR_TIMEOUT when the event does not come', async function () {
      const { qmp } = await qemuWithQmp(['-machine', 'none']);
      const e = await rejection(qmp.waitEvent('STOP', 100));
      expect(e.code).to.equal('PCIEM_ERR_TIMEOUT');
    });

    it('a command on a stopped QEMU times out with PCIEM_ERR_TIMEOUT; the client stays usable', async function () {
      const { qemu, qmp } = await qemuWithQmp(['-machine', 'none']);
      qemu.child.kill('SIGSTOP');
      const t0 = Date.now();
      const e = await rejection(qmp.queryStatus({ timeoutMs: 200 }));
      expect(e.code).to.equal('PCIEM_ERR_TIMEOUT');
      expect(Date.now() - t0).to.be.below(2000);
      qemu.child.kill('SIGCONT');
      // The late reply to the timed-out command is dropped, not given to this one.
      expect(await qmp.qomGet<string>('/machine', 'type')).to.equal('none-machine');
    });

    it('QEMU killed with SIGKILL mid-command: the pending calls reject with PCIEM_ERR_QMP_CLOSED within 2 s', async function () {
      const { qemu, qmp } = await qemuWithQmp(['-machine', 'x-remote,vfio-user=off', '-device', 'protopciem,id=card0']);
      // Stopped, QEMU cannot answer: the commands are surely pending when it dies.
      qemu.child.kill('SIGSTOP');
      const calls = [qmp.queryStatus({ timeoutMs: 60_000 }), qmp.screendump(join(dir, 'x.ppm'), {}, { timeoutMs: 60_000 }), qmp.waitEvent('SHUTDOWN', 60_000)];
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      qemu.child.kill('SIGKILL');
      const errors = await Promise.all(calls.map(rejection));
      expect(Date.now() - t0).to.be.below(2000);
      for (const e of errors) expect(e.code).to.equal('PCIEM_ERR_QMP_CLOSED');
      expect(errors[0]?.message).to.match(/^query-status: /);
    });

    it('connect times out with PCIEM_ERR_TIMEOUT when nothing ever listens', async function () {
      const t0 = Date.now();
      const e = await rejection(Qmp.connect({ path: join(dir, 'nobody.sock') }, { timeoutMs: 300 }));
      expect(e.code).to.equal('PCIEM_ERR_TIMEOUT');
      expect(Date.now() - t0).to.be.within(250, 2000);
    });

    it('connect abandoned through its signal stops retrying at once: PCIEM_ERR_QMP_CLOSED, no timer left', async function () {
      const ac = new AbortController();
      const t0 = Date.now();
      const attempt = rejection(Qmp.connect({ path: join(dir, 'nobody-yet.sock') }, { timeoutMs: 20_000, signal: ac.signal }));
      setTimeout(() => ac.abort(), 200);
      const e = await attempt;
      expect(e.code).to.equal('PCIEM_ERR_QMP_CLOSED');
      expect(e.message).to.contain('connect abandoned');
      expect(Date.now() - t0).to.be.within(150, 1000);
      // Its retry loop is over: a socket that appears now is never connected to.
      let accepted = 0;
      const late = createServer(() => accepted++);
      await new Promise<void>((r) => late.listen(join(dir, 'nobody-yet.sock'), r));
      await new Promise((r) => setTimeout(r, 300));
      await new Promise<void>((r) => late.close(() => r()));
      expect(accepted).to.equal(0);
    });
  });

  describe('with a test peer', function () {
    async function connectTo(serve: (s: Socket) => void, opts: { timeoutMs?: number; maxLineLength?: number } = {}): Promise<Qmp> {
      const path = join(dir, 'peer.sock');
      const server = await peer(path, serve);
      cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const qmp = await Qmp.connect({ path }, { timeoutMs: 2000, ...opts });
      cleanup.push(() => qmp.close());
      return qmp;
    }

    it('a command that is never answered times out with PCIEM_ERR_TIMEOUT', async function () {
      const qmp = await connectTo(qmpPeer(() => undefined));
      const t0 = Date.now();
      const e = await rejection(qmp.execute('query-status', undefined, { timeoutMs: 50 }));
      expect(e.code).to.equal('PCIEM_ERR_TIMEOUT');
      expect(Date.now() - t0).to.be.below(1000);
      expect(qmp.closed).to.equal(false);
    });

    it('a peer that never greets: connect fails with PCIEM_ERR_TIMEOUT', async function () {
      const path = join(dir, 'mute.sock');
      const server = await peer(path, (s) => s.on('error', () => undefined));
      cleanup.push(() => {
        server.close();
      });
      const e = await rejection(Qmp.connect({ path }, { timeoutMs: 200 }));
      expect(e.code).to.equal('PCIEM_ERR_TIMEOUT');
    });

    for (const [what, garbage] of [
      ['a line that is not JSON', 'this is not json\n'],
      ['a JSON array', '[1,2,3]\n'],
      ['an object that is neither reply nor event', '{"hello": 1}\n'],
      ['an error without class and desc', '{"error": "bad", "id": 2}\n'],
    ] as const) {
      it(`a peer that answers with ${what}: PCIEM_ERR_QMP_MALFORMED, closed, nothing crashes`, async function () {
        const qmp = await connectTo(qmpPeer((s) => s.write(garbage)));
        const closed = new Promise<PciemError>((resolve) => qmp.once('close', resolve));
        const e = await rejection(qmp.queryStatus());
        expect(e.code).to.equal('PCIEM_ERR_QMP_MALFORMED');
        expect((await closed).code).to.equal('PCIEM_ERR_QMP_MALFORMED');
        expect(qmp.closed).to.equal(true);
        expect((await rejection(qmp.queryStatus())).code).to.equal('PCIEM_ERR_QMP_CLOSED');
      });
    }

    it('a line above maxLineLength: PCIEM_ERR_QMP_MALFORMED, closed', async function () {
      const qmp = await connectTo(
        qmpPeer((s) => s.write('x'.repeat(10_000))),
        { maxLineLength: 4096 },
      );
      expect((await rejection(qmp.queryStatus())).code).to.equal('PCIEM_ERR_QMP_MALFORMED');
      expect(qmp.closed).to.equal(true);
    });

    it('a peer whose first line is not a greeting: connect fails with PCIEM_ERR_QMP_MALFORMED', async function () {
      const path = join(dir, 'bad.sock');
      const server = await peer(path, (s) => {
        s.on('error', () => undefined);
        s.write('{"return": {}}\n');
      });
      cleanup.push(() => {
        server.close();
      });
      const e = await rejection(Qmp.connect({ path }, { timeoutMs: 2000 }));
      expect(e.code).to.equal('PCIEM_ERR_QMP_MALFORMED');
    });

    it('a peer that closes mid-command: PCIEM_ERR_QMP_CLOSED at once', async function () {
      const qmp = await connectTo(qmpPeer((s) => s.destroy()));
      const e = await rejection(qmp.execute('query-status', undefined, { timeoutMs: 60_000 }));
      expect(e.code).to.equal('PCIEM_ERR_QMP_CLOSED');
    });

    it('events between replies reach listeners; replies are matched by id', async function () {
      const qmp = await connectTo(
        qmpPeer((s, cmd) => {
          s.write(`${JSON.stringify({ event: 'X', data: { n: cmd.id }, timestamp: { seconds: 1, microseconds: 2 } })}\n`);
          s.write(`${JSON.stringify({ return: { echo: cmd.execute }, id: cmd.id })}\n`);
        }),
      );
      const events: QmpEvent[] = [];
      qmp.on('event', (e) => events.push(e));
      const [a, b] = await Promise.all([qmp.execute('a'), qmp.execute('b')]);
      expect(a).to.deep.equal({ echo: 'a' });
      expect(b).to.deep.equal({ echo: 'b' });
      expect(events.map((e) => e.event)).to.deep.equal(['X', 'X']);
    });
  });
});
