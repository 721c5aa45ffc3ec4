// The gateway's native addon: the system calls behind /dev/pciem and the
// shared-memory hot path, and nothing else. Argument checks, open/ioctl/
// mmap/eventfd, and libuv integration (a poll handle calls back on the event
// loop when a file descriptor becomes readable: no busy loop when idle).
// Policy, struct layouts and error codes live in TypeScript; the surface is
// typed in gateway/src/addon.d.ts.
#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

// A system call failed: a JS Error with .errno (the name, e.g. "EPERM"),
// .errnoNumber and .syscall; the TypeScript layer maps it to a coded error.
Napi::Error SysError(Napi::Env env, const char *syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("errno", Napi::String::New(env, strerrorname_np(err) ? strerrorname_np(err) : "EUNKNOWN"));
  e.Set("errnoNumber", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

bool ArgInt(const Napi::CallbackInfo &info, size_t i, const char *name, int64_t min, int64_t max, int64_t *out) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), std::string(name) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    Napi::RangeError::New(info.Env(), std::string(name) + " is out of range").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

// open(path, flags) -> fd
Napi::Value Open(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t flags;
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "path must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!ArgInt(info, 1, "flags", 0, INT32_MAX, &flags))
    return env.Undefined();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), static_cast<int>(flags) | O_CLOEXEC);
  if (fd < 0) {
    SysError(env, "open", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// close(fd)
Napi::Value Close(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd))
    return env.Undefined();
  if (close(static_cast<int>(fd)) < 0) {
    SysError(env, "close", errno).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// ioctl(fd, request, arg?: Uint8Array) -> the ioctl's non-negative result.
// The argument buffer must be exactly as large as the request encodes.
Napi::Value Ioctl(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, req;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "request", 0, UINT32_MAX, &req))
    return env.Undefined();
  void *arg = nullptr;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsTypedArray()) {
      Napi::TypeError::New(env, "arg must be a Uint8Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array a = info[2].As<Napi::Uint8Array>();
    if (a.ByteLength() != _IOC_SIZE(static_cast<unsigned long>(req))) {
      Napi::RangeError::New(env, "arg size does not match the ioctl request").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    arg = a.Data();
  } else if (_IOC_SIZE(static_cast<unsigned long>(req)) != 0) {
    Napi::TypeError::New(env, "this ioctl request needs an argument buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r = ioctl(static_cast<int>(fd), static_cast<unsigned long>(req), arg);
  if (r < 0) {
    SysError(env, "ioctl", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

// ioctlPtr(fd, request, arg, ptrOffset, data) -> result: as ioctl(), for
// the structs that carry a user pointer (DMA, P2P): the address of `data`'s
// bytes is stored as a u64 at arg[ptrOffset] first. The caller owns the
// struct layout; this only supplies the one thing JavaScript cannot know.
Napi::Value IoctlPtr(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, req, off;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "request", 0, UINT32_MAX, &req) ||
      !ArgInt(info, 3, "ptrOffset", 0, 4096, &off))
    return env.Undefined();
  if (info.Length() < 5 || !info[2].IsTypedArray() || !info[4].IsTypedArray()) {
    Napi::TypeError::New(env, "arg and data must be Uint8Arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array a = info[2].As<Napi::Uint8Array>();
  Napi::Uint8Array d = info[4].As<Napi::Uint8Array>();
  if (a.ByteLength() != _IOC_SIZE(static_cast<unsigned long>(req))) {
    Napi::RangeError::New(env, "arg size does not match the ioctl request").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (static_cast<size_t>(off) + sizeof(uint64_t) > a.ByteLength()) {
    Napi::RangeError::New(env, "ptrOffset is outside arg").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint64_t ptr = reinterpret_cast<uintptr_t>(d.Data());
  std::memcpy(a.Data() + off, &ptr, sizeof(ptr));
  int r = ioctl(static_cast<int>(fd), static_cast<unsigned long>(req), a.Data());
  if (r < 0) {
    SysError(env, "ioctl", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

// ioctlAsync(fd, request, arg, callback(err, result)): the same call on a
// libuv worker thread. For calls whose effects run driver code on the
// calling CPU (an injected interrupt's handler runs in hard irq context on
// top of whoever injected it): if that handler waits for the gateway (a
// read the card answers), the event loop must not be the thread it sits
// on. `arg` is copied, so the caller's buffer is free at once.
class IoctlWorker : public Napi::AsyncWorker {
 public:
  IoctlWorker(Napi::Function cb, int fd, unsigned long req, const uint8_t *arg, size_t len)
      : Napi::AsyncWorker(cb), fd_(fd), req_(req), arg_(arg, arg + len) {}

  void Execute() override {
    int r = ioctl(fd_, req_, arg_.empty() ? nullptr : arg_.data());
    if (r < 0)
      err_ = errno;
    result_ = r;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_)
      Callback().Call({SysError(env, "ioctl", err_).Value(), env.Undefined()});
    else
      Callback().Call({env.Null(), Napi::Number::New(env, result_)});
  }

 private:
  int fd_;
  unsigned long req_;
  std::vector<uint8_t> arg_;
  int err_ = 0;
  int result_ = 0;
};

Napi::Value IoctlAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, req;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "request", 0, UINT32_MAX, &req))
    return env.Undefined();
  if (info.Length() < 4 || !info[2].IsTypedArray() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "ioctlAsync(fd, request, arg: Uint8Array, callback)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array a = info[2].As<Napi::Uint8Array>();
  if (a.ByteLength() != _IOC_SIZE(static_cast<unsigned long>(req))) {
    Napi::RangeError::New(env, "arg size does not match the ioctl request").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *w = new IoctlWorker(info[3].As<Napi::Function>(), static_cast<int>(fd), static_cast<unsigned long>(req), a.Data(),
                            a.ByteLength());
  w->Queue();
  return env.Undefined();
}

struct Mapping {
  void *addr;  // nullptr once munmap() took it down
  size_t len;
};

// Live mappings by address, so munmap() finds the one an ArrayBuffer views.
std::mutex mappings_lock;
std::unordered_map<void *, Mapping *> mappings;

void FinalizeMapping(Napi::Env, void *, Mapping *m) {
  {
    std::lock_guard<std::mutex> g(mappings_lock);
    if (m->addr)
      mappings.erase(m->addr);
  }
  if (m->addr)
    munmap(m->addr, m->len);
  delete m;
}

// mmap(fd, length, offset) -> ArrayBuffer over a shared, read-write mapping,
// unmapped by munmap() or when the ArrayBuffer is collected.
Napi::Value Mmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, len, off;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "length", 1, int64_t(1) << 40, &len) ||
      !ArgInt(info, 2, "offset", 0, int64_t(1) << 52, &off))
    return env.Undefined();
  if (off % sysconf(_SC_PAGESIZE)) {
    Napi::RangeError::New(env, "offset must be page aligned").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  void *p = mmap(nullptr, static_cast<size_t>(len), PROT_READ | PROT_WRITE, MAP_SHARED, static_cast<int>(fd),
                 static_cast<off_t>(off));
  if (p == MAP_FAILED) {
    SysError(env, "mmap", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *m = new Mapping{p, static_cast<size_t>(len)};
  {
    std::lock_guard<std::mutex> g(mappings_lock);
    mappings[p] = m;
  }
  return Napi::ArrayBuffer::New(env, p, m->len, FinalizeMapping, m);
}

// munmap(arrayBuffer): unmaps now and detaches the ArrayBuffer, so no view
// can reach the memory afterwards. A second call does nothing.
Napi::Value Munmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    Napi::TypeError::New(env, "munmap wants the ArrayBuffer mmap() returned").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached())
    return env.Undefined();
  Mapping *m = nullptr;
  {
    std::lock_guard<std::mutex> g(mappings_lock);
    auto it = mappings.find(ab.Data());
    if (it != mappings.end()) {
      m = it->second;
      mappings.erase(it);
    }
  }
  if (!m) {
    Napi::TypeError::New(env, "munmap: not a mapping from mmap()").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ab.Detach();
  munmap(m->addr, m->len);
  m->addr = nullptr;  // the finalizer only frees the record now
  return env.Undefined();
}

// memfdCreate(name, size, sealed = true) -> fd of an anonymous shared-memory
// file of size bytes (zero-filled): the rings' and the bulk area's memory,
// passed to the peer as an fd. Sealed, its size can never change: a peer
// that maps it cannot be handed SIGBUS by a file shrunk under it.
Napi::Value MemfdCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t size;
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "name must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!ArgInt(info, 1, "size", 1, int64_t(1) << 40, &size))
    return env.Undefined();
  bool sealed = info.Length() < 3 || info[2].IsUndefined() || info[2].ToBoolean().Value();
  std::string name = info[0].As<Napi::String>();
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    SysError(env, "memfd_create", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const char *what = nullptr;
  if (ftruncate(fd, static_cast<off_t>(size)) < 0)
    what = "ftruncate";
  else if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
    what = "fcntl(F_ADD_SEALS)";
  if (what) {
    int err = errno;
    close(fd);
    SysError(env, what, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// eventfd(initial, nonblock) -> fd
Napi::Value EventFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t init;
  if (!ArgInt(info, 0, "initial", 0, UINT32_MAX, &init))
    return env.Undefined();
  int fd = eventfd(static_cast<unsigned int>(init), EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    SysError(env, "eventfd", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// readEventFd(fd) -> the counter (bigint), or 0n when it was zero (EAGAIN).
Napi::Value ReadEventFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd))
    return env.Undefined();
  uint64_t v = 0;
  ssize_t n = read(static_cast<int>(fd), &v, sizeof(v));
  if (n < 0 && errno != EAGAIN) {
    SysError(env, "read", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::BigInt::New(env, n == sizeof(v) ? v : 0);
}

// writeEventFd(fd, n)
Napi::Value WriteEventFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, n;
  if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "n", 1, UINT32_MAX, &n))
    return env.Undefined();
  uint64_t v = static_cast<uint64_t>(n);
  if (write(static_cast<int>(fd), &v, sizeof(v)) != sizeof(v)) {
    SysError(env, "write", errno).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// The most file descriptors one message carries (RINGS carries five).
constexpr int kMaxFds = 16;

// sendFds(socketFd, bytes, fds) -> bytes sent. One sendmsg() of `bytes`
// with `fds` attached (SCM_RIGHTS) on a UNIX stream socket, non-blocking.
// The descriptors travel with the first byte sent; 0 means the socket was
// full and nothing (no byte, no descriptor) went. The caller sends what is
// left of `bytes` its usual way, after everything it queued before.
Napi::Value SendFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, "socketFd", 0, INT32_MAX, &fd))
    return env.Undefined();
  if (info.Length() < 3 || !info[1].IsTypedArray() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "sendFds(socketFd, bytes: Uint8Array, fds: number[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  Napi::Array list = info[2].As<Napi::Array>();
  if (bytes.ByteLength() == 0 || list.Length() == 0 || list.Length() > kMaxFds) {
    Napi::RangeError::New(env, "sendFds: at least one byte and 1..16 descriptors").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fds[kMaxFds];
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list[i];
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (d < 0 || d > INT32_MAX || d != static_cast<double>(static_cast<int>(d))) {
      Napi::RangeError::New(env, "sendFds: descriptors must be non-negative integers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    fds[i] = static_cast<int>(d);
  }
  size_t fdBytes = list.Length() * sizeof(int);
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  std::memset(control, 0, sizeof(control));
  struct iovec iov = {bytes.Data(), bytes.ByteLength()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(fdBytes);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fdBytes);
  std::memcpy(CMSG_DATA(c), fds, fdBytes);
  ssize_t n;
  do {
    n = sendmsg(static_cast<int>(fd), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return Napi::Number::New(env, 0);
    SysError(env, "sendmsg", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvFds(socketFd, maxBytes) -> { bytes: Buffer, fds: number[] }, or null
// when nothing is there (EAGAIN). One non-blocking recvmsg() that also takes
// the descriptors attached to what it reads (close-on-exec); bytes is empty
// at the end of the stream. For a peer that reads a socket itself (tests).
Napi::Value RecvFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd, max;
  if (!ArgInt(info, 0, "socketFd", 0, INT32_MAX, &fd) || !ArgInt(info, 1, "maxBytes", 1, 1 << 24, &max))
    return env.Undefined();
  std::vector<uint8_t> buf(static_cast<size_t>(max));
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct iovec iov = {buf.data(), buf.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(static_cast<int>(fd), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return env.Null();
    SysError(env, "recvmsg", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t k = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.Set(k++, Napi::Number::New(env, got));
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (uint32_t i = 0; i < k; i++)
      close(fds.Get(i).As<Napi::Number>().Int32Value());
    SysError(env, "recvmsg", EMSGSIZE).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n)));
  out.Set("fds", fds);
  return out;
}

// Poller(fd, onReadable): calls onReadable() on the event loop each time fd
// is readable, until close(). The callback must consume what made fd
// readable (e.g. read the eventfd), or it is called again at once.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Poller", {InstanceMethod("close", &Poller::Close)});
  }

  explicit Poller(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    int64_t fd;
    if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd))
      return;
    if (info.Length() < 2 || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "onReadable must be a function").ThrowAsJavaScriptException();
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    handle_ = new uv_poll_t;
    handle_->data = this;
    int r = uv_poll_init(loop, handle_, static_cast<int>(fd));
    if (r == 0)
      r = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      SysError(env, "uv_poll_start", -r).ThrowAsJavaScriptException();
      return;
    }
    Ref();  // stay alive while the handle is active
  }

 private:
  static void OnPoll(uv_poll_t *h, int status, int) {
    auto *self = static_cast<Poller *>(h->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // A callback that throws comes back here as a C++ exception; left to
    // libuv it would std::terminate() the process with no JS stack. Hand it
    // to Node's uncaught-exception path, as any JS callback's would be.
    try {
      if (status < 0)
        self->callback_.MakeCallback(env.Global(), {SysError(env, "poll", -status).Value()});
      else
        self->callback_.MakeCallback(env.Global(), {});
    } catch (const Napi::Error &e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (handle_) {
      uv_poll_stop(handle_);
      uv_close(reinterpret_cast<uv_handle_t *>(handle_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
      handle_ = nullptr;
      Unref();
    }
    return info.Env().Undefined();
  }

  uv_poll_t *handle_ = nullptr;
  Napi::FunctionReference callback_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl));
  exports.Set("ioctlPtr", Napi::Function::New(env, IoctlPtr));
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("readEventFd", Napi::Function::New(env, ReadEventFd));
  exports.Set("writeEventFd", Napi::Function::New(env, WriteEventFd));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("Poller", Poller::Init(env));
  exports.Set("O_RDWR", Napi::Number::New(env, O_RDWR));
  exports.Set("O_RDONLY", Napi::Number::New(env, O_RDONLY));
  return exports;
}

}  // namespace

NODE_API_MODULE(pciem_native, Init)
