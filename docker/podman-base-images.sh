#!/usr/bin/env bash
# Makes the two base images docker/Dockerfile is built from where no registry is reachable (the
# test machines have podman but no Docker Hub): a Debian bookworm minbase root filesystem with
# python3, made by debootstrap and imported with `podman import` (the runtime base), and that
# image plus gcc and the host's Rust toolchain (the builder base). Prints `PYTHON_IMAGE=TAG` and
# `BUILDER_IMAGE=TAG`, the build arguments to pass.
#
# Both are cached: the images in podman's storage, the root filesystem tarball under
# ${FERROCORN_PODMAN_CACHE:-~/.cache/ferrocorn-podman}/KEY; bump KEY when the recipe changes.
# A host behind a TLS-intercepting proxy trusts that proxy's CA in its own bundle: the root
# filesystem gets the host's bundle too, so that pip and cargo inside the builds get through.
# Run as root (debootstrap, podman's rootful storage). Needs: debootstrap, podman, rustc.
set -euo pipefail

key=bookworm-1
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${FERROCORN_PODMAN_CACHE:-$HOME/.cache/ferrocorn-podman}/$key
base=localhost/ferrocorn-base:$key
rust_version=$(rustc --version | awk '{print $2}')
builder=localhost/ferrocorn-builder:$key-rust$rust_version
log() { printf 'podman-base-images: %s\n' "$*" >&2; }

if ! podman image exists "$base"; then
    if [ ! -s "$cache/rootfs.tar" ]; then
        log "debootstrap bookworm (minbase + python3) into $cache"
        mkdir -p "$cache"
        work=$(mktemp -d "$cache/rootfs.XXXXXX")
        trap 'rm -rf "$work"' EXIT
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$work/rootfs" "$mirror" >&2
        if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
            # As a local CA, so that it survives update-ca-certificates in a later apt run.
            mkdir -p "$work/rootfs/usr/local/share/ca-certificates"
            cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/usr/local/share/ca-certificates/host-bundle.crt"
            cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
        fi
        rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
        tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
        mv "$work/rootfs.tar" "$cache/rootfs.tar"
        rm -rf "$work"
        trap - EXIT
    fi
    log "podman import $cache/rootfs.tar as $base"
    # pip in a virtualenv trusts its own certifi bundle unless told otherwise.
    podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["/bin/bash"]' \
        "$cache/rootfs.tar" "$base" >/dev/null
fi

if ! podman image exists "$builder"; then
    sysroot=$(rustc --print sysroot)
    log "podman build $builder: $base + gcc + Rust $rust_version from $sysroot"
    containerfile=$(mktemp)
    trap 'rm -f "$containerfile"' EXIT
    cat > "$containerfile" <<CONTAINERFILE
FROM $base
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY bin /opt/rust/bin
COPY lib /opt/rust/lib
ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CONTAINERFILE
    podman build --isolation chroot --layers=false -f "$containerfile" -t "$builder" "$sysroot" >&2
fi

echo "PYTHON_IMAGE=$base"
echo "BUILDER_IMAGE=$builder"
