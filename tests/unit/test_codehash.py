from clipmech import codehash


def test_closure_follows_package_imports(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from clipmech.stages import neuron_selectivity\n")
    names = {p.relative_to(codehash.PACKAGE_DIR).as_posix() for p in codehash.module_closure(script)}
    assert {"stages/neuron_selectivity.py", "analyses/selectivity.py", "stores/activations.py", "data/shapes.py"} <= names
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
