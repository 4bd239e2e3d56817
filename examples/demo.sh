#!/usr/bin/env bash
# imapfs demo: installs what is missing, builds, starts a throwaway local
# Dovecot loaded with sample mail, mounts it and shows it in use.
#
#   examples/demo.sh          run the demo (leaves the mount up to play with)
#   examples/demo.sh stop     unmount and stop the demo server
#
# Everything lives in /tmp/imapfs-demo; nothing on the system is configured.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dir=/tmp/imapfs-demo
mnt=$dir/mail

stop_demo() {
        if grep -qs " $mnt fuse" /proc/mounts; then
                fusermount3 -u "$mnt" || fusermount3 -uz "$mnt"
        fi
        [ -f "$dir/dovecot/dovecot.conf" ] && /usr/bin/python3 tests/integration/dovecot.py stop "$dir/dovecot"
        echo "demo stopped"
}

if [ "${1:-}" = stop ]; then
        stop_demo
        exit 0
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[36m$ %s\033[0m\n' "$*"; bash -c "$*" || true; }

step "installing what is missing and building"
bash examples/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
imapfs=$top/build/fs/imapfs

step "starting a throwaway Dovecot on 127.0.0.1 with sample mail"
stop_demo >/dev/null 2>&1 || true
rm -rf --one-file-system "$dir"   # a new server, mail and cache each time; never into a mount
mkdir -p "$dir" "$mnt"
/usr/bin/python3 tests/integration/dovecot.py start "$dir/dovecot" --sample >"$dir/server.env"
# shellcheck disable=SC1091
. "$dir/server.env"
echo "server: imaps://$IMAP_USER@$IMAP_HOST:$IMAPS_PORT (self-signed certificate $IMAP_CAFILE)"

step "mounting"
mountcmd="$imapfs imaps://$IMAP_USER@$IMAP_HOST:$IMAPS_PORT $mnt -o cafile=$IMAP_CAFILE,password_file=$IMAP_PASSWORD_FILE,cache_dir=$dir/cache"
printf '\033[36m$ %s\033[0m\n' "$mountcmd"
$mountcmd

step "using it"
cd "$mnt"
show "ls"
show "ls -l INBOX | head -n 12"
first=$(ls INBOX | grep -m1 'Grüße' || ls INBOX | head -n 1)
show "head -n 12 'INBOX/$first'"
show "getfattr -d 'INBOX/$first'"
show "grep -rl 'Nested' INBOX | head -n 5"
show "find . -name '*.eml' | wc -l"
show "head -c 200 Big/*.eml | head -n 5   # fetches one block, not the whole message"

step "message parts: every message's MIME parts as files (one BODYSTRUCTURE for the folder)"
nested=$(grep -rl 'Nested' INBOX | head -n 1)
stem=$(basename "${nested:-INBOX/$first}" .eml)
show "ls 'INBOX/.parts/$stem'"
show "head -n 5 'INBOX/.parts/$stem/text'; echo   # the readable body, decoded to UTF-8"
show "getfattr -d 'INBOX/.parts/$stem'/[0-9]* 2>/dev/null | head -n 12"

step "server-side search as directories (nothing is downloaded to search)"
show "ls 'INBOX/.search/Nested'"
show "ls -R '.search/subject:Grüße' | head -n 12   # every folder, one search each"

step "changing it (every change is on the server when the command returns)"
show "mkdir -p Projects/2024"
show "cp 'INBOX/$first' Projects/2024/    # APPEND on close"
show "ls Projects/2024"
show "setfattr -n user.imap.flags -v '\\Flagged \$Important' Projects/2024/*.eml && getfattr -n user.imap.flags Projects/2024/*.eml"
show "mv Projects/2024/*.eml 'My Folder'/   # UID MOVE; it shows under its own name (new UID)"
show "ls 'My Folder'"
show "rmdir Projects/2024 Projects"

step "editors, rsync and the desktop: scratch files stay local, an edit replaces the message"
moved=$(ls 'My Folder' | head -n 1)
show "echo 'my notes' > 'My Folder/.notes.swp'; ls -a 'My Folder' | head -n 5   # a scratch name: local to the mount, never sent"
show "sed -i 's/^Subject: /Subject: [edited] /' 'My Folder/$moved' && grep -h '^Subject' 'My Folder'/*.eml | head -n 3   # one APPEND; the old one goes to Trash"
show "find . -maxdepth 2 -executable -type f | wc -l   # access() agrees with the modes: no message is executable"
show "df -h . | tail -n 1   # the account's quota where the server has one"
cd "$top"

cat <<EOF

The mount stays up: try it yourself, e.g.  ls $mnt/INBOX
To unmount and stop the demo server:       examples/demo.sh stop
(or by hand: fusermount3 -u $mnt; python3 tests/integration/dovecot.py stop $dir/dovecot)
EOF
