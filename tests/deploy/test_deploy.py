"""The deployment files of deploy/ checked with the tools that run them
(issue 18): the systemd unit with `systemd-analyze verify` (and its
exposure score from `systemd-analyze security`), the container image built
with podman from the binary under test and started until its health check
says healthy.

Environment: HAZARDWATCH_BIN (the binary; default target/debug/hazardwatch).
A test whose tool is missing is skipped, unless HAZARDWATCH_REQUIRE_SYSTEMD
or HAZARDWATCH_REQUIRE_PODMAN (set by .ci/test, which installs them) says it
must run.

No image registry is reachable here, so the Containerfile's build stage (a
Rust image compiling the source) is not run: the test stands the binary
under test, laid out by the same deploy/container/rootfs.sh, in for it with
`--build-context build=DIR`. Everything after the build stage is the file
as shipped.
"""

import os
import re
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(os.environ.get("HAZARDWATCH_BIN", ROOT / "target/debug/hazardwatch"))


def need(tool, require_env):
    """The tool's path; skip (or fail, when `require_env` is set) without it."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get(require_env) == "1":
            pytest.fail(f"{tool} is not installed and {require_env}=1")
        pytest.skip(f"{tool} is not installed ({require_env}=1 makes this a failure)")
    return path


def systemd_root(tmp_path):
    """A file system root holding the unit as installed, the binary at its
    ExecStart path, /bin/kill (ExecReload) and systemd's own units."""
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copy2(BIN, root / "usr/local/bin/hazardwatch")
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "bin/kill")
    shutil.copy2(DEPLOY / "systemd/hazardwatch.service", root / "etc/systemd/system/")
    return root


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path):
    analyze = need("systemd-analyze", "HAZARDWATCH_REQUIRE_SYSTEMD")
    root = systemd_root(tmp_path)
    unit = "/etc/systemd/system/hazardwatch.service"
    verify = subprocess.run(
        [analyze, "verify", f"--root={root}", unit], capture_output=True, text=True
    )
    # Any warning (an unknown key, a missing command) fails it too.
    assert verify.returncode == 0 and not verify.stdout and not verify.stderr, verify
    security = subprocess.run(
        [analyze, "security", "--offline=true", f"--root={root}", unit],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for hazardwatch.service: ([0-9.]+)", security.stdout)
    assert found, security
    exposure = float(found.group(1))
    print(f"\nsystemd-analyze security: exposure {exposure} (0 safest, 10 unprotected)")
    assert exposure <= 2.0, security.stdout


def test_the_units_user_is_declared_for_sysusers(tmp_path):
    sysusers = need("systemd-sysusers", "HAZARDWATCH_REQUIRE_SYSTEMD")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = DEPLOY / "systemd/hazardwatch.sysusers"
    done = subprocess.run(
        [sysusers, f"--root={root}", str(conf)], capture_output=True, text=True
    )
    assert done.returncode == 0, done
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^hazardwatch:x:\d+:\d+:.*:/var/lib/hazardwatch:", passwd, re.M), passwd
    unit = (DEPLOY / "systemd/hazardwatch.service").read_text()
    assert "User=hazardwatch" in unit and "StateDirectory=hazardwatch" in unit


def podman(*args, check=True, **kw):
    """podman with the OCI runtime and cgroup manager that work inside a
    container (as CI is); on a host either would do."""
    cmd = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, **kw)


def limits():
    """Resource limits for the container, at most the hard limits here
    (podman's defaults exceed them inside a container)."""
    out = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        n = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        out += ["--ulimit", f"{name}={n}:{n}"]
    return out


def test_the_container_image_starts_and_is_healthy(tmp_path):
    need("podman", "HAZARDWATCH_REQUIRE_PODMAN")
    need("runc", "HAZARDWATCH_REQUIRE_PODMAN")
    context = tmp_path / "build"
    subprocess.run(
        ["sh", str(DEPLOY / "container/rootfs.sh"), str(BIN), str(context / "out")], check=True
    )
    empty = tmp_path / "context"
    empty.mkdir()
    tag = f"localhost/hazardwatch-test:{uuid.uuid4().hex[:12]}"
    name = f"hazardwatch-test-{uuid.uuid4().hex[:12]}"
    podman(
        "build", "-q", "--format", "docker", f"--build-context=build={context}",
        "-f", str(DEPLOY / "container/Containerfile"), "-t", tag, str(empty),
    )
    try:
        config = podman("image", "inspect", tag, "--format", "{{.Config.User}}|{{.Config.Healthcheck.Test}}").stdout
        assert config.startswith("65532:65532|"), config
        assert "hazardwatch health" in config, config
        # The demo: the example park and its simulated gateways inside the
        # container, everything on the container's loopback.
        podman(
            "run", "-d", "--name", name, *limits(),
            "-e", "HAZARDWATCH_METRICS=127.0.0.1:9464",
            tag, "demo", "--duration", "120",
            "--mqtt", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--console", "127.0.0.1:0",
        )
        deadline = time.monotonic() + 60
        while True:
            check = podman("healthcheck", "run", name, check=False)
            if check.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        logs = podman("logs", name, check=False)
        assert check.returncode == 0, (check, logs.stdout, logs.stderr)
        status = podman("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip()
        assert status == "healthy", status
        # SIGTERM: an orderly stop, the archive sealed.
        podman("stop", "-t", "60", name)
        code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        logs = podman("logs", name).stdout
        assert code == "0", (code, logs)
        assert "readings ingested" in logs and "sealed Parquet files" in logs, logs
    finally:
        podman("rm", "-f", name, check=False)
        podman("rmi", "-f", tag, check=False)
