"""Control quality: how well the real balancer and delivery use and hold the main fuse (issue 13).

Run: ``python bench/bench_control_quality.py [--quick] [--conditions PATTERN ...] [--no-baseline]
[--plot PATH] [--json PATH] [--trigger] [--list]``.

Each condition is one simulated site (``bench/cq_sim.py``): the real ``BalancerController`` + ``allocate`` and the
real ``Delivery`` with the real ``SiteState``, wired as ``csms/runtime/app.py`` wires them, against ``simulators/``
physics (``EVModel`` cars, ``Site`` loads with noise and phase rotation) on a virtual clock (minutes of site
time per second of wall time), with in-process fake station links instead of websockets. Shipped defaults
everywhere (``SiteConfig``, ``SmartChargingConfig``, the group's defaults): the benchmark measures the product
as users get it, and tunes nothing.

The matrix (seeded, reproducible):

* sites: **A** 63 A fuse, 20 A base load per phase, four 3-phase cars (16 A), ``max_current_online`` 63;
  **A1** site A with one car capped at 8 A by its own on-board charger; **B** 25 A fuse, 5 A base, three
  1-phase cars (32 A) on 3-phase chargers wired RST, STR and TRS (each car on its own building phase);
  **C** 25 A fuse, 10 A base, four 3-phase cars (only two fit at 6 A), 20 simulated minutes; **D** site A with a
  +30 A base-load step on every phase mid-run. Base load noise ±0.3 A (redrawn every second) everywhere.
* ``mvN``: the charger's own MeterValues interval N s (1, 10, 30, 60). It refuses a faster interval than its own
  and keeps its own; it accepts a slower one (a real charger does): the interval actually used is printed.
  It sends samples only at that interval. ``--trigger`` makes the chargers answer TriggerMessage(MeterValues)
  (off by default: not every charger does).
* ``evR``: every car follows a limit change within R s (ramp_delay R/2 + ramp_time R/2): 0.5 s and 5 s. Cars
  draw min(offer, own cap). A lowered limit (or a pause) is followed along a ramp of ramp_time too
  (``cq_sim.LaggingEV``; ``simulators.ev.EVModel`` itself drops at once, see there); ``--instant-decrease`` keeps
  EVModel's instant drop.
* the mains meter is read every 1 s and sees the chargers (``chargers_in_measurement = true``).

Figures per condition, from what the simulated site carries (never the central system's view of itself):

* util: the most loaded building phase as % of min(fuse, max_current_online), mean over the settled window
  (from ``warmup`` to the end; site D leaves out the 60 s after the step). Target >= 97 %.
  minφ: the least loaded phase (site B: each 1-phase car must get its own phase's headroom). Target >= 97 %.
* spread: max - min draw among equal cars (A), mean over the settled window. Target <= 1 A.
* chg/min: changes of the limit the chargers apply, per charger per minute of the settled window. Target <= 1.
* pauses: a charger's limit falling below 6 A during a session, in the settled window (site D: before the step).
  Target 0 wherever every session fits at min_current (A, A1, B, D before the step).
* share (site C): each car's share of the 20 minutes it draws current. Target 50 % ± 10 %.
* A·s: current above the fuse integrated over time, all phases added: settled window (target 0) and whole run.
* back (site D): seconds from the +30 A step until the site is under the fuse for good. Target <= 3 s.

Baseline in the same run: the "previous algorithm", commit ``f9e1bf1`` (before the control-loop rewrite): its
``csms/``, ``meter_gateway/`` and ``simulators/`` are extracted with ``git archive`` to a temporary folder and the
same harness runs in a subprocess with that folder first on ``PYTHONPATH``. The current tree runs in another
subprocess the same way (with this checkout first), so both columns are produced identically.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE_COMMIT = "f9e1bf1"
BASELINE_PATHS = ("csms", "meter_gateway", "simulators")
PLOT_CONDITION = "A-mv60-ev5"

INTERVALS = (1, 10, 30, 60)
RESPONSES = (0.5, 5.0)
QUICK = ["A-mv1-ev5", "A-mv10-ev0.5", "A-mv10-ev5", "A-mv30-ev5", "A-mv60-ev0.5", "A-mv60-ev5", "A1-mv10-ev5",
         "B-mv10-ev0.5", "B-mv10-ev5", "B-mv60-ev5", "C-mv10-ev5", "C-mv60-ev5", "D-mv10-ev0.5", "D-mv10-ev5",
         "D-mv60-ev5"]

TARGETS = {"util": 97.0, "spread": 1.0, "changes": 1.0, "share": (40.0, 60.0), "back": 3.0}


# ---- the matrix ----------------------------------------------------------------------------------------


def _suffix(trigger: bool, instant: bool) -> str:
    return ("-trig" if trigger else "") + ("-inst" if instant else "")


def _name(site: str, mv: int, ev: float, trigger: bool, instant: bool = False) -> str:
    return f"{site}-mv{mv}-ev{ev:g}" + _suffix(trigger, instant)


def conditions(trigger: bool = False, instant: bool = False) -> dict:
    """Every condition of the full matrix, by name (needs csms importable: used in the workers)."""
    from cq_sim import Car, Condition

    out = {}
    for mv in INTERVALS:
        for ev in RESPONSES:
            common = dict(mv_interval=mv, ev_response=ev, trigger=trigger, instant_decrease=instant,
                          seed=1000 + mv * 10 + int(ev * 10))
            four = tuple(Car(f"CP{i + 1}", 3, 16.0, "RST", 3.0 + i) for i in range(4))
            capped = four[:3] + (Car("CP4", 3, 8.0, "RST", 6.0, equal=None),)
            one_phase = tuple(Car(f"CP{i + 1}", 1, 32.0, rot, 3.0 + i) for i, rot in enumerate(("RST", "STR", "TRS")))
            sites = {
                "A": dict(fuse=63, base=20, cars=four, max_current_online=63, duration=300, warmup=120),
                "A1": dict(fuse=63, base=20, cars=capped, max_current_online=63, duration=300, warmup=120),
                "B": dict(fuse=25, base=5, cars=one_phase, max_current_online=25, duration=300, warmup=120),
                "C": dict(fuse=25, base=10, cars=four, max_current_online=25, duration=1206, warmup=120,
                          share_window=(6.0, 1206.0)),
                "D": dict(fuse=63, base=20, cars=four, max_current_online=63, duration=420, warmup=120,
                          step_at=240.0, step_amps=30.0),
            }
            for site, kw in sites.items():
                name = _name(site, mv, ev, trigger, instant)
                out[name] = Condition(name, site, **kw, **common)
    return out


def everyone_fits(site: str) -> bool:
    return site in ("A", "A1", "B", "D")


# ---- the worker: runs conditions against whatever csms is first on the path -----------------------------


class _LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reset()

    def reset(self) -> None:
        self.warnings, self.errors, self.first_errors = 0, 0, []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
            msg = record.getMessage()
            if len(self.first_errors) < 3 and msg not in self.first_errors:
                self.first_errors.append(msg)
        else:
            self.warnings += 1


def worker(names: list[str], trigger: bool, instant: bool, json_path: str, trace_names: list[str],
           verbose: bool) -> int:
    import csms
    import cq_sim

    counter = _LogCounter()
    root = logging.getLogger()
    root.handlers[:] = [counter] + ([logging.StreamHandler()] if verbose else [])
    root.setLevel(logging.WARNING)
    matrix = conditions(trigger, instant)
    results, traces = {}, {}
    for name in names:
        cond = matrix[name]
        if name in trace_names:
            cond = type(cond)(**{**cond.__dict__, "trace": True})
        counter.reset()
        started = time.perf_counter()
        try:
            res = cq_sim.run_condition(cond)
        except Exception as exc:  # a tree whose API the harness cannot drive: say so, carry on
            logging.getLogger("bench").debug("failed", exc_info=True)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        res.pop("_recording", None)
        if "trace" in res:
            traces[name] = res.pop("trace")
        res["wall_s"] = time.perf_counter() - started
        res["log_warnings"], res["log_errors"], res["log_first_errors"] = \
            counter.warnings, counter.errors, counter.first_errors
        results[name] = res
        print(f"  {name}: {res['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
    Path(json_path).write_text(json.dumps({"csms": str(Path(csms.__file__).resolve().parent), "results": results,
                                           "traces": traces}, default=_jsonable))
    return 0


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


# ---- the driver ----------------------------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)


def extract_baseline(dest: Path) -> str | None:
    """Extracts the baseline's trees into ``dest``; returns why it could not (None when it could)."""
    try:
        check = _git("rev-parse", "--verify", "--quiet", f"{BASELINE_COMMIT}^{{commit}}")
    except FileNotFoundError:
        return "git is not installed"
    if check.returncode != 0:
        return f"commit {BASELINE_COMMIT} is not in this repository ({check.stderr.decode().strip() or 'not found'})"
    archive = _git("archive", "--format=tar", BASELINE_COMMIT, *BASELINE_PATHS)
    if archive.returncode != 0:
        return f"git archive failed: {archive.stderr.decode().strip()}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return None


def start_worker(label: str, pythonpath: Path, names: list[str], args, out: Path, trace: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--json", str(out),
           "--trace", trace, "--conditions", *names]
    if args.trigger:
        cmd.append("--trigger")
    if args.instant_decrease:
        cmd.append("--instant-decrease")
    if args.verbose:
        cmd.append("--verbose")
    print(f"[{label}] csms from {pythonpath}: {len(names)} condition(s)", file=sys.stderr, flush=True)
    return subprocess.Popen(cmd, env=env, cwd=str(ROOT))


def finish_worker(label: str, proc: subprocess.Popen, out: Path, expect: Path) -> dict:
    code = proc.wait()
    if code != 0 or not out.exists():
        return {"error": f"{label} worker exited {code}"}
    data = json.loads(out.read_text())
    used = Path(data["csms"])
    if expect.resolve() not in used.parents:
        return {"error": f"{label} worker imported csms from {used}, not from {expect}"}
    return data


def _fmt(x, nd=1) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def cells(site: str, res: dict | None) -> list[str]:
    """One side's cells of a row, each figure marked against the issue's target."""
    if res is None:
        return ["skipped"] + [""] * 8
    if "error" in res:
        return [("error: " + res["error"])[:60]] + [""] * 8
    fits = everyone_fits(site)
    util, minp = res.get("util_pct"), res.get("util_min_phase_pct")
    spread, chg = res.get("spread_a"), res.get("changes_per_charger_min")
    pauses = res.get("pauses_while_fit") if fits else res.get("pauses")
    a_steady, a_total = res.get("overload_as_steady"), res.get("overload_as_total")
    out = [
        _fmt(util) + _mark(util is not None and util >= TARGETS["util"]),
        _fmt(minp) + _mark(minp is not None and minp >= TARGETS["util"]) if site == "B" else "",
        _fmt(spread, 2) + _mark(spread is not None and spread <= TARGETS["spread"]) if site != "C" else "",
        _fmt(chg, 2) + _mark(chg is not None and chg <= TARGETS["changes"]),
        f"{pauses}" + _mark(pauses == 0 if fits else None) if pauses is not None else "—",
        _fmt(a_steady) + _mark(a_steady is not None and a_steady <= 0.0),
        _fmt(a_total),
    ]
    if site == "D":
        back = res.get("back_under_s")
        text = (">" if res.get("back_under_capped") else "") + _fmt(back)
        out.append(text + _mark(back is not None and back <= TARGETS["back"] and not res.get("back_under_capped")))
    else:
        out.append("")
    out.append(str(res.get("stats", {}).get("mv_interval_effective", "?")))
    return out


HEAD = ["util %", "minφ %", "spread A", "chg/min", "pauses", "A·s st", "A·s all", "back s", "mv used"]
WIDTH = [9, 9, 9, 8, 7, 8, 8, 8, 7]


def report(names: list[str], sites: dict[str, str], prev: dict | None, now: dict, prev_note: str) -> str:
    lines = []
    w0 = max(len(n) for n in names) + 2
    lines.append(" " * w0 + "   " + "  ".join(h.rjust(w) for h, w in zip(HEAD, WIDTH)))
    for name in names:
        for label, side in (("prev", prev), ("now", now)):
            if side is None and label == "prev":
                label, side = "now", now  # no baseline: one row per condition
            if side is None:
                continue
            if "error" in side:
                res = {"error": side["error"]}
            else:
                res = side["results"].get(name)
            row = cells(sites[name], res)
            if res is not None and "error" in res:
                text = row[0]
            else:
                text = "  ".join(c.rjust(w) for c, w in zip(row, WIDTH))
            first = label == "prev" or prev is None
            lines.append((name if first else "").ljust(w0) + label.ljust(5) + text)
            if prev is None:
                break
    shares = [n for n in names if sites[n] == "C"]
    for name in shares:
        for label, side in (("prev", prev), ("now", now)):
            res = side["results"].get(name) if side and "results" in side else None
            if not res or "charging_share_pct" not in res:
                continue
            vals = res["charging_share_pct"]
            ok = all(TARGETS["share"][0] <= v <= TARGETS["share"][1] for v in vals.values())
            lines.append(f"{name} {label}: charging share over 20 min (target 50 % ± 10 % each): "
                         + " / ".join(f"{c} {v:.0f} %" for c, v in vals.items()) + _mark(ok))
    for label, side in (("prev", prev), ("now", now)):
        if side and "results" in side:
            for name in names:
                res = side["results"].get(name) or {}
                if res.get("log_errors"):
                    lines.append(f"{name} {label}: {res['log_errors']} error(s) logged, e.g. {res['log_first_errors']}")
    for label, side in (("prev", prev), ("now", now)):
        if side and "results" in side:
            stats = [r.get("stats", {}) for r in side["results"].values() if isinstance(r, dict)]
            asked = sum(s.get("triggers_accepted", 0) + s.get("triggers_refused", 0) for s in stats)
            refused = sum(s.get("metering_refused", 0) for s in stats)
            lines.append(f"{label}: TriggerMessage(MeterValues) requests {asked}; "
                         f"meter-value intervals refused by chargers {refused}")
    lines.append(f"prev = {prev_note}")
    return "\n".join(lines)


def plot(path: Path, prev: dict | None, now: dict, fuse: float, now_label: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib unavailable ({exc}); install the test extra"
    panels = []
    for label, side in (("before: previous algorithm (" + BASELINE_COMMIT + ")", prev), (f"after: current code ({now_label})", now)):
        tr = next(iter(side["traces"].values()), None) if side and side.get("traces") else None
        if tr:
            panels.append((label, tr))
    if not panels:
        return f"no trace of {PLOT_CONDITION} was recorded"
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, tr) in zip(axes[:, 0], panels):
        t = tr["t"]
        for p, colour in zip(range(3), ("tab:brown", "black", "tab:grey")):
            ax.plot(t, [row[p] for row in tr["phases"]], lw=0.9, color=colour, label=f"L{p + 1}")
        ax.axhline(fuse, color="tab:red", ls="--", lw=1.2, label=f"fuse {fuse:.0f} A")
        ax.set_ylabel("phase current (A)")
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_ylim(0, fuse * 1.15)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, ncol=4)
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.suptitle("Site A: 63 A fuse, 20 A base load, four 3-phase cars; charger meter values every 60 s, "
                 "EV response 5 s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a reduced matrix (about a minute of wall time)")
    ap.add_argument("--conditions", nargs="+", metavar="PATTERN", help="condition names or shell patterns, e.g. 'A-*'")
    ap.add_argument("--no-baseline", action="store_true", help=f"skip the previous algorithm ({BASELINE_COMMIT})")
    ap.add_argument("--plot", metavar="PATH", help=f"write the phase currents of {PLOT_CONDITION}, before and after, as PNG")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--trigger", action="store_true", help="chargers answer TriggerMessage(MeterValues)")
    ap.add_argument("--instant-decrease", action="store_true",
                    help="cars obey a lowered limit at once (simulators.ev.EVModel's own code) instead of ramping down")
    ap.add_argument("--serial", action="store_true", help="run the baseline after the current code, not beside it")
    ap.add_argument("--list", action="store_true", help="list the conditions and exit")
    ap.add_argument("--verbose", action="store_true", help="show the central system's warnings")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return worker(args.conditions or [], args.trigger, args.instant_decrease, args.json, args.trace, args.verbose)

    sys.path.insert(0, str(ROOT))
    full = conditions(args.trigger, args.instant_decrease)
    suffix = _suffix(args.trigger, args.instant_decrease)
    if args.conditions:
        names = [n for n in full if any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n, p + suffix)
                                        for p in args.conditions)]
    elif args.quick:
        names = [n + suffix for n in QUICK]
    else:
        names = list(full)
    if args.list:
        print("\n".join(full))
        return 0
    if not names:
        print("no condition matches", args.conditions, file=sys.stderr)
        return 2
    plot_name = PLOT_CONDITION + suffix
    run_names = names + ([plot_name] if args.plot and plot_name not in names else [])
    sites = {n: full[n].site for n in run_names}

    print(f"control quality: {len(names)} condition(s); {machine()}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cq-bench-") as tmp:
        tmp = Path(tmp)
        prev_note, prev_proc = "", None
        if args.no_baseline:
            prev_note = "skipped (--no-baseline)"
        else:
            base = tmp / "baseline"
            base.mkdir()
            why = extract_baseline(base)
            if why is not None:
                prev_note = f"baseline skipped: {why}"
                print(prev_note, file=sys.stderr)
            else:
                prev_note = f"the algorithm as of commit {BASELINE_COMMIT} (its csms/, meter_gateway/, simulators/)"
                if not args.serial:
                    prev_proc = start_worker("prev", base, run_names, args, tmp / "prev.json", plot_name)
        now_proc = start_worker("now", ROOT, run_names, args, tmp / "now.json", plot_name)
        now = finish_worker("now", now_proc, tmp / "now.json", ROOT)
        prev = None
        if prev_note.startswith("the algorithm"):
            if prev_proc is None:
                prev_proc = start_worker("prev", tmp / "baseline", run_names, args, tmp / "prev.json",
                                         plot_name)
            prev = finish_worker("prev", prev_proc, tmp / "prev.json", tmp / "baseline")
        same = _git("diff", "--quiet", BASELINE_COMMIT, "--", *BASELINE_PATHS).returncode == 0 if prev else False
        head = _git("rev-parse", "--short", "HEAD").stdout.decode().strip() or "?"
        dirty = bool(_git("status", "--porcelain", "--", *BASELINE_PATHS).stdout.strip())
        print(f"now = this checkout (HEAD {head}{', uncommitted changes' if dirty else ''})"
              + ("; its csms/ is identical to the baseline's, so both rows must agree" if same else ""))
        print("targets (issue 13): util and minφ >= 97 %, spread <= 1 A, chg/min <= 1, pauses 0 where all fit, "
              "A·s steady 0, back <= 3 s, C share 50 % ± 10 %")
        print(report(names, sites, prev, now, prev_note))
        print(f"wall time {time.perf_counter() - started:.0f} s")
        if args.plot:
            why = plot(Path(args.plot), prev, now, full[plot_name].fuse,
                       f"HEAD {head}" + (" + uncommitted changes" if dirty else ""))
            print(f"plot: {args.plot}" if why is None else f"plot not written: {why}")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "baseline": prev_note, "prev": prev,
                                                   "now": now, "conditions": names}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
