"""The command line: the demo runs end to end and reports what it did."""

from actorkube.cli.main import main


def test_demo_runs_and_survives_its_crash(capsys) -> None:
    assert main(["demo", "--messages", "2000"]) == 0
    out = capsys.readouterr().out
    assert "counter failed as planned: ValueError: poison word" in out
    assert "splitter saw 2,001 lines" in out
    assert "dead letters: 0" in out
