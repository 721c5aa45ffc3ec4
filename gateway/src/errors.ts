// One error factory for the gateway: every error has a class, a stable
// `code` that tests and callers match on, and the errno behind it if any.

export type PciemErrorCode =
  | 'PCIEM_ERR_NOT_LOADED' // /dev/pciem does not exist
  | 'PCIEM_ERR_PERMISSION' // needs CAP_SYS_ADMIN
  | 'PCIEM_ERR_INVALID' // an argument the kernel refused
  | 'PCIEM_ERR_NO_DEVICE' // no such function, BAR or device (removed?)
  | 'PCIEM_ERR_EXISTS'
  | 'PCIEM_ERR_BUSY' // wrong state for this call
  | 'PCIEM_ERR_TOO_BIG'
  | 'PCIEM_ERR_NO_SPACE'
  | 'PCIEM_ERR_UNSUPPORTED' // the kernel does not offer it
  | 'PCIEM_ERR_STALE' // answered too late
  | 'PCIEM_ERR_FAULT'
  | 'PCIEM_ERR_IO'; // anything else

export class PciemError extends Error {
  override readonly name = 'PciemError';
  constructor(
    readonly code: PciemErrorCode,
    message: string,
    readonly errno?: string,
  ) {
    super(message);
  }
}

const byErrno: Record<string, PciemErrorCode> = {
  EPERM: 'PCIEM_ERR_PERMISSION',
  EACCES: 'PCIEM_ERR_PERMISSION',
  EINVAL: 'PCIEM_ERR_INVALID',
  EBADF: 'PCIEM_ERR_INVALID',
  ENODEV: 'PCIEM_ERR_NO_DEVICE',
  ENXIO: 'PCIEM_ERR_NO_DEVICE',
  EEXIST: 'PCIEM_ERR_EXISTS',
  EBUSY: 'PCIEM_ERR_BUSY',
  EALREADY: 'PCIEM_ERR_BUSY',
  E2BIG: 'PCIEM_ERR_TOO_BIG',
  ENOSPC: 'PCIEM_ERR_NO_SPACE',
  ENOMEM: 'PCIEM_ERR_NO_SPACE',
  EOPNOTSUPP: 'PCIEM_ERR_UNSUPPORTED',
  ENOTTY: 'PCIEM_ERR_UNSUPPORTED',
  ESTALE: 'PCIEM_ERR_STALE',
  EFAULT: 'PCIEM_ERR_FAULT',
};

/** A PciemError for a failed system call, saying what was being done. */
export function fromSysError(e: unknown, doing: string): PciemError {
  const errno = (e as { errno?: unknown }).errno;
  if (typeof errno !== 'string') return new PciemError('PCIEM_ERR_IO', `${doing}: ${String(e)}`);
  return new PciemError(byErrno[errno] ?? 'PCIEM_ERR_IO', `${doing}: ${(e as Error).message}`, errno);
}
