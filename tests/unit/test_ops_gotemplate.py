"""Go text/template over Ignite's objects: Go field names, values printed as Go's fmt prints them
(Ignite's String() methods, structs, maps, slices, nil), the language's actions and functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ignitevm.api import VM, Image, Kernel, Size
from ignitevm.api.types import PortMapping, Runtime
from ignitevm.errors import ValidationError
from ignitevm.ops.gotemplate import compile_template


def render(template: str, obj: VM | Image | Kernel) -> str:
    return compile_template(template).render(obj)


@pytest.fixture
def vm() -> VM:
    vm = VM()
    vm.metadata.name = "web"
    vm.metadata.uid = "0123456789abcdef"
    vm.metadata.created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    vm.metadata.labels = {"testName": "T1", "app": "db"}
    vm.spec.image.oci = "ignitevm/default:latest"
    vm.spec.kernel.oci = "apt:linux-image-amd64"
    vm.spec.cpus = 2
    vm.spec.memory = "800MB"  # type: ignore[assignment]
    vm.spec.disk_size = "3GB"  # type: ignore[assignment]
    vm.spec.network.ports = [PortMapping(host_port=2222, vm_port=22)]
    vm.status.running = True
    vm.status.runtime = Runtime(name="docker")
    vm.status.network.plugin = "cni"
    vm.status.network.ip_addresses = ["10.61.0.5", "10.61.0.6"]
    vm.status.id_prefix = "ignite"
    return vm


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.ObjectMeta.Name}}", "web"),
        ("name: {{.ObjectMeta.Name}}, uid: {{.ObjectMeta.UID}}.",
         "name: web, uid: 0123456789abcdef."),
        ("{{.Name}} {{.UID}} {{.Kind}} {{.APIVersion}}",
         "web 0123456789abcdef VM ignite.weave.works/v1alpha4"),
        ("{{.Spec.Memory}} {{.Spec.DiskSize}} {{.Spec.CPUs}}", "800.0 MB 3.0 GB 2"),
        ("{{.Spec.Image.OCI}} {{.Spec.Kernel.OCI}}",
         "ignitevm/default:latest apt:linux-image-amd64"),
        ("{{.Spec.Sandbox.OCI}}", "weaveworks/ignite:v0.10.0"),
        ("{{.Status.Running}}", "true"),
        ("{{.Status.Runtime.Name}}", "docker"),
        # a struct: its fields in order, Go's zero values included (Runtime{ID: "", Name: docker})
        ("{{.Status.Runtime}}", "{ docker}"),
        # meta.IPAddresses and PortMappings have String(): the items joined by ", "
        ("{{.Status.Network.IPAddresses}}", "10.61.0.5, 10.61.0.6"),
        ("{{.Status.Network}}", "{cni 10.61.0.5, 10.61.0.6}"),
        ("{{.Status.Network.Plugin}}", "cni"),
        ("{{.Status.IPAddresses}}", "10.61.0.5, 10.61.0.6"),  # ignitevm's short form
        ("{{.Spec.Network.Ports}}", "0.0.0.0:2222->22/tcp"),
        ("{{range .Spec.Network.Ports}}{{.HostPort}}>{{.VMPort}}{{end}}", "2222>22"),
        # maps: map[k:v ...], keys sorted; a missing key
        ("{{.ObjectMeta.Labels}}", "map[app:db testName:T1]"),
        ("{{.ObjectMeta.Annotations}}", "map[]"),
        ('{{index .ObjectMeta.Labels "testName"}}', "T1"),
        ('[{{index .ObjectMeta.Labels "nope"}}]', "[]"),
        ("{{.ObjectMeta.Labels.app}}", "db"),
        ("{{.ObjectMeta.Labels.nope}}", "<no value>"),
        # nil pointers; slices
        ("{{.Spec.SSH}} {{.Status.StartTime}}", "<nil> <nil>"),
        ("{{.Spec.CopyFiles}} {{.Status.Image.ID}}", "[] <nil>"),
        ("{{.ObjectMeta.Created}}", "2024-01-02 03:04:05 +0000 UTC"),
        ("{{.Status.IDPrefix}}", "ignite"),
        # a Size inside a struct prints as fmt prints a copy: {3GB}
        ("{{.Spec.Kernel}}|{{.Status.Image}}", "{apt:linux-image-amd64 }|{<nil> {0B}}"),
        ("{{.Spec.Storage}}", "{[] []}"),
    ],
)  # fmt: skip
def test_values_print_as_go_prints_them(vm: VM, template: str, expected: str) -> None:
    assert render(template, vm) == expected


def test_whole_objects_print_as_go_structs(vm: VM) -> None:
    assert render("{{.Spec}}", vm) == (
        "{{ignitevm/default:latest} {weaveworks/ignite:v0.10.0} {apt:linux-image-amd64 } 2 "
        "{800MB} {3GB} {0.0.0.0:2222->22/tcp} {[] []} [] <nil>}"
    )
    # Go would print the addresses of the pointer fields (Runtime, Network): ignitevm &{...}
    assert render("{{.Status}}", vm) == (
        "{true &{ docker} <nil> &{cni 10.61.0.5, 10.61.0.6} {<nil> {0B}} {<nil> {0B}} ignite}"
    )
    assert render("{{.}}", vm).startswith("{{VM ignite.weave.works/v1alpha4} {web 0123456789abcdef")


def test_ssh_and_runtime_set_or_not(vm: VM) -> None:
    vm.spec.ssh = True
    assert render("{{.Spec.SSH}} {{.Spec.SSH.Generate}}", vm) == "{true } true"
    vm.spec.ssh = "/keys/id.pub"
    assert render("{{.Spec.SSH.PublicKey}}", vm) == "/keys/id.pub"
    vm.status.runtime = None
    assert render("{{.Status.Runtime}}", vm) == "<nil>"
    with pytest.raises(ValidationError, match=r"nil pointer evaluating \*Runtime.Name"):
        render("{{.Status.Runtime.Name}}", vm)


def test_image_and_kernel() -> None:
    image = Image()
    image.metadata.name = "ignitevm/default:latest"
    image.spec.oci = "ignitevm/default:latest"
    image.status.oci_source.id = "oci://docker.io/library/alpine@sha256:abcd"
    image.status.oci_source.size = Size.parse("5MB")
    image.status.digest = "sha256:1234"
    assert render("{{.Spec.OCI}} {{.Status.OCISource.ID}} {{.Status.OCISource.Size}}", image) == (
        "ignitevm/default:latest docker.io/library/alpine@sha256:abcd 5.0 MB"
    )
    assert render("{{.Status}} {{.Status.Digest}}", image) == (
        "{{docker.io/library/alpine@sha256:abcd {5MB}}} sha256:1234"
    )
    kernel = Kernel()
    kernel.status.version = "6.1.0-18-amd64"
    kernel.status.oci_source.id = "docker://sha256:ef01"
    assert render("{{.Kind}} {{.Status.Version}} {{.Status.OCISource.ID}}", kernel) == (
        "Kernel 6.1.0-18-amd64 sha256:ef01"
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{if .Status.Running}}up{{else}}down{{end}}", "up"),
        ("{{if not .Status.Running}}down{{else if .Spec.SSH}}ssh{{else}}up{{end}}", "up"),
        ("{{with .Status.Runtime}}{{.Name}}{{else}}none{{end}}", "docker"),
        ("{{range .Status.Network.IPAddresses}}<{{.}}>{{end}}", "<10.61.0.5><10.61.0.6>"),
        ("{{range .ObjectMeta.Labels}}{{.}},{{end}}", "db,T1,"),
        ("{{range .Spec.CopyFiles}}x{{else}}none{{end}}", "none"),
        ("{{range .Status.Network.IPAddresses}}{{$.ObjectMeta.Name}} {{end}}", "web web "),
        ("a {{- .Name -}} b\n{{- /* a comment */ -}}\n c", "awebbc"),
        ('{{if eq .Name "db" "web"}}yes{{end}}', "yes"),
        ('{{if ne .Spec.CPUs 2}}no{{else}}two{{end}}', "two"),
        ("{{if and .Status.Running (gt .Spec.CPUs 1)}}big{{end}}", "big"),
        ('{{or .Spec.Kernel.CmdLine "default"}}', "default"),
        ("{{len .ObjectMeta.Labels}} {{len .Status.Network.IPAddresses}}", "2 2"),
        ('{{printf "%s has %d vCPUs, %v, %q" .Name .Spec.CPUs .Status.Running .Name}}',
         'web has 2 vCPUs, true, "web"'),
        ('{{printf "%-5s|%5s|%03d" .Name .Name .Spec.CPUs}}', "web  |  web|002"),
        ('{{printf "%d" .Name}} {{printf "%s"}} {{printf "x" 1}}',
         "%!d(string=web) %!s(MISSING) x%!(EXTRA int=1)"),
        ("{{.Name | printf \"[%s]\"}}", "[web]"),
        ('{{print .Name 1 2 "x" .Spec.Memory}}', "web1 2x{800MB}"),
        ("{{println .Name .Spec.CPUs}}", "web 2\n"),
        ("{{(index .ObjectMeta.Labels \"app\")}}", "db"),
        ("{{.spec.cpus}} {{.metadata.name}}", "2 web"),  # JSON names: case forgiven
    ],
)  # fmt: skip
def test_actions_and_functions(vm: VM, template: str, expected: str) -> None:
    assert render(template, vm) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Spec.Colour}}", "can't evaluate field Colour in type VMSpec"),
        ("{{.ObjectMeta.Name.First}}", "can't evaluate field First in type string"),
        ("{{.Name", "unclosed action"),
        ("{{if .Name}}x", "missing {{end}}"),
        ("x{{end}}", "unexpected {{end}}"),
        ("{{json .}}", 'function "json" not defined'),
        ("{{$x := .Name}}", "variables are not supported"),
        ("{{.Name 1}}", "can't give argument to non-function .Name"),
        ("{{index .Spec 1}}", "can't index item of type VMSpec"),
        ('{{define "x"}}{{end}}', "is not supported"),
        ("{{}}", "missing value for command"),
        ('{{eq .Spec.CPUs "2"}}', "incompatible types for comparison"),
    ],
)
def test_errors_name_the_problem(vm: VM, template: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        render(template, vm)
    assert message in err.value.message
    assert template in err.value.message


def test_unknown_field_hint_lists_the_fields(vm: VM) -> None:
    with pytest.raises(ValidationError) as err:
        render("{{.Status.Foo}}", vm)
    assert err.value.hint is not None
    assert "Running, Runtime, StartTime, Network, Image, Kernel, IDPrefix" in err.value.hint
