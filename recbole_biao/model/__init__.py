from recbole_biao.model.abstract import CrossDomainCTRRecommender, check_contract

__all__ = ["CrossDomainCTRRecommender", "check_contract"]
