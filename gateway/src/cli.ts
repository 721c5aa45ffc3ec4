// The `pciem-gateway` command line. Each subcommand has its own --help;
// a bad flag, value or file is named in the error, with a non-zero exit.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadDescription, type Description } from './description.js';
import { PciemError } from './errors.js';
import { LEVELS, createLogger, type Level } from './log.js';
import { PciemBackend } from './relay/pciem-host.js';
import { GatewayServer } from './relay/server.js';

const PROG = 'pciem-gateway';
export const DEFAULT_SOCKET = '/run/pciem-gateway.sock';

class UsageError extends Error {}

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  help: string;
  run(values: Record<string, string | boolean | undefined>): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  start: {
    summary: 'put model-described cards on this host and relay them to their QEMU models',
    usage: `${PROG} start [--socket PATH] [--device FILE] [--pciem PATH] [--read-timeout-ms N] [--log-level LEVEL]`,
    options: {
      socket: { type: 'string' },
      device: { type: 'string' },
      pciem: { type: 'string' },
      'read-timeout-ms': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Listens on a UNIX socket for QEMU card models (the pciem-bridge object,
-chardev socket,path=SOCKET); each model that connects describes its card,
which the gateway creates on this host through /dev/pciem (pciem.ko) and
relays: driver accesses to the model, the model's DMA and interrupts back.
Runs until SIGINT or SIGTERM; then every card leaves the host.

  --socket PATH          the socket models connect to (default ${DEFAULT_SOCKET})
  --device FILE          a device description (JSON, see gateway/devices/): the
                         card a model must announce, and its relayed regions
  --pciem PATH           the pciem device node (default /dev/pciem)
  --read-timeout-ms N    how long a driver read waits for the model before it
                         reads all-ones (default 1000)
  --log-level LEVEL      ${LEVELS.join(', ')} (default info); logs go to stderr,
                         as JSON lines when stderr is not a terminal
  -h, --help             this text`,
    async run(v) {
      const level = (v['log-level'] as string | undefined) ?? 'info';
      if (!(LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level: '${level}' is not one of ${LEVELS.join(', ')}`);
      const timeout = v['read-timeout-ms'] === undefined ? 1000 : Number(v['read-timeout-ms']);
      if (!Number.isInteger(timeout) || timeout < 1 || timeout > 60_000) throw new UsageError(`--read-timeout-ms: '${String(v['read-timeout-ms'])}' is not a whole number of milliseconds from 1 to 60000`);
      let description: Description | undefined;
      if (v.device !== undefined) description = loadDescription(v.device as string);
      const log = createLogger({ level: level as Level });
      const backend = new PciemBackend({ ...(v.pciem !== undefined ? { path: v.pciem as string } : {}), readTimeoutMs: timeout });
      const server = new GatewayServer({ backend, log, name: `${PROG} 0.1.0`, ...(description ? { description } : {}) });
      await server.listen((v.socket as string | undefined) ?? DEFAULT_SOCKET);
      await new Promise<void>((resolve) => {
        const stop = (sig: string): void => {
          log.info('stopping', { signal: sig });
          resolve();
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      await server.close();
      return 0;
    },
  },
};

function mainHelp(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n');
  return `usage: ${PROG} <command> [options]\n\ncommands:\n${cmds}\n\n'${PROG} <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`${PROG}: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; see ${PROG} --help)\n`);
    return 2;
  }
  try {
    let values: Record<string, string | boolean | undefined>;
    try {
      const parsed = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: false });
      values = parsed.values as Record<string, string | boolean | undefined>;
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^Unknown option/, 'unknown option').replace(/\. To specify.*$/s, ''));
    }
    if (values.help) {
      process.stdout.write(`usage: ${cmd.usage}\n\n${cmd.help}\n`);
      return 0;
    }
    return await cmd.run(values);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${PROG} ${name}: ${e.message}\nusage: ${cmd.usage}\n(${PROG} ${name} --help for details)\n`);
      return 2;
    }
    if (e instanceof PciemError) {
      process.stderr.write(`${PROG} ${name}: ${e.message} [${e.code}]\n`);
      return 1;
    }
    throw e;
  }
}
