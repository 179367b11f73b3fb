#if defined(ESP8266) || defined(ESP32)

#include "wifi_keeper.h"

#include <Arduino.h>

#if defined(ESP8266)
#include <ESP8266WiFi.h>
#else
#include <WiFi.h>
#endif

namespace {
const uint32_t kRestartAfterMs = 60000;
}

void WifiKeeper::begin() {
  WiFi.persistent(false);  // do not rewrite the credentials to flash on every boot
  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(ssid_, password_);
  since_ = millis();
  Serial.print(F("[wifi] connecting to "));
  Serial.println(ssid_);
}

void WifiKeeper::loop() {
  const bool up = WiFi.status() == WL_CONNECTED;
  const uint32_t now = millis();
  if (up != up_) {
    up_ = up;
    since_ = now;
    if (up) {
      Serial.print(F("[wifi] connected, IP "));
      Serial.println(WiFi.localIP());
    } else {
      Serial.println(F("[wifi] link lost; reconnecting"));
    }
    return;
  }
  if (!up && now - since_ >= kRestartAfterMs) {
    Serial.println(F("[wifi] still down; restarting the association"));
    WiFi.disconnect();
    WiFi.begin(ssid_, password_);
    since_ = now;
  }
}

#endif  // ESP8266 || ESP32
