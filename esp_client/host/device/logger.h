// One line per event on stderr, copied to <state-dir>/device.log:
//   2024-05-01T10:00:00.123Z tinyota-device[kitchen] mqtt connected to 127.0.0.1:1883
#ifndef HOSTDEV_LOGGER_H
#define HOSTDEV_LOGGER_H

#include <stdio.h>

#include <string>

#include "../../src/tinyota/ports.h"

namespace hostdev {

class Logger : public tinyota::EventLog {
 public:
  Logger();
  ~Logger();
  void begin(const std::string& deviceId, const std::string& logPath);
  void event(const char* line);
  void printf(const char* format, ...) __attribute__((format(printf, 2, 3)));

 private:
  Logger(const Logger&);
  Logger& operator=(const Logger&);

  std::string deviceId_;
  FILE* file_;
};

}  // namespace hostdev

#endif  // HOSTDEV_LOGGER_H
