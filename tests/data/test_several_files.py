"""Several training and validation files, a seeded sample of the training data, temperature sampling and
augmentation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from clirun import fit_args, metrics, nasty_train
from conftest import V1_MODEL
from toy_data import toy_sentences, write_conllu

from nasty_lightning.data.batching import SentenceBatchSampler
from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.data.sampling import augment, draw, sample, temperature_draws
from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.conllu import read_sentences

V1 = V1_MODEL

# A second toy language: its own words, the same tags (and one, INTJ, that the first has not).
SPANISH = {"el": "DET", "gato": "NOUN", "perro": "NOUN", "come": "VERB", "en": "ADP", "grande": "ADJ", "hola": "INTJ"}


def spanish(n: int, seed: int) -> list[list[tuple[str, str]]]:
    words = {tag: [w for w, t in SPANISH.items() if t == tag] for tag in set(SPANISH.values())}
    sentences = []
    for k, sentence in enumerate(toy_sentences(n, seed)):
        sentence = [
            (words[t][hash((k, i)) % len(words[t])] if t in words else w, t) for i, (w, t) in enumerate(sentence)
        ]
        sentences.append([("hola", "INTJ")] + sentence if k % 3 == 0 else sentence)
    return sentences


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory, toy_treebank):
    root = tmp_path_factory.mktemp("es")
    return {
        "train": [toy_treebank["train"], write_conllu(root / "es-train.conllu", spanish(24, seed=2))],
        "dev": [toy_treebank["dev"], write_conllu(root / "es-dev.conllu", spanish(9, seed=3))],
    }


@pytest.mark.slow
@pytest.mark.integration
def test_two_languages_train_together_and_each_file_scores_as_eval_scores_it(tiny_bert, two_languages, tmp_path):
    run = tmp_path / "run"
    lists = [f"[{','.join(map(str, two_languages[s]))}]" for s in ("train", "dev")]
    result = nasty_train(
        *fit_args(tiny_bert, {"train": lists[0], "dev": lists[1]}, run, "--trainer.max_epochs", "2"),
        "--validation.every_n_steps", "0", "--data.sampling_temperature", "2",
        "--model.validation_precision", "float32",  # scored as eval scores the exported model, in float32
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sentences per epoch by training file: train.conllu 55 of 64, es-train.conllu 33 of 24" in result.stderr
    validations = [row for row in metrics(run) if row.get("val_acc")]
    last = validations[-1]
    best = max(validations, key=lambda row: float(row["val_acc"]))  # the first of the best: the exported model
    epoch_line = next(line for line in result.stdout.splitlines() if line.startswith("Epoch 2 completed."))
    assert (
        f"validation_accuracy: {float(last['val_acc']):.3f} (dev {float(last['val_acc/dev']):.3f}, es-dev "
        in epoch_line
    )
    words = {}
    for path in two_languages["dev"]:
        out = tmp_path / f"{path.stem}.json"
        result = nasty_train("eval", "--model_dir", run / "model", "--test_file", path, "--output_json", out)
        assert result.returncode == 0, result.stderr[-3000:]
        scores = json.loads(out.read_text())
        assert float(best[f"val_acc/{path.stem}"]) == pytest.approx(scores["accuracy"], abs=1e-6)
        words[path.stem] = sum(len(s.words) for s in read_sentences(path))
    total = sum(float(best[f"val_acc/{stem}"]) * n for stem, n in words.items()) / sum(words.values())
    assert float(best["val_acc"]) == pytest.approx(total, abs=1e-6)  # the total is over the words of both
    card = (run / "model" / "README.md").read_text()
    assert f"(dev {float(best['val_acc/dev']):.4f}, es-dev {float(best['val_acc/es-dev']):.4f})" in card
    model = json.loads((run / "model" / "config.json").read_text())
    assert "INTJ" in model["id2label"].values()  # one vocabulary, from both files


def test_a_sample_is_the_same_in_every_process_and_nested():
    first = sample(1000, 250, seed=7)
    code = "from nasty_lightning.data.sampling import sample; print(sample(1000, 250, seed=7))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(other) == first and len(set(first)) == 250
    assert set(sample(1000, 100, seed=7)) < set(first)
    assert sample(1000, 250, seed=8) != first


def test_max_train_sentences_trains_on_the_sample(toy_treebank, tiny_bert):
    def windows(seed: int) -> list:
        data = TaggingDataModule(
            str(toy_treebank["train"]), model_name=str(tiny_bert), max_train_sentences=10, seed=seed
        )
        data.setup("fit")
        return data.datasets["train"]

    once, again = windows(1), windows(1)
    assert [w.input_ids for w in once] == [w.input_ids for w in again] and len(once) == 10
    assert sorted(w.sentence for w in once) == sample(64, 10, seed=1)
    with pytest.raises(UserError, match="--data.max_train_sentences 65 is more than the 64 training sentences"):
        TaggingDataModule(str(toy_treebank["train"]), model_name=str(tiny_bert), max_train_sentences=65)


def test_augmentation_changes_words_never_labels(toy_treebank):
    sentences = read_sentences(toy_treebank["train"])
    words = [s.words for s in sentences]
    labels = [[(tag,) for tag in s.labels("upos")] for s in sentences]
    new_words, new_labels = augment(words, labels, copies=3, seed=0)
    assert new_labels == labels * 3
    tags_of = Counter((w, t) for s, ids in zip(words, labels, strict=True) for w, t in zip(s, ids, strict=True))
    changed = 0
    for sentence, ids, original in zip(new_words, new_labels, words * 3, strict=True):
        assert len(sentence) == len(original)
        for word, label, old in zip(sentence, ids, original, strict=True):
            assert (word, label) in tags_of  # a replacement was seen with exactly this label
            changed += word != old
    assert 0.05 < changed / sum(map(len, new_words)) < 0.2  # one chance in five, less the words with no other
    assert augment(words, labels, copies=3, seed=0) == (new_words, new_labels)


def test_augmentation_refuses_lemmas(morphology):
    with pytest.raises(UserError, match="--data.augment replaces words"):
        TaggingDataModule(str(morphology["train"]), label_column=["upos", "lemma"], augment=1)


def test_temperature_gives_a_small_file_more_of_each_epoch_and_keeps_its_size():
    assert temperature_draws([900, 100], 1) == [900, 100]
    draws = temperature_draws([900, 100], 5)
    assert draws[1] > 100 and sum(draws) == 1000
    # an undersampled file shows every member once before any repeats; an oversampled one repeats evenly
    members = list(range(10))
    seen = draw(members, 4, 0, seed=3) + draw(members, 4, 1, seed=3) + draw(members, 4, 2, seed=3)
    assert sorted(seen[:10]) == members
    assert Counter(draw(members, 25, 0, seed=3)).most_common()[-1][1] == 2


def test_the_sampler_draws_each_file_as_told_and_resumes_exactly():
    groups = [0] * 30 + [1] * 6
    sampler = SentenceBatchSampler([5] * 36, 4, shuffle=True, seed=1, groups=groups, draws=[24, 12])
    sampler.set_epoch(2)
    batches = list(sampler)
    drawn = Counter(groups[i] for b in batches for i in b)
    assert drawn == {0: 24, 1: 12} and len(batches) == len(sampler) == 9
    again = SentenceBatchSampler([5] * 36, 4, shuffle=True, seed=1, groups=groups, draws=[24, 12])
    again.resume(epoch=2, batches_done=4)
    assert list(again) == batches[4:]


def test_every_file_of_a_list_is_checked_line_by_line(toy_treebank, tmp_path):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tel\tel\tDET\t_\t_\t0\troot\t_\t_\n2\tgato\tgato\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{bad}:2: "):
        TaggingDataModule([str(toy_treebank["train"]), str(bad)])


def test_eval_in_another_language_counts_labels_never_seen_as_wrong(two_languages, tmp_path):
    # a tagger trained on the toy English data only, which has no INTJ
    out = tmp_path / "scores.json"
    result = nasty_train("eval", "--model_dir", V1, "--test_file", two_languages["dev"][1], "--output_json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    sentences = read_sentences(two_languages["dev"][1])
    intj = sum(s.labels("upos").count("INTJ") for s in sentences)
    assert f"es-dev.conllu: {intj} words carry upos labels the model never saw in training (INTJ)" in result.stderr
    scores = json.loads(out.read_text())
    assert scores["total"] == sum(len(s.words) for s in sentences)  # every word is scored
    assert scores["per_tag"]["INTJ"]["recall"] == 0 and scores["per_tag"]["INTJ"]["support"] == intj


def test_split_conllu_keeps_every_sentence_byte_for_byte(tmp_path):
    blocks = [f"# sent_id = {g}-{i}\n1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n" for i, g in enumerate(["email", "reviews"] * 3)]
    source = tmp_path / "ewt.conllu"
    source.write_text("\n".join(blocks) + "\n", encoding="utf-8")
    script = Path(__file__).parents[2] / "scripts" / "split_conllu.py"
    for args in (["genre", "--held_out", "reviews"], ["first", "--n", "2"]):
        run = [sys.executable, script, *args, "--conllu_file", source, "--out", tmp_path / args[0]]
        subprocess.run(run, check=True, capture_output=True)
    reviews, other = (tmp_path / "genre" / f"ewt-{g}.conllu" for g in ("reviews", "other"))
    assert reviews.read_text().count("reviews-") == 3 and "email" not in reviews.read_text()

    def sentences(*files: Path) -> list[str]:
        return sorted(b for f in files for b in f.read_text(encoding="utf-8").split("\n\n") if b.strip())

    assert sentences(reviews, other) == sentences(source)  # every sentence once, unchanged
    first, rest = (tmp_path / "first" / f"ewt-{p}.conllu" for p in ("first2", "rest"))
    assert first.read_bytes() + rest.read_bytes() == source.read_bytes()


def test_split_conllu_splits_an_iob2_file_into_files_of_the_same_format(tmp_path):
    blocks = [f"# sent_id = s{i}\n1\tAnn\tB-PER\t-\t-\n2\tsat\tO\t-\t-\n" for i in range(5)]
    source = tmp_path / "uner.iob2"
    source.write_text("\n".join(blocks) + "\n", encoding="utf-8")
    script = Path(__file__).parents[2] / "scripts" / "split_conllu.py"
    run = [sys.executable, script, "first", "--n", "3", "--conllu_file", source, "--out", tmp_path / "split"]
    subprocess.run(run, check=True, capture_output=True)
    first, rest = tmp_path / "split" / "uner-first3.iob2", tmp_path / "split" / "uner-rest.iob2"
    assert first.read_bytes() + rest.read_bytes() == source.read_bytes()
    assert first.read_text().count("# sent_id") == 3 and rest.read_text().count("# sent_id") == 2
    refused = subprocess.run([*run[:4], "5", *run[5:]], capture_output=True, text=True)
    assert refused.returncode != 0 and "--n must be from 1 to 4, not 5" in refused.stderr
