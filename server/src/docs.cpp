#include "docs.hpp"

namespace celsius {

namespace embedded {
extern const std::string_view openapi_json;
#if CELSIUS_SWAGGER_UI
std::string_view swagger_ui_css();
std::string_view swagger_ui_bundle_js();
#endif
}  // namespace embedded

std::string_view openapi_document() noexcept { return embedded::openapi_json; }

#if CELSIUS_SWAGGER_UI
std::string_view docs_page() noexcept {
  return R"html(<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>celsius API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
)html";
}

std::optional<static_asset> docs_asset(std::string_view name) noexcept {
  if (name == "swagger-ui.css") return static_asset{embedded::swagger_ui_css(), "text/css; charset=utf-8"};
  if (name == "swagger-ui-bundle.js") {
    return static_asset{embedded::swagger_ui_bundle_js(), "text/javascript; charset=utf-8"};
  }
  return std::nullopt;
}
#else
std::string_view docs_page() noexcept {
  return R"html(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>celsius API</title></head>
<body>
  <h1>celsius API</h1>
  <p>This build does not bundle Swagger UI (npm package swagger-ui-dist was not found at
  build time; see server/README.md). The OpenAPI document is at
  <a href="/openapi.json">/openapi.json</a>.</p>
</body>
</html>
)html";
}

std::optional<static_asset> docs_asset(std::string_view) noexcept { return std::nullopt; }
#endif

}  // namespace celsius
