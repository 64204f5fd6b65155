// PlanRetry: how many times a connection or request is attempted, and when a failed attempt is tried again.
// Header-only: the HTTP/2 relay (whose test binary links no engine) applies it per stream as the HTTP/1
// session does per request, so the rules live here once.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "../http_common.h"

namespace mx::engine {

/** A plan's `retry`: src/snapshot/plan.ts maps the MeshRetry policies of the service into it. */
struct PlanRetry {
  /** Request bodies held for a retry up to this size; a larger body is streamed and its request never resent. */
  static constexpr size_t kBufferBytes = 64 * 1024;
  /** Conditions of Envoy's retry_on (HTTP and gRPC), as bits of `on`. */
  enum On : uint32_t {
    k5xx = 1u << 0,
    kGatewayError = 1u << 1,
    kReset = 1u << 2,
    kConnectFailure = 1u << 3,
    kRetriable4xx = 1u << 4,
    kRefusedStream = 1u << 5,
    kEnvoyRateLimited = 1u << 6,
    kRetriableStatusCodes = 1u << 7,
    kGrpcCancelled = 1u << 8,
    kGrpcDeadlineExceeded = 1u << 9,
    kGrpcInternal = 1u << 10,
    kGrpcResourceExhausted = 1u << 11,
    kGrpcUnavailable = 1u << 12,
  };
  /** Connects one connection may try (endpoints in order, each address in turn, from the start again); 0: each address once. */
  uint32_t connectAttempts = 0;
  /** Retries of one request after its first attempt (0: none). */
  uint32_t numRetries = 0;
  uint32_t on = 0;
  /** retriable-status-codes. */
  std::vector<int> statuses;
  /** One retriable request header match (Kuma's HeaderMatch; names lowercase). */
  struct HeaderMatch {
    enum class Type { kExact, kPrefix, kPresent, kAbsent };
    std::string name;
    Type type = Type::kExact;
    std::string value;
    /** Whether a request whose header `name` has `v` (nullopt: absent) matches. */
    bool Matches(std::optional<std::string_view> v) const {
      switch (type) {
        case Type::kPresent: return v.has_value();
        case Type::kAbsent: return !v.has_value();
        case Type::kPrefix: return v.has_value() && v->substr(0, value.size()) == value;
        case Type::kExact: return v.has_value() && *v == value;
      }
      return false;
    }
  };
  /**
   * Which requests may be sent again: those with one of `methods` or matching one of `requestHeaders` (Envoy's
   * retriable_request_headers, which Kuma fills with both). The plan lists them all (src/snapshot/plan.ts
   * retryFor fills the idempotent methods when the policy names none): both empty, nothing is resent.
   */
  std::vector<std::string> methods;
  std::vector<HeaderMatch> requestHeaders;
  /** Each attempt's limit, from the request being complete and sent to the end of the response (0: none). */
  int64_t perTryMs = 0;
  /** Envoy's jittered exponential back-off between attempts. */
  int64_t backOffBaseMs = 25;
  int64_t backOffMaxMs = 250;

  bool enabled() const { return numRetries > 0; }
  /** Whether a response's headers matter beyond its status (grpc-status, x-envoy-ratelimited): else they are not scanned. */
  bool ReadsHeaders() const {
    return (on & (kEnvoyRateLimited | kGrpcCancelled | kGrpcDeadlineExceeded | kGrpcInternal | kGrpcResourceExhausted | kGrpcUnavailable)) != 0;
  }
  /** Whether a request with `method` and headers looked up by `find(name)` (an optional value) may be sent again. */
  template <class Find>
  bool Eligible(std::string_view method, Find find) const {
    for (const std::string& m : methods)
      if (m == method) return true;
    for (const HeaderMatch& h : requestHeaders)
      if (h.Matches(find(h.name))) return true;
    return false;
  }
  /** Whether a final response with `status` (and, for gRPC, `grpcStatus` from its headers, -1: none) asks for a retry. */
  bool RetryStatus(int status, int grpcStatus, bool rateLimited) const;
  /** Whether an attempt that got no response (reset, closed, timed out; `connect`: no connection at all) asks for one. */
  bool RetryReset(bool connect, bool refused) const;
  /** The wait before retry number `n` (1 for the first): random in [0, min((2^n - 1) × base, max)). */
  int64_t BackOffMs(uint32_t n) const;
};

inline bool PlanRetry::RetryStatus(int status, int grpcStatus, bool rateLimited) const {
  if ((on & k5xx) && status >= 500 && status <= 599) return true;
  if ((on & kGatewayError) && (status == 502 || status == 503 || status == 504)) return true;
  if ((on & kRetriable4xx) && status == 409) return true;
  if ((on & kEnvoyRateLimited) && rateLimited) return true;
  if ((on & kRetriableStatusCodes) && std::find(statuses.begin(), statuses.end(), status) != statuses.end()) return true;
  switch (grpcStatus) {
    case 1: return (on & kGrpcCancelled) != 0;
    case 4: return (on & kGrpcDeadlineExceeded) != 0;
    case 8: return (on & kGrpcResourceExhausted) != 0;
    case 13: return (on & kGrpcInternal) != 0;
    case 14: return (on & kGrpcUnavailable) != 0;
    default: return false;
  }
}

inline bool PlanRetry::RetryReset(bool connect, bool refused) const {
  // As Envoy: a reset counts as a 5xx (it becomes one), so 5xx and gateway-error cover it as reset does.
  if (on & (k5xx | kGatewayError | kReset)) return true;
  if (connect && (on & kConnectFailure)) return true;
  return refused && (on & kRefusedStream);
}

inline int64_t PlanRetry::BackOffMs(uint32_t n) const {
  // Envoy's JitteredExponentialBackOffStrategy: the ceiling grows as (2^n - 1) × base up to max, the wait is
  // uniform below it, so concurrent retries spread out instead of arriving together.
  thread_local std::minstd_rand rng(std::random_device{}());
  int64_t base = std::max<int64_t>(1, backOffBaseMs);
  int64_t ceiling = n >= 30 ? backOffMaxMs : std::min<int64_t>(((int64_t{1} << n) - 1) * base, backOffMaxMs);
  if (ceiling <= 0) return 0;
  return static_cast<int64_t>(rng() % static_cast<uint64_t>(ceiling));
}

}  // namespace mx::engine
