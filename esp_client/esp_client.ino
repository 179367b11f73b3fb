// TinyOTA-MQTT device client for ESP8266 and ESP32.
//
// Waits for a retained announcement on tinyota/<device>/update, and when its version
// differs from the running one, downloads it with the core's HTTP update routine using this
// device's own credentials, reports progress and the outcome on tinyota/<device>/status,
// then reboots into the new image. See README.md; settings live in config.h.
//
// Bump the version for every release (or pass -DTINYOTA_FIRMWARE_VERSION='"1.4.0"'):
#ifndef TINYOTA_FIRMWARE_VERSION
#define TINYOTA_FIRMWARE_VERSION "1.0.0"
#endif

#ifndef TINYOTA_CONFIG
#define TINYOTA_CONFIG "config.h"
#endif
#if defined(__has_include)
#if !__has_include(TINYOTA_CONFIG)
#error "config.h is missing: copy config.example.h to config.h and fill it in"
#endif
#endif
#include TINYOTA_CONFIG

#include "src/platform/config_defaults.h"
#include "src/platform/https_client.h"
#include "src/platform/tinyota_client.h"
#include "src/platform/wifi_keeper.h"

// Puts "TINYOTA_FW_VERSION=<version>\0" into the image: the server reads it from uploads,
// and tinyota::firmwareVersion() reads it back as the running version.
TINYOTA_DEFINE_FIRMWARE_VERSION(TINYOTA_FIRMWARE_VERSION);

static const TinyOtaSettings kOtaSettings = {
    TINYOTA_MQTT_HOST,
    TINYOTA_MQTT_PORT,
    TINYOTA_MQTT_USER,
    TINYOTA_MQTT_PASSWORD,
    TINYOTA_TOPIC_PREFIX,
    TINYOTA_DEVICE_ID,
    TINYOTA_DEVICE_PASSWORD,
    TINYOTA_SERVER_URL,
    TINYOTA_SERVER_PUBLIC_KEY,  // nullptr unless config.h sets it
    tinyota::firmwareVersion(),
    TINYOTA_HTTPS_CLIENT,  // nullptr unless config.h sets a CA or TINYOTA_HTTPS_INSECURE
    TINYOTA_PROGRESS_STEP_PERCENT,
    TINYOTA_PROGRESS_INTERVAL_MS,
    TINYOTA_MQTT_BUFFER_SIZE,
    TINYOTA_EEPROM_OFFSET,
};

static WifiKeeper wifi(TINYOTA_WIFI_SSID, TINYOTA_WIFI_PASSWORD);
static TinyOtaClient ota(kOtaSettings);

void setup() {
  Serial.begin(115200);
  Serial.println();
  Serial.print(F("[app] firmware "));
  Serial.println(tinyota::firmwareVersion());
  wifi.begin();
  if (!ota.begin()) Serial.println(F("[app] TinyOTA disabled: fix config.h"));
}

void loop() {
  wifi.loop();
  ota.loop();
  // Your application goes here. Keep it non-blocking so MQTT keeps flowing.
}
