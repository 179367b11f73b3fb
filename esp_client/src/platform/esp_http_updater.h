// tinyota::Updater on the core's own HTTP update routine: ESPhttpUpdate (ESP8266 core
// 3.1.x, ESP8266httpUpdate) or httpUpdate (arduino-esp32 2.0.x / 3.x, HTTPUpdate).
//
// The core does the HTTP/1.0 GET with its x-ESP8266-* / x-ESP32-* headers, insists on
// Content-Length, checks the 0xE9 magic byte, verifies x-MD5 and writes the OTA slot. This
// class only adds the device's credentials, routes progress, and never lets the core
// reboot (rebootOnUpdate(false)): the outcome is published first.
#ifndef TINYOTA_ESP_HTTP_UPDATER_H
#define TINYOTA_ESP_HTTP_UPDATER_H

#if defined(ESP8266)
#include <ESP8266WiFi.h>
#else
#include <WiFi.h>
#endif

#include "../tinyota/ports.h"

// The client type the cores' update() takes. arduino-esp32 3.x moved sockets into its
// Network library and takes a NetworkClient&, which WiFiClient and WiFiClientSecure are.
#if defined(ESP32) && ESP_ARDUINO_VERSION_MAJOR >= 3
typedef NetworkClient TinyOtaNetClient;
#else
typedef WiFiClient TinyOtaNetClient;
#endif

// Supplies the configured TLS client for https:// URLs (see https_client.h), or nullptr.
typedef TinyOtaNetClient* (*TinyOtaTlsClientFactory)();

class EspHttpUpdater : public tinyota::Updater {
 public:
  explicit EspHttpUpdater(TinyOtaTlsClientFactory httpsClient) : httpsClient_(httpsClient) {}

  void run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
           tinyota::UpdateResult& result);

 private:
  TinyOtaTlsClientFactory httpsClient_;
};

#endif  // TINYOTA_ESP_HTTP_UPDATER_H
