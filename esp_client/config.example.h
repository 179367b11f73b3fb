// TinyOTA device settings. Copy this file to config.h (git-ignored) and fill it in:
//   cp config.example.h config.h
// Everything here is a compile-time constant; nothing is stored on the device except the
// id of the last attempted announcement.
#ifndef TINYOTA_CONFIG_H
#define TINYOTA_CONFIG_H

// --- Wi-Fi -------------------------------------------------------------------------------
#define TINYOTA_WIFI_SSID "my-ssid"
#define TINYOTA_WIFI_PASSWORD "my-wifi-password"

// --- MQTT broker -------------------------------------------------------------------------
#define TINYOTA_MQTT_HOST "192.168.1.10"
#define TINYOTA_MQTT_PORT 1883

// --- This device --------------------------------------------------------------------------
// The id is one MQTT topic level and a Home Assistant object id: [A-Za-z0-9_-]+, not
// "server". It is also the MQTT client id and the user name of the firmware download.
#define TINYOTA_DEVICE_ID "kitchen-1"
// The device's own password on the TinyOTA server (HTTP Basic Auth of the download).
#define TINYOTA_DEVICE_PASSWORD "change-me"

// --- The TinyOTA server -------------------------------------------------------------------
// Its base URL, exactly as the server's config.yaml says in server.public_url. The device
// downloads only from URLs under it (same scheme, host, port and path prefix) and refuses
// any other announcement without making a request: its password goes nowhere else.
#define TINYOTA_SERVER_URL "http://192.168.1.10:8000"

// The server's announcement key, if it signs (server.signing_key): the 130 hex digits
// `tinyota keygen` printed (also "signing_public_key" on the server's /healthz). With it the
// device acts only on announcements signed for this device; without it, it ignores "sig".
// #define TINYOTA_SERVER_PUBLIC_KEY "04...130 hex digits..."

// --- Optional (defaults shown) ------------------------------------------------------------
// MQTT credentials, if the broker wants other ones than the device's:
// #define TINYOTA_MQTT_USER TINYOTA_DEVICE_ID
// #define TINYOTA_MQTT_PASSWORD TINYOTA_DEVICE_PASSWORD

// Topic prefix; must match the server's mqtt.prefix:
// #define TINYOTA_TOPIC_PREFIX "tinyota"

// Announced https:// URLs need a trust anchor. Either the server's CA in PEM form...
// #define TINYOTA_HTTPS_CA_CERT "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
// ...or, on a network you control, no certificate check at all:
// #define TINYOTA_HTTPS_INSECURE 1

// Progress is published after at least this many percent AND this many milliseconds:
// #define TINYOTA_PROGRESS_STEP_PERCENT 5
// #define TINYOTA_PROGRESS_INTERVAL_MS 1000

// PubSubClient buffer; must hold the largest announcement (768 bytes) plus its topic:
// #define TINYOTA_MQTT_BUFFER_SIZE 1024

// ESP8266 only: offset of TinyOTA's 69 bytes in the EEPROM emulation. Move it if your
// sketch keeps its own data there:
// #define TINYOTA_EEPROM_OFFSET 0

#endif  // TINYOTA_CONFIG_H
