"""generate-text through the CLI: sampling, streaming, outputs and every user error."""

import json

import pytest
from conftest import run_ptcli


def generate(cli, *args, input=None):
    result = cli("generate-text", *args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


def test_seeded_sampling_is_reproducible(cli, tiny_gpt2):
    args = ("--model", tiny_gpt2, "--max-new-tokens", "12", "--json", "bread and")
    first = json.loads(generate(cli, *args, "--seed", "3").stdout)
    again = json.loads(generate(cli, *args, "--seed", "3").stdout)
    other = json.loads(generate(cli, *args, "--seed", "4").stdout)
    assert first["generations"] == again["generations"]
    assert first["generations"] != other["generations"]
    assert first["prompt"] == "bread and" and len(first["generations"]) == 1 and first["generations"][0]
    assert first["tokens_per_second"] > 0


def test_streaming_prints_what_non_streaming_prints(cli, tiny_gpt2):
    args = ("--model", tiny_gpt2, "--max-new-tokens", "15", "--seed", "7", "the team")
    streamed = generate(cli, *args, "--stream").stdout
    whole = generate(cli, *args, "--no-stream").stdout
    assert streamed == whole and streamed.startswith("the team") and len(streamed) > len("the team\n")


def test_greedy_several_sequences_and_stdin(cli, tiny_gpt2):
    greedy = ("--model", tiny_gpt2, "--temperature", "0", "--max-new-tokens", "8", "--json")
    texts = [json.loads(generate(cli, *greedy, "code").stdout)["generations"] for _ in range(2)]
    assert texts[0] == texts[1] and texts[0][0]
    several = json.loads(generate(cli, "--model", tiny_gpt2, "--num-return-sequences", "3", "--max-new-tokens", "8",
                                  "--seed", "1", "--json", "code").stdout)
    assert len(several["generations"]) == 3
    piped = json.loads(generate(cli, *greedy, "-", input="code\n").stdout)
    assert piped["prompt"] == "code"


def test_interactive_loop(cli, tiny_gpt2):
    result = generate(cli, "--model", tiny_gpt2, "--interactive", "--max-new-tokens", "5", "--seed", "0", "--no-stream",
                      input="bread\n\n\nsoup\n")
    assert result.stdout.startswith("bread") and "soup" not in result.stdout  # the empty line ended it
    assert "prompt> " in result.stderr


def test_prompt_errors(cli, tiny_gpt2):
    empty = cli("generate-text", "--model", tiny_gpt2, "   ")
    assert empty.exit_code == 2 and "the prompt is empty" in empty.stderr
    long_prompt = cli("generate-text", "--model", tiny_gpt2, "bread " * 100)
    assert long_prompt.exit_code == 2 and "reads at most 64: shorten it" in long_prompt.stderr
    too_many = cli("generate-text", "--model", tiny_gpt2, "--max-new-tokens", "100", "bread")
    assert too_many.exit_code == 2 and "exceeds the model's context of 64 tokens; use --max-new-tokens 62 or less" in too_many.stderr
    none = cli("generate-text", "--model", tiny_gpt2)
    assert none.exit_code == 2 and "give a prompt" in none.stderr


def test_model_errors(cli, tiny_gpt2, tiny_bert_encoder, tmp_path):
    not_causal = cli("generate-text", "--model", tiny_bert_encoder, "hello")
    assert not_causal.exit_code == 2 and "is not a causal language model (architectures: BertModel)" in not_causal.stderr
    offline = cli("generate-text", "hello")
    assert offline.exit_code == 1 and len(offline.stderr.strip().splitlines()) == 1
    assert "weights 'gpt2' are not on this machine: offline mode" in offline.stderr and "ptcli weights fetch gpt2" in offline.stderr
    unknown = cli("generate-text", "--model", "gtp2", "hello")
    assert unknown.exit_code == 2 and "did you mean gpt2" in unknown.stderr
    fp16 = cli("generate-text", "--model", tiny_gpt2, "--dtype", "fp16", "--device", "cpu", "hello")
    assert fp16.exit_code == 2 and "fp16 needs a GPU" in fp16.stderr
    assert cli("generate-text", "--model", tiny_gpt2, "--dtype", "fp8", "hello").exit_code == 2
    both = cli("generate-text", "--model", tiny_gpt2, "--checkpoint", tmp_path / "x.safetensors", "hello")
    assert both.exit_code == 2 and "drop --model" in both.stderr


def test_bf16_on_the_cpu(cli, tiny_gpt2):
    result = generate(cli, "--model", tiny_gpt2, "--dtype", "bf16", "--device", "cpu", "--max-new-tokens", "5", "--json", "code")
    assert json.loads(result.stdout)["generations"][0]


def test_cuda_on_a_machine_without_it(cli, tiny_gpt2):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("generate-text", "--model", tiny_gpt2, "--device", "cuda", "hello")
    assert result.exit_code == 2 and "cuda" in result.stderr.lower()


def test_json_error_and_clean_stdout_in_a_subprocess(tiny_gpt2):
    ok = run_ptcli("generate-text", "--model", tiny_gpt2, "--max-new-tokens", "5", "--seed", "0", "--json", "code",
                   env={"PTCLI_OFFLINE": "1"})
    assert ok.returncode == 0 and json.loads(ok.stdout)["prompt"] == "code"
    bad = run_ptcli("generate-text", "--model", tiny_gpt2, "--json", "", env={"PTCLI_OFFLINE": "1"})
    assert bad.returncode == 2 and "prompt is empty" in json.loads(bad.stdout)["error"]


def test_interactive_reports_a_bad_prompt_and_goes_on(cli, tiny_gpt2):
    result = generate(cli, "--model", tiny_gpt2, "--interactive", "--max-new-tokens", "5", "--seed", "0", "--no-stream",
                      input="bread " * 100 + "\nsoup\n\n")
    assert "reads at most 64: shorten it" in result.stderr
    assert result.stdout.startswith("soup")


@pytest.mark.parametrize("folder", ["tiny_gpt2", "tiny_bert_classifier"])
def test_streamed_text_is_the_decoded_text_token_by_token(folder, request):
    """The streamer decodes only a window of recent tokens each step; what it writes, joined,
    is the whole decoded text, for a byte-level BPE (multi-byte characters split across
    tokens) and for WordPiece (## continuations, spaces between words)."""
    import torch
    from transformers import AutoTokenizer

    from ptcli_generate_text.generation import _TextSink

    tokenizer = AutoTokenizer.from_pretrained(str(request.getfixturevalue(folder)))
    text = "Café au lait, naïve résumé: 東京 😀 good great fine bad awful poor unbelievably"
    ids = tokenizer(text)["input_ids"]
    pieces = []
    sink = _TextSink(tokenizer, pieces.append)
    sink.put(torch.tensor([ids[:1]]))  # the prompt, which generate() passes first
    for token in ids[1:]:
        sink.put(torch.tensor([token]))
        assert "\ufffd" not in "".join(pieces)
    sink.end()
    assert "".join(pieces) == tokenizer.decode(ids[1:], skip_special_tokens=True)
    assert len(pieces) > 5


def test_a_conversation_uses_the_tokenizers_chat_template_or_the_plain_one(tiny_gpt2):
    """OpenAI's messages become one prompt: through the tokenizer's own chat template where
    the model has one; GPT-2 has none, so the documented plain template, ending with a stop at
    the user's next turn."""
    import copy

    import torch

    from ptcli.errors import InputError
    from ptcli.inference.contract import Source
    from ptcli_generate_text.chat import PLAIN_STOP, chat_prompt
    from ptcli_generate_text.predictor import TextGenerator

    generator = TextGenerator.load(Source(model=str(tiny_gpt2)), torch.device("cpu"))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "bake"}]}]
    prompt, settings = generator.decode({"messages": messages, "max_new_tokens": 3, "stop": ["."]}).data
    assert prompt == "System: Be brief.\nUser: bake\nAssistant:" and settings.stop == (".", PLAIN_STOP)
    templated = copy.copy(generator.lm.tokenizer)
    templated.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    assert chat_prompt(templated, [{"role": "user", "content": "bake"}]) == "<|user|>bake\n<|assistant|>"
    for bad, message in [([], "non-empty list"), ([{"role": "robot", "content": "x"}], "role must be one of"),
                         ([{"role": "user", "content": 5}], "content must be a text"),
                         ([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}], "text parts only")]:
        with pytest.raises(InputError, match=message):
            generator.decode({"messages": bad})
    with pytest.raises(InputError, match="a prompt or messages, not both"):
        generator.decode({"messages": messages, "prompt": "x"})


@pytest.mark.parametrize("pieces", [["hello wor", "ld\nUs", "er: more"], ["hello world", "\n", "U", "ser:", " more"],
                                    ["hello world\nUser: more"]])
def test_a_stream_never_shows_a_stop_text_or_what_follows(pieces):
    """However the pieces split the text, the stream shows exactly the text before the stop."""
    from ptcli_generate_text.generation import _StopFilter, cut_at_stop

    shown = []
    gate = _StopFilter(("\nUser:", "###"), shown.append)
    for piece in pieces:
        gate(piece)
    gate.end()
    assert "".join(shown) == "hello world" == cut_at_stop("".join(pieces), ("\nUser:", "###"))[0]
    held = []
    gate = _StopFilter(("\nUser:",), held.append)
    gate("the end\nUs")  # a stop's start is held back until the text shows it is not one
    assert "".join(held) == "the end"
    gate("ual")
    gate.end()
    assert "".join(held) == "the end\nUsual"
