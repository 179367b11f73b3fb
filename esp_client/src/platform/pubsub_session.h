// The MQTT session on PubSubClient (knolleary/pubsubclient >= 2.8), as a tinyota::MqttPort.
//
// PubSubClient publishes QoS 0 only and subscribes at QoS 0 or 1; its default 256-byte
// buffer is too small for an announcement, hence setBufferSize(). The session owns the
// availability topic: last will "offline" (retained), "online" after every connect,
// "offline" again right before a deliberate reboot.
#ifndef TINYOTA_PUBSUB_SESSION_H
#define TINYOTA_PUBSUB_SESSION_H

#include <Arduino.h>
#include <PubSubClient.h>

#include <functional>

#include "../tinyota/ports.h"

class PubSubSession : public tinyota::MqttPort {
 public:
  PubSubSession(PubSubClient& client, tinyota::EventLog& log);

  // Strings must outlive the session (PubSubClient keeps the host pointer, too).
  bool configure(const char* host, uint16_t port, const char* clientId, const char* user,
                 const char* password, uint16_t bufferSize);
  void setTopics(const char* availabilityTopic, const char* updateTopic);
  // Runs after every successful connect, including one made inside publish().
  void onConnected(std::function<void()> handler) { onConnected_ = handler; }

  bool connected();
  // connect() with the last will, then "online" and the QoS 1 subscription. Blocks for at
  // most the socket timeout.
  bool connect();
  // While the core streams an image, a dropped session is not re-established from inside a
  // progress publish: the connect would stall the image stream.
  void setStreaming(bool streaming) { streaming_ = streaming; }

  bool publish(const char* topic, const char* payload, bool retained);

  // "offline", DISCONNECT, and time for the stack to send both before ESP.restart().
  void closeForReboot();

 private:
  PubSubClient& client_;
  tinyota::EventLog& log_;
  const char* clientId_;
  const char* user_;
  const char* password_;
  const char* availabilityTopic_;
  const char* updateTopic_;
  bool streaming_;
  std::function<void()> onConnected_;
};

#endif  // TINYOTA_PUBSUB_SESSION_H
