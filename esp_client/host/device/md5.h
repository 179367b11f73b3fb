// MD5 (RFC 1321), written for the host device: the ESP cores verify x-MD5 with their own
// MD5Builder, and the host device must do the same check without pulling in libcrypto.
// MD5 is an integrity check here, not a security boundary (that is the Basic Auth).
#ifndef HOSTDEV_MD5_H
#define HOSTDEV_MD5_H

#include <stddef.h>
#include <stdint.h>

namespace hostdev {

class Md5 {
 public:
  Md5();
  void update(const void* data, size_t len);
  // Lower-case hex, like MD5Builder::toString() on both cores; out needs 33 bytes.
  void finishHex(char* out);

 private:
  void transform(const uint8_t* block);

  uint32_t state_[4];
  uint64_t length_;  // bytes hashed so far
  uint8_t buffer_[64];
  size_t buffered_;
};

}  // namespace hostdev

#endif  // HOSTDEV_MD5_H
