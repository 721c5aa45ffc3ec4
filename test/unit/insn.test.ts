// kernel/pciem_insn.c: the MMIO instruction decoder/emulator, built for
// userspace with kernel/tests/insn_test.c and run. The C program checks the
// decoder against its table and, on this x86-64 machine, against the CPU.
import { cTestSuite } from '../lib/ctest.js';

cTestSuite('kernel/pciem_insn.c (userspace build)',
  { sources: ['kernel/tests/insn_test.c', 'kernel/pciem_insn.c'] }, 'insn', 586);
