// Inside the VM (`make bench`): the doorbell -> model -> MSI round trip as
// protopciem.ko sees it (ppctl bench: N ARITH ioctls, each a doorbell write,
// the card's interrupt, register reads), first against the minimal C card
// on /dev/pciem (kernel/tests/protopciem_card.c, the baseline), then
// through the gateway and the QEMU model. Same VM, same run. Prints one
// JSON line: {"c": {p50_us, p99_us}, "gateway": {...}}.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, PPCTL, CARD, N.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { drv, env, sh, startChain, step, stopChain, waitFor } from '../../guests/demo/chain.js';

const n = env('N');

async function cCard(): Promise<unknown> {
  const card = spawn(env('CARD'), [], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  card.stdout.on('data', (b: Buffer) => (out += b.toString()));
  try {
    await waitFor('the C card', () => out.includes('ready'), 30_000);
    await drv('insmod', [env('PROTOPCIEM_KO')]);
    await waitFor('/dev/protopciem', () => existsSync('/dev/protopciem'), 20_000);
    step('C card bound');
    const r = JSON.parse(await drv(env('PPCTL'), ['bench', n])) as unknown;
    await drv('rmmod', ['protopciem']);
    return r;
  } finally {
    card.kill('SIGTERM');
    await waitFor('the C card to exit', () => card.exitCode !== null || card.signalCode !== null, 10_000);
  }
}

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  const c = await cCard();
  const chain = await startChain();
  let g: unknown;
  try {
    g = JSON.parse(await drv(env('PPCTL'), ['bench', n])) as unknown;
  } finally {
    await stopChain(chain);
  }
  console.log(JSON.stringify({ c, gateway: g }));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.log(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
    process.exit(1);
  },
);
