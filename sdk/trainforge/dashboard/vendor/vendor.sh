#!/usr/bin/env bash
# Vendor uPlot (MIT) into the dashboard's static folder: the dashboard works
# offline and never loads anything from a CDN. Re-run after changing VERSION;
# commit what it writes (static/uplot/).
set -euo pipefail
VERSION=1.6.32
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../static/uplot"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$VERSION" >/dev/null)
tar -xzf "$work/uplot-$VERSION.tgz" -C "$work"
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$dest/"
echo "$VERSION" > "$dest/VERSION"
echo "uPlot $VERSION -> $dest"
