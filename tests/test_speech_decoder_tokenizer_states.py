"""The decoder conditioned on the speech tokenizer's own post-quantizer states (issue 21): an exact, frozen copy;
block-causal for exact streaming; saved and loaded alone (remote code); a mismatched tokenizer is refused."""

import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from speech_text_fixtures import chat_parts

from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
from recipes.train_speech_decoder import _tokenizer_config_dict

SIZES = dict(codebook_size=16, hidden_size=32, encoder_layers=1, estimator_layers=1, num_attention_heads=2,
             intermediate_size=64, block_size=5, first_chunk_tokens=5, chunk_tokens=[5, 10])  # fmt: skip


def tokenizer(seed=0):
    st, *_ = chat_parts(seed)
    torch.manual_seed(seed)
    torch.nn.init.normal_(st.quantizer.codebook)  # a trained tokenizer's codes are not all zero
    return st


def decoder(st, condition="tokenizer_states", block_causal=True, seed=0):
    torch.manual_seed(seed)
    model = SpeechDecoderModel(SpeechDecoderConfig(**SIZES, condition=condition, tokenizer_config=_tokenizer_config_dict(
        st.config), tokenizer_states_block_causal=block_causal))  # fmt: skip
    model.encoder.tokenizer_states.load_from_tokenizer(st)
    return model.eval()


@torch.no_grad()
def test_the_copy_gives_the_tokenizers_own_states_and_stays_frozen():
    st = tokenizer()
    ids = torch.randint(0, 16, (2, 23), generator=torch.Generator().manual_seed(1))
    reference, _ = st._decode_post_quantizer(st.quantizer.embed(ids), torch.ones_like(ids, dtype=torch.bool))
    offline = decoder(st, block_causal=False).encoder.tokenizer_states
    assert torch.allclose(st.ctc_head(offline(ids)), reference, atol=1e-5)  # the ASR head reads the same logits
    causal = decoder(st).encoder.tokenizer_states
    later = ids.clone()
    later[:, 10:] = (later[:, 10:] + 3) % 16
    a, b = causal(ids), causal(later)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])  # past blocks only
    assert not torch.equal(offline(ids)[:, :10], offline(later)[:, :10])  # the tokenizer's own mask looks ahead
    model = decoder(st, condition="both")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("encoder.tokenizer_states.") for n in trainable)
    assert "encoder.embed_tokens.weight" in trainable and "encoder.states_proj.weight" in trainable


@pytest.mark.parametrize("condition", ["tokenizer_states", "both"])
def test_streaming_still_equals_the_offline_decode(condition):
    model = decoder(tokenizer(), condition)
    ids = torch.randint(0, 16, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    offline = model.generate_mel(ids, seed=3).mel[0]
    streamed = torch.cat([m for _, m in model.decode_stream(iter(ids), seed=3, return_mel=True)])
    assert streamed.shape == offline.shape and (streamed - offline).abs().max() < 1e-4


def test_saved_decoder_loads_alone_in_a_fresh_process_and_frozen(tmp_path):
    from remote_code import run_without_package

    model = decoder(tokenizer())
    model.save_pretrained(tmp_path / "dec")
    assert {"configuration_speech_tokenizer.py", "layers_speech_tokenizer.py"} <= {
        p.name for p in (tmp_path / "dec").iterdir()}  # fmt: skip
    ids = [1, 5, 9, 2, 7, 7, 3, 0, 4, 11]
    expected = round(float(model.generate_mel(ids, seed=0).mel.double().sum()), 3)
    again = SpeechDecoderModel.from_pretrained(tmp_path / "dec")
    assert not any(p.requires_grad for p in again.encoder.tokenizer_states.parameters())
    script = (
        "import json, sys, torch\nfrom transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
        f"print(json.dumps([type(m).__module__, round(float(m.generate_mel({ids}, seed=0).mel.double().sum()), 3)]))\n"
    )
    proc = run_without_package(script, tmp_path, args=[str(tmp_path / "dec")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules") and got == expected


def test_a_mismatched_tokenizer_is_a_clear_error():
    st = tokenizer()
    with pytest.raises(StrictDataclassClassValidationError, match="needs tokenizer_config"):
        SpeechDecoderConfig(**SIZES, condition="tokenizer_states")
    with pytest.raises(StrictDataclassClassValidationError, match="tokenizer_config has codebook_size=16"):
        SpeechDecoderConfig(**{**SIZES, "codebook_size": 32}, condition="both",
                            tokenizer_config=_tokenizer_config_dict(st.config))  # fmt: skip
    with pytest.raises(StrictDataclassClassValidationError, match="condition must be"):
        SpeechDecoderConfig(**SIZES, condition="mel")
    model = decoder(st)
    model.check_speech_tokenizer(st)  # its own tokenizer passes
    with pytest.raises(ValueError, match="codebook differs"):
        model.check_speech_tokenizer(tokenizer(seed=1))  # same sizes, another codebook
    wider = SpeechDecoderModel(SpeechDecoderConfig(**SIZES, condition="tokenizer_states",
                                                   tokenizer_config={**_tokenizer_config_dict(st.config), "d_model": 64}))  # fmt: skip
    with pytest.raises(ValueError, match="d_model=32 does not match"):
        wider.encoder.tokenizer_states.load_from_tokenizer(st)
    with pytest.raises(ValueError, match="d_model=32 does not match the tokenizer"):
        wider.check_speech_tokenizer(st.config)


@torch.no_grad()
def test_streams_longer_than_the_tokenizers_positions_are_read_in_segments_and_stream_exactly():
    st = tokenizer()  # max_source_positions 400 at 50 Hz / pooling 4 -> 100 token positions, window 16 // 4 -> 4
    st.config.attention_window = 16
    model = decoder(st, condition="tokenizer_states")
    states = model.encoder.tokenizer_states
    assert states.embed_token_positions.num_embeddings == 100 and states.window == 4
    ids = torch.randint(0, 16, (1, 240), generator=torch.Generator().manual_seed(4))
    whole = states(ids)
    assert whole.shape == (1, 240, 32) and torch.isfinite(whole).all()
    for n in (95, 150, 240):  # a streamed prefix gets the same states as the whole utterance
        assert torch.allclose(states(ids[:, :n]), whole[:, :n], atol=1e-5), n
    offline = model.generate_mel(ids[0].tolist(), seed=1).mel[0]
    streamed = torch.cat([m for _, m in model.decode_stream(iter(ids[0].tolist()), seed=1, return_mel=True)])
    assert (streamed - offline).abs().max() < 1e-4
