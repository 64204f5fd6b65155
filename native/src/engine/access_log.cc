// Access logs: see access_log.h.
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <pthread.h>

#include "crash.h"
#include "histogram.h"
#include "plan.h"

namespace mx::engine {

namespace {

struct OpName {
  const char* name;
  LogOp op;
};

// Envoy's names; src/snapshot/accesslog.ts ENGINE_OPERATORS lists the same (engine-plans.test.ts installs each).
constexpr OpName kOps[] = {
    {"START_TIME", LogOp::kStartTime},
    {"DURATION", LogOp::kDuration},
    {"BYTES_RECEIVED", LogOp::kBytesReceived},
    {"BYTES_SENT", LogOp::kBytesSent},
    {"RESPONSE_CODE", LogOp::kResponseCode},
    {"RESPONSE_FLAGS", LogOp::kResponseFlags},
    {"DOWNSTREAM_REMOTE_ADDRESS", LogOp::kDownstreamRemoteAddress},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", LogOp::kDownstreamRemoteAddressWithoutPort},
    {"UPSTREAM_HOST", LogOp::kUpstreamHost},
    {"PROTOCOL", LogOp::kProtocol},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", LogOp::kUpstreamTransportFailureReason},
    {"REQ", LogOp::kReq},
    {"RESP", LogOp::kResp},
};

// Envoy's short names, in LogFlag bit order.
constexpr const char* kFlagNames[] = {"UH", "UF", "UO", "NR", "UT", "UC", "DC", "SI", "DPE", "UPE", "UMSDR", "RBAC", "URX"};

int64_t WallUs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

/** Envoy's default %START_TIME%: 2026-12-07T02:48:03.123Z (UTC, milliseconds). */
void AppendStartTime(int64_t wallUs, std::string& out) {
  // Lines of one second share everything up to the milliseconds: formatted once per second per thread.
  thread_local int64_t cachedSec = -1;
  thread_local char prefix[32];
  thread_local size_t prefixLen = 0;
  int64_t sec = wallUs / 1000000;
  if (sec != cachedSec) {
    time_t t0 = static_cast<time_t>(sec);
    tm t;
    ::gmtime_r(&t0, &t);
    int n = std::snprintf(prefix, sizeof prefix, "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
    prefixLen = n > 0 ? static_cast<size_t>(n) : 0;
    cachedSec = sec;
  }
  out.append(prefix, prefixLen);
  int ms = static_cast<int>((wallUs / 1000) % 1000);
  char tail[5] = {static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10), 'Z', 0};
  out.append(tail, 4);
}

/**
 * Envoy's %START_TIME(format)%: strftime in UTC, plus `%s` (epoch seconds) and `%f` / `%1f`..`%9f` (the
 * fraction of the second, 9 digits or the count given).
 */
void AppendStartTimeFormat(int64_t wallUs, const std::string& format, std::string& out) {
  time_t secs = static_cast<time_t>(wallUs / 1000000);
  tm t;
  ::gmtime_r(&secs, &t);
  std::string plain;  // a run of the format strftime handles
  auto flush = [&] {
    if (plain.empty()) return;
    char buf[256];
    size_t n = ::strftime(buf, sizeof buf, plain.c_str(), &t);
    out.append(buf, n);
    plain.clear();
  };
  for (size_t i = 0; i < format.size(); i++) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      plain.push_back(format[i]);
      continue;
    }
    char c = format[i + 1];
    int digits = 0;
    if (c == 'f') digits = 9;
    else if (c >= '1' && c <= '9' && i + 2 < format.size() && format[i + 2] == 'f') digits = c - '0';
    if (digits > 0) {
      flush();
      char frac[16];
      std::snprintf(frac, sizeof frac, "%06lld000", static_cast<long long>(wallUs % 1000000));
      out.append(frac, static_cast<size_t>(digits));
      i += c == 'f' ? 1 : 2;
    } else if (c == 's') {
      flush();
      out += std::to_string(static_cast<long long>(secs));
      i += 1;
    } else {
      plain.push_back('%');
      plain.push_back(c);
      i += 1;
    }
  }
  flush();
}

std::string_view WithoutPort(std::string_view hp) {
  if (!hp.empty() && hp.front() == '[') {
    size_t end = hp.find(']');
    return end == std::string_view::npos ? hp : hp.substr(1, end - 1);
  }
  size_t colon = hp.rfind(':');
  return colon == std::string_view::npos ? hp : hp.substr(0, colon);
}

/**
 * The longest prefix of `v` of at most `max` bytes that does not end inside a UTF-8 character (%REQ(X):N, a line
 * capped for a pipe): a cut multi-byte character would make the rest of the line invalid UTF-8.
 */
size_t Utf8Cut(std::string_view v, size_t max) {
  if (max >= v.size()) return v.size();
  size_t cut = max;
  // Back over continuation bytes to the lead byte of the character the cut falls in (at most 3).
  while (cut > 0 && max - cut < 3 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) cut--;
  return (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80 ? max : cut;
}

/**
 * Appends the value of one operator; false when it has none (Envoy's "-"). `numeric`: the value is a number
 * (JSON keeps it unquoted when it is a field's only token).
 */
bool AppendValue(const LogToken& t, const AccessRecord& r, const std::string& client, int64_t nowUs, std::string& out, bool* numeric) {
  *numeric = false;
  std::string_view v;
  switch (t.op) {
    case LogOp::kText:
      out += t.text;
      return true;
    case LogOp::kStartTime:
      if (t.name.empty()) AppendStartTime(r.startWallUs, out);
      else AppendStartTimeFormat(r.startWallUs, t.name, out);
      return true;
    case LogOp::kDuration:
      *numeric = true;
      out += std::to_string((nowUs - r.startMonoUs) / 1000);
      return true;
    case LogOp::kBytesReceived:
      *numeric = true;
      out += std::to_string(r.bytesReceived);
      return true;
    case LogOp::kBytesSent:
      *numeric = true;
      out += std::to_string(r.bytesSent);
      return true;
    case LogOp::kResponseCode:
      *numeric = true;
      out += std::to_string(r.status);
      return true;
    case LogOp::kResponseFlags: {
      if (r.flags == 0) return false;
      bool first = true;
      for (size_t i = 0; i < sizeof kFlagNames / sizeof kFlagNames[0]; i++) {
        if (!(r.flags & (1u << i))) continue;
        if (!first) out.push_back(',');
        out += kFlagNames[i];
        first = false;
      }
      return true;
    }
    case LogOp::kDownstreamRemoteAddress:
      v = client;
      break;
    case LogOp::kDownstreamRemoteAddressWithoutPort:
      v = WithoutPort(client);
      break;
    case LogOp::kUpstreamHost:
      v = r.upstreamHost;
      break;
    case LogOp::kProtocol:
      if (!r.protocol) return false;
      v = r.protocol;
      break;
    case LogOp::kUpstreamTransportFailureReason:
      v = r.failure;
      break;
    case LogOp::kReq:
    case LogOp::kResp: {
      if (!r.headers) return false;
      auto get = [&](const std::string& name) { return t.op == LogOp::kReq ? r.headers->Req(name, &v) : r.headers->Resp(name, &v); };
      if (!get(t.name) && (t.alt.empty() || !get(t.alt))) return false;
      break;
    }
  }
  if (v.empty()) return false;
  if (t.max > 0 && v.size() > t.max) v = v.substr(0, Utf8Cut(v, t.max));
  out.append(v.data(), v.size());
  return true;
}

/**
 * Length of the valid UTF-8 sequence at `in[i]` (a byte >= 0x80), 0 when it is not one (a stray continuation
 * byte, an overlong form, a surrogate, past U+10FFFF, or cut short).
 */
size_t Utf8SeqLen(std::string_view in, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(in[k]); };
  unsigned char c = b(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > in.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; k++)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

/**
 * JSON string escaping of `in` (RFC 8259: quotes, backslash, control characters). The line must be valid UTF-8
 * for a JSON reader, but header values need not be (HTTP/1 obs-text is 0x80-0xFF): each byte that is not part of
 * a valid sequence becomes U+FFFD, as a decoder replacing errors would show it.
 */
void AppendJsonEscaped(std::string_view in, std::string& out) {
  static const char* hex = "0123456789abcdef";
  // Runs that need no escaping (nearly everything) are appended whole.
  size_t run = 0;
  for (size_t i = 0; i < in.size(); i++) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x80) {
      size_t n = Utf8SeqLen(in, i);
      if (n > 0) {
        i += n - 1;
        continue;
      }
      out.append(in.data() + run, i - run);
      run = i + 1;
      out += "\\ufffd";
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(in.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(in.data() + run, in.size() - run);
}

void RenderPlain(const LogBackend& b, const AccessRecord& r, const std::string& client, int64_t nowUs, std::string& out) {
  bool numeric;
  for (const LogToken& t : b.plain)
    if (!AppendValue(t, r, client, nowUs, out, &numeric) && !b.omitEmpty) out.push_back('-');
}

void RenderJson(const LogBackend& b, const AccessRecord& r, const std::string& client, int64_t nowUs, std::string& out) {
  thread_local std::string value;
  out.push_back('{');
  bool first = true;
  for (const auto& [key, tokens] : b.fields) {
    value.clear();
    bool numeric = false, any = false;
    for (const LogToken& t : tokens) {
      bool num;
      if (AppendValue(t, r, client, nowUs, value, &num)) {
        any = any || t.op != LogOp::kText;
        numeric = num;
      } else if (tokens.size() > 1 && !b.omitEmpty) {
        value.push_back('-');
      }
    }
    bool single = tokens.size() == 1 && tokens[0].op != LogOp::kText;
    bool absent = single && !any;
    if (absent && b.omitEmpty) continue;
    if (!first) out.push_back(',');
    first = false;
    out.push_back('"');
    out += key;
    out += "\":";
    if (absent) {
      out += "null";
    } else if (single && numeric) {
      out += value;
    } else {
      out.push_back('"');
      AppendJsonEscaped(value, out);
      out.push_back('"');
    }
  }
  out.push_back('}');
}

}  // namespace

bool LogOpFrom(const std::string& name, LogOp* op) {
  for (const OpName& o : kOps) {
    if (name == o.name) {
      *op = o.op;
      return true;
    }
  }
  return false;
}

std::string JsonEscaped(std::string_view in) {
  std::string out;
  AppendJsonEscaped(in, out);
  return out;
}

void AccessRecord::Begin() {
  *this = AccessRecord();
  startWallUs = WallUs();
  startMonoUs = MonoUs();
  begun = true;
}

void AccessRecord::BeginAt(int64_t monoUs) {
  Begin();
  startWallUs -= startMonoUs - monoUs;
  startMonoUs = monoUs;
}

std::string TargetText(const std::string& address, uint16_t port) {
  if (port == 0) return address;
  return (address.find(':') != std::string::npos ? "[" + address + "]:" : address + ":") + std::to_string(port);
}

void LogAccess(const Plan& plan, AccessRecord& r, const std::string& client) {
  if (!r.begun) return;
  r.begun = false;
  if (!plan.accessLog) return;
  thread_local std::string line;
  int64_t nowUs = MonoUs();
  for (const LogBackend& b : plan.accessLog->backends) {
    line.clear();
    if (b.json) RenderJson(b, r, client, nowUs, line);
    else RenderPlain(b, r, client, nowUs, line);
    line.push_back('\n');
    plan.state->stats.Add(b.sink->Offer(line) ? ServiceStats::kAccessLogLines : ServiceStats::kAccessLogDropped);
  }
}

// ---------------------------------------------------------------------------------------------------
// Sinks and the writer

std::atomic<size_t>& LogSink::Capacity() {
  static std::atomic<size_t> cap{4 * 1024 * 1024};
  return cap;
}

LogSink::~LogSink() {
  // LogSinks::Retire drained it first (on the writer thread, or at stop when there is none).
  if (fd_ >= 0) ::close(fd_);
}

bool LogSink::Idle() {
  if (off_ < writing_.size()) return false;
  std::lock_guard<std::mutex> g(mu_);
  return queued_.empty();
}

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "error") + " (" + strerror(err) + ")";
}

/**
 * `path` relative to `dir` when it names a file beneath it ("" when not): lexical, as TypeScript checked it
 * (src/snapshot/accesslog.ts); repeated here because the engine is what writes as root.
 */
std::string BeneathDir(const std::string& path, const std::string& dir) {
  if (dir.empty() || dir.front() != '/' || path.size() <= dir.size() + 1 || path.compare(0, dir.size(), dir) != 0) return "";
  if (dir != "/" && path[dir.size()] != '/') return "";
  std::string rel = path.substr(dir == "/" ? 1 : dir.size() + 1);
  size_t start = 0;
  for (;;) {
    size_t end = rel.find('/', start);
    std::string_view c(rel.data() + start, (end == std::string::npos ? rel.size() : end) - start);
    if (c.empty() || c == "." || c == "..") return "";
    if (end == std::string::npos) return rel;
    start = end + 1;
  }
}

constexpr int kLogOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW;
// Readable by the group (a log shipper's), by nobody else: lines carry client addresses, paths and headers.
constexpr mode_t kLogMode = 0640;

/**
 * Opens `rel` beneath the directory `dirfd` without following any symlink (a link planted in the directory must
 * not lead the agent, root, to /proc or a cgroup file): openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or on a
 * kernel without it (ENOSYS) each component opened O_NOFOLLOW in turn. -1 with errno set.
 */
int OpenBeneath(int dirfd, const std::string& rel) {
  open_how how{};
  how.flags = kLogOpenFlags;
  how.mode = kLogMode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  long fd = ::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  int cur = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (cur < 0) return -1;
  size_t start = 0;
  for (;;) {
    size_t end = rel.find('/', start);
    std::string c = rel.substr(start, end == std::string::npos ? std::string::npos : end - start);
    int next = end == std::string::npos ? ::openat(cur, c.c_str(), kLogOpenFlags, kLogMode)
                                        : ::openat(cur, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    ::close(cur);
    if (next < 0) {
      errno = err;
      return -1;
    }
    if (end == std::string::npos) return next;
    cur = next;
    start = end + 1;
  }
}

}  // namespace

std::string LogSink::Open(bool force, const std::string& dir) {
  int fd = -1;
  struct stat st {};
  if (path_ == "/dev/stdout" || path_ == "/dev/stderr") {
    // The agent's own descriptor (a pipe to journald or a container runtime): a dup, never a reopen of the path,
    // which for a socket fails and for a pipe would not share the agent's.
    std::lock_guard<std::mutex> g(fdMu_);
    if (fd_ >= 0) return "";
    fd = ::fcntl(path_ == "/dev/stdout" ? STDOUT_FILENO : STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0 || ::fstat(fd, &st) != 0) return std::string("cannot use the agent's ") + (path_ == "/dev/stdout" ? "stdout" : "stderr") + ": " + strerror(errno);
    fd_ = fd;
    atomicLines_ = !S_ISREG(st.st_mode);
    return "";
  }
  std::string rel = BeneathDir(path_, dir);
  if (rel.empty()) {
    return dir.empty() ? path_ + " is not written: no access log directory is set, only /dev/stdout and /dev/stderr are allowed"
                       : path_ + " is outside the access log directory " + dir + " (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written";
  }
  {
    std::lock_guard<std::mutex> g(fdMu_);
    // Still the file at the path: nothing to do (a rotated or deleted one is opened anew).
    if (!force && fd_ >= 0 && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) return "";
  }
  int dirfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return "cannot open the access log directory " + dir + ": " + ErrnoText(errno);
  // O_NONBLOCK: a FIFO without a reader fails now (ENXIO) instead of hanging the install, and a full one makes
  // the writer wait rather than block.
  fd = OpenBeneath(dirfd, rel);
  int err = errno;
  ::close(dirfd);
  if (fd < 0) {
    std::string why = "cannot open " + path_ + ": " + ErrnoText(err);
    if (err == ELOOP || err == EXDEV) why += ": access log files are opened beneath " + dir + " without following symlinks";
    return why;
  }
  if (::fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
    ::close(fd);
    return path_ + " is not a regular file or a FIFO: access log backends write only those";
  }
  std::lock_guard<std::mutex> g(fdMu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  atomicLines_ = !S_ISREG(st.st_mode);
  return "";
}

bool LogSink::Offer(std::string_view line) {
  // On a pipe (the agent's stdout) a line longer than PIPE_BUF would need several writes, and the agent's own log
  // lines could land between them: it is cut to PIPE_BUF bytes, on a character boundary, ending in a marker.
  static constexpr std::string_view kCut = "...[truncated]\n";
  thread_local std::string capped;
  if (line.size() > PIPE_BUF && atomicLines_.load(std::memory_order_relaxed)) {
    capped.assign(line.substr(0, Utf8Cut(line, PIPE_BUF - kCut.size())));
    capped += kCut;
    line = capped;
  }
  size_t cap = Capacity().load(std::memory_order_relaxed);
  size_t before;
  {
    std::lock_guard<std::mutex> g(mu_);
    before = queued_.size();
    if (before + line.size() > cap) return false;
    queued_.append(line.data(), line.size());
  }
  // The writer runs every few ms anyway; a burst that fills a quarter of the bound wakes it early.
  if (before < cap / 4 && before + line.size() >= cap / 4) owner_->Kick();
  return true;
}

bool LogSink::Drain(bool stopping, int64_t deadlineUs) {
  if (off_ == writing_.size()) {
    writing_.clear();
    off_ = 0;
    std::lock_guard<std::mutex> g(mu_);
    writing_.swap(queued_);
  }
  std::lock_guard<std::mutex> g(fdMu_);
  // Waits (stopping only, until the deadline) for the file to take more; false when the time is up.
  auto wait = [&]() {
    int64_t left = deadlineUs - MonoUs();
    if (left <= 0) return false;
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left / 1000 + 1, 100)));
    return true;
  };
  while (off_ < writing_.size()) {
    size_t n = writing_.size() - off_;
    if (atomicLines_) {
      // Whole lines, at most PIPE_BUF bytes per write (atomic on a pipe), and only when the pipe has room for them:
      // the agent's stdout may be in blocking mode, and the writer must never hang there.
      if (n > PIPE_BUF) {
        size_t cut = writing_.rfind('\n', off_ + PIPE_BUF - 1);
        n = cut != std::string::npos && cut >= off_ ? cut + 1 - off_ : PIPE_BUF;
      }
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
        if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
          errno = EPIPE;
          goto failed;
        }
        if (!stopping) return false;
        if (wait()) continue;
        errno = EAGAIN;
        goto failed;
      }
    }
    {
      ssize_t w = ::write(fd_, writing_.data() + off_, n);
      if (w > 0) {
        off_ += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        if (!stopping) return false;
        if (wait()) continue;
      }
    }
  failed:
    // ENOSPC, EIO, a reader gone, or still blocked when stopping: these lines are lost (counted).
    uint64_t lost = 0;
    for (size_t i = off_; i < writing_.size(); i++) lost += writing_[i] == '\n';
    writeFailed_.fetch_add(lost, std::memory_order_relaxed);
    off_ = writing_.size();
  }
  return true;
}

std::shared_ptr<LogSink> LogSinks::SinkFor(const std::string& path, std::string* err) {
  std::shared_ptr<LogSink> s;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = byPath_.find(path);
    if (it != byPath_.end()) s = it->second.lock();
  }
  bool fresh = !s;
  // When the last plan naming the path lets go of it (on a loop thread, often), the writer writes what it still
  // holds: Retire, not a write of up to the queue's bound on that thread.
  if (fresh) s = std::shared_ptr<LogSink>(new LogSink(path, this), [this](LogSink* gone) { Retire(gone); });
  *err = s->Open(false, Dir());
  if (!err->empty()) return fresh ? nullptr : s;  // an open sink keeps its file when the new one fails
  std::lock_guard<std::mutex> g(mu_);
  if (fresh) byPath_[path] = s;
  if (!writer_.joinable() && !stop_) writer_ = std::thread([this] { Run(); });
  return s;
}

std::vector<std::pair<std::string, std::string>> LogSinks::Reopen() {
  std::vector<std::shared_ptr<LogSink>> sinks;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [path, w] : byPath_)
      if (auto s = w.lock()) sinks.push_back(std::move(s));
  }
  std::vector<std::pair<std::string, std::string>> errors;
  std::string dir = Dir();
  for (auto& s : sinks) {
    std::string err = s->Open(true, dir);
    if (!err.empty()) errors.emplace_back(s->path(), std::move(err));
  }
  return errors;
}

std::vector<std::pair<std::string, uint64_t>> LogSinks::WriteFailures() {
  // The references are dropped after mu_ is released: the last one going runs Retire, which takes mu_.
  std::vector<std::shared_ptr<LogSink>> sinks;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [path, w] : byPath_)
      if (auto s = w.lock()) sinks.push_back(std::move(s));
  }
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& s : sinks) out.emplace_back(s->path(), s->writeFailed());
  return out;
}

void LogSinks::SetDir(const std::string& dir) {
  std::lock_guard<std::mutex> g(mu_);
  dir_ = dir;
}

std::string LogSinks::Dir() {
  std::lock_guard<std::mutex> g(mu_);
  return dir_;
}

// How long the writer keeps trying a retired sink's file (a full pipe) before counting the rest lost.
constexpr int64_t kRetiredFlushUs = 1'000'000;

void LogSinks::Retire(LogSink* sink) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (writer_.joinable() && !stop_) {
      retired_.push_back({std::unique_ptr<LogSink>(sink), MonoUs() + kRetiredFlushUs});
      kicked_ = true;
      cv_.notify_one();
      return;
    }
  }
  // No writer (none started, or the engine stopped it: its loops are done, this is the JS thread): written here.
  sink->Drain(true, 0);
  delete sink;
}

void LogSinks::Kick() {
  {
    std::lock_guard<std::mutex> g(mu_);
    kicked_ = true;
  }
  cv_.notify_one();
}

void LogSinks::Stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_one();
  if (writer_.joinable()) writer_.join();
}

// How long a stopping engine waits for its log files (a full pipe) to take what is queued.
constexpr int64_t kStopFlushUs = 1'000'000;

void LogSinks::Run() {
  // Named and reported like the loops, so a crash or a `top -H` says which thread it was.
  pthread_setname_np(pthread_self(), "mx-accesslog");
  MarkCrashReportThread();
  // Lines reach their files within kPeriod; a burst wakes the writer sooner (Kick).
  constexpr auto kPeriod = std::chrono::milliseconds(20);
  for (;;) {
    std::vector<std::shared_ptr<LogSink>> sinks;
    std::vector<RetiredSink> retired;
    bool stopping;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, kPeriod, [this] { return kicked_ || stop_; });
      kicked_ = false;
      stopping = stop_;
      retired.swap(retired_);
      for (auto it = byPath_.begin(); it != byPath_.end();) {
        if (auto s = it->second.lock()) {
          sinks.push_back(std::move(s));
          ++it;
        } else {
          it = byPath_.erase(it);
        }
      }
    }
    int64_t deadline = stopping ? MonoUs() + kStopFlushUs : 0;
    for (auto& s : sinks) s->Drain(stopping, deadline);
    // Sinks no plan names any more: written like the others until done, or until their time is up (then what the
    // file did not take is counted lost).
    std::vector<RetiredSink> keep;
    for (RetiredSink& r : retired) {
      bool last = stopping || MonoUs() >= r.deadlineUs;
      while (r.sink->Drain(last, stopping ? deadline : 0) && !r.sink->Idle()) {
      }
      if (!r.sink->Idle()) keep.push_back(std::move(r));
    }
    if (!keep.empty()) {
      std::lock_guard<std::mutex> g(mu_);
      for (RetiredSink& r : keep) retired_.push_back(std::move(r));
    }
    if (stopping) return;
  }
}

}  // namespace mx::engine
