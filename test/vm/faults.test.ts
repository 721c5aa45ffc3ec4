// Faults in the 6.12 VM (issue 7): the gateway run as users run it
// (`pciem-gateway start --device ... --qemu ... --restart-qemu`, its own
// process) with the real protopciem.ko on its card; then QEMU killed while
// a driver call is in flight (the call fails within 2 s, the death is
// logged), QEMU started again (the card comes back, the driver rebinds,
// the next call succeeds), garbage on the model socket (that connection
// dropped with a logged reason, the card keeps working), and the gateway
// killed (the card leaves the bus; its QEMU dies with it). No oops, BUG or
// WARNING in dmesg throughout. test/vm/scripts/faults-card.ts runs in the VM.
import { expect } from 'chai';
import { join } from 'node:path';
import { CPrograms, compileC } from '../lib/ctest.js';
import { qemuBinary } from '../lib/card-rig.js';
import { chainEnv, vmRunJson } from '../lib/vm.js';

describe('faults in the 6.12 VM: QEMU killed, restarted, garbage, gateway killed', function () {
  this.timeout(900_000);
  let progs: CPrograms;
  let qemu = '';
  let res: Record<string, unknown> = {};
  let output = '';
  let dmesgClean = false;

  before(async function () {
    progs = new CPrograms('faults');
    compileC({ sources: ['guests/ppctl/ppctl.c'], includes: ['kernel/include/uapi'] }, join(progs.dir, 'ppctl'));
    qemu = qemuBinary();
    ({ res, output, dmesgClean } = await vmRunJson(`${chainEnv(qemu, { PPCTL: join(progs.dir, 'ppctl') })}
node --import tsx test/vm/scripts/faults-card.ts`, 'the fault script in the VM', { timeoutSec: 700, memoryMiB: 3072, cpus: 2 }));
  });

  after(function () {
    progs?.remove();
  });

  it('the card works through the gateway process before any fault', function () {
    expect(res.before, output).to.equal('40');
  });

  it('QEMU killed mid-call: the driver call fails within 2 s (not a hang); the gateway logs the death', function () {
    expect(res.benchRunningBeforeKill, output).to.equal(true);
    expect(res.callExit, output).to.equal(1);
    expect(res.callError, output).to.match(/ppctl: ARITH: No such device/);
    expect(res.callFailedMs, output).to.be.below(2000);
    expect(res.deathLogged, output).to.equal(true);
    console.log(`      the call failed ${String(res.callFailedMs)} ms after SIGKILL: ${String(res.callError)}`);
  });

  it('--restart-qemu: the card comes back, protopciem.ko binds again, the next call succeeds', function () {
    expect(res.after, output).to.equal('42');
    expect(res.statusCode, output).to.equal(0);
    expect(res.restarts, output).to.equal(1);
    expect(res.newQemuPid, output).to.be.a('number').and.not.equal(res.qemuPid);
    expect(res.sessions, output).to.deep.equal(['protopciem:running']);
    console.log(`      card back and bound ${String(res.rebindMs)} ms after QEMU died`);
  });

  it('garbage on the model socket: that connection is dropped with a logged reason; the card keeps working', function () {
    expect(res.garbageDropped, output).to.equal(true);
    expect(res.garbageLogged, output).to.equal(true);
    expect(res.afterGarbage, output).to.equal('49');
    expect(res.gatewayAliveAfterGarbage, output).to.equal(true);
  });

  it('the gateway killed: the card leaves the bus, its QEMU dies with it, status finds only stale state', function () {
    expect(res.removedAfterGatewayKill, output).to.equal(true);
    expect(res.devNodeGone, output).to.equal(true);
    expect(res.qemuGoneWithGateway, output).to.equal(true);
    const st = res.statusAfterKill as { code: number; out: string };
    expect(st.code, output).to.equal(3);
    expect(st.out, output).to.match(/removed stale state of gateway pid \d+/).and.match(/no gateway is running/);
    expect(res.modulesUnloaded, output).to.equal(true);
    console.log(`      card off the bus ${String(res.removedMs)} ms after the gateway's SIGKILL`);
  });

  it('no oops, BUG or WARNING in dmesg', function () {
    expect(dmesgClean, output).to.equal(true);
  });
});
