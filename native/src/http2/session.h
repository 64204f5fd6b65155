// Http2Session: the engine's HTTP/2 session kind. One client connection (h2c, prior knowledge) and the
// upstream HTTP/2 connections its streams are multiplexed onto, all driven by one mx::h2::Relay on the
// session's loop thread. Upstream connections come from JS: when the relay needs one the session emits
// `need-upstream`; JS dials (failover, health, VIP-CIDR guard stay in TypeScript) and answers with
// Attach(fd) or Unavailable(reason). Each upstream connection's end is reported as `upstream-closed`
// (with the JS token it was attached with and its byte counts), the session's end as `closed`.
// Response counts by status class go into a shared H2Counters that JS reads when metrics are scraped.
// When a client connection ends, its idle upstream connections are kept on the loop thread for the next
// client connection of the same service (`poolKey`) instead of being closed: sequential clients (gRPC CLIs,
// health checks) then reuse one upstream connection, as the Node path's shared session does.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../engine/engine.h"
#include "../engine/transport.h"
#include "relay.h"

namespace mx::h2 {

/** The `upstream-closed` event {up, rx, tx} that ends JS's accounting of one upstream connection. */
inline engine::Event UpstreamClosed(uint64_t session, uint32_t token, uint64_t rx, uint64_t tx) {
  return engine::Event("upstream-closed", session).Num("up", token).Num("rx", static_cast<double>(rx)).Num("tx", static_cast<double>(tx));
}

/** Per-service counters shared by that service's sessions (any loop thread) and read by JS. */
struct H2Counters {
  std::atomic<uint64_t> byClass[6] = {};  // index = status / 100 (0 unused)
  std::atomic<uint64_t> retries{0};
};

class Http2Session final : public engine::Session, private RelayHost {
 public:
  /** `initial` holds client bytes Node read before the hand-over (the sniffed connection preface). */
  Http2Session(std::unique_ptr<engine::Transport> client, std::string initial, const RelayOptions& opts,
               std::shared_ptr<H2Counters> counters, uint32_t poolKey);
  ~Http2Session() override;

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnSoon() override;
  const char* kind() const override { return "http2"; }

  /**
   * JS answered need-upstream with a connected socket; `token` identifies it in upstream-closed, `initial`
   * holds bytes Node already read from it (the server's SETTINGS may arrive before the hand-over).
   */
  void Attach(std::unique_ptr<engine::Transport> t, uint32_t token, const std::string& authority, const std::string& initial);
  /** JS could not open an upstream connection: the waiting streams get a local reply. */
  void Unavailable(const std::string& reason);
  /** GOAWAY to the client; in-flight streams finish, then the session closes. */
  void Drain();

 private:
  struct Side final : engine::Watcher {
    Http2Session* session = nullptr;
    bool client = false;
    uint32_t rid = 0;    // relay's upstream id
    uint32_t token = 0;  // JS's id for this upstream connection
    std::unique_ptr<engine::Transport> t;
    std::string out;
    size_t off = 0;
    bool readable = true;
    bool writable = true;
    bool eof = false;
    bool dead = false;
    uint64_t rx = 0;
    uint64_t tx = 0;
    void OnEvents(uint32_t events) override;
    size_t pending() const { return out.size() - off; }
  };

  void NeedUpstream() override;
  void CountResponse(int status) override;
  void CountRetry() override;

  void OnSideEvents(Side& s, uint32_t events);
  void Pump();
  /** One read from `s` into the relay; returns bytes consumed (0 if nothing moved). */
  size_t ReadSide(Side& s);
  /** Moves relay output for `s` to its socket; returns true if any byte was written. */
  bool FlushSide(Side& s);
  void KillUpstream(Side& s, const std::string& why);
  void Finish(const char* reason, int err);
  /** Takes an idle upstream connection of this service from the loop's cache; false when none is usable. */
  bool AdoptIdle();
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
    int64_t since = 0;
    engine::Engine* engine = nullptr;
    uint64_t sessionId = 0;  // the session that parked it (upstream-closed events carry an id)
    void OnEvents(uint32_t events) override;
    /** Closes the connection and reports it to JS like any other upstream close (once; leaves it empty). */
    void Report();
    ~Idle() override { Report(); }
  };
  struct IdleCache {
    std::unordered_map<uint32_t, std::vector<std::unique_ptr<Idle>>> byKey;
    // Entries taken out during an epoll batch may still be named by that batch's events: freed a batch later.
    std::vector<std::pair<uint64_t, std::unique_ptr<Idle>>> graveyard;
  };
  static IdleCache& Cache();
  /** This loop thread's parked connections of this service, after dropping expired and ended ones. */
  std::vector<std::unique_ptr<Idle>>& IdleList();
  /** Frees an entry taken out of a list once the current epoll batch is over. */
  void GraveyardAdd(std::unique_ptr<Idle> idle);

  Side client_;
  std::vector<std::unique_ptr<Side>> ups_;
  std::vector<std::unique_ptr<Side>> dead_;  // closed upstream sides: freed once this epoll batch is over
  std::string initial_;
  std::shared_ptr<H2Counters> counters_;
  Relay relay_;
  uint32_t poolKey_;
  bool wantUpstream_ = false;
  uint64_t closedUpRx_ = 0;
  uint64_t closedUpTx_ = 0;
  bool ended_ = false;
  bool clientFatal_ = false;
};

}  // namespace mx::h2
