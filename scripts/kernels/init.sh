#!/bin/busybox sh
# /init of the initramfs that scripts/kernels/vm.ts builds for each kernel (busybox, this script
# and the modules listed in /modules/order). Stage 1 loads the modules, lays the host's root (9p,
# read only) under a tmpfs overlay so the guest can write anywhere (keeping the clone visible when it
# lives under /tmp or /run), mounts the kernel's own modules
# (9p) at /lib/modules/<release>, the host's per-run directory (9p, writable) at /run/kal and the
# kernel's file systems, then makes that the root with switch_root. Being PID 1 there matters: the
# kernel's own helpers (modprobe for a bridge, a veth, nf_tables...) run in PID 1's root.
# Stage 2 runs /run/kal/command and powers off. What the host reads back from /run/kal:
# exit-code, tainted-at-boot, tainted-at-end, dmesg.txt, uptime-at-start, uptime-at-end.
if [ "$1" != stage2 ]; then
  /bin/busybox --install -s /bin
  export PATH=/bin
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev

  # Anything that fails here ends the VM without an exit code: the host reports the console.
  fail() {
    echo "kal-init: $*"
    poweroff -f
  }

  for module in $(cat /modules/order); do
    insmod "/modules/$module" || fail "cannot load $module"
  done
  tainted_at_boot=$(cat /proc/sys/kernel/tainted)

  p9=trans=virtio,version=9p2000.L,msize=262144
  r=/newroot
  mkdir -p /lower /rw $r
  mount -t 9p -o "$p9,ro,cache=loose" hostroot /lower || fail "cannot mount the host's root"
  mount -t tmpfs -o mode=0755 rw /rw && mkdir /rw/upper /rw/work
  mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay $r || fail "cannot mount the overlay"
  # The clone (kal_visible= on the command line) stays visible where the guest mounts its own
  # /tmp or /run below: moved aside from the overlay here, back in place after.
  visible=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^kal_visible=//p')
  case "$visible" in
    /tmp/* | /run/*) mkdir -p /visible && mount --bind "$r$visible" /visible || fail "cannot keep $visible" ;;
    *) visible= ;;
  esac
  # lib is usr/lib on a merged-/usr host: mkdir follows the link inside the new root.
  mkdir -p "$r/lib/modules/$(uname -r)"
  mount -t 9p -o "$p9,ro,cache=loose" modules "$r/lib/modules/$(uname -r)" || fail "cannot mount the modules"
  mount -t proc proc $r/proc
  mount -t sysfs sysfs $r/sys
  mount -t devtmpfs devtmpfs $r/dev
  mkdir -p $r/dev/pts $r/dev/shm
  mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts $r/dev/pts
  mount -t tmpfs -o mode=1777 shm $r/dev/shm
  mount -t tmpfs -o mode=0755 run $r/run
  mount -t tmpfs -o mode=1777 tmp $r/tmp
  mount -t bpf bpf $r/sys/fs/bpf
  mount -t tracefs tracefs $r/sys/kernel/tracing
  mount -t debugfs debugfs $r/sys/kernel/debug
  mount -t cgroup2 cgroup2 $r/sys/fs/cgroup
  if [ -n "$visible" ]; then
    mkdir -p "$r$visible" && mount --move /visible "$r$visible" || fail "cannot keep $visible"
  fi
  mkdir $r/run/kal $r/run/kal-boot
  mount -t 9p -o "$p9" results $r/run/kal || fail "cannot mount the results directory"
  echo "$tainted_at_boot" > $r/run/kal/tainted-at-boot
  # stage 2 runs from the guest's own copy: nothing of it is looked for on the host
  cp /bin/busybox /init $r/run/kal-boot/
  ip link set lo up
  hostname kal-vm
  umount /proc /sys /dev
  exec switch_root $r /run/kal-boot/busybox sh /run/kal-boot/init stage2
fi

bb=/run/kal-boot/busybox
$bb cut -d' ' -f1 /proc/uptime > /run/kal/uptime-at-start
/bin/sh /run/kal/command
code=$?
$bb cut -d' ' -f1 /proc/uptime > /run/kal/uptime-at-end
$bb cat /proc/sys/kernel/tainted > /run/kal/tainted-at-end
$bb dmesg > /run/kal/dmesg.txt
echo "$code" > /run/kal/exit-code
echo "kal-init: the command exited $code"
$bb sync
$bb umount /run/kal
$bb poweroff -f
