from recbole_biao.model.abstract import BiaoRecommender, check_contract

__all__ = ["BiaoRecommender", "check_contract"]
