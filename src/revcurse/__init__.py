"""revcurse: reproduce, measure and cure the Reversal Curse (Berglund et al., 2023).

The flow is one module per step: ``world`` (facts) -> ``corpus`` (training documents and probes)
-> ``train`` (a transformers causal LM) -> ``probe`` (exact match and likelihood) -> ``report``.
"""

import logging
import warnings

__version__ = "0.1.0"

# bitsandbytes (the `qlora` extra) is imported by transformers and peft whenever it is installed, and on a CPU with
# AVX512-BF16 it then tries to fetch a 4-bit kernel from the model hub and logs that it could not. Nothing here
# uses that kernel (4-bit QLoRA runs on CUDA only), so that one message is dropped; the logger stays as it was.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")
)
# bitsandbytes also calls torch.compile at import, which imports torch's inductor, whose own import uses torch's
# deprecated torch.jit.script_method (torch 2.13): a DeprecationWarning about torch's code, not ours or the user's.
warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning, "torch.jit._script")
