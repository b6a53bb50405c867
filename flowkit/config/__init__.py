"""The config layer: a recipe becomes objects, and a trained run becomes them again.

The typed schema, recipes and overrides (``schema``), ``flowkit train``'s tokens to a config and a checkpoint
(``resolve``), the one place a config becomes data, model, path, coupling and method (``build``), and the
classifier runs that guide sampling (``guidance``). Imports every layer below it: the ground floor, runtime, math,
samplers, metrics, data and the method contract (``flowkit.methods``); never training or the interface.
"""
