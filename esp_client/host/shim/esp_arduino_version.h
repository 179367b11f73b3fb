// Shim of cores/esp32/esp_arduino_version.h; the Makefile picks the major version.
#pragma once
#ifndef SHIM_ESP_ARDUINO_VERSION_MAJOR
#error "sketch-check sets SHIM_ESP_ARDUINO_VERSION_MAJOR for ESP32 builds"
#endif
#define ESP_ARDUINO_VERSION_MAJOR SHIM_ESP_ARDUINO_VERSION_MAJOR
#define ESP_ARDUINO_VERSION_MINOR 0
#define ESP_ARDUINO_VERSION_PATCH 0
#define ESP_ARDUINO_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))
#define ESP_ARDUINO_VERSION \
  ESP_ARDUINO_VERSION_VAL(ESP_ARDUINO_VERSION_MAJOR, ESP_ARDUINO_VERSION_MINOR, ESP_ARDUINO_VERSION_PATCH)
