// The pciem-gateway command line and device descriptions: --help, unknown
// commands and flags, missing and invalid description files (each rule),
// bad QEMU binaries and flag combinations, each with a clear message and a
// non-zero exit; status and stop with no gateway, with stale state, and
// with a gateway running (no QEMU, no kernel needed); and the gateway
// refusing a model that is not the described card.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PciemError } from '../../gateway/src/errors.js';
import { loadDescription, mismatch, parseDescription } from '../../gateway/src/description.js';
import { parseQmpEndpoint } from '../../gateway/src/launcher.js';
import { STATE_VERSION, defaultRunDir, processStart, statePaths, type GatewayState } from '../../gateway/src/state.js';
import { repoRoot } from '../lib/paths.js';

const BIN = join(repoRoot, 'bin', 'pciem-gateway.js');
const PROTOPCIEM = join(repoRoot, 'gateway/devices/protopciem.json');

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return runEnv({}, ...args);
}

function runEnv(env: Record<string, string>, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A state file as a gateway writes it, for `socket`, claiming process `pid`. */
function fakeState(runDir: string, socket: string, pid: number, procStart: string | null): GatewayState {
  const p = statePaths(runDir, socket);
  const s: GatewayState = {
    version: STATE_VERSION, pid, procStart, startedAt: new Date().toISOString(), socket, control: p.control, device: null,
    qemu: { mode: 'launched', pid: null, binary: '/bin/false', qmp: p.qmp, vnc: null }, dashboard: null,
  };
  writeFileSync(p.state, JSON.stringify(s));
  writeFileSync(p.control, '');
  return s;
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

const BASE = {
  name: 'card', vendor_id: '0x1f0c', device_id: '0x0001', class_code: '0x0b0000',
  bars: [{ index: 0, size: '0x10000', flags: 4 }],
};

function refusal(json: unknown): string {
  try {
    parseDescription(json, 'd.json');
  } catch (e) {
    if (e instanceof PciemError) {
      expect(e.code).to.equal('PCIEM_ERR_INVALID');
      return e.message;
    }
    throw e;
  }
  return 'accepted';
}

describe('pciem-gateway command line', function () {
  this.timeout(60_000);

  it('--help lists the commands; each command has its own --help', function () {
    const top = run('--help');
    expect(top.status).to.equal(0);
    expect(top.stdout).to.match(/usage: pciem-gateway <command>/).and.match(/start/);
    expect(top.stdout).to.match(/status/).and.match(/stop/);
    const start = run('start', '--help');
    expect(start.status).to.equal(0);
    expect(start.stdout).to.match(/--socket PATH/).and.match(/--device FILE/).and.match(/SIGTERM/)
      .and.match(/--qemu BINARY/).and.match(/--attach-qmp QMP/).and.match(/--restart-qemu/).and.match(/--vnc HOST:N/).and.match(/--run-dir DIR/).and.match(/--dashboard PORT/);
    const status = run('status', '-h');
    expect(status.status).to.equal(0);
    expect(status.stdout).to.match(/usage: pciem-gateway status/).and.match(/--json/).and.match(/3 if none/);
    const stop = run('stop', '--help');
    expect(stop.status).to.equal(0);
    expect(stop.stdout).to.match(/usage: pciem-gateway stop/).and.match(/--timeout-ms N/).and.match(/SIGTERM/);
  });

  it('no command prints the usage and exits 2; an unknown command is named', function () {
    expect(run().status).to.equal(2);
    const r = run('launch');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/unknown command 'launch'.*start/);
  });

  it('an unknown flag or bad value is named, with the usage, exit 2', function () {
    let r = run('start', '--sockt', '/tmp/x');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/unknown option '--sockt'/).and.match(/usage: pciem-gateway start/);
    r = run('start', '--log-level', 'loud');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--log-level: 'loud' is not one of debug, info, warn, error/);
    r = run('start', '--read-timeout-ms=soon');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--read-timeout-ms: 'soon' is not a whole number/);
    r = run('status', '--verbose');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/unknown option '--verbose'/).and.match(/usage: pciem-gateway status/);
    r = run('stop', '--force');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/unknown option '--force'/).and.match(/usage: pciem-gateway stop/);
    r = run('stop', '--timeout-ms', '-5');
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--timeout-ms/);
  });

  it('flags that do not go together, or need what is missing, are named (exit 2)', function () {
    const cases: [string[], RegExp][] = [
      [['--device', PROTOPCIEM, '--qemu', '/bin/true', '--attach-qmp', '/tmp/q.sock'], /--qemu and --attach-qmp: one way/],
      [['--attach-qmp', '/tmp/q.sock', '--no-qemu'], /--attach-qmp and --no-qemu/],
      [['--no-qemu', '--restart-qemu'], /--restart-qemu: only when the gateway launches QEMU/],
      [['--attach-qmp', 'localhost:4444', '--vnc', ':1'], /--vnc: only when the gateway launches QEMU/],
      [['--qemu', '/bin/true'], /--qemu: needs --device FILE/],
      [['--device', PROTOPCIEM, '--vnc', '5900'], /--vnc: '5900' is not HOST:DISPLAY/],
      [['--device', PROTOPCIEM, '--qemu-grace-ms', 'long'], /--qemu-grace-ms: 'long' is not a whole number/],
      [['--attach-qmp', ''], /--attach-qmp: '' is not a UNIX socket path or HOST:PORT/],
      [['--no-qemu', '--dashboard', '70000'], /--dashboard: '70000' is not a whole number of port from 0 to 65535/],
    ];
    for (const [args, re] of cases) {
      const r = run('start', ...args);
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(re).and.match(/usage: pciem-gateway start/);
    }
    const dir = mkdtempSync(join(tmpdir(), 'pciem-cli-'));
    try {
      writeFileSync(join(dir, 'noqemu.json'), JSON.stringify(BASE));
      const r = run('start', '--device', join(dir, 'noqemu.json'), '--restart-qemu');
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(/--restart-qemu: .*noqemu\.json has no "qemu" section/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a QEMU binary that is not there or cannot run, or no pciem.ko, is named before anything starts (exit 1)', function () {
    const dir = mkdtempSync(join(tmpdir(), 'pciem-cli-'));
    try {
      let r = run('start', '--device', PROTOPCIEM, '--qemu', '/nonexistent/qemu-system-x86_64', '--run-dir', dir, '--socket', join(dir, 'gw.sock'));
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/--qemu \/nonexistent\/qemu-system-x86_64: no such file/);
      writeFileSync(join(dir, 'qemu'), '#!/bin/sh\n');
      chmodSync(join(dir, 'qemu'), 0o644);
      r = run('start', '--device', PROTOPCIEM, '--qemu', join(dir, 'qemu'), '--run-dir', dir);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/--qemu .*qemu: not executable/);
      r = run('start', '--device', PROTOPCIEM, '--qemu', dir, '--run-dir', dir);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/: not a file/);
      // The default is the binary 'make qemu' builds; not built, start says how to get it.
      r = runEnv({ PCIEM_CACHE: join(dir, 'empty-cache') }, 'start', '--device', PROTOPCIEM, '--run-dir', dir);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/the default QEMU .*empty-cache\/qemu\/.*qemu-system-x86_64: no such file \(run 'make qemu'/);
      expect(readdirSync(dir).filter((n) => n.endsWith('.json'))).to.deep.equal([]);
      // A card to launch and no pciem.ko: said before QEMU is started.
      r = run('start', '--device', PROTOPCIEM, '--qemu', '/bin/true', '--pciem', join(dir, 'pciem'), '--run-dir', dir);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/--pciem .*\/pciem: no such device node: is pciem\.ko loaded\? \[PCIEM_ERR_NOT_LOADED\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses QMP addresses: a path, HOST:PORT, [IPv6]:PORT', function () {
    expect(parseQmpEndpoint('/run/qmp.sock')).to.deep.equal({ path: '/run/qmp.sock' });
    expect(parseQmpEndpoint('localhost:4444')).to.deep.equal({ host: 'localhost', port: 4444 });
    expect(parseQmpEndpoint('[::1]:4444')).to.deep.equal({ host: '::1', port: 4444 });
    expect(parseQmpEndpoint('qmp.sock')).to.deep.equal({ path: 'qmp.sock' });
    expect(parseQmpEndpoint('host:0')).to.equal(null);
    expect(parseQmpEndpoint('')).to.equal(null);
  });


  it('a missing or unreadable description file is named, exit 1', function () {
    const r = run('start', '--device', '/nonexistent/card.json');
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/\/nonexistent\/card\.json: no such file/);
    const dir = mkdtempSync(join(tmpdir(), 'pciem-cli-'));
    try {
      writeFileSync(join(dir, 'bad.json'), '{ "name": ');
      const b = run('start', '--device', join(dir, 'bad.json'));
      expect(b.status).to.equal(1);
      expect(b.stderr).to.match(/bad\.json: not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without pciem.ko, start says so and exits 1 (after a model connects, not before)', function () {
    // Listening needs no kernel; only creating a card does. A socket path that
    // cannot be created fails at once with its reason.
    const dir = mkdtempSync(join(tmpdir(), 'pciem-cli-'));
    try {
      const r = run('start', '--socket', '/nonexistent-dir/gw.sock', '--run-dir', dir);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.match(/listening on \/nonexistent-dir\/gw\.sock/);
      // What it had made in the run directory is gone again.
      expect(readdirSync(dir)).to.deep.equal([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pciem-gateway status and stop', function () {
  this.timeout(60_000);
  let dir = '';

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-run-'));
  });

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('the run directory defaults to $XDG_RUNTIME_DIR/pciem-gateway, else /run/pciem-gateway', function () {
    expect(defaultRunDir({ XDG_RUNTIME_DIR: '/run/user/1000' })).to.equal('/run/user/1000/pciem-gateway');
    expect(defaultRunDir({})).to.equal('/run/pciem-gateway');
  });

  it('with no gateway running: status and stop say so and exit 3', function () {
    let r = run('status', '--run-dir', dir);
    expect(r.status).to.equal(3);
    expect(r.stdout).to.match(/no gateway is running \(run directory .*pciem-run-/);
    r = run('status', '--run-dir', join(dir, 'never-made'), '--json');
    expect(r.status).to.equal(3);
    expect(JSON.parse(r.stdout)).to.deep.include({ gateways: [], stale: [] });
    r = run('stop', '--run-dir', dir, '--socket', join(dir, 'gw.sock'));
    expect(r.status).to.equal(3);
    expect(r.stdout).to.match(/no gateway is running on .*gw\.sock/);
  });

  it('state left by a dead gateway (or a reused pid) is reported, removed, and does not count', function () {
    const dead = fakeState(dir, join(dir, 'a.sock'), deadPid(), null);
    // A live pid that is some other process: its start time differs.
    const reused = fakeState(dir, join(dir, 'b.sock'), process.pid, '1');
    writeFileSync(join(dir, 'junk.json'), '{"not": "a state file"}');
    let r = run('status', '--run-dir', dir);
    expect(r.status).to.equal(3);
    expect(r.stdout).to.match(new RegExp(`removed stale state of gateway pid ${dead.pid} \\(socket .*a\\.sock\\): the process is gone`));
    expect(r.stdout).to.match(new RegExp(`removed stale state of gateway pid ${reused.pid} `));
    expect(r.stdout).to.match(/ignored .*junk\.json: not a pciem-gateway state file/);
    expect(readdirSync(dir).sort()).to.deep.equal(['junk.json']);
    fakeState(dir, join(dir, 'a.sock'), deadPid(), null);
    r = run('stop', '--run-dir', dir, '--socket', join(dir, 'a.sock'));
    expect(r.status).to.equal(3);
    expect(r.stdout).to.match(/removed stale state/).and.match(/no gateway is running/);
    expect(existsSync(statePaths(dir, join(dir, 'a.sock')).state)).to.equal(false);
  });

  it('start refuses a socket a live gateway serves, and names it; status counts a gateway that does not answer', function () {
    const sock = join(dir, 'gw.sock');
    fakeState(dir, sock, process.pid, processStart(process.pid));
    const r = run('start', '--socket', sock, '--run-dir', dir, '--no-qemu');
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(new RegExp(`a gateway \\(pid ${process.pid}\\) already serves .*gw\\.sock`));
    expect(existsSync(statePaths(dir, sock).state)).to.equal(true);
    // A live gateway whose control socket does not answer still counts as running, and says why.
    const st = run('status', '--run-dir', dir);
    expect(st.status).to.equal(0);
    expect(st.stdout).to.match(new RegExp(`gateway pid ${process.pid} \\(socket .*gw\\.sock\\) is running but does not answer: control socket .*ECONNREFUSED`));
  });

  it('a running gateway: status shows it and its dashboard (text and JSON), stop ends it and everything it made is gone', async function () {
    const sock = join(dir, 'gw.sock');
    const gw = spawn(process.execPath, [BIN, 'start', '--no-qemu', '--socket', sock, '--run-dir', dir, '--dashboard', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    gw.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
    const exited = new Promise<number | null>((res) => gw.on('exit', (c) => res(c)));
    try {
      const paths = statePaths(dir, sock);
      for (let i = 0; i < 200 && !log.includes('gateway running'); i++) await new Promise((res) => setTimeout(res, 50));
      expect(log).to.contain('gateway running');
      let r = run('status', '--run-dir', dir);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.match(new RegExp(`gateway pid ${gw.pid}, up`)).and.contain(`model socket  ${sock}`)
        .and.match(/QEMU +not managed/).and.match(/card +none yet/).and.match(/dashboard +http:\/\/127\.0\.0\.1:\d+\/\?token=\w+/);
      r = run('status', '--run-dir', dir, '--socket', sock, '--json');
      expect(r.status).to.equal(0);
      const j = JSON.parse(r.stdout) as { gateways: { pid: number; socket: string; sessions: unknown[]; qemu: { mode: string }; dashboard: string }[] };
      expect(j.gateways).to.have.length(1);
      expect(j.gateways[0]).to.deep.include({ pid: gw.pid, socket: sock, sessions: [] });
      expect(j.gateways[0]?.qemu.mode).to.equal('none');
      // The dashboard answers with its token, and only with it.
      const url = j.gateways[0]?.dashboard ?? '';
      expect((await fetch(url)).status).to.equal(200);
      expect((await fetch(url.replace(/token=\w+/, 'token=wrong'))).status).to.not.equal(200);
      expect(existsSync(paths.state) && existsSync(paths.control) && existsSync(sock)).to.equal(true);
      r = run('stop', '--run-dir', dir);
      expect(r.status, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout).to.match(new RegExp(`stopped gateway pid ${gw.pid} \\(.*gw\\.sock\\) in [0-9.]+ s$`, 'm'));
      expect(await exited).to.equal(0);
      expect(log).to.match(/"signal":"SIGTERM"/).and.contain('gateway stopped');
      expect(readdirSync(dir)).to.deep.equal([]);
      r = run('status', '--run-dir', dir);
      expect(r.status).to.equal(3);
      let closed = false;
      await fetch(url).catch(() => (closed = true));
      expect(closed, 'the dashboard port is closed').to.equal(true);
    } finally {
      gw.kill('SIGKILL');
    }
  });
});

describe('device descriptions', function () {
  it('the shipped protopciem.json is valid and is the card of docs/protopciem.md', function () {
    const d = loadDescription(join(repoRoot, 'gateway/devices/protopciem.json'));
    expect(d.device).to.include({ vendor_id: 0x1f0c, device_id: 0x0001, class_code: 0x0b0000, msi_vectors: 1 });
    expect(d.device.bars).to.deep.equal([{ index: 0, size: 0x10000n, flags: 4 }, { index: 2, size: 0x100000n, flags: 12 }]);
    expect(d.qemu).to.deep.equal({ device: 'protopciem', properties: { msi: 'on' } });
    expect(d.shadow).to.deep.equal([{ bar: 0, offset: 0n, size: 0x40n }, { bar: 0, offset: 0x1000n, size: 0x40n }]);
    expect(d.device.read_via_model).to.deep.equal([{ bar: 2, offset: 0n, size: 0x100000n }]);
  });

  it('fills the optional fields with defaults', function () {
    const d = parseDescription(BASE, 'd.json');
    expect(d.device).to.include({ subsystem_vendor_id: 0, revision: 0, interrupt_pin: 1, msi_vectors: 0, msix_vectors: 0, caps: 0 });
    expect(d.device.traced).to.deep.equal([]);
    expect(d.qemu).to.equal(null);
  });

  it('refuses each broken rule with the file and the field', function () {
    const cases: [unknown, RegExp][] = [
      [[], /d\.json: must be a JSON object/],
      [Object.fromEntries(Object.entries(BASE).filter(([k]) => k !== 'vendor_id')), /'vendor_id' is missing/],
      [{ ...BASE, vendor_id: 0x10000 }, /vendor_id/],
      [{ ...BASE, class_code: '0x1000000' }, /class_code/],
      [{ ...BASE, bars: [{ index: 0, size: '0x3000', flags: 4 }] }, /size.*power of two|pow/i],
      [{ ...BASE, bars: [{ index: 6, size: '0x1000', flags: 0 }] }, /index/],
      [{ ...BASE, bars: [{ index: 0, size: '0x1000', flags: 0 }, { index: 0, size: '0x1000', flags: 0 }] }, /bars/],
      [{ ...BASE, msi_vectors: 3 }, /msi_vectors: 3 is not one of/],
      [{ ...BASE, msi_flags: 1 }, /msi_flags/],
      [{ ...BASE, msix_vectors: 4, msix_bar: 2 }, /msix_bar|BAR 2/],
      [{ ...BASE, traced: [{ bar: 1, offset: 0, size: 16 }] }, /traced\[0\]: BAR 1 is not described/],
      [{ ...BASE, read_via_model: [{ bar: 0, offset: '0xfff0', size: '0x20' }] }, /read_via_model/],
      [{ ...BASE, colour: 'red' }, /no field 'colour'/],
      [{ ...BASE, qemu: 'protopciem' }, /'qemu' must be an object/],
      [{ ...BASE, shadow: {} }, /'shadow' must be an array/],
      [{ ...BASE, shadow: [{ bar: 1, offset: 0, size: 4 }] }, /shadow\[0\]: BAR 1 is not described/],
      [{ ...BASE, shadow: [{ bar: 0, offset: 2, size: 4 }] }, /shadow\[0\]: offset and size must be multiples of 4/],
      [{ ...BASE, shadow: [{ bar: 0, offset: '0xfff0', size: '0x20' }] }, /shadow\[0\]: ends at 0x10010, past BAR 0/],
      [{ ...BASE, shadow: [{ bar: 0, offset: 0, size: 8, colour: 1 }] }, /shadow\[0\]: no field 'colour'/],
      [{ ...BASE, read_via_model: [{ bar: 0, offset: 0, size: 16 }], shadow: [{ bar: 0, offset: 8, size: 8 }] }, /overlaps a read_via_model region/],
      [{ ...BASE, qemu: { device: 'bad device' } }, /qemu\.device/],
      [{ ...BASE, qemu: { device: 'x', properties: { msi: 'on,x=1' } } }, /qemu\.properties\.msi/],
      [{ ...BASE, qemu: { device: 'x', extra: 1 } }, /qemu: no field 'extra'/],
      [{ ...BASE, qemu: { device: 'x', properties: [] } }, /qemu\.properties must be an object/],
      [{ ...BASE, qemu: { device: 'x', properties: { 'a b': 1 } } }, /qemu\.properties: 'a b' is not a property name/],
      [{ ...BASE, name: 'x'.repeat(300) }, /name: 300 characters \(at most 64\)/],
      [{ ...BASE, name: 5 }, /name: not a string/],
      [{ ...BASE, name: '' }, /'name' is empty/],
      [{ ...BASE, name: '   ' }, /'name' is empty/],
      [{ ...BASE, vendor_id: 'acme' }, /vendor_id: not an integer/],
      [{ ...BASE, revision: 256 }, /revision: 256 does not fit u8/],
      [{ ...BASE, subsystem_id: -1 }, /subsystem_id: -1 does not fit u16/],
      [{ ...BASE, interrupt_pin: 5 }, /interrupt_pin: 5 is outside 0\.\.4/],
      [{ ...BASE, caps: 0x8000 }, /caps: unknown bits 0x8000/],
      [{ ...BASE, msix_vectors: 4096 }, /msix_vectors: 4096 is outside 0\.\.2048/],
      [{ ...BASE, bars: [{ index: 0, size: '0x10000', flags: 99 }] }, /bars\[0\]\.flags: unknown bits/],
      [{ ...BASE, traced: [{ bar: 0, offset: '0xfff0', size: '0x20' }] }, /traced\[0\]: ends beyond BAR 0/],
      [{ ...BASE, read_via_model: [{ bar: 3, offset: 0, size: 16 }] }, /read_via_model\[0\]: BAR 3 is not described/],
      [{ ...BASE, shadow: [{ bar: 0, offset: -4, size: 4 }] }, /shadow\[0\]: bar, offset and size are whole numbers/],
    ];
    for (const [json, re] of cases) expect(refusal(json), JSON.stringify(json)).to.match(re);
  });

  it('mismatch() names what differs between the model and the description', function () {
    const d = parseDescription(BASE, 'd.json').device;
    expect(mismatch(d, d)).to.equal(null);
    expect(mismatch(d, { ...d, device_id: 2 })).to.match(/device_id 0x0002.*0x0001/);
    expect(mismatch(d, { ...d, bars: [{ index: 0, size: 0x20000n, flags: 4 }] })).to.match(/BARs/);
  });
});
