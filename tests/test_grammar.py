"""The magics' one grammar (fsnb.notebook.grammar) and the hints that speak in its flags."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from fsnb.errors import FsnbError, Hint, SchemaMismatch
from fsnb.notebook import grammar


def test_every_magic_has_one_parser_and_its_keywords() -> None:
    assert set(grammar.PARSERS) == set(grammar.NAMES) == set(grammar.KEYWORDS)
    for name, parser in grammar.PARSERS.items():
        dests = {a.dest for a in parser._actions}
        assert set(grammar.KEYWORDS[name]) <= dests, name


def test_the_cell_magic_usage_line_reads_double_percent() -> None:
    usage = grammar.feature_view.__doc__.split("\n\n")[1]
    assert "%%feature_view" in usage
    assert "%%training_set" not in grammar.training_set.__doc__


def test_parse_splits_like_a_shell_and_checks_what_argparse_cannot() -> None:
    args = grammar.parse("feature_view", 'v --entity a,b --description "two words";')
    assert (args.entities, args.description) == (["a", "b"], "two words")
    assert grammar.keywords("training_set", grammar.parse("training_set", "l v:a --full-names"), changed=True) == {
        "full_feature_names": True
    }
    for name, line, message in (
        ("materialize", "--incremental --start 2024-01-01", "drop --start"),
        ("fsnb", "open", "needs a directory"),
        ("fsnb", "list --online redis://x", "go with open"),
        ("fsnb", "lst", "did you mean 'list'"),
        ("feature_view", "v --entity a,", "empty name"),
        ("training_set", "labels 'v:a", "close the quote"),
    ):
        with pytest.raises(UsageError, match=message):
            grammar.parse(name, line)


def test_hints_name_the_flag_of_the_magic() -> None:
    error = SchemaMismatch("labels have no timestamp column 'ts'", hint=Hint("timestamp_field", "<your time column>"))
    assert str(error) == "labels have no timestamp column 'ts'; pass timestamp_field=<your time column>"
    assert error.message_for(grammar.flag_spelling("training_set")) == "labels have no timestamp column 'ts'; use --timestamp COL"
    full = FsnbError("clash", hint=Hint("full_feature_names", "True", before="rename it or ", after=" to name columns view__feature"))
    assert full.message_for(grammar.flag_spelling("training_set")) == "clash; rename it or use --full-names to name columns view__feature"
    # a magic without such a flag keeps the library's words
    assert full.message_for(grammar.flag_spelling("leakage")) == str(full)
    assert FsnbError("a\nb").message_for(grammar.flag_spelling("fsnb")) == "a b"


def test_one_typed_key_function() -> None:
    from fsnb.export import translate
    from fsnb.notebook import magics

    assert magics._entity_row is grammar.entity_row
    assert not hasattr(translate, "_literal_key")
    assert grammar.entity_row("sku='7',n=-3", {"sku": "VARCHAR", "n": "INTEGER"}) == {"sku": "7", "n": -3}
    with pytest.raises(UsageError, match="out of range"):
        grammar.typed_key("n", str(2**63), "BIGINT")
