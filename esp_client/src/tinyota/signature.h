// Signed announcements: what the core needs to check one, without any crypto library.
//
// The server signs the manifest below with ECDSA P-256 over SHA-256 and sends the signature
// as "sig": base64 of the raw 64-byte r || s. The device rebuilds the manifest from the
// announcement it received and from *its own* device id (so a signature made for another
// device does not verify here), and hands it to a SignatureVerifier (ports.h), which the
// platform implements with the crypto its core ships: BearSSL on ESP8266 and on the host,
// mbedTLS on ESP32 (src/crypto/p256_verifier.h).
//
//   tinyota-announcement-v2\n<device>\n<image>\n<id>\n<version>\n<url>\n<size>\n<md5>\n<sha256>
//
// Every field is visible ASCII without '\n' (the parser checks that), so the lines cannot
// be shifted into one another; an absent size, md5 or image is an empty line.
#ifndef TINYOTA_SIGNATURE_H
#define TINYOTA_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "announcement.h"
#include "limits.h"

namespace tinyota {

// Strict RFC 4648 base64 of exactly kSignatureLen bytes (88 characters, one '=' of
// padding, no whitespace, no non-zero padding bits).
bool decodeSignature(const char* text, uint8_t out[kSignatureLen]);

// 130 hex digits of the uncompressed point 04 || X || Y. Checks the form only; whether
// the point is on the curve is the verifier's business.
bool parsePublicKeyHex(const char* hex, uint8_t out[kPublicKeyLen]);

// Writes the manifest (no trailing newline) and returns its length, 0 when it does not fit.
size_t buildManifest(const char* deviceId, const Announcement& announcement, char* out, size_t cap);

}  // namespace tinyota

#endif  // TINYOTA_SIGNATURE_H
