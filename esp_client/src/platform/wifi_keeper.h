// Station-mode Wi-Fi that comes back by itself. Skip it if your sketch already manages
// Wi-Fi (WiFiManager, ESPHome-style provisioning...): TinyOtaClient only needs
// WiFi.status() == WL_CONNECTED.
#ifndef TINYOTA_WIFI_KEEPER_H
#define TINYOTA_WIFI_KEEPER_H

#include <stdint.h>

class WifiKeeper {
 public:
  WifiKeeper(const char* ssid, const char* password) : ssid_(ssid), password_(password), up_(false), since_(0) {}

  void begin();
  // Non-blocking. The SDK reconnects on its own; if the link stays down for a minute the
  // association is restarted from scratch (some access points need that after a reboot).
  void loop();
  bool connected() const { return up_; }

 private:
  const char* ssid_;
  const char* password_;
  bool up_;
  uint32_t since_;  // millis() of the last state change or restart
};

#endif  // TINYOTA_WIFI_KEEPER_H
