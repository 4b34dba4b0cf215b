#pragma once

// What the model-path tests share: polling with a bound, and the model's state as the
// service reports it in /readyz.
#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "http_client.hpp"

namespace celsius::test {

// Polls `ready` every 50 ms until it holds or `timeout` passes; its last answer.
template <typename Predicate>
bool wait_until(Predicate ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ready();
}

// The service's /readyz: its status and the model member.
struct readyz_answer {
  unsigned status = 0;
  bool ready = false;            // "status":"ready"
  bool model_available = false;  // "model":{"available":true}
  bool failing_fast = false;     // "model":{"failing_fast":true}
  std::string model_reason;      // "model":{"reason":...}
  std::string body;
};

inline readyz_answer readyz(std::uint16_t port) {
  readyz_answer out;
  const auto res = fetch(port, "GET", "/readyz");
  out.status = res.status;
  out.body = res.body;
  rapidjson::Document doc;
  doc.Parse(res.body.c_str());
  if (doc.HasParseError() || !doc.IsObject()) return out;
  out.ready = doc.HasMember("status") && doc["status"].IsString() && std::string(doc["status"].GetString()) == "ready";
  if (doc.HasMember("model") && doc["model"].IsObject()) {
    const auto& model = doc["model"];
    out.model_available = model.HasMember("available") && model["available"].IsBool() && model["available"].GetBool();
    out.failing_fast =
        model.HasMember("failing_fast") && model["failing_fast"].IsBool() && model["failing_fast"].GetBool();
    if (model.HasMember("reason") && model["reason"].IsString()) out.model_reason = model["reason"].GetString();
  }
  return out;
}

// True once the service's status poll found the model AVAILABLE.
inline bool model_available(std::uint16_t port) { return readyz(port).model_available; }

}  // namespace celsius::test
