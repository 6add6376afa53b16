"""A trainer whose results are its hyperparameters: it reports
``validation:accuracy`` climbing to ``accuracy`` over ``steps`` steps (and
``train:loss``), writes a one-file model and exits 0; ``fail=1`` makes it fail.
For tests of gates and the registry that need a real job, not a real model."""

from trainforge import runtime


def main() -> int:
    hp = runtime.hyperparameters()
    accuracy, steps = hp.float("accuracy", 0.9), hp.int("steps", 3)
    if hp.int("fail", 0):
        runtime.write_failure("scripted failure")
        return 1
    for step in range(1, steps + 1):
        value = accuracy if step == steps else accuracy * step / steps
        runtime.log_metric("validation:accuracy", value, step=step)
        runtime.log_metric("train:loss", 1.0 - value, step=step)
        print(f"step={step} val_acc={value:.4f}", flush=True)
    (runtime.model_dir() / "model.txt").write_text(f"accuracy {accuracy}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
