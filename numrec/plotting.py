"""Pictures of training and of a model (needs matplotlib: pip install numrec[plot])."""
