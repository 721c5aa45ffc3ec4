// The uAPI header keeps the compatible ABI: kernel/tests/uapi_test.c checks
// every struct size, field offset and ioctl number, compiled as plain C.
import { cTestSuite } from '../lib/ctest.js';

cTestSuite('include/uapi/linux/pciem.h',
  { sources: ['kernel/tests/uapi_test.c'], includes: ['kernel/include/uapi'], flags: ['-std=c11'] }, 'uapi', 78);
