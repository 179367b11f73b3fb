#include "http_rules.h"

#include <stdio.h>
#include <string.h>

#include "../../src/tinyota/text.h"

namespace hostdev {

namespace {

void setError(char* out, size_t cap, const char* text) { tinyota::copyText(out, cap, text); }

// ESP.magicFlashChipSize(): flash size code in the high nibble of image byte 3.
uint32_t magicFlashChipSize(uint8_t code) {
  switch (code & 0x0F) {
    case 0x0: return 512u * 1024;
    case 0x1: return 256u * 1024;
    case 0x2: return 1024u * 1024;
    case 0x3: return 2048u * 1024;
    case 0x4: return 4096u * 1024;
    case 0x8: return 8192u * 1024;
    case 0x9: return 16384u * 1024;
    default: return 0;
  }
}

void addHeader(Header* out, size_t max, size_t& n, const char* name, const char* value) {
  if (n >= max) return;
  tinyota::copyText(out[n].name, sizeof out[n].name, name);
  tinyota::copyText(out[n].value, sizeof out[n].value, value);
  ++n;
}

void addNumber(Header* out, size_t max, size_t& n, const char* name, uint32_t value) {
  char text[12];
  snprintf(text, sizeof text, "%lu", static_cast<unsigned long>(value));
  addHeader(out, max, n, name, text);
}

}  // namespace

const char* platformName(Platform platform) { return platform == kEsp32 ? "esp32" : "esp8266"; }

bool parsePlatform(const char* text, Platform& out) {
  if (strcmp(text, "esp8266") == 0) {
    out = kEsp8266;
  } else if (strcmp(text, "esp32") == 0) {
    out = kEsp32;
  } else {
    return false;
  }
  return true;
}

void deriveIdentity(const char* deviceId, DeviceFacts& facts) {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (const char* p = deviceId; *p; ++p) hash = (hash ^ static_cast<uint8_t>(*p)) * 16777619u;
  // 0x02 in the first byte: a locally administered address, never a real vendor's.
  const uint8_t b3 = static_cast<uint8_t>(hash >> 16), b4 = static_cast<uint8_t>(hash >> 8),
                b5 = static_cast<uint8_t>(hash);
  snprintf(facts.staMac, sizeof facts.staMac, "02:54:4F:%02X:%02X:%02X", b3, b4, b5);
  snprintf(facts.apMac, sizeof facts.apMac, "06:54:4F:%02X:%02X:%02X", b3, b4, b5);
  facts.chipId = (static_cast<uint32_t>(b3) << 16) | (static_cast<uint32_t>(b4) << 8) | b5;
}

const char* userAgent(Platform platform) {
  return platform == kEsp32 ? "ESP32-http-Update" : "ESP8266-http-Update";
}

size_t requestHeaders(const DeviceFacts& f, const char* currentVersion, Header* out, size_t max) {
  size_t n = 0;
  if (f.platform == kEsp8266) {
    addNumber(out, max, n, "x-ESP8266-Chip-ID", f.chipId);
    addHeader(out, max, n, "x-ESP8266-STA-MAC", f.staMac);
    addHeader(out, max, n, "x-ESP8266-AP-MAC", f.apMac);
    addNumber(out, max, n, "x-ESP8266-free-space", f.freeSpace);
    addNumber(out, max, n, "x-ESP8266-sketch-size", f.sketchSize);
    addHeader(out, max, n, "x-ESP8266-sketch-md5", f.sketchMd5);
    addNumber(out, max, n, "x-ESP8266-chip-size", f.chipSize);
    addHeader(out, max, n, "x-ESP8266-sdk-version", "2.2.2-dev(38a443e)");
    addHeader(out, max, n, "x-ESP8266-mode", "sketch");
    if (currentVersion && currentVersion[0]) addHeader(out, max, n, "x-ESP8266-version", currentVersion);
  } else {
    addHeader(out, max, n, "Cache-Control", "no-cache");
    addHeader(out, max, n, "x-ESP32-STA-MAC", f.staMac);
    addHeader(out, max, n, "x-ESP32-AP-MAC", f.apMac);
    addNumber(out, max, n, "x-ESP32-free-space", f.freeSpace);
    addNumber(out, max, n, "x-ESP32-sketch-size", f.sketchSize);
    addHeader(out, max, n, "x-ESP32-sketch-md5", f.sketchMd5);
    addNumber(out, max, n, "x-ESP32-chip-size", f.chipSize);
    addHeader(out, max, n, "x-ESP32-sdk-version", "v4.4.7");
    addHeader(out, max, n, "x-ESP32-mode", "sketch");
    if (currentVersion && currentVersion[0]) addHeader(out, max, n, "x-ESP32-version", currentVersion);
  }
  return n;
}

Verdict judgeResponse(const DeviceFacts& f, const ResponseHead& head, char* error, size_t cap) {
  error[0] = '\0';
  switch (head.code) {
    case 200:
      // The cores send HTTP/1.0 (useHTTP10) and stream exactly Content-Length bytes into
      // flash; without it there is nothing to size the update by.
      if (!head.hasLength || head.length <= 0) {
        setError(error, cap, "Server Did Not Report Size");
        return kVerdictFail;
      }
      if (f.platform == kEsp32 && f.freeSpace == 0) {
        setError(error, cap, "Partition Could Not be Found");
        return kVerdictFail;
      }
      if (head.length > static_cast<long long>(f.freeSpace)) {
        setError(error, cap, "Not Enough space");
        return kVerdictFail;
      }
      return kVerdictFlash;
    case 304:
      return kVerdictNoUpdate;
    case 404:
      setError(error, cap, "File Not Found (404)");
      return kVerdictFail;
    case 403:
      setError(error, cap, "Forbidden (403)");
      return kVerdictFail;
    case 401:
      // ESP8266 3.x maps 401 (HTTP_UE_SERVER_UNAUTHORIZED); the ESP32 core has no such case.
      setError(error, cap, f.platform == kEsp8266 ? "Unauthorized (401)" : "Wrong HTTP Code");
      return kVerdictFail;
    default:
      // Redirects included: both cores disable following them by default.
      setError(error, cap, "Wrong HTTP Code");
      return kVerdictFail;
  }
}

size_t magicBytesNeeded(Platform platform) { return platform == kEsp8266 ? 4 : 1; }

bool judgeMagic(const DeviceFacts& f, const uint8_t* bytes, size_t n, char* error, size_t cap) {
  // ESP8266 3.x also accepts 0x1f (a gzip image its bootloader inflates); the host device
  // flashes raw images only, so it holds every platform to the ESP image magic 0xE9.
  if (n < magicBytesNeeded(f.platform) || bytes[0] != 0xE9) {
    setError(error, cap, "Verify Bin Header Failed");
    return false;
  }
  if (f.platform == kEsp8266 && magicFlashChipSize(static_cast<uint8_t>(bytes[3] >> 4)) > f.chipSize) {
    setError(error, cap, "New Binary Does Not Fit Flash Size");
    return false;
  }
  return true;
}

bool judgeMd5Header(const ResponseHead& head, char* error, size_t cap) {
  if (head.hasMd5 && strlen(head.md5) != 32) {
    setError(error, cap, "Wrong MD5");
    return false;
  }
  return true;
}

void md5MismatchError(Platform platform, const char* expected, const char* calculated, char* out, size_t cap) {
  // getLastErrorString() prefixes Update.printError(); UPDATE_ERROR_MD5 is 7 on both cores.
  if (platform == kEsp8266) {
    snprintf(out, cap, "Update error: ERROR[7]: MD5 Failed: expected:%s, calculated:%s", expected, calculated);
  } else {
    snprintf(out, cap, "Update error: MD5 Check Failed");
  }
}

void streamTimeoutError(Platform platform, char* out, size_t cap) {
  // UPDATE_ERROR_STREAM (6): the body ended before Content-Length bytes arrived.
  setError(out, cap, platform == kEsp8266 ? "Update error: ERROR[6]: Stream Read Timeout"
                                          : "Update error: Stream Read Timeout");
}

void clientError(Platform platform, ClientFailure failure, char* out, size_t cap) {
  const char* text = "connection lost";
  switch (failure) {
    case kConnectFailed: text = platform == kEsp8266 ? "connection failed" : "connection refused"; break;
    case kConnectionLost: text = "connection lost"; break;
    case kReadTimeout: text = "read Timeout"; break;
    case kNoHttpServer: text = "no HTTP server"; break;
  }
  snprintf(out, cap, "HTTP error: %s", text);
}

}  // namespace hostdev
