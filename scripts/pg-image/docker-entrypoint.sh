#!/usr/bin/env bash
# Entrypoint for the locally built aepg-postgres:NN images (see
# scripts/build-pg-images.sh). It mimics the parts of the official `postgres`
# image's entrypoint that our tests rely on:
#
#   POSTGRES_USER              superuser name               (default: postgres)
#   POSTGRES_PASSWORD          its password (required unless
#                              POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_DB                database created at init      (default: $POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for remote hosts (default: scram-sha-256)
#   POSTGRES_INITDB_ARGS       extra initdb arguments (word-split)
#   PGDATA                     data directory  (default: /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sql.xz|*.sh  run once at init
#
# Container arguments starting with '-' are passed to `postgres`
# (e.g. `-c fsync=off -c log_statement=all`).
#
# Log streams, deliberately identical to the official image: the temporary
# server used during initialisation logs to STDOUT (pg_ctl without -l sends the
# server's output to its own stdout), the real server logs to STDERR. So on a
# fresh data directory "database system is ready to accept connections"
# appears once on each stream; testcontainers-modules' Postgres image waits
# for it on both.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# `docker run IMAGE -c foo=bar` -> `postgres -c foo=bar`
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

# Anything other than the server (bash, psql, ...) runs as given.
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

# `postgres --help`, `-C setting`, `--version`, ...: no initialisation needed.
for arg in "${@:2}"; do
	case "$arg" in
	-'?' | --help | --describe-config | -V | --version | -C | --single)
		exec "$@"
		;;
	esac
done

if [ "$(id -u)" = '0' ]; then
	# Running as root: create/fix the directories, then re-run this script as
	# the postgres user. setpriv comes with util-linux (in every Debian minbase),
	# so no gosu/su-exec is needed.
	mkdir -p "$PGDATA" /var/run/postgresql
	chmod 00700 "$PGDATA"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chown postgres:postgres /var/run/postgresql
	chmod 03777 /var/run/postgresql
	HOME="$(getent passwd postgres | cut -d: -f6)"
	export HOME
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	: "${POSTGRES_PASSWORD:=}"
	: "${POSTGRES_INITDB_ARGS:=}"
	auth_method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth_method" != 'trust' ]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       Set POSTGRES_PASSWORD to a non-empty value for the superuser, or
			       set POSTGRES_HOST_AUTH_METHOD=trust to allow all connections
			       without a password (never do that outside of tests).
		EOM
		exit 1
	fi

	echo "Initializing database in $PGDATA (user '$POSTGRES_USER', host auth '$auth_method')"
	initdb_args=(
		--username="$POSTGRES_USER"
		--auth-local=trust
		--auth-host="$auth_method"
		# C.UTF-8 ships with libc-bin, so no locales package is needed.
		--encoding=UTF8
		--locale=C.UTF-8
	)
	# When the server is told not to fsync (testcontainers-modules passes
	# `-c fsync=off` by default), syncing initdb's files is pointless too;
	# --no-sync saves ~2 s per container on slow disks.
	for arg in "${@:2}"; do
		case "${arg,,}" in
		fsync=off | fsync=false | fsync=no | fsync=0 | --fsync=off | --fsync=false | --fsync=no | --fsync=0)
			initdb_args+=(--no-sync)
			break
			;;
		esac
	done
	# POSTGRES_INITDB_ARGS is word-split on purpose; later options override
	# the defaults above.
	# shellcheck disable=SC2086
	if [ -n "$POSTGRES_PASSWORD" ]; then
		initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
	else
		initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS
	fi

	printf '\nhost all all all %s\n' "$auth_method" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# Temporary server: unix socket only; its log goes to stdout.
	pg_ctl -D "$PGDATA" -w start \
		-o "$(printf '%q ' -c listen_addresses= -p 5432 "${@:2}")"

	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	psql_cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)

	if [ "$POSTGRES_DB" != 'postgres' ]; then
		db_exists="$("${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align \
			<<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
		if [ -z "$db_exists" ]; then
			echo "Creating database '$POSTGRES_DB'"
			"${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
		fi
	fi

	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "$0: running $f"
				"$f"
			else
				echo "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			echo "$0: running $f"
			"${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f"
			;;
		*.sql.gz)
			echo "$0: running $f"
			gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB"
			;;
		*.sql.xz)
			echo "$0: running $f"
			xz -dc "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB"
			;;
		*) echo "$0: ignoring $f" ;;
		esac
	done
	shopt -u nullglob

	pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD

	echo
	echo 'PostgreSQL init process complete; ready for start up.'
	echo
else
	echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
	echo
fi

# The real server; logs to stderr.
exec "$@"
