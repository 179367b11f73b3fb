// The retained status payload on <prefix>/<device>/status:
//   {"state":"downloading","version":"1.3.0","progress":42,"id":"…","error":"…",
//    "platform":"esp8266","free_space":1044480}
// state, version, platform and free_space are always present; progress only while
// downloading or flashing; id whenever the state concerns an announcement; error only
// when failed.
#ifndef TINYOTA_STATUS_H
#define TINYOTA_STATUS_H

#include <stddef.h>
#include <stdint.h>

namespace tinyota {

enum State { kStateIdle, kStateDownloading, kStateFlashing, kStateRebooting, kStateFailed };

const char* stateName(State state);

struct StatusFields {
  State state;
  const char* version;   // the running version
  int progress;          // 0..100, or negative to omit
  const char* id;        // empty or null to omit
  const char* error;     // empty or null to omit
  const char* platform;  // "esp8266", "esp32"
  uint32_t freeSpace;    // bytes available for a new image
};

// Writes the JSON object into out (NUL-terminated) and returns its length, or 0 when even
// a version without the error text cannot fit. An error text that does not fit is
// shortened, so the payload is always complete, valid JSON.
size_t buildStatusJson(const StatusFields& fields, char* out, size_t cap);

}  // namespace tinyota

#endif  // TINYOTA_STATUS_H
