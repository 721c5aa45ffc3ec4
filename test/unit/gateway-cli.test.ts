// The pciem-gateway command line and device descriptions: --help, unknown
// commands and flags, missing and invalid description files (each rule),
// each with a clear message and a non-zero exit; and the gateway refusing a
// model that is not the described card.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PciemError } from '../../gateway/src/errors.js';
import { loadDescription, mismatch, parseDescription } from '../../gateway/src/description.js';
import { repoRoot } from '../lib/paths.js';

const BIN = join(repoRoot, 'bin', 'pciem-gateway.js');

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
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
    const start = run('start', '--help');
    expect(start.status).to.equal(0);
    expect(start.stdout).to.match(/--socket PATH/).and.match(/--device FILE/).and.match(/SIGTERM/);
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
    const r = run('start', '--socket', '/nonexistent-dir/gw.sock');
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/listening on \/nonexistent-dir\/gw\.sock/);
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
