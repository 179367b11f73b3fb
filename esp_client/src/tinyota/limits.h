// Size limits of the TinyOTA device core.
//
// Every buffer in the core is fixed and sized from these numbers; lengths exclude the
// terminating NUL, buffers add one. They are part of the device contract documented in
// esp_client/README.md ("Announcement rules"). esp_client/limits.json repeats them with the
// server's side of each (what it must stay inside, what it must accept), and
// tests/test_device_limits.py checks this file and the server against that one table.
#ifndef TINYOTA_LIMITS_H
#define TINYOTA_LIMITS_H

#include <stddef.h>

namespace tinyota {

static const size_t kMaxDeviceIdLen = 64;
static const size_t kMaxPrefixLen = 64;
// "<prefix>/<device>/availability" is the longest topic the device uses.
static const size_t kMaxTopicLen = kMaxPrefixLen + 1 + kMaxDeviceIdLen + 1 + 12;

// Announcements larger than this are ignored. The sketch sizes PubSubClient's buffer
// (TINYOTA_MQTT_BUFFER_SIZE, 1024 by default) so that such messages still reach the core
// and are logged instead of being dropped silently by the MQTT library.
static const size_t kMaxPayloadLen = 768;

static const size_t kMaxAnnouncementIdLen = 64;
static const size_t kMaxVersionLen = 32;
static const size_t kMaxUrlLen = 384;
static const size_t kMd5HexLen = 32;
static const size_t kSha256HexLen = 64;
static const size_t kMaxImageLen = 64;

// ECDSA P-256: the raw r || s signature, its base64 text, the uncompressed public point.
static const size_t kSignatureLen = 64;
static const size_t kSignatureBase64Len = 88;
static const size_t kPublicKeyLen = 65;
// The signed manifest (signature.h): a fixed first line, nine fields, eight newlines.
static const size_t kMaxManifestLen = 24 + kMaxDeviceIdLen + kMaxImageLen + kMaxAnnouncementIdLen +
                                      kMaxVersionLen + kMaxUrlLen + 10 + kMd5HexLen + kSha256HexLen + 8;

static const size_t kMaxErrorLen = 128;
static const size_t kMaxPlatformLen = 16;
static const size_t kMaxStatusLen = 512;
static const size_t kMaxLogLineLen = 224;

}  // namespace tinyota

#endif  // TINYOTA_LIMITS_H
