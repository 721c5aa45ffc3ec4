// Shared by the spec generators (protopciem.ts, wire.ts): where the checkout
// is, the error a broken spec raises, the JSON accessors that check types as
// they read, markdown tables and the generated blocks of a document.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Json = Record<string, unknown>;

export interface Output {
  path: string;
  content: string;
}

export class SpecError extends Error {
  override name = 'SpecError';
}

/** Replaces every generated block of `doc`; each block must exist exactly once. */
export function applyDocBlocks(doc: string, blocks: Record<string, string>): string {
  const seen = new Set<string>();
  const out = doc.replace(blockRe, (_m, open: string, name: string, _body: string, close: string) => {
    const body = blocks[name];
    if (body === undefined) throw new SpecError(`docs: unknown generated block '${name}'`);
    if (seen.has(name)) throw new SpecError(`docs: generated block '${name}' appears twice`);
    seen.add(name);
    return `${open}${body}\n${close}`;
  });
  const missing = Object.keys(blocks).filter((k) => !seen.has(k));
  if (missing.length > 0) throw new SpecError(`docs: no generated block for ${missing.join(', ')}`);
  return out;
}

export function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new SpecError(`${where}: expected an array`);
  return v;
}

export const blockRe = /(<!-- generated:([a-z0-9-]+) -->\n)([\s\S]*?)(<!-- \/generated:\2 -->)/g;

export function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function obj(v: unknown, where: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SpecError(`${where}: expected an object`);
  return v as Json;
}

export function str(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new SpecError(`${where}: expected a string`);
  return v;
}

export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

/** Splits text into lines of at most `width` characters. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A #define writer for a C header: appends `#define PREFIX_NAME value` lines
 * to `out`, names padded to line up, refusing a name defined twice (names
 * are built from several parts of a spec, so they could clash).
 */
export function cDefiner(prefix: string, width: number, out: string[]): (name: string, value: string) => void {
  const defined = new Set<string>();
  return (name, value) => {
    const full = `${prefix}_${name}`;
    if (defined.has(full)) throw new SpecError(`two things would be #defined as ${full}`);
    defined.add(full);
    out.push(`#define ${full.padEnd(width - 8)} ${value}`);
  };
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Writes the outputs whose content changed, or with `check` only names them.
 * Returns the exit status: 1 when the spec is broken or a check finds stale
 * files, else 0.
 */
export function syncOutputs(produce: () => Output[], opts: { check: boolean; source: string; generator: string }): number {
  let stale: Output[];
  try {
    stale = produce().filter((o) => readOrEmpty(o.path) !== o.content);
  } catch (e) {
    if (e instanceof SpecError) {
      process.stderr.write(`${opts.source}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  for (const o of stale) {
    if (opts.check) {
      process.stderr.write(`out of date: ${relative(repoRoot, o.path)} (run: tsx ${opts.generator})\n`);
    } else {
      writeFileSync(o.path, o.content);
      process.stderr.write(`wrote ${relative(repoRoot, o.path)}\n`);
    }
  }
  return opts.check && stale.length > 0 ? 1 : 0;
}
