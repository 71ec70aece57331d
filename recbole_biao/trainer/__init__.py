from recbole_biao.trainer.trainer import CDRTrainer
