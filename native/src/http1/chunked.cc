// Chunked coding (see chunked.h): the one chunked parser; BodyTracker counts with it, bridges decode with it.
#include "chunked.h"

#include <cstdio>

#include "codec.h"

namespace mx::h1 {
namespace {

int HexValue(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void ChunkedDecoder::Reset() { *this = ChunkedDecoder(); }

size_t ChunkedDecoder::Fail(const char* why, size_t at) {
  failed_ = true;
  error_ = why;
  return at;
}

void ChunkedDecoder::EndTrailerLine() {
  size_t colon = line_.find(':');
  std::string_view name(line_.data(), colon);
  std::string_view value = TrimOws(std::string_view(line_).substr(colon + 1));
  trailers_.emplace_back(std::string(name), std::string(value));
  line_.clear();
}

size_t ChunkedDecoder::Decode(const char* p, size_t n, Buf* out) {
  if (done_ || failed_) return 0;
  size_t i = 0;
  while (i < n) {
    unsigned char ch = static_cast<unsigned char>(p[i]);
    switch (c_) {
      case C::Size: {
        int v = HexValue(ch);
        if (v >= 0) {
          if (++digits_ > kMaxChunkSizeDigits) return Fail("chunk size too large", i);
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
        } else if (digits_ == 0) {
          return Fail("invalid chunk size", i);
        } else if (ch == ';') {
          c_ = C::Ext;
          section_bytes_ = 0;
        } else if (ch == ' ' || ch == '\t') {
          c_ = C::SizeWs;
        } else if (ch == '\r') {
          c_ = C::ExtLf;
        } else {
          return Fail("invalid chunk size", i);
        }
        break;
      }
      case C::SizeWs:
        // Whitespace is only allowed as BWS before a chunk extension.
        if (ch == ';') {
          c_ = C::Ext;
          section_bytes_ = 0;
        } else if (ch != ' ' && ch != '\t') {
          return Fail("invalid chunk size", i);
        }
        break;
      case C::Ext:
        if (ch == '\r') c_ = C::ExtLf;
        else if (!IsFieldChar(ch)) return Fail("invalid character in chunk extension", i);
        else if (++section_bytes_ > kMaxChunkExtBytes) return Fail("chunk extension too long", i);
        break;
      case C::ExtLf:
        if (ch != '\n') return Fail("bare CR in chunk size line", i);
        c_ = remaining_ == 0 ? C::TrailerStart : C::Data;
        section_bytes_ = 0;
        break;
      case C::Data: {
        size_t k = remaining_ < n - i ? static_cast<size_t>(remaining_) : n - i;
        if (out) out->Append(p + i, k);
        remaining_ -= k;
        payload_ += k;
        i += k;
        if (remaining_ == 0) c_ = C::DataCr;
        continue;
      }
      case C::DataCr:
        if (ch != '\r') return Fail("chunk data not followed by CRLF", i);
        c_ = C::DataLf;
        break;
      case C::DataLf:
        if (ch != '\n') return Fail("chunk data not followed by CRLF", i);
        c_ = C::Size;
        digits_ = 0;
        break;
      case C::TrailerStart:
        if (ch == '\r') {
          c_ = C::FinalLf;
        } else if (IsTchar(ch)) {
          c_ = C::Trailer;
          in_name_ = true;
          line_.assign(1, static_cast<char>(ch));
        } else {
          return Fail(ch == ' ' || ch == '\t' ? "obsolete line folding in trailer" : "invalid trailer field", i);
        }
        if (++section_bytes_ > kMaxTrailerBytes) return Fail("trailer section too large", i);
        break;
      case C::Trailer:
        if (++section_bytes_ > kMaxTrailerBytes) return Fail("trailer section too large", i);
        if (in_name_) {
          if (ch == ':') in_name_ = false;
          else if (!IsTchar(ch)) return Fail("invalid trailer field name", i);
        } else if (ch == '\r') {
          c_ = C::TrailerLf;
          break;
        } else if (!IsFieldChar(ch)) {
          return Fail("invalid character in trailer field", i);
        }
        line_.push_back(static_cast<char>(ch));
        break;
      case C::TrailerLf:
        if (ch != '\n') return Fail("bare CR in trailer", i);
        EndTrailerLine();
        c_ = C::TrailerStart;
        break;
      case C::FinalLf:
        if (ch != '\n') return Fail("bare CR after the last chunk", i);
        done_ = true;
        return i + 1;
    }
    i++;
  }
  return n;
}

bool ValidFieldLine(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char c : name)
    if (!IsTchar(static_cast<unsigned char>(c))) return false;
  for (char c : value)
    if (!IsFieldChar(static_cast<unsigned char>(c))) return false;
  return true;
}

void AppendChunk(Buf& out, const char* p, size_t n) {
  if (n == 0) return;
  char line[24];
  int len = std::snprintf(line, sizeof line, "%zx\r\n", n);
  out.Append(line, static_cast<size_t>(len));
  out.Append(p, n);
  out.Append("\r\n", 2);
}

void AppendLastChunk(Buf& out, const FieldList& trailers) {
  out.Append("0\r\n", 3);
  for (const auto& [name, value] : trailers) {
    if (!ValidFieldLine(name, value)) continue;
    out.Append(name.data(), name.size());
    out.Append(": ", 2);
    out.Append(value.data(), value.size());
    out.Append("\r\n", 2);
  }
  out.Append("\r\n", 2);
}

}  // namespace mx::h1
