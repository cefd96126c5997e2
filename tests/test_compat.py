"""The one place where transformers 4.x and 5.x differ (robusttext.compat), and the private Trainer hooks
FishrTrainer still overrides, pinned on whichever stack runs the suite (CI runs both)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import HfArgumentParser, PreTrainedTokenizerFast, Trainer, TrainingArguments

from robusttext.compat import ResumableTrainingArguments, overwrite_requested, special_token_frame, with_special_tokens

VOCAB = {"[UNK]": 0, "<s>": 1, "</s>": 2, "[CLS]": 3, "the": 4, "cat": 5, "sat": 6, "on": 7, "mat": 8}


def word_tokenizer(template: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose single-sequence template is ``template`` (tokenizers' TemplateProcessing)."""
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [(t, VOCAB[t]) for t in ("<s>", "</s>", "[CLS]") if t in template]
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.mark.parametrize(
    "template, prefix, suffix",
    [("<s> $A </s>", (1,), (2,)), ("$A </s>", (), (2,)), ("[CLS] <s> $A", (3, 1), ()), ("$A", (), ())],
)
def test_special_token_frame_is_the_tokenizers_template(template, prefix, suffix):
    tok = word_tokenizer(template)
    assert special_token_frame(tok) == (prefix, suffix)
    for text in ["the cat", "the cat sat on the mat", "mat"]:
        bare = tok(text, add_special_tokens=False)["input_ids"]
        assert with_special_tokens(special_token_frame(tok), bare) == tuple(tok(text)["input_ids"])


def test_a_template_that_is_not_a_frame_is_refused():
    tok = word_tokenizer("$A </s>")
    real_call = tok.__class__.__call__

    class Interleaving(tok.__class__):  # specials between the ids: no prefix + ids + suffix can reproduce it
        def __call__(self, text, add_special_tokens=True, **kw):
            out = real_call(self, text, add_special_tokens=False, **kw)
            if add_special_tokens:
                ids = out["input_ids"]
                out["input_ids"] = [i for t in ids for i in (t, 2)]
            return out

    tok.__class__ = Interleaving
    with pytest.raises(ValueError, match="special tokens"):
        special_token_frame(tok)


def test_overwrite_output_dir_is_an_option_on_either_major():
    names = [f.name for f in dataclasses.fields(ResumableTrainingArguments)]
    assert names.count("overwrite_output_dir") == 1
    (args,) = HfArgumentParser(ResumableTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "x", "--overwrite_output_dir", "--report_to", "none"]
    )
    assert overwrite_requested(args) is True
    assert overwrite_requested(TrainingArguments(output_dir="x", report_to="none")) is False


def test_private_trainer_hooks_that_fishr_overrides_exist_with_their_signatures():
    """FishrTrainer overrides two private hooks (no public route gives a Trainer its sampler or keeps a column
    the model does not take): pin their names and parameters here so that a transformers release that
    changes them fails this test, not a user's run. tests/test_fishr_trainer.py checks their behaviour."""
    sampler = inspect.signature(Trainer._get_train_sampler)
    assert list(sampler.parameters) == ["self", "train_dataset"]
    assert list(inspect.signature(Trainer._set_signature_columns_if_needed).parameters) == ["self"]
    assert "_get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)
    assert "_signature_columns" in inspect.getsource(Trainer._remove_unused_columns)


@pytest.mark.parametrize("command", ["attack", "evaluate"])
def test_attacks_without_textattack_are_one_line_and_exit_2_before_any_work(command, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """On transformers 5 TextAttack cannot be installed beside the core: the attack commands say so in one line
    (naming the stack to install) before loading a model or writing a file."""
    import importlib.util

    from robusttext.cli import main
    from robusttext.compat import TRANSFORMERS_MAJOR

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textattack" else real(name, *a))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "fine film", "label": 1}\n')
    out = tmp_path / "out"
    code = main([command, "--model", tiny_model_dir, "--dataset", str(data), "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "TextAttack" in err
    assert ("transformers<5" in err) == (TRANSFORMERS_MAJOR >= 5)
    assert not out.exists()
