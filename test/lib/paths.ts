// Where things are, for tests: the checkout, the cache, built artefacts.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const cacheDir =
  process.env.PCIEM_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pciem-gateway');

export type KernelVersion = '6.12' | '6.1';
export const kernelVersions: readonly KernelVersion[] = ['6.12', '6.1'];

/** The release string (uname -r) of a cached Debian kernel. */
export function kernelRelease(kernel: KernelVersion): string {
  return readFileSync(join(cacheDir, 'kernels', kernel, 'release'), 'utf8').trim();
}

/** A module built from kernel/ for one kernel by `make kernel`. */
export function kernelModule(kernel: KernelVersion, name: string): string {
  return join(repoRoot, 'kernel', 'build', kernel, `${name}.ko`);
}
