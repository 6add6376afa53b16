"""A stdlib-only trainer that fails on purpose, for the local backends' fault
tests. What it does is chosen by the hyperparameter ``action``:

    ok        print metric lines, write a model and output data, exit 0
    exit      print a line, exit with ``code`` (default 3), no failure file
    failure   write ``message`` to the failure file, exit 1
    signal    kill itself with ``signal`` (default 9, SIGKILL)
    partial   on attempt 1: leave files in the model and output data folders,
              then fail; on later attempts: as ``ok``
    sleep     print "sleeping", sleep ``seconds`` (default 60); SIGTERM ends it
              at once with exit 143 unless ``ignore_sigterm`` is "true"
    flood     print lines of ``width`` characters (default 4096) until ended;
              SIGTERM ends it with exit 143
    longline  print ``mib`` MiB (default 60) without a newline, then a newline
              and "after the long line", sleep ``seconds`` (default 0), exit 0
    bigmodel  write ``mib`` MiB (default 200) of incompressible bytes as the
              model, print "model written", exit 0

``only_host`` (e.g. algo-2): only that host of a multi-host job does
``action``; the others ``sleep``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> int:
    hp = json.loads(os.environ.get("SM_HPS", "{}"))
    action = hp.get("action", "ok")
    if hp.get("only_host") not in (None, os.environ.get("SM_CURRENT_HOST")):
        action = "sleep"
    print(f"faults trainer: action={action} attempt={os.environ.get('TRAINFORGE_ATTEMPT')}", flush=True)
    if action == "partial" and os.environ.get("TRAINFORGE_ATTEMPT") == "1":
        for folder, name in ((os.environ["SM_MODEL_DIR"], "partial.txt"),
                             (os.environ["SM_OUTPUT_DATA_DIR"], "partial.csv")):
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name), "w") as f:
                f.write("half\n")
        print("wrote partial files; failing", flush=True)
        return 1
    if action in ("ok", "partial"):
        for step in (1, 2):
            print(f"step={step} loss={1.0 / step:.3f}", flush=True)
        os.makedirs(os.environ["SM_MODEL_DIR"], exist_ok=True)
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
            f.write("a model\n")
        return 0
    if action == "exit":
        print("about to exit without a failure file", flush=True)
        return int(hp.get("code", "3"))
    if action == "failure":
        os.makedirs(os.environ["SM_OUTPUT_DIR"], exist_ok=True)
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write(hp.get("message", "the trainer says why"))
        return 1
    if action == "signal":
        os.kill(os.getpid(), int(hp.get("signal", "9")))
        time.sleep(10)
        return 0
    if action == "sleep":
        if hp.get("ignore_sigterm") == "true":
            signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
        else:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("sleeping", flush=True)
        deadline = time.monotonic() + float(hp.get("seconds", "60"))
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return 0
    if action == "flood":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
        line = "f" * int(hp.get("width", "4096"))
        while True:
            print(line, flush=True)
    if action == "longline":
        block = b"L" * (1024 * 1024)
        for _ in range(int(hp.get("mib", "60"))):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"\nafter the long line\n")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        time.sleep(float(hp.get("seconds", "0")))
        return 0
    if action == "bigmodel":
        os.makedirs(os.environ["SM_MODEL_DIR"], exist_ok=True)
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.bin"), "wb") as f:
            for _ in range(int(hp.get("mib", "200"))):
                f.write(os.urandom(1024 * 1024))
        print("model written", flush=True)
        return 0
    print(f"unknown action {action!r}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
