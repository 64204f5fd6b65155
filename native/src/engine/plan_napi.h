// engineInstall's argument → PlanSet (see plan_napi.cc).
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "plan.h"

namespace mx::engine {

/** A plan installed failing closed, and why (e.g. TLS settings OpenSSL refused). */
struct InstallError {
  std::string service;
  std::string code;  // MESHEXT_E_TLS_CONFIG, MESHEXT_E_KEY_CONFLICT
  std::string error;
};

/** Reads {source, mapFd?, plans}; throws a TypeError naming the field for a malformed argument. */
std::shared_ptr<PlanSet> PlanSetFromJs(Napi::Env env, const Napi::Value& v, PlanTable& table, std::vector<InstallError>* errors);

}  // namespace mx::engine
