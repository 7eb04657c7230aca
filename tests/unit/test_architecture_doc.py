"""ARCHITECTURE.md names only what exists, so the newcomer's map cannot rot silently: every
path of its tree and every backticked path, `syncd.` name, job name and table it names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.state import Store

ROOT = Path(__file__).parents[2]
DOC = ROOT / "ARCHITECTURE.md"
TOP_DIRS = ("syncd/", "tests/", "tools/", "bench/", "config/", "docs/", "systemd/", ".ci/")
# Names the steps use for a system that does not exist yet.
PLACEHOLDER = re.compile(r"acme|<|NN")
TABLE_PREFIXES = ("host_", "instock_", "dsorder_", "netstock_", "planning_", "oregon_")
CORE_TABLES = ("runs", "checkpoints", "outbox", "rejects", "alerts")
SYSTEMS = ("host", "instock", "dsorder", "planning", "netstock", "oregon", "outbox", "state")
JOB_NAME = re.compile(rf"(?<![\w./`-])({'|'.join(SYSTEMS)})\.([a-z_]+)(?![\w/(.])")
# Dotted words that read like job names but are other things the map names on purpose.
NOT_JOBS = {"dsorder.last_pull"}  # a checkpoint (syncd.jobs.dsorder_pull.LAST_PULL)
FILE_TYPES = {"py", "toml", "md"}  # `dsorder.py` is a file


def tree_paths(text: str) -> list[str]:
    """The paths of the ```text tree under "## The map": two spaces of indent per level,
    a line's names (comma-separated) before the first run of two spaces."""
    block = text.split("## The map", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    paths: list[str] = []
    stack: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        del stack[depth:]
        for name in names.split(", "):
            paths.append("".join(stack) + name)
        if names.endswith("/"):
            stack.append(names)
    return paths


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def doc_paths(text: str) -> list[str]:
    """Backticked repository paths (placeholders such as `syncd/connectors/acme.py` aside)."""
    found = []
    for quoted in backticked(text):
        token = quoted.split(" ", 1)[0].rstrip(".,:;")
        is_path = token.startswith(TOP_DIRS) or (token.endswith(".py") and "/" in token)
        if is_path and not PLACEHOLDER.search(token):
            found.append(token)
    return found


def resolves(dotted: str) -> bool:
    """`syncd.a.b.C.d`: the longest importable module prefix, then attributes."""
    parts = dotted.removesuffix("()").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_readme_links_the_map() -> None:
    """A newcomer finds the map from the README."""
    assert "(ARCHITECTURE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_path_of_the_tree_exists(text: str) -> None:
    """Each line of the folder tree names a file or folder that is there."""
    paths = tree_paths(text)
    assert len(paths) > 60
    assert "syncd/state/ledger.py" in paths
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_every_package_of_syncd_is_on_the_map(text: str) -> None:
    """A new package (a folder with an __init__.py) gets its line in the tree."""
    paths = set(tree_paths(text))
    packages = sorted(
        f"{p.parent.relative_to(ROOT).as_posix()}/" for p in (ROOT / "syncd").rglob("__init__.py")
    )
    assert [p for p in packages if p not in paths] == []


def test_every_backticked_path_exists(text: str) -> None:
    """`syncd/...`, `tests/...`, `tools/...` and other paths named in the prose exist."""
    paths = doc_paths(text)
    assert "syncd/send/__init__.py" in paths
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_every_syncd_name_resolves(text: str) -> None:
    """Backticked `syncd.x.y.Name` is an importable module and attributes that exist."""
    names = [t for t in backticked(text) if re.fullmatch(r"syncd(\.\w+)+(\(\))?", t)]
    assert "syncd.send.sender.Sender" in names
    assert [n for n in names if not resolves(n)] == []


def is_config_key(dotted: str) -> bool:
    """`host.options`, `outbox.schedule`: a section of the settings and one of its keys."""
    section, _, key = dotted.partition(".")
    model = Settings.model_fields.get(section)
    annotation = model.annotation if model is not None else None
    return isinstance(annotation, type) and key in getattr(annotation, "model_fields", {})


def test_every_job_named_is_a_job(text: str) -> None:
    """`dsorder.progress`, `outbox.send`...: each job the map speaks of is in JOBS (a
    dotted word that is a settings key, such as host.options, is one of those instead)."""
    named = {f"{m[0]}.{m[1]}" for m in JOB_NAME.findall(text) if m[1] not in FILE_TYPES}
    named -= NOT_JOBS
    assert {"dsorder.pull", "dsorder.progress", "outbox.send"} <= named
    assert sorted(n for n in named - set(REGISTRY) if not is_config_key(n)) == []
    assert is_config_key("host.options")
    assert not is_config_key("host.inboxes")
    assert importlib.import_module("syncd.jobs.dsorder_pull").LAST_PULL in NOT_JOBS


def test_every_table_named_exists(tmp_path: Path, text: str) -> None:
    """Backticked tables (and `table.column`) of the order's life exist in a migrated DB."""
    store = Store.open(tmp_path / "syncd.db")
    try:
        named = []
        for token in backticked(text):
            table, _, column = token.partition(".")
            if re.fullmatch(r"[a-z_]+", table) and (
                table.startswith(TABLE_PREFIXES) or table in CORE_TABLES
            ):
                if PLACEHOLDER.search(token) or token in REGISTRY:  # `outbox.send` is a job
                    continue
                if column and not re.fullmatch(r"[a-z_]+", column):
                    continue
                named.append((table, column))
        assert ("dsorder_orders", "") in named
        missing = [
            f"{t}.{c}" if c else t
            for t, c in named
            if not store.db[t].exists() or (c and c not in store.db[t].columns_dict)
        ]
    finally:
        store.close()
    assert missing == []


def test_the_checks_see_a_wrong_name(tmp_path: Path) -> None:
    """The helpers above report a path, a name and a tree line that are not there."""
    doc = "## The map\n```text\nsyncd/\n  gone.py   no such module\n```\n`syncd/nowhere.py`"
    assert "syncd/gone.py" in tree_paths(doc)
    assert not (ROOT / "syncd/gone.py").exists()
    assert doc_paths(doc) == ["syncd/nowhere.py"]
    assert not resolves("syncd.state.store.NoSuchThing")
    assert resolves("syncd.state.store.Store.add_intents")


def test_the_add_a_connector_count_is_the_files_it_lists(text: str) -> None:
    """The bold count under "Add a connector" is the number of files it lists, each named
    by the steps (of that section, or of "Add a job" for the job), at most five."""
    connector = text.split("## Add a connector", 1)[1].split("\n## ", 1)[0]
    job = text.split("## Add a job", 1)[1].split("\n## ", 1)[0]
    steps, paragraph = connector.split("**Files outside tests and docs**", 1)
    listed_text, count_text = paragraph.split("= **", 1)
    listed = re.findall(r"`(syncd/[^`]+)`", listed_text)
    count = int(count_text.split("**", 1)[0])
    assert len(listed) == len(set(listed)) == count
    assert count <= 5
    named = set(re.findall(r"`(syncd/[^`]+)`", steps + job.replace("<system>", "acme")))
    assert [path for path in listed if path not in named] == []
