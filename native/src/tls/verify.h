// Certificate checks done on the X509 itself: host names as Node's tls.checkServerIdentity checks them, the user's
// SAN matchers (Exact/Prefix OR-ed over DNS, IP and URI SANs), the validity window re-checked on resumed
// sessions, and Node's names for X509 verify codes (so TypeScript classifies them exactly as before).
#pragma once
#include <openssl/x509.h>

#include <string>
#include <vector>

namespace mx::tls {

/** One `subjectAltNames` matcher; `ip_value` is the matcher value as ipaddr.js normalises it (TS does that). */
struct SanMatcher {
  bool exact = false;
  std::string value;
  std::string ip_value;
};

/** Node 20's tls.checkServerIdentity(host, cert) === undefined: IP SANs for an IP, else DNS SANs, else CN. */
bool CheckServerIdentity(const std::string& host, X509* cert);

/** True when any matcher matches any DNS, IP or URI SAN. */
bool MatchesUserSans(X509* cert, const std::vector<SanMatcher>& matchers);

/** The SANs as a name-mismatch message lists them: "DNS:a,IP:1.2.3.4,URI:x". */
std::string SanListText(X509* cert);

/** 0 inside the validity window, else X509_V_ERR_CERT_HAS_EXPIRED or X509_V_ERR_CERT_NOT_YET_VALID. */
long OutsideValidity(X509* cert);

/** Node's code for an X509_V_ERR_* value (e.g. "CERT_HAS_EXPIRED"); OpenSSL's text for codes Node does not name. */
std::string VerifyCodeName(long err);

}  // namespace mx::tls
