"""pytest plugin: record a test's LLM calls once, replay them in every later run, explain misses.

Registered through the ``pytest11`` entry point (name ``llm_cache``), so installing
``llm-caching`` is enough. It does nothing unless a test asks for it::

    @pytest.mark.llm_cache                 # on a test, a class, or a module (pytestmark)
    def test_summary():
        assert "Paris" in summarize(...)    # openai / anthropic / LangChain / … as usual

    def test_other(llm_cache):              # or the fixture, which also tells what happened
        ...
        assert llm_cache.replayed == 1

The first run records into ``<test folder>/cassettes/<test module>/<test name>.json``; later
runs answer from it without touching the network. Modes (``--llm-cache-mode`` or
``LLM_CACHE_PYTEST_MODE``; ``replay`` by default under ``CI=true``) are described in
``llm_cache.testing.modes``. A request with no recorded answer in ``replay`` fails the test
with the cassette path, the mode, the nearest recorded request, a field-by-field diff against
it and the command that re-records the test.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llm_cache.testing.modes import MODES, Mode, resolve_mode

if TYPE_CHECKING:  # the machinery is imported when a test first uses it, not at pytest start
    from llm_cache.testing.cassette import Interaction
    from llm_cache.testing.player import Player

__all__ = ["LLMCacheCassette"]

_MODE = pytest.StashKey[Mode]()
_PLAYER = pytest.StashKey["Player"]()
_TOTALS = pytest.StashKey[dict[str, int]]()
_OWNERS = pytest.StashKey[dict[Path, Path]]()
_UNSAFE = re.compile(r"[^\w.\-\[\]=+,]")


class LLMCacheCassette:
    """What the ``llm_cache`` fixture gives a test: its cassette, mode and what happened."""

    def __init__(self, path: Path, mode: Mode, player: Player | None) -> None:
        self.path = path
        self._mode = mode
        self._player = player

    @property
    def mode(self) -> str:
        """``once``, ``replay``, ``new``, ``record`` or ``off``."""
        return self._mode.name

    @property
    def requests(self) -> int:
        """Requests the test has made so far (replayed, recorded or missed)."""
        return self._player.requests if self._player else 0

    @property
    def replayed(self) -> int:
        """Requests answered from the cassette so far."""
        return self._player.replayed if self._player else 0

    @property
    def recorded(self) -> list[Interaction]:
        """Interactions recorded in this run so far (complete answers only)."""
        return self._player.recorded() if self._player else []

    @property
    def interactions(self) -> list[Interaction]:
        """The interactions the cassette held when the test started."""
        return list(self._player.cassette.interactions) if self._player else []

    def __repr__(self) -> str:
        return f"<LLMCacheCassette {self.path} mode={self.mode}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm_cache", "llm-cache: record and replay LLM calls")
    group.addoption(
        "--llm-cache-mode",
        action="store",
        default=None,
        metavar="MODE",
        help=(
            "how tests marked llm_cache (or using the llm_cache fixture) treat LLM calls: "
            "once (default: record a missing cassette, otherwise replay only), replay (never "
            "reach the network; the default under CI=true), new (replay what is recorded, "
            "record the rest), record (call the API and overwrite), off (no interception). "
            "Also LLM_CACHE_PYTEST_MODE."
        ),
    )
    group.addoption(
        "--llm-cache-dir",
        action="store",
        default=None,
        metavar="DIR",
        help=(
            "folder for cassettes (DIR/<test module>/<test name>.json) instead of "
            "'cassettes' beside each test file"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llm_cache(ignore_hosts=[...]): record this test's LLM calls (httpx/httpx2) once and "
        f"replay them from a cassette; modes: {', '.join(MODES)} (--llm-cache-mode); requests "
        "to ignore_hosts pass through untouched",
    )
    config.stash[_TOTALS] = dict.fromkeys(("tests", "replayed", "recorded", "written"), 0)
    try:
        config.stash[_MODE] = resolve_mode(config.getoption("llm_cache_mode"), os.environ)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = config.stash.get(_MODE, None)
    if mode is None or mode.source == "default":
        return None
    return f"llm-cache: mode {mode.name} ({mode.source})"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line when tests used the plugin: what was replayed, recorded and written."""
    totals = config.stash.get(_TOTALS, None)
    if not totals or not totals["tests"]:
        return
    tests, written = totals["tests"], totals["written"]
    terminalreporter.write_line(
        f"llm-cache ({config.stash[_MODE].name}): {tests} test{'s' if tests != 1 else ''}, "
        f"{totals['replayed']} answers replayed, {totals['recorded']} recorded, "
        f"{written} cassette{'s' if written != 1 else ''} written"
    )


@pytest.fixture(autouse=True)
def _llm_cache_marker(request: pytest.FixtureRequest) -> None:
    """Turns the plugin on for tests marked ``llm_cache`` (test, class or module)."""
    if request.node.get_closest_marker("llm_cache") is not None:
        request.getfixturevalue("llm_cache")


@pytest.fixture
def llm_cache(request: pytest.FixtureRequest) -> Iterator[LLMCacheCassette]:
    """Record this test's LLM calls once and replay them; the cassette and what happened."""
    from llm_cache.testing.cassette import Cassette, CassetteError
    from llm_cache.testing.explain import MissContext
    from llm_cache.testing.intercept import activate, deactivate
    from llm_cache.testing.player import Player

    item = request.node
    config = request.config
    mode = config.stash[_MODE]
    path = cassette_path(item, config)
    if mode.name == "off":
        yield LLMCacheCassette(path, mode, None)
        return
    try:
        cassette = Cassette.load(path)
    except CassetteError as exc:
        pytest.fail(f"{exc}\nRe-record it with: {_command(item, config, 'record')}", pytrace=False)
    context = MissContext(
        cassette=cassette,
        cassette_label=_shown(path, config) + ("" if cassette.exists else " (does not exist)"),
        mode=mode,
        rerecord=_command(item, config, "record"),
        add_missing=_command(item, config, "new"),
    )
    player = Player(cassette, mode, context, _ignored_hosts(item))
    item.stash[_PLAYER] = player
    activate(player)
    try:
        yield LLMCacheCassette(path, mode, player)
    finally:
        deactivate(player)
    totals = config.stash[_TOTALS]
    totals["tests"] += 1
    totals["replayed"] += player.replayed
    totals["recorded"] += len(player.recorded())
    try:
        totals["written"] += player.save(_test_id(item, config), _shown(path, config))
    except CassetteError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fails the test with the miss explanation even when the code under test swallowed it."""
    player = item.stash.get(_PLAYER, None)
    if player is None:
        return (yield)
    from llm_cache.testing.player import CassetteMiss

    try:
        result = yield
    except (CassetteMiss, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        if player.misses:
            raise CassetteMiss(_first_miss(player)) from exc
        raise
    if player.misses:
        raise CassetteMiss(
            _first_miss(player) + "\n\n(The code under test caught this failure and went on; "
            "it is reported here.)"
        )
    return result


def _ignored_hosts(item: pytest.Item) -> list[str]:
    """``ignore_hosts`` of every ``llm_cache`` marker on the test, its class and module."""
    hosts: list[str] = []
    for marker in item.iter_markers("llm_cache"):
        value = marker.kwargs.get("ignore_hosts", ())
        if isinstance(value, str) or not all(isinstance(h, str) for h in value):
            pytest.fail(
                f"llm_cache(ignore_hosts=...) takes a list of host names, got {value!r}",
                pytrace=False,
            )
        hosts.extend(value)
    return hosts


def _first_miss(player: Player) -> str:
    more = len(player.misses) - 1
    suffix = (
        f"\n\n({more} more request{'s' if more != 1 else ''} of this test also had no "
        "recorded answer.)"
    )
    return player.misses[0] + (suffix if more else "")


def cassette_path(item: pytest.Item, config: pytest.Config) -> Path:
    """``<test folder>/cassettes/<module>/<test>.json``, or under ``--llm-cache-dir``.

    Under one ``--llm-cache-dir``, two test files of the same name (``a/test_x.py`` and
    ``b/test_x.py``) would share a folder and mix their cassettes: that fails the test.
    """
    test_file = Path(str(item.path))
    folder = config.getoption("llm_cache_dir")
    base = Path(config.invocation_params.dir, folder) if folder else test_file.parent / "cassettes"
    module_folder = base / test_file.stem
    owners = config.stash.setdefault(_OWNERS, {})
    owner = owners.setdefault(module_folder, test_file)
    if owner != test_file:
        pytest.fail(
            f"llm-cache: {_shown(test_file, config)} and {_shown(owner, config)} would both keep "
            f"their cassettes in {_shown(module_folder, config)}; give the test files different "
            "names or record them without --llm-cache-dir",
            pytrace=False,
        )
    return module_folder / (_test_name(item) + ".json")


def _test_name(item: pytest.Item) -> str:
    """The test's name, with its class (``TestX.test_y``) so methods of two classes differ."""
    parts = [item.name]
    parent = item.parent
    while parent is not None and isinstance(parent, pytest.Class):
        parts.insert(0, parent.name)
        parent = parent.parent
    return _UNSAFE.sub("_", ".".join(parts))


def _shown(path: Path, config: pytest.Config) -> str:
    """``path`` as the user would type it (relative to where pytest was started)."""
    try:
        return os.path.relpath(path, config.invocation_params.dir)
    except ValueError:  # another drive (Windows)
        return str(path)


def _test_id(item: pytest.Item, config: pytest.Config) -> str:
    """The test's id as given on a command line in the folder pytest was started from."""
    _, sep, rest = item.nodeid.partition("::")
    return _shown(Path(str(item.path)), config) + sep + rest


def _command(item: pytest.Item, config: pytest.Config, mode: str) -> str:
    parts = ["pytest", _test_id(item, config), f"--llm-cache-mode={mode}"]
    folder = config.getoption("llm_cache_dir")
    if folder:
        parts.append(f"--llm-cache-dir={folder}")
    return shlex.join(parts)
