#include "text.h"

#include <string.h>

namespace tinyota {

bool copyText(char* dst, size_t cap, const char* src, size_t len) {
  if (cap == 0) return len == 0;
  const bool fits = len < cap;
  const size_t n = fits ? len : cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return fits;
}

bool copyText(char* dst, size_t cap, const char* src) {
  return copyText(dst, cap, src ? src : "", src ? strlen(src) : 0);
}

bool startsWith(const char* text, const char* prefix) {
  return strncmp(text, prefix, strlen(prefix)) == 0;
}

bool isEmpty(const char* text) { return text == 0 || text[0] == '\0'; }

size_t utf8SequenceLength(const unsigned char* s, size_t n) {
  if (n == 0) return 0;
  const unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char low = 0x80;   // allowed range of the second byte (RFC 3629 section 4)
  unsigned char high = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) low = 0xA0;   // no overlong forms
    if (c == 0xED) high = 0x9F;  // no UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) low = 0x90;   // no overlong forms
    if (c == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (n < len || s[1] < low || s[1] > high) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  }
  return len;
}

TextBuilder::TextBuilder(char* buffer, size_t capacity)
    : buf_(buffer), cap_(capacity), len_(0), ok_(capacity > 0) {
  if (cap_ > 0) buf_[0] = '\0';
}

TextBuilder& TextBuilder::add(const char* text, size_t len) {
  if (!ok_) return *this;
  if (len >= cap_ - len_) {
    ok_ = false;
    return *this;
  }
  memcpy(buf_ + len_, text, len);
  len_ += len;
  buf_[len_] = '\0';
  return *this;
}

TextBuilder& TextBuilder::add(const char* text) { return add(text, strlen(text)); }

TextBuilder& TextBuilder::addChar(char c) { return add(&c, 1); }

TextBuilder& TextBuilder::addUint(unsigned long value) {
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  char text[20];
  for (size_t i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
  return add(text, n);
}

TextBuilder& TextBuilder::addJsonString(const char* text) {
  return addJsonString(text, text ? strlen(text) : 0);
}

TextBuilder& TextBuilder::addJsonString(const char* text, size_t len) {
  static const char kHex[] = "0123456789abcdef";
  const unsigned char* s = reinterpret_cast<const unsigned char*>(text);
  addChar('"');
  size_t i = 0;
  while (i < len && ok_) {
    const unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      const char escaped[2] = {'\\', static_cast<char>(c)};
      add(escaped, 2);
    } else if (c == '\n') {
      add("\\n", 2);
    } else if (c == '\r') {
      add("\\r", 2);
    } else if (c == '\t') {
      add("\\t", 2);
    } else if (c < 0x20 || c == 0x7F) {
      const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      add(escaped, 6);
    } else if (c < 0x80) {
      addChar(static_cast<char>(c));
    } else {
      const size_t seq = utf8SequenceLength(s + i, len - i);
      if (seq == 0) {
        add("\\ufffd", 6);
      } else {
        add(text + i, seq);
        i += seq - 1;
      }
    }
    ++i;
  }
  return addChar('"');
}

}  // namespace tinyota
