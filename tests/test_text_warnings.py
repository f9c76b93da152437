"""Prompts that are not read as their writer may expect get one warning line each: cut off at CLIP's window, or
written with A1111's `(words:1.2)` weights, which are read as words."""

import logging

from animatediff.text_encoding import text_warnings


def test_a_long_prompt_says_what_is_left_out(tokenizer):
    long = " ".join(["red"] * 80) + " circle"
    count = len(tokenizer(long, add_special_tokens=False).input_ids)
    (line,) = text_warnings(tokenizer, [long, long])  # once per prompt
    assert f"is {count} tokens and CLIP reads 75" in line
    assert "red circle' is left out (long prompts 'chunks' reads all of it" in line
    assert text_warnings(tokenizer, ["red " * 20]) == []


def test_weights_are_said_to_be_read_as_words(tokenizer):
    (line,) = text_warnings(tokenizer, ["a (red:1.3) circle"])
    assert "weights such as '(words:1.2)' are read as words (prompt weighting 'a1111' reads them" in line
    assert text_warnings(tokenizer, ["a (red:1.3) circle"], "a1111") == []
    assert text_warnings(tokenizer, ["a red circle (bright)", "a red circle"]) == []


def test_the_pipeline_logs_them_for_negative_prompts_and_keyframes(make_pipeline, caplog):
    pipe = make_pipeline()
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        pipe({0: "a cat", 1: "a (dog:1.2)"}, "(worst quality:1.4)", num_frames=2, num_inference_steps=1,
             progress=False)  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "are read as words" in r.getMessage()]
    assert len(said) == 2 and "a (dog:1.2)" in said[0] and "(worst quality:1.4)" in said[1]
