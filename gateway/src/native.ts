// Loads the native addon built by `make addon` (node-gyp, gateway/native/).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Native } from './addon.js';

export const addonPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'build', 'Release', 'pciem_native.node');

function load(): Native {
  try {
    return createRequire(import.meta.url)(addonPath) as Native;
  } catch (e) {
    throw new Error(`the native addon is not built (${addonPath}): run 'make addon'`, { cause: e });
  }
}

export const native: Native = load();
