// The version marker every TinyOTA image carries (shared convention with the Python side):
// the ASCII bytes "TINYOTA_FW_VERSION=" immediately followed by the version and a NUL,
// anywhere in the image. The server reads it to check an upload; the host device reads
// it from its "flash" to know what it runs after a reboot.
//
// In a sketch, once, at file scope:
//   TINYOTA_DEFINE_FIRMWARE_VERSION("1.4.0");
// and take the running version from tinyota::firmwareVersion(). Reading the version through
// the array is what keeps it in the image: `used` stops the compiler from dropping it and
// the reference stops the linker's --gc-sections from doing the same.
#ifndef TINYOTA_FIRMWARE_MARKER_H
#define TINYOTA_FIRMWARE_MARKER_H

#include <stddef.h>
#include <stdint.h>

#define TINYOTA_FW_MARKER_PREFIX "TINYOTA_FW_VERSION="

#define TINYOTA_DEFINE_FIRMWARE_VERSION(version)                           \
  extern "C" const char tinyota_firmware_marker[] __attribute__((used)) = \
      TINYOTA_FW_MARKER_PREFIX version

extern "C" const char tinyota_firmware_marker[];

namespace tinyota {

// The version part of the marker defined with TINYOTA_DEFINE_FIRMWARE_VERSION. Computed
// with sizeof, so the bare prefix never appears a second time in the image.
inline const char* firmwareVersion() {
  return tinyota_firmware_marker + (sizeof(TINYOTA_FW_MARKER_PREFIX) - 1);
}

// Scans an image for the first well-formed marker (1..kMaxVersionLen visible ASCII
// characters, then NUL) and copies its version into out. False when there is none.
bool findFirmwareVersion(const uint8_t* image, size_t len, char* out, size_t cap);

}  // namespace tinyota

#endif  // TINYOTA_FIRMWARE_MARKER_H
