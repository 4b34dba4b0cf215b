#include "rest_paths.hpp"

#include <cctype>
#include <charconv>

namespace celsius::serving {

namespace {

bool iequal_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

bool iequal(std::string_view a, std::string_view b) { return a.size() == b.size() && iequal_prefix(a, b); }

// [^/:]+ at the start of `rest`; its length (0: no match).
std::size_t segment(std::string_view rest) {
  std::size_t n = 0;
  while (n < rest.size() && rest[n] != '/' && rest[n] != ':') ++n;
  return n;
}

std::size_t digits(std::string_view rest) {
  std::size_t n = 0;
  while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
  return n;
}

struct version_part {
  std::string_view version, label;
  std::size_t length = 0;  // consumed characters
};

// (?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))? — RE2 tries the alternatives in order and
// backtracks into the empty option when the rest of the pattern fails; the callers try
// `with` first and fall back to an empty match.
version_part version_or_label(std::string_view rest) {
  if (iequal_prefix(rest, "/versions/")) {
    const std::size_t n = digits(rest.substr(10));
    if (n > 0) return {rest.substr(10, n), {}, 10 + n};
  } else if (iequal_prefix(rest, "/labels/")) {
    const std::size_t n = segment(rest.substr(8));
    if (n > 0) return {{}, rest.substr(8, n), 8 + n};
  }
  return {};
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool match_post(std::string_view path, rest_path& out, std::string_view& version, std::string_view& label) {
  if (!iequal_prefix(path, "/v1/models/")) return false;
  std::string_view rest = path.substr(11);
  const std::size_t name = segment(rest);
  if (name == 0) return false;
  out.model_name = std::string(rest.substr(0, name));
  rest.remove_prefix(name);
  const auto try_method = [&](std::string_view tail) {
    if (tail.empty() || tail[0] != ':') return false;
    const std::string_view method = tail.substr(1);
    if (iequal(method, "classify") || iequal(method, "regress") || iequal(method, "predict")) {
      out.method = std::string(method);
      return true;
    }
    return false;
  };
  const version_part part = version_or_label(rest);
  if (part.length != 0 && try_method(rest.substr(part.length))) {
    version = part.version;
    label = part.label;
    return true;
  }
  return try_method(rest);
}

bool match_get(std::string_view path, rest_path& out, std::string_view& version, std::string_view& label) {
  if (!iequal_prefix(path, "/v1/models")) return false;
  const std::string_view after_models = path.substr(10);
  // The rest after the optional name: [version|label] [/metadata], anchored at the end.
  const auto try_tail = [&](std::string_view tail) {
    const auto try_sub = [&](std::string_view t) {
      if (t.empty()) {
        out.subresource.clear();
        return true;
      }
      if (t.size() == 9 && t[0] == '/' && iequal(t.substr(1), "metadata")) {
        out.subresource = std::string(t.substr(1));
        return true;
      }
      return false;
    };
    const version_part part = version_or_label(tail);
    if (part.length != 0 && try_sub(tail.substr(part.length))) {
      version = part.version;
      label = part.label;
      return true;
    }
    version = label = {};
    return try_sub(tail);
  };
  if (!after_models.empty() && after_models[0] == '/') {
    const std::size_t name = segment(after_models.substr(1));
    if (name > 0 && try_tail(after_models.substr(1 + name))) {
      out.model_name = std::string(after_models.substr(1, name));
      return true;
    }
  }
  out.model_name.clear();
  return try_tail(after_models);
}

}  // namespace

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

rest_path_result parse_rest_path(std::string_view method, std::string_view path) {
  rest_path_result result;
  rest_path& out = result.path;
  std::string_view version, label;
  if (method == "POST") {
    out.matched = match_post(path, out, version, label);
  } else if (method == "GET") {
    out.matched = match_get(path, out, version, label);
  }
  if (!out.matched) return result;
  out.model_name = percent_decode(out.model_name);
  if (!version.empty()) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(version.data(), version.data() + version.size(), v);
    if (ec != std::errc() || end != version.data() + version.size()) {
      result.error = "Failed to convert version: " + std::string(version) + " to numeric.";
      return result;
    }
    out.version = v;
  }
  if (!label.empty()) out.label = percent_decode(label);
  return result;
}

}  // namespace celsius::serving
