"""BROAD (paper 4): the broad-shift OOD benchmark's ID classifier, evaluation and table."""
