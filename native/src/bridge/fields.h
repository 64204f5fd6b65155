// Header field rules shared by the bridges: which fields are connection-specific (never cross between
// HTTP/1.1 and HTTP/2, RFC 9113 §8.2.2), lower-casing for HTTP/2, reason phrases for HTTP/1.1 status
// lines, and nghttp2 name/value arrays.
#pragma once
#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <vector>

#include "../http1/chunked.h"
#include "../http1/codec.h"

namespace mx::bridge {

/** Fields that describe one connection (RFC 9113 §8.2.2 plus the legacy ones); `te` is judged by TeTrailers. */
bool ConnectionSpecific(std::string_view name);
/** Whether every Transfer-Encoding field of a message names only chunked (HTTP/2 carries no other coding). */
bool OnlyChunked(const std::vector<h1::Field>& fields);
/** Whether a comma-separated field value holds `token` (case-insensitive). */
bool ListHasToken(std::string_view list, std::string_view token);
/** ASCII lower case (HTTP/2 field names). */
std::string Lower(std::string_view s);
/** The RFC 9110 reason phrase of `status`, or "" for a code without one. */
const char* ReasonPhrase(int status);
/** Whether a trailer may cross the bridge: not a pseudo-header, not connection-specific, not Content-Length. */
bool TrailerAllowed(std::string_view lower_name);

/** nghttp2 name/value array over `fields`; the strings must outlive the submit call (nghttp2 copies them). */
std::vector<nghttp2_nv> ToNv(const h1::FieldList& fields);

}  // namespace mx::bridge
