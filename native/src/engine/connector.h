// The one endpoint loop of the engine: connects a session to its service's upstream by the plan. It tries the
// endpoints in the order Plan::Order gives (each endpoint's addresses in turn; PlanRetry::connectAttempts
// bounds the connects and may go round again), each attempt bounded by the
// plan's connect timeout; with TLS it completes the handshake, the verification and (for HTTP/2) the ALPN
// check before the session sees the connection, so a TLS failure fails over to the next address as a refused
// connect does. Every attempt is counted in the service's stats and each failure reported to TypeScript
// (`connect-failed` / `tls-failed` events), which decides endpoint health from them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "plan.h"
#include "transport.h"

namespace mx::engine {

/**
 * An upstream connection's place in the books: it counts as open for its service and endpoint from the
 * connect until Close(), which adds the bytes it moved. Movable; closes itself (with no bytes) if forgotten.
 */
class UpstreamLease {
 public:
  UpstreamLease() = default;
  UpstreamLease(std::shared_ptr<ServiceState> s, std::shared_ptr<EndpointState> e);
  UpstreamLease(UpstreamLease&& o) noexcept = default;
  UpstreamLease& operator=(UpstreamLease&& o) noexcept;
  ~UpstreamLease() { Close(0, 0); }
  void Close(uint64_t rx, uint64_t tx);
  bool open() const { return service_ != nullptr; }
  /** The service the connection belongs to ("" once closed). */
  const std::string& service() const;
  /** Counts `i` for the connection's service (nothing once closed). */
  void Count(ServiceStats::Index i) const {
    if (service_) service_->stats.Add(i);
  }
  /**
   * An upstream response's status, for outlier detection (TypeScript decides): each 5xx is reported
   * (`endpoint-status`, lazy) and counted in the endpoint's errorStreak; the first other status after 5xx is
   * reported once (`endpoint-ok`, source "response"). Otherwise a relaxed load of one atomic.
   */
  void ReportStatus(Loop* loop, uint64_t session, int status, bool count) const;
  /**
   * A local-origin failure on an established connection (reset before the response, request timed out), for
   * outlier detection: reported as a lazy `endpoint-failed` event.
   */
  void ReportFailure(Loop* loop, uint64_t session, const std::string& reason, bool count) const;

 private:
  std::shared_ptr<ServiceState> service_;
  std::shared_ptr<EndpointState> endpoint_;
};

/**
 * Closes an upstream connection's books and, when its transport failed after the handshake (TLS: the peer
 * rejected us late, or sent junk), tells TypeScript in an `upstream-closed` event for the log and the metric.
 * `rx`/`tx` are the session's own counts (the transport's wire counts win when it has them).
 */
void CloseUpstream(Loop* loop, uint64_t session, const Transport& t, UpstreamLease& lease, uint64_t rx, uint64_t tx);

/** What a session hears from its Connector (on its loop thread). */
class ConnectorHost {
 public:
  virtual ~ConnectorHost() = default;
  /**
   * An upstream is connected (and verified): the session takes the transport (not watched by anyone yet, TLS
   * bound to the session's loop) and its lease. `endpoint` and `target` index the plan the connector was
   * started with (the endpoint, and which of its addresses).
   */
  virtual void OnUpstream(std::unique_ptr<Transport> t, UpstreamLease lease, uint32_t endpoint, uint32_t target) = 0;
  /** No endpoint could be reached; `reason` is short text safe to show a client. */
  virtual void OnUpstreamFailed(const std::string& reason) = 0;
};

class Connector {
 public:
  /** What the upstream must speak under TLS (offered by ALPN; kH2 also requires the server to select it). */
  enum class Alpn { kNone, kHttp1, kH2 };

  Connector(Session& owner, ConnectorHost& host);
  /**
   * An active health check's connector: it neither counts in the service's books (connections, failures,
   * PlanLimits) nor reports connect events; its leases are empty.
   */
  void ForProbe() { probe_ = true; }
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  /**
   * Starts connecting for `plan`, trying its endpoints in `order`. Answers through the host, possibly before
   * returning (an immediate failure). A connect already under way is abandoned.
   */
  void Start(std::shared_ptr<const Plan> plan, std::vector<uint32_t> order, Alpn alpn, std::string client);
  /** Abandons the attempt under way (the session is closing); the host hears nothing more. */
  void Cancel();
  /** The session's OnTimer: fails an attempt whose deadline has passed. */
  void OnTimer(int64_t nowMs);
  bool busy() const { return attempt_ != nullptr; }
  /** Whether the last Start was refused by a PlanLimits limit (its OnUpstreamFailed reason says which). */
  bool overflowed() const { return overflowed_; }

 private:
  struct Attempt;
  void Next();
  void OnAttemptEvents(Attempt& a, uint32_t events);
  void Advance(Attempt& a);
  void ConnectFailed(int err, bool timedOut);
  void TlsFailed(const std::string& stage, const std::string& code, const std::string& message);
  void Succeeded();
  /** Applies the plan's PlanLimits to a new connect (holding a pending slot); false: refused and counted, `*why` says so. */
  bool TakePending(std::string* why);
  void ReleasePending();
  /** Ends the attempt under way (its socket closes once this epoll batch is over). */
  void Drop();

  Session& owner_;
  ConnectorHost& host_;
  std::shared_ptr<const Plan> plan_;
  std::vector<uint32_t> order_;
  Alpn alpn_ = Alpn::kNone;
  std::string client_;
  size_t pos_ = 0;     // index into order_
  size_t target_ = 0;  // index into the current endpoint's targets
  uint32_t attempts_ = 0;  // connects started since Start
  std::string lastError_;
  std::unique_ptr<Attempt> attempt_;
  bool probe_ = false;
  bool overflowed_ = false;
  /** Holds one of the service's pending connects (ServiceState::pending) while connecting. */
  std::shared_ptr<ServiceState> pendingOf_;
};

}  // namespace mx::engine
