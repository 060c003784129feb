"""Feature augmentation of the speech tokenizer's training batches (mel warp + SpecAugment masks)."""

import pytest
import torch

from modeling_speechtext.training.speech_augment import FeatureAugmentation, augment_features, warp_mel


def _batch():
    torch.manual_seed(0)
    feats = torch.randn(3, 80, 120)
    mask = torch.ones(3, 120, dtype=torch.long)
    mask[1, 90:] = 0
    feats[1, :, 90:] = -1.5  # padding value
    return feats, mask


def test_identity_when_disabled():
    feats, mask = _batch()
    aug = FeatureAugmentation()
    assert not aug.enabled
    assert augment_features(feats, mask, aug) is feats


def test_warp_factor_one_is_identity_and_moves_peaks():
    feats = torch.zeros(2, 80, 4)
    feats[:, 40, :] = 1.0  # a "formant" at bin 40
    same = warp_mel(feats, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(same, feats)
    warped = warp_mel(feats, torch.tensor([1.1, 0.9]))
    peaks = warped[:, :, 0].argmax(-1).tolist()
    assert peaks[0] == 44 and peaks[1] == 36  # stretched up / squeezed down by the factor


def test_masks_and_warp_change_only_real_frames():
    feats, mask = _batch()
    torch.manual_seed(1)
    aug = FeatureAugmentation(mel_warp=0.1, freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_width=20)
    out = augment_features(feats, mask, aug)
    assert out.shape == feats.shape
    assert not torch.equal(out[:, :, :90], feats[:, :, :90])
    torch.testing.assert_close(out[1, :, 90:], feats[1, :, 90:])  # padding untouched
    # masked values are the batch's silence level, never something louder than the input
    assert out.max() <= feats.max() + 1e-5
    assert torch.isfinite(out).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mel_warp"):
        FeatureAugmentation(mel_warp=0.7)
    with pytest.raises(ValueError, match="time_masks"):
        FeatureAugmentation(time_masks=-1)
    feats, mask = _batch()
    with pytest.raises(ValueError, match="n_mels"):
        augment_features(feats[0], mask, FeatureAugmentation(mel_warp=0.1))
