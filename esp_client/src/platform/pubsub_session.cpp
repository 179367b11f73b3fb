#if defined(ESP8266) || defined(ESP32)

#include "pubsub_session.h"

#include "../tinyota/text.h"

namespace {

const char kOnline[] = "online";
const char kOffline[] = "offline";

const char* orNull(const char* text) { return (text && text[0]) ? text : nullptr; }

// PubSubClient::state() as a sentence.
const char* describeState(int state) {
  switch (state) {
    case MQTT_CONNECTION_TIMEOUT: return "no answer from the broker";
    case MQTT_CONNECTION_LOST: return "connection lost";
    case MQTT_CONNECT_FAILED: return "TCP connect failed";
    case MQTT_DISCONNECTED: return "disconnected";
    case MQTT_CONNECT_BAD_PROTOCOL: return "broker refused the protocol version";
    case MQTT_CONNECT_BAD_CLIENT_ID: return "broker refused the client id";
    case MQTT_CONNECT_UNAVAILABLE: return "broker unavailable";
    case MQTT_CONNECT_BAD_CREDENTIALS: return "bad user name or password";
    case MQTT_CONNECT_UNAUTHORIZED: return "not authorised";
    default: return "unknown error";
  }
}

}  // namespace

PubSubSession::PubSubSession(PubSubClient& client, tinyota::EventLog& log)
    : client_(client),
      log_(log),
      clientId_(""),
      user_(nullptr),
      password_(nullptr),
      availabilityTopic_(""),
      updateTopic_(""),
      streaming_(false) {}

bool PubSubSession::configure(const char* host, uint16_t port, const char* clientId, const char* user,
                              const char* password, uint16_t bufferSize) {
  clientId_ = clientId;
  user_ = orNull(user);
  password_ = orNull(password);
  client_.setServer(host, port);
  // connect() blocks up to the socket timeout; 15 s (the default) is long for a loop().
  client_.setSocketTimeout(5);
  if (!client_.setBufferSize(bufferSize)) {
    log_.event("mqtt: cannot allocate the PubSubClient buffer");
    return false;
  }
  return true;
}

void PubSubSession::setTopics(const char* availabilityTopic, const char* updateTopic) {
  availabilityTopic_ = availabilityTopic;
  updateTopic_ = updateTopic;
}

bool PubSubSession::connected() { return client_.connected(); }

bool PubSubSession::connect() {
  const bool ok = client_.connect(clientId_, user_, password_, availabilityTopic_, 1, true, kOffline) &&
                  client_.publish(availabilityTopic_, kOnline, true) && client_.subscribe(updateTopic_, 1);
  if (!ok) {
    char line[96];
    tinyota::TextBuilder text(line, sizeof line);
    text.add("mqtt: connect failed: ").add(describeState(client_.state()));
    log_.event(line);
    client_.disconnect();
    return false;
  }
  log_.event("mqtt: connected; subscribed to the update topic");
  if (onConnected_) onConnected_();
  return true;
}

bool PubSubSession::publish(const char* topic, const char* payload, bool retained) {
  if (!client_.connected() && (streaming_ || !connect())) return false;
  return client_.publish(topic, payload, retained);
}

void PubSubSession::closeForReboot() {
  if (client_.connected()) {
    client_.publish(availabilityTopic_, kOffline, true);
    // disconnect() writes DISCONNECT, then flush() and stop(): on ESP8266 flush() waits for
    // the peer's ACK; on ESP32 the socket close sends what is queued. The delay lets the
    // TCP stack finish either way before the restart cuts the radio.
    client_.disconnect();
  }
  delay(200);
}

#endif  // ESP8266 || ESP32
