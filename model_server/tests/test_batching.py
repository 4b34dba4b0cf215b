"""Server-side batching like TF Serving's: concurrent Predict calls over gRPC and REST run as one
TF_SessionRun and come back bit-identical to unbatched answers; the batch sizes formed show in
the Prometheus metrics; a full queue and an oversized request are refused at once."""

from __future__ import annotations

import concurrent.futures
import json
import random
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from model_server_harness import metric_value
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from celsius_model import reference_celsius


def predict_request(values, dtype=tf.float64):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "f2c"
    request.inputs["fahrenheit"].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def batching_config(tmp_path, **fields) -> str:
    path = tmp_path / "batching.config"
    path.write_text("".join(f"{name} {{ value: {value} }}\n" for name, value in fields.items()))
    return str(path)


def monitoring_config(tmp_path) -> str:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }\n")
    return str(path)


def sample_values() -> np.ndarray:
    """100,000 inputs: the edges, realistic temperatures, and random finite bit patterns."""
    rng = np.random.default_rng(12)
    edges = np.array([-459.67, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 32, 212, 98.6, -40, 0.1, 1e300,
                      -1e300, 1.7976931348623157e308, np.inf, -np.inf])
    temps = rng.uniform(-459.67, 2000, 60_000)
    bits = rng.integers(0, 2**64, 40_000 - len(edges), dtype=np.uint64).view(np.float64)
    bits[~np.isfinite(bits)] = 1.5
    return np.concatenate([edges, temps, bits])


def test_batched_answers_are_bit_identical_and_batch_sizes_show(model_base, start, tmp_path):
    values = sample_values()
    assert len(values) == 100_000
    unbatched = start(model_base)
    batched = start(model_base, "--enable_batching", f"--monitoring_config_file={monitoring_config(tmp_path)}",
                    "--batching_parameters_file=" + batching_config(
                        tmp_path, max_batch_size=512, batch_timeout_micros=2000, max_enqueued_batches=100000,
                        num_batch_threads=2))
    # The reference: one unbatched request with every value.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(unbatched.channel())
    expected = np.array(stub.Predict(predict_request(values), timeout=120).outputs["celsius"].double_val)
    assert expected.view(np.uint64).tolist() == reference_celsius(values).view(np.uint64).tolist()

    # The same values in chunks of 1..100 from 32 concurrent callers, alternating transports.
    rng = random.Random(4)
    chunks, i = [], 0
    while i < len(values):
        n = rng.randint(1, 100)
        chunks.append((i, values[i:i + n]))
        i += n
    channel = batched.channel()
    batched_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call(k: int, chunk: np.ndarray) -> np.ndarray:
        if k % 2 == 0:
            response = batched_stub.Predict(predict_request(chunk), timeout=120)
            return np.array(response.outputs["celsius"].double_val)
        status, body = batched.predict({"instances": chunk.tolist()}, timeout=120)
        assert status == 200, body
        return np.array(body["predictions"], dtype=np.float64)

    got = np.empty_like(values)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures = {pool.submit(call, k, chunk): (start_at, len(chunk)) for k, (start_at, chunk) in enumerate(chunks)}
        for future in concurrent.futures.as_completed(futures):
            start_at, n = futures[future]
            got[start_at:start_at + n] = future.result()
    channel.close()
    assert got.view(np.uint64).tolist() == expected.view(np.uint64).tolist()

    page = batched.metrics()
    rows = metric_value(page, ":tensorflow:serving:batching_session:processed_batch_size_sum{}")
    batches = metric_value(page, ":tensorflow:serving:batching_session:processed_batch_size_count{}")
    tasks = metric_value(page, ":tensorflow:serving:batching_session:input_batch_size_count{}")
    assert rows == len(values) and tasks == len(chunks)
    # Batches were formed: fewer session runs than requests, some of them larger than any request.
    assert batches < tasks, (batches, tasks)
    assert metric_value(page, ':tensorflow:serving:batching_session:processed_batch_size_bucket{le="128"}') < batches
    print(f"{len(chunks)} requests ran as {batches:.0f} batches, {rows / batches:.1f} values per batch on average")


def test_a_full_queue_is_refused_at_once(model_base, start, tmp_path):
    # One open batch may wait 6 s for company; a request that needs a second batch finds the
    # queue full (max_enqueued_batches 1) and is refused without waiting.
    server = start(model_base, "--enable_batching", "--batching_parameters_file=" + batching_config(
        tmp_path, max_batch_size=10, batch_timeout_micros=6_000_000, max_enqueued_batches=1, num_batch_threads=1))
    channel = server.channel()
    grpc.channel_ready_future(channel).result(timeout=60)  # connected: the first call goes out at once
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    waiting = stub.Predict.future(predict_request([212.0]), timeout=60)
    time.sleep(0.5)  # the first request is queued (it waits 6 s by configuration); margin for a busy machine
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request([1.0] * 10), timeout=60)
    # TensorFlow's SharedBatchScheduler answers UNAVAILABLE (TF Serving passes it on; REST 503).
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == "The batch scheduling queue to which this task was submitted is full"
    status, body = server.predict({"instances": [1.0] * 10})
    assert (status, body) == (503, {"error": "The batch scheduling queue to which this task was submitted is full"})
    refused_after = time.monotonic() - started
    assert not waiting.done(), "the refusals came while the first request still waited"
    assert list(waiting.result().outputs["celsius"].double_val) == [100.0]
    assert refused_after < 6.0
    # Larger than a batch can ever be.
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request([1.0] * 11), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "Task size 11 is larger than maximum input batch size 10"


def test_batching_checks_and_isolation(model_base, start, tmp_path):
    server = start(model_base, "--enable_batching", "--batching_parameters_file=" + batching_config(
        tmp_path, max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=1))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request(212.0), timeout=60)  # a scalar has no batch dimension
    assert error.value.details() == "Batching Run() input tensors must have at least one dimension"
    # A float32 request queues apart from float64 ones: only it fails, with TensorFlow's message.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        good = [pool.submit(stub.Predict, predict_request([212.0, 32.0]), timeout=60) for _ in range(6)]
        bad = pool.submit(stub.Predict, predict_request([1.0], dtype=tf.float32), timeout=60)
        for f in good:
            assert list(f.result().outputs["celsius"].double_val) == [100.0, 0.0]
        with pytest.raises(grpc.RpcError) as error:
            bad.result()
    assert "Expects arg[0] to be double but float is provided" in error.value.details()


def test_allowed_batch_sizes_pad_and_the_padding_is_dropped(model_base, start, tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\nnum_batch_threads { value: 1 }\n"
                    "allowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    server = start(model_base, "--enable_batching", f"--batching_parameters_file={path}",
                   f"--monitoring_config_file={monitoring_config(tmp_path)}")
    status, body = server.predict({"instances": [212, 32, -40]})
    assert (status, body) == (200, {"predictions": [100.0, 0.0, -40.0]})
    page = server.metrics()
    assert metric_value(page, ":tensorflow:serving:batching_session:processed_batch_size_sum{}") == 4
    assert metric_value(page, ':tensorflow:serving:batching_session:padding_size_sum{execution_batch_size="4"}') == 1


def test_batching_file_fields_of_later_releases_are_logged(model_base, start, tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }\nenable_large_batch_splitting { value: true }\n")
    server = start(model_base, "--enable_batching", f"--batching_parameters_file={path}")
    assert "enable_large_batch_splitting" in server.log() and "(ignored)" in server.log()
    assert json.loads(json.dumps(server.predict({"instances": [212]}))) == [200, {"predictions": [100.0]}]
