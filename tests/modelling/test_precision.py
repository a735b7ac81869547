"""The precision ``fit`` picks: bf16-mixed only where the hardware computes bfloat16 natively."""

from __future__ import annotations

import pytest

from nasty_lightning.modelling.precision import cpu_has_native_bf16, fastest_precision

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw{}\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        (X86.format(" avx512_bf16"), True),
        (X86.format(" amx_bf16 amx_tile"), True),
        (X86.format(""), False),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("model name\t: has bf16 in its name\nflags\t: sse2\n", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native, tmp_path):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native
    assert fastest_precision("cpu", tmp_path / "cpuinfo") == ("bf16-mixed" if native else "32-true")


def test_no_cpuinfo_means_float32(tmp_path):
    assert not cpu_has_native_bf16(tmp_path / "missing")
    (tmp_path / "cpuinfo").write_text(X86.format(" avx512_bf16"))
    assert fastest_precision("mps", tmp_path / "cpuinfo") == "32-true"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_gradient_clipping_works_with_the_fused_optimizer(tiny_bert, toy_treebank, tmp_path, precision):
    """Lightning's mixed-precision plugin refuses to clip beside a fused optimizer; ours clips, and does clip:
    gradients cut to a norm of 1e-12 leave AdamW (eps 1e-8) almost no step to take."""
    import torch
    from clirun import fit_args, nasty_train
    from safetensors.torch import load_file

    start = load_file(tiny_bert / "model.safetensors")
    key = next(k for k in start if k.endswith("encoder.layer.0.attention.self.query.weight"))
    moved = {}
    for clip in ("1e-12", "1000"):  # almost nothing, and never
        run = tmp_path / clip
        args = fit_args(tiny_bert, toy_treebank, run, "--trainer.max_steps", "4", "--trainer.precision", precision)
        result = nasty_train(*args, "--trainer.gradient_clip_val", clip, "--early_stopping.patience", "100")
        assert result.returncode == 0, result.stderr[-3000:]
        weights = torch.load(run / "checkpoints" / "epoch=0.ckpt", weights_only=True)["state_dict"]  # at step 4
        moved[clip] = float((weights[f"model.{key}"] - start[key]).abs().max())
    assert moved["1e-12"] < 1e-5 < 1e-4 < moved["1000"], moved


@pytest.mark.parametrize(("validation_precision", "autocast"), [("training", True), ("float32", False)])
def test_validation_computes_in_the_training_precision_unless_told_float32_and_test_in_float32(
    tiny_bert, toy_treebank, monkeypatch, validation_precision, autocast
):
    import lightning as L
    import torch

    from nasty_lightning.data.datamodule import TaggingDataModule
    from nasty_lightning.training.module import TokenTagger

    data = TaggingDataModule(
        train_file=str(toy_treebank["train"]),
        val_file=str(toy_treebank["dev"]),
        test_file=str(toy_treebank["dev"]),
        model_name=str(tiny_bert),
        cache_dir=None,
    )
    data.setup("fit")
    model = TokenTagger(str(tiny_bert), labels=data.label_vocab, validation_precision=validation_precision)
    seen = []
    step = model._step
    monkeypatch.setattr(model, "_step", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or step(*a, **k))
    trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.validate(model, datamodule=data, verbose=False)
    assert seen and set(seen) == {autocast}
    seen.clear()
    trainer.test(model, datamodule=data, verbose=False)
    assert seen and set(seen) == {False}
