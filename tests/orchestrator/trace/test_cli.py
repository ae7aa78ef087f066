"""``python -m orchestrator trace synth|summary`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from support.commands import cli, cli_here, start

from orchestrator.cli import main
from orchestrator.errors import ExitCode


class TestSynthAndSummary:
    def test_synth_then_summary(self, tmp_path: Path) -> None:
        """synth writes a .zst trace with the parameters given; summary prints its figures,
        and as JSON the same ones."""
        out = tmp_path / "t.csv.zst"
        made = cli("trace", "synth", "--out", str(out), "--ops", "5000", "--mix",
                   "get=0.5,set=0.3,delete=0.2", "--zipf", "1.2", "--keys", "300",
                   "--key-size", "20..40", "--value-size", "lognormal:500,0.5",
                   "--ttl", "0=1,60=1", "--clients", "5", "--rate", "250", "--seed", "3")
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip() == f"wrote 5,000 operations to {out}"
        shown = cli("trace", "summary", str(out), "--instances", "5")
        assert shown.returncode == 0, shown.stderr
        assert f"trace {out} (twitter): 5,000 lines, 5,000 operations" in shown.stdout
        assert "duration: 20.000 s, 250.0 ops/s" in shown.stdout
        figures = json.loads(cli_here("trace", "summary", str(out), "--json",
                                      "--instances", "5").stdout)
        assert sum(figures["kinds"].values()) == 5000
        assert figures["clients"]["count"] == 5
        assert all(n > 0 for n in figures["ops_per_instance"])
        assert 20 <= figures["key_size"]["min"] <= figures["key_size"]["max"] <= 40

    def test_generic_format(self, tmp_path: Path) -> None:
        """--format generic writes the header and milliseconds."""
        out = tmp_path / "g.csv"
        assert cli_here("trace", "synth", "--out", str(out), "--ops", "10", "--rate",
                        "4000", "--format", "generic").returncode == 0
        lines = out.read_text().splitlines()
        assert lines[0].startswith("timestamp_ms,") and lines[2].startswith("0,")
        assert lines[5].startswith("1,")

    @pytest.mark.parametrize("command", [["trace", "--help"], ["trace", "synth", "--help"],
                                         ["trace", "summary", "--help"]])
    def test_help(self, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """Each trace command answers --help."""
        with pytest.raises(SystemExit) as caught:
            main(command)
        assert caught.value.code == 0 and "usage:" in capsys.readouterr().out


class TestBadArguments:
    @pytest.mark.parametrize(("args", "message"), [
        (["--ops", "0"], "error: --ops: expected a whole number from 1"),
        (["--mix", "get=0.8"], "error: --mix: expected shares summing to 1"),
        (["--ttl", "forever"], "error: --ttl: expected N, A..B"),
        (["--zipf", "-0.5"], "error: --zipf: expected a skew from 0"),
        (["--rate", "0"], "error: --rate: expected operations per second"),
    ])
    def test_synth_values(self, tmp_path: Path, args: list[str], message: str) -> None:
        """A value out of range: exit 2, one error line naming the flag, no file."""
        out = tmp_path / "t.csv"
        result = cli_here("trace", "synth", "--out", str(out), *args)
        assert result.returncode == ExitCode.BAD_INPUT
        assert result.stderr.startswith(message), result.stderr
        assert not list(tmp_path.iterdir())

    def test_synth_not_a_number(self, tmp_path: Path) -> None:
        """--ops x: argparse's exit 2 with what was expected."""
        result = cli("trace", "synth", "--out", str(tmp_path / "t"), "--ops", "x")
        assert result.returncode == 2
        assert "argument --ops: expected a whole number, found 'x'" in result.stderr

    def test_synth_into_a_missing_directory(self, tmp_path: Path) -> None:
        """--out in a directory that is not there: exit 2."""
        result = cli_here("trace", "synth", "--out", str(tmp_path / "no" / "t.csv"))
        assert result.returncode == 2 and "--out: expected a file in an existing" in \
            result.stderr

    def test_summary_of_a_bad_trace(self, tmp_path: Path) -> None:
        """A bad line: exit 2 naming file and line; with --on-bad-line skip it is counted."""
        path = tmp_path / "t.csv"
        path.write_text("0,a,1,2,1,get,0\n0,a,1,2,1,get\n")
        failed = cli_here("trace", "summary", str(path))
        assert failed.returncode == 2
        assert failed.stderr == (f"error: {path}, line 2: expected 7 comma-separated fields, "
                                 "found 6 in '0,a,1,2,1,get'\n")
        skipped = cli_here("trace", "summary", str(path), "--on-bad-line", "skip")
        assert skipped.returncode == 0 and "1 bad lines" in skipped.stdout

    def test_summary_of_a_missing_file(self, tmp_path: Path) -> None:
        """No such file: exit 2."""
        result = cli_here("trace", "summary", str(tmp_path / "none.zst"))
        assert result.returncode == 2 and "expected a readable trace file" in result.stderr


class TestInterrupt:
    def test_ctrl_c_leaves_no_file(self, tmp_path: Path) -> None:
        """SIGINT while synth writes: exit 130, one line, neither the trace nor its
        partial file left."""
        out = tmp_path / "t.csv.gz"
        partial = tmp_path / "t.csv.gz.partial"
        proc = start(["trace", "synth", "--out", str(out), "--ops", "100000000"],
                     dict(os.environ))
        try:
            deadline = time.monotonic() + 120  # a loaded 2-core host starts Python slowly
            while not (partial.exists() and partial.stat().st_size > 0):
                assert proc.poll() is None and time.monotonic() < deadline, "not writing"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert (proc.returncode, stderr.splitlines()) == (130, ["interrupted"]), stderr
        assert list(tmp_path.iterdir()) == []
