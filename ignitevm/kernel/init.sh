#!/bin/busybox sh
# ignitevm initramfs /init: load modules, find the disks by label, assemble the root, grow it,
# configure the network, apply per-VM files and switch_root into the image's init.
# The contract (command line, per-VM files, console markers) is docs/internals.md; details in
# docs/kernel.md. Sourced with IGNITEVM_INIT_LIB=1 it only defines its functions (unit tests).

PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

NEWROOT=/newroot
MARKER=/var/lib/ignitevm/firstboot-done
DISK_WAIT_TENTHS=${IGNITE_DISK_WAIT_TENTHS:-100}

say() {
    # The console is the contract (the kernel may be quiet): write markers to it directly.
    if [ -c /dev/console ]; then echo "ignitevm-init: $*" >/dev/console 2>/dev/null || echo "ignitevm-init: $*"
    else echo "ignitevm-init: $*"; fi
}

# step NAME: with ignite.debug, the guest's uptime as each step of /init begins (where a boot's
# time goes; a builtin read, so it costs nothing measurable).
step() {
    [ -n "$IGNITE_DEBUG" ] || return 0
    read -r up _ </proc/uptime
    say "$up s: $1"
}

fatal() {
    say "FATAL $*"
    if [ -n "$IGNITE_DEBUG" ]; then
        say "ignite.debug: starting a shell on the console; exit it to power off"
        setsid cttyhack sh </dev/console >/dev/console 2>&1 || sh
    fi
    sync
    poweroff -f
    exit 1
}

# parse_cmdline WORDS...: sets IGNITE_COW IGNITE_IP IGNITE_HOSTNAME IGNITE_INIT IGNITE_DEBUG
# IGNITE_NICS (the ignite.nic= values, space separated).
parse_cmdline() {
    for word in "$@"; do
        case "$word" in
            ignite.cow=*) IGNITE_COW=${word#ignite.cow=} ;;
            ip=*) IGNITE_IP=${word#ip=} ;;
            ignite.hostname=*) IGNITE_HOSTNAME=${word#ignite.hostname=} ;;
            init=*) IGNITE_INIT=${word#init=} ;;
            ignite.debug|ignite.debug=1) IGNITE_DEBUG=1 ;;
            ignite.nic=*) IGNITE_NICS="${IGNITE_NICS:+$IGNITE_NICS }${word#ignite.nic=}" ;;
        esac
    done
}

# mask2prefix 255.255.255.0 -> 24 (a prefix length passes through).
mask2prefix() {
    case "$1" in
        *.*.*.*) ;;
        *) echo "$1"; return 0 ;;
    esac
    bits=0 partial=
    old_ifs=$IFS; IFS=.
    set -- $1
    IFS=$old_ifs
    for octet in "$@"; do
        # A mask is contiguous ones: after an octet below 255 only zeros may follow.
        [ -n "$partial" ] && [ "$octet" != 0 ] && return 1
        [ "$octet" = 255 ] || partial=1
        case "$octet" in
            255) bits=$((bits + 8)) ;; 254) bits=$((bits + 7)) ;; 252) bits=$((bits + 6)) ;;
            248) bits=$((bits + 5)) ;; 240) bits=$((bits + 4)) ;; 224) bits=$((bits + 3)) ;;
            192) bits=$((bits + 2)) ;; 128) bits=$((bits + 1)) ;; 0) ;;
            *) return 1 ;;
        esac
    done
    echo "$bits"
}

# parse_ip VALUE: the kernel's nfsroot syntax
#   <client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>[:<dns0>[:<dns1>]]
# sets NET_MODE (static|dhcp|none) NET_ADDR NET_GW NET_PREFIX NET_HOST NET_DEV NET_DNS0 NET_DNS1.
parse_ip() {
    NET_MODE=none NET_ADDR= NET_GW= NET_PREFIX= NET_HOST= NET_DEV=eth0 NET_DNS0= NET_DNS1=
    case "$1" in
        "" | off | none) return 0 ;;
        dhcp | on | any | both) NET_MODE=dhcp; return 0 ;;
    esac
    old_ifs=$IFS; IFS=:
    set -- $1
    IFS=$old_ifs
    NET_ADDR=$1 NET_GW=$3 NET_HOST=$5 NET_DNS0=$8 NET_DNS1=$9
    [ -n "$6" ] && NET_DEV=$6
    case "$7" in
        dhcp | on | any | both) NET_MODE=dhcp; return 0 ;;
    esac
    [ -n "$NET_ADDR" ] || { NET_MODE=none; return 0; }
    NET_MODE=static
    NET_PREFIX=$(mask2prefix "${4:-255.255.255.0}") || return 1
    [ -n "$NET_PREFIX" ] || NET_PREFIX=24
    return 0
}

# dhcp_event EVENT: the udhcpc script (udhcpc runs /init again with IGNITEVM_DHCP_SCRIPT set).
dhcp_event() {
    case "$1" in
        deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
        bound | renew)
            ip -4 addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" dev "$interface"
            for r in $router; do ip route add default via "$r" dev "$interface"; break; done
            : >/run/dhcp.dns
            for d in $dns; do echo "$d" >>/run/dhcp.dns; done
            [ -n "$hostname" ] && echo "$hostname" >/run/dhcp.hostname
            ;;
    esac
    return 0
}

SYS_NET=${SYS_NET:-/sys/class/net}

# mac_dev MAC: the network device whose MAC is MAC.
mac_dev() {
    for f in "$SYS_NET"/*/address; do
        [ -f "$f" ] && [ "$(cat "$f")" = "$1" ] || continue
        f=${f%/address}
        echo "${f##*/}"
        return 0
    done
    return 1
}

# name_nics: IGNITE_NICS="NAME,MAC[,CIDR...] ..." (ignite.nic= words, a VM with extra NICs):
# the device with MAC is named NAME, whatever order the kernel probed them in; a device that
# holds NAME already moves aside (ignitenicN) until its own entry names it.
name_nics() {
    moved=0
    for spec in $IGNITE_NICS; do
        want=${spec%%,*} rest=${spec#*,}
        mac=${rest%%,*}
        dev=$(mac_dev "$mac") || { say "warning: no network device has MAC $mac ($want)"; continue; }
        [ "$dev" = "$want" ] && continue
        if [ -e "$SYS_NET/$want" ]; then
            moved=$((moved + 1))
            ip link set dev "$want" name "ignitenic$moved" || say "warning: cannot rename $want"
        fi
        ip link set dev "$dev" name "$want" || say "warning: cannot name $dev $want"
    done
}

# setup_nics: the extra NICs up, with their addresses (eth0 is setup_network's).
setup_nics() {
    for spec in $IGNITE_NICS; do
        want=${spec%%,*} rest=${spec#*,}
        [ "$want" = eth0 ] && continue
        [ -e "$SYS_NET/$want" ] || continue
        ip link set dev "$want" up || say "warning: cannot bring $want up"
        case "$rest" in *,*) cidrs=${rest#*,} ;; *) cidrs= ;; esac
        for cidr in $(echo "$cidrs" | tr , ' '); do
            ip addr add "$cidr" dev "$want" || say "warning: cannot set $cidr on $want"
        done
    done
}

# parse_share TAG:ro|rw:/path (one word of IGNITE_SHARES): sets SHARE_TAG SHARE_OPTS SHARE_PATH.
# 9p2000.L carries owners and modes; cache=mmap keeps no page cache but for mmap(), so either
# side sees the other's writes at once; msize is the virtio transport's largest message.
parse_share() {
    SHARE_TAG=${1%%:*}
    rest=${1#*:}
    SHARE_PATH=${rest#*:}
    SHARE_OPTS=trans=virtio,version=9p2000.L,cache=mmap,msize=512000
    case "${rest%%:*}" in
        ro) SHARE_OPTS=$SHARE_OPTS,ro ;;
        rw) ;;
        *) return 1 ;;
    esac
    case "$SHARE_PATH" in /*) return 0 ;; *) return 1 ;; esac
}

if [ -n "$IGNITEVM_DHCP_SCRIPT" ]; then
    dhcp_event "$1"
    exit 0
fi
[ -n "$IGNITEVM_INIT_LIB" ] && return 0

# load_modules [LIST]: insmod the modules LIST names (default /etc/ignitevm/modules), in order.
load_modules() {
    list=${1:-/etc/ignitevm/modules}
    [ -f "$list" ] || return 0
    while read -r mod; do
        [ -n "$mod" ] || continue
        # Already loaded (or built in) is fine; anything else is reported and the boot goes on:
        # a missing disk is what fails it, with a clearer message.
        insmod "/lib/modules/$mod" 2>/tmp/insmod.err || {
            grep -q "File exists" /tmp/insmod.err || say "warning: insmod $mod: $(cat /tmp/insmod.err)"
        }
    done <"$list"
}

# wait_label LABEL: prints the device, polling up to DISK_WAIT_TENTHS tenths of a second.
wait_label() {
    n=0
    while [ "$n" -lt "$DISK_WAIT_TENTHS" ]; do
        dev=$(findfs "LABEL=$1" 2>/dev/null) && [ -n "$dev" ] && { echo "$dev"; return 0; }
        [ "$n" -lt 10 ] && usleep 20000 || usleep 100000
        n=$((n + 1))
    done
    return 1
}

mount_root() {
    mkdir -p "$NEWROOT"
    base=$(wait_label ignite-image) || fatal "no disk labeled ignite-image (is virtio_blk loaded?)"
    case "${IGNITE_COW:-qcow2}" in
        qcow2)
            if [ "$(cat "/sys/class/block/${base#/dev/}/ro" 2>/dev/null)" = 1 ]; then
                # A read-only disk (a bare base image attached for a smoke test): boot it as is.
                say "warning: $base is read-only; the root stays read-only"
                mount -t ext4 -o ro "$base" "$NEWROOT" || fatal "cannot mount $base"
                return 0
            fi
            mount -t ext4 -o rw "$base" "$NEWROOT" || fatal "cannot mount $base read-write"
            # Online grow to the size of the copy-on-write disk; a no-op when it already fills it.
            resize2fs "$base" >/tmp/resize.log 2>&1 ||
                say "warning: resize2fs $base failed: $(tail -n1 /tmp/resize.log)"
            ;;
        overlay)
            rw=$(wait_label ignite-rw) || fatal "no disk labeled ignite-rw for ignite.cow=overlay"
            mkdir -p /run/base /run/rw
            mount -t ext4 -o ro "$base" /run/base || fatal "cannot mount $base read-only"
            mount -t ext4 -o rw "$rw" /run/rw || fatal "cannot mount $rw read-write"
            mkdir -p /run/rw/upper /run/rw/work
            mount -t overlay overlay -o lowerdir=/run/base,upperdir=/run/rw/upper,workdir=/run/rw/work \
                "$NEWROOT" || fatal "cannot assemble the overlay root (is the overlay module loaded?)"
            ;;
        *) fatal "unknown ignite.cow=$IGNITE_COW (qcow2 or overlay)" ;;
    esac
}

# mount_modules: the kernel's full modules tree (disk ignite-modules, optional: no waiting, the
# disks were probed together) at /lib/modules/$(uname -r) of the new root, for modprobe.
mount_modules() {
    dev=$(findfs LABEL=ignite-modules 2>/dev/null) && [ -n "$dev" ] || return 0
    lib=/lib
    # An absolute /lib -> /usr/lib link must be followed inside the new root, not the initramfs.
    if [ -L "$NEWROOT/lib" ]; then
        link=$(readlink "$NEWROOT/lib")
        case "$link" in /*) lib=$link ;; *) lib=/$link ;; esac
    fi
    dir="$NEWROOT$lib/modules/$(uname -r)"
    mkdir -p "$dir" 2>/dev/null && mount -t ext4 -o ro "$dev" "$dir" ||
        say "warning: cannot mount the modules disk $dev on $lib/modules/$(uname -r)"
}

setup_network() {
    ip link set lo up
    parse_ip "$IGNITE_IP" || fatal "cannot parse ip=$IGNITE_IP"
    [ "$NET_MODE" = none ] && return 0
    [ -d "/sys/class/net/$NET_DEV" ] || { say "warning: no network device $NET_DEV"; return 0; }
    ip link set "$NET_DEV" up
    if [ "$NET_MODE" = dhcp ]; then
        IGNITEVM_DHCP_SCRIPT=1 udhcpc -i "$NET_DEV" -q -n -t 5 -T 1 -s /init >/tmp/udhcpc.log 2>&1 ||
            say "warning: DHCP on $NET_DEV got no lease"
        [ -f /run/dhcp.dns ] && NET_DNS0=$(sed -n 1p /run/dhcp.dns) NET_DNS1=$(sed -n 2p /run/dhcp.dns)
        [ -f /run/dhcp.hostname ] && NET_HOST=$(cat /run/dhcp.hostname)
    else
        ip addr add "$NET_ADDR/$NET_PREFIX" dev "$NET_DEV" || fatal "cannot set $NET_ADDR/$NET_PREFIX on $NET_DEV"
        [ -n "$NET_GW" ] && { ip route add default via "$NET_GW" dev "$NET_DEV" || say "warning: no route via $NET_GW"; }
    fi
}

# write_file PATH: stdin into a file of the new root, replacing a symlink (it may point anywhere).
write_file() {
    [ -L "$NEWROOT$1" ] && rm -f "$NEWROOT$1"
    cat >"$NEWROOT$1"
}

write_identity() {
    host=${NET_HOST:-$IGNITE_HOSTNAME}
    mkdir -p "$NEWROOT/etc"
    if [ -n "$host" ]; then
        hostname "$host"
        echo "$host" | write_file /etc/hostname
        printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n' "$host" |
            write_file /etc/hosts
    fi
    if [ -n "$NET_DNS0$NET_DNS1" ]; then
        { for d in $NET_DNS0 $NET_DNS1; do echo "nameserver $d"; done; } | write_file /etc/resolv.conf
    fi
}

# copy_tree SRC: merge SRC into the new root; existing directories keep their modes.
copy_tree() {
    [ -d "$1" ] || return 0
    (
        cd "$1" || exit 1
        find . -type d | while read -r d; do
            [ -e "$NEWROOT/$d" ] || mkdir -m "$(stat -c %a "$d")" -p "$NEWROOT/$d"
        done
        find . ! -type d | while read -r f; do
            [ -L "$NEWROOT/$f" ] && rm -f "$NEWROOT/$f"
            cp -a "$f" "$NEWROOT/$f" || exit 1
        done
    ) || fatal "cannot copy the per-VM files from $1"
}

apply_files() {
    copy_tree /ignite/files
    if [ ! -e "$NEWROOT$MARKER" ]; then
        copy_tree /ignite/firstboot
        mkdir -p "$NEWROOT${MARKER%/*}" && : >"$NEWROOT$MARKER"
    fi
}

# mount_volumes: IGNITE_VOLUMES="SERIAL:/path ..." (from /ignite/env) mounts the virtio disk
# whose serial is SERIAL at /path in the new root (ignite run --volumes).
mount_volumes() {
    for spec in $IGNITE_VOLUMES; do
        serial=${spec%%:*}
        target=${spec#*:}
        dev=""
        for file in /sys/block/vd*/serial; do
            [ -f "$file" ] && [ "$(cat "$file")" = "$serial" ] || continue
            dev=${file%/serial}
            dev=/dev/${dev##*/}
        done
        if [ -z "$dev" ]; then
            say "volume $serial: no such disk"
            continue
        fi
        mkdir -p "$NEWROOT$target" && mount "$dev" "$NEWROOT$target" \
            || say "volume $serial: cannot mount $dev on $target"
    done
}

# agent_port: the device of the virtio-serial port org.ignitevm.agent, if the VM has one.
agent_port() {
    for f in /sys/class/virtio-ports/*/name; do
        [ -f "$f" ] && [ "$(cat "$f")" = org.ignitevm.agent ] || continue
        d=${f%/name}
        echo "/dev/${d##*/}"
        return 0
    done
    return 1
}

# start_agent: the guest agent (/agent.sh, docs/internals.md "The guest agent") on its port,
# in a mount namespace of its own so it outlives switch_root; waits until it is set up.
start_agent() {
    [ -x /agent.sh ] || return 0
    if [ ! -d /sys/class/virtio-ports ]; then
        # a kernel imported before the agent existed: virtio_console from the modules disk
        ko=$(find "$NEWROOT/lib/modules/$(uname -r)/" -name 'virtio_console.ko*' 2>/dev/null | head -n1)
        [ -n "$ko" ] && insmod "$ko" 2>/dev/null
    fi
    n=0
    until port=$(agent_port); do
        [ "$n" -ge 20 ] && return 0  # no agent port: a VM started without one
        usleep 10000
        n=$((n + 1))
    done
    n=0
    while [ ! -c "$port" ] && [ "$n" -lt 50 ]; do usleep 10000; n=$((n + 1)); done
    mkfifo /agent.ready
    setsid unshare -m --propagation private /bin/busybox sh /agent.sh "$port" /agent.ready \
        </dev/null >/dev/null 2>&1 &
    read -r state </agent.ready
    [ "$state" = ready ] || say "warning: the guest agent did not start"
}

# mount_shares: IGNITE_SHARES="TAG:ro|rw:/path ..." (from /ignite/env) mounts the host
# directory QEMU exports with 9p mount tag TAG at /path in the new root (ignite run --share).
# A share that cannot be mounted stops the boot: the guest would write into its own disk.
mount_shares() {
    [ -n "$IGNITE_SHARES" ] || return 0
    load_modules /etc/ignitevm/modules.9p
    grep -qw 9p /proc/filesystems ||
        fatal "no 9p in this kernel's initramfs: import the kernel again (ignite kernel rm, then ignite kernel import) to use --share"
    for spec in $IGNITE_SHARES; do
        parse_share "$spec" || fatal "bad share $spec"
        mkdir -p "$NEWROOT$SHARE_PATH" &&
            mount -t 9p -o "$SHARE_OPTS" "$SHARE_TAG" "$NEWROOT$SHARE_PATH" ||
            fatal "cannot mount the host directory $SHARE_TAG on $SHARE_PATH"
    done
}

find_init() {
    if [ -n "$IGNITE_INIT" ]; then echo "$IGNITE_INIT"; return 0; fi
    for candidate in /sbin/init /etc/init /bin/init /bin/sh; do
        if [ -x "$NEWROOT$candidate" ] || [ -L "$NEWROOT$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

move_mounts() {
    for m in dev proc sys; do
        if [ -d "$NEWROOT/$m" ] || mkdir -p "$NEWROOT/$m" 2>/dev/null; then
            mount --move "/$m" "$NEWROOT/$m" || umount -l "/$m"
        else
            umount -l "/$m"
        fi
    done
}

main() {
    mount -t proc proc /proc
    say "started"
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mkdir -p /run /tmp
    parse_cmdline $(cat /proc/cmdline)
    # shellcheck disable=SC1091 # per-VM settings too long for the command line
    [ -f /ignite/env ] && . /ignite/env
    step "load_modules"
    [ -n "$IGNITE_DEBUG" ] && set -x
    load_modules
    step "mount_root"
    mount_root
    step "mount_modules"
    mount_modules
    step "setup_network"
    name_nics
    setup_network
    setup_nics
    step "write_identity"
    write_identity
    step "apply_files"
    apply_files
    step "mount_volumes"
    mount_volumes
    step "mount_shares"
    mount_shares
    step "start_agent"
    start_agent
    step "switch_root"
    init=$(find_init) || fatal "no init in the image (tried /sbin/init /etc/init /bin/init /bin/sh)"
    [ -x "$NEWROOT$init" ] || [ -L "$NEWROOT$init" ] || fatal "init $init is not executable in the image"
    move_mounts
    say "exec $init"
    exec switch_root "$NEWROOT" "$init"
    fatal "switch_root to $init failed"
}

main
