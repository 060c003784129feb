"""SpeechTextConfig / SpeechTextForConditionalGeneration / SpeechTextProcessor: speech written into the prompt
exactly where the template puts it, clear errors, and the AutoClass round trip in a process without this package."""

import json
import textwrap

import numpy as np
import pytest
import torch
from remote_code import run_without_package
from speech_text_fixtures import CODEBOOK, chat_parts, clip, tiny_speech_text

from modeling_speechtext.models.speech_text.configuration_speech_text import SpeechTextConfig
from modeling_speechtext.models.speech_text.modeling_speech_text import SpeechTextForConditionalGeneration


def test_spoken_prompt_is_the_template_with_the_clips_tokens_and_generation_follows_the_layout():
    model, proc = tiny_speech_text()
    clips = [clip(0.5, seed=1), clip(0.9, seed=2)]
    conv = [[{"role": "user", "content": [{"type": "audio", "audio": c}]}] for c in clips]
    inputs = proc.apply_chat_template(conv)
    out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    lay = model.config.layout
    for row, c in enumerate(clips):
        feats = proc.feature_extractor(c, sampling_rate=16000, return_tensors="pt")
        ids, n = model.speech_tokenizer.encode(feats["input_features"])
        speech = ids[0, : int(n[0])].tolist()
        # what the SFT data renders for the same turn (speech block of the same ids), then the assistant header
        expected = proc.tokenizer.apply_chat_template(
            [{"role": "user", "content": proc.speech_to_text(speech)}], add_generation_prompt=True, tokenize=True,
            return_dict=True,
        )["input_ids"]  # fmt: skip
        prompt = [t for t, m in zip(out.sequences[row, : out.prompt_length].tolist(),
                                    (out.sequences[row, : out.prompt_length] != lay.eos_token_id).tolist()) if m]  # fmt: skip
        assert prompt == expected
        turn = out.sequences[row, out.prompt_length :].tolist()
        turn = turn[: turn.index(lay.eos_token_id) + 1] if lay.eos_token_id in turn else turn
        lay.next_allowed(turn)  # parses under the grammar (raises otherwise)
        assert out.text_ids[row] == [t for t in turn if lay.is_text(t)]
        assert out.speech_ids[row] == [t - lay.audio_offset for t in turn if lay.is_speech(t)]
        assert all(0 <= s < CODEBOOK for s in out.speech_ids[row])
    rendered = proc.apply_chat_template(conv, tokenize=False)
    assert isinstance(rendered, list) and len(rendered) == 2 and rendered[0].count(proc.tokenizer.eos_token) == 0
    assert proc.apply_chat_template(conv[0], tokenize=False) == rendered[0]
    text_only = model.generate(**inputs, max_new_tokens=20, do_sample=False, mode="text")
    assert all(not s for s in text_only.speech_ids)
    speech_only = model.generate(**inputs, max_new_tokens=20, do_sample=False, mode="speech")
    assert all(not t and s for t, s in zip(speech_only.text_ids, speech_only.speech_ids))


def test_config_and_assembly_refuse_mismatched_parts():
    st, lm, tok, _ = chat_parts()
    good = SpeechTextForConditionalGeneration.from_parts(st, lm, tok).config.to_dict()
    with pytest.raises(ValueError, match="codebook has 16"):
        SpeechTextConfig(**{**good, "codebook_size": 32})
    with pytest.raises(ValueError, match="outside the LM's vocabulary"):
        SpeechTextConfig(**{**good, "audio_offset": good["text_config"]["vocab_size"] - 4})
    from t2t_fixtures import tiny_text_tokenizer

    with pytest.raises(ValueError, match="no speech vocabulary"):
        SpeechTextForConditionalGeneration.from_parts(st, lm, tiny_text_tokenizer())


def test_bad_generate_inputs_are_clear_errors():
    model, proc = tiny_speech_text()
    conv = [{"role": "user", "content": [{"type": "audio", "audio": clip()}]}]
    inputs = proc.apply_chat_template(conv)
    with pytest.raises(ValueError, match="2 clips given but the prompts hold 1"):
        model.generate(input_ids=inputs["input_ids"], input_features=torch.cat([inputs["input_features"]] * 2),
                       max_new_tokens=4)  # fmt: skip
    with pytest.raises(ValueError, match="exceeds the LM's 512 positions"):
        model.generate(input_ids=torch.ones(1, 500, dtype=torch.long), max_new_tokens=20)
    with pytest.raises(ValueError, match="1 audio clips for 0"):
        proc(text="no placeholder", audio=[clip()])
    with pytest.raises(ValueError, match="NaN or inf"):
        proc.apply_chat_template([{"role": "user", "content": [{"type": "audio", "audio": np.full(800, np.nan,
                                                                                              np.float32)}]}])  # fmt: skip
    with pytest.raises(ValueError, match="unknown message part type"):
        proc.apply_chat_template([{"role": "user", "content": [{"type": "image", "image": None}]}])
    with pytest.raises(ValueError, match="input_ids, input_features or both"):
        model.generate(max_new_tokens=4)


def test_fresh_process_auto_classes_round_trip_and_the_lm_loads_alone(tmp_path):
    model, proc = tiny_speech_text()
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    model.language_model.save_pretrained(tmp_path / "lm")
    c = clip(0.7, seed=3)
    np.save(tmp_path / "clip.npy", c)
    conv = [{"role": "user", "content": [{"type": "audio", "audio": c}]}]
    inputs = proc.apply_chat_template(conv)
    expected = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    heard = model.transcribe_speech(expected.speech_ids)
    lm_logits = model.language_model(input_ids=expected.sequences).logits[0, -1].tolist()
    script = textwrap.dedent(
        """
        import json
        import numpy as np, torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor
        config = AutoConfig.from_pretrained("m", trust_remote_code=True)
        model = AutoModel.from_pretrained("m", trust_remote_code=True).eval()
        proc = AutoProcessor.from_pretrained("m", trust_remote_code=True)
        conv = [{"role": "user", "content": [{"type": "audio", "audio": np.load("clip.npy")}]}]
        out = model.generate(**proc.apply_chat_template(conv), max_new_tokens=24, do_sample=False)
        lm = AutoModelForCausalLM.from_pretrained("lm").eval()  # stock architecture, no remote code
        logits = lm(input_ids=out.sequences).logits[0, -1].tolist()
        modules = [type(x).__module__ for x in (config, model, proc, proc.feature_extractor)]
        print(json.dumps({"text": out.text_ids, "speech": out.speech_ids, "heard": model.transcribe_speech(
            out.speech_ids), "logits": logits, "modules": modules, "lm": type(lm).__name__}))
        """
    )
    proc_run = run_without_package(script, tmp_path)
    assert proc_run.returncode == 0, proc_run.stderr[-3000:]
    got = json.loads(proc_run.stdout.strip().splitlines()[-1])
    assert got["text"] == expected.text_ids and got["speech"] == expected.speech_ids
    assert got["heard"] == heard
    assert got["lm"] == "LlamaForCausalLM"
    np.testing.assert_allclose(got["logits"], lm_logits, atol=1e-5)
    assert all(m.startswith("transformers_modules") for m in got["modules"]), got["modules"]
    auto_map = json.loads((tmp_path / "m" / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_speech_text.SpeechTextConfig",
                        "AutoModel": "modeling_speech_text.SpeechTextForConditionalGeneration"}  # fmt: skip


def test_lm_with_tied_embeddings_saves_and_reloads_tied(tmp_path):
    from transformers import LlamaForCausalLM

    st, lm, tok, _ = chat_parts()
    lm.config.tie_word_embeddings = True
    torch.manual_seed(1)
    lm = LlamaForCausalLM(lm.config).eval()
    model = SpeechTextForConditionalGeneration.from_parts(st, lm, tok)
    x = torch.tensor([[1, 2, 3, 316, 300, 317]])
    expected = model(input_ids=x).logits
    model.save_pretrained(tmp_path)
    again = SpeechTextForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert again.language_model.lm_head.weight is again.language_model.get_input_embeddings().weight
    torch.testing.assert_close(again(input_ids=x).logits, expected)
    assert again.speech_tokenizer.asr_vocabulary == st.asr_vocabulary  # the ASR head's strings travel too
