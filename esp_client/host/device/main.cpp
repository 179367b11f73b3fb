// tinyota-device: the TinyOTA device core on a PC, for end-to-end tests without hardware.
//
// Boot: the running version is read from the flashed image's TINYOTA_FW_VERSION= marker
// (<state-dir>/firmware.bin), or taken from --version while nothing was flashed yet.
// Reboot: after a verified update the program re-executes itself with the same arguments,
// so it comes back up running the version of the image it just "flashed".
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "../../src/crypto/p256_verifier.h"
#include "../../src/tinyota/agent.h"
#include "../../src/tinyota/firmware_marker.h"
#include "../../src/tinyota/text.h"
#include "curl_updater.h"
#include "http_rules.h"
#include "logger.h"
#include "md5.h"
#include "mosquitto_session.h"
#include "options.h"
#include "state_dir.h"

namespace {

volatile sig_atomic_t g_stop = 0;

void onStopSignal(int) { g_stop = 1; }

void installSignalHandlers() {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = onStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, 0);  // no SA_RESTART: blocking calls return and see the flag
  sigaction(SIGINT, &action, 0);
  signal(SIGPIPE, SIG_IGN);  // a broken socket is reported as an error, not a crash
}

class MonotonicClock : public tinyota::Clock {
 public:
  uint32_t millis() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint32_t>(static_cast<unsigned long long>(ts.tv_sec) * 1000u + ts.tv_nsec / 1000000);
  }
};

// Marks the MQTT session as streaming while the core downloads, like the sketch does.
class StreamingUpdater : public tinyota::Updater {
 public:
  StreamingUpdater(tinyota::Updater& inner, hostdev::MosquittoSession& session) : inner_(inner), session_(session) {}
  void run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress, tinyota::UpdateResult& result) {
    session_.setStreaming(true);
    inner_.run(request, progress, result);
    session_.setStreaming(false);
  }

 private:
  tinyota::Updater& inner_;
  hostdev::MosquittoSession& session_;
};

struct RunningImage {
  std::string version;
  std::string source;
  uint32_t size;
  char md5[33];
};

// What the "bootloader" starts: the flashed image if there is one.
RunningImage boot(const hostdev::StateDir& dir, const hostdev::Options& options, hostdev::Logger& log) {
  RunningImage image;
  std::vector<uint8_t> bytes;
  hostdev::Md5 md5;
  if (hostdev::readWholeFile(dir.firmwarePath(), bytes)) {
    char version[tinyota::kMaxVersionLen + 1];
    if (tinyota::findFirmwareVersion(bytes.data(), bytes.size(), version, sizeof version)) {
      image.version = version;
    } else {
      // A real device would now run firmware that does not speak TinyOTA at all.
      log.printf("boot: %s carries no TINYOTA_FW_VERSION= marker; reporting version \"unknown\"",
                 dir.firmwarePath().c_str());
      image.version = "unknown";
    }
    image.source = dir.firmwarePath();
    image.size = static_cast<uint32_t>(bytes.size());
    md5.update(bytes.data(), bytes.size());
  } else {
    image.version = options.version;
    image.source = "--version (nothing flashed yet)";
    image.size = 262144;  // a plausible factory sketch
    md5.update(options.version.data(), options.version.size());
  }
  md5.finishHex(image.md5);
  return image;
}

void deliver(void* agent, const char* topic, const uint8_t* payload, size_t len) {
  static_cast<tinyota::Agent*>(agent)->onMessage(topic, payload, len);
}

void sleepMs(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, 0);
}

}  // namespace

int main(int argc, char** argv) {
  hostdev::Options options;
  std::string error;
  if (!hostdev::parseOptions(argc, argv, options, error, getenv("TINYOTA_DEVICE_PASSWORD"))) {
    fprintf(stderr, "tinyota-device: %s\n", error.c_str());
    return 2;
  }
  if (options.passwordInArgv) {
    fputs("tinyota-device: note: --password shows in `ps` to every user of this machine; "
          "prefer --password-file FILE or TINYOTA_DEVICE_PASSWORD\n", stderr);
  }
  if (options.help) {
    fputs(hostdev::usageText(), stdout);
    return 0;
  }
  if (!hostdev::makeDirectories(options.stateDir)) {
    fprintf(stderr, "tinyota-device: cannot create --state-dir %s: %s\n", options.stateDir.c_str(), strerror(errno));
    return 1;
  }
  installSignalHandlers();
  curl_global_init(CURL_GLOBAL_DEFAULT);

  const hostdev::StateDir dir(options.stateDir);
  hostdev::Logger log;
  log.begin(options.id, dir.logPath());
  const RunningImage image = boot(dir, options, log);

  hostdev::DeviceFacts facts;
  memset(&facts, 0, sizeof facts);
  facts.platform = options.platform;
  hostdev::deriveIdentity(options.id.c_str(), facts);
  facts.freeSpace = options.freeSpace;
  facts.sketchSize = image.size;
  tinyota::copyText(facts.sketchMd5, sizeof facts.sketchMd5, image.md5);
  facts.chipSize = 4u * 1024 * 1024;
  log.printf("boot: pid %d running %s from %s; %s, free space %lu, MAC %s", static_cast<int>(getpid()),
             image.version.c_str(), image.source.c_str(), hostdev::platformName(options.platform),
             static_cast<unsigned long>(options.freeSpace), facts.staMac);

  hostdev::MosquittoSession::Settings mqttSettings;
  mqttSettings.host = options.brokerHost;
  mqttSettings.port = options.brokerPort;
  mqttSettings.clientId = options.id;
  mqttSettings.user = options.mqttUser;
  mqttSettings.password = options.password;
  hostdev::MosquittoSession session(mqttSettings, log);

  hostdev::FileAttemptStore store(dir.attemptPath());
  hostdev::CurlUpdater http(facts, dir, log, &g_stop);
  StreamingUpdater updater(http, session);
  MonotonicClock clock;

  P256Verifier verifier;
  if (!options.publicKey.empty() && !verifier.begin(options.publicKey.c_str())) {
    log.printf("config error: --public-key is not a point on P-256");
    return 2;
  }
  const tinyota::AgentConfig config = {options.prefix.c_str(),
                                       options.id.c_str(),
                                       options.id.c_str(),  // HTTP Basic user: the device id
                                       options.password.c_str(),
                                       image.version.c_str(),
                                       hostdev::platformName(options.platform),
                                       options.freeSpace,
                                       5,
                                       options.progressIntervalMs,
                                       options.serverUrl.c_str(),
                                       options.publicKey.empty() ? 0 : &verifier};
  tinyota::Agent agent(config, session, updater, store, clock, &log);
  if (!agent.begin()) return 2;
  if (!session.begin(agent.availabilityTopic(), agent.updateTopic(), deliver, &agent)) return 1;

  uint32_t lastAttempt = 0;
  bool attempted = false;
  while (!g_stop) {
    if (!session.connected()) {
      if (!attempted || clock.millis() - lastAttempt >= 2000) {
        attempted = true;
        lastAttempt = clock.millis();
        if (session.connect()) agent.onConnected();
      } else {
        sleepMs(100);
      }
    } else {
      session.loop(100);
    }
    if (agent.poll() == tinyota::kAgentReboot && !g_stop) {
      log.printf("reboot: exec %s into the flashed image", "/proc/self/exe");
      session.closeForReboot();
      session.abandon();  // closes the socket; nothing leaks into the new image
      curl_global_cleanup();
      execv("/proc/self/exe", argv);
      log.printf("reboot failed: execv: %s", strerror(errno));
      return 1;
    }
  }
  log.printf("stopping on signal; no DISCONNECT, so the broker publishes the last will");
  session.stopPublishing();
  session.abandon();
  curl_global_cleanup();
  return 0;
}
