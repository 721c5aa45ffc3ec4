#!/usr/bin/env node
// The pciem-gateway command: runs gateway/src/cli.ts through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../gateway/src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
