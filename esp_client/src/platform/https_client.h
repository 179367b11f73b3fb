// The TLS client for https:// announcements, compiled only when config.h asks for one.
// Include it from the .ino after config.h (it reads TINYOTA_HTTPS_CA_CERT and
// TINYOTA_HTTPS_INSECURE) and pass TINYOTA_HTTPS_CLIENT in TinyOtaSettings.
//
// Why a separate header: on ESP8266 the BearSSL client adds tens of kilobytes to the image,
// and an OTA image has to fit into the free half of the flash. Sketches that download over
// plain http:// never reference it, so the linker leaves it out.
#ifndef TINYOTA_HTTPS_CLIENT_H
#define TINYOTA_HTTPS_CLIENT_H

#include "esp_http_updater.h"

#if defined(TINYOTA_HTTPS_CA_CERT) || (defined(TINYOTA_HTTPS_INSECURE) && TINYOTA_HTTPS_INSECURE)

#include <WiFiClientSecure.h>

inline TinyOtaNetClient* tinyotaHttpsClient() {
#if defined(ESP8266)
  static BearSSL::WiFiClientSecure client;
#if defined(TINYOTA_HTTPS_CA_CERT)
  // setTrustAnchors() keeps the pointer, so the list lives as long as the client.
  static BearSSL::X509List anchors(TINYOTA_HTTPS_CA_CERT);
  client.setTrustAnchors(&anchors);
#else
  client.setInsecure();
#endif
#else
  static WiFiClientSecure client;
#if defined(TINYOTA_HTTPS_CA_CERT)
  client.setCACert(TINYOTA_HTTPS_CA_CERT);
#else
  client.setInsecure();
#endif
#endif
  return &client;
}
#define TINYOTA_HTTPS_CLIENT tinyotaHttpsClient

#else
#define TINYOTA_HTTPS_CLIENT nullptr
#endif

#endif  // TINYOTA_HTTPS_CLIENT_H
