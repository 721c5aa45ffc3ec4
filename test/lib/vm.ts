// Runs commands and files inside the test VM through guests/vm/run.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { relative } from 'node:path';
import { type KernelVersion, kernelModule, repoRoot } from './paths.js';
import { resultLine, type Result } from './vm-result.js';

export interface VmOptions {
  kernel?: KernelVersion;
  /** Seconds before the VM is killed (the run then resolves with code 124). */
  timeoutSec?: number;
  memoryMiB?: number;
  cpus?: number;
  /** Extra kernel command line. */
  append?: string;
  /** Boot with an Intel IOMMU (intel-iommu device, intel_iommu=on). */
  iommu?: boolean;
  /** A host folder mounted read-write at the same path in the guest. */
  share?: string;
  /** Host 127.0.0.1 ports forwarded to guest TCP ports: [host, guest]. */
  forward?: [number, number][];
  /** Directory the command runs in, inside the VM (default: the checkout). */
  cwd?: string;
  /** Copy the VM's output to this process's stderr as it arrives. */
  echo?: boolean;
}

export interface VmResult {
  /** The command's exit status; 124 on timeout, 125 when the VM could not run it. */
  code: number;
  /** What the command printed (stdout and stderr, interleaved as written). */
  output: string;
  /** What the harness itself said (errors, console tail). */
  harness: string;
}

export const vmRunPath = join(repoRoot, 'guests', 'vm', 'run');

/** The harness arguments for a command: exported so it can be unit-tested. */
export function vmArgs(argv: readonly string[], opts: VmOptions = {}): string[] {
  if (argv.length === 0) throw new TypeError('vmArgs: empty command');
  const args: string[] = [];
  if (opts.kernel !== undefined) args.push('--kernel', opts.kernel);
  if (opts.timeoutSec !== undefined) args.push('--timeout', String(opts.timeoutSec));
  if (opts.memoryMiB !== undefined) args.push('--memory', String(opts.memoryMiB));
  if (opts.cpus !== undefined) args.push('--cpus', String(opts.cpus));
  if (opts.append !== undefined) args.push('--append', opts.append);
  if (opts.iommu === true) args.push('--iommu');
  if (opts.share !== undefined) args.push('--share', opts.share);
  for (const [h, g] of opts.forward ?? []) args.push('--forward', `${h}:${g}`);
  args.push('--', ...argv);
  return args;
}

/** Runs argv inside the VM. Never rejects for a non-zero exit: check `code`. */
export function vmRun(argv: readonly string[], opts: VmOptions = {}): Promise<VmResult> {
  return runHarness(vmArgs(argv, opts), opts);
}

/** Runs raw harness arguments (for tests of the harness's own checks). */
export function runHarness(args: readonly string[], opts: Pick<VmOptions, 'cwd' | 'echo'> = {}): Promise<VmResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(vmRunPath, args, { cwd: opts.cwd ?? repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let harness = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      output += s;
      if (opts.echo === true) process.stderr.write(s);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      harness += s;
      if (opts.echo === true) process.stderr.write(s);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolvePromise({ code: code ?? (signal !== null ? 128 : 255), output, harness });
    });
  });
}

/** Writes a bash script to a host temp folder (visible in the VM) and runs it there. */
export async function vmRunScript(script: string, opts: VmOptions = {}): Promise<VmResult> {
  const dir = await mkdtemp(join(tmpdir(), 'pciem-vm-script-'));
  try {
    const file = join(dir, 'script.sh');
    await writeFile(file, `set -eu\n${script}\n`);
    await chmod(file, 0o755);
    return await vmRun(['/bin/bash', file], opts);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The `export` line a VM script needs to bring up the card chain
 * (guests/demo/chain.ts): the QEMU binary and the 6.12 modules, plus
 * `more` (values are put in as given: shell syntax allowed).
 */
export function chainEnv(qemu: string, more: Record<string, string> = {}): string {
  const vars = {
    QEMU: qemu,
    PCIEM_KO: relative(repoRoot, kernelModule('6.12', 'pciem')),
    PROTOPCIEM_KO: relative(repoRoot, kernelModule('6.12', 'protopciem')),
    ...more,
  };
  return `export ${Object.entries(vars).map(([k, v]) => `${k}=${v}`).join(' ')}`;
}

/** A VM script's last line: prints "dmesg clean" unless the kernel logged an oops, a BUG or a WARNING. */
export const DMESG_CHECK = `dmesg | grep -E 'BUG:|Oops|WARNING:|Call Trace|general protection' || echo "dmesg clean"`;

export interface VmJson {
  /** The program's result line (test/lib/vm-result.ts). */
  res: Result;
  /** What the VM and the harness printed, for assertion messages. */
  output: string;
  /** The kernel logged no oops, BUG or WARNING during the script. */
  dmesgClean: boolean;
}

/**
 * Runs a VM script whose program prints a result line, then DMESG_CHECK.
 * Throws, with everything printed, when the line is missing, reports an
 * error or the script failed.
 */
export async function vmRunJson(script: string, what: string, opts: VmOptions = {}): Promise<VmJson> {
  const r = await vmRunScript(`${script}\n${DMESG_CHECK}`, opts);
  const output = r.output + r.harness;
  const res = resultLine(r.output, what);
  if (r.code !== 0) throw new Error(`${what}: the VM script exited with ${r.code}\n${output}`);
  return { res, output, dmesgClean: r.output.includes('dmesg clean') };
}
