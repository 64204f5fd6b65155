// Chunked transfer coding (RFC 9112 §7.1): the one decoder (payload bytes and trailer fields; BodyTracker
// runs it only counting bytes for the pass-through path, bridges take bodies apart with it), strict (no bare
// CR/LF, no whitespace except before an extension, bounded size digits, extensions and trailer section), so
// every path accepts and rejects the same streams; and an encoder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "buf.h"

namespace mx::h1 {

/** Header or trailer fields that own their bytes (name, value), in the order received. */
using FieldList = std::vector<std::pair<std::string, std::string>>;

class ChunkedDecoder {
 public:
  /** Prepares for a new body. */
  void Reset();
  /**
   * Decodes p[0..n): payload bytes are appended to `out` (dropped when null). Returns the bytes consumed,
   * fewer than n only once the body ended (done()) or the stream is malformed (failed(); the bytes up to
   * the fault are consumed).
   */
  size_t Decode(const char* p, size_t n, Buf* out);
  bool done() const { return done_; }
  bool failed() const { return failed_; }
  const char* error() const { return error_; }
  /** The trailer section's fields (names as sent, values without surrounding whitespace); complete once done(). */
  const FieldList& trailers() const { return trailers_; }
  /** Payload bytes decoded so far. */
  uint64_t payload() const { return payload_; }

 private:
  enum class C : uint8_t { Size, SizeWs, Ext, ExtLf, Data, DataCr, DataLf, TrailerStart, Trailer, TrailerLf, FinalLf };
  size_t Fail(const char* why, size_t at);
  void EndTrailerLine();

  C c_ = C::Size;
  uint64_t remaining_ = 0, payload_ = 0;
  int digits_ = 0;
  size_t section_bytes_ = 0;  // extension bytes of this size line, or trailer section bytes so far
  bool in_name_ = true;       // trailer line: still in the field name
  bool done_ = false, failed_ = false;
  const char* error_ = nullptr;
  std::string line_;  // the trailer line being read (bounded by kMaxTrailerBytes)
  FieldList trailers_;
};

/** Appends p[0..n) as one chunk; nothing for n == 0 (an empty chunk would end the body). */
void AppendChunk(Buf& out, const char* p, size_t n);

/**
 * Appends the last chunk and the trailer section. Fields that an HTTP/1.1 field line cannot carry (a name
 * that is not a token, a value with CR, LF or other control bytes) are left out rather than sent broken.
 */
void AppendLastChunk(Buf& out, const FieldList& trailers);

/** Whether `name` is a token and `value` only field characters: safe to write as a field line. */
bool ValidFieldLine(std::string_view name, std::string_view value);

}  // namespace mx::h1
