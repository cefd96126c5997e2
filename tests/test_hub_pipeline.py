"""SmoothedTextClassificationPipeline: transformers.pipeline answers equal SmoothedTextClassifier's for the same
seed (predict and certify, batched), and bad arguments are one clear error."""

from __future__ import annotations

import pytest

TEXTS = ["a gripping , funny film", "dull and long", "good good good", "", "the worst movie ever made , truly bad"]


@pytest.fixture(scope="module")
def smoothed(tiny_model_dir):
    from transformers import pipeline

    from robusttext import SmoothedTextClassificationPipeline

    return pipeline("text-classification", model=tiny_model_dir, pipeline_class=SmoothedTextClassificationPipeline,
                    p_del=0.9, n=128, n0=16, certify=True, device="cpu")


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    from robusttext import SmoothedTextClassifier

    return SmoothedTextClassifier.from_pretrained(tiny_model_dir, p_del=0.9, unit="word", seed=0)


@pytest.mark.parametrize("batch_size", [5, 2])
def test_certify_equals_the_classifier(smoothed, classifier, batch_size):
    from robusttext import CertifyProtocol

    protocol = CertifyProtocol(n0=16, n=128, alpha=0.05)
    expected = []
    for start in range(0, len(TEXTS), batch_size):  # the pipeline smooths batch_size texts together
        idx = list(range(start, min(start + batch_size, len(TEXTS))))
        expected += classifier.certify([TEXTS[i] for i in idx], protocol, indices=idx)
    got = smoothed(TEXTS, batch_size=batch_size, radius=2)
    names = classifier.model.config.id2label
    assert [g["label"] for g in got] == [names[c.prediction] if c.prediction >= 0 else None for c in expected]
    assert [g["radius"] for g in got] == [c.radius for c in expected]
    assert [g["score"] for g in got] == [c.top1_lower for c in expected]
    assert [g["abstained"] for g in got] == [c.prediction < 0 for c in expected]
    assert [g["certified"] for g in got] == [c.prediction >= 0 and c.radius >= 2 for c in expected]
    assert {g["unit"] for g in got} == {"word"}
    assert smoothed(TEXTS[0]) == smoothed(TEXTS)[0]  # one text: a dict, the first stream


def test_predict_equals_the_classifier(smoothed, classifier):
    expected = classifier.predict(TEXTS, n=300, alpha=0.01)
    got = smoothed(TEXTS, certify=False, n=300, alpha=0.01, batch_size=len(TEXTS))
    assert [g["score"] for g in got] == [max(p.counts) / sum(p.counts) for p in expected]
    assert [g["abstained"] for g in got] == [p.prediction < 0 for p in expected]
    assert [g["label"] for g in got] == [None if p.prediction < 0 else classifier.model.config.id2label[p.prediction]
                                         for p in expected]
    assert set(got[0]) == {"label", "score", "abstained"}


@pytest.mark.parametrize("options, message", [
    ({"radius": 1.5}, "radius must be an integer >= 0, got 1.5"),
    ({"n": 0}, "n must be an integer >= 1, got 0"),
    ({"alpha": 1.5}, "alpha must be in (0, 1), got 1.5"),
    ({"certify": "yes"}, "certify must be True or False, got 'yes'"),
    ({"top_k": 2}, "unknown argument 'top_k'"),
    ({"certify": False, "radius": 1}, "radius needs certify=True"),
])
def test_bad_arguments_are_one_clear_error(smoothed, options, message):
    with pytest.raises(ValueError, match="^SmoothedTextClassificationPipeline: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        smoothed(TEXTS[:1], **options)


def test_without_a_rate_is_refused(tiny_model_dir):
    from transformers import pipeline

    from robusttext import SmoothedTextClassificationPipeline

    with pytest.raises(ValueError, match="no p_del given and the model folder records no rate_schedule.json"):
        pipeline("text-classification", model=tiny_model_dir, pipeline_class=SmoothedTextClassificationPipeline)


def test_a_rate_schedule_by_name(tiny_model_dir):
    from transformers import pipeline

    from robusttext import SmoothedTextClassificationPipeline, SmoothedTextClassifier
    from robusttext.certificate.rates import AdaptiveRate

    smoothed = pipeline("text-classification", model=tiny_model_dir, pipeline_class=SmoothedTextClassificationPipeline,
                        p_del="adaptive:k=2,p_lb=0.5", n=64, certify=False)
    assert smoothed.smoothed.rate == AdaptiveRate(k=2, p_lb=0.5)
    clf = SmoothedTextClassifier.from_pretrained(tiny_model_dir, p_del=AdaptiveRate(k=2, p_lb=0.5))
    assert [g["score"] for g in smoothed(TEXTS, batch_size=5)] == [
        max(p.counts) / sum(p.counts) for p in clf.predict(TEXTS, n=64)]
