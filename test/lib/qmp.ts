// A minimal QMP client for tests (QEMU's docs/interop/qmp-spec.rst): one
// JSON object per line over a UNIX socket, the greeting, then
// qmp_capabilities, then commands matched to replies by "id". Events are
// kept in `events`. Test-only: the gateway has a QMP client of its own.
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface QmpEvent {
  event: string;
  data?: unknown;
}

export class QmpError extends Error {
  override name = 'QmpError';
  constructor(
    readonly command: string,
    /** QMP's error class, e.g. GenericError. */
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${command}: ${errorClass}: ${desc}`);
  }
}

interface Reply {
  return?: unknown;
  error?: { class: string; desc: string };
  id?: number;
  event?: string;
  data?: unknown;
  QMP?: unknown;
}

export class Qmp {
  readonly events: QmpEvent[] = [];
  private buf = '';
  private nextId = 1;
  private readonly waiting = new Map<number, { command: string; resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private greeting: ((r: Reply) => void) | null = null;
  private closedError: Error | null = null;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (s: string) => this.onData(s));
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('QMP connection closed')));
  }

  /** Connects to a QMP socket, retrying while QEMU has not created it yet. */
  static async connect(path: string, timeoutMs = 20_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(sock);
        await qmp.handshake();
        return qmp;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw e;
        await sleep(50);
      }
    }
  }

  private async handshake(): Promise<void> {
    await new Promise<Reply>((resolve) => {
      this.greeting = resolve;
    });
    await this.execute('qmp_capabilities');
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  private onData(s: string): void {
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line === '') continue;
      const msg = JSON.parse(line) as Reply;
      if (msg.QMP !== undefined) {
        this.greeting?.(msg);
        this.greeting = null;
      } else if (msg.event !== undefined) {
        this.events.push({ event: msg.event, data: msg.data });
      } else if (msg.id !== undefined) {
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        w?.resolve(msg);
      }
    }
  }

  /** Runs a command; resolves with its "return", rejects with QmpError. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError !== null) throw this.closedError;
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, { command, resolve, reject });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args !== undefined ? { arguments: args } : {}), id })}\n`);
    });
    if (reply.error !== undefined) throw new QmpError(command, reply.error.class, reply.error.desc);
    return reply.return as T;
  }

  close(): void {
    this.sock.destroy();
  }
}
