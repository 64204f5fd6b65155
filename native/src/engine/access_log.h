// Access logs (MeshAccessLog): the plan carries each backend's format, parsed once by TypeScript into tokens
// (src/snapshot/accesslog.ts); sessions fill an AccessRecord per TCP connection or HTTP request and hand it to
// LogAccess when it completes, which renders one line per backend on the loop thread and queues it in the
// backend's sink. Writing never blocks a loop: a sink's queue is bounded and a line that does not fit is dropped
// and counted (accessLogDropped); one writer thread per engine moves queued bytes to the files with write(2).
//
// Files are opened O_APPEND by the JS thread at install, only beneath the access log directory (--access-log-dir)
// and never through a symlink: the agent is root on every node and the path comes from a policy author (a path that cannot be opened is an install error for
// the service, which keeps serving without that backend). logrotate: a path whose file was moved or deleted is
// opened anew at the next install, and engineReopenLogs (SIGUSR1) reopens every path. `/dev/stdout` and
// `/dev/stderr` are the agent's own descriptors, written in whole lines of at most PIPE_BUF bytes per write so a
// pipe never interleaves them with the agent's other output (a longer line is cut, ending "...[truncated]").
// JSON lines are valid UTF-8 whatever the headers held (invalid bytes become U+FFFD), and %REQ(X):N cuts on a
// character boundary.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace mx::engine {

struct Plan;

/** Envoy's command operators the engine fills; TypeScript resolves the constant ones (mesh, service) to text. */
enum class LogOp : uint8_t {
  kText,
  kStartTime,
  kDuration,
  kBytesReceived,
  kBytesSent,
  kResponseCode,
  kResponseFlags,
  kDownstreamRemoteAddress,
  kDownstreamRemoteAddressWithoutPort,
  kUpstreamHost,
  kProtocol,
  kUpstreamTransportFailureReason,
  kReq,
  kResp,
};

/** The operator named `name` (Envoy's spelling, e.g. "START_TIME"); false when the engine has none. */
bool LogOpFrom(const std::string& name, LogOp* op);

struct LogToken {
  LogOp op = LogOp::kText;
  std::string text;  // kText: the literal
  std::string name;  // kReq/kResp: the header, lower case (":path" for pseudo-headers); kStartTime: its format
  std::string alt;   // kReq/kResp: the header used when `name` is absent ("" none)
  uint32_t max = 0;  // longest value in bytes (0: no limit)
};

class LogSinks;

/** Where one backend's lines go; shared by every plan naming the same path. */
class LogSink {
 public:
  LogSink(std::string path, LogSinks* owner) : path_(std::move(path)), owner_(owner) {}
  ~LogSink();
  const std::string& path() const { return path_; }
  /**
   * JS thread: opens the path (or reopens it when `force` or when the file at the path is another one now); "" or
   * why not. A path other than /dev/stdout and /dev/stderr must lie beneath `dir` and is opened there without
   * following symlinks, created 0640; only a regular file or a FIFO is accepted.
   */
  std::string Open(bool force, const std::string& dir);
  /** Any thread: queues `line` (with its newline); false (dropped) when the queue is full. */
  bool Offer(std::string_view line);
  /**
   * Writer thread: writes what is queued; false when the file would block (a full pipe): try again later.
   * `stopping`: the last call; it waits for a blocked file until `deadlineUs` (MonoUs()), then counts the rest lost.
   */
  bool Drain(bool stopping, int64_t deadlineUs);
  /** Writer thread (or the last user when there is none): nothing queued or half written. */
  bool Idle();
  /** Lines lost because write(2) failed (ENOSPC, EIO…), for the writer's report. */
  uint64_t writeFailed() const { return writeFailed_.load(std::memory_order_relaxed); }
  /** The queue's bound in bytes (a test build may lower it). */
  static std::atomic<size_t>& Capacity();

 private:
  const std::string path_;
  LogSinks* const owner_;
  std::mutex mu_;  // queued_
  std::string queued_;
  std::mutex fdMu_;  // fd_ and the file's identity: the writer holds it while writing, Open while swapping
  int fd_ = -1;
  std::atomic<bool> atomicLines_{false};  // a pipe or terminal (stdout): lines of at most PIPE_BUF, one per write
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::string writing_;  // writer thread only: bytes taken from queued_ not yet written
  size_t off_ = 0;
  std::atomic<uint64_t> writeFailed_{0};
};

struct LogBackend {
  std::shared_ptr<LogSink> sink;
  bool json = false;
  /** Envoy's omit_empty_values: absent values are left out (JSON) or empty (plain) instead of "-" / null. */
  bool omitEmpty = false;
  std::vector<LogToken> plain;
  /** JSON: key (already escaped) and its value's tokens, in order. */
  std::vector<std::pair<std::string, std::vector<LogToken>>> fields;
};

/** The access logging of a plan (MeshAccessLog's merged backends for the service). */
struct PlanAccessLog {
  std::vector<LogBackend> backends;
};

/** Envoy response flags the engine can know, printed in this order. */
enum LogFlag : uint32_t {
  kFlagNoHealthyUpstream = 1u << 0,   // UH
  kFlagUpstreamConnectFailure = 1u << 1,  // UF
  kFlagUpstreamOverflow = 1u << 2,    // UO
  kFlagNoRoute = 1u << 3,             // NR
  kFlagUpstreamRequestTimeout = 1u << 4,  // UT
  kFlagUpstreamConnectionTermination = 1u << 5,  // UC
  kFlagDownstreamConnectionTermination = 1u << 6,  // DC
  kFlagStreamIdleTimeout = 1u << 7,   // SI
  kFlagDownstreamProtocolError = 1u << 8,  // DPE
  kFlagUpstreamProtocolError = 1u << 9,    // UPE
  kFlagUpstreamMaxStreamDuration = 1u << 10,  // UMSDR
  kFlagUnauthorized = 1u << 11,       // RBAC (access denied by the mesh's routing settings)
  kFlagUpstreamRetryLimitExceeded = 1u << 12,  // URX (MeshRetry: the failure was retriable, the retries were spent)
};

/** Request and response headers of an HTTP exchange, for %REQ()% and %RESP()%. */
class LogHeaders {
 public:
  virtual ~LogHeaders() = default;
  /** Sets `*out` to request header `lname` (lower case; ":method", ":path", ":authority" too); false when absent. */
  virtual bool Req(std::string_view lname, std::string_view* out) const = 0;
  /** The same for the response sent to the client (":status" too); false when absent or no response yet. */
  virtual bool Resp(std::string_view lname, std::string_view* out) const = 0;
};

/** What one TCP connection or HTTP request did, as the access log prints it. */
struct AccessRecord {
  int64_t startWallUs = 0;  // CLOCK_REALTIME
  int64_t startMonoUs = 0;
  uint64_t bytesReceived = 0;  // from the client (HTTP: request body)
  uint64_t bytesSent = 0;      // to the client (HTTP: response body)
  int status = 0;              // HTTP status sent to the client (0: none, and TCP)
  uint32_t flags = 0;          // LogFlag bits
  const char* protocol = nullptr;  // "HTTP/1.1", "HTTP/2"; null for TCP
  std::string upstreamHost;        // address:port of the upstream that served it
  std::string failure;             // why no upstream could serve it
  const LogHeaders* headers = nullptr;
  bool begun = false;

  /** Starts the record now (clears what an earlier exchange left). */
  void Begin();
  /** Starts the record as of `monoUs` (MonoUs() earlier). */
  void BeginAt(int64_t monoUs);
};

/** `in` escaped for a JSON string (quotes, backslash, control characters). */
std::string JsonEscaped(std::string_view in);

/** Text of an upstream target as %UPSTREAM_HOST% prints it (ip:port, [ip6]:port, or the unix path). */
std::string TargetText(const std::string& address, uint16_t port);

/**
 * Renders `r` by every backend of `plan.accessLog` and queues the lines, counting them in the plan's service
 * (accessLogLines / accessLogDropped). `client` is the client's "ip:port". Nothing when the plan has no access
 * log or the record was not begun; the record is ended either way.
 */
void LogAccess(const Plan& plan, AccessRecord& r, const std::string& client);

/**
 * The engine's sinks by path and the one writer thread (started with the first sink). JS thread for SinkFor
 * and Reopen; Stop joins the writer after writing what is queued.
 */
class LogSinks {
 public:
  ~LogSinks() { Stop(); }
  /** The sink for `path`, opened (or reopened when the file at the path changed); null with `*err` set when it cannot be. */
  std::shared_ptr<LogSink> SinkFor(const std::string& path, std::string* err);
  /** Reopens every live sink's file (logrotate's postrotate: SIGUSR1); returns the errors by path. */
  std::vector<std::pair<std::string, std::string>> Reopen();
  void Stop();
  /** JS thread: the access log directory (--access-log-dir) files are opened beneath; "" allows only stdout/stderr. */
  void SetDir(const std::string& dir);
  std::string Dir();
  /** Lines lost to write errors (ENOSPC, EIO…) per path of the sinks in use, for the metrics. */
  std::vector<std::pair<std::string, uint64_t>> WriteFailures();
  /** Any thread: wakes the writer (a sink's queue passed a quarter of its bound). */
  void Kick();

 private:
  struct RetiredSink {
    std::unique_ptr<LogSink> sink;
    int64_t deadlineUs;
  };
  /** A sink's last reference went (any thread): the writer writes what it holds, then deletes it. */
  void Retire(LogSink* sink);
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::weak_ptr<LogSink>> byPath_;
  std::thread writer_;
  bool stop_ = false;
  bool kicked_ = false;
  std::string dir_;
  std::vector<RetiredSink> retired_;  // mu_
};

}  // namespace mx::engine
