// Whether a request may go upstream under its plan: the one admission rule of the HTTP sessions (HTTP/1.x and
// HTTP/2), with its books (denials and unservable services counted and reported to TypeScript the same way).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "plan.h"

namespace mx::engine {

class Loop;

struct Admission {
  enum class Verdict { kPass, kGone, kDenied, kError };
  Verdict verdict = Verdict::kPass;
  /** The local reply when not kPass: HTTP status, gRPC status, and the text body / grpc-message. */
  int status = 0;
  int grpcStatus = 0;
  std::string message;
};

/**
 * `plan` null: the connection's service is no longer installed (503 / UNAVAILABLE, counted nowhere: its series
 * are gone). Denied: counted as a denial, a `denied` event naming method and path. Unservable (plan error):
 * counted as a 503 response, an `upstream-failed` event.
 */
Admission AdmitRequest(const Plan* plan, Loop* loop, uint64_t session, const std::string& client, std::string_view method,
                       std::string_view path);

/**
 * PlanLimits::maxRequests for a request Admit let through: true with `*slot` holding one of the service's
 * request slots until it is reset (nothing is held or counted when the plan has no such limit); false when
 * the limit is reached (counted as an overflow; the caller answers kOverflowStatus / kOverflowGrpcStatus with
 * OverflowMessage).
 */
bool TakeRequestSlot(const Plan& plan, std::shared_ptr<void>* slot);
constexpr int kOverflowStatus = 503;
constexpr int kOverflowGrpcStatus = 14;  // UNAVAILABLE
/** The body / grpc-message of a request refused by maxRequests. */
std::string OverflowMessage(const Plan& plan);

}  // namespace mx::engine
