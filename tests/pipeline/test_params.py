"""Parameter validation: the checks a chapter's validation cell and the runner share."""

import pytest

from stagewise.pipeline import Interval, OneOf, ParameterError, parse_value, validate_parameters
from stagewise.pipeline.runner import parameter_table

RULES = dict(profile=OneOf("full", "quick"), seed=Interval(ge=0), nbeta=Interval(gt=0),
             chains=Interval(ge=1, integer=True))


def namespace(**values):
    """A notebook namespace after the parameters cell (and papermill's injected cell)."""
    ns = {"__annotations__": {"profile": str, "seed": int, "nbeta": float, "chains": int},
          "profile": "full", "seed": 0, "nbeta": 100.0, "chains": 4,
          "In": [""], "Out": {}, "_": "", "_i1": "x", "get_ipython": print}
    ns.update(values)
    return ns


def problems(ns, **rules):
    with pytest.raises(ParameterError) as info:
        validate_parameters(ns, **(rules or RULES))
    return info.value.problems


def test_defaults_are_accepted_and_returned_read_only():
    params = validate_parameters(namespace(), **RULES)
    assert dict(params) == {"profile": "full", "seed": 0, "nbeta": 100.0, "chains": 4}
    assert params.nbeta == 100.0 and params["seed"] == 0
    with pytest.raises(AttributeError):
        params.seed = 1
    with pytest.raises(TypeError):
        params["seed"] = 1
    assert "nbeta=100.0" in repr(params)


def test_unknown_parameter_names_the_accepted_ones():
    (message,) = problems(namespace(bogus=1))
    assert message == "unknown parameter 'bogus' (accepted parameters: chains, nbeta, profile, seed)"


def test_unknown_parameter_close_to_a_declared_one_gets_a_hint():
    (message,) = problems(namespace(nbeat=1.0))
    assert message.startswith("unknown parameter 'nbeat' (did you mean 'nbeta'? accepted parameters: ")


def test_private_names_and_non_data_are_not_parameters():
    import math

    validate_parameters(namespace(_private=1, math=math, f=lambda: 0), **RULES)


def test_out_of_range_names_parameter_value_and_accepted_values():
    assert problems(namespace(nbeta=-5.0)) == [
        "parameter 'nbeta' = -5.0 is out of range (accepted: a finite number > 0)"]
    assert problems(namespace(profile="fast")) == [
        "parameter 'profile' = 'fast' is out of range (accepted: 'full' or 'quick')"]
    assert problems(namespace(chains=0)) == [
        "parameter 'chains' = 0 is out of range (accepted: an integer ≥ 1)"]


def test_int_is_converted_to_float_and_integral_float_to_int():
    ns = namespace(nbeta=300, chains=8.0)
    params = validate_parameters(ns, **RULES)
    assert params.nbeta == 300.0 and type(params.nbeta) is float and type(ns["nbeta"]) is float
    assert params.chains == 8 and type(params.chains) is int and type(ns["chains"]) is int


@pytest.mark.parametrize("name, value", [("nbeta", True), ("seed", False), ("seed", 1.5), ("nbeta", "3"),
                                         ("profile", 1)])
def test_wrong_type_is_refused(name, value):
    (message,) = problems(namespace(**{name: value}))
    assert message.startswith(f"parameter {name!r} = {value!r} has the wrong type: expected ")


def test_all_problems_are_reported_at_once():
    found = problems(namespace(bogus=1, nbeta=-1.0, seed=True, profile="fast"))
    assert len(found) == 4
    assert {m.split(" ")[1] if m.startswith("parameter") else m.split(" ")[2] for m in found} == {
        "'bogus'", "'nbeta'", "'seed'", "'profile'"}
    assert isinstance(ParameterError(found), ValueError)


def test_every_declared_parameter_needs_a_rule_and_every_rule_a_declaration():
    rules = dict(RULES)
    del rules["chains"]
    rules["temperature"] = Interval(gt=0)
    found = problems(namespace(), **rules)
    assert any("'chains' is declared in the parameters cell but has no rule" in m for m in found)
    assert any("rule for 'temperature', which the parameters cell does not declare" in m for m in found)


def test_oneof_does_not_confuse_bool_and_int():
    assert not OneOf(0, 1).accepts(True)
    assert OneOf(True, False).accepts(False)
    assert not Interval(ge=0).accepts(True)
    assert not Interval(ge=0).accepts(float("nan"))


def test_parse_value_reads_like_papermill():
    assert parse_value("300") == 300 and type(parse_value("300")) is int
    assert parse_value("1e-3") == 1e-3
    assert parse_value("True") is True and parse_value("False") is False and parse_value("None") is None
    assert parse_value("quick") == "quick"
    assert parse_value("[1000.0, 3e3]") == [1000.0, 3000.0] and parse_value("[]") == []  # a list parameter
    assert parse_value("[not a list") == "[not a list" and parse_value("[x]") == "[x]"


def test_parameter_table_is_papermills_inspection_of_the_parameters_cell():
    import nbformat

    source = ('profile: str = "full"  # "full" for the book\n'
              '\n# a comment line\n'
              'sizes: list = [\n    1,\n    2,\n]  # layer widths\n'
              'nbeta: float = 100.0\n')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    rows = parameter_table(nb)
    assert [tuple(r) for r in rows] == [("profile", "str", '"full"', '"full" for the book'),
                                        ("sizes", "list", "[1, 2]", "layer widths"),
                                        ("nbeta", "float", "100.0", "")]


def test_folder_rule_accepts_existing_folders_and_the_empty_default(tmp_path):
    from stagewise.pipeline import Folder, ParameterError, validate_parameters

    ns = {"__annotations__": {"results_dir": str}, "results_dir": str(tmp_path)}
    assert validate_parameters(ns, results_dir=Folder())["results_dir"] == str(tmp_path)
    ns["results_dir"] = ""
    assert validate_parameters(ns, results_dir=Folder())["results_dir"] == ""
    ns["results_dir"] = str(tmp_path / "missing")
    with pytest.raises(ParameterError, match="results_dir.*existing folder"):
        validate_parameters(ns, results_dir=Folder())
    ns["results_dir"] = ""
    with pytest.raises(ParameterError, match="results_dir"):
        validate_parameters(ns, results_dir=Folder(allow_empty=False))


def test_file_rule_and_relative_paths_made_absolute(tmp_path, monkeypatch):
    from stagewise.pipeline import File
    from stagewise.pipeline.runner import absolute_paths

    text = tmp_path / "mine.txt"
    text.write_text("hello")
    assert File().accepts("") and File().accepts(str(text))
    assert not File().accepts(str(tmp_path)) and not File(allow_empty=False).accepts("") and not File().accepts(3)
    monkeypatch.chdir(tmp_path)
    out = absolute_paths({"text_file": "mine.txt", "results_dir": ".", "profile": "mine.txt", "other_file": "nope"})
    assert out == {"text_file": str(text), "results_dir": str(tmp_path), "profile": "mine.txt", "other_file": "nope"}
