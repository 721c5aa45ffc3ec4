// Runs inside the VM: the gateway as users run it (`pciem-gateway start
// --device gateway/devices/protopciem.json --qemu $QEMU --restart-qemu`, a
// separate process) with protopciem.ko bound to its card, then the faults
// of issue 7, one after the other:
//   1. QEMU killed (SIGKILL) while a driver call is in flight;
//   2. the gateway starts QEMU again: the card comes back, the driver binds;
//   3. garbage on the gateway's model socket from another client;
//   4. the gateway killed (SIGKILL): the card leaves the bus.
// Prints one JSON line of what it saw; test/vm/faults.test.ts judges it.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, PPCTL (paths).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { cardInSysfs, drv, env, sh, sleep, step, waitFor } from '../../../guests/demo/chain.js';
import { isAlive, type GatewayState, type StatusReport } from '../../../gateway/src/state.js';
import { reportResult } from '../../lib/vm-result.js';

const RUN = '/tmp/pciem-run';
const SOCK = '/tmp/gw.sock';
const LOG = '/tmp/gw.log';
const result: Record<string, unknown> = {};

const ppctl = async (...args: string[]): Promise<string> => (await drv(env('PPCTL'), args)).trim();
const gatewayLog = (): string => readFileSync(LOG, 'utf8');
const alive = (pid: number): boolean => isAlive({ pid, procStart: null });

function state(): GatewayState {
  const f = readdirSync(RUN).find((n) => n.endsWith('.json'));
  if (f === undefined) throw new Error(`no state file in ${RUN}`);
  return JSON.parse(readFileSync(`${RUN}/${f}`, 'utf8')) as GatewayState;
}

/** `pciem-gateway ARGS` to completion: exit status and output. */
function cli(...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const c = spawn(process.execPath, ['bin/pciem-gateway.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (out += b.toString()));
    c.on('exit', (code) => res({ code, out }));
  });
}

async function cardBound(ms: number): Promise<string> {
  await waitFor('the card on the bus', () => cardInSysfs() !== null, ms);
  await waitFor('/dev/protopciem', () => existsSync('/dev/protopciem'), 30_000);
  return cardInSysfs() ?? '';
}

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  const logFd = openSync(LOG, 'w');
  const gw: ChildProcess = spawn(process.execPath, ['bin/pciem-gateway.js', 'start', '--device', 'gateway/devices/protopciem.json',
    '--qemu', env('QEMU'), '--restart-qemu', '--socket', SOCK, '--run-dir', RUN, '--read-timeout-ms', '2000'], { stdio: ['ignore', logFd, logFd] });
  let gwExit: string | null = null;
  gw.on('exit', (code, sig) => (gwExit = String(code ?? sig)));
  try {
    await waitFor('the card on the bus', () => cardInSysfs() !== null, 180_000);
    sh('insmod', [env('PROTOPCIEM_KO')]);
    result.bdf = await cardBound(30_000);
    result.before = await ppctl('arith', 'add', '20');
    step(`card bound at ${String(result.bdf)}, ADD 20 -> ${String(result.before)}`);

    // 1. QEMU killed while the driver waits for the card: a run of ADDs in one process.
    const qemuPid = state().qemu.pid ?? 0;
    result.qemuPid = qemuPid;
    const bench = spawn(env('PPCTL'), ['bench', '10000000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let benchErr = '';
    bench.stderr.on('data', (b: Buffer) => (benchErr += b.toString()));
    const benchDone = new Promise<number | null>((res) => bench.on('exit', (code) => res(code)));
    await sleep(1500);
    result.benchRunningBeforeKill = bench.exitCode === null;
    const t0 = Date.now();
    process.kill(qemuPid, 'SIGKILL');
    const benchTimeout = sleep(10_000).then(() => 'hung');
    const benchCode = await Promise.race([benchDone, benchTimeout]);
    result.callFailedMs = Date.now() - t0;
    result.callExit = benchCode;
    result.callError = benchErr.trim();
    step(`QEMU killed: the driver call ended in ${String(result.callFailedMs)} ms (${benchErr.trim()})`);
    await waitFor('the gateway to log QEMU\'s death', () => gatewayLog().includes('"msg":"QEMU died"'), 10_000);
    const died = gatewayLog().split('\n').find((l) => l.includes('"msg":"QEMU died"')) ?? '';
    result.deathLogged = died.includes(`"pid":${qemuPid}`) && died.includes('killed by SIGKILL');

    // 2. The gateway starts QEMU again; the card comes back and protopciem.ko binds to it.
    const t1 = Date.now();
    // The old card was removed before QEMU's death reached the driver's caller; the new QEMU's pid marks the restart.
    await waitFor('a new QEMU', () => ![null, qemuPid].includes(state().qemu.pid), 30_000);
    result.rebindBdf = await cardBound(180_000);
    result.rebindMs = Date.now() - t1;
    result.after = await ppctl('arith', 'add', '21');
    const st = await cli('status', '--run-dir', RUN, '--json');
    const report = (JSON.parse(st.out) as { gateways: StatusReport[] }).gateways[0];
    result.statusCode = st.code;
    result.restarts = report?.qemu.restarts;
    result.newQemuPid = report?.qemu.pid;
    result.sessions = report?.sessions.map((s) => `${s.device}:${s.state}`);
    step(`card back after ${String(result.rebindMs)} ms; ADD 21 -> ${String(result.after)}`);

    // 3. Garbage on the model socket from another client: that connection is dropped, the card carries on.
    const junk = Buffer.concat([Buffer.alloc(64, 0xff), Buffer.from('this is not the pciem wire protocol\n')]);
    result.garbageDropped = await new Promise<boolean>((res) => {
      const c = connect(SOCK, () => c.write(junk));
      const timer = setTimeout(() => {
        c.destroy();
        res(false);
      }, 10_000);
      c.on('error', () => undefined);
      c.on('close', () => {
        clearTimeout(timer);
        res(true);
      });
      c.resume();
    });
    await waitFor('the refusal in the log', () => gatewayLog().includes('unreadable stream'), 10_000).catch(() => undefined);
    result.garbageLogged = gatewayLog().split('\n').some((l) => l.includes('"msg":"model session closed"') && l.includes('unreadable stream'));
    result.afterGarbage = await ppctl('arith', 'mul', '7');
    result.gatewayAliveAfterGarbage = gwExit === null;
    step(`garbage: dropped ${String(result.garbageDropped)}; MUL 7 -> ${String(result.afterGarbage)}`);

    // 4. The gateway killed outright: /dev/pciem closes, the card leaves the bus, its QEMU dies with it.
    const lastQemu = state().qemu.pid ?? 0;
    gw.kill('SIGKILL');
    const t2 = Date.now();
    await waitFor('the card to leave the bus', () => cardInSysfs() === null, 20_000).catch(() => undefined);
    result.removedAfterGatewayKill = cardInSysfs() === null;
    result.removedMs = Date.now() - t2;
    await waitFor('QEMU to die with the gateway', () => !alive(lastQemu), 10_000).catch(() => undefined);
    result.qemuGoneWithGateway = !alive(lastQemu);
    result.devNodeGone = !existsSync('/dev/protopciem');
    const after = await cli('status', '--run-dir', RUN);
    result.statusAfterKill = { code: after.code, out: after.out.trim() };
    step(`gateway killed: card gone in ${String(result.removedMs)} ms`);

    sh('rmmod', ['protopciem']);
    sh('rmmod', ['pciem']);
    result.modulesUnloaded = true;
  } finally {
    if (gwExit === null) gw.kill('SIGKILL');
  }
}

reportResult(main, result, () => console.error(gatewayLog()));
