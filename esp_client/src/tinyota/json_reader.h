// A strict RFC 8259 reader for one flat JSON object, written for the announcement.
//
// Why not ArduinoJson: the announcement is a flat object of six keys. A reader that walks
// the payload in place needs no document pool, no heap and no extra library, and is small
// enough to fuzz exhaustively on the host (host/tests/test_fuzz.cpp). Nested values of
// unknown keys are validated and skipped, so the server may add keys later.
#ifndef TINYOTA_JSON_READER_H
#define TINYOTA_JSON_READER_H

#include <stddef.h>
#include <stdint.h>

namespace tinyota {

enum JsonType { kJsonString, kJsonNumber, kJsonTrue, kJsonFalse, kJsonNull, kJsonObject, kJsonArray };

struct JsonSpan {
  const char* data;
  size_t len;
};

struct JsonMember {
  JsonSpan key;    // raw key between the quotes, escapes not decoded
  JsonType type;
  JsonSpan value;  // strings: raw text between the quotes; other types: the whole token
};

class JsonObjectReader {
 public:
  // Deeper nesting inside skipped values is refused: it bounds the reader's recursion.
  static const int kMaxDepth = 8;

  JsonObjectReader(const char* text, size_t len);

  // Fills `member` with the next member and returns true; returns false at the end of the
  // object or at the first syntax error.
  bool next(JsonMember& member);

  // Valid once next() returned false: true when the whole text was exactly one object
  // (surrounding whitespace allowed).
  bool complete() const { return state_ == kDone; }

 private:
  enum State { kStart, kFirstMember, kMoreMembers, kDone, kError };

  void skipSpace();
  bool consume(char c);
  bool scanString(JsonSpan& raw);
  bool scanNumber(JsonSpan& token);
  bool scanLiteral(const char* word);
  bool scanValue(JsonType& type, JsonSpan& token, int depth);
  bool scanNested(char close, int depth);
  bool finish();
  bool fail();

  const char* pos_;
  const char* end_;
  State state_;
};

// Decodes the raw text of a JSON string into out (NUL-terminated UTF-8). Fails on invalid
// escapes, unpaired surrogates, U+0000 (it would cut a C string) and when out is too small.
bool jsonDecodeString(JsonSpan raw, char* out, size_t cap);

// Compares a raw key with a plain ASCII name, decoding escapes on the way ("\u0069d" == "id").
bool jsonKeyEquals(JsonSpan rawKey, const char* name);

// Converts a number token holding a non-negative integer (no fraction, no exponent).
bool jsonToUint32(JsonSpan number, uint32_t& out);

}  // namespace tinyota

#endif  // TINYOTA_JSON_READER_H
