from recbole_biao.model.abstract import BiaoRecommender, check_contract
