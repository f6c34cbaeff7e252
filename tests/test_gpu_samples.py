"""``gpu.csv`` samples and the sparkline the sidebar draws from them (pure)."""

from __future__ import annotations

from gpu_magic.monitoring.gpu_samples import mean_utilization, parse_gpu_csv

CSV = """timestamp, index, uuid, utilization.gpu, memory.used, memory.total, temp, power
100.0, 0, GPU-a, 80, 1000, 81559, 40, 300
100.0, 1, GPU-b, 40, 1000, 81559, 40, 300
101.0, 0, GPU-a, [N/A], 1000, 81559, 40, 300
102.0, 0, GPU-a, 90, 1000, 81559, 40, 300
102.0, 1, GPU-b, 70, 1000, 81559, 40, 300
103.0, 0, GPU-a, 10, 1000, 81559, 40, 300
"""


def test_mean_utilization_is_per_sample_time_over_the_gpus_oldest_first():
    samples = parse_gpu_csv(CSV)
    assert len(samples) == 6  # the header is not a sample
    assert mean_utilization(samples, 30) == [60.0, 80.0, 10.0]  # 101.0 reported no utilisation


def test_mean_utilization_keeps_only_the_last_points():
    samples = parse_gpu_csv(CSV)
    assert mean_utilization(samples, 2) == [80.0, 10.0]
    assert mean_utilization(samples, 0) == []
    assert mean_utilization([], 30) == []
