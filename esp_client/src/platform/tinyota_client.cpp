#if defined(ESP8266) || defined(ESP32)

#include "tinyota_client.h"

#include <string.h>

namespace {
const uint32_t kReconnectEveryMs = 5000;
}

void TinyOtaClient::SerialLog::event(const char* line) {
  Serial.print(F("[tinyota] "));
  Serial.println(line);
}

uint32_t TinyOtaClient::MillisClock::millis() { return ::millis(); }

void TinyOtaClient::StreamingUpdater::run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
                                          tinyota::UpdateResult& result) {
  session_.setStreaming(true);
  inner_.run(request, progress, result);
  session_.setStreaming(false);
}

tinyota::AgentConfig TinyOtaClient::agentConfig(const TinyOtaSettings& s, tinyota::SignatureVerifier* verifier) {
  const tinyota::AgentConfig config = {
      s.topicPrefix,
      s.deviceId,
      s.deviceId,  // HTTP Basic user: the device's own id
      s.devicePassword,
      s.firmwareVersion,
#if defined(ESP8266)
      "esp8266",
#else
      "esp32",
#endif
      0,  // free space: set in begin(), the flash API is not ready for global constructors
      s.progressStepPercent,
      s.progressIntervalMs,
      s.serverUrl,
      verifier,  // its key is checked in begin(), before anything can arrive
  };
  return config;
}

TinyOtaClient::TinyOtaClient(const TinyOtaSettings& settings)
    : settings_(settings),
      mqtt_(net_),
      session_(mqtt_, log_),
      http_(settings.httpsClient),
      updater_(http_, session_),
      store_(settings.eepromOffset),
      agent_(agentConfig(settings, settings.serverPublicKey != nullptr ? &verifier_ : nullptr), session_, updater_,
             store_, clock_, &log_),
      ready_(false),
      everTried_(false),
      lastConnectAttempt_(0) {}

bool TinyOtaClient::begin() {
  if (settings_.serverPublicKey != nullptr && !verifier_.begin(settings_.serverPublicKey)) {
    log_.event("config error: TINYOTA_SERVER_PUBLIC_KEY must be the 130 hex digits of a P-256 point");
    return false;
  }
  agent_.setFreeSpace(static_cast<uint32_t>(ESP.getFreeSketchSpace()));
  if (!agent_.begin()) return false;
  if (!session_.configure(settings_.mqttHost, settings_.mqttPort, settings_.deviceId, settings_.mqttUser,
                          settings_.mqttPassword, settings_.mqttBufferSize)) {
    return false;
  }
  session_.setTopics(agent_.availabilityTopic(), agent_.updateTopic());
  mqtt_.setCallback([this](char* topic, uint8_t* payload, unsigned int length) {
    handleMessage(topic, payload, length);
  });
  // The sketch's own subscriptions, after every connect (also one made to publish an
  // update's outcome, which the session does by itself).
  session_.onConnected([this]() {
    if (connectHandler_) connectHandler_(mqtt_);
  });
  ready_ = true;
  return true;
}

void TinyOtaClient::handleMessage(char* topic, uint8_t* payload, unsigned int length) {
  if (strcmp(topic, agent_.updateTopic()) == 0) {
    agent_.onMessage(topic, payload, length);  // only queues; the update runs in loop()
  } else if (messageHandler_) {
    messageHandler_(topic, payload, length);
  }
}

void TinyOtaClient::loop() {
  if (!ready_ || WiFi.status() != WL_CONNECTED) return;
  if (!session_.connected()) {
    const uint32_t now = ::millis();
    if (everTried_ && now - lastConnectAttempt_ < kReconnectEveryMs) return;
    everTried_ = true;
    lastConnectAttempt_ = now;
    if (!session_.connect()) return;
    agent_.onConnected();
  }
  mqtt_.loop();  // delivers messages to handleMessage()
  if (agent_.poll() == tinyota::kAgentReboot) {
    session_.closeForReboot();
    ESP.restart();
  }
}

#endif  // ESP8266 || ESP32
