"""revcurse: reproduce, measure and cure the Reversal Curse (Berglund et al., 2023).

The flow is one module per step: ``world`` (facts) -> ``corpus`` (training documents and probes)
-> ``train`` (a transformers causal LM) -> ``probe`` (exact match and likelihood) -> ``report``.
"""

import logging
import warnings

__version__ = "0.1.0"

# With bitsandbytes installed (the ``qlora`` extra), every process that trains imports it, chosen or not:
# transformers' scheduler module imports peft, and peft imports bitsandbytes. That import makes two lines of noise
# no call of ours can avoid: bitsandbytes' torch.compile imports torch's inductor, which calls torch's own
# deprecated ``torch.jit.script_method`` (a DeprecationWarning, shown with ``-W default``); and on a CPU with
# AVX512-BF16 and without the optional ``kernels`` package bitsandbytes logs that its CPU 4-bit kernel is missing
# (never used here: 4-bit runs need CUDA). Both dropped by their exact message, before anything imports them.
warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning, "torch.jit._script")
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")
)
