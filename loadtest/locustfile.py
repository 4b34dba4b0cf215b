"""The users of celsius: clients converting temperatures, one at a time or in batches.

Each task checks what it gets back: status 200, the documented keys, an instance id, and
Celsius values equal to (f - 32) * 5 / 9 computed here in the same IEEE double arithmetic.
A wrong answer is a failure, not a success with a bad number. Tags pick the path:

  native  POST /convert        (the C++ service computes it)
  model   POST /convert/model  (the service asks TensorFlow Serving)

Settings (users, rate, duration, batch share and size, temperature range) live in
locust.conf and on the command line, not here.
"""

from __future__ import annotations

import random

import gevent
import locust.stats
from answer_checks import check_answer
from locust import FastHttpUser, constant, events, tag, task

@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--batch-share", type=float, default=0.1, include_in_web_ui=True,
                        help="fraction of requests that send a batch instead of one value")
    parser.add_argument("--batch-size", type=int, default=10, include_in_web_ui=True,
                        help="values per batch request")
    parser.add_argument("--min-fahrenheit", type=float, default=-40.0, include_in_web_ui=True)
    parser.add_argument("--max-fahrenheit", type=float, default=120.0, include_in_web_ui=True)


@events.quit.add_listener
def _let_the_csv_writer_catch_up(**_kwargs) -> None:
    """Locust's CSV writer rewrites the --csv files once a second and does not write them again
    at exit (2.47), so up to the last second of requests would be missing from _stats.csv while
    the console summary counts them. The users have stopped when `quit` fires: one more turn of
    the writer makes the files final, and they then agree with the summary."""
    gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)


class TemperatureClient(FastHttpUser):
    wait_time = constant(0)

    def _payload(self):
        options = self.environment.parsed_options
        low, high = options.min_fahrenheit, options.max_fahrenheit
        if random.random() < options.batch_share:
            values = [round(random.uniform(low, high), 2) for _ in range(options.batch_size)]
            return values, True
        return round(random.uniform(low, high), 2), False

    def _convert(self, path: str, want_model: bool) -> None:
        sent, batch = self._payload()
        with self.client.post(path, json={"fahrenheit": sent}, name=path, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure("answer is not JSON")
                return
            problem = check_answer(body, sent, batch, want_model)
            if problem:
                response.failure(problem)

    @tag("native")
    @task
    def convert_natively(self) -> None:
        self._convert("/convert", want_model=False)

    @tag("model")
    @task
    def convert_with_tensorflow_serving(self) -> None:
        self._convert("/convert/model", want_model=True)
