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

}  // namespace mx::engine
