#include "verify.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstring>
#include <memory>

namespace mx::tls {
namespace {

struct SanEntry {
  enum Kind { kDns, kIp, kUri } kind;
  std::string value;  // DNS/URI: raw text; IP: ipaddr.js normalised text
  std::string raw;    // IP: the address bytes
};

struct NamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};

std::string Asn1Text(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
}

// ipaddr.js toNormalizedString: dotted quad, or eight lower-case hex groups without leading zeros.
std::string NormalizedIp(const unsigned char* b, int len) {
  char buf[64];
  if (len == 4) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    return buf;
  }
  if (len == 16) {
    std::string out;
    for (int i = 0; i < 16; i += 2) {
      std::snprintf(buf, sizeof buf, "%x", (b[i] << 8) | b[i + 1]);
      if (i) out += ':';
      out += buf;
    }
    return out;
  }
  return "";
}

std::vector<SanEntry> Sans(X509* cert) {
  std::vector<SanEntry> out;
  std::unique_ptr<GENERAL_NAMES, NamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); i++) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
    if (g->type == GEN_DNS) {
      out.push_back({SanEntry::kDns, Asn1Text(g->d.dNSName), ""});
    } else if (g->type == GEN_URI) {
      out.push_back({SanEntry::kUri, Asn1Text(g->d.uniformResourceIdentifier), ""});
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = g->d.iPAddress;
      std::string norm = NormalizedIp(ASN1_STRING_get0_data(ip), ASN1_STRING_length(ip));
      if (!norm.empty()) out.push_back({SanEntry::kIp, norm, Asn1Text(ip)});
    }
  }
  return out;
}

std::string Unfqdn(const std::string& h) {
  return !h.empty() && h.back() == '.' ? h.substr(0, h.size() - 1) : h;
}

// Node's splitHost: unfqdn, ASCII lower-case, split on '.' (an empty string gives one empty part).
std::vector<std::string> SplitHost(const std::string& h) {
  std::string s = Unfqdn(h);
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    if (dot == std::string::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

bool StartsWith(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool EndsWith(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Node's check(hostParts, pattern, wildcards=true) from lib/tls.js.
bool WildcardMatch(const std::vector<std::string>& host, const std::string& pattern) {
  if (pattern.empty()) return false;
  std::vector<std::string> pat = SplitHost(pattern);
  if (host.size() != pat.size()) return false;
  for (const auto& p : pat) {
    if (p.empty()) return false;
    for (unsigned char c : p)
      if (c < 0x21 || c > 0x7f) return false;
  }
  for (size_t i = host.size() - 1; i > 0; i--)
    if (host[i] != pat[i]) return false;
  const std::string& hsub = host[0];
  const std::string& psub = pat[0];
  size_t star = psub.find('*');
  if (star == std::string::npos || psub.find("xn--") != std::string::npos) return hsub == psub;
  if (psub.find('*', star + 1) != std::string::npos) return false;
  if (pat.size() <= 2) return false;
  std::string prefix = psub.substr(0, star), suffix = psub.substr(star + 1);
  if (prefix.size() + suffix.size() > hsub.size()) return false;
  return StartsWith(hsub, prefix) && EndsWith(hsub, suffix);
}

std::vector<std::string> CommonNames(X509* cert) {
  std::vector<std::string> out;
  X509_NAME* subj = X509_get_subject_name(cert);
  if (!subj) return out;
  for (int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) {
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
    if (n >= 0) out.emplace_back(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
  }
  return out;
}

}  // namespace

bool CheckServerIdentity(const std::string& host_in, X509* cert) {
  std::string host = Unfqdn(host_in);
  std::vector<SanEntry> sans = Sans(cert);
  unsigned char addr[16];
  int len = 0;
  if (inet_pton(AF_INET, host.c_str(), addr) == 1) len = 4;
  else if (inet_pton(AF_INET6, host.c_str(), addr) == 1) len = 16;
  if (len) {
    for (const auto& s : sans)
      if (s.kind == SanEntry::kIp && s.raw.size() == static_cast<size_t>(len) && std::memcmp(s.raw.data(), addr, len) == 0)
        return true;
    return false;
  }
  std::vector<std::string> host_parts = SplitHost(host);
  bool any_dns = false;
  for (const auto& s : sans) {
    if (s.kind != SanEntry::kDns) continue;
    any_dns = true;
    if (WildcardMatch(host_parts, s.value)) return true;
  }
  if (any_dns) return false;
  // Match against the Common Name only if no DNS name is present (Node's rule).
  for (const auto& cn : CommonNames(cert))
    if (WildcardMatch(host_parts, cn)) return true;
  return false;
}

bool MatchesUserSans(X509* cert, const std::vector<SanMatcher>& matchers) {
  if (matchers.empty()) return false;
  std::vector<SanEntry> sans = Sans(cert);
  for (const auto& m : matchers) {
    for (const auto& s : sans) {
      const std::string& want = (s.kind == SanEntry::kIp && m.exact) ? m.ip_value : m.value;
      if (m.exact ? s.value == want : StartsWith(s.value, want)) return true;
    }
  }
  return false;
}

std::string SanListText(X509* cert) {
  std::string out;
  for (const auto& s : Sans(cert)) {
    if (!out.empty()) out += ',';
    out += s.kind == SanEntry::kDns ? "DNS:" : s.kind == SanEntry::kIp ? "IP:" : "URI:";
    out += s.value;
  }
  return out;
}

long OutsideValidity(X509* cert) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) return X509_V_ERR_CERT_HAS_EXPIRED;
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) return X509_V_ERR_CERT_NOT_YET_VALID;
  return 0;
}

std::string VerifyCodeName(long err) {
  switch (err) {
#define MX_CODE(name) \
  case X509_V_ERR_##name: return #name;
    MX_CODE(UNABLE_TO_GET_ISSUER_CERT)
    MX_CODE(UNABLE_TO_GET_CRL)
    MX_CODE(UNABLE_TO_DECRYPT_CERT_SIGNATURE)
    MX_CODE(UNABLE_TO_DECRYPT_CRL_SIGNATURE)
    MX_CODE(UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY)
    MX_CODE(CERT_SIGNATURE_FAILURE)
    MX_CODE(CRL_SIGNATURE_FAILURE)
    MX_CODE(CERT_NOT_YET_VALID)
    MX_CODE(CERT_HAS_EXPIRED)
    MX_CODE(CRL_NOT_YET_VALID)
    MX_CODE(CRL_HAS_EXPIRED)
    MX_CODE(ERROR_IN_CERT_NOT_BEFORE_FIELD)
    MX_CODE(ERROR_IN_CERT_NOT_AFTER_FIELD)
    MX_CODE(ERROR_IN_CRL_LAST_UPDATE_FIELD)
    MX_CODE(ERROR_IN_CRL_NEXT_UPDATE_FIELD)
    MX_CODE(OUT_OF_MEM)
    MX_CODE(DEPTH_ZERO_SELF_SIGNED_CERT)
    MX_CODE(SELF_SIGNED_CERT_IN_CHAIN)
    MX_CODE(UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    MX_CODE(UNABLE_TO_VERIFY_LEAF_SIGNATURE)
    MX_CODE(CERT_CHAIN_TOO_LONG)
    MX_CODE(CERT_REVOKED)
    MX_CODE(INVALID_CA)
    MX_CODE(PATH_LENGTH_EXCEEDED)
    MX_CODE(INVALID_PURPOSE)
    MX_CODE(CERT_UNTRUSTED)
    MX_CODE(CERT_REJECTED)
    MX_CODE(HOSTNAME_MISMATCH)
#undef MX_CODE
  }
  return X509_verify_cert_error_string(err);
}

}  // namespace mx::tls
