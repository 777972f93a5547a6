"""The package graph keeps its shape: no import cycles, dependencies pointing inward, modules kept small.

Imports are read from the source with :mod:`ast` (nothing is imported), including imports inside functions
and under ``TYPE_CHECKING``: a lazy or type-only import is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("csms", "meter_gateway", "simulators")
MAX_LINES = 400

#: (importer prefix, forbidden import prefixes, why).
LAYERS = (
    ("csms.balancer", ("ocpp", "websockets", "aiohttp", "sqlite_utils", "csms.storage", "csms.ocpp", "csms.cluster"),
     "the balancer is pure decision logic: no OCPP, sockets, HTTP, storage, or who leads its group"),
    ("csms.cluster.lease", ("asyncio", "psycopg", "websockets", "aiomqtt", "csms.storage", "csms.runtime",
                            "csms.cluster.leadership"),
     "the lease policy is pure (time is an input): csms.cluster.leadership does the I/O"),
    ("csms.cluster.spread", ("asyncio", "psycopg", "csms.storage", "csms.runtime", "csms.cluster.leadership"),
     "the spreading rule is pure (who is live is an input): csms.cluster.leadership does the I/O"),
    ("csms.storage", ("csms.cluster", "csms.balancer", "csms.runtime", "csms.ocpp", "csms.web"),
     "storage depends inward only: the lease table's code knows no lease policy or manager"),
    *((core, ("asyncio", "websockets", "csms.ocpp.connection", "csms.ocpp.server", "csms.storage"),
       "the OCPP-J protocol is sans-I/O: frames in, events and frames out, no loop, socket or storage")
      for core in ("csms.ocpp.protocol", "csms.ocpp.frames", "csms.ocpp.errors", "csms.ocpp.schemas")),
    *((pure, ("asyncio", "websockets", "csms.ocpp", "csms.storage", "csms.smart_charging.delivery"),
       "the delivery policy is pure (time is an input): the worker in delivery.py does the I/O")
      for pure in ("csms.smart_charging.policy", "csms.smart_charging.exposure", "csms.smart_charging.chain",
                   "csms.smart_charging.channel")),
    ("csms.domain", ("ocpp", "websockets", "sqlite_utils", "csms.ocpp", "csms.storage", "csms.runtime"),
     "the domain knows no protocol, socket or storage"),
    ("meter_gateway", ("csms",), "meter-gateway runs on its own, without the central system"),
    ("csms.commissioning", ("asyncio", "ocpp", "websockets", "aiohttp", "sqlite_utils", "csms.ocpp", "csms.storage",
                            "csms.runtime", "csms.web"),
     "the commissioning inference is pure (time is an input): csms.runtime.commissioning does the I/O"),
    *((layer, ("csms.balancer.controller", "csms.balancer.allocation", "csms.runtime"),
       "operator commands reach the balancer only through the CapKeeper port (csms.operations.caps)")
      for layer in ("csms.operations", "csms.ocpp.operator", "csms.web")),
    ("csms.operations", ("csms.balancer", "csms.ocpp", "csms.storage"),
     "the operator's commands are version-agnostic and know no balancer or storage"),
    *((pure, ("asyncio", "aiomqtt", "paho", "websockets", "csms.ocpp", "csms.storage", "csms.runtime",
              "meter_gateway"),
       "the bus's wire formats, fencing and mirror are pure: bytes and domain values in and out, no loop or MQTT")
      for pure in ("csms.bus.wire", "csms.bus.codec", "csms.bus.commands", "csms.bus.fencing", "csms.bus.mirror",
                   "csms.bus.topics", "csms.bus.operator_messages")),
    ("csms.bus", ("ocpp", "websockets", "csms.ocpp", "csms.smart_charging", "csms.balancer", "csms.storage",
                  "csms.web"),
     "the bus carries the domain's state and StationLink calls: it knows no OCPP, delivery, balancer or storage"),
    ("csms.domain", ("csms.bus", "aiomqtt"), "the domain knows no bus"),
    ("csms.balancer", ("csms.bus", "aiomqtt"), "the balancer decides; what crosses MQTT is the bus's business"),
    ("csms", ("simulators",), "the central system never depends on its simulators"),
    ("meter_gateway", ("simulators",), "the meter gateway never depends on the simulators"),
)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def relative(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def discover() -> dict[str, Module]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = Module(".".join(parts), path)
    return modules


def raw_imports(module: Module) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each import as (absolute module, names taken from it): ``import a.b`` is ("a.b", ())."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, tuple(alias.name for alias in node.names)


def internal_targets(target: str, names: tuple[str, ...], modules: Mapping[str, Module]) -> set[str]:
    """The project modules an import depends on: ``from pkg import sub`` names the submodule, not ``pkg``."""
    out = set()
    rest = []
    for name in names:
        if f"{target}.{name}" in modules:
            out.add(f"{target}.{name}")
        else:
            rest.append(name)
    if rest or not names:
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            out.add(".".join(parts))
    return out


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    return {name: {t for target, names in raw_imports(m) for t in internal_targets(target, names, modules)} - {name}
            for name, m in modules.items()}


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (each is at least one cycle), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def a_cycle(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                frontier.append(nxt)
    raise AssertionError(f"{component} is not a cycle")


def unexpected_cycles(graph: Mapping[str, set[str]]) -> list[str]:
    return [" -> ".join(a_cycle(graph, c)) for c in strongly_connected(graph)]


# -- the rules -------------------------------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    cycles = unexpected_cycles(import_graph(discover()))
    assert not cycles, "import cycles (break each by moving what both sides need into a module of its own):\n" + \
        "\n".join(cycles)


def test_the_cycle_check_reports_an_injected_cycle() -> None:
    """The check itself works: a cycle through three modules is found and named in order."""
    graph = {"csms.a": {"csms.b"}, "csms.b": {"csms.c", "csms.d"}, "csms.c": {"csms.a"}, "csms.d": set()}
    assert unexpected_cycles(graph) == ["csms.a -> csms.b -> csms.c -> csms.a"]
    assert unexpected_cycles({**graph, "csms.c": set()}) == []


def test_layering() -> None:
    modules = discover()
    broken = []
    for name, module in modules.items():
        for target, names in raw_imports(module):
            imported = {target} | {f"{target}.{n}" for n in names}
            for importer, forbidden, why in LAYERS:
                if not (name == importer or name.startswith(importer + ".")):
                    continue
                bad = sorted(f for f in forbidden for i in imported if i == f or i.startswith(f + "."))
                if bad:
                    broken.append(f"{module.relative} imports {target} ({bad[0]}): {why}")
    assert not broken, "\n".join(sorted(set(broken)))


def test_modules_stay_small() -> None:
    too_long = []
    for module in discover().values():
        lines = len(module.path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{module.relative}: {lines} lines, over {MAX_LINES}; split it into modules named for "
                            "what they hold")
    assert not too_long, "\n".join(sorted(too_long))
