"""`config_from_dict` lives in the core package (`modeling_speechtext.stage_config`) so that the evaluation stage's
config uses the same rule; re-exported here for the corpus builders."""

from modeling_speechtext.stage_config import config_from_dict

__all__ = ["config_from_dict"]
