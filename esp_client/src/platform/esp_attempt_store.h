// tinyota::AttemptStore in non-volatile memory.
//
// ESP8266: EEPROM emulation (a flash sector), because RTC memory does not survive a power
// cut and a bad image must not be retried after one. TinyOTA uses 69 bytes at `offset`.
// ESP32: NVS through Preferences, namespace "tinyota", key "attempted".
// Writes happen once per accepted announcement, and only when the id changes.
#ifndef TINYOTA_ESP_ATTEMPT_STORE_H
#define TINYOTA_ESP_ATTEMPT_STORE_H

#include <stddef.h>

#include "../tinyota/ports.h"

#if defined(ESP32)
#include <Preferences.h>
#endif

class EspAttemptStore : public tinyota::AttemptStore {
 public:
  explicit EspAttemptStore(size_t eepromOffset) : offset_(eepromOffset) {}
  bool load(char* id, size_t cap);
  bool save(const char* id);

 private:
  size_t offset_;  // ESP8266 only
#if defined(ESP32)
  Preferences prefs_;
#endif
};

#endif  // TINYOTA_ESP_ATTEMPT_STORE_H
