"""The README and the pages under docs/ stay honest: links resolve, the README's commands compose,
and a results table quoted on a page is what the committed result file says.

- Every relative link in README.md and docs/**/*.md names a file that exists, and a `#anchor` names
  a heading of the page it points to (GitHub's anchor rule); every repository path a page names
  (`src/...`, `tests/...`, `conf/...`, in prose or code) exists.
- Every `python train.py ...`, `python eval.py RUN ...`, `python sweep.py <preset> ...` and
  `python sweep.py border ...` command of README.md and the docs pages composes with Hydra's compose
  API (nothing is trained): a renamed group, option or key fails here, naming the page. Commands
  with a placeholder (`<run>`, `...`) are skipped; docs/bad_input.md's are refused on purpose.
- A block between `<!-- from: PATH -->` and `<!-- end -->` is a verbatim run of lines of the
  committed file PATH (a table that `sweep.py summarize`, `sweep.py border` or a docs script
  wrote); a block between `<!-- border: PATH -->` and `<!-- end -->` is the condensed border grid
  that `border_grid` builds from the committed border.csv at PATH. Regenerating a result file
  without updating the page that quotes it fails here, naming the page.
"""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MARKER = re.compile(r"^<!-- (from|border): (\S+) -->$")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> list[str]:
    """The lines of a markdown text outside ``` fences."""
    out, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence:
            out.append(line)
    return out


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered -1, -2, ..."""
    count: dict[str, int] = {}
    found = set()
    for line in _prose(page.read_text()):
        m = re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{count[slug]}" if slug in count else slug)
        count[slug] = count.get(slug, 0) + 1
    return found


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page):
    broken = []
    for line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{target} (no file {dest})")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                broken.append(f"{target} (no heading #{frag} in {_rel(dest)})")
    assert not broken, f"{_rel(page)}: broken links: {broken}"


def test_anchor_rule_matches_github():
    page = ROOT / "docs" / "sweeps.md"
    assert "sweeppy-presets-and-summaries" in anchors(page)
    assert "tutorial-extensions-missing-data-the-whole-sequence-a-linear-representation" in anchors(
        ROOT / "docs" / "tutorial.md"
    )


PATH = re.compile(r"(?<![\w/.\-])((?:src|tests|conf|benchmarks|docs)/[\w/.\-]*[\w/])(<)?")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_named_path_exists(page):
    """A file or folder of this repository that a page names (`src/border.py`, tests/test_resume.py,
    a command's script) exists: a moved module or test leaves no page pointing at nothing."""
    missing = [
        path
        for line in page.read_text().splitlines()
        for path, placeholder in PATH.findall(line)
        if not placeholder and not (ROOT / path).exists()
    ]
    assert not missing, f"{_rel(page)} names paths that do not exist: {sorted(set(missing))}"


# -- the README's commands compose -------------------------------------------------------------


def commands(text: str) -> list[list[str]]:
    """`python <script> ...` commands of a markdown text: from bash blocks (a trailing backslash
    continues a line, `#` starts a comment) and from inline code spans."""
    found, fence, buf = [], None, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.strip().strip("`")
            continue
        if fence == "bash":
            buf += line.rstrip("\\").split(" #")[0] + " "
            if not line.endswith("\\"):
                found.append(buf)
                buf = ""
        elif fence is None:
            found += re.findall(r"`(python [^`]+)`", line)
    out = []
    for cmd in found:
        words = shlex.split(cmd.split("&&")[-1].strip(), comments=True)
        if len(words) >= 2 and words[0] in ("python", "python3") and words[1].endswith(".py"):
            out.append(words[1:])
    return out


def _placeholder(word: str) -> bool:
    return "<" in word or "..." in word or "$" in word or word.startswith("[")


def _variants(overrides: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """A multirun's overrides as one run (every swept key at its first value), and the other
    values of each swept config group as (group, option)."""
    first, others = [], []
    for o in overrides:
        key, _, value = o.partition("=")
        values = value.split(",") if value and "[" not in value else [value]
        first.append(f"{key}={values[0]}" if value else o)
        others += [(key.lstrip("+"), v) for v in values[1:]]
    return first, others


def _option_exists(group: str, option: str) -> bool:
    """A config group's option: a yaml of conf/<group>/, or one of Hydra's own (hydra/launcher=basic)."""
    if (ROOT / "conf" / group / f"{option}.yaml").exists():
        return True
    return group.startswith("hydra/") and option in ("basic", "submitit_local", "submitit_slurm", "joblib")


def compositions(page: Path) -> list[tuple[str, list[str]]]:
    """(the command as written, the train overrides it composes) for each command of a page that
    names overrides: train.py's own, eval.py's after the run folder, a sweep.py preset's as
    `+sweep=<preset>`, a border search's over the preset its axis names (its `border.*` keys are
    its own, checked by `border_keys`)."""
    out = []
    for words in commands(page.read_text()):
        script, args = words[0], [w for w in words[1:] if w not in ("-m", "--multirun")]
        shown = " ".join(words)
        named = args[1:] if script == "eval.py" else args  # eval.py's first word is a run folder
        if any(_placeholder(a) for a in named) or "--help" in args:
            continue
        if script == "train.py":
            out.append((shown, args))
        elif script == "eval.py" and args:
            out.append((shown, args[1:]))
        elif script == "sweep.py" and args and args[0] == "border":
            rest = [a for a in args[1:] if not a.startswith("border.")]
            preset = "copy_capacity" if any(a.startswith("task.delay=") for a in rest) else "capacity"
            out.append((shown, [f"+sweep={preset}", *rest]))
        elif script == "sweep.py" and args and args[0] not in ("list", "summarize"):
            out.append((shown, [f"+sweep={args[0]}", *args[1:]]))
    return out


def border_keys(page: Path) -> list[str]:
    """The `border.<key>` overrides of a page's `sweep.py border` commands."""
    return [
        a.split("=", 1)[0]
        for words in commands(page.read_text())
        if words[:2] == ["sweep.py", "border"]
        for a in words[2:]
        if a.startswith("border.") and not _placeholder(a)
    ]


# bad_input.md's commands are refused on purpose (its own test runs them); the result folders'
# pages (docs/<result>/**) record the commands that made them, as they were run.
COMMAND_PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "results").glob("*.md"))]
COMMAND_PAGES.remove(ROOT / "docs" / "bad_input.md")


def test_commands_are_found():
    shown = [c for c, _ in compositions(README)]
    assert "train.py" in shown and "sweep.py hidden" in shown
    assert any(c.startswith("train.py -m task.lag=1,2,4,8") for c in shown)
    border = ROOT / "docs" / "results" / "border.md"
    assert any(c.startswith("sweep.py border") for c, _ in compositions(border))
    assert "border.resolution" in border_keys(border)


def test_every_command_composes():
    """Each distinct command line composes once (every swept key at its first value); the other
    values of a swept config group must name an option of that group."""
    failed, seen = [], set()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for page in COMMAND_PAGES:
            for shown, overrides in compositions(page):
                first, others = _variants(overrides)
                failed += [
                    f"{_rel(page)}: python {shown}: {group}={option} is not an option of {group}"
                    for group, option in others
                    if (ROOT / "conf" / group).is_dir() and not _option_exists(group, option)
                ]
                if tuple(first) in seen:
                    continue
                seen.add(tuple(first))
                try:
                    compose("train", overrides=first, return_hydra_config=True)
                except Exception as e:  # noqa: BLE001 - every composition error is the finding
                    failed.append(f"{_rel(page)}: python {shown}: {type(e).__name__}: {e}")
    assert not failed, "commands that do not compose:\n" + "\n".join(failed)


def test_every_border_key_exists():
    node = OmegaConf.load(ROOT / "conf" / "sweep" / "border.yaml").border
    known = {*node, "dir", "metric"}  # dir: the search's folder; metric: the judge its axis names
    unknown = [
        f"{_rel(page)}: {key}"
        for page in COMMAND_PAGES
        for key in sorted(set(border_keys(page)))
        if key.split(".", 1)[1] not in known
    ]
    assert not unknown, f"sweep.py border keys that conf/sweep/border.yaml lacks: {unknown}"


def test_a_stale_override_is_caught():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        with pytest.raises(Exception, match="modle"):
            compose("train", overrides=["modle.hidden=2"], return_hydra_config=True)
    assert _variants(["task.lag=1,2", "model=rnn,gru", "+sweep=capacity"]) == (
        ["task.lag=1", "model=rnn", "+sweep=capacity"],
        [("task.lag", "2"), ("model", "gru")],
    )
    assert _option_exists("model", "gru") and not _option_exists("model", "lsmt")
    assert _option_exists("hydra/launcher", "parallel") and _option_exists("hydra/launcher", "basic")


# -- quoted results equal the committed files --------------------------------------------------


def quoted_blocks() -> list[tuple[Path, int, str, str, list[str]]]:
    """(page, line, kind, source path, the lines between the markers) of every marked block."""
    out = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = MARKER.match(line.strip())
            if m:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "<!-- end -->")
                out.append((page, i + 1, m.group(1), m.group(2), lines[i + 1 : end]))
    return out


def border_grid(path: Path) -> list[str]:
    """The condensed border table of a border.csv: a row per (cell, vocab), a column per lag or
    delay, each entry `**smallest solving** (its solved seeds); largest failing: its solved seeds`,
    or `**> max** (at max: solved seeds)` when no size solved."""
    header, *rows = list(csv.reader(path.open()))
    axis = header[2]  # lag or delay
    steps = list(dict.fromkeys(r[2] for r in rows))
    grid: dict[str, dict[str, str]] = {}
    for cell, _vocab, step, small, small_k, fail, fail_k, *_ in rows:
        small_k, fail_k = small_k.split(" [")[0], fail_k.split(" [")[0]
        if small.startswith(">"):
            entry = f"**{small}** (at {fail}: {fail_k})"
        elif fail.startswith("none"):
            entry = f"**{small}** ({small_k})"
        else:
            entry = f"**{small}** ({small_k}); {fail}: {fail_k}"
        grid.setdefault(cell, {})[step] = entry
    table = ["| cell | " + " | ".join(f"{axis} {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for cell, entries in grid.items():
        table.append(f"| {cell} | " + " | ".join(entries.get(s, "-") for s in steps) + " |")
    return table


def test_pages_quote_results():
    blocks = quoted_blocks()
    assert {"from", "border"} <= {kind for _, _, kind, _, _ in blocks}
    stale = []
    for page, line, kind, source, quoted in blocks:
        path = ROOT / source
        if not path.exists():
            stale.append(f"{_rel(page)}:{line}: {source} does not exist")
            continue
        if kind == "border":
            ok = quoted == border_grid(path)
        else:
            lines = path.read_text().splitlines()
            ok = bool(quoted) and any(lines[k : k + len(quoted)] == quoted for k in range(len(lines)))
        if not ok:
            stale.append(f"{_rel(page)}:{line}: the block differs from {source}")
    assert not stale, "pages quoting stale results:\n" + "\n".join(stale)


def test_a_changed_number_is_caught(tmp_path):
    source = ROOT / "docs" / "border" / "copy" / "border.csv"
    text = source.read_text()
    assert "lstm,10,1,16," in text
    changed = tmp_path / "border.csv"
    changed.write_text(text.replace("lstm,10,1,16,", "lstm,10,1,32,", 1))
    assert border_grid(changed) != border_grid(source)
    assert border_grid(source)[2].startswith("| lstm | **16** (5/5); 8: 2/5 |")


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 420
    for heading in ("## Contents", "## How to add a task", "## How to add a cell", "## Where things are"):
        assert heading in text
