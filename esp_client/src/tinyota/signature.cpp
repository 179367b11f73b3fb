#include "signature.h"

#include <string.h>

#include "text.h"

namespace tinyota {

namespace {

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool decodeSignature(const char* text, uint8_t out[kSignatureLen]) {
  // 64 bytes = 21 groups of three (84 characters) + one byte, which is "xx==".
  if (text == 0 || strlen(text) != kSignatureBase64Len) return false;
  size_t o = 0;
  for (size_t i = 0; i < kSignatureBase64Len; i += 4) {
    const bool last = i + 4 == kSignatureBase64Len;
    int v[4];
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      v[k] = (last && k >= 2 && c == '=') ? 0 : base64Value(c);
      if (v[k] < 0) return false;
    }
    if (last) {
      // The one remaining byte: two characters, "==", and the unused low bits zero.
      if (text[i + 2] != '=' || text[i + 3] != '=' || (v[1] & 0x0F) != 0) return false;
      out[o++] = static_cast<uint8_t>((v[0] << 2) | (v[1] >> 4));
    } else {
      out[o++] = static_cast<uint8_t>((v[0] << 2) | (v[1] >> 4));
      out[o++] = static_cast<uint8_t>(((v[1] & 0x0F) << 4) | (v[2] >> 2));
      out[o++] = static_cast<uint8_t>(((v[2] & 0x03) << 6) | v[3]);
    }
  }
  return o == kSignatureLen;
}

bool parsePublicKeyHex(const char* hex, uint8_t out[kPublicKeyLen]) {
  if (hex == 0 || strlen(hex) != 2 * kPublicKeyLen) return false;
  for (size_t i = 0; i < kPublicKeyLen; ++i) {
    const int hi = hexValue(hex[2 * i]);
    const int lo = hexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return out[0] == 0x04;  // uncompressed: BearSSL's verifier takes no other form
}

size_t buildManifest(const char* deviceId, const Announcement& a, char* out, size_t cap) {
  TextBuilder text(out, cap);
  text.add("tinyota-announcement-v2\n").add(deviceId).addChar('\n');
  text.add(a.image).addChar('\n').add(a.id).addChar('\n').add(a.version).addChar('\n');
  text.add(a.url).addChar('\n');
  if (a.hasSize) text.addUint(a.size);
  text.addChar('\n').add(a.md5).addChar('\n').add(a.sha256);
  return text.ok() ? text.length() : 0;
}

}  // namespace tinyota
