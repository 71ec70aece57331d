from recbole_biao.trainer.trainer import CDRTrainer
from recbole_biao.trainer.biao import BIAOTrainer
