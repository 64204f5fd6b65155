// Header field rules of the bridges: which fields are connection-specific (never cross between HTTP/1.1 and
// HTTP/2, RFC 9113 §8.2.2, `te` included: the bridges judge it apart), transfer codings, lower-casing for
// HTTP/2. Reason phrases and nghttp2 name/value arrays are the HTTP code's own (http_common.h, http2/nv.h).
#pragma once
#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <vector>

#include "../http1/chunked.h"
#include "../http1/codec.h"
#include "../http2/nv.h"
#include "../http_common.h"

namespace mx::bridge {

/** Fields that describe one connection (RFC 9113 §8.2.2 plus the legacy ones); `te` is judged by TeTrailers. */
bool ConnectionSpecific(std::string_view name);
/** Whether every Transfer-Encoding field of a message names only chunked (HTTP/2 carries no other coding). */
bool OnlyChunked(const std::vector<h1::Field>& fields);
/** Whether a comma-separated field value holds `token` (case-insensitive). */
bool ListHasToken(std::string_view list, std::string_view token);
/** ASCII lower case (HTTP/2 field names). */
std::string Lower(std::string_view s);
/** Whether a trailer may cross the bridge: not a pseudo-header, not connection-specific, not Content-Length. */
bool TrailerAllowed(std::string_view lower_name);

using http::ReasonPhrase;
using h2::ToNv;

}  // namespace mx::bridge
