#include "json_reader.h"

#include <string.h>

namespace tinyota {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads the four hex digits of a \u escape at p.
bool readHex4(const char* p, uint32_t& out) {
  out = 0;
  for (int i = 0; i < 4; ++i) {
    const int v = hexValue(p[i]);
    if (v < 0) return false;
    out = (out << 4) | static_cast<uint32_t>(v);
  }
  return true;
}

// Appends the UTF-8 form of a code point; false when it does not fit (room for NUL kept).
bool putUtf8(uint32_t cp, char* out, size_t cap, size_t& n) {
  char bytes[4];
  size_t len;
  if (cp < 0x80) {
    bytes[0] = static_cast<char>(cp);
    len = 1;
  } else if (cp < 0x800) {
    bytes[0] = static_cast<char>(0xC0 | (cp >> 6));
    bytes[1] = static_cast<char>(0x80 | (cp & 0x3F));
    len = 2;
  } else if (cp < 0x10000) {
    bytes[0] = static_cast<char>(0xE0 | (cp >> 12));
    bytes[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    bytes[2] = static_cast<char>(0x80 | (cp & 0x3F));
    len = 3;
  } else {
    bytes[0] = static_cast<char>(0xF0 | (cp >> 18));
    bytes[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    bytes[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    bytes[3] = static_cast<char>(0x80 | (cp & 0x3F));
    len = 4;
  }
  if (len >= cap - n) return false;
  memcpy(out + n, bytes, len);
  n += len;
  return true;
}

}  // namespace

JsonObjectReader::JsonObjectReader(const char* text, size_t len)
    : pos_(text), end_(text + len), state_(kStart) {}

void JsonObjectReader::skipSpace() {
  // RFC 8259 section 2: only these four count as insignificant whitespace.
  while (pos_ < end_ && (*pos_ == ' ' || *pos_ == '\t' || *pos_ == '\n' || *pos_ == '\r')) ++pos_;
}

bool JsonObjectReader::consume(char c) {
  if (pos_ < end_ && *pos_ == c) {
    ++pos_;
    return true;
  }
  return false;
}

bool JsonObjectReader::fail() {
  state_ = kError;
  return false;
}

bool JsonObjectReader::scanString(JsonSpan& raw) {
  if (!consume('"')) return false;
  raw.data = pos_;
  while (pos_ < end_) {
    const unsigned char c = static_cast<unsigned char>(*pos_);
    if (c == '"') {
      raw.len = static_cast<size_t>(pos_ - raw.data);
      ++pos_;
      return true;
    }
    if (c < 0x20) return false;  // control characters must be escaped
    if (c == '\\') {
      ++pos_;
      if (pos_ >= end_) return false;
      const char e = *pos_;
      if (e == 'u') {
        uint32_t ignored;
        if (end_ - pos_ < 5 || !readHex4(pos_ + 1, ignored)) return false;
        pos_ += 4;
      } else if (strchr("\"\\/bfnrt", e) == 0 || e == '\0') {
        return false;
      }
    }
    ++pos_;
  }
  return false;  // unterminated
}

bool JsonObjectReader::scanNumber(JsonSpan& token) {
  // number = [ minus ] int [ frac ] [ exp ]   (RFC 8259 section 6)
  token.data = pos_;
  consume('-');
  if (pos_ >= end_ || !isDigit(*pos_)) return false;
  if (*pos_ == '0') {
    ++pos_;
  } else {
    while (pos_ < end_ && isDigit(*pos_)) ++pos_;
  }
  if (consume('.')) {
    if (pos_ >= end_ || !isDigit(*pos_)) return false;
    while (pos_ < end_ && isDigit(*pos_)) ++pos_;
  }
  if (pos_ < end_ && (*pos_ == 'e' || *pos_ == 'E')) {
    ++pos_;
    if (!consume('+')) consume('-');
    if (pos_ >= end_ || !isDigit(*pos_)) return false;
    while (pos_ < end_ && isDigit(*pos_)) ++pos_;
  }
  token.len = static_cast<size_t>(pos_ - token.data);
  return true;
}

bool JsonObjectReader::scanLiteral(const char* word) {
  const size_t n = strlen(word);
  if (static_cast<size_t>(end_ - pos_) < n || memcmp(pos_, word, n) != 0) return false;
  pos_ += n;
  return true;
}

bool JsonObjectReader::scanNested(char close, int depth) {
  // pos_ is just past '{' or '['; validates members/elements up to the matching close.
  skipSpace();
  if (consume(close)) return true;
  for (;;) {
    JsonType type;
    JsonSpan token;
    if (close == '}') {
      JsonSpan key;
      if (!scanString(key)) return false;
      skipSpace();
      if (!consume(':')) return false;
      skipSpace();
    }
    if (!scanValue(type, token, depth)) return false;
    skipSpace();
    if (consume(close)) return true;
    if (!consume(',')) return false;
    skipSpace();
  }
}

bool JsonObjectReader::scanValue(JsonType& type, JsonSpan& token, int depth) {
  if (pos_ >= end_) return false;
  const char* start = pos_;
  switch (*pos_) {
    case '"':
      type = kJsonString;
      return scanString(token);
    case '{':
    case '[':
      if (depth >= kMaxDepth) return false;
      type = (*pos_ == '{') ? kJsonObject : kJsonArray;
      ++pos_;
      if (!scanNested(type == kJsonObject ? '}' : ']', depth + 1)) return false;
      break;
    case 't':
      type = kJsonTrue;
      if (!scanLiteral("true")) return false;
      break;
    case 'f':
      type = kJsonFalse;
      if (!scanLiteral("false")) return false;
      break;
    case 'n':
      type = kJsonNull;
      if (!scanLiteral("null")) return false;
      break;
    default:
      type = kJsonNumber;
      return scanNumber(token);
  }
  token.data = start;
  token.len = static_cast<size_t>(pos_ - start);
  return true;
}

bool JsonObjectReader::finish() {
  skipSpace();
  state_ = (pos_ == end_) ? kDone : kError;
  return false;
}

bool JsonObjectReader::next(JsonMember& member) {
  switch (state_) {
    case kStart:
      skipSpace();
      if (!consume('{')) return fail();
      skipSpace();
      if (consume('}')) return finish();
      state_ = kFirstMember;
      break;
    case kFirstMember:
    case kMoreMembers:
      skipSpace();
      if (consume('}')) return finish();
      if (!consume(',')) return fail();
      skipSpace();
      break;
    case kDone:
    case kError:
      return false;
  }
  if (!scanString(member.key)) return fail();
  skipSpace();
  if (!consume(':')) return fail();
  skipSpace();
  if (!scanValue(member.type, member.value, 1)) return fail();
  state_ = kMoreMembers;
  return true;
}

bool jsonDecodeString(JsonSpan raw, char* out, size_t cap) {
  if (cap == 0) return false;
  size_t n = 0;
  const char* p = raw.data;
  const char* end = raw.data + raw.len;
  while (p < end) {
    char c = *p++;
    if (static_cast<unsigned char>(c) < 0x20) return false;
    if (c != '\\') {
      if (n + 1 >= cap) return false;
      out[n++] = c;
      continue;
    }
    if (p >= end) return false;
    const char e = *p++;
    uint32_t cp;
    switch (e) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        if (end - p < 4 || !readHex4(p, cp)) return false;
        p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // low surrogate without a high one
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t low;
          if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !readHex4(p + 2, low)) return false;
          if (low < 0xDC00 || low > 0xDFFF) return false;
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        if (cp == 0) return false;
        break;
      }
      default:
        return false;
    }
    if (!putUtf8(cp, out, cap, n)) return false;
  }
  out[n] = '\0';
  return true;
}

bool jsonKeyEquals(JsonSpan rawKey, const char* name) {
  // Fast path: keys are almost never escaped.
  if (memchr(rawKey.data, '\\', rawKey.len) == 0) {
    return rawKey.len == strlen(name) && memcmp(rawKey.data, name, rawKey.len) == 0;
  }
  char decoded[32];
  return jsonDecodeString(rawKey, decoded, sizeof decoded) && strcmp(decoded, name) == 0;
}

bool jsonToUint32(JsonSpan number, uint32_t& out) {
  if (number.len == 0) return false;
  uint32_t value = 0;
  for (size_t i = 0; i < number.len; ++i) {
    const char c = number.data[i];
    if (!isDigit(c)) return false;  // sign, fraction or exponent
    const uint32_t digit = static_cast<uint32_t>(c - '0');
    if (value > (0xFFFFFFFFu - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

}  // namespace tinyota
