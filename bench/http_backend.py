"""`git http-backend` as CGI behind Python's HTTP server: the baseline the git benchmarks beat."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.api_node import free_port


def start_http_backend(root: Path, bare: Path, *, push: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """Serve `bare` from a CGI server under `root`; (process, the repository's URL).

    Python's CGI server runs scripts as `nobody` when started as root, so the tree is
    opened to everyone (it lives in a throwaway directory). Server errors go to
    `root/cgi.log`.
    """
    cgi_root = root / "cgi"
    (cgi_root / "cgi-bin").mkdir(parents=True)
    script = cgi_root / "cgi-bin" / "git"
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    lines = [
        "#!/bin/sh",
        f"export GIT_PROJECT_ROOT={bare.parent}",
        "export GIT_HTTP_EXPORT_ALL=1",
        "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'",
    ]
    if push:
        lines += [
            "export REMOTE_USER=bench",
            "export GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_1=http.receivepack GIT_CONFIG_VALUE_1=true",
        ]
    lines.append(f"exec {exec_path.stdout.strip()}/git-http-backend")
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    for path in (root, bare.parent):
        subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--cgi", "--bind", "127.0.0.1", str(port)],
        cwd=cgi_root,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "cgi.log", "wb"),  # noqa: SIM115 - kept open for the server's life
    )
    time.sleep(1.0)
    return proc, f"http://127.0.0.1:{port}/cgi-bin/git/{bare.name}"
