// The host device's "flash" and "NVS": plain files in --state-dir.
//   firmware.bin          the flashed image (what the device boots)
//   firmware.bin.partial  an image being written
//   attempted-id          the attempt store (ESP32: NVS key, ESP8266: EEPROM)
//   device.log            copy of the event log
#ifndef HOSTDEV_STATE_DIR_H
#define HOSTDEV_STATE_DIR_H

#include <stdint.h>

#include <string>
#include <vector>

#include "../../src/tinyota/ports.h"

namespace hostdev {

bool makeDirectories(const std::string& path);
bool readWholeFile(const std::string& path, std::vector<uint8_t>& out);
// Write to a temporary file, fsync, rename: a crash leaves the old or the new content.
bool writeFileAtomically(const std::string& path, const std::string& content);

class StateDir {
 public:
  explicit StateDir(const std::string& root) : root_(root) {}
  std::string firmwarePath() const { return root_ + "/firmware.bin"; }
  std::string partialPath() const { return root_ + "/firmware.bin.partial"; }
  std::string attemptPath() const { return root_ + "/attempted-id"; }
  std::string logPath() const { return root_ + "/device.log"; }

 private:
  std::string root_;
};

class FileAttemptStore : public tinyota::AttemptStore {
 public:
  explicit FileAttemptStore(const std::string& path) : path_(path) {}
  bool load(char* id, size_t cap);
  bool save(const char* id);

 private:
  std::string path_;
};

}  // namespace hostdev

#endif  // HOSTDEV_STATE_DIR_H
