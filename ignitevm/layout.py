"""Every file name of the state directory, in one place (docs/architecture.md "State directory").

No imports, no logic: the store, ops/, spawn/, vmm/ and network/ all ask this module where a
file of a VM, image or kernel directory lives. A file that is not named here does not exist.
"""

# --- every object directory (<state>/<kind>/<uid>/) --------------------------------------------
METADATA = "metadata.json"  # the API object, written atomically
META_LOCK = ".meta.lock"  # serializes metadata writers of one object

# --- the state directory's own files ------------------------------------------------------------
NAMES_LOCK = ".names.lock"  # in vm/, image/, kernel/: names and uids are claimed under it
TMP_LOCK = ".lock"  # in tmp/: a scratch directory is made and locked as one step (scratch.py)
IGNITED_DIR = "ignited"  # <owner key>.lock: one ignited per owner value and state directory


# Modes (docs/architecture.md "State directory"): a VM's or an image's directory can be
# traversed by others but not listed (0711), so metadata.json and runtime.json (0644) stay
# readable for `ps`/`inspect` by any user, while the files named PRIVATE below are 0600.
OBJECT_DIR_MODE = 0o711
SCRATCH_DIR_MODE = 0o700  # tmp/, cache/: image contents while imported


class ImageFiles:
    """``image/<uid>/``."""

    BASE = "image.ext4"  # the read-only base filesystem (label ignite-image), sparse
    PRIVATE = (BASE,)  # the image's files: secrets baked into an image stay root's


class KernelFiles:
    """``kernel/<uid>/``."""

    VMLINUX = "vmlinux"  # uncompressed ELF kernel (PVH boot)
    INITRD = "initrd.cpio"  # the kernel's base initramfs: busybox, modules, /init
    CONFIG = "config"  # the kernel's build config, when its source shipped one
    MODULES = "modules.ext4"  # the whole modules tree (label ignite-modules), read-only to VMs


class SnapshotFiles:
    """``snapshot/<uid>/``: a VM saved running (docs/snapshots.md)."""

    STATE = "state"  # the device state (QEMU's migration stream)
    MEMORY = "memory"  # the guest's RAM, sparse: only the pages it used
    LAYER = "layer.qcow2"  # the VM's disk layer, frozen (read-only from then on)
    SSH_KEY = "id_ed25519"  # the VM's key, for the VMs made from it (and .pub)
    DONE = "done"  # the supervisor finished saving (a crash before it: the snapshot is dropped)


class VMFiles:
    """``vm/<uid>/``: what create, start and the supervisor keep for one VM."""

    # disks (create)
    DISK = "disk.qcow2"  # qcow2 copy-on-write mode: the overlay over the image's base
    RW = "rw.ext4"  # overlay copy-on-write mode: the writable upper disk (label ignite-rw)
    # boot files (start)
    VM_LAYER = "vm-layer.cpio"  # this VM's files: hostname, keys, copy-files, /init
    INITRD = "initrd"  # the kernel's initramfs with the VM layer appended
    # SSH (create --ssh, exec/cp/ssh)
    SSH_KEY = "id_ed25519"  # and id_ed25519.pub
    SSH_PUBKEY = "id_ed25519.pub"
    KNOWN_HOSTS = "known_hosts"  # the VM's host key, pinned at the first connection
    SSH_CONTROL = "ssh.ctl"  # the shared SSH connection's socket while the VM runs
    SSH_LOCK = "ssh.lock"  # one opener of the shared connection at a time
    START_LOCK = "start.lock"  # one start at a time, from the check to the supervisor's lock
    # the supervisor's run
    PLAN = "launch.json"  # what to run (written by launch)
    RUNTIME = "runtime.json"  # the live record: pids, addresses, ports, network plugin
    LAST_RUN = "last-run.json"  # how the last run ended (restart policies read it)
    SUPERVISOR_LOG = "supervisor.log"  # the supervisor's and the VMM's stderr
    CONSOLE = "console.log"  # the serial console; rotated to console.log.1
    CONSOLE_OLD = "console.log.1"
    ATTACH_SOCKET = "attach.sock"  # ignite attach
    AGENT_SOCKET = "agent.sock"  # the guest agent, relayed by the supervisor
    CONTROL_SOCKET = "control.sock"  # requests to the supervisor: pause, unpause, save
    AGENT_LOCK = "agent.lock"  # one agent client at a time
    SNAPSHOT_PENDING = "snapshot.pending"  # a snapshot being made (finished or undone later)
    SNAPSHOT_LOCK = "snapshot.lock"  # held by `snapshot create` while it makes one
    SAVE_LOCK = "save.lock"  # held by the supervisor while it saves the machine
    NEXT_DISK = "disk.qcow2.next"  # the new top layer while the old one is frozen
    SUSPENDED_STATE = "suspend.state"  # ignite suspend: the device state, then
    SUSPENDED_MEMORY = "suspend.memory"  # the RAM (sparse); start resumes from both
    NETWORK = "network.json"  # the cni plugin's record: what DEL needs, the last address
    JAIL = "jail"  # the mount point of the jailed VMM's root (empty on the host)
    # the VMMs' own files
    QMP_SOCKET = "qmp.sock"  # QEMU
    FC_API_SOCKET = "firecracker.sock"  # Firecracker's API
    FC_LOG = "firecracker.log"
    FC_METRICS = "firecracker.metrics"
    # guest data, keys and what the guest printed: 0600 (the rest is metadata, 0644)
    PRIVATE = (DISK, RW, VM_LAYER, INITRD, SSH_KEY, PLAN, SUPERVISOR_LOG, CONSOLE, CONSOLE_OLD,
               SUSPENDED_STATE, SUSPENDED_MEMORY, FC_LOG, FC_METRICS)  # fmt: skip
