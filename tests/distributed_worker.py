"""One rank of the torchrun test (tests/test_distributed.py): trains, then writes what it ended with.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT DATA_PATH MODEL \
        [EPOCHS [RESUME [--key=value ...]]]
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_biao import distributed  # noqa: E402
from recbole_biao.quick_start import run_recbole_biao  # noqa: E402
from tests.helpers import FAST  # noqa: E402


def main(out, data_path, model, epochs="1", resume="", *overrides):
    from recbole_biao.cli import parse_overrides

    kept = {}
    values = {**FAST, "data_path": data_path, "checkpoint_dir": os.path.join(out, "saved"),
              "train_epochs": [f"BOTH:{epochs}"], **parse_overrides(overrides)}
    result = run_recbole_biao(model, trainer="BIAO", config_dict=values, resume=resume or None,
                              trainer_hook=lambda t, data: kept.update(trainer=t))
    trainer = kept["trainer"]
    state = {"model": trainer.model.state_dict(), "test": result["test_result"],
             "rows": torch.from_numpy(trainer.train_data.share(torch.arange(10).numpy()))}
    if hasattr(trainer, "upper"):
        state["perceptron"] = trainer.upper.perceptron.state_dict()
        state["upper_steps"] = trainer.upper.stats["steps"]
    torch.save(state, os.path.join(out, f"rank{distributed.rank()}.pt"))
    distributed.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
