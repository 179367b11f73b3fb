// Bounded string helpers: no heap, no printf, no surprises on 8-bit-clean input.
#ifndef TINYOTA_TEXT_H
#define TINYOTA_TEXT_H

#include <stddef.h>
#include <stdint.h>

namespace tinyota {

// Copies src (or its first len bytes) into dst and always NUL-terminates when cap > 0.
// Returns false when src had to be cut to fit.
bool copyText(char* dst, size_t cap, const char* src);
bool copyText(char* dst, size_t cap, const char* src, size_t len);

bool startsWith(const char* text, const char* prefix);
bool isEmpty(const char* text);

// Length of the well-formed UTF-8 sequence starting at s (n bytes available), or 0 when the
// bytes are not valid UTF-8 (overlong forms, surrogates and values above U+10FFFF included).
size_t utf8SequenceLength(const unsigned char* s, size_t n);

// Appends to a caller-owned buffer. The text stays NUL-terminated; once something did not
// fit, ok() turns false and the caller discards the result (JSON must never be truncated).
class TextBuilder {
 public:
  TextBuilder(char* buffer, size_t capacity);

  TextBuilder& add(const char* text);
  TextBuilder& add(const char* text, size_t len);
  TextBuilder& addChar(char c);
  TextBuilder& addUint(unsigned long value);
  // Adds a JSON string literal, quotes included (RFC 8259 section 7): '"', '\' and control
  // characters are escaped, valid UTF-8 is kept, invalid bytes become U+FFFD.
  TextBuilder& addJsonString(const char* text, size_t len);
  TextBuilder& addJsonString(const char* text);

  bool ok() const { return ok_; }
  size_t length() const { return len_; }
  const char* c_str() const { return buf_; }

 private:
  char* buf_;
  size_t cap_;
  size_t len_;
  bool ok_;
};

}  // namespace tinyota

#endif  // TINYOTA_TEXT_H
