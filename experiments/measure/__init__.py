"""Measurements made outside a cell's training, each leaving a file: the binarized corpus a
results folder's cells map (corpus), the unigram level a grid table's curves are read against
(unigram), and each optimizer's state bytes on a scale's model (optimizer_state); and one read
from a cell's own curve, the plateau maximum of RMS(U_t) (plateau)."""
