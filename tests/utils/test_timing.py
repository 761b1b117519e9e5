import time

from fluidrec.utils.timing import StageClock


def test_stage_clock_times_each_stage_from_the_previous_mark(capsys):
    clock = StageClock("run")
    time.sleep(0.02)
    clock.mark("a")
    clock.mark("b")  # immediately after a: near zero, not a's time again
    assert list(clock.timings) == ["a", "b"]
    assert clock.timings["a"] >= 0.02 and clock.timings["b"] < clock.timings["a"]
    assert clock.total() >= clock.timings["a"]
    assert "[run] a: " in capsys.readouterr().err
