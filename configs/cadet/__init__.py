"""CADet (paper 9): SimCLR pre-training with a linear probe, the CADet evaluation and the table."""
