// The SignatureVerifier port (../tinyota/ports.h) on the crypto each platform already has:
//
//   ESP8266 core 3.x    BearSSL (the core's own copy, <bearssl/bearssl.h>), run on the
//                       core's second stack like its own SigningVerifier: BearSSL needs more
//                       stack than loop() has
//   host (tinyota-device, unit tests)
//                       BearSSL 0.6 from Debian (libbearssl-dev, <bearssl.h>): the same
//                       library and calls as on the ESP8266
//   ESP32 core 2.0.x/3.x mbedTLS (ESP-IDF's); the host can build this path too
//                       (TINYOTA_P256_MBEDTLS with Debian's libmbedtls-dev 2.28)
//
// No allocation of our own. mbedTLS allocates its bignums on the heap while it verifies,
// and on ESP8266 the second stack is allocated by the core if no TLS client holds it yet;
// both are released before verify() returns.
#ifndef TINYOTA_P256_VERIFIER_H
#define TINYOTA_P256_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "../tinyota/limits.h"
#include "../tinyota/ports.h"

#if !defined(TINYOTA_P256_BEARSSL) && !defined(TINYOTA_P256_MBEDTLS)
#if defined(ESP32)
#define TINYOTA_P256_MBEDTLS 1
#else
#define TINYOTA_P256_BEARSSL 1
#endif
#endif

class P256Verifier : public tinyota::SignatureVerifier {
 public:
  P256Verifier() : ready_(false) {}

  // The public key as 130 hex digits (04 || X || Y), e.g. TINYOTA_SERVER_PUBLIC_KEY. False
  // when it is not such a point on P-256; verify() then refuses everything.
  bool begin(const char* publicKeyHex);

  // ECDSA P-256 over SHA-256(message); signature is the raw 64-byte r || s. Unchecked on an
  // ESP8266 whose heap cannot hold BearSSL's second stack right now: the core would abort()
  // (StackThunk.cpp), and the retained announcement would make that a boot loop.
  tinyota::SignatureCheck verify(const uint8_t* message, size_t len, const uint8_t* signature);

 private:
  uint8_t key_[tinyota::kPublicKeyLen];
  bool ready_;
};

#endif  // TINYOTA_P256_VERIFIER_H
