// One announcement signed by the server's own signer, shared by the trust and fuzz tests.
#ifndef TINYOTA_TEST_SIGNED_VECTORS_H
#define TINYOTA_TEST_SIGNED_VECTORS_H

namespace {

// Made once with tinyota_mqtt.signing (the server's signer) for device "kitchen"; the
// private key was thrown away. kManifest is Announcement.manifest() of kSigned below.
const char* const kPublicKey =
    "04e796e3dd205578a15d3697a57867b7d5db6e5bc4c95643b4ceca588f92503c186334088a68e5e6ac9abc6ef170ffc3caeb6f"
    "443c463f7fe3a43321a549a388e2";
const char* const kOtherPublicKey =
    "04368a3828ad5b705ebd198e813034a1bf3bbebced99309470b467f0e3cd9d3eae887c12de3fb2de56150f2cc67621c2827783"
    "d59e0db7259aa9da619cafe10cdd";
const char* const kSig = "G65frQ3QoIxRxIzjGdgy3yFrAEU32N/5Jh7CDKwIWVR+ITRXyrrC2TbxxEXDP+lT2QIAJgRdB7vQSjguhoGUGg==";
const char* const kManifest =
    "tinyota-announcement-v2\nkitchen\nkitchen\na1\n1.4.0\nhttp://ota.lan:8000/fw/kitchen/1.4.0.bin\n1000\n"
    "0123456789abcdef0123456789abcdef\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const char* const kSigned =
    "{\"id\":\"a1\",\"version\":\"1.4.0\",\"url\":\"http://ota.lan:8000/fw/kitchen/1.4.0.bin\",\"size\":1000,"
    "\"md5\":\"0123456789abcdef0123456789abcdef\","
    "\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"image\":\"kitchen\","
    "\"sig\":\"G65frQ3QoIxRxIzjGdgy3yFrAEU32N/5Jh7CDKwIWVR+ITRXyrrC2TbxxEXDP+lT2QIAJgRdB7vQSjguhoGUGg==\"}";

}  // namespace

#endif  // TINYOTA_TEST_SIGNED_VECTORS_H
