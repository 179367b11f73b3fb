// The device side of TinyOTA as a state machine, free of Arduino and of I/O.
//
//   idle ──announcement (version differs, id not yet attempted)──▶ queued
//   queued ──poll()──▶ downloading ──all bytes in──▶ flashing ──verified──▶ rebooting
//                          │                            │
//                          ├── HTTP 304 ──▶ idle        │ MD5 or write error
//                          └── any error ──▶ failed ◀───┘   (error = the core's text)
//
// Rules it enforces (esp_client/README.md, "What the device does"):
//  - nothing happens unless an announcement on this device's own topic asks for it;
//  - before acting it checks trust: the URL must lie under the server base URL the device
//    was built for (server_url.h), and with a verifier configured the announcement must
//    carry a signature that verifies over the manifest with this device's id (signature.h).
//    Anything else is refused with "failed" and the reason, and no request is made: the
//    device's password goes to no other server;
//  - it acts only when the announced version differs from the running one;
//  - an announcement id is attempted at most once, across reboots: the id is stored
//    *before* the download starts, so neither a failure, a crash, a power cut nor a
//    bootloader rollback can make the device loop on a bad image;
//  - malformed announcements are ignored; refused ones (bad url, version, digest) are
//    answered once with "failed" and not stored, since nothing was attempted;
//  - the outcome is published before the reboot, which the platform performs.
#ifndef TINYOTA_AGENT_H
#define TINYOTA_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "announcement.h"
#include "limits.h"
#include "ports.h"
#include "server_url.h"
#include "signature.h"
#include "status.h"

namespace tinyota {

// The strings are not copied: keep them alive as long as the Agent (literals, config).
struct AgentConfig {
  const char* topicPrefix;       // "tinyota"
  const char* deviceId;          // [A-Za-z0-9_-]+
  const char* httpUser;          // the device's own download credentials
  const char* httpPassword;
  const char* runningVersion;    // the version of the image that is running
  const char* platform;          // "esp8266" or "esp32", reported in the status
  uint32_t freeSpace;            // ESP.getFreeSketchSpace()
  uint8_t progressStepPercent;   // progress is published after at least this many percent...
  uint32_t progressIntervalMs;   // ...and at least this long after the previous one
  const char* serverBaseUrl;     // required: downloads only from URLs under it
  SignatureVerifier* verifier;   // optional: with one, only signed announcements are acted on
};

enum AgentAction { kAgentContinue, kAgentReboot };

class Agent : private ProgressSink {
 public:
  Agent(const AgentConfig& config, MqttPort& mqtt, Updater& updater, AttemptStore& store,
        Clock& clock, EventLog* log);

  // Validates the configuration, builds the topics and reads the attempt store.
  // False (with a log line) when the configuration cannot work.
  bool begin();

  const char* updateTopic() const { return updateTopic_; }
  const char* statusTopic() const { return statusTopic_; }
  const char* availabilityTopic() const { return availabilityTopic_; }

  // The free_space reported in the status. On the ESPs ESP.getFreeSketchSpace() must not run
  // before setup(), so a globally constructed Agent gets the value here instead.
  void setFreeSpace(uint32_t bytes) { config_.freeSpace = bytes; }

  // After every successful (re)connect and subscribe: republishes the current status.
  void onConnected();

  // Every MQTT message may be passed in; other topics are ignored. Cheap and non-blocking:
  // a valid announcement is only queued, the work happens in poll().
  void onMessage(const char* topic, const uint8_t* payload, size_t len);

  // From the main loop, never from an MQTT callback: runs a queued update to its end.
  // kAgentReboot means "rebooting" was published: flush the connection, then restart.
  AgentAction poll();

  State state() const { return state_; }
  bool hasQueuedUpdate() const { return queued_; }

 private:
  void onProgress(uint32_t done, uint32_t total);
  void answerAlreadyRunning();
  AnnouncementStatus checkTrust();
  void refuse(AnnouncementStatus status);
  void setStatus(State state, const char* id, int progress, const char* error);
  void publishStatus();
  void rememberAttempt(const char* id);
  const char* direction(const char* target) const;
  void emit(const char* a, const char* b = "", const char* c = "", const char* d = "",
            const char* e = "", const char* f = "", const char* g = "", const char* h = "");

  AgentConfig config_;
  MqttPort& mqtt_;
  Updater& updater_;
  AttemptStore& store_;
  Clock& clock_;
  EventLog* log_;

  bool ready_;
  bool queued_;   // incoming_ holds an accepted announcement
  bool running_;  // inside Updater::run()
  char updateTopic_[kMaxTopicLen + 1];
  char statusTopic_[kMaxTopicLen + 1];
  char availabilityTopic_[kMaxTopicLen + 1];
  char attemptedId_[kMaxAnnouncementIdLen + 1];

  Announcement incoming_;  // the newest announcement; the retained topic's latest word
  Announcement current_;   // the one being installed

  State state_;
  int progress_;
  char statusId_[kMaxAnnouncementIdLen + 1];
  char statusError_[kMaxErrorLen + 1];

  int lastProgressPercent_;
  uint32_t lastProgressMs_;
  bool flashingReported_;

  UpdateResult result_;
  char statusJson_[kMaxStatusLen + 1];
  char logLine_[kMaxLogLineLen + 1];
  char manifest_[kMaxManifestLen + 1];
  uint8_t signature_[kSignatureLen];
};

}  // namespace tinyota

#endif  // TINYOTA_AGENT_H
