// Shim of espressif/arduino-esp32 libraries/WiFi (2.0.x) and libraries/Network (3.x).
#pragma once
#include "Arduino.h"

typedef enum { WL_NO_SHIELD = 255, WL_IDLE_STATUS = 0, WL_NO_SSID_AVAIL = 1, WL_SCAN_COMPLETED = 2,
               WL_CONNECTED = 3, WL_CONNECT_FAILED = 4, WL_CONNECTION_LOST = 5, WL_DISCONNECTED = 6 } wl_status_t;
typedef enum { WIFI_MODE_NULL = 0, WIFI_MODE_STA, WIFI_MODE_AP, WIFI_MODE_APSTA, WIFI_MODE_MAX } wifi_mode_t;
#define WIFI_STA WIFI_MODE_STA

#if ESP_ARDUINO_VERSION_MAJOR >= 3
// 3.x moved the sockets to the Network library; WiFiClient remains as a name for NetworkClient.
class NetworkClient : public Client {
#else
class WiFiClient : public Client {
#endif
 public:
  int connect(IPAddress ip, uint16_t port) override;
  int connect(const char* host, uint16_t port) override;
  size_t write(uint8_t) override;
  size_t write(const uint8_t* buf, size_t size) override;
  int available() override;
  int read() override;
  int read(uint8_t* buf, size_t size) override;
  int peek() override;
  void flush() override;
  void stop() override;
  uint8_t connected() override;
  operator bool() override;
};
#if ESP_ARDUINO_VERSION_MAJOR >= 3
typedef NetworkClient WiFiClient;
#endif

class WiFiClass {
 public:
  static void persistent(bool persistent);
  bool mode(wifi_mode_t);
  wl_status_t begin(const char* ssid, const char* passphrase = NULL, int32_t channel = 0,
                    const uint8_t* bssid = NULL, bool connect = true);
  bool disconnect(bool wifioff = false, bool eraseap = false);
  bool setAutoReconnect(bool autoReconnect);
  static wl_status_t status();
  IPAddress localIP();
  String macAddress();
};
extern WiFiClass WiFi;
