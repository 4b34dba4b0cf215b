-- wrk script: POST /convert with a single value, the hot path of the service.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("CELSIUS_BENCH_BODY") or '{"fahrenheit": 98.6}'
