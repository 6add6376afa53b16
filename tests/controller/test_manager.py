"""The manager's informers without an apiserver: a kind whose CRD is missing
holds no other kind up. No cluster."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from trainforge_controller.main import Controller, Handler, Informer


def test_a_kind_without_its_crd_is_an_empty_synced_store() -> None:
    controller = Controller(client.ApiClient(), namespace="ns")
    calls = []

    def missing(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise client.ApiException(status=404, reason="Not Found")

    informer = Informer("TuningJob", missing, ("trainforge.dev", "v1alpha1", "ns", "tuningjobs"),
                        (Handler(lambda obj: "", lambda obj: None),))
    store = controller.cache.store("TuningJob")
    stop = threading.Event()
    thread = threading.Thread(target=controller._watch, args=(stop, informer), daemon=True)
    thread.start()
    try:
        assert store._synced.wait(5), "the store of a missing kind must count as synced"
        assert store.all_keys() == [] and len(calls) == 1  # no hot retry loop
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
