#!/usr/bin/env bash
# Build local PostgreSQL container images from Debian packages.
#
# Why: on our dev machines and in CI a Docker engine runs, but no image can be
# pulled from any registry; only Debian's package mirrors are reachable. So we
# debootstrap a minimal Debian root filesystem with the PostgreSQL server
# package and `docker import` it, with an entrypoint (scripts/pg-image/) that
# behaves like the official `postgres` image's for what our tests use.
#
#   aepg-postgres:15   Debian 12 (bookworm) + postgresql-15
#   aepg-postgres:17   Debian 13 (trixie)   + postgresql-17
#
# Usage: bash scripts/build-pg-images.sh [--force] [15|17 ...]
#   (no version = all; an existing image is kept unless --force)
#
# Needs root (debootstrap) and a running Docker daemon. Installs debootstrap
# with apt-get when it is missing. The Debian mirror is taken from this
# machine's apt sources; no mirror host is written in this repository.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE_DIR="$SCRIPT_DIR/pg-image"
IMAGE_REPO="aepg-postgres"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
PGDATA_DIR="/var/lib/postgresql/data"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '/^# Usage:/,/^#   (no/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---- arguments ---------------------------------------------------------------
FORCE=0
VERSIONS=()
for arg in "$@"; do
	case "$arg" in
	--force | -f) FORCE=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	15 | 17) VERSIONS+=("$arg") ;;
	*)
		usage >&2
		die "unknown argument '$arg' (supported versions: 15 17)"
		;;
	esac
done
[ "${#VERSIONS[@]}" -gt 0 ] || VERSIONS=(15 17)

suite_for() {
	case "$1" in
	15) echo bookworm ;;
	17) echo trixie ;;
	*) die "no Debian suite known for PostgreSQL $1" ;;
	esac
}

# ---- preconditions -----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap needs it)"
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running?)"
[ -f "$IMAGE_DIR/docker-entrypoint.sh" ] || die "missing $IMAGE_DIR/docker-entrypoint.sh"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

APT_UPDATED=0
apt_install() {
	if [ "$APT_UPDATED" = 0 ]; then
		log "apt-get update"
		apt-get update -q
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ---- temp dirs, cleaned up on any exit ----------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/aepg-pg-image.XXXXXX")"
cleanup() {
	local rc=$?
	# debootstrap mounts proc/sys inside the target; if it died half-way they
	# may still be mounted. Unmount (deepest first) before deleting, and never
	# let rm cross into another file system.
	local mnt
	while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
	rm -rf --one-file-system "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ---------------------------------------------------------------------
ensure_tools() {
	local missing=()
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	# debootstrap downloads with wget; gpgv checks Release signatures.
	command -v wget >/dev/null || missing+=(wget)
	command -v gpgv >/dev/null || missing+=(gpgv)
	[ -f "$KEYRING" ] || missing+=(debian-archive-keyring)
	if [ "${#missing[@]}" -gt 0 ]; then
		apt_install "${missing[@]}"
	fi
}

# debootstrap has one script per suite. Old debootstrap versions may not know
# a newer suite (e.g. bookworm's first releases vs. trixie); every Debian suite
# since buster uses the same script as sid, so fall back to passing the sid
# script explicitly instead of changing files on the host.
debootstrap_script_for() {
	local suite="$1" dir=/usr/share/debootstrap/scripts
	if [ -e "$dir/$suite" ]; then
		return 0 # debootstrap finds it itself
	elif [ -e "$dir/sid" ]; then
		warn "debootstrap $(debootstrap_version) has no '$suite' script; using $dir/sid"
		echo "$dir/sid"
	else
		die "debootstrap has neither a '$suite' nor a 'sid' script in $dir"
	fi
}
debootstrap_version() {
	dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?'
}

# ---- Debian mirror from the host's apt sources ---------------------------------
# Prints candidate repository URLs: http(s)/file URIs of `deb` entries with the
# `main` component and a suite that is not a -security one, from one-line
# (*.list) and deb822 (*.sources) files. `mirror+file:` lists are expanded.
apt_source_uris() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '
			$1 == "deb" && NF >= 4 && $3 !~ /security/ {
				for (i = 4; i <= NF; i++) if ($i == "main") { print $2; break }
			}'
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			function flush() {
				if (types ~ /(^|[ \t])deb([ \t]|$)/ && comps ~ /(^|[ \t])main([ \t]|$)/ &&
				    enabled !~ /^[ \t]*(no|false|0)[ \t]*$/ && suites !~ /security/) {
					n = split(uris, u, /[ \t]+/)
					for (i = 1; i <= n; i++) if (u[i] != "") print u[i]
				}
				types = uris = suites = comps = enabled = ""; key = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { if (key == "uris") uris = uris " " $0; next }   # continuation line
			{
				key = tolower($0); sub(/:.*/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "components") comps = val
				else if (key == "enabled") enabled = val
			}
			END { flush() }' "$f"
	done
}

expand_uris() {
	local uri file
	while read -r uri; do
		case "$uri" in
		mirror+file:*)
			file="${uri#mirror+file:}"
			file="/${file#"${file%%[!/]*}"}" # collapse leading slashes
			[ -f "$file" ] && sed -e 's/#.*//' "$file" | awk 'NF { print $1 }'
			;;
		http://* | https://* | file:/*) echo "$uri" ;;
		*) ;; # cdrom:, tor+, mirror+http: ... not usable by debootstrap
		esac
	done | sed -e 's:/*$::' | awk '!seen[$0]++'
}

fetch() { # fetch URL DEST
	case "$1" in
	file:*) cp "/${1#file:}" "$2" 2>/dev/null ;;
	*) wget -q --timeout=30 --tries=2 -O "$2" "$1" ;;
	esac
}

# Picks the first candidate that serves the Debian archive itself (not the
# security archive, not a third-party repository) for the given suite, by
# reading the suite's Release file.
find_mirror() {
	local suite="$1" uri rel="$WORK/Release.$1"
	local -a uris
	mapfile -t uris < <(apt_source_uris | expand_uris)
	[ "${#uris[@]}" -gt 0 ] ||
		die "no usable 'deb' source with component 'main' in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources}; add the Debian mirror to apt's sources"
	for uri in "${uris[@]}"; do
		if fetch "$uri/dists/$suite/Release" "$rel" &&
			grep -qx 'Origin: Debian' "$rel" && grep -qx 'Label: Debian' "$rel"; then
			echo "$uri"
			return 0
		fi
	done
	die "none of the apt sources of this machine (${uris[*]}) serves the Debian archive suite '$suite' (checked dists/$suite/Release for Origin/Label 'Debian')"
}

# The host's debian-archive-keyring must hold a key that signs the target
# suite (bookworm's keyring got the trixie keys in a stable update, older
# ones lack them). If the check fails, try upgrading the keyring from the
# host's apt sources; if that does not help, stop: we never pass
# --no-check-gpg, unsigned packages must not end up in an image.
check_keyring() {
	local mirror="$1" suite="$2" inrel="$WORK/InRelease.$2"
	fetch "$mirror/dists/$suite/InRelease" "$inrel" ||
		die "cannot download dists/$suite/InRelease from the mirror"
	if gpgv --keyring "$KEYRING" "$inrel" >/dev/null 2>&1; then
		return 0
	fi
	warn "$KEYRING cannot verify '$suite' (version $(dpkg-query -W -f='${Version}' debian-archive-keyring 2>/dev/null || echo '?')); trying to upgrade debian-archive-keyring"
	apt_install debian-archive-keyring || true
	gpgv --keyring "$KEYRING" "$inrel" >/dev/null 2>&1 ||
		die "the Debian archive keyring on this machine cannot verify '$suite'. Install a debian-archive-keyring that has the '$suite' keys (e.g. from the host's -updates or backports suite) and re-run; this script will not build from unverified packages."
}

# ---- image build --------------------------------------------------------------
# Paths removed from the root filesystem (relative to it): documentation,
# translations, apt/debconf caches, logs, and the host identity files that
# debootstrap copies in (Docker provides its own at run time).
slim_rootfs() {
	local root="$1" v="$2"
	rm -rf "${root:?}"/var/lib/apt/lists/* \
		"${root:?}"/var/cache/apt/*.bin "${root:?}"/var/cache/apt/archives/*.deb \
		"${root:?}"/var/cache/debconf/*-old "${root:?}"/var/lib/dpkg/*-old \
		"${root:?}"/var/cache/ldconfig/* \
		"${root:?}"/usr/share/doc/* "${root:?}"/usr/share/man/* "${root:?}"/usr/share/info/* \
		"${root:?}"/usr/share/lintian "${root:?}"/usr/share/linda \
		"${root:?}"/usr/share/bug \
		"${root:?}"/etc/hostname "${root:?}"/etc/resolv.conf \
		"${root:?}"/dev/* "${root:?}"/tmp/* "${root:?}"/var/tmp/*
	find "$root/var/log" -type f -delete
	# Message translations (postgres runs with the C.UTF-8 locale).
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	# LLVM JIT: postgresql-NN depends on libllvmNN (+ libz3), ~150 MB, used only
	# by the optional llvmjit.so plugin. Without the plugin PostgreSQL silently
	# runs without JIT (documented behaviour of jit_provider), which is what a
	# test database wants anyway. The files are deleted but the packages stay
	# "installed" for dpkg, so apt inside the container does not try to
	# reinstall them.
	rm -rf "$root/usr/lib/postgresql/$v/lib/llvmjit.so" \
		"$root/usr/lib/postgresql/$v/lib/llvmjit_types.bc" \
		"$root/usr/lib/postgresql/$v/lib/bitcode"
	local list f
	for list in "$root"/var/lib/dpkg/info/libllvm[0-9]*.list "$root"/var/lib/dpkg/info/libz3-[0-9]*.list; do
		[ -f "$list" ] || continue
		while read -r f; do
			case "$f" in /usr/lib/*/lib*.so*) [ -d "$root$f" ] || rm -f "$root$f" ;; esac
		done <"$list"
	done
	# Locale sources (only used by locale-gen; C.UTF-8 is built into libc-bin).
	rm -rf "$root/usr/share/i18n"
	# postgresql-NN's postinst created a "main" cluster; the entrypoint makes
	# its own in $PGDATA instead.
	rm -rf "$root/var/lib/postgresql/$v/main" "$root/etc/postgresql/$v/main"
	# Keep later `apt-get install`s inside the container small as well.
	mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
	cat >"$root/etc/dpkg/dpkg.cfg.d/aepg-slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	EOF
	# Same policy as Debian's official container images.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	: >"$root/etc/resolv.conf"
}

build_image() {
	local v="$1" suite tag mirror script root pkgver uid gid old_id new_id t0 t1 t2 t3 size
	suite="$(suite_for "$v")"
	tag="$IMAGE_REPO:$v"

	if [ "$FORCE" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
		log "$tag already exists; skipping (use --force to rebuild)"
		SUMMARY+=("$tag: skipped (exists)")
		return 0
	fi

	old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"

	log "[$tag] finding a Debian mirror for '$suite' in the apt sources"
	mirror="$(find_mirror "$suite")"
	log "[$tag] mirror: $mirror"
	check_keyring "$mirror" "$suite"
	script="$(debootstrap_script_for "$suite")"

	root="$WORK/rootfs-$v"
	mkdir -p "$root"
	log "[$tag] debootstrap --variant=minbase $suite (+ postgresql-$v); this takes a few minutes"
	t0="$(now)"
	# shellcheck disable=SC2086 # $script is empty or one path
	if ! debootstrap --variant=minbase --include="postgresql-$v" --keyring="$KEYRING" \
		"$suite" "$root" "$mirror" $script >"$WORK/debootstrap-$v.log" 2>&1; then
		tail -n 40 "$WORK/debootstrap-$v.log" >&2
		[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
		die "debootstrap of $suite failed (log above)"
	fi
	t1="$(now)"
	[ -x "$root/usr/lib/postgresql/$v/bin/postgres" ] ||
		die "debootstrap finished but $root/usr/lib/postgresql/$v/bin/postgres is missing"
	pkgver="$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' "postgresql-$v")"
	log "[$tag] debootstrap done in $(elapsed "$t0" "$t1")s (postgresql-$v $pkgver, rootfs $(du -sh --one-file-system "$root" | cut -f1))"

	slim_rootfs "$root" "$v"
	install -m 0755 "$IMAGE_DIR/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
	install -d -m 0755 "$root/docker-entrypoint-initdb.d"
	uid="$(awk -F: '$1 == "postgres" { print $3 }' "$root/etc/passwd")"
	gid="$(awk -F: '$1 == "postgres" { print $4 }' "$root/etc/passwd")"
	[ -n "$uid" ] || die "no postgres user in the image's /etc/passwd"
	install -d -m 0700 -o "$uid" -g "$gid" "$root$PGDATA_DIR"
	log "[$tag] slimmed rootfs: $(du -sh --one-file-system "$root" | cut -f1)"

	log "[$tag] docker import"
	t2="$(now)"
	tar --numeric-owner -C "$root" -c . | docker import \
		--message "postgresql-$v $pkgver on Debian $suite (scripts/build-pg-images.sh)" \
		--change "ENV PATH=/usr/lib/postgresql/$v/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		--change "ENV LANG=C.UTF-8" \
		--change "ENV PG_MAJOR=$v" \
		--change "ENV PG_VERSION=$pkgver" \
		--change "ENV PGDATA=$PGDATA_DIR" \
		--change "VOLUME $PGDATA_DIR" \
		--change "LABEL org.opencontainers.image.title=$IMAGE_REPO org.opencontainers.image.version=$pkgver org.opencontainers.image.base.name=debian:$suite" \
		--change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		--change 'EXPOSE 5432' \
		- "$tag" >/dev/null
	# `docker import --change` (daemon 20.10) rejects STOPSIGNAL. Add it with a
	# one-line build on top of the local image (nothing is pulled: the base is
	# local, and the classic builder needs no buildx plugin). SIGINT = "fast
	# shutdown", as in the official image; SIGTERM would be "smart shutdown",
	# which waits for clients to disconnect.
	if ! printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$tag" |
		DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >"$WORK/stopsignal.log" 2>&1; then
		cat "$WORK/stopsignal.log" >&2
		warn "could not set STOPSIGNAL SIGINT on $tag; 'docker stop' will send SIGTERM (smart shutdown)"
	fi
	t3="$(now)"
	# --force: drop the image this one replaced (if no container uses it).
	new_id="$(docker image inspect -f '{{.Id}}' "$tag")"
	if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
		docker rmi "$old_id" >/dev/null 2>&1 || warn "old image $old_id of $tag is still in use; not removed"
	fi
	docker run --rm "$tag" postgres --version >/dev/null ||
		die "smoke test failed: 'docker run --rm $tag postgres --version'"
	size="$(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1000000 }')"
	log "[$tag] imported in $(elapsed "$t2" "$t3")s; image size $size"
	SUMMARY+=("$tag: postgresql-$v $pkgver; debootstrap $(elapsed "$t0" "$t1")s, import $(elapsed "$t2" "$t3")s, size $size")

	rm -rf --one-file-system "$root"
}

SUMMARY=()
ensure_tools
for v in "${VERSIONS[@]}"; do
	build_image "$v"
done
log "done"
printf '    %s\n' "${SUMMARY[@]}"
