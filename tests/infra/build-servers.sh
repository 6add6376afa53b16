#!/usr/bin/env bash
# Builds (or reuses) the real servers the integration tests start: MinIO, mc,
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, the
# kubelet, kwok, helm and Kueue, all from the Go module proxy at pinned versions.
#
# Output: one folder per component and version under
#   ${TRAINFORGE_CACHE:-~/.cache/trainforge}/servers-v1/<name>-<version>/
# holding the binary and, when a build failed, build.log. A finished build
# leaves a .ok marker, so an interrupted one is redone, never half-used.
#
# Usage: build-servers.sh [component ...]   (default: all)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${TRAINFORGE_CACHE:-$HOME/.cache/trainforge}/servers-v1
mkdir -p "$cache"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
# The checksum database is not always reachable here; versions are pinned.
export GOSUMDB=${GOSUMDB:-off}

log() { printf '[build-servers %(%H:%M:%S)T] %s\n' -1 "$*"; }

# run_build NAME VERSION FUNCTION: runs FUNCTION in a temp dir with $out set,
# records the log and the .ok marker.
run_build() {
  local name=$1 version=$2 fn=$3
  local out=$cache/$name-$version
  if [[ -f $out/.ok ]]; then log "$name $version: cached"; return 0; fi
  rm -rf "$out"; mkdir -p "$out"
  local work; work=$(mktemp -d)
  local started=$SECONDS
  log "$name $version: building"
  if (cd "$work" && out=$out version=$version "$fn") >"$out/build.log" 2>&1; then
    touch "$out/.ok"
    log "$name $version: built in $((SECONDS - started))s"
  else
    log "$name $version: FAILED after $((SECONDS - started))s (log: $out/build.log)"
    tail -n 20 "$out/build.log" | sed 's/^/    /'
    rm -rf "$work"; return 1
  fi
  rm -rf "$work"
}

build_minio() { GOBIN=$out go install "github.com/minio/minio@$version"; }
build_mc()    { GOBIN=$out go install "github.com/minio/mc@$version"; }
build_kwok()  { GOBIN=$out go install "sigs.k8s.io/kwok/cmd/kwok@$version"; }
build_helm()  { GOBIN=$out go install "helm.sh/helm/v3/cmd/helm@$version"; }

build_etcd() {
  # etcd's own main module uses replace directives, so wrap the server module.
  go mod init trainforge.dev/etcd-wrapper
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$version"
  go mod tidy
  go build -trimpath -ldflags='-s -w' -o "$out/etcd" .
}

# kube_wrapper CMD...: builds the given k8s.io/kubernetes/cmd/<CMD> into $out.
kube_wrapper() {
  # k8s.io/kubernetes replaces its staging modules with local paths, so it
  # cannot be `go install`ed. Require it from a wrapper module and point every
  # staging module at its published k8s.io/<name> v0.<minor>.<patch>.
  local staging=v0${version#v1}
  go mod init trainforge.dev/kube-wrapper
  go mod edit -require="k8s.io/kubernetes@$version"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u |
    while read -r mod; do go mod edit -replace="$mod=$mod@$staging"; done
  # Pin the same go directive the upstream module needs.
  go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$@"
    printf ')\n'
  } > tools.go
  go mod tidy -e
  local minor=${version#v1.}; minor=${minor%%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in "$@"; do
    go build -trimpath -tags tools -ldflags="$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
}

build_kubernetes() { kube_wrapper kube-apiserver kube-controller-manager kube-scheduler kubectl; }
# The kubelet of the real worker node (kube_node fixture). Its own folder so the
# control plane's cache stays valid; the shared module and build caches make it
# cost ~25 s after build_kubernetes (only ~100 of its packages are new).
build_kubelet() { kube_wrapper kubelet; }

# The sandbox ("pause") process of the real node's pods: a static binary that
# waits for SIGTERM and reaps children. Ours, so no registry image is needed.
build_pause() {
  go mod init trainforge.dev/pause
  cat > main.go <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); p <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  go build -trimpath -ldflags='-s -w' -o "$out/pause" .
}

# Kueue: the manager binary, plus its CRDs and webhook manifests from the same
# module source (the kueue fixture applies them; nothing comes from elsewhere).
# One line of cmd/kueue/main.go is changed: without Kueue's internal certificate
# management it reads its metrics certificate from a fixed /etc/kueue/metrics/certs,
# which a host process on a shared test machine cannot own; KUEUE_METRICS_CERT_DIR
# now names another folder (unset: the path as upstream). The check fails the
# build when a new version moves that line, rather than building it unpatched.
build_kueue() {
  local src
  src=$(go mod download -json "sigs.k8s.io/kueue@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [[ -d $src ]] || { echo "sigs.k8s.io/kueue@$version: no module source"; return 1; }
  cp -r "$src" kueue && chmod -R u+w kueue && cd kueue || return 1
  local line='metricsCertPath := "/etc/kueue/metrics/certs"'
  grep -qF "$line" cmd/kueue/main.go || { echo "cmd/kueue/main.go: '$line' not found"; return 1; }
  sed -i "s|$line|$line; if d := os.Getenv(\"KUEUE_METRICS_CERT_DIR\"); d != \"\" { metricsCertPath = d }|" \
    cmd/kueue/main.go
  go build -ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$version" -o "$out/kueue" ./cmd/kueue
  mkdir -p "$out/crds"
  cp config/components/crd/bases/*.yaml "$out/crds/"
  cp config/components/webhook/manifests.yaml "$out/webhooks.yaml"
}

declare -A versions=(
  [minio]=$MINIO_VERSION [mc]=$MC_VERSION [etcd]=$ETCD_VERSION
  [kubernetes]=$KUBERNETES_VERSION [kubelet]=$KUBERNETES_VERSION [pause]=$PAUSE_VERSION [kwok]=$KWOK_VERSION [helm]=$HELM_VERSION
  [kueue]=$KUEUE_VERSION
)
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(minio etcd kubernetes kubelet pause kwok helm mc kueue)
failed=0
for c in "${components[@]}"; do
  run_build "$c" "${versions[$c]}" "build_$c" || failed=1
done
exit $failed
