"""The revcurse command with accelerate's FSDP opened to CPU processes: for tests/test_sharding.py only.

accelerate 1.15 switches a launch to FSDP only when its processes are on GPUs (``AcceleratorState`` keeps
``MULTI_CPU`` on CPU, and revcurse refuses that launch). torch's FSDP2 itself shards over gloo on CPU, so this
entry lifts that one gate after ``AcceleratorState`` is built, and the rest is accelerate's FSDP2 code and ours,
run for real. Launched by ``accelerate launch --config_file configs/accelerate-fsdp.yaml tests/fsdp_on_cpu.py``.
"""

import os
import sys

from accelerate import state
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_built = state.AcceleratorState.__init__


def _fsdp_on_cpu(self, *args, **kwargs) -> None:
    _built(self, *args, **kwargs)
    if os.environ.get("ACCELERATE_USE_FSDP") == "true" and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        if getattr(self, "fsdp_plugin", None) is None:
            self.fsdp_plugin = kwargs.get("fsdp_plugin") or FullyShardedDataParallelPlugin()


state.AcceleratorState.__init__ = _fsdp_on_cpu

if __name__ == "__main__":
    from revcurse.cli import main

    main(sys.argv[1:])
