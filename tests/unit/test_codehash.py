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
    (package / "atlas" / "assets").mkdir(parents=True)
    (package / "other").mkdir()
    for init in (package / "__init__.py", package / "atlas" / "__init__.py", package / "other" / "__init__.py"):
        init.write_text("")
    (package / "atlas" / "render.py").write_text("X = 1\n")
    (package / "atlas" / "assets" / "atlas.css").write_text("body {}")
    (package / "other" / "b.py").write_text("Y = 1\n")
    (package / "other" / "table.json").write_text("{}")
    script = tmp_path / "script.py"
    script.write_text("from clipmech.atlas import render\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    modules = codehash.module_closure(script)
    assert codehash.package_data(modules) == [package / "atlas" / "assets" / "atlas.css"]
    before = codehash.code_hash(script)
    (package / "other" / "table.json").write_text('{"a": 1}')
    assert codehash.code_hash(script) == before
    (package / "atlas" / "assets" / "atlas.css").write_text("body { margin: 0 }")
    assert codehash.code_hash(script) != before


def test_editor_files_are_not_package_data(tmp_path, monkeypatch):
    """Swap, backup, hidden and cache files beside the code are not what the package ships: they rerun nothing."""
    package = tmp_path / "clipmech"
    (package / "atlas" / "assets").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "atlas" / "__init__.py").write_text("")
    (package / "atlas" / "render.py").write_text("X = 1\n")
    (package / "atlas" / "assets" / "atlas.js").write_text("let x = 1;")
    script = tmp_path / "script.py"
    script.write_text("from clipmech.atlas import render\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    before = codehash.code_hash(script)
    (package / "atlas" / ".render.py.swp").write_bytes(b"\0swap")
    (package / "atlas" / "render.py~").write_text("X = 0\n")
    (package / "atlas" / "assets" / "atlas.js~").write_text("let x = 0;")
    (package / "atlas" / "assets" / ".atlas.json").write_text("{}")
    (package / "atlas" / "__pycache__").mkdir()
    (package / "atlas" / "__pycache__" / "render.cpython-311.pyc").write_bytes(b"\0")
    (package / "atlas" / "render.pyc").write_bytes(b"\0")
    assert codehash.package_data(codehash.module_closure(script)) == [package / "atlas" / "assets" / "atlas.js"]
    assert codehash.code_hash(script) == before


def test_model_configs_are_hashed_per_model(tmp_path, monkeypatch):
    """A model's open_clip config is not in any rule's code hash but in the params of that model's rules."""
    package = tmp_path / "clipmech"
    configs = package / "models" / "model_configs"
    configs.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text("")
    (package / "models" / "loading.py").write_text("X = 1\n")
    (configs / "tiny-a.json").write_text('{"layers": 2}')
    (configs / "tiny-b.json").write_text('{"layers": 3}')
    script = tmp_path / "script.py"
    script.write_text("from clipmech.models import loading\n")
    monkeypatch.setattr(codehash, "PACKAGE_DIR", package)
    assert codehash.package_data(codehash.module_closure(script)) == []
    code, a, b = (
        codehash.code_hash(script),
        codehash.model_config_sha256("tiny-a"),
        codehash.model_config_sha256("tiny-b"),
    )
    assert a and b and a != b
    (configs / "tiny-a.json").write_text('{"layers": 4}')
    assert codehash.code_hash(script) == code
    assert codehash.model_config_sha256("tiny-a") != a
    assert codehash.model_config_sha256("tiny-b") == b
    # open_clip's own architectures come with the installed open_clip (the software environment).
    assert codehash.model_config_sha256("ViT-B-32") is None


def test_the_model_configs_of_the_tree():
    """The real tree: clipmech's model organisms each have a config hash, and no rule's code hash covers them."""
    for name in ("clipmech-vit-tiny", "clipmech-vit-tiny4", "clipmech-rn-tiny"):
        assert len(codehash.model_config_sha256(name)) == 16
    script = codehash.PACKAGE_DIR.parents[1] / "workflow" / "scripts" / "train_clip.py"
    data = codehash.package_data(codehash.module_closure(script))
    assert not any(codehash.MODEL_CONFIGS.as_posix() in p.as_posix() for p in data)


def test_every_rule_that_loads_a_model_passes_its_config_hash():
    """Each rule with a model (`model=model_params`, `architecture=architecture`, the MiCLIP reference) also
    passes the hash of that model's config, so editing the config reruns it (docs/reruns.md)."""
    rules = codehash.PACKAGE_DIR.parents[1] / "workflow" / "rules"
    for smk in sorted(rules.glob("*.smk")):
        for block in ("\n" + smk.read_text()).split("\nrule ")[1:]:
            name = block.split(":", 1)[0]
            if "model=model_params," in block or "architecture=architecture," in block:
                assert "model_config=model_config," in block, f"rule {name} ({smk.name}) lacks model_config"
            if "reference=miclip_reference," in block:
                assert "reference_config=miclip_reference_config," in block, f"rule {name} lacks reference_config"


def test_compute_rules_do_not_hash_figure_code():
    """A computation writes tables and a plot rule (a `plot_*.py` script) draws them, so editing a figure
    module reruns only the plot rules, not the computation."""
    scripts = codehash.PACKAGE_DIR.parents[1] / "workflow" / "scripts"
    compute = [path for path in sorted(scripts.glob("*.py")) if not path.name.startswith("plot_")]
    assert compute
    drawing = {
        path.name
        for path in compute
        if any(
            module.relative_to(codehash.PACKAGE_DIR).parts[0] == "figures" for module in codehash.module_closure(path)
        )
    }
    assert not drawing, f"compute scripts importing clipmech.figures: {sorted(drawing)}"
