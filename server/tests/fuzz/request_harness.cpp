#include "request_harness.hpp"

#include <rapidjson/document.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstring>
#include <exception>
#include <set>

#include "app.hpp"
#include "convert.hpp"
#include "errors.hpp"
#include "request_head.hpp"

namespace celsius::fuzz {

namespace {

namespace http = boost::beast::http;

const app& shared_app() {
  static metrics_registry metrics(1);
  static const app instance = [] {
    config c;
    c.max_batch = 50;
    return app(c, "00000000-0000-4000-8000-000000000000", metrics);
  }();
  return instance;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::string check_response(const request_view& req, const response& res) {
  static const std::set<unsigned> allowed = {200, 400, 404, 405, 413, 415, 422, 503};
  if (!allowed.count(res.status)) return "unexpected status " + std::to_string(res.status);
  const std::string_view path = req.target.substr(0, req.target.find('?'));
  // 503 only from /convert/model: the harness's app has no model server (its code is checked below).
  if (res.status == 503 && path != "/convert/model") return "503 outside /convert/model: " + res.body;
  if (res.content_type != "application/json") return {};
  // Every JSON answer is valid UTF-8 whatever bytes the request held (issue 10, item 6),
  // and its length decides where it ends (no NUL inside).
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag | rapidjson::kParseValidateEncodingFlag>(res.body.data(),
                                                                                        res.body.size());
  if (doc.HasParseError() || !doc.IsObject()) return "response is not a valid UTF-8 JSON object: " + res.body;
  if (res.status >= 400) {
    if (!doc.HasMember("error") || !doc["error"].IsObject()) return "no error envelope: " + res.body;
    const auto& e = doc["error"];
    if (!e.HasMember("code") || !e["code"].IsString() || !e.HasMember("message") || !e["message"].IsString() ||
        e.MemberCount() != 2) {
      return "malformed error envelope: " + res.body;
    }
    if (res.status == 405 && res.allow.empty()) return "405 without Allow";
    if (res.status == 503 && std::string_view(e["code"].GetString()) != "model_not_configured") {
      return "503 other than model_not_configured: " + res.body;
    }
    return {};
  }
  if (path != "/convert") return {};
  if (!doc.HasMember("fahrenheit") || !doc.HasMember("celsius") || !doc.HasMember("app_id")) {
    return "convert answer lacks keys: " + res.body;
  }
  const auto& f = doc["fahrenheit"];
  const auto& c = doc["celsius"];
  if (f.IsArray() != c.IsArray()) return "mixed single/batch answer: " + res.body;
  if (f.IsArray()) {
    if (f.Size() != c.Size() || f.Size() == 0) return "batch sizes differ: " + res.body;
    for (rapidjson::SizeType i = 0; i < f.Size(); ++i) {
      if (!same_bits(c[i].GetDouble(), to_celsius(f[i].GetDouble()))) return "wrong conversion: " + res.body;
      if (f[i].GetDouble() < absolute_zero_fahrenheit) return "accepted below absolute zero: " + res.body;
    }
  } else if (!f.IsNumber() || !c.IsNumber() || !same_bits(c.GetDouble(), to_celsius(f.GetDouble()))) {
    return "wrong conversion: " + res.body;
  } else if (f.GetDouble() < absolute_zero_fahrenheit) {
    return "accepted below absolute zero: " + res.body;
  }
  return {};
}

std::string check(const request_view& req) {
  try {
    return check_response(req, shared_app().handle(req));
  } catch (const std::exception& e) {
    return std::string("handler threw: ") + e.what();
  }
}

}  // namespace

std::string check_request(std::string_view bytes) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(8192);
  parser.body_limit(65536);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t offset = 0;
  while (offset < bytes.size() && !parser.is_done()) {
    const std::size_t used = parser.put(boost::asio::buffer(bytes.data() + offset, bytes.size() - offset), ec);
    offset += used;
    if (ec || used == 0) break;
  }
  if (!parser.is_done()) return {};  // incomplete or rejected by the HTTP layer: answered there
  const auto& req = parser.get();
  if (const auto problem = check_request_head(req, parser.chunked())) {
    // Refused before routing (400 or 501, then the connection closes): the error body must
    // still be the envelope, in valid UTF-8.
    const unsigned status = http_status(problem->code);
    if (status != 400 && status != 501) return "head check gave status " + std::to_string(status);
    rapidjson::Document doc;
    const std::string body = error_body(*problem);
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
    if (doc.HasParseError() || !doc.IsObject()) return "head check error is not valid UTF-8 JSON: " + body;
    return {};
  }
  if (req.version() == 11 && req.count(http::field::host) != 1) return "HTTP/1.1 without exactly one Host passed";
  std::string storage;
  return check({req.method_string(), origin_form(req.target(), storage), req[http::field::content_type], req.body()});
}

std::string check_convert_body(std::string_view body) { return check({"POST", "/convert", "application/json", body}); }

}  // namespace celsius::fuzz
