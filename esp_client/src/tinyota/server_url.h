// Is an announced URL on the server this device was built for?
//
// Anyone who may publish on the broker can write <prefix>/<device>/update, and the device
// sends its own password with the download. So it downloads only from URLs under the base
// URL it was configured with (TINYOTA_SERVER_URL, the server's server.public_url): same
// scheme, same host, same port (a missing port is the scheme's default) and a path that
// starts with the base's path. The comparison is done on parsed parts, never as a string
// prefix: "http://ota.lan:8000@evil/" and "http://ota.lan.evil/" share a string prefix
// with "http://ota.lan" but name another host.
#ifndef TINYOTA_SERVER_URL_H
#define TINYOTA_SERVER_URL_H

#include <stddef.h>
#include <stdint.h>

namespace tinyota {

// The parts of an absolute http(s) URL; pointers into the parsed text, not copies.
struct UrlParts {
  bool https;
  const char* host;  // without brackets for an IPv6 literal
  size_t hostLen;
  uint16_t port;     // explicit, or 80 / 443
  const char* path;  // "/" when the URL has none; up to '?' or '#' (not included)
  size_t pathLen;
};

// Parses "http://host[:port][/path][?query][#fragment]" (lower-case scheme, visible ASCII).
// False for anything else, for user info ('@' in the authority), an empty host, a port
// that is not 1..65535, and a path with "." or ".." segments, backslashes or an encoded
// '.', '/' or '\' (a server or proxy may resolve them to a place outside the base).
bool parseHttpUrl(const char* url, UrlParts& out);

// A usable base: parses, and has neither a query nor a fragment.
bool isUsableServerBase(const char* base);

// True when url parses and lies under base: same scheme, host (ASCII case-insensitive)
// and port, and its path continues the base's path at a segment boundary ("/ota" admits
// "/ota/fw/x.bin", not "/ota-evil/x.bin").
bool isUnderServerBase(const char* url, const char* base);

}  // namespace tinyota

#endif  // TINYOTA_SERVER_URL_H
