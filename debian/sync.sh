#!/usr/bin/env bash
# Makes the Debian package's configuration and unit from the repository's own, so that the
# package never drifts from them:
#   debian/clientele.toml     from Rocket.toml: seed_demo off, the database in /var/lib/clientele
#   debian/clientele.service  from contrib/clientele.service: /usr/bin/clientele, and the
#                             database named by the configuration file alone
# Run it after changing Rocket.toml or contrib/clientele.service, and commit what it writes.
# `debian/sync.sh --check` (run by scripts/deb-test.sh) fails if the files are stale.
set -euo pipefail
cd "$(dirname "$0")/.."

# Replaces exactly one line equal to $2 by $3 on standard input, or fails naming it: a line
# that Rocket.toml or the unit no longer has must not be silently left out of the package.
replace_line() {
  local source=$1 old=$2 new=$3
  awk -v old="$old" -v new="$new" -v source="$source" '
    $0 == old { print new; n++; next } { print }
    END { if (n != 1) { printf "debian/sync.sh: expected one line \"%s\" in %s, found %d\n", old, source, n > "/dev/stderr"; exit 1 } }'
}

# (replace_line's first argument only names the file in its message: SC2094 does not apply.)
# shellcheck disable=SC2094
config() {
  cat <<'HEAD'
# clientele's configuration, as the Debian package installs it: /etc/clientele/clientele.toml.
# The service reads it (ROCKET_CONFIG in its unit), and so does every tool run as the service
# does it (README, "Install on a server"):
#   runuser -u clientele -- env ROCKET_CONFIG=/etc/clientele/clientele.toml clientele keys create NAME
# Owned by root, group clientele, mode 0640: the service can read it but not change it, and
# nobody else can read it (it may hold the old API's key and the SMTP password). dpkg keeps your
# changes on upgrades. It listens on 127.0.0.1:8000, for a proxy on this machine that serves
# HTTPS (examples in /usr/share/doc/clientele/examples/; behind one, set ip_header below).
# Made from the repository's Rocket.toml by debian/sync.sh: it differs only in these lines,
# seed_demo (off: a real shop), the paths under /var/lib/clientele, and daily backups on.

HEAD
  replace_line Rocket.toml 'seed_demo = true' 'seed_demo = false' <Rocket.toml |
    replace_line Rocket.toml 'database = "data/clientele.db"' \
      'database = "/var/lib/clientele/clientele.db"' |
    replace_line Rocket.toml '# upstream_key_file = "data/upstream.key"' \
      '# upstream_key_file = "/var/lib/clientele/upstream.key"' |
    replace_line Rocket.toml '# backup_dir = "data/backups"' \
      'backup_dir = "/var/lib/clientele/backups"'
}

# shellcheck disable=SC2016  # the backquotes are the comment's, not the shell's
unit() {
  cat <<'HEAD'
# clientele as a systemd service, installed by the Debian package (README, "Install on a
# server"). The package neither enables nor starts it: edit /etc/clientele/clientele.toml,
# create a key, import your customers, then `systemctl enable --now clientele`. Upgrades
# restart it if it runs. Made from contrib/clientele.service by debian/sync.sh.
HEAD
  # Everything from [Unit] on: the contrib file's header is its manual install recipe.
  sed -n '/^\[Unit\]$/,$p' contrib/clientele.service |
    replace_line contrib/clientele.service 'ExecStart=/usr/local/bin/clientele serve' \
      'ExecStart=/usr/bin/clientele serve' |
    # The database is the configuration file's `database` (/var/lib/clientele/clientele.db),
    # not a variable here: tools run with only ROCKET_CONFIG then open the same database as
    # the service, and switching to PostgreSQL is one line in one file.
    replace_line contrib/clientele.service 'Environment=ROCKET_DATABASE=/var/lib/clientele/clientele.db' \
      '# The database: `database` in /etc/clientele/clientele.toml.'
}

if [ "${1:-}" = --check ]; then
  stale=0
  diff -u debian/clientele.toml <(config) || stale=1
  diff -u debian/clientele.service <(unit) || stale=1
  if [ $stale -ne 0 ]; then
    echo "debian/sync.sh: the package's files are stale; run debian/sync.sh and commit them" >&2
    exit 1
  fi
  echo "debian/sync.sh: debian/clientele.toml and debian/clientele.service are up to date"
else
  config >debian/clientele.toml.new && mv debian/clientele.toml.new debian/clientele.toml
  unit >debian/clientele.service.new && mv debian/clientele.service.new debian/clientele.service
  echo "debian/sync.sh: wrote debian/clientele.toml and debian/clientele.service"
fi
