"""The deployment files of deploy/ checked with the tools that run them
(issue 18): the systemd unit with `systemd-analyze verify` (and its
exposure score from `systemd-analyze security`), the container image built
with podman from the binary under test and started until its health check
says healthy, and the Kubernetes manifests: their references checked
against each other and the configuration, then the pod they describe run
with podman as a kubelet would (the same mounts, environment, user,
read-only root and probes); and the compose stack (service, mosquitto,
simulator) brought up by podman-compose after deploy/compose/setup.sh.

Environment: HAZARDWATCH_BIN (the binary; default target/debug/hazardwatch).
A test whose tool is missing is skipped, unless HAZARDWATCH_REQUIRE_SYSTEMD
or HAZARDWATCH_REQUIRE_PODMAN (set by .ci/test, which installs them) says it
must run.

No image registry is reachable here, so the Containerfile's build stage (a
Rust image compiling the source) is not run: the test stands the binary
under test, laid out by the same deploy/container/rootfs.sh, in for it with
`--build-context build=DIR`; the broker image's Debian stage likewise gets
the host's mosquitto, laid out by deploy/compose/broker-rootfs.sh.
Everything after the build stages is the files as shipped.
"""

import os
import re
import tomllib
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

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


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image of deploy/container/Containerfile with the binary under
    test standing in for the build stage; removed at the end."""
    need("podman", "HAZARDWATCH_REQUIRE_PODMAN")
    need("runc", "HAZARDWATCH_REQUIRE_PODMAN")
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "build"
    subprocess.run(
        ["sh", str(DEPLOY / "container/rootfs.sh"), str(BIN), str(context / "out")], check=True
    )
    empty = tmp / "context"
    empty.mkdir()
    tag = f"localhost/hazardwatch-test:{uuid.uuid4().hex[:12]}"
    podman(
        "build", "-q", "--format", "docker", f"--build-context=build={context}",
        "-f", str(DEPLOY / "container/Containerfile"), "-t", tag, str(empty),
    )
    yield tag
    podman("rmi", "-f", tag, check=False)


def running(name):
    state = podman("inspect", name, "--format", "{{.State.Running}}", check=False)
    return state.stdout.strip() == "true"


def wait_for(name, check, seconds=60):
    """Runs `check` (a CompletedProcess maker) until it exits 0, the
    container `name` stops or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        done = check()
        if done.returncode == 0 or not running(name) or time.monotonic() > deadline:
            return done
        time.sleep(1)


def stop(name):
    """SIGTERM, as the runtime sends it: returns the exit code and the logs."""
    podman("stop", "-t", "60", name)
    code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
    return code, podman("logs", name).stdout


def test_the_container_image_starts_and_is_healthy(image):
    name = f"hazardwatch-test-{uuid.uuid4().hex[:12]}"
    config = podman(
        "image", "inspect", image, "--format", "{{.Config.User}}|{{.Config.Healthcheck.Test}}"
    ).stdout
    assert config.startswith("65532:65532|"), config
    assert "hazardwatch health" in config, config
    try:
        # The demo: the example park and its simulated gateways inside the
        # container, everything on the container's loopback.
        podman(
            "run", "-d", "--name", name, *limits(),
            "-e", "HAZARDWATCH_METRICS=127.0.0.1:9464",
            image, "demo", "--duration", "120",
            "--mqtt", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--console", "127.0.0.1:0",
        )
        check = wait_for(name, lambda: podman("healthcheck", "run", name, check=False))
        logs = podman("logs", name, check=False)
        assert check.returncode == 0, (check, logs.stdout, logs.stderr)
        status = podman("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip()
        assert status == "healthy", status
        # SIGTERM: an orderly stop, the archive sealed.
        code, logs = stop(name)
        assert code == "0", (code, logs)
        assert "readings ingested" in logs and "sealed Parquet files" in logs, logs
    finally:
        podman("rm", "-f", name, check=False)


KUBE = DEPLOY / "kubernetes"


def manifests():
    """The kustomization and its resources by kind."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    by_kind = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBE / resource).read_text()):
            by_kind[doc["kind"]] = doc
    return kustomization, by_kind


def generated(kustomization, kind, name):
    """The files a config map or secret generator of `name` takes."""
    key = {"ConfigMap": "configMapGenerator", "Secret": "secretGenerator"}[kind]
    for g in kustomization.get(key, []):
        if g["name"] == name:
            return [KUBE / f for f in g["files"]]
    raise AssertionError(f"no {key} named {name}")


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def test_the_kubernetes_manifests_fit_together_and_the_configuration():
    kustomization, k = manifests()
    sts, svc, pdb = k["StatefulSet"], k["Service"], k["PodDisruptionBudget"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (sts["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items(), (selector, labels)
    assert sts["spec"]["replicas"] == 1, "one writer of the log and the archive"
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    # The data directory is the claim's volume.
    assert claims == {mounts[env["HAZARDWATCH_DATA"]]}, (mounts, claims)
    # The configuration is the generated config map's file.
    config_path = Path(env["HAZARDWATCH_CONFIG"])
    volume = volumes[mounts[str(config_path.parent)]]
    files = generated(kustomization, "ConfigMap", volume["configMap"]["name"])
    assert config_path.name in {f.name for f in files}
    config = tomllib.loads((KUBE / config_path.name).read_text())
    # Every file the configuration names under a mounted secret is one of
    # the secret generator's files.
    secret_mount = next(p for p, n in mounts.items() if "secret" in volumes.get(n, {}))
    secret_files = {f.name for f in generated(
        kustomization, "Secret", volumes[mounts[secret_mount]]["secret"]["secretName"])}
    named = re.findall(r'"(/etc/hazardwatch/[^"]+)"', (KUBE / config_path.name).read_text())
    assert named, "the configuration names its secrets"
    for path in named:
        assert path.startswith(secret_mount + "/"), path
        assert path.rsplit("/", 1)[1] in secret_files, path
    # Each listener is a container port and a Service port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert sorted(ports.values()) == sorted(
        port_of(config[s]["listen"]) for s in ("mqtt", "grpc", "console")
    ), (ports, config)
    for p in svc["spec"]["ports"]:
        assert ports[p["targetPort"]] == p["port"], p
    # Probes run the image's binary; the pod runs as the image's user with
    # nothing it does not need.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"][:2] == ["/usr/local/bin/hazardwatch", "health"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532


def self_signed(dir):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=hazardwatch",
         "-addext", "subjectAltName=DNS:hazardwatch,DNS:localhost,IP:127.0.0.1",
         "-keyout", str(dir / "tls.key"), "-out", str(dir / "tls.crt")],
        check=True, capture_output=True,
    )


def test_the_kubernetes_pod_runs_as_described(image, tmp_path):
    """The StatefulSet's pod run by podman as a kubelet would run it: the
    config map and the secret mounted where the manifest mounts them (the
    secret's files readable by the pod's user, as defaultMode and fsGroup
    make them), a volume for the claim, its environment and arguments, its
    user, a read-only root; then its probes, run inside, must pass."""
    kustomization, k = manifests()
    pod = k["StatefulSet"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    args = []
    for name, path in mounts.items():
        volume = volumes.get(name)
        if volume is None:  # the claim
            data = tmp_path / "data"
            data.mkdir()
            os.chown(data, 65532, 65532)
            args += ["-v", f"{data}:{path}"]
            continue
        source = tmp_path / name
        source.mkdir()
        if "configMap" in volume:
            for f in generated(kustomization, "ConfigMap", volume["configMap"]["name"]):
                shutil.copy(f, source / f.name)
        else:
            self_signed(source)
            (source / "tokens.toml").write_text(
                '[[token]]\nname = "Park control room"\ntoken = "park-operator-0123456789"\n'
                'role = "operator"\nlevel = "park"\nenterprises = ["*"]\n'
            )
            want = {f.name for f in generated(kustomization, "Secret", volume["secret"]["secretName"])}
            assert {f.name for f in source.iterdir()} == want
        for f in source.iterdir():
            f.chmod(0o444)
        args += ["-v", f"{source}:{path}:ro"]
    user = pod["spec"]["securityContext"]
    name = f"hazardwatch-pod-{uuid.uuid4().hex[:12]}"
    env = [a for e in container["env"] for a in ("-e", f"{e['name']}={e['value']}")]
    try:
        podman(
            "run", "-d", "--name", name, *limits(), "--read-only",
            "--user", f"{user['runAsUser']}:{user['runAsGroup']}", "--cap-drop", "ALL",
            *args, *env, image, *container["args"],
        )
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = container[probe]["exec"]["command"]
            done = wait_for(name, lambda: podman("exec", name, *command, check=False))
            logs = podman("logs", name, check=False)
            assert done.returncode == 0, (probe, done, logs.stdout, logs.stderr)
        code, logs = stop(name)
        assert code == "0", (code, logs)
    finally:
        podman("rm", "-f", name, check=False)


COMPOSE = DEPLOY / "compose"


@pytest.fixture(scope="module")
def broker_image(tmp_path_factory):
    """The broker image of deploy/compose/broker.Containerfile with the
    host's mosquitto standing in for the Debian build stage."""
    need("podman", "HAZARDWATCH_REQUIRE_PODMAN")
    need("mosquitto_passwd", "HAZARDWATCH_REQUIRE_PODMAN")
    tmp = tmp_path_factory.mktemp("broker")
    subprocess.run(
        ["sh", str(COMPOSE / "broker-rootfs.sh"), str(tmp / "build/out")], check=True
    )
    empty = tmp / "context"
    empty.mkdir()
    tag = f"localhost/hazardwatch-broker-test:{uuid.uuid4().hex[:12]}"
    podman(
        "build", "-q", f"--build-context=build={tmp / 'build'}",
        "-f", str(COMPOSE / "broker.Containerfile"), "-t", tag, str(empty),
    )
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_compose_stack_ingests_from_the_external_broker(image, broker_image, tmp_path):
    """setup.sh, then compose.yaml as shipped with podman-compose: the
    service follows the simulator's readings through mosquitto (passwords
    and the generated ACL), is healthy, and stops in order."""
    compose_cmd = need("podman-compose", "HAZARDWATCH_REQUIRE_PODMAN")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work)
    (tmp_path / "config").mkdir()
    shutil.copy(DEPLOY / "config/demo-gateways.toml", tmp_path / "config")
    # podman as CI needs it (see `podman()`), for setup.sh and compose.
    conf = tmp_path / "containers.conf"
    ulimits = ", ".join(f'"{v}"' for v in limits()[1::2])
    conf.write_text(
        f'[containers]\ndefault_ulimits = [{ulimits}]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(conf),
        "HAZARDWATCH_IMAGE": image,
        "BROKER_IMAGE": broker_image,
        "GATEWAYS": str(tmp_path / "config/demo-gateways.toml"),
    }
    subprocess.run(["sh", str(work / "setup.sh")], check=True, env=env)
    toml = (work / "hazardwatch.toml").read_text()
    assert 'broker = "127.0.0.1:1883"' in toml and 'username = "hazardwatch"' in toml
    project = f"hw{uuid.uuid4().hex[:8]}"
    compose = [compose_cmd, "-p", project, "-f", str(work / "compose.yaml")]
    service = f"{project}_hazardwatch_1"
    try:
        up = subprocess.run([*compose, "up", "-d", "--no-build"], env=env,
                            capture_output=True, text=True)
        assert up.returncode == 0, (up.stdout, up.stderr)
        healthy = wait_for(service, lambda: podman("exec", service, "/usr/local/bin/hazardwatch",
                                                  "health", check=False), seconds=90)
        logs = podman("logs", service, check=False)
        assert healthy.returncode == 0, (healthy, logs.stdout, logs.stderr)
        # The simulator's readings through the broker: an incident comes at 20 s.
        time.sleep(30)
        simulated = podman("logs", f"{project}_simulator_1", check=False)
        broker = podman("logs", f"{project}_broker_1", check=False)
        code, logs = stop(service)
        assert code == "0", (code, logs)
        ingested = re.search(r"readings ingested (\d+)", logs)
        raised = re.search(r"alarms raised (\d+)", logs)
        why = (logs, simulated.stdout, simulated.stderr, broker.stderr)
        assert ingested and int(ingested.group(1)) > 100, why
        assert raised and int(raised.group(1)) > 0, why
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "10"], env=env, capture_output=True)
