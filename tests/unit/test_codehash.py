from clipmech import codehash


def test_closure_follows_package_imports(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from clipmech.stages import neuron_selectivity\n")
    names = {p.relative_to(codehash.PACKAGE_DIR).as_posix() for p in codehash.module_closure(script)}
    assert {
        "stages/neuron_selectivity.py",
        "analyses/selectivity.py",
        "stores/activations.py",
        "data/shapes.py",
    } <= names
    assert "models/train.py" not in names and not any(n.startswith("figures/") for n in names)


def test_hash_changes_with_the_code_it_covers(tmp_path, monkeypatch):
    package = tmp_path / "clipmech"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from clipmech import b\n")
    (package / "b.py").write_text("X = 1\n")
    (package / "c.py").write_text("Y = 1\n")
    script = tmp_path / "script.py"
    script.write_text("from clipmech import a\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    before = codehash.code_hash(script)
    (package / "c.py").write_text("Y = 2\n")
    assert codehash.code_hash(script) == before
    (package / "b.py").write_text("X = 2\n")
    assert codehash.code_hash(script) != before
    # The script's own code counts (Snakemake's `code` trigger is off, docs/reruns.md); its comments do not.
    edited = codehash.code_hash(script)
    script.write_text("# a comment\nfrom clipmech import a\n")
    assert codehash.code_hash(script) == edited
    script.write_text("from clipmech import a\n\nrun = 1\n")
    assert codehash.code_hash(script) != edited
    moved = tmp_path / "elsewhere" / "script.py"
    moved.parent.mkdir()
    moved.write_text("from clipmech import a\n\nrun = 1\n")
    assert codehash.code_hash(moved) == codehash.code_hash(script)


def test_comments_and_docstrings_do_not_count(tmp_path, monkeypatch):
    package = tmp_path / "clipmech"
    package.mkdir()
    (package / "__init__.py").write_text('"""Package."""\n')
    (package / "a.py").write_text('"""Module."""\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x  # double\n')
    script = tmp_path / "script.py"
    script.write_text("from clipmech import a\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    before = codehash.code_hash(script)
    (package / "a.py").write_text(
        '"""Another docstring."""\n# a comment\n\ndef f(x):\n    """Other."""\n\n    return 2*x\n'
    )
    (package / "__init__.py").write_text('"""The package, described at length."""\n')
    assert codehash.code_hash(script) == before
    (package / "a.py").write_text("def f(x):\n    return 3 * x\n")
    assert codehash.code_hash(script) != before


def test_package_data_of_the_subpackages_a_script_runs(tmp_path, monkeypatch):
    package = tmp_path / "clipmech"
    (package / "models" / "model_configs").mkdir(parents=True)
    (package / "other").mkdir()
    for init in (package / "__init__.py", package / "models" / "__init__.py", package / "other" / "__init__.py"):
        init.write_text("")
    (package / "models" / "loading.py").write_text("X = 1\n")
    (package / "models" / "model_configs" / "tiny.json").write_text('{"layers": 2}')
    (package / "other" / "b.py").write_text("Y = 1\n")
    (package / "other" / "table.json").write_text("{}")
    script = tmp_path / "script.py"
    script.write_text("from clipmech.models import loading\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    modules = codehash.module_closure(script)
    assert codehash.package_data(modules) == [package / "models" / "model_configs" / "tiny.json"]
    before = codehash.code_hash(script)
    (package / "other" / "table.json").write_text('{"a": 1}')
    assert codehash.code_hash(script) == before
    (package / "models" / "model_configs" / "tiny.json").write_text('{"layers": 4}')
    assert codehash.code_hash(script) != before


def test_the_model_configs_are_covered():
    """The real tree: the training rule hashes the open_clip configs of the model organisms."""
    script = codehash.PACKAGE_DIR.parents[1] / "workflow" / "scripts" / "train_clip.py"
    data = {
        p.relative_to(codehash.PACKAGE_DIR).as_posix() for p in codehash.package_data(codehash.module_closure(script))
    }
    configs = {"clipmech-vit-tiny", "clipmech-vit-tiny4", "clipmech-rn-tiny"}
    assert {f"models/model_configs/{name}.json" for name in configs} <= data
