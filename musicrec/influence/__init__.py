"""Data influence, generic over model families: leave-one-out estimators share musicrec.influence.base,
validation, retraining, groups and held-out scoring; each family's estimator lives in musicrec.families."""
