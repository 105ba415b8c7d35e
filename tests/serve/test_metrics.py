"""Prometheus text format of the service metrics."""

from __future__ import annotations

from panoplace.serve.metrics import Metrics


def test_metrics_render_counters_histograms_and_gauges() -> None:
    m = Metrics(queue_depth=lambda: 3, sessions=lambda: 2)
    m.requests.inc("/v1/localize", "POST", "200")
    m.requests.inc("/v1/localize", "POST", "200")
    m.latency.observe(0.02, "/v1/localize")
    m.observe_batch(5, 0.1)
    text = m.render()
    assert 'panoplace_http_requests_total{route="/v1/localize",method="POST",status="200"} 2' in text
    assert 'panoplace_http_request_duration_seconds_bucket{route="/v1/localize",le="0.01"} 0' in text
    assert 'panoplace_http_request_duration_seconds_bucket{route="/v1/localize",le="0.025"} 1' in text
    assert 'panoplace_http_request_duration_seconds_bucket{route="/v1/localize",le="+Inf"} 1' in text
    assert 'panoplace_http_request_duration_seconds_count{route="/v1/localize"} 1' in text
    assert 'panoplace_batch_size_bucket{le="4"} 0' in text and 'panoplace_batch_size_bucket{le="8"} 1' in text
    assert "panoplace_queue_depth 3" in text and "panoplace_sessions_active 2" in text
    assert "# TYPE panoplace_batch_size histogram" in text
    assert text.endswith("\n")
