// Http2Session: the engine's HTTP/2 session kind. One client connection (h2c, prior knowledge) and the
// upstream HTTP/2 connections its streams are multiplexed onto, all driven by one mx::h2::Relay on the
// session's loop thread. Each stream is admitted by the plan current when its headers arrive (a denied
// service answers 403 / grpc-status 7 PERMISSION_DENIED locally). When the relay needs an upstream connection
// the session takes a parked one of the same plan or has its Connector make one (ALPN h2 under TLS); an http
// service's upstream speaks HTTP/1.1, so its connections are wrapped in the HTTP/2-over-HTTP/1.1 bridge.
// When a client connection ends, its idle upstream connections are kept on the loop thread for the next
// client connection of the same plan (Plan::poolKey) and endpoint instead of being closed: sequential clients
// (gRPC CLIs, health checks) then reuse upstream connections.
// Each request picks its endpoint (Plan::Order: priority, round-robin, back-offs), as Envoy picks a host per
// request: the relay keeps one group of upstream connections per endpoint, and a request goes to its group
// (a connection to its endpoint, or one the Connector fails over to when that endpoint cannot be reached).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../engine/connector.h"
#include "../engine/downstream.h"
#include "../engine/engine.h"
#include "../engine/transport.h"
#include "relay.h"

namespace mx::h2 {

class Http2Session final : public engine::Session, private RelayHost, private engine::ConnectorHost {
 public:
  /** `d.initial` holds the client bytes the sniffer read (the connection preface). */
  explicit Http2Session(engine::Downstream d);
  ~Http2Session() override;

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnSoon() override;
  void OnTimer(int64_t nowMs) override;
  const char* kind() const override { return "http2"; }
  /** GOAWAY to the client; in-flight streams finish, then the session closes. */
  void Drain() override;
  /** On a loop thread: closes the parked upstream connections whose pool key is not in `live` (plans gone). */
  static void RetainIdle(const std::unordered_set<std::string>& live);

 private:
  struct Side final : engine::Watcher {
    Http2Session* session = nullptr;
    bool client = false;
    uint32_t rid = 0;  // relay's upstream id
    std::string poolKey;  // where it parks: the plan's pool key and the endpoint's label (IdleKey)
    int64_t idleMs = 0;   // the plan's upstreamIdleMs: how long it may stay parked
    int64_t expires = 0;  // loop clock ms of its max connection duration (0: none)
    bool retired = false;  // past it: takes no new stream
    std::unique_ptr<engine::Transport> t;
    engine::UpstreamLease lease;
    std::string out;
    size_t off = 0;
    bool readable = true;
    bool writable = true;
    bool eof = false;
    bool dead = false;
    uint64_t rx = 0;
    uint64_t tx = 0;
    std::string address;  // what it is connected to, as %UPSTREAM_HOST% prints it
    void OnEvents(uint32_t events) override;
    size_t pending() const { return out.size() - off; }
    /** Closes the connection and its books (wire bytes when the transport counts them). */
    void CloseUpstream();
  };

  bool Admit(LocalAnswer* answer, std::string_view method, std::string_view path) override;
  uint32_t Route() override;
  /** Arms the session's timer for the oldest incomplete request header block's deadline (httpHeaderMs). */
  void ArmHeaderDeadline();
  void NeedUpstream(uint32_t group) override;
  /** The relay group of the endpoint labelled `label` (made on first use). */
  uint32_t GroupOf(const std::string& label);
  /** Where upstream connections of `plan` to endpoint `label` park. */
  static std::string IdleKey(const engine::Plan& plan, const std::string& label);
  void CountResponse(int status) override;
  void CountRetry() override;
  void CountRequestTime(int64_t us) override;
  void StreamClosed(const StreamEnd& e) override;
  StreamLimits Limits() override;
  std::shared_ptr<const engine::Plan> StreamPlan() override;
  void CountRetryOutcome(RetryOutcome what) override;
  uint32_t Reroute(const std::vector<uint32_t>& tried) override;
  int64_t NowMs() override;
  int64_t ArmTimer(int64_t afterMs) override;
  void CountExpiry(Expiry why) override;
  void UpstreamStatus(uint32_t upstream, int status) override;
  void UpstreamFailure(uint32_t upstream, const std::string& reason) override;
  void OnUpstream(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, uint32_t endpoint, uint32_t target) override;
  void OnUpstreamFailed(const std::string& reason) override;
  /** The current plan of this connection's key (looked up again only when plans changed; null once gone). */
  const engine::Plan* CurrentPlan();
  /** Arms the session's own timer entry (the idle timeout) for `deadline`, earlier deadlines first. */
  void ArmOwn(int64_t deadline);
  /** Adds an upstream connection (connected, verified) for the relay's waiting streams (see Relay::AttachUpstream). */
  void Attach(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, const engine::Plan& plan, const std::string& authority, const std::string& scheme, uint32_t assumedStreams, uint32_t group, const std::string& endpoint);

  void OnSideEvents(Side& s, uint32_t events);
  void Pump();
  /** One read from `s` into the relay; returns bytes consumed (0 if nothing moved). */
  size_t ReadSide(Side& s);
  /** Moves relay output for `s` to its socket; returns true if any byte was written. */
  bool FlushSide(Side& s);
  void KillUpstream(Side& s, const std::string& why);
  void Finish(const char* reason, int err);
  /** Takes an idle upstream connection of this service to `group`'s endpoint from the loop's cache; false when none is usable. */
  bool AdoptIdle(uint32_t group);
  /** Keeps an idle upstream connection for the next client connection of this service. */
  void Park(std::unique_ptr<Side> side, Relay::UpstreamHandle up);

  /**
   * An upstream connection parked between client connections (on this loop thread only). It stays watched:
   * anything the upstream sends while parked (its close, GOAWAY, a PING) ends it, so a closed connection
   * never lingers.
   */
  struct Idle final : engine::Watcher {
    std::unique_ptr<Side> side;
    Relay::UpstreamHandle up;
    int64_t until = 0;  // loop clock ms at which it is no longer reused
    void OnEvents(uint32_t events) override;
    /** Closes the connection and its books (once; leaves it empty). */
    void Report();
    ~Idle() override { Report(); }
  };
  struct IdleCache final : engine::Upkeep {
    std::unordered_map<std::string, std::vector<std::unique_ptr<Idle>>> byKey;
    // Entries taken out during an epoll batch may still be named by that batch's events: freed a batch later.
    std::vector<std::pair<uint64_t, std::unique_ptr<Idle>>> graveyard;
    /** Between batches: closes the connections parked past their idle timeout; returns the next expiry. */
    int64_t Run(int64_t nowMs) override;
  };
  static IdleCache& Cache();
  /** This loop thread's parked connections under `key`, after dropping expired and ended ones. */
  std::vector<std::unique_ptr<Idle>>& IdleList(const std::string& key);
  /** Frees an entry taken out of a list once the current epoll batch is over. */
  void GraveyardAdd(std::unique_ptr<Idle> idle);

  engine::Downstream d_;
  std::shared_ptr<const engine::Plan> plan_;  // the plan streams are admitted and upstreams made by
  std::shared_ptr<const engine::Plan> connectPlan_;  // the plan of the connect under way
  uint32_t connectGroup_ = 0;  // the group the connect under way is for
  std::string attachAddress_;  // the address of the connection Attach is adding
  std::vector<std::string> groups_;  // relay group → endpoint label
  std::shared_ptr<void> admittedHold_;  // the request slot Admit took, for Limits() to hand to the stream
  /** The endpoint order of a group's last request, with the plan its indexes refer to. */
  struct GroupOrder {
    std::shared_ptr<const engine::Plan> plan;
    std::vector<uint32_t> order;
  };
  std::unordered_map<uint32_t, GroupOrder> groupOrder_;
  uint64_t planGen_ = 0;
  bool gone_ = false;  // the service is no longer installed: new streams are refused
  int64_t lastActive_ = 0;  // last byte from the client
  int64_t armed_ = 0;       // deadline of the session's own pending timer entry (0: none)
  engine::Connector connector_;
  Side client_;
  std::vector<std::unique_ptr<Side>> ups_;
  std::vector<std::unique_ptr<Side>> dead_;  // closed upstream sides: freed once this epoll batch is over
  Relay relay_;
  bool wantUpstream_ = false;
  bool ended_ = false;
  bool clientFatal_ = false;
};

}  // namespace mx::h2
