// The native addon's surface (gateway/native/pciem_native.cc), loaded by native.ts. Thin by
// design: system calls and libuv polling; everything else is TypeScript.

/** A failed system call: Error with the errno name and the call. */
export interface SysError extends Error {
  errno: string;
  errnoNumber: number;
  syscall: string;
}

export interface Native {
  open(path: string, flags: number): number;
  close(fd: number): void;
  /** The ioctl's result; `arg` must be exactly the size the request encodes. */
  ioctl(fd: number, request: number, arg?: Uint8Array | null): number;
  /**
   * ioctl() for structs that carry a user pointer: the address of `data`'s
   * first byte is stored as a u64 at `arg[ptrOffset]` before the call.
   */
  ioctlPtr(fd: number, request: number, arg: Uint8Array, ptrOffset: number, data: Uint8Array): number;
  /**
   * ioctl() on a libuv worker thread (arg copied first); calls back on the
   * event loop with the SysError or the result.
   */
  ioctlAsync(fd: number, request: number, arg: Uint8Array, callback: (err: SysError | null, result?: number) => void): void;
  /** A shared read-write mapping, unmapped by munmap() or when the ArrayBuffer is collected. */
  mmap(fd: number, length: number, offset: number): ArrayBuffer;
  /** Unmaps now and detaches the ArrayBuffer (its views become empty). */
  munmap(buffer: ArrayBuffer): void;
  /**
   * An anonymous shared-memory file (memfd, close-on-exec) of `size` zero
   * bytes: an fd for mmap(). Sealed against any change of size unless
   * `sealed` is false (a peer refuses a file that could shrink under it).
   */
  memfdCreate(name: string, size: number, sealed?: boolean): number;
  eventfd(initial: number): number;
  /** The eventfd counter, 0n when it was zero. */
  readEventFd(fd: number): bigint;
  writeEventFd(fd: number, n: number): void;
  /**
   * One non-blocking sendmsg() of `bytes` with `fds` (1..16) attached
   * (SCM_RIGHTS) on a UNIX stream socket; the bytes sent, 0 when the socket
   * was full (nothing went, descriptors neither). Call it only when nothing
   * else is queued for the socket; send the rest of `bytes` after it.
   */
  sendFds(socketFd: number, bytes: Uint8Array, fds: number[]): number;
  /**
   * One non-blocking recvmsg() of up to `maxBytes`, with the descriptors
   * that came with them; null when nothing is there, empty bytes at the end.
   */
  recvFds(socketFd: number, maxBytes: number): { bytes: Buffer; fds: number[] } | null;
  Poller: new (fd: number, onReadable: (err?: SysError) => void) => { close(): void };
  O_RDWR: number;
  O_RDONLY: number;
}
