#include "firmware_marker.h"

#include <string.h>

#include "limits.h"
#include "text.h"

namespace tinyota {

bool findFirmwareVersion(const uint8_t* image, size_t len, char* out, size_t cap) {
  static const char kPrefix[] = TINYOTA_FW_MARKER_PREFIX;
  const size_t prefixLen = sizeof kPrefix - 1;
  if (cap > 0) out[0] = '\0';
  if (image == 0 || len < prefixLen + 2) return false;
  for (size_t i = 0; i + prefixLen < len; ++i) {
    if (image[i] != 'T' || memcmp(image + i, kPrefix, prefixLen) != 0) continue;
    const size_t start = i + prefixLen;
    size_t n = 0;
    while (start + n < len && n <= kMaxVersionLen && image[start + n] >= 0x21 && image[start + n] <= 0x7E) {
      ++n;
    }
    // Well-formed only when NUL-terminated; otherwise keep scanning (a stray copy of the
    // prefix, e.g. in a string table, must not hide the real marker).
    if (n >= 1 && n <= kMaxVersionLen && start + n < len && image[start + n] == 0) {
      return copyText(out, cap, reinterpret_cast<const char*>(image + start), n);
    }
  }
  return false;
}

}  // namespace tinyota
