// Body tracking for pass-through forwarding: the bytes are not rewritten, so all we need is where the
// message ends. The chunked parser is strict (no bare LF, no whitespace except before an extension,
// bounded sizes) so that we and the next hop can never disagree about that end.
#include "codec.h"

namespace mx::h1 {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void BodyTracker::Start(Framing f, uint64_t length) {
  framing_ = f;
  remaining_ = f == Framing::Chunked ? 0 : length;
  failed_ = false;
  error_ = nullptr;
  c_ = C::Size;
  digits_ = 0;
  trailer_bytes_ = 0;
  done_ = f == Framing::None || (f == Framing::Length && length == 0);
}

bool BodyTracker::Fail(const char* why) {
  failed_ = true;
  error_ = why;
  return false;
}

size_t BodyTracker::Consume(const char* p, size_t n) {
  if (done_ || failed_) return 0;
  switch (framing_) {
    case Framing::None:
      return 0;
    case Framing::Length: {
      size_t k = remaining_ < n ? static_cast<size_t>(remaining_) : n;
      remaining_ -= k;
      done_ = remaining_ == 0;
      return k;
    }
    case Framing::Close:
    case Framing::Tunnel:
      return n;
    case Framing::Chunked:
      return Chunked(p, n);
  }
  return 0;
}

size_t BodyTracker::Chunked(const char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char ch = static_cast<unsigned char>(p[i]);
    switch (c_) {
      case C::Size: {
        int v = HexValue(static_cast<char>(ch));
        if (v >= 0) {
          if (++digits_ > kMaxChunkSizeDigits) return Fail("chunk size too large"), i;
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
        } else if (digits_ == 0) {
          return Fail("invalid chunk size"), i;
        } else if (ch == ';') {
          c_ = C::Ext;
          trailer_bytes_ = 0;
        } else if (ch == ' ' || ch == '\t') {
          c_ = C::SizeWs;
        } else if (ch == '\r') {
          c_ = C::ExtLf;
        } else {
          return Fail("invalid chunk size"), i;
        }
        break;
      }
      case C::SizeWs:
        // Whitespace is only allowed as BWS before a chunk extension.
        if (ch == ';') {
          c_ = C::Ext;
          trailer_bytes_ = 0;
        } else if (ch != ' ' && ch != '\t') {
          return Fail("invalid chunk size"), i;
        }
        break;
      case C::Ext:
        if (ch == '\r') c_ = C::ExtLf;
        else if (!IsFieldChar(ch)) return Fail("invalid character in chunk extension"), i;
        else if (++trailer_bytes_ > kMaxChunkExtBytes) return Fail("chunk extension too long"), i;
        break;
      case C::ExtLf:
        if (ch != '\n') return Fail("bare CR in chunk size line"), i;
        c_ = remaining_ == 0 ? C::TrailerStart : C::Data;
        trailer_bytes_ = 0;
        break;
      case C::Data: {
        size_t k = remaining_ < n - i ? static_cast<size_t>(remaining_) : n - i;
        remaining_ -= k;
        i += k;
        if (remaining_ == 0) c_ = C::DataCr;
        continue;
      }
      case C::DataCr:
        if (ch != '\r') return Fail("chunk data not followed by CRLF"), i;
        c_ = C::DataLf;
        break;
      case C::DataLf:
        if (ch != '\n') return Fail("chunk data not followed by CRLF"), i;
        c_ = C::Size;
        digits_ = 0;
        break;
      case C::TrailerStart:
        if (ch == '\r') {
          c_ = C::FinalLf;
        } else if (IsTchar(ch)) {
          c_ = C::Trailer;
          trailer_line_empty_ = true;  // reused as "still in the field name"
        } else {
          return Fail(ch == ' ' || ch == '\t' ? "obsolete line folding in trailer" : "invalid trailer field"), i;
        }
        if (++trailer_bytes_ > kMaxTrailerBytes) return Fail("trailer section too large"), i;
        break;
      case C::Trailer:
        if (++trailer_bytes_ > kMaxTrailerBytes) return Fail("trailer section too large"), i;
        if (trailer_line_empty_) {
          if (ch == ':') trailer_line_empty_ = false;
          else if (!IsTchar(ch)) return Fail("invalid trailer field name"), i;
        } else if (ch == '\r') {
          c_ = C::TrailerLf;
        } else if (!IsFieldChar(ch)) {
          return Fail("invalid character in trailer field"), i;
        }
        break;
      case C::TrailerLf:
        if (ch != '\n') return Fail("bare CR in trailer"), i;
        c_ = C::TrailerStart;
        break;
      case C::FinalLf:
        if (ch != '\n') return Fail("bare CR after the last chunk"), i;
        done_ = true;
        return i + 1;
    }
    i++;
  }
  return n;
}

}  // namespace mx::h1
