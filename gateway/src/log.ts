// The gateway's logger: levels, one line per record; human-readable on a
// terminal, one JSON object per line otherwise (for journald, files, tests).
//
//   const log = createLogger({ level: 'info' });
//   log.warn('model sent garbage', { reason: 'PROTO_MALFORMED' });

export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

export type Fields = Record<string, string | number | bigint | boolean | null | undefined>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger that adds `fields` to every record. */
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** JSON lines (default: when the stream is not a TTY). */
  json?: boolean;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

function plain(v: Fields[string]): string | number | boolean | null {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  return v ?? null;
}

export function createLogger(opts: LoggerOptions = {}, bound: Fields = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const json = opts.json ?? !stream.isTTY;
  const min = LEVELS.indexOf(opts.level ?? 'info');
  const emit = (level: Level, msg: string, fields: Fields = {}): void => {
    if (LEVELS.indexOf(level) < min) return;
    const all: Fields = { ...bound, ...fields };
    let line: string;
    if (json) {
      const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg };
      for (const [k, v] of Object.entries(all)) if (v !== undefined) rec[k] = plain(v);
      line = JSON.stringify(rec);
    } else {
      const extra = Object.entries(all)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${String(plain(v))}`)
        .join(' ');
      line = `${level.padEnd(5)} ${msg}${extra ? ` ${extra}` : ''}`;
    }
    stream.write(`${line}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger(opts, { ...bound, ...f }),
  };
}

/** A logger that drops everything (for library callers that pass none). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
