// MQTT topic names of one device: <prefix>/<device>/{update,status,availability}.
#ifndef TINYOTA_TOPICS_H
#define TINYOTA_TOPICS_H

#include <stddef.h>

namespace tinyota {

// Device ids are single MQTT topic levels and Home Assistant object ids: [A-Za-z0-9_-]+,
// at most kMaxDeviceIdLen characters. "server" is taken: <prefix>/server/availability is
// the server's own last will.
bool isValidDeviceId(const char* id);

// Non-empty, no MQTT wildcards, no empty levels (no leading, trailing or double '/').
bool isValidTopicPrefix(const char* prefix);

// Writes "<prefix>/<deviceId>/<leaf>"; false when the result does not fit in cap.
bool buildTopic(char* out, size_t cap, const char* prefix, const char* deviceId, const char* leaf);

}  // namespace tinyota

#endif  // TINYOTA_TOPICS_H
