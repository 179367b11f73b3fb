// Shim: ESP8266 BearSSL (WiFiClientSecureBearSSL.h, BearSSLHelpers.h) and ESP32
// WiFiClientSecure / NetworkClientSecure, declarations only.
#pragma once
#if defined(ESP8266)
#include "ESP8266WiFi.h"
namespace BearSSL {
class X509List {
 public:
  X509List();
  X509List(const char* pemCert);
  X509List(const uint8_t* derCert, size_t derLen);
  ~X509List();
};
class WiFiClientSecure : public WiFiClient {
 public:
  WiFiClientSecure();
  void setInsecure();
  void setTrustAnchors(const X509List* ta);
  bool setFingerprint(const char* fpStr);
};
}  // namespace BearSSL
using namespace BearSSL;
#else
#include "WiFi.h"
#if ESP_ARDUINO_VERSION_MAJOR >= 3
class NetworkClientSecure : public NetworkClient {
#else
class WiFiClientSecure : public WiFiClient {
#endif
 public:
  void setInsecure();
  void setCACert(const char* rootCA);
};
#if ESP_ARDUINO_VERSION_MAJOR >= 3
typedef NetworkClientSecure WiFiClientSecure;
#endif
#endif
