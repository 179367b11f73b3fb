// The update state machine, driven through its ports exactly as the sketch drives it.
#include "../../src/tinyota/agent.h"
#include "fakes.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

const char* kUpdateTopic = "tinyota/kitchen/update";
const char* kStatusTopic = "tinyota/kitchen/status";

AgentConfig makeConfig(const char* running) {
  AgentConfig c = {"tinyota", "kitchen", "kitchen", "s3cret", running, "esp8266", 1044480u, 5, 1000,
                   "http://ota.lan:8000", 0};
  return c;
}

struct Rig {
  explicit Rig(const char* running = "1.3.0")
      : config(makeConfig(running)), agent(config, mqtt, updater, store, clock, &log) {
    updater.clock = &clock;
  }
  bool begin() { return agent.begin(); }
  void send(const char* payload, const char* topic = kUpdateTopic) {
    agent.onMessage(topic, reinterpret_cast<const uint8_t*>(payload), strlen(payload));
  }
  // A field of the n-th published status ("" when absent).
  const char* field(int n, const char* key) {
    return fakes::member(mqtt.messages[n].payload, key, scratch, sizeof scratch);
  }

  fakes::Mqtt mqtt;
  fakes::Clock clock;
  fakes::Store store;
  fakes::Updater updater;
  fakes::Log log;
  AgentConfig config;
  Agent agent;
  char scratch[256];
};

const char* announcement(const char* id, const char* version) {
  static char text[256];
  TextBuilder b(text, sizeof text);
  b.add("{\"id\":\"").add(id).add("\",\"version\":\"").add(version);
  b.add("\",\"url\":\"http://ota.lan:8000/fw/kitchen/").add(version).add(".bin\",\"size\":1000}");
  return text;
}

}  // namespace

TEST(agent_begin_builds_topics_and_stays_quiet) {
  Rig rig;
  CHECK(rig.begin());
  CHECK_STR(rig.agent.updateTopic(), "tinyota/kitchen/update");
  CHECK_STR(rig.agent.statusTopic(), "tinyota/kitchen/status");
  CHECK_STR(rig.agent.availabilityTopic(), "tinyota/kitchen/availability");
  CHECK_EQ(rig.mqtt.count, 0);
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 0);
}

TEST(agent_reports_idle_with_its_version_on_connect) {
  Rig rig;
  CHECK(rig.begin());
  rig.agent.onConnected();
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK_STR(rig.mqtt.last().topic, kStatusTopic);
  CHECK(rig.mqtt.last().retained);
  CHECK_STR(rig.mqtt.last().payload,
            "{\"state\":\"idle\",\"version\":\"1.3.0\",\"platform\":\"esp8266\",\"free_space\":1044480}");
}

TEST(agent_successful_update_publishes_progress_then_reboots) {
  Rig rig;
  CHECK(rig.begin());
  rig.send(announcement("a1", "1.4.0"));
  CHECK(rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.mqtt.count, 0);  // onMessage only queues; the work happens in poll()
  CHECK(rig.agent.poll() == kAgentReboot);

  CHECK_EQ(rig.updater.runs, 1);
  CHECK_STR(rig.updater.url, "http://ota.lan:8000/fw/kitchen/1.4.0.bin");
  CHECK_STR(rig.updater.user, "kitchen");
  CHECK_STR(rig.updater.password, "s3cret");
  CHECK_STR(rig.updater.version, "1.3.0");
  CHECK_STR(rig.store.id, "a1");

  // 10 steps of 300 ms: published at 0 %, 40 % (first >= 1 s later), 80 %, then flashing.
  CHECK_EQ(rig.mqtt.count, 5);
  const char* states[] = {"downloading", "downloading", "downloading", "flashing", "rebooting"};
  const char* progress[] = {"0", "40", "80", "100", ""};
  for (int i = 0; i < 5 && i < rig.mqtt.count; ++i) {
    CHECK_STR(rig.mqtt.messages[i].topic, kStatusTopic);
    CHECK(rig.mqtt.messages[i].retained);
    CHECK_STR(rig.field(i, "state"), states[i]);
    CHECK_STR(rig.field(i, "progress"), progress[i]);
    CHECK_STR(rig.field(i, "id"), "a1");
    CHECK_STR(rig.field(i, "version"), "1.3.0");
    CHECK_STR(rig.field(i, "error"), "");
  }
  CHECK(rig.agent.state() == kStateRebooting);
}

TEST(agent_progress_step_and_interval_are_both_required) {
  Rig rig;
  rig.config.progressIntervalMs = 0;  // only the 5 % step counts
  Agent agent(rig.config, rig.mqtt, rig.updater, rig.store, rig.clock, 0);
  CHECK(agent.begin());
  rig.updater.steps = 100;
  agent.onMessage(kUpdateTopic, reinterpret_cast<const uint8_t*>(announcement("p", "2.0.0")),
                  strlen(announcement("p", "2.0.0")));
  CHECK(agent.poll() == kAgentReboot);
  // 0, 5, 10, ... 95 (20 messages), flashing, rebooting.
  CHECK_EQ(rig.mqtt.count, 22);
}

TEST(agent_http_304_means_already_on_that_version) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.outcome = kUpdateNoUpdate;
  rig.send(announcement("n1", "1.4.0"));
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_STR(rig.field(rig.mqtt.count - 1, "state"), "idle");
  CHECK_STR(rig.field(rig.mqtt.count - 1, "id"), "n1");
  CHECK(rig.agent.state() == kStateIdle);
}

TEST(agent_failure_is_reported_and_never_retried_even_after_reboot) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.outcome = kUpdateFailed;
  copyText(rig.updater.error, sizeof rig.updater.error, "Wrong HTTP Code");
  rig.send(announcement("f1", "1.4.0"));
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_EQ(rig.mqtt.count, 2);  // downloading 0, failed
  CHECK_STR(rig.field(1, "state"), "failed");
  CHECK_STR(rig.field(1, "error"), "Wrong HTTP Code");
  CHECK_STR(rig.field(1, "id"), "f1");

  rig.send(announcement("f1", "1.4.0"));  // redelivered (reconnect, retained)
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 1);
  CHECK_EQ(rig.mqtt.count, 2);

  // "Reboot": a new agent on the same store.
  Agent rebooted(rig.config, rig.mqtt, rig.updater, rig.store, rig.clock, 0);
  CHECK(rebooted.begin());
  rebooted.onMessage(kUpdateTopic, reinterpret_cast<const uint8_t*>(announcement("f1", "1.4.0")),
                     strlen(announcement("f1", "1.4.0")));
  CHECK(rebooted.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 1);

  // A new id for the same version is a new attempt.
  rebooted.onMessage(kUpdateTopic, reinterpret_cast<const uint8_t*>(announcement("f2", "1.4.0")),
                     strlen(announcement("f2", "1.4.0")));
  CHECK(rebooted.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 2);
}

TEST(agent_failure_without_error_text_still_says_something) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.outcome = kUpdateFailed;
  rig.send(announcement("e", "1.4.0"));
  rig.agent.poll();
  CHECK_STR(rig.field(rig.mqtt.count - 1, "error"), "update failed");
}

TEST(agent_attempt_is_stored_before_the_download_starts) {
  // Power cut mid-download: the store already holds the id, so the image is not retried.
  Rig rig;
  CHECK(rig.begin());
  rig.updater.steps = -3;
  rig.updater.outcome = kUpdateFailed;
  rig.send(announcement("pc", "1.4.0"));
  CHECK_STR(rig.store.id, "");
  rig.agent.poll();
  CHECK_STR(rig.store.id, "pc");
  CHECK_EQ(rig.store.saves, 1);
}

TEST(agent_answers_an_announcement_of_the_running_version_once) {
  Rig rig("1.4.0");
  CHECK(rig.begin());
  rig.send(announcement("s1", "1.4.0"));
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK_STR(rig.field(0, "state"), "idle");
  CHECK_STR(rig.field(0, "id"), "s1");
  rig.send(announcement("s1", "1.4.0"));
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 0);
}

TEST(agent_rollback_and_rebuild_are_ordinary_announcements) {
  Rig rig("1.4.0");
  CHECK(rig.begin());
  rig.send(announcement("r1", "1.3.0"));
  CHECK(rig.agent.hasQueuedUpdate());
  CHECK(strstr(rig.log.last, "rollback") != 0);
  rig.send(announcement("r2", "1.4.0+build.2"));
  CHECK(rig.agent.hasQueuedUpdate());
  CHECK(strstr(rig.log.last, "different build") != 0);
  CHECK(rig.agent.poll() == kAgentReboot);
  CHECK(strstr(rig.updater.url, "1.4.0+build.2") != 0);
}

TEST(agent_ignores_foreign_topics) {
  Rig rig;
  CHECK(rig.begin());
  rig.send(announcement("x", "1.4.0"), "tinyota/other/update");
  rig.send(announcement("x", "1.4.0"), "tinyota/kitchen/update/extra");
  rig.send(announcement("x", "1.4.0"), "tinyota/kitchen/status");
  rig.agent.onMessage(0, reinterpret_cast<const uint8_t*>("{}"), 2);
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.mqtt.count, 0);
  CHECK(strstr(rig.log.last, "foreign topic") != 0);
}

TEST(agent_ignores_malformed_and_oversized_payloads_silently) {
  Rig rig;
  CHECK(rig.begin());
  const char* bad[] = {"{", "null", "{\"id\":\"a\"}", "{\"id\":5,\"version\":\"1.4.0\",\"url\":\"http://h/f\"}",
                       "{\"id\":\"\",\"version\":\"1.4.0\",\"url\":\"http://h/f\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) rig.send(bad[i]);
  char big[kMaxPayloadLen + 10];
  memset(big, ' ', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  rig.send(big);
  CHECK(strstr(rig.log.last, "too large") != 0);
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.mqtt.count, 0);
  CHECK_STR(rig.store.id, "");
}

TEST(agent_empty_payload_clears_a_queued_announcement) {
  Rig rig;
  CHECK(rig.begin());
  rig.send(announcement("c1", "1.4.0"));
  CHECK(rig.agent.hasQueuedUpdate());
  rig.agent.onMessage(kUpdateTopic, reinterpret_cast<const uint8_t*>(""), 0);
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK(rig.agent.poll() == kAgentContinue);
  CHECK_EQ(rig.updater.runs, 0);
  CHECK_EQ(rig.mqtt.count, 0);
}

TEST(agent_newest_announcement_wins_and_malformed_cancels) {
  Rig rig;
  CHECK(rig.begin());
  rig.send(announcement("a", "1.4.0"));
  rig.send(announcement("b", "1.5.0"));
  CHECK(rig.agent.poll() == kAgentReboot);
  CHECK_EQ(rig.updater.runs, 1);
  CHECK(strstr(rig.updater.url, "1.5.0") != 0);

  Rig other;
  CHECK(other.begin());
  other.send(announcement("a", "1.4.0"));
  other.send("{garbage");
  CHECK(!other.agent.hasQueuedUpdate());
}

TEST(agent_refuses_bad_values_with_a_failed_status_once) {
  Rig rig;
  CHECK(rig.begin());
  rig.send("{\"id\":\"bad\",\"version\":\"1.4.0\",\"url\":\"ftp://h/f.bin\"}");
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK_STR(rig.field(0, "state"), "failed");
  CHECK_STR(rig.field(0, "id"), "bad");
  CHECK(strstr(rig.field(0, "error"), "http:// or https://") != 0);
  CHECK_STR(rig.store.id, "");  // nothing was attempted
  rig.send("{\"id\":\"bad\",\"version\":\"1.4.0\",\"url\":\"ftp://h/f.bin\"}");
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK_EQ(rig.updater.runs, 0);
}

TEST(agent_a_refusal_does_not_erase_the_record_of_a_failed_download) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.outcome = kUpdateFailed;
  rig.send(announcement("real", "1.4.0"));
  rig.agent.poll();
  rig.send("{\"id\":\"bad\",\"version\":\"1.5.0\",\"url\":\"ftp://h/f.bin\"}");
  rig.send(announcement("real", "1.4.0"));
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.updater.runs, 1);
  CHECK_STR(rig.store.id, "real");
}

TEST(agent_republishes_its_state_on_reconnect) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.outcome = kUpdateFailed;
  copyText(rig.updater.error, sizeof rig.updater.error, "Forbidden (403)");
  rig.mqtt.online = false;
  rig.send(announcement("o1", "1.4.0"));
  rig.agent.poll();
  CHECK_EQ(rig.mqtt.count, 0);
  CHECK(strstr(rig.log.last, "not delivered") != 0);
  rig.mqtt.online = true;
  rig.agent.onConnected();
  CHECK_EQ(rig.mqtt.count, 1);
  CHECK_STR(rig.field(0, "state"), "failed");
  CHECK_STR(rig.field(0, "error"), "Forbidden (403)");
}

TEST(agent_ignores_messages_delivered_during_an_update) {
  Rig rig;
  CHECK(rig.begin());
  rig.updater.poke = &rig.agent;
  rig.updater.pokeTopic = kUpdateTopic;
  rig.updater.pokePayload = "{\"id\":\"late\",\"version\":\"9.9.9\",\"url\":\"http://h/f\"}";
  rig.send(announcement("first", "1.4.0"));
  CHECK(rig.agent.poll() == kAgentReboot);
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_STR(rig.store.id, "first");
}

TEST(agent_survives_a_broken_store) {
  Rig rig;
  rig.store.failLoad = true;
  rig.store.failSave = true;
  CHECK(rig.begin());
  rig.send(announcement("s", "1.4.0"));
  CHECK(rig.agent.poll() == kAgentReboot);
  // The in-memory guard still holds until the next reboot.
  rig.updater.outcome = kUpdateFailed;
  rig.send(announcement("s", "1.4.0"));
  CHECK(!rig.agent.hasQueuedUpdate());
}

TEST(agent_rejects_unusable_configuration) {
  const char* ids[] = {"", "server", "a/b", "a b"};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; ++i) {
    Rig rig;
    rig.config.deviceId = ids[i];
    Agent agent(rig.config, rig.mqtt, rig.updater, rig.store, rig.clock, &rig.log);
    CHECK(!agent.begin());
    agent.onMessage(kUpdateTopic, reinterpret_cast<const uint8_t*>(announcement("a", "2.0.0")),
                    strlen(announcement("a", "2.0.0")));
    CHECK(agent.poll() == kAgentContinue);
    CHECK_EQ(rig.updater.runs, 0);
  }
  Rig badPrefix;
  badPrefix.config.topicPrefix = "a/#";
  Agent a1(badPrefix.config, badPrefix.mqtt, badPrefix.updater, badPrefix.store, badPrefix.clock, 0);
  CHECK(!a1.begin());
  Rig badVersion;
  badVersion.config.runningVersion = "";
  Agent a2(badVersion.config, badVersion.mqtt, badVersion.updater, badVersion.store, badVersion.clock, 0);
  CHECK(!a2.begin());
}

TEST(agent_full_cycle_never_allocates) {
  Rig rig;
  const unsigned long before = tt::allocationCount();
  CHECK(rig.begin());
  rig.agent.onConnected();
  rig.send(announcement("m1", "1.4.0"));
  CHECK(rig.agent.poll() == kAgentReboot);
  rig.updater.outcome = kUpdateFailed;
  rig.send(announcement("m2", "1.5.0"));
  rig.agent.poll();
  CHECK_EQ(tt::allocationCount() - before, 0);
}
