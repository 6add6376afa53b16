"""A stdlib-only trainer for the dashboard's tests: a curve that grows while
it runs, and names and lines chosen by hyperparameters (the tests put an
attacker's payload in them).

    steps     metric points to write (default 20)
    delay     seconds between points (default 0.05)
    metric    name of the second metric (default "val:acc")
    line      an extra line printed at every step (default none)
    lr        scales the loss curve (default 0.1)
    tensorboard  "true": write a (fake) event file to $TRAINFORGE_TENSORBOARD_DIR/run1/,
                 and a link there to /etc/hostname that must never be uploaded
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time


def main() -> int:
    hp = json.loads(os.environ.get("SM_HPS", "{}"))
    steps, delay = int(hp.get("steps", "20")), float(hp.get("delay", "0.05"))
    lr, metric, extra = float(hp.get("lr", "0.1")), hp.get("metric", "val:acc"), hp.get("line")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    path = os.environ["TRAINFORGE_METRICS_FILE"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        for step in range(1, steps + 1):
            loss = math.exp(-lr * step) + 0.05
            acc = 1.0 - loss / 2
            now = time.time()
            for name, value in (("train:loss", loss), (metric, acc)):
                out.write(json.dumps({"timestamp": now, "name": name, "value": value, "step": step}) + "\n")
            out.flush()
            print(f"step={step} loss={loss:.4f}", flush=True)
            if extra:
                print(extra, flush=True)
            time.sleep(delay)
    if hp.get("tensorboard") == "true":
        folder = os.path.join(os.environ["TRAINFORGE_TENSORBOARD_DIR"], "run1")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "events.out.tfevents.1.test"), "wb") as f:
            f.write(b"\x18\x00\x00\x00fake tensorboard event")
        os.symlink("/etc/hostname", os.path.join(folder, "planted-link"))
    os.makedirs(os.environ["SM_MODEL_DIR"], exist_ok=True)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
        f.write("a model\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
