// TinyOTA for a sketch in two calls: ota.begin() in setup(), ota.loop() in loop().
//
// It wires the portable core (src/tinyota/) to PubSubClient, the core's HTTP update
// routine, EEPROM/NVS and millis(). Wi-Fi stays yours: loop() does nothing until
// WiFi.status() == WL_CONNECTED. Keep loop() non-blocking elsewhere; an update itself
// blocks for the download (tens of seconds), as the cores' HTTP update always does.
#ifndef TINYOTA_CLIENT_H
#define TINYOTA_CLIENT_H

#include <Arduino.h>
#include <PubSubClient.h>

#if defined(ESP8266)
#include <ESP8266WiFi.h>
#else
#include <WiFi.h>
#endif

#include <functional>

#include "../tinyota/agent.h"
#include "../crypto/p256_verifier.h"
#include "../tinyota/firmware_marker.h"
#include "esp_attempt_store.h"
#include "esp_http_updater.h"
#include "pubsub_session.h"

// All strings must live as long as the client (string literals from config.h do).
struct TinyOtaSettings {
  const char* mqttHost;
  uint16_t mqttPort;
  const char* mqttUser;
  const char* mqttPassword;
  const char* topicPrefix;          // "tinyota"
  const char* deviceId;             // [A-Za-z0-9_-]+; MQTT client id and HTTP Basic user
  const char* devicePassword;       // HTTP Basic password for the firmware download
  const char* serverUrl;            // TINYOTA_SERVER_URL: downloads only from URLs under it
  const char* serverPublicKey;      // TINYOTA_SERVER_PUBLIC_KEY (130 hex digits) or nullptr
  const char* firmwareVersion;      // tinyota::firmwareVersion()
  TinyOtaTlsClientFactory httpsClient;  // TINYOTA_HTTPS_CLIENT from https_client.h
  uint8_t progressStepPercent;      // 5
  uint32_t progressIntervalMs;      // 1000
  uint16_t mqttBufferSize;          // 1024: room for a full announcement
  size_t eepromOffset;              // ESP8266: where the 69-byte attempt slot lives
};

class TinyOtaClient {
 public:
  typedef std::function<void(char*, uint8_t*, unsigned int)> MessageHandler;
  typedef std::function<void(PubSubClient&)> ConnectHandler;

  explicit TinyOtaClient(const TinyOtaSettings& settings);

  // False (and a line on Serial) when the settings cannot work.
  bool begin();
  void loop();

  // Share the MQTT connection with your own topics: subscribe in onConnect (it runs after
  // every reconnect); onMessage receives every message TinyOTA does not own.
  void onConnect(ConnectHandler handler) { connectHandler_ = handler; }
  void onMessage(MessageHandler handler) { messageHandler_ = handler; }
  PubSubClient& mqtt() { return mqtt_; }
  tinyota::State state() const { return agent_.state(); }

 private:
  class SerialLog : public tinyota::EventLog {
   public:
    void event(const char* line);
  };
  class MillisClock : public tinyota::Clock {
   public:
    uint32_t millis();
  };
  // Marks the MQTT session as streaming while the core downloads the image.
  class StreamingUpdater : public tinyota::Updater {
   public:
    StreamingUpdater(tinyota::Updater& inner, PubSubSession& session) : inner_(inner), session_(session) {}
    void run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
             tinyota::UpdateResult& result);

   private:
    tinyota::Updater& inner_;
    PubSubSession& session_;
  };

  static tinyota::AgentConfig agentConfig(const TinyOtaSettings& s, tinyota::SignatureVerifier* verifier);
  void handleMessage(char* topic, uint8_t* payload, unsigned int length);

  TinyOtaSettings settings_;
  SerialLog log_;
  MillisClock clock_;
  WiFiClient net_;
  PubSubClient mqtt_;
  PubSubSession session_;
  EspHttpUpdater http_;
  StreamingUpdater updater_;
  EspAttemptStore store_;
  P256Verifier verifier_;
  tinyota::Agent agent_;
  bool ready_;
  bool everTried_;
  uint32_t lastConnectAttempt_;
  MessageHandler messageHandler_;
  ConnectHandler connectHandler_;
};

#endif  // TINYOTA_CLIENT_H
