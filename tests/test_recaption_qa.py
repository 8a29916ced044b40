"""Caption QA: one test per reject reason, boilerplate stripping, prompt versions."""

from __future__ import annotations

import pytest

from recaption.prompts import PROMPTS, get_prompts, render
from recaption.qa import REASONS, check_caption, first_sentence, repetition, strip_boilerplate

GOOD = "A red ball rolls across a wooden floor toward a sleeping cat while the camera stays still."


def test_good_caption_passes_unchanged():
    r = check_caption(GOOD)
    assert r.reason is None and r.text == GOOD


@pytest.mark.parametrize("text", [None, "", "   \n "])
def test_empty(text):
    assert check_caption(text).reason == "empty"


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't describe this video.",
        "I cannot help with identifying people in videos.",
        "As an AI language model, I do not see videos.",
        "Sorry, the frames are unclear.",
        # behind quotes, a label or an opening that is stripped
        "\"I'm sorry, but I can't provide a description of this video because it is blank.\"",
        "**Caption:** I'm sorry, but I cannot describe the people in these frames.",
        "Here is a dense description: I cannot identify the people in these frames at all.",
        "In this video, I am unable to determine what is happening because it is too dark.",
    ],
)
def test_refusal(text):
    assert check_caption(text).reason == "refusal"


def test_repetition_loop():
    text = "A dog runs. " + "the dog runs and runs " * 6 + "in the park."
    r = check_caption(text)
    assert r.reason == "repetition_loop"
    assert "repeated" in r.detail
    looped, _ = repetition("red red red red red is the colour.")
    assert looped
    assert not repetition(GOOD)[0]


def test_truncated_without_a_complete_sentence():
    r = check_caption(
        "A red ball rolls across a wooden floor toward a sleeping cat while the",
        trim_truncated=True,
    )
    assert r.reason == "truncated"
    assert "mid-sentence" in r.detail


def test_truncated_keeps_complete_sentences_when_trimming():
    text = GOOD + " Then a second ball enters from the left and"
    assert check_caption(text, trim_truncated=True).text == GOOD
    assert check_caption(text, trim_truncated=False).reason == "truncated"


def test_too_short_and_too_long():
    r = check_caption("A red ball.", min_words=8)
    assert r.reason == "too_short" and r.value == 3.0
    assert check_caption(GOOD, min_words=3, max_words=5).reason == "too_long"


def test_boilerplate_is_stripped_not_rejected():
    for prefix in (
        "The video shows ",
        "In this video, ",
        "This clip depicts ",
        "The footage captures ",
    ):
        r = check_caption(
            prefix + "a red ball rolling across a wooden floor toward a sleeping cat."
        )
        assert r.reason is None, prefix
        assert r.text.startswith("A red ball rolling"), r.text
    assert strip_boilerplate('"In the video, the camera pans left over a beach."') == (
        "The camera pans left over a beach."
    )


def test_every_reason_is_named():
    assert set(REASONS) == {
        "empty",
        "refusal",
        "repetition_loop",
        "truncated",
        "too_short",
        "too_long",
    }


def test_first_sentence():
    assert first_sentence(GOOD + " A second one.") == GOOD
    assert first_sentence("no end here") == "no end here"


def test_prompts_are_versioned_and_render():
    assert "v1" in PROMPTS
    p = render("v1", "dense", 8, 2.5)
    assert "8 frames" in p and "2.5-second" in p
    assert "one complete sentence" in render("v1", "short", 4, 1.0)
    with pytest.raises(ValueError, match="known"):
        get_prompts("v999")


def test_emphasis_keeps_its_words_and_only_a_label_is_dropped():
    """ "**A red sports car** speeds …" keeps its subject; "**Caption:** …" loses the label."""
    car = "speeds down a coastal highway as the camera tracks alongside it."
    assert check_caption(f"**A red sports car** {car}").text == f"A red sports car {car}"
    assert check_caption(f"*Tiny* robots walk across a wooden table {car}").text.startswith(
        "Tiny robots walk"
    )
    assert check_caption(f"*Slowly*, a red sports car {car}").text.startswith("Slowly, a red")
    for label in ("**Caption:** ", "**Caption**: ", "*Description:* "):
        assert check_caption(label + f"A red sports car {car}").text == f"A red sports car {car}"
