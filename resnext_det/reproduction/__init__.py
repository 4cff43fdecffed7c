"""The paper's job, end to end, on top of the plugin: data, training, pretraining, evaluation,
analysis, deployment, and the commands that run them.

The plugin (``resnext_det`` outside this package: the models, weights, configs and their
registration) never imports from here; a Detectron2 project that only needs the
backbones imports the plugin alone.
"""
