#pragma once

#include <string>
#include <string_view>

namespace celsius::fuzz {

// Feeds raw bytes to the HTTP request parser the service uses (Beast, with the service's
// limits), the RFC 9112 head checks (request_head) and, when a whole request passes, to
// the router. Checks what every answer must
// satisfy: no exception, a known status, a JSON body for JSON answers, the documented
// error envelope whose code matches the status, valid UTF-8 in every JSON answer, and
// correct conversions on 200.
// Returns an empty string when all holds, else what was violated.
std::string check_request(std::string_view bytes);

// The same checks for a body sent as POST /convert (skips the HTTP layer).
std::string check_convert_body(std::string_view body);

}  // namespace celsius::fuzz
