// Defaults for everything config.h may leave out. Include after config.h.
#ifndef TINYOTA_CONFIG_DEFAULTS_H
#define TINYOTA_CONFIG_DEFAULTS_H

#if !defined(TINYOTA_WIFI_SSID) || !defined(TINYOTA_WIFI_PASSWORD) || !defined(TINYOTA_MQTT_HOST) || \
    !defined(TINYOTA_DEVICE_ID) || !defined(TINYOTA_DEVICE_PASSWORD) || !defined(TINYOTA_SERVER_URL)
#error "config.h must define TINYOTA_WIFI_SSID, TINYOTA_WIFI_PASSWORD, TINYOTA_MQTT_HOST, TINYOTA_DEVICE_ID, TINYOTA_DEVICE_PASSWORD and TINYOTA_SERVER_URL (see config.example.h)"
#endif

#ifndef TINYOTA_MQTT_PORT
#define TINYOTA_MQTT_PORT 1883
#endif
#ifndef TINYOTA_MQTT_USER
#define TINYOTA_MQTT_USER TINYOTA_DEVICE_ID
#endif
#ifndef TINYOTA_MQTT_PASSWORD
#define TINYOTA_MQTT_PASSWORD TINYOTA_DEVICE_PASSWORD
#endif
#ifndef TINYOTA_TOPIC_PREFIX
#define TINYOTA_TOPIC_PREFIX "tinyota"
#endif
// No public key: announcements are not signature-checked (the URL check still applies).
#ifndef TINYOTA_SERVER_PUBLIC_KEY
#define TINYOTA_SERVER_PUBLIC_KEY nullptr
#endif
// TINYOTA_HTTPS_CA_CERT / TINYOTA_HTTPS_INSECURE have no default: see https_client.h.
#ifndef TINYOTA_PROGRESS_STEP_PERCENT
#define TINYOTA_PROGRESS_STEP_PERCENT 5
#endif
#ifndef TINYOTA_PROGRESS_INTERVAL_MS
#define TINYOTA_PROGRESS_INTERVAL_MS 1000
#endif
#ifndef TINYOTA_MQTT_BUFFER_SIZE
#define TINYOTA_MQTT_BUFFER_SIZE 1024
#endif
#ifndef TINYOTA_EEPROM_OFFSET
#define TINYOTA_EEPROM_OFFSET 0
#endif

#endif  // TINYOTA_CONFIG_DEFAULTS_H
