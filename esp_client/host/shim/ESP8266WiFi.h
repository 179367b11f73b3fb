// Shim of esp8266/Arduino libraries/ESP8266WiFi (core 3.1.x), declarations only.
#pragma once
#include "Arduino.h"

typedef enum { WL_NO_SHIELD = 255, WL_IDLE_STATUS = 0, WL_NO_SSID_AVAIL = 1, WL_SCAN_COMPLETED = 2,
               WL_CONNECTED = 3, WL_CONNECT_FAILED = 4, WL_CONNECTION_LOST = 5, WL_WRONG_PASSWORD = 6,
               WL_DISCONNECTED = 7 } wl_status_t;
typedef enum WiFiMode { WIFI_OFF = 0, WIFI_STA = 1, WIFI_AP = 2, WIFI_AP_STA = 3 } WiFiMode_t;

class WiFiClient : public Client {
 public:
  WiFiClient();
  virtual ~WiFiClient();
  int connect(IPAddress ip, uint16_t port) override;
  int connect(const char* host, uint16_t port) override;
  size_t write(uint8_t) override;
  size_t write(const uint8_t* buf, size_t size) override;
  int available() override;
  int read() override;
  int read(uint8_t* buf, size_t size) override;
  int peek() override;
  void flush() override;
  bool flush(unsigned int maxWaitMs);
  void stop() override;
  bool stop(unsigned int maxWaitMs);
  uint8_t connected() override;
  operator bool() override;
  static void stopAllExcept(WiFiClient* c);
};

class ESP8266WiFiClass {
 public:
  static void persistent(bool persistent);
  bool mode(WiFiMode_t);
  wl_status_t begin(const char* ssid, const char* passphrase = NULL, int32_t channel = 0,
                    const uint8_t* bssid = NULL, bool connect = true);
  bool disconnect(bool wifioff = false);
  bool setAutoReconnect(bool autoReconnect);
  wl_status_t status();
  IPAddress localIP();
  String macAddress();
};
extern ESP8266WiFiClass WiFi;
