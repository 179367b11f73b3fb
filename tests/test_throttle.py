from tinyota_mqtt.core.throttle import AuthThrottle


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_the_limit_and_forgives_after_the_window() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.5") == 0
        throttle.failed("10.0.0.5")
    assert throttle.retry_after("10.0.0.5") == 60
    assert throttle.retry_after("10.0.0.6") == 0  # other addresses are not affected
    clock.now = 30
    assert throttle.retry_after("10.0.0.5") == 30
    clock.now = 61
    assert throttle.retry_after("10.0.0.5") == 0


def test_throttle_memory_is_bounded() -> None:
    throttle = AuthThrottle(limit=3, window=60, clock=Clock(), max_tracked=100)
    for i in range(1000):
        throttle.failed(f"addr-{i}")
    assert len(throttle._failures) <= 100
