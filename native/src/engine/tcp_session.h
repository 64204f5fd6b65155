// A plain byte relay between a client socket and an upstream transport (the engine's TCP session kind).
//
// Bytes move with splice(2) through a pipe taken from the loop's pool only while bytes are in flight,
// so an idle connection holds two fds, this object and nothing else. A direction starts out copying
// and splices from its first read that fills the scratch buffer: for the short exchanges of most
// connections recv+send is cheaper than two splices and a pipe. Where splice cannot be used (a
// layered upstream transport, or a kernel that refuses it) bytes go through the loop's scratch buffer,
// and only the part a non-blocking write did not take is copied into a per-direction buffer.
// Back-pressure: a direction reads again only once everything it read before has been written, so at
// most one pipe (64 KiB) or one scratch-sized remainder is pending per direction.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "connector.h"
#include "downstream.h"
#include "engine.h"
#include "transport.h"

namespace mx::engine {

class TcpSession final : public Session, private ConnectorHost {
 public:
  /**
   * A session for a client connection of a TCP service: the client is left unread while the Connector finds
   * an upstream by the plan; then the relay starts. When no
   * endpoint can be reached the client is reset and JS hears why (`upstream-failed`).
   */
  explicit TcpSession(Downstream d);

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t nowMs) override;
  void OnSoon() override;
  const char* kind() const override { return "tcp"; }

 private:
  static constexpr int kClient = 0;
  static constexpr int kUpstream = 1;

  struct Side final : Watcher {
    TcpSession* session = nullptr;
    int index = 0;
    std::unique_ptr<Transport> t;
    bool readable = true;
    bool writable = true;
    uint64_t rx = 0;  // bytes read from this side's fd
    uint64_t tx = 0;  // bytes written to this side's fd
    void OnEvents(uint32_t events) override;
  };

  /** One direction: src side → dst side. */
  struct Flow {
    int src = 0;
    int dst = 0;
    bool spliceable = false;  // both ends are plain sockets and splicing is allowed
    bool splice = false;      // moving bytes with splice(2): from the first full read on (bulk traffic)
    Pipe pipe;
    size_t inPipe = 0;
    std::unique_ptr<char[]> buf;  // bytes read but not yet written (copy mode)
    size_t off = 0;
    size_t len = 0;
    bool eof = false;   // src reached end of stream
    bool done = false;  // dst shut down after everything was written
  };

  void OnUpstream(std::unique_ptr<Transport> t, UpstreamLease lease, uint32_t endpoint, uint32_t target) override;
  void OnUpstreamFailed(const std::string& reason) override;
  void OnSideEvents(int side, uint32_t events);
  /** Once connected: watches both sides and pumps. */
  void StartRelay();
  /** Arms the idle timer for lastActive_ + idle (the one idle entry in the heap). */
  void ArmIdle();
  void PumpAll();
  /** Moves bytes until a side blocks or the budget is spent; false once the session has ended. */
  bool Pump(Flow& f, size_t& budget);
  void PutBack(Flow& f);
  void Fail(int side);
  void Finish();

  Downstream d_;
  Connector connector_;
  UpstreamLease lease_;
  Side sides_[2];
  Flow flows_[2];
  int64_t idleMs_;
  int64_t lastActive_ = 0;
  int64_t idleArmed_ = 0;  // deadline of the idle timer's pending heap entry
  bool relaying_ = false;    // StartRelay has run: both sides are watched
  bool ended_ = false;
  AccessRecord log_;  // the connection's access log line
};

}  // namespace mx::engine
