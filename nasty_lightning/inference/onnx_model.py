"""A model as one ONNX graph, run by ONNX Runtime: how ``nasty-train quantize`` stores an INT8 model.

The graph maps (input ids, attention mask, casing classes, and the character ids of a model with a character
network) to every head's logits, like ``modelling.network.Network``. An ONNX file is a protobuf of tensors and
operators: loading one runs no code of its own. What could still reach outside the model directory is refused
before ONNX Runtime opens it: tensors stored in external files (``data_location: EXTERNAL`` names a path to
read), and operators of a domain other than ONNX's and ONNX Runtime's own (a custom operator needs a library
loaded into the process), in the graph, the graphs nested in its nodes and the model's local functions.
The graph's outputs must match the heads the model directory names.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import CHAR_IDS, META_FILE, WORD_CHARS

if TYPE_CHECKING:
    import onnx
    import torch

    from nasty_lightning.data.batch import Batch

INPUTS = ("input_ids", "attention_mask", "casing", "chars")
_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}  # ONNX's operators and ONNX Runtime's contrib ones


def _graphs(graph: onnx.GraphProto | onnx.FunctionProto) -> Iterator[onnx.GraphProto | onnx.FunctionProto]:
    """A graph (or a local function's body) and every graph nested in its nodes' attributes (If, Loop, Scan)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _model_graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto | onnx.FunctionProto]:
    """The main graph, the model's local functions, and every graph nested in either."""
    for top in (model.graph, *model.functions):
        yield from _graphs(top)


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for g in _model_graphs(model):
        yield from getattr(g, "initializer", ())  # a function has none of its own
        yield from (s.values for s in getattr(g, "sparse_initializer", ()))
        for node in g.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def check_onnx(path: Path) -> None:
    """Refuse an ONNX file that is not a protobuf, reads tensors from other files or needs custom operators."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # the protobuf parser raises DecodeError, and others on a truncated file
        raise UserError(f"{path} is not an ONNX model ({err.__class__.__name__})") from None
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise UserError(f"{path}: tensor {tensor.name!r} is stored in another file, which is refused")
    local = {(f.domain, f.name) for f in model.functions}  # a call of one of these is no custom operator
    imports = {o.domain for o in [*model.opset_import, *(o for f in model.functions for o in f.opset_import)]}
    domains = imports - {domain for domain, _ in local}
    domains |= {n.domain for g in _model_graphs(model) for n in g.node if (n.domain, n.op_type) not in local}
    if domains - _DOMAINS:
        raise UserError(f"{path} needs operators of {', '.join(sorted(domains - _DOMAINS))}, which are refused")


class OnnxNetwork:
    """An ONNX graph of the encoder and every head, run by ONNX Runtime on the CPU."""

    # One sentence a row: a graph traced from packed rows (``packing``) tagged
    # one sentence 13 to 40% slower (MiniLM INT8, AVX2-only CPU), and INT8 gained little from batching there.
    packs = False

    def __init__(self, session: object, path: Path) -> None:
        self.session, self.path = session, path
        self.inputs = [i.name for i in session.get_inputs()]

    @classmethod
    def load(cls, path: Path, head_sizes: list[int], threads: int | None = None, chars: bool = False) -> OnnxNetwork:
        """Open ``path`` after ``check_onnx``; its outputs must be one per head, of ``head_sizes`` labels, and it
        must take character ids if and only if ``chars`` (the model directory says the model reads them).
        ``threads``: ONNX Runtime's intra-op threads (``None``: as many as PyTorch uses)."""
        import onnxruntime
        import torch

        check_onnx(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ONNX Runtime warns about every graph it optimises
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a graph it cannot run
            raise UserError(f"cannot load {path} ({str(err).strip().splitlines()[0]})") from None
        network = cls(session, path)
        missing = {"input_ids", "attention_mask"} - set(network.inputs)
        if missing or set(network.inputs) - set(INPUTS):
            raise UserError(f"{path} takes the inputs {network.inputs}, not {list(INPUTS)}")
        if ("chars" in network.inputs) != chars:
            raise UserError(
                f"{path} {'takes' if not chars else 'does not take'} character ids, but {META_FILE} says the model "
                f"{'does not read' if not chars else 'reads'} characters: the files do not belong together"
            )
        sizes = [o.shape[-1] for o in session.get_outputs()]
        if sizes != head_sizes:
            raise UserError(
                f"{path} gives {len(sizes)} outputs of {sizes} labels, but {META_FILE} and config.json name "
                f"{len(head_sizes)} heads of {head_sizes}: the files do not belong together"
            )
        return network

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        casing: torch.Tensor,
        chars: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        import torch

        given = {"input_ids": input_ids, "attention_mask": attention_mask, "casing": casing, "chars": chars}
        outputs = self.session.run(None, {name: given[name].numpy() for name in self.inputs})
        return tuple(torch.from_numpy(x) for x in outputs)

    def run(self, batch: Batch, device: object = None) -> tuple[torch.Tensor, ...]:
        """The logits of a batch of padded rows (as ``network.Network.run``; the graph runs on the CPU)."""
        return self(batch.input_ids, batch.attention_mask, batch.casing, batch.chars)


def _graph(network: torch.nn.Module) -> torch.nn.Module:
    """What the graph computes: ``network`` (``Network``) on the inputs ``INPUTS`` names, the character ids
    only where it reads characters (otherwise the graph takes the first three)."""
    import torch

    if getattr(network, "chars", None) is None:
        return network

    class WithChars(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, input_ids, attention_mask, casing, chars):  # noqa: ANN001, ANN202 - traced
            return self.network(input_ids, attention_mask, casing, chars=chars)

    return WithChars()


def _example(network: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Inputs of ``_graph(network)`` for ``ids`` and ``mask``: casing class 2 (title) on the real subwords, and
    character ids that differ between positions (half of them 0, as in short words), all 0 on padding."""
    import torch

    casing = mask * 2
    if getattr(network, "chars", None) is None:
        return ids, mask, casing
    chars = (ids[..., None] * 7 + torch.arange(WORD_CHARS)) % (CHAR_IDS - 1) + 1
    chars[..., WORD_CHARS // 2 :] = 0
    return ids, mask, casing, chars * mask[..., None]


def write_onnx(network: torch.nn.Module, path: Path) -> None:
    """Export ``modelling.network.Network`` to ``path`` as one ONNX file, with batch and length dynamic."""
    import torch

    # A mask without padding: traced with a padded example, the exporter (torch 2.13, transformers 5) gave a
    # graph that ignored the mask. ``_check_export`` compares the graph with PyTorch on a padded batch.
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    example = _example(network, ids, torch.ones_like(ids))
    names = INPUTS[: len(example)]
    dims = {name: {0: "batch", 1: "length"} for name in names}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _graph(network.eval().float()),
            example,
            str(path),
            input_names=list(names),
            dynamic_shapes=dims,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    _check_export(network, path)


def _check_export(network: torch.nn.Module, path: Path) -> None:
    """Refuse an export whose graph disagrees with ``network`` on a padded batch of two rows."""
    import torch

    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 0, 0, 0, 0]])
    mask = (ids > 0).long()
    inputs = _example(network, ids, mask)
    with torch.no_grad():
        expected = _graph(network)(*inputs)
    got = OnnxNetwork.load(path, [x.shape[-1] for x in expected], chars=len(inputs) > 3)(*inputs)
    for e, g in zip(expected, got, strict=True):
        difference = (e - g)[mask.bool()].abs().max().item()
        if difference > 1e-3 * max(1.0, e.abs().max().item()):
            raise RuntimeError(f"the ONNX export of the model differs from it by {difference:.3g} on a padded batch")


@contextmanager
def quiet_onnx_export() -> Iterator[None]:
    """Silence the ONNX export's and ONNX Runtime quantization's notes about their own internals (missing
    torchvision operators, axis renaming, a pre-processing tip on the root logger); errors still raise."""
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
