// A minimal client of QEMU's qtest protocol (system/qtest.c in QEMU's
// source), for tests that drive a device model with no guest code at all:
// QEMU runs with `-accel qtest -qtest stdio`, this side writes one command
// per line on its stdin and reads "OK ..." / "FAIL ..." answers, in order,
// from its stdout; "IRQ raise N" / "IRQ lower N" lines arrive in between
// once `irq_intercept_in` is on. QEMU's stderr (logs, traces) is kept.
// Test-only: the gateway has a QMP client of its own.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';

export type Address = number | bigint;

export interface IrqEvent {
  raised: boolean;
  line: number;
}

export class QTestError extends Error {
  override name = 'QTestError';
}

interface Pending {
  command: string;
  resolve: (answer: string) => void;
  reject: (err: Error) => void;
}

function addr(a: Address): string {
  if (typeof a === 'number' && (!Number.isSafeInteger(a) || a < 0)) throw new RangeError(`not an address: ${a}`);
  return `0x${a.toString(16)}`;
}

// QEMU does not exit when its qtest stream closes, so whatever this
// process leaves running when it exits (a failed test, Ctrl-C) is killed.
const live = new Set<ChildProcessWithoutNullStreams>();
const killAll = (): void => {
  for (const child of live) child.kill('SIGKILL');
};
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killAll();
    // Then die of the signal as before, unless someone else handles it.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

export class QTest {
  /** Everything QEMU wrote to stderr so far. */
  stderr = '';
  /** IRQ lines seen since irq_intercept_in, in order. */
  readonly irqs: IrqEvent[] = [];
  /** Settles when QEMU exits, with its exit code (null after a signal). */
  readonly exited: Promise<number | null>;

  private out = '';
  private readonly pending: Pending[] = [];
  private exitCode: number | null | undefined;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    live.add(child);
    child.stdout.setEncoding('utf8').on('data', (s: string) => this.onStdout(s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        live.delete(child);
        this.exitCode = code;
        this.failAll(new QTestError(`QEMU exited (code ${String(code)}); stderr:\n${this.stderr.slice(-2000)}`));
        resolve(code);
      });
    });
    child.on('error', (err) => this.failAll(err));
    // QEMU may exit while a command is being written.
    child.stdin.on('error', () => undefined);
  }

  /** Starts `binary` in qtest mode with `args` (which must not use stdio otherwise). */
  static start(binary: string, args: readonly string[]): QTest {
    const child = spawn(binary, ['-accel', 'qtest', '-qtest', 'stdio', '-qtest-log', '/dev/null', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    return new QTest(child);
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private failAll(err: Error): void {
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  private onStdout(s: string): void {
    this.out += s;
    let nl: number;
    while ((nl = this.out.indexOf('\n')) >= 0) {
      const line = this.out.slice(0, nl);
      this.out = this.out.slice(nl + 1);
      const irq = /^IRQ (raise|lower) (\d+)$/.exec(line);
      if (irq !== null) {
        this.irqs.push({ raised: irq[1] === 'raise', line: Number(irq[2]) });
        continue;
      }
      const p = this.pending.shift();
      if (p === undefined) continue;
      if (line === 'OK' || line.startsWith('OK ')) {
        p.resolve(line.slice(3));
      } else {
        p.reject(new QTestError(`qtest '${p.command.slice(0, 80)}': ${line}`));
      }
    }
  }

  /**
   * Sends commands in one write, so QEMU handles them all before its main
   * loop runs anything else (bottom halves, timers); resolves with each
   * answer after "OK".
   */
  batch(commands: readonly string[]): Promise<string[]> {
    if (!this.running) return Promise.reject(new QTestError('QEMU is not running'));
    const answers = commands.map(
      (command) => new Promise<string>((resolve, reject) => this.pending.push({ command, resolve, reject })),
    );
    this.child.stdin.write(commands.map((c) => `${c}\n`).join(''));
    return Promise.all(answers);
  }

  async command(command: string): Promise<string> {
    const [answer] = await this.batch([command]);
    return answer ?? '';
  }

  async readl(a: Address): Promise<number> {
    return Number(BigInt(await this.command(`readl ${addr(a)}`)));
  }

  async readq(a: Address): Promise<bigint> {
    return BigInt(await this.command(`readq ${addr(a)}`));
  }

  async writeb(a: Address, v: number): Promise<void> {
    await this.command(`writeb ${addr(a)} 0x${v.toString(16)}`);
  }

  async writew(a: Address, v: number): Promise<void> {
    await this.command(`writew ${addr(a)} 0x${v.toString(16)}`);
  }

  async readw(a: Address): Promise<number> {
    return Number(BigInt(await this.command(`readw ${addr(a)}`)));
  }

  async readb(a: Address): Promise<number> {
    return Number(BigInt(await this.command(`readb ${addr(a)}`)));
  }

  async writel(a: Address, v: number): Promise<void> {
    await this.command(`writel ${addr(a)} 0x${(v >>> 0).toString(16)}`);
  }

  async writeq(a: Address, v: bigint): Promise<void> {
    await this.command(`writeq ${addr(a)} 0x${BigInt.asUintN(64, v).toString(16)}`);
  }

  /** Reads guest memory in one command. */
  async read(a: Address, size: number): Promise<Buffer> {
    const data = Buffer.from(await this.command(`b64read ${addr(a)} 0x${size.toString(16)}`), 'base64');
    if (data.length !== size) throw new QTestError(`b64read returned ${data.length} bytes, not ${size}`);
    return data;
  }

  /** Writes guest memory in one command. */
  async write(a: Address, data: Uint8Array): Promise<void> {
    await this.command(`b64write ${addr(a)} 0x${data.length.toString(16)} ${Buffer.from(data).toString('base64')}`);
  }

  async memset(a: Address, size: number, byte: number): Promise<void> {
    await this.command(`memset ${addr(a)} 0x${size.toString(16)} 0x${byte.toString(16)}`);
  }

  /** Reports the gpio-in lines of the device at a QOM path as IRQ events. */
  async irqInterceptIn(qomPath: string): Promise<void> {
    await this.command(`irq_intercept_in ${qomPath}`);
  }

  /** Stops QEMU: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
