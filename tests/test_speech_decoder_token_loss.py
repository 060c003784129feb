"""Token-consistency loss: the mel bridge fit, the loss against a frozen tokenizer, the decoder's mel estimate."""

import pytest
import torch

from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel
from modeling_speechtext.training.token_consistency_loss import TokenConsistencyLoss, fit_mel_bridge


def _tokenizer(**overrides) -> SpeechTokenizerModel:
    torch.manual_seed(0)
    config = SpeechTokenizerConfig(
        d_model=32, encoder_layers=2, quantize_position=1, encoder_attention_heads=2, encoder_ffn_dim=64,
        codebook_size=16, codebook_dim=8, asr_vocab_size=40, max_source_positions=400, **overrides,
    )  # fmt: skip
    return SpeechTokenizerModel(config).eval()


def _identity_bridge(n_mels: int = 80) -> torch.Tensor:
    return torch.cat([torch.eye(n_mels), torch.zeros(1, n_mels)])


def test_bridge_recovers_a_linear_map_and_reports_its_fit():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(80, 80, generator=g) * 0.1, torch.randn(80, generator=g)
    mels = [torch.randn(n, 80, generator=g) for n in (120, 97)]
    feats = [(m @ a + b).T for m in mels]
    feats[1] = torch.cat([feats[1], torch.zeros(80, 3)], dim=1)  # a longer feature clip: cut to the common length
    fit = fit_mel_bridge(mels, feats)
    assert fit["frames"] == 217 and fit["r2"] > 0.999999
    assert torch.allclose(fit["weight"][:-1], a, atol=1e-4) and torch.allclose(fit["weight"][-1], b, atol=1e-4)
    noisy = fit_mel_bridge(mels, [f + torch.randn(f.shape, generator=g) for f in feats])
    assert 0.0 < noisy["r2"] < 0.9  # noise the map cannot explain lowers R^2
    with pytest.raises(ValueError, match="too few"):
        fit_mel_bridge([torch.randn(10, 80)], [torch.randn(80, 10)])
    with pytest.raises(ValueError, match="no frames"):
        fit_mel_bridge([], [])


def test_loss_prefers_the_tokens_the_tokenizer_reads_and_trains_only_the_mel():
    tokenizer = _tokenizer()
    loss_fn = TokenConsistencyLoss(tokenizer, _identity_bridge(), temperature=0.05)
    mel = torch.randn(2, 80, 80, requires_grad=True)  # 10 tokens x 8 frames
    with torch.no_grad():
        own, lengths = tokenizer.encode(loss_fn.features(mel))
    assert lengths.tolist() == [10, 10]
    right = loss_fn(mel, own)
    assert right.accuracy.item() == 1.0
    wrong = loss_fn(mel, (own + 1) % 16)
    assert wrong.accuracy.item() == 0.0 and wrong.loss > right.loss
    wrong.loss.backward()
    assert mel.grad.abs().sum() > 0
    assert all(p.grad is None for p in tokenizer.parameters())  # frozen
    # padded tokens and zero-weight rows do not count
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 4:] = 0
    flipped = own.clone()
    flipped[1, 4:] = (flipped[1, 4:] + 1) % 16
    assert loss_fn(mel, flipped, mask).accuracy.item() == 1.0
    assert loss_fn(mel, (own + 1) % 16, weights=torch.tensor([0.0, 1.0])).accuracy.item() == 0.0
    both = loss_fn(mel, torch.stack([own[0], (own[1] + 1) % 16]), weights=torch.tensor([1.0, 0.0]))
    assert both.accuracy.item() == 1.0


def test_loss_rejects_what_it_cannot_use():
    with pytest.raises(ValueError, match="cosine codes"):
        TokenConsistencyLoss(_tokenizer(use_cosine_codes=False), _identity_bridge())
    with pytest.raises(ValueError, match="maps to 40 bins"):
        TokenConsistencyLoss(_tokenizer(), _identity_bridge(40))
    with pytest.raises(ValueError, match="temperature"):
        TokenConsistencyLoss(_tokenizer(), _identity_bridge(), temperature=0.0)
    loss_fn = TokenConsistencyLoss(_tokenizer(), _identity_bridge()).train()
    assert not loss_fn.tokenizer.training  # stays frozen when the trainer switches modes


class _TrueVelocity(torch.nn.Module):
    """An estimator that knows the target: returns the exact flow velocity for the x_t it is given."""

    def __init__(self, target: torch.Tensor, sigma_min: float):
        super().__init__()
        self.target, self.sigma_min = target, sigma_min

    def forward(self, x_t, t, mu, positions, frame_mask, *args):
        tt = t[:, None, None]
        noise = (x_t - tt * self.target) / (1 - (1 - self.sigma_min) * tt)
        return self.target - (1 - self.sigma_min) * noise


@pytest.mark.parametrize("objective", ["flow_matching", "regression"])
def test_decoder_mel_estimate_is_the_target_for_a_perfect_estimator(objective):
    torch.manual_seed(0)
    config = SpeechDecoderConfig(
        codebook_size=16, hidden_size=32, encoder_layers=1, estimator_layers=1, num_attention_heads=2,
        intermediate_size=64, objective=objective, cfg_dropout=0.5,
    )  # fmt: skip
    model = SpeechDecoderModel(config).train()
    ids = torch.randint(0, 16, (4, 5))
    mel = torch.randn(4, 40, 80) - 5
    target = model.normalize_mel(mel)
    if objective == "flow_matching":
        model.estimator = _TrueVelocity(target, config.sigma_min)
    out = model(ids, mel=mel)
    if objective == "flow_matching":
        torch.testing.assert_close(out.mel_estimate, target, atol=1e-4, rtol=1e-4)
        assert ((out.estimate_weight >= 0) & (out.estimate_weight <= 1)).all()
    else:
        assert out.mel_estimate is out.prediction and out.estimate_weight.tolist() == [1.0] * 4
