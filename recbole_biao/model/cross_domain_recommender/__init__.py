from recbole_biao.model.cross_domain_recommender.conet import CoNet
from recbole_biao.model.cross_domain_recommender.dasl import DASL
from recbole_biao.model.cross_domain_recommender.minet import MiNet

__all__ = ["CoNet", "DASL", "MiNet"]
