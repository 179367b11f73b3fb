#include "status.h"

#include <string.h>

#include "text.h"

namespace tinyota {

const char* stateName(State state) {
  switch (state) {
    case kStateIdle: return "idle";
    case kStateDownloading: return "downloading";
    case kStateFlashing: return "flashing";
    case kStateRebooting: return "rebooting";
    case kStateFailed: return "failed";
  }
  return "idle";
}

namespace {

bool build(const StatusFields& f, size_t errorLen, char* out, size_t cap, size_t& len) {
  TextBuilder json(out, cap);
  json.add("{\"state\":").addJsonString(stateName(f.state));
  json.add(",\"version\":").addJsonString(f.version);
  if (f.progress >= 0) {
    json.add(",\"progress\":").addUint(static_cast<unsigned long>(f.progress > 100 ? 100 : f.progress));
  }
  if (!isEmpty(f.id)) json.add(",\"id\":").addJsonString(f.id);
  if (!isEmpty(f.error)) json.add(",\"error\":").addJsonString(f.error, errorLen);
  json.add(",\"platform\":").addJsonString(f.platform);
  json.add(",\"free_space\":").addUint(static_cast<unsigned long>(f.freeSpace));
  json.addChar('}');
  len = json.length();
  return json.ok();
}

}  // namespace

size_t buildStatusJson(const StatusFields& fields, char* out, size_t cap) {
  size_t errorLen = isEmpty(fields.error) ? 0 : strlen(fields.error);
  size_t len = 0;
  for (;;) {
    if (build(fields, errorLen, out, cap, len)) return len;
    if (errorLen == 0) break;
    // Escapes can grow a byte to six; shorten the error until the object fits. A cut
    // through a UTF-8 sequence is harmless: the escaper turns the rest into U+FFFD.
    errorLen -= errorLen / 4 + 1;
    if (errorLen == 0) {
      StatusFields noError = fields;
      noError.error = "";
      if (build(noError, 0, out, cap, len)) return len;
      break;
    }
  }
  if (cap > 0) out[0] = '\0';
  return 0;
}

}  // namespace tinyota
