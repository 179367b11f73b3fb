"""TinyOTA-MQTT: private OTA firmware updates for ESP8266/ESP32, announced over MQTT."""

__version__ = "0.1.0"
