from recbole_biao.model.cross_domain_recommender.bitgcf import BiTGCF
from recbole_biao.model.cross_domain_recommender.clfm import CLFM
from recbole_biao.model.cross_domain_recommender.cmf import CMF
from recbole_biao.model.cross_domain_recommender.conet import CoNet
from recbole_biao.model.cross_domain_recommender.dasl import DASL
from recbole_biao.model.cross_domain_recommender.dcdcsr import DCDCSR
from recbole_biao.model.cross_domain_recommender.deepapf import DeepAPF
from recbole_biao.model.cross_domain_recommender.dtcdr import DTCDR
from recbole_biao.model.cross_domain_recommender.emcdr import EMCDR
from recbole_biao.model.cross_domain_recommender.minet import MiNet
from recbole_biao.model.cross_domain_recommender.natr import NATR
from recbole_biao.model.cross_domain_recommender.sscdr import SSCDR

__all__ = ["BiTGCF", "CLFM", "CMF", "CoNet", "DASL", "DCDCSR", "DeepAPF", "DTCDR", "EMCDR", "MiNet", "NATR", "SSCDR"]
