"""Bias audit: whole-word term matching, known counts on a small caption set, Wilson intervals,
user term lists."""

from __future__ import annotations

import pyarrow as pa
import pytest

from report.bias import TermsError, bias_keys, load_terms, make_category, summarize, wilson

CAPTIONS = [
    "A man walks past many shops.",  # male once ("many" is not "man")
    "A woman cooks in the kitchen.",  # female, cooking, kitchen
    "Many women and a man are dancing.",  # female + male, dancing
    "The manhole cover in a Germany street.",  # nothing gendered ("manhole", "Germany")
    "An old man, a man's hat; the MAN smiles.",  # male (3 mentions), older
    "A WOMAN and a woman.",  # female, 2 mentions
    "",  # empty captions are not counted
]


def _counts(cats, captions=CAPTIONS, prefix="p", scores=None):
    cols = {"caption": pa.array(captions, pa.string())}
    if scores:
        cols["alignment"] = pa.array(scores, pa.float32())
    return bias_keys(pa.table(cols), cats, prefix, score_columns=("alignment",) if scores else ())


def test_word_boundaries():
    cat = make_category("g", "group", {"male": ["man", "men"], "female": ["woman", "women"]})
    assert cat.match("many women") == {"female": 1}
    assert cat.match("a woman") == {"female": 1}
    assert cat.match("manhole, Germany, human, manly, romance") == {}
    assert cat.match("Man. man's MAN-made men") == {"male": 4}
    phrase = make_category("a", "group", {"older": ["old man"], "male": ["man"]})
    assert phrase.match("an old  man and a man") == {"older": 1, "male": 1}  # longest term wins


def test_known_counts_on_small_caption_set():
    cats = load_terms()
    counts = _counts(cats, scores=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    s = summarize(counts, cats, min_captions=2, score_columns=("alignment",))
    assert s["captions"] == 6
    g = {r["group"]: r for r in s["categories"]["gender"]["groups"]}
    assert g["male"]["captions"] == 3 and g["male"]["mentions"] == 1 + 1 + 3
    assert g["female"]["captions"] == 3 and g["female"]["mentions"] == 1 + 1 + 2
    assert g["male"]["share_of_captions"]["k"] == 3 and g["male"]["share_of_captions"]["n"] == 6
    assert s["categories"]["gender"]["captions_with_any"] == 5
    assert g["female"]["score_means"]["alignment"]["mean"] == pytest.approx(
        (0.2 + 0.3 + 0.6) / 3, rel=1e-6
    )
    age = {r["group"]: r for r in s["categories"]["age"]["groups"]}
    assert age["older"]["captions"] == 1
    region = {r["group"]: r["captions"] for r in s["categories"]["region"]["groups"]}
    assert region["europe"] == 1  # "Germany" (a listed place), once
    co = {(r["group"], r["context"]): r for r in s["cooccurrence"]["gender~activities"]}
    assert co[("female", "cooking")]["k"] == 1 and co[("female", "cooking")]["n"] == 3
    assert co[("female", "dancing_music")]["k"] == 1 and co[("male", "dancing_music")]["k"] == 1
    assert ("male", "cooking") not in co
    assert {(r["group"], r["context"]) for r in s["cooccurrence"]["gender~settings"]} >= {
        ("female", "kitchen")
    }


def test_caption_reject_rates_by_group():
    cats = load_terms()
    counts = {
        **_counts(cats),
        **_counts(cats, ["I'm sorry, I cannot describe the woman."], prefix="r"),
    }
    s = summarize(counts, cats)
    g = {r["group"]: r for r in s["categories"]["gender"]["groups"]}
    assert (
        g["female"]["caption_reject_rate"]["k"] == 1
        and g["female"]["caption_reject_rate"]["n"] == 4
    )
    assert g["male"]["caption_reject_rate"]["k"] == 0
    assert s["caption_rejects_with_text"] == 1


def test_wilson_interval():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0) == (None, None)


def test_user_terms_extend_and_replace(tmp_path):
    (tmp_path / "gender.yaml").write_text(
        "category: gender\nkind: group\ngroups:\n  a: [alpha]\n  b: [beta]\n"
    )
    (tmp_path / "pets.yaml").write_text(
        "category: pets\nkind: context\ngroups:\n  dog: [dog, dogs]\n"
    )
    cats = load_terms(tmp_path)
    assert set(cats["gender"].groups) == {"a", "b"}
    assert cats["pets"].kind == "context" and "age" in cats
    (tmp_path / "bad.yaml").write_text("category: bad\ngroups:\n  x: [one]\n  y: [one]\n")
    with pytest.raises(TermsError, match="'one'"):
        load_terms(tmp_path)
    with pytest.raises(TermsError):
        load_terms(tmp_path / "missing")


def test_packaged_terms_are_documented():
    from report.bias import TERMS_DIR

    cats = load_terms()
    assert {"gender", "age", "skin_tone_ethnicity", "region", "language", "disability"} <= {
        n for n, c in cats.items() if c.kind == "group"
    }
    assert {"activities", "settings", "occupations"} <= {
        n for n, c in cats.items() if c.kind == "context"
    }
    readme = (TERMS_DIR / "README.md").read_text()
    for name in cats:
        assert name in readme and cats[name].description
