"""Fishr penalty: closed-form head gradients vs torch.func, vs a naive per-sample-backward penalty
(the authors' DomainBed algorithm, written out), EMA, zero penalty for identical domains, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robusttext.training.fishr import (
    FishrPenalty,
    FishrTrainingArguments,
    HeadCapture,
    find_head,
    head_grad_moments,
    per_sample_head_grads,
)


def tiny_mlp(d_in: int = 5, hidden: int = 7, classes: int = 3, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, classes)).to(dtype)


# ----------------------------------------------------------------- closed form vs torch.func
def test_closed_form_matches_torch_func_vmap_grad():
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(1)
    head = nn.Linear(6, 4)
    h = torch.randn(10, 6) * 2
    y = torch.randint(0, 4, (10,))
    params = {k: v.detach() for k, v in head.named_parameters()}

    def loss(p, hi, yi):
        return F.cross_entropy(functional_call(head, p, (hi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, h, y)
    expected = torch.cat([g["weight"], g["bias"][:, :, None]], dim=2)  # (N, C, D + 1)
    got = per_sample_head_grads(h, head(h), y)
    assert got.shape == (10, 4, 7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_closed_form_on_bert_head_features(tiny_model_dir):
    """The hook captures what the BERT classifier multiplies; the closed form matches torch.func there."""
    from torch.func import functional_call, grad, vmap
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    head = find_head(model)
    assert head is model.classifier
    cap = HeadCapture(head)
    batch = tok(["a good film", "bad plot and worse acting", "fine"], padding=True, return_tensors="pt")
    y = torch.tensor([1, 0, 1])
    with torch.no_grad():
        out = model(**batch)
    feats, logits = cap.take()
    torch.testing.assert_close(logits, out.logits)
    params = {k: v.detach() for k, v in head.named_parameters()}
    g = vmap(grad(lambda p, hi, yi: F.cross_entropy(functional_call(head, p, (hi[None],)), yi[None])), in_dims=(None, 0, 0))(
        params, feats, y
    )
    expected = torch.cat([g["weight"], g["bias"][:, :, None]], dim=2)
    torch.testing.assert_close(per_sample_head_grads(feats, logits, y), expected, atol=1e-5, rtol=1e-5)
    cap.remove()


def test_moments_are_per_domain_sums():
    torch.manual_seed(2)
    h, z = torch.randn(9, 3, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (9,))
    d = torch.tensor([0, 1, 2, 0, 1, 2, 0, -1, 1])
    y[4] = -100  # ignored label
    count, s1, s2 = head_grad_moments(h, z, y, d, 3)
    g = per_sample_head_grads(h, z, y.clamp_min(0)).reshape(9, -1)
    for k in range(3):
        rows = [i for i in range(9) if int(d[i]) == k and int(y[i]) >= 0]
        assert int(count[k]) == len(rows)
        torch.testing.assert_close(s1[k], g[rows].sum(0))
        torch.testing.assert_close(s2[k], (g[rows] ** 2).sum(0))


# ----------------------------------------------------------------- naive penalty (DomainBed, written out)
class NaiveFishr:
    """Per-sample backward for every sample, centred variance per domain, DomainBed's MovingAverage
    (oneminusema_correction) and l2_between_dicts (mean over coordinates)."""

    def __init__(self, num_domains: int, ema: float) -> None:
        self.ema, self.k = ema, num_domains
        self.state: dict[int, torch.Tensor] = {}

    def __call__(self, head: nn.Linear, feats, logits, y, d) -> torch.Tensor:
        losses = F.cross_entropy(logits, y, reduction="none")
        grads = []
        for i in range(len(y)):
            gw, gb = torch.autograd.grad(losses[i], [head.weight, head.bias], create_graph=True, retain_graph=True)
            grads.append(torch.cat([gw.reshape(-1), gb.reshape(-1)]))
        g = torch.stack(grads)
        vs = []
        for k in range(self.k):
            gk = g[d == k]
            var = (gk - gk.mean(0, keepdim=True)).pow(2).mean(0)
            prev = self.state.get(k, torch.zeros_like(var))
            new = self.ema * prev + (1 - self.ema) * var
            self.state[k] = new.detach()
            vs.append(new / (1 - self.ema))
        mean = torch.stack(vs).mean(0)
        return sum((v - mean).pow(2).mean() for v in vs) / self.k


def _batches(steps: int, n: int = 12, d_in: int = 5, k: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(n, d_in, generator=gen, dtype=torch.float64) * 1.5
        y = torch.randint(0, 3, (n,), generator=gen)
        d = torch.arange(n) % k
        yield x, y, d


@pytest.mark.parametrize("ema", [0.0, 0.95])
def test_penalty_equals_naive_per_sample_backward(ema):
    model = tiny_mlp()
    head = find_head(model, 3)
    cap = HeadCapture(head)
    fast, naive = FishrPenalty(3, ema=ema), NaiveFishr(3, ema)
    for x, y, d in _batches(3):
        logits = model(x)
        feats, z = cap.take()
        p_fast = fast(feats, z, y, d)
        logits = model(x)
        feats2, z2 = cap.take()
        p_naive = naive(head, feats2, z2, y, d)
        assert float(p_naive.detach()) > 0
        torch.testing.assert_close(p_fast, p_naive, atol=1e-12, rtol=1e-9)
        g_fast = torch.autograd.grad(p_fast, list(model.parameters()))
        g_naive = torch.autograd.grad(p_naive, list(model.parameters()))
        for a, b in zip(g_fast, g_naive):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-8)


def test_penalty_equals_naive_on_tiny_bert(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).double().eval()
    head = find_head(model)
    cap = HeadCapture(head)
    texts = ["good", "bad movie", "great fun", "dull", "fine book", "awful", "nice", "boring plot"]
    batch = tok(texts, padding=True, return_tensors="pt")
    y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    d = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    model(**batch)
    p_fast = FishrPenalty(2, ema=0.95)(*cap.take(), y, d)
    model(**batch)
    f, z = cap.take()
    p_naive = NaiveFishr(2, 0.95)(head, f, z, y, d)
    torch.testing.assert_close(p_fast, p_naive, atol=1e-14, rtol=1e-8)
    emb = model.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(torch.autograd.grad(p_fast, emb)[0], torch.autograd.grad(p_naive, emb)[0], atol=1e-14, rtol=1e-7)


def test_float32_penalty_close_to_float64():
    model = tiny_mlp(dtype=torch.float64)
    m32 = tiny_mlp(dtype=torch.float32)
    p64, p32 = FishrPenalty(3, 0.5), FishrPenalty(3, 0.5)
    c64, c32 = HeadCapture(find_head(model, 3)), HeadCapture(find_head(m32, 3))
    for x, y, d in _batches(2):
        model(x)
        m32(x.float())
        a, b = p64(*c64.take(), y, d), p32(*c32.take(), y, d)
        a, b = float(a.detach()), float(b.detach())
        assert abs(a - b) <= 1e-5 * abs(a) + 1e-9


# ----------------------------------------------------------------- identical domains, EMA, missing domains
def test_zero_penalty_when_domains_are_identical_copies():
    model = tiny_mlp()
    cap = HeadCapture(find_head(model, 3))
    pen = FishrPenalty(3, ema=0.95)
    for x, y, _ in _batches(3, n=6):
        xx, yy = torch.cat([x, x, x]), torch.cat([y, y, y])
        d = torch.arange(3).repeat_interleave(6)
        model(xx)
        p = pen(*cap.take(), yy, d)
        assert abs(float(p.detach())) < 1e-20
        assert float(pen.state.abs().sum()) > 0  # the variances themselves are not zero


def test_ema_recursion_and_detached_past():
    """Returned value = (ema * S_{t-1} + (1 - ema) var_t) / (1 - ema), S_t stored detached, S_0 = 0."""
    ema = 0.8
    pen = FishrPenalty(2, ema=ema)
    torch.manual_seed(3)
    hs = [torch.randn(8, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    zs = [torch.randn(8, 2, dtype=torch.float64) for _ in range(2)]
    y = torch.tensor([0, 1] * 4)
    d = torch.tensor([0] * 4 + [1] * 4)

    def brute_var(h, z):
        g = per_sample_head_grads(h, z, y).reshape(8, -1).detach()
        return [g[d == k].var(0, unbiased=False) for k in range(2)]

    def expected_penalty(v):
        m = (v[0] + v[1]) / 2
        return float(((v[0] - m) ** 2).mean() + ((v[1] - m) ** 2).mean()) / 2

    v1 = brute_var(hs[0], zs[0])
    p1 = pen(hs[0], zs[0], y, d)
    assert float(p1.detach()) == pytest.approx(expected_penalty(v1), rel=1e-10)  # first step: returned = var
    for k in range(2):
        torch.testing.assert_close(pen.state[k], (1 - ema) * v1[k])
    assert not pen.state.requires_grad
    v2 = brute_var(hs[1], zs[1])
    p2 = pen(hs[1], zs[1], y, d)
    ret = [(ema * (1 - ema) * v1[k] + (1 - ema) * v2[k]) / (1 - ema) for k in range(2)]
    assert float(p2.detach()) == pytest.approx(expected_penalty(ret), rel=1e-10)
    g_old, g_new = torch.autograd.grad(p2, hs, allow_unused=True)
    assert g_old is None  # the past is detached
    assert g_new is not None and float(g_new.abs().sum()) > 0
    assert pen.updates.tolist() == [2, 2]


def test_missing_domain_is_skipped_and_keeps_its_state():
    torch.manual_seed(4)
    h, z = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    y = torch.tensor([0, 1] * 4)
    three = FishrPenalty(3, ema=0.9)
    d3 = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2])  # domain 1 absent
    two = FishrPenalty(2, ema=0.9)
    d2 = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert float(three(h, z, y, d3)) == pytest.approx(float(two(h, z, y, d2)), rel=1e-12)
    assert three.updates.tolist() == [1, 0, 1] and float(three.state[1].abs().sum()) == 0.0
    # one sample of a domain is not a variance estimate: skipped; a single present domain gives 0
    d_one = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1])
    fresh = FishrPenalty(2, ema=0.9)
    assert float(fresh(h, z, y, d_one)) == 0.0 and fresh.updates.tolist() == [1, 0]


# ----------------------------------------------------------------- bad input
def test_bad_hyper_parameters_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="fishr_lambda must be a finite number >= 0"):
        FishrTrainingArguments(output_dir=str(tmp_path), fishr_lambda=-1.0)
    with pytest.raises(ValueError, match="fishr_ema must be in"):
        FishrTrainingArguments(output_dir=str(tmp_path), fishr_ema=1.0)
    with pytest.raises(ValueError, match="fishr_anneal_steps must be >= 0"):
        FishrTrainingArguments(output_dir=str(tmp_path), fishr_anneal_steps=-3)
    # DomainBed-style hparams (a JSON object or a mapping), checked against the registry; defaults from it
    from transformers import TrainingArguments

    from robusttext.training.hparams_registry import default_hparams

    base = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    args = FishrTrainingArguments.with_hparams(base, '{"fishr_lambda": 10, "fishr_anneal_steps": 3}')
    assert (args.fishr_lambda, args.fishr_ema, args.fishr_anneal_steps) == (10.0, default_hparams("fishr")["fishr_ema"], 3)
    assert args.output_dir == str(tmp_path) and args.domain_column == "domain"
    assert FishrTrainingArguments.with_hparams(base, {"fishr_ema": 0.5}).fishr_ema == 0.5
    with pytest.raises(ValueError, match=r"hparams: unknown key 'lambda'; valid keys: fishr_anneal_steps, fishr_ema, fishr_lambda$"):
        FishrTrainingArguments.with_hparams(base, {"lambda": 1.0})
    with pytest.raises(ValueError, match="hparams: fishr_lambda must be a number, got 'big'"):
        FishrTrainingArguments.with_hparams(base, {"fishr_lambda": "big"})
    with pytest.raises(ValueError, match="fishr_ema must be in"):
        FishrTrainingArguments.with_hparams(base, {"fishr_ema": 2})
    with pytest.raises(ValueError, match="at least 2 training domains"):
        FishrPenalty(1)


def test_find_head_errors_without_linear_head():
    class NoHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 5)

    with pytest.raises(ValueError, match="ends in a linear layer"):
        find_head(NoHead(), num_labels=2)
    with pytest.raises(ValueError, match=">= 2 labels"):
        find_head(NoHead(), num_labels=1)


def test_penalty_under_bf16_autocast_is_computed_in_float32():
    model = tiny_mlp(dtype=torch.float32)
    cap = HeadCapture(find_head(model, 3))
    x, y, d = next(_batches(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x.float())
        feats, logits = cap.take()
        got = FishrPenalty(3, 0.0)(feats, logits, y, d)
    assert logits.dtype == torch.bfloat16 and got.dtype == torch.float32
    expected = FishrPenalty(3, 0.0)(feats.float(), logits.float(), y, d)  # same inputs, no autocast
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
