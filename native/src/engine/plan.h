// Plans: what the engine does with each service's connections. TypeScript compiles one plan per service from
// each snapshot (src/snapshot/plan.ts), and one more for each Dataplane whose outbounds have policies of their own
// (same service, their own keys), and installs all of them in one call (engineInstall); the engine carries
// them out and decides nothing a plan does not say. A plan is immutable once installed: a session keeps the plan
// it started with (HTTP sessions look the current one up again for each new request), so a reload never
// changes a connection or exchange in flight.
//
// State that must outlive plan versions lives in a ServiceState per service id: the counters TypeScript reads
// for metrics, the round-robin position, and each endpoint's health and connection counts (by endpoint label).
// TypeScript decides health (back-off) from the engine's connect events and pushes it back (engineHealth).
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../tls/client_conn.h"
#include "../tls/client_context.h"
#include "access_log.h"
#include "fd.h"
#include "retry.h"
#include "histogram.h"

namespace mx::engine {

enum class Protocol { kTcp, kHttp, kHttp2, kGrpc };

/** Per-service counters; TypeScript names them (src/engine/engine.ts SERVICE_COUNTERS, same order). */
struct ServiceStats {
  enum Index : size_t {
    kDownstreamCxTotal,
    kDownstreamCxActive,
    kUpstreamCxTotal,
    kUpstreamCxActive,
    kConnectFail,
    kConnectTimeout,
    kUpstreamRxBytes,
    kUpstreamTxBytes,
    kTlsHandshake,
    kTlsResumed,
    kRq1xx,
    kRq2xx,
    kRq3xx,
    kRq4xx,
    kRq5xx,
    kRqRetry,
    kAccessDenied,
    kHeaderTimeout,
    kUpstreamRqTimeout,      // requests answered 504 / DEADLINE_EXCEEDED (or cut) by the plan's request timeout
    kUpstreamRqMaxDuration,  // upstream requests ended by the plan's max stream duration
    kDownstreamRqIdleTimeout,  // streams ended by the plan's stream idle timeout
    kUpstreamCxMaxDuration,    // upstream connections retired by the plan's max connection duration
    kRqRetrySuccess,           // requests answered by a retry (Envoy's upstream_rq_retry_success)
    kRqRetryLimitExceeded,     // requests whose failure was retriable but the plan's retries were spent
    kRqRetryBufferOverflow,    // requests that could not be retried: their body outgrew PlanRetry::kBufferBytes
    kRqPerTryTimeout,          // attempts ended by the plan's per-try timeout
    kAccessLogLines,           // access log lines queued for writing (one per backend)
    kAccessLogDropped,         // access log lines dropped: their sink's queue was full (the writer lags)
    // PlanLimits (MeshCircuitBreaker connectionLimits): what each limit refused.
    kUpstreamCxOverflow,         // connects refused: maxConnections upstream connections were open
    kUpstreamRqPendingOverflow,  // connects or requests refused: maxPendingRequests / maxRequests reached
    kCount,
  };
  std::atomic<int64_t> v[kCount] = {};
  void Add(Index i, int64_t n = 1) { v[i].fetch_add(n, std::memory_order_relaxed); }
  void CountResponse(int status) {
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) Add(static_cast<Index>(kRq1xx + cls - 1));
  }
};

/** One endpoint's health and connection counts, kept across plan versions while its label stays. */
struct EndpointState {
  explicit EndpointState(std::string l) : label(std::move(l)) {}
  const std::string label;
  /**
   * Loop::Clock() ms until which TypeScript has taken it out of the balancer (0: in). TypeScript alone decides
   * why (a back-off, an outlier ejection, failed active health checks: src/proxy/endpoints.ts).
   */
  std::atomic<int64_t> downUntilMs{0};
  /** Connect failures since its last success: the engine reports a success only when this was not 0. */
  std::atomic<uint32_t> failStreak{0};
  /** 5xx responses since its last other response: the engine reports a success only when this was not 0. */
  std::atomic<uint32_t> errorStreak{0};
  /** Responses and failed ones (5xx, lost before the response), counted only for plans with Plan::countResponses. */
  std::atomic<uint64_t> responses{0};
  std::atomic<uint64_t> failedResponses{0};
  std::atomic<int64_t> active{0};
  std::atomic<int64_t> total{0};
};

/** What outlives plan versions of one service. */
struct ServiceState {
  explicit ServiceState(std::string i) : id(std::move(i)) {}
  const std::string id;
  ServiceStats stats;
  /** Envoy's upstream_rq_time: from a request's head arriving to its upstream response's end (HTTP only). */
  LatencyHistogram rqTime;
  /** Envoy's upstream_cx_connect_ms: from connect(2) to a usable connection (TLS handshake included). */
  LatencyHistogram connectTime;
  std::atomic<uint32_t> next{0};
  /** Connects under way (PlanLimits::maxPendingRequests). */
  std::atomic<int64_t> pending{0};
  /**
   * Each HTTP request admitted under PlanLimits::maxRequests holds a copy until it finishes, so the requests in
   * flight are use_count() - 1: one atomic increment and one decrement per request, no allocation.
   */
  const std::shared_ptr<const char> requestToken = std::make_shared<const char>(0);
  /** Endpoint states of the current plan by label (JS thread only: installs and health pushes). */
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> endpoints;
};

/** One address to connect to: ip:port, or a unix socket path (port 0). */
struct PlanTarget {
  std::string address;
  uint16_t port = 0;
  /** The socket address connect(2) takes, parsed once at install (TargetSockaddr); saLen 0: parse per attempt. */
  sockaddr_storage sa{};
  socklen_t saLen = 0;
  /** TLS session key and expected name for this address (unused without TLS). */
  tls::ConnParams tls;
  /** The key of the HTTP/1 pool of connections to it (Plan::H1PoolKey), made once at install. */
  std::string h1PoolKey;
};

struct PlanEndpoint {
  std::string label;
  uint32_t priority = 0;
  /** Host / :authority sent upstream; empty keeps the client's. */
  std::string host;
  /** Empty when the endpoint has no address now (a DNS name without an answer): `unavailable` says why. */
  std::vector<PlanTarget> targets;
  std::string unavailable;
  std::shared_ptr<EndpointState> state;
};

/**
 * MeshCircuitBreaker connectionLimits (src/snapshot/plan.ts limitsFor); 0: no limit. Over a limit a TCP client
 * is closed at once and an HTTP request gets 503 (gRPC UNAVAILABLE) saying "upstream overflow" and which limit.
 */
struct PlanLimits {
  /** Upstream connections of the service open or being made at once (Envoy max_connections). */
  uint32_t maxConnections = 0;
  /** Connects under way at once: requests (TCP: clients) waiting for an upstream connection (Envoy max_pending_requests). */
  uint32_t maxPendingRequests = 0;
  /** HTTP requests in flight at once (Envoy max_requests). */
  uint32_t maxRequests = 0;
};

/** Always from the plan's `deny` (src/snapshot/plan.ts decides the replies). */
struct PlanDeny {
  int status = 0;
  int grpcStatus = 0;
  std::string message;
};

struct Plan {
  std::string service;
  Protocol protocol = Protocol::kTcp;
  std::vector<PlanEndpoint> endpoints;
  /** Endpoint indexes grouped by priority, best (lowest) first; each group in declaration order. */
  std::vector<std::vector<uint32_t>> groups;
  std::shared_ptr<tls::ClientContext> tls;  // null: plain upstreams
  std::string tlsId;
  bool denied = false;
  PlanDeny deny;
  /** Non-empty: the service cannot be served (e.g. unusable TLS settings); every connection fails with it. */
  std::string error;
  /** Always from the plan's `timeouts` (their defaults are src/snapshot/plan.ts's DEFAULT_TIMEOUTS). */
  int64_t connectTimeoutMs = 0;
  int64_t tcpIdleMs = 0;
  int64_t httpIdleMs = 0;
  /** How long a client may take to send a whole HTTP/1.x request head, from its first byte (slow-loris bound). */
  int64_t httpHeaderMs = 0;
  int64_t upstreamIdleMs = 0;
  /**
   * Envoy's route timeout (MeshTimeout http.requestTimeout): from the end of the client's request to the end of
   * the upstream response; past it the upstream request is reset and the client gets 504 (grpc-status 4
   * DEADLINE_EXCEEDED), or its stream is cut when the response had begun. 0: none.
   */
  int64_t requestTimeoutMs = 0;
  /**
   * Envoy's cluster max_stream_duration (MeshTimeout http.maxStreamDuration): from the request leaving for the
   * upstream to the end of the response; past it the upstream request is reset and the client gets 504 (408
   * while its request was still arriving), or is cut when the response had begun. 0: none.
   */
  int64_t maxStreamMs = 0;
  /**
   * Envoy's HTTP connection manager stream_idle_timeout (MeshTimeout http.streamIdleTimeout): a request/response
   * exchange with no bytes either way for this long is ended: 408 when no response began (the connection closes
   * if the request was still arriving), cut otherwise. 0: none.
   */
  int64_t streamIdleMs = 0;
  /**
   * Envoy's cluster max_connection_duration (MeshTimeout http.maxConnectionDuration): an upstream HTTP connection
   * this old takes no new request; it is closed once its requests in flight are done. 0: none.
   */
  int64_t maxConnMs = 0;
  /** The plan's `retry` (MeshRetry); null: each endpoint address once per connect, no request retried. */
  std::shared_ptr<const PlanRetry> retry;
  /** The service's access logging (MeshAccessLog); null: none. */
  std::shared_ptr<const PlanAccessLog> accessLog;
  PlanLimits limits;
  /**
   * Whether TypeScript wants each response's status per endpoint (the plan has outlier detection): only then
   * do 5xx responses cost an event (UpstreamLease::ReportStatus).
   */
  bool reportStatuses = false;
  /**
   * Whether TypeScript reads per-endpoint response counts (EndpointState::responses; the success-rate and
   * failure-percentage detectors sweep them): one more relaxed add per response, only then.
   */
  bool countResponses = false;
  /** Upstream connections of equal plans are interchangeable: HTTP/2 sessions park idle ones under this key. */
  std::string poolKey;
  std::shared_ptr<ServiceState> state;

  bool grpc() const { return protocol == Protocol::kGrpc; }
  /**
   * The endpoint indexes one new connection (or request) tries, in order: every endpoint in the balancer, by
   * priority, best first, round-robin within a priority (so a priority takes traffic only when every better
   * endpoint is out or refuses the connect); then, as a last resort (Envoy's panic routing: with every endpoint
   * out, trying one beats failing every client), the ones out of the balancer, the one due back first first.
   */
  void Order(int64_t nowMs, std::vector<uint32_t>* out) const;
  /**
   * The key of the HTTP/1 pool of connections to `target` of an endpoint whose Host is `host`: connections
   * are interchangeable only for the same service, TLS identity, upstream protocol, connection timeouts, address and Host (a
   * bridged connection carries its :authority; two names may share an address). Kept in PlanTarget::h1PoolKey.
   */
  std::string H1PoolKey(const PlanTarget& target, const std::string& host) const;
};

/** Where the transparent listener takes a connection's original destination from. */
enum class OrigDstSource {
  kLocal,  // the connection's local address (the client connected to the VIP itself)
  kMap,    // mx_peer_orig, keyed by the client's address and port and the listener's port
};

/** Figures that belong to no service. */
struct GlobalStats {
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> noRoute{0};
  std::atomic<int64_t> origDstFound{0};
  std::atomic<int64_t> origDstMissing{0};
  std::atomic<int64_t> origDstStale{0};  // an entry older than MX_ORIG_MAX_AGE_MS: refused
  std::atomic<int64_t> downstreamLive{0};  // client connections being served (DownstreamLease)
  std::atomic<int64_t> maxDownstream{0};   // the connection cap (0: none); set at engine start
  std::atomic<int64_t> overflowCap{0};     // connections refused at once: the cap was reached
  std::atomic<int64_t> overflowFd{0};      // connections refused at once: out of descriptors (EMFILE/ENFILE)
};

/** An installed set of plans, immutable; replaced as a whole. */
struct PlanSet {
  std::unordered_map<std::string, std::shared_ptr<const Plan>> byKey;
  std::vector<std::shared_ptr<const Plan>> plans;
  OrigDstSource source = OrigDstSource::kLocal;
  std::shared_ptr<UniqueFd> map;
  uint64_t generation = 0;
};

class PlanTable {
 public:
  /** JS thread: the state of service `id`, the one plans of it share (created when new or gone). */
  std::shared_ptr<ServiceState> StateFor(const std::string& id);
  /** JS thread: the TLS context for `id`, shared while any plan holds it; null when there is none yet. */
  std::shared_ptr<tls::ClientContext> ContextFor(const std::string& id);
  void RememberContext(const std::string& id, const std::shared_ptr<tls::ClientContext>& ctx);
  /** JS thread: installs a new set atomically. Sessions keep the plans they hold. */
  void Replace(std::shared_ptr<PlanSet> set);
  /** Any thread: the current plan for `key` (null when none). */
  std::shared_ptr<const Plan> Find(const std::string& key) const;
  /** Any thread: the current set. */
  std::shared_ptr<const PlanSet> Current() const;
  /** Any thread: bumped by every Replace; sessions compare it to skip lookups while nothing changed. */
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  /** JS thread: marks an endpoint backed off for `downForMs` (0: healthy); false when unknown. */
  bool SetHealth(const std::string& service, const std::string& label, int64_t downForMs);
  /**
   * Loop thread: the original destination of a connection accepted on `local` from `peer` ("" when the map has
   * no entry for it, or a stale one: see TakeOriginalDst).
   */
  void OriginalDst(const PlanSet& set, const sockaddr_storage& peer, const sockaddr_storage& local, std::string* dst, uint16_t* dstPort);
  /** JS thread: every service state still referenced (by the current plans or by a session). */
  std::vector<std::shared_ptr<ServiceState>> LiveStates();
  GlobalStats& global() { return global_; }
  /** The access log files plans write to, and their writer thread. */
  LogSinks& logs() { return logs_; }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const PlanSet> set_ = std::make_shared<PlanSet>();
  std::atomic<uint64_t> generation_{0};
  std::unordered_map<std::string, std::weak_ptr<ServiceState>> states_;
  std::unordered_map<std::string, std::weak_ptr<tls::ClientContext>> contexts_;
  GlobalStats global_;
  LogSinks logs_;
};

/** Text of an IP address as the TS codec writes it (IPv4-mapped IPv6 in dotted form). */
std::string MappedText(const uint8_t a[16]);

/** The socket address of ip:port (port > 0) or a unix path (port 0); false when `address` is neither. */
bool TargetSockaddr(const std::string& address, uint16_t port, sockaddr_storage* ss, socklen_t* len);

/** A non-blocking stream socket with connect(2) started towards the target; invalid with `*err` set when it could not be started. */
UniqueFd StartConnect(const PlanTarget& target, int* err);

}  // namespace mx::engine
