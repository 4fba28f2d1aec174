"""Ignite's e2e command lines (weaveworks/ignite e2e/*.go) for issue 14 items 4-8 and the cp
half of issue 10, run as Ignite's tests run them, against the real CLI, QEMU, CNI and
docker-registry.

What stands in for what Ignite's e2e had, each the nearest thing here:
- the image ``weaveworks/ignite-ubuntu`` (and ``weaveworks/ignite-kernel``): the default image,
  ``ignitevm/default:latest`` (no Docker Hub here);
- ``docker exec ignite-<uid> CMD`` (into the VM's sandbox container): ``ip netns exec
  ignite-<uid> CMD`` (into the VM's network namespace, which has the same name);
- the registries at 127.5.0.1:5080 (HTTP) and 127.5.0.1:5443 (HTTPS): the same address, free
  ports; ``util.RmiCompletely``: ``ignite image rm``;
- ``/etc/ignite/config.yaml``: ``--ignite-config`` of the session's configuration (its kernel),
  given first on every line; the CLI runs in a network namespace the test owns (its CNI bridge
  and iptables rules live and die there, tests/integration/test_access.py ``NetHost``).

Lines that use Ignite's global flags around a command (``--runtime=docker run``,
``image import X --runtime containerd``), ``ps --template`` or ``--sandbox-image`` need the CLI
of branch issue9-cli; where the CLI lacks them those tests are skipped, saying so.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Ignite
from tests.integration.fixtures_registry import (
    BuiltImage,
    built_image,
    require_root_and_tools,
    run_registry,
)
from tests.integration.test_access import NetHost, nethost

__all__ = ["built_image", "nethost"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins"),
]

IMAGE = "ignitevm/default:latest"  # util.DefaultVMImage, weaveworks/ignite-ubuntu


class E2E:
    """`ignite` as Ignite's e2e helper runs it (util.Command), from the test's host namespace."""

    def __init__(self, host: NetHost, config: Path, env: dict[str, str] | None = None,
                 *, in_host_ns: bool = True) -> None:  # fmt: skip
        self.host, self.config, self.env = host, config, env or {}
        # False: in the real root namespace (the registries listen on its loopback)
        self.in_host_ns = in_host_ns

    def __call__(
        self, *args: str, config: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        glob = ["--ignite-config", str(self.config)] if config else []
        variables = {
            "IGNITE_STATE_DIR": str(self.host.ignite.state_dir),
            "IGNITE_CNI_CONF_DIR": str(self.host.data_dir.parent / "net.d"),
            **self.env,
            **(env or {}),
        }
        enter = ["nsenter", f"--net=/run/netns/{self.host.ns}"] if self.in_host_ns else []
        argv = [*enter, "env",
                *(f"{k}={v}" for k, v in variables.items()),
                sys.executable, "-m", "ignitevm.cli", *glob, *args]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)

    def run(self, *args: str, **kw: object) -> str:
        """util.Command.Run(): the command must succeed."""
        done = self(*args, **kw)  # type: ignore[arg-type]
        assert done.returncode == 0, f"ignite {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _config(ignite: Ignite, tmp_path: Path, **spec: str) -> Path:
    """The session's configuration (its kernel) with networkPlugin cni and ``spec`` added."""
    text = ignite.config.read_text().replace("networkPlugin: none", "networkPlugin: cni")
    for key, value in spec.items():
        text = text.replace("spec:\n", f"spec:\n  {key}: {value}\n", 1)
    path = tmp_path / f"config-{secrets.token_hex(3)}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def e2e(nethost: NetHost, tmp_path: Path) -> E2E:
    return E2E(nethost, _config(nethost.ignite, tmp_path))


def _supports(e2e: E2E, *probe: str) -> bool:
    return e2e(*probe).returncode == 0


def needs_globals(e2e: E2E) -> None:
    if not _supports(e2e, "--runtime=docker", "--network-plugin=docker-bridge", "version"):
        pytest.skip("needs Ignite's global flags before/after commands (branch issue9-cli)")
    if not _supports(e2e, "ps", "--template={{.ObjectMeta.UID}}"):
        pytest.skip("needs ps --template (branch issue9-cli)")


def needs_issue9_cli(e2e: E2E, what: str) -> None:
    """``run --ssh IMAGE`` (--ssh takes a value only after '=') came with issue9-cli's parser,
    as ps --template did: the probe."""
    if not _supports(e2e, "ps", "--template={{.ObjectMeta.UID}}"):
        pytest.skip(f"needs {what} (branch issue9-cli)")


@pytest.fixture
def with_globals(e2e: E2E) -> None:
    needs_globals(e2e)


def in_sandbox(uid: str, *argv: str) -> None:
    """`docker exec ignite-<uid> ARGV`: here the VM's network namespace."""
    subprocess.run(["ip", "netns", "exec", f"ignite-{uid}", *argv], check=True, timeout=30)


# --- e2e/multinet_test.go ------------------------------------------------------------------


MULTINET_VM = """---
apiVersion: ignite.weave.works/v1alpha4
kind: VM
metadata:
  name: {name}
  annotations:
    "ignite.weave.works/interface/foo": "tc-redirect"
    "ignite.weave.works/interface/bar": "tc-redirect"
spec:
  image:
    oci: {image}
  cpus: 1
  diskSize: 3GB
  memory: 800MB
  ssh: true
"""


def test_multiple_interface_implicit(e2e: E2E, tmp_path: Path) -> None:
    """TestMultipleInterfaceImplicit (TestMultipleInterface is its first part): run with
    --wait=false, then make foo, bar and baz in the VM's namespace with their MACs; the guest
    has bar as eth1, foo as eth2 (sorted), and no eth3 (baz is not annotated)."""
    needs_globals(e2e)
    vm_name = f"e2e-test-vm-multinet-{secrets.token_hex(2)}"
    vm_config_path = tmp_path / "my-vm.yaml"
    vm_config_path.write_text(MULTINET_VM.format(name=vm_name, image=IMAGE))
    try:
        e2e.run("--runtime=docker", "--network-plugin=docker-bridge", "run", "--ssh",
                "--wait=false", f"--config={vm_config_path}")  # fmt: skip
        vm_id = e2e.run("ps", "--filter", f"{{{{.ObjectMeta.Name}}}}={vm_name}",
                        "--template={{.ObjectMeta.UID}}").strip()  # fmt: skip
        assert len(vm_id) == 16, vm_id
        foo_addr, bar_addr, baz_addr = "aa:ca:e9:12:34:56", "aa:ca:e9:12:34:78", "aa:ca:e9:12:34:90"
        for name, addr in (("foo", foo_addr), ("bar", bar_addr), ("baz", baz_addr)):
            in_sandbox(vm_id, "ip", "link", "add", name, "type", "veth")
            in_sandbox(vm_id, "ip", "link", "set", name, "address", addr)
        eth1 = e2e("exec", vm_name, "cat", "/sys/class/net/eth1/address")
        assert bar_addr in eth1.stdout, eth1.stdout + eth1.stderr
        eth2 = e2e("exec", vm_name, "cat", "/sys/class/net/eth2/address")
        assert foo_addr in eth2.stdout, eth2.stdout + eth2.stderr
        eth3 = e2e("exec", vm_name, "cat", "/sys/class/net/eth3/address")
        assert eth3.returncode == 1  # Ignite: "exit status 1"
        # the VM's record says what runs: cni, Ignite's docker-bridge's nearest plugin
        assert json.loads(e2e.run("inspect", "vm", vm_name))["status"]["network"]["plugin"] == "cni"
    finally:
        e2e("rm", "-f", vm_name)


# --- e2e/run_test.go and e2e/config_test.go ------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "network_plugin"), [("docker", "docker-bridge"), ("containerd", "cni")]
)
def test_ignite_run_with_runtime_and_network_plugin(
    e2e: E2E, runtime: str, network_plugin: str
) -> None:
    """runWithRuntimeAndNetworkPlugin: TestIgniteRunWithDockerAndDockerBridge,
    TestIgniteRunWithContainerdAndCNI."""
    needs_globals(e2e)
    vm_name = f"e2e-test-ignite-run-{runtime}-and-{network_plugin}-{secrets.token_hex(2)}"
    try:
        e2e.run(f"--runtime={runtime}", f"--network-plugin={network_plugin}", "run",
                f"--name={vm_name}", IMAGE)  # fmt: skip
        status = json.loads(e2e.run("inspect", "vm", vm_name))["status"]
        assert status["running"] and status["network"]["plugin"] == "cni"
        assert status["network"]["ipAddresses"]
    finally:
        e2e.run("rm", "-f", vm_name)


def test_config_file_runtime_and_network_config(e2e: E2E, tmp_path: Path) -> None:
    """TestConfigFile, case "runtime and network config": networkPlugin docker-bridge in the
    configuration runs the VM (on cni) instead of failing."""
    needs_globals(e2e)
    file = _config(e2e.host.ignite, tmp_path, runtime="docker", networkPlugin="docker-bridge")
    file.write_text(file.read_text().replace("  networkPlugin: cni\n", ""))
    vm_name = f"e2e_test_ignite_config_file_{secrets.token_hex(2)}"
    try:
        e2e.run("run", f"--name={vm_name}", IMAGE, f"--ignite-config={file}",
                "--sandbox-image=weaveworks/ignite:dev", config=False)  # fmt: skip
        ps = e2e.run("ps", f"--filter={{{{.ObjectMeta.Name}}}}={vm_name}",
                     "--template='{{.Spec.Memory}} {{.Spec.CPUs}} {{.Spec.DiskSize}}'")  # fmt: skip
        assert ps.strip() == "'512.0 MB 1 4.0 GB'"
    finally:
        e2e("rm", "-f", vm_name, f"--ignite-config={file}", config=False)


# --- the id prefix (Ignite's --id-prefix / spec.idPrefix) and --wait=false ----------------


def test_id_prefix_names_the_namespace_and_teardown_follows_the_record(
    nethost: NetHost, tmp_path: Path
) -> None:
    """A VM created with idPrefix e2e-lab has the namespace e2e-lab-<uid>; `rm -f` under a
    configuration with the default prefix (and, with issue9-cli, --id-prefix=other) still
    removes it, as the prefix was recorded at create."""
    lab = E2E(nethost, _config(nethost.ignite, tmp_path, idPrefix="e2e-lab"))
    plain = E2E(nethost, _config(nethost.ignite, tmp_path))
    vm_name = f"e2e-test-id-prefix-{secrets.token_hex(2)}"
    try:
        lab.run("run", f"--name={vm_name}", IMAGE)
        vm = json.loads(plain.run("inspect", "vm", vm_name))
        uid = vm["metadata"]["uid"]
        assert vm["status"]["idPrefix"] == "e2e-lab"
        assert Path("/run/netns", f"e2e-lab-{uid}").exists()
        assert not Path("/run/netns", f"ignite-{uid}").exists()
        stopped = plain("--id-prefix=other", "stop", vm_name)
        if stopped.returncode != 0:  # no global --id-prefix without issue9-cli
            plain.run("stop", vm_name)
        assert not Path("/run/netns", f"e2e-lab-{uid}").exists()
        bad = E2E(nethost, _config(nethost.ignite, tmp_path, idPrefix="Bad_Prefix"))
        refused = bad("create", f"--name={vm_name}-bad", IMAGE)
        assert refused.returncode != 0 and "invalid id prefix" in refused.stderr
    finally:
        plain("rm", "-f", vm_name)


def test_run_wait_false_returns_before_the_boot(e2e: E2E) -> None:
    vm_name = f"e2e-test-wait-false-{secrets.token_hex(2)}"
    try:
        e2e.run("run", f"--name={vm_name}", "--ssh", "--wait=false", IMAGE)
        # exec waits for sshd (Ignite's exec --timeout); the guest had no time to boot before
        assert e2e.run("exec", vm_name, "echo", "up").strip() == "up"
        e2e.run("stop", vm_name)
        e2e.run("start", vm_name, "--wait=false")
        assert e2e.run("exec", vm_name, "true") == ""
    finally:
        e2e("rm", "-f", vm_name)


# --- e2e/cp_test.go ------------------------------------------------------------------------


def test_copy_files_and_directories(e2e: E2E, tmp_path: Path) -> None:
    """cp_test.go's cases on one VM: TestCopyFileFromHostToVM (with content and empty),
    TestCopySymlinkedFileFromHostToVM, TestCopyFileFromVMToHost (/proc/version),
    TestCopyDirectoryFromHostToVM, TestCopyDirectoryFromVMToHost."""
    needs_issue9_cli(e2e, "run --name=X --ssh IMAGE (--ssh without a value)")
    vm_name = f"e2e-test-copy-{secrets.token_hex(2)}"
    try:
        e2e.run("run", f"--name={vm_name}", "--ssh", IMAGE)
        for content in (b"some example file content", b""):
            file = tmp_path / f"ignite-cp-test{len(content)}"
            file.write_bytes(content)
            e2e.run("cp", str(file), f"{vm_name}:{file}")
            assert e2e.run("exec", vm_name, "cat", str(file)) == content.decode()

        target = tmp_path / "ignite-symlink-cp-test"
        target.write_bytes(b"Some file content.")
        new_name = Path(f"{target}-link")
        new_name.symlink_to(target)
        e2e.run("cp", str(new_name), f"{vm_name}:{new_name}")
        assert e2e.run("exec", vm_name, "cat", str(new_name)) == "Some file content."

        cat_out = e2e.run("exec", vm_name, "cat", "/proc/version")
        host_file_path = tmp_path / "ignite-os-version"
        e2e.run("cp", f"{vm_name}:/proc/version", str(host_file_path))
        assert host_file_path.read_text().strip() == cat_out.strip() != ""

        source = tmp_path / "ignite-cp-dir-test"
        source.mkdir()
        (source / "ignite-cp-file").write_bytes(b"some file content")
        e2e.run("cp", str(source), f"{vm_name}:{source}")
        found = e2e.run("exec", vm_name, f"find {source.parent} -type d -name {source.name}")
        assert found.strip() == str(source)
        assert (
            e2e.run("exec", vm_name, "cat", str(source / "ignite-cp-file")) == "some file content"
        )

        dir_path = f"/tmp/ignite-cp-dir-test{secrets.randbelow(10000)}"
        e2e.run("exec", vm_name, f"mkdir -p {dir_path}")
        e2e.run("exec", vm_name, f"echo some content on VM > {dir_path}/ignite-cp-file")
        host_dir = tmp_path / Path(dir_path).name  # Ignite copies to the same path on the host
        e2e.run("cp", f"{vm_name}:{dir_path}", str(host_dir))
        assert (host_dir / "ignite-cp-file").read_text().strip() == "some content on VM"
    finally:
        e2e("rm", "-f", vm_name)


# --- e2e/registry_auth_test.go -------------------------------------------------------------


@pytest.fixture
def registries(
    tmp_path_factory: pytest.TempPathFactory, built_image: BuiltImage
) -> Iterator[tuple[str, str]]:
    """Ignite's setup-private-registry.sh: an HTTP and an HTTPS (self-signed) registry with
    htpasswd on 127.5.0.1, the test images pushed to both: (http host, https host)."""
    require_root_and_tools("docker-registry", "htpasswd", "skopeo", "openssl")
    base = tmp_path_factory.mktemp("e2e-registries")
    (base / "http").mkdir()
    (base / "https").mkdir()
    with (
        run_registry(base / "http", auth=True, ip="127.5.0.1") as http,
        run_registry(base / "https", auth=True, tls=True, ip="127.5.0.1") as https,
    ):
        for reg in (http, https):
            for repo in ("weaveworks/ignite-ubuntu:test", "weaveworks/ignite-kernel:test"):
                reg.push(f"oci:{built_image.layout}:test", repo)
        yield http.host, https.host


def test_pull_from_auth_registry(
    e2e: E2E, with_globals: None, registries: tuple[str, str], tmp_path: Path
) -> None:
    e2e = E2E(e2e.host, e2e.config, in_host_ns=False)  # the registries are on the host's lo
    http, https = registries
    env = {"IGNITE_CONTAINERD_INSECURE_REGISTRIES": f"http://{http},https://{https}",
           "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}  # fmt: skip
    empty_dir, cc_dir = tmp_path / "empty", tmp_path / "cc"
    empty_dir.mkdir()
    cc_dir.mkdir()
    auth = base64.b64encode(b"ignite:s3cret-pw").decode()
    (cc_dir / "config.json").write_text(json.dumps({"auths": {
        f"http://{http}": {"auth": auth}, f"https://{https}": {"auth": auth}}}))  # fmt: skip
    ignite_config = tmp_path / "ignite-config-file-test"
    ignite_config.write_text(
        "---\napiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n"
        f"metadata:\n  name: test-config\nspec:\n  clientConfigDir: {cc_dir}\n"
    )
    cases = [  # (client config flag, ignite config, want error)
        ("", False, True), (str(cc_dir), False, False), ("", True, False),
        (str(empty_dir), True, True), (str(empty_dir), False, True),
    ]  # fmt: skip
    for host in (http, https):
        for runtime in ("containerd", "docker"):
            for flag, with_config, want_err in cases:
                args = ["--runtime", runtime]
                args += ["--client-config-dir", flag] if flag else []
                args += ["--ignite-config", str(ignite_config)] if with_config else []
                for image in ("weaveworks/ignite-ubuntu:test", "weaveworks/ignite-kernel:test"):
                    e2e("image", "rm", f"{host}/{image}", env=env)
                    done = e2e("image", "import", f"{host}/{image}", *args, env=env,
                               config=not with_config)  # fmt: skip
                    assert (done.returncode != 0) == want_err, (host, runtime, flag, done.stderr)
                    if want_err:
                        assert "authentication" in done.stderr or "credentials" in done.stderr
