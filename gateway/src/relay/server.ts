// The gateway's model socket: a UNIX socket the QEMU bridge connects to
// (QEMU: -chardev socket,path=...); each connection is one ModelSession,
// one card on the host.
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { PciemError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { HostBackend } from './host.js';
import { ModelSession, type DeviceDescription } from './session.js';

export interface GatewayServerOptions {
  backend: HostBackend;
  log?: Logger;
  name?: string;
  requestTimeoutMs?: number;
  /** The card every model must announce (see SessionOptions.description). */
  description?: DeviceDescription;
  /** Offer version-2 models the shared-memory rings (default true; see SessionOptions.rings). */
  rings?: boolean;
  /** Slots per ring (SessionOptions.ringSlots). */
  ringSlots?: number;
  /** Bytes of the bulk area offered to version-4 models, 0 for none (SessionOptions.bulkBytes). */
  bulkBytes?: number;
}

export class GatewayServer extends EventEmitter {
  readonly sessions = new Set<ModelSession>();
  private server: Server | null = null;
  private path = '';
  private readonly log: Logger;

  constructor(private readonly opts: GatewayServerOptions) {
    super();
    this.log = opts.log ?? silentLogger;
  }

  /** Listens on `path` (a stale socket file left by a dead gateway is replaced; any other file is refused). */
  async listen(path: string): Promise<void> {
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
      else throw new PciemError('PCIEM_ERR_EXISTS', `${path} exists and is not a socket`);
    } catch (e) {
      if (e instanceof PciemError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new PciemError('PCIEM_ERR_IO', `${path}: ${(e as Error).message}`);
    }
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        reject(new PciemError(e.code === 'EADDRINUSE' ? 'PCIEM_ERR_BUSY' : 'PCIEM_ERR_IO', `listening on ${path}: ${e.message}`));
      });
      server.listen(path, () => resolve());
    });
    server.on('error', (e) => this.log.error('model socket error', { error: e.message }));
    this.server = server;
    this.path = path;
    this.log.info('waiting for models', { socket: path });
  }

  private accept(socket: Socket): void {
    const session = new ModelSession(socket, { ...this.opts, log: this.log.child({ conn: this.sessions.size + 1 }) });
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    this.emit('session', session);
  }

  /** Resolves with the next session whose device comes on the host (sessions open now included). */
  nextDevice(timeoutMs = 30_000): Promise<ModelSession> {
    return new Promise((resolve, reject) => {
      const watched = new Map<ModelSession, () => void>();
      const done = (): void => {
        clearTimeout(timer);
        this.off('session', watch);
        for (const [s, h] of watched) s.off('device', h);
      };
      const timer = setTimeout(() => {
        done();
        reject(new PciemError('PCIEM_ERR_TIMEOUT', `no model described a device within ${timeoutMs} ms`));
      }, timeoutMs);
      const watch = (s: ModelSession): void => {
        const h = (): void => {
          done();
          resolve(s);
        };
        watched.set(s, h);
        s.once('device', h);
      };
      for (const s of this.sessions) if (s.state === 'hello' || s.state === 'device') watch(s);
      this.on('session', watch);
    });
  }

  /** Closes every session (their devices leave the host) and the socket. */
  async close(): Promise<void> {
    for (const s of [...this.sessions]) s.close('the gateway is stopping');
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.path) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
  }
}
