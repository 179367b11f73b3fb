// Randomised tests of everything that reads untrusted bytes. Deterministic seeds, so a
// failure reproduces; run under AddressSanitizer and UBSan by the Makefile.
#include "../../src/crypto/p256_verifier.h"
#include "../../src/tinyota/agent.h"
#include "../../src/tinyota/announcement.h"
#include "../../src/tinyota/firmware_marker.h"
#include "../../src/tinyota/json_reader.h"
#include "../../src/tinyota/semver.h"
#include "../../src/tinyota/server_url.h"
#include "../../src/tinyota/signature.h"
#include "../../src/tinyota/status.h"
#include "../../src/tinyota/text.h"
#include "fakes.h"
#include "signed_vectors.h"
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
  const AgentConfig config = {"tinyota", "dev", "dev", "pw", "1.0.0", "esp32", 1000u, 5, 1000, "http://h", 0};
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

TEST(fuzz_signature_key_and_url_text) {
  // The text forms a device decodes before any crypto runs: random and mutated signatures,
  // public keys and URLs. Whatever decodes must re-validate; nothing may overrun.
  Random rnd(0x5167);
  static const char kAlphabet[] = "ABCxyz019+/=-_ %\\:@[].?#\x01\xff";
  char text[200];
  uint8_t sig[kSignatureLen];
  uint8_t key[kPublicKeyLen];
  const unsigned long before = tt::allocationCount();
  for (int i = 0; i < 100000; ++i) {
    const uint32_t mode = rnd.below(3);
    size_t len;
    if (mode == 0) {
      len = rnd.below(sizeof text - 1);
      for (size_t k = 0; k < len; ++k) text[k] = kAlphabet[rnd.below(sizeof kAlphabet - 1)];
    } else {
      const char* seed = mode == 1 ? kSig : kPublicKey;
      len = strlen(seed);
      memcpy(text, seed, len);
      const uint32_t edits = 1 + rnd.below(3);
      for (uint32_t e = 0; e < edits && len > 0; ++e) {
        const size_t at = rnd.below(static_cast<uint32_t>(len));
        if (rnd.below(4) == 0) {
          len = at;
        } else {
          text[at] = kAlphabet[rnd.below(sizeof kAlphabet - 1)];
        }
      }
    }
    text[len] = '\0';
    if (decodeSignature(text, sig)) CHECK(strlen(text) == kSignatureBase64Len && text[86] == '=');
    if (parsePublicKeyHex(text, key)) CHECK(strlen(text) == 130 && key[0] == 0x04);
    UrlParts parts;
    if (parseHttpUrl(text, parts)) {
      CHECK(parts.hostLen > 0 && parts.port > 0 && parts.pathLen > 0 && parts.path[0] == '/');
    }
    isUnderServerBase(text, "http://ota.lan:8000/base");
  }
  CHECK_EQ(tt::allocationCount() - before, 0);
}

TEST(fuzz_verifier_with_random_signatures_and_keys) {
  // The crypto library gets garbage too: random r || s, random keys. Fewer rounds: each one
  // is a real ECDSA verification.
  Random rnd(0xEC);
  P256Verifier verifier;
  CHECK(verifier.begin(kPublicKey));
  uint8_t sig[kSignatureLen];
  const uint8_t* message = reinterpret_cast<const uint8_t*>(kManifest);
  const size_t len = strlen(kManifest);
  CHECK(decodeSignature(kSig, sig));
  CHECK(verifier.verify(message, len, sig) == kSignatureValid);
  for (int i = 0; i < 300; ++i) {
    uint8_t bad[kSignatureLen];
    memcpy(bad, sig, sizeof bad);
    const uint32_t mode = rnd.below(3);
    if (mode == 0) {
      for (size_t k = 0; k < sizeof bad; ++k) bad[k] = static_cast<uint8_t>(rnd.next());
    } else if (mode == 1) {
      bad[rnd.below(sizeof bad)] ^= static_cast<uint8_t>(1u << rnd.below(8));
    } else {
      memset(bad + (rnd.below(2) ? 0 : 32), rnd.below(2) ? 0x00 : 0xFF, 32);  // r or s = 0 or >= n
    }
    CHECK(verifier.verify(message, len, bad) == kSignatureInvalid);
  }
  for (int i = 0; i < 100; ++i) {
    char hex[131];
    memcpy(hex, kPublicKey, sizeof hex);
    hex[2 + rnd.below(128)] = "0123456789abcdef"[rnd.below(16)];
    P256Verifier other;
    if (other.begin(hex) && strcmp(hex, kPublicKey) != 0) CHECK(other.verify(message, len, sig) == kSignatureInvalid);
  }
}

TEST(fuzz_agent_with_mutated_signed_announcements) {
  // A device with a key gets the signed announcement with random edits: it may run the
  // updater only for a message whose signed fields are exactly the original ones.
  P256Verifier verifier;
  CHECK(verifier.begin(kPublicKey));
  fakes::Mqtt mqtt;
  fakes::Clock clock;
  fakes::Store store;
  fakes::Updater updater;
  updater.outcome = kUpdateFailed;
  const AgentConfig config = {"tinyota", "kitchen", "kitchen", "pw", "1.3.0", "esp8266", 1000u, 5, 1000,
                              "http://ota.lan:8000", &verifier};
  Announcement original;
  CHECK(parseAnnouncement(kSigned, strlen(kSigned), original) == kAnnouncementOk);
  Random rnd(11);
  const unsigned long before = tt::allocationCount();
  char buf[kMaxPayloadLen + 16];
  int runs = 0;
  for (int i = 0; i < 3000; ++i) {
    size_t len = strlen(kSigned);
    memcpy(buf, kSigned, len);
    const size_t at = rnd.below(static_cast<uint32_t>(len));
    if (rnd.below(3) == 0) {
      memmove(buf + at, buf + at + 1, len - at - 1);
      --len;
    } else {
      buf[at] = static_cast<char>(buf[at] ^ (1u << rnd.below(7)));
    }
    // A fresh device each round (no heap: it lives on the stack), so "already attempted"
    // never hides an acceptance.
    store.id[0] = '\0';
    mqtt.clear();
    Agent agent(config, mqtt, updater, store, clock, 0);
    if (!agent.begin()) tt::reportFailure(__FILE__, __LINE__, "begin");
    agent.onMessage("tinyota/kitchen/update", reinterpret_cast<const uint8_t*>(buf), len);
    const int runsBefore = updater.runs;
    agent.poll();
    if (updater.runs != runsBefore) {
      ++runs;
      Announcement got;
      parseAnnouncement(buf, len, got);
      const bool same = strcmp(got.id, original.id) == 0 && strcmp(got.version, original.version) == 0 &&
                        strcmp(got.url, original.url) == 0 && got.size == original.size &&
                        strcmp(got.md5, original.md5) == 0 && strcmp(got.sha256, original.sha256) == 0 &&
                        strcmp(got.image, original.image) == 0;
      if (!same) tt::reportStrings(__FILE__, __LINE__, "acted on a changed signed announcement", buf, kSigned);
    }
  }
  CHECK_EQ(tt::allocationCount() - before, 0);
  // Some edits leave the signed fields alone (a flipped bit in "sig"'s key name, say, that
  // still decodes to an ignored key); most must have been refused.
  CHECK(runs < 300);
}
