// Shim of esp8266/Arduino libraries/EEPROM/EEPROM.h (core 3.1.x).
#pragma once
#include "Arduino.h"

class EEPROMClass {
 public:
  EEPROMClass(void);
  void begin(size_t size);
  uint8_t read(int const address);
  void write(int const address, uint8_t const val);
  bool commit();
  bool end();
  size_t length() { return _size; }

 protected:
  size_t _size;
};
extern EEPROMClass EEPROM;
