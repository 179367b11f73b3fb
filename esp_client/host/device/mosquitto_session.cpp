#include "mosquitto_session.h"

#include <errno.h>
#include <mosquitto.h>
#include <string.h>
#include <time.h>

namespace hostdev {

namespace {

const int kKeepaliveSeconds = 15;  // PubSubClient's MQTT_KEEPALIVE
const char* kOnline = "online";
const char* kOffline = "offline";

long long monotonicMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

MosquittoSession::MosquittoSession(const Settings& settings, Logger& log)
    : settings_(settings),
      log_(log),
      mosq_(0),
      handler_(0),
      context_(0),
      everConnected_(false),
      connected_(false),
      connackRc_(-1),
      streaming_(false),
      stopping_(false) {
  mosquitto_lib_init();
}

MosquittoSession::~MosquittoSession() {
  if (mosq_) mosquitto_destroy(mosq_);
  mosquitto_lib_cleanup();
}

bool MosquittoSession::begin(const char* availabilityTopic, const char* updateTopic, MessageHandler handler,
                             void* context) {
  availabilityTopic_ = availabilityTopic;
  updateTopic_ = updateTopic;
  handler_ = handler;
  context_ = context;
  mosq_ = mosquitto_new(settings_.clientId.c_str(), true, this);  // clean session, like PubSubClient
  if (!mosq_) {
    log_.printf("mqtt: cannot create a client");
    return false;
  }
  mosquitto_connect_callback_set(mosq_, onConnect);
  mosquitto_disconnect_callback_set(mosq_, onDisconnect);
  mosquitto_message_callback_set(mosq_, onMessage);
  int rc = mosquitto_username_pw_set(mosq_, settings_.user.c_str(), settings_.password.c_str());
  if (rc == MOSQ_ERR_SUCCESS) {
    rc = mosquitto_will_set(mosq_, availabilityTopic_.c_str(), static_cast<int>(strlen(kOffline)), kOffline, 1, true);
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    log_.printf("mqtt: setup failed: %s", mosquitto_strerror(rc));
    return false;
  }
  return true;
}

bool MosquittoSession::connect() {
  if (stopping_) return false;
  connected_ = false;
  connackRc_ = -1;
  int rc = everConnected_ ? mosquitto_reconnect(mosq_)
                          : mosquitto_connect(mosq_, settings_.host.c_str(), settings_.port, kKeepaliveSeconds);
  if (rc != MOSQ_ERR_SUCCESS) {
    log_.printf("mqtt: cannot reach %s:%d: %s", settings_.host.c_str(), settings_.port,
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    return false;
  }
  everConnected_ = true;
  const long long deadline = monotonicMs() + 5000;
  while (connackRc_ < 0 && monotonicMs() < deadline && !stopping_) {
    rc = mosquitto_loop(mosq_, 100, 1);
    if (rc != MOSQ_ERR_SUCCESS && connackRc_ < 0) break;
  }
  if (connackRc_ != 0) {
    // Sentences, not numbers: "Connection Refused: not authorised." says what to fix.
    log_.printf("mqtt: %s:%d refused the connection: %s", settings_.host.c_str(), settings_.port,
                connackRc_ < 0 ? "no CONNACK within 5 s" : mosquitto_connack_string(connackRc_));
    mosquitto_disconnect(mosq_);
    return false;
  }
  connected_ = true;
  rc = mosquitto_publish(mosq_, 0, availabilityTopic_.c_str(), static_cast<int>(strlen(kOnline)), kOnline, 0, true);
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_subscribe(mosq_, 0, updateTopic_.c_str(), 1);
  if (rc != MOSQ_ERR_SUCCESS) {
    log_.printf("mqtt: session setup failed: %s", mosquitto_strerror(rc));
    connected_ = false;
    return false;
  }
  log_.printf("mqtt: connected to %s:%d as %s; subscribed to %s", settings_.host.c_str(), settings_.port,
              settings_.clientId.c_str(), updateTopic_.c_str());
  return true;
}

void MosquittoSession::loop(int timeoutMs) {
  if (!mosq_) return;
  const int rc = mosquitto_loop(mosq_, timeoutMs, 1);
  if (rc != MOSQ_ERR_SUCCESS && connected_) {
    connected_ = false;
    log_.printf("mqtt: connection lost: %s", rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
  }
}

bool MosquittoSession::publish(const char* topic, const char* payload, bool retained) {
  if (stopping_ || !mosq_) return false;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!connected_ && (streaming_ || !connect())) return false;
    const int rc = mosquitto_publish(mosq_, 0, topic, static_cast<int>(strlen(payload)), payload, 0, retained);
    if (rc == MOSQ_ERR_SUCCESS) return true;
    connected_ = false;  // NO_CONN / CONN_LOST: try one reconnect, as the sketch does
    log_.printf("mqtt: publish to %s failed: %s", topic, mosquitto_strerror(rc));
  }
  return false;
}

void MosquittoSession::closeForReboot() {
  if (!mosq_ || !connected_) return;
  mosquitto_publish(mosq_, 0, availabilityTopic_.c_str(), static_cast<int>(strlen(kOffline)), kOffline, 0, true);
  mosquitto_disconnect(mosq_);
  // Let the loop write what is queued until the socket is closed (on_disconnect).
  const long long deadline = monotonicMs() + 2000;
  while (connected_ && monotonicMs() < deadline) {
    if (mosquitto_loop(mosq_, 50, 1) != MOSQ_ERR_SUCCESS) break;
  }
  connected_ = false;
}

void MosquittoSession::abandon() {
  stopping_ = true;
  if (mosq_) {
    mosquitto_destroy(mosq_);  // closes the socket; no DISCONNECT is sent
    mosq_ = 0;
  }
  connected_ = false;
}

void MosquittoSession::onConnect(struct mosquitto*, void* self, int rc) {
  static_cast<MosquittoSession*>(self)->connackRc_ = rc;
}

void MosquittoSession::onDisconnect(struct mosquitto*, void* self, int rc) {
  MosquittoSession* session = static_cast<MosquittoSession*>(self);
  if (session->connected_ && rc != 0) session->log_.printf("mqtt: disconnected unexpectedly");
  session->connected_ = false;
}

void MosquittoSession::onMessage(struct mosquitto*, void* self, const struct mosquitto_message* message) {
  MosquittoSession* session = static_cast<MosquittoSession*>(self);
  if (session->handler_ == 0) return;
  session->handler_(session->context_, message->topic, static_cast<const uint8_t*>(message->payload),
                    message->payloadlen > 0 ? static_cast<size_t>(message->payloadlen) : 0);
}

}  // namespace hostdev
