"""The container contract as data: the /opt/ml layout, config files, the SM_* /
TRAINFORGE_* environment and the torchrun variables of multi-host jobs; the
instance catalog it draws resources from."""

from __future__ import annotations

import json

import pytest
from trainforge import contract
from trainforge.contract import HostInfo, Layout, contract_env, env_name, host_names
from trainforge.instances import DEFAULT_CATALOG, InstanceType, lookup
from trainforge.spec import parse_job

JOB = parse_job({
    "metadata": {"name": "digits-1"},
    "spec": {
        "image": "img",
        "hyperparameters": {"lr": "0.05", "batch-size": "32", "opt.momentum": "0.9"},
        "inputs": [
            {"channel": "train", "uri": "s3://data/train/"},
            {"channel": "validation-set", "uri": "s3://data/val/", "distribution": "ShardedByS3Key",
             "mode": "FastFile", "contentType": "application/x-npz"},
        ],
    },
})


def env_for(hosts: tuple[str, ...] = ("algo-1",), current: str = "algo-1", **kwargs: object) -> dict[str, str]:
    return contract_env(
        job_name="digits-1", layout=Layout("/opt/ml"), hyperparameters=JOB.spec.hyperparameters,
        inputs=JOB.spec.inputs, host=HostInfo(current, hosts), instance=lookup("gpu-2x"),
        **kwargs,  # type: ignore[arg-type]
    )


# --- layout ------------------------------------------------------------------------

def test_layout_is_sagemakers_tree() -> None:
    layout = Layout()
    assert layout.root == "/opt/ml"
    assert layout.hyperparameters_file == "/opt/ml/input/config/hyperparameters.json"
    assert layout.resource_config_file == "/opt/ml/input/config/resourceconfig.json"
    assert layout.input_data_config_file == "/opt/ml/input/config/inputdataconfig.json"
    assert layout.channel_dir("train") == "/opt/ml/input/data/train"
    assert layout.model_dir == "/opt/ml/model"
    assert layout.output_data_dir == "/opt/ml/output/data"
    assert layout.failure_file == "/opt/ml/output/failure"
    assert layout.checkpoint_dir == "/opt/ml/checkpoints"
    assert layout.metrics_file == "/opt/ml/output/metrics.jsonl"


def test_layout_relocates_under_any_root() -> None:
    layout = Layout("/tmp/job/run")
    assert all(d.startswith("/tmp/job/run/") for d in layout.directories())
    assert set(layout.directories()) == {
        "/tmp/job/run/input/config", "/tmp/job/run/input/data", "/tmp/job/run/model",
        "/tmp/job/run/output/data", "/tmp/job/run/checkpoints"}


# --- hosts and config files ---------------------------------------------------------

def test_host_names_and_rank() -> None:
    hosts = host_names("any", 3)
    assert hosts == ("algo-1", "algo-2", "algo-3")
    assert [HostInfo(h, hosts).rank for h in hosts] == [0, 1, 2]


def test_resource_config() -> None:
    config = contract.resource_config(HostInfo("algo-2", ("algo-1", "algo-2")))
    assert config["current_host"] == "algo-2"
    assert config["hosts"] == ["algo-1", "algo-2"]
    assert config["network_interface_name"] == "eth0"
    assert config["instance_groups"] == [{"instance_group_name": "homogeneousCluster",
                                          "hosts": ["algo-1", "algo-2"]}]


def test_input_data_config_uses_sagemakers_keys() -> None:
    assert contract.input_data_config(JOB.spec.inputs) == {
        "train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                  "RecordWrapperType": "None"},
        "validation-set": {"TrainingInputMode": "FastFile", "S3DistributionType": "ShardedByS3Key",
                           "RecordWrapperType": "None", "ContentType": "application/x-npz"},
    }


@pytest.mark.parametrize(("name", "variable"), [
    ("lr", "LR"), ("batch-size", "BATCH_SIZE"), ("opt.momentum", "OPT_MOMENTUM"), ("Train_2", "TRAIN_2"),
])
def test_env_name(name: str, variable: str) -> None:
    assert env_name(name) == variable


# --- environment ---------------------------------------------------------------------

def test_single_host_environment() -> None:
    env = env_for(num_cpus=3, attempt=2)
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert env["SM_INPUT_DIR"] == "/opt/ml/input"
    assert env["SM_INPUT_CONFIG_DIR"] == "/opt/ml/input/config"
    assert env["SM_OUTPUT_DIR"] == "/opt/ml/output"
    assert env["SM_OUTPUT_DATA_DIR"] == "/opt/ml/output/data"
    assert env["SM_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    assert json.loads(env["SM_CHANNELS"]) == ["train", "validation-set"]
    assert env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert env["SM_CHANNEL_VALIDATION_SET"] == "/opt/ml/input/data/validation-set"
    assert json.loads(env["SM_HPS"]) == {"lr": "0.05", "batch-size": "32", "opt.momentum": "0.9"}
    assert env["SM_HP_LR"] == "0.05"
    assert env["SM_HP_BATCH_SIZE"] == "32"
    assert env["SM_HP_OPT_MOMENTUM"] == "0.9"
    assert json.loads(env["SM_INPUT_DATA_CONFIG"]) == contract.input_data_config(JOB.spec.inputs)
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_NUM_GPUS"] == "2"  # from the instance type
    assert env["SM_NUM_CPUS"] == "3"  # the override
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["job_name"] == "digits-1" and training_env["hosts"] == ["algo-1"]
    assert env["TRAINING_JOB_NAME"] == env["TRAINFORGE_JOB_NAME"] == "digits-1"
    assert env["TRAINFORGE_ROOT"] == "/opt/ml"
    assert env["TRAINFORGE_METRICS_FILE"] == "/opt/ml/output/metrics.jsonl"
    assert env["TRAINFORGE_ATTEMPT"] == "2"
    assert env["TRAINFORGE_INSTANCE_TYPE"] == "gpu-2x"
    assert env["PYTHONUNBUFFERED"] == "1"
    for torchrun in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "NNODES"):
        assert torchrun not in env
    assert all(isinstance(v, str) for v in env.values())


def test_cpu_count_defaults_to_the_instance_type() -> None:
    assert env_for()["SM_NUM_CPUS"] == str(int(lookup("gpu-2x").cpus))


@pytest.mark.parametrize(("current", "rank"), [("algo-1", "0"), ("algo-2", "1"), ("algo-3", "2")])
def test_multi_host_environment_carries_torchrun_variables(current: str, rank: str) -> None:
    hosts = host_names("digits-1", 3)
    env = env_for(hosts, current, master_port=29501)
    assert env["MASTER_ADDR"] == "algo-1"
    assert env["MASTER_PORT"] == "29501"
    assert env["WORLD_SIZE"] == env["NNODES"] == "3"
    assert env["NODE_RANK"] == rank
    assert env["SM_CURRENT_HOST"] == current
    assert json.loads(env["SM_HOSTS"]) == list(hosts)


def test_torchrun_env_master_address_override() -> None:
    host = HostInfo("algo-2", ("algo-1", "algo-2"))
    assert contract.torchrun_env(host, 1234, master_addr="job-0.job") == {
        "MASTER_ADDR": "job-0.job", "MASTER_PORT": "1234", "WORLD_SIZE": "2", "NNODES": "2", "NODE_RANK": "1"}


def test_contract_wins_over_the_job_env() -> None:
    # Validation rejects reserved names in spec.env; this holds even for a spec that skipped it.
    env = env_for(extra={"SM_NUM_GPUS": "0", "LOG_LEVEL": "debug"})
    assert env["SM_NUM_GPUS"] != "0" and env["LOG_LEVEL"] == "debug"


def test_no_inputs_no_hyperparameters() -> None:
    env = contract_env(job_name="j", layout=Layout("/r"), hyperparameters={}, inputs=[],
                       host=HostInfo("algo-1", ("algo-1",)), instance=lookup("local"))
    assert env["SM_CHANNELS"] == "[]" and env["SM_HPS"] == "{}"
    assert not [k for k in env if k.startswith(("SM_CHANNEL_", "SM_HP_"))]


# --- failure file ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "reason"), [
    ("  boom\n", "boom"),
    ("", None),
    ("\n \n", None),
    ("x" * 5000, "x" * 1024),
])
def test_read_failure_reason(text: str, reason: str | None) -> None:
    assert contract.read_failure_reason(text) == reason


# --- instance catalog --------------------------------------------------------------------

def test_catalog_lookup() -> None:
    gpu = lookup("gpu-4x")
    assert (gpu.gpus, gpu.cpus) == (4, 48)
    assert gpu.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert gpu.tolerations and gpu.tolerations[0]["key"] == "nvidia.com/gpu"
    assert lookup("local").gpus == 0 and not lookup("local").tolerations


def test_catalog_is_consistent() -> None:
    for name, instance in DEFAULT_CATALOG.items():
        assert instance.name == name
        assert bool(instance.gpus) == bool(instance.tolerations) == bool(instance.node_selector)


def test_unknown_instance_type_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown instance type 'gpu-99x' \(known: cpu-large, .*local\)"):
        lookup("gpu-99x")


def test_custom_catalog() -> None:
    tiny = InstanceType(name="tiny", cpus=0.5, memory_gib=1)
    assert lookup("tiny", {"tiny": tiny}) is tiny
    with pytest.raises(KeyError, match=r"known: tiny\)"):
        lookup("local", {"tiny": tiny})
