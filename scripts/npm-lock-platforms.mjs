// Records in package-lock.json the platform-specific optional packages that
// this machine's npm registry does not serve, so `npm ci` accepts the lock.
//
// msgpackr's optional native accelerator lists prebuilt packages for several
// platforms; the registry reachable here serves only the Linux x64/arm64
// ones, so `npm install` leaves the others out of the lock, and `npm ci`
// then refuses the lock as out of sync. npm never fetches an optional
// package whose os/cpu do not match the machine, so recording them by
// name, version and platform is all a normal lock would carry.
//
// Run after any `npm install` that changes the lock:
//   node scripts/npm-lock-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const LOCK = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(LOCK, 'utf8'));
let added = 0;

for (const [path, meta] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (lock.packages[key] || path.includes(`${key}/`)) continue;
    // Platform packages are named ...-<os>-<cpu>.
    const m = /-(darwin|linux|win32|freebsd)-(x64|arm64|arm|ia32)$/.exec(name);
    if (!m) continue;
    lock.packages[key] = { version, cpu: [m[2]], license: meta.license, optional: true, os: [m[1]] };
    added++;
  }
}

if (added > 0) {
  const keys = Object.keys(lock.packages).sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0));
  lock.packages = Object.fromEntries(keys.map((k) => [k, lock.packages[k]]));
  writeFileSync(LOCK, JSON.stringify(lock, null, 2) + '\n');
}
console.log(`npm-lock-platforms: ${added} platform package(s) recorded`);
