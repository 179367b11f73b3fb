#include "agent.h"

#include <string.h>

#include "semver.h"
#include "text.h"
#include "topics.h"

namespace tinyota {

namespace {

// Small decimal rendering for log lines.
struct Decimal {
  explicit Decimal(unsigned long value) {
    TextBuilder text(digits, sizeof digits);
    text.addUint(value);
  }
  char digits[12];
};

bool isVisibleAsciiText(const char* s, size_t maxLen) {
  const size_t n = strlen(s);
  if (n == 0 || n > maxLen) return false;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < 0x21 || s[i] > 0x7E) return false;
  }
  return true;
}

}  // namespace

Agent::Agent(const AgentConfig& config, MqttPort& mqtt, Updater& updater, AttemptStore& store,
             Clock& clock, EventLog* log)
    : config_(config),
      mqtt_(mqtt),
      updater_(updater),
      store_(store),
      clock_(clock),
      log_(log),
      ready_(false),
      queued_(false),
      running_(false),
      state_(kStateIdle),
      progress_(-1),
      lastProgressPercent_(0),
      lastProgressMs_(0),
      flashingReported_(false) {
  updateTopic_[0] = statusTopic_[0] = availabilityTopic_[0] = '\0';
  attemptedId_[0] = statusId_[0] = statusError_[0] = '\0';
  memset(&incoming_, 0, sizeof incoming_);
  memset(&current_, 0, sizeof current_);
  memset(&result_, 0, sizeof result_);
  statusJson_[0] = logLine_[0] = manifest_[0] = '\0';
  memset(signature_, 0, sizeof signature_);
}

bool Agent::begin() {
  const AgentConfig& c = config_;
  if (!isValidDeviceId(c.deviceId)) {
    emit("config error: device id must be 1-64 of [A-Za-z0-9_-] and not \"server\"");
    return false;
  }
  if (!isValidTopicPrefix(c.topicPrefix)) {
    emit("config error: topic prefix must be non-empty, without wildcards or empty levels");
    return false;
  }
  if (c.runningVersion == 0 || !isVisibleAsciiText(c.runningVersion, kMaxVersionLen)) {
    emit("config error: running version must be 1-32 visible ASCII characters");
    return false;
  }
  if (c.platform == 0 || !isVisibleAsciiText(c.platform, kMaxPlatformLen) || c.httpUser == 0 ||
      c.httpPassword == 0) {
    emit("config error: platform and HTTP credentials must be set");
    return false;
  }
  if (c.serverBaseUrl == 0 || !isUsableServerBase(c.serverBaseUrl)) {
    emit("config error: server URL must be http(s)://host[:port][/path], the server's public_url");
    return false;
  }
  if (!buildTopic(updateTopic_, sizeof updateTopic_, c.topicPrefix, c.deviceId, "update") ||
      !buildTopic(statusTopic_, sizeof statusTopic_, c.topicPrefix, c.deviceId, "status") ||
      !buildTopic(availabilityTopic_, sizeof availabilityTopic_, c.topicPrefix, c.deviceId,
                  "availability")) {
    emit("config error: topics do not fit");
    return false;
  }
  if (config_.progressStepPercent == 0) config_.progressStepPercent = 1;

  if (!store_.load(attemptedId_, sizeof attemptedId_) ||
      (attemptedId_[0] != '\0' && !isVisibleAsciiText(attemptedId_, kMaxAnnouncementIdLen))) {
    emit("attempt store unreadable; starting with no attempted announcement");
    attemptedId_[0] = '\0';
  }
  ready_ = true;
  setStatus(kStateIdle, "", -1, "");
  emit("running ", c.runningVersion, " on ", c.platform, "; last attempted announcement: ",
       attemptedId_[0] != '\0' ? attemptedId_ : "none");
  emit("downloads only from ", c.serverBaseUrl,
       c.verifier != 0 ? "; acts only on signed announcements" : "; signatures not checked (no public key)");
  return true;
}

void Agent::onConnected() {
  if (ready_) publishStatus();
}

void Agent::onMessage(const char* topic, const uint8_t* payload, size_t len) {
  if (!ready_) return;
  if (topic == 0 || strcmp(topic, updateTopic_) != 0) {
    emit("ignored message on a foreign topic: ", topic ? topic : "(null)");
    return;
  }
  if (running_) {
    // Not reachable with the shipped adapters (they do not pump MQTT during an update).
    emit("announcement arrived during an update; ignored");
    return;
  }
  const AnnouncementStatus status =
      parseAnnouncement(reinterpret_cast<const char*>(payload), len, incoming_);
  // The newest message on the retained topic replaces whatever was queued before it.
  queued_ = false;
  if (status == kAnnouncementEmpty) {
    emit("announcement cleared: nothing to do");
    return;
  }
  if (status != kAnnouncementOk && !isRefusal(status)) {
    const Decimal size(len);
    emit("announcement ignored: ", describeAnnouncementStatus(status), " (", size.digits,
         " bytes)");
    return;
  }
  const char* id = incoming_.id;
  if (strcmp(incoming_.version, config_.runningVersion) == 0) {
    answerAlreadyRunning();
    return;
  }
  if (strcmp(id, attemptedId_) == 0) {
    emit("announcement ", id, ": already attempted; not retrying (announce again with a new id)");
    return;
  }
  if (isRefusal(status)) {
    refuse(status);
    return;
  }
  const AnnouncementStatus trust = checkTrust();
  if (trust != kAnnouncementOk) {
    refuse(trust);
    return;
  }
  queued_ = true;
  emit("announcement ", id, ": ", config_.runningVersion, " -> ", incoming_.version,
       direction(incoming_.version), "; queued");
}

void Agent::refuse(AnnouncementStatus status) {
  // Nothing was attempted, so the attempt store keeps guarding the last real download;
  // a redelivered refusal is simply not answered twice.
  const char* id = incoming_.id;
  if (state_ == kStateFailed && strcmp(statusId_, id) == 0) return;
  setStatus(kStateFailed, id, -1, describeAnnouncementStatus(status));
  emit("announcement ", id, " ", describeAnnouncementStatus(status));
  publishStatus();
}

AnnouncementStatus Agent::checkTrust() {
  // The URL first: it costs nothing, and it is what protects the password.
  if (!isUnderServerBase(incoming_.url, config_.serverBaseUrl)) return kAnnouncementNotOurServer;
  if (config_.verifier == 0) return kAnnouncementOk;
  if (incoming_.sig[0] == '\0' && !incoming_.sigUnusable) return kAnnouncementMissingSignature;
  if (incoming_.sigUnusable || !decodeSignature(incoming_.sig, signature_)) return kAnnouncementBadSignature;
  const size_t len = buildManifest(config_.deviceId, incoming_, manifest_, sizeof manifest_);
  if (len == 0) return kAnnouncementBadSignature;
  switch (config_.verifier->verify(reinterpret_cast<const uint8_t*>(manifest_), len, signature_)) {
    case kSignatureValid: return kAnnouncementOk;
    case kSignatureUnchecked: return kAnnouncementSignatureUnchecked;
    case kSignatureInvalid: break;
  }
  return kAnnouncementBadSignature;
}

void Agent::answerAlreadyRunning() {
  if (state_ == kStateIdle && strcmp(statusId_, incoming_.id) == 0) return;  // said so already
  emit("announcement ", incoming_.id, ": already running ", incoming_.version);
  setStatus(kStateIdle, incoming_.id, -1, "");
  publishStatus();
}

AgentAction Agent::poll() {
  if (!ready_ || !queued_ || running_) return kAgentContinue;
  queued_ = false;
  current_ = incoming_;
  const char* id = current_.id;
  rememberAttempt(id);

  lastProgressPercent_ = 0;
  lastProgressMs_ = clock_.millis();
  flashingReported_ = false;
  emit("update ", id, ": downloading ", current_.url);
  setStatus(kStateDownloading, id, 0, "");
  publishStatus();

  const UpdateRequest request = {current_.url, config_.httpUser, config_.httpPassword,
                                 config_.runningVersion};
  result_.outcome = kUpdateFailed;
  result_.error[0] = '\0';
  running_ = true;
  updater_.run(request, *this, result_);
  running_ = false;
  result_.error[sizeof result_.error - 1] = '\0';  // never trust a port with termination

  switch (result_.outcome) {
    case kUpdateOk:
      emit("update ", id, ": image written and verified; rebooting into ", current_.version);
      setStatus(kStateRebooting, id, -1, "");
      publishStatus();
      return kAgentReboot;
    case kUpdateNoUpdate:
      // ESPhttpUpdate / HTTPUpdate return HTTP_UPDATE_NO_UPDATES on HTTP 304.
      emit("update ", id, ": server answered 304; already on that version");
      setStatus(kStateIdle, id, -1, "");
      publishStatus();
      return kAgentContinue;
    case kUpdateFailed:
      break;
  }
  const char* error = result_.error[0] != '\0' ? result_.error : "update failed";
  emit("update ", id, " failed: ", error);
  setStatus(kStateFailed, id, -1, error);
  publishStatus();
  return kAgentContinue;
}

void Agent::onProgress(uint32_t done, uint32_t total) {
  if (!running_ || total == 0) return;
  if (done >= total) {
    // Every byte is in; the core now finishes the write and checks x-MD5 (Update.end()).
    if (flashingReported_) return;
    flashingReported_ = true;
    setStatus(kStateFlashing, current_.id, 100, "");
    publishStatus();
    return;
  }
  const int percent = static_cast<int>(static_cast<uint64_t>(done) * 100u / total);
  const uint32_t now = clock_.millis();
  // Both a step and a pause: on a fast LAN the whole image arrives in a second or two, and
  // twenty publishes in that time would only slow the ESP8266 while it is busiest.
  if (percent < lastProgressPercent_ + config_.progressStepPercent) return;
  if (static_cast<uint32_t>(now - lastProgressMs_) < config_.progressIntervalMs) return;
  lastProgressPercent_ = percent;
  lastProgressMs_ = now;
  setStatus(kStateDownloading, current_.id, percent, "");
  publishStatus();
}

void Agent::setStatus(State state, const char* id, int progress, const char* error) {
  state_ = state;
  progress_ = progress;
  copyText(statusId_, sizeof statusId_, id);
  copyText(statusError_, sizeof statusError_, error);
}

void Agent::publishStatus() {
  const StatusFields fields = {state_,     config_.runningVersion, progress_,       statusId_,
                               statusError_, config_.platform,     config_.freeSpace};
  if (buildStatusJson(fields, statusJson_, sizeof statusJson_) == 0) {
    emit("status does not fit its buffer; not published");
    return;
  }
  if (!mqtt_.publish(statusTopic_, statusJson_, true)) {
    emit("status \"", stateName(state_), "\" not delivered (MQTT offline); republished on reconnect");
  }
}

void Agent::rememberAttempt(const char* id) {
  copyText(attemptedId_, sizeof attemptedId_, id);
  if (!store_.save(id)) {
    emit("warning: could not store the attempted id; after a reboot it could be tried again");
  }
}

const char* Agent::direction(const char* target) const {
  int order;
  if (!compareSemver(config_.runningVersion, target, order)) return " (version change)";
  if (order < 0) return " (upgrade)";
  if (order > 0) return " (rollback)";
  return " (same precedence, different build)";
}

void Agent::emit(const char* a, const char* b, const char* c, const char* d, const char* e,
                 const char* f, const char* g, const char* h) {
  if (log_ == 0) return;
  TextBuilder line(logLine_, sizeof logLine_);
  const char* parts[] = {a, b, c, d, e, f, g, h};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; ++i) {
    // Keep what fits: a long URL must not hide the rest of the line entirely.
    const size_t room = sizeof logLine_ - 1 - line.length();
    const size_t n = strlen(parts[i]);
    line.add(parts[i], n < room ? n : room);
  }
  log_->event(logLine_);
}

}  // namespace tinyota
