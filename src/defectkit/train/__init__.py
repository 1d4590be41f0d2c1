"""Training: models, the hot loop, member kinds (each registered in the module that defines it, imported
here so that the registry is full once anything of this layer is), checkpoints, the planner, executors."""
from defectkit.train import anomaly, classifier  # noqa: F401 (register the member kinds)
