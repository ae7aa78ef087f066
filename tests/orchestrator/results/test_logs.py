"""The event stream: structlog events as JSON lines, with pgcache's log records in it."""

from __future__ import annotations

import io
import json
import logging

from orchestrator.results.logs import configure_events


class TestLibraryRecords:
    def test_pgcache_records_become_events(self) -> None:
        """A pgcache log record (INFO and up) is an event of the stream with its level and
        message; DEBUG records are left out; nothing reaches the root logger."""
        stream = io.StringIO()
        configure_events(stream, {"run_id": "r1", "backend": "b"})
        seen_by_root: list[logging.LogRecord] = []

        class Catch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen_by_root.append(record)

        root_catcher = Catch()
        logging.getLogger().addHandler(root_catcher)
        try:
            library = logging.getLogger("pgcache")
            library.warning("pgcache listener lost (%s)", "heartbeat failed")
            library.debug("not recorded")
        finally:
            logging.getLogger().removeHandler(root_catcher)
        events = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(e["event"], e["level"], e["run_id"]) for e in events] == [
            ("pgcache_log", "warning", "r1")]
        assert events[0]["data"]["message"] == "pgcache listener lost (heartbeat failed)"
        assert not seen_by_root
