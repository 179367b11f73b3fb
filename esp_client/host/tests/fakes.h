// In-memory ports for the Agent tests. Fixed storage only, so tests can also assert that
// a whole update cycle runs without heap allocations.
#ifndef TINYOTA_TEST_FAKES_H
#define TINYOTA_TEST_FAKES_H

#include <string.h>

#include "../../src/tinyota/agent.h"
#include "../../src/tinyota/json_reader.h"
#include "../../src/tinyota/text.h"

namespace fakes {

struct Message {
  char topic[160];
  char payload[600];
  bool retained;
};

class Mqtt : public tinyota::MqttPort {
 public:
  Mqtt() : count(0), online(true) {}
  bool publish(const char* topic, const char* payload, bool retained) {
    if (!online || count >= kMax) return false;
    tinyota::copyText(messages[count].topic, sizeof messages[count].topic, topic);
    tinyota::copyText(messages[count].payload, sizeof messages[count].payload, payload);
    messages[count].retained = retained;
    ++count;
    return true;
  }
  const Message& last() const { return messages[count - 1]; }
  void clear() { count = 0; }

  static const int kMax = 64;
  Message messages[kMax];
  int count;
  bool online;
};

class Clock : public tinyota::Clock {
 public:
  Clock() : now(1000) {}
  uint32_t millis() { return now; }
  uint32_t now;
};

class Store : public tinyota::AttemptStore {
 public:
  Store() : saves(0), failLoad(false), failSave(false) { id[0] = '\0'; }
  bool load(char* out, size_t cap) {
    if (failLoad) return false;
    return tinyota::copyText(out, cap, id);
  }
  bool save(const char* value) {
    ++saves;
    if (failSave) return false;
    return tinyota::copyText(id, sizeof id, value);
  }
  char id[80];
  int saves;
  bool failLoad;
  bool failSave;
};

// Plays back a scripted download: progress steps, then an outcome.
class Updater : public tinyota::Updater {
 public:
  Updater()
      : runs(0), outcome(tinyota::kUpdateOk), total(1000), steps(10), stepMs(300), clock(0), poke(0),
        pokeTopic(0), pokePayload(0) {
    error[0] = url[0] = user[0] = password[0] = version[0] = '\0';
  }
  void run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
           tinyota::UpdateResult& result) {
    ++runs;
    tinyota::copyText(url, sizeof url, request.url);
    tinyota::copyText(user, sizeof user, request.user);
    tinyota::copyText(password, sizeof password, request.password);
    tinyota::copyText(version, sizeof version, request.currentVersion);
    if (poke) {  // a message delivered while the update runs
      poke->onMessage(pokeTopic, reinterpret_cast<const uint8_t*>(pokePayload), strlen(pokePayload));
    }
    if (outcome == tinyota::kUpdateOk || steps < 0) {
      progress.onProgress(0, total);
      for (int i = 1; i <= (steps < 0 ? -steps : steps); ++i) {
        if (clock) clock->now += stepMs;
        progress.onProgress(total * static_cast<uint32_t>(i) / static_cast<uint32_t>(steps < 0 ? -steps : steps),
                            total);
      }
    }
    result.outcome = outcome;
    tinyota::copyText(result.error, sizeof result.error, error);
  }
  int runs;
  tinyota::UpdateOutcome outcome;
  char error[200];
  uint32_t total;
  int steps;  // negative: report progress even when the outcome is a failure
  uint32_t stepMs;
  Clock* clock;
  tinyota::Agent* poke;
  const char* pokeTopic;
  const char* pokePayload;
  char url[400];
  char user[64];
  char password[64];
  char version[40];
};

class Log : public tinyota::EventLog {
 public:
  Log() : count(0) { last[0] = '\0'; }
  void event(const char* line) {
    ++count;
    tinyota::copyText(last, sizeof last, line);
  }
  int count;
  char last[300];
};

// Extracts a member of a status payload as text ("" when absent); numbers stay raw.
inline const char* member(const char* json, const char* key, char* out, size_t cap) {
  out[0] = '\0';
  tinyota::JsonObjectReader reader(json, strlen(json));
  tinyota::JsonMember m;
  while (reader.next(m)) {
    if (!tinyota::jsonKeyEquals(m.key, key)) continue;
    if (m.type == tinyota::kJsonString) {
      tinyota::jsonDecodeString(m.value, out, cap);
    } else {
      tinyota::copyText(out, cap, m.value.data, m.value.len);
    }
  }
  return out;
}

}  // namespace fakes

#endif  // TINYOTA_TEST_FAKES_H
