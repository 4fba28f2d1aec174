#!/bin/busybox sh
# ignitevm's guest agent (docs/internals.md "The guest agent"): started by /init before
# switch_root on the virtio-serial port org.ignitevm.agent, it lives on in a mount namespace of
# its own that keeps a copy of busybox (switch_root empties the initramfs) and answers one
# request at a time, one line each, from the host:
#   PING <id>                        -> PONG <id>
#   IDENT <id> <base64 of lines>     -> OK <id> | ERR <id> <b64 reason>   (a new identity after a
#                                       restore: ip=, gateway=, dns=, mac=, hostname=, seed=;
#                                       the kernel's random generator is reseeded)
#   EXEC <id> <b64 cmd> <b64 stdin|-> [<seconds>]
#                                    -> O <id> <b64>..., E <id> <b64>..., X <id> <exit code>
#                                       (killed after <seconds>, if given and not 0: 137)
# Every answer carries its request's id: a client that left leaves answers nobody reads.
# The supervisor holds the host side of the port for the VM's whole life (docs/internals.md).
# Sourced with IGNITEVM_AGENT_LIB=1 it only defines its functions (unit tests).

AGENT_DIR=/ignite-agent
# PID 1's root: the initramfs until /init has switched to the system's root
INIT_ROOT=/proc/1/root

# ready_fifo: /init waits on it until the copy of busybox is made
setup() {
    mkdir -p "$AGENT_DIR" && mount -t tmpfs -o size=8m,mode=0700 ignite-agent "$AGENT_DIR" || return 1
    cp /bin/busybox "$AGENT_DIR/busybox" && cp /sbin/ignite-reseed "$AGENT_DIR/reseed" || return 1
    for applet in sh ip base64 dd cat rm mkfifo nsenter printf head sleep mkdir usleep setsid; do
        ln -s busybox "$AGENT_DIR/$applet"
    done
    PATH=$AGENT_DIR
    export PATH
}

# ident KEY=VALUE lines on stdin: the VM's new identity
ident() {
    while IFS='=' read -r key value; do
        case "$key" in
            seed) printf '%s' "$value" >/dev/urandom ;;
            mac) NEW_MAC=$value ;;
            ip) NEW_IP=$value ;;
            gateway) NEW_GW=$value ;;
            hostname) NEW_HOST=$value ;;
            dns) NEW_DNS="$NEW_DNS $value" ;;
        esac
    done
    # the kernel's random generator: fresh keys from the pool the seed was mixed into, so
    # two VMs restored from one snapshot never produce the same random bytes
    reseed || return 1
    # every command costs a fork and an exec under emulation (~20 ms): only what changes
    if [ -n "$NEW_MAC" ] && [ -d /sys/class/net/eth0 ]; then
        read -r mac </sys/class/net/eth0/address
        # virtio-net takes a new address while up (the device's filter follows it)
        [ "$mac" = "$NEW_MAC" ] || ip link set eth0 address "$NEW_MAC" || return 1
    fi
    if [ -n "$NEW_IP" ] && [ -d /sys/class/net/eth0 ]; then
        case "$(ip -4 -o addr show dev eth0)" in
            *" $NEW_IP "*) ;;
            *)
                ip -4 addr flush dev eth0
                ip addr add "$NEW_IP" dev eth0 || return 1
                [ -n "$NEW_GW" ] && ip route replace default via "$NEW_GW" dev eth0 ;;
        esac
    fi
    if [ -n "$NEW_HOST" ]; then
        echo "$NEW_HOST" >/proc/sys/kernel/hostname
        root=/proc/1/root
        echo "$NEW_HOST" >"$root/etc/hostname" 2>/dev/null
        printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n' \
            "$NEW_HOST" >"$root/etc/hosts" 2>/dev/null
    fi
    if [ -n "$NEW_DNS" ]; then
        { for d in $NEW_DNS; do echo "nameserver $d"; done; } >/proc/1/root/etc/resolv.conf 2>/dev/null
    fi
    return 0
}

# stream FILE TAG ID: base64 chunks of FILE's data to the port as "TAG ID <b64>" lines
stream() {
    while :; do
        chunk=$(dd bs=24576 count=1 2>/dev/null | base64 -w0)
        [ -n "$chunk" ] || break
        printf '%s %s %s\n' "$2" "$3" "$chunk" >&3
    done <"$1"
}

# switched: wait (up to 60 s) until PID 1 runs in the system's root. An exec may come before
# (`ignite run --wait=false`, then exec): the initramfs has no shell for it to run in.
switched() {
    n=0
    while [ -e "$INIT_ROOT/agent.sh" ] && [ "$n" -lt 1200 ]; do
        usleep 50000
        n=$((n + 1))
    done
}

# run ID B64CMD B64STDIN [SECONDS]: the command in the VM's root as root, its output streamed;
# with SECONDS, it and everything it started are killed after that long
run() {
    id=$1
    case "$id" in ''|*[!0-9a-f]*) printf 'ERR %s bad-id\n' "$id" >&3; return ;; esac
    switched
    work=$AGENT_DIR/run.$id
    # every process costs ~5-20 ms under emulation: rm only when a run left its directory
    mkdir "$work" 2>/dev/null || { rm -rf "$work"; mkdir "$work"; } ||
        { printf 'X %s 126\n' "$id" >&3; return; }
    limit=
    case "$4" in ''|0|*[!0-9]*) ;; *) limit=$4 ;; esac
    cmd=$(printf '%s' "$2" | base64 -d)
    if [ "$3" = - ]; then : >"$work/in"; else printf '%s' "$3" | base64 -d >"$work/in"; fi
    mkfifo "$work/out" "$work/err"
    (
        # the VM's own namespaces, root and environment: what `ssh root@vm CMD` would see
        # (the agent's own mount namespace is not the system's: a mount there would fail);
        # with a time limit, a session of its own (setsid execs: its pid is the group's) that
        # the limit kills whole
        if [ -n "$limit" ]; then set -- "$AGENT_DIR/setsid"; else set --; fi
        HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            "$@" "$AGENT_DIR/nsenter" -t 1 -m -u -i -n -p -r -w \
            /bin/sh -c "cd; $cmd" <"$work/in" >"$work/out" 2>"$work/err" &
        echo $! >"$work/pid"
        wait $!
        echo $? >"$work/rc"
    ) &
    cmd=$!
    dog=
    if [ -n "$limit" ]; then
        (
            sleep "$limit"
            read -r pid <"$work/pid" && kill -9 -- "-$pid" "$pid"
        ) 2>/dev/null &
        dog=$!
    fi
    stream "$work/err" E "$id" &
    errs=$!
    stream "$work/out" O "$id" &
    outs=$!
    wait "$cmd"
    [ -n "$dog" ] && kill "$dog" 2>/dev/null
    # done when the command is: what it left running in the background may hold its output
    # open for ever (as with ssh, the rest of that output is not waited for); 0.5 s to drain
    n=0
    while [ "$n" -lt 50 ] && { kill -0 "$outs" || kill -0 "$errs"; } 2>/dev/null; do
        usleep 10000
        n=$((n + 1))
    done
    kill "$outs" "$errs" 2>/dev/null
    wait "$outs" "$errs" 2>/dev/null
    rc=127
    [ -f "$work/rc" ] && read -r rc <"$work/rc"
    printf 'X %s %s\n' "$id" "$rc" >&3
    rm -rf "$work"
}

serve() {
    while read -r verb id a b c <&3; do
        case "$verb" in
            PING) printf 'PONG %s\n' "$id" >&3 ;;
            IDENT)
                if printf '%s' "$a" | base64 -d | ident 2>"$AGENT_DIR/ident.err"; then
                    printf 'OK %s\n' "$id" >&3
                else
                    printf 'ERR %s %s\n' "$id" "$(head -c 200 "$AGENT_DIR/ident.err" | base64 -w0)" >&3
                fi ;;
            EXEC) run "$id" "$a" "$b" "$c" ;;
            *) printf 'ERR %s unknown\n' "$id" >&3 ;;
        esac
    done
}

[ -n "$IGNITEVM_AGENT_LIB" ] && return 0
port=$1 ready=$2
setup || { echo failed >"$ready"; exit 1; }
echo ready >"$ready"
exec 3<>"$port"
while :; do
    serve
    sleep 1  # the host side went away (it should not: the supervisor holds it): wait, read on
done
