#if defined(ESP8266) || defined(ESP32)

#include "esp_attempt_store.h"

#include <string.h>

#include "../tinyota/limits.h"

#if defined(ESP8266)

#include <EEPROM.h>

namespace {

// Slot layout: "TOTA", length byte, id bytes. Erased flash reads 0xFF, never the magic.
const uint8_t kMagic[4] = {'T', 'O', 'T', 'A'};
const size_t kSlotSize = sizeof kMagic + 1 + tinyota::kMaxAnnouncementIdLen;

// EEPROM.begin() re-reads the sector and drops uncommitted bytes; call it only when the
// sketch has not already opened a large enough EEPROM itself.
bool ensureOpen(size_t needed) {
  if (EEPROM.length() < needed) EEPROM.begin(needed);
  return EEPROM.length() >= needed;
}

}  // namespace

bool EspAttemptStore::load(char* id, size_t cap) {
  id[0] = '\0';
  if (!ensureOpen(offset_ + kSlotSize)) return false;
  for (size_t i = 0; i < sizeof kMagic; ++i) {
    if (EEPROM.read(static_cast<int>(offset_ + i)) != kMagic[i]) return true;  // never written
  }
  const size_t len = EEPROM.read(static_cast<int>(offset_ + sizeof kMagic));
  if (len > tinyota::kMaxAnnouncementIdLen || len + 1 > cap) return false;
  for (size_t i = 0; i < len; ++i) {
    id[i] = static_cast<char>(EEPROM.read(static_cast<int>(offset_ + sizeof kMagic + 1 + i)));
  }
  id[len] = '\0';
  return true;
}

bool EspAttemptStore::save(const char* id) {
  const size_t len = strlen(id);
  if (len > tinyota::kMaxAnnouncementIdLen || !ensureOpen(offset_ + kSlotSize)) return false;
  for (size_t i = 0; i < sizeof kMagic; ++i) EEPROM.write(static_cast<int>(offset_ + i), kMagic[i]);
  EEPROM.write(static_cast<int>(offset_ + sizeof kMagic), static_cast<uint8_t>(len));
  for (size_t i = 0; i < len; ++i) {
    EEPROM.write(static_cast<int>(offset_ + sizeof kMagic + 1 + i), static_cast<uint8_t>(id[i]));
  }
  return EEPROM.commit();  // erases and writes the sector only if a byte changed
}

#else  // ESP32

namespace {
const char kNamespace[] = "tinyota";  // NVS names: at most 15 characters
const char kKey[] = "attempted";
}  // namespace

bool EspAttemptStore::load(char* id, size_t cap) {
  id[0] = '\0';
  if (!prefs_.begin(kNamespace, false)) return false;
  // 0 when the key does not exist yet (the first boot logs a harmless NOT_FOUND).
  if (prefs_.getString(kKey, id, cap) == 0) id[0] = '\0';
  prefs_.end();
  return true;
}

bool EspAttemptStore::save(const char* id) {
  if (!prefs_.begin(kNamespace, false)) return false;
  const bool ok = prefs_.putString(kKey, id) > 0;
  prefs_.end();
  return ok;
}

#endif

#endif  // ESP8266 || ESP32
