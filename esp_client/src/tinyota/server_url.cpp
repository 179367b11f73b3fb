#include "server_url.h"

#include <string.h>

#include "text.h"

namespace tinyota {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoringCase(const char* a, size_t aLen, const char* b, size_t bLen) {
  if (aLen != bLen) return false;
  for (size_t i = 0; i < aLen; ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool isHostChar(char c) {
  // RFC 3986 reg-name without percent-encoding (a DNS name or an IPv4 address).
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

bool isIpv6Char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

bool parsePort(const char* s, size_t len, uint16_t& out) {
  if (len == 0 || len > 5) return false;
  unsigned long value = 0;
  for (size_t i = 0; i < len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + static_cast<unsigned long>(s[i] - '0');
  }
  if (value == 0 || value > 65535) return false;
  out = static_cast<uint16_t>(value);
  return true;
}

// Dot segments and encoded separators would let "base/../elsewhere" pass a prefix test
// and then be resolved by the server (or a proxy in front of it) to another place.
bool isSafePath(const char* path, size_t len) {
  const char* segment = path;
  const char* end = path + len;
  for (const char* p = path; p <= end; ++p) {
    if (p == end || *p == '/') {
      const size_t n = static_cast<size_t>(p - segment);
      if ((n == 1 && segment[0] == '.') || (n == 2 && segment[0] == '.' && segment[1] == '.')) return false;
      segment = p + 1;
      continue;
    }
    if (*p == '\\') return false;
    if (*p == '%') {
      if (end - p < 3) return false;
      const char a = p[1];
      const char b = lower(p[2]);
      if (a == '2' && (b == 'e' || b == 'f')) return false;  // '.' and '/'
      if (a == '5' && b == 'c') return false;                // '\'
    }
  }
  return true;
}

}  // namespace

bool parseHttpUrl(const char* url, UrlParts& out) {
  memset(&out, 0, sizeof out);
  if (url == 0) return false;
  size_t schemeLen;
  if (startsWith(url, "http://")) {
    schemeLen = 7;
    out.port = 80;
  } else if (startsWith(url, "https://")) {
    schemeLen = 8;
    out.https = true;
    out.port = 443;
  } else {
    return false;
  }
  for (const char* p = url; *p != '\0'; ++p) {
    if (*p < 0x21 || *p > 0x7E) return false;
  }
  const char* authority = url + schemeLen;
  const size_t authorityLen = strcspn(authority, "/?#");
  const char* authorityEnd = authority + authorityLen;
  if (memchr(authority, '@', authorityLen) != 0) return false;  // user info: never ours

  const char* portStart = 0;
  if (authorityLen > 0 && authority[0] == '[') {
    const char* close = static_cast<const char*>(memchr(authority, ']', authorityLen));
    if (close == 0 || close == authority + 1) return false;
    for (const char* p = authority + 1; p < close; ++p) {
      if (!isIpv6Char(*p)) return false;
    }
    out.host = authority + 1;
    out.hostLen = static_cast<size_t>(close - out.host);
    if (close + 1 < authorityEnd) {
      if (close[1] != ':') return false;
      portStart = close + 2;
    }
  } else {
    const char* colon = static_cast<const char*>(memchr(authority, ':', authorityLen));
    const char* hostEnd = colon != 0 ? colon : authorityEnd;
    out.host = authority;
    out.hostLen = static_cast<size_t>(hostEnd - authority);
    if (out.hostLen == 0) return false;
    for (const char* p = authority; p < hostEnd; ++p) {
      if (!isHostChar(*p)) return false;
    }
    if (colon != 0) portStart = colon + 1;
  }
  if (portStart != 0 && !parsePort(portStart, static_cast<size_t>(authorityEnd - portStart), out.port)) {
    return false;
  }

  if (*authorityEnd == '/') {
    out.path = authorityEnd;
    out.pathLen = strcspn(authorityEnd, "?#");
  } else {
    out.path = "/";
    out.pathLen = 1;
  }
  return isSafePath(out.path, out.pathLen);
}

bool isUsableServerBase(const char* base) {
  UrlParts parts;
  return parseHttpUrl(base, parts) && strpbrk(base, "?#") == 0;
}

bool isUnderServerBase(const char* url, const char* base) {
  UrlParts want;
  UrlParts got;
  if (!isUsableServerBase(base) || !parseHttpUrl(base, want) || !parseHttpUrl(url, got)) return false;
  if (want.https != got.https || want.port != got.port) return false;
  if (!equalsIgnoringCase(want.host, want.hostLen, got.host, got.hostLen)) return false;
  // The base path without its trailing slash is a prefix of the path, at a segment boundary.
  size_t prefixLen = want.pathLen;
  while (prefixLen > 0 && want.path[prefixLen - 1] == '/') --prefixLen;
  if (got.pathLen < prefixLen || memcmp(got.path, want.path, prefixLen) != 0) return false;
  return got.pathLen == prefixLen || got.path[prefixLen] == '/';
}

}  // namespace tinyota
