// The MQTT session of the host device on libmosquitto, behaving like the sketch's
// PubSubClient session: clean session, keepalive 15 s (PubSubClient's default), last will
// <prefix>/<id>/availability = "offline" (retained), "online" after every connect,
// subscription to the own update topic at QoS 1, status publishes at QoS 0.
#ifndef HOSTDEV_MOSQUITTO_SESSION_H
#define HOSTDEV_MOSQUITTO_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "../../src/tinyota/ports.h"
#include "logger.h"

struct mosquitto;
struct mosquitto_message;

namespace hostdev {

class MosquittoSession : public tinyota::MqttPort {
 public:
  struct Settings {
    std::string host;
    int port;
    std::string clientId;
    std::string user;
    std::string password;
  };
  typedef void (*MessageHandler)(void* context, const char* topic, const uint8_t* payload, size_t len);

  MosquittoSession(const Settings& settings, Logger& log);
  ~MosquittoSession();

  bool begin(const char* availabilityTopic, const char* updateTopic, MessageHandler handler, void* context);
  bool connected() const { return connected_; }
  // Connect, wait for CONNACK, publish "online", subscribe. Blocks for at most ~5 s.
  bool connect();
  // Network I/O and message delivery; call often.
  void loop(int timeoutMs);
  // While the core streams an image, a lost session is not re-established from inside a
  // progress publish: that would stall the download (the sketch does the same).
  void setStreaming(bool streaming) { streaming_ = streaming; }
  // SIGTERM: publish nothing more.
  void stopPublishing() { stopping_ = true; }

  bool publish(const char* topic, const char* payload, bool retained);

  // Before a reboot: "offline" (retained), a clean DISCONNECT, and the socket flushed.
  void closeForReboot();
  // Exit on a signal: drop the socket without DISCONNECT so the broker publishes the will.
  void abandon();

 private:
  MosquittoSession(const MosquittoSession&);
  MosquittoSession& operator=(const MosquittoSession&);

  static void onConnect(struct mosquitto* mosq, void* self, int rc);
  static void onDisconnect(struct mosquitto* mosq, void* self, int rc);
  static void onMessage(struct mosquitto* mosq, void* self, const struct mosquitto_message* message);

  Settings settings_;
  Logger& log_;
  struct mosquitto* mosq_;
  std::string availabilityTopic_;
  std::string updateTopic_;
  MessageHandler handler_;
  void* context_;
  bool everConnected_;
  bool connected_;
  int connackRc_;
  bool streaming_;
  bool stopping_;
};

}  // namespace hostdev

#endif  // HOSTDEV_MOSQUITTO_SESSION_H
