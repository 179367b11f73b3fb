#include "topics.h"

#include <string.h>

#include "limits.h"
#include "text.h"

namespace tinyota {

bool isValidDeviceId(const char* id) {
  if (id == 0) return false;
  const size_t n = strlen(id);
  if (n == 0 || n > kMaxDeviceIdLen || strcmp(id, "server") == 0) return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = id[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool isValidTopicPrefix(const char* prefix) {
  if (prefix == 0) return false;
  const size_t n = strlen(prefix);
  if (n == 0 || n > kMaxPrefixLen || prefix[0] == '/' || prefix[n - 1] == '/') return false;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(prefix[i]);
    if (c == '+' || c == '#' || c < 0x20 || c == 0x7F) return false;
    if (c == '/' && prefix[i + 1] == '/') return false;
  }
  return true;
}

bool buildTopic(char* out, size_t cap, const char* prefix, const char* deviceId, const char* leaf) {
  TextBuilder topic(out, cap);
  topic.add(prefix).addChar('/').add(deviceId).addChar('/').add(leaf);
  return topic.ok();
}

}  // namespace tinyota
