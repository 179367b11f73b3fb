// Shim of espressif/arduino-esp32 libraries/Preferences/src/Preferences.h.
#pragma once
#include "Arduino.h"

class Preferences {
 public:
  Preferences();
  ~Preferences();
  bool begin(const char* name, bool readOnly = false, const char* partition_label = NULL);
  void end();
  bool clear();
  bool remove(const char* key);
  size_t putString(const char* key, const char* value);
  size_t putString(const char* key, String value);
  size_t getString(const char* key, char* value, size_t maxLen);
  String getString(const char* key, String defaultValue = String());
};
