"""revcurse: reproduce, measure and cure the Reversal Curse (Berglund et al., 2023).

The flow is one module per step: ``world`` (facts) -> ``corpus`` (training documents and probes)
-> ``train`` (a transformers causal LM) -> ``probe`` (exact match and likelihood) -> ``report``.
"""

__version__ = "0.1.0"
