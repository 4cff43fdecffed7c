"""The ground floor: small helpers that every other part may use.

Nothing here imports another part of resnext_det (or Detectron2's models), so a data
loader or a dataset script can use them without building the world: errors and their
exit codes, atomic writes, value checks, the safe unpickler, the datasets root, one
writer per output folder, and the tools' entry point.
"""
