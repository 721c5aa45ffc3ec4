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
  | 'PCIEM_ERR_TIMEOUT' // the other side did not answer in time
  // The gateway <-> QEMU wire protocol (docs/protocol.md, "Errors"): a frame
  // or message that is refused, or a session rule broken.
  | 'PCIEM_ERR_PROTO_TRUNCATED' // fewer bytes than the frame needs
  | 'PCIEM_ERR_PROTO_TOO_BIG' // frame or field above its limit
  | 'PCIEM_ERR_PROTO_MALFORMED' // body is not one msgpack value within the body rules
  | 'PCIEM_ERR_PROTO_TYPE' // a value of the wrong type
  | 'PCIEM_ERR_PROTO_MISSING' // a required field is absent
  | 'PCIEM_ERR_PROTO_EXTRA' // a field the message does not have
  | 'PCIEM_ERR_PROTO_RANGE' // a value out of range, or a rule broken
  | 'PCIEM_ERR_PROTO_UNKNOWN_CMD'
  | 'PCIEM_ERR_PROTO_HEADER' // header fields that do not go together
  | 'PCIEM_ERR_PROTO_VERSION' // no protocol version in common
  | 'PCIEM_ERR_PROTO_STATE' // a message not allowed now
  // QMP, QEMU's monitor protocol (gateway/src/qmp.ts).
  | 'PCIEM_ERR_QMP' // QEMU answered a command with an error (its class and desc are in the message)
  | 'PCIEM_ERR_QMP_CLOSED' // the QMP connection closed (QEMU exited, or close() was called)
  | 'PCIEM_ERR_QMP_MALFORMED' // the peer sent something that is not QMP; the connection is dropped
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
