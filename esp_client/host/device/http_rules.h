// What the ESP cores' HTTP update routines send and decide, as pure functions.
//
// Sources (read, not copied): esp8266/Arduino libraries/ESP8266httpUpdate/src/
// ESP8266httpUpdate.cpp (core 3.1.x) and espressif/arduino-esp32 libraries/HTTPUpdate/src/
// HTTPUpdate.cpp (2.0.x / 3.x), handleUpdate() and runUpdate(), plus the Updater classes'
// printError(). The host device uses these so the server meets the same requests and the
// same strictness it meets from real hardware.
#ifndef HOSTDEV_HTTP_RULES_H
#define HOSTDEV_HTTP_RULES_H

#include <stddef.h>
#include <stdint.h>

namespace hostdev {

enum Platform { kEsp8266, kEsp32 };

const char* platformName(Platform platform);
bool parsePlatform(const char* text, Platform& out);

// The facts a device reports in its request headers.
struct DeviceFacts {
  Platform platform;
  char staMac[18];
  char apMac[18];
  uint32_t chipId;      // ESP8266 only: the low 24 bits of the MAC
  uint32_t freeSpace;   // ESP.getFreeSketchSpace()
  uint32_t sketchSize;  // ESP.getSketchSize()
  char sketchMd5[33];   // ESP.getSketchMD5()
  uint32_t chipSize;    // ESP.getFlashChipRealSize() / getFlashChipSize()
};

// Stable, locally administered MAC addresses and chip id derived from the device id, so a
// host device looks like the same board on every run.
void deriveIdentity(const char* deviceId, DeviceFacts& facts);

struct Header {
  char name[32];
  char value[64];
};

const char* userAgent(Platform platform);  // "ESP8266-http-Update" / "ESP32-http-Update"

// The headers handleUpdate() adds, in its order. Returns how many were written.
size_t requestHeaders(const DeviceFacts& facts, const char* currentVersion, Header* out, size_t max);

struct ResponseHead {
  int code;
  bool hasLength;
  long long length;
  bool hasMd5;
  char md5[80];
};

enum Verdict { kVerdictFlash, kVerdictNoUpdate, kVerdictFail };

// handleUpdate()'s switch on the status code, Content-Length and free space.
Verdict judgeResponse(const DeviceFacts& facts, const ResponseHead& head, char* error, size_t cap);

// How many image bytes the core peeks before writing: ESP8266 4, ESP32 1.
size_t magicBytesNeeded(Platform platform);

// The peeked bytes: 0xE9 first (the ESP image magic), and on ESP8266 a flash size in
// byte 3 that fits the chip. `n` < magicBytesNeeded() means the body ended too early.
bool judgeMagic(const DeviceFacts& facts, const uint8_t* bytes, size_t n, char* error, size_t cap);

// runUpdate(): Update.setMD5() refuses an x-MD5 that is not 32 characters.
bool judgeMd5Header(const ResponseHead& head, char* error, size_t cap);

// Texts of failures later in runUpdate(), as getLastErrorString() renders them.
void md5MismatchError(Platform platform, const char* expected, const char* calculated, char* out, size_t cap);
void streamTimeoutError(Platform platform, char* out, size_t cap);

enum ClientFailure { kConnectFailed, kConnectionLost, kReadTimeout, kNoHttpServer };
// HTTPClient::errorToString() for failures before a status line (code <= 0).
void clientError(Platform platform, ClientFailure failure, char* out, size_t cap);

}  // namespace hostdev

#endif  // HOSTDEV_HTTP_RULES_H
