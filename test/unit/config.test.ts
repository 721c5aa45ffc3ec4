// kernel/pciem_config.c: the config-space emulation (RO/RW/W1C masks, BAR
// sizing, capability chains, the builder's validation), built for userspace
// with kernel/tests/config_test.c and run.
import { cTestSuite } from '../lib/ctest.js';

cTestSuite('kernel/pciem_config.c (userspace build)',
  { sources: ['kernel/tests/config_test.c', 'kernel/pciem_config.c'] }, 'config', 350);
