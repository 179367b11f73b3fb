#include "semver.h"

#include <stddef.h>
#include <string.h>

namespace tinyota {

namespace {

struct Span {
  const char* p;
  size_t n;
};

struct Version {
  Span core[3];    // major, minor, patch
  Span prerelease; // without the '-', empty when absent
};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

bool isIdentifierChar(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

bool allDigits(Span s) {
  for (size_t i = 0; i < s.n; ++i) {
    if (!isDigit(s.p[i])) return false;
  }
  return true;
}

// Numeric identifier: "0" or a digit string without a leading zero.
bool parseNumber(const char*& p, Span& out) {
  out.p = p;
  if (!isDigit(*p)) return false;
  if (*p == '0') {
    ++p;
    if (isDigit(*p)) return false;
  } else {
    while (isDigit(*p)) ++p;
  }
  out.n = static_cast<size_t>(p - out.p);
  return true;
}

// Dot-separated, non-empty identifiers of [0-9A-Za-z-]. Pre-release identifiers that are
// numeric must not have leading zeros (section 9); build identifiers may (section 10).
bool parseIdentifiers(const char*& p, bool numericMustBeCanonical) {
  for (;;) {
    Span ident;
    ident.p = p;
    while (isIdentifierChar(*p)) ++p;
    ident.n = static_cast<size_t>(p - ident.p);
    if (ident.n == 0) return false;
    if (numericMustBeCanonical && allDigits(ident) && ident.n > 1 && ident.p[0] == '0') return false;
    if (*p != '.') return true;
    ++p;
  }
}

bool parse(const char* text, Version& v) {
  if (text == 0) return false;
  const char* p = text;
  for (int i = 0; i < 3; ++i) {
    if (!parseNumber(p, v.core[i])) return false;
    if (i < 2 && *p++ != '.') return false;
  }
  v.prerelease.p = p;
  v.prerelease.n = 0;
  if (*p == '-') {
    ++p;
    v.prerelease.p = p;
    if (!parseIdentifiers(p, true)) return false;
    v.prerelease.n = static_cast<size_t>(p - v.prerelease.p);
  }
  if (*p == '+') {
    ++p;
    if (!parseIdentifiers(p, false)) return false;
  }
  return *p == '\0';
}

int sign(int x) { return (x > 0) - (x < 0); }

// Canonical digit strings compare by length first, so numbers never overflow.
int compareNumeric(Span a, Span b) {
  if (a.n != b.n) return a.n < b.n ? -1 : 1;
  return sign(memcmp(a.p, b.p, a.n));
}

int compareAscii(Span a, Span b) {
  const size_t n = a.n < b.n ? a.n : b.n;
  const int c = memcmp(a.p, b.p, n);
  if (c != 0) return sign(c);
  if (a.n == b.n) return 0;
  return a.n < b.n ? -1 : 1;
}

Span nextIdentifier(Span& rest) {
  Span ident = {rest.p, 0};
  while (ident.n < rest.n && rest.p[ident.n] != '.') ++ident.n;
  const size_t used = ident.n < rest.n ? ident.n + 1 : ident.n;
  rest.p += used;
  rest.n -= used;
  return ident;
}

// Section 11.3 and 11.4.
int comparePrerelease(Span a, Span b) {
  if (a.n == 0 || b.n == 0) {
    if (a.n == b.n) return 0;
    return a.n == 0 ? 1 : -1;  // a normal version has higher precedence than a pre-release
  }
  while (a.n > 0 && b.n > 0) {
    const Span x = nextIdentifier(a);
    const Span y = nextIdentifier(b);
    const bool xNum = allDigits(x);
    const bool yNum = allDigits(y);
    int c;
    if (xNum && yNum) {
      c = compareNumeric(x, y);
    } else if (xNum != yNum) {
      c = xNum ? -1 : 1;  // numeric identifiers sort before alphanumeric ones
    } else {
      c = compareAscii(x, y);
    }
    if (c != 0) return c;
  }
  if (a.n == b.n) return 0;
  return a.n == 0 ? -1 : 1;  // a larger set of fields has higher precedence
}

}  // namespace

bool isSemver(const char* version) {
  Version v;
  return parse(version, v);
}

bool compareSemver(const char* a, const char* b, int& order) {
  Version va;
  Version vb;
  if (!parse(a, va) || !parse(b, vb)) return false;
  for (int i = 0; i < 3; ++i) {
    const int c = compareNumeric(va.core[i], vb.core[i]);
    if (c != 0) {
      order = c;
      return true;
    }
  }
  order = comparePrerelease(va.prerelease, vb.prerelease);
  return true;
}

}  // namespace tinyota
