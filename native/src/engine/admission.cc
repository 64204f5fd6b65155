#include "admission.h"

#include "engine.h"

namespace mx::engine {

Admission AdmitRequest(const Plan* plan, Loop* loop, uint64_t session, const std::string& client, std::string_view method,
                       std::string_view path) {
  Admission a;
  constexpr int kUnavailable = 14;  // gRPC UNAVAILABLE
  if (plan == nullptr) {
    a.verdict = Admission::Verdict::kGone;
    a.status = 503;
    a.grpcStatus = kUnavailable;
    a.message = "upstream unavailable: the service of this connection is no longer configured";
    return a;
  }
  if (plan->denied) {
    plan->state->stats.Add(ServiceStats::kAccessDenied);
    loop->Emit(Event("denied", session).Lazy().Str("service", plan->service).Str("client", client).Str("method", std::string(method)).Str("path", std::string(path)));
    a.verdict = Admission::Verdict::kDenied;
    a.status = plan->deny.status;
    a.grpcStatus = plan->deny.grpcStatus;
    a.message = plan->deny.message;
    return a;
  }
  if (!plan->error.empty()) {
    plan->state->stats.CountResponse(503);
    loop->Emit(Event("upstream-failed", session).Str("service", plan->service).Str("client", client).Str("reason", plan->error));
    a.verdict = Admission::Verdict::kError;
    a.status = 503;
    a.grpcStatus = kUnavailable;
    a.message = "upstream unavailable: " + plan->error;
  }
  return a;
}

bool TakeRequestSlot(const Plan& plan, std::shared_ptr<void>* slot) {
  uint32_t max = plan.limits.maxRequests;
  if (max == 0) return true;
  const std::shared_ptr<const char>& token = plan.state->requestToken;
  // Check, then take: threads admitting at the same instant may each pass, so the limit can be overshot by at
  // most the number of engine threads (Envoy's limits are approximate across workers too).
  if (static_cast<uint64_t>(token.use_count() - 1) >= max) {
    plan.state->stats.Add(ServiceStats::kUpstreamRqPendingOverflow);
    return false;
  }
  *slot = std::const_pointer_cast<char>(token);
  return true;
}

std::string OverflowMessage(const Plan& plan) {
  return "upstream overflow: " + std::to_string(plan.limits.maxRequests) + " requests already in flight (MeshCircuitBreaker maxRequests)";
}

}  // namespace mx::engine
