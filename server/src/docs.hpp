#pragma once

#include <optional>
#include <string_view>

namespace celsius {

// The OpenAPI 3.1 document (server/api/openapi.json, embedded at build time).
std::string_view openapi_document() noexcept;

struct static_asset {
  std::string_view body;
  std::string_view content_type;
};

// GET /docs: a Swagger UI page that loads only assets served by this binary.
std::string_view docs_page() noexcept;

// GET /docs/<name>: the embedded Swagger UI assets; nullopt for unknown names.
std::optional<static_asset> docs_asset(std::string_view name) noexcept;

}  // namespace celsius
