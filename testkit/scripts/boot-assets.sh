#!/usr/bin/env bash
# Builds the end-to-end boot assets in OUTDIR, without root, mounts or loop devices:
#
#   vmlinuz     Debian's 6.1 kernel (newest linux-image-6.1.0-NN-amd64 apt offers)
#   initrd.img  busybox initramfs: virtio/e1000/ext4/nbd/iSCSI modules, Debian's
#               nbd-client and open-iscsi's iscsistart, and an /init that mounts `root=`
#               (a local disk, an NBD export given as `nbdroot=HOST:PORT/EXPORT`, or,
#               when firmware left an iBFT (iPXE's sanboot), the iBFT's iSCSI LUN: its
#               second partition) and switch_roots into it
#   disk.raw    64 MiB MBR disk: syslinux mbr.bin; p1 FAT16 + syslinux (vmlinuz,
#               initrd.img, root=/dev/vda2) and, for UEFI, systemd-boot as
#               \EFI\BOOT\BOOTX64.EFI with the same entry; p2 ext4 holding a busybox root whose
#               /sbin/init reports, writes, and powers off (see ROOT_INIT below)
#   STAMP       written last: its presence means the build is complete
#
# Serial-console markers (one line each):
#   initramfs:  [E2E-INITRAMFS ibft <target>], E2E-INITRAMFS root=<dev>
#               |  E2E-INITRAMFS-FAILED <why> (then poweroff)
#   root init:  E2E-PREVIOUS-BOOTS count=N, E2E-VERSION V,
#               BOOTED-FROM-VDISK hostname=H root=DEV uptime=S, [E2E-SET-VERSION V],
#               E2E-DONE  |  E2E-FAILED <why>
#
# Kernel command line knobs: root=DEV (default /dev/vda2, or /dev/nbd0p2 with nbdroot=),
# nbdroot=HOST:PORT/EXPORT (EXPORT may hold '/' and ':'; split at the first '/'),
# hostname=NAME (default: SMBIOS serial, QEMU `-smbios type=1,serial=NAME`),
# e2e.set-version=V (root writes V into /etc/e2e-version). A disk boot cannot change
# the command line, so an SMBIOS serial containing `set-version-V` does the same.
#
# Usage: boot-assets.sh OUTDIR     (OUTDIR is replaced atomically: built beside it, renamed)
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
OUT=$(realpath -m "$1")
START=$(date +%s)
export PATH="$PATH:/usr/sbin:/sbin"
export MTOOLS_SKIP_CHECK=1 LC_ALL=C

MODULES=(crc32c_generic jbd2 mbcache crc16 ext4 virtio_ring virtio_pci_modern_dev
  virtio_pci_legacy_dev virtio virtio_pci virtio_blk failover net_failover virtio_net e1000 nbd
  sd_mod iscsi_tcp iscsi_ibft)
# iscsistart (a root on the iBFT's LUN) and the libraries it needs beyond the host's.
ISCSI_PKGS=(open-iscsi libopeniscsiusr libisns0)
DISK_MIB=64
P1_START=2048  # sectors; p1 = FAT16 boot partition
P1_MIB=24
BUSYBOX=/bin/busybox
MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin

die() {
  echo "boot-assets: $*" >&2
  exit 1
}
log() { echo "boot-assets: $*" >&2; }

for tool in apt-get apt-cache dpkg busybox sfdisk mkfs.fat mkfs.ext4 syslinux mcopy cpio \
  gzip modinfo ldd; do
  command -v "$tool" >/dev/null || die "missing program: $tool"
done
NBD_CLIENT=$(command -v nbd-client) || die "missing program: nbd-client (package nbd-client)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (package busybox-static)"
file_type=$(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true)
case "$file_type" in *"not a dynamic"*|*"statically linked"*) ;; *) die "$BUSYBOX is not static (install busybox-static)" ;; esac
[ -f "$MBR_BIN" ] || die "$MBR_BIN missing (package syslinux)"

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/boot-assets.XXXXXX")
STAGE=$(mktemp -d "$OUT.tmp.XXXXXX")
trap 'rm -rf "$WORK" "$STAGE"' EXIT

# ---------------------------------------------------------------- kernel
# Newest linux-image-6.1.0-NN-amd64, the -unsigned build when apt offers one.
mapfile -t images < <(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' |
  awk '{print $1}')
[ "${#images[@]}" -gt 0 ] || die "apt-cache offers no linux-image-6.1.0-NN-amd64 (run apt-get update)"
newest=$(printf '%s\n' "${images[@]}" | sed -E 's/^linux-image-6\.1\.0-([0-9]+)-amd64.*/\1/' | sort -n | tail -1)
KPKG=linux-image-6.1.0-$newest-amd64
if printf '%s\n' "${images[@]}" | grep -qx "$KPKG-unsigned"; then KPKG=$KPKG-unsigned; fi
log "kernel package $KPKG"
mkdir "$WORK/deb"
(cd "$WORK/deb" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2) ||
  die "apt-get download $KPKG failed"
dpkg -x "$WORK"/deb/*.deb "$WORK/kernel"
KVER=6.1.0-$newest-amd64
MODDIR=$WORK/kernel/lib/modules/$KVER
[ -f "$WORK/kernel/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $KPKG"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"

# ---------------------------------------------------------------- modules
# busybox insmod resolves no dependencies: order them with `modinfo -F depends`.
declare -A KO=()      # module name -> file (decompressed .ko)
while IFS= read -r f; do
  name=$(basename "$f")
  name=${name%.xz}
  name=${name%.ko}
  name=${name//-/_}
  KO[$name]=$f
done < <(find "$MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz')
declare -A SEEN=()
ORDER=()
resolve() {
  local m=$1 f deps d
  [ -n "${SEEN[$m]:-}" ] && return 0
  SEEN[$m]=1
  f=${KO[$m]:-}
  if [ -z "$f" ]; then
    if grep -q "/${m//_/[_-]}\.ko" "$MODDIR/modules.builtin" 2>/dev/null; then return 0; fi
    die "module $m not found in $KPKG"
  fi
  if [[ $f == *.xz ]]; then
    xz -dc "$f" >"${f%.xz}"
    f=${f%.xz}
    KO[$m]=$f
  fi
  deps=$(modinfo -F depends "$f")
  for d in ${deps//,/ }; do resolve "${d//-/_}"; done
  ORDER+=("$m")
}
for m in "${MODULES[@]}"; do resolve "$m"; done
log "module order: ${ORDER[*]}"

# ---------------------------------------------------------------- busybox trees
# A tree with busybox and a symlink per applet (mkfs.ext4 -d and cpio keep symlinks).
busybox_tree() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,etc}
  cp "$BUSYBOX" "$root/bin/busybox"
  while IFS= read -r applet; do
    case "$applet" in bin/busybox | linuxrc | */init) continue ;; esac
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done < <("$BUSYBOX" --list-full)
}

# ---------------------------------------------------------------- initramfs
IR=$WORK/initrd
busybox_tree "$IR"
mkdir -p "$IR/lib/modules" "$IR/newroot" "$IR/etc/udhcpc"
: >"$IR/etc/e2e-modules"
for m in "${ORDER[@]}"; do
  cp "${KO[$m]}" "$IR/lib/modules/$m.ko"
  case "$m" in
    nbd) echo "$m nbds_max=2 max_part=8" ;;
    # Without an iBFT (every boot but sanboot's) it may refuse to load: optional.
    iscsi_ibft) echo "?$m" ;;
    *) echo "$m" ;;
  esac >>"$IR/etc/e2e-modules"
done
# Debian's nbd-client with its shared libraries and loader, at their own paths.
rm -f "$IR/sbin/nbd-client"
cp "$NBD_CLIENT" "$IR/sbin/nbd-client"
while IFS= read -r lib; do
  mkdir -p "$IR$(dirname "$lib")"
  cp -L "$lib" "$IR$lib"
done < <(ldd "$NBD_CLIENT" | grep -oE '/[^ ]+' | sort -u)

# open-iscsi's iscsistart (logs in to the iBFT's target), with the libraries ldd
# finds in the downloaded packages or on the host, at their own paths.
mkdir "$WORK/iscsi-deb" "$WORK/iscsi"
(cd "$WORK/iscsi-deb" && apt-get download -q -o APT::Sandbox::User=root "${ISCSI_PKGS[@]}" >&2) ||
  die "apt-get download ${ISCSI_PKGS[*]} failed"
for deb in "$WORK"/iscsi-deb/*.deb; do dpkg -x "$deb" "$WORK/iscsi"; done
ISCSISTART=$(find "$WORK/iscsi" -name iscsistart -type f | head -1)
[ -n "$ISCSISTART" ] || die "no iscsistart in ${ISCSI_PKGS[*]}"
cp "$ISCSISTART" "$IR/sbin/iscsistart"
ISCSI_LIBS=$WORK/iscsi/lib/x86_64-linux-gnu:$WORK/iscsi/usr/lib/x86_64-linux-gnu
# Each library under the name the loader asks for (`soname => path`).
while read -r soname arrow path _; do
  if [ "$arrow" != "=>" ]; then path=$soname; soname=$(basename "$soname"); fi
  case "$path" in /*) ;; *) continue ;; esac
  dest=$(dirname "${path#"$WORK/iscsi"}")/$soname
  mkdir -p "$IR$(dirname "$dest")"
  cp -L "$path" "$IR$dest"
done < <(LD_LIBRARY_PATH=$ISCSI_LIBS ldd "$ISCSISTART")
LD_LIBRARY_PATH=$ISCSI_LIBS ldd "$ISCSISTART" | grep -q 'not found' &&
  die "iscsistart lacks libraries: $(LD_LIBRARY_PATH=$ISCSI_LIBS ldd "$ISCSISTART")"

cat >"$IR/etc/udhcpc/script" <<'EOF'
#!/bin/busybox sh
# busybox udhcpc hook: configure the leased address (udhcpc itself sets nothing).
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -z "$router" ] || ip route add default via "${router%% *}" dev "$interface"
    echo "E2E-INITRAMFS dhcp $interface $ip/${mask:-24} router=${router:-none}"
    ;;
esac
exit 0
EOF

cat >"$IR/init" <<'EOF'
#!/bin/busybox sh
# E2E initramfs: load modules, attach an NBD root if asked, switch_root into root=.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
  echo "E2E-INITRAMFS-FAILED $*"
  sync
  poweroff -f
  sleep 10
  exit 1
}

# wait_for TEST ARG SECONDS: polls `test TEST ARG` every 0.2 s.
wait_for() {
  i=0
  while ! test "$1" "$2"; do
    i=$((i + 1))
    [ "$i" -le $(($3 * 5)) ] || return 1
    usleep 200000
  done
}

e2e_root= e2e_nbdroot= e2e_host=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) e2e_root=${arg#root=} ;;
    nbdroot=*) e2e_nbdroot=${arg#nbdroot=} ;;
    hostname=*) e2e_host=${arg#hostname=} ;;
  esac
done
if [ -z "$e2e_host" ] && [ -r /sys/class/dmi/id/product_serial ]; then
  e2e_host=$(cat /sys/class/dmi/id/product_serial)
fi
e2e_host=${e2e_host:-unknown}
hostname "$e2e_host" 2>/dev/null

while read -r mod args; do
  [ -n "$mod" ] || continue
  case "$mod" in
    \?*) insmod "/lib/modules/${mod#?}.ko" 2>/dev/null || true ;;
    # shellcheck disable=SC2086 # module parameters are separate words
    *) insmod "/lib/modules/$mod.ko" $args || fail "insmod $mod" ;;
  esac
done </etc/e2e-modules

# iPXE's sanboot left an iBFT: the root is the second partition of its LUN, attached
# by open-iscsi's iscsistart with the iBFT's initiator name, target and CHAP secret.
if [ -d /sys/firmware/ibft/target0 ]; then
  echo "E2E-INITRAMFS ibft $(cat /sys/firmware/ibft/target0/target-name 2>/dev/null)"
  wait_for -e /sys/class/net/eth0 10 || fail "no eth0"
  ip link set lo up
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 10 -V e2e-initramfs -s /etc/udhcpc/script || fail "no DHCP lease on eth0"
  mkdir -p /etc/iscsi /run/lock/iscsi /var/lib/iscsi
  iscsistart -b || fail "iscsistart -b"
  e2e_root=/dev/sda2
fi

if [ -n "$e2e_nbdroot" ]; then
  hostport=${e2e_nbdroot%%/*}
  [ "$hostport" != "$e2e_nbdroot" ] || fail "nbdroot=$e2e_nbdroot lacks /EXPORT"
  export_name=${e2e_nbdroot#*/}
  nbd_host=${hostport%:*}
  nbd_port=${hostport##*:}
  [ "$nbd_host" != "$hostport" ] || fail "nbdroot=$e2e_nbdroot lacks HOST:PORT"
  e2e_root=${e2e_root:-/dev/nbd0p2}
  wait_for -e /sys/class/net/eth0 10 || fail "no eth0"
  ip link set lo up
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 10 -V e2e-initramfs -s /etc/udhcpc/script || fail "no DHCP lease on eth0"
  wait_for -b /dev/nbd0 10 || fail "no /dev/nbd0"
  /sbin/nbd-client "$nbd_host" "$nbd_port" /dev/nbd0 -N "$export_name" ||
    fail "nbd-client $nbd_host $nbd_port -N $export_name"
  blockdev --rereadpt /dev/nbd0 || fail "blockdev --rereadpt /dev/nbd0"
fi
e2e_root=${e2e_root:-/dev/vda2}
wait_for -b "$e2e_root" 10 || fail "root device $e2e_root did not appear"
mount -o ro "$e2e_root" /newroot || fail "mount $e2e_root"
[ -x /newroot/sbin/init ] || fail "no /sbin/init on $e2e_root"

echo "E2E-INITRAMFS root=$e2e_root"
export E2E_HOSTNAME="$e2e_host" E2E_ROOT="$e2e_root"
umount /proc /sys
if [ -d /newroot/dev ]; then mount --move /dev /newroot/dev; fi
exec switch_root /newroot /sbin/init
fail "switch_root"
EOF
chmod 755 "$IR/init" "$IR/etc/udhcpc/script"
(cd "$IR" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$STAGE/initrd.img"

# ---------------------------------------------------------------- root filesystem
RT=$WORK/root
busybox_tree "$RT"
mkdir -p "$RT/var/e2e"
echo 0 >"$RT/etc/e2e-version"
echo e2e >"$RT/etc/hostname"
cat >"$RT/sbin/init" <<'EOF'
#!/bin/busybox sh
# E2E root init: report the boot on the console, write to the disk, power off.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
fail() {
  echo "E2E-FAILED $*"
  sync
  poweroff -f
  sleep 10
}
# busybox has no `mountpoint`: test for something each file system holds.
[ -e /proc/self ] || mount -t proc proc /proc || fail "mount /proc"
[ -e /sys/class ] || mount -t sysfs sysfs /sys || fail "mount /sys"
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mount -o remount,rw / || fail "remount / read-write"
mkdir -p /var/e2e

count=0
[ ! -f /var/e2e/bootlog ] || count=$(wc -l </var/e2e/bootlog)
echo "E2E-PREVIOUS-BOOTS count=$count"
version=$(cat /etc/e2e-version 2>/dev/null)
echo "E2E-VERSION $version"

serial=$(cat /sys/class/dmi/id/product_serial 2>/dev/null)
host=${E2E_HOSTNAME:-$serial}
host=${host:-$(hostname)}
root=${E2E_ROOT:-}
new_version=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root=${root:-${arg#root=}} ;;
    e2e.set-version=*) new_version=${arg#e2e.set-version=} ;;
  esac
done
case "$serial" in *set-version-*) new_version=${new_version:-${serial##*set-version-}} ;; esac
uptime=$(cut -d' ' -f1 /proc/uptime)
echo "BOOTED-FROM-VDISK hostname=$host root=$root uptime=$uptime"

if [ -n "$new_version" ]; then
  echo "$new_version" >/etc/e2e-version || fail "write /etc/e2e-version"
  echo "E2E-SET-VERSION $new_version"
fi
echo "boot=$((count + 1)) hostname=$host root=$root uptime=$uptime version=$version" \
  >>/var/e2e/bootlog || fail "append /var/e2e/bootlog"
file=$(printf '%s' "$host" | tr -c 'A-Za-z0-9._-' '_')
dd if=/dev/urandom of="/var/e2e/written-by-$file" bs=1048576 count=1 2>/dev/null ||
  fail "write /var/e2e/written-by-$file"
sync
mount -o remount,ro / || echo "E2E-WARNING remount read-only failed"
echo "E2E-DONE"
poweroff -f
sleep 10
EOF
chmod 755 "$RT/sbin/init"

# ---------------------------------------------------------------- disk image
cat >"$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND console=ttyS0,115200 root=/dev/vda2 panic=1
EOF
# systemd-boot, the UEFI boot loader of the same disk (iPXE's EFI sanboot starts the
# disk's \EFI\BOOT\BOOTX64.EFI), with the syslinux entry's kernel, initrd and options.
mkdir "$WORK/sdboot-deb" "$WORK/sdboot"
(cd "$WORK/sdboot-deb" && apt-get download -q -o APT::Sandbox::User=root systemd-boot-efi >&2) ||
  die "apt-get download systemd-boot-efi failed"
dpkg -x "$WORK"/sdboot-deb/*.deb "$WORK/sdboot"
SDBOOT=$(find "$WORK/sdboot" -name systemd-bootx64.efi | head -1)
[ -n "$SDBOOT" ] || die "no systemd-bootx64.efi in systemd-boot-efi"
printf 'default e2e.conf\ntimeout 0\nconsole-mode keep\n' >"$WORK/loader.conf"
printf 'title e2e\nlinux /vmlinuz\ninitrd /initrd.img\noptions console=ttyS0,115200 root=/dev/vda2 panic=1\n' \
  >"$WORK/e2e.conf"
P1_SECTORS=$((P1_MIB * 2048))
P2_START=$((P1_START + P1_SECTORS))
P2_SECTORS=$((DISK_MIB * 2048 - P2_START))
mkfs.fat -F 16 -h "$P1_START" -n E2EBOOT -C "$WORK/p1.img" $((P1_SECTORS / 2)) >/dev/null
syslinux --install "$WORK/p1.img"
mcopy -i "$WORK/p1.img" "$STAGE/vmlinuz" "$STAGE/initrd.img" "$WORK/syslinux.cfg" ::/
mmd -i "$WORK/p1.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$WORK/p1.img" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/p1.img" "$WORK/loader.conf" ::/loader/loader.conf
mcopy -i "$WORK/p1.img" "$WORK/e2e.conf" ::/loader/entries/e2e.conf
truncate -s $((P2_SECTORS * 512)) "$WORK/p2.img"
mkfs.ext4 -q -F -L e2e-root -d "$RT" "$WORK/p2.img" >/dev/null

DISK=$STAGE/disk.raw
truncate -s "${DISK_MIB}M" "$DISK"
sfdisk -q --no-reread --no-tell-kernel "$DISK" <<EOF
label: dos
start=$P1_START, size=$P1_SECTORS, type=6, bootable
start=$P2_START, size=$P2_SECTORS, type=83
EOF
dd if="$MBR_BIN" of="$DISK" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/p1.img" of="$DISK" bs=512 seek="$P1_START" conv=notrunc,sparse status=none
dd if="$WORK/p2.img" of="$DISK" bs=512 seek="$P2_START" conv=notrunc,sparse status=none

# ---------------------------------------------------------------- publish
cat >"$STAGE/STAMP" <<EOF
kernel=$KPKG
modules=${ORDER[*]}
seconds=$(($(date +%s) - START))
EOF
chmod 755 "$STAGE"
if [ -e "$OUT" ]; then
  OLD=$(mktemp -d "$OUT.old.XXXXXX")
  mv "$OUT" "$OLD/"
  mv "$STAGE" "$OUT"
  rm -rf "$OLD"
else
  mv "$STAGE" "$OUT"
fi
log "built $OUT in $(($(date +%s) - START)) s"
