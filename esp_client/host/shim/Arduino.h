// Shim: the parts of the Arduino core API the sketch uses (declarations only).
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <functional>

#if defined(ESP32)
#include "esp_arduino_version.h"
#endif

typedef bool boolean;
typedef uint8_t byte;

#define HIGH 0x1
#define LOW 0x0

unsigned long millis();
#if defined(ESP8266)
void delay(unsigned long ms);
#else
void delay(uint32_t ms);
#endif
void yield();

class __FlashStringHelper;
#define F(string_literal) (reinterpret_cast<const __FlashStringHelper*>(string_literal))

class String {
 public:
  String(const char* cstr = "");
  String(const String& str);
  explicit String(char c);
  explicit String(unsigned char value, unsigned char base = 10);
  explicit String(int value, unsigned char base = 10);
  explicit String(unsigned int value, unsigned char base = 10);
  explicit String(long value, unsigned char base = 10);
  explicit String(unsigned long value, unsigned char base = 10);
  ~String();
  String& operator=(const String& rhs);
  String& operator=(const char* cstr);
  unsigned int length() const;
  bool isEmpty() const;
  const char* c_str() const;
};

class Print;

class Printable {
 public:
  virtual ~Printable() {}
  virtual size_t printTo(Print& p) const = 0;
};

class Print {
 public:
  virtual ~Print() {}
  virtual size_t write(uint8_t) = 0;
  virtual size_t write(const uint8_t* buffer, size_t size);
  size_t print(const __FlashStringHelper*);
  size_t print(const String&);
  size_t print(const char[]);
  size_t print(char);
  size_t print(int, int = 10);
  size_t print(unsigned int, int = 10);
  size_t print(long, int = 10);
  size_t print(unsigned long, int = 10);
  size_t print(const Printable&);
  size_t println(const __FlashStringHelper*);
  size_t println(const String& s);
  size_t println(const char[]);
  size_t println(char);
  size_t println(int, int = 10);
  size_t println(unsigned int, int = 10);
  size_t println(long, int = 10);
  size_t println(unsigned long, int = 10);
  size_t println(const Printable&);
  size_t println(void);
};

class Stream : public Print {
 public:
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int peek() = 0;
};

class IPAddress : public Printable {
 public:
  IPAddress();
  size_t printTo(Print& p) const;
  String toString() const;
};

class Client : public Stream {
 public:
  virtual int connect(IPAddress ip, uint16_t port) = 0;
  virtual int connect(const char* host, uint16_t port) = 0;
  virtual size_t write(uint8_t) = 0;
  virtual size_t write(const uint8_t* buf, size_t size) = 0;
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int read(uint8_t* buf, size_t size) = 0;
  virtual int peek() = 0;
  virtual void flush() = 0;
  virtual void stop() = 0;
  virtual uint8_t connected() = 0;
  virtual operator bool() = 0;
};

class HardwareSerial : public Stream {
 public:
#if defined(ESP8266)
  void begin(unsigned long baud);
#else
  void begin(unsigned long baud, uint32_t config = 0x800001c, int8_t rxPin = -1, int8_t txPin = -1,
             bool invert = false, unsigned long timeout_ms = 20000UL, uint8_t rxfifo_full_thrhd = 112);
#endif
  int available();
  int read();
  int peek();
  size_t write(uint8_t);
};
extern HardwareSerial Serial;

class EspClass {
 public:
  void restart();
  uint32_t getFreeSketchSpace();
  uint32_t getSketchSize();
#if defined(ESP8266)
  uint32_t getChipId();
  static uint32_t getMaxFreeBlockSize();
#endif
};
extern EspClass ESP;
