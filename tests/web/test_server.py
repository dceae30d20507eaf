"""`web.serve` under waitress: it serves, and SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from tests.servers import free_port, wait_for_port

SERVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from helpdesk.core.db import make_engine, make_sessionmaker, upgrade
    from helpdesk.core.settings import Settings
    from helpdesk.web import create_app, serve

    data = Path(sys.argv[1])
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'h.sqlite3'}", secret_key="x")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    serve(create_app(settings, make_sessionmaker(engine)), "127.0.0.1", int(sys.argv[2]))
    print("stopped cleanly", flush=True)
    """
)


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path), str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, alive=lambda: process.poll() is None)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out
