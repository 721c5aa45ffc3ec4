// The gateway's QEMU handling (gateway/src/launcher.ts, service.ts) against
// the QEMU we build, with the FakeBackend standing in for /dev/pciem: the
// gateway launches the described model, the card comes up and answers, its
// display is on VNC; QEMU
// killed -> its death is logged, the card leaves the host and, with
// restarts on, comes back; QEMU that keeps dying -> the gateway gives up
// and says so; restarts off -> the gateway ends; a QEMU the user started is
// attached over QMP and left running at the end; a gateway process as
// `status` shows it, `stop` (SIGTERM) removes its sockets and state file
// and ends its QEMU, and SIGKILL to one takes its QEMU down with it.
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadDescription } from '../../gateway/src/description.js';
import { createLogger, type Logger } from '../../gateway/src/log.js';
import { modelArgs } from '../../gateway/src/qemu.js';
import { FakeBackend, type FakeHost } from '../../gateway/src/relay/fake-host.js';
import { GatewayService, type ServiceOptions } from '../../gateway/src/service.js';
import { isAlive, readState, statePaths } from '../../gateway/src/state.js';
import { qemuBinary } from '../lib/card-rig.js';
import { repoRoot } from '../lib/paths.js';
import { ProtoDriver } from '../lib/proto-driver.js';
import { until as waitUntil } from '../lib/until.js';

const DESC = join(repoRoot, 'gateway/devices/protopciem.json');

/** A JSON-lines logger whose records the test can read. */
function memoryLog(): { log: Logger; records: Record<string, unknown>[]; text: () => string } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) records.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ level: 'debug', json: true, stream }), records, text: () => records.map((r) => JSON.stringify(r)).join('\n') };
}

const until = (what: string, f: () => boolean, ms = 20_000): Promise<void> => waitUntil(what, f, ms, 20);

/** `pciem-gateway ARGS`: exit status and stdout. */
function cli(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'pciem-gateway.js'), ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** A process that is there and not a zombie (the gateway's own check, with no start time to compare). */
const alive = (pid: number): boolean => isAlive({ pid, procStart: null });

/** The card works: a fresh driver on the fake host runs an ADD through the model. */
async function cardAnswers(svc: GatewayService, host: FakeHost): Promise<bigint> {
  const session = [...svc.server.sessions].find((s) => s.host === host);
  if (!session) throw new Error('no session for this host');
  // The session learns the model's capabilities before it starts the host device.
  await until('the device started', () => session.modelCapabilities.size > 0);
  const drv = new ProtoDriver(host);
  drv.init(session);
  return (await drv.arith('ADD', 21)).result;
}

describe('the gateway launching QEMU (FakeBackend, the real QEMU card model)', function () {
  this.timeout(120_000);
  let qemu = '';
  let dir = '';
  const services: GatewayService[] = [];
  const children: ChildProcess[] = [];

  before(function () {
    qemu = qemuBinary();
  });

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-launch-'));
  });

  afterEach(async function () {
    for (const s of services.splice(0)) await s.stop();
    for (const c of children.splice(0)) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A gateway service on the FakeBackend; by default it launches the real QEMU with restarts on. */
  function service(backend: FakeBackend, log: Logger, mode: Pick<ServiceOptions, 'launch' | 'attachQmp'> = { launch: { binary: qemu, restart: true, backoffMs: 100 } }): GatewayService {
    const svc = new GatewayService({ backend, log, socket: join(dir, 'gw.sock'), runDir: join(dir, 'run'), description: loadDescription(DESC), ...mode });
    services.push(svc);
    return svc;
  }

  it('launches the model: the card comes up, QMP answers, VNC shows its display, the state file names QEMU', async function () {
    const backend = new FakeBackend(5000);
    const { log } = memoryLog();
    const svc = service(backend, log, { launch: { binary: qemu, restart: true, vnc: '127.0.0.1:57' } });
    const made = backend.nextDevice(60_000);
    await svc.start();
    const host = await made;
    await until('the card on the host', () => [...svc.server.sessions].some((s) => s.state === 'running'));
    expect(await cardAnswers(svc, host)).to.equal(42n);
    expect((await svc.qmp()?.queryStatus())?.status).to.equal('running');
    // QEMU's VNC server greets with its protocol version on port 5900 + 57.
    const greeting = await new Promise<string>((res, rej) => {
      const c = connect(5957, '127.0.0.1');
      c.once('data', (b: Buffer) => {
        c.destroy();
        res(b.toString('latin1'));
      });
      c.once('error', rej);
    });
    expect(greeting).to.match(/^RFB 003\.00\d\n/);
    const st = readState(svc.paths.state);
    expect(st?.qemu).to.deep.include({ mode: 'launched', pid: svc.launcher?.pid, binary: qemu, qmp: svc.paths.qmp, vnc: '127.0.0.1:57' });
    const r = await svc.report();
    expect(r.sessions).to.have.length(1);
    expect(r.sessions[0]).to.deep.include({ device: 'protopciem', state: 'running' });
    expect(r.qemu).to.deep.include({ status: 'running', restarts: 0, lastExit: null });
  });

  it('QEMU killed: logged, the card leaves the host, QEMU is started again and the card comes back', async function () {
    const backend = new FakeBackend(5000);
    const { log, records } = memoryLog();
    const svc = service(backend, log);
    let made = backend.nextDevice(60_000);
    await svc.start();
    const first = await made;
    await until('the card on the host', () => [...svc.server.sessions].some((s) => s.state === 'running'));
    const pid = svc.launcher?.pid ?? 0;
    made = backend.nextDevice(60_000);
    process.kill(pid, 'SIGKILL');
    await until('the card to leave the host', () => first.isClosed);
    const second = await made;
    await until('the card back on the host', () => [...svc.server.sessions].some((s) => s.state === 'running' && s.host === second));
    expect(await cardAnswers(svc, second)).to.equal(42n);
    const died = records.find((r) => r.msg === 'QEMU died');
    expect(died).to.deep.include({ level: 'error', pid, how: 'killed by SIGKILL' });
    expect(records.some((r) => r.msg === 'restarting QEMU')).to.equal(true);
    expect(svc.launcher?.restarts).to.equal(1);
    expect(svc.launcher?.pid).to.be.a('number').and.not.equal(pid);
    await until('the state file to name the new QEMU', () => readState(svc.paths.state)?.qemu.pid === svc.launcher?.pid);
    expect((await svc.report()).qemu).to.deep.include({ restarts: 1, lastExit: 'killed by SIGKILL' });
  });

  it('QEMU that dies again at once, every time: the gateway gives up after N fast failures and says so', async function () {
    // The first run is the real QEMU; every later one fails at start, as a broken install would.
    const fake = join(dir, 'qemu-once');
    writeFileSync(fake, `#!/bin/sh\nif [ -e "${dir}/ran" ]; then echo "qemu: cannot start: test says no" >&2; exit 1; fi\ntouch "${dir}/ran"\nexec "${qemu}" "$@"\n`);
    chmodSync(fake, 0o755);
    const backend = new FakeBackend(5000);
    const { log, records, text } = memoryLog();
    const svc = service(backend, log, { launch: { binary: fake, restart: true, backoffMs: 50, maxFastFailures: 3 } });
    let failed: string | null = null;
    void svc.failed.then((why) => (failed = why));
    const made = backend.nextDevice(60_000);
    await svc.start();
    await made;
    process.kill(svc.launcher?.pid ?? 0, 'SIGKILL');
    await until('the gateway to give up', () => failed !== null);
    expect(failed).to.match(/died within 10000 ms of starting 4 times in a row; giving up/);
    expect(svc.launcher?.state).to.equal('failed');
    // Each attempt's own words are in the log; the delays grew.
    expect(records.filter((r) => r.msg === 'qemu stderr' && r.line === 'qemu: cannot start: test says no')).to.have.length(3);
    const delays = records.filter((r) => r.msg === 'restarting QEMU').map((r) => r.in_ms);
    expect(delays, text()).to.deep.equal([50, 100, 200]);
    expect(records.some((r) => r.msg === 'QEMU is gone for good' && r.level === 'error')).to.equal(true);
  });

  it('restarts off: QEMU dying ends the gateway (failed), logged', async function () {
    const backend = new FakeBackend(5000);
    const { log, records } = memoryLog();
    const svc = service(backend, log, { launch: { binary: qemu, restart: false } });
    const made = backend.nextDevice(60_000);
    await svc.start();
    const host = await made;
    // QEMU ends cleanly on SIGTERM (exit status 0): still not what the gateway asked for.
    process.kill(svc.launcher?.pid ?? 0, 'SIGTERM');
    expect(await svc.failed).to.match(/QEMU exit status 0 \(restarts are off/);
    expect(host.isClosed).to.equal(true);
    expect(records.some((r) => r.msg === 'QEMU died' && r.how === 'exit status 0')).to.equal(true);
  });

  it('a QEMU that does not come up is an error with what it said', async function () {
    const fake = join(dir, 'qemu-broken');
    writeFileSync(fake, '#!/bin/sh\necho "qemu: -device protopciem: no such device" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    const svc = service(new FakeBackend(5000), memoryLog().log, { launch: { binary: fake, restart: true } });
    let err: Error | null = null;
    await svc.start().catch((e: Error) => (err = e));
    expect(err).to.be.an('error');
    expect(String(err)).to.match(/QEMU exit status 1 before it answered on QMP; it said: qemu: -device protopciem: no such device/);
    // Nothing is left in the run directory; the model socket is gone.
    expect(readdirSync(join(dir, 'run'))).to.deep.equal([]);
    expect(existsSync(join(dir, 'gw.sock'))).to.equal(false);
  });

  it('attaches to a QEMU the user started: QMP kept, the card comes up, and stopping leaves that QEMU running', async function () {
    const backend = new FakeBackend(5000);
    const { log } = memoryLog();
    const qmpPath = join(dir, 'user-qmp.sock');
    const svc = service(backend, log, { attachQmp: { path: qmpPath } });
    // The user's QEMU connects to the gateway's socket: listen before it starts.
    const made = backend.nextDevice(60_000);
    const starting = svc.start();
    const desc = loadDescription(DESC);
    const user = spawn(qemu, modelArgs(desc, { socket: join(dir, 'gw.sock'), qmp: qmpPath }), { stdio: 'ignore' });
    children.push(user);
    await starting;
    const host = await made;
    await until('the card on the host', () => [...svc.server.sessions].some((s) => s.state === 'running'));
    expect(await cardAnswers(svc, host)).to.equal(42n);
    await until('QMP to the user\'s QEMU', () => svc.qmp() !== null);
    expect((await svc.report()).qemu).to.deep.include({ mode: 'attached', qmp: qmpPath, status: 'running' });
    await svc.stop();
    expect(alive(user.pid ?? 0)).to.equal(true);
  });

  it('a gateway process: SIGTERM removes its sockets and state and ends its QEMU; SIGKILL takes its QEMU along', async function () {
    const sock = join(dir, 'gw.sock');
    const runDir = join(dir, 'run');
    const script = `
import { FakeBackend } from ${JSON.stringify(join(repoRoot, 'gateway/src/relay/fake-host.ts'))};
import { serve } from ${JSON.stringify(join(repoRoot, 'gateway/src/service.ts'))};
import { loadDescription } from ${JSON.stringify(join(repoRoot, 'gateway/src/description.ts'))};
import { createLogger } from ${JSON.stringify(join(repoRoot, 'gateway/src/log.ts'))};
const code = await serve({ backend: new FakeBackend(5000), log: createLogger({ json: true }), socket: ${JSON.stringify(sock)},
  runDir: ${JSON.stringify(runDir)}, description: loadDescription(${JSON.stringify(DESC)}), launch: { binary: ${JSON.stringify(qemu)}, restart: true } });
process.exit(code);`;
    const startGateway = async (): Promise<{ gw: ChildProcess; qemuPid: number; log: () => string; exit: Promise<number | null> }> => {
      const gw = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(gw);
      let out = '';
      gw.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
      const exit = new Promise<number | null>((res) => gw.on('exit', (c) => res(c)));
      await until('the gateway to run its QEMU', () => out.includes('"msg":"gateway running"'), 60_000).catch((e: Error) => {
        throw new Error(`${e.message}; it said: ${out}`);
      });
      const st = readState(statePaths(runDir, sock).state);
      expect(st?.pid).to.equal(gw.pid);
      const qemuPid = st?.qemu.pid ?? 0;
      expect(alive(qemuPid)).to.equal(true);
      return { gw, qemuPid, log: () => out, exit };
    };

    const a = await startGateway();
    const paths = statePaths(runDir, sock);
    expect([paths.state, paths.control, paths.qmp, sock].map((p) => existsSync(p))).to.deep.equal([true, true, true, true]);
    // What `status` shows of it, then `stop` (SIGTERM) ends it.
    await until('the card up', () => cli('status', '--run-dir', runDir).out.includes('card          protopciem'));
    const st = cli('status', '--run-dir', runDir);
    expect(st.code).to.equal(0);
    expect(st.out).to.contain(`gateway pid ${String(a.gw.pid)}, up`)
      .and.contain(`QEMU          launched, pid ${a.qemuPid}, running; restarts 0`)
      .and.contain(`${qemu}, QMP ${paths.qmp}`)
      .and.match(/card +protopciem from qemu-[\d.]+ pciem-bridge: running at fake/)
      .and.match(/mmio_writes=\d+ mmio_reads=\d+ config_writes=\d+/);
    const stop = cli('stop', '--run-dir', runDir);
    expect(stop.code, stop.out).to.equal(0);
    expect(stop.out).to.match(new RegExp(`stopped gateway pid ${String(a.gw.pid)} `));
    expect(await a.exit).to.equal(0);
    expect(alive(a.qemuPid)).to.equal(false);
    expect(a.log()).to.contain('"msg":"QEMU exited"').and.contain('"msg":"gateway stopped"');
    expect(readdirSync(runDir)).to.deep.equal([]);
    expect(existsSync(sock)).to.equal(false);

    // Killed outright it cleans nothing, but its QEMU does not outlive it (parent-death signal).
    const b = await startGateway();
    b.gw.kill('SIGKILL');
    await b.exit;
    await until('QEMU to die with its gateway', () => !alive(b.qemuPid), 5000);
  });
});
