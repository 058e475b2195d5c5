#pragma once

#include <c10/util/Exception.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

namespace dlcore {
namespace detail {

/// Recursive-descent parser behind `Json::parse`, built on `JsonT`'s public
/// interface.
template <typename JsonT>
class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  JsonT parse_document() {
    skip_ws();
    JsonT v = parse_value(0);
    skip_ws();
    fail_if(pos_ != s_.size(), "unexpected text after the value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    TORCH_CHECK(false, "Json::parse: ", what, " at byte ", pos_);
  }
  void fail_if(bool cond, const std::string& what) const {
    if (cond) {
      fail(what);
    }
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  char peek() const {
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  void expect_literal(const char* lit) {
    std::string l(lit);
    fail_if(s_.compare(pos_, l.size(), l) != 0, "invalid literal");
    pos_ += l.size();
  }

  JsonT parse_value(int depth) {
    fail_if(depth > 512, "nesting too deep");
    fail_if(pos_ >= s_.size(), "unexpected end of input");
    char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      JsonT obj = JsonT::object();
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        return obj;
      }
      while (true) {
        skip_ws();
        fail_if(peek() != '"', "expected a string key");
        std::string key = parse_string();
        skip_ws();
        fail_if(peek() != ':', "expected ':'");
        ++pos_;
        skip_ws();
        JsonT value = parse_value(depth + 1);
        obj[key] = std::move(value);
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        fail_if(peek() != '}', "expected ',' or '}'");
        ++pos_;
        return obj;
      }
    }
    if (c == '[') {
      ++pos_;
      JsonT arr = JsonT::array();
      skip_ws();
      if (peek() == ']') {
        ++pos_;
        return arr;
      }
      while (true) {
        skip_ws();
        arr.push_back(parse_value(depth + 1));
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        fail_if(peek() != ']', "expected ',' or ']'");
        ++pos_;
        return arr;
      }
    }
    if (c == '"') {
      return JsonT(parse_string());
    }
    if (c == 't') {
      expect_literal("true");
      return JsonT(true);
    }
    if (c == 'f') {
      expect_literal("false");
      return JsonT(false);
    }
    if (c == 'n') {
      expect_literal("null");
      return JsonT();
    }
    return parse_number();
  }

  JsonT parse_number() {
    std::size_t start = pos_;
    bool integer = true;
    if (peek() == '-') {
      ++pos_;
    }
    fail_if(!std::isdigit(static_cast<unsigned char>(peek())), "invalid value");
    if (peek() == '0') {
      ++pos_;
    } else {
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        ++pos_;
      }
    }
    if (peek() == '.') {
      integer = false;
      ++pos_;
      fail_if(
          !std::isdigit(static_cast<unsigned char>(peek())),
          "expected a digit after '.'");
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        ++pos_;
      }
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') {
        ++pos_;
      }
      fail_if(
          !std::isdigit(static_cast<unsigned char>(peek())),
          "expected a digit in the exponent");
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        ++pos_;
      }
    }
    std::string text = s_.substr(start, pos_ - start);
    if (integer) {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0) {
        return JsonT(static_cast<int64_t>(v));
      }
    }
    return JsonT(std::strtod(text.c_str(), nullptr));
  }

  unsigned parse_hex4() {
    fail_if(pos_ + 4 > s_.size(), "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("invalid \\u escape");
      }
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    ++pos_; // opening quote
    std::string out;
    while (true) {
      fail_if(pos_ >= s_.size(), "unterminated string");
      char c = s_[pos_++];
      if (c == '"') {
        return out;
      }
      fail_if(
          static_cast<unsigned char>(c) < 0x20,
          "control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      fail_if(pos_ >= s_.size(), "unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            fail_if(
                s_.compare(pos_, 2, "\\u") != 0, "unpaired surrogate escape");
            pos_ += 2;
            unsigned low = parse_hex4();
            fail_if(low < 0xDC00 || low >= 0xE000, "invalid low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail("invalid escape");
      }
    }
  }

  const std::string& s_;
  std::size_t pos_ = 0;
};

} // namespace detail
} // namespace dlcore
