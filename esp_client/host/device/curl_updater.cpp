#include "curl_updater.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <string>

#include "../../src/tinyota/text.h"
#include "md5.h"

namespace hostdev {

namespace {

// State of one transfer, shared by the libcurl callbacks.
struct Transfer {
  const DeviceFacts* facts;
  tinyota::ProgressSink* progress;
  volatile sig_atomic_t* stop;
  std::string partialPath;

  ResponseHead head;
  bool headDone;
  Verdict verdict;
  bool decided;         // a verdict other than "flash" ended the transfer on purpose
  char error[tinyota::kMaxErrorLen + 1];

  uint8_t magic[4];
  size_t magicLen;
  bool magicChecked;
  int fd;
  uint32_t written;
  bool writeFailed;
  Md5 md5;
};

std::string trim(const char* data, size_t len) {
  size_t b = 0;
  size_t e = len;
  while (b < e && (data[b] == ' ' || data[b] == '\t')) ++b;
  while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\t' || data[e - 1] == '\r' || data[e - 1] == '\n')) --e;
  return std::string(data + b, e - b);
}

bool headerIs(const char* line, size_t len, const char* name, std::string& value) {
  const size_t n = strlen(name);
  if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return false;
  value = trim(line + n + 1, len - n - 1);
  return true;
}

// The bytes after the magic check: into the "flash" file and the running MD5.
bool writeImage(Transfer& t, const uint8_t* data, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = write(t.fd, data + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      t.writeFailed = true;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  t.md5.update(data, len);
  t.written += static_cast<uint32_t>(len);
  t.progress->onProgress(t.written, static_cast<uint32_t>(t.head.length));
  return true;
}

bool openFlash(Transfer& t) {
  t.fd = open(t.partialPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  return t.fd >= 0;
}

// Runs once the peeked bytes are known: magic check, x-MD5 format, then Update.begin().
bool startImage(Transfer& t) {
  t.magicChecked = true;
  if (!judgeMagic(*t.facts, t.magic, t.magicLen, t.error, sizeof t.error)) return false;
  if (!judgeMd5Header(t.head, t.error, sizeof t.error)) return false;
  if (!openFlash(t)) {
    tinyota::copyText(t.error, sizeof t.error, "Update error: cannot open the flash file");
    return false;
  }
  t.progress->onProgress(0, static_cast<uint32_t>(t.head.length));  // like runUpdate()
  return writeImage(t, t.magic, t.magicLen);
}

size_t onHeader(char* line, size_t size, size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t len = size * count;
  if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    memset(&t.head, 0, sizeof t.head);
    const char* space = static_cast<const char*>(memchr(line, ' ', len));
    t.head.code = space ? atoi(space + 1) : 0;
    return len;
  }
  std::string value;
  if (headerIs(line, len, "Content-Length", value)) {
    char* end = 0;
    const long long n = strtoll(value.c_str(), &end, 10);
    t.head.hasLength = end != value.c_str() && *end == '\0' && n >= 0;
    t.head.length = t.head.hasLength ? n : -1;
  } else if (headerIs(line, len, "x-MD5", value)) {
    t.head.hasMd5 = true;
    tinyota::copyText(t.head.md5, sizeof t.head.md5, value.c_str());
  } else if (trim(line, len).empty()) {
    t.headDone = true;
    t.verdict = judgeResponse(*t.facts, t.head, t.error, sizeof t.error);
    if (t.verdict != kVerdictFlash) {
      t.decided = true;
      return 0;  // nothing more to read: ends the transfer (CURLE_WRITE_ERROR)
    }
  }
  return len;
}

size_t onBody(char* data, size_t size, size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t len = size * count;
  if (!t.headDone || t.verdict != kVerdictFlash) return 0;
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(data);
  size_t used = 0;
  if (!t.magicChecked) {
    const size_t need = magicBytesNeeded(t.facts->platform);
    while (t.magicLen < need && used < len) t.magic[t.magicLen++] = bytes[used++];
    if (t.magicLen < need) return len;  // wait for more
    if (!startImage(t)) return 0;
  }
  if (used < len && !writeImage(t, bytes + used, len - used)) return 0;
  return len;
}

int onTransferInfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const Transfer& t = *static_cast<Transfer*>(user);
  return *t.stop ? 1 : 0;  // SIGTERM: abort the download
}

ClientFailure classify(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
      return kConnectFailed;
    case CURLE_OPERATION_TIMEDOUT:
      return kReadTimeout;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return kNoHttpServer;
    default:
      return kConnectionLost;
  }
}

void flashWriteError(Platform platform, char* out, size_t cap) {
  tinyota::copyText(out, cap,
                    platform == kEsp8266 ? "Update error: ERROR[1]: Flash Write Failed"
                                         : "Update error: Flash Write Failed");
}

}  // namespace

CurlUpdater::CurlUpdater(const DeviceFacts& facts, const StateDir& dir, Logger& log, volatile sig_atomic_t* stop)
    : facts_(facts), dir_(dir), log_(log), stop_(stop) {}

void CurlUpdater::run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
                      tinyota::UpdateResult& result) {
  result.outcome = tinyota::kUpdateFailed;
  result.error[0] = '\0';

  Transfer t;
  memset(&t.head, 0, sizeof t.head);
  t.facts = &facts_;
  t.progress = &progress;
  t.stop = stop_;
  t.partialPath = dir_.partialPath();
  t.headDone = false;
  t.verdict = kVerdictFail;
  t.decided = false;
  t.error[0] = '\0';
  t.magicLen = 0;
  t.magicChecked = false;
  t.fd = -1;
  t.written = 0;
  t.writeFailed = false;

  CURL* curl = curl_easy_init();
  if (!curl) {
    tinyota::copyText(result.error, sizeof result.error, "HTTP error: too less ram");
    return;
  }
  struct curl_slist* headers = 0;
  Header list[16];
  const size_t n = requestHeaders(facts_, request.currentVersion, list, 16);
  for (size_t i = 0; i < n; ++i) {
    const std::string line = std::string(list[i].name) + ": " + list[i].value;
    headers = curl_slist_append(headers, line.c_str());
  }
  headers = curl_slist_append(headers, "Accept:");  // HTTPClient sends no Accept header
  headers = curl_slist_append(headers, "Connection: close");

  curl_easy_setopt(curl, CURLOPT_URL, request.url);
  // useHTTP10(true): "the update handler does not support any transfer encoding".
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_0));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, userAgent(facts_.platform));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // both cores disable redirects by default
  // Like ESP8266httpUpdate: Basic Auth only when both user and password are set.
  if (request.user && request.user[0] && request.password && request.password[0]) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(curl, CURLOPT_USERNAME, request.user);
    curl_easy_setopt(curl, CURLOPT_PASSWORD, request.password);
  }
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  // The cores' HTTP client gives up after 8 s without data (setTimeout(8000)).
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 8L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, onTransferInfo);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);

  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);

  bool complete = false;
  if (*stop_) {
    tinyota::copyText(result.error, sizeof result.error, "aborted: the device is shutting down");
  } else if (t.decided) {
    result.outcome = t.verdict == kVerdictNoUpdate ? tinyota::kUpdateNoUpdate : tinyota::kUpdateFailed;
    tinyota::copyText(result.error, sizeof result.error, t.error);
  } else if (!t.headDone) {
    clientError(facts_.platform, classify(rc), result.error, sizeof result.error);
    log_.printf("http: %s (%s)", result.error, curl_easy_strerror(rc));
  } else if (t.error[0] != '\0') {
    tinyota::copyText(result.error, sizeof result.error, t.error);  // magic, x-MD5 format
  } else if (t.writeFailed) {
    flashWriteError(facts_.platform, result.error, sizeof result.error);
  } else if (!t.magicChecked) {
    // The body ended before the core could peek its first bytes.
    judgeMagic(facts_, t.magic, t.magicLen, result.error, sizeof result.error);
  } else if (rc != CURLE_OK || t.written != static_cast<uint32_t>(t.head.length)) {
    streamTimeoutError(facts_.platform, result.error, sizeof result.error);
    log_.printf("http: body ended after %lu of %lld bytes (%s)", static_cast<unsigned long>(t.written),
                t.head.length, curl_easy_strerror(rc));
  } else {
    complete = true;
  }

  char calculated[33];
  t.md5.finishHex(calculated);
  // Update.end(): the digest is compared case-sensitively with the lower-case MD5.
  if (complete && t.head.hasMd5 && strcmp(t.head.md5, calculated) != 0) {
    md5MismatchError(facts_.platform, t.head.md5, calculated, result.error, sizeof result.error);
    complete = false;
  }
  if (t.fd >= 0) {
    if (complete && fsync(t.fd) != 0) {
      flashWriteError(facts_.platform, result.error, sizeof result.error);
      complete = false;
    }
    close(t.fd);
  }
  if (complete && rename(t.partialPath.c_str(), dir_.firmwarePath().c_str()) == 0) {
    result.outcome = tinyota::kUpdateOk;
    log_.printf("flash: %lu bytes written to %s (md5 %s%s)", static_cast<unsigned long>(t.written),
                dir_.firmwarePath().c_str(), calculated, t.head.hasMd5 ? ", matches x-MD5" : ", no x-MD5 sent");
    return;
  }
  if (complete) flashWriteError(facts_.platform, result.error, sizeof result.error);
  unlink(t.partialPath.c_str());
}

}  // namespace hostdev
