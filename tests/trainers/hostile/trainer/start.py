"""A stdlib-only trainer that attacks the host through its run folder, for the
security tests (tests/security/test_run_folder.py). Hyperparameters, all
optional (JSON-encoded where noted):

    plant      JSON {path below the contract root: link target}: on the
               attempts in ``on`` each path (whatever is there is removed
               first) becomes a symlink to the target
    on         JSON list of attempts that plant (default: every attempt)
    fail_on    JSON list of attempts that exit 1 after planting (default none)
    report     JSON list of paths (relative to the contract root, or absolute in
               the trainer's view) whose state is printed as "seen <path>: <state>"
    scribble   JSON list of such paths the trainer tries to overwrite

It always writes model/model.txt and checkpoints/real.pt first, and prints
``uid=U gid=G caps=<CapEff> nnp=<NoNewPrivs>``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys


def _status_field(name: str) -> str:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _state(path: str) -> str:
    if os.path.islink(path):
        return f"link to {os.readlink(path)}"
    if os.path.isdir(path):
        return f"dir {sorted(os.listdir(path))}"
    if os.path.isfile(path):
        with open(path, errors="replace") as f:
            return f"file {f.read(200)!r}"
    return "absent"


def main() -> int:
    hp = json.loads(os.environ.get("SM_HPS", "{}"))
    attempt = int(os.environ.get("TRAINFORGE_ATTEMPT", "1"))
    root = os.path.dirname(os.environ["SM_MODEL_DIR"])
    print(f"uid={os.getuid()} gid={os.getgid()} caps={_status_field('CapEff')} "
          f"nnp={_status_field('NoNewPrivs')} attempt={attempt}", flush=True)
    for path in json.loads(hp.get("report", "[]")):
        print(f"seen {path}: {_state(os.path.join(root, path))}", flush=True)
    for folder, name in ((os.environ["SM_MODEL_DIR"], "model.txt"), (os.environ["SM_CHECKPOINT_DIR"], "real.pt")):
        try:
            with open(os.path.join(folder, name), "w") as f:
                f.write("honest work\n")
        except OSError as exc:
            print(f"could not write {name}: {exc}", flush=True)
    for path in json.loads(hp.get("scribble", "[]")):
        try:
            with open(os.path.join(root, path), "w") as f:
                f.write("scribbled")
            print(f"scribbled {path}", flush=True)
        except OSError as exc:
            print(f"could not scribble {path}: {exc}", flush=True)
    on = json.loads(hp.get("on", "null"))
    if on is None or attempt in on:
        for rel, target in json.loads(hp.get("plant", "{}")).items():
            path = os.path.join(root, rel)
            try:
                _remove(path)
                os.symlink(target, path)
                print(f"planted {rel} -> {target}", flush=True)
            except OSError as exc:
                print(f"could not plant {rel}: {exc}", flush=True)
    if attempt in json.loads(hp.get("fail_on", "[]")):
        print("failing on purpose", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
