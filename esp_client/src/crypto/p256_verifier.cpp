#include "p256_verifier.h"

#include <string.h>

#include "../tinyota/signature.h"

#if defined(TINYOTA_P256_BEARSSL)

#if defined(ESP8266)
#include <Arduino.h>  // ESP.getMaxFreeBlockSize()
#include <StackThunk.h>
#include <bearssl/bearssl.h>
#else
#include <bearssl.h>
#endif

// Both calls of BearSSL's generic API, the ones the ESP8266 core's own SigningVerifier
// uses (br_ec_get_default, br_ecdsa_vrfy_raw_get_default). The key is copied because
// br_ec_public_key points at mutable bytes; mul() validates that the point is on the curve.
// A global C symbol: on ESP8266 the stack thunk below calls it from assembly.
extern "C" uint32_t tinyota_p256_check(const uint8_t* key, const uint8_t* hash, const uint8_t* signature,
                                       uint32_t keyOnly);
extern "C" uint32_t tinyota_p256_check(const uint8_t* key, const uint8_t* hash, const uint8_t* signature,
                                       uint32_t keyOnly) {
  uint8_t q[tinyota::kPublicKeyLen];
  memcpy(q, key, sizeof q);
  const br_ec_impl* ec = br_ec_get_default();
  if (keyOnly != 0) {
    static const unsigned char kOne[1] = {1};
    return ec->mul(q, sizeof q, kOne, sizeof kOne, BR_EC_secp256r1);
  }
  br_ec_public_key pk;
  pk.curve = BR_EC_secp256r1;
  pk.q = q;
  pk.qlen = sizeof q;
  return br_ecdsa_vrfy_raw_get_default()(ec, hash, 32, &pk, signature, tinyota::kSignatureLen);
}

#if defined(ESP8266)
// The ESP8266's loop() stack is 4 KB; BearSSL's EC code wants more, which is why the core
// runs BearSSL on a second stack (StackThunk.h). Same thunk, same reason, for our call.
make_stack_thunk(tinyota_p256_check);
extern "C" uint32_t thunk_tinyota_p256_check(const uint8_t* key, const uint8_t* hash, const uint8_t* signature,
                                             uint32_t keyOnly);
#endif

namespace {

#if defined(ESP8266)
// StackThunk.cpp allocates 6200 bytes for the second stack unless a TLS client holds it, and
// abort()s when that fails; leave the rest of the sketch some room as well.
const uint32_t kSecondStackBytes = 6200;
const uint32_t kHeapMargin = 2048;
#endif

bool canCheck() {
#if defined(ESP8266)
  return stack_thunk_get_refcnt() > 0 || ESP.getMaxFreeBlockSize() >= kSecondStackBytes + kHeapMargin;
#else
  return true;
#endif
}

uint32_t check(const uint8_t* key, const uint8_t* hash, const uint8_t* signature, uint32_t keyOnly) {
#if defined(ESP8266)
  stack_thunk_add_ref();
  const uint32_t ok = thunk_tinyota_p256_check(key, hash, signature, keyOnly);
  stack_thunk_del_ref();
  return ok;
#else
  return tinyota_p256_check(key, hash, signature, keyOnly);
#endif
}

}  // namespace

bool P256Verifier::begin(const char* publicKeyHex) {
  // setup() has the heap to itself; without room now, begin() fails like a bad key would.
  ready_ = tinyota::parsePublicKeyHex(publicKeyHex, key_) && canCheck() && check(key_, 0, 0, 1) == 1;
  return ready_;
}

tinyota::SignatureCheck P256Verifier::verify(const uint8_t* message, size_t len, const uint8_t* signature) {
  if (!ready_ || signature == 0) return tinyota::kSignatureInvalid;
  if (!canCheck()) return tinyota::kSignatureUnchecked;
  br_sha256_context sha;
  uint8_t hash[32];
  br_sha256_init(&sha);
  br_sha256_update(&sha, message, len);
  br_sha256_out(&sha, hash);
  return check(key_, hash, signature, 0) == 1 ? tinyota::kSignatureValid : tinyota::kSignatureInvalid;
}

#elif defined(TINYOTA_P256_MBEDTLS)

#include <mbedtls/ecdsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

namespace {

// One verification from scratch: the group and the point are a few hundred bytes of heap in
// mbedTLS, so they live only while a signature is checked (a few per update at most).
// Returns mbedTLS's code: 0 for a valid signature (or, without one, a valid key).
int check(const uint8_t* key, const uint8_t* hash, const uint8_t* signature) {
  mbedtls_ecp_group group;
  mbedtls_ecp_point q;
  mbedtls_mpi r;
  mbedtls_mpi s;
  mbedtls_ecp_group_init(&group);
  mbedtls_ecp_point_init(&q);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  int rc = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_SECP256R1);
  if (rc == 0) rc = mbedtls_ecp_point_read_binary(&group, &q, key, tinyota::kPublicKeyLen);
  if (rc == 0) rc = mbedtls_ecp_check_pubkey(&group, &q);
  if (rc == 0 && signature != 0) rc = mbedtls_mpi_read_binary(&r, signature, 32);
  if (rc == 0 && signature != 0) rc = mbedtls_mpi_read_binary(&s, signature + 32, 32);
  if (rc == 0 && signature != 0) rc = mbedtls_ecdsa_verify(&group, hash, 32, &q, &r, &s);
  mbedtls_mpi_free(&s);
  mbedtls_mpi_free(&r);
  mbedtls_ecp_point_free(&q);
  mbedtls_ecp_group_free(&group);
  return rc;
}

// Out of heap is no verdict on the signature: the device says so and acts on nothing.
bool outOfMemory(int rc) { return rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || rc == MBEDTLS_ERR_ECP_ALLOC_FAILED; }

}  // namespace

bool P256Verifier::begin(const char* publicKeyHex) {
  ready_ = tinyota::parsePublicKeyHex(publicKeyHex, key_) && check(key_, 0, 0) == 0;
  return ready_;
}

tinyota::SignatureCheck P256Verifier::verify(const uint8_t* message, size_t len, const uint8_t* signature) {
  if (!ready_ || signature == 0) return tinyota::kSignatureInvalid;
  uint8_t hash[32];
  // mbedTLS 3 (arduino-esp32 3.x) renamed mbedtls_sha256_ret, the 2.x name, to mbedtls_sha256.
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  const int hashed = mbedtls_sha256(message, len, hash, 0);
#else
  const int hashed = mbedtls_sha256_ret(message, len, hash, 0);
#endif
  if (hashed != 0) return tinyota::kSignatureUnchecked;
  const int rc = check(key_, hash, signature);
  if (rc == 0) return tinyota::kSignatureValid;
  return outOfMemory(rc) ? tinyota::kSignatureUnchecked : tinyota::kSignatureInvalid;
}

#endif
