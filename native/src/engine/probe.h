// ProbeSession: one active health check of one endpoint, asked for by TypeScript (engineProbe), which schedules
// checks and decides health from their results (src/proxy/health-check.ts). The probe connects with the
// service's current plan, to that endpoint only, through the Connector, so it uses the endpoint's own
// addresses and TLS settings (context, SNI, verification, ALPN) exactly as traffic does; it counts in none of
// the service's books. Then it runs the check: TCP (connect, optionally send bytes and expect blocks back),
// HTTP (GET a path over HTTP/1.1 or HTTP/2, status in a list) or gRPC (grpc.health.v1.Health/Check, SERVING),
// and reports one `probe-result` event {token, ok, status, reason} before it retires.
#pragma once
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "connector.h"
#include "engine.h"

namespace mx::engine {

/** What to check (src/engine/engine.ts EngineProbe; TypeScript fills every default). */
struct ProbeSpec {
  enum class Kind { kTcp, kHttp, kGrpc };
  std::string service;
  std::string endpoint;  // its label in the plan
  uint32_t token = 0;
  Kind kind = Kind::kTcp;
  int64_t timeoutMs = 0;
  /** HTTP over HTTP/2 (gRPC always is). */
  bool http2 = false;
  std::string path;       // HTTP
  std::string authority;  // Host / :authority of HTTP and gRPC checks
  std::vector<std::pair<std::string, std::string>> headers;  // added to HTTP checks
  std::vector<uint32_t> expectedStatuses;  // HTTP
  std::string grpcService;  // HealthCheckRequest.service
  std::string send;         // TCP: bytes to send
  std::vector<std::string> receive;  // TCP: blocks expected back, in order (empty: connect only)
};

class ProbeSession final : public Session, private ConnectorHost {
 public:
  explicit ProbeSession(ProbeSpec spec);
  ~ProbeSession() override;
  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t nowMs) override;
  const char* kind() const override { return "probe"; }
  /** Not a client connection: counted, drained and closed as listeners are (the engine's own, not a client's). */
  bool listener() const override { return true; }

 private:
  struct Io final : Watcher {
    ProbeSession* p = nullptr;
    void OnEvents(uint32_t events) override { p->OnIo(events); }
  };
  void OnUpstream(std::unique_ptr<Transport> t, UpstreamLease lease, uint32_t endpoint, uint32_t target) override;
  void OnUpstreamFailed(const std::string& reason) override;
  void OnIo(uint32_t events);
  /** Writes what is pending and reads what arrived; false once finished. */
  bool Pump();
  void Received(const char* data, size_t n);
  void StartH2();
  void Finish(bool ok, int status, const std::string& reason);
  static int OnH2Header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t, void*);
  static int OnH2Data(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnH2Close(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t ReadH2Body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);
  void H2Done();

  ProbeSpec spec_;
  Connector connector_;
  std::shared_ptr<const Plan> plan_;
  std::unique_ptr<Transport> t_;
  Io io_;
  bool done_ = false;
  bool tls_ = false;
  int64_t deadline_ = 0;
  std::string out_;
  std::string in_;
  size_t matched_ = 0;  // TCP: receive blocks found so far
  nghttp2_session* h2_ = nullptr;
  int32_t stream_ = -1;
  std::string body_;
  size_t bodyOff_ = 0;
  int status_ = 0;
  int grpcStatus_ = -1;
};

/** The gRPC health check request message (grpc.health.v1.HealthCheckRequest{service}) in its length-prefixed frame. */
std::string GrpcHealthRequest(const std::string& service);
/**
 * The serving status in a grpc.health.v1.HealthCheckResponse frame (1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN),
 * 0 when unset or -1 when the bytes are not one.
 */
int GrpcHealthStatus(const std::string& frame);

}  // namespace mx::engine
