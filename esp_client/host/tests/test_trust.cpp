// Trust: the server base URL check, the signature's text forms, the P-256 verifier on the
// real crypto library, and the Agent refusing what it cannot trust.
#include "../../src/crypto/p256_verifier.h"
#include "../../src/tinyota/agent.h"
#include "../../src/tinyota/server_url.h"
#include "../../src/tinyota/signature.h"
#include "fakes.h"
#include "signed_vectors.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

struct Rig {
  explicit Rig(const char* deviceId = "kitchen", SignatureVerifier* verifier = 0,
               const char* base = "http://ota.lan:8000")
      : agent(makeConfig(deviceId, verifier, base), mqtt, updater, store, clock, &log) {}
  static AgentConfig makeConfig(const char* id, SignatureVerifier* verifier, const char* base) {
    const AgentConfig c = {"tinyota", id, id, "s3cret", "1.3.0", "esp8266", 1044480u, 5, 1000, base, verifier};
    return c;
  }
  void send(const char* payload) {
    char topic[96];
    TextBuilder t(topic, sizeof topic);
    t.add(agent.updateTopic());
    agent.onMessage(topic, reinterpret_cast<const uint8_t*>(payload), strlen(payload));
  }
  const char* lastField(const char* key) {
    return fakes::member(mqtt.last().payload, key, scratch, sizeof scratch);
  }
  fakes::Mqtt mqtt;
  fakes::Clock clock;
  fakes::Store store;
  fakes::Updater updater;
  fakes::Log log;
  Agent agent;
  char scratch[256];
};

const char* withUrl(const char* url) {
  static char text[600];
  TextBuilder b(text, sizeof text);
  b.add("{\"id\":\"f1\",\"version\":\"9.9.9\",\"url\":\"").add(url).add("\",\"size\":10}");
  return text;
}

// kSigned with the byte at `at` replaced by `by`.
const char* changed(size_t at, char by) {
  static char text[700];
  copyText(text, sizeof text, kSigned);
  text[at] = by;
  return text;
}

}  // namespace

TEST(server_url_accepts_urls_under_the_base) {
  const char* base = "http://ota.lan:8000";
  CHECK(isUnderServerBase("http://ota.lan:8000/fw/kitchen/1.4.0.bin", base));
  CHECK(isUnderServerBase("http://OTA.lan:8000/fw/k/1.bin?x=1", base));  // hosts are case-insensitive
  CHECK(isUnderServerBase("http://ota.lan:8000", base));
  CHECK(isUnderServerBase("http://ota.lan/fw/k.bin", "http://ota.lan:80/"));  // default port
  CHECK(isUnderServerBase("https://ota.lan/fw/k.bin", "https://ota.lan:443"));
  CHECK(isUnderServerBase("http://h/ota/fw/k.bin", "http://h/ota"));
  CHECK(isUnderServerBase("http://h/ota/fw/k.bin", "http://h/ota/"));
  CHECK(isUnderServerBase("http://[fd00::1]:8000/fw/k.bin", "http://[fd00::1]:8000"));
  CHECK(isUnderServerBase("http://10.0.0.2:8000/fw/k.bin", "http://10.0.0.2:8000/"));
}

TEST(server_url_refuses_other_servers_and_tricks) {
  const char* base = "http://server:8000";
  CHECK(!isUnderServerBase("http://server.evil/fw/k.bin", base));          // longer host
  CHECK(!isUnderServerBase("http://server.evil:8000/fw/k.bin", base));
  CHECK(!isUnderServerBase("http://server:8000@evil/fw/k.bin", base));     // user info
  CHECK(!isUnderServerBase("http://evil/@server:8000/fw/k.bin", base));
  CHECK(!isUnderServerBase("http://server:8001/fw/k.bin", base));          // other port
  CHECK(!isUnderServerBase("http://server/fw/k.bin", base));               // port 80
  CHECK(!isUnderServerBase("https://server:8000/fw/k.bin", base));         // other scheme
  CHECK(!isUnderServerBase("http://server:08000x/fw/k.bin", base));
  CHECK(!isUnderServerBase("http://server:65536/fw/k.bin", "http://server:65536"));
  CHECK(!isUnderServerBase("http://serve/fw/k.bin", base));
  CHECK(!isUnderServerBase("http://server:8000\\@evil/fw", base));         // backslash
  CHECK(!isUnderServerBase("http://h/ota-evil/k.bin", "http://h/ota"));    // segment boundary
  CHECK(!isUnderServerBase("http://h/other/k.bin", "http://h/ota/"));
  CHECK(!isUnderServerBase("http://h/ota/../admin/k.bin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/%2e%2e/admin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota%2Fx", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/./k.bin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://[fd00::2]:8000/fw", "http://[fd00::1]:8000"));
  CHECK(!isUnderServerBase("http://h /fw", "http://h"));
  CHECK(!isUnderServerBase("", "http://h"));
  CHECK(!isUnderServerBase("http://h/fw", ""));
}

TEST(server_url_at_its_edges) {
  // The same rows as tests/test_trust_rules.py::test_the_url_check_at_its_edges: both devices agree.
  CHECK(isUnderServerBase("http://h/ota", "http://h/ota"));
  CHECK(isUnderServerBase("http://h/ota", "http://h/ota/"));
  CHECK(isUnderServerBase("http://h/ota/", "http://h/ota"));
  CHECK(isUnderServerBase("http://h", "http://h/"));
  CHECK(isUnderServerBase("http://h/", "http://h"));
  CHECK(isUnderServerBase("http://h/x", "http://h"));
  CHECK(isUnderServerBase("https://h/fw", "https://h"));
  CHECK(isUnderServerBase("https://h:443/fw", "https://h"));
  CHECK(!isUnderServerBase("http://h:443/fw", "http://h"));
  CHECK(isUnderServerBase("http://h:65535/fw", "http://h:65535"));
  CHECK(!isUnderServerBase("http://h:65536/fw", "http://h:65536"));
  CHECK(!isUnderServerBase("http://h:008000/fw", "http://h:8000"));
  CHECK(!isUnderServerBase("http://h:80a/fw", "http://h"));
  CHECK(!isUnderServerBase("http://h:/fw", "http://h"));
  CHECK(!isUnderServerBase("http://h:-1/fw", "http://h"));
  CHECK(isUnderServerBase("http://h:1/fw", "http://h:1"));
  CHECK(isUnderServerBase("http://[FD00::1]/fw", "http://[fd00::1]"));
  CHECK(isUnderServerBase("http://[fd00::1]/fw", "http://[fd00::1]:80"));
  CHECK(!isUnderServerBase("http://[fd00::1/fw", "http://[fd00::1]"));
  CHECK(!isUnderServerBase("http://[fd00::1]x/fw", "http://[fd00::1]"));
  CHECK(!isUnderServerBase("http://[fd00::1]:81/fw", "http://[fd00::1]"));
  CHECK(!isUnderServerBase("http://[fd00::g]/fw", "http://[fd00::g]"));
  CHECK(!isUnderServerBase("http://[]/fw", "http://[]"));
  CHECK(!isUnderServerBase("http://[fd00::1]:8000/fw", "http://[ad00::1]:8000"));
  CHECK(!isUnderServerBase("http://[v1.fe]/fw", "http://[v1.fe]"));
  CHECK(isUnderServerBase("http://my_ota-1.lan/fw", "http://MY_OTA-1.LAN"));
  CHECK(!isUnderServerBase("http://h%41/fw", "http://h%41"));
  CHECK(!isUnderServerBase("http:///fw", "http:///"));
  CHECK(!isUnderServerBase("http://h/ota/%2E%2E/admin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota%2fadmin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota%2Fadmin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/%5c../admin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/%5C../admin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/..", "http://h/ota"));
  CHECK(isUnderServerBase("http://h/ota/k.1.bin", "http://h/ota"));
  CHECK(isUnderServerBase("http://h/ota/...", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/k\\..\\..\\admin", "http://h/ota"));
  CHECK(!isUnderServerBase("http://h/ota/k.bin", "http://h/otaX"));
  CHECK(!isUnderServerBase("http://h/fw\t", "http://h"));
  CHECK(!isUnderServerBase("http://h/f\xc3\xbc", "http://h"));
  CHECK(!isUnderServerBase("ftp://h/fw", "ftp://h"));
  CHECK(!isUnderServerBase("Https://h/fw", "https://h"));
}

TEST(server_url_validates_the_base) {
  CHECK(isUsableServerBase("http://ota.lan:8000"));
  CHECK(isUsableServerBase("https://ota.example.com/tinyota/"));
  CHECK(!isUsableServerBase("ota.lan:8000"));
  CHECK(!isUsableServerBase("HTTP://ota.lan"));
  CHECK(!isUsableServerBase("http://user:pw@ota.lan"));
  CHECK(!isUsableServerBase("http://ota.lan/?a"));
  CHECK(!isUsableServerBase("http://ota.lan/#a"));
  CHECK(!isUsableServerBase("http://:8000"));
  CHECK(!isUsableServerBase("http://ota.lan:0"));
  CHECK(!isUsableServerBase(0));
}

TEST(signature_text_forms) {
  uint8_t sig[kSignatureLen];
  CHECK(decodeSignature(kSig, sig));
  CHECK_EQ(sig[0], 0x1b);
  CHECK_EQ(sig[63], 0x1a);
  CHECK(!decodeSignature("", sig));
  CHECK(!decodeSignature("AAAA", sig));
  char text[100];
  copyText(text, sizeof text, kSig);
  text[86] = 'A';  // one '=' short
  CHECK(!decodeSignature(text, sig));
  copyText(text, sizeof text, kSig);
  text[85] = 'h';  // non-zero padding bits: another spelling of the same bytes
  CHECK(!decodeSignature(text, sig));
  copyText(text, sizeof text, kSig);
  text[10] = '-';  // base64url is not accepted
  CHECK(!decodeSignature(text, sig));

  uint8_t key[kPublicKeyLen];
  CHECK(parsePublicKeyHex(kPublicKey, key));
  CHECK_EQ(key[0], 0x04);
  CHECK(!parsePublicKeyHex("04", key));
  copyText(text, sizeof text, kPublicKey);
  CHECK(!parsePublicKeyHex(kPublicKey + 2, key));
  char compressed[140];
  copyText(compressed, sizeof compressed, kPublicKey);
  compressed[1] = '2';
  CHECK(!parsePublicKeyHex(compressed, key));
}

TEST(manifest_matches_the_servers) {
  Announcement a;
  CHECK(parseAnnouncement(kSigned, strlen(kSigned), a) == kAnnouncementOk);
  CHECK_STR(a.image, "kitchen");
  CHECK_STR(a.sig, kSig);
  char manifest[kMaxManifestLen + 1];
  CHECK(buildManifest("kitchen", a, manifest, sizeof manifest) == strlen(kManifest));
  CHECK_STR(manifest, kManifest);
}

TEST(p256_verifier_checks_with_the_real_library) {
  P256Verifier verifier;
  CHECK(verifier.begin(kPublicKey));
  uint8_t sig[kSignatureLen];
  CHECK(decodeSignature(kSig, sig));
  const uint8_t* message = reinterpret_cast<const uint8_t*>(kManifest);
  const size_t len = strlen(kManifest);
  CHECK(verifier.verify(message, len, sig) == kSignatureValid);
  char tampered[kMaxManifestLen + 1];
  copyText(tampered, sizeof tampered, kManifest);
  tampered[len - 1] = 'e';
  CHECK(verifier.verify(reinterpret_cast<const uint8_t*>(tampered), len, sig) == kSignatureInvalid);
  sig[5] ^= 0x01;
  CHECK(verifier.verify(message, len, sig) == kSignatureInvalid);
  sig[5] ^= 0x01;
  uint8_t zero[kSignatureLen] = {0};
  CHECK(verifier.verify(message, len, zero) == kSignatureInvalid);

  P256Verifier other;
  CHECK(other.begin(kOtherPublicKey));
  CHECK(other.verify(message, len, sig) == kSignatureInvalid);

  // 04 || X || Y with Y changed is not on the curve: refused at configuration time.
  char offCurve[140];
  copyText(offCurve, sizeof offCurve, kPublicKey);
  offCurve[129] = offCurve[129] == '0' ? '1' : '0';
  P256Verifier bad;
  CHECK(!bad.begin(offCurve));
  CHECK(bad.verify(message, len, sig) == kSignatureInvalid);
  CHECK(!bad.begin("not hex"));
}

TEST(agent_needs_a_usable_server_url) {
  fakes::Mqtt mqtt;
  fakes::Clock clock;
  fakes::Store store;
  fakes::Updater updater;
  fakes::Log log;
  const AgentConfig none = Rig::makeConfig("kitchen", 0, 0);
  Agent a(none, mqtt, updater, store, clock, &log);
  CHECK(!a.begin());
  CHECK(strstr(log.last, "server URL") != 0);
  const AgentConfig withCredentials = Rig::makeConfig("kitchen", 0, "http://u:p@ota.lan");
  Agent b(withCredentials, mqtt, updater, store, clock, &log);
  CHECK(!b.begin());
}

TEST(agent_refuses_a_foreign_url_without_any_request) {
  const char* foreign[] = {"http://server.evil:8000/fw/kitchen/9.9.9.bin",
                           "http://ota.lan:8000@evil/fw/kitchen/9.9.9.bin",
                           "http://ota.lan:8001/fw/kitchen/9.9.9.bin",
                           "https://ota.lan:8000/fw/kitchen/9.9.9.bin"};
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; ++i) {
    Rig rig;
    CHECK(rig.agent.begin());
    rig.send(withUrl(foreign[i]));
    CHECK(!rig.agent.hasQueuedUpdate());
    CHECK(rig.agent.poll() == kAgentContinue);
    CHECK_EQ(rig.updater.runs, 0);
    CHECK_EQ(rig.store.saves, 0);  // nothing was attempted
    CHECK_EQ(rig.mqtt.count, 1);
    CHECK_STR(rig.lastField("state"), "failed");
    CHECK_STR(rig.lastField("id"), "f1");
    // user info is refused by the parser already, everything else by the base URL check
    const char* reason = i == 1 ? "carries credentials" : "not under the server";
    if (strstr(rig.lastField("error"), reason) == 0) {
      tt::reportStrings(__FILE__, __LINE__, foreign[i], rig.lastField("error"), reason);
    }
    rig.send(withUrl(foreign[i]));  // redelivered: not answered twice
    CHECK_EQ(rig.mqtt.count, 1);
  }
  Rig ok;
  CHECK(ok.agent.begin());
  ok.send(withUrl("http://ota.lan:8000/fw/kitchen/9.9.9.bin"));
  CHECK(ok.agent.hasQueuedUpdate());
}

TEST(agent_with_a_key_acts_on_a_good_signature) {
  P256Verifier verifier;
  CHECK(verifier.begin(kPublicKey));
  Rig rig("kitchen", &verifier);
  CHECK(rig.agent.begin());
  rig.send(kSigned);
  CHECK(rig.agent.hasQueuedUpdate());
  CHECK(rig.agent.poll() == kAgentReboot);
  CHECK_EQ(rig.updater.runs, 1);
}

TEST(agent_with_a_key_refuses_missing_changed_and_replayed_signatures) {
  P256Verifier verifier;
  CHECK(verifier.begin(kPublicKey));
  const char* at = strstr(kSigned, "\"size\":1000") + 8;  // a byte of the size: 1000 -> 1001
  const size_t sizeAt = static_cast<size_t>(at - kSigned) + 2;
  const size_t sigAt = static_cast<size_t>(strstr(kSigned, kSig) - kSigned) + 3;
  const size_t idAt = static_cast<size_t>(strstr(kSigned, "\"a1\"") - kSigned) + 2;
  const size_t versionAt = static_cast<size_t>(strstr(kSigned, "\"1.4.0\"") - kSigned) + 5;
  const char* reasons[] = {"no \"sig\"",       "does not verify", "does not verify",
                           "does not verify", "does not verify", "does not verify"};
  for (int i = 0; i < 6; ++i) {
    const char* payload = withUrl("http://ota.lan:8000/fw/kitchen/9.9.9.bin");  // unsigned
    if (i == 1) payload = changed(sizeAt, '1');                                // signed size 1000, sent 1001
    if (i == 2) payload = changed(sigAt, kSigned[sigAt] == 'A' ? 'B' : 'A');   // one signature byte
    if (i == 3) payload = changed(strlen(kSigned) - 5, '=');                   // not base64 of 64 bytes
    if (i == 4) payload = changed(idAt, '2');       // the signature replayed to attempt "a2"
    if (i == 5) payload = changed(versionAt, '1');  // ...or to version 1.4.1
    Rig rig("kitchen", &verifier);
    CHECK(rig.agent.begin());
    rig.send(payload);
    CHECK(!rig.agent.hasQueuedUpdate());
    CHECK_EQ(rig.updater.runs, 0);
    CHECK_EQ(rig.mqtt.count, 1);
    CHECK_STR(rig.lastField("state"), "failed");
    if (strstr(rig.lastField("error"), reasons[i]) == 0) {
      tt::reportStrings(__FILE__, __LINE__, "refusal reason", rig.lastField("error"), reasons[i]);
    }
  }
  // The same message, signed for "kitchen", replayed to "kitchen-2".
  Rig other("kitchen-2", &verifier);
  CHECK(other.agent.begin());
  other.send(kSigned);
  CHECK(!other.agent.hasQueuedUpdate());
  CHECK_EQ(other.updater.runs, 0);
  CHECK(strstr(other.lastField("error"), "does not verify") != 0);
  // A sig of the wrong JSON type is refused too, when the device checks signatures...
  Rig typed("kitchen", &verifier);
  CHECK(typed.agent.begin());
  typed.send("{\"id\":\"t1\",\"version\":\"9.9.9\",\"url\":\"http://ota.lan:8000/fw/k.bin\",\"sig\":7}");
  CHECK(strstr(typed.lastField("error"), "does not verify") != 0);
  // ...and ignored by a device without a key, like any field it does not use.
  Rig keyless;
  CHECK(keyless.agent.begin());
  keyless.send("{\"id\":\"t1\",\"version\":\"9.9.9\",\"url\":\"http://ota.lan:8000/fw/k.bin\",\"sig\":7}");
  CHECK(keyless.agent.hasQueuedUpdate());
}

TEST(agent_refuses_when_the_signature_cannot_be_checked_now) {
  // ESP8266 with too little heap for BearSSL's second stack, mbedTLS out of memory: no verdict,
  // so nothing is done, and the reason says so instead of blaming the signature.
  struct Unable : SignatureVerifier {
    SignatureCheck verify(const uint8_t*, size_t, const uint8_t*) { return kSignatureUnchecked; }
  } unable;
  Rig rig("kitchen", &unable);
  CHECK(rig.agent.begin());
  rig.send(kSigned);
  CHECK(!rig.agent.hasQueuedUpdate());
  CHECK_EQ(rig.updater.runs, 0);
  CHECK_EQ(rig.store.saves, 0);
  CHECK_STR(rig.lastField("state"), "failed");
  CHECK(strstr(rig.lastField("error"), "too little free heap") != 0);
}
