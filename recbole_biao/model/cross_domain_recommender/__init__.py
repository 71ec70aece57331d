from recbole_biao.model.cross_domain_recommender.conet import CoNet
