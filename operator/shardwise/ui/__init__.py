"""`shardwise ui`: a local web page for fixing labels from an Experiment's diagnosis."""
