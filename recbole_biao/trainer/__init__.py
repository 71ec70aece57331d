from recbole_biao.trainer.biao import BIAOTrainer
from recbole_biao.trainer.trainer import CDRTrainer

__all__ = ["BIAOTrainer", "CDRTrainer"]
