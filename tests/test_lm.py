"""The language model task: training, perplexity, scoring, generation, the adapters, and bad input."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from tests.conftest import ROOT, SAMPLES, run_bilstm
from toolkit import Predictor
from toolkit.data.export import DataExport
from toolkit.data.lm_text import LMTokenizer, TextToTokens, token_stream
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import DataError, InputError
from toolkit.nn.encoder import EncoderConfig
from toolkit.nn.lm import LMNet, LMNetConfig
from toolkit.predict.lm import filter_scores
from toolkit.specs.lm import SPEC, LMConfig


@pytest.fixture(scope="module")
def predictor(lm_model_dir):
    return Predictor.load(lm_model_dir, device="cpu")


def tiny_config(**changes) -> LMNetConfig:
    encoder = EncoderConfig(hidden_size=12, num_layers=2, bidirectional=False, init="torch")
    return LMNetConfig(**{"embedding_dim": 8, "encoder": encoder, "input_dropout": 0.0,
                                  "output_dropout": 0.0, **changes})


def test_the_sample_config_trains_and_its_perplexity_falls(lm_run, predictor):
    rows = [row for row in csv.DictReader((lm_run / "lightning_logs/version_0/metrics.csv").open()) if row["val_ppl"]]
    perplexities = [float(row["val_ppl"]) for row in rows][:6]  # one per epoch (the export then validates once more)
    assert len(perplexities) == 6 and perplexities[-1] < 0.5 * perplexities[0] and perplexities[-1] < 20
    meta = json.loads((lm_run / "model/meta.json").read_text())
    assert meta["task"] == "lm" and meta["model_config"]["direction"] == "forward"
    assert predictor.vocab.tokens[:2] == list(LM_SPECIALS)  # no <pad> in the softmax
    assert predictor.net.logits(torch.zeros(1, 32)).shape[-1] == len(predictor.vocab)


def test_a_model_with_uniform_output_has_the_vocabulary_size_as_perplexity(tmp_path):
    vocab = Vocab.build([["a", "b", "c", "d", "e"]], specials=LM_SPECIALS)
    config = LMConfig(tiny_config(), len(vocab))
    net = SPEC.build_net(config, None)
    with torch.no_grad():
        net.embed.weight.zero_()  # tied: every logit is 0, so every next token has probability 1/|V|
    SPEC.save(tmp_path / "uniform", config, DataExport(None, LMTokenizer().to_dict(), {"vocab.json": vocab.to_json()}),
              net.state_dict())
    uniform = Predictor.load(tmp_path / "uniform", device="cpu")
    (tmp_path / "text.txt").write_text("a b c\nd e zzz unknown\n")
    scores = uniform.evaluate(tmp_path / "text.txt")
    assert scores["perplexity"] == pytest.approx(len(vocab)) and scores["tokens"] == 9  # 7 words + 2 <eos>
    assert scores["bits_per_token"] == pytest.approx(math.log2(len(vocab)))
    (result,) = uniform.score(["a b c"])
    assert result.perplexity == pytest.approx(len(vocab)) and result.tokens == ["a", "b", "c", "<eos>"]


def test_reading_a_stream_in_bptt_chunks_with_the_carried_state_equals_one_pass():
    torch.manual_seed(0)
    net = LMNet(tiny_config(), 30).double().eval()
    ids = torch.randint(0, 30, (3, 40))
    whole = torch.log_softmax(net.logits(net(ids).hidden), -1)
    state, parts = None, []
    for start in range(0, 40, 7):
        output = net(ids[:, start : start + 7], state)
        state = output.state
        parts.append(torch.log_softmax(net.logits(output.hidden), -1))
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=0, atol=1e-10)


def test_evaluation_does_not_depend_on_the_window_length(predictor):
    scores = [predictor.evaluate(SAMPLES / "lm/dev.txt", batch_size=3, bptt=bptt) for bptt in (5, 30, 1000)]
    assert scores[0]["tokens"] == scores[1]["tokens"] == scores[2]["tokens"]
    assert scores[0]["perplexity"] == pytest.approx(scores[1]["perplexity"], rel=1e-5)
    assert scores[2]["perplexity"] == pytest.approx(scores[1]["perplexity"], rel=1e-5)


def test_scoring_is_per_text_and_in_order(predictor):
    texts = ["the cat runs behind the barn .", "barn the behind runs cat the .", "the cat runs behind the barn ."]
    results = predictor.score(texts)
    assert results[0].perplexity == pytest.approx(results[2].perplexity)
    assert results[0].perplexity < results[1].perplexity
    assert len(results[0].token_log_probs) == len(results[0].tokens) == 8
    assert results[0].log_likelihood == pytest.approx(sum(results[0].token_log_probs), abs=1e-3)
    alone = predictor.score([texts[1]])[0]
    assert alone.perplexity == pytest.approx(results[1].perplexity, rel=1e-5)  # no effect of batch company


def test_generation_is_reproducible_and_respects_top_k_and_top_p(predictor):
    first = predictor.generate(["the farmer", "", "when it rains"], max_tokens=15, seed=7)
    assert first == predictor.generate(["the farmer", "", "when it rains"], max_tokens=15, seed=7)
    assert all(g.stopped in ("eos", "max_tokens") and len(g.tokens) <= 15 for g in first)
    greedy = predictor.generate(["the farmer"], max_tokens=10, temperature=0)
    assert predictor.generate(["the farmer"], max_tokens=10, top_k=1, seed=3) == greedy
    assert predictor.generate(["the farmer"], max_tokens=10, top_p=1e-6, seed=4) == greedy
    assert first[0].full_text.startswith("the farmer ")


@pytest.mark.parametrize("sampling", [{"temperature": 1e-300}, {"temperature": 5e-324}, {"top_p": 1e-320},
                                      {"top_p": 5e-324, "temperature": 1e-310}, {"top_k": 10**30, "top_p": 1e-300}])
def test_underflowing_temperature_or_top_p_is_served_as_the_most_likely_token(predictor, sampling):
    """Values the range checks accept but float32 rounds to 0 used to end in NaN probabilities (torch refused them)."""
    greedy = predictor.generate(["the farmer", ""], max_tokens=10, temperature=0)
    assert predictor.generate(["the farmer", ""], max_tokens=10, seed=2, **sampling) == greedy


def test_seeds_are_unsigned_64_bit(predictor):
    assert predictor.generate(["x"], max_tokens=3, seed=2**64 - 1) == predictor.generate(["x"], max_tokens=3,
                                                                                          seed=2**64 - 1)
    for seed in (2**64, -1):
        with pytest.raises(InputError, match=r"seed must be an integer in 0\.\.18446744073709551615"):
            predictor.generate(["x"], seed=seed)


def test_top_k_and_top_p_filters():
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_scores(log_probs, 2, 1.0)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_scores(log_probs, 0, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_scores(log_probs, 0, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_scores(log_probs, 0, 1.0)).all()
    assert torch.isfinite(filter_scores(log_probs, 0, 1e-320)).tolist() == [[True, False, False, False]]


def test_bad_inputs_get_clear_errors(predictor, tmp_path):
    with pytest.raises(InputError, match="text 1 '' is empty or blank"):
        predictor.score(["fine", ""])
    with pytest.raises(InputError, match="prompt 0 has 600 tokens, over the limit of 512"):
        predictor.generate(["word " * 600])
    with pytest.raises(InputError, match=r"top_p must be in \(0, 1\]"):
        predictor.generate(["x"], top_p=0)
    with pytest.raises(InputError, match="max_tokens must be an integer"):
        predictor.generate(["x"], max_tokens=0)
    (tmp_path / "text.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"a language model reads \.txt"):
        predictor.evaluate(tmp_path / "text.csv")


def test_backward_reads_the_stream_right_to_left():
    assert token_stream([["a", "b"], ["c"]], backward=False) == ["a", "b", "<eos>", "c", "<eos>"]
    assert token_stream([["a", "b"], ["c"]], backward=True) == ["<eos>", "c", "<eos>", "b", "a"]
    assert TextToTokens(LMTokenizer(level="char"))(["ab  c"]) == [["a", "b", " ", "c"]]


def test_the_cli_evaluates_generates_and_labels(lm_model_dir, tmp_path):
    result = run_bilstm("evaluate", str(lm_model_dir), str(SAMPLES / "lm/dev.txt"))
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout)
    assert {"perplexity", "cross_entropy_nats", "bits_per_token", "tokens"} <= set(scores)
    assert scores["tokens"] == sum(len(line.split()) + 1 for line in (SAMPLES / "lm/dev.txt").read_text().splitlines())
    generate = ["generate", str(lm_model_dir), "--prompt", "the farmer", "--max-tokens", "8", "--seed", "5", "--json"]
    first, second = run_bilstm(*generate), run_bilstm(*generate)
    assert first.returncode == 0 and first.stdout == second.stdout
    assert json.loads(first.stdout)["prompt"] == "the farmer"
    for options, words in ((["--seed", str(2**64)], "seed must be an integer in 0..18446744073709551615"),
                           (["--prompt", "word " * 600], "prompt 0 has 600 tokens, over the limit of 512"),
                           (["--temperature", "nan"], "temperature must be a number in [0, 100]")):
        refused = run_bilstm("generate", str(lm_model_dir), *options)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    source = tmp_path / "lines.txt"
    source.write_text("the cat runs behind the barn .\nbarn the behind runs cat the .\n")
    labelled = run_bilstm("label", str(lm_model_dir), str(source), str(tmp_path / "out.jsonl"))
    assert labelled.returncode == 0, labelled.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2] and rows[0]["perplexity"] < rows[1]["perplexity"]


@pytest.mark.slow
@pytest.mark.parametrize(("option", "value"), [("level", "char"), ("direction", "backward")])
def test_character_level_and_backward_models_train_and_predict(tmp_path, option, value):
    result = run_bilstm("fit", "--config", "configs/lm_sample.yaml", "--trainer.max_epochs", "2",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                        "--trainer.accelerator", "cpu", f"--data.init_args.{option}", value)
    assert result.returncode == 0, result.stderr[-3000:]
    model = Predictor.load(tmp_path / "model", device="cpu")
    (scored,) = model.score(["the cat runs ."])
    generated = model.generate(["the cat"], max_tokens=5, seed=1)[0]
    if value == "char":
        assert scored.tokens[:4] == ["t", "h", "e", " "] and len(model.vocab) < 60
        assert generated.full_text.startswith("the cat")
    else:
        assert model.meta.model_config["direction"] == "backward"
        assert scored.tokens == [".", "runs", "cat", "the", "<eos>"]  # read right to left
        assert generated.full_text.endswith("the cat") and generated.tokens == generated.full_text.split()[:-2]


PTB = ROOT.parent / "shared" / "data" / "ptb"


@pytest.mark.skipif(not (PTB / "ptb.train.txt.gz").exists(), reason="needs ../shared/data/ptb")
def test_ptb_has_exactly_its_standard_vocabulary_and_token_counts():
    from toolkit.data.lm import LMData

    data = LMData(train_file=str(PTB / "ptb.train.txt.gz"), dev_file=str(PTB / "ptb.valid.txt.gz"),
                             split="whitespace")
    data.setup("fit")
    tokens = data.vocabulary_tokens()
    # 10,000 types: PTB's own <unk> and <eos> (index 0, appended at each line end), no padding symbol
    assert len(tokens) == 10_000 and tokens[:2] == ["<eos>", "<unk>"] and len(set(tokens)) == 10_000
    assert data.streams["train"].numel() == 929_589 and data.streams["val"].numel() == 73_760
    assert int((data.streams["train"] == 0).sum()) == data.lines["train"] == 42_068
