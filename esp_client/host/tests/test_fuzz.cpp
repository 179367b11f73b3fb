// Randomised tests of everything that reads untrusted bytes. Deterministic seeds, so a
// failure reproduces; run under AddressSanitizer and UBSan by the Makefile.
#include "../../src/tinyota/agent.h"
#include "../../src/tinyota/announcement.h"
#include "../../src/tinyota/firmware_marker.h"
#include "../../src/tinyota/json_reader.h"
#include "../../src/tinyota/semver.h"
#include "../../src/tinyota/status.h"
#include "../../src/tinyota/text.h"
#include "fakes.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

// xorshift32: tiny, deterministic, good enough to shake a parser.
struct Random {
  explicit Random(uint32_t seed) : state(seed ? seed : 1) {}
  uint32_t next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
  uint32_t below(uint32_t n) { return next() % n; }
  uint32_t state;
};

const char* kValid =
    "{\"id\":\"2024-05-01T10:00:00Z-7\",\"version\":\"1.4.0-rc.1+b.7\",\"url\":"
    "\"https://ota.lan/fw/kitchen/1.4.0.bin\",\"size\":482144,\"md5\":\"0123456789abcdef0123456789abcdef\","
    "\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"x\":[{\"y\":null}]}";

bool terminatedWithin(const char* s, size_t cap) { return memchr(s, '\0', cap) != 0; }

// Invariants that must hold whatever the input was.
void checkInvariants(AnnouncementStatus status, const Announcement& a, const char* input, size_t len) {
  const bool terminated = terminatedWithin(a.id, sizeof a.id) && terminatedWithin(a.version, sizeof a.version) &&
                          terminatedWithin(a.url, sizeof a.url) && terminatedWithin(a.md5, sizeof a.md5) &&
                          terminatedWithin(a.sha256, sizeof a.sha256);
  if (!terminated) tt::reportFailure(__FILE__, __LINE__, "unterminated field");
  if (status == kAnnouncementOk) {
    const bool ok = a.id[0] != '\0' && isSemver(a.version) &&
                    (startsWith(a.url, "http://") || startsWith(a.url, "https://")) &&
                    (a.md5[0] == '\0' || strlen(a.md5) == 32) && (a.sha256[0] == '\0' || strlen(a.sha256) == 64);
    if (!ok) tt::reportFailure(__FILE__, __LINE__, "accepted announcement breaks an invariant");
  }
  if ((status == kAnnouncementOk || isRefusal(status)) && a.id[0] == '\0') {
    tt::reportFailure(__FILE__, __LINE__, "usable status without an id");
  }
  (void)input;
  (void)len;
}

}  // namespace

TEST(fuzz_random_bytes_never_break_the_parser) {
  Random rnd(0xC0FFEE);
  char buf[kMaxPayloadLen + 64];
  for (int i = 0; i < 100000; ++i) {
    const size_t len = rnd.below(sizeof buf);
    for (size_t j = 0; j < len; ++j) buf[j] = static_cast<char>(rnd.next());
    Announcement a;
    const AnnouncementStatus s = parseAnnouncement(buf, len, a);
    checkInvariants(s, a, buf, len);
  }
}

TEST(fuzz_json_token_soup) {
  static const char* tokens[] = {"{", "}", "[", "]", ",", ":", "\"id\"", "\"version\"", "\"url\"",
                                 "\"size\"", "\"md5\"", "\"1.2.3\"", "\"http://h/f\"", "\"x\"",
                                 "0", "-1", "1.5e3", "true", "false", "null", " ", "\\", "\"\\u00",
                                 "\"\\ud800\"", "\"", "4294967296", "\"a\\\"b\""};
  const size_t n = sizeof tokens / sizeof tokens[0];
  Random rnd(42);
  char buf[kMaxPayloadLen + 1];
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    TextBuilder b(buf, sizeof buf);
    const uint32_t count = 1 + rnd.below(24);
    for (uint32_t k = 0; k < count; ++k) b.add(tokens[rnd.below(n)]);
    Announcement a;
    const AnnouncementStatus s = parseAnnouncement(buf, b.length(), a);
    checkInvariants(s, a, buf, b.length());
    if (s == kAnnouncementOk) ++accepted;
  }
  (void)accepted;  // rare by construction; the point is surviving the soup
}

TEST(fuzz_mutations_of_a_valid_announcement) {
  Random rnd(7);
  const size_t validLen = strlen(kValid);
  Announcement a;
  CHECK(parseAnnouncement(kValid, validLen, a) == kAnnouncementOk);
  char buf[kMaxPayloadLen + 16];
  for (int i = 0; i < 200000; ++i) {
    size_t len = validLen;
    memcpy(buf, kValid, len);
    const uint32_t edits = 1 + rnd.below(4);
    for (uint32_t e = 0; e < edits; ++e) {
      const uint32_t kind = rnd.below(4);
      const size_t at = len ? rnd.below(static_cast<uint32_t>(len)) : 0;
      if (kind == 0 && len) {
        buf[at] = static_cast<char>(buf[at] ^ (1u << rnd.below(8)));  // bit flip
      } else if (kind == 1 && len) {
        len = at;  // truncation
      } else if (kind == 2 && len + 1 < sizeof buf) {
        memmove(buf + at + 1, buf + at, len - at);  // insertion
        static const char kInserts[] = "{}[]\",:\\u0 \x01\xff";
        buf[at] = kInserts[rnd.below(sizeof kInserts - 1)];
        ++len;
      } else if (len) {
        memmove(buf + at, buf + at + 1, len - at - 1);  // deletion
        --len;
      }
    }
    const AnnouncementStatus s = parseAnnouncement(buf, len, a);
    checkInvariants(s, a, buf, len);
  }
}

TEST(fuzz_round_trip_of_escaped_values) {
  // Random ids/urls, written with random escaping, must parse back to the same text.
  Random rnd(99);
  static const char kIdChars[] = "abcXYZ019-_.:/\"\\~!";
  for (int i = 0; i < 20000; ++i) {
    char id[kMaxAnnouncementIdLen + 1];
    const uint32_t idLen = 1 + rnd.below(kMaxAnnouncementIdLen);
    for (uint32_t k = 0; k < idLen; ++k) id[k] = kIdChars[rnd.below(sizeof kIdChars - 1)];
    id[idLen] = '\0';

    char json[kMaxPayloadLen + 1];
    TextBuilder b(json, sizeof json);
    b.add("{\"id\":\"");
    for (uint32_t k = 0; k < idLen; ++k) {
      const char c = id[k];
      const uint32_t style = rnd.below(3);
      if (c == '"' || c == '\\' || style == 0) {
        char esc[7] = {'\\', 'u', '0', '0', "0123456789abcdef"[(c >> 4) & 0xF], "0123456789abcdef"[c & 0xF], 0};
        b.add(esc);
      } else if (c == '/' && style == 1) {
        b.add("\\/");
      } else {
        b.addChar(c);
      }
    }
    b.add("\",\"version\":\"3.2.1\",\"url\":\"http://h/f.bin\"}");
    CHECK(b.ok());
    Announcement a;
    const AnnouncementStatus s = parseAnnouncement(json, b.length(), a);
    if (s != kAnnouncementOk || strcmp(a.id, id) != 0) {
      tt::reportStrings(__FILE__, __LINE__, json, a.id, id);
      break;
    }
  }
}

TEST(fuzz_status_payload_is_always_valid_json) {
  Random rnd(1234);
  char error[kMaxErrorLen + 1];
  char json[kMaxStatusLen + 1];
  char back[kMaxStatusLen + 1];
  for (int i = 0; i < 50000; ++i) {
    const uint32_t len = rnd.below(sizeof error);
    for (uint32_t k = 0; k < len; ++k) error[k] = static_cast<char>(1 + rnd.below(255));
    error[len] = '\0';
    const StatusFields f = {static_cast<State>(rnd.below(5)), "1.0.0", static_cast<int>(rnd.below(101)) - 1,
                            "id-1", error, "esp8266", rnd.next()};
    const size_t n = buildStatusJson(f, json, sizeof json);
    CHECK(n > 0 && n == strlen(json));
    JsonObjectReader reader(json, n);
    JsonMember m;
    bool sawError = false;
    while (reader.next(m)) {
      if (jsonKeyEquals(m.key, "error")) {
        sawError = true;
        CHECK(jsonDecodeString(m.value, back, sizeof back));
      }
    }
    if (!reader.complete()) {
      tt::reportStrings(__FILE__, __LINE__, "status is not valid JSON", json, "");
      break;
    }
    CHECK(sawError == (len > 0));
  }
}

TEST(fuzz_semver_and_marker_scanner_survive_garbage) {
  Random rnd(5);
  char text[48];
  unsigned char image[512];
  for (int i = 0; i < 100000; ++i) {
    const uint32_t len = rnd.below(sizeof text);
    for (uint32_t k = 0; k < len; ++k) text[k] = "0123456789.-+aZ\x01\xff"[rnd.below(17)];
    text[len] = '\0';
    int order;
    const bool valid = isSemver(text);
    CHECK(compareSemver(text, "1.0.0", order) == valid);
    if (valid) CHECK(compareSemver(text, text, order) && order == 0);

    for (size_t k = 0; k < sizeof image; ++k) image[k] = static_cast<unsigned char>(rnd.next());
    if (rnd.below(2)) memcpy(image + rnd.below(400), "TINYOTA_FW_VERSION=", 19);
    char version[kMaxVersionLen + 1];
    if (findFirmwareVersion(image, rnd.below(sizeof image + 1), version, sizeof version)) {
      CHECK(strlen(version) >= 1 && strlen(version) <= kMaxVersionLen);
    }
  }
}

TEST(fuzz_agent_with_random_messages) {
  // The whole state machine under a storm of random payloads: no crash, no heap, and it
  // never runs the updater twice for one id.
  fakes::Mqtt mqtt;
  fakes::Clock clock;
  fakes::Store store;
  fakes::Updater updater;
  updater.clock = &clock;
  updater.outcome = kUpdateFailed;
  const AgentConfig config = {"tinyota", "dev", "dev", "pw", "1.0.0", "esp32", 1000u, 5, 1000};
  Agent agent(config, mqtt, updater, store, clock, 0);
  CHECK(agent.begin());
  Random rnd(2024);
  const unsigned long before = tt::allocationCount();
  char buf[256];
  char lastRunId[80] = "";
  for (int i = 0; i < 20000; ++i) {
    mqtt.clear();
    const uint32_t pick = rnd.below(4);
    size_t len;
    if (pick == 0) {
      len = rnd.below(sizeof buf);
      for (size_t k = 0; k < len; ++k) buf[k] = static_cast<char>(rnd.next());
    } else {
      TextBuilder b(buf, sizeof buf);
      b.add("{\"id\":\"i").addUint(rnd.below(50)).add("\",\"version\":\"1.").addUint(rnd.below(3));
      b.add(".0\",\"url\":\"").add(pick == 1 ? "ftp" : "http").add("://h/f\"}");
      len = b.length();
    }
    agent.onMessage("tinyota/dev/update", reinterpret_cast<const uint8_t*>(buf), len);
    const int runsBefore = updater.runs;
    agent.poll();
    if (updater.runs != runsBefore) {
      if (strcmp(store.id, lastRunId) == 0) tt::reportFailure(__FILE__, __LINE__, "same id ran twice in a row");
      copyText(lastRunId, sizeof lastRunId, store.id);
    }
  }
  CHECK_EQ(tt::allocationCount() - before, 0);
  CHECK(updater.runs > 0);
}
